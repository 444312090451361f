"""The neural models (issue 3): kernels vs the float64 reference and finite differences,
train vs eval mode, the replay of fastai's recorded EmbeddingNN epoch, the lesson's models
through collab_learner/Learner, weight decay groups and bad input."""

import numpy as np
import pytest

import reference_nn as ref  # noqa: E402  (tests/, put on sys.path by conftest.py)

from collabc import (CollabDataLoaders, CollabNN,  # noqa: E402
                     EmbeddingNN, Learner, MSELossFlat, _core, collab_learner, emb_sz_rule,
                     get_emb_sz, set_seed, tabular_config)
from collabc.optim import Adam  # noqa: E402


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("B,DI,DO,bias", [(64, 176, 100, False), (7, 3, 5, True), (1, 1, 1, True), (33, 17, 1, True)])
def test_linear_vs_reference(B, DI, DO, bias):
    rng = np.random.default_rng(B * 1000 + DI)
    xT, W = f32(rng, DI, B), f32(rng, DO, DI)
    b = f32(rng, DO) if bias else None
    out = np.empty((DO, B), np.float32)
    _core.linear_forward(out, xT, W, b)
    msg = f"B={B} DI={DI} DO={DO} bias={bias}"
    np.testing.assert_allclose(out, ref.linear_forward(xT, W, b), rtol=1e-4, atol=1e-4, err_msg=msg)
    d = f32(rng, DO, B)
    dx, dW = np.ones((DI, B), np.float32), np.ones((DO, DI), np.float32)
    db = np.ones(DO, np.float32) if bias else None
    _core.linear_backward(dx, dW, db, d, xT, W)
    rdx, rdW, rdb = ref.linear_backward(d, xT, W)
    np.testing.assert_allclose(dx, rdx + 1, rtol=1e-4, atol=1e-4, err_msg=msg)  # accumulates
    np.testing.assert_allclose(dW, rdW + 1, rtol=1e-4, atol=1e-4, err_msg=msg)
    if bias:
        np.testing.assert_allclose(db, rdb + 1, rtol=1e-4, atol=1e-4, err_msg=msg)


@pytest.mark.parametrize("B,N", [(64, 100), (2, 3), (5, 1)])
def test_batchnorm_vs_reference(B, N):
    rng = np.random.default_rng(B + N)
    xT = f32(rng, N, B, scale=3.0) + 1
    gamma, beta = f32(rng, N) + 1, f32(rng, N)
    rm, rv = f32(rng, N), np.abs(f32(rng, N)) + 0.5
    out, mean, invstd = np.empty((N, B), np.float32), np.empty(N, np.float32), np.empty(N, np.float32)
    rm2, rv2 = rm.copy(), rv.copy()
    _core.batchnorm_forward_train(out, mean, invstd, xT, gamma, beta, rm2, rv2, 0.1, 1e-5)
    r_out, r_mean, r_inv, r_rm, r_rv = ref.batchnorm_forward_train(xT, gamma, beta, rm, rv)
    for got, want in [(out, r_out), (mean, r_mean), (invstd, r_inv), (rm2, r_rm), (rv2, r_rv)]:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"B={B} N={N}")
    ev = np.empty((N, B), np.float32)
    _core.batchnorm_forward_eval(ev, xT, gamma, beta, rm, rv, 1e-5)
    np.testing.assert_allclose(ev, ref.batchnorm_forward_eval(xT, gamma, beta, rm, rv), rtol=1e-4, atol=1e-5)
    d = f32(rng, N, B)
    dx, dg, db = np.zeros((N, B), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)
    _core.batchnorm_backward(dx, dg, db, d, xT, mean, invstd, gamma)
    r_dx, r_dg, r_db = ref.batchnorm_backward(d, xT, gamma)
    np.testing.assert_allclose(dx, r_dx, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dg, r_dg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, r_db, rtol=1e-4, atol=1e-4)


