"""Implicit feedback (collabc.implicit, csrc/als.c, csrc/bpr.c): the kernels against the float64
references of reference_implicit.py, thread-count independence, BPR's negative sampling, the
per-user split, the ranking metrics and the popularity baseline, fold-in, and bad input."""
import time

import numpy as np
import pandas as pd
import pytest

import reference_implicit as R
from collabc import _core
from collabc.data import DataLoaders
from collabc.implicit import (BPR, EpochRun, ImplicitALS, ImplicitData, Interactions, Popularity,
                              auto_groups, evaluate, implicit_from_df)


def _pairs(seed=0, nu=40, ni=30, n=400, weights=True):
    rng = np.random.default_rng(seed)
    u = rng.integers(1, nu, n).astype(np.int32)
    i = rng.integers(1, ni, n).astype(np.int32)
    w = (rng.random(n) * 3).astype(np.float32) if weights else None
    return u, i, w, nu, ni


def _inter(seed=0, **kw):
    u, i, w, nu, ni = _pairs(seed, **kw)
    return Interactions(u, i, w, nu, ni)


def _tables(nu, ni, K, seed=1, scale=0.1):
    rng = np.random.default_rng(seed)
    X = (rng.random((nu, K)) * scale).astype(np.float32)
    Y = (rng.random((ni, K)) * scale).astype(np.float32)
    X[0] = Y[0] = 0
    return X, Y


def _msg(**kw):
    return ", ".join(f"{k}={v}" for k, v in kw.items())


# ---------------------------------------------------------------------------------------------
# CSR building

@pytest.mark.parametrize("threads", [1, 3])
def test_csr_sums_repeats_and_sorts_rows(threads):
    u, i, w, nu, ni = _pairs(3, n=500)
    ip, ix, iw = _core.als_csr(u, i, w, nu, ni, threads)
    D = np.zeros((nu, ni))
    np.add.at(D, (u, i), w.astype(np.float64))
    got = np.zeros((nu, ni))
    for r in range(nu):
        cols = ix[ip[r]:ip[r + 1]]
        assert np.all(np.diff(cols) > 0), f"row {r} not sorted / repeated"
        got[r, cols] = iw[ip[r]:ip[r + 1]]
    np.testing.assert_allclose(got, D, rtol=1e-6)
    assert ip[-1] == len(ix) == len(iw) == np.count_nonzero(np.bincount(u.astype(np.int64) * ni + i))
    ip2, ix2, iw2 = _core.als_csr(u, i, None, nu, ni, threads)
    assert iw2 is None and np.array_equal(ip2, ip) and np.array_equal(ix2, ix)


def test_csr_reads_columns_of_a_pair_array_and_transposes():
    u, i, w, nu, ni = _pairs(4)
    x = np.stack([u, i], 1)
    a = _core.als_csr(x[:, 0], x[:, 1], w, nu, ni)
    b = _core.als_csr(u.copy(), i.copy(), w, nu, ni)
    for p, q in zip(a, b):
        assert np.array_equal(p, q)
    tp, tx, tw = _core.als_transpose(*a, ni)
    for it in range(ni):
        for q in range(tp[it], tp[it + 1]):
            r = tx[q]
            row = a[1][a[0][r]:a[0][r + 1]]
            k = np.searchsorted(row, it)
            assert row[k] == it and a[2][a[0][r] + k] == tw[q]
        assert np.all(np.diff(tx[tp[it]:tp[it + 1]]) > 0)


def test_csr_rejects_out_of_range_ids():
    u, i, w, nu, ni = _pairs(5)
    u[7] = nu
    with pytest.raises(IndexError, match=r"'rows' holds 40 at position 7, outside \[0, 40\)"):
        _core.als_csr(u, i, w, nu, ni)
    u[7] = 1
    i[3] = -2
    with pytest.raises(IndexError, match="'cols' holds -2 at position 3"):
        _core.als_csr(u, i, w, nu, ni)
    with pytest.raises(TypeError, match="'rows' must have dtype int32"):
        _core.als_csr(u.astype(np.int64), i, w, nu, ni)
    with pytest.raises(ValueError, match="same length"):
        _core.als_csr(u[:-1], i, w, nu, ni)


# ---------------------------------------------------------------------------------------------
# ALS

@pytest.mark.parametrize("threads", [1, 2, 5])
def test_gramian_matches_float64_for_any_threads(threads):
    _, Y = _tables(3, 500, 24, seed=threads)
    G = np.zeros((24, 24), np.float32)
    sq = _core.als_gramian(G, Y, threads)
    want = Y.astype(np.float64).T @ Y
    np.testing.assert_allclose(G, want, rtol=1e-6, atol=1e-9)
    assert sq == pytest.approx(np.trace(want), rel=1e-12)
    G1 = np.zeros_like(G)
    _core.als_gramian(G1, Y, 1)
    assert np.array_equal(G, G1)


