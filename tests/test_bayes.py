"""The Bayesian factorization machine (collabc/bayes.py, csrc/bfm.c): one C sweep against the
float64 reference with the sampler's own draws, the rank-0 chain against the closed-form
Bayesian linear regression, reproducibility (seed, thread count, segments), the collab builder
(implicit sets, dates, metadata, fold-in), and bad input."""
import time

import numpy as np
import pandas as pd
import pytest

import reference_bayes as ref
from collabc import CollabDataLoaders, _core
from collabc.bayes import BayesianFM, bayes_fm
from conftest import ml100k_path


def draws(seed, sweep):
    "The sampler's own draws of one sweep, by slot, for the reference."
    def normal(slot):
        out = np.zeros(1)
        _core.bfm_random(out, seed, sweep, np.array([slot], np.int64))
        return out[0]

    def gamma(slot, shape):
        out = np.zeros(1)
        _core.bfm_random(out, seed, sweep, np.array([slot], np.int64), shape)
        return out[0]
    return normal, gamma


def streams(seed, sweep):
    "A slot's stream of the sweep: the Bartlett factor and the normals of the Wishart step."
    def bartlett(slot, k, nu):
        out = np.zeros((k, k))
        _core.bfm_stream(out, seed, sweep, slot, float(nu))
        return out

    def normals(slot, n):
        out = np.zeros(n)
        _core.bfm_stream(out, seed, sweep, slot)
        return out
    return bartlett, normals


def csr_from_dense(A):
    ptr = np.concatenate([[0], np.cumsum((A != 0).sum(1))]).astype(np.int64)
    rows, cols = np.nonzero(A)
    return ptr, cols.astype(np.int32), A[rows, cols].astype(np.float32), A.shape[1]


def small_problem(rng, n=40, M=(6, 5), d0=3):
    """Ratings of M[0] users x M[1] items; the user block holds a one-hot and two extra
    real-valued features, the item block a one-hot; d0 row-local features."""
    U = np.hstack([np.eye(M[0]), np.round(rng.normal(size=(M[0], 2)), 2) * (rng.random((M[0], 2)) < .7)])
    I = np.eye(M[1])
    idx = np.stack([rng.integers(0, M[0], n), rng.integers(0, M[1], n)]).astype(np.int32)
    X0 = (rng.random((n, d0)) < 0.4) * np.round(rng.uniform(0.2, 1.5, (n, d0)), 2)
    y = rng.integers(1, 6, n).astype(np.float32)
    blocks = [csr_from_dense(U), csr_from_dense(I)]
    group = np.array([0] * d0 + [1] * M[0] + [2, 2] + [3] * M[1], np.int32)
    return y, blocks, idx, csr_from_dense(X0), group


def hypers(rng, G, k, wishart=False):
    h = np.empty(1 + 2 * G * (1 + k) + (G * k * k if wishart else 0))
    h[0] = 1.3
    h[1:1 + G] = rng.normal(0, .1, G)
    h[1 + G:1 + 2 * G] = rng.uniform(.5, 3, G)
    h[1 + 2 * G:1 + 2 * G + G * k] = rng.normal(0, .1, G * k)
    h[1 + 2 * G + G * k:1 + 2 * G + 2 * G * k] = rng.uniform(.5, 3, G * k)
    if wishart:   # a positive definite precision per group, lambda_V its diagonal
        B = rng.normal(0, .5, (G, k, k))
        L = B @ B.transpose(0, 2, 1) + np.eye(k)
        h[1 + 2 * G + G * k:1 + 2 * G + 2 * G * k] = np.diagonal(L, axis1=1, axis2=2).ravel()
        h[1 + 2 * G + 2 * G * k:] = L.ravel()
    return h