def test_reference_backward_vs_finite_differences():
    rng = np.random.default_rng(0)
    N, B = 3, 6
    x = rng.standard_normal((N, B)) * 2
    g, b, w = rng.standard_normal(N) + 1, rng.standard_normal(N), rng.standard_normal((N, B))
    dx, dg, db = ref.batchnorm_backward(w, x, g)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (ref.batchnorm_loss(xp, g, b, w) - ref.batchnorm_loss(xm, g, b, w)) / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-6)
    num_g = [(ref.batchnorm_loss(x, g + h * e, b, w) - ref.batchnorm_loss(x, g - h * e, b, w)) / (2 * h)
             for e in np.eye(N)]
    np.testing.assert_allclose(dg, num_g, rtol=1e-5, atol=1e-6)
    # linear: loss = sum(w * (W x + b))
    DI, DO = 4, 3
    xT, W, wo = rng.standard_normal((DI, B)), rng.standard_normal((DO, DI)), rng.standard_normal((DO, B))
    rdx, rdW, _ = ref.linear_backward(wo, xT, W)
    loss = lambda W_, x_: float((wo * ref.linear_forward(x_, W_)).sum())  # noqa: E731
    numW = np.array([[(loss(W + h * np.eye(DO)[o][:, None] * np.eye(DI)[i], xT) -
                       loss(W - h * np.eye(DO)[o][:, None] * np.eye(DI)[i], xT)) / (2 * h)
                      for i in range(DI)] for o in range(DO)])
    np.testing.assert_allclose(rdW, numW, rtol=1e-5, atol=1e-6)


def test_dropout_mask_seeded():
    m1, m2, m3 = (np.empty(100_000, np.float32) for _ in range(3))
    _core.dropout_mask(m1, 0.25, 7)
    _core.dropout_mask(m2, 0.25, 7)
    _core.dropout_mask(m3, 0.25, 8)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, m3)
    assert set(np.unique(m1)) == {0.0, np.float32(1 / 0.75)}
    assert abs((m1 == 0).mean() - 0.25) < 0.01 and abs(m1.mean() - 1) < 0.02
    with pytest.raises(ValueError, match="p must be"):
        _core.dropout_mask(m1, 1.0, 0)


# ---------------------------------------------------------------- sizes
def test_emb_sz_rule_and_get_emb_sz(ml100k_ratings):
    assert emb_sz_rule(944) == 74 and emb_sz_rule(1665) == 102 and emb_sz_rule(10**9) == 600
    dls = CollabDataLoaders.from_df(ml100k_ratings, item_name="title", bs=64, seed=0)
    assert get_emb_sz(dls) == [(944, 74), (1665, 102)]
    assert get_emb_sz(dls, {"title": 10}) == [(944, 74), (1665, 10)]
    with pytest.raises(KeyError, match="not columns"):
        get_emb_sz(dls, {"movie": 3})


# ---------------------------------------------------------------- fastai replay
def test_replay_fastai_embedding_nn(golden_nn, golden_dls):
    "Every parameter and running statistic at steps 1, 2, 10, 100, 1250 within 1e-4 of fastai."
    d = golden_nn
    dls = golden_dls(d)
    model = collab_learner(dls, use_nn=True, emb_szs={"user": 6, "title": 10}, y_range=(0, 5.5),
                           layers=[16, 8]).model
    names = [k[len("init/"):] for k in d.files if k.startswith("init/")]
    assert sorted(model.state_dict()) == sorted(names)
    model.load_state_dict({n: d[f"init/{n}"] for n in names})
    # fastai's wd_bn_bias=False: embeddings and Linear weights decay, BN and the final bias do not
    assert model.n_wd == 944 * 6 + 1665 * 10 + 16 * 16 + 8 * 16 + 8
    opt = Adam(model.n_params, lr=5e-3, wd=0.1)
    grads = np.zeros(model.n_params, np.float32)
    x, y = dls.train.x, dls.train.y
    done = 0
    for n, snap in [(1, "step1"), (2, "step2"), (10, "step10"), (100, "step100"), (1250, "final")]:
        rows = slice(done * 64, n * 64)
        losses = np.zeros(n - done)
        bad = model._fit_epoch(opt, grads, np.ascontiguousarray(x[rows]), np.ascontiguousarray(y[rows]),
                               np.arange((n - done) * 64, dtype=np.int64), 64,
                               np.ascontiguousarray(d["lr"][done:n]), np.ascontiguousarray(d["mom"][done:n]), losses)
        assert bad == -1
        np.testing.assert_allclose(losses, d["loss"][done:n], atol=1e-4)
        sd = model.state_dict()
        for name in names:
            err = np.abs(sd[name] - d[f"{snap}/{name}"]).max()
            assert err < 1e-4, f"{name} differs from fastai by {err:.3g} after {n} steps"
        done = n
    preds = model(dls.valid.x)
    assert abs(float(np.mean((preds - dls.valid.y) ** 2)) - float(d["valid_loss"])) < 1e-4


