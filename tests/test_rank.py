"""The top-n kernel (csrc/rank.c) through its binding: against a float64-free NumPy reference
(scores compared bit for bit with dotbias_forward), exclusions, ties, short rows, y_range,
query splitting, and every validation path."""
import numpy as np
import pytest

from collabc import _core
from collabc.topn import rank_vectors


def reference_topk(qw, qb, cw, cb, n, excl=None, first=0):
    "Scores with dotbias_forward (the model's arithmetic), then a full lexsort per query."
    Q, NC = len(qw), len(cw)
    z = np.empty((Q, NC), np.float32)
    for q in range(Q):
        out = np.empty(NC, np.float32)
        _core.dotbias_forward(out, qw[q:q + 1], cw, None if qb is None else qb[q:q + 1], cb,
                              np.zeros(NC, np.int32), np.arange(NC, dtype=np.int32))
        z[q] = out
    idx = np.full((Q, n), -1, np.int32)
    sc = np.full((Q, n), np.nan, np.float32)
    for q in range(Q):
        ok = np.ones(NC, bool)
        ok[:first] = False
        if excl is not None:
            ok[excl[1][excl[0][q]:excl[0][q + 1]]] = False
        ok &= ~np.isnan(z[q]) & (z[q] > -np.inf)
        cand = np.flatnonzero(ok)
        cand = cand[np.lexsort((cand, -z[q, cand]))][:n]
        idx[q, :len(cand)] = cand
        sc[q, :len(cand)] = z[q, cand]
    return idx, sc, z


def random_case(seed, Q=37, NC=101, K=13, bias=True):
    rng = np.random.default_rng(seed)
    qw = rng.normal(size=(Q, K)).astype(np.float32)
    cw = rng.normal(size=(NC, K)).astype(np.float32)
    qb = rng.normal(size=Q).astype(np.float32) if bias else None
    cb = rng.normal(size=NC).astype(np.float32) if bias else None
    return qw, qb, cw, cb


def run(qw, qb, cw, cb, n, excl=None, first=0, y_range=None, order=None):
    "The kernel, with the candidates packed in `order` (None: as they are)."
    Q = len(qw)
    idx = np.empty((Q, n), np.int32)
    sc = np.empty((Q, n), np.float32)
    ptr, ind = (None, None) if excl is None else excl
    if order is not None:
        order = np.asarray(order, np.int32)
        cw, cb = cw[order], None if cb is None else cb[order]
    _core.rank_dot_topk(idx, sc, qw, qb, _core.rank_pack(cw), cb, ptr, ind, len(cw), first, y_range,
                        order)
    return idx, sc


@pytest.mark.parametrize("seed,bias,n,first", [(0, True, 10, 1), (1, False, 5, 0), (2, True, 1, 0),
                                               (3, True, 100, 1), (4, False, 33, 17)])
def test_matches_reference_bit_for_bit(seed, bias, n, first):
    qw, qb, cw, cb = random_case(seed, bias=bias)
    idx, sc = run(qw, qb, cw, cb, n, first=first)
    ridx, rsc, _ = reference_topk(qw, qb, cw, cb, n, first=first)
    np.testing.assert_array_equal(idx, ridx, err_msg=f"seed={seed} bias={bias} n={n}")
    np.testing.assert_array_equal(sc, rsc, err_msg=f"seed={seed}")


@pytest.mark.parametrize("K", [1, 3, 16, 50, 67])
def test_factor_counts_and_tile_edges(K):
    for NC in (1, 15, 16, 17, 33, 2000):
        qw, qb, cw, cb = random_case(K * 1000 + NC, Q=9, NC=NC, K=K)
        n = min(7, NC)
        idx, sc = run(qw, qb, cw, cb, n)
        ridx, rsc, _ = reference_topk(qw, qb, cw, cb, n)
        np.testing.assert_array_equal(idx, ridx, err_msg=f"K={K} NC={NC}")
        np.testing.assert_array_equal(sc, rsc, err_msg=f"K={K} NC={NC}")


