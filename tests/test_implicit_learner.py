"""Implicit feedback through the familiar API (issue 17): CollabDataLoaders.from_df(implicit=True),
implicit_learner's Learner (the one loop, epoch table, callbacks, Ctrl-C), recommendations,
fold-in, ranking metrics beside popularity, files, and bad input."""
import os
import pathlib
import re
import signal

import numpy as np
import pandas as pd
import pytest

from collabc import (CancelBatchException, Callback, CollabDataLoaders, CollabcFileError,
                     EarlyStoppingCallback, FoldIn, Learner, SaveModelCallback, implicit_learner,
                     load_learner)
from collabc.implicit import BPR, ImplicitALS, ImplicitData, evaluate, implicit_from_df
from collabc.implicit_learner import ImplicitLearner, als_loss
from test_files import rewrite           # tests/ is on sys.path
from test_persist import rewrite_meta

RANK_COLS = ["precision@10", "recall@10", "ndcg@10", "map@10"]


def _frame(seed=0, n=1500, nu=60, ni=40):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nu, n)
    i = (u * 7 + rng.integers(0, 12, n)) % ni      # a taste per user, so models can learn something
    return pd.DataFrame({"u": u, "i": i, "plays": rng.integers(1, 5, n).astype(float), "t": rng.random(n)})


def _dls(df=None, **kw):
    kw = {"implicit": True, "weight_name": "plays", "time_name": "t", "seed": 0, "bs": 16, **kw}
    return CollabDataLoaders.from_df(_frame() if df is None else df, **kw)


@pytest.fixture(scope="module")
def ml_implicit(ml100k_ratings):
    "MovieLens-100k made implicit (ratings >= 4), items by title, the most recent 20% of each user held out."
    df = ml100k_ratings[ml100k_ratings.rating >= 4][["user", "title", "timestamp"]]
    return CollabDataLoaders.from_df(df, implicit=True, item_name="title", time_name="timestamp", seed=0)


def _quiet(learn):
    learn.logger = lambda *a: None
    return learn


# ------------------------------------------------------------------------------------- data

def test_from_df_implicit_is_implicit_from_df_and_carries_it():
    df = _frame()
    dls = _dls(df)
    ref = implicit_from_df(df, weight_name="plays", time_name="t", seed=0)
    assert isinstance(dls, CollabDataLoaders) and isinstance(dls.implicit, ImplicitData)
    np.testing.assert_array_equal(dls.train.x, ref.train_x)
    np.testing.assert_array_equal(dls.train.y, ref.train_w)
    np.testing.assert_array_equal(dls.valid.x, ref.valid_x)
    assert dls.rating_name == "plays" and dls.implicit.classes["u"] is dls.classes["u"]
    # repeated pairs are summed: every (user, item) appears once and the weights add up
    x = np.concatenate([dls.train.x, dls.valid.x])
    assert len(np.unique(x[:, 0].astype(np.int64) * 1000 + x[:, 1])) == len(x)
    assert np.isclose(dls.train.y.sum() + dls.valid.y.sum(), df.plays.sum())
    # no weight column: every row counts 1, so a repeated pair's weight is its count
    d2 = CollabDataLoaders.from_df(df[["u", "i"]], implicit=True, valid_pct=0, bs=16)
    assert d2.train.y.sum() == len(df) and len(d2.valid.x) == 0


def test_from_df_implicit_refuses_rating_arguments():
    df = _frame()
    with pytest.raises(ValueError, match="weight_name='plays'"):
        CollabDataLoaders.from_df(df, implicit=True, rating_name="plays")
    with pytest.raises(ValueError, match="valid_idx"):
        CollabDataLoaders.from_df(df, implicit=True, valid_idx=[0, 1])
    with pytest.raises(ValueError, match="weight_name is for implicit feedback"):
        CollabDataLoaders.from_df(df, weight_name="plays")
    with pytest.raises(ValueError, match="min_train is for implicit feedback"):
        CollabDataLoaders.from_df(df, min_train=2)


