"""The float64 reference backward of every differentiable kernel (tests/reference.py) against
central finite differences, so the reference the C kernels are compared with is itself right.
Vector-valued functions are reduced to a scalar L = sum(w * f(x)) with random weights w; the
backward called with upstream gradient w must then equal dL/dx."""

import numpy as np
import pytest

import reference as ref  # tests/, put on sys.path by conftest.py

H = 1e-6
RTOL = 1e-6
ATOL = 1e-8


def numgrad(f, x, h=H):
    "Central differences of the scalar function f at the float64 array x (any shape)."
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for n in range(flat.size):
        old = flat[n]
        flat[n] = old + h
        fp = f(x)
        flat[n] = old - h
        fm = f(x)
        flat[n] = old
        gflat[n] = (fp - fm) / (2 * h)
    return g


def check(analytic, numeric, what):
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=what)


def _ids(rng, n, limit):
    "n ids in [0, limit) that are guaranteed to repeat when n > 1."
    ids = rng.integers(0, limit, n).astype(np.int32)
    if n > 1:
        ids[-1] = ids[0]
    return ids


# ---------------------------------------------------------------- embedding

@pytest.mark.parametrize("seed", [0, 1])
def test_embedding_backward_matches_finite_differences(seed):
    rng = np.random.default_rng(seed)
    B, K, N = 9, 3, 4
    weight = rng.normal(size=(N, K))
    idx = _ids(rng, B, N)
    w = rng.normal(size=(B, K))
    numeric = numgrad(lambda W: np.sum(w * ref.embedding_forward(W, idx)), weight)
    check(ref.embedding_backward(w, idx, N), numeric, f"embedding B={B} K={K} N={N} seed={seed}")


# ---------------------------------------------------------------- dotbias

@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("B,K,NU,NI,seed", [(1, 1, 1, 1, 0), (7, 3, 4, 5, 1), (12, 5, 3, 6, 2)])
def test_dotbias_backward_matches_finite_differences(has_bias, B, K, NU, NI, seed):
    rng = np.random.default_rng(seed)
    uw, iw = rng.normal(size=(NU, K)), rng.normal(size=(NI, K))
    ub = rng.normal(size=NU) if has_bias else None
    ib = rng.normal(size=NI) if has_bias else None
    users, items = _ids(rng, B, NU), _ids(rng, B, NI)
    w = rng.normal(size=B)
    duw, diw, dub, dib = ref.dotbias_backward(w, uw, iw, users, items, has_bias)
    msg = f"dotbias has_bias={has_bias} B={B} K={K} NU={NU} NI={NI} seed={seed}"

    def L(uw_=uw, iw_=iw, ub_=ub, ib_=ib):
        return np.sum(w * ref.dotbias_forward(uw_, iw_, ub_, ib_, users, items))

    check(duw, numgrad(lambda a: L(uw_=a), uw), msg + " duw")
    check(diw, numgrad(lambda a: L(iw_=a), iw), msg + " diw")
    if has_bias:
        check(dub, numgrad(lambda a: L(ub_=a), ub), msg + " dub")
        check(dib, numgrad(lambda a: L(ib_=a), ib), msg + " dib")
    else:
        assert dub is None and dib is None


# ---------------------------------------------------------------- activations, loss

@pytest.mark.parametrize("lo,hi", [(0.0, 5.5), (-1.0, 1.0), (0.5, 0.75)])
def test_sigmoid_range_backward_matches_finite_differences(lo, hi):
    rng = np.random.default_rng(3)
    x = rng.normal(scale=3.0, size=20)
    w = rng.normal(size=20)
    numeric = numgrad(lambda a: np.sum(w * ref.sigmoid_range_forward(a, lo, hi)), x)
    check(ref.sigmoid_range_backward(w, x, lo, hi), numeric, f"sigmoid_range lo={lo} hi={hi}")


def test_relu_backward_matches_finite_differences_away_from_zero():
    rng = np.random.default_rng(4)
    x = rng.normal(size=30)
    x = np.where(np.abs(x) < 0.1, 0.5, x)  # keep the kink out of reach of the difference
    w = rng.normal(size=30)
    numeric = numgrad(lambda a: np.sum(w * ref.relu_forward(a)), x)
    check(ref.relu_backward(w, x), numeric, "relu")
    assert np.any(x < 0) and np.any(x > 0)


@pytest.mark.parametrize("N", [1, 2, 17])
def test_mse_backward_matches_finite_differences(N):
    rng = np.random.default_rng(5)
    pred, y = rng.normal(size=N), rng.normal(size=N)
    numeric = numgrad(lambda a: ref.mse_forward(a, y), pred)
    check(ref.mse_backward(pred, y), numeric, f"mse N={N}")


# ---------------------------------------------------------------- the composed dot model

@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("y_range", [None, (0.0, 5.5)])
def test_dot_model_loss_gradient_matches_finite_differences(has_bias, y_range):
    rng = np.random.default_rng(6)
    nu, ni, k, B = 5, 4, 3, 11
    P = ref.dot_n_params(nu, ni, k, has_bias)
    params = rng.normal(scale=0.5, size=P)
    x = np.stack([_ids(rng, B, nu), _ids(rng, B, ni)], axis=1)
    y = rng.uniform(0.5, 5.0, size=B)
    loss, grad = ref.dot_loss_grad(params, x, y, nu, ni, k, has_bias, y_range)
    assert grad.shape == (P,)
    numeric = numgrad(lambda p: ref.dot_loss_grad(p, x, y, nu, ni, k, has_bias, y_range)[0],
                      params)
    check(grad, numeric, f"dot model has_bias={has_bias} y_range={y_range}")
    # loss agrees with the model's own prediction
    pred = ref.dot_predict(params, x, nu, ni, k, has_bias, y_range)
    assert loss == pytest.approx(np.mean((pred - y) ** 2), rel=1e-14)
    # a row no batch touches has zero gradient, and the touched rows do not
    untouched_users = sorted(set(range(nu)) - set(x[:, 0].tolist()))
    for u in untouched_users:
        assert not grad[u * k:(u + 1) * k].any()


def test_the_gradient_check_detects_a_wrong_gradient():
    "The checker is not vacuous: a 1% error in the analytic gradient is caught."
    rng = np.random.default_rng(8)
    x = rng.normal(size=10)
    w = rng.normal(size=10)
    numeric = numgrad(lambda a: np.sum(w * ref.sigmoid_range_forward(a, 0.0, 5.5)), x)
    wrong = 1.01 * ref.sigmoid_range_backward(w, x, 0.0, 5.5)
    with pytest.raises(AssertionError):
        check(wrong, numeric, "deliberately wrong")
