"""collabc.nn and collabc.layers: Module registration (no super().__init__ needed), traversal,
state dicts with PyTorch's names, train/eval, the layers' initialisation and behaviour (BatchNorm
against a NumPy reference), reprs, and the training support: pack_parameters, fastai's
weight-decay rule, train_step."""
import inspect

import numpy as np
import pytest

from test_lesson_cells import DotProductBias  # the lesson's cell (tests/ is on sys.path)

from collabc import nn, seed
from collabc import tensor as T
from collabc.fastcore import L, delegates
from collabc.layers import BatchNorm, Embedding, LinBnDrop, Module, SigmoidRange, TabularModel, trunc_normal_
from collabc.nn import norm_bias_params, pack_model, pack_parameters, param_groups, train_step
from collabc.tensor import Parameter, Tensor, cat, ones, tensor, zeros


# ---------------------------------------------------------------- registration
def test_registration_without_super_init():
    class T1(Module):
        def __init__(self):
            self.a = nn.Parameter(ones(3))
            self.lin = nn.Linear(2, 4)
            self.plain = ones(2)  # a plain tensor is not a parameter
            self.n = 3
    t = T1()
    assert [n for n, _ in t.named_parameters()] == ["a", "lin.weight", "lin.bias"]
    assert list(t.children()) == [t.lin] and len(list(t.modules())) == 2
    assert t.plain.tolist() == [1, 1] and t.n == 3


def test_registration_with_super_init_before_or_after():
    class A(Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(zeros(2))

    class B(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(zeros(2))
            super().__init__()  # harmless, even after assignments
    assert len(list(A().parameters())) == 1 and len(list(B().parameters())) == 1

    class Empty(Module):
        pass
    e = Empty()
    assert list(e.parameters()) == [] and e.state_dict() == {} and repr(e) == "Empty()"
    assert list(inspect.signature(Empty).parameters) == []


def test_parameters_deduplicated_in_registration_order():
    class Tied(Module):
        def __init__(self):
            self.emb = nn.Embedding(4, 2)
            self.out = nn.Linear(2, 4, bias=False)
            self.out.weight = self.emb.weight  # tied weights: one parameter
            self.relu = nn.ReLU()
            self.relu2 = self.relu
    t = Tied()
    assert len(list(t.parameters())) == 1 and [n for n, _ in t.named_parameters()] == ["emb.weight"]
    assert list(t.state_dict()) == ["emb.weight", "out.weight"]  # the state dict names both, as PyTorch
    assert len(list(t.children())) == 3


def test_assignment_rules():
    class M(Module):
        def __init__(self):
            self.p = nn.Parameter(ones(2))
            self.sub = nn.ReLU()
    m = M()
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'p'"):
        m.p = ones(2)
    with pytest.raises(TypeError, match="cannot assign 'int' as child module 'sub'"):
        m.sub = 3
    m.p = None
    m.sub = None
    assert list(m.parameters()) == [] and list(m.children()) == []
    m.p = nn.Parameter(zeros(1))
    del m.p
    assert list(m.parameters()) == []
    m.register_buffer("stat", zeros(2))
    assert list(m.state_dict()) == ["stat"]
    with pytest.raises(TypeError, match="buffer"):
        m.stat = 3
    with pytest.raises(NotImplementedError, match=r"Module \[M\] is missing the required \"forward\""):
        m(1)


def test_state_dict_names_and_round_trip():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 1))
    sd = m.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var",
                        "2.num_batches_tracked", "3.weight", "3.bias"]
    assert sd["2.num_batches_tracked"].dtype == np.int64 and sd["2.num_batches_tracked"].shape == ()
    assert np.shares_memory(sd["0.weight"].numpy(), m[0].weight.numpy()) and not sd["0.weight"].requires_grad
    m2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 1))
    w_mem = m2[0].weight.numpy()
    assert m2.load_state_dict({k: v.numpy().copy() for k, v in sd.items()}) == ([], [])
    assert m2[0].weight.numpy() is w_mem  # copied in place
    for k in sd:
        np.testing.assert_array_equal(m2.state_dict()[k].numpy(), sd[k].numpy())
    bad = dict(sd)
    bad["0.weight"] = zeros(5, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight: copying a param with shape \(5, 3\) "
                                           r"from checkpoint, the shape in current model is \(4, 3\)"):
        m2.load_state_dict(bad)
    partial = {k: v for k, v in sd.items() if k != "3.bias"}
    partial["extra"] = zeros(1)
    with pytest.raises(RuntimeError, match='(?s)Unexpected key.*"extra".*Missing key.*"3.bias"'):
        m2.load_state_dict(partial)
    assert m2.load_state_dict(partial, strict=False) == (["3.bias"], ["extra"])