def test_exclusions_first_and_short_rows():
    rng = np.random.default_rng(5)
    qw, qb, cw, cb = random_case(5, Q=20, NC=30)
    lists = [np.unique(rng.integers(0, 30, rng.integers(0, 29))) for _ in range(20)]
    lists[3] = np.arange(30)          # everything excluded
    lists[4] = np.arange(2, 30)       # only index 1 left after first=1
    ptr = np.zeros(21, np.int64)
    np.cumsum([len(x) for x in lists], out=ptr[1:])
    ind = np.concatenate(lists).astype(np.int32)
    idx, sc = run(qw, qb, cw, cb, 12, (ptr, ind), first=1)
    ridx, rsc, _ = reference_topk(qw, qb, cw, cb, 12, (ptr, ind), first=1)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(sc, rsc)
    assert (idx[3] == -1).all() and np.isnan(sc[3]).all()
    assert idx[4, 0] == 1 and (idx[4, 1:] == -1).all()
    for q in range(20):
        assert not set(idx[q][idx[q] >= 0]) & set(lists[q])


def test_duplicate_exclusions_are_allowed():
    qw, qb, cw, cb = random_case(6, Q=1, NC=10)
    ptr = np.array([0, 4], np.int64)
    ind = np.array([2, 2, 5, 5], np.int32)
    idx, _ = run(qw, qb, cw, cb, 10, (ptr, ind))
    assert sorted(idx[0][idx[0] >= 0]) == [0, 1, 3, 4, 6, 7, 8, 9]


def test_ties_go_to_the_smaller_index():
    qw = np.ones((2, 4), np.float32)
    cw = np.zeros((40, 4), np.float32)
    cw[[3, 17, 30, 35]] = 1.0
    idx, sc = run(qw, None, cw, None, 6)
    np.testing.assert_array_equal(idx[0], [3, 17, 30, 35, 0, 1])
    np.testing.assert_array_equal(sc[0], [4, 4, 4, 4, 0, 0])


def test_nan_scores_are_never_selected():
    qw, qb, cw, cb = random_case(7, Q=3, NC=20)
    cw[[2, 9]] = np.nan
    idx, _ = run(qw, qb, cw, cb, 20)
    for q in range(3):
        assert set(idx[q][idx[q] >= 0]) == set(range(20)) - {2, 9}
        assert (idx[q][18:] == -1).all()


def test_y_range_reports_sigmoid_range_of_the_ranked_scores():
    qw, qb, cw, cb = random_case(8)
    idx, raw = run(qw, qb, cw, cb, 8)
    idx2, sc = run(qw, qb, cw, cb, 8, y_range=(0.0, 5.5))
    np.testing.assert_array_equal(idx, idx2)
    want = np.empty_like(raw)
    for q in range(len(raw)):
        _core.sigmoid_range_forward(want[q], np.ascontiguousarray(raw[q]), 0.0, 5.5)
    np.testing.assert_array_equal(sc, want)


def test_threads_split_gives_the_same_answer():
    rng = np.random.default_rng(9)
    qw, qb, cw, cb = random_case(9, Q=300, NC=500, K=20)
    lists = [np.unique(rng.integers(0, 500, 40)) for _ in range(300)]
    ptr = np.zeros(301, np.int64)
    np.cumsum([len(x) for x in lists], out=ptr[1:])
    ind = np.concatenate(lists).astype(np.int32)
    one = rank_vectors(qw, qb, cw, cb, 10, (ptr, ind), first=1, threads=1)
    three = rank_vectors(qw, qb, cw, cb, 10, (ptr, ind), first=1, threads=3)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])
    ridx, rsc, _ = reference_topk(qw, qb, cw, cb, 10, (ptr, ind), first=1)
    np.testing.assert_array_equal(one[0], ridx)


