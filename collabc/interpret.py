"""Interpreting a trained model: PCA of the factors, the lesson's labelled scatter, nearest
neighbours, and fastai's learning-rate finder.

* `pca(x, k=3)` - fastai's `Tensor.pca`: centre the rows, SVD, project on the first k directions
  (signs made deterministic: each direction's largest entry is positive).
* `plot_pca(learn, ids, ...)` - the lesson's figure: PCA of the chosen items' factors, a scatter of
  two components with the first `n_label` points labelled.
* `most_similar(learn, x, n=10, metric='cosine')` - nearest items (or users) by factor similarity,
  scored and selected in C.
* `lr_find(learn, ...)` - fastai's `LRFinder`: exponential lr from start_lr to end_lr over num_it
  batches, no validation, stop when the smoothed loss exceeds 4x its best; the model and the
  optimizer are restored afterwards; suggestions `valley` (default), `minimum`, `steep`, `slide`.
"""
import collections
import math
from functools import partial

import numpy as np
import pandas as pd

from .data import encode_ids
from .inference import FoldIn, _check_n, _csr_from_lists, _dot_tables, rank_vectors
from .models import _DotFamily

__all__ = ["pca", "plot_pca", "most_similar", "lr_find", "plot_lr_find", "valley", "minimum",
           "steep", "slide", "SuggestionMethod"]


# ---------------------------------------------------------------------------------------------
# PCA and the lesson's plot

def pca(x, k=3):
    """fastai's `Tensor.pca`: `x - x.mean(0)` projected on the first k right singular vectors
    (the principal directions), as a float32 (N, k) array. fastai's default is k=2; the lesson
    calls `pca(3)`. Component signs are fixed so that each direction's largest entry is positive
    (fastai's depend on the SVD implementation)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array (rows, features), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    k = _check_n(k, "k")
    if k > x.shape[1]:
        raise ValueError(f"k={k} is more than the {x.shape[1]} features of x")
    if x.shape[0] < 1:
        raise ValueError("x has no rows")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x holds NaN or inf")
    xc = x - x.mean(0)
    U, _, _ = np.linalg.svd(xc.T, full_matrices=False)
    U = U[:, :k]
    flip = np.sign(U[np.abs(U).argmax(0), np.arange(k)])
    U = U * np.where(flip == 0, 1, flip)
    return (xc @ U).astype(np.float32)


def plot_pca(learn, ids, is_item=True, k=3, components=(0, 2), n_label=50, figsize=(12, 12),
             ax=None, seed=None, fontsize=11):
    """The lesson's labelled PCA scatter: PCA (`pca(w, k)`) of the factors of the raw `ids` (e.g.
    the 1,000 most-rated titles), then `components` plotted against each other for the first
    `n_label` ids, each labelled with its id in a random dark colour (`seed` fixes the colours).
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    m = learn.model
    if not isinstance(m, _DotFamily):
        raise TypeError(f"plot_pca needs a dot-product model, not {type(m).__name__}")
    ids = list(ids) if not isinstance(ids, (str, bytes)) else [ids]
    d = learn.dls
    name = d.item_name if is_item else d.user_name
    idx = encode_ids(d.classes[name], ids, f"{'item' if is_item else 'user'} column {name!r}", hint=False)
    k = _check_n(k, "k")
    try:
        c0, c1 = (int(c) for c in components)
    except (TypeError, ValueError):
        raise TypeError(f"components must be a pair of component numbers, got {components!r}") from None
    if not (0 <= c0 < k and 0 <= c1 < k):
        raise ValueError(f"components {components!r} must lie in [0, k={k})")
    n_label = _check_n(n_label, "n_label")
    table = _dot_tables(m, is_item)[0]
    proj = pca(table[idx], k)
    sel = np.arange(min(n_label, len(idx)))
    X, Y = proj[sel, c0], proj[sel, c1]
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    ax.scatter(X, Y)
    rng = np.random.default_rng(seed)
    for i, x, y in zip(sel, X, Y):
        ax.text(x, y, str(ids[i]), color=rng.random(3) * 0.7, fontsize=fontsize)
    ax.set_xlabel(f"component {c0}")
    ax.set_ylabel(f"component {c1}")
    return fig


# ---------------------------------------------------------------------------------------------
# nearest neighbours

_METRICS = ("cosine", "dot", "euclidean")


def most_similar(learn, x, n=10, metric="cosine", is_item=True):
    """The n items (users with `is_item=False`) whose factors are closest to those of `x` (a raw
    id or a `FoldIn`), as a DataFrame `id, similarity` (`distance` for euclidean), best first.
    metric: 'cosine' (the book's `nn.CosineSimilarity`, norms floored at 1e-8), 'dot' (raw dot
    product) or 'euclidean'. `x` itself and '#na#' are never returned."""
    n = _check_n(n)
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    m = learn.model
    if not isinstance(m, _DotFamily):
        raise TypeError(f"most_similar needs a dot-product model, not {type(m).__name__}")
    d = learn.dls
    name = d.item_name if is_item else d.user_name
    table = np.asarray(_dot_tables(m, is_item)[0], dtype=np.float32)
    if isinstance(x, FoldIn):
        if x.is_item != is_item:
            raise ValueError(f"{x!r} is not {'an item' if is_item else 'a user'}; pass is_item={x.is_item}")
        q, self_idx = x.factors.astype(np.float32), None
    else:
        if not (isinstance(x, (str, bytes)) or np.ndim(x) == 0):
            raise TypeError(f"x must be one id (or a FoldIn), got {type(x).__name__}")
        self_idx = int(encode_ids(d.classes[name], [x], f"{'item' if is_item else 'user'} column {name!r}", hint=False)[0])
        q = table[self_idx]
    excl = _csr_from_lists([[self_idx] if self_idx is not None else []])
    cb = None
    if metric == "cosine":
        norms = np.maximum(np.linalg.norm(table, axis=1), 1e-8).astype(np.float32)
        cw = table / norms[:, None]
        qw = (q / max(float(np.linalg.norm(q)), 1e-8))[None].astype(np.float32)
    elif metric == "dot":
        cw, qw = table, q[None]
    else:
        cw, qw = table, (2 * q)[None].astype(np.float32)
        cb = -np.einsum("ij,ij->i", table, table, dtype=np.float32)
    idx, scores = rank_vectors(qw, None, cw, cb, n, excl, first=1)
    keep = idx[0] >= 0
    idx, scores = idx[0][keep], scores[0][keep]
    col = "similarity"
    if metric == "euclidean":
        col = "distance"
        diff = table[idx].astype(np.float64) - q.astype(np.float64)
        scores = np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float32)
    labels = np.asarray(d.classes[name], dtype=object)[idx]
    return pd.DataFrame({name: labels, col: scores})


