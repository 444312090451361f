"""The sparse training path (issue 6): block sorting, the block-scheduled kernels against the
float64 reference, thread-count independence, determinism, bad input, divergence, and the
Learner's train_mode='sparse' with segments and Ctrl-C."""
import signal

import numpy as np
import pytest

import reference_sparse as ref  # noqa: E402  (tests/, put on sys.path by conftest.py)

from collabc import Adagrad, Adam, CollabDataLoaders, SGD, _core, collab_learner, set_seed  # noqa: E402


def data(seed=0, nu=13, ni=11, n=600):
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(0, nu, n), rng.integers(0, ni, n)], 1).astype(np.int32)
    y = rng.integers(1, 6, n).astype(np.float32)
    return x, y


def strata(nb, rng):
    s, g = rng.permutation(nb), rng.permutation(nb)
    return np.array([gg * nb + (ss + gg) % nb for ss in s for gg in g], dtype=np.int64)


@pytest.mark.parametrize("extra_dtype,n_threads", [(np.int64, 1), (np.int32, 1), (np.int64, 3)])
def test_block_sort_groups_rows_in_place(extra_dtype, n_threads):
    x, y = data()
    extra = np.arange(len(y), dtype=extra_dtype)
    x0, y0 = x.copy(), y.copy()
    starts = _core.block_sort(x, y, extra, 4, n_threads)
    assert starts.shape == (17,) and starts[0] == 0 and starts[-1] == len(y)
    np.testing.assert_array_equal(x, x0[extra])  # extra followed the rows
    np.testing.assert_array_equal(y, y0[extra])
    assert sorted(extra.tolist()) == list(range(len(y)))
    ni_key = 1 << 20
    for b in range(16):
        rows = x[starts[b]:starts[b + 1]]
        assert np.all(rows[:, 0] % 4 == b // 4) and np.all(rows[:, 1] % 4 == b % 4)
        key = rows[:, 0].astype(np.int64) * ni_key + rows[:, 1]
        assert np.all(np.diff(key) >= 0)  # ordered by user, then item inside the block


def test_block_sort_threads_and_large_blocks():
    "Any thread count gives the same rows; a block too large for a buffer is sorted in place."
    rng = np.random.default_rng(5)
    for nb, n, nu, ni in [(3, 30_000, 500, 300), (1, 70_000, 50, 5_000)]:
        x = np.stack([rng.integers(0, nu, n), rng.integers(0, ni, n)], 1).astype(np.int32)
        y = rng.random(n, dtype=np.float32)
        out = []
        for t in (1, 2):
            xs, ys = x.copy(), y.copy()
            starts = _core.block_sort(xs, ys, None, nb, t)
            out.append((xs, ys, starts))
            for b in range(nb * nb):
                rows = xs[starts[b]:starts[b + 1]].astype(np.int64)
                assert np.all(rows[:, 0] % nb * nb + rows[:, 1] % nb == b)
                assert np.all(np.diff(rows[:, 0] * ni + rows[:, 1]) >= 0)
        for a, b in zip(out[0], out[1]):
            np.testing.assert_array_equal(a, b)
        order = np.lexsort((x[:, 1], x[:, 0]))
        got = np.lexsort((out[0][0][:, 1], out[0][0][:, 0]))
        np.testing.assert_array_equal(x[order], out[0][0][got])  # the same rows
    with pytest.raises(ValueError, match="n_threads"):
        _core.block_sort(x.copy(), y.copy(), None, 2, 0)


def _huge_ids(n=3000, seed=7):
    "ids up to 2**31 - 1 in both columns: a block's (user, item) range fits no radix key"
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(0, 40, n), rng.integers(0, 30, n)], 1).astype(np.int32)
    x[::7, 0] = rng.integers(2**30, 2**31 - 1, len(x[::7]))
    x[::5, 1] = rng.integers(2**30, 2**31 - 1, len(x[::5]))
    return x, rng.random(n, dtype=np.float32)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_block_sort_huge_ids_sorts_by_user_then_item(n_threads):
    "ids far larger than the rows: each block sorted in place by (user, item), rows kept."
    x, y = _huge_ids()
    extra = np.arange(len(y), dtype=np.int64)
    x0, y0 = x.copy(), y.copy()
    starts = _core.block_sort(x, y, extra, 3, n_threads)
    np.testing.assert_array_equal(x, x0[extra])
    np.testing.assert_array_equal(y, y0[extra])
    assert sorted(extra.tolist()) == list(range(len(y)))
    for b in range(9):
        rows = x[starts[b]:starts[b + 1]].astype(np.int64)
        assert np.all(rows[:, 0] % 3 * 3 + rows[:, 1] % 3 == b)
        assert np.all(np.diff(rows[:, 0] * 2**31 + rows[:, 1]) >= 0)