@pytest.mark.parametrize("prior", ['gamma', 'wishart'])
@pytest.mark.parametrize("fix", [None, 'alpha', ('alpha', 'groups')])
@pytest.mark.parametrize("k", [3, 1])
def test_sweep_matches_reference(k, fix, prior):
    rng = np.random.default_rng(k)
    y, blocks, idx, x0, group = small_problem(rng)
    seed = 1234
    wishart = prior == 'wishart'
    m = BayesianFM(y, blocks, idx, x0, group, n_factors=k, n_samples=10, burn_in=1, seed=seed,
                   n_threads=2, hyper=hypers(rng, 4, k, wishart), fix=fix, init_std=0.3,
                   factor_prior=prior)
    m.theta[1:1 + m.d] = rng.normal(0, .2, m.d)
    X = ref.dense_design([b[:3] + (int(b[6][0]),) for b in m.blocks], idx, x0, y.size)
    fixes = () if fix is None else ((fix,) if isinstance(fix, str) else fix)
    for sweep in range(3):
        theta0, hyper0 = m.theta.copy(), m.hyper.copy()
        rmse = m.run_sweeps(1)
        normal, gamma = draws(seed, sweep)
        bartlett, normals = streams(seed, sweep)
        th, hy = ref.sweep(theta0, hyper0, X, y, group, k, m.prior, normal, gamma,
                           fix_alpha='alpha' in fixes, fix_groups='groups' in fixes,
                           wishart=wishart, bartlett=bartlett, normals=normals)
        msg = f"k={k} fix={fix} prior={prior} sweep={sweep} n={y.size} d={m.d} seed={seed}"
        np.testing.assert_allclose(m.theta, th, rtol=1e-9, atol=1e-10, err_msg=msg)
        np.testing.assert_allclose(m.hyper, hy, rtol=1e-9, atol=1e-10, err_msg=msg)
        e = ref.predict(th, X, k) - y
        np.testing.assert_allclose(rmse[0], np.sqrt(np.mean(e * e)), rtol=1e-10, err_msg=msg)
    if fix is not None:
        assert m.hyper[0] == 1.3


def test_draws_are_the_documented_distributions():
    out = np.zeros(100000)
    slots = np.arange(out.size, dtype=np.int64)
    _core.bfm_random(out, 3, 0, slots)
    assert abs(out.mean()) < 0.015 and abs(out.var() - 1) < 0.02
    again = np.zeros(out.size)
    _core.bfm_random(again, 3, 0, slots)
    np.testing.assert_array_equal(out, again)
    for shape in (0.4, 2.5, 500.0):
        _core.bfm_random(out, 3, 1, slots, shape)
        assert out.min() > 0
        assert abs(out.mean() / shape - 1) < 0.02 and abs(out.var() / shape - 1) < 0.05


def test_wishart_draws_have_the_wishart_moments():
    """The Bartlett factor's A A' ~ Wishart(nu, I): mean nu I, variance 2 nu on the diagonal
    and nu off it; the same stream gives the same draw."""
    k, nu, N = 4, 6.5, 20000
    W = np.zeros((N, k, k))
    A = np.zeros((k, k))
    for i in range(N):
        _core.bfm_stream(A, 5, 2, i, nu)
        assert np.all(np.triu(A, 1) == 0) and np.all(np.diag(A) > 0)
        W[i] = A @ A.T
    np.testing.assert_allclose(W.mean(0), nu * np.eye(k), atol=0.12)
    var = W.var(0)
    np.testing.assert_allclose(np.diag(var) / (2 * nu), 1, atol=0.06)
    np.testing.assert_allclose(var[np.triu_indices(k, 1)] / nu, 1, atol=0.06)
    B = np.zeros((k, k))
    _core.bfm_stream(B, 5, 2, N - 1, nu)
    np.testing.assert_array_equal(A, B)
    z = np.zeros(3)
    _core.bfm_stream(z, 5, 2, 7)
    assert np.all(np.isfinite(z)) and len(set(z)) == 3
    with pytest.raises(ValueError, match="nu"):
        _core.bfm_stream(A, 5, 2, 0, 2.5)