def test_train_eval_and_dropout():
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    assert m.training and m[1].training
    x = ones(200, 3)
    y = m(x)
    assert (y.numpy() == 0).mean() > 0.3  # dropout active in training
    m.eval()
    assert not m[1].training
    np.testing.assert_allclose(m(x).numpy(), m[0](x).numpy())
    assert m.train() is m and m[1].training


def test_batchnorm1d_matches_pytorch_rules():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3)
    xs = [rng.standard_normal((8, 3)).astype(np.float32) * 2 + 1 for _ in range(3)]
    rm, rv = np.zeros(3), np.ones(3)
    for x in xs:
        out = bn(tensor(x)).numpy()
        mu, var = x.mean(0), x.var(0)
        np.testing.assert_allclose(out, (x - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
        rm, rv = 0.9 * rm + 0.1 * mu, 0.9 * rv + 0.1 * x.var(0, ddof=1)  # unbiased for the estimate
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-5)
    assert bn.num_batches_tracked.item() == 3
    bn.eval()
    np.testing.assert_allclose(bn(tensor(xs[0])).numpy(), (xs[0] - rm) / np.sqrt(rv + 1e-5), rtol=1e-4, atol=1e-5)
    assert bn.num_batches_tracked.item() == 3
    cum = nn.BatchNorm1d(3, momentum=None)
    cum(tensor(xs[0]))
    cum(tensor(xs[1]))
    np.testing.assert_allclose(cum.running_mean.numpy(), (xs[0].mean(0) + xs[1].mean(0)) / 2, rtol=1e-5)
    bn.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(ones(1, 3))
    with pytest.raises(RuntimeError, match=r"BatchNorm1d\(3\): expected input of shape \(batch, 3\), got \(4, 2\)"):
        bn(ones(4, 2))


def test_layer_initialisation():
    seed.set_seed(0)
    e = Embedding(500, 20)
    w = e.weight.numpy()
    assert np.abs(w).max() <= 0.02 and 0.008 < w.std() < 0.011  # N(0,1) fmod 2, times 0.01
    seed.set_seed(0)
    assert np.array_equal(Embedding(500, 20).weight.numpy(), w)
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    a = zeros(10, 4)
    trunc_normal_(a, std=0.01, rng=rng1)
    from collabc.models import trunc_normal_ as builtin_trunc_normal_
    b = builtin_trunc_normal_(np.zeros((10, 4), np.float32), 0.01, rng2)
    assert np.array_equal(a.numpy(), b)  # the built-in models' initialisation, value for value
    pe = nn.Embedding(500, 20)
    assert 0.9 < pe.weight.numpy().std() < 1.1
    with pytest.raises(NotImplementedError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=0)
    lin = nn.Linear(16, 8)
    assert lin.weight.shape == (8, 16) and lin.bias.shape == (8,)
    assert np.abs(lin.weight.numpy()).max() <= 0.25 and np.abs(lin.bias.numpy()).max() <= 0.25
    assert lin.weight.numpy().std() > 0.1
    bn = BatchNorm(5)
    assert bn.weight.tolist() == [1] * 5 and np.allclose(bn.bias.numpy(), 1e-3)
    with pytest.raises(ValueError, match="ndim=1"):
        BatchNorm(5, ndim=2)


def test_module_reprs():
    class T1(Module):
        def __init__(self):
            self.a = nn.Linear(1, 3, bias=False)
    assert repr(T1()) == "T1(\n  (a): Linear(in_features=1, out_features=3, bias=False)\n)"
    assert repr(nn.Embedding(944, 50)) == "Embedding(944, 50)" == repr(Embedding(944, 50))
    assert repr(nn.ReLU()) == "ReLU()" and repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.Dropout(0.0)) == "Dropout(p=0.0, inplace=False)"
    assert repr(nn.BatchNorm1d(100)) == \
        "BatchNorm1d(100, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert repr(nn.CosineSimilarity(dim=1)) == "CosineSimilarity()" and repr(nn.MSELoss()) == "MSELoss()"
    assert repr(SigmoidRange(0, 5.5)) == "SigmoidRange(low=0, high=5.5)"
    assert repr(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == \
        "Sequential(\n  (0): Linear(in_features=2, out_features=2, bias=True)\n  (1): ReLU()\n)"


def test_tabular_model_structure_like_fastai():
    m = TabularModel([(944, 74), (1665, 102)], 0, 1, [100, 50], y_range=(0, 5.5))
    names = list(m.state_dict())
    assert names[:7] == ["embeds.0.weight", "embeds.1.weight", "bn_cont.weight", "bn_cont.bias",
                         "bn_cont.running_mean", "bn_cont.running_var", "bn_cont.num_batches_tracked"]
    assert names[7:] == ["layers.0.0.weight", "layers.0.2.weight", "layers.0.2.bias", "layers.0.2.running_mean",
                         "layers.0.2.running_var", "layers.0.2.num_batches_tracked", "layers.1.0.weight",
                         "layers.1.2.weight", "layers.1.2.bias", "layers.1.2.running_mean",
                         "layers.1.2.running_var", "layers.1.2.num_batches_tracked", "layers.2.0.weight",
                         "layers.2.0.bias"]
    assert isinstance(m.layers[0], LinBnDrop) and isinstance(m.layers[3], SigmoidRange)
    assert m.layers[0][0].weight.shape == (100, 176) and m.layers[0][0].bias is None
    assert m.layers[0][1] is m.layers[1][1]  # fastai's one shared act_cls instance
    r = repr(m)
    assert "(0): LinBnDrop(\n      (0): Linear(in_features=176, out_features=100, bias=False)\n" \
           "      (1): ReLU(inplace=True)\n      (2): BatchNorm1d(100, eps=1e-05" in r
    assert "(3): SigmoidRange(low=0, high=5.5)" in r
    old = TabularModel([(5, 2)], 0, 1, [4], ps=0.25, embed_p=0.1, lin_first=False)
    assert [type(x).__name__ for x in old.layers[0]] == ["BatchNorm1d", "Dropout", "Linear", "ReLU"]
    assert old.emb_drop.p == 0.1
    with pytest.raises(ValueError, match="ps has 2 probabilities but layers has 1"):
        TabularModel([(5, 2)], 0, 1, [4], ps=[0.1, 0.2])


def test_tabular_model_with_continuous_inputs():
    m = TabularModel([(5, 2)], 3, 2, [4])
    out = m(tensor([[1], [2], [3]]), T.randn(3, 3))
    assert out.shape == (3, 2)
    out.sum().backward()
    assert m.bn_cont.weight.grad is not None
    with pytest.raises(TypeError, match="pass x_cont"):
        m(tensor([[1], [2]]))


def test_delegates_signature():
    @delegates(TabularModel)
    class EmbeddingNN(TabularModel):
        def __init__(self, emb_szs, layers, **kwargs):
            super().__init__(emb_szs, layers=layers, n_cont=0, out_sz=1, **kwargs)
    params = inspect.signature(EmbeddingNN).parameters
    assert list(params)[:3] == ["emb_szs", "layers", "ps"] and "kwargs" not in params
    assert "n_cont" not in params and params["y_range"].default is None
    assert params["use_bn"].kind is inspect.Parameter.KEYWORD_ONLY

    def base(a, b=2, c=3):
        pass

    @delegates(base, keep=True, but=["c"])
    def f(x, **kwargs):
        pass
    assert list(inspect.signature(f).parameters) == ["x", "b", "kwargs"]


def test_fastcore_L():
    assert repr(L([1, 2, 3])) == "(#3) [1,2,3]" and repr(L()) == "(#0) []"
    assert repr(L(range(12))) == "(#12) [0,1,2,3,4,5,6,7,8,9...]"
    assert L([1, 2, 3])[[0, 2]] == [1, 3] and L([1, 2, 3])[[True, False, True]] == [1, 3]
    assert L([4, 5])[tensor(1)] == 5 and L([1, 2]).map(lambda x: x * 2) == [2, 4]
    assert L([[1], [2, 3]]).concat() == [1, 2, 3] and isinstance(L(1, 2) + [3], L)


# ---------------------------------------------------------------- training support
def _batch(n=32, nu=10, ni=12, seed_=0):
    rng = np.random.default_rng(seed_)
    x = np.stack([rng.integers(0, nu, n), rng.integers(0, ni, n)], 1).astype(np.int64)
    return x, rng.integers(1, 6, (n, 1)).astype(np.float32)


def test_pack_parameters_views_and_in_place_backward():
    m = DotProductBias(10, 12, 4)
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    params = list(m.parameters())
    blk = pack_parameters(params)
    assert blk.data.size == blk.grad.size == 10 * 4 + 10 + 12 * 4 + 12 and blk.data.dtype == np.float32
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])  # values kept
    for p, lo, hi in zip(params, blk.offsets[:-1], blk.offsets[1:]):
        assert np.shares_memory(p.numpy(), blk.data) and np.shares_memory(p.grad.numpy(), blk.grad)
        np.testing.assert_array_equal(p.numpy().ravel(), blk.data[lo:hi])
    grad_views = [p.grad for p in params]
    x, y = _batch()
    train_step(m, x, y)
    assert blk.grad.any() and all(p.grad is g for p, g in zip(params, grad_views))  # never rebound
    g1 = blk.grad.copy()
    train_step(m, x, y)
    np.testing.assert_allclose(blk.grad, 2 * g1, rtol=1e-6)  # accumulated in place
    blk.zero_grad()
    assert not blk.grad.any() and all(p.grad is g for p, g in zip(params, grad_views))
    m.zero_grad()  # the module's zero_grad keeps packed gradients attached too
    assert all(p.grad is not None and np.shares_memory(p.grad.numpy(), blk.grad) for p in params)
    params[0].grad = None  # re-attached to the block by the next backward
    train_step(m, x, y)
    assert np.shares_memory(params[0].grad.numpy(), blk.grad) and blk.grad.any()
    blk.data[:] += 1.0  # an optimizer step on the block moves the model
    np.testing.assert_allclose(m.user_factors.weight.numpy(), before["user_factors.weight"] + 1)


