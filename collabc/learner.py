"""`Learner`: fastai's training loop over a collabc model, with the batches in C.

One loop (`Learner._do_fit`), fastai's events and control exceptions (see `collabc.callback`):
the loop names its events and calls every callback at each; recording, the progress bar and
epoch table, schedules, `lr_find`, early stopping and saving are callbacks. Its unit is a
segment: a run of batches (or sparse blocks) that the learner's training path
(`collabc.paths`) trains in one C call with the GIL released, sized to about a quarter of a
second so that Ctrl-C, the progress bar and the callbacks respond that fast. Schedules are
computed per segment, so memory does not grow with the number of epochs.

State lives with its owner: the optimizer owns every buffer it updates, the data loader owns its
layouts (the sparse path's block grouping) and the learner owns only its stream of epoch orders
(`data_rng`, so learners sharing one `DataLoaders` train as if each had its own).
`save`/`load`/`export`/`load_learner` write and read the files of `collabc.checkpoint` in the
format of `collabc.persist`.
"""
import contextlib
import functools
import math
import pathlib
import signal
import threading
import time

import numpy as np

from . import _core, checkpoint, foldin, inference, interpret, ranking, topn
from .bayes import BayesModel
from .cpu import default_threads
from ._checks import check_float, check_int
from .callback import (Callback, CancelBatchException, CancelEpochException, CancelFitException,
                       CancelTrainException, CancelValidException, ProgressCallback, Recorder,
                       TrainEvalCallback, TrainingDivergedError, _noop)
from .metrics import MSELossFlat
from .models import EmbeddingDotBias, EmbeddingNN, Module, get_emb_sz, predict_array, tabular_config
from .nn import param_groups
from .optim import Adam, Optimizer
from .paths import make_path, path_kind
from .schedule import (LRFinder, ParamScheduler, SchedCos, combine_scheds, combined_cos, suggest_funcs_list,
                       suggest_lrs, plot_lr_find)

__all__ = ["Learner", "Recorder", "collab_learner", "bayes_learner", "load_learner",
           "TrainingDivergedError", "default_threads"]

_SEGMENT_SECONDS = 0.25
#: {model class name: Learner subclass} for models whose learner is not `Learner` itself, so that
#: `load_learner` rebuilds the right one (collabc.implicit_learner registers ImplicitModel's)
_LEARNERS = {}


