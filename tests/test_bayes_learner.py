"""bayes_learner: the Gibbs sampler (collabc/bayes.py) through the one training loop, its
predictions, recommendations, similarity, fold-in, files, and bad input (issue 19)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from collabc import (Callback, CollabcFileError, CollabDataLoaders, bayes_learner, load_learner,
                     most_similar, pca)
from collabc import _core
from collabc.bayes import BayesModel, bayes_fm
from collabc.persist import read_archive, write_archive


@pytest.fixture
def dls(synth_ratings):
    return CollabDataLoaders.from_df(synth_ratings, valid_idx=np.arange(len(synth_ratings) - 300,
                                                                         len(synth_ratings)), bs=64)


@pytest.fixture
def dated(synth_ratings):
    df = synth_ratings.copy()
    df['timestamp'] = 880_000_000 + (np.arange(len(df)) % 30) * 86400 + 3600
    return CollabDataLoaders.from_df(df, valid_idx=np.arange(len(df) - 300, len(df)), bs=64)


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


class Events(Callback):
    def __init__(self):
        self.seen = []

    def before_epoch(self):
        self.seen.append('before_epoch')

    def after_segment(self):
        self.seen.append(('segment', len(self.seg_losses)))

    def after_epoch(self):
        self.seen.append('after_epoch')


def test_fit_runs_the_sampler_in_epochs_of_sweeps(dls):
    ev = Events()
    learn = quiet(bayes_learner(dls, n_factors=2, n_samples=30, burn_in=10, seed=0, cbs=ev))
    assert learn.model.sweeps_per_epoch == 3 and learn._path.unit == "sweep"
    with learn.no_bar():
        learn.fit()
    fm = learn.model.fm
    assert fm.sweeps_done == 30 and fm.n_kept == 20
    values = learn.recorder.values
    assert len(values) == 10 and ev.seen.count('after_epoch') == 10
    assert sum(n for e in ev.seen if isinstance(e, tuple) for n in [e[1]]) == 30
    # the table's last valid loss is the MSE of the averaged prediction
    assert values[-1][1] == pytest.approx(fm.valid_mse(), rel=1e-6)
    assert all(np.isfinite(v[0]) for v in values)
    # the same chain as the sampler run on its own, whatever the loop's segments
    alone = bayes_fm(dls, n_factors=2, n_samples=30, burn_in=10, seed=0)
    alone.fit()
    np.testing.assert_array_equal(alone.valid_preds(), fm.valid_preds())
    np.testing.assert_array_equal(alone.theta_mean, fm.theta_mean)
    with pytest.raises(ValueError, match="all n_samples=30 sweeps have run"):
        learn.fit()
    with learn.no_bar():
        learn.fit(2)                            # n epochs more: 2 x 3 sweeps
    assert fm.sweeps_done == 36 and len(learn.recorder.values) == 2


def test_schedules_and_learning_rates_are_refused(dls):
    learn = quiet(bayes_learner(dls, n_factors=2, n_samples=20, burn_in=5, seed=0))
    for call in (lambda: learn.fit_one_cycle(2, 1e-3), lambda: learn.fit_flat_cos(2),
                 lambda: learn.fit_sgdr(1, 1), lambda: learn.lr_find()):
        with pytest.raises(TypeError, match="no learning rate"):
            call()
    with pytest.raises(ValueError, match="lr does not apply"):
        learn.fit(1, 1e-3)
    with pytest.raises(ValueError, match="wd does not apply"):
        learn.fit(1, wd=0.1)
    assert learn.model.fm.sweeps_done == 0
    summary = learn.summary()
    assert "Training path: bayes" in summary and "draw_u_weight (buffer)" in summary
    # the other learners still need n_epoch
    from collabc import collab_learner
    with pytest.raises(ValueError, match="n_epoch"):
        collab_learner(dls, n_factors=2).fit()


def test_draw_tables_average_the_draws_predictions(dls, synth_ratings):
    users = np.unique(synth_ratings.user)
    um = pd.DataFrame({'age': 20 + users % 40, 'g': np.where(users % 2, 'M', 'F')}, index=users)
    learn = quiet(bayes_learner(dls, n_factors=3, n_samples=40, burn_in=10, n_draws=5, seed=1,
                                user_meta=um, keep_samples=True))
    with learn.no_bar():
        learn.fit()
    m, fm = learn.model, learn.model.fm
    assert int(m._draws["n_drawn"][0]) == 5 and m.stride == 6
    # draws are the kept sweeps number 6, 12, ..., 30: average their exact predictions in C
    thetas = np.ascontiguousarray(fm.samples[[5, 11, 17, 23, 29]])
    x = np.ascontiguousarray(dls.train.x[:500])
    want = np.zeros(len(x))
    _core.bfm_predict(want, thetas, fm.n_factors, fm.d0, fm.group, fm._blocks,
                      fm._pair_rows(x, None), 1)
    np.testing.assert_allclose(m._predict_draws(x), want, atol=2e-5)
    U, I, bu, bi = m._tables()
    assert U.shape == (m.n_users, 15) and I.shape == (m.n_items, 15) and m.n_factors == 15
    np.testing.assert_allclose((U[x[:, 0]] * I[x[:, 1]]).sum(1) + bu[x[:, 0], 0] + bi[x[:, 1], 0], want, atol=2e-5)
    # validation rows: the exact running mean over all kept sweeps
    preds, targs = learn.get_preds()
    np.testing.assert_allclose(preds, fm.valid_preds().astype(np.float32))
    assert learn.validate()[0] == pytest.approx(fm.valid_mse(), rel=1e-6)


def test_dated_model_uses_days_it_knows_and_averages_the_others(dated):
    learn = quiet(bayes_learner(dated, n_factors=2, n_samples=30, burn_in=10, n_draws=4,
                                date_name='timestamp', seed=2, keep_samples=True))
    with learn.no_bar():
        learn.fit()
    m, fm = learn.model, learn.model.fm
    x = np.ascontiguousarray(dated.train.x)
    days = dated.train.df.timestamp.to_numpy()
    thetas = np.ascontiguousarray(fm.samples[[4, 9, 14, 19]])
    want = np.zeros(len(x))
    _core.bfm_predict(want, thetas, fm.n_factors, fm.d0, fm.group, fm._blocks, fm._pair_rows(x, days), 1)
    preds, _ = learn.get_preds(ds_idx=0)      # training rows: their own days
    np.testing.assert_allclose(preds, want, atol=2e-5)
    # an unknown day: the day terms averaged over the training days' frequencies
    freq = np.bincount(fm._day_codes(days, len(days)), minlength=fm.d0) / len(days)
    avg = sum(f * m._predict_draws(x[:50], np.full(50, c)) for c, f in enumerate(freq) if f)
    np.testing.assert_allclose(m._predict_draws(x[:50]), avg, atol=2e-5)


def test_user_day_features_are_exact_for_known_pairs_and_survive_export(dated, tmp_path):
    """date_name adds the (user, day) one-hot of the training pairs (user_day=True, the default):
    a known pair's own terms, an unknown day the user's average day terms; export keeps both."""
    learn = quiet(bayes_learner(dated, n_factors=2, n_samples=30, burn_in=10, n_draws=4,
                                date_name='timestamp', seed=4, keep_samples=True, path=tmp_path))
    with learn.no_bar():
        learn.fit()
    m, fm = learn.model, learn.model.fm
    days = dated.train.df.timestamp.to_numpy()
    x = np.ascontiguousarray(dated.train.x)
    n_pairs = np.unique(x[:, 0].astype(np.int64) * 10 ** 6 + fm._day_codes(days, len(days))).size
    assert m.n_udays == n_pairs and fm.group_names[:2] == ['date', 'user_day']
    assert np.all(np.diff(fm.x[0]) == 2)             # every training row: its day and its (user, day)
    # an unknown day: the user's own (user, day) terms weighted by the user's rows on each day
    u = int(x[0, 0])
    mine = np.flatnonzero(m._draws["uday_user"] == u)
    np.testing.assert_allclose(m._draws["uday_freq"][mine].sum(), 1.0, rtol=1e-6)
    xs = np.ascontiguousarray(np.column_stack([np.full(5, u), np.arange(1, 6)]).astype(np.int32))
    c0 = np.full(5, int(m._draws["uday_code"][mine[0]]))
    avg = sum(float(m._draws["uday_freq"][e]) * m._predict_draws(xs, c0, np.full(5, e)) for e in mine)
    np.testing.assert_allclose(m._predict_draws(xs, c0), avg, atol=2e-5)
    # export: the user-day draws go along, predictions unchanged; a hostile user index is refused
    f = learn.export('dated.npz')
    new = load_learner(f)
    assert new.model.n_udays == m.n_udays
    np.testing.assert_array_equal(new.model._predict_draws(x[:100]), m._predict_draws(x[:100]))
    header, arrays = read_archive(f, kind="learner")
    bad = dict(arrays, **{"model/uday_user": np.full(m.n_udays, 10 ** 6, np.int64)})
    write_archive(tmp_path / 'bad.npz', "learner", header, bad)
    with pytest.raises(CollabcFileError, match="uday_user"):
        load_learner(tmp_path / 'bad.npz')
    # user_day=False: the day alone, as before
    plain = bayes_learner(dated, n_factors=2, n_samples=5, burn_in=1, date_name='timestamp',
                          user_day=False, seed=4)
    assert plain.model.n_udays == 0 and plain.model.fm.group_names[:2] == ['date', 'user']
    with pytest.raises(TypeError, match="user_day"):
        bayes_learner(dated, date_name='timestamp', user_day='yes')


def test_recommend_similar_pca_and_interpretation(dls):
    learn = quiet(bayes_learner(dls, n_factors=2, n_samples=30, burn_in=10, n_draws=4, seed=3))
    with learn.no_bar():
        learn.fit()
    m = learn.model
    top = learn.recommend(5, n=4)
    assert list(top.columns) == ['item', 'score'] and len(top) == 4
    seen = set(dls.train.x[dls.train.x[:, 0] == dls.classes['user'].index(5), 1])
    idx = [dls.classes['item'].index(i) for i in top.item]
    assert not seen & set(idx)
    x = np.array([[dls.classes['user'].index(5), i] for i in idx], np.int32)
    np.testing.assert_allclose(top.score, m._predict_draws(x), rtol=1e-5)
    assert np.all(np.diff(top.score) <= 0)
    users = learn.recommend_users(3, n=4)
    assert len(users) == 4 and np.all(np.diff(users.score) <= 0)
    many = learn.recommend_many([5, 6], n=3)
    assert list(many.columns) == ['user', 'rank', 'item', 'score'] and len(many) == 6
    sim = learn.most_similar(3, n=5)
    assert len(sim) == 5 and 3 not in set(sim.item) and np.all(np.diff(sim.similarity) <= 0)
    assert most_similar(learn, 3, n=5).equals(sim)
    # the cosine of the draws' item vectors side by side (docs/bayes.md says why not their mean)
    W = m._current()['draw_i_weight'].astype(np.float64)
    side = W.transpose(1, 0, 2).reshape(W.shape[1], -1)
    j = dls.classes['item'].index(3)
    cos = side @ side[j] / np.maximum(np.linalg.norm(side, axis=1), 1e-8) / np.linalg.norm(side[j])
    idx = [dls.classes['item'].index(i) for i in sim.item]
    np.testing.assert_allclose(sim.similarity, cos[idx], rtol=1e-5, atol=1e-6)
    cos[[0, j]] = -np.inf
    assert set(idx) == set(np.argsort(-cos)[:5])
    items = list(dls.classes['item'][1:21])
    assert pca(m.weight(items), 3).shape == (20, 3)
    b = m.bias(items)
    assert b.shape == (20,) and np.all(np.isfinite(b))
    assert m.weight([5], is_item=False).shape == (1, 8)
    _, _, row = learn.predict(pd.Series({'user': 5, 'item': items[0]}))
    np.testing.assert_allclose(np.ravel(row), m._predict_draws(np.array([[dls.classes['user'].index(5),
                                                                          dls.classes['item'].index(items[0])]])),
                               rtol=1e-6)


@pytest.mark.parametrize("prior", ['gamma', 'wishart'])
def test_fold_in_solves_the_users_conditional(dls, prior):
    learn = quiet(bayes_learner(dls, n_factors=2, n_samples=40, burn_in=10, implicit='user', seed=4,
                                factor_prior=prior))
    with learn.no_bar():
        learn.fit()
    m, fm = learn.model, learn.model.fm
    items = [3, 7, 11, 19]
    ratings = {i: r for i, r in zip(items, [5, 1, 4, 2])}
    # one draw set to the posterior mean: the learner's fold-in is then the sampler's own
    for k, v in m._draw_from(fm.theta_mean, fm.hyper_mean).items():
        m._draws[k][0] = v
    m._draws["n_drawn"][0] = 1
    f = learn.fold_in_user(ratings, name='new')
    idx = np.array([dls.classes['item'].index(i) for i in items])
    want = fm.fold_in_user(idx, np.array([5, 1, 4, 2], float))
    np.testing.assert_allclose(f.predict(list(dls.classes['item'][1:])), want['scores'][1:], atol=1e-4)
    if prior == 'wishart':   # the factors' prior precision is a full matrix, and it is used
        L = fm.hyper_means()['Lambda_V'][int(fm.group[fm._slice('user').start])]
        assert abs(L[0, 1]) > 1e-3 * np.sqrt(L[0, 0] * L[1, 1])
        np.testing.assert_allclose(m._draws["draw_user_prec"][0], L, rtol=1e-6)
        diag = fm.hyper_mean.copy()
        G, K = fm.n_groups, fm.n_factors
        Lam = diag[1 + 2 * G + 2 * G * K:].reshape(G, K, K)
        Lam[:] = np.diagonal(Lam, axis1=1, axis2=2)[:, :, None] * np.eye(K)
        fm.hyper_mean, kept = diag, fm.hyper_mean
        assert not np.allclose(fm.fold_in_user(idx, np.array([5, 1, 4, 2], float))['factors'],
                               want['factors'], rtol=1e-4)
        fm.hyper_mean = kept
    top = learn.recommend(f, n=3)
    assert len(top) == 3 and not set(top.item) & set(items)
    assert learn.average_user().factors.shape == (2,)
    with pytest.raises(ValueError, match="ratings is empty"):
        learn.fold_in_user({})
    with pytest.raises(KeyError):
        learn.fold_in_user({10**6: 4})


def test_save_load_resumes_the_chain_and_refuses_bad_files(dls, tmp_path):
    def make():
        return quiet(bayes_learner(dls, n_factors=2, n_samples=30, burn_in=10, n_draws=4, seed=5,
                                   path=tmp_path))
    a = make()
    with a.no_bar():
        a.fit(5)
        f = a.save('ck')
        a.fit()
    b = make()
    b.load('ck')
    assert b.model.fm.sweeps_done == 15 and int(b.model._draws["n_drawn"][0]) == 1
    with b.no_bar():
        b.fit()
    np.testing.assert_array_equal(a.model.fm.valid_preds(), b.model.fm.valid_preds())
    np.testing.assert_array_equal(a.model._tables()[0], b.model._tables()[0])
    # a learner of other options refuses the file, unchanged
    c = quiet(bayes_learner(dls, n_factors=3, n_samples=30, burn_in=10, seed=5, path=tmp_path))
    with pytest.raises(CollabcFileError):
        c.load('ck')
    assert c.model.fm.sweeps_done == 0
    # damaged and hostile files
    raw = f.read_bytes()
    bad = tmp_path / 'models' / 'bad.npz'
    bad.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CollabcFileError):
        b.load('bad')
    header, arrays = read_archive(f, kind="checkpoint")
    for key, value in (("n_drawn", np.array([99], np.int64)),
                       ("sampler_counters", np.array([5, 9, 1, 0], np.int64))):
        arr = dict(arrays)
        arr[f"model/{key}"] = value
        write_archive(tmp_path / 'models' / 'hostile.npz', "checkpoint", header, arr)
        before = b.model.fm.sweeps_done
        with pytest.raises(CollabcFileError, match="does not fit"):
            b.load('hostile')
        assert b.model.fm.sweeps_done == before


@pytest.mark.parametrize("prior", ['gamma', 'wishart'])
def test_export_and_load_learner(dls, tmp_path, prior):
    learn = quiet(bayes_learner(dls, n_factors=2, n_samples=30, burn_in=10, n_draws=3, seed=6,
                                implicit='user', path=tmp_path, factor_prior=prior))
    with learn.no_bar():
        learn.fit()
    f = learn.export('bayes.npz')
    header, arrays = read_archive(f, kind="learner")
    assert not any(k.startswith("model/sampler_") for k in arrays)      # the draws only
    new = load_learner(f)
    assert isinstance(new.model, BayesModel) and new.model.fm is None
    assert new.model.factor_prior == prior and ("model/draw_user_prec" in arrays) == (prior == 'wishart')
    x = np.ascontiguousarray(dls.train.x[:200])
    np.testing.assert_array_equal(new.model._predict(x), learn.model._predict_draws(x))
    pd.testing.assert_frame_equal(new.recommend(5, n=5), learn.recommend(5, n=5))
    pd.testing.assert_frame_equal(new.most_similar(3, n=5), learn.most_similar(3, n=5))
    r = {3: 5, 7: 1}
    np.testing.assert_allclose(new.fold_in_user(r).factors, learn.fold_in_user(r).factors, rtol=1e-6)
    with pytest.raises(RuntimeError, match="no sampler"):
        new.fit()
    # hostile: a configuration that does not match the stored tables, a draw count out of range
    cfg = dict(header)
    cfg["model"] = dict(header["model"], args=dict(header["model"]["args"], n_draws=7))
    write_archive(tmp_path / 'h1.npz', "learner", cfg, arrays)
    with pytest.raises(CollabcFileError, match="shape"):
        load_learner(tmp_path / 'h1.npz')
    arr = dict(arrays, **{"model/n_drawn": np.array([-1], np.int64)})
    write_archive(tmp_path / 'h2.npz', "learner", header, arr)
    with pytest.raises(CollabcFileError, match="n_drawn"):
        load_learner(tmp_path / 'h2.npz')
    # the fold-in's prior: a negative precision, a matrix that is not positive definite
    pr = arrays["model/draw_user_prior"].copy()
    pr[1, -1] = -2.0
    write_archive(tmp_path / 'h3.npz', "learner", header, dict(arrays, **{"model/draw_user_prior": pr}))
    with pytest.raises(CollabcFileError, match="draw_user_prior"):
        load_learner(tmp_path / 'h3.npz')
    if prior == 'wishart':
        P = arrays["model/draw_user_prec"].copy()
        P[2] = [[1.0, 2.0], [2.0, 1.0]]
        write_archive(tmp_path / 'h4.npz', "learner", header, dict(arrays, **{"model/draw_user_prec": P}))
        with pytest.raises(CollabcFileError, match="draw_user_prec"):
            load_learner(tmp_path / 'h4.npz')


def test_bad_input_is_refused_clearly(dls, dated, synth_ratings):
    users = np.unique(synth_ratings.user)
    um = pd.DataFrame({'age': (20 + users % 40).astype(float)}, index=users)
    um.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match="user_meta: column 'age' has missing values"):
        bayes_learner(dls, user_meta=um)
    df = synth_ratings.assign(when='yesterday')
    texts = CollabDataLoaders.from_df(df, valid_idx=np.arange(len(df) - 300, len(df)), bs=64)
    with pytest.raises(TypeError, match="date_name='when'.*dates"):
        bayes_learner(texts, date_name='when')
    with pytest.raises(KeyError, match="date_name='day'"):
        bayes_learner(dated, date_name='day')
    for kw, msg in ((dict(n_samples=0), "n_samples"), (dict(n_samples=10, burn_in=10), "burn_in"),
                    (dict(burn_in=-1), "burn_in"), (dict(n_draws=0), "n_draws"),
                    (dict(sweeps_per_epoch=0), "sweeps_per_epoch"), (dict(implicit='items'), "implicit"),
                    (dict(n_factors=0), "n_factors")):
        with pytest.raises(ValueError, match=msg):
            bayes_learner(dls, **kw)


def test_ctrl_c_stops_between_segments_and_leaves_a_usable_model(tmp_path):
    code = textwrap.dedent("""
        import os, signal, threading, time
        import numpy as np, pandas as pd
        from collabc import CollabDataLoaders, bayes_learner
        rng = np.random.default_rng(0)
        df = pd.DataFrame({'u': rng.integers(0, 300, 30000), 'i': rng.integers(0, 200, 30000),
                           'r': rng.integers(1, 6, 30000)})
        learn = bayes_learner(CollabDataLoaders.from_df(df, bs=64, seed=0), n_factors=4,
                              n_samples=100000, burn_in=5, seed=0)
        learn.logger = lambda *a: None
        sent = []
        def interrupt():
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(1.5, interrupt).start()
        learn.fit()
        lag = time.perf_counter() - sent[0]
        fm = learn.model.fm
        preds, _ = learn.get_preds()
        top = learn.recommend(df.u[0], n=3)
        print(fm.sweeps_done, len(learn.recorder.values), lag, np.isfinite(preds).all(), len(top))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path), env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-2000:]
    done, rows, lag, finite, n = r.stdout.split()
    assert 5 < int(done) < 100000 and finite == "True" and n == "3"
    assert float(lag) < 1.5, f"Ctrl-C took {lag} s to stop the fit"
