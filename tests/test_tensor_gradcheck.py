"""Every differentiable operation of collabc.tensor against central finite differences.

`check(f, *arrays)` runs f on float64 leaf tensors, backpropagates sum(f(...) * w) for a fixed
random w, and compares each input's `.grad` with (L(x + h) - L(x - h)) / 2h elementwise (the NumPy
path, tight tolerance). `check32` does the same with float32 inputs (the C-kernel path where one
exists) against the float64 finite differences, at float32 tolerance."""
import numpy as np
import pytest

from collabc import tensor as T
from collabc.tensor import Tensor, cat, stack, where

H = 1e-6


def _leaves(arrays, dtype):
    out = []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            t = T.tensor(a, dtype=dtype)
            t.requires_grad = True
        else:
            t = T.tensor(a)
        out.append(t)
    return out


def _loss(f, arrays, w, dtype=np.float64):
    with T.no_grad():
        out = f(*_leaves(arrays, dtype))
    return float((np.asarray(out, np.float64) * w).sum())


def _numeric(f, arrays, w):
    grads = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype.kind != "f":
            grads.append(None)
            continue
        g = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            plus = [x.copy() if j == i else x for j, x in enumerate(arrays)]
            minus = [x.copy() if j == i else x for j, x in enumerate(arrays)]
            plus[i][idx] += H
            minus[i][idx] -= H
            g[idx] = (_loss(f, plus, w) - _loss(f, minus, w)) / (2 * H)
        grads.append(g)
    return grads


def _analytic(f, arrays, w, dtype):
    ts = _leaves(arrays, dtype)
    out = f(*ts)
    assert isinstance(out, Tensor) and out.requires_grad, "the result must be in the graph"
    (out * T.tensor(w, dtype=out.dtype)).sum().backward()
    return [t.grad.numpy() if t.requires_grad and t.grad is not None else
            (np.zeros(t.shape) if t.requires_grad else None) for t in ts]


def check(f, *arrays, seed=0, rtol=1e-5, atol=1e-7, dtype=np.float64):
    """Analytic gradients of sum(f(*arrays) * w) with inputs of `dtype` against float64 central
    differences; returns the analytic gradients."""
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in arrays]
    with T.no_grad():
        shape = np.shape(f(*_leaves(arrays, np.float64)))
    w = np.random.default_rng(seed).standard_normal(shape)
    num = _numeric(f, arrays, w)
    ana = _analytic(f, arrays, w, dtype)
    for i, (a, n) in enumerate(zip(ana, num)):
        if n is None:
            continue
        assert a.dtype == dtype, f"input {i}: gradient dtype {a.dtype}, expected {np.dtype(dtype)}"
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol,
                                   err_msg=f"input {i} shape {n.shape} dtype {np.dtype(dtype)} seed {seed}")
    return ana


def check32(f, *arrays, seed=0, rtol=2e-3, atol=2e-4):
    "float32 analytic gradients (the C kernels) against float64 finite differences."
    return check(f, *arrays, seed=seed, rtol=rtol, atol=atol, dtype=np.float32)


R = np.random.default_rng(42)


def r(*shape, lo=None):
    a = R.standard_normal(shape)
    return np.abs(a) + lo if lo is not None else a


# ---------------------------------------------------------------- elementwise arithmetic
@pytest.mark.parametrize("sa,sb", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)),
                                   ((), (3,))])
def test_binary_broadcasting(sa, sb):
    a, b = r(*sa), r(*sb, lo=0.5)
    check(lambda x, y: x + y, a, b)
    check(lambda x, y: x - y, a, b)
    check(lambda x, y: x * y, a, b)
    check(lambda x, y: x / y, a, b)


def test_scalars_on_either_side():
    a = r(3, 2, lo=0.5)
    check(lambda x: 2.5 * x + 1 - x / 3, a)
    check(lambda x: 3 - x, a)
    check(lambda x: 2 / x, a)
    check(lambda x: np.float64(2.0) * x, a)  # NumPy scalar on the left defers to the tensor
    check(lambda x: np.full((3, 2), 1.5) * x - np.ones(2) / x, a)  # arrays on the left


def test_pow():
    a, b = r(3, 2, lo=0.5), r(3, 2)
    check(lambda x: x ** 2, a)
    check(lambda x: x ** 0.5, a)
    check(lambda x: x ** -1.5, a)
    check(lambda x: 2.0 ** x, b)
    check(lambda x, y: x ** y, a, b)


