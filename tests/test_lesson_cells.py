# ruff: noqa: F403, F405, E231, E701, E704
"""fastbook chapter 8 / Lesson 7: every cell that writes a model, verbatim but for the import line
and the dropped `torch.` prefix (`torch.zeros` -> `zeros`, `torch.cat` -> `cat`, `torch.ones`,
`torch.randn`), builds, runs forward on a batch and backward, and shows what PyTorch / fastai
show; then the interpretation cells on a trained model. The imports below stand in for
`from collabc import *` until the package's namespace gathers these names."""
import inspect
from pathlib import Path  # noqa: F401  (part of the lesson's star import)

import numpy as np
import pandas as pd  # noqa: F401
import pytest

from collabc import _core
from collabc import nn
from collabc.fastcore import *  # noqa: F401,F403
from collabc.layers import *  # noqa: F401,F403
from collabc.nn import pack_model, train_step
from collabc.tensor import *  # noqa: F401,F403

# ---------------------------------------------------------------- the lesson's cells, verbatim


class DotProduct(Module):
    def __init__(self, n_users, n_movies, n_factors):
        self.user_factors = Embedding(n_users, n_factors)
        self.movie_factors = Embedding(n_movies, n_factors)

    def forward(self, x):
        users = self.user_factors(x[:,0])
        movies = self.movie_factors(x[:,1])
        return (users * movies).sum(dim=1)


class DotProductRange(Module):  # the lesson redefines DotProduct with a y_range
    def __init__(self, n_users, n_movies, n_factors, y_range=(0,5.5)):
        self.user_factors = Embedding(n_users, n_factors)
        self.movie_factors = Embedding(n_movies, n_factors)
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors(x[:,0])
        movies = self.movie_factors(x[:,1])
        return sigmoid_range((users * movies).sum(dim=1), *self.y_range)


class DotProductBias(Module):
    def __init__(self, n_users, n_movies, n_factors, y_range=(0,5.5)):
        self.user_factors = Embedding(n_users, n_factors)
        self.user_bias = Embedding(n_users, 1)
        self.movie_factors = Embedding(n_movies, n_factors)
        self.movie_bias = Embedding(n_movies, 1)
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors(x[:,0])
        movies = self.movie_factors(x[:,1])
        res = (users * movies).sum(dim=1, keepdim=True)
        res += self.user_bias(x[:,0]) + self.movie_bias(x[:,1])
        return sigmoid_range(res, *self.y_range)


def create_params(size):
    return nn.Parameter(zeros(*size).normal_(0, 0.01))


class DotProductBiasParams(Module):  # the lesson's second DotProductBias, from create_params
    def __init__(self, n_users, n_movies, n_factors, y_range=(0,5.5)):
        self.user_factors = create_params([n_users, n_factors])
        self.user_bias = create_params([n_users])
        self.movie_factors = create_params([n_movies, n_factors])
        self.movie_bias = create_params([n_movies])
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors[x[:,0]]
        movies = self.movie_factors[x[:,1]]
        res = (users*movies).sum(dim=1)
        res += self.user_bias[x[:,0]] + self.movie_bias[x[:,1]]
        return sigmoid_range(res, *self.y_range)


class CollabNN(Module):
    def __init__(self, user_sz, item_sz, y_range=(0,5.5), n_act=100):
        self.user_factors = Embedding(*user_sz)
        self.item_factors = Embedding(*item_sz)
        self.layers = nn.Sequential(
            nn.Linear(user_sz[1]+item_sz[1], n_act),
            nn.ReLU(),
            nn.Linear(n_act, 1))
        self.y_range = y_range

    def forward(self, x):
        embs = self.user_factors(x[:,0]),self.item_factors(x[:,1])
        x = self.layers(cat(embs, dim=1))
        return sigmoid_range(x, *self.y_range)


@delegates(TabularModel)
class EmbeddingNN(TabularModel):
    def __init__(self, emb_szs, layers, **kwargs):
        super().__init__(emb_szs, layers=layers, n_cont=0, out_sz=1, **kwargs)

# ---------------------------------------------------------------- helpers


NU, NI = 20, 30


def batch(bs=64, seed=0):
    "A batch as the DataLoader yields it: x (bs, 2) int64 ids, y (bs, 1) float32 ratings."
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(1, NU, bs), rng.integers(1, NI, bs)], 1).astype(np.int64)
    return tensor(x), tensor(rng.integers(1, 6, (bs, 1)).astype(np.float32))


def forward_backward(model, out_shape):
    x, y = batch()
    pred = model(x)
    assert isinstance(pred, Tensor) and pred.shape == out_shape and pred.dtype == np.float32
    loss = mse_loss_flat(pred, y)  # MSELossFlat
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("bn_cont"):  # TabularModel's BatchNorm1d(0): no continuous inputs, no grad
            assert p.grad is None and p.numel() == 0
            continue
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.isfinite(p.grad.numpy()).all() and p.grad.numpy().any(), name
    return pred