def test_pack_parameters_again_and_errors():
    m = DotProductBias(10, 12, 4)
    pack_parameters(m.parameters())
    params = list(m.parameters())
    vals = [p.numpy().copy() for p in params]
    blk2 = pack_parameters(params[2:])  # re-pack a different list: values kept, still training
    for p, v in zip(params, vals):
        np.testing.assert_array_equal(p.numpy(), v)
    assert np.shares_memory(params[2].numpy(), blk2.data) and not np.shares_memory(params[0].numpy(), blk2.data)
    x, y = _batch()
    train_step(m, x, y)
    assert blk2.grad.any() and params[0].grad.numpy().any()
    m.load_state_dict({k: v.numpy() * 0 for k, v in m.state_dict().items()})  # stays packed
    assert not blk2.data.any()
    params[2].data = np.ones(params[2].shape, np.float32)  # .data assignment copies into the block
    assert np.shares_memory(params[2].numpy(), blk2.data) and params[2].numpy().all()
    with pytest.raises(RuntimeError, match="packed parameter"):
        params[2].data = zeros(3)
    with pytest.raises(ValueError, match="appears twice"):
        pack_parameters([params[0], params[0]])
    with pytest.raises(TypeError, match="float32"):
        pack_parameters([Parameter(tensor([1.0], dtype=np.float64))])
    with pytest.raises(TypeError, match="Parameter"):
        pack_parameters([params[0] * 2])
    assert pack_parameters([]).data.size == 0


