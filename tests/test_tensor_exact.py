"""A model written by the user with collabc.tensor / collabc.nn trains to the same parameters as
the built-in fused C drivers: the lesson's DotProductBias (four Embeddings) against
`_core.dot_fit_epoch` (csrc/train.c), and the book's CollabNN against `_core.nn_fit_epoch`
(csrc/nn.c), from the same initial weights over the same batches with fastai's Adam
(`_core.adam_step` on the packed block, decayed parameters first) and a one-cycle schedule.
The generic path reuses the drivers' kernels, so the only difference left is the user's own
order of additions (`dot + (user_bias + movie_bias)`): parameters agree to 1e-5 after
hundreds of steps (the neural model to the bit)."""
import numpy as np
import pytest

from test_lesson_cells import CollabNN, DotProductBias  # the lesson's cells (tests/ is on sys.path)

from collabc import _core
from collabc.nn import pack_model, train_step


def _schedule(J, lr=5e-3):
    pos = np.arange(J, dtype=np.float64) / J
    return (_core.onecycle(pos, lr / 25, lr, lr / 1e5, 0.25), _core.onecycle(pos, 0.95, 0.85, 0.95, 0.25))


def _generic_epoch(model, x, y, order, bs, lrs, moms, wd):
    "The generic path: packed parameters, train_step, fastai's Adam over the block in two calls."
    blk = pack_model(model)
    m, v = np.zeros_like(blk.data), np.zeros_like(blk.data)
    w, losses = blk.n_wd, []
    for j in range(len(lrs)):
        rows = order[j * bs:(j + 1) * bs]
        blk.zero_grad()
        losses.append(train_step(model, x[rows].astype(np.int64), y[rows].reshape(-1, 1)))
        _core.adam_step(blk.data[:w], blk.grad[:w], m[:w], v[:w], lrs[j], moms[j], 0.99, 1e-5, wd, j + 1)
        if w < blk.data.size:
            _core.adam_step(blk.data[w:], blk.grad[w:], m[w:], v[w:], lrs[j], moms[j], 0.99, 1e-5, 0.0, j + 1)
    return np.array(losses)


def _compare_dot(x, y, n_users, n_items, k, bs, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y)).astype(np.int64)
    J = len(y) // bs
    lrs, moms = _schedule(J)
    model = DotProductBias(n_users, n_items, k)
    tables = [model.user_factors, model.movie_factors, model.user_bias, model.movie_bias]
    params = np.concatenate([t.weight.numpy().ravel() for t in tables])  # train.c's layout
    P = params.size
    grads, m, v, fused_losses = (np.zeros(P, np.float32), np.zeros(P, np.float32), np.zeros(P, np.float32),
                                 np.zeros(J))
    _core.dot_fit_epoch(params, grads, m, v, fused_losses, x, y, order, lrs, moms, n_users=n_users,
                        n_items=n_items, n_factors=k, has_bias=True, y_range=(0, 5.5), bs=bs, opt="adam",
                        wd=0.1, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0)
    losses = _generic_epoch(model, x, y, order, bs, lrs, moms, wd=0.1)
    got = np.concatenate([t.weight.numpy().ravel() for t in tables])
    assert np.abs(got - params).max() <= 1e-5, np.abs(got - params).max()
    np.testing.assert_allclose(losses, fused_losses, rtol=0, atol=1e-5)
    return got, params


def _compare_nn(x, y, user_sz, item_sz, n_act, bs, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y)).astype(np.int64)
    J = len(y) // bs
    lrs, moms = _schedule(J)
    model = CollabNN(user_sz, item_sz, n_act=n_act)
    sd = model.state_dict()
    names = ["user_factors.weight", "item_factors.weight", "layers.0.weight", "layers.2.weight",
             "layers.0.bias", "layers.2.bias"]  # nn.c's layout: decayed first, Linear biases last
    offs = np.cumsum([0] + [sd[k].numel() for k in names])
    off = dict(zip(names, offs[:-1].tolist()))
    params = np.concatenate([sd[k].numpy().ravel() for k in names]).astype(np.float32)
    P, n_wd = params.size, int(offs[4])
    tables = np.array([[user_sz[0], user_sz[1], off["user_factors.weight"]],
                       [item_sz[0], item_sz[1], off["item_factors.weight"]]], np.int64)
    d_in = user_sz[1] + item_sz[1]
    ops = np.array([[0, d_in, n_act, off["layers.0.weight"], off["layers.0.bias"], -1],
                    [1, n_act, n_act, -1, -1, -1],
                    [0, n_act, 1, off["layers.2.weight"], off["layers.2.bias"], -1]], np.int64)
    grads, m, v, fused_losses = (np.zeros(P, np.float32), np.zeros(P, np.float32), np.zeros(P, np.float32),
                                 np.zeros(J))
    _core.nn_fit_epoch(params, grads, np.zeros(0, np.float32), m, v, fused_losses, x, y, order, lrs, moms,
                       tables=tables, ops=ops, ps=np.zeros(3), y_range=(0, 5.5), bn_momentum=0.1, bn_eps=1e-5,
                       bs=bs, opt="adam", wd=0.1, n_wd=n_wd, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0,
                       seed=0)
    assert pack_model(model).n_wd == n_wd  # fastai's decay rule gives the drivers' split
    losses = _generic_epoch(model, x, y, order, bs, lrs, moms, wd=0.1)
    sd = model.state_dict()
    got = np.concatenate([sd[k].numpy().ravel() for k in names])
    assert np.abs(got - params).max() <= 1e-5, np.abs(got - params).max()
    np.testing.assert_allclose(losses, fused_losses, rtol=0, atol=1e-6)
    return got, params


def _synthetic(n, nu, ni, seed=1):
    rng = np.random.default_rng(seed)
    pu, qi = rng.normal(size=(nu, 3)), rng.normal(size=(ni, 3))
    u, i = rng.integers(1, nu, n), rng.integers(1, ni, n)
    r = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) * 0.7 + rng.normal(0, 0.3, n)), 1, 5)
    return np.stack([u, i], 1).astype(np.int32), r.astype(np.float32)


def test_dot_product_bias_matches_fused_driver():
    x, y = _synthetic(20000, 60, 40)
    got, want = _compare_dot(x, y, 60, 40, 8, 64, seed=2)  # 312 steps
    assert np.abs(got - want).max() < 1e-6


def test_collab_nn_matches_fused_driver_bit_for_bit():
    x, y = _synthetic(20000, 60, 40)
    got, want = _compare_nn(x, y, (60, 7), (40, 9), 20, 64, seed=3)
    assert np.array_equal(got, want)


def _movielens():
    from conftest import ml100k_path
    raw = np.loadtxt(ml100k_path() / "u.data", dtype=np.int64)
    users = np.unique(raw[:, 0], return_inverse=True)[1] + 1  # index 0 is '#na#'
    items = np.unique(raw[:, 1], return_inverse=True)[1] + 1
    x = np.stack([users, items], 1).astype(np.int32)
    return x, raw[:, 2].astype(np.float32), int(users.max()) + 1, int(items.max()) + 1


@pytest.mark.slow
def test_movielens_one_epoch_matches_fused_drivers():
    x, y, nu, ni = _movielens()
    _compare_dot(x, y, nu, ni, 50, 64, seed=4)  # the lesson's model: 1562 steps
    _compare_nn(x[:32000], y[:32000], (nu, 74), (ni, 102), 100, 64, seed=5)  # 500 steps
