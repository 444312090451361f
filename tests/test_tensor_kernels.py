"""The generic tensor layer's kernels (csrc/tensorops.c through collabc/_core_tensor.c: gather,
scatter-add, row zeroing, row sum) against a NumPy reference, and their binding hygiene: every argument validated with a message naming it,
strided id columns read in place, ids checked before anything is written, inputs unmodified."""
import numpy as np
import pytest

from collabc import _core


def _f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("B,K,N,seed", [(64, 50, 944, 0), (1, 1, 1, 1), (0, 3, 4, 2), (300, 7, 5, 3)])
def test_gather_and_scatter_add_vs_numpy(B, K, N, seed):
    rng = np.random.default_rng(seed)
    table, dout = _f32(N, K, seed=seed), _f32(B, K, seed=seed + 1)
    batch = np.stack([rng.integers(0, N, B), rng.integers(-N, N, B)], 1).astype(np.int64)
    for col, wrap in ((0, False), (1, True)):
        ids = batch[:, col]  # a strided column, read in place
        before = (table.copy(), ids.copy(), dout.copy())
        out = np.full((B, K), np.nan, np.float32)
        _core.tensor_gather_forward(out, table, ids, wrap)
        np.testing.assert_array_equal(out, table[ids], err_msg=f"B={B} K={K} N={N} seed={seed}")
        d = np.ones((N, K), np.float32)
        _core.tensor_gather_backward(d, dout, ids, wrap)
        want = np.ones((N, K))
        np.add.at(want, ids, dout.astype(np.float64))
        np.testing.assert_allclose(d, want, rtol=1e-5, atol=1e-5, err_msg=f"B={B} K={K} N={N} seed={seed}")
        for a, b in zip((table, ids, dout), before):
            np.testing.assert_array_equal(a, b)  # read-only inputs come back unmodified


def test_ids_with_any_stride():
    table = _f32(6, 2)
    ids = np.array([5, 0, 3, 1], np.int64)
    for view in (ids[::-1], ids[::2], np.broadcast_to(np.int64(2), (3,))):
        out = np.zeros((len(view), 2), np.float32)
        _core.tensor_gather_forward(out, table, view, False)
        np.testing.assert_array_equal(out, table[view])


def test_zero_rows():
    table = _f32(6, 3) + 10
    batch = np.array([[5, 0], [-6, 1], [5, 2]], np.int64)
    want = table.copy()
    want[[5, 0]] = 0
    _core.tensor_zero_rows(table, batch[:, 0], True)
    np.testing.assert_array_equal(table, want)
    before = table.copy()
    with pytest.raises(IndexError, match=r"tensor_zero_rows\(\): index -6 \(at position 1\)"):
        _core.tensor_zero_rows(table, batch[:, 0], False)
    np.testing.assert_array_equal(table, before)  # nothing written
    with pytest.raises(ValueError, match="'table' is written in place and must be writeable"):
        ro = table.copy()
        ro.flags.writeable = False
        _core.tensor_zero_rows(ro, batch[:, 1], False)


def test_sum_rows_is_left_to_right():
    x = _f32(9, 13)
    out = np.zeros(9, np.float32)
    _core.tensor_sum_rows_forward(out, x)
    want = np.zeros(9, np.float32)
    for k in range(13):
        want = want + x[:, k]
    assert np.array_equal(out, want)


def test_bad_ids_raise_before_writing():
    table, out = _f32(4, 2), np.zeros((3, 2), np.float32)
    with pytest.raises(IndexError, match=r"tensor_gather_forward\(\): index 4 \(at position 2\) is out of "
                                         r"range for a table of 4 rows \(valid: 0 to 3\)"):
        _core.tensor_gather_forward(out, table, np.array([0, 1, 4], np.int64), False)
    with pytest.raises(IndexError, match=r"index -5 .*valid: -4 to 3"):
        _core.tensor_gather_forward(out, table, np.array([0, -5, 1], np.int64), True)
    assert not out.any()
    d = np.zeros((4, 2), np.float32)
    with pytest.raises(IndexError, match="tensor_gather_backward"):
        _core.tensor_gather_backward(d, np.ones((3, 2), np.float32), np.array([0, -1, 1], np.int64), False)
    assert not d.any()


def test_argument_validation_names_the_argument():
    table, out, ids = _f32(4, 2), np.zeros((3, 2), np.float32), np.array([0, 1, 2], np.int64)
    with pytest.raises(TypeError, match="'idx' must have dtype int64, got numpy.int32"):
        _core.tensor_gather_forward(out, table, ids.astype(np.int32), False)
    with pytest.raises(TypeError, match="'idx' must be an int64 ndarray, got list"):
        _core.tensor_gather_forward(out, table, [0, 1, 2], False)
    with pytest.raises(ValueError, match="'idx' must be 1-D"):
        _core.tensor_gather_forward(out, table, ids[None], False)
    with pytest.raises(TypeError, match="'table' must have dtype float32"):
        _core.tensor_gather_forward(out, table.astype(np.float64), ids, False)
    with pytest.raises(ValueError, match=r"'out' has shape \(2, 2\) but \(3, 2\) was expected"):
        _core.tensor_gather_forward(out[:2], table, ids, False)
    with pytest.raises(ValueError, match="'out' must be C-contiguous"):
        _core.tensor_gather_forward(np.zeros((2, 3), np.float32).T, table, ids, False)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is written in place and must be writeable"):
        _core.tensor_gather_forward(ro, table, ids, False)
    with pytest.raises(ValueError, match="must not share memory"):
        _core.tensor_gather_backward(table, table[:3], ids, False)
    with pytest.raises(ValueError, match=r"'dout' has shape \(3, 3\) but \(3, 2\) was expected"):
        _core.tensor_gather_backward(np.zeros((4, 2), np.float32), np.zeros((3, 3), np.float32), ids, False)
    with pytest.raises(ValueError, match=r"'out' has shape \(4,\) but \(3,\) was expected"):
        _core.tensor_sum_rows_forward(np.zeros(4, np.float32), _f32(3, 5))
    with pytest.raises(ValueError, match=r"'x' has shape \(3,\)"):
        _core.tensor_sum_rows_forward(np.zeros(3, np.float32), _f32(3))