def test_rank0_chain_converges_to_bayesian_linear_regression():
    rng = np.random.default_rng(5)
    y, blocks, idx, x0, group = small_problem(rng, n=80)
    G = 4
    h = np.zeros(1 + 2 * G)
    h[0] = 2.0
    h[1:1 + G] = [0.3, -0.2, 0.1, 0.0]
    h[1 + G:] = [2.0, 3.0, 4.0, 2.5]
    m = BayesianFM(y, blocks, idx, x0, group, n_factors=0, n_samples=60000, burn_in=200, seed=1,
                   fix=('alpha', 'groups'), hyper=h, reg_0=4.0, keep_samples=True)
    m.fit()
    X = ref.dense_design([b[:3] + (int(b[6][0]),) for b in m.blocks], idx, x0, y.size)
    A = np.hstack([np.ones((y.size, 1)), X])
    prec = np.concatenate([[4.0], h[1 + G:][group]])
    mean = np.concatenate([[0.0], h[1:1 + G][group]])
    post, cov = ref.blr_posterior(A, y.astype(np.float64), 2.0, prec, mean)
    sd = np.sqrt(np.diag(cov))
    err = np.abs(m.theta_mean - post)
    assert err.max() < 0.1 * sd.max(), (err / sd).max()
    var = m.samples[:m.n_kept].var(0)
    np.testing.assert_allclose(var, sd ** 2, rtol=0.1)


def planted(n=20000, nu=2600, ni=2300, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nu, n)
    i = rng.integers(0, ni, n)
    pu, qi = rng.normal(size=(nu, 2)), rng.normal(size=(ni, 2))
    y = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) + rng.normal(0, .3, n)), 1, 5)
    return u, i, y


def generic_model(n_threads, seed=3, **kw):
    u, i, y = planted()
    n, nu, ni = y.size, 2600, 2300
    eye = lambda m: (np.arange(m + 1, dtype=np.int64), np.arange(m, dtype=np.int32), np.ones(m, np.float32), m)
    days = np.arange(n) % 40
    x0 = (np.arange(n + 1, dtype=np.int64), days.astype(np.int32), np.ones(n, np.float32), 40)
    group = np.array([0] * 40 + [1] * nu + [2] * ni, np.int32)
    ev = (np.stack([u[:300], i[:300]]), (np.arange(301, dtype=np.int64), days[:300].astype(np.int32),
                                          np.ones(300, np.float32), 40))
    return BayesianFM(y, [eye(nu), eye(ni)], np.stack([u, i]), x0, group, n_factors=4,
                      n_samples=8, burn_in=2, seed=seed, n_threads=n_threads, eval_rows=ev, **kw)


def test_same_chain_for_any_thread_count_and_segments():
    runs = []
    for t in (1, 2, 3):
        m = generic_model(t)
        rmse = m.run_sweeps(7)
        runs.append((m, rmse))
    seg = generic_model(2)
    rmse_seg = np.concatenate([seg.run_sweeps(3), seg.run_sweeps(0), seg.run_sweeps(4)])
    m1, r1 = runs[0]
    for m, r in runs[1:] + [(seg, rmse_seg)]:
        np.testing.assert_array_equal(m.theta, m1.theta)
        np.testing.assert_array_equal(m.theta_mean, m1.theta_mean)
        np.testing.assert_array_equal(m.hyper, m1.hyper)
        np.testing.assert_array_equal(m.eval_mean, m1.eval_mean)
        np.testing.assert_array_equal(r, r1)
    np.testing.assert_array_equal(seg.train_rmse, r1)
    assert r1[-1] < r1[0] and m1.sweeps_done == 7 and m1.n_kept == 5
    timed = generic_model(2)
    r = timed.run_for(0.05, max_sweeps=7)
    assert 1 <= r.size <= 7 and timed.sweeps_done == r.size
    np.testing.assert_array_equal(r, r1[:r.size])
    other = generic_model(1, seed=4)
    other.run_sweeps(7)
    assert not np.array_equal(other.theta, m1.theta)


