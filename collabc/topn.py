"""Top-n scoring: the best n candidates per query, in C (`csrc/rank.c`) with a bounded heap per
query and seen items skipped through a CSR of the training pairs; `recommend` /
`recommend_users` turn it into DataFrames of labels and scores. Models outside the dot family
(and built-in ones a user changed) are scored through the model's forward over (user, every
item) pairs (`collabc.models.predict_array`).
"""
import os
import threading

import numpy as np
import pandas as pd

from . import _core
from ._checks import check_int
from .csr import csr_from_lists, csr_rows
from .data import encode_ids
from .foldin import FoldIn, dot_tables as _dot_tables
from .models import is_dot_model, predict_array

__all__ = ["rank_vectors", "top_n", "recommend", "recommend_users", "check_n"]


def check_n(n, name="n"):
    "A count >= 1 (ValueError otherwise, as the ranking functions always said)."
    return check_int(name, n, 1, kind_error=ValueError)


def _default_threads(q, work):
    n = os.cpu_count() or 1
    return max(1, min(n, q // 64, int(work // 2e6) + 1))


# below this many queries the candidates are ranked in their own order (sorting them costs more
# than it saves)
_ORDER_MIN_QUERIES = 32


def _candidate_order(qw, cw, cb):
    """The candidates by the mean query's score, highest first (int32, a permutation of
    range(NC)): the C kernel visits them in this order, so each query's n-th best score, the bar
    a candidate must pass to reach its selection heap, rises early and few candidates reach it.
    The result does not depend on the order (the heaps break ties by index); only the time does."""
    with np.errstate(all="ignore"):     # inf or NaN factors: any order is right
        key = cw @ qw.mean(axis=0)
        if cb is not None:
            key = key + cb
    return np.argsort(-key, kind="stable").astype(np.int32)


def rank_vectors(qw, qb, cw, cb, n, exclude=None, first=0, y_range=None, threads=None):
    """The n best rows of `cw` for each row of `qw` by `qw[q].cw[c] + qb[q] + cb[c]` (biases
    optional), as `(idx (Q, n) int32, scores (Q, n) float32)`, best first, ties to the smaller
    index; `exclude` is a per-query CSR `(indptr, indices)` of candidates to skip, `first` skips
    candidates below it; scores go through `sigmoid_range(*y_range)` when given. Rows with fewer
    eligible candidates end with -1 / NaN. `n` is clamped to the candidates there are (the
    arrays have min(n, NC - first) columns), so a huge `n` allocates nothing extra. Runs in
    C, split over `threads` (default: by size); from 32 queries the C kernel visits the
    candidates in the order of the mean query's score, which gives the same result sooner."""
    n = check_n(n)
    qw = np.ascontiguousarray(qw, dtype=np.float32)
    cw = np.ascontiguousarray(cw, dtype=np.float32)
    qb = None if qb is None else np.ascontiguousarray(qb, dtype=np.float32)
    cb = None if cb is None else np.ascontiguousarray(cb, dtype=np.float32)
    Q, NC = qw.shape[0], cw.shape[0]
    n = min(n, max(NC - first, 0))
    idx = np.empty((Q, n), np.int32)
    scores = np.empty((Q, n), np.float32)
    if Q == 0 or n == 0:
        return idx, scores
    order = _candidate_order(qw, cw, cb) if Q >= _ORDER_MIN_QUERIES else None
    panel = _core.rank_pack(cw if order is None else cw[order])
    cbp = cb if cb is None or order is None else cb[order]
    y_range = None if y_range is None else tuple(y_range)
    threads = _default_threads(Q, Q * NC * cw.shape[1]) if threads is None else check_n(threads, "threads")
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
                            cbp, ptr, ind, NC, first, y_range, order)

    _run_shares(run, len(bounds) - 1)
    return idx, scores


def _run_shares(run, k):
    """run(0) ... run(k - 1) at once: share 0 in the calling thread, the others in threads of their
    own (starting k - 1 threads costs less than a pool, which matters at a few ms a call); the
    first exception of any share is raised after all have ended."""
    errors = [None] * k

    def guarded(i):
        try:
            run(i)
        except BaseException as e:     # re-raised in the caller below
            errors[i] = e

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(1, k)]
    for t in threads:
        t.start()
    try:
        run(0)
    finally:
        for t in threads:
            t.join()
    for e in errors:
        if e is not None:
            raise e