def test_block_sort_memory_does_not_grow_with_the_largest_id():
    """A block sorted in place once took counts for every user slot up to the largest id: an id
    of 2**30 made each sorting thread allocate and clear 4 GiB (28 s; the scribbling test of
    test_adversarial.py timed out when a scribbled id reached it). The sort's peak resident
    memory now stays that of the rows (the child reports its own peak; under 1 GiB, ASan's
    included). The peak is VmHWM, the child's own address space's: getrusage's ru_maxrss also
    counts the parent's before exec (a pytest worker near 1 GiB failed this test in CI)."""
    from test_adversarial import run_py   # a fresh interpreter outside the checkout
    rc, out, err = run_py("""
import numpy as np
from collabc import _core
x = np.stack([np.arange(5000) % 400, np.arange(5000) % 300], 1).astype(np.int32)
x[100:164] = 2**30
starts = _core.block_sort(x, np.zeros(5000, np.float32), None, 4, 2)
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(int(starts[-1]), hwm // 1024)
""", timeout=240)
    assert rc == 0, err[-2000:]
    rows, peak_mib = map(int, out.split())
    assert rows == 5000 and peak_mib < 1024, out


CASES = [("sgd", True, (0.0, 5.5), 0.02), ("sgd", False, None, 0.0), ("adagrad", True, (0.0, 5.5), 0.02),
         ("adagrad", True, None, 0.05), ("adam", True, (0.5, 5.0), 0.01), ("adam", False, (0.0, 5.5), 0.0)]


@pytest.mark.parametrize("opt,has_bias,y_range,wd", CASES)
def test_fit_blocks_matches_reference(opt, has_bias, y_range, wd):
    nu, ni, k, nb = 13, 11, 5, 4
    x, y = data(1, nu, ni)
    starts = _core.block_sort(x, y, None, nb)
    rng = np.random.default_rng(2)
    P = (nu + ni) * (k + (1 if has_bias else 0))
    params = (rng.standard_normal(P) * 0.1).astype(np.float32)
    blocks = np.concatenate([strata(nb, rng), strata(nb, rng)])
    lrs = np.linspace(0.05, 0.01, len(blocks)) if opt != "adam" else np.full(len(blocks), 0.01)
    rows = nu + ni
    m, v = np.zeros(P, np.float32), np.zeros(P if opt == "adam" else 2 * rows, np.float32)
    p1, p2 = np.ones(rows, np.float32), np.ones(rows, np.float32)
    losses = np.zeros(len(blocks))
    want, want_losses, _ = ref.fit_blocks(params, x, y, starts, blocks, lrs, nu, ni, k, has_bias,
                                          y_range, opt, wd)
    bad = _core.dot_fit_blocks(params, losses, x, y, starts, blocks, lrs, n_users=nu, n_items=ni,
                               n_factors=k, has_bias=has_bias, y_range=y_range, opt=opt, m=m, v=v,
                               pow1=p1, pow2=p2, wd=wd, moms=np.full(len(blocks), 0.9), sqr_mom=0.999, eps=1e-8,
                               n_threads=1)
    assert bad == -1
    np.testing.assert_allclose(params, want, rtol=1e-4, atol=1e-5, err_msg=f"{opt} bias={has_bias} {y_range}")
    np.testing.assert_allclose(losses, want_losses, rtol=1e-4, atol=1e-5)


