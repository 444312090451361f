"""Hyperparameter schedules and fastai's learning-rate finder (fastai/callback/schedule.py).

* Schedules are pure functions of the position in the fit, 0 <= pos < 1, applied to NumPy
  arrays of positions: `SchedLin`, `SchedCos`, `SchedNo`, `SchedExp`, `SchedPoly`,
  `combine_scheds(pcts, scheds)` and `combined_cos(pct, start, middle, end)` (one-cycle, computed
  by the C core's `cf_onecycle_fill`, the function the fastai replay tests check).
* `ParamScheduler(scheds)` - a callback that sets each segment's per-batch `lr` / `mom` from
  schedules (what `fit_one_cycle`, `fit_flat_cos` and `fit_sgdr` add to a fit); other
  hyperparameters (e.g. 'wd') are set at the start of each segment. It records them in
  `learn.recorder.hps`.
* `LRFinder` - fastai's: exponential lr from start_lr to end_lr over num_it batches, no
  validation, stop once the smoothed loss exceeds 4x its best (or is not finite); the model, the
  optimizer and the learner's data order are restored afterwards. `Learner.lr_find` runs it and
  returns `SuggestedLRs` from the suggestion functions `valley` (default), `slide`, `minimum`,
  `steep`.
"""
import collections
import math
from functools import partial

import numpy as np

from . import _core
from .callback import Callback, CancelFitException, CancelValidException, plot_lr_find

__all__ = ["SchedLin", "SchedCos", "SchedNo", "SchedExp", "SchedPoly", "combine_scheds",
           "combined_cos", "ParamScheduler", "LRFinder", "valley", "slide", "minimum", "steep",
           "SuggestionMethod", "suggest_lrs", "plot_lr_find"]


class _Sched:
    "A schedule from `start` to `end` as a function of pos in [0, 1], evaluated on arrays."
    def __init__(self, start, end):
        self.start, self.end = float(start), float(end)

    def __call__(self, pos):
        return self._f(np.asarray(pos, np.float64))

    def __repr__(self):
        return f"{type(self).__name__}({self.start:g}, {self.end:g})"


class SchedLin(_Sched):
    "Linear from start to end."
    def _f(self, pos):
        return self.start + pos * (self.end - self.start)


class SchedCos(_Sched):
    "Cosine from start to end (fastai's `sched_cos`)."
    def _f(self, pos):
        return self.start + (1 + np.cos(np.pi * (1 - pos))) * (self.end - self.start) / 2


class SchedNo(_Sched):
    "Constant at start."
    def _f(self, pos):
        return np.full(pos.shape, self.start)


class SchedExp(_Sched):
    "Exponential from start to end: start * (end / start) ** pos."
    def _f(self, pos):
        return self.start * (self.end / self.start) ** pos


class SchedPoly(_Sched):
    "Polynomial: start + (end - start) * pos ** power."
    def __init__(self, start, end, power):
        super().__init__(start, end)
        self.power = float(power)

    def _f(self, pos):
        return self.start + (self.end - self.start) * pos ** self.power


class _Combined:
    "fastai's `combine_scheds`: schedule i runs over the fraction pcts[i] of the fit."
    def __init__(self, pcts, scheds):
        pcts = [float(p) for p in pcts]
        if len(pcts) != len(scheds) or not pcts or any(p < 0 for p in pcts) or not math.isclose(sum(pcts), 1.0):
            raise ValueError(f"combine_scheds: pcts must be one non-negative fraction per schedule summing "
                             f"to 1, got {pcts}")
        self.pcts, self.scheds = pcts, list(scheds)
        self.bounds = np.cumsum([0.0] + pcts)

    def __call__(self, pos):
        pos = np.asarray(pos, np.float64)
        idx = np.clip(np.searchsorted(self.bounds, pos, side="right") - 1, 0, len(self.scheds) - 1)
        out = np.empty(pos.shape)
        for i, f in enumerate(self.scheds):
            sel = idx == i
            if sel.any():
                width = self.pcts[i]
                local = (pos[sel] - self.bounds[i]) / width if width > 0 else np.zeros(int(sel.sum()))
                out[sel] = f(np.minimum(local, 1.0))
        return out