def _generic_top_n(model, users, n, exclude, first, n_items, chunk_pairs=2_000_000):
    "Top-n through the model's predictions over (user, every item) pairs, for models outside the dot family."
    Q = len(users)
    n = min(n, max(n_items - first, 0))   # at most every candidate: a huge n allocates nothing
    idx = np.full((Q, n), -1, np.int32)
    scores = np.full((Q, n), np.nan, np.float32)
    rows = max(1, chunk_pairs // n_items)
    items = np.arange(n_items, dtype=np.int32)
    for a in range(0, Q, rows):
        b = min(Q, a + rows)
        x = np.empty(((b - a) * n_items, 2), np.int32)
        x[:, 0] = np.repeat(users[a:b], n_items)
        x[:, 1] = np.tile(items, b - a)
        s = predict_array(model, x).reshape(b - a, n_items).astype(np.float32)
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


def top_n(learn, queries, n=10, exclude_seen=True, is_item=False, threads=None):
    """The n best items for each user index in `queries` (or, with `is_item=True`, the n best
    users for each item index, or for `FoldIn` objects), as `(idx (Q, n'), scores (Q, n'))`
    with n' = min(n, the candidates other than '#na#'):
    the model's predictions, best first; '#na#' and, with `exclude_seen`, the pairs rated in
    training (or the ratings a `FoldIn` was made from) never appear."""
    n = check_n(n)
    m = learn.model
    folded = [q for q in queries if isinstance(q, FoldIn)]
    if folded and len(folded) != len(queries):
        raise TypeError("top_n: pass either indices or FoldIn objects, not a mix")
    n_cand = learn.dls.n_users if is_item else learn.dls.n_items
    if folded:
        if not is_dot_model(m):
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
            excl = csr_from_lists([np.unique(f.rated) for f in folded])
        return rank_vectors(qw, qb, cw, cb, n, excl, first=1, y_range=m.y_range, threads=threads)
    queries = np.asarray(queries, dtype=np.int64)
    n_q = learn.dls.n_items if is_item else learn.dls.n_users
    if queries.size and (queries.min() < 0 or queries.max() >= n_q):
        raise IndexError(f"top_n: query indices must lie in [0, {n_q})")
    excl = csr_rows(learn.seen(by_item=is_item), queries) if exclude_seen else None
    if is_dot_model(m):
        qtab, qbias, cw, cb = _dot_tables(m, is_item)
        qw = qtab[queries]
        qb = None if qbias is None else qbias[queries]
        return rank_vectors(qw, qb, cw, cb, n, excl, first=1, y_range=m.y_range, threads=threads)
    if is_item:
        raise TypeError(f"ranking users for an item needs a dot-product model, not {type(m).__name__}")
    return _generic_top_n(m, queries.astype(np.int32), n, excl, 1, n_cand)


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
    n = check_n(n)
    qs, single = _as_query_list(users)
    q, labels = _encode_queries(learn, qs, is_item=False)
    idx, scores = top_n(learn, q, n, exclude_seen, is_item=False, threads=threads)
    return _frame(learn, labels, idx, scores, is_item=False, single=single)


def recommend_users(learn, items, n=10, exclude_seen=True, threads=None):
    """The mirror of `recommend`: the n users predicted to rate an item (raw id or `FoldIn`)
    highest, skipping users who rated it in training; dot-product models only."""
    n = check_n(n)
    qs, single = _as_query_list(items)
    q, labels = _encode_queries(learn, qs, is_item=True)
    idx, scores = top_n(learn, q, n, exclude_seen, is_item=True, threads=threads)
    return _frame(learn, labels, idx, scores, is_item=True, single=single)
