"""Models the learner writes, trained by `Learner` (issue 12): every model cell of the lesson
(tests/test_lesson_cells.py holds them verbatim, with `from collabc import *`) trains on
MovieLens-100k through autograd and lands in the lesson's band; a user-written DotProductBias
and CollabNN reach the built-in models' parameters (1e-5) from the same start and batch order;
the interpretation cells work on the trained models; the files round-trip; the learner's
mistakes get clear errors."""
import numpy as np
import pytest

import test_lesson_cells as cells
from collabc import *  # noqa: F401,F403
from collabc import CollabcFileError

RENAME = {"user_factors.weight": "u_weight.weight", "movie_factors.weight": "i_weight.weight",
          "user_bias.weight": "u_bias.weight", "movie_bias.weight": "i_bias.weight"}


@pytest.fixture(scope="module")
def dls(ml100k_ratings):
    set_seed(42)
    return CollabDataLoaders.from_df(ml100k_ratings, item_name="title", bs=64)


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


def sizes(dls):
    return len(dls.classes["user"]), len(dls.classes["title"])


# ---------------------------------------------------------------- the lesson's models, trained
@pytest.mark.slow
@pytest.mark.parametrize("name, wd, lo, hi", [
    ("DotProductRange", None, 0.84, 0.92),       # the lesson's DotProduct with y_range, default wd
    ("DotProductBias", 0.1, 0.78, 0.84),         # fastbook: 0.823
    ("DotProductBiasParams", 0.1, 0.78, 0.84),   # create_params: fastbook 0.824
])
def test_lesson_dot_models_train_to_the_lessons_band(dls, name, wd, lo, hi):
    n_users, n_movies = sizes(dls)
    set_seed(1)
    model = getattr(cells, name)(n_users, n_movies, 50)
    learn = quiet(Learner(dls, model, loss_func=MSELossFlat()))
    learn.fit_one_cycle(5, 5e-3, wd=wd)
    assert learn._path.kind == "autograd"
    valid = learn.recorder.values[-1][1]
    assert lo <= valid <= hi, valid
    preds, targs = learn.get_preds()
    assert preds.shape[0] == targs.shape[0] == 20_000


@pytest.mark.slow
def test_lesson_neural_models_train_to_the_lessons_band(dls):
    embs = get_emb_sz(dls)
    set_seed(1)
    learn = quiet(Learner(dls, cells.CollabNN(*embs), loss_func=MSELossFlat()))
    learn.fit_one_cycle(5, 5e-3, wd=0.01)
    assert learn._path.kind == "autograd"
    assert 0.84 <= learn.recorder.values[-1][1] <= 0.89, learn.recorder.values   # fastbook 0.867
    set_seed(1)
    model = cells.EmbeddingNN(embs, layers=[100, 50], y_range=(0, 5.5))
    learn = quiet(Learner(dls, model, loss_func=MSELossFlat()))
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
    assert 0.84 <= learn.recorder.values[-1][1] <= 0.89, learn.recorder.values   # fastai 0.862-0.865
    assert learn.get_preds()[0].shape == (20_000, 1)


@pytest.mark.slow
def test_interpretation_cells_on_a_user_written_model(dls, ml100k_ratings):
    n_users, n_movies = sizes(dls)
    set_seed(2)
    model = cells.DotProductBias(n_users, n_movies, 50)
    learn = quiet(Learner(dls, model, loss_func=MSELossFlat()))
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
    # the book's cells, verbatim
    movie_bias = learn.model.movie_bias.weight.squeeze()
    idxs = movie_bias.argsort()[:5]
    low = [dls.classes['title'][i] for i in idxs]
    idxs = movie_bias.argsort(descending=True)[:5]
    high = [dls.classes['title'][i] for i in idxs]
    assert len(low) == len(high) == 5 and set(low).isdisjoint(high)
    b = movie_bias.detach().numpy()
    assert b[dls.classes['title'].o2i[high[0]]] == b.max() and b[dls.classes['title'].o2i[low[0]]] == b.min()
    g = ml100k_ratings.groupby('title')['rating'].count()
    top_movies = g.sort_values(ascending=False).index.values[:1000]
    top_idxs = tensor([learn.dls.classes['title'].o2i[m] for m in top_movies])
    movie_w = learn.model.movie_factors.weight[top_idxs].cpu().detach()
    movie_pca = movie_w.pca(3)
    fac0, fac1, fac2 = movie_pca.t()
    assert movie_pca.shape == (1000, 3) and fac0.shape == (1000,)
    np.testing.assert_allclose(np.abs(movie_pca.numpy()), np.abs(pca(movie_w.numpy(), 3)), rtol=1e-3, atol=1e-4)
    movie_factors = learn.model.movie_factors.weight
    idx = dls.classes['title'].o2i['Silence of the Lambs, The (1991)']
    distances = nn.CosineSimilarity(dim=1)(movie_factors, movie_factors[idx][None])
    idx2 = distances.argsort(descending=True)[1]
    assert distances.shape == (n_movies,) and int(idx2) != idx
    w = movie_factors.detach().numpy()
    cos = w @ w[idx] / np.maximum(np.linalg.norm(w, axis=1) * np.linalg.norm(w[idx]), 1e-8)
    assert abs(float(distances[idx2]) - np.sort(cos)[-2]) < 1e-5
    assert len(learn.model.movie_bias.weight) == n_movies
    # the learner's services work on it through its forward (no dot-model shortcut)
    recs = learn.recommend(1, n=5)
    assert len(recs) == 5
    learn.predict({"user": 1, "title": "Star Wars (1977)"})


