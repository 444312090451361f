"""collabc.tensor against PyTorch's conventions: construction and dtypes, NumPy interop without
copies, broadcasting and reductions, indexing, shape operations, in-place operations on results,
no_grad, the autograd engine's rules (accumulation, second backward, non-scalar backward),
reprs as PyTorch prints them, the lesson's helpers (pca, argsort, one_hot, cosine similarity),
and the errors a learner meets (shapes named, operations without gradients named)."""
import copy
import pickle

import numpy as np
import pytest

from collabc import seed
from collabc import tensor as T
from collabc.tensor import (Parameter, Tensor, arange, cat, no_grad, one_hot, ones, randn, stack, tensor,
                            zeros)


def leaf(*vals):
    return tensor(np.array(vals, dtype=np.float32), requires_grad=True)


# ---------------------------------------------------------------- construction and dtypes
def test_tensor_dtypes_follow_fastai():
    assert tensor([1, 2, 3]).dtype == np.int64
    assert tensor([1.0, 2.0]).dtype == np.float32
    assert tensor(1, 2, 3).tolist() == [1, 2, 3]  # fastai's tensor(*elements)
    assert tensor([True, False]).dtype == np.bool_
    assert tensor(np.arange(3.0)).dtype == np.float32  # float64 arrays become float32
    assert tensor(np.arange(3.0), dtype=np.float64).dtype == np.float64
    assert tensor(3.5).shape == () and tensor(3.5).item() == 3.5
    assert zeros(2, 3).dtype == np.float32 and zeros((2, 3)).shape == (2, 3) and zeros([4]).shape == (4,)
    assert ones(3).tolist() == [1.0, 1.0, 1.0]
    assert arange(5).dtype == np.int64 and arange(0.0, 1.0, 0.5).dtype == np.float32
    assert T.full((2,), 7).dtype == np.int64 and T.full((2,), 0.5).dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float32  # the legacy constructor is float32
    with pytest.raises(TypeError, match="cannot make a tensor"):
        tensor(["a", "b"])
    with pytest.raises(RuntimeError, match="negative dimension"):
        zeros(-1)


def test_tensor_of_an_array_shares_memory():
    a = np.arange(6).reshape(2, 3)
    t = tensor(a)
    assert np.shares_memory(t.numpy(), a)
    a[0, 0] = 42
    assert t[0, 0].item() == 42


def test_numpy_interop_without_copies():
    t = randn(4, 3)
    assert t.numpy() is t.numpy()
    assert np.asarray(t) is t.numpy()
    np.asarray(t)[1, 2] = 5.0  # writing through the array writes the tensor
    assert t[1, 2].item() == 5.0
    p = Parameter(zeros(3))
    assert np.asarray(p) is p.numpy()  # even for tensors that require grad
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    d = t.detach()
    assert d.numpy() is t.numpy() and not d.requires_grad
    assert t.cpu() is t and t.float() is t
    assert t.data.numpy() is t.numpy() and not t.data.requires_grad


def test_numpy_functions_and_scalars_on_the_left():
    t = leaf(1.0, 2.0, 3.0)
    y = np.float32(2) * t + np.ones(3) * t  # NumPy on the left: still a Tensor in the graph
    assert isinstance(y, Tensor) and y.grad_fn is not None
    y.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [3, 3, 3])
    e = np.exp(t)  # any other ufunc sees the array and returns an array
    assert isinstance(e, np.ndarray)
    np.testing.assert_allclose(e, np.exp([1, 2, 3]), rtol=1e-6)


def test_promotion_like_pytorch():
    i, f = tensor([1, 2]), tensor([0.5, 1.5])
    assert (i + f).dtype == np.float32
    assert (i * 2.5).dtype == np.float32
    assert (i / 2).dtype == np.float32 and (i / i).tolist() == [1.0, 1.0]
    assert (i + 1).dtype == np.int64
    assert (f * np.float64(2)).dtype == np.float32
    assert (f > 1).dtype == np.bool_ and (f > 1).tolist() == [False, True]
    assert (tensor([1.0], dtype=np.float64) + f).dtype == np.float64