def test_state_round_trip_continues_the_chain():
    a = generic_model(1, keep_samples=True)
    a.run_sweeps(4)
    st = a.get_state()
    b = generic_model(2, keep_samples=True)
    b.set_state(st)
    np.testing.assert_array_equal(a.run_sweeps(3), b.run_sweeps(3))
    np.testing.assert_array_equal(a.theta_mean, b.theta_mean)
    np.testing.assert_array_equal(a.eval_mean, b.eval_mean)
    np.testing.assert_array_equal(a.samples[:a.n_kept], b.samples[:b.n_kept])
    bad = dict(st)
    bad['theta'] = st['theta'][:-1]
    with pytest.raises(ValueError, match="state\\['theta'\\]"):
        b.set_state(bad)
    with pytest.raises(KeyError, match="lacks"):
        b.set_state({'theta': st['theta']})
    cur = a.predict_rows(a._eval, how='current')
    _core.bfm_predict(out := np.zeros(300), a.theta.reshape(1, -1), a.n_factors, a.d0, a.group,
                      a._blocks, a._eval)
    np.testing.assert_array_equal(cur, out)


def test_ctrl_c_stops_inside_a_sweep_and_the_chain_resumes_unchanged():
    import _thread
    import threading
    m = generic_model(1)
    m.run_sweeps(1)

    def ctrl_c_while_sampling():       # once sweeps advance inside the next call
        while m.counters[0] < 3:
            time.sleep(0.0005)
        _thread.interrupt_main()

    poller = threading.Thread(target=ctrl_c_while_sampling)
    poller.start()
    with pytest.raises(KeyboardInterrupt):
        m.run_sweeps(10 ** 6)
    poller.join()
    stopped = m.sweeps_done
    assert 1 <= stopped < 10 ** 6 and m.train_rmse.size == stopped
    m.run_sweeps(2)                     # finishes the interrupted sweep, then one more
    ref_model = generic_model(1)
    ref_model.run_sweeps(stopped + 2)
    np.testing.assert_array_equal(m.train_rmse, ref_model.train_rmse)
    np.testing.assert_array_equal(m.theta, ref_model.theta)
    np.testing.assert_array_equal(m.eval_mean, ref_model.eval_mean)


def test_eval_mean_is_the_average_of_the_kept_samples():
    m = generic_model(2, keep_samples=True)
    m.fit()
    assert m.n_kept == 6 and m.samples.shape[0] >= 6
    rows = m._eval
    np.testing.assert_allclose(m.predict_rows(rows, how='samples'), m.eval_predictions(), rtol=1e-12)
    np.testing.assert_allclose(m.theta_mean, m.samples[:6].mean(0), rtol=1e-10, atol=1e-14)
    plug = m.predict_rows(rows, how='mean')
    assert plug.shape == (300,) and np.all(np.isfinite(plug))


# ---------------------------------------------------------------- the collab builder

@pytest.fixture
def dated(synth_ratings):
    df = synth_ratings.copy()
    df['timestamp'] = 880_000_000 + (np.arange(len(df)) % 30) * 86400 + 3600
    return df


def dls_of(df):
    return CollabDataLoaders.from_df(df, valid_idx=np.arange(len(df) - 300, len(df)), bs=64)


def meta_frames(df):
    users = np.unique(df.user)
    items = np.unique(df.item)
    um = pd.DataFrame({'age': 20 + users % 40, 'gender': np.where(users % 2, 'M', 'F')}, index=users)
    im = pd.DataFrame({'drama': items % 2, 'year': 1950 + items % 50}, index=items)
    return um, im


