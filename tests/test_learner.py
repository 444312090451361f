"""The facade end to end: Learner/fit/fit_one_cycle/Recorder/table against fastai's
semantics, seeds, the lesson's models, bad input and divergence."""
import re
from functools import partial

import numpy as np
import pytest

from collabc import (SGD, Adam, CollabDataLoaders, nn, no_grad, tensor, zeros,
                     DotProduct, DotProductBias, EmbeddingDotBias, Learner, MSELossFlat,
                     TrainingDivergedError, collab_learner, mae, rmse, set_seed)
from collabc.display import format_time, html_table

NAMES = ["u_weight.weight", "i_weight.weight", "u_bias.weight", "i_bias.weight"]


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


def make_dls(df, **kw):
    return CollabDataLoaders.from_df(df, **{"bs": 64, "seed": 0, **kw})


# ---------------------------------------------------------------- fastai replay through Learner
def test_learner_replays_fastai_epoch(golden_dot, golden_dls):
    """fit_one_cycle(1, 5e-3, wd=0.1) over fastai's own batches lands on fastai's parameters,
    smoothed losses, printed train_loss and valid loss."""
    d = golden_dot
    dls = golden_dls(d)
    learn = quiet(collab_learner(dls, n_factors=8, y_range=(0, 5.5)))
    learn.model.load_state_dict({n: d[f"init/{n}"] for n in NAMES})
    learn.fit_one_cycle(1, 5e-3, wd=0.1)

    sd = learn.model.state_dict()
    err = max(np.abs(sd[n] - d[f"final/{n}"]).max() for n in NAMES)
    assert err < 1e-5, err
    np.testing.assert_allclose(learn.recorder.lrs, d["lr"], rtol=5e-5)
    np.testing.assert_allclose(learn.recorder.moms, d["mom"], rtol=1e-6)
    # fastai's recorded smooth_loss[j] is the value before batch j's update
    np.testing.assert_allclose(learn.recorder.losses[:-1], d["smooth_loss"][1:], atol=1e-5)
    train_loss, valid_loss = learn.recorder.values[0]
    assert abs(train_loss - float(d["train_loss_shown"])) < 1e-5
    assert abs(valid_loss - float(d["valid_loss"])) < 1e-5
    assert learn.recorder.iters == [1250]


# ---------------------------------------------------------------- the lesson on MovieLens-100k
def test_lesson_dot_model_ml100k(ml100k_ratings, capsys):
    set_seed(42)
    dls = CollabDataLoaders.from_df(ml100k_ratings, item_name="title", bs=64)
    assert len(dls.classes["user"]) == 944 and len(dls.classes["title"]) == 1665
    assert len(dls.train) == 1250 and len(dls.valid) == 313
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), metrics=[rmse, mae])
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "epoch     train_loss  valid_loss  _rmse     mae       time    "
    assert len(out) == 6 and all(re.match(r"^[0-4] {9}\d\.\d{6} {4}\d\.\d{6}", r) for r in out[1:])
    rec = learn.recorder
    assert len(rec.lrs) == 6250 and len(rec.values) == 5
    # the spec's schedule values
    assert rec.lrs[0] == pytest.approx(2.0e-4) and rec.moms[0] == pytest.approx(0.95)
    assert rec.lrs[1563] == pytest.approx(5e-3, rel=1e-6) and rec.moms[1563] == pytest.approx(0.85, rel=1e-6)
    assert rec.lrs[-1] == pytest.approx(5.06e-8, rel=1e-2) and rec.moms[-1] == pytest.approx(0.95, rel=1e-4)
    valid_loss = rec.values[-1][1]
    assert 0.80 <= valid_loss <= 0.83, valid_loss
    assert rec.values[-1][2] == pytest.approx(np.sqrt(valid_loss), rel=1e-6)
    assert learn.validate()[0] == pytest.approx(valid_loss, rel=1e-9)
    # fastai's dense Adam decays the never-trained '#na#' rows: they shrink, never grow
    assert np.abs(learn.model.i_weight.weight.numpy()[0]).max() < 0.02