def test_decay_rule_like_fastai():
    dpb = DotProductBias(5, 6, 3)
    dec, nodec = param_groups(dpb)
    assert len(dec) == 4 and nodec == []  # bias *embeddings* are decayed
    tm = TabularModel([(5, 2), (6, 3)], 0, 1, [8, 4], y_range=(0, 5.5))
    dec, nodec = param_groups(tm)
    names = {id(p): n for n, p in tm.named_parameters()}
    assert [names[id(p)] for p in dec] == ["embeds.0.weight", "embeds.1.weight", "layers.0.0.weight",
                                           "layers.1.0.weight", "layers.2.0.weight"]
    assert [names[id(p)] for p in nodec] == ["bn_cont.weight", "bn_cont.bias", "layers.0.2.weight",
                                             "layers.0.2.bias", "layers.1.2.weight", "layers.1.2.bias",
                                             "layers.2.0.bias"]
    assert len(norm_bias_params(tm, with_bias=False)) == 6
    assert param_groups(tm, wd_bn_bias=True)[1] == []
    blk = pack_model(tm)
    assert blk.n_wd == 5 * 2 + 6 * 3 + 8 * 5 + 4 * 8 + 1 * 4
    assert blk.params[:5] == dec and np.shares_memory(dec[0].numpy(), blk.data[:blk.n_wd])

    class Own(Module):
        def __init__(self):
            self.bias = nn.Parameter(zeros(2))  # any module's `.bias` skips decay
            self.w = nn.Parameter(zeros(2))
    assert [len(g) for g in param_groups(Own())] == [1, 1]