def test_collab_builder_runs_and_predicts(dated):
    dls = dls_of(dated)
    um, im = meta_frames(dated)
    m = bayes_fm(dls, n_factors=3, n_samples=40, burn_in=10, implicit='both', date_name='timestamp',
                 user_meta=um, item_meta=im, seed=0, keep_samples=True)
    assert {'user', 'user_implicit', 'user_meta', 'item', 'item_implicit', 'item_meta', 'date'} <= set(m._feature_slices)
    assert m.group_names[:3] == ['date', 'user_day', 'user'] and 'user_gender' in m.group_names
    rmse = m.fit()
    assert rmse.shape == (40,) and rmse[-1] < 1.0
    vp = m.valid_preds()
    assert vp.shape == (300,)
    dates = dls.valid.df.timestamp
    np.testing.assert_allclose(m.predict(dls.valid.x, dates=dates, how='samples'), vp, rtol=1e-10)
    np.testing.assert_array_equal(m.predict(dls.valid.x, dates=dates), vp)
    mse = m.valid_mse()
    assert mse < np.var(dls.valid.y)           # better than predicting the mean
    assert m.bias().shape == (m.n_items,) and m.weight(is_item=False).shape == (m.n_users, 3)
    assert m.weight(effective=True).shape == (m.n_items, 3)
    top, sim = m.most_similar(4, n=5)
    assert top.shape == (5,) and 4 not in top and 0 not in top and np.all(np.diff(sim) <= 0)
    W = m.weight()
    cos = W @ W[4] / (np.linalg.norm(W, axis=1) * np.linalg.norm(W[4]))
    np.testing.assert_allclose(sim, cos[top], rtol=1e-12)
    fu = m.fold_in_user(dls.train.x[:5, 1], dls.train.y[:5])
    assert np.all(np.isfinite(fu['scores']))
    with pytest.raises(ValueError, match="dates"):
        m.predict(dls.valid.x[:5])


def test_factor_prior_auto_is_wishart_for_plain_mf_only(synth_ratings):
    dls = dls_of(synth_ratings)
    plain = bayes_fm(dls, n_factors=2, n_samples=5, burn_in=1, implicit='none', seed=0)
    rich = bayes_fm(dls, n_factors=2, n_samples=5, burn_in=1, implicit='user', seed=0)
    forced = bayes_fm(dls, n_factors=2, n_samples=5, burn_in=1, implicit='none', seed=0,
                      factor_prior='gamma')
    assert (plain.factor_prior, rich.factor_prior, forced.factor_prior) == ('wishart', 'gamma', 'gamma')
    G, K = plain.n_groups, 2
    assert plain.n_hyper == 1 + 2 * G * (1 + K) + G * K * K and forced.n_hyper == 1 + 2 * G * (1 + K)
    plain.fit()
    forced.fit()
    assert not np.array_equal(plain.valid_preds(), forced.valid_preds())
    h = plain.hyper_means()
    L = h['Lambda_V']
    np.testing.assert_allclose(L, L.transpose(0, 2, 1))
    np.testing.assert_array_equal(np.diagonal(L, axis1=1, axis2=2), h['lambda_V'])
    assert np.all(np.linalg.eigvalsh(L) > 0)
    with pytest.raises(ValueError, match="factor_prior"):
        bayes_fm(dls, n_factors=2, n_samples=5, burn_in=1, factor_prior='normal')


def test_fold_in_user_recovers_a_training_user(synth_ratings):
    dls = dls_of(synth_ratings)
    m = bayes_fm(dls, n_factors=2, n_samples=60, burn_in=20, implicit='user', seed=1)
    m.fit()
    u = 5
    rows = dls.train.x[:, 0] == u
    fu = m.fold_in_user(dls.train.x[rows, 1], dls.train.y[rows])
    assert fu['scores'].shape == (m.n_items,) and fu['factors'].shape == (2,)
    own = fu['scores'][dls.train.x[rows, 1]]
    assert np.mean((own - dls.train.y[rows]) ** 2) < np.var(dls.train.y[rows]) + 1e-9
    with pytest.raises(ValueError, match="non-empty"):
        m.fold_in_user([], [])
    with pytest.raises(IndexError, match="items"):
        m.fold_in_user([0], [3.0])