def test_movielens_one_liner(ml_implicit, ml100k_ratings):
    d = ml_implicit.implicit
    n = int((ml100k_ratings.rating >= 4).sum())
    # a few titles name two movies: their pairs merge, the weight counting both
    assert d.train_w.sum() + d.valid_w.sum() == n and len(d.train_x) + len(d.valid_x) > 0.99 * n
    assert ml_implicit.item_name == "title" and ml_implicit.n_users == d.n_users


# ------------------------------------------------------------------------------------- training

def test_als_learner_fit_is_the_standalone_model_and_the_table_has_ranking_metrics():
    dls = _dls()
    learn = _quiet(implicit_learner(dls, "als", n_factors=8, reg=0.1, alpha=2.0, seed=3, n_threads=2))
    learn.fit(3)
    ref = ImplicitALS(dls.n_users, dls.n_items, 8, reg=0.1, alpha=2.0, seed=3)
    results = ref.fit(dls.implicit, 3, n_threads=2)
    np.testing.assert_array_equal(learn.model.core.user_factors, ref.user_factors)
    np.testing.assert_array_equal(learn.model.core.item_factors, ref.item_factors)
    rec = learn.recorder
    assert rec.metric_names == ["epoch", "train_loss", *RANK_COLS, "time"]
    assert len(rec.values) == 3
    np.testing.assert_allclose([v[0] for v in rec.values], [r["loss"] for r in results], rtol=1e-12)
    # the reported loss is the loss of the model as it is (float64 recomputation)
    assert rec.values[-1][0] == pytest.approx(als_loss(learn.model.core, dls.implicit.interactions()), rel=1e-4)
    rep = learn.ranking_metrics()
    assert rec.values[-1][1:] == pytest.approx([rep[c] for c in RANK_COLS])
    # fit_one_cycle runs the same iterations: ALS has no learning rate
    other = _quiet(implicit_learner(dls, "als", n_factors=8, reg=0.1, alpha=2.0, seed=3, n_threads=2))
    other.fit_one_cycle(3, 5e-3)
    np.testing.assert_array_equal(other.model.core.user_factors, ref.user_factors)
    with pytest.raises(TypeError, match="no learning rate"):
        learn.lr_find()
    assert "Loss function: ALS" in learn.summary() and "Training path: implicit als" in learn.summary()


def test_bpr_learner_trains_with_the_schedule_and_is_reproducible():
    dls = _dls()
    runs = []
    for _ in range(2):
        learn = _quiet(implicit_learner(dls, "bpr", n_factors=8, lr=0.05, seed=1, n_threads=2, opt="adagrad",
                                        n_groups=4))
        learn.data_rng = np.random.default_rng(7)
        learn.fit_one_cycle(3, 0.1)
        runs.append(learn)
    a, b = runs
    np.testing.assert_array_equal(a.model.core.item_factors, b.model.core.item_factors)
    nb = a.model.core.n_groups
    lrs = np.array(a.recorder.lrs)
    assert len(lrs) == 3 * nb * nb and len(a.recorder.values) == 3
    assert nb == 4 and lrs.argmax() == pytest.approx(0.25 * len(lrs), abs=1)
    assert lrs.max() == pytest.approx(0.1, rel=0.02)
    assert lrs[0] == pytest.approx(0.1 / 25, rel=1e-3)
    losses = [v[0] for v in a.recorder.values]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] < 0.7
    # constant lr trains differently from the schedule
    c = _quiet(implicit_learner(dls, "bpr", n_factors=8, lr=0.05, seed=1, n_threads=2, opt="adagrad", n_groups=4))
    c.data_rng = np.random.default_rng(7)
    c.fit(3)
    assert not np.array_equal(c.model.core.item_factors, a.model.core.item_factors)


def test_models_beat_popularity_through_the_learner(ml_implicit):
    als = _quiet(implicit_learner(ml_implicit, "als", n_factors=32, reg=10.0, alpha=5.0, seed=0))
    als.fit(4)
    rep = als.ranking_metrics()
    assert rep["beats_baseline"] and "beats the popularity baseline" in rep["verdict"]
    assert rep["baseline"]["ndcg@10"] < rep["ndcg@10"]
    bpr = _quiet(implicit_learner(ml_implicit, "bpr", n_factors=32, lr=0.05, reg=0.001, opt="adagrad", seed=0))
    bpr.fit_one_cycle(4, 0.1)
    assert bpr.ranking_metrics(k=5)["beats_baseline"]
    # an untrained model ranks at random: it says it does not beat popularity
    fresh = implicit_learner(ml_implicit, "als", n_factors=8, seed=0)
    rep = fresh.ranking_metrics()
    assert not rep["beats_baseline"] and "does NOT beat" in rep["verdict"] and "does NOT beat" in repr(rep)