# ---------------------------------------------------------------- exactness against the built-ins
def _same_start(user_model, builtin, rename):
    "Load the user model's initial weights into the built-in model (names mapped)."
    sd = {rename.get(k, k): np.array(v) for k, v in user_model.state_dict().items()}
    builtin.load_state_dict(sd)


@pytest.mark.slow
def test_user_dot_product_bias_matches_the_builtin_after_an_epoch(dls):
    n_users, n_movies = sizes(dls)
    set_seed(3)
    user = cells.DotProductBias(n_users, n_movies, 50)
    builtin = EmbeddingDotBias(50, n_users, n_movies, y_range=(0, 5.5))
    _same_start(user, builtin, RENAME)
    lu = quiet(Learner(dls, user, loss_func=MSELossFlat()))       # the same dls: the same batch order
    lb = quiet(Learner(dls, builtin, loss_func=MSELossFlat()))
    lu.fit_one_cycle(1, 5e-3, wd=0.1)
    lb.fit_one_cycle(1, 5e-3, wd=0.1)
    assert lu._path.kind == "autograd" and lb._path.kind == "exact"
    usd, bsd = lu.model.state_dict(), lb.model.state_dict()
    err = max(np.abs(np.asarray(usd[k]) - np.asarray(bsd[RENAME[k]])).max() for k in RENAME)
    assert err < 1e-5, err
    np.testing.assert_allclose(lu.recorder.losses, lb.recorder.losses, rtol=1e-5, atol=1e-6)
    assert abs(lu.recorder.values[-1][1] - lb.recorder.values[-1][1]) < 1e-5


@pytest.mark.slow
def test_user_collab_nn_matches_the_builtin_after_an_epoch(dls):
    embs = get_emb_sz(dls)
    set_seed(4)
    user = cells.CollabNN(*embs)
    builtin = CollabNN(*embs)
    _same_start(user, builtin, {})
    lu = quiet(Learner(dls, user, loss_func=MSELossFlat()))
    lb = quiet(Learner(dls, builtin, loss_func=MSELossFlat()))
    lu.fit_one_cycle(1, 5e-3, wd=0.01)
    lb.fit_one_cycle(1, 5e-3, wd=0.01)
    assert lu._path.kind == "autograd" and lb._path.kind == "exact"
    usd, bsd = lu.model.state_dict(), lb.model.state_dict()
    err = max(np.abs(np.asarray(usd[k]) - np.asarray(bsd[k])).max() for k in usd)
    assert err < 1e-5, err