def test_any_candidate_order_gives_the_same_result():
    """The panel may hold the candidates in any order (rank_vectors packs them by the mean query's
    score): reversed, shuffled or by score, the result is the reference's, with ties (the later
    of two equal candidates visited first must still lose to the smaller index), NaN and -inf
    scores, exclusions, first and y_range."""
    from collabc.topn import _candidate_order
    rng = np.random.default_rng(12)
    for seed, (Q, NC, K) in enumerate([(40, 101, 13), (5, 17, 3), (64, 300, 50), (3, 1, 2)]):
        qw, qb, cw, cb = random_case(100 + seed, Q=Q, NC=NC, K=K)
        if NC > 40:
            cw[[30, 3, 12]] = cw[5]          # four candidates with the same scores
            cb[[30, 3, 12]] = cb[5]
            cw[7] = np.nan
            cb[9] = -np.inf
        lists = [np.unique(rng.integers(0, NC, rng.integers(0, max(NC // 3, 1) + 1))) for _ in range(Q)]
        ptr = np.zeros(Q + 1, np.int64)
        np.cumsum([len(x) for x in lists], out=ptr[1:])
        ind = np.concatenate(lists).astype(np.int32)
        for excl, first, y_range in [(None, 0, None), ((ptr, ind), 1, None), ((ptr, ind), min(2, NC), (0.0, 5.5))]:
            want = run(qw, qb, cw, cb, 10, excl, first, y_range)
            ridx, rsc, _ = reference_topk(qw, qb, cw, cb, 10, excl, first)
            np.testing.assert_array_equal(want[0], ridx[:, :want[0].shape[1]])
            for order in (np.arange(NC)[::-1], rng.permutation(NC), _candidate_order(qw, cw, cb)):
                got = run(qw, qb, cw, cb, 10, excl, first, y_range, order)
                np.testing.assert_array_equal(got[0], want[0], err_msg=f"case {seed}, first {first}")
                np.testing.assert_array_equal(got[1], want[1], err_msg=f"case {seed}, first {first}")
    # ties when every score is equal: the smallest indices, whatever the order
    qw = np.ones((2, 4), np.float32)
    cw = np.zeros((40, 4), np.float32)
    cw[[3, 17, 30, 35]] = 1.0
    idx, sc = run(qw, None, cw, None, 6, order=np.arange(40)[::-1])
    np.testing.assert_array_equal(idx[0], [3, 17, 30, 35, 0, 1])
    np.testing.assert_array_equal(sc[0], [4, 4, 4, 4, 0, 0])


def test_rank_vectors_orders_large_query_sets_and_gives_the_same_answer():
    "From 32 queries rank_vectors packs the candidates by the mean query's score: same result."
    from collabc import topn
    rng = np.random.default_rng(13)
    qw, qb, cw, cb = random_case(13, Q=topn._ORDER_MIN_QUERIES + 8, NC=400, K=20)
    lists = [np.unique(rng.integers(0, 400, 30)) for _ in range(len(qw))]
    ptr = np.zeros(len(qw) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=ptr[1:])
    ind = np.concatenate(lists).astype(np.int32)
    idx, sc = rank_vectors(qw, qb, cw, cb, 10, (ptr, ind), first=1, y_range=(0, 5.5), threads=2)
    ridx, rsc = run(qw, qb, cw, cb, 10, (ptr, ind), 1, (0, 5.5))
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(sc, rsc)
    small = rank_vectors(qw[:5], qb[:5], cw, cb, 10, (ptr[:6], ind[:ptr[5]]), first=1, threads=1)
    np.testing.assert_array_equal(small[0], ridx[:5])


def test_pack_layout():
    cw = np.arange(18 * 3, dtype=np.float32).reshape(18, 3)
    p = _core.rank_pack(cw)
    assert p.shape == (32 * 3,)
    tiles = p.reshape(2, 3, 16)
    np.testing.assert_array_equal(tiles[0].T, cw[:16])
    np.testing.assert_array_equal(tiles[1].T[:2], cw[16:])
    assert (tiles[1].T[2:] == 0).all()


def test_inputs_are_not_modified():
    qw, qb, cw, cb = random_case(10)
    copies = [a.copy() for a in (qw, qb, cw, cb)]
    run(qw, qb, cw, cb, 5)
    for a, b in zip((qw, qb, cw, cb), copies):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- validation
@pytest.fixture
def args():
    qw, qb, cw, cb = random_case(11, Q=4, NC=20, K=3)
    return dict(top_idx=np.empty((4, 5), np.int32), top_score=np.empty((4, 5), np.float32), qw=qw,
                qb=qb, panel=_core.rank_pack(cw), cb=cb, excl_indptr=None, excl_indices=None,
                n_candidates=20, first=0, y_range=None)


@pytest.mark.parametrize("change,exc,match", [
    (dict(top_idx=np.empty((4, 5), np.int64)), TypeError, "top_idx.*int32"),
    (dict(top_score=np.empty((4, 6), np.float32)), ValueError, "top_score.*shape"),
    (dict(top_idx=np.empty((4, 0), np.int32), top_score=np.empty((4, 0), np.float32)), ValueError, "top_idx.shape\\[1\\].*>= 1"),
    (dict(qw=np.zeros((4, 3), np.float64)), TypeError, "qw.*float32"),
    (dict(qw=np.zeros((3, 4), np.float32).T), ValueError, "qw.*C-contiguous"),
    (dict(qb=np.zeros(3, np.float32)), ValueError, "qb.*shape"),
    (dict(cb=np.zeros(21, np.float32)), ValueError, "cb.*shape"),
    (dict(panel=np.zeros(10, np.float32)), ValueError, "panel.*shape"),
    (dict(n_candidates=0), ValueError, "n_candidates.*>= 1"),
    (dict(first=21), ValueError, "first"),
    (dict(first=-1), ValueError, "first"),
    (dict(y_range=(5.0, 1.0)), ValueError, "lo < hi"),
    (dict(y_range="ab"), TypeError, "y_range"),
    (dict(excl_indptr=np.zeros(5, np.int64)), ValueError, "both"),
    (dict(excl_indptr=np.zeros(4, np.int64), excl_indices=np.zeros(0, np.int32)), ValueError, "excl_indptr.*shape"),
    (dict(excl_indptr=np.array([0, 1, 1, 1, 2], np.int64), excl_indices=np.array([3, 20], np.int32)), IndexError, "candidate 20"),
    (dict(excl_indptr=np.array([0, 2, 2, 2, 2], np.int64), excl_indices=np.array([5, 3], np.int32)), ValueError, "sorted"),
    (dict(excl_indptr=np.array([0, 2, 1, 2, 2], np.int64), excl_indices=np.array([3, 5], np.int32)), ValueError, "non-decreasing"),
    (dict(excl_indptr=np.array([1, 2, 2, 2, 2], np.int64), excl_indices=np.array([3, 5], np.int32)), ValueError, "start at 0"),
    (dict(order=np.arange(20, dtype=np.int64)), TypeError, "order.*int32"),
    (dict(order=np.arange(19, dtype=np.int32)), ValueError, "order.*shape"),
    (dict(order=np.r_[np.arange(19), 20].astype(np.int32)), ValueError, r"order.*permutation.*order\[19\] = 20 is outside"),
    (dict(order=np.r_[np.arange(19), -1].astype(np.int32)), ValueError, r"order\[19\] = -1 is outside"),
    (dict(order=np.r_[np.arange(19), 4].astype(np.int32)), ValueError, r"order\[19\] = 4 is repeated"),
])
def test_validation(args, change, exc, match):
    args.update(change)
    with pytest.raises(exc, match=match):
        _core.rank_dot_topk(**args)


def test_outputs_must_be_writeable_and_separate(args):
    ro = np.empty((4, 5), np.int32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _core.rank_dot_topk(**{**args, "top_idx": ro})
    buf = np.empty(40, np.float32)
    with pytest.raises(ValueError, match="share memory"):
        _core.rank_dot_topk(**{**args, "top_score": buf[:20].reshape(4, 5),
                               "qb": buf[18:22]})


def test_pack_validation():
    with pytest.raises(TypeError, match="float32"):
        _core.rank_pack(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        _core.rank_pack(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=">= 1"):
        _core.rank_pack(np.zeros((0, 2), np.float32))


def test_run_shares_runs_every_share_and_raises_a_workers_error():
    from collabc.topn import _run_shares
    import threading
    seen, main = [], threading.get_ident()
    _run_shares(lambda i: seen.append((i, threading.get_ident() == main)), 3)
    assert sorted(seen) == [(0, True), (1, False), (2, False)]
    done = []

    def run(i):
        if i == 2:
            raise ValueError("share 2 failed")
        done.append(i)
    with pytest.raises(ValueError, match="share 2 failed"):
        _run_shares(run, 3)
    assert sorted(done) == [0, 1]       # the other shares ran to their end
