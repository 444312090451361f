"""`Learner`: fastai's training loop over a collabc model, with the loops in C.

Python holds the policy (epochs, the per-batch lr/mom schedule, validation, the recorder and
the epoch table); each training epoch is one call into the C driver with the GIL released.
"""
import contextlib
import functools
import math
import os
import signal
import pathlib
import threading
import time

import numpy as np

from . import _core
from .display import EpochTable, ProgressBar, format_time
from .metrics import MSELossFlat
from .models import EmbeddingDotBias, EmbeddingNN, Module, get_emb_sz, tabular_config
from .optim import Adam, Optimizer

__all__ = ["Learner", "Recorder", "collab_learner", "TrainingDivergedError"]


def _exclusive(method):
    """One thread at a time per Learner: a call while another thread trains or predicts with it
    is refused before it changes anything (the same thread may re-enter, e.g. lr_find -> fit)."""
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


class TrainingDivergedError(FloatingPointError):
    "The training loss became NaN or inf; the model holds its parameters from before that batch."


class Recorder:
    """What fastai's Recorder keeps: `values` (per epoch `[train_loss, valid_loss, *metrics]`),
    `losses` (smoothed train loss after every batch), `lrs`, `moms`, `iters`, `metric_names`.
    The train loss shown is fastai's debiased moving average (beta=0.98), reset at each fit."""
    def __init__(self, beta=0.98):
        self.beta = beta
        self.values, self.losses, self.lrs, self.moms, self.iters = [], [], [], [], []
        self.times, self.metric_names = [], []
        self.hps = {}

    def _begin_fit(self, metric_names, scheduled):
        self.values, self.losses, self.lrs, self.moms, self.iters, self.times = [], [], [], [], [], []
        self.hps = {"lr": [], "mom": []} if scheduled else {}
        self.metric_names = ["epoch", "train_loss", "valid_loss", *metric_names, "time"]
        self._val, self._count = 0.0, 0

    def _add_batches(self, losses, lrs, moms):
        "Smooth raw batch losses as fastai's AvgSmoothLoss does and record lr/mom per batch."
        b = self.beta
        val, count = self._val, self._count
        out = np.empty(len(losses))
        for j, loss in enumerate(losses):  # one value per batch, so a Python loop is cheap
            val = b * val + (1 - b) * float(loss)
            count += 1
            out[j] = val / (1 - b ** count)
        self._val, self._count = val, count
        self.losses.extend(out.tolist())
        self.lrs.extend(np.asarray(lrs).tolist())
        self.moms.extend(np.asarray(moms).tolist())
        if "lr" in self.hps:
            self.hps["lr"].extend(np.asarray(lrs).tolist())
            self.hps["mom"].extend(np.asarray(moms).tolist())

    @property
    def smooth_loss(self):
        return self._val / (1 - self.beta ** self._count) if self._count else float("nan")

    @property
    def final_record(self):
        return self.values[-1] if self.values else None

    def plot_loss(self, skip_start=5, with_valid=True, ax=None):
        "Smoothed train loss per batch, and valid loss at each epoch end (needs matplotlib)."
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(list(range(skip_start, len(self.losses))), self.losses[skip_start:], label="train")
        if with_valid and self.values:
            ax.plot(self.iters, [v[1] for v in self.values], label="valid")
            ax.legend()
        return ax

    def plot_sched(self, keys=None, figsize=None):
        "The scheduled hyperparameters of the last fit, one panel each (needs matplotlib)."
        import matplotlib.pyplot as plt
        keys = list(self.hps) if keys is None else keys
        if not keys:
            raise ValueError("no schedule was recorded: fit with fit_one_cycle first")
        fig, axs = plt.subplots(1, len(keys), figsize=figsize or (6 * len(keys), 4))
        for ax, k in zip(np.atleast_1d(axs), keys):
            ax.plot(self.hps[k])
            ax.set_ylabel(k)
        return fig

    def plot_lr_find(self, skip_end=5, suggestions=None, nms=None):
        "The last `lr_find`: smoothed loss against lr on a log scale (see `collabc.interpret.plot_lr_find`)."
        from .interpret import plot_lr_find
        return plot_lr_find(self, skip_end, suggestions, nms)