def test_unary():
    a, p = r(4, 3), r(4, 3, lo=0.2)
    check(lambda x: -x, a)
    check(lambda x: x.exp(), a)
    check(lambda x: T.exp(x), a)
    check(lambda x: x.log(), p)
    check(lambda x: x.sqrt(), p)
    check(lambda x: abs(x), a)
    check(lambda x: x.abs(), a)
    check(lambda x: x.sigmoid(), a)
    check(lambda x: T.sigmoid(x), a)
    check(lambda x: x.tanh(), a)
    check(lambda x: x.relu(), a)
    check(lambda x: x.clamp(-0.5, 0.5), a)
    check(lambda x: x.clamp_min(0.1), a)
    check(lambda x: x.clamp(max=0.3), a)
    check(lambda x: x.clone() * 2, a)


def test_relu_float32_kernel():
    a = r(6, 5)
    check32(lambda x: T.relu(x) * 3, a)
    check32(lambda x: T.relu(x.t()), a)  # an F-ordered input


def test_casts():
    a = r(3, 2)
    check32(lambda x: x.double() * 2, a)  # the float64 gradient comes back as float32
    x = T.tensor(a, dtype=np.float64, requires_grad=True)
    (x.float() * 3).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 2), 3.0))


# ---------------------------------------------------------------- reductions
@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), (-1, False), ((0, 2), False),
                                         ((0, 2), True)])
def test_sum_mean(dim, keepdim):
    a = r(3, 4, 5)
    check(lambda x: x.sum(dim, keepdim=keepdim), a)
    check(lambda x: x.mean(dim, keepdim=keepdim), a)
    check32(lambda x: x.sum(dim, keepdim=keepdim), a)


def test_sum_rows_kernel_in_float32():
    a, b = r(8, 50), r(8, 50)
    check32(lambda x, y: (x * y).sum(dim=1), a, b)
    check32(lambda x, y: (x * y).sum(dim=1, keepdim=True), a, b)


def test_max_min_var_std_norm():
    a = R.permutation(24).reshape(4, 6) / 7.0  # distinct values: no ties
    check(lambda x: x.max(), a)
    check(lambda x: x.min(), a)
    check(lambda x: x.max(dim=1)[0], a)
    check(lambda x: x.max(1, keepdim=True).values, a)
    check(lambda x: x.min(dim=0).values, a)
    check(lambda x: x.var(), a)
    check(lambda x: x.std(dim=1), a)
    check(lambda x: x.var(0, unbiased=False), a)
    check(lambda x: x.norm(dim=1), a)


def test_max_ties_share_the_gradient():
    x = T.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0.5, 0.5])


# ---------------------------------------------------------------- shapes
def test_shape_operations():
    a = r(2, 3, 4)
    check(lambda x: x.view(6, 4), a)
    check(lambda x: x.reshape(-1), a)
    check(lambda x: x.view(-1, 2) * 1.5, a)
    check(lambda x: x.flatten(1), a)
    check(lambda x: x.permute(2, 0, 1), a)
    check(lambda x: x.transpose(0, 2), a)
    check(lambda x: x.unsqueeze(1).squeeze(1), a)
    check(lambda x: x.sum(1, keepdim=True).squeeze(), a)
    check(lambda x: x[0].t(), a)
    check(lambda x: x[0].T, a)
    check(lambda x: x[:, :1].expand(2, 3, 4), a)
    check(lambda x: x[:, :1].expand_as(x) * x, a)
    check(lambda x: x.reshape(4, 6).view_as(T.zeros(2, 12)), a)


# ---------------------------------------------------------------- indexing
def test_basic_indexing():
    a = r(4, 5)
    check(lambda x: x[1], a)
    check(lambda x: x[:, 0], a)
    check(lambda x: x[1:3, ::2], a)
    check(lambda x: x[None], a)
    check(lambda x: x[..., -1], a)
    check(lambda x: x[2, 3], a)


def test_fancy_indexing_with_repeats():
    a = r(6, 3)
    idx = np.array([4, 1, 4, 4, 0])
    check(lambda x: x[T.tensor(idx)], a)  # gather: repeated rows accumulate
    check(lambda x: x[idx], a)
    check(lambda x: x[[4, 1, 4]], a)
    check(lambda x: x[T.tensor([-1, 0, -1])], a)  # negative ids count from the end
    check(lambda x: x[T.tensor(idx).view(5, 1)], a)  # 2-D ids
    check(lambda x: x[:, [2, 0, 2]], a)
    check(lambda x: x[x > 0], a)
    check32(lambda x: x[T.tensor(idx)], a)
    v = r(6)
    check(lambda x: x[T.tensor(idx)], v)  # a 1-D table
    check32(lambda x: x[T.tensor(idx)], v)


def test_setitem_in_the_graph():
    a, b = r(4, 3), r(3)

    def f(x, y):
        z = x * 1.0
        z[1] = y * 2
        return z
    check(f, a, b)

    def g(x, y):
        z = x * 1.0
        z[:, 0] = y[0]  # a broadcast value
        return z
    check(g, a, b)