def _exclusive(method):
    """One thread at a time per Learner: a call while another thread trains or predicts with it
    is refused before it changes anything (the same thread may re-enter, e.g. a callback that
    saves during fit)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"this Learner is busy in another thread, so {method.__name__}() was "
                               f"refused; use one Learner per thread")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._lock.release()
    return wrapper


def _positive_float(name, v, allow_zero=False):
    return check_float(name, v, 0.0, lo_open=not allow_zero)


def _check_epochs(n_epoch, name="n_epoch"):
    return check_int(name, n_epoch, 1, kind_error=ValueError)


class _Summary(str):
    "`Learner.summary()`: a string that shows as itself in a notebook."
    def __repr__(self):
        return str(self)


_FINITE_CHUNK = 1 << 18   # elements checked at a time: a small temporary, not one of the array's size


def _all_finite(snap):
    "Whether every live array of a `Learner._segment_copy` holds finite values only."
    for a, _ in snap:
        flat = a.reshape(-1)
        for i in range(0, flat.size, _FINITE_CHUNK):
            if not np.isfinite(flat[i:i + _FINITE_CHUNK]).all():
                return False
    return True


class Learner:
    """fastai's `Learner` for collabc models: `fit`, `fit_one_cycle`, `fit_flat_cos`,
    `fit_sgdr`, `lr_find`, `validate`, callbacks (`cbs`), a `recorder`.

    `opt_func` is `Adam` (default), `SGD` or (sparse path) `Adagrad`, or a `functools.partial`
    of them; `loss_func` must be `MSELossFlat` (the C core trains with MSE); `metrics` are
    functions of `(preds, targs)` such as `rmse` and `mae`; `wd=None` keeps the optimizer's
    default (fastai Adam: 0.01); `cbs` are callbacks (instances or classes) kept for every fit.

    `train_mode='exact'` (default) is fastai's training, step for step: mini-batches of `bs`,
    dense optimizer updates of every parameter. `train_mode='sparse'` is the fast path for large
    data (dot-product models): rating by rating, each update touches only its own user and item
    rows (SGD, row-wise `Adagrad`, or lazy `Adam`, with `wd` as an L2 penalty on those rows),
    over a grid of `n_blocks` x `n_blocks` blocks (default 8) whose strata `n_threads` threads
    (default: all cores, at most 64) train at once without sharing a row. Its results depend on
    the data, the seed and `n_blocks`, never on `n_threads`. Its learning rates and weight
    decays are per rating, so they differ from the exact path's (e.g. `Adagrad` with lr 0.05
    and wd 0.02).

    Ctrl-C during `fit` stops cleanly after the running segment (about a quarter of a second
    of work): the model keeps every update, the recorder stays consistent (an epoch whose
    batches all ran is validated and gets its row; a cut epoch gets none); a second Ctrl-C
    aborts."""

    def __init__(self, dls, model, loss_func=None, opt_func=Adam, lr=1e-3, metrics=None,
                 wd=None, wd_bn_bias=False, moms=(0.95, 0.85, 0.95), path=None, model_dir="models",
                 train_mode="exact", n_threads=None, cbs=None, n_blocks=None, train_bn=True,
                 default_cbs=True):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a collabc model (e.g. EmbeddingDotBias), got {type(model).__name__}")
        if loss_func is None:
            loss_func = MSELossFlat()
        if isinstance(loss_func, type):
            loss_func = loss_func()
        if not isinstance(loss_func, MSELossFlat):
            raise TypeError(f"loss_func must be MSELossFlat(), the loss the C core trains with; got {loss_func!r}")
        for attr in ("train", "valid"):
            if not hasattr(dls, attr):
                raise TypeError(f"dls must be DataLoaders with .train and .valid, got {type(dls).__name__}")
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func
        self.lr = _positive_float("lr", lr)
        self.wd = None if wd is None else _positive_float("wd", wd, allow_zero=True)
        self.wd_bn_bias, self.train_bn = bool(wd_bn_bias), bool(train_bn)
        if train_mode not in ("exact", "sparse"):
            raise ValueError(f"train_mode must be 'exact' (fastai's dense training, the default) or "
                             f"'sparse' (the fast path for large data), got {train_mode!r}")
        if train_mode == "sparse" and not (hasattr(model, "_fit_blocks") and model._fused_ok()):
            raise ValueError(f"train_mode='sparse' trains the built-in dot-product models only, not "
                             f"{type(model).__name__}")
        self.train_mode = train_mode
        self.n_threads = default_threads() if n_threads is None else check_int("n_threads", n_threads, 1, 64)
        self.n_blocks = 8 if n_blocks is None else check_int("n_blocks", n_blocks, 1, 4096)
        if metrics is None:
            metrics = []
        elif callable(metrics):
            metrics = [metrics]
        for m in metrics:
            if not callable(m):
                raise TypeError(f"metrics must be callables of (preds, targs), got {m!r}")
        self.metrics = list(metrics)
        if len(moms) != 3:
            raise ValueError(f"moms must be a (start, middle, end) triple, got {moms!r}")
        self.moms = tuple(float(m) for m in moms)
        self.path, self.model_dir = (path if path is not None else getattr(dls, "path", ".")), model_dir
        self.opt = None
        self.show_table = True
        self.logger = print
        self.noise_var = None   # the training MSE stored with an export (fold-in uses it)
        self.training = False
        self.epoch, self.n_epoch, self.iter, self.n_iter = 0, 1, 0, 1
        self.train_iter, self.pct_train, self.smooth_loss, self.loss = 0, 0.0, float("nan"), float("nan")
        self.seg_max = None
        self._lock = threading.RLock()
        self._interrupted = False
        self._path_obj, self._path_override = None, None
        self.data_rng = dls.train.new_rng() if hasattr(dls.train, "new_rng") else np.random.default_rng()
        self._check_model_fits_data()
        self.cbs = []
        self.add_cbs([TrainEvalCallback, Recorder, ProgressCallback] if default_cbs else [TrainEvalCallback])
        self.add_cbs(cbs)
        self("after_create")

    @contextlib.contextmanager
    def trained_by(self, path):
        """Within this context the learner trains through `path` (a `collabc.paths.TrainingPath`)
        instead of the one it picks itself: how an outside driver (`collabc.ray`'s workers)
        runs the same loop, schedules, callbacks and recorder."""
        old = self._path_override
        self._path_override = path
        try:
            yield self
        finally:
            self._path_override = old

    @property
    def _path(self):
        """The training path for the model as it is now: its fused C driver while it is a
        built-in model, autograd otherwise (a built-in whose forward a subclass changed, a
        model the user wrote), or the sparse path (or the one `trained_by` sets)."""
        if self._path_override is not None:
            return self._path_override
        kind = path_kind(self.model, self.train_mode)
        if self._path_obj is None or self._path_obj.kind != kind:
            self._path_obj = make_path(self, kind)
            self._path_obj.kind = kind
        return self._path_obj

    def _check_model_fits_data(self):
        m, dls = self.model, self.dls
        if not (hasattr(m, "n_users") and hasattr(m, "n_items")):
            return   # a model the user wrote: its forward checks the ids it looks up
        for dl, which in ((dls.train, "train"), (dls.valid, "valid")):
            x = dl.x
            if len(x) and (x[:, 0].max() >= m.n_users or x[:, 1].max() >= m.n_items):
                raise ValueError(f"the model has {m.n_users} users and {m.n_items} items but the "
                                 f"{which} data holds indices up to {x[:, 0].max()} and {x[:, 1].max()}")

    # ------------------------------------------------------------------ callbacks
    def add_cb(self, cb):
        "Adds a callback (an instance, or a class to instantiate) and returns the learner."
        if isinstance(cb, type):
            cb = cb()
        if not isinstance(cb, Callback):
            raise TypeError(f"cbs must be Callback instances or classes, got {cb!r}")
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        return self

    def add_cbs(self, cbs):
        for cb in _listify(cbs):
            self.add_cb(cb)
        return self

    def remove_cb(self, cb):
        "Removes a callback (an instance, or every callback of a class)."
        if isinstance(cb, type):
            for c in [c for c in self.cbs if isinstance(c, cb)]:
                self.remove_cb(c)
            return self
        if cb in self.cbs:
            self.cbs.remove(cb)
            if getattr(self, cb.name, None) is cb:
                delattr(self, cb.name)
            cb.learn = None
        return self

    def remove_cbs(self, cbs):
        for cb in _listify(cbs):
            self.remove_cb(cb)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs):
        "Within this context the callbacks `cbs` are added (then removed)."
        cbs = [c() if isinstance(c, type) else c for c in _listify(cbs)]
        self.add_cbs(cbs)
        try:
            yield self
        finally:
            self.remove_cbs(cbs)

    @contextlib.contextmanager
    def removed_cbs(self, cbs):
        "Within this context the callbacks `cbs` are removed (then put back)."
        cbs = [c for c in _listify(cbs)]
        self.remove_cbs(cbs)
        try:
            yield self
        finally:
            self.add_cbs(cbs)

    def ordered_cbs(self, event_name):
        "The callbacks that implement `event_name`, in the order they run."
        return [cb for cb in sorted(self.cbs, key=lambda c: c.order) if hasattr(type(cb), event_name)]

    def __call__(self, event_name):
        for cb in sorted(self.cbs, key=lambda c: c.order):
            cb(event_name)

    @contextlib.contextmanager
    def no_bar(self):
        "Within this context there is no progress bar or table: epochs print as plain lists (fastai's no_bar)."
        prog = [c for c in self.cbs if isinstance(c, ProgressCallback)]
        self.remove_cbs(prog)
        try:
            yield self
        finally:
            self.add_cbs(prog)

    @contextlib.contextmanager
    def no_logging(self):
        "Within this context nothing is logged (fastai's no_logging)."
        old = self.logger
        self.logger = _noop
        try:
            yield self
        finally:
            self.logger = old

    # ------------------------------------------------------------------ optimizer
    def create_opt(self):
        "Create the optimizer from `opt_func` for the model's parameter block and training path."
        opt = self._new_opt()
        self.opt = opt
        if self.wd is not None:
            self.opt.set_hypers(wd=self.wd)

    def _new_opt(self):
        opt = self.opt_func(self._path.n_params, lr=self.lr)
        if not isinstance(opt, Optimizer):
            raise TypeError(f"opt_func must create a collabc optimizer (Adam, SGD or Adagrad), got {type(opt).__name__}")
        if opt.kind == "adagrad" and self.train_mode != "sparse":
            raise TypeError("Adagrad is available on the sparse path only: "
                            "Learner(..., train_mode='sparse')")
        self._path.prepare_opt(opt)
        return opt

    # ------------------------------------------------------------------ training
    @_exclusive
    def fit(self, n_epoch=None, lr=None, wd=None, cbs=None, reset_opt=False, start_epoch=0):
        """Train `n_epoch` epochs at a constant `lr` (default `self.lr`). A model that brings its
        own path may give a default for n_epoch (`bayes_learner`: the sweeps left)."""
        self._check_fit("fit", lr, wd)
        if n_epoch is None and hasattr(self._path, "default_epochs"):
            n_epoch = self._path.default_epochs()
        self._fit(n_epoch, lr, wd, cbs, reset_opt, start_epoch)

    def _check_fit(self, how, lr=None, wd=None):
        "A model's own path may refuse a way of fitting (`bayes_learner`: schedules, lr, wd)."
        check = getattr(self._path, "check_fit", None)
        if check is not None:
            check(how, lr, wd)

    def _fit(self, n_epoch, lr=None, wd=None, cbs=None, reset_opt=False, start_epoch=0):
        n_epoch = _check_epochs(n_epoch)
        start_epoch = check_int("start_epoch", start_epoch, 0)
        if lr is not None:
            lr = _positive_float("lr", lr)
        if wd is not None:
            wd = _positive_float("wd", wd, allow_zero=True)
        if len(self.dls.train) < 1:
            raise ValueError(f"the training set has {self.dls.train.n} rows, fewer than one batch of "
                             f"bs={self.dls.train.bs}: lower bs")
        cbs = [c() if isinstance(c, type) else c for c in _listify(cbs)]
        for c in cbs:
            if not isinstance(c, Callback):
                raise TypeError(f"cbs must be Callback instances or classes, got {c!r}")
        if start_epoch:
            cbs.append(_SkipToEpoch(start_epoch))
        if self.opt is None or reset_opt:
            self.create_opt()
        if wd is None:
            wd = self.wd
        if wd is not None:
            self.opt.set_hypers(wd=wd)
        self.opt.set_hypers(lr=self.lr if lr is None else lr)
        self.n_epoch = n_epoch
        if hasattr(self._path, "set_epochs"):
            self._path.set_epochs(n_epoch)
        with self.added_cbs(cbs):
            self._run_fit()

    def _run_fit(self):
        old_handler = None
        self._interrupted = False
        try:
            if threading.current_thread() is threading.main_thread():
                try:
                    old_handler = signal.signal(signal.SIGINT, self._on_interrupt)
                except (ValueError, OSError):
                    old_handler = None
            self._do_fit()
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)

    def _on_interrupt(self, signum, frame):
        "Ctrl-C during fit: stop cleanly after the running segment; a second Ctrl-C aborts."
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True

    def _with_events(self, f, name, exc):
        try:
            self(f"before_{name}")
            f()
        except exc:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    def _do_fit(self):
        ok, logger = False, self.logger   # callbacks rewire the logger for one fit only
        try:
            self._path.begin_fit()
            self.epoch, self.train_iter, self.training = 0, 0, False
            self.n_iter, self.iter = self._path.n_iter, 0
            self._with_events(self._do_epochs, "fit", CancelFitException)
            ok = True
        finally:
            self._snap_bufs = None   # the segment copies' buffers live for one fit only
            self.training = False
            self.model.eval()
            if not ok:   # an error: leave nothing drawn or rewired by the callbacks
                for cb in list(self.cbs):
                    if hasattr(cb, "cleanup_fit"):
                        cb.cleanup_fit()
            self.logger = logger

    def _do_epochs(self):
        for epoch in range(self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)
            if self._interrupted:
                self.logger(f"interrupted: stopped after epoch {epoch}")
                raise CancelFitException()

    def _do_epoch(self):
        self.n_iter, self.iter = self._path.n_iter, 0
        self._with_events(self._all_segments, "train", CancelTrainException)
        self.valid_values = None
        self._with_events(self._do_validate, "validate", CancelValidException)

    def _all_segments(self):
        path = self._path
        self.n_iter = n_iter = path.n_iter
        unit = path.granularity
        path.begin_epoch(self.data_rng)
        total = self.n_epoch * n_iter
        first = getattr(path, "first_segment", 64)
        self.iter, seg = 0, unit * max(1, min(n_iter // unit, first // unit or 1))
        while self.iter < n_iter:
            if self.seg_max is not None:
                seg = max(unit, min(seg, self.seg_max // unit * unit))
            n = min(seg, n_iter - self.iter)
            self.seg_n, self.seg_done = n, 0
            it = self.epoch * n_iter + self.iter + np.arange(n)
            self.seg_pos = it / total
            self.seg_lrs = np.full(n, float(self.opt.hypers["lr"]))
            self.seg_moms = np.full(n, float(self.opt.hypers.get("mom", 0.0)))
            self.seg_losses = np.zeros(n)
            t0 = time.perf_counter()
            bad = -1
            snap = self._segment_copy() if path.restorable else None
            try:
                self("before_segment")
                lrs = np.ascontiguousarray(self.seg_lrs, dtype=np.float64)
                moms = np.ascontiguousarray(self.seg_moms, dtype=np.float64)
                if lrs.shape != (n,) or moms.shape != (n,):
                    raise ValueError(f"a callback set seg_lrs/seg_moms to shapes {lrs.shape}/{moms.shape}, "
                                     f"expected ({n},)")
                self.seg_lrs, self.seg_moms = lrs, moms
                bad = path.run(self.iter, lrs, moms, self.seg_losses)
                done = self.seg_done = n if bad < 0 else bad
                # the last batch's loss; a diverged one is the non-finite loss (unknown for a block)
                self.loss = float(self.seg_losses[n - 1] if bad < 0 else
                                  float("nan") if self.train_mode == "sparse" else self.seg_losses[bad])
                if done:   # the optimizer's hyperparameters are the last ones used (fastai's)
                    self.opt.set_hypers(lr=float(lrs[done - 1]))
                    if "mom" in self.opt.hypers:
                        self.opt.set_hypers(mom=float(moms[done - 1]))
                self("after_segment")
            except CancelBatchException:
                self.seg_done = n
                self("after_cancel_batch")
            broken = snap is not None and not _all_finite(snap)
            if broken:   # put back the segment's start: "before the bad batch" is already broken
                for a, saved in snap:
                    np.copyto(a, saved)
            if bad >= 0 or broken:
                if bad < 0:   # every loss finite, but the last update overflowed
                    bad, self.loss = self.seg_done - 1, float("inf")
                msg = path.diverged(self.epoch, self.iter + bad, self.loss, float(self.seg_lrs[bad]))
                if broken:   # the path's "keeps its parameters from before..." no longer holds
                    msg = (msg.split(";")[0] + "; an earlier update had already made parameters or "
                           f"optimizer state non-finite, so the model and the optimizer were put back as "
                           f"they were at {path.unit} {self.iter} of this epoch. Try a lower learning rate.")
                raise TrainingDivergedError(msg)
            self.iter += self.seg_done
            if self._interrupted and self.iter < n_iter:
                units = path.unit + ("es" if path.unit.endswith("ch") else "s")
                self.logger(f"interrupted: stopped in epoch {self.epoch} after {self.iter} of {n_iter} "
                            f"{units}; the model keeps every update made so far")
                raise CancelFitException()
            # segments of about a quarter second: Ctrl-C, the bar and callbacks respond that fast
            dt = max(time.perf_counter() - t0, 1e-6)
            seg = max(unit, min(n_iter, int(n * _SEGMENT_SECONDS / dt) // unit * unit))

    def _segment_copy(self):
        """(live array, copy) pairs of the model's floating tensors and the optimizer's buffers,
        taken at the start of a segment (see `TrainingPath.restorable`). The copies go to the
        same buffers segment after segment (kept for one fit): a fresh copy of a large model each
        segment cost the kernel's page faults (7-34 ms an epoch at the 25M shape, against 5-7
        ms to copy into buffers already there)."""
        live = [t.numpy() if hasattr(t, "numpy") else np.asarray(t) for t in self.model.state_dict().values()]
        live += list(self.opt.state.values())
        live = [a for a in live if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size]
        bufs = getattr(self, "_snap_bufs", None) or []
        if len(bufs) != len(live) or any(b.shape != a.shape or b.dtype != a.dtype for a, b in zip(live, bufs)):
            bufs = [np.empty_like(a) for a in live]
        for a, b in zip(live, bufs):
            np.copyto(b, a)
        self._snap_bufs = bufs
        return list(zip(live, bufs))

    def _do_validate(self):
        self.valid_values = self._validate_values()

    # ------------------------------------------------------------------ schedules
    def _scheduled(self, n_epoch, scheds, cbs, lr, wd, reset_opt, start_epoch):
        self._fit(n_epoch, lr=lr, wd=wd, cbs=[ParamScheduler(scheds)] + _listify(cbs),
                  reset_opt=reset_opt, start_epoch=start_epoch)

    def _lr_max(self, lr_max):
        "lr_max checked, or self.lr; the optimizer is created first if needed (fastai's order)."
        if self.opt is None:
            self.create_opt()
        return self.lr if lr_max is None else _positive_float("lr_max", lr_max)

    @_exclusive
    def fit_one_cycle(self, n_epoch, lr_max=None, div=25.0, div_final=1e5, pct_start=0.25,
                      wd=None, moms=None, cbs=None, reset_opt=False, start_epoch=0):
        "fastai's one-cycle policy: cosine lr warm-up then annealing, momentum the other way."
        self._check_fit("fit_one_cycle")
        n_epoch = _check_epochs(n_epoch)
        div = _positive_float("div", div)
        div_final = _positive_float("div_final", div_final)
        pct_start = check_float("pct_start", pct_start, 0.0, 1.0)
        moms = self.moms if moms is None else tuple(float(m) for m in moms)
        if len(moms) != 3 or not all(0 <= m < 1 for m in moms):
            raise ValueError(f"moms must be three momentums in [0, 1), got {moms!r}")
        lr_max = self._lr_max(lr_max)
        scheds = {"lr": combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final),
                  "mom": combined_cos(pct_start, *moms)}
        self._scheduled(n_epoch, scheds, cbs, lr_max, wd, reset_opt, start_epoch)

    @_exclusive
    def fit_flat_cos(self, n_epoch, lr=None, div_final=1e5, pct_start=0.75, wd=None, cbs=None,
                     reset_opt=False, start_epoch=0):
        "fastai's flat-then-cosine policy: lr constant for pct_start of the fit, then cosine to lr/div_final."
        self._check_fit("fit_flat_cos")
        n_epoch = _check_epochs(n_epoch)
        div_final = _positive_float("div_final", div_final)
        pct_start = check_float("pct_start", pct_start, 0.0, 1.0)
        lr = self._lr_max(lr)
        scheds = {"lr": combined_cos(pct_start, lr, lr, lr / div_final)}
        self._scheduled(n_epoch, scheds, cbs, lr, wd, reset_opt, start_epoch)

    @_exclusive
    def fit_sgdr(self, n_cycles, cycle_len, lr_max=None, cycle_mult=2, cbs=None, reset_opt=False,
                 wd=None, start_epoch=0):
        "fastai's SGD with warm restarts: n_cycles cosine cycles from lr_max to 0, each cycle_mult times longer."
        self._check_fit("fit_sgdr")
        n_cycles = _check_epochs(n_cycles, "n_cycles")
        cycle_len = _check_epochs(cycle_len, "cycle_len")
        cycle_mult = check_int("cycle_mult", cycle_mult, 1)
        n_epoch = cycle_len * (cycle_mult ** n_cycles - 1) // (cycle_mult - 1) if cycle_mult != 1 else cycle_len * n_cycles
        pcts = [cycle_len * cycle_mult ** i / n_epoch for i in range(n_cycles)]
        lr_max = self._lr_max(lr_max)
        scheds = {"lr": combine_scheds(pcts, [SchedCos(lr_max, 0) for _ in range(n_cycles)])}
        self._scheduled(n_epoch, scheds, cbs, lr_max, wd, reset_opt, start_epoch)

    @_exclusive
    def lr_find(self, start_lr=1e-7, end_lr=10, num_it=100, stop_div=True, show_plot=True,
                suggest_funcs=("valley",)):
        """fastai's `lr_find`: `fit` with an exponential lr from start_lr to end_lr over num_it
        batches (blocks on the sparse path; at least 6), no validation, stopped by `LRFinder`
        when the smoothed loss exceeds 4x its best; momentum and wd as the optimizer has them.
        The model, the optimizer (state, hyperparameters, or its absence) and the data order are
        restored afterwards; `learn.recorder` holds the run's lrs and smoothed losses. Returns
        `SuggestedLRs(valley=...)` (one field per suggestion function; None for
        `suggest_funcs=None`) and draws `plot_lr_find` if `show_plot`."""
        self._check_fit("lr_find")
        start_lr, end_lr = _positive_float("start_lr", start_lr), _positive_float("end_lr", end_lr)
        if not start_lr < end_lr:
            raise ValueError(f"start_lr must be below end_lr, got {start_lr} and {end_lr}")
        num_it = check_int("num_it", num_it, 1)
        funcs = suggest_funcs_list(suggest_funcs)
        if len(self.dls.train) < 1:
            raise ValueError(f"the training set has {self.dls.train.n} rows, fewer than one batch of "
                             f"bs={self.dls.train.bs}")
        n_epoch = num_it // self._path.n_iter + 1
        finder = LRFinder(start_lr, end_lr, num_it, stop_div)
        finder.saved = self._snapshot()   # before fit creates an optimizer: restored without one
        with self.no_logging():
            self._fit(n_epoch, cbs=finder)
        if funcs is None:
            if show_plot:
                plot_lr_find(self.recorder)
            return None
        return suggest_lrs(self.recorder, num_it, funcs, show_plot)

    def _snapshot(self):
        "Model parameters, optimizer (or its absence) and data order, for `_restore`."
        return ({k: np.array(v) for k, v in self.model.state_dict().items()},
                None if self.opt is None else self.opt.state_dict(),
                self.data_rng.bit_generator.state)

    def _restore(self, snap):
        model_sd, opt_sd, rng_state = snap
        self.model.load_state_dict(model_sd)
        if opt_sd is None:
            self.opt = None
        else:
            self.opt.load_state_dict(opt_sd)
        self.data_rng.bit_generator.state = rng_state

    # ------------------------------------------------------------------ evaluation
    def _validate_values(self, dl=None):
        dl = self.dls.valid if dl is None else dl
        if dl.n == 0:
            return [float("nan")] + [float("nan")] * len(self.metrics)
        preds = predict_array(self.model, dl.x)
        loss = _core.mse_forward(preds, dl.y)
        return [loss] + [float(m(preds, dl.y)) for m in self.metrics]

    @_exclusive
    def validate(self, ds_idx=1, dl=None):
        "`[valid_loss, *metrics]` on the validation set (or `dl`)."
        dl = self.dls[ds_idx] if dl is None else dl
        return self._validate_values(dl)

    @property
    def final_record(self):
        "`[train_loss, valid_loss, *metrics]` of the last epoch (fastai's)."
        return self.recorder.final_record

    def summary(self):
        """The model's layers with their parameter shapes and counts, the optimizer and its
        hyperparameters, the loss, the training path and the callbacks (fastai's summary)."""
        m = self.model
        lines = [f"{type(m).__name__} (Input shape: {self.dls.train.bs} x 2)", "=" * 66,
                 f"{'Layer (type)':<34}{'Output/param shape':<22}{'Param #':>10}", "=" * 66]
        total = 0
        for name, p in m.named_parameters():
            n = int(np.prod(p.shape))
            total += n
            lines.append(f"{name:<34}{str(tuple(p.shape)):<22}{n:>10,}")
        for name, buf in m.named_buffers():
            lines.append(f"{name + ' (buffer)':<34}{str(tuple(buf.shape)):<22}{'':>10}")
        decayed = param_groups(m, self.wd_bn_bias)[0]
        lines += ["=" * 66, f"Total params: {total:,}", f"Total trainable params: {total:,}",
                  f"Params with weight decay: {sum(int(np.prod(p.shape)) for p in decayed):,}", ""]
        opt = self.opt if self.opt is not None else self._new_opt()
        if self.opt is None and self.wd is not None:
            opt.set_hypers(wd=self.wd)
        hypers = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in opt.hypers.items())
        lines += [f"Optimizer used: {type(opt).__name__} ({hypers})",
                  f"Loss function: {self.loss_func!r}",
                  f"Training path: {self._path.kind}" + (f" ({self.n_blocks}x{self.n_blocks} blocks, "
                                                          f"{self.n_threads} threads)" if self.train_mode == "sparse" else ""),
                  "", "Callbacks:"] + [f"  - {type(c).__name__}" for c in sorted(self.cbs, key=lambda c: c.order)]
        return _Summary("\n".join(lines))

    def __repr__(self):
        return f"Learner(model={type(self.model).__name__}, opt_func={getattr(self.opt_func, '__name__', self.opt_func)})"

    # ------------------------------------------------------------------ inference
    @_exclusive
    def get_preds(self, ds_idx=1, dl=None, with_input=False, with_decoded=False, with_loss=False,
                  act=None, reorder=True):
        "fastai's `get_preds`: `[inputs,] preds, targs[, decoded][, losses]` (see `collabc.inference.get_preds`)."
        return inference.get_preds(self, ds_idx, dl, with_input, with_decoded, with_loss, act, reorder)

    @_exclusive
    def predict(self, row, unknown="raise"):
        "fastai's `predict` for one row: `(full_dec, dec_pred, pred)` (see `collabc.inference.predict`)."
        return inference.predict(self, row, unknown)

    @_exclusive
    def show_results(self, ds_idx=1, dl=None, max_n=9, shuffle=True):
        "fastai's `show_results`: shows and returns `max_n` rows with their predictions."
        return inference.show_results(self, ds_idx, dl, max_n, shuffle)

    @_exclusive
    def recommend(self, user, n=10, exclude_seen=True, threads=None):
        "Top-n items for a user id or `FoldIn` (DataFrame item, score), or for a list of users (long DataFrame)."
        return topn.recommend(self, user, n, exclude_seen, threads)

    @_exclusive
    def recommend_many(self, users, n=10, exclude_seen=True, threads=None):
        "Top-n items for each of many users at once: a DataFrame user, rank, item, score."
        users = [users] if isinstance(users, (str, bytes)) or np.ndim(users) == 0 else list(users)
        return topn.recommend(self, users, n, exclude_seen, threads)

    @_exclusive
    def recommend_users(self, item, n=10, exclude_seen=True, threads=None):
        "The n users predicted to rate an item id (or a new item `FoldIn`) highest."
        return topn.recommend_users(self, item, n, exclude_seen, threads)

    @_exclusive
    def most_similar(self, x, n=10, metric="cosine", is_item=True):
        "The n items (users with is_item=False) closest to `x` by factor similarity, as a DataFrame."
        return interpret.most_similar(self, x, n, metric, is_item)

    @_exclusive
    def fold_in_user(self, ratings, name=None, **kwargs):
        "A new user (`FoldIn`) solved from a handful of {item: rating} with the model frozen."
        return foldin.fold_in(self, ratings, is_item=False, name=name, **kwargs)

    @_exclusive
    def fold_in_item(self, ratings, name=None, **kwargs):
        "A new item (`FoldIn`) solved from a handful of {user: rating} with the model frozen."
        return foldin.fold_in(self, ratings, is_item=True, name=name, **kwargs)

    @_exclusive
    def average_user(self):
        "The lesson's fallback for a user without ratings: the mean trained user, as a `FoldIn`."
        return foldin.average_embedding(self, is_item=False)

    @_exclusive
    def average_item(self):
        "The mean trained item, as a `FoldIn`."
        return foldin.average_embedding(self, is_item=True)

    @_exclusive
    def ranking_metrics(self, k=10, ds_idx=1, threshold=None):
        "precision@k, recall@k, NDCG@k and MAP@k on the validation set (see `collabc.ranking`)."
        return ranking.ranking_metrics(self, k, ds_idx, threshold)

    def seen(self, by_item=False):
        "The training (user, item) pairs as CSR (see `DataLoader.seen`), per user or per item."
        return self.dls.train.seen(self.dls.n_users, self.dls.n_items, by_item)

    # ------------------------------------------------------------------ files
    def _model_file(self, name):
        p = pathlib.Path(name)
        if p.suffix == "":
            p = p.with_suffix(".npz")
        return p if p.is_absolute() else pathlib.Path(self.path) / self.model_dir / p

    @_exclusive
    def save(self, name, with_opt=True):
        """fastai's `save`: the model, and with `with_opt` the optimizer's state (every buffer,
        hyperparameters, step count) and the learner's data order, to
        `path/model_dir/name.npz`; returns the path."""
        return checkpoint.save(self, self._model_file(name), with_opt)

    @_exclusive
    def load(self, name, with_opt=True, strict=True):
        """fastai's `load`: reads `path/model_dir/name.npz` written by `save`; the whole file is
        checked against the model and the optimizer before anything changes (a bad file raises
        `CollabcFileError` and leaves the learner as it was). Returns the learner."""
        checkpoint.load(self, self._model_file(name), with_opt, strict)
        return self

    @_exclusive
    def export(self, fname="export.npz", with_seen=True):
        "fastai's `export` without pickle: an inference-ready learner in `path/fname` (read with `load_learner`)."
        p = pathlib.Path(fname)
        return checkpoint.export(self, p if p.is_absolute() else pathlib.Path(self.path) / p, with_seen)


