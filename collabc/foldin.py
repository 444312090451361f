"""New users and items without retraining - the lesson's bootstrapping: a `FoldIn` (factors
and bias) for a user or an item that was not in the training data, solved from a handful of
ratings with every other parameter frozen, usable at once for predictions, recommendations and
similarity (`collabc.topn`, `collabc.interpret.most_similar`).

Fold-in is regularised least squares, solved exactly rather than by optimizer steps: the new
row's factors and bias minimise `sum_i (f(w.q_i + b + b_i) - r_i)^2 / s2 + sum_k (theta_k -
mu_k)^2 / var_k`, where f is the model's `sigmoid_range` (identity without y_range), q_i and b_i
the frozen rows of the rated items, s2 the model's residual variance on its training ratings, and
mu/var the per-coordinate mean and variance of the trained rows of the same table (a Gaussian
prior fitted to them). It is a ridge regression without y_range and a Gauss-Newton solve with a
backtracking line search with it ((K+1)x(K+1) systems, a few iterations). Why not Adam steps: the
solve has no learning rate, epoch count or seed to tune, gives the same answer every time, and its
prior is the lesson's "average user" - with few ratings the estimate stays near it, with many it
follows the data.
"""
import numpy as np
import pandas as pd

from . import _core
from .data import encode_ids
from .models import is_dot_model, predict_array

__all__ = ["FoldIn", "fold_in", "average_embedding", "train_noise_var", "dot_tables"]


def dot_tables(model, is_item=False):
    """(query table, query biases, candidate table, candidate biases) of a dot-family model:
    users against items, or items against users with `is_item=True`."""
    U, I, bu, bi = model._tables()
    bu = None if bu is None else bu[:, 0]
    bi = None if bi is None else bi[:, 0]
    return (I, bi, U, bu) if is_item else (U, bu, I, bi)


class FoldIn:
    """A user (or item, `is_item=True`) that is not in the model: its `factors` (K,) and `bias`,
    from `fold_in` or `average_embedding`. `rated` holds the indices of the items (users) its
    ratings were about; `predict(ids)` scores it against raw ids with the model's arithmetic."""

    def __init__(self, learn, factors, bias, is_item, rated=(), name=None, n_ratings=0):
        self.learn, self.is_item, self.name = learn, bool(is_item), name
        self.factors = np.asarray(factors, dtype=np.float32)
        self.bias = float(bias)
        self.rated = np.asarray(rated, dtype=np.int32)
        self.n_ratings = int(n_ratings)

    def predict(self, ids):
        "Predicted ratings of this new user for the raw item ids (or new item by the raw user ids)."
        learn, m = self.learn, self.learn.model
        d = learn.dls
        name = d.user_name if self.is_item else d.item_name
        idx = encode_ids(d.classes[name], ids, f"{'user' if self.is_item else 'item'} column {name!r}", hint=False)
        _, _, cw, cb = dot_tables(m, self.is_item)
        out = np.empty(len(idx), np.float32)
        qw = self.factors.reshape(1, -1)
        qb = np.array([self.bias], np.float32) if m.has_bias else None
        _core.dotbias_forward(out, qw, np.ascontiguousarray(cw), qb,
                              None if cb is None else np.ascontiguousarray(cb),
                              np.zeros(len(idx), np.int32), idx)
        if m.y_range is not None:
            _core.sigmoid_range_forward(out, out.copy(), *m.y_range)
        return out

    def __repr__(self):
        what = "item" if self.is_item else "user"
        return f"FoldIn({what} {self.name!r}, {self.n_ratings} ratings, bias={self.bias:.4f})"


def _trained_rows(learn, is_item):
    "Indices of the rows of the user (item) table that have training ratings (never '#na#')."
    indptr, _ = learn.seen(by_item=is_item)
    rows = np.flatnonzero(np.diff(indptr) > 0)
    return rows[rows > 0]


def _prior(learn, is_item):
    m = learn.model
    qtab, qbias, _, _ = dot_tables(m, is_item)
    try:
        rows = _trained_rows(learn, is_item)
    except ValueError:
        rows = np.arange(1, qtab.shape[0])
    if rows.size == 0:
        rows = np.arange(1, qtab.shape[0]) if qtab.shape[0] > 1 else np.arange(qtab.shape[0])
    theta = qtab[rows].astype(np.float64)
    if qbias is not None:
        theta = np.concatenate([theta, qbias[rows, None].astype(np.float64)], 1)
    mu = theta.mean(0)
    var = theta.var(0) if len(rows) > 1 else np.ones_like(mu)
    return mu, np.maximum(var, 1e-8)


def train_noise_var(learn):
    "Mean squared residual of the model on its training ratings (or the value stored at export)."
    dl = learn.dls.train
    if dl.n:
        p = predict_array(learn.model, dl.x)
        return max(float(np.mean((p.astype(np.float64) - dl.y) ** 2)), 1e-6)
    return float(getattr(learn, "noise_var", None) or 1.0)