def combine_scheds(pcts, scheds):
    "Schedule i over the fraction pcts[i] of the fit, each over its own local position 0..1."
    return _Combined(pcts, scheds)


class _OneCycle:
    "Two cosines, start -> middle over pct of the fit, then middle -> end (C: cf_onecycle_fill)."
    def __init__(self, pct, start, middle, end):
        self.pct, self.start, self.middle, self.end = float(pct), float(start), float(middle), float(end)
        if not 0 <= self.pct <= 1:
            raise ValueError(f"pct_start must be in [0, 1], got {pct!r}")

    def __call__(self, pos):
        return _core.onecycle(np.ascontiguousarray(pos, np.float64), self.start, self.middle, self.end, self.pct)

    def __repr__(self):
        return f"combined_cos({self.pct:g}, {self.start:g}, {self.middle:g}, {self.end:g})"


def combined_cos(pct, start, middle, end):
    "fastai's `combined_cos`: cosine from start to middle over pct of the fit, then to end."
    return _OneCycle(pct, start, middle, end)


class ParamScheduler(Callback):
    """Schedules hyperparameters over the fit (fastai's): `scheds` maps a hyperparameter name
    ('lr', 'mom', or another the optimizer has) to a schedule of the position. lr and mom are
    set per batch (the C drivers take them as arrays); others at each segment's start."""
    order, run_valid = 60, False

    def __init__(self, scheds):
        self.scheds = dict(scheds)

    def before_fit(self):
        self.hps = {p: [] for p in self.scheds}

    def before_segment(self):
        pos = self.learn.seg_pos
        for name, f in self.scheds.items():
            vals = np.asarray(f(pos), np.float64)
            if name == "lr":
                self.learn.seg_lrs = vals
            elif name == "mom":
                self.learn.seg_moms = vals
            else:
                self.opt.set_hypers(**{name: float(vals[0])})

    def after_segment(self):
        n = self.learn.seg_done
        for name in self.scheds:
            if name == "lr":
                self.hps[name].extend(self.learn.seg_lrs[:n].tolist())
            elif name == "mom":
                self.hps[name].extend(self.learn.seg_moms[:n].tolist())
            else:
                self.hps[name].extend([self.opt.hypers[name]] * n)

    def after_fit(self):
        if hasattr(self.learn, "recorder"):
            self.recorder.hps = self.hps


class LRFinder(ParamScheduler):
    """fastai's LRFinder: batch i trains at start_lr * (end_lr / start_lr) ** (i / num_it) (at
    least 6 batches), no validation; stops after num_it batches or, with `stop_div`, once the
    smoothed loss exceeds 4x its best or a loss is not finite. Saves the model, the optimizer
    (state, hyperparameters, or its absence) and the learner's data order before, and restores
    them after."""
    def __init__(self, start_lr=1e-7, end_lr=10, num_it=100, stop_div=True):
        if num_it < 6:
            num_it = 6
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div
        self.saved = None   # what to restore; taken at before_fit unless set already
        super().__init__({"lr": SchedExp(start_lr, end_lr)})

    def before_fit(self):
        super().before_fit()
        learn = self.learn
        if self.saved is None:
            self.saved = learn._snapshot()
        self.best_loss = float("inf")
        learn.seg_max = 1   # one unit per segment, so it stops at the first batch that diverges

    def before_segment(self):
        n = self.learn.seg_n
        self.learn.seg_lrs = self.start_lr * (self.end_lr / self.start_lr) ** (
            (self.learn.train_iter + np.arange(n)) / self.num_it)

    def after_segment(self):
        super().after_segment()
        smooth = self.learn.smooth_loss
        if not math.isfinite(smooth) or not math.isfinite(self.learn.loss):
            raise CancelFitException()
        if smooth < self.best_loss:
            self.best_loss = smooth
        if smooth > 4 * self.best_loss and self.stop_div:
            raise CancelFitException()
        if self.learn.train_iter >= self.num_it:   # train_iter counts this segment already
            raise CancelFitException()

    def before_validate(self):
        raise CancelValidException()

    def after_fit(self):
        self.learn.seg_max = None
        if self.saved is not None:
            self.learn._restore(self.saved)
            self.saved = None

    cleanup_fit = after_fit