@pytest.mark.parametrize("K,weighted", [(8, True), (16, False), (20, True)])
def test_als_half_step_matches_float64_cg(K, weighted):
    inter = _inter(6, weights=weighted)
    X, Y = _tables(inter.n_users, inter.n_items, K, seed=K)
    alpha, reg, steps = 2.0, 0.1, 3
    G = np.zeros((K, K), np.float32)
    sq = _core.als_gramian(G, Y)
    X0 = X.copy()
    obj = _core.als_solve(X, G, Y, inter.indptr, inter.indices, inter.weights, 0, inter.n_users,
                          alpha, reg, steps)
    want = R.als_half_step(X0, Y, inter.indptr, inter.indices, inter.weights, alpha, reg, steps)
    err = _msg(K=K, weighted=weighted, seed=6)
    np.testing.assert_allclose(X, want, rtol=2e-4, atol=2e-5, err_msg=err)
    assert np.all(X[0] == 0), "'#na#' (no items) must stay 0"
    P, C = R.dense_confidence(inter.indptr, inter.indices, inter.weights, inter.n_items, alpha)
    rows = R.als_row_loss(X, Y, P, C, reg).sum()
    assert obj == pytest.approx(rows, rel=1e-5), err
    assert obj + reg * sq == pytest.approx(R.als_loss(X, Y, P, C, reg), rel=1e-5), err


def test_als_cg_converges_to_the_exact_solve():
    inter = _inter(7)
    K = 12
    X, Y = _tables(inter.n_users, inter.n_items, K)
    G = np.zeros((K, K), np.float32)
    _core.als_gramian(G, Y)
    _core.als_solve(X, G, Y, inter.indptr, inter.indices, inter.weights, 0, inter.n_users, 3.0, 0.5, 40)
    for u in range(1, inter.n_users):
        s, e = inter.indptr[u], inter.indptr[u + 1]
        want = R.als_exact_row(Y, inter.indices[s:e], inter.weights[s:e], 3.0, 0.5)
        np.testing.assert_allclose(X[u], want, rtol=1e-3, atol=1e-4, err_msg=f"user {u}")


def test_als_rows_in_segments_equal_one_call_for_any_threads():
    inter = _inter(8, nu=300, ni=120, n=6000)
    K = 32
    X, Y = _tables(inter.n_users, inter.n_items, K)
    G = np.zeros((K, K), np.float32)
    _core.als_gramian(G, Y)
    args = (inter.indptr, inter.indices, inter.weights)
    ref = X.copy()
    obj = _core.als_solve(ref, G, Y, *args, 0, inter.n_users, 4.0, 0.2, 3, 1)
    for threads in (2, 3):
        Z = X.copy()
        parts = [_core.als_solve(Z, G, Y, *args, a, b, 4.0, 0.2, 3, threads)
                 for a, b in ((0, 17), (17, 17), (17, 200), (200, inter.n_users))]
        assert np.array_equal(Z, ref), f"threads={threads}"
        assert sum(parts) == pytest.approx(obj, rel=1e-12)
        Z = X.copy()
        assert _core.als_solve(Z, G, Y, *args, 0, inter.n_users, 4.0, 0.2, 3, threads) == obj
        assert np.array_equal(Z, ref)