def _parse_ratings(learn, ratings, is_item):
    d = learn.dls
    key = d.user_name if is_item else d.item_name
    if isinstance(ratings, pd.DataFrame):
        if key not in ratings.columns or d.rating_name not in ratings.columns:
            raise KeyError(f"ratings must have the columns {key!r} and {d.rating_name!r}; "
                           f"it has {list(ratings.columns)}")
        ids, vals = ratings[key].tolist(), ratings[d.rating_name].to_numpy()
    elif isinstance(ratings, pd.Series):
        ids, vals = ratings.index.tolist(), ratings.to_numpy()
    elif isinstance(ratings, dict):
        ids, vals = list(ratings.keys()), list(ratings.values())
    elif isinstance(ratings, (list, tuple)):
        try:
            ids, vals = [r[0] for r in ratings], [r[1] for r in ratings]
        except (TypeError, IndexError):
            raise TypeError("ratings as a list must hold (id, rating) pairs") from None
    else:
        raise TypeError(f"ratings must be a dict {{id: rating}}, a Series indexed by id, a list of "
                        f"(id, rating) pairs or a DataFrame, got {type(ratings).__name__}")
    if len(ids) == 0:
        raise ValueError(f"ratings is empty: fold-in needs at least one rating; for a "
                         f"{'item' if is_item else 'user'} without ratings use "
                         f"learn.average_{'item' if is_item else 'user'}() (the lesson's average fallback)")
    try:
        vals = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("ratings must be numbers") from None
    if not np.all(np.isfinite(vals)):
        raise ValueError("ratings hold NaN or infinite values")
    idx = encode_ids(d.classes[key], ids, f"{'user' if is_item else 'item'} column {key!r}", hint=False)
    return idx, vals


def fold_in(learn, ratings, is_item=False, name=None, noise_var=None, max_iter=50, tol=1e-7):
    """A `FoldIn` for a new user from `ratings` of known items ({item: rating}, a Series indexed
    by item, (item, rating) pairs or a DataFrame with the item and rating columns), or for a new
    item from ratings by known users (`is_item=True`). Every model parameter stays frozen; the
    new row is the regularised least-squares (MAP) solution described in this module's
    docstring. `noise_var` defaults to the model's mean squared error on its training ratings."""
    m = learn.model
    if not is_dot_model(m):
        raise TypeError(f"fold-in needs a dot-product model (EmbeddingDotBias, DotProductBias, "
                        f"DotProduct), not {type(m).__name__}")
    idx, r = _parse_ratings(learn, ratings, is_item)
    if not is_item and hasattr(m, "fold_in_user"):   # the model's own (collabc.bayes: per draw)
        return m.fold_in_user(learn, idx, r, name=name)
    _, _, cw, cb = dot_tables(m, is_item)
    A = cw[idx].astype(np.float64)
    if m.has_bias:
        A = np.concatenate([A, np.ones((len(idx), 1))], 1)
    c = cb[idx].astype(np.float64) if cb is not None else np.zeros(len(idx))
    mu, var = _prior(learn, is_item)
    P = 1.0 / var
    s2 = train_noise_var(learn) if noise_var is None else float(noise_var)
    if not s2 > 0 or not np.isfinite(s2):
        raise ValueError(f"noise_var must be a positive number, got {noise_var!r}")
    if m.y_range is None:
        H = A.T @ A / s2 + np.diag(P)
        theta = np.linalg.solve(H, A.T @ (r - c) / s2 + P * mu)
    else:
        lo, hi = m.y_range
        span = hi - lo

        def objective(th):
            z = A @ th + c
            f = lo + span / (1 + np.exp(-z))
            return float(np.sum((f - r) ** 2) / s2 + np.sum(P * (th - mu) ** 2))

        theta = mu.copy()
        obj = objective(theta)
        for _ in range(max_iter):
            z = A @ theta + c
            sg = 1 / (1 + np.exp(-z))
            res = lo + span * sg - r
            J = (span * sg * (1 - sg))[:, None] * A
            g = J.T @ res / s2 + P * (theta - mu)
            H = J.T @ J / s2 + np.diag(P)
            step = -np.linalg.solve(H, g)
            t, slope = 1.0, float(g @ step)
            while t > 1e-10:
                new = theta + t * step
                new_obj = objective(new)
                if new_obj <= obj + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                break
            theta, obj = new, new_obj
            if np.max(np.abs(t * step)) < tol * (1 + np.max(np.abs(theta))):
                break
    K = cw.shape[1]
    return FoldIn(learn, theta[:K], theta[K] if m.has_bias else 0.0, is_item, rated=idx,
                  name=name, n_ratings=len(idx))


def average_embedding(learn, is_item=False, name=None):
    """The lesson's fallback for a user (item) with no ratings yet: the mean factors and bias of
    the trained users (items), as a `FoldIn`."""
    m = learn.model
    if not is_dot_model(m):
        raise TypeError(f"the average embedding needs a dot-product model, not {type(m).__name__}")
    mu, _ = _prior(learn, is_item)
    K = mu.size - (1 if m.has_bias else 0)
    return FoldIn(learn, mu[:K], mu[K] if m.has_bias else 0.0, is_item,
                  name=name if name is not None else f"average {'item' if is_item else 'user'}")