# ---------------------------------------------------------------- reductions and broadcasting
def test_sum_mean_keepdim():
    x = tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert x.sum().item() == 66 and x.sum().shape == ()
    assert x.sum(dim=1).tolist() == [6, 22, 38]
    assert x.sum(dim=1, keepdim=True).shape == (3, 1)
    assert x.sum(0).shape == (4,) and x.sum(-1).shape == (3,)
    assert x.sum((0, 1)).item() == 66
    assert x.mean().item() == 5.5 and x.mean(dim=0).tolist() == [4, 5, 6, 7]
    assert tensor([1, 2]).sum().dtype == np.int64 and tensor([True, True]).sum().item() == 2
    with pytest.raises(IndexError, match="dimension out of range"):
        x.sum(dim=2)
    with pytest.raises(TypeError, match="floating point"):
        tensor([1, 2]).mean()


def test_row_sum_in_c_equals_left_to_right():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 50)).astype(np.float32)
    want = np.zeros(64, np.float32)
    for k in range(50):
        want += a[:, k]
    assert np.array_equal(tensor(a).sum(dim=1).numpy(), want)


def test_broadcast_error_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"\(64, 50\).*\(32, 50\)"):
        zeros(64, 50) * zeros(32, 50)
    with pytest.raises(RuntimeError, match=r"\(3,\).*\(4,\)"):
        zeros(3) + zeros(4)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(4, 5\).*3 columns against 4 rows"):
        zeros(2, 3) @ zeros(4, 5)
    with pytest.raises(RuntimeError, match=r"sizes of tensors must match.*\(2, 3\).*\(3, 3\)"):
        cat([zeros(2, 3), zeros(3, 3)], dim=1)
    with pytest.raises(RuntimeError, match=r"same shape.*\(2,\).*\(3,\)"):
        stack([zeros(2), zeros(3)])


