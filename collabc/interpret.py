"""Interpreting a trained model: PCA of the factors, the lesson's labelled scatter, nearest
neighbours (fastai's learning-rate finder is in `collabc.schedule`).

* `pca(x, k=3)` - fastai's `Tensor.pca`: centre the rows, SVD, project on the first k directions
  (signs made deterministic: each direction's largest entry is positive).
* `plot_pca(learn, ids, ...)` - the lesson's figure: PCA of the chosen items' factors, a scatter of
  two components with the first `n_label` points labelled.
* `most_similar(learn, x, n=10, metric='cosine')` - nearest items (or users) by factor similarity,
  scored and selected in C.
"""
import numpy as np
import pandas as pd

from .csr import csr_from_lists as _csr_from_lists
from .data import encode_ids
from .foldin import FoldIn, dot_tables as _dot_tables
from .models import _DotFamily
from .plotting import place_labels
from .topn import check_n as _check_n, rank_vectors

__all__ = ["pca", "plot_pca", "most_similar"]


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
             ax=None, seed=None, fontsize=11, place=True):
    """The lesson's labelled PCA scatter: PCA (`pca(w, k)`) of the factors of the raw `ids` (e.g.
    the 1,000 most-rated titles), then `components` plotted against each other for the first
    `n_label` ids, each labelled with its id in a random dark colour (`seed` fixes the colours),
    the labels moved apart so that none overlaps another (`collabc.plotting.place_labels`;
    `place=False` leaves them on their points). Returns the matplotlib figure."""
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
    if place:
        place_labels(ax)
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
