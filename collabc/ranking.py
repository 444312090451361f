"""Ranking metrics on a validation split, next to mse/rmse/mae: precision@k, recall@k, NDCG@k
and MAP@k of the model's top-k recommendations.

For each user with at least one relevant validation rating, the model ranks every item except
'#na#' and the items the user rated in training (as `learn.recommend` does); the relevant items
are the user's validation items (with `threshold`, only those rated >= threshold). Users and items
that are '#na#' in the validation set (unknown at training time) are left out. With binary gains:

    precision@k = hits / k                     recall@k = hits / |relevant|
    NDCG@k      = sum_{i<k} rel_i / log2(i+2)  /  sum_{i<min(k,|relevant|)} 1 / log2(i+2)
    MAP@k       = mean over users of  sum_{i<k} rel_i * precision@(i+1)  /  min(k, |relevant|)

each averaged over the evaluated users.
"""
import numpy as np

from .topn import check_n as _check_n, top_n

__all__ = ["ranking_metrics", "precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k",
           "ranking_scores"]


def ranking_scores(top_items, relevant, k):
    """The four metrics from arrays: `top_items` (Q, >=k) ranked item indices per user (-1 for
    an empty slot), `relevant` a list of Q arrays of relevant item indices. Returns a dict."""
    k = _check_n(k, "k")
    top = np.asarray(top_items)[:, :k]
    Q = top.shape[0]
    if Q == 0:
        raise ValueError("no users to evaluate")
    n_rel = np.array([len(np.unique(r)) for r in relevant], dtype=np.float64)
    if np.any(n_rel == 0):
        raise ValueError("every evaluated user needs at least one relevant item")
    users = np.repeat(np.arange(Q), [len(np.unique(r)) for r in relevant])
    rel_items = np.concatenate([np.unique(r) for r in relevant]).astype(np.int64)
    width = int(max(top.max(initial=0), rel_items.max(initial=0))) + 2
    rel_keys = users * width + rel_items
    top_keys = np.arange(Q)[:, None] * width + np.where(top >= 0, top, width - 1)
    hits = np.isin(top_keys, rel_keys) & (top >= 0)
    h = hits.astype(np.float64)
    c = h.shape[1]   # ranks past the list (at most the candidates there are) hold no hits
    n_hits = h.sum(1)
    disc = 1.0 / np.log2(np.arange(2, max(c, int(np.minimum(n_rel, k).max())) + 2))
    dcg = h @ disc[:c]
    ideal = np.cumsum(disc)[np.minimum(n_rel, k).astype(np.int64) - 1]
    prec_at = np.cumsum(h, 1) / np.arange(1, c + 1)
    ap = (prec_at * h).sum(1) / np.minimum(n_rel, k)
    return {f"precision@{k}": float(np.mean(n_hits / k)), f"recall@{k}": float(np.mean(n_hits / n_rel)),
            f"ndcg@{k}": float(np.mean(dcg / ideal)), f"map@{k}": float(np.mean(ap)), "n_users": int(Q)}


def ranking_metrics(learn, k=10, ds_idx=1, threshold=None, threads=None):
    """precision@k, recall@k, NDCG@k and MAP@k of `learn`'s top-k recommendations against the
    ratings of `learn.dls[ds_idx]` (the validation set by default), excluding each user's
    training items from the ranking; `threshold` keeps only validation ratings >= threshold as
    relevant. Returns a dict with the four values and `n_users` (users evaluated)."""
    k = _check_n(k, "k")
    dl = learn.dls[ds_idx]
    if not getattr(dl, "has_y", True) and threshold is not None:
        raise ValueError("threshold needs ratings, but this DataLoader has none")
    x, y = dl.x, dl.y
    keep = (x[:, 0] > 0) & (x[:, 1] > 0)
    if threshold is not None:
        keep &= y >= float(threshold)
    x = x[keep]
    if len(x) == 0:
        raise ValueError("no relevant (user, item) pairs to evaluate: the split is empty, unknown "
                         "to the model, or below the threshold")
    order = np.lexsort((x[:, 1], x[:, 0]))
    x = x[order]
    users, starts = np.unique(x[:, 0], return_index=True)
    relevant = np.split(x[:, 1], starts[1:])
    idx, _ = top_n(learn, users, k, exclude_seen=True, threads=threads)
    return ranking_scores(idx, relevant, k)


def precision_at_k(learn, k=10, **kwargs):
    "Mean precision@k of the top-k recommendations on the validation set (see `ranking_metrics`)."
    return ranking_metrics(learn, k, **kwargs)[f"precision@{k}"]


def recall_at_k(learn, k=10, **kwargs):
    "Mean recall@k of the top-k recommendations on the validation set (see `ranking_metrics`)."
    return ranking_metrics(learn, k, **kwargs)[f"recall@{k}"]


def ndcg_at_k(learn, k=10, **kwargs):
    "Mean NDCG@k (binary gains) of the top-k recommendations on the validation set."
    return ranking_metrics(learn, k, **kwargs)[f"ndcg@{k}"]


def map_at_k(learn, k=10, **kwargs):
    "Mean average precision at k of the top-k recommendations on the validation set."
    return ranking_metrics(learn, k, **kwargs)[f"map@{k}"]