def run_threads(n_threads, seed=3):
    nu, ni, k, nb = 40, 30, 8, 8
    x, y = data(seed, nu, ni, 5000)
    starts = _core.block_sort(x, y, None, nb)
    rng = np.random.default_rng(seed)
    P = (nu + ni) * (k + 1)
    params = (rng.standard_normal(P) * 0.1).astype(np.float32)
    v = np.zeros(2 * (nu + ni), np.float32)
    blocks = np.concatenate([strata(nb, rng) for _ in range(3)])
    losses = np.zeros(len(blocks))
    _core.dot_fit_blocks(params, losses, x, y, starts, blocks, np.full(len(blocks), 0.05),
                         n_users=nu, n_items=ni, n_factors=k, has_bias=True, y_range=(0.0, 5.5),
                         opt="adagrad", m=None, v=v, pow1=None, pow2=None, wd=0.02,
                         moms=np.zeros(len(blocks)), sqr_mom=0.0, eps=1e-8, n_threads=n_threads)
    return params, losses


def test_threads_give_bit_identical_results():
    "Blocks of a stratum share no row, so the thread count cannot change any result."
    p1, l1 = run_threads(1)
    for t in (2, 3, 8):
        pt, lt = run_threads(t)
        np.testing.assert_array_equal(pt, p1)
        np.testing.assert_array_equal(lt, l1)
    p1b, _ = run_threads(1)
    np.testing.assert_array_equal(p1b, p1)  # and repeatable


def test_bad_arguments():
    nu, ni, k, nb = 13, 11, 3, 4
    x, y = data(0, nu, ni)
    starts = _core.block_sort(x, y, None, nb)
    P = (nu + ni) * (k + 1)
    base = dict(params=np.zeros(P, np.float32), losses=np.zeros(4), x=x, y=y, starts=starts,
                blocks=np.array([0, 5, 10, 15], np.int64), lrs=np.full(4, 0.01), n_users=nu,
                n_items=ni, n_factors=k, has_bias=True, y_range=(0, 5.5), opt="sgd", m=None,
                v=None, pow1=None, pow2=None, wd=0.0, moms=np.zeros(4), sqr_mom=0.0, eps=1e-8, n_threads=2)
    _core.dot_fit_blocks(**base)
    with pytest.raises(ValueError, match="share a user or item group"):
        _core.dot_fit_blocks(**{**base, "blocks": np.array([0, 1, 10, 15], np.int64)})
    with pytest.raises(ValueError, match="whole strata"):
        _core.dot_fit_blocks(**{**base, "blocks": np.array([0, 5], np.int64), "lrs": np.full(2, .01),
                                "moms": np.zeros(2), "losses": np.zeros(2)})
    with pytest.raises(IndexError, match="'blocks' holds 16"):
        _core.dot_fit_blocks(**{**base, "blocks": np.array([0, 5, 10, 16], np.int64)})
    with pytest.raises(ValueError, match="'starts' must be the block starts"):
        _core.dot_fit_blocks(**{**base, "starts": starts[:-1].copy()})
    with pytest.raises(ValueError, match="opt must be"):
        _core.dot_fit_blocks(**{**base, "opt": "rmsprop"})
    with pytest.raises(TypeError, match="Adagrad needs"):
        _core.dot_fit_blocks(**{**base, "opt": "adagrad"})
    with pytest.raises(ValueError, match="shape"):
        _core.dot_fit_blocks(**{**base, "opt": "adagrad", "v": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="n_threads"):
        _core.dot_fit_blocks(**{**base, "n_threads": 0})
    # the ids of the selected blocks' rows are checked before any update
    for col, what, bad_id in [(1, "an item id", ni), (0, "a user id", -3)]:
        xb, params = x.copy(), base["params"].copy()
        row = int(starts[10]) + 1
        assert row < starts[11]
        xb[row, col] = bad_id
        with pytest.raises(IndexError, match=f"'x' holds {what} {bad_id} at row {row}"):
            _core.dot_fit_blocks(**{**base, "x": xb, "params": params})
        np.testing.assert_array_equal(params, base["params"])
    with pytest.raises(ValueError, match="'nb' must be >= 1"):
        _core.block_sort(x.copy(), y.copy(), None, 0)
    xn = x.copy()
    xn[0, 0] = -1
    with pytest.raises(IndexError, match="a user id -1"):
        _core.block_sort(xn, y.copy(), None, 4)


def test_divergence_is_reported_and_not_applied():
    nu, ni, k, nb = 13, 11, 3, 4
    x, y = data(0, nu, ni)
    starts = _core.block_sort(x, y, None, nb)
    P = (nu + ni) * k
    params = np.ones(P, np.float32)
    bad = _core.dot_fit_blocks(params, np.zeros(16), x, y, starts, strata(nb, np.random.default_rng(0)),
                               np.full(16, 1e6), n_users=nu, n_items=ni, n_factors=k, has_bias=False,
                               y_range=None, opt="sgd", m=None, v=None, pow1=None, pow2=None,
                               wd=0.0, moms=np.zeros(16), sqr_mom=0.0, eps=1e-8, n_threads=1)
    assert bad >= 0


# ---------------------------------------------------------------- through the Learner
def test_learner_sparse_mode_trains(synth_ratings):
    for opt_func, lr, wd in [(Adagrad, 0.05, 0.02), (SGD, 0.02, 0.02), (Adam, 0.01, 0.01)]:
        set_seed(0)
        dls = CollabDataLoaders.from_df(synth_ratings, bs=64, seed=0)
        df_before = dls.train.df.copy()
        learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), opt_func=opt_func,
                               train_mode="sparse", n_threads=2)
        learn.logger = lambda *a: None
        before = learn.validate()[0]
        learn.fit_one_cycle(4, lr, wd=wd)
        assert learn.recorder.values[-1][1] < before, opt_func.__name__
        assert len(learn.recorder.lrs) == 4 * 64  # 8 x 8 blocks per epoch
        # the rows were regrouped in place; the split's frame still matches them
        df = dls.train.df
        assert sorted(map(tuple, df.values.tolist())) == sorted(map(tuple, df_before.values.tolist()))
        enc = np.stack([[dls.classes["user"].o2i[u] for u in df["user"]],
                        [dls.classes["item"].o2i[i] for i in df["item"]]], 1)
        np.testing.assert_array_equal(enc, dls.train.x)


