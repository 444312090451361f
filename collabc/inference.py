"""Using a trained model: predictions in fastai's shapes, recommendations and new users/items.

* `get_preds`, `predict`, `show_results` - fastai's `Learner` methods (the `Learner` delegates here).
* `top_n` - the best n candidates per query, scored in C (`csrc/rank.c`) with a bounded heap per
  query and seen items skipped through a CSR structure; `recommend` / `recommend_users` turn it
  into DataFrames of labels and scores. Models outside the dot family are scored generically
  through `model._predict` over (user, every item) pairs.
* `fold_in` / `average_embedding` - the lesson's bootstrapping: a `FoldIn` (factors and bias) for a
  user or an item that was not in the training data, solved from a handful of ratings with every
  other parameter frozen, usable at once for predictions, recommendations and similarity.

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
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from . import _core
from .data import encode_ids
from .display import in_notebook
from .models import _DotFamily
from .seed import get_rng

__all__ = ["get_preds", "predict", "show_results", "top_n", "seen_csr", "recommend",
           "recommend_users", "FoldIn", "fold_in", "average_embedding"]


def _check_n(n, name="n"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def _preds_shape(model, preds):
    "fastai's shapes: (N,) for the dot models, (N, 1) for models that declare `preds_ndim = 2`."
    return preds.reshape(-1, 1) if getattr(model, "preds_ndim", 1) == 2 else preds


# ---------------------------------------------------------------------------------------------
# fastai's prediction API

def _targets(learn, dl):
    if not getattr(dl, "has_y", True):
        return None
    dt = getattr(learn.dls, "_y_dtype", np.dtype(np.float32))
    y = dl.y.reshape(-1, 1)
    return y.astype(dt) if np.dtype(dt).kind in "iub" else y.copy()


def get_preds(learn, ds_idx=1, dl=None, with_input=False, with_decoded=False, with_loss=False,
              act=None, reorder=True):
    """fastai's `Learner.get_preds`: `[inputs,] preds, targs[, decoded][, losses]` for the rows of
    `learn.dls[ds_idx]` (or `dl`, e.g. from `dls.test_dl(df)`) in the dataset's order (the split
    order, as fastai; a shuffled training loader is read unshuffled and complete).
    preds: float32 (N,) for the dot models; targs: (N, 1) in the rating column's dtype, or None
    for a `test_dl` without ratings; inputs: (N, 2) int64 encoded (user, item); losses: (N,)
    float32 squared errors. `act` is applied to preds (MSE's activation is the identity)."""
    if dl is None:
        if isinstance(ds_idx, bool) or ds_idx not in (0, 1):
            raise ValueError(f"ds_idx must be 0 (train) or 1 (valid), got {ds_idx!r}")
        dl = learn.dls[ds_idx]
    if not hasattr(dl, "x") or not hasattr(dl, "y"):
        raise TypeError(f"dl must be a collabc DataLoader, got {type(dl).__name__}")
    preds = learn.model._predict(dl.x) if dl.n else np.zeros(0, np.float32)
    if act is not None:
        preds = np.asarray(act(preds), dtype=np.float32)
    preds = _preds_shape(learn.model, preds)
    targs = _targets(learn, dl)
    res = [preds, targs]
    if with_input:
        res.insert(0, dl.x.astype(np.int64))
    if with_decoded:
        res.insert(3 if with_input else 2, preds)
    if with_loss:
        if targs is None:
            raise ValueError("with_loss=True needs targets, but this DataLoader has no rating column")
        res.append(((preds.reshape(-1) - dl.y) ** 2).astype(np.float32))
    return tuple(res)


def _row_frame(learn, row):
    u, i = learn.dls.user_name, learn.dls.item_name
    if isinstance(row, pd.Series):
        return row.to_frame().T
    if isinstance(row, dict):
        return pd.DataFrame([row])
    if isinstance(row, pd.DataFrame):
        if len(row) != 1:
            raise ValueError(f"predict takes one row; got a DataFrame of {len(row)} rows "
                             f"(use learn.get_preds(dl=learn.dls.test_dl(df)) for many)")
        return row
    if isinstance(row, (tuple, list)) and len(row) == 2:
        return pd.DataFrame({u: [row[0]], i: [row[1]]})
    raise TypeError(f"row must be a pandas Series, a dict, a one-row DataFrame or a (user, item) "
                    f"pair, got {type(row).__name__}")


def predict(learn, row, unknown="raise"):
    """fastai's `predict` for one row (a Series/dict with the user and item columns, or a
    (user, item) pair): `(full_dec, dec_pred, pred)` - a one-row DataFrame of the user, the item
    and `<rating>_pred`, then the prediction twice (decoding is the identity for MSE)."""
    df = _row_frame(learn, row)
    dl = learn.dls.test_dl(df, unknown=unknown, with_labels=False)
    preds = learn.model._predict(dl.x)
    u, i, r = learn.dls.user_name, learn.dls.item_name, learn.dls.rating_name
    full = pd.DataFrame({u: df[u].to_numpy(), i: df[i].to_numpy(), f"{r}_pred": preds})
    p = _preds_shape(learn.model, preds)[0]
    return full, p, p


def show_results(learn, ds_idx=1, dl=None, max_n=9, shuffle=True):
    """fastai's `show_results`: `max_n` rows of the validation set (random ones if `shuffle`) as
    a DataFrame user, item, rating, `<rating>_pred`; shown as HTML in a notebook, printed
    otherwise, and returned."""
    max_n = _check_n(max_n, "max_n")
    dl = learn.dls[ds_idx] if dl is None else dl
    if dl.n == 0:
        raise ValueError("show_results: the DataLoader has no rows")
    rows = get_rng().permutation(dl.n)[:max_n] if shuffle else np.arange(min(max_n, dl.n))
    x = dl.x[rows]
    d = learn.dls
    users = np.asarray(d.classes[d.user_name], dtype=object)[x[:, 0]]
    items = np.asarray(d.classes[d.item_name], dtype=object)[x[:, 1]]
    cols = {d.user_name: users, d.item_name: items}
    targs = _targets(learn, dl)
    if targs is not None:
        cols[d.rating_name] = targs[rows, 0]
    cols[f"{d.rating_name}_pred"] = learn.model._predict(np.ascontiguousarray(x))
    df = pd.DataFrame(cols)
    if in_notebook():
        from IPython.display import HTML, display
        display(HTML(df.to_html(index=False)))
    else:
        print(df.to_string(index=False))
    return df


# ---------------------------------------------------------------------------------------------
# top-n scoring

def seen_csr(x, n_rows, n_cols, by_item=False):
    """The (user, item) pairs of `x` ((N, 2) indices) as a CSR structure: `(indptr, indices)` with
    `indptr` (n_rows+1,) int64 and each row's `indices` (int32) sorted and unique. Rows are users
    (or items with `by_item=True`)."""
    x = np.asarray(x)
    a, b = (x[:, 1], x[:, 0]) if by_item else (x[:, 0], x[:, 1])
    keys = np.unique(a.astype(np.int64) * n_cols + b)
    rows = keys // n_cols
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, (keys % n_cols).astype(np.int32)


def _csr_rows(csr, rows):
    "The sub-CSR of the given rows, in that order."
    indptr, indices = csr
    starts, ends = indptr[rows], indptr[rows + 1]
    lens = ends - starts
    out_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lens, out=out_ptr[1:])
    if out_ptr[-1] == 0:
        return out_ptr, np.zeros(0, np.int32)
    pos = np.arange(out_ptr[-1], dtype=np.int64) + np.repeat(starts - out_ptr[:-1], lens)
    return out_ptr, np.ascontiguousarray(indices[pos])