# ---------------------------------------------------------------- reproducibility
def _run(df, seed):
    set_seed(seed)
    dls = make_dls(df, seed=None)
    learn = quiet(collab_learner(dls, n_factors=5, y_range=(0, 5.5)))
    learn.fit_one_cycle(2, 1e-2)
    return np.array(learn.recorder.values), learn.model.params.copy()


def test_same_seed_same_losses(synth_ratings):
    v1, p1 = _run(synth_ratings, 3)
    v2, p2 = _run(synth_ratings, 3)
    v3, _ = _run(synth_ratings, 4)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(v1, v3)


# ---------------------------------------------------------------- output formats
def test_console_table_and_no_bar(synth_ratings, capsys):
    learn = collab_learner(make_dls(synth_ratings), n_factors=4, y_range=(0, 5.5))
    learn.fit(1, 1e-2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "epoch     train_loss  valid_loss  time    "
    assert re.fullmatch(r"0 {9}\d\.\d{6} {4}\d\.\d{6} {4}00:00 {5}", lines[1]), lines[1]
    with learn.no_bar():
        learn.fit(1, 1e-2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[0, ") and lines[0].endswith("'00:00']")


def test_html_table_and_time_format():
    h = html_table([["epoch", "train_loss"], ["0", "0.967653"]])
    assert h.startswith('<table border="1" class="dataframe">')
    assert '<tr style="text-align: left;">' in h and "<th>train_loss</th>" in h and "<td>0.967653</td>" in h
    assert format_time(5.9) == "00:05" and format_time(65) == "01:05" and format_time(3725) == "1:02:05"


# ---------------------------------------------------------------- optimizers and fit semantics
def test_training_reduces_loss_with_each_optimizer(synth_ratings):
    dls = make_dls(synth_ratings)
    for opt_func, lr in [(Adam, 1e-2), (SGD, 0.5), (partial(SGD, mom=0.9), 0.1)]:
        set_seed(0)
        learn = quiet(collab_learner(dls, n_factors=4, y_range=(0, 5.5), opt_func=opt_func))
        before = learn.validate()[0]
        learn.fit(5, lr)
        assert learn.recorder.values[-1][1] < before, opt_func


def test_wd_default_and_persistence(synth_ratings):
    learn = quiet(collab_learner(make_dls(synth_ratings), n_factors=4))
    learn.fit(1)
    assert learn.opt.hypers["wd"] == 0.01 and learn.opt.hypers["lr"] == 1e-3  # fastai's defaults
    learn.fit(1, wd=0.1)
    learn.fit(1)
    assert learn.opt.hypers["wd"] == 0.1
    assert learn.opt.step_count == 3 * len(learn.dls.train)  # the optimizer survives fits
    learn.fit(1, reset_opt=True)
    assert learn.opt.step_count == len(learn.dls.train)


def test_lesson_models_train_with_learner(synth_ratings):
    dls = make_dls(synth_ratings)
    n_users, n_items = len(dls.classes["user"]), len(dls.classes["item"])
    for model in [DotProduct(n_users, n_items, 5), DotProduct(n_users, n_items, 5, y_range=(0, 5.5)),
                  DotProductBias(n_users, n_items, 5),
                  DotProductBias(n_users, n_items, 5, init="normal")]:
        learn = quiet(Learner(dls, model, loss_func=MSELossFlat()))
        before = learn.validate()[0]
        learn.fit_one_cycle(3, 5e-3)
        assert learn.recorder.values[-1][1] < before, type(model).__name__
    m = DotProductBias(n_users, n_items, 5)
    assert set(m.state_dict()) == {"user_factors.weight", "movie_factors.weight",
                                   "user_bias.weight", "movie_bias.weight"}
    assert "user_bias" not in DotProduct(n_users, n_items, 5).state_dict()


def test_model_views_share_the_block():
    m = EmbeddingDotBias(3, 10, 20, y_range=(0, 5.5))
    assert m.params.size == 10 * 3 + 20 * 3 + 10 + 20 and m.n_wd == m.params.size
    assert np.abs(m.params).max() <= 0.02 + 1e-7  # trunc_normal: N(0,1) fmod 2, times 0.01
    assert np.abs(m.params).max() > 0
    with no_grad():
        m.u_weight.weight[2, 1] = 7.0
    assert m.params[2 * 3 + 1] == 7.0
    assert m.u_weight.weight.dtype == np.float32 and m.i_bias.weight.shape == (20, 1)
    assert repr(m.u_weight) == "Embedding(10, 3)"


def test_bias_and_weight_by_label(synth_ratings):
    dls = make_dls(synth_ratings)
    learn = collab_learner(dls, n_factors=4)
    item = dls.classes["item"][3]
    idx = dls.classes["item"].o2i[item]
    assert learn.model.bias([item])[0] == learn.model.i_bias.weight.numpy()[idx, 0]
    np.testing.assert_array_equal(learn.model.weight([item]), learn.model.i_weight.weight.numpy()[[idx]])
    with pytest.raises(KeyError, match="isn't in the training data"):
        learn.model.bias(["no such item"])


# ---------------------------------------------------------------- bad input and divergence
def test_bad_arguments(synth_ratings):
    dls = make_dls(synth_ratings)
    with pytest.raises(ValueError, match="n_factors"):
        collab_learner(dls, n_factors=0)
    with pytest.raises(ValueError, match="y_range"):
        collab_learner(dls, y_range=(5.5, 0))
    with pytest.raises(TypeError, match="y_range"):
        collab_learner(dls, y_range="high")
    with pytest.raises(TypeError, match="loss_func"):
        collab_learner(dls, loss_func=lambda p, t: 0.0)
    with pytest.raises(TypeError, match="model"):
        Learner(dls, object())
    learn = quiet(collab_learner(dls, n_factors=3))
    with pytest.raises(ValueError, match="n_epoch"):
        learn.fit(0)
    with pytest.raises(ValueError, match="lr"):
        learn.fit_one_cycle(1, -1.0)
    with pytest.raises(ValueError, match="wd"):
        learn.fit(1, 1e-3, wd=float("nan"))
    with pytest.raises(ValueError, match="pct_start"):
        learn.fit_one_cycle(1, pct_start=1.5)
    with pytest.raises(ValueError, match="moms"):
        learn.fit_one_cycle(1, moms=(0.95, 1.2, 0.95))
    learn2 = quiet(collab_learner(dls, n_factors=3, opt_func=lambda n, lr: None))
    with pytest.raises(TypeError, match="opt_func"):
        learn2.fit(1)
    small = EmbeddingDotBias(3, 2, 2)
    with pytest.raises(ValueError, match="indices up to"):
        Learner(dls, small)


def test_divergence_stops_with_epoch_and_batch(synth_ratings):
    dls = make_dls(synth_ratings)
    n_users, n_items = len(dls.classes["user"]), len(dls.classes["item"])
    learn = quiet(Learner(dls, DotProduct(n_users, n_items, 8), opt_func=SGD))
    learn.model.params[:] = 1.0
    with pytest.raises(TrainingDivergedError, match=r"epoch 0, batch \d+"):
        learn.fit(2, 1e3)
    assert np.all(np.isfinite(learn.model.params)), "the model must keep its last finite state"
    assert len(learn.recorder.losses) == len(learn.recorder.lrs)


def test_replacing_a_parameter_keeps_the_model_on_its_fused_path():
    "PyTorch's habit `emb.weight = nn.Parameter(...)`: the model packs the new table into its block."
    m = EmbeddingDotBias(3, 10, 20)
    new = nn.Parameter(tensor(np.full((10, 3), 0.5, np.float32)))
    m.u_weight.weight = new
    assert m._fused_ok() and m.params[:30].tolist() == [0.5] * 30
    with no_grad():
        new[0, 0] = 2.0                       # the parameter is a view into the block now
    assert m.params[0] == 2.0
    with pytest.raises(TypeError, match="cannot assign 'ndarray' as parameter 'weight'"):
        m.u_weight.weight = np.zeros((10, 3), np.float32)
    m.u_weight.weight = nn.Parameter(zeros(10, 4))   # another shape: no longer the built-in model
    assert not m._fused_ok()