class _SkipToEpoch(Callback):
    "fastai's SkipToEpoch: `fit(..., start_epoch=n)` skips the first n epochs (their schedule too)."
    order = TrainEvalCallback.order + 1

    def __init__(self, start_epoch):
        self.start_epoch = start_epoch

    def before_epoch(self):
        if self.epoch < self.start_epoch:
            raise CancelEpochException()


def _listify(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def load_learner(fname, cpu=True, model=None):
    """fastai's `load_learner`: rebuild an exported `Learner` from `fname` (never unpickles).
    Its `dls` holds the classes and column names and no rows (so `dls.test_dl(df)` works); the
    model gives identical predictions to the exported one. A built-in model is rebuilt from the
    file's configuration; the weights of a model you wrote go into one you build and pass as
    `model=MyModel(...)` (a file never names code to import). `cpu` is accepted for fastai
    compatibility (collabc only runs on the CPU). Everything in the file is checked (see
    `collabc.persist`) before the model is built; a bad file raises `CollabcFileError`."""
    dls, model, kwargs, extras = checkpoint.read_export(fname, model)
    try:
        learn = _LEARNERS.get(type(model).__name__, Learner)(dls, model, path=pathlib.Path(fname).parent, **kwargs)
        learn._new_opt()  # the optimizer's stored keyword arguments, checked now, not at fit
    except (TypeError, ValueError, OverflowError) as e:
        raise checkpoint.CollabcFileError(f"{fname}: its learner settings are invalid ({e})") from None
    learn.noise_var = extras.get("noise_var")
    return learn


def collab_learner(dls, n_factors=50, use_nn=False, emb_szs=None, layers=None, config=None,
                   y_range=None, loss_func=None, **kwargs):
    """fastai's `collab_learner`: `EmbeddingDotBias.from_classes(n_factors, dls.classes,
    y_range=y_range)`, or with `use_nn=True` an `EmbeddingNN(get_emb_sz(dls, emb_szs), layers
    (default [n_factors]), **config)` where `emb_szs` is a {column: size} override dict and
    `config` a `tabular_config(...)` dict; in a `Learner` (other kwargs go to `Learner`)."""
    if use_nn:
        if emb_szs is not None and not isinstance(emb_szs, dict):
            raise TypeError(f"emb_szs must be a dict {{column name: embedding size}}, got {emb_szs!r}")
        emb_szs = get_emb_sz(dls, {} if emb_szs is None else emb_szs)
        config = tabular_config() if config is None else dict(config)
        unknown = set(config) - set(tabular_config())
        if unknown:
            raise TypeError(f"config has unknown keys {sorted(unknown)}; see tabular_config()")
        if y_range is not None:
            config["y_range"] = y_range
        layers = [n_factors] if layers is None else layers
        model = EmbeddingNN(emb_szs=emb_szs, layers=layers, **config)
    else:
        model = EmbeddingDotBias.from_classes(n_factors, dls.classes, y_range=y_range)
    return Learner(dls, model, loss_func=loss_func, **kwargs)


def bayes_learner(dls, n_factors=10, n_samples=500, burn_in=50, implicit='both', date_name=None,
                  user_meta=None, item_meta=None, seed=None, n_threads=None, n_draws=25,
                  sweeps_per_epoch=None, metrics=None, cbs=None, path=None, model_dir="models",
                  user_day=True, **kwargs):
    """A `Learner` over a Bayesian factorization machine fitted by Gibbs sampling (issue 19;
    `collabc.bayes`, docs/bayes.md): biases and rank-`n_factors` factors for users and items,
    with `implicit` 'both' (the items each user rated and the users who rated each item as
    extra features), 'user' or 'none', the rating's day (`date_name`; with `user_day`, the
    default, also the rating's (user, day) pair: a per-user day effect) and user/item metadata
    (DataFrames indexed by raw id); hyperpriors re-sampled every sweep; predictions averaged
    over the `n_samples - burn_in` sweeps after `burn_in`.

    `learn.fit()` runs the sweeps left to n_samples, `learn.fit(n)` n epochs more; an epoch is
    `sweeps_per_epoch` sweeps (default n_samples / 10, so `fit()` prints about ten rows): its
    row shows the smoothed training MSE of the sweeps' samples and the valid MSE of the averaged
    prediction so far (the current sample's during burn-in). There is no learning rate:
    `fit_one_cycle`, `fit_flat_cos`, `fit_sgdr`, `lr_find` and `fit(lr=...)` raise. `n_draws`
    evenly spaced samples are kept for predictions beyond the validation rows, `recommend`,
    `most_similar`, `pca`, fold-in and `export` (see `collabc.bayes.BayesModel`). Other keyword
    arguments go to `bayes_fm` (factor_prior: 'auto', 'gamma' or 'wishart', the factors'
    hyperprior; priors: alpha_0, beta_0, gamma_0, mu_0, reg_0, init_std)."""
    model = BayesModel.from_dls(dls, n_factors=n_factors, n_samples=n_samples, burn_in=burn_in,
                                implicit=implicit, date_name=date_name, user_meta=user_meta,
                                item_meta=item_meta, seed=seed, n_threads=n_threads, n_draws=n_draws,
                                sweeps_per_epoch=sweeps_per_epoch, user_day=user_day, **kwargs)
    return Learner(dls, model, metrics=metrics, cbs=cbs, path=path, model_dir=model_dir)