def _dot_tables(model, is_item=False):
    """(query table, query biases, candidate table, candidate biases) of a dot-family model:
    users against items, or items against users with `is_item=True`."""
    uw, iw, ub, ib = model._attr_names
    U, I = getattr(model, uw).weight, getattr(model, iw).weight
    bu = getattr(model, ub).weight[:, 0] if model.has_bias else None
    bi = getattr(model, ib).weight[:, 0] if model.has_bias else None
    return (I, bi, U, bu) if is_item else (U, bu, I, bi)


def _default_threads(q, work):
    n = os.cpu_count() or 1
    return max(1, min(n, q // 64, int(work // 2e6) + 1))


def rank_vectors(qw, qb, cw, cb, n, exclude=None, first=0, y_range=None, threads=None):
    """The n best rows of `cw` for each row of `qw` by `qw[q].cw[c] + qb[q] + cb[c]` (biases
    optional), as `(idx (Q, n) int32, scores (Q, n) float32)`, best first, ties to the smaller
    index; `exclude` is a per-query CSR `(indptr, indices)` of candidates to skip, `first` skips
    candidates below it; scores go through `sigmoid_range(*y_range)` when given. Rows with fewer
    eligible candidates end with -1 / NaN. Runs in C, split over `threads` (default: by size)."""
    n = _check_n(n)
    qw = np.ascontiguousarray(qw, dtype=np.float32)
    cw = np.ascontiguousarray(cw, dtype=np.float32)
    qb = None if qb is None else np.ascontiguousarray(qb, dtype=np.float32)
    cb = None if cb is None else np.ascontiguousarray(cb, dtype=np.float32)
    Q, NC = qw.shape[0], cw.shape[0]
    idx = np.empty((Q, n), np.int32)
    scores = np.empty((Q, n), np.float32)
    if Q == 0:
        return idx, scores
    panel = _core.rank_pack(cw)
    y_range = None if y_range is None else tuple(y_range)
    threads = _default_threads(Q, Q * NC * cw.shape[1]) if threads is None else _check_n(threads, "threads")
    bounds = np.linspace(0, Q, min(threads, Q) + 1).astype(np.int64)

    def run(k):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if a == b:
            return
        ptr = ind = None
        if exclude is not None:
            p, ind = exclude
            ptr = np.ascontiguousarray(p[a:b + 1] - p[a])
            ind = np.ascontiguousarray(ind[p[a]:p[b]])
        _core.rank_dot_topk(idx[a:b], scores[a:b], qw[a:b], None if qb is None else qb[a:b], panel,
                            cb, ptr, ind, NC, first, y_range)

    if len(bounds) == 2:
        run(0)
    else:
        with ThreadPoolExecutor(len(bounds) - 1) as ex:
            list(ex.map(run, range(len(bounds) - 1)))
    return idx, scores


def _generic_top_n(model, users, n, exclude, first, n_items, chunk_pairs=2_000_000):
    "Top-n through `model._predict` over (user, every item) pairs, for models outside the dot family."
    Q = len(users)
    idx = np.full((Q, n), -1, np.int32)
    scores = np.full((Q, n), np.nan, np.float32)
    rows = max(1, chunk_pairs // n_items)
    items = np.arange(n_items, dtype=np.int32)
    for a in range(0, Q, rows):
        b = min(Q, a + rows)
        x = np.empty(((b - a) * n_items, 2), np.int32)
        x[:, 0] = np.repeat(users[a:b], n_items)
        x[:, 1] = np.tile(items, b - a)
        s = model._predict(x).reshape(b - a, n_items).astype(np.float32)
        s[:, :first] = -np.inf
        if exclude is not None:
            p, ind = exclude
            r = np.repeat(np.arange(b - a), np.diff(p[a:b + 1]))
            s[r, ind[p[a]:p[b]]] = -np.inf
        s[np.isnan(s)] = -np.inf
        for q in range(b - a):
            row = s[q]
            k = min(n, n_items)
            cand = np.argpartition(-row, k - 1)[:k] if k < n_items else np.arange(n_items)
            cand = cand[np.lexsort((cand, -row[cand]))]
            cand = cand[row[cand] > -np.inf]
            idx[a + q, :len(cand)] = cand
            scores[a + q, :len(cand)] = row[cand]
    return idx, scores


def _seen(learn, by_item=False):
    """CSR of the training pairs per user (per item with by_item), cached on the learner; after
    `load_learner` the pairs stored in the export file."""
    m = learn.model
    dl = learn.dls.train
    key = (id(dl.x), dl.n, m.n_users, m.n_items, by_item)
    cache = learn.__dict__.setdefault("_seen_cache", {})
    if key not in cache:
        if dl.n == 0 and getattr(learn, "_stored_seen", None) is not None:
            indptr, indices = learn._stored_seen
            if by_item:
                users = np.repeat(np.arange(m.n_users), np.diff(indptr))
                csr = seen_csr(np.stack([users, indices], 1), m.n_items, m.n_users, by_item=True)
            else:
                csr = (indptr, indices)
        elif dl.n == 0:
            raise ValueError("exclude_seen=True needs the training ratings, but this learner has none "
                             "(exported without them?); pass exclude_seen=False")
        else:
            csr = seen_csr(dl.x, m.n_items if by_item else m.n_users,
                           m.n_users if by_item else m.n_items, by_item=by_item)
        cache.clear()
        cache[key] = csr
    return cache[key]


def top_n(learn, queries, n=10, exclude_seen=True, is_item=False, threads=None):
    """The n best items for each user index in `queries` (or, with `is_item=True`, the n best
    users for each item index, or for `FoldIn` objects), as `(idx (Q, n), scores (Q, n))`:
    the model's predictions, best first; '#na#' and, with `exclude_seen`, the pairs rated in
    training (or the ratings a `FoldIn` was made from) never appear."""
    n = _check_n(n)
    m = learn.model
    folded = [q for q in queries if isinstance(q, FoldIn)]
    if folded and len(folded) != len(queries):
        raise TypeError("top_n: pass either indices or FoldIn objects, not a mix")
    n_cand = m.n_users if is_item else m.n_items
    if folded:
        if not isinstance(m, _DotFamily):
            raise TypeError(f"fold-in needs a dot-product model, not {type(m).__name__}")
        for f in folded:
            if f.is_item != is_item:
                raise ValueError(f"{f!r} is a new {'item' if f.is_item else 'user'}; it cannot be "
                                 f"ranked against {'users' if is_item else 'items'} here")
        qw = np.stack([f.factors for f in folded]).astype(np.float32)
        qb = np.array([f.bias for f in folded], np.float32) if m.has_bias else None
        _, _, cw, cb = _dot_tables(m, is_item)
        excl = None
        if exclude_seen:
            excl = _csr_from_lists([np.unique(f.rated) for f in folded])
        return rank_vectors(qw, qb, cw, cb, n, excl, first=1, y_range=m.y_range, threads=threads)
    queries = np.asarray(queries, dtype=np.int64)
    n_q = m.n_items if is_item else m.n_users
    if queries.size and (queries.min() < 0 or queries.max() >= n_q):
        raise IndexError(f"top_n: query indices must lie in [0, {n_q})")
    excl = _csr_rows(_seen(learn, by_item=is_item), queries) if exclude_seen else None
    if isinstance(m, _DotFamily):
        qtab, qbias, cw, cb = _dot_tables(m, is_item)
        qw = qtab[queries]
        qb = None if qbias is None else qbias[queries]
        return rank_vectors(qw, qb, cw, cb, n, excl, first=1, y_range=m.y_range, threads=threads)
    if is_item:
        raise TypeError(f"ranking users for an item needs a dot-product model, not {type(m).__name__}")
    return _generic_top_n(m, queries.astype(np.int32), n, excl, 1, n_cand)


def _csr_from_lists(lists):
    indptr = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=indptr[1:])
    indices = np.concatenate([np.asarray(x, np.int32) for x in lists]) if indptr[-1] else np.zeros(0, np.int32)
    return indptr, np.ascontiguousarray(indices, dtype=np.int32)


def _as_query_list(x):
    if isinstance(x, FoldIn) or isinstance(x, (str, bytes)) or np.ndim(x) == 0:
        return [x], True
    return list(x), False


def _encode_queries(learn, qs, is_item):
    if all(isinstance(q, FoldIn) for q in qs):
        return qs, [q.name for q in qs]
    if any(isinstance(q, FoldIn) for q in qs):
        raise TypeError("pass either ids or FoldIn objects, not a mix")
    d = learn.dls
    name = d.item_name if is_item else d.user_name
    idx = encode_ids(d.classes[name], qs, f"{'item' if is_item else 'user'} column {name!r}", hint=False)
    return idx, qs


def _frame(learn, labels, idx, scores, is_item, single, score_name="score"):
    d = learn.dls
    other = d.user_name if is_item else d.item_name
    qname = d.item_name if is_item else d.user_name
    keep = idx >= 0
    cls = np.asarray(d.classes[other], dtype=object)
    if single:
        return pd.DataFrame({other: cls[idx[0][keep[0]]], score_name: scores[0][keep[0]]})
    counts = keep.sum(1)
    return pd.DataFrame({qname: np.repeat(np.asarray(labels, dtype=object), counts),
                         "rank": np.concatenate([np.arange(1, c + 1) for c in counts]) if len(counts) else [],
                         other: cls[idx[keep]], score_name: scores[keep]})


def recommend(learn, users, n=10, exclude_seen=True, threads=None):
    """Top-n items for one user (a raw id or a `FoldIn`) as a DataFrame `item, score`, or for a
    list of users as a long DataFrame `user, rank, item, score` (n rows per user, fewer when
    fewer items are left). Scores are the model's predicted ratings; items the user rated in
    training are skipped with `exclude_seen`. Unknown users raise a `KeyError` naming them."""
    n = _check_n(n)
    qs, single = _as_query_list(users)
    q, labels = _encode_queries(learn, qs, is_item=False)
    idx, scores = top_n(learn, q, n, exclude_seen, is_item=False, threads=threads)
    return _frame(learn, labels, idx, scores, is_item=False, single=single)


def recommend_users(learn, items, n=10, exclude_seen=True, threads=None):
    """The mirror of `recommend`: the n users predicted to rate an item (raw id or `FoldIn`)
    highest, skipping users who rated it in training; dot-product models only."""
    n = _check_n(n)
    qs, single = _as_query_list(items)
    q, labels = _encode_queries(learn, qs, is_item=True)
    idx, scores = top_n(learn, q, n, exclude_seen, is_item=True, threads=threads)
    return _frame(learn, labels, idx, scores, is_item=True, single=single)


# ---------------------------------------------------------------------------------------------
# new users and items

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
        _, _, cw, cb = _dot_tables(m, self.is_item)
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
    indptr, _ = _seen(learn, by_item=is_item)
    rows = np.flatnonzero(np.diff(indptr) > 0)
    return rows[rows > 0]


def _prior(learn, is_item):
    m = learn.model
    qtab, qbias, _, _ = _dot_tables(m, is_item)
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


def _noise_var(learn):
    "Mean squared residual of the model on its training ratings (or the value stored at export)."
    dl = learn.dls.train
    if dl.n:
        p = learn.model._predict(dl.x)
        return max(float(np.mean((p.astype(np.float64) - dl.y) ** 2)), 1e-6)
    return float(getattr(learn, "_stored_noise_var", None) or 1.0)


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
    if not isinstance(m, _DotFamily):
        raise TypeError(f"fold-in needs a dot-product model (EmbeddingDotBias, DotProductBias, "
                        f"DotProduct), not {type(m).__name__}")
    idx, r = _parse_ratings(learn, ratings, is_item)
    _, _, cw, cb = _dot_tables(m, is_item)
    A = cw[idx].astype(np.float64)
    if m.has_bias:
        A = np.concatenate([A, np.ones((len(idx), 1))], 1)
    c = cb[idx].astype(np.float64) if cb is not None else np.zeros(len(idx))
    mu, var = _prior(learn, is_item)
    P = 1.0 / var
    s2 = _noise_var(learn) if noise_var is None else float(noise_var)
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
    if not isinstance(m, _DotFamily):
        raise TypeError(f"the average embedding needs a dot-product model, not {type(m).__name__}")
    mu, _ = _prior(learn, is_item)
    K = m.n_factors
    return FoldIn(learn, mu[:K], mu[K] if m.has_bias else 0.0, is_item,
                  name=name if name is not None else f"average {'item' if is_item else 'user'}")