def test_replay_through_learner(golden_nn, golden_dls):
    d = golden_nn
    learn = collab_learner(golden_dls(d), use_nn=True, emb_szs={"user": 6, "title": 10},
                           y_range=(0, 5.5), layers=[16, 8])
    learn.logger = lambda *a: None
    learn.model.load_state_dict({k[5:]: d[k] for k in d.files if k.startswith("init/")})
    learn.fit_one_cycle(1, 5e-3, wd=0.1)
    train_loss, valid_loss = learn.recorder.values[0]
    assert abs(valid_loss - float(d["valid_loss"])) < 1e-4
    assert abs(train_loss - float(d["train_loss_shown"])) < 1e-4


# ---------------------------------------------------------------- structure, modes, training
def test_structure_and_state_dict_names():
    m = EmbeddingNN([(10, 3), (20, 4)], [5, 6], ps=[0.1, 0.2], embed_p=0.05, y_range=(0, 5.5))
    names = set(m.state_dict())
    assert {"embeds.0.weight", "embeds.1.weight", "layers.0.0.weight", "layers.0.2.weight",
            "layers.0.2.running_var", "layers.1.0.weight", "layers.2.0.weight", "layers.2.0.bias"} <= names
    assert "layers.0.0.bias" not in names  # no bias before BatchNorm
    assert m.state_dict()["layers.0.2.bias"][0] == np.float32(1e-3)
    assert np.all(m.state_dict()["layers.0.2.running_var"] == 1)
    bound = 1 / np.sqrt(7)
    assert np.abs(m.state_dict()["layers.0.0.weight"]).max() <= bound
    m2 = EmbeddingNN([(10, 3), (20, 4)], [5], lin_first=False)
    assert {"layers.0.0.weight", "layers.0.1.weight"} <= set(m2.state_dict())  # BN then Linear
    m3 = EmbeddingNN([(10, 3), (20, 4)], [5], use_bn=False)
    assert "layers.0.0.bias" in m3.state_dict() and not any("running" in k for k in m3.state_dict())
    m4 = EmbeddingNN([(10, 3), (20, 4)], [5], bn_final=True)
    assert "layers.1.1.running_mean" in m4.state_dict()
    c = CollabNN((10, 3), (20, 4), n_act=7)
    assert set(c.state_dict()) == {"user_factors.weight", "item_factors.weight", "layers.0.weight",
                                   "layers.0.bias", "layers.2.weight", "layers.2.bias"}


def test_eval_mode_uses_running_stats():
    "nn_predict = the float64 forward with running statistics and no dropout."
    set_seed(1)
    m = EmbeddingNN([(10, 3), (20, 4)], [5], ps=[0.5], y_range=(0, 5.5))
    sd = m.state_dict()
    sd["layers.0.2.running_mean"][:] = np.linspace(-1, 1, 5)
    sd["layers.0.2.running_var"][:] = np.linspace(0.5, 2, 5)
    m.load_state_dict(sd)
    x = np.stack([np.arange(10) % 10, np.arange(10) * 2 % 20], 1).astype(np.int32)
    h = np.concatenate([sd["embeds.0.weight"][x[:, 0]], sd["embeds.1.weight"][x[:, 1]]], 1).T
    h = np.maximum(ref.linear_forward(h, sd["layers.0.0.weight"]), 0)
    h = ref.batchnorm_forward_eval(h, sd["layers.0.2.weight"], sd["layers.0.2.bias"],
                                   sd["layers.0.2.running_mean"], sd["layers.0.2.running_var"])
    z = ref.linear_forward(h, sd["layers.1.0.weight"], sd["layers.1.0.bias"])[0]
    want = 5.5 / (1 + np.exp(-z))
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m(x), m(x))  # eval mode is deterministic