class _Events(Callback):
    "Records the events it sees."
    def __init__(self):
        self.seen = []


for _e in ("before_fit", "before_epoch", "before_train", "before_segment", "after_segment", "after_train",
           "before_validate", "after_validate", "after_epoch", "after_fit"):
    setattr(_Events, _e, lambda self, _e=_e: self.seen.append(_e))


def test_callbacks_fire_and_track_a_ranking_metric(tmp_path):
    dls = _dls(path=tmp_path)
    ev = _Events()
    learn = _quiet(implicit_learner(dls, "als", n_factors=8, seed=0, cbs=ev))
    learn.fit(2)
    for e in ("before_fit", "before_epoch", "before_segment", "after_segment", "after_validate", "after_fit"):
        assert e in ev.seen
    assert ev.seen.count("after_epoch") == 2
    # early stopping on NDCG: with min_delta=10 no later epoch counts as better
    stop = EarlyStoppingCallback(monitor="ndcg@10", min_delta=10, patience=1)
    learn.fit(5, cbs=stop)
    assert len(learn.recorder.values) == 2
    # the best model by NDCG is saved and loaded back at the end
    save = SaveModelCallback(monitor="ndcg@10", fname="best")
    learn.fit(4, cbs=save)
    assert save.last_saved_path is not None and save.last_saved_path.exists()
    assert learn.validate()[2] == pytest.approx(save.best)
    with pytest.raises(ValueError, match="valid_loss"):
        learn.fit(1, cbs=EarlyStoppingCallback())   # no validation loss: the message lists the columns


class _Interrupt(Callback):
    "Sends a real SIGINT after the first segment of the fit."
    def __init__(self):
        self.sent = False

    def after_segment(self):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("model", ["als", "bpr"])
def test_ctrl_c_stops_between_segments_and_leaves_a_consistent_model(ml_implicit, model):
    learn = _quiet(implicit_learner(ml_implicit, model, n_factors=16, seed=0, n_threads=2))
    learn.seg_max = learn._path.granularity * (8 if model == "als" else 1)   # the epoch is cut early
    before = learn.model.core.user_factors.copy()
    learn.fit(3, cbs=_Interrupt())
    assert learn.recorder.values == []        # the cut epoch has no row
    core = learn.model.core
    assert np.isfinite(core.user_factors).all() and not np.array_equal(core.user_factors, before)
    learn.seg_max = None
    learn.fit(1)                               # trains on from where it stopped
    assert len(learn.recorder.values) == 1 and np.isfinite(learn.recorder.values[0]).all()


# ------------------------------------------------------------------------------------- inference