def test_exactness_on_synthetic_data(synth_ratings):
    "The same comparisons, small and fast (not slow-marked): both models, two epochs."
    set_seed(0)
    dls = CollabDataLoaders.from_df(synth_ratings, bs=32, seed=0)
    nu, ni = dls.n_users, dls.n_items
    set_seed(5)
    user, builtin = cells.DotProductBias(nu, ni, 8), EmbeddingDotBias(8, nu, ni, y_range=(0, 5.5))
    _same_start(user, builtin, RENAME)
    lu, lb = quiet(Learner(dls, user)), quiet(Learner(dls, builtin))
    for learn in (lu, lb):
        learn.fit_one_cycle(2, 1e-2, wd=0.1)
    err = max(np.abs(np.asarray(lu.model.state_dict()[k]) - np.asarray(lb.model.state_dict()[RENAME[k]])).max()
              for k in RENAME)
    assert err < 1e-5, err
    set_seed(6)
    user, builtin = cells.CollabNN((nu, 5), (ni, 6), n_act=7), CollabNN((nu, 5), (ni, 6), n_act=7)
    _same_start(user, builtin, {})
    lu, lb = quiet(Learner(dls, user)), quiet(Learner(dls, builtin))
    for learn in (lu, lb):
        learn.fit_one_cycle(2, 1e-2, wd=0.01)
    err = max(np.abs(np.asarray(v) - np.asarray(lb.model.state_dict()[k])).max()
              for k, v in lu.model.state_dict().items())
    assert err < 1e-5, err


def test_a_builtin_model_with_a_changed_forward_trains_through_autograd(synth_ratings):
    set_seed(0)
    dls = CollabDataLoaders.from_df(synth_ratings, bs=32, seed=0)

    class Doubled(EmbeddingDotBias):
        def forward(self, x):
            return super().forward(x) * 1.0

    m = Doubled(4, dls.n_users, dls.n_items, y_range=(0, 5.5))
    learn = quiet(Learner(dls, m))
    assert learn._path.kind == "autograd"
    learn.fit(1, 1e-2)
    assert np.isfinite(learn.recorder.values[-1][1])


# ---------------------------------------------------------------- files
def test_a_user_model_saves_loads_and_exports(synth_ratings, tmp_path):
    set_seed(0)
    dls = CollabDataLoaders.from_df(synth_ratings, bs=32, seed=0)
    nu, ni = dls.n_users, dls.n_items
    set_seed(7)
    learn = quiet(Learner(dls, cells.DotProductBias(nu, ni, 6), path=tmp_path))
    learn.fit(1, 1e-2)
    learn.save("user")
    other = quiet(Learner(dls, cells.DotProductBias(nu, ni, 6), path=tmp_path))
    other.load("user")
    np.testing.assert_array_equal(other.get_preds()[0], learn.get_preds()[0])
    learn.export("user.npz")
    with pytest.raises(CollabcFileError, match=r"model=DotProductBias\(\.\.\.\)"):
        load_learner(tmp_path / "user.npz")
    with pytest.raises(CollabcFileError, match="holds a 'DotProductBias' but the model passed is a CollabNN"):
        load_learner(tmp_path / "user.npz", model=cells.CollabNN((nu, 3), (ni, 3)))
    back = load_learner(tmp_path / "user.npz", model=cells.DotProductBias(nu, ni, 6))
    preds, _ = back.get_preds(dl=back.dls.test_dl(dls.valid_ds))
    np.testing.assert_array_equal(preds, learn.get_preds()[0])
    pd_rec = back.recommend(dls.classes["user"][1], n=3)
    assert len(pd_rec) == 3


# ---------------------------------------------------------------- learners' mistakes
def test_clear_errors_for_the_learners_mistakes(synth_ratings):
    set_seed(0)
    dls = CollabDataLoaders.from_df(synth_ratings, bs=32, seed=0)

    class NoParams(Module):
        def __init__(self):
            self.a = ones(3)

        def forward(self, x):
            return self.a.sum() * x[:, 0].float()

    with pytest.raises(ValueError, match="NoParams has no parameters to train"):
        quiet(Learner(dls, NoParams())).fit(1)

    class WrongShape(Module):
        def __init__(self):
            self.e = Embedding(100, 3)

        def forward(self, x):
            return self.e(x[:, 0])

    with pytest.raises(ValueError, match=r"WrongShape.forward returned shape \(32, 3\) .* \(32,\) or \(32, 1\)"):
        quiet(Learner(dls, WrongShape())).fit(1)

    class Mismatch(Module):
        def __init__(self):
            self.u, self.i = Embedding(100, 3), Embedding(100, 4)

        def forward(self, x):
            return (self.u(x[:, 0]) * self.i(x[:, 1])).sum(1)

    with pytest.raises(RuntimeError, match=r"\(32, 3\).*\(32, 4\)|\(32, 4\).*\(32, 3\)"):
        quiet(Learner(dls, Mismatch())).fit(1)
    with pytest.raises(RuntimeError, match="scalar"):
        (Embedding(3, 2).weight * 2).backward()
    with pytest.raises(TypeError, match="collabc model"):
        Learner(dls, object())
