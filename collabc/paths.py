"""The training paths: how one epoch of a model is trained, in segments the loop asks for.

A `Learner` has one path for its life (`train_mode`), and its loop (`Learner.fit`) only talks
to it through this interface:

* `unit` - what one iteration is ('batch', 'block'), for messages and the progress bar;
* `n_iter` - iterations per epoch (the schedule's resolution);
* `granularity` - segments hold a multiple of this many iterations;
* `prepare_opt(opt)` - makes the optimizer buffers the path needs (the optimizer owns them);
* `begin_fit()` / `begin_epoch(rng)` - per-fit and per-epoch set-up (the epoch's order comes
  from the learner's own stream `rng`);
* `run(start, lrs, moms, losses)` - trains iterations [start, start + len(lrs)) of this epoch
  at the given per-iteration lr and momentum, writes each one's loss, and returns -1, or the
  position (within the segment) of the first iteration whose loss was not finite (nothing from
  it on was applied on the exact path);
* `diverged(epoch, it, loss, lr)` - the message for that case;
* `restorable` - whether the loop keeps a copy of the model's tensors and the optimizer's
  buffers at the start of each segment, to put back when a segment leaves them non-finite (an
  update whose own loss was finite can overflow; the next loss then is NaN, and "the parameters
  from before that batch" are already broken). Paths that never report divergence say False.

Optional (a model's own path, `collabc.bayes.BayesPath`): `first_segment` (iterations in an
epoch's first segment, default 64), `check_fit(how, lr, wd)` (refuses a fit it cannot run),
`default_epochs()` (what `fit()` without n_epoch runs) and `set_epochs(n_epoch)`.

`ExactPath` is fastai's training, step for step: mini-batches, dense optimizer updates, through
a built-in model's fused C driver. `AutogradPath` is the same training for any other `Module`:
forward, MSELossFlat and backward through collabc's autograd, then fastai's optimizer over the
packed parameter block in one C call. `SparsePath` is the fast path for large data: rating by
rating over a grid of n_blocks x n_blocks blocks whose strata threads train at once
(dot-product models).
"""
import math

import numpy as np

from . import _core
from .models import check_preds
from .nn import pack_model
from .autograd import mse_loss_flat, tensor

__all__ = ["TrainingPath", "ExactPath", "AutogradPath", "SparsePath", "make_path", "path_kind"]


class TrainingPath:
    "The interface the loop uses (see the module docstring); subclasses fill it in."
    unit = "batch"
    granularity = 1
    restorable = True

    def __init__(self, learn):
        self.learn = learn

    @property
    def n_iter(self):
        raise NotImplementedError

    @property
    def n_params(self):
        "Size of the parameter block the optimizer steps."
        return self.learn.model.n_params

    def prepare_opt(self, opt):
        "Make the optimizer buffers this path needs (default: none beyond the optimizer's own)."

    def begin_fit(self):
        "Set-up at the start of a fit."

    def begin_epoch(self, rng):
        "Set-up at the start of an epoch; `rng` is the learner's stream of epoch orders."

    def run(self, start, lrs, moms, losses):
        raise NotImplementedError

    def diverged(self, epoch, it, loss, lr):
        return (f"training diverged: the loss of epoch {epoch}, {self.unit} {it} is {loss} (lr={lr:.3g}); "
                f"the model keeps its parameters from before that {self.unit}. Try a lower learning rate.")


class ExactPath(TrainingPath):
    """fastai's dense training through the model's fused C driver (`model._fit_epoch`): batches
    of `bs` rows of the loader in the epoch's shuffled order."""
    unit = "batch"

    @property
    def n_iter(self):
        return len(self.learn.dls.train)

    grads = None

    def begin_fit(self):
        m, dl = self.learn.model, self.learn.dls.train
        check = getattr(m, "_check_batches", None)   # e.g. BatchNorm: no batch of one row
        if check is not None:
            check(dl.n, dl.bs, dl.drop_last)
        if self.grads is None or self.grads.size != m.n_params:   # scratch, kept between fits
            self.grads = np.zeros(m.n_params, np.float32)

    def begin_epoch(self, rng):
        dl = self.learn.dls.train
        self.order = dl.order(rng)
        # the epoch trains from a private copy of the rows: another thread writing to dl.x or
        # dl.y meanwhile can neither change what the epoch trains on nor stop it between two
        # batches (where the optimizer's step count would be lost); changes made between
        # epochs (a callback's) are seen by the next epoch
        self.x, self.y = dl.x.copy(), dl.y.copy()

    def run(self, start, lrs, moms, losses):
        learn, dl = self.learn, self.learn.dls.train
        bs = dl.bs
        n_wd = learn.model.n_params if learn.wd_bn_bias else None
        return learn.model._fit_epoch(learn.opt, self.grads, self.x, self.y,
                                      self.order[start * bs:(start + len(lrs)) * bs], bs,
                                      lrs, moms, losses, n_wd=n_wd)


