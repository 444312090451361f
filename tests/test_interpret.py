"""Interpretation: pca (fastai's Tensor.pca), the lesson's labelled PCA plot, most_similar against
brute force, Recorder plots, and lr_find (schedule, early stop, restored model and optimizer,
fastai's suggestion rules)."""
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from collabc import (CollabDataLoaders, SGD, SuggestionMethod, collab_learner, minimum, pca,  # noqa: E402
                     plot_pca, set_seed, slide, steep, valley)


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


def ratings(seed=7, nu=60, ni=40, n=2000):
    rng = np.random.default_rng(seed)
    u = rng.integers(1, nu + 1, n)
    i = rng.integers(1, ni + 1, n)
    pu, qi = rng.normal(size=(nu + 1, 2)), rng.normal(size=(ni + 1, 2))
    r = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) + rng.normal(0, 0.3, n)), 1, 5)
    return pd.DataFrame({"user": u, "title": [f"film {k}" for k in i], "rating": r.astype(np.int64)})


@pytest.fixture(scope="module")
def learn():
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings(), item_name="title", bs=32, seed=0)
    lr = quiet(collab_learner(dls, n_factors=6, y_range=(0.5, 5.5)))
    lr.fit_one_cycle(4, 1e-2, wd=0.05)
    return lr


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- pca
def test_pca_is_fastais_centred_svd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6)) + 3
    got = pca(x, k=3)
    assert got.shape == (50, 3) and got.dtype == np.float32
    xc = x - x.mean(0)
    U = np.linalg.svd(xc.T)[0][:, :3]        # fastai: torch.svd(x.t()) -> x @ U[:, :k]
    want = xc @ U
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-4, atol=1e-4)
    var = got.var(0)
    assert var[0] >= var[1] >= var[2]
    np.testing.assert_allclose(got.T @ got, np.diag(np.diag(got.T @ got)), atol=1e-2)
    # deterministic signs: the same answer for a sign-flipped copy of the data
    np.testing.assert_allclose(pca(-x + 5, 3), pca(-x, 3), atol=1e-4)
    assert pca(x).shape == (50, 3)


def test_pca_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        pca(np.zeros(5))
    with pytest.raises(ValueError, match="k=4 is more than"):
        pca(np.zeros((5, 3)), k=4)
    with pytest.raises(ValueError, match="k must be"):
        pca(np.zeros((5, 3)), k=0)
    with pytest.raises(ValueError, match="NaN"):
        pca(np.array([[1.0, np.nan], [0, 1]]), k=1)
    with pytest.raises(TypeError, match="real numbers"):
        pca(np.array([["a", "b"]]), k=1)


def test_plot_pca_draws_the_lessons_labelled_scatter(learn):
    titles = learn.dls.classes["title"][1:31]
    fig = plot_pca(learn, titles, n_label=20, seed=0)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == [str(t) for t in titles[:20]]
    proj = pca(learn.model.weight(titles), 3)
    xy = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(xy), proj[:20][:, [0, 2]], rtol=1e-5)
    from collabc.plotting import label_overlaps
    assert label_overlaps(ax) == []                              # labels placed apart
    with pytest.raises(KeyError, match="not a film"):
        plot_pca(learn, ["not a film"])
    with pytest.raises(ValueError, match="components"):
        plot_pca(learn, titles, components=(0, 3))


# ---------------------------------------------------------------- most_similar
@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_most_similar_matches_brute_force(learn, metric):
    w = learn.model.i_weight.weight.astype(np.float64)
    q = learn.dls.classes["title"].o2i["film 7"]
    if metric == "cosine":
        n = np.maximum(np.linalg.norm(w, axis=1), 1e-8)
        s = (w / n[:, None]) @ (w[q] / n[q])
    elif metric == "dot":
        s = w @ w[q]
    else:
        s = -np.linalg.norm(w - w[q], axis=1)
    cand = [i for i in np.argsort(-s, kind="stable") if i not in (0, q)][:5]
    got = learn.most_similar("film 7", n=5, metric=metric)
    assert got["title"].tolist() == [learn.dls.classes["title"][i] for i in cand]
    col = "distance" if metric == "euclidean" else "similarity"
    np.testing.assert_allclose(got[col].to_numpy(), np.abs(s[cand]), rtol=1e-4)


def test_most_similar_users_and_bad_input(learn):
    got = learn.most_similar(3, n=4, is_item=False)
    assert list(got.columns) == ["user", "similarity"] and 3 not in got["user"].tolist()
    with pytest.raises(KeyError, match="no such film"):
        learn.most_similar("no such film")
    with pytest.raises(ValueError, match="metric must be"):
        learn.most_similar("film 7", metric="manhattan")
    with pytest.raises(ValueError, match="n must be"):
        learn.most_similar("film 7", n=0)
    with pytest.raises(TypeError, match="one id"):
        learn.most_similar(["film 7", "film 8"])