def test_learner_sparse_results_do_not_depend_on_threads(synth_ratings):
    out = []
    for t in (1, 2):
        set_seed(5)
        dls = CollabDataLoaders.from_df(synth_ratings, bs=64, seed=0)
        learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), opt_func=Adagrad,
                               train_mode="sparse", n_threads=t)
        learn.logger = lambda *a: None
        learn.fit(2, 0.05, wd=0.02)
        out.append((learn.model.params.copy(), np.array(learn.recorder.values)))
    # n_threads also sets the grid (max(8, 4 * threads)): 1 and 2 threads share the 8 x 8 grid
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_sparse_mode_refusals(synth_ratings):
    dls = CollabDataLoaders.from_df(synth_ratings, bs=64, seed=0)
    with pytest.raises(ValueError, match="train_mode must be"):
        collab_learner(dls, train_mode="fast")
    with pytest.raises(ValueError, match="dot-product models only"):
        collab_learner(dls, use_nn=True, layers=[4], train_mode="sparse")
    with pytest.raises(ValueError, match="n_threads"):
        collab_learner(dls, train_mode="sparse", n_threads=0)
    learn = collab_learner(dls, opt_func=Adagrad)
    with pytest.raises(TypeError, match="sparse path only"):
        learn.fit(1)


@pytest.mark.parametrize("mode, step", [("exact", "_fit_epoch"), ("sparse", "_fit_blocks")])
def test_ctrl_c_stops_cleanly_between_segments(synth_ratings, mode, step):
    "SIGINT during fit ends it after the running segment; the recorder stays consistent."
    set_seed(0)
    dls = CollabDataLoaders.from_df(synth_ratings, bs=8, seed=0)
    kw = dict(opt_func=Adagrad, train_mode="sparse") if mode == "sparse" else {}
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), **kw)
    logs = []
    learn.logger = logs.append
    before = signal.getsignal(signal.SIGINT)
    real = getattr(learn.model, step)
    calls = []

    def interrupting(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C here
        return real(*a, **kw)
    setattr(learn.model, step, interrupting)
    learn.fit(3, 1e-2)
    assert len(calls) == 2 and any("interrupted" in str(m) for m in logs)
    rec = learn.recorder
    n_iter = learn._path.n_iter
    assert len(rec.losses) == len(rec.lrs) and 0 < len(rec.losses) < 3 * n_iter
    assert len(rec.values) == len(rec.losses) // n_iter       # only whole epochs get a table row
    assert np.all(np.isfinite(learn.model.params))
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    delattr(learn.model, step)
    learn.fit(1, 1e-2)  # still usable
    assert len(learn.recorder.values) == 1 and np.isfinite(learn.recorder.values[0]).all()