@pytest.mark.parametrize("model", ["als", "bpr"])
def test_recommend_most_similar_and_fold_in(ml_implicit, model):
    hp = dict(reg=10.0, alpha=5.0) if model == "als" else dict(lr=0.1, reg=0.001, opt="adagrad")
    learn = _quiet(implicit_learner(ml_implicit, model, n_factors=32, seed=0, **hp))
    learn.fit(3)
    d, core = ml_implicit.implicit, learn.model.core
    inter = d.interactions()
    top = learn.recommend(1, n=10)
    assert list(top.columns) == ["title", "score"] and len(top) == 10
    idx, scores = core.recommend([1], 10, exclude=inter)
    assert list(top.title) == [d.classes["title"][i] for i in idx[0]]
    np.testing.assert_allclose(top.score, scores[0], rtol=1e-5)
    seen = {d.classes["title"][i] for i in inter.indices[inter.indptr[1]:inter.indptr[2]]}
    assert not seen & set(top.title)
    many = learn.recommend_many([1, 2, 3], n=5)
    assert list(many.columns) == ["user", "rank", "title", "score"] and len(many) == 15
    fans = learn.recommend_users("Star Wars (1977)", n=3)   # users who have not seen it, best first
    assert len(fans) == 3 and fans.score.is_monotonic_decreasing
    sim = learn.most_similar("Star Wars (1977)", n=5)
    assert len(sim) == 5 and "Star Wars (1977)" not in set(sim.title)
    # fold-in of a user's own training items: near that user's trained factors
    items = [d.classes["title"][i] for i in inter.indices[inter.indptr[1]:inter.indptr[2]]]
    f = learn.fold_in_user(items, name="new")
    assert isinstance(f, FoldIn) and f.n_ratings == len(items)
    u = core.user_factors[1]
    cos = float(f.factors @ u / np.linalg.norm(f.factors) / np.linalg.norm(u))
    assert cos > (0.9 if model == "als" else 0.5)
    rec = learn.recommend(f, n=10)
    assert not set(items) & set(rec.title)
    if model == "als":   # the exact solve of ImplicitALS.fold_in, weights as given
        np.testing.assert_array_equal(learn.fold_in_user({items[0]: 2.0, items[1]: 1.0}).factors,
                                      core.fold_in(f.rated[:2], [2.0, 1.0]))
    assert len(learn.most_similar(f, n=3, is_item=False)) == 3


# ------------------------------------------------------------------------------------- files

@pytest.mark.parametrize("model", ["als", "bpr"])
def test_export_load_learner_and_save_load_round_trip(tmp_path, model):
    dls = _dls(path=tmp_path)
    hp = dict(alpha=3.0) if model == "als" else dict(opt="adagrad", lr=0.05)
    learn = _quiet(implicit_learner(dls, model, n_factors=8, seed=0, **hp))
    learn.fit(2)
    path = learn.export("impl.npz")
    back = load_learner(path)
    assert isinstance(back, ImplicitLearner) and back.model.kind == model
    assert back.model.hypers() == learn.model.hypers()
    pd.testing.assert_frame_equal(back.recommend_many([1, 2], n=5), learn.recommend_many([1, 2], n=5))
    pd.testing.assert_frame_equal(back.most_similar(3, n=4), learn.most_similar(3, n=4))
    kw = {} if model == "als" else {"seed": 1}
    np.testing.assert_array_equal(back.fold_in_user([1, 2, 3], **kw).factors,
                                  learn.fold_in_user([1, 2, 3], **kw).factors)
    with pytest.raises(ValueError, match="no held-out interactions"):
        back.ranking_metrics()
    with pytest.raises(ValueError):
        back.fit(1)
    # save / load, with the optimizer (BPR-Adagrad's accumulators)
    saved = learn.save("ck")
    state = {k: np.array(v) for k, v in learn.model.state_dict().items()}
    acc = getattr(learn.model.core, "acc", None)
    acc = None if acc is None else acc.copy()
    learn.fit(1)
    assert not np.array_equal(learn.model.core.item_factors, state["i_weight.weight"])
    learn.load("ck")
    np.testing.assert_array_equal(learn.model.core.item_factors, state["i_weight.weight"])
    if acc is not None:
        np.testing.assert_array_equal(learn.model.core.acc, acc)
        assert learn.model.core.acc is learn.opt.state["acc"]
    assert saved.exists()


@pytest.mark.parametrize("change,match", [
    (lambda m: m["model"]["args"].update(model="svd"), "model must be 'als' or 'bpr'"),
    (lambda m: m["model"]["args"].update(alpha=-1.0), "alpha"),
    (lambda m: m["model"]["args"].update(n_users=10**9), "shape"),
    (lambda m: m["model"]["args"].update(backdoor=1), "unknown hyperparameter"),
    (lambda m: m["model"]["args"].update(cg_steps="many"), "cg_steps"),
    (lambda m: m["model"].update(args=[1, 2]), "args must be a dict"),
])
def test_hostile_or_corrupt_implicit_files_raise_clear_errors(tmp_path, change, match):
    learn = _quiet(implicit_learner(_dls(path=tmp_path), "als", n_factors=8, seed=0))
    path = learn.export("good.npz")
    bad = tmp_path / "bad.npz"
    rewrite_meta(path, bad, change)
    with pytest.raises(CollabcFileError, match=match):
        load_learner(bad)