class AutogradPath(TrainingPath):
    """Any `Module` (a model the learner has no C driver for, such as the lesson's own
    `DotProductBias`): per batch, `model(x)` with x the (bs, 2) int64 ids, fastai's MSELossFlat
    against the ratings, backward through autograd, then fastai's optimizer (`opt_func`) over
    every parameter, packed into one block (decayed parameters first, fastai's wd_bn_bias rule)
    so the step is one C call, with the same schedule, decoupled weight decay and step counting
    as the fused drivers."""
    unit = "batch"
    _block, _key = None, None

    @property
    def n_iter(self):
        return len(self.learn.dls.train)

    def block(self):
        "The model's parameters packed (again if they changed since the last call)."
        learn = self.learn
        params = list(learn.model.parameters())
        if not params:
            raise ValueError(f"{type(learn.model).__name__} has no parameters to train: register them by "
                             f"assigning nn.Parameter(...) or modules such as Embedding(...) as attributes")
        key = (tuple(id(p) for p in params), learn.wd_bn_bias)
        blk = self._block
        if blk is None or key != self._key or not all(
                p._data.base is blk.data or p._data is blk.data for p in params):
            self._block, self._key = pack_model(learn.model, learn.wd_bn_bias), key
        return self._block

    @property
    def n_params(self):
        return self.block().n_params

    def begin_fit(self):
        blk = self.block()
        opt = self.learn.opt
        if opt.n_params != blk.n_params:
            raise ValueError(f"the model has {blk.n_params} parameters but its optimizer was made for "
                             f"{opt.n_params}: the model changed since; fit with reset_opt=True")

    def begin_epoch(self, rng):
        dl = self.learn.dls.train
        order = dl.order(rng)
        n = len(dl) * dl.bs
        # the epoch's batches gathered once: each batch is then a view (int64 ids, as PyTorch)
        self.xs, self.ys = dl.x[order[:n]].astype(np.int64), dl.y[order[:n]]

    def run(self, start, lrs, moms, losses):
        learn, dl = self.learn, self.learn.dls.train
        model, opt, blk = learn.model, learn.opt, self._block
        h, bs = opt.hypers, dl.bs
        n_wd = blk.n_params if learn.wd_bn_bias else blk.n_wd
        for j in range(len(lrs)):
            a = (start + j) * bs
            xb, yb = self.xs[a:a + bs], self.ys[a:a + bs]
            blk.zero_grad()
            pred = model(tensor(xb))
            if pred.shape != (len(xb),) and pred.shape != (len(xb), 1):
                check_preds(model, pred, len(xb))   # words the error
            loss = mse_loss_flat(pred, tensor(yb))
            value = getattr(loss._ctx, "value", None)
            loss.backward()
            losses[j] = float(loss._data) if value is None else value
            if not math.isfinite(losses[j]):
                return j
            opt.step_count = _core.optimizer_step(
                blk.data, blk.grad, opt.m, opt.v, opt=opt.kind, lr=float(lrs[j]), mom=float(moms[j]),
                sqr_mom=h.get("sqr_mom", 0.0), eps=h.get("eps", 1.0), wd=h["wd"], n_wd=n_wd,
                decouple_wd=h["decouple_wd"], step=opt.step_count)
        return -1

    def diverged(self, epoch, it, loss, lr):
        return (f"training diverged: the loss of epoch {epoch}, batch {it} is {loss} (lr={lr:.3g}); "
                f"the model keeps its parameters from before that batch (its gradients are those of "
                f"the bad batch). Try a lower learning rate.")


class SparsePath(TrainingPath):
    """Rating by rating (`model._fit_blocks`, csrc/sparse.c) over the loader's block layout
    (`DataLoader.block_layout(n_blocks)`): each epoch visits the n_blocks x n_blocks blocks as
    n_blocks random strata of n_blocks blocks sharing no user or item group, which the learner's
    `n_threads` threads train at once. The result depends on the data, the seed and n_blocks,
    never on n_threads."""
    unit = "block"

    def __init__(self, learn):
        super().__init__(learn)
        self.nb = learn.n_blocks
        self.granularity = self.nb

    @property
    def n_iter(self):
        return self.nb * self.nb

    def prepare_opt(self, opt):
        m = self.learn.model
        rows = m.n_users + m.n_items
        if opt.kind == "adam":
            opt.buffer("m", m.n_params)
            opt.buffer("v", m.n_params)
            opt.buffer("pow1", rows, 1.0)
            opt.buffer("pow2", rows, 1.0)
        elif opt.kind == "adagrad":
            opt.buffer("v", 2 * rows)

    def begin_fit(self):
        self.x, self.y, self.starts = self.learn.dls.train.block_layout(self.nb, self.learn.n_threads)

    def begin_epoch(self, rng):
        nb = self.nb
        strata, groups = rng.permutation(nb), rng.permutation(nb)
        self.blocks = np.array([g * nb + (g + s) % nb for s in strata for g in groups], dtype=np.int64)

    def run(self, start, lrs, moms, losses):
        learn = self.learn
        return learn.model._fit_blocks(learn.opt, self.x, self.y, self.starts,
                                       self.blocks[start:start + len(lrs)], lrs, moms, losses,
                                       learn.n_threads)

    def diverged(self, epoch, it, loss, lr):
        return (f"training diverged: a rating in block {it} of epoch {epoch} gave a non-finite error "
                f"(lr={lr:.3g}); the rating that gave it was not applied, earlier ones were. "
                f"Try a lower learning rate.")


def path_kind(model, train_mode):
    """Which path trains `model`: 'sparse', 'exact' (its fused C driver) or 'autograd', or the
    model's own (`model.own_path`, e.g. 'bayes': `model.make_path(learn)` makes it)."""
    own = getattr(model, "own_path", None)
    if own is not None:
        return own
    if train_mode == "sparse":
        return "sparse"
    fused = getattr(model, "_fused_ok", None)
    return "exact" if fused is not None and hasattr(model, "_fit_epoch") and fused() else "autograd"


def make_path(learn, kind):
    "The path object of `kind` (see `path_kind`)."
    if kind == getattr(learn.model, "own_path", None):
        return learn.model.make_path(learn)
    return {"exact": ExactPath, "sparse": SparsePath, "autograd": AutogradPath}[kind](learn)