# ---------------------------------------------------------------------------------------------
# suggestions

def valley(lrs, losses, num_it):
    "fastai's suggestion: 2/3 of the way along the longest valley (strictly decreasing run)."
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx]))


def slide(lrs, losses, num_it, lr_diff=15, thresh=0.005, adjust_value=1.0):
    "fastai's suggestion from an interval slide rule on the loss gradient."
    losses = np.asarray(losses, dtype=np.float64)
    lrs = np.asarray(lrs, dtype=np.float64)
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    if -l_idx > len(losses):
        raise ValueError(f"slide needs more than {lr_diff} points, got {len(losses)}")
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    suggestion = float(local_min_lr) * adjust_value
    at = float(np.interp(np.log10(suggestion), np.log10(lrs), losses))
    return suggestion, (suggestion, at)


def minimum(lrs, losses, num_it):
    "fastai's suggestion: one tenth of the lr at the minimum loss."
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    lr_min = float(lrs[losses.argmin()])
    loss_idx = float(losses[int(np.argmin(np.abs(lrs - lr_min)))])
    return lr_min / 10, (lr_min, loss_idx)


def steep(lrs, losses, num_it):
    "fastai's suggestion: the lr where the loss falls fastest against log(lr)."
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    lr_steep = float(lrs[grads.argmin()])
    loss_idx = float(losses[int(np.argmin(np.abs(lrs - lr_steep)))])
    return lr_steep, (lr_steep, loss_idx)


class SuggestionMethod:
    "fastai's names for the suggestion functions: `SuggestionMethod.Valley` etc."
    Valley, Slide, Minimum, Steep = staticmethod(valley), staticmethod(slide), staticmethod(minimum), staticmethod(steep)


_BY_NAME = {"valley": valley, "slide": slide, "minimum": minimum, "steep": steep}


def suggest_funcs_list(funcs):
    "The suggestion functions named or given in `funcs` (None stays None)."
    if funcs is None:
        return None
    if callable(funcs) or isinstance(funcs, str):
        funcs = (funcs,)
    out = []
    for f in funcs:
        if isinstance(f, str):
            if f not in _BY_NAME:
                raise ValueError(f"unknown suggestion method {f!r}; use one of {sorted(_BY_NAME)}")
            f = _BY_NAME[f]
        if not callable(f):
            raise TypeError(f"suggest_funcs must be functions or names, got {f!r}")
        out.append(f)
    return out


def suggest_lrs(recorder, num_it, funcs, show_plot=False):
    """`SuggestedLRs(name=lr, ...)` from the recorder of an `lr_find` run: each function gets
    the lrs and smoothed losses without the first num_it//10 and the last 5 points, cut at the
    first NaN (fastai's rule); draws `plot_lr_find` with the suggestions if `show_plot`."""
    lrs = np.array(recorder.lrs[num_it // 10:-5], dtype=np.float64)
    losses = np.array(recorder.losses[num_it // 10:-5], dtype=np.float64)
    nan = np.flatnonzero(np.isnan(losses))
    if nan.size:
        lrs, losses = lrs[:nan[0]], losses[:nan[0]]
    if len(losses) < 2:
        raise ValueError(f"lr_find stopped after {len(recorder.losses)} iterations, too few for a suggestion "
                         f"(it skips the first num_it//10 and the last 5): raise num_it or lower end_lr")
    nms = [f.func.__name__ if isinstance(f, partial) else f.__name__ for f in funcs]
    results = [f(lrs, losses, num_it) for f in funcs]
    SuggestedLRs = collections.namedtuple("SuggestedLRs", nms)
    if show_plot:
        plot_lr_find(recorder, suggestions=[p for _, p in results], nms=nms)
    return SuggestedLRs(*[float(v) for v, _ in results])