def test_bad_input_raises_clearly(dated):
    dls = dls_of(dated)
    um, im = meta_frames(dated)
    um.loc[um.index[3], 'age'] = np.nan
    with pytest.raises(ValueError, match="user_meta: column 'age' has missing values"):
        bayes_fm(dls, user_meta=um)
    with pytest.raises(KeyError, match="item_meta has no row"):
        bayes_fm(dls, item_meta=im.iloc[5:])
    bad = dated.copy()
    bad['timestamp'] = 'yesterday'
    with pytest.raises(TypeError, match="date_name='timestamp'.*dates"):
        bayes_fm(dls_of(bad), date_name='timestamp')
    with pytest.raises(KeyError, match="date_name='when'"):
        bayes_fm(dls, date_name='when')
    with pytest.raises(ValueError, match="implicit"):
        bayes_fm(dls, implicit='items')
    with pytest.raises(ValueError, match="burn_in"):
        bayes_fm(dls, n_samples=10, burn_in=10)
    m = bayes_fm(dls, n_factors=2, n_samples=5, burn_in=2, implicit='none')
    with pytest.raises(RuntimeError, match="no sample is averaged yet"):
        m.valid_preds()
    with pytest.raises(ValueError, match="keep_samples"):
        m.run_sweeps(3)
        m.predict(dls.valid.x[:5], how='samples')
    with pytest.raises(IndexError, match="item indices"):
        m.predict(np.array([[1, 10**6]]))
    with pytest.raises(ValueError, match="n must be"):
        m.run_sweeps(-1)


def test_binding_validates_everything():
    rng = np.random.default_rng(0)
    y, blocks, idx, x0, group = small_problem(rng)
    m = BayesianFM(y, blocks, idx, x0, group, n_factors=2, n_samples=3, burn_in=0, seed=0)
    tr = list(m._train)
    args = lambda train: dict(rmse=np.zeros(1), theta=m.theta, hyper=m.hyper, theta_mean=m.theta_mean,
                              hyper_mean=m.hyper_mean, eval_mean=None, cache=m.cache, counters=m.counters, k=2,
                              d0=m.d0, group=m.group, blocks=m._blocks, train=tuple(train), eval=None,
                              prior=m.prior, n_sweeps=1, burn_in=0, seed=0)
    bad = list(tr)
    bad[7] = tr[7].astype(np.int64)
    with pytest.raises(TypeError, match="'idx' must have dtype int32"):
        _core.bfm_run(**args(bad))
    bad = list(tr)
    bad[7] = tr[7].copy()
    bad[7][1, 4] = 99
    with pytest.raises(IndexError, match="block 1"):
        _core.bfm_run(**args(bad))
    bad = list(tr)
    bad[0] = tr[0].copy()
    bad[0][2] = np.nan
    with pytest.raises(ValueError, match="non-finite target"):
        _core.bfm_run(**args(bad))
    with pytest.raises(TypeError, match="tuple of 10"):
        _core.bfm_run(**args(tr[:9]))
    a = args(tr)
    a['prior'] = (1.0, -1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="prior"):
        _core.bfm_run(**a)
    a = args(tr)
    a['theta'] = np.zeros(3)
    with pytest.raises(ValueError, match="'theta' has shape"):
        _core.bfm_run(**a)
    with pytest.raises(ValueError, match="shape"):
        _core.bfm_random(np.zeros(1), 0, 0, np.zeros(1, np.int64), -2.0)
    before = m.theta.copy()
    _core.bfm_run(**args(tr))
    assert not np.array_equal(before, m.theta)
    dup = (np.array([0, 2, 3], np.int64), np.array([1, 1, 0], np.int32), np.ones(3, np.float32), 3)
    with pytest.raises(ValueError, match="row 0 lists a column twice"):
        BayesianFM(np.ones(2), [dup], np.zeros((1, 2), np.int32))
    with pytest.raises(ValueError, match="y holds NaN"):
        BayesianFM(np.array([1.0, np.nan]), n_factors=1)
    with pytest.raises(ValueError, match="idx"):
        BayesianFM(y, blocks, None, x0, group)