# ---------------------------------------------------------------- model cells
def test_dot_product():
    model = DotProduct(NU, NI, 50)
    pred = forward_backward(model, (64,))
    assert repr(model) == ("DotProduct(\n  (user_factors): Embedding(20, 50)\n"
                           "  (movie_factors): Embedding(30, 50)\n)")
    assert [n for n, _ in model.named_parameters()] == ["user_factors.weight", "movie_factors.weight"]
    assert pred.grad_fn.name == "SumBackward1"


def test_dot_product_with_y_range():
    model = DotProductRange(NU, NI, 50)
    pred = forward_backward(model, (64,))
    assert ((pred.numpy() > 0) & (pred.numpy() < 5.5)).all()
    assert abs(pred.numpy().mean() - 2.75) < 0.01  # small initial factors: sigmoid(~0) * 5.5


def test_dot_product_bias():
    model = DotProductBias(NU, NI, 50)
    forward_backward(model, (64, 1))
    assert list(model.state_dict()) == ["user_factors.weight", "user_bias.weight", "movie_factors.weight",
                                        "movie_bias.weight"]
    assert model.user_bias.weight.shape == (NU, 1)


def test_T_cells_show_what_pytorch_shows():
    class T(Module):
        def __init__(self): self.a = ones(3)
    assert repr(L(T().parameters())) == "(#0) []"
    assert repr(T().a) == "tensor([1., 1., 1.])"

    class T(Module):
        def __init__(self): self.a = nn.Parameter(ones(3))
    assert repr(L(T().parameters())) == "(#1) [Parameter containing:\ntensor([1., 1., 1.], requires_grad=True)]"

    class T(Module):
        def __init__(self): self.a = nn.Linear(1, 3, bias=False)
    t = T()
    r = repr(L(t.parameters()))
    assert r.startswith("(#1) [Parameter containing:\ntensor([[") and r.endswith("]], requires_grad=True)]")
    assert r.count("\n") == 3  # three rows of one weight each, as in the book
    assert repr(t.a) == "Linear(in_features=1, out_features=3, bias=False)"
    assert type(t.a.weight) is nn.Parameter and type(t.a.weight).__name__ == "Parameter"
    assert t.a.weight.shape == (3, 1)
    assert repr(t.a.weight).startswith("Parameter containing:\ntensor([[")


def test_create_params_dot_product_bias():
    model = DotProductBiasParams(NU, NI, 50)
    assert isinstance(model.user_factors, nn.Parameter) and model.user_bias.shape == (NU,)
    assert 0.007 < model.user_factors.numpy().std() < 0.013
    pred = forward_backward(model, (64,))
    assert pred.grad_fn.name == "SigmoidRangeBackward0"
    assert [n for n, _ in model.named_parameters()] == ["user_factors", "user_bias", "movie_factors",
                                                       "movie_bias"]
    assert len(model.movie_bias) == NI and model.movie_factors.shape == (NI, 50)


def test_collab_nn():
    model = CollabNN((NU, 74), (NI, 102))
    forward_backward(model, (64, 1))
    assert repr(model) == (
        "CollabNN(\n  (user_factors): Embedding(20, 74)\n  (item_factors): Embedding(30, 102)\n"
        "  (layers): Sequential(\n    (0): Linear(in_features=176, out_features=100, bias=True)\n"
        "    (1): ReLU()\n    (2): Linear(in_features=100, out_features=1, bias=True)\n  )\n)")
    assert list(model.state_dict()) == ["user_factors.weight", "item_factors.weight", "layers.0.weight",
                                        "layers.0.bias", "layers.2.weight", "layers.2.bias"]


def test_embedding_nn():
    model = EmbeddingNN([(NU, 74), (NI, 102)], layers=[100, 50], y_range=(0, 5.5))
    params = inspect.signature(EmbeddingNN).parameters
    assert "kwargs" not in params and "y_range" in params and "n_cont" not in params
    pred = forward_backward(model, (64, 1))
    assert ((pred.numpy() > 0) & (pred.numpy() < 5.5)).all()
    assert type(model).__name__ == "EmbeddingNN" and repr(model).startswith("EmbeddingNN(\n  (embeds): ModuleList(")
    model.eval()
    with no_grad():
        assert not model(batch()[0]).requires_grad


def test_one_hot_cells():
    n_users, n_movies, n_factors = 944, 1665, 5
    user_factors = randn(n_users, n_factors)
    movie_factors = randn(n_movies, n_factors)  # noqa: F841
    one_hot_3 = one_hot(3, n_users).float()
    np.testing.assert_allclose((user_factors.t() @ one_hot_3).numpy(), user_factors[3].numpy(), rtol=1e-6)
    assert one_hot_3.shape == (n_users,) and one_hot_3.dtype == np.float32