def test_train_step_loss_and_gradients():
    m = DotProductBias(10, 12, 4)
    x, y = _batch()
    with T.no_grad():
        pred = m(tensor(x)).numpy().astype(np.float64)
    loss = train_step(m, x.astype(np.int32), y)  # int32 ids are accepted
    assert isinstance(loss, float) and loss == pytest.approx(((pred - y) ** 2).mean(), rel=1e-6)
    assert all(p.grad is not None for p in m.parameters())
    custom = train_step(m, tensor(x), tensor(y), loss_func=lambda p, t: ((p - t) ** 2).sum())
    assert custom == pytest.approx(((pred - y) ** 2).sum(), rel=1e-5)

    class Bad(Module):
        def forward(self, x):
            return np.zeros(3)
    with pytest.raises(TypeError, match="returned a ndarray, expected a Tensor"):
        train_step(Bad(), x, y)
    with pytest.raises(TypeError, match="loss function returned a float"):
        train_step(m, x, y, loss_func=lambda p, t: 1.0)


def test_gradients_reach_every_layer_type():
    m = TabularModel([(10, 3), (12, 2)], 0, 1, [6, 4], ps=[0.1, 0.0], embed_p=0.1, y_range=(0, 5.5))
    x, y = _batch()
    train_step(m, x, y)
    for n, p in m.named_parameters():
        if not n.startswith("bn_cont"):
            assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), n
    assert isinstance(m(tensor(x)), Tensor)


def test_zero_grad_clears_exactly_what_backward_wrote():
    class Mixed(Module):  # embedding rows, an indexed parameter with negative ids, a Linear, a BatchNorm
        def __init__(self):
            self.emb = Embedding(10, 4)
            self.table = nn.Parameter(T.randn(12, 4))
            self.lin = nn.Linear(8, 3)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            h = cat([self.emb(x[:, 0]), self.table[x[:, 1] - 12]], dim=1)
            return self.bn(self.lin(h)).sum(dim=1)
    m = Mixed()
    blk = pack_model(m)
    x, y = _batch(n=16)
    for _ in range(3):
        train_step(m, x, y[:, 0])
        assert blk.grad.any()
        blk.zero_grad()
        assert not blk.grad.any()
        x = x[::-1].copy()
    train_step(m, x, y[:, 0])
    blk.grad[:] = 1.0  # written outside backward: the full fill is needed
    blk.zero_grad(touched_only=False)
    assert not blk.grad.any()
    for _ in range(40):  # many backwards without zero_grad: the log is capped, then all is zeroed
        train_step(m, x, y[:, 0])
    assert len(blk._log) == T.GRAD_LOG_MAX + 1
    blk.zero_grad()
    assert not blk.grad.any() and not blk._log
    buf = x.copy()
    train_step(m, buf, y[:, 0])
    buf[:] = 0  # the batch buffer is reused before zero_grad: the logged ids were copied
    blk.zero_grad()
    assert not blk.grad.any()


def test_deepcopy_and_pickle_give_independent_modules():
    import copy
    import pickle
    m = TabularModel([(5, 2), (6, 3)], 0, 1, [4, 3], y_range=(0, 5.5))
    blk = pack_model(m)
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        sa, sb = m.state_dict(), c.state_dict()
        assert list(sa) == list(sb) and all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)
        assert not np.shares_memory(sb["embeds.0.weight"].numpy(), blk.data)
        assert c.layers[0][1] is c.layers[1][1]  # shared sub-modules stay shared
        x, y = _batch(n=8, nu=5, ni=6)
        train_step(c, x, y)
        assert c.layers[0][0].weight.grad is not None and not blk.grad.any()