def _small_dls(synth_ratings):
    return CollabDataLoaders.from_df(synth_ratings, bs=32, seed=0)


def test_lesson_nn_models_train(synth_ratings):
    dls = _small_dls(synth_ratings)
    n_users, n_items = len(dls.classes["user"]), len(dls.classes["item"])
    for make in [lambda: collab_learner(dls, use_nn=True, y_range=(0, 5.5), layers=[20, 10]),
                 lambda: collab_learner(dls, use_nn=True, layers=[16], y_range=(0, 5.5),
                                        config=tabular_config(ps=[0.1], embed_p=0.05)),
                 lambda: Learner(dls, CollabNN((n_users, 5), (n_items, 6), n_act=20),
                                 loss_func=MSELossFlat())]:
        set_seed(0)
        learn = make()
        learn.logger = lambda *a: None
        before = learn.validate()[0]
        learn.fit_one_cycle(4, 1e-2, wd=0.01)
        assert learn.recorder.values[-1][1] < before


def test_seeded_nn_runs_are_identical(synth_ratings):
    def run(seed):
        set_seed(seed)
        learn = collab_learner(_small_dls(synth_ratings), use_nn=True, layers=[8], y_range=(0, 5.5),
                               config=tabular_config(ps=[0.3]))
        learn.logger = lambda *a: None
        learn.fit(2, 1e-2)
        return np.array(learn.recorder.values), learn.model.params.copy()
    (v1, p1), (v2, p2), (v3, _) = run(5), run(5), run(6)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(v1, v3)


def test_wd_bn_bias_changes_which_parameters_decay(synth_ratings):
    dls = _small_dls(synth_ratings)
    out = []
    for wd_bn_bias in (False, True):
        set_seed(3)
        learn = collab_learner(dls, use_nn=True, layers=[8], y_range=(0, 5.5), wd_bn_bias=wd_bn_bias)
        learn.logger = lambda *a: None
        learn.fit(1, 1e-2, wd=0.5)
        out.append(learn.model.state_dict()["layers.0.2.weight"])
    assert not np.array_equal(out[0], out[1])


def test_bad_nn_arguments(synth_ratings):
    emb = [(10, 3), (20, 4)]
    with pytest.raises(ValueError, match="at least one hidden layer"):
        EmbeddingNN(emb, [])
    with pytest.raises(ValueError, match=r"layers\[1\] must be an integer in \[1, "):
        EmbeddingNN(emb, [4, 0])
    with pytest.raises(ValueError, match=r"emb_szs\[0\]\[1\] must be an integer in \[1, "):
        EmbeddingNN([(10, 0), (20, 4)], [4])
    with pytest.raises(ValueError, match="ps has 1 probabilities but layers has 2"):
        EmbeddingNN(emb, [4, 4], ps=[0.1])
    with pytest.raises(ValueError, match=r"ps\[0\] must be a dropout probability in \[0, 1\)"):
        EmbeddingNN(emb, [4], ps=[1.0])
    with pytest.raises(ValueError, match="embed_p"):
        EmbeddingNN(emb, [4], embed_p=-0.1)
    with pytest.raises(TypeError, match="layers must be a list"):
        EmbeddingNN(emb, 4)
    with pytest.raises(ValueError, match="act_cls"):
        EmbeddingNN(emb, [4], act_cls=np.tanh)
    dls = _small_dls(synth_ratings)
    with pytest.raises(TypeError, match="emb_szs must be a dict"):
        collab_learner(dls, use_nn=True, emb_szs=[(3, 3)])
    with pytest.raises(TypeError, match="config has unknown keys"):
        collab_learner(dls, use_nn=True, config={"dropout": 0.5})
    with pytest.raises(ValueError, match="y_range"):
        collab_learner(dls, use_nn=True, y_range=(1, 1))