def test_als_full_iteration_matches_reference_and_reports_the_loss():
    inter = _inter(9)
    m = ImplicitALS(inter.n_users, inter.n_items, n_factors=8, reg=0.3, alpha=2.0, seed=0)
    X0, Y0 = m.user_factors.copy(), m.item_factors.copy()
    assert np.all(X0[0] == 0) and np.all(Y0[0] == 0) and X0.min() >= 0 and X0.max() < 0.01
    # from the tiny initial tables the first item half-step is ill-conditioned (float32 CG then
    # drifts from float64 CG by ~1e-3); start from a moderate point instead
    X0, Y0 = _tables(inter.n_users, inter.n_items, 8, seed=9, scale=0.5)
    m.user_factors[:], m.item_factors[:] = X0, Y0
    loss = m.fit_epoch(inter, n_threads=2)
    X1 = R.als_half_step(X0, Y0, inter.indptr, inter.indices, inter.weights, 2.0, 0.3, 3)
    tp, tx, tw = inter.item_csr()
    # the item half-step from the kernel's own user factors (CG from a poor start amplifies
    # float32 rounding, so each half-step is compared on the same inputs)
    Y1 = R.als_half_step(Y0, m.user_factors, tp, tx, tw, 2.0, 0.3, 3)
    np.testing.assert_allclose(m.user_factors, X1, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(m.item_factors, Y1, rtol=2e-4, atol=2e-5)
    P, C = R.dense_confidence(inter.indptr, inter.indices, inter.weights, inter.n_items, 2.0)
    full = R.als_loss(m.user_factors[1:], m.item_factors[1:], P[1:, 1:], C[1:, 1:], 0.3)
    assert loss == pytest.approx(full / C[1:, 1:].sum(), rel=1e-5)
    losses = [m.fit_epoch(inter) for _ in range(5)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip([loss] + losses, losses)), losses


def test_als_epoch_in_segments_is_the_whole_epoch():
    inter = _inter(10, nu=80, ni=50, n=1500)
    a = ImplicitALS(inter.n_users, inter.n_items, n_factors=16, reg=0.1, alpha=3.0, seed=4)
    b = ImplicitALS(inter.n_users, inter.n_items, n_factors=16, reg=0.1, alpha=3.0, seed=4)
    la = a.fit_epoch(inter, n_threads=1)
    ep = b.epoch(inter, n_threads=2)
    assert isinstance(ep, EpochRun) and ep.n_units == 130 and ep.unit == 1
    for n in (5, 70, 1, 30, 100):
        ep.run(n)
    assert ep.done and ep.n_done == 130
    assert ep.result()["loss"] == pytest.approx(la, rel=1e-12)
    assert np.array_equal(a.user_factors, b.user_factors) and np.array_equal(a.item_factors, b.item_factors)
    ep = b.epoch(inter)
    ep.run(10)
    with pytest.raises(RuntimeError, match="not finished: 10 of 130"):
        ep.result()
    ep.run_for(0.05)
    while not ep.done:
        ep.run_for(0.01)
    assert np.isfinite(ep.result()["loss"])


def test_als_fold_in_is_the_exact_user_solve():
    inter = _inter(11)
    m = ImplicitALS(inter.n_users, inter.n_items, n_factors=8, reg=0.2, alpha=2.0, seed=1)
    for _ in range(3):
        m.fit_epoch(inter)
    items, w = np.array([3, 5, 5, 9]), np.array([1.0, 2.0, 0.5, 4.0])
    got = m.fold_in(items, w)
    want = R.als_exact_row(m.item_factors, np.array([3, 5, 9]), np.array([1.0, 2.5, 4.0]), 2.0, 0.2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # an existing user folded in from its own items lands where many CG steps take its row
    u = 4
    s, e = inter.indptr[u], inter.indptr[u + 1]
    row = m.fold_in(inter.indices[s:e], inter.weights[s:e])
    G = np.zeros((8, 8), np.float32)
    _core.als_gramian(G, m.item_factors)
    X = m.user_factors.copy()
    _core.als_solve(X, G, m.item_factors, inter.indptr, inter.indices, inter.weights, u, u + 1, 2.0, 0.2, 50)
    np.testing.assert_allclose(row, X[u], rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# BPR

def _bpr_run(inter, nb, opt, seed=1, threads=2, epoch=0, lr=0.05, triples=True, U=None, V=None):
    K = 16
    rng = np.random.default_rng(seed)
    U = (rng.standard_normal((inter.n_users, K)) * 0.1).astype(np.float32) if U is None else U
    V = (rng.standard_normal((inter.n_items, K)) * 0.1).astype(np.float32) if V is None else V
    b = np.zeros(inter.n_items, np.float32)
    acc = np.zeros(inter.n_users + 2 * inter.n_items, np.float32) if opt == "adagrad" else None
    pairs, starts = inter.blocks(nb)
    blocks = np.array([g * nb + (g + s) % nb for s in range(nb) for g in range(nb)], np.int64)
    S = len(blocks)
    lrs = np.linspace(lr, lr / 2, S)
    sizes = starts[blocks + 1] - starts[blocks]
    tri = np.zeros((sizes.sum(), 3), np.int32) if triples else None
    loss, stats = np.zeros(S), np.zeros((S, 2), np.int64)
    start = (U.copy(), V.copy(), b.copy())
    bad = _core.bpr_fit_blocks(U, V, b, acc, loss, stats, tri, pairs, starts, blocks, lrs, opt=opt,
                               reg=0.01, reg_bias=0.002, eps=1e-8, seed=seed, epoch=epoch, n_threads=threads)
    assert bad == -1
    return dict(U=U, V=V, b=b, acc=acc, loss=loss, stats=stats, tri=tri, start=start,
                lrs=np.repeat(lrs, sizes), sizes=sizes)


@pytest.mark.parametrize("opt", ["sgd", "adagrad"])
@pytest.mark.parametrize("nb", [1, 3])
def test_bpr_epoch_matches_float64_replay_of_its_triples(opt, nb):
    inter = _inter(12, weights=False)
    r = _bpr_run(inter, nb, opt)
    U, V, b, acc, loss, correct, skipped = R.bpr_replay(*r["start"], r["tri"], r["lrs"], 0.01, 0.002, opt=opt)
    err = _msg(opt=opt, nb=nb, seed=12)
    np.testing.assert_allclose(r["U"], U, rtol=1e-5, atol=1e-6, err_msg=err)
    np.testing.assert_allclose(r["V"], V, rtol=1e-5, atol=1e-6, err_msg=err)
    np.testing.assert_allclose(r["b"], b, rtol=1e-5, atol=1e-6, err_msg=err)
    if opt == "adagrad":
        np.testing.assert_allclose(r["acc"], acc, rtol=1e-5, atol=1e-7, err_msg=err)
    assert r["stats"][:, 0].sum() == correct and r["stats"][:, 1].sum() == skipped
    used = r["sizes"] - r["stats"][:, 1]
    assert (r["loss"] @ used) / used.sum() == pytest.approx(loss, rel=1e-5)


def test_bpr_negatives_are_never_positives_and_stay_in_their_group():
    inter = _inter(13, nu=50, ni=40, n=900, weights=False)   # dense rows: many redraws
    nb = 3
    r = _bpr_run(inter, nb, "sgd")
    pos = set(zip(*np.divmod(np.repeat(np.arange(inter.n_users), np.diff(inter.indptr)) * inter.n_items
                             + inter.indices, inter.n_items)))
    pos = {(int(a), int(c)) for a, c in pos}
    tri = r["tri"]
    assert len(tri) == inter.nnz
    for u, i, j in tri:
        assert (u, i) in pos
        if j >= 0:
            assert (u, j) not in pos and j != 0 and j % nb == i % nb, (u, i, j)
    assert (tri[:, 2] >= 0).mean() > 0.9
    # the positives are drawn over the whole block (bootstrap), not in order
    assert len({(u, i) for u, i, _ in tri}) < len(tri)


def test_bpr_skips_a_user_who_holds_every_item_of_the_group():
    # user 1 holds every item; user 2 one item: user 1's samples are all skipped
    u = np.array([1] * 9 + [2], np.int32)
    i = np.array(list(range(1, 10)) + [3], np.int32)
    inter = Interactions(u, i, None, 3, 10)
    r = _bpr_run(inter, 1, "sgd", threads=1)
    tri = r["tri"]
    assert np.all(tri[tri[:, 0] == 1, 2] == -1)
    assert np.all(tri[tri[:, 0] == 2, 2] > 0)
    assert r["stats"][:, 1].sum() == 9


@pytest.mark.parametrize("opt", ["sgd", "adagrad"])
def test_bpr_is_bit_identical_for_any_thread_count(opt):
    inter = _inter(14, nu=400, ni=300, n=20000, weights=False)
    runs = [_bpr_run(inter, 4, opt, threads=t, triples=False) for t in (1, 2, 3, 4)]
    for r in runs[1:]:
        for k in ("U", "V", "b", "loss", "stats"):
            assert np.array_equal(r[k], runs[0][k]), k
        if opt == "adagrad":
            assert np.array_equal(r["acc"], runs[0]["acc"])


def test_bpr_samples_depend_on_seed_and_epoch_only():
    inter = _inter(15, weights=False)
    a, b = _bpr_run(inter, 2, "sgd", seed=3), _bpr_run(inter, 2, "sgd", seed=3)
    assert np.array_equal(a["tri"], b["tri"])
    c = _bpr_run(inter, 2, "sgd", seed=3, epoch=1)
    assert not np.array_equal(a["tri"], c["tri"])


def test_bpr_model_epochs_in_segments_and_threads_agree():
    inter = _inter(16, nu=300, ni=200, n=8000, weights=False)
    a = BPR(inter.n_users, inter.n_items, n_factors=16, lr=0.05, seed=5, n_groups=4)
    b = BPR(inter.n_users, inter.n_items, n_factors=16, lr=0.05, seed=5, n_groups=4)
    ra = [a.fit_epoch(inter, n_threads=1) for _ in range(2)]
    rb = []
    for _ in range(2):
        ep = b.epoch(inter, n_threads=3)
        assert ep.n_units == 16 and ep.unit == 4
        for n in (3, 5, 8):
            ep.run(n)
        rb.append(ep.result()["loss"])
    assert ra == rb
    assert np.array_equal(a.user_factors, b.user_factors) and np.array_equal(a.item_bias, b.item_bias)
    assert np.all(a.user_factors[0] == b.user_factors[0]) and np.all(a.item_factors[0] == 0)
    # a schedule set segment by segment equals the same schedule given up front; the strata may
    # come from the caller's generator (a training loop's own stream)
    sched = np.linspace(0.05, 0.01, 16)
    c = BPR(inter.n_users, inter.n_items, n_factors=16, lr=0.05, seed=5, n_groups=4)
    d = BPR(inter.n_users, inter.n_items, n_factors=16, lr=0.05, seed=5, n_groups=4)
    ec = c.epoch(inter, lrs=sched, rng=np.random.default_rng(1))
    ec.run()
    ed = d.epoch(inter, rng=np.random.default_rng(1))
    for k in range(0, 16, 4):
        ed.run(4, lrs=sched[k:k + 4])
    assert np.array_equal(c.user_factors, d.user_factors) and np.array_equal(ec.unit_losses, ed.unit_losses)
    assert ec.result() == ed.result() and np.all(ed.unit_losses > 0)
    with pytest.raises(ValueError, match="no learning rate"):
        ImplicitALS(inter.n_users, inter.n_items, n_factors=4).epoch(inter).run(3, lrs=np.ones(3))
    with pytest.raises(ValueError, match="lrs must be 4 finite"):
        d.epoch(inter).run(4, lrs=np.full(4, np.nan))
    res = a.epoch(inter)
    res.run()
    st = res.result()
    assert 0.5 < st["auc"] <= 1 and st["skipped"] < 0.01 and st["loss"] < 0.7


def test_bpr_learns_and_fold_in_recovers_a_users_taste():
    rng = np.random.default_rng(0)
    nu, ni = 200, 120
    taste = rng.integers(0, 2, nu)                 # two kinds of users, two halves of the items
    u = np.repeat(np.arange(1, nu), 15)
    i = np.where(taste[u] == 0, rng.integers(1, 60, len(u)), rng.integers(60, ni, len(u)))
    inter = Interactions(u, i, None, nu, ni)
    m = BPR(nu, ni, n_factors=8, lr=0.05, reg=0.001, seed=0, n_groups=2)
    first = m.fit_epoch(inter)
    for _ in range(30):
        last = m.fit_epoch(inter)
    assert last < first
    x = m.fold_in([61, 70, 90, 100])
    s = m.item_factors @ x + m.item_bias
    assert np.mean(s[60:]) > np.mean(s[1:60])
    assert np.array_equal(x, m.fold_in([61, 70, 90, 100])), "fold-in must be deterministic"
    assert not np.array_equal(x, m.fold_in([61, 70, 90, 100], seed=1))


# ---------------------------------------------------------------------------------------------
# data

def _frame(seed=0, n=3000, nu=50, ni=80, with_time=True, weights=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"u": rng.integers(100, 100 + nu, n), "i": rng.integers(0, ni, n)})
    if weights:
        df["plays"] = rng.integers(0, 20, n)
    if with_time:
        df["ts"] = rng.integers(0, 10**6, n)
    return df


def test_split_holds_out_per_user_and_sums_repeats():
    df = _frame(weights=True)
    d = implicit_from_df(df, weight_name="plays", valid_pct=0.25, seed=1)
    assert isinstance(d, ImplicitData)
    g = df.groupby(["u", "i"])["plays"].sum()
    assert len(d.train_x) + len(d.valid_x) == len(g)
    users = np.asarray(d.classes["u"], dtype=object)
    items = np.asarray(d.classes["i"], dtype=object)
    assert users[0] == "#na#" and items[0] == "#na#"
    assert list(users[1:]) == sorted(df.u.unique())
    for x, w in ((d.train_x, d.train_w), (d.valid_x, d.valid_w)):
        ok = x[:, 1] > 0
        keys = list(zip(users[x[ok, 0]], items[x[ok, 1]]))
        np.testing.assert_allclose(w[ok], g.loc[keys].to_numpy())
    n_u = g.groupby(level=0).size()
    held = pd.Series(users[d.valid_x[:, 0]]).value_counts()
    for user, n in n_u.items():
        want = min(int(np.floor(0.25 * n + 0.5)), n - 1)
        assert held.get(user, 0) == want, user
    # every training pair's item has a class; a held-out item unseen in training is 0
    assert d.train_x[:, 1].min() >= 1 and d.train_x[:, 0].min() >= 1
    seen_items = set(d.train_x[:, 1])
    assert all((i == 0) == (i not in seen_items) for i in d.valid_x[:, 1])
    d2 = implicit_from_df(df, weight_name="plays", valid_pct=0.25, seed=1)
    assert np.array_equal(d.valid_x, d2.valid_x)
    d3 = implicit_from_df(df, weight_name="plays", valid_pct=0.25, seed=2)
    assert not np.array_equal(d.valid_x, d3.valid_x)


def test_time_split_holds_out_the_most_recent_pairs():
    df = _frame(2)
    d = implicit_from_df(df, time_name="ts", valid_pct=0.3, seed=0)
    latest = df.groupby(["u", "i"])["ts"].max()
    users = np.asarray(d.classes["u"], dtype=object)
    items = np.asarray(d.classes["i"], dtype=object)
    full = pd.concat([pd.DataFrame({"u": users[x[:, 0]], "i": items[x[:, 1]], "valid": v})
                      for x, v in ((d.train_x, False), (d.valid_x, True))])
    # map the held-out items unknown at training back through the frame: compare per user by time
    known = full[full.i != "#na#"].copy()
    known["ts"] = latest.loc[list(zip(known.u, known.i))].to_numpy()
    for user, grp in known.groupby("u"):
        if grp.valid.any():
            assert grp[grp.valid].ts.min() >= grp[~grp.valid].ts.max(), user


def test_split_edge_cases_and_dataloaders():
    df = pd.DataFrame({"user": ["a", "a", "b", "c", "c", "c"], "item": [1, 2, 1, 1, 2, 3]})
    d = implicit_from_df(df, valid_pct=0.5, seed=0)
    assert d.n_users == 4 and len(d.valid_x) == 1 + 0 + 2      # a: 1 of 2, b: 0 of 1, c: 2 of 3
    d0 = implicit_from_df(df, valid_pct=0.0)
    assert len(d0.valid_x) == 0 and len(d0.train_x) == 6
    dm = implicit_from_df(df, valid_pct=0.9, min_train=2)
    held = pd.Series(dm.valid_x[:, 0]).value_counts()
    assert held.max() <= 1
    dls = d.dataloaders(bs=2)
    assert isinstance(dls, DataLoaders) and dls.rating_name == "weight"
    assert np.array_equal(dls.train.x, d.train_x) and np.all(dls.train.y == 1)
    xb, yb = dls.one_batch()
    assert xb.shape == (2, 2) and yb.shape == (2, 1)
    inter = d.interactions()
    assert inter.nnz == len(d.train_x) and inter.weights is None
    assert d.interactions() is inter


def test_movielens_implicit_one_liner(ml100k_ratings):
    r = ml100k_ratings
    d = implicit_from_df(r[r.rating >= 4].drop(columns="rating"), item_name="movie",
                         time_name="timestamp", seed=0)
    assert len(d.train_x) + len(d.valid_x) == int((r.rating >= 4).sum())
    assert d.n_users - 1 == r[r.rating >= 4].user.nunique()


# ---------------------------------------------------------------------------------------------
# metrics and the popularity baseline

def test_evaluate_matches_a_dense_reference_and_reports_popularity():
    df = _frame(3, n=2500, nu=40, ni=60, with_time=False)
    d = implicit_from_df(df, valid_pct=0.3, seed=0)
    m = ImplicitALS(d.n_users, d.n_items, n_factors=8, reg=0.1, alpha=5.0, seed=0)
    for _ in range(4):
        m.fit_epoch(d)
    rep = evaluate(m, d, k=5)
    inter = d.interactions()
    train = {u: set(inter.indices[inter.indptr[u]:inter.indptr[u + 1]]) for u in range(d.n_users)}
    users, rel = d.relevant()
    valid = {int(u): set(map(int, r)) for u, r in zip(users, rel)}
    scores = m.user_factors.astype(np.float64) @ m.item_factors.T.astype(np.float64)
    want = R.ranking_metrics(scores, train, valid, 5)
    for key, v in want.items():
        assert rep[key] == pytest.approx(v, abs=1e-9), key
    counts = np.bincount(inter.indices, minlength=d.n_items).astype(np.float64)
    base = R.ranking_metrics(np.tile(counts, (d.n_users, 1)), train, valid, 5)
    for key, v in base.items():
        assert rep["baseline"][key] == pytest.approx(v, abs=1e-9), key
    assert rep["beats_baseline"] == (rep["ndcg@5"] > base["ndcg@5"])
    assert "popularity" in repr(rep) and "the popularity baseline (NDCG@5" in rep["verdict"]


def test_popularity_recommends_the_most_frequent_unseen_items():
    u = np.array([1, 1, 2, 2, 3, 3, 3], np.int32)
    i = np.array([1, 2, 1, 3, 1, 2, 4], np.int32)
    inter = Interactions(u, i, None, 4, 6)
    pop = Popularity(inter)
    idx, sc = pop.recommend(np.array([1, 2]), n=3, exclude=inter)
    assert idx[0].tolist() == [3, 4, 5] and sc[0, :2].tolist() == [1, 1]
    assert idx[1].tolist() == [2, 4, 5]
    idx, _ = pop.recommend(np.array([0]), n=2, exclude=inter)     # a user without interactions
    assert idx[0].tolist() == [1, 2]


def test_models_beat_popularity_on_movielens(ml100k_ratings):
    r = ml100k_ratings
    d = implicit_from_df(r[r.rating >= 4][["user", "movie"]], seed=0)
    als = ImplicitALS(d.n_users, d.n_items, reg=10.0, alpha=5.0, seed=0)
    als.fit(d, 10, n_threads=2)
    rep = evaluate(als, d)
    assert rep["beats_baseline"], rep
    assert rep["precision@10"] > 1.3 * rep["baseline"]["precision@10"], rep
    bpr = BPR(d.n_users, d.n_items, lr=0.05, reg=0.002, opt="sgd", seed=0)
    bpr.fit(d, 40, n_threads=2)
    rep = evaluate(bpr, d)
    assert rep["beats_baseline"], rep


# ---------------------------------------------------------------------------------------------
# bad input

def test_bad_frames_and_arguments_raise_clear_errors():
    df = _frame(4, weights=True)
    with pytest.raises(ValueError, match="df is empty"):
        implicit_from_df(df.iloc[:0])
    bad = df.astype({"plays": float}).copy()
    bad.loc[5, "plays"] = -1.0
    with pytest.raises(ValueError, match=r"weight_name='plays' must be finite and >= 0.*-1\.0 at position 5"):
        implicit_from_df(bad, weight_name="plays")
    bad.loc[5, "plays"] = np.nan
    with pytest.raises(ValueError, match="weight_name='plays' must be finite"):
        implicit_from_df(bad, weight_name="plays")
    with pytest.raises(KeyError, match="weight_name='nope' is not a column"):
        implicit_from_df(df, weight_name="nope")
    with pytest.raises(ValueError, match="valid_pct must be in"):
        implicit_from_df(df, valid_pct=1.0)
    with pytest.raises(ValueError, match="different columns"):
        implicit_from_df(df, user_name="u", item_name="u")
    nan_user = df.astype({"u": float})
    nan_user.loc[3, "u"] = np.nan
    with pytest.raises(ValueError, match="user_name='u' has 1 missing"):
        implicit_from_df(nan_user)
    with pytest.raises(TypeError, match="time_name='ts' must be numeric or datetime"):
        implicit_from_df(df.astype({"ts": str}), time_name="ts")
    with pytest.raises(TypeError, match="DataFrame"):
        implicit_from_df(df.to_numpy())


def test_bad_model_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        ImplicitALS(10, 10, alpha=0)
    with pytest.raises(ValueError, match="alpha must be"):
        ImplicitALS(10, 10, alpha=-1.0)
    with pytest.raises(ValueError, match="n_factors must be an integer >= 1"):
        ImplicitALS(10, 10, n_factors=0)
    with pytest.raises(ValueError, match="n_factors must be an integer >= 1"):
        BPR(10, 10, n_factors=0)
    with pytest.raises(ValueError, match="reg must be"):
        ImplicitALS(10, 10, reg=-0.1)
    with pytest.raises(ValueError, match="opt must be 'sgd' or 'adagrad'"):
        BPR(10, 10, opt="adam")
    with pytest.raises(ValueError, match="lr must be"):
        BPR(10, 10, lr=0)
    with pytest.raises(ValueError, match="n_groups"):
        BPR(10, 10, n_groups="many")
    inter = _inter(17)
    m = ImplicitALS(inter.n_users, inter.n_items, n_factors=4)
    with pytest.raises(ValueError, match="no interactions"):
        m.fold_in([])
    with pytest.raises(ValueError, match="no interactions"):
        BPR(inter.n_users, inter.n_items, n_factors=4).fold_in([])
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        m.fold_in([1, 2], [1.0, -2.0])
    with pytest.raises(IndexError, match="items must lie in"):
        m.fold_in([inter.n_items])
    with pytest.raises(ValueError, match=r"user\(s\) \[0\] have no training interactions"):
        m.recommend([0, 1], exclude=inter)
    with pytest.raises(ValueError, match="the data has"):
        ImplicitALS(inter.n_users + 1, inter.n_items).fit_epoch(inter)
    with pytest.raises(ValueError, match="no interactions"):
        Interactions(np.zeros(0, np.int32), np.zeros(0, np.int32))
    with pytest.raises(ValueError, match=r"weights must be finite and >= 0.*nan at position 1"):
        Interactions([1, 2], [1, 1], [1.0, np.nan])
    with pytest.raises(TypeError, match="users must hold integer indices"):
        Interactions([1.5, 2.0], [1, 1])


def test_kernel_arguments_are_validated():
    inter = _inter(18)
    X, Y = _tables(inter.n_users, inter.n_items, 8)
    G = np.zeros((8, 8), np.float32)
    args = (inter.indptr, inter.indices, inter.weights)
    with pytest.raises(ValueError, match="'alpha' must be a finite number > 0"):
        _core.als_solve(X, G, Y, *args, 0, 5, 0.0, 0.1, 3)
    with pytest.raises(ValueError, match="'reg' must be a finite number >= 0"):
        _core.als_solve(X, G, Y, *args, 0, 5, 1.0, float("nan"), 3)
    with pytest.raises(ValueError, match=r"rows \[row0, row1\)"):
        _core.als_solve(X, G, Y, *args, 3, 2, 1.0, 0.1, 3)
    with pytest.raises(ValueError, match="'G' has shape"):
        _core.als_solve(X, G[:4], Y, *args, 0, 5, 1.0, 0.1, 3)
    with pytest.raises(ValueError, match="CSR row pointer"):
        _core.als_solve(X, G, Y, inter.indptr[::-1].copy(), inter.indices, inter.weights, 0, 5, 1.0, 0.1, 3)
    w = inter.weights.copy()
    w[inter.indptr[2]] = -1
    before = X.copy()
    with pytest.raises(ValueError, match="'w' holds -1 at position"):
        _core.als_solve(X, G, Y, inter.indptr, inter.indices, w, 0, inter.n_users, 1.0, 0.1, 3)
    assert np.array_equal(X, before), "nothing is written on an error"
    ix = inter.indices.copy()
    ix[5] = inter.n_items
    with pytest.raises(IndexError, match="'indices' holds 30 at position 5"):
        _core.als_solve(X, G, Y, inter.indptr, ix, inter.weights, 0, inter.n_users, 1.0, 0.1, 3)
    with pytest.raises(ValueError, match="written in place and must not share memory"):
        _core.als_solve(X, G, X, *args, 0, 5, 1.0, 0.1, 3)
    pairs, starts = inter.blocks(2)
    U, V = X.copy(), Y.copy()
    b = np.zeros(inter.n_items, np.float32)
    kw = dict(opt="sgd", reg=0.01, reg_bias=0.01, eps=1e-8, seed=0, epoch=0, n_threads=1)
    one = np.array([0], np.int64)
    l1, s1 = np.zeros(1), np.zeros((1, 2), np.int64)
    with pytest.raises(IndexError, match="'blocks' holds 4"):
        _core.bpr_fit_blocks(U, V, b, None, l1, s1, None, pairs, starts, np.array([4], np.int64),
                             np.array([0.1]), **kw)
    with pytest.raises(ValueError, match="'starts' must be the block starts"):
        _core.bpr_fit_blocks(U, V, b, None, l1, s1, None, pairs, starts[:-1], one, np.array([0.1]), **kw)
    with pytest.raises(TypeError, match="Adagrad needs the accumulators"):
        _core.bpr_fit_blocks(U, V, b, None, l1, s1, None, pairs, starts, one, np.array([0.1]),
                             **{**kw, "opt": "adagrad"})
    with pytest.raises(ValueError, match="'lrs\\[k\\]' must be a finite number"):
        _core.bpr_fit_blocks(U, V, b, None, l1, s1, None, pairs, starts, one, np.array([np.inf]), **kw)
    bad_pairs = pairs.copy()
    bad_pairs[0, 1] += 1     # now outside its block
    with pytest.raises(IndexError, match="outside the tables .* or its block"):
        _core.bpr_fit_blocks(U, V, b, None, l1, s1, None, bad_pairs, starts, one, np.array([0.1]), **kw)
    with pytest.raises(ValueError, match="must hold between 1 and"):
        _core.bpr_fold_in(np.zeros(8, np.float32), V, b, np.zeros(0, np.int32), 10, 0.1, 0.0, 0)
    with pytest.raises(ValueError, match="sorted, unique and exclude"):
        _core.bpr_fold_in(np.zeros(8, np.float32), V, b, np.array([3, 2], np.int32), 10, 0.1, 0.0, 0)


def test_bpr_divergence_raises_and_keeps_earlier_updates():
    inter = _inter(19, weights=False)
    m = BPR(inter.n_users, inter.n_items, n_factors=4, lr=1e30, reg=0.0, seed=0, n_groups=1)
    with pytest.raises(FloatingPointError, match="BPR diverged"):
        for _ in range(5):
            m.fit_epoch(inter)


def test_auto_groups_depends_on_the_data_only():
    assert auto_groups(25_000_000, 162_542, 59_048) == 32
    assert auto_groups(44_000, 943, 1411) == 2
    assert auto_groups(100, 20, 20) == 1


def test_kernels_release_the_gil():
    "Python code runs in another thread during one long ALS or BPR call (the GIL is released)."
    import threading
    inter = _inter(20, nu=3000, ni=2000, n=200_000, weights=False)
    K = 32
    X, Y = _tables(inter.n_users, inter.n_items, K)
    G = np.zeros((K, K), np.float32)
    _core.als_gramian(G, Y)
    bpr = BPR(inter.n_users, inter.n_items, n_factors=K, seed=0, n_groups=1)
    calls = (lambda: _core.als_solve(X, G, Y, inter.indptr, inter.indices, None, 0, inter.n_users,
                                     1.0, 0.1, 20, 1),
             lambda: bpr.fit_epoch(inter, n_threads=1))      # one block: one C call
    for call in calls:
        t = threading.Thread(target=call)
        ticks, t0 = 0, time.perf_counter()
        t.start()
        while t.is_alive():
            ticks += 1
            t.join(0.001)
        ms = (time.perf_counter() - t0) * 1000
        assert ms < 20 or ticks > 5, f"the main thread ran {ticks} times in the {ms:.0f} ms call"