# ---------------------------------------------------------------- indexing and shapes
def test_indexing():
    x = tensor(np.arange(12).reshape(4, 3))
    assert x[:, 0].tolist() == [0, 3, 6, 9]
    assert x[1].tolist() == [3, 4, 5] and x[1, 2].item() == 5 and x[-1, -1].item() == 11
    assert x[None].shape == (1, 4, 3) and x[:, None].shape == (4, 1, 3)
    assert x[tensor([3, 0, 3])].tolist() == [[9, 10, 11], [0, 1, 2], [9, 10, 11]]
    assert x[np.array([1])].shape == (1, 3) and x[[0, 2]].shape == (2, 3)
    assert x[x > 9].tolist() == [10, 11]
    assert x[tensor(2)].tolist() == [6, 7, 8]  # a 0-d index tensor selects a row
    f = tensor(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert f[tensor([[0, 1], [2, 3]])].shape == (2, 2, 3)
    with pytest.raises(IndexError, match="index 4 is out of range.*4 rows"):
        f[tensor([0, 4])]
    with pytest.raises(IndexError, match="out of bounds"):
        x[7]
    with pytest.raises(IndexError, match="integer or bool"):
        x[tensor([0.5])]
    assert [0, 10, 20][tensor(1)] == 10  # __index__


def test_setitem_without_grad_writes_in_place():
    x = zeros(5)
    a = x.numpy()
    x[tensor([1, 3])] = 1.0
    x[0] = tensor(2.0)
    assert a.tolist() == [2, 1, 0, 1, 0]


def test_shape_operations():
    x = tensor(np.arange(6, dtype=np.float32))
    assert x.view(2, 3).shape == (2, 3) and x.view(-1, 2).shape == (3, 2) and x.view((3, 2)).shape == (3, 2)
    assert x.reshape(2, -1).t().shape == (3, 2) and x.view(2, 3).T.shape == (3, 2)
    assert np.shares_memory(x.view(2, 3).numpy(), x.numpy())
    y = x.view(2, 3).t()
    assert y.view(-1).tolist() == [0, 3, 1, 4, 2, 5]  # view of a non-contiguous tensor copies
    assert x.view(1, 6, 1).squeeze().shape == (6,) and x.view(1, 6).squeeze(0).shape == (6,)
    assert x.view(1, 6).squeeze(1).shape == (1, 6)
    assert x.unsqueeze(0).shape == (1, 6) and x.unsqueeze(-1).shape == (6, 1)
    assert x.view(2, 3).permute(1, 0).shape == (3, 2) and x.view(1, 2, 3).transpose(0, 2).shape == (3, 2, 1)
    assert x.view(2, 3).flatten().shape == (6,) and len(x) == 6 and x.numel() == 6 and x.dim() == 1
    assert x.size() == (6,) and x.size(0) == 6 and x.view(2, 3).size(-1) == 3
    assert repr(x.view(2, 3).shape) == "Size([2, 3])"
    with pytest.raises(RuntimeError, match=r"shape \[4, -1\] is invalid for a tensor of 6 elements"):
        x.view(4, -1)
    with pytest.raises(RuntimeError, match="t\\(\\) expects a tensor with <= 2 dimensions"):
        x.view(1, 2, 3).t()
    with pytest.raises(RuntimeError, match="cannot be expanded"):
        x.view(2, 3).expand(4, 3)


def test_iteration_scalars_and_unpacking():
    m = tensor(np.arange(6, dtype=np.float32).reshape(3, 2))
    a, b = m.t()  # the lesson's `fac0, fac1, fac2 = movie_pca.t()`
    assert a.tolist() == [0, 2, 4] and b.tolist() == [1, 3, 5]
    assert [float(v) for v in a] == [0.0, 2.0, 4.0]
    assert int(tensor([7])) == 7 and bool(tensor(1.0)) and f"{tensor(2.0):.2f}" == "2.00"
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(zeros(2))
    with pytest.raises(ValueError, match="one element"):
        float(zeros(2))
    with pytest.raises(TypeError, match="0-d"):
        len(tensor(1.0))
    assert 4.0 in m and 9.0 not in m


# ---------------------------------------------------------------- autograd rules
def test_gradients_accumulate_and_leaves_only():
    w = leaf(1.0, 2.0)
    (w * 3).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [5, 7])  # 3 + 2w, accumulated
    h = w * 2
    assert h.grad is None and not h.is_leaf and w.is_leaf and h.requires_grad
    assert h.grad_fn.name == "MulBackward0"
    assert zeros(2).grad_fn is None and not (zeros(2) * 2).requires_grad


def test_backward_errors():
    w = leaf(1.0, 2.0)
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*shape \(2,\)"):
        (w * 2).backward()
    loss = (w * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    loss2 = (w * 2).sum()
    loss2.backward(retain_graph=True)
    loss2.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [6, 6])
    with pytest.raises(RuntimeError, match="does not require grad"):
        zeros(2).sum().backward()
    w.grad = None
    (w * 2).backward(tensor([1.0, 10.0]))  # an explicit gradient for a non-scalar
    np.testing.assert_array_equal(w.grad.numpy(), [2, 20])
    with pytest.raises(RuntimeError, match="gradient has shape"):
        (w * 2).backward(tensor([1.0]))


def test_operation_without_gradient_names_itself():
    w = leaf(1.5, 2.5)
    for op, f in [("floor", lambda t: t.floor()), ("round", lambda t: t.round()), ("sign", lambda t: t.sign()),
                  ("sort", lambda t: t.sort()[0]), ("topk", lambda t: t.topk(1)[0]),
                  ("remainder", lambda t: t % 2.0)]:
        with pytest.raises(RuntimeError, match=f"{op}.*has no gradient"):
            (f(w) * w).sum().backward()
    assert not w.argsort().requires_grad and not (w > 2).requires_grad
    with no_grad():
        assert not w.floor().requires_grad