def test_truncated_files_and_a_checkpoint_of_the_other_model_are_refused(tmp_path):
    dls = _dls(path=tmp_path)
    als = _quiet(implicit_learner(dls, "als", n_factors=8, seed=0))
    path = als.export("good.npz")
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CollabcFileError):
        load_learner(cut)
    als.save("als_ck")
    bpr = _quiet(implicit_learner(dls, "bpr", n_factors=8, seed=0))
    before = bpr.model.core.item_factors.copy()
    with pytest.raises(CollabcFileError):
        bpr.load("als_ck")
    np.testing.assert_array_equal(bpr.model.core.item_factors, before)


# ------------------------------------------------------------------------------------- bad input

def test_bad_input_gets_clear_errors():
    df = _frame()
    neg = df.assign(plays=df.plays.where(df.index != 5, -1.0))
    with pytest.raises(ValueError, match=r"weight_name='plays'.*finite and >= 0"):
        _dls(neg)
    nan = df.assign(plays=df.plays.where(df.index != 7, np.nan))
    with pytest.raises(ValueError, match=r"weight_name='plays'.*finite and >= 0"):
        _dls(nan)
    with pytest.raises(ValueError, match="empty"):
        _dls(df.iloc[:0])
    dls = _dls(df)
    for alpha in (0, -1.0):
        with pytest.raises(ValueError, match="alpha"):
            implicit_learner(dls, "als", alpha=alpha)
    learn = _quiet(implicit_learner(dls, "als", n_factors=8, seed=0))
    learn.fit(1)
    with pytest.raises(ValueError, match="at least one interaction"):   # a user with no interactions
        learn.fold_in_user([])
    with pytest.raises(KeyError, match="12345"):
        learn.recommend(12345)
    with pytest.raises(KeyError):
        learn.fold_in_user([999])
    with pytest.raises(TypeError, match="implicit=True"):
        implicit_learner(CollabDataLoaders.from_df(df[["u", "i", "plays"]], bs=16), "als")
    with pytest.raises(ValueError, match="'als' or 'bpr'"):
        implicit_learner(dls, "svd")
    with pytest.raises(TypeError, match="unknown hyperparameter.*'lr'"):
        implicit_learner(dls, "als", lr=0.1)
    with pytest.raises(ValueError, match="rank_metrics"):
        implicit_learner(dls, "als", rank_metrics=["auc"])
    with pytest.raises(TypeError, match="rank_metrics"):
        ImplicitLearner(dls, learn.model, metrics=[lambda p, t: 0.0])
    with pytest.raises(TypeError, match="fold_in_user"):
        learn.fold_in_item([1, 2])
    plain = Learner(dls, learn.model)
    plain.logger = lambda *a: None
    with pytest.raises(TypeError, match="implicit_learner"):
        plain.fit(1)
    with pytest.raises(TypeError, match="implicit_learner"):
        Learner(dls, learn.model, train_mode="sparse").fit(1)


def test_the_epoch_table_evaluates_a_fixed_sample_of_users_when_asked():
    dls = _dls()
    learn = _quiet(implicit_learner(dls, "als", n_factors=8, seed=0, eval_users=20))
    learn.fit(2)
    users, _ = dls.implicit.relevant()
    assert len(users) > 20 and len(learn._eval_sample) == 20 and set(learn._eval_sample) <= set(users)
    sub = learn.ranking_metrics(baseline=False)
    assert sub["n_users"] == len(users)   # ranking_metrics evaluates everyone
    rep = evaluate(learn.model.core, dls.implicit, 10, baseline=False, users=learn._eval_sample)
    assert rep["n_users"] == 20 and learn.recorder.values[-1][1:] == pytest.approx([rep[c] for c in RANK_COLS])
    with pytest.raises(ValueError, match="eval_users"):
        implicit_learner(dls, "als", eval_users=0)


