"""fastai's callbacks for collabc's training loop (fastai/callback/core.py, tracker.py,
progress.py and learner.py's Recorder), adapted to a loop whose batches run in C.

The loop (`Learner.fit`) calls every callback, in `order`, at each event:

    before_fit
      before_epoch
        before_train
          before_segment / after_segment     (a run of batches - or sparse blocks - in one C call)
        after_train
        before_validate / after_validate     (the whole validation set in one C call)
      after_epoch
    after_fit

and `after_cancel_<x>` when a callback raises `Cancel<X>Exception` (fit, epoch, train,
validate, batch). Batches run inside C, so there is no per-batch event; a segment is the unit
callbacks see: `learn.iter` (its first iteration in the epoch), `learn.seg_n`,
`learn.seg_losses` (each batch's loss, measured before its step), `learn.seg_lrs`,
`learn.seg_moms`, `learn.seg_pos` (each batch's position in the fit, 0 to 1), `learn.loss`
(the segment's last batch loss), `learn.train_iter`, `learn.pct_train`, `learn.smooth_loss`.
In `before_segment` a callback may rewrite `learn.seg_lrs` / `learn.seg_moms` (that is how
schedules work: `collabc.schedule.ParamScheduler`, `LRFinder`) or raise
`CancelBatchException` to skip the segment.

A callback reads the learner's attributes as its own (`self.epoch`, `self.model`,
`self.recorder`...), as in fastai. The recorder, the progress bar and the epoch table are
callbacks; so are early stopping, saving the best model, reducing the lr on a plateau, the CSV
log, the live loss graph and stopping on NaN.
"""
import csv
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from .display import EpochTable, ProgressBar, format_time, in_notebook

__all__ = ["Callback", "TrainEvalCallback", "Recorder", "ProgressCallback", "CancelFitException",
           "CancelEpochException", "CancelTrainException", "CancelValidException",
           "CancelBatchException", "TrainingDivergedError", "TerminateOnNaNCallback",
           "TrackerCallback", "EarlyStoppingCallback", "SaveModelCallback", "ReduceLROnPlateau",
           "CSVLogger", "ShowGraphCallback", "event", "plot_lr_find"]


class CancelFitException(Exception):
    "Raised by a callback: stop training now (after_cancel_fit, then after_fit run)."


class CancelEpochException(Exception):
    "Raised by a callback: skip the rest of this epoch (its row is still recorded if validated)."


class CancelTrainException(Exception):
    "Raised by a callback: end this epoch's training now and go on to validation."


class CancelValidException(Exception):
    "Raised by a callback: skip this epoch's validation."