def test_inplace_on_results():
    a, b, c = r(3, 1), r(3, 1), r(3, 4)

    def f(x, y, z):
        res = (z * z).sum(dim=1, keepdim=True)
        res += x + y
        res -= 0.5
        res *= y
        res /= 2.0
        return res
    check(f, a, b, c)


# ---------------------------------------------------------------- joining, where
def test_cat_stack_where():
    a, b = r(3, 2), r(3, 4)
    check(lambda x, y: cat([x, y], dim=1), a, b)
    check(lambda x, y: cat((x, y), 1), a, b)
    check(lambda x, y: cat([x, x * 2], 0), a, b)
    check(lambda x, y: stack([x, x * y[:, :2]], 1), a, b)
    check(lambda x, y: where(x > 0, x, y[:, :2]), a, b)
    check(lambda x, y: where(x > 0, x, 0.0), a, b)
    check32(lambda x, y: cat([x, y], dim=1), a, b)


# ---------------------------------------------------------------- matmul, linear
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((3, 4), (4,)), ((4,), (4, 2)), ((4,), (4,)),
                                   ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 2))])
def test_matmul(sa, sb):
    check(lambda x, y: x @ y, r(*sa), r(*sb))


def test_linear():
    x, w, b = r(5, 4), r(3, 4), r(3)
    check(lambda x, w, b: T.linear(x, w, b), x, w, b)
    check(lambda x, w: T.linear(x, w), x, w)
    check32(lambda x, w, b: T.linear(x, w, b), x, w, b)
    check32(lambda x, w: T.linear(x, w), x, w)
    check32(lambda x, w, b: T.linear(T.relu(T.linear(x, w, b)), w[:, :3]), x, w, b)  # F-ordered input
    check(lambda x, w, b: T.linear(x[0], w, b), x, w, b)  # a single row


# ---------------------------------------------------------------- the model operations
def test_sigmoid_range():
    a = r(6, 1) * 3
    check(lambda x: T.sigmoid_range(x, 0, 5.5), a)
    check32(lambda x: T.sigmoid_range(x, 0, 5.5), a)
    check32(lambda x: T.sigmoid_range(x.t(), -1, 2), r(4, 3))


def test_mse():
    p, y = r(7, 1), r(7, 1)
    check(lambda a, b: T.mse_loss(a, b), p, y)
    check(lambda a, b: T.mse_loss(a, b, reduction="sum"), p, y)
    check(lambda a, b: T.mse_loss(a, b, reduction="none"), p, y)
    check(lambda a, b: T.mse_loss_flat(a, b) * 3, p, y[:, 0])
    check32(lambda a, b: T.mse_loss_flat(a, b), p, y)
    check32(lambda a, b: T.mse_loss_flat(a, b) * 0.25, p, y)


def test_embedding():
    w = r(6, 3)
    ids = np.array([[1, 5], [1, 0], [3, 1]])
    check(lambda w: T.embedding(T.tensor(ids)[:, 0], w), w)
    check(lambda w: T.embedding(T.tensor(ids), w), w)
    check32(lambda w: T.embedding(T.tensor(ids)[:, 0], w), w)
    check32(lambda w: T.embedding(T.tensor(ids), w) * 2, w)


def test_dropout_gradient_is_the_mask():
    a = r(20, 5)
    check(lambda x: T.dropout(x, 0.3, True, np.random.default_rng(3)), a)
    check32(lambda x: T.dropout(x, 0.3, True, np.random.default_rng(3)), a)
    check(lambda x: T.dropout(x, 0.3, False) * 2, a)


def test_batch_norm():
    x, g, b = r(6, 3) * 2 + 1, r(3, lo=0.5), r(3)
    rm, rv = np.zeros(3), np.ones(3)

    def train(x, g, b):
        return T.batch_norm(x, None, None, g, b, training=True)

    def evaluate(x, g, b):
        return T.batch_norm(x, T.tensor(rm + 0.3, dtype=x.dtype), T.tensor(rv * 2, dtype=x.dtype), g, b,
                            training=False)
    check(train, x, g, b, rtol=1e-4, atol=1e-6)
    check(evaluate, x, g, b)
    check32(train, x, g, b)
    check32(evaluate, x, g, b)
    check32(lambda x, g, b: train(T.relu(x.t().t()), g, b), x, g, b)


def test_cosine_similarity():
    a, b = r(5, 4), r(1, 4)
    check(lambda x, y: T.cosine_similarity(x, y, dim=1), a, b)
    check(lambda x, y: T.cosine_similarity(x, y[0], dim=-1), a, b)


def test_two_paths_accumulate():
    "A tensor used twice gets the sum of both gradients; a leaf used twice too."
    a = r(3, 2)
    check(lambda x: x * x + x.exp() * x, a)

    def f(x):
        h = x * 2
        return h * h.sum(0) - h
    check(f, a)