# ---------------------------------------------------------------- recorder plots
def test_plot_loss_and_plot_sched(learn):
    ax = learn.recorder.plot_loss()
    train, valid = ax.get_lines()
    assert len(train.get_xdata()) == len(learn.recorder.losses) - 5
    assert list(valid.get_xdata()) == learn.recorder.iters
    fig = learn.recorder.plot_sched()
    assert [a.get_ylabel() for a in fig.axes] == ["lr", "mom"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), learn.recorder.hps["lr"])


# ---------------------------------------------------------------- lr_find
def fresh(opt_func=None, **kw):
    set_seed(5)
    dls = CollabDataLoaders.from_df(ratings(), item_name="title", bs=32, seed=0)
    extra = {} if opt_func is None else {"opt_func": opt_func}
    return quiet(collab_learner(dls, n_factors=6, y_range=(0.5, 5.5), **extra, **kw))


def test_lr_find_schedule_and_restores_model_and_optimizer():
    learn = fresh()
    learn.fit(1, 1e-3)
    params, opt = learn.model.params.copy(), learn.opt.state_dict()
    res = learn.lr_find(num_it=40, show_plot=False, stop_div=False, end_lr=1e-1)
    np.testing.assert_array_equal(learn.model.params, params)
    after = learn.opt.state_dict()
    assert after["step"] == opt["step"] and after["hypers"] == opt["hypers"]
    for a, b in zip(after["buffers"], opt["buffers"]):
        np.testing.assert_array_equal(a, b)
    lrs = learn.recorder.lrs
    assert len(lrs) == 40
    np.testing.assert_allclose(lrs, 1e-7 * (1e-1 / 1e-7) ** (np.arange(40) / 40), rtol=1e-12)
    assert res._fields == ("valley",) and 1e-7 <= res.valley <= 1e-1


def test_lr_find_without_optimizer_leaves_none_and_stops_on_divergence():
    learn = fresh()
    params = learn.model.params.copy()
    res = learn.lr_find(show_plot=False, suggest_funcs=(SuggestionMethod.Valley, "minimum", steep),
                        end_lr=1e4, num_it=200)
    assert learn.opt is None
    np.testing.assert_array_equal(learn.model.params, params)
    n = len(learn.recorder.losses)
    assert 20 < n < 200        # stopped early: the smoothed loss passed 4x its best
    losses = np.array(learn.recorder.losses)
    assert losses[-1] > 4 * np.nanmin(losses[:-1]) or not np.isfinite(losses[-1])
    assert res._fields == ("valley", "minimum", "steep")


def test_lr_find_plot_and_sgd():
    learn = fresh(opt_func=SGD)
    res = learn.lr_find(num_it=30, end_lr=1.0, suggest_funcs=None, show_plot=True)
    assert res is None and plt.get_fignums()
    fig = learn.recorder.plot_lr_find()
    assert fig.axes[0].get_xscale() == "log"
    learn.lr_find(num_it=50, end_lr=1.0, show_plot=True)
    assert len(plt.gcf().axes[0].get_legend().get_texts()) == 1


def test_lr_find_bad_input():
    learn = fresh()
    with pytest.raises(ValueError, match="start_lr must be below end_lr"):
        learn.lr_find(start_lr=1, end_lr=0.1)
    with pytest.raises(ValueError, match="num_it"):
        learn.lr_find(num_it=0)
    with pytest.raises(ValueError, match="unknown suggestion"):
        learn.lr_find(suggest_funcs=("fastest",))
    with pytest.raises(ValueError, match="too few"):
        learn.lr_find(num_it=6, show_plot=False)


def test_suggestion_rules_by_hand():
    lrs = np.logspace(-6, 0, 30)
    losses = np.concatenate([np.full(5, 2.0), np.linspace(2.0, 0.5, 20), np.linspace(0.6, 3.0, 5)])
    # valley: the longest strictly decreasing run is indices 4..24 (plus the plateau start)
    v, (lr_v, loss_v) = valley(lrs, losses, 30)
    assert v == lr_v and 5 <= np.argmin(np.abs(lrs - v)) <= 24
    m, (lr_m, _) = minimum(lrs, losses, 30)
    assert lr_m == lrs[24] and m == lrs[24] / 10
    s, _ = steep(lrs, losses, 30)
    g = np.diff(losses) / np.diff(np.log(lrs))
    assert s == lrs[np.argmin(g)]
    sl, (_, at) = slide(lrs, losses, 30)
    assert lrs[0] <= sl <= lrs[-1] and np.isfinite(at)