def core_good_args(fn):
    "Fresh keyword arguments of a successful call of _core.bfm_* (for the hardening suites)."
    rng = np.random.default_rng(0)
    y, blocks, idx, x0, group = small_problem(rng, n=12, M=(3, 2), d0=2)
    m = BayesianFM(y, blocks, idx, x0, group, n_factors=2, n_samples=3, burn_in=0, seed=0,
                   eval_rows=(idx[:, :4].copy(), (x0[0][:5].copy(), x0[1][:x0[0][4]].copy(),
                                                  x0[2][:x0[0][4]].copy(), x0[3])))
    if fn == "bfm_run":
        return dict(rmse=np.zeros(1), theta=m.theta, hyper=m.hyper, theta_mean=m.theta_mean,
                    hyper_mean=m.hyper_mean, eval_mean=m.eval_mean, cache=m.cache,
                    counters=m.counters, k=2, d0=m.d0, group=m.group, blocks=m._blocks,
                    train=m._train, eval=m._eval, prior=m.prior, n_sweeps=1, burn_in=0, seed=0)
    if fn == "bfm_predict":
        return dict(out=np.zeros(4), thetas=np.stack([m.theta, m.theta * 0.5]), k=2, d0=m.d0,
                    group=m.group, blocks=m._blocks, rows=m._eval)
    if fn == "bfm_random":
        return dict(out=np.zeros(5), seed=1, sweep=2, slots=np.arange(5, dtype=np.int64), shape=1.5)
    if fn == "bfm_stream":
        return dict(out=np.zeros((3, 3)), seed=1, sweep=2, slot=4, nu=4.5)
    raise KeyError(fn)


def test_nested_arrays_keep_their_reference_counts():
    import sys
    for fn in ("bfm_run", "bfm_predict"):
        kw = core_good_args(fn)
        inner = [a for v in kw.values() if isinstance(v, tuple) for t in v
                 for a in (t if isinstance(t, tuple) else (t,)) if isinstance(a, np.ndarray)]
        before = [sys.getrefcount(a) for a in inner]
        for _ in range(200):
            getattr(_core, fn)(**kw)
        bad = dict(kw)
        bad["group"] = kw["group"].astype(np.int64)
        for _ in range(50):
            with pytest.raises(TypeError):
                getattr(_core, fn)(**bad)
        assert [sys.getrefcount(a) for a in inner] == before, fn


@pytest.mark.slow
def test_ml100k_fixed_split_beats_sgd():
    p = ml100k_path()
    split = p.parent / 'splits'
    if not (split / 'ml100k_train.tsv').exists():
        pytest.skip(f"{split / 'ml100k_train.tsv'} does not exist")
    names = ['user', 'movie', 'rating']
    tr = pd.read_csv(split / 'ml100k_train.tsv', sep='\t', header=None, names=names)
    va = pd.read_csv(split / 'ml100k_valid.tsv', sep='\t', header=None, names=names)
    ud = pd.read_csv(p / 'u.data', sep='\t', header=None, names=names + ['timestamp'])
    df = pd.concat([tr, va], ignore_index=True).merge(ud[['user', 'movie', 'timestamp']], how='left')
    dls = CollabDataLoaders.from_df(df, valid_idx=np.arange(len(tr), len(df)))
    m = bayes_fm(dls, n_factors=10, n_samples=120, burn_in=30, implicit='both',
                 date_name='timestamp', seed=0, n_threads=2)
    m.fit()
    assert m.valid_mse() < 0.785      # SGD-trained models level off near 0.81