def test_embedding_concat_and_dropout_kernels():
    rng = np.random.default_rng(3)
    t0, t1 = f32(rng, 5, 2), f32(rng, 7, 3)
    ids = np.array([[0, 4, 4, 1], [6, 0, 6, 2]], np.int32)
    out = np.full((5, 4), np.nan, np.float32)
    _core.embedding_concat_forward(out, [t0, t1], ids)
    want = np.concatenate([t0[ids[0]], t1[ids[1]]], 1).T
    np.testing.assert_array_equal(out, want)
    d0, d1 = np.ones_like(t0), np.zeros_like(t1)
    g = f32(rng, 5, 4)
    _core.embedding_concat_backward([d0, d1], g, ids)
    w0, w1 = np.ones_like(t0, dtype=np.float64), np.zeros_like(t1, dtype=np.float64)
    np.add.at(w0, ids[0], g[:2].T)
    np.add.at(w1, ids[1], g[2:].T)
    np.testing.assert_allclose(d0, w0, rtol=1e-6)
    np.testing.assert_allclose(d1, w1, rtol=1e-6)
    with pytest.raises(IndexError, match="an item id 7"):
        _core.embedding_concat_forward(out, [t0, t1], np.array([[0, 0, 0, 0], [7, 0, 0, 0]], np.int32))
    with pytest.raises(ValueError, match="shape"):
        _core.embedding_concat_forward(np.zeros((4, 4), np.float32), [t0, t1], ids)
    with pytest.raises(TypeError, match="sequence"):
        _core.embedding_concat_forward(out, t0.astype(np.float64).sum(), ids)
    with pytest.raises(ValueError, match="share memory"):
        _core.embedding_concat_backward([d0, d0], g, ids)
    mask = np.empty(1000, np.float32)
    _core.dropout_mask(mask, 0.5, 1)
    x, dx = f32(rng, 1000), np.ones(1000, np.float32)
    y = np.empty_like(x)
    _core.dropout_forward(y, x, mask)
    np.testing.assert_array_equal(y, x * mask)
    _core.dropout_backward(dx, x, mask)
    np.testing.assert_array_equal(dx, 1 + x * mask)


def test_nn_models_save_export_and_predict_shapes(synth_ratings, tmp_path):
    "fastai's (N, 1) predictions for the neural models, and pickle-free round trips."
    from collabc import load_learner
    dls = _small_dls(synth_ratings)
    n_users, n_items = len(dls.classes["user"]), len(dls.classes["item"])
    for make in [lambda: collab_learner(dls, use_nn=True, layers=[8, 4], y_range=(0, 5.5),
                                        config=tabular_config(ps=[0.1, 0.0], embed_p=0.02), path=tmp_path),
                 lambda: Learner(dls, CollabNN((n_users, 3), (n_items, 4), n_act=6), path=tmp_path)]:
        set_seed(2)
        learn = make()
        learn.logger = lambda *a: None
        learn.fit(1, 1e-2)
        preds, targs = learn.get_preds()
        assert preds.shape == (dls.valid.n, 1) and targs.shape == (dls.valid.n, 1)
        learn.save("m")
        fresh = make()
        fresh.load("m")
        np.testing.assert_array_equal(fresh.get_preds()[0], preds)
        np.testing.assert_array_equal(fresh.model.stats, learn.model.stats)
        learn.export("e.npz")
        loaded = load_learner(tmp_path / "e.npz")
        assert type(loaded.model) is type(learn.model)
        np.testing.assert_array_equal(loaded.model(dls.valid.x), preds[:, 0])  # exports carry no data