@pytest.mark.parametrize("model", ["als", "bpr"])
def test_a_loaded_checkpoint_resumes_exactly(tmp_path, model):
    dls = _dls(path=tmp_path)
    hp = {} if model == "als" else dict(opt="adagrad", lr=0.05, n_groups=2)
    a = _quiet(implicit_learner(dls, model, n_factors=8, seed=0, **hp))
    a.fit(2)
    a.save("mid")
    a.fit_one_cycle(2, 0.05)
    b = _quiet(implicit_learner(dls, model, n_factors=8, seed=5, **hp))   # another start: all of it is loaded
    b.load("mid")
    b.fit_one_cycle(2, 0.05)
    np.testing.assert_array_equal(a.model.core.user_factors, b.model.core.user_factors)
    np.testing.assert_array_equal(a.model.core.item_factors, b.model.core.item_factors)
    assert a.recorder.values == b.recorder.values


def test_a_hostile_sampling_state_is_refused(tmp_path):
    learn = _quiet(implicit_learner(_dls(path=tmp_path), "bpr", n_factors=8, seed=0))
    path = learn.export("b.npz")
    bad = rewrite(path, tmp_path / "bad.npz", {"model/sampling": np.array([-1, 3], np.int64)})
    with pytest.raises(CollabcFileError, match="sampling state"):
        load_learner(bad)


class _SkipFirstSegment(Callback):
    def before_segment(self):
        if self.learn.iter == 0:
            raise CancelBatchException()


def test_a_skipped_segment_leaves_its_rows_untrained_and_the_epoch_goes_on():
    dls = _dls()
    learn = _quiet(implicit_learner(dls, "als", n_factors=8, seed=0))
    learn.seg_max = 8
    before = learn.model.core.user_factors.copy()
    learn.fit(1, cbs=_SkipFirstSegment())
    after = learn.model.core.user_factors
    np.testing.assert_array_equal(after[:8], before[:8])        # rows 0-7: the skipped segment
    assert not np.array_equal(after[8:], before[8:]) and len(learn.recorder.values) == 1


def test_the_chosen_ranking_metrics_are_the_columns():
    learn = _quiet(implicit_learner(_dls(), "bpr", n_factors=8, seed=0, k=5, rank_metrics=["ndcg", "map"]))
    learn.fit(1)
    assert learn.recorder.metric_names == ["epoch", "train_loss", "ndcg@5", "map@5", "time"]
    rep = learn.ranking_metrics()
    assert learn.validate() == pytest.approx([rep["ndcg@5"], rep["map@5"]])


def test_the_readmes_implicit_example_runs(tmp_path, monkeypatch, ml100k_ratings):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", readme, re.S | re.M)
    lesson = blocks[0].split("dls = ")[0]                     # the lesson's imports and ratings
    example = next(b for b in blocks if "implicit_learner" in b)
    assert example.count("\n") <= 10
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(lesson + example, "README.md", "exec"), ns)
    learn = ns["learn"]
    assert isinstance(learn, ImplicitLearner) and learn.ranking_metrics()["beats_baseline"]
    pd.testing.assert_frame_equal(ns["back"].recommend(42, n=10), learn.recommend(42, n=10))


def test_the_loss_graph_draws_no_ranking_metric_as_a_validation_loss():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from collabc import ShowGraphCallback
    learn = _quiet(implicit_learner(_dls(), "als", n_factors=8, seed=0, cbs=ShowGraphCallback()))
    learn.fit(2)
    labels = [line.get_label() for line in learn.show_graph.ax.get_lines()]
    assert labels == ["train"]
    assert [line.get_label() for line in learn.recorder.plot_loss(skip_start=0).get_lines()] == ["train"]


def test_skipped_bpr_blocks_are_left_out_of_the_epochs_loss():
    dls = _dls()
    core = BPR(dls.n_users, dls.n_items, 8, n_groups=2, seed=0)
    inter = dls.implicit.interactions()
    ep = core.epoch(inter, 2, rng=np.random.default_rng(0))
    ep.skip(2)
    ep.run()
    res, losses = ep.result(), ep.unit_losses
    assert (losses[:2] == 0).all() and res["skipped"] > 0.2
    assert 0.6 < res["loss"] < 0.75   # the trained blocks' mean (about ln 2 at the start), not diluted by 0s