def test_inplace_on_a_result_keeps_the_graph():
    w = leaf(1.0, 2.0)
    b = leaf(10.0, 20.0)
    res = w * w
    keep = res
    res += b  # the lesson's `res += self.user_bias(...) + ...`
    assert res is keep and res.grad_fn.name == "AddBackward0"
    res.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2, 4])
    np.testing.assert_array_equal(b.grad.numpy(), [1, 1])
    with pytest.raises(RuntimeError, match=r"in-place '\+=': the result has shape \(2, 2\) but the tensor "
                                           r"has shape \(2, 1\)"):
        r = w.view(2, 1) * 1
        r += w
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w += 1
    with no_grad():  # a parameter update: in place, same memory
        a = w.numpy()
        w -= 0.5 * w.grad
        assert w.numpy() is a and w.tolist() == [0.0, 0.0]


def test_inplace_modification_of_a_saved_tensor_is_caught():
    w = leaf(1.0, 2.0)
    c = tensor([3.0, 4.0])
    y = (w * c).sum()
    c += 1  # c's values are needed to compute w's gradient
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_inplace_type_errors():
    i = tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        i += 0.5
    with pytest.raises(RuntimeError, match="can't be cast"):
        i /= 2
    i += 1
    assert i.tolist() == [2, 3]


def test_no_grad_and_grad_modes():
    w = leaf(1.0)
    with no_grad():
        y = w * 2
        assert not y.requires_grad and not T.is_grad_enabled()
        with T.enable_grad():
            assert (w * 2).requires_grad
    assert T.is_grad_enabled() and (w * 2).requires_grad

    @no_grad()
    def f(t):
        return t * 2
    assert not f(w).requires_grad
    with T.set_grad_enabled(False):
        assert not (w * 2).requires_grad
    assert T.is_grad_enabled()


def test_requires_grad_rules():
    with pytest.raises(RuntimeError, match="floating point"):
        tensor([1, 2]).requires_grad_()
    h = leaf(1.0) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        h.requires_grad = False
    t = zeros(2).requires_grad_()
    assert t.requires_grad and t.is_leaf
    with pytest.raises(TypeError, match="floating point"):
        Parameter(tensor([1, 2]))


# ---------------------------------------------------------------- reprs
def test_reprs_like_pytorch():
    assert repr(tensor([1.0, 2.0, 3.0])) == "tensor([1., 2., 3.])"
    assert repr(tensor([1, 2, 3])) == "tensor([1, 2, 3])"
    assert repr(tensor([0.01, -0.02])) == "tensor([ 0.0100, -0.0200])"
    assert repr(tensor([1e-5, 1.0])) == "tensor([1.0000e-05, 1.0000e+00])"
    assert repr(tensor([True, False])) == "tensor([ True, False])"
    assert repr(tensor(3.5)) == "tensor(3.5000)" and repr(tensor(3.0)) == "tensor(3.)"
    assert repr(zeros(2, 3)) == "tensor([[0., 0., 0.],\n        [0., 0., 0.]])"
    assert repr(zeros(0, 3)) == "tensor([], size=(0, 3))" and repr(tensor([])) == "tensor([])"
    assert repr(arange(2000)) == "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])"
    assert repr(tensor([1.0, float("nan")])) == "tensor([1., nan])"
    assert repr(tensor(np.array([1, 2], np.int32))) == "tensor([1, 2], dtype=int32)"
    assert repr(one_hot(1, 3)) == "tensor([0, 1, 0], dtype=uint8)"
    assert repr(leaf(1.0, 2.0)) == "tensor([1., 2.], requires_grad=True)"
    assert repr(leaf(1.0, 2.0) * 2) == "tensor([2., 4.], grad_fn=<MulBackward0>)"
    assert repr(Parameter(ones(3))) == "Parameter containing:\ntensor([1., 1., 1.], requires_grad=True)"
    big = repr(tensor(np.arange(10000, dtype=np.float32).reshape(100, 100)))
    assert big.startswith("tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 9.7000e+01, 9.8000e+01,")
    assert "\n        ...,\n" in big