# ---------------------------------------------------------------- interpretation cells
def _encode(ratings):
    from collabc import CollabDataLoaders
    return CollabDataLoaders.from_df(ratings, item_name="title", bs=64, seed=42)


def _train(model, dls, epochs=1, lr=5e-3, wd=0.1):
    "A bare one-cycle Adam loop over packed parameters (no Learner): enough to interpret."
    blk = pack_model(model)
    m, v = np.zeros_like(blk.data), np.zeros_like(blk.data)
    n = len(dls.train) * epochs
    pos = np.arange(n) / n
    lrs = _core.onecycle(pos, lr / 25, lr, lr / 1e5, 0.25)
    moms = _core.onecycle(pos, 0.95, 0.85, 0.95, 0.25)
    step = 0
    for _ in range(epochs):
        for xb, yb in dls.train:
            blk.zero_grad()
            train_step(model, xb, yb)
            step += 1
            w = blk.n_wd
            _core.adam_step(blk.data[:w], blk.grad[:w], m[:w], v[:w], lrs[step - 1], moms[step - 1], 0.99,
                            1e-5, wd, step)
    return model


def _lesson_frame(ml100k=None, n=6000):
    if ml100k is not None:
        return ml100k
    rng = np.random.default_rng(0)
    titles = [f"Movie {i:03d}" for i in range(60)] + ["Silence of the Lambs, The (1991)"]
    return pd.DataFrame({"user": rng.integers(1, 80, n), "title": rng.choice(titles, n),
                         "rating": rng.integers(1, 6, n)})


def _interpretation_cells(learn_model, dls, ratings):
    # bias ranking
    movie_bias = learn_model.movie_bias.squeeze()
    idxs = movie_bias.argsort()[:5]
    lowest = [dls.classes['title'][i] for i in idxs]
    idxs = movie_bias.argsort(descending=True)[:5]
    highest = [dls.classes['title'][i] for i in idxs]
    assert len(lowest) == len(highest) == 5 and not set(lowest) & set(highest)
    b = movie_bias.numpy()
    assert b[dls.classes['title'].o2i[highest[0]]] == b.max()
    # PCA of the most rated movies' factors
    g = ratings.groupby('title')['rating'].count()
    top_movies = g.sort_values(ascending=False).index.values[:1000]
    top_idxs = tensor([dls.classes['title'].o2i[m] for m in top_movies])
    movie_w = learn_model.movie_factors[top_idxs].cpu().detach()
    movie_pca = movie_w.pca(3)
    fac0,fac1,fac2 = movie_pca.t()
    idxs = list(range(50))
    X = fac0[idxs]
    Y = fac2[idxs]
    assert X.shape == Y.shape == (min(50, len(top_movies)),) and not movie_w.requires_grad
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.figure(figsize=(12,12))
    plt.scatter(X, Y)
    for i, x, y in zip(top_movies[idxs], X, Y):
        plt.text(x,y,i, color=np.random.rand(3)*0.7, fontsize=11)
    plt.close("all")
    # the nearest movie by cosine similarity
    movie_factors = learn_model.movie_factors
    idx = dls.classes['title'].o2i['Silence of the Lambs, The (1991)']
    distances = nn.CosineSimilarity(dim=1)(movie_factors, movie_factors[idx][None])
    assert distances.shape == (len(movie_factors),)
    assert distances.argsort(descending=True)[0].item() == idx and distances[idx].item() == pytest.approx(1, abs=1e-5)
    idx = distances.argsort(descending=True)[1]
    nearest = dls.classes['title'][idx]
    assert nearest != 'Silence of the Lambs, The (1991)' and nearest != '#na#'
    assert len(learn_model.movie_bias) == len(dls.classes['title'])
    assert learn_model.movie_factors.shape == (len(dls.classes['title']), 50)
    return nearest


def test_interpretation_cells_synthetic():
    pytest.importorskip("matplotlib").use("Agg")
    ratings = _lesson_frame()
    dls = _encode(ratings)
    model = _train(DotProductBiasParams(len(dls.classes['user']), len(dls.classes['title']), 50), dls)
    _interpretation_cells(model, dls, ratings)


def test_interpretation_cells_movielens(ml100k_ratings):
    pytest.importorskip("matplotlib").use("Agg")
    dls = _encode(ml100k_ratings)
    model = _train(DotProductBiasParams(len(dls.classes['user']), len(dls.classes['title']), 50), dls, epochs=3)
    with no_grad():
        xb, yb = next(iter(dls.valid))
        assert mse_loss_flat(model(tensor(xb)), yb).item() < 1.1  # it learned something
    _interpretation_cells(model, dls, ml100k_ratings)