class CancelBatchException(Exception):
    "Raised in before_segment: skip this segment's batches (the schedule position still advances)."


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or inf; the model holds its parameters from before that batch,
    or, when an earlier update had already made them non-finite, from the start of that segment."""


_inner = ["before_segment", "after_segment", "after_cancel_batch"]
_events = ["after_create", "before_fit", "before_epoch", "before_train", *_inner, "after_train",
           "before_validate", "after_validate", "after_epoch", "after_fit", "after_cancel_fit",
           "after_cancel_epoch", "after_cancel_train", "after_cancel_validate"]


class _Events:
    "The event names as attributes (`event.before_fit` == 'before_fit'), as fastai's `event`."
    def __init__(self, names):
        for n in names:
            setattr(self, n, n)

    def __iter__(self):
        return iter(_events)


event = _Events(_events)


def _snake(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


class Callback:
    """Base class of callbacks, as fastai's: define methods named after events; `order` sorts
    them (lower first); attributes the callback does not have are read from the learner
    (`self.epoch`, `self.opt`, `self.recorder`...); `self.learn` is the learner once added.
    `name` (class name in snake case without 'Callback') is the learner attribute that refers
    to it (`learn.recorder`, `learn.early_stopping`, ...). `run=False` silences it."""
    order, run, learn = 0, True, None
    run_train, run_valid = True, True

    def __getattr__(self, k):
        if k.startswith("_") or k in ("learn",):
            raise AttributeError(k)
        learn = self.__dict__.get("learn") or type(self).learn
        if learn is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {k!r} (and no learner yet)")
        return getattr(learn, k)

    @property
    def name(self):
        n = type(self).__name__
        if n.endswith("Callback") and n != "Callback":
            n = n[:-len("Callback")]
        return _snake(n)

    def __call__(self, event_name):
        if not self.run:
            return
        training = getattr(self.learn, "training", True)
        if event_name in _inner and not (self.run_train if training else self.run_valid):
            return
        f = getattr(type(self), event_name, None)
        if f is not None:
            f(self)

    def __repr__(self):
        return type(self).__name__


class TrainEvalCallback(Callback):
    "Keeps `training`, `pct_train`, `train_iter` and the model's train/eval mode (fastai's)."
    order = -10

    def before_fit(self):
        self.learn.train_iter, self.learn.pct_train = 0, 0.0

    def before_train(self):
        self.learn.pct_train = self.epoch / self.n_epoch
        self.model.train()
        self.learn.training = True

    def after_segment(self):
        self.learn.train_iter += self.seg_done
        self.learn.pct_train = (self.epoch * self.n_iter + self.iter + self.seg_done) / (self.n_epoch * self.n_iter)

    def before_validate(self):
        self.model.eval()
        self.learn.training = False


class Recorder(Callback):
    """What fastai's Recorder keeps: `values` (per epoch `[train_loss, valid_loss, *metrics]`),
    `losses` (smoothed train loss after every batch), `lrs`, `moms`, `iters` (batches done at
    each epoch's end), `times`, `metric_names`, `hps` (scheduled hyperparameters). The train
    loss shown is fastai's debiased moving average (beta=0.98), reset at each fit. After each
    epoch it logs `[epoch, train_loss, valid_loss, *metrics, time]` through `learn.logger`."""
    order = 50

    def __init__(self, add_time=True, train_metrics=False, valid_metrics=True, beta=0.98):
        self.add_time, self.beta = add_time, beta
        self.values, self.losses, self.lrs, self.moms, self.iters = [], [], [], [], []
        self.times, self.metric_names, self.hps = [], [], {}
        self._val, self._count = 0.0, 0
        self.valid_values, self._ran = None, False

    def before_fit(self):
        self.values, self.losses, self.lrs, self.moms, self.iters, self.times = [], [], [], [], [], []
        self.hps = {}
        names = [getattr(m, "name", getattr(m, "__name__", "metric")) for m in self.learn.metrics]
        self.metric_names = ["epoch", "train_loss", "valid_loss", *names] + (["time"] if self.add_time else [])
        self._val, self._count = 0.0, 0

    def before_epoch(self):
        self.start_epoch = time.perf_counter()
        self.valid_values, self._ran = None, False

    def after_segment(self):
        self._ran = True
        n = self.learn.seg_done
        self._add_batches(self.learn.seg_losses[:n], self.learn.seg_lrs[:n], self.learn.seg_moms[:n])
        self.learn.smooth_loss = self.smooth_loss

    def _add_batches(self, losses, lrs, moms):
        "Smooth raw batch losses as fastai's AvgSmoothLoss does and record lr/mom per batch."
        b = self.beta
        val, count = self._val, self._count
        out = np.empty(len(losses))
        for j, loss in enumerate(np.asarray(losses, np.float64).tolist()):  # one value per batch
            val = b * val + (1 - b) * loss
            count += 1
            out[j] = val / (1 - b ** count)
        self._val, self._count = val, count
        self.losses.extend(out.tolist())
        self.lrs.extend(np.asarray(lrs, np.float64).tolist())
        self.moms.extend(np.asarray(moms, np.float64).tolist())

    def after_validate(self):
        vals = getattr(self.learn, "valid_values", None)
        self.valid_values = None if vals is None else list(vals)

    def after_epoch(self):
        if not self._ran and self.valid_values is None:   # an epoch skipped before it began
            return
        self.iters.append(len(self.losses))
        vals = self.valid_values
        if vals is None:  # validation cancelled
            vals = [float("nan")] * (len(self.metric_names) - 2 - int(self.add_time))
        self.values.append([self.smooth_loss, *vals])
        elapsed = time.perf_counter() - self.start_epoch
        self.times.append(elapsed)
        log = [self.learn.epoch, self.smooth_loss, *vals]
        if self.add_time:
            log.append(format_time(elapsed))
        self.learn.logger(log)

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
        "The last `lr_find`: smoothed loss against lr on a log scale (see `plot_lr_find`)."
        return plot_lr_find(self, skip_end, suggestions, nms)

    def __repr__(self):
        if not self.values:
            return f"Recorder({len(self.losses)} batches recorded, no epoch yet)"
        last = ", ".join(f"{n}={v:.6f}" for n, v in zip(self.metric_names[1:], self.values[-1]))
        return f"Recorder({len(self.values)} epochs, {len(self.losses)} batches; last: {last})"


def plot_lr_find(recorder, skip_end=5, suggestions=None, nms=None):
    """fastai's `Recorder.plot_lr_find`: smoothed loss against lr (log scale) from the last
    `lr_find`, without the last `skip_end` points, with the suggestions marked. Returns the figure."""
    import matplotlib.pyplot as plt
    lrs = recorder.lrs if skip_end == 0 else recorder.lrs[:-skip_end]
    losses = recorder.losses if skip_end == 0 else recorder.losses[:-skip_end]
    fig, ax = plt.subplots(1, 1)
    ax.plot(lrs, losses)
    ax.set_ylabel("Loss")
    ax.set_xlabel("Learning Rate")
    ax.set_xscale("log")
    if suggestions:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
        for (val, at), nm, color in zip(suggestions, nms, colors):
            ax.plot(val, at, "o", label=nm, c=color)
        ax.legend(loc="best")
    return fig


class ProgressCallback(Callback):
    """The epoch table (padded text in a console, an HTML table updated in place in Jupyter) and
    a progress bar for each epoch's training (fastprogress's look). `learn.no_bar()` removes it,
    and epochs are then logged as plain lists."""
    order = 60

    def before_fit(self):
        self.table, self.bar = None, None
        if not getattr(self.learn, "show_table", True) or self.learn.logger is _noop:
            return
        self.old_logger = self.learn.logger
        self.table = EpochTable(self.recorder.metric_names, enabled=True, logger=self.old_logger)
        self.learn.logger = self._write

    def _write(self, log):
        "Epoch rows go into the table; messages (strings) to the logger it replaced."
        if isinstance(log, (list, tuple)):
            self.table.row(log)
        else:
            self.old_logger(log)

    def before_train(self):
        self._t0 = time.perf_counter()
        enabled = self.table is not None
        self.bar = ProgressBar(self.n_iter, enabled=enabled)

    def after_segment(self):
        if self.bar is not None:
            self.bar.update(self.iter + self.seg_done, time.perf_counter() - self._t0,
                            f"{self.recorder.smooth_loss:.4f}")

    def after_train(self):
        self._close_bar()

    def after_cancel_train(self):
        self._close_bar()

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_fit(self):
        self._close_bar()
        if self.table is not None:
            self.table.close()
            self.learn.logger = self.old_logger
            self.table = None

    # the loop calls this when fit ends by an error, so nothing is left drawn or rewired
    def cleanup_fit(self):
        self.after_fit()


def _noop(*args, **kwargs):
    return None


class TerminateOnNaNCallback(Callback):
    "Stops training cleanly (no error) when a batch's loss is NaN or infinite (fastai's)."
    order = -9

    def after_segment(self):
        if not math.isfinite(self.learn.loss):
            raise CancelFitException()


class TrackerCallback(Callback):
    """Base of the callbacks that watch a metric (fastai's): `monitor` is a column of the epoch
    table ('valid_loss', 'train_loss' or a metric's name), `comp` np.less for names with
    'loss' or 'error' and np.greater otherwise, `min_delta` the least change that counts.
    After each epoch `best` and `new_best` say where the metric stands."""
    order = 60

    def __init__(self, monitor="valid_loss", comp=None, min_delta=0.0, reset_on_fit=True):
        if comp is None:
            comp = np.less if "loss" in monitor or "error" in monitor else np.greater
        if comp is np.less:
            min_delta *= -1
        self.monitor, self.comp, self.min_delta, self.reset_on_fit, self.best = monitor, comp, min_delta, reset_on_fit, None
        self.new_best = False

    def before_fit(self):
        if self.reset_on_fit or self.best is None:
            self.best = float("inf") if self.comp is np.less else -float("inf")
        names = list(self.recorder.metric_names[1:])
        if self.monitor not in names:
            raise ValueError(f"{type(self).__name__}: monitor={self.monitor!r} is not a column of the "
                             f"epoch table {names}")
        self.idx = names.index(self.monitor)

    def after_epoch(self):
        val = self.recorder.values[-1][self.idx]
        if self.comp(val - self.min_delta, self.best):
            self.best, self.new_best = val, True
        else:
            self.new_best = False


class _PatienceCallback(TrackerCallback):
    "A tracker that acts (`on_plateau`) once `monitor` has not improved for `patience` epochs."
    def __init__(self, monitor="valid_loss", comp=None, min_delta=0.0, patience=1, reset_on_fit=True):
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience = patience

    def before_fit(self):
        self.wait = 0
        super().before_fit()

    def after_epoch(self):
        super().after_epoch()
        self.wait = 0 if self.new_best else self.wait + 1
        if self.wait >= self.patience:
            self.on_plateau()


class EarlyStoppingCallback(_PatienceCallback):
    "Stops training when `monitor` has not improved for `patience` epochs (fastai's)."
    def on_plateau(self):
        print(f"No improvement since epoch {self.epoch - self.wait}: early stopping")
        raise CancelFitException()


class SaveModelCallback(TrackerCallback):
    """Saves the model (`learn.save(fname)`) whenever `monitor` improves and loads the best one
    back at the end of the fit (fastai's); `every_epoch=n` saves `fname_<epoch>` every n epochs
    instead, `at_end` saves once at the end."""
    def __init__(self, monitor="valid_loss", comp=None, min_delta=0.0, fname="model", every_epoch=False,
                 at_end=False, with_opt=False, reset_on_fit=True):
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        if at_end and every_epoch:
            raise ValueError("SaveModelCallback: every_epoch and at_end cannot both be set")
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt
        self.last_saved_path = None

    def _save(self, name):
        self.last_saved_path = self.learn.save(name, with_opt=self.with_opt)

    def after_epoch(self):
        if self.every_epoch:
            if (self.epoch % self.every_epoch) == 0:
                self._save(f"{self.fname}_{self.epoch}")
        else:
            super().after_epoch()
            if self.new_best:
                print(f"Better model found at epoch {self.epoch} with {self.monitor} value: {self.best}.")
                self._save(f"{self.fname}")

    def after_fit(self):
        if self.at_end:
            self._save(f"{self.fname}")
        elif not self.every_epoch and self.last_saved_path is not None:
            self.learn.load(f"{self.fname}", with_opt=self.with_opt)


class ReduceLROnPlateau(_PatienceCallback):
    "Divides the lr by `factor` when `monitor` has not improved for `patience` epochs (fastai's)."
    def __init__(self, monitor="valid_loss", comp=None, min_delta=0.0, patience=1, factor=10.0, min_lr=0,
                 reset_on_fit=True):
        super().__init__(monitor, comp, min_delta, patience, reset_on_fit)
        self.factor, self.min_lr = factor, min_lr

    def on_plateau(self):
        old_lr = self.opt.hypers["lr"]
        self.opt.set_hypers(lr=max(old_lr / self.factor, self.min_lr))
        self.wait = 0
        if self.opt.hypers["lr"] < old_lr:
            print(f"Epoch {self.epoch}: reducing lr to {self.opt.hypers['lr']}")


class CSVLogger(Callback):
    """Writes the epoch table to `learn.path/fname` as CSV, one row per epoch, flushed as it
    goes (fastai's); `append=True` adds to an existing file. `read_log()` reads it back."""
    order = 60

    def __init__(self, fname="history.csv", append=False):
        self.fname, self.append = Path(fname), append
        self.file, self.file_path = None, None

    def read_log(self):
        "The log of the last fit as a DataFrame."
        import pandas as pd
        if self.file_path is None:
            raise ValueError("CSVLogger.read_log: nothing was logged yet (fit first)")
        return pd.read_csv(self.file_path)

    def before_fit(self):
        p = self.fname if self.fname.is_absolute() else Path(self.learn.path) / self.fname
        self.file_path = p
        p.parent.mkdir(parents=True, exist_ok=True)
        self.file = p.open("a" if self.append else "w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.recorder.metric_names)
        self.file.flush()
        self.old_logger, self.learn.logger = self.learn.logger, self._write_line

    def _write_line(self, log):
        if isinstance(log, (list, tuple)):
            self.writer.writerow([f"{v:.6f}" if isinstance(v, float) else str(v) for v in log])
            self.file.flush()
            os.fsync(self.file.fileno())
        self.old_logger(log)

    def after_fit(self):
        if self.file is not None:
            self.file.close()
            self.file = None
            self.learn.logger = self.old_logger

    def cleanup_fit(self):
        self.after_fit()


class ShowGraphCallback(Callback):
    """The training loss per batch and the validation loss per epoch as a figure: redrawn after
    every epoch in Jupyter, drawn once at the end of the fit elsewhere (kept as `self.fig`).
    Needs matplotlib."""
    order = 65

    def before_fit(self):
        self.run = not hasattr(self.learn, "lr_finder")
        if not self.run:
            return
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ImportError("ShowGraphCallback needs matplotlib: pip install matplotlib") from None
        self.fig, self.handle, self.notebook = None, None, in_notebook()

    def _draw(self):
        import matplotlib
        import matplotlib.pyplot as plt
        rec = self.recorder
        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6, 4))
        ax = self.ax
        ax.clear()
        ax.plot(range(len(rec.losses)), rec.losses, label="train")
        # a table without a validation loss (an implicit learner's: ranking metrics) has none to draw
        valid = [v[1] for v in rec.values] if "valid_loss" in rec.metric_names else []
        if valid:
            ax.plot(rec.iters, valid, label="valid")
        total = self.n_epoch * self.n_iter
        ax.set_xlim(0, max(total, len(rec.losses), 1))
        finite = [v for v in rec.losses + valid if np.isfinite(v)]
        if finite:
            ax.set_ylim(0, max(finite) * 1.05)
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        if self.notebook:
            from IPython.display import display
            if self.handle is None:
                self.handle = display(self.fig, display_id=True)
            else:
                self.handle.update(self.fig)
        return matplotlib

    def after_epoch(self):
        if self.notebook:
            self._draw()

    def after_fit(self):
        if not self.recorder.losses:
            return
        matplotlib = self._draw()
        import matplotlib.pyplot as plt
        if self.notebook:
            plt.close(self.fig)
        elif matplotlib.get_backend().lower() not in ("agg", "pdf", "ps", "svg", "cairo", "template") \
                and "inline" not in matplotlib.get_backend().lower():
            plt.show(block=False)