# ---------------------------------------------------------------- the lesson's helpers
def test_argsort_descending_and_stable():
    b = tensor([0.5, -1.0, 2.0, 0.5])
    assert b.argsort().tolist() == [1, 0, 3, 2]
    assert b.argsort(descending=True).tolist() == [2, 0, 3, 1]
    assert tensor([[3, 1], [0, 2]]).argsort(dim=1).tolist() == [[1, 0], [0, 1]]
    assert tensor([True, False]).argsort(descending=True).tolist() == [0, 1]
    assert b.argmax().item() == 2 and b.max(0).indices.item() == 2


def test_pca_like_fastai():
    rng = np.random.default_rng(0)
    x = tensor(rng.standard_normal((30, 5)).astype(np.float32) + 3)
    p = x.pca(3)
    assert p.shape == (30, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.numpy().mean(0), 0, atol=1e-4)
    c = x.numpy() - x.numpy().mean(0)
    full = x.pca(5).numpy()  # all components: a rotation of the centred data
    np.testing.assert_allclose(full @ full.T, c @ c.T, rtol=1e-3, atol=1e-3)
    var = p.numpy().var(0)
    assert var[0] >= var[1] >= var[2]


def test_one_hot_and_embedding_lookup_equivalence():
    oh = one_hot(2, 5)
    assert oh.dtype == np.uint8 and oh.tolist() == [0, 0, 1, 0, 0]
    assert one_hot([0, 3], 4).tolist() == [1, 0, 0, 1] and one_hot(tensor([1]), 3).tolist() == [0, 1, 0]
    user_factors = randn(5, 3)
    np.testing.assert_allclose((user_factors.t() @ oh.float()).numpy(), user_factors[2].numpy(), rtol=1e-6)
    with pytest.raises(IndexError, match="out of range for 5 classes"):
        one_hot(7, 5)


def test_cosine_similarity_values():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 4)).astype(np.float32)
    got = T.cosine_similarity(tensor(a), tensor(a)[2][None], dim=1).numpy()
    want = a @ a[2] / (np.linalg.norm(a, axis=1) * np.linalg.norm(a[2]))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.argsort(-got)[0] == 2
    assert T.cosine_similarity(zeros(1, 3), ones(1, 3)).tolist() == [0.0]  # eps: no division by zero


def test_random_draws_follow_set_seed():
    seed.set_seed(3)
    a = randn(4).tolist() + zeros(3).normal_(0, 0.01).tolist()
    seed.set_seed(3)
    b = randn(4).tolist() + zeros(3).normal_(0, 0.01).tolist()
    assert a == b
    assert abs(np.std(zeros(10000).normal_(0, 0.01).numpy()) - 0.01) < 0.001


def test_pickle_and_deepcopy_drop_the_graph():
    w = leaf(1.0, 2.0)
    h = w * 2
    for f in (lambda t: pickle.loads(pickle.dumps(t)), copy.deepcopy):
        c = f(h)
        assert c.tolist() == [2.0, 4.0] and c.grad_fn is None
        p = f(Parameter(ones(2)))
        assert type(p) is Parameter and p.requires_grad


def test_mse_loss_refuses_silent_broadcasting():
    with pytest.raises(RuntimeError, match=r"input has shape \(4,\) but target has shape \(4, 1\)"):
        T.mse_loss(zeros(4), zeros(4, 1))
    assert T.mse_loss_flat(zeros(4), tensor([[1], [1], [1], [1]])).item() == 1.0  # flattens, floatifies
    with pytest.raises(RuntimeError, match="MSELossFlat: input has 4 values"):
        T.mse_loss_flat(zeros(4), zeros(3))


def test_linear_and_embedding_errors_name_shapes():
    with pytest.raises(RuntimeError, match=r"input has shape \(2, 5\).*in_features = 4.*\(3, 4\)"):
        T.linear(zeros(2, 5), zeros(3, 4))
    with pytest.raises(TypeError, match="integer tensor"):
        T.embedding(zeros(3), zeros(4, 2))
    with pytest.raises(IndexError, match="index -1 is out of range for an embedding table with 4 rows"):
        T.embedding(tensor([0, -1]), zeros(4, 2))