def _check_epochs(n_epoch):
    if isinstance(n_epoch, bool) or not isinstance(n_epoch, (int, np.integer)) or n_epoch < 1:
        raise ValueError(f"n_epoch must be a positive integer, got {n_epoch!r}")
    return int(n_epoch)


def _positive_float(name, v, allow_zero=False):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {v!r}")
    return f


class Learner:
    """fastai's `Learner` for collabc models: `fit`, `fit_one_cycle`, `validate`, a `recorder`.

    `opt_func` is `Adam` (default) or `SGD`, or a `functools.partial` of them; `loss_func` must
    be `MSELossFlat` (the C core trains with MSE); `metrics` are functions of
    `(preds, targs)` such as `rmse` and `mae`; `wd=None` keeps the optimizer's default
    (fastai Adam: 0.01).

    `train_mode='exact'` (default) is fastai's training, step for step: mini-batches of `bs`,
    dense optimizer updates of every parameter. `train_mode='sparse'` is the fast path for large
    data (dot-product models): rating by rating, each update touches only its own user and
    item rows (SGD, row-wise `Adagrad`, or lazy `Adam`, with `wd` as an L2 penalty on those
    rows), over a grid of blocks that `n_threads` threads (default: all cores) train at once
    without sharing a row; the result does not depend on the number of threads. Its learning
    rates and weight decays are per rating, so they differ from the exact path's (e.g.
    `Adagrad` with lr 0.05 and wd 0.02).

    Ctrl-C during `fit` stops cleanly after the running segment (about a quarter of a second
    of work): the model keeps every update, the recorder stays consistent (an epoch whose
    batches all ran is validated and gets its row; a cut epoch gets none)."""
    def __init__(self, dls, model, loss_func=None, opt_func=Adam, lr=1e-3, metrics=None,
                 wd=None, wd_bn_bias=False, moms=(0.95, 0.85, 0.95), path=None, model_dir="models",
                 train_mode="exact", n_threads=None):
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
        self.wd_bn_bias = bool(wd_bn_bias)
        if train_mode not in ("exact", "sparse"):
            raise ValueError(f"train_mode must be 'exact' (fastai's dense training, the default) or "
                             f"'sparse' (the fast path for large data), got {train_mode!r}")
        if train_mode == "sparse" and not hasattr(model, "_fit_blocks"):
            raise ValueError(f"train_mode='sparse' trains the dot-product models only, not "
                             f"{type(model).__name__}")
        self.train_mode = train_mode
        if n_threads is None:
            n_threads = os.cpu_count() or 1
        if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or not 1 <= n_threads <= 64:
            raise ValueError(f"n_threads must be an integer in [1, 64], got {n_threads!r}")
        self.n_threads = int(n_threads)
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
        self.recorder = Recorder()
        self.show_table = True
        self.logger = print
        self._grads = None
        self._lock = threading.RLock()
        self._check_model_fits_data()

    def _check_model_fits_data(self):
        m, dls = self.model, self.dls
        for dl, which in ((dls.train, "train"), (dls.valid, "valid")):
            x = dl.x
            if len(x) and (x[:, 0].max() >= m.n_users or x[:, 1].max() >= m.n_items):
                raise ValueError(f"the model has {m.n_users} users and {m.n_items} items but the "
                                 f"{which} data holds indices up to {x[:, 0].max()} and {x[:, 1].max()}")

    # ------------------------------------------------------------------ optimizer
    def create_opt(self):
        "Create the optimizer from `opt_func` for the model's parameter block."
        opt = self.opt_func(self.model.n_params, lr=self.lr)
        if not isinstance(opt, Optimizer):
            raise TypeError(f"opt_func must create a collabc optimizer (Adam or SGD), got {type(opt).__name__}")
        if opt.kind == "adagrad" and self.train_mode != "sparse":
            raise TypeError("Adagrad is available on the sparse path only: "
                            "Learner(..., train_mode='sparse')")
        self.opt = opt
        if self.wd is not None:
            self.opt.set_hypers(wd=self.wd)

    # ------------------------------------------------------------------ training
    @_exclusive
    def fit(self, n_epoch, lr=None, wd=None, reset_opt=False):
        "Train `n_epoch` epochs at a constant `lr` (default `self.lr`)."
        n_epoch = _check_epochs(n_epoch)
        self._prepare(lr, wd, reset_opt)
        n_iter = self._iters_per_epoch()
        lr = self.opt.hypers["lr"]
        mom = self.opt.hypers["mom"]
        lrs = np.full(n_epoch * n_iter, lr)
        moms = np.full(n_epoch * n_iter, mom)
        self._run(n_epoch, lrs, moms, scheduled=False)

    @_exclusive
    def fit_one_cycle(self, n_epoch, lr_max=None, div=25.0, div_final=1e5, pct_start=0.25,
                      wd=None, moms=None, reset_opt=False):
        "fastai's one-cycle policy: cosine lr warm-up then annealing, momentum the other way."
        n_epoch = _check_epochs(n_epoch)
        div = _positive_float("div", div)
        div_final = _positive_float("div_final", div_final)
        pct_start = float(pct_start)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"pct_start must be in [0, 1], got {pct_start!r}")
        moms = self.moms if moms is None else tuple(float(m) for m in moms)
        if len(moms) != 3 or not all(0 <= m < 1 for m in moms):
            raise ValueError(f"moms must be three momentums in [0, 1), got {moms!r}")
        self._prepare(lr_max, wd, reset_opt)
        lr_max = self.opt.hypers["lr"]
        n_iter = self._iters_per_epoch()
        pos = np.arange(n_epoch * n_iter, dtype=np.float64) / (n_epoch * n_iter)
        lrs = _core.onecycle(pos, lr_max / div, lr_max, lr_max / div_final, pct_start)
        mom_s = _core.onecycle(pos, moms[0], moms[1], moms[2], pct_start)
        self._run(n_epoch, lrs, mom_s, scheduled=True)

    def _prepare(self, lr, wd, reset_opt):
        if lr is not None:
            lr = _positive_float("lr", lr)
        if wd is not None:
            wd = _positive_float("wd", wd, allow_zero=True)
        if len(self.dls.train) < 1:
            raise ValueError(f"the training set has {self.dls.train.n} rows, fewer than one batch of "
                             f"bs={self.dls.train.bs}: lower bs")
        if self.opt is None or reset_opt:
            self.create_opt()
        if wd is None:
            wd = self.wd
        if wd is not None:
            self.opt.set_hypers(wd=wd)
        self.opt.set_hypers(lr=self.lr if lr is None else lr)

    def _run(self, n_epoch, lrs, moms, scheduled):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this Learner is busy in another thread; use one Learner per thread")
        old_handler = None
        self._interrupted = False
        try:
            if threading.current_thread() is threading.main_thread():
                try:
                    old_handler = signal.signal(signal.SIGINT, self._on_interrupt)
                except (ValueError, OSError):
                    old_handler = None
            self._fit_epochs(n_epoch, lrs, moms, scheduled)
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            self._lock.release()

    def _on_interrupt(self, signum, frame):
        "Ctrl-C during fit: stop cleanly after the running segment; a second Ctrl-C aborts."
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True

    # ------------------------------------------------------------------ the training paths
    def _iters_per_epoch(self):
        "Scheduled iterations per epoch: batches (exact path) or blocks (sparse path)."
        if self.train_mode == "sparse":
            return self._n_blocks() ** 2
        return len(self.dls.train)

    def _n_blocks(self):
        "Blocks per side of the sparse path's grid: enough strata to keep every thread busy."
        return max(8, 4 * self.n_threads)

    def _exact_runner(self, epoch_lrs, epoch_moms):
        "Trains batches [done, done + n) of this epoch's order on the exact path."
        dl = self.dls.train
        if self._grads is None or self._grads.size != self.model.n_params:
            self._grads = np.zeros(self.model.n_params, np.float32)
        order, bs = dl.order(), dl.bs
        n_wd = self.model.n_params if self.wd_bn_bias else None

        def run(done, n, losses):
            return self.model._fit_epoch(self.opt, self._grads, dl.x, dl.y,
                                         order[done * bs:(done + n) * bs], bs,
                                         epoch_lrs[done:done + n], epoch_moms[done:done + n],
                                         losses[done:done + n], n_wd=n_wd)
        return run, 1

    def _sparse_runner(self, epoch_lrs, epoch_moms):
        "Trains blocks [done, done + n) of this epoch's random strata on the sparse path."
        dl, nb = self.dls.train, self._n_blocks()
        starts = self._block_starts(dl, nb)
        state = self._sparse_state()
        rng = dl.rng
        strata, groups = rng.permutation(nb), rng.permutation(nb)
        blocks = np.array([g * nb + (g + s) % nb for s in strata for g in groups], dtype=np.int64)

        def run(done, n, losses):
            return self.model._fit_blocks(self.opt, state, dl.x, dl.y, starts,
                                          blocks[done:done + n], epoch_lrs[done:done + n],
                                          losses[done:done + n], float(epoch_moms[done]),
                                          self.n_threads)
        return run, nb

    def _block_starts(self, dl, nb):
        """Groups the training rows in place into nb x nb blocks (once per loader): the rows'
        order is irrelevant to training, and `dl.df` keeps matching the rows."""
        cached = getattr(dl, "_blocks", None)
        if cached is not None and cached[0] == nb and cached[1] is dl.x:
            return cached[2]
        if getattr(dl, "_rows", None) is None and getattr(dl, "_df", None) is not None:
            dl._src, dl._rows, dl._df = dl._df, np.arange(dl.n, dtype=np.int64), None
        rows = getattr(dl, "_rows", None)
        extra = None
        if rows is not None:
            # permuted in place along with the rows (a view into the split's permutation is
            # fine: only this loader's part of it moves)
            if rows.dtype not in (np.int32, np.int64) or not rows.flags.c_contiguous or not rows.flags.writeable:
                rows = np.ascontiguousarray(rows, dtype=np.int64)
            dl._rows, dl._df, extra = rows, None, rows
        starts = _core.block_sort(dl.x, dl.y, extra, nb, self.n_threads)
        dl._blocks = (nb, dl.x, starts)
        return starts

    def _sparse_state(self):
        "The sparse path's optimizer buffers, kept on the optimizer (they survive fits)."
        opt, m = self.opt, self.model
        rows = m.n_users + m.n_items
        if opt.kind == "adam":
            if getattr(opt, "pow1", None) is None or opt.pow1.size != rows:
                opt.pow1, opt.pow2 = np.ones(rows, np.float32), np.ones(rows, np.float32)
            return {"m": opt.m, "v": opt.v, "pow1": opt.pow1, "pow2": opt.pow2}
        if opt.kind == "adagrad":
            if opt.v.size != 2 * rows:
                opt.v = np.zeros(2 * rows, np.float32)
            return {"v": opt.v}
        return {}

    def _fit_epochs(self, n_epoch, lrs, moms, scheduled):
        n_iter = self._iters_per_epoch()
        rec = self.recorder
        rec._begin_fit([getattr(m, "name", getattr(m, "__name__", "metric")) for m in self.metrics],
                       scheduled)
        table = EpochTable(rec.metric_names, enabled=self.show_table, logger=self.logger)
        self.model.train()
        try:
            for epoch in range(n_epoch):
                t0 = time.perf_counter()
                sl = slice(epoch * n_iter, (epoch + 1) * n_iter)
                e_lrs, e_moms = np.ascontiguousarray(lrs[sl]), np.ascontiguousarray(moms[sl])
                make = self._sparse_runner if self.train_mode == "sparse" else self._exact_runner
                run, unit = make(e_lrs, e_moms)
                losses = np.zeros(n_iter)
                bar = ProgressBar(n_iter, enabled=self.show_table)
                done, seg = 0, unit * max(1, min(n_iter // unit, 64 // unit or 1))
                while done < n_iter and not self._interrupted:
                    n = min(seg, n_iter - done)
                    ts = time.perf_counter()
                    bad = run(done, n, losses)
                    ok = n if bad < 0 else bad
                    rec._add_batches(losses[done:done + ok], e_lrs[done:done + ok], e_moms[done:done + ok])
                    done += ok
                    if done:
                        self.opt.set_hypers(lr=float(e_lrs[done - 1]), mom=float(e_moms[done - 1]))
                    if bad >= 0:
                        what = "block" if self.train_mode == "sparse" else "batch"
                        raise TrainingDivergedError(
                            f"training diverged: the loss of epoch {epoch}, {what} {done} is "
                            f"{losses[done]} (lr={e_lrs[done]:.3g}); "
                            + ("the model keeps its parameters from before that batch. "
                               if self.train_mode != "sparse" else
                               "the rating that gave it was not applied, earlier ones were. ")
                            + "Try a lower learning rate.")
                    # segments of about a quarter second: Ctrl-C and the bar respond that fast
                    dt = max(time.perf_counter() - ts, 1e-6)
                    seg = max(unit, min(n_iter, int(n * 0.25 / dt) // unit * unit))
                    bar.update(done, time.perf_counter() - t0, f"{rec.smooth_loss:.4f}")
                bar.close()
                if done < n_iter:   # interrupted within the epoch
                    self.logger(f"interrupted: stopped in epoch {epoch} after {done} of {n_iter} "
                                f"{'blocks' if self.train_mode == 'sparse' else 'batches'}; the model "
                                f"keeps every update made so far")
                    break
                rec.iters.append(len(rec.losses))
                vals = self._validate_values()
                rec.values.append([rec.smooth_loss, *vals])
                elapsed = time.perf_counter() - t0
                rec.times.append(elapsed)
                table.row([epoch, rec.smooth_loss, *vals, format_time(elapsed)])
                if self._interrupted:   # during the epoch's last segment: the epoch is complete
                    self.logger(f"interrupted: stopped after epoch {epoch}")
                    break
        finally:
            self.model.eval()
            table.close()

    # ------------------------------------------------------------------ evaluation
    def _predict_dl(self, dl):
        return self.model._predict(dl.x)

    def _validate_values(self, dl=None):
        dl = self.dls.valid if dl is None else dl
        if dl.n == 0:
            return [float("nan")] + [float("nan")] * len(self.metrics)
        preds = self._predict_dl(dl)
        loss = _core.mse_forward(preds, dl.y)
        return [loss] + [float(m(preds, dl.y)) for m in self.metrics]

    @_exclusive
    def validate(self, ds_idx=1, dl=None):
        "`[valid_loss, *metrics]` on the validation set (or `dl`)."
        dl = self.dls[ds_idx] if dl is None else dl
        return self._validate_values(dl)

    @contextlib.contextmanager
    def no_bar(self):
        "Within this context, epochs print as plain lists instead of the table (fastai's no_bar)."
        old = self.show_table
        self.show_table = False
        try:
            yield self
        finally:
            self.show_table = old

    def __repr__(self):
        return f"Learner(model={type(self.model).__name__}, opt_func={getattr(self.opt_func, '__name__', self.opt_func)})"

    # ------------------ inference (issue 4)
    @_exclusive
    def get_preds(self, ds_idx=1, dl=None, with_input=False, with_decoded=False, with_loss=False,
                  act=None, reorder=True):
        "fastai's `get_preds`: `[inputs,] preds, targs[, decoded][, losses]` (see `collabc.inference.get_preds`)."
        from .inference import get_preds
        return get_preds(self, ds_idx, dl, with_input, with_decoded, with_loss, act, reorder)

    @_exclusive
    def predict(self, row, unknown="raise"):
        "fastai's `predict` for one row: `(full_dec, dec_pred, pred)` (see `collabc.inference.predict`)."
        from .inference import predict
        return predict(self, row, unknown)

    @_exclusive
    def show_results(self, ds_idx=1, dl=None, max_n=9, shuffle=True):
        "fastai's `show_results`: shows and returns `max_n` rows with their predictions."
        from .inference import show_results
        return show_results(self, ds_idx, dl, max_n, shuffle)

    @_exclusive
    def recommend(self, user, n=10, exclude_seen=True, threads=None):
        "Top-n items for a user id or `FoldIn` (DataFrame item, score), or for a list of users (long DataFrame)."
        from .inference import recommend
        return recommend(self, user, n, exclude_seen, threads)

    @_exclusive
    def recommend_many(self, users, n=10, exclude_seen=True, threads=None):
        "Top-n items for each of many users at once: a DataFrame user, rank, item, score."
        from .inference import recommend
        users = [users] if isinstance(users, (str, bytes)) or np.ndim(users) == 0 else list(users)
        return recommend(self, users, n, exclude_seen, threads)

    @_exclusive
    def recommend_users(self, item, n=10, exclude_seen=True, threads=None):
        "The n users predicted to rate an item id (or a new item `FoldIn`) highest."
        from .inference import recommend_users
        return recommend_users(self, item, n, exclude_seen, threads)

    @_exclusive
    def most_similar(self, x, n=10, metric="cosine", is_item=True):
        "The n items (users with is_item=False) closest to `x` by factor similarity, as a DataFrame."
        from .interpret import most_similar
        return most_similar(self, x, n, metric, is_item)

    @_exclusive
    def fold_in_user(self, ratings, name=None, **kwargs):
        "A new user (`FoldIn`) solved from a handful of {item: rating} with the model frozen."
        from .inference import fold_in
        return fold_in(self, ratings, is_item=False, name=name, **kwargs)

    @_exclusive
    def fold_in_item(self, ratings, name=None, **kwargs):
        "A new item (`FoldIn`) solved from a handful of {user: rating} with the model frozen."
        from .inference import fold_in
        return fold_in(self, ratings, is_item=True, name=name, **kwargs)

    @_exclusive
    def average_user(self):
        "The lesson's fallback for a user without ratings: the mean trained user, as a `FoldIn`."
        from .inference import average_embedding
        return average_embedding(self, is_item=False)

    @_exclusive
    def average_item(self):
        "The mean trained item, as a `FoldIn`."
        from .inference import average_embedding
        return average_embedding(self, is_item=True)

    @_exclusive
    def ranking_metrics(self, k=10, ds_idx=1, threshold=None):
        "precision@k, recall@k, NDCG@k and MAP@k on the validation set (see `collabc.ranking`)."
        from .ranking import ranking_metrics
        return ranking_metrics(self, k, ds_idx, threshold)

    @_exclusive
    def lr_find(self, start_lr=1e-7, end_lr=10, num_it=100, stop_div=True, show_plot=True,
                suggest_funcs=("valley",)):
        "fastai's `lr_find`; model and optimizer restored afterwards (see `collabc.interpret.lr_find`)."
        from .interpret import lr_find
        return lr_find(self, start_lr, end_lr, num_it, stop_div, show_plot, suggest_funcs)

    def _model_file(self, name):
        p = pathlib.Path(name)
        if p.suffix == "":
            p = p.with_suffix(".npz")
        return p if p.is_absolute() else pathlib.Path(self.path) / self.model_dir / p

    @_exclusive
    def save(self, name, with_opt=True):
        "fastai's `save`: the model (and optimizer state) to `path/model_dir/name.npz`; returns the path."
        from .persist import save_checkpoint
        return save_checkpoint(self, self._model_file(name), with_opt)

    @_exclusive
    def load(self, name, with_opt=True, strict=True):
        "fastai's `load`: read `path/model_dir/name.npz` written by `save`; returns the learner."
        from .persist import load_checkpoint
        return load_checkpoint(self, self._model_file(name), with_opt, strict)

    @_exclusive
    def export(self, fname="export.npz", with_seen=True):
        "fastai's `export` without pickle: an inference-ready learner in `path/fname` (read with `load_learner`)."
        from .persist import export_learner
        p = pathlib.Path(fname)
        return export_learner(self, p if p.is_absolute() else pathlib.Path(self.path) / p, with_seen)


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