# ---------------------------------------------------------------------------------------------
# learning-rate finder

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


def _suggest_funcs(funcs):
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


def lr_find(learn, start_lr=1e-7, end_lr=10, num_it=100, stop_div=True, show_plot=True,
            suggest_funcs=(valley,)):
    """fastai's `lr_find`: train from the current parameters with lr = start_lr * (end_lr /
    start_lr) ** (i / num_it) at batch i (momentum and wd as the optimizer has them), no
    validation, until num_it batches (at least 6) or, with `stop_div`, until the smoothed loss
    exceeds 4x its best (or a loss is NaN). `learn.recorder` then holds that run's `lrs` and
    smoothed `losses`; the model's parameters and the optimizer (state, hyperparameters, or its
    absence) are restored. Returns `SuggestedLRs(valley=...)` (one field per suggestion
    function; `suggest_funcs=None` returns None) and draws `plot_lr_find` if `show_plot`."""
    from .learner import _positive_float
    start_lr, end_lr = _positive_float("start_lr", start_lr), _positive_float("end_lr", end_lr)
    if not start_lr < end_lr:
        raise ValueError(f"start_lr must be below end_lr, got {start_lr} and {end_lr}")
    num_it = _check_n(num_it, "num_it")
    funcs = _suggest_funcs(suggest_funcs)
    dl = learn.dls.train
    n_iter = len(dl)
    if n_iter < 1:
        raise ValueError(f"the training set has {dl.n} rows, fewer than one batch of bs={dl.bs}")
    if not learn._lock.acquire(blocking=False):
        raise RuntimeError("this Learner is already training or predicting in another thread")
    model, rec = learn.model, learn.recorder
    had_opt = learn.opt is not None
    saved_model = model.state_dict()
    saved_opt = learn.opt.state_dict() if had_opt else None
    try:
        if not had_opt:
            learn.create_opt()
        if learn.wd is not None:
            learn.opt.set_hypers(wd=learn.wd)
        n_sched = max(num_it, 6)
        if learn._grads is None or learn._grads.size != model.n_params:
            learn._grads = np.zeros(model.n_params, np.float32)
        rec._begin_fit([], scheduled=False)
        mom = learn.opt.hypers["mom"]
        best, it, done = math.inf, 0, False
        model.train()
        n_wd = model.n_params if getattr(learn, "wd_bn_bias", False) else None
        for _ in range(num_it // n_iter + 1):   # fastai's n_epoch
            order = dl.order()
            for j in range(n_iter):
                rows = order[j * dl.bs:(j + 1) * dl.bs]
                lr = start_lr * (end_lr / start_lr) ** (it / n_sched)
                x = np.ascontiguousarray(dl.x[rows])
                y = np.ascontiguousarray(dl.y[rows])
                losses = np.zeros(1)
                lrs, moms = np.array([lr]), np.array([mom])
                learn.opt.set_hypers(lr=lr)
                bad = model._fit_epoch(learn.opt, learn._grads, x, y, np.arange(len(rows), dtype=np.int64),
                                       len(rows), lrs, moms, losses, n_wd=n_wd)
                rec._add_batches(losses, lrs, moms)
                it += 1
                smooth = rec.smooth_loss
                if bad >= 0 or not math.isfinite(smooth):
                    done = True
                    break
                best = min(best, smooth)
                if (stop_div and smooth > 4 * best) or it >= n_sched:
                    done = True
                    break
            if done:
                break
    finally:
        model.load_state_dict(saved_model)
        model.eval()
        if had_opt:
            learn.opt.load_state_dict(saved_opt)
        else:
            learn.opt = None
        learn._lock.release()
    if funcs is None:
        if show_plot:
            plot_lr_find(rec)
        return None
    lrs = np.array(rec.lrs[num_it // 10:-5], dtype=np.float64)
    losses = np.array(rec.losses[num_it // 10:-5], dtype=np.float64)
    nan = np.flatnonzero(np.isnan(losses))
    if nan.size:
        lrs, losses = lrs[:nan[0]], losses[:nan[0]]
    if len(losses) < 2:
        raise ValueError(f"lr_find stopped after {len(rec.losses)} iterations, too few for a suggestion "
                         f"(it skips the first num_it//10 and the last 5): raise num_it or lower end_lr")
    nms = [f.func.__name__ if isinstance(f, partial) else f.__name__ for f in funcs]
    results = [f(lrs, losses, num_it) for f in funcs]
    SuggestedLRs = collections.namedtuple("SuggestedLRs", nms)
    if show_plot:
        plot_lr_find(rec, suggestions=[p for _, p in results], nms=nms)
    return SuggestedLRs(*[float(v) for v, _ in results])
