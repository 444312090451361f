"""Every C kernel of collabc._core against the float64 NumPy reference (tests/reference.py),
forward and backward, over several shapes and seeds: empty batches, K=1, repeated ids.
Backward kernels accumulate (+=) into pre-filled outputs; forward kernels overwrite theirs;
read-only inputs (passed as non-writeable arrays) come back unmodified."""
import numpy as np
import pytest

import reference as ref  # tests/, put on sys.path by conftest.py
from collabc import _core

F32_EPS = float(np.finfo(np.float32).eps)

# (B, K, N): empty batch, single everything, K=1 with repeats (B > N), typical, wide
SHAPES = [(0, 3, 5), (1, 1, 1), (7, 1, 4), (64, 8, 10), (300, 50, 17)]
SEEDS = [0, 1, 2]


def frozen(a):
    "A read-only copy of a (the binding must accept read-only inputs)."
    a = np.array(a)
    a.flags.writeable = False
    return a


def assert_unchanged(before, after, what):
    for name, b in before.items():
        np.testing.assert_array_equal(after[name], b, err_msg=f"{what}: input {name!r} was modified")


def assert_close(actual, expected, scale, tol, err_msg):
    """|actual - expected| <= tol * scale elementwise, scale being a bound on the magnitude of
    the terms that produced expected (so cancellation does not demand impossible accuracy)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    bound = tol * np.maximum(np.asarray(scale, dtype=np.float64), np.finfo(np.float32).tiny)
    err = np.abs(actual - expected)
    bad = ~(err <= bound)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise AssertionError(
            f"{err_msg}: {bad.sum()} of {bad.size} elements differ; first at flat index {i}: "
            f"actual {actual.ravel()[i]!r} expected {expected.ravel()[i]!r} "
            f"(err {err.ravel()[i]:.3g} > bound {np.broadcast_to(bound, err.shape).ravel()[i]:.3g})")


def _ids(rng, B, N):
    ids = rng.integers(0, N, B).astype(np.int32)
    if B > 1:
        ids[-1] = ids[0]  # always at least one repeat
    return ids


def _f32(rng, *shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- embedding

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("B,K,N", SHAPES)
def test_embedding_forward(B, K, N, seed):
    rng = np.random.default_rng(seed)
    weight, idx = _f32(rng, N, K), _ids(rng, B, N)
    out = np.full((B, K), np.nan, np.float32)
    ins = dict(weight=frozen(weight), idx=frozen(idx))
    _core.embedding_forward(out, **ins)
    msg = f"embedding_forward B={B} K={K} N={N} seed={seed} float32"
    np.testing.assert_array_equal(out, ref.embedding_forward(weight, idx).astype(np.float32),
                                  err_msg=msg)
    assert_unchanged(dict(weight=weight, idx=idx), ins, msg)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("B,K,N", SHAPES)
def test_embedding_backward_accumulates(B, K, N, seed):
    rng = np.random.default_rng(seed)
    dout, idx = _f32(rng, B, K), _ids(rng, B, N)
    prefill = _f32(rng, N, K)
    dweight = prefill.copy()
    ins = dict(dout=frozen(dout), idx=frozen(idx))
    _core.embedding_backward(dweight, **ins)
    msg = f"embedding_backward B={B} K={K} N={N} seed={seed} float32"
    expected = prefill + ref.embedding_backward(dout, idx, N)
    scale = np.abs(prefill) + ref.embedding_backward(np.abs(dout), idx, N)
    assert_close(dweight, expected, scale, 4 * F32_EPS * (B + 1), msg)
    assert_unchanged(dict(dout=dout, idx=idx), ins, msg)


def test_embedding_backward_all_ids_equal_sums_every_row():
    rng = np.random.default_rng(11)
    dout = _f32(rng, 50, 4)
    idx = np.full(50, 2, np.int32)
    dweight = np.zeros((3, 4), np.float32)
    _core.embedding_backward(dweight, dout, idx)
    assert not dweight[[0, 1]].any()
    assert_close(dweight[2], dout.astype(np.float64).sum(0), np.abs(dout).sum(0), 1e-5,
                 "embedding_backward with 50 copies of id 2")


# ---------------------------------------------------------------- dotbias

def _dot_inputs(rng, B, K, NU, NI, has_bias):
    uw, iw = _f32(rng, NU, K), _f32(rng, NI, K)
    ub = _f32(rng, NU) if has_bias else None
    ib = _f32(rng, NI) if has_bias else None
    return uw, iw, ub, ib, _ids(rng, B, NU), _ids(rng, B, NI)


DOT_SHAPES = [(0, 3, 2, 5), (1, 1, 1, 1), (9, 1, 3, 4), (64, 8, 10, 7), (257, 50, 17, 31)]


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("B,K,NU,NI", DOT_SHAPES)
def test_dotbias_forward(B, K, NU, NI, seed, has_bias):
    rng = np.random.default_rng(seed)
    uw, iw, ub, ib, users, items = _dot_inputs(rng, B, K, NU, NI, has_bias)
    out = np.full(B, np.nan, np.float32)
    ins = dict(uw=frozen(uw), iw=frozen(iw), ub=None if ub is None else frozen(ub),
               ib=None if ib is None else frozen(ib), users=frozen(users), items=frozen(items))
    _core.dotbias_forward(out, **ins)
    msg = f"dotbias_forward B={B} K={K} NU={NU} NI={NI} seed={seed} has_bias={has_bias} float32"
    expected = ref.dotbias_forward(uw, iw, ub, ib, users, items)
    scale = ref.dotbias_forward(np.abs(uw), np.abs(iw), None if ub is None else np.abs(ub),
                                None if ib is None else np.abs(ib), users, items)
    assert_close(out, expected, scale, 2 * F32_EPS * (K + 2), msg)
    assert_unchanged({k: v for k, v in dict(uw=uw, iw=iw, ub=ub, ib=ib, users=users,
                                            items=items).items() if v is not None},
                     ins, msg)


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("B,K,NU,NI", DOT_SHAPES)
def test_dotbias_backward_accumulates(B, K, NU, NI, seed, has_bias):
    rng = np.random.default_rng(seed)
    uw, iw, _, _, users, items = _dot_inputs(rng, B, K, NU, NI, False)
    dout = _f32(rng, B)
    pre = [_f32(rng, NU, K), _f32(rng, NI, K)] + ([_f32(rng, NU), _f32(rng, NI)] if has_bias
                                                  else [None, None])
    outs = [None if p is None else p.copy() for p in pre]
    ins = dict(dout=frozen(dout), uw=frozen(uw), iw=frozen(iw), users=frozen(users),
               items=frozen(items))
    _core.dotbias_backward(*outs, **ins)
    msg = f"dotbias_backward B={B} K={K} NU={NU} NI={NI} seed={seed} has_bias={has_bias} float32"
    grads = ref.dotbias_backward(dout, uw, iw, users, items, has_bias)
    scales = ref.dotbias_backward(np.abs(dout), np.abs(uw), np.abs(iw), users, items, has_bias)
    for name, o, p, g, s in zip(["duw", "diw", "dub", "dib"], outs, pre, grads, scales):
        if p is None:
            assert o is None and g is None
            continue
        assert_close(o, p + g, np.abs(p) + s, 4 * F32_EPS * (B + 2), f"{msg} {name}")
    assert_unchanged(dict(dout=dout, uw=uw, iw=iw, users=users, items=items), ins, msg)


# ---------------------------------------------------------------- activations

N_SIZES = [0, 1, 7, 1000]
RANGES = [(0.0, 5.5), (-1.0, 1.0), (1.0, 1.5)]


@pytest.mark.parametrize("lo,hi", RANGES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("N", N_SIZES)
def test_sigmoid_range_forward(N, seed, lo, hi):
    rng = np.random.default_rng(seed)
    x = _f32(rng, N, scale=4.0)
    if N > 3:
        x[:3] = [-100.0, 100.0, 0.0]  # saturation and the midpoint
    out = np.full(N, np.nan, np.float32)
    ins = dict(x=frozen(x))
    _core.sigmoid_range_forward(out, ins["x"], lo, hi)
    msg = f"sigmoid_range_forward N={N} seed={seed} lo={lo} hi={hi} float32"
    expected = ref.sigmoid_range_forward(x, lo, hi)
    assert_close(out, expected, abs(lo) + (hi - lo), 4 * F32_EPS, msg)
    assert np.all((out >= lo) & (out <= hi)), msg
    assert_unchanged(dict(x=x), ins, msg)


@pytest.mark.parametrize("lo,hi", RANGES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("N", N_SIZES)
def test_sigmoid_range_backward_accumulates(N, seed, lo, hi):
    rng = np.random.default_rng(seed)
    x, dout, pre = _f32(rng, N, scale=4.0), _f32(rng, N), _f32(rng, N)
    if N > 3:
        x[:3] = [-100.0, 100.0, 0.0]
    dx = pre.copy()
    ins = dict(dout=frozen(dout), x=frozen(x))
    _core.sigmoid_range_backward(dx, ins["dout"], ins["x"], lo, hi)
    msg = f"sigmoid_range_backward N={N} seed={seed} lo={lo} hi={hi} float32"
    expected = pre + ref.sigmoid_range_backward(dout, x, lo, hi)
    # s*(1-s) <= 1/4; float32 s near 1 has an absolute (not relative) error of ~eps
    scale = np.abs(pre) + np.abs(dout) * (hi - lo) * 0.25
    assert_close(dx, expected, scale, 8 * F32_EPS, msg)
    assert_unchanged(dict(dout=dout, x=x), ins, msg)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("N", N_SIZES)
def test_relu_forward(N, seed):
    rng = np.random.default_rng(seed)
    x = _f32(rng, N)
    if N > 2:
        x[:2] = [0.0, -0.0]
    out = np.full(N, np.nan, np.float32)
    ins = dict(x=frozen(x))
    _core.relu_forward(out, ins["x"])
    msg = f"relu_forward N={N} seed={seed} float32"
    np.testing.assert_array_equal(out, ref.relu_forward(x).astype(np.float32), err_msg=msg)
    assert_unchanged(dict(x=x), ins, msg)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("N", N_SIZES)
def test_relu_backward_accumulates(N, seed):
    rng = np.random.default_rng(seed)
    x, dout, pre = _f32(rng, N), _f32(rng, N), _f32(rng, N)
    if N > 2:
        x[:2] = [0.0, -0.0]  # the kink passes no gradient (x > 0 is strict)
    dx = pre.copy()
    ins = dict(dout=frozen(dout), x=frozen(x))
    _core.relu_backward(dx, ins["dout"], ins["x"])
    msg = f"relu_backward N={N} seed={seed} float32"
    expected = (pre.astype(np.float64) + ref.relu_backward(dout, x)).astype(np.float32)
    np.testing.assert_array_equal(dx, expected, err_msg=msg)
    np.testing.assert_array_equal(dx[x <= 0], pre[x <= 0], err_msg=msg)
    assert_unchanged(dict(dout=dout, x=x), ins, msg)


# ---------------------------------------------------------------- loss

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("N", [1, 2, 64, 10007])
def test_mse_forward(N, seed):
    rng = np.random.default_rng(seed)
    pred, y = _f32(rng, N, scale=3.0), _f32(rng, N, scale=3.0)
    ins = dict(pred=frozen(pred), y=frozen(y))
    r = _core.mse_forward(**ins)
    msg = f"mse_forward N={N} seed={seed} float32"
    assert type(r) is float, msg
    assert r == pytest.approx(ref.mse_forward(pred, y), rel=1e-12), msg
    assert_unchanged(dict(pred=pred, y=y), ins, msg)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("N", [1, 2, 64, 10007])
def test_mse_backward_accumulates(N, seed):
    rng = np.random.default_rng(seed)
    pred, y, pre = _f32(rng, N, scale=3.0), _f32(rng, N, scale=3.0), _f32(rng, N, scale=1e-3)
    dpred = pre.copy()
    ins = dict(pred=frozen(pred), y=frozen(y))
    _core.mse_backward(dpred, **ins)
    msg = f"mse_backward N={N} seed={seed} float32"
    g = ref.mse_backward(pred, y)
    assert_close(dpred, pre + g, np.abs(pre) + np.abs(g), 4 * F32_EPS, msg)
    assert_unchanged(dict(pred=pred, y=y), ins, msg)


# ---------------------------------------------------------------- dot_predict

@pytest.mark.parametrize("y_range", [None, (0.0, 5.5)])
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("N,K,seed", [(0, 3, 0), (1, 1, 1), (2500, 8, 2), (50, 20, 3)])
def test_dot_predict(N, K, seed, has_bias, y_range):
    rng = np.random.default_rng(seed)
    nu, ni = 13, 9
    P = ref.dot_n_params(nu, ni, K, has_bias)
    params = _f32(rng, P, scale=0.7)
    x = np.stack([_ids(rng, N, nu), _ids(rng, N, ni)], axis=1).astype(np.int32)
    out = np.full(N, np.nan, np.float32)
    ins = dict(params=frozen(params), x=frozen(x))
    _core.dot_predict(out, ins["params"], ins["x"], nu, ni, K, has_bias, y_range)
    msg = f"dot_predict N={N} K={K} seed={seed} has_bias={has_bias} y_range={y_range} float32"
    expected = ref.dot_predict(params, x, nu, ni, K, has_bias, y_range)
    if y_range is None:
        uw, iw, ub, ib = ref.dot_split(np.abs(params.astype(np.float64)), nu, ni, K, has_bias)
        scale = ref.dotbias_forward(uw, iw, ub, ib, x[:, 0], x[:, 1])
        tol = 2 * F32_EPS * (K + 2)
    else:
        # the float32 z error (as above) passes through sigmoid' <= 1/4 times the span
        uw, iw, ub, ib = ref.dot_split(np.abs(params.astype(np.float64)), nu, ni, K, has_bias)
        scale = 5.5 * (1 + ref.dotbias_forward(uw, iw, ub, ib, x[:, 0], x[:, 1]))
        tol = 2 * F32_EPS * (K + 4)
    assert_close(out, expected, scale, tol, msg)
    assert_unchanged(dict(params=params, x=x), ins, msg)


@pytest.mark.parametrize("K", [3, 8, 50])
def test_dot_predict_threads_give_the_same_bits(K):
    "Predictions on threads (one per 8192 rows at most) equal one thread's bit for bit."
    rng = np.random.default_rng(K)
    nu, ni, N = 301, 203, 70001
    P = ref.dot_n_params(nu, ni, K, True)
    params = _f32(rng, P, scale=0.7)
    x = np.stack([_ids(rng, N, nu), _ids(rng, N, ni)], axis=1).astype(np.int32)
    one = np.empty(N, np.float32)
    _core.dot_predict(one, params, x, nu, ni, K, True, (0.0, 5.5))
    for t in (2, 3, 64):
        out = np.full(N, np.nan, np.float32)
        _core.dot_predict(out, params, x, nu, ni, K, True, (0.0, 5.5), n_threads=t)
        np.testing.assert_array_equal(out.view(np.int32), one.view(np.int32))
    x[N - 1, 1] = ni
    with pytest.raises(IndexError):
        _core.dot_predict(out, params, x, nu, ni, K, True, (0.0, 5.5), n_threads=4)
    with pytest.raises(ValueError, match="n_threads"):
        _core.dot_predict(out, params, x, nu, ni, K, True, (0.0, 5.5), n_threads=0)


def test_dot_predict_matches_the_kernel_composition():
    "dot_predict == dotbias_forward then sigmoid_range_forward on the split block, exactly."
    rng = np.random.default_rng(5)
    nu, ni, K, N = 7, 6, 5, 1500
    P = ref.dot_n_params(nu, ni, K, True)
    params = _f32(rng, P)
    x = np.stack([_ids(rng, N, nu), _ids(rng, N, ni)], axis=1).astype(np.int32)
    out = np.empty(N, np.float32)
    _core.dot_predict(out, params, x, nu, ni, K, True, (1.0, 5.0))
    uw, iw, ub, ib = (np.ascontiguousarray(a) for a in ref.dot_split(params, nu, ni, K, True))
    z = np.empty(N, np.float32)
    _core.dotbias_forward(z, uw, iw, ub, ib, np.ascontiguousarray(x[:, 0]),
                          np.ascontiguousarray(x[:, 1]))
    pred = np.empty(N, np.float32)
    _core.sigmoid_range_forward(pred, z, 1.0, 5.0)
    np.testing.assert_array_equal(out, pred)
