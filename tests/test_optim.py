"""fastai's optimizers, schedule and the dot-model epoch driver in C against the float64
reference: adam_step / sgd_step over 200 scheduled steps, onecycle against the lesson's
numbers (spec 1.10), dot_fit_epoch over several epochs for every optimizer and model variant,
and the non-finite-loss guard."""
import numpy as np
import pytest

import reference as ref  # tests/, put on sys.path by conftest.py
from collabc import _core



RTOL = 1e-5  # float32 trajectories vs float64, relative to the parameter scale


def assert_param_close(actual, expected, err_msg, rtol=RTOL):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    err = np.abs(np.asarray(actual, dtype=np.float64) - expected).max(initial=0.0)
    assert err <= rtol * scale, f"{err_msg}: max abs error {err:.3g} > {rtol * scale:.3g}"


# ---------------------------------------------------------------- adam_step / sgd_step

N_STEPS = 200
OPT_SIZES = [1, 17, 1000]  # odd sizes exercise the vector loops' tails


def _quadratic_grad(p, t, noise):
    "Gradient of a noisy quadratic: depends on the parameters, like a real loss."
    return 0.5 * (np.asarray(p, dtype=np.float64) - t) + noise


@pytest.mark.parametrize("decouple_wd", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("N", OPT_SIZES)
def test_adam_step_matches_reference_over_200_steps(N, wd, decouple_wd):
    seed = 10 + N
    rng = np.random.default_rng(seed)
    lrs, moms = ref.fit_one_cycle_scheds(N_STEPS, 3e-2)
    t = rng.normal(size=N)
    p32 = rng.normal(size=N).astype(np.float32)
    m32, v32 = np.zeros(N, np.float32), np.zeros(N, np.float32)
    p, m, v = p32.astype(np.float64), np.zeros(N), np.zeros(N)
    for s in range(N_STEPS):
        noise = rng.normal(size=N)
        g32 = _quadratic_grad(p32, t, noise).astype(np.float32)
        g_before = g32.copy()
        _core.adam_step(p32, g32, m32, v32, lrs[s], moms[s], 0.99, 1e-5, wd, s + 1, decouple_wd)
        p, m, v = ref.adam_step(p, _quadratic_grad(p, t, noise), m, v, lrs[s], moms[s], 0.99,
                                1e-5, wd, s + 1, decouple_wd)
        msg = (f"adam_step N={N} wd={wd} decouple_wd={decouple_wd} seed={seed} step={s + 1} "
               f"lr={lrs[s]:.4g} mom={moms[s]:.4g} float32")
        np.testing.assert_array_equal(g32, g_before, err_msg=msg + ": g was modified")
        assert_param_close(p32, p, msg + " p")
        assert_param_close(m32, m, msg + " m")
        assert_param_close(v32, v, msg + " v")


def test_adam_first_step_moves_every_parameter_by_about_lr():
    "Debiased Adam's first step is lr * g / (|g| + eps): the size fastai's users rely on."
    g = np.array([1.0, -2.0, 0.5, -1e-3], np.float32)
    p = np.zeros(4, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    _core.adam_step(p, g, m, v, 1e-2, 0.9, 0.99, 1e-5, 0.0, 1)
    expected = -1e-2 * g / (np.abs(g) + 1e-5)
    np.testing.assert_allclose(p, expected, rtol=1e-5)


def test_adam_step_uses_the_current_mom_for_debiasing():
    "Two steps with different mom: debias1 at step 2 is 1 - mom_2**2, not 1 - mom_1*mom_2."
    g = np.array([0.3, -0.7], np.float32)
    p, m, v = np.ones(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32)
    rp, rm, rv = np.ones(2), np.zeros(2), np.zeros(2)
    for step, mom in [(1, 0.95), (2, 0.6)]:
        _core.adam_step(p, g, m, v, 1e-1, mom, 0.99, 1e-5, 0.0, step)
        rp, rm, rv = ref.adam_step(rp, g, rm, rv, 1e-1, mom, 0.99, 1e-5, 0.0, step)
    np.testing.assert_allclose(p, rp, rtol=1e-6)
    np.testing.assert_allclose(m, rm, rtol=1e-6)


@pytest.mark.parametrize("momentum", [True, False])
@pytest.mark.parametrize("decouple_wd", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("N", OPT_SIZES)
def test_sgd_step_matches_reference_over_200_steps(N, wd, decouple_wd, momentum):
    seed = 20 + N
    rng = np.random.default_rng(seed)
    lrs, moms = ref.fit_one_cycle_scheds(N_STEPS, 0.2)
    t = rng.normal(size=N)
    p32 = rng.normal(size=N).astype(np.float32)
    buf32 = np.zeros(N, np.float32) if momentum else None
    p, buf = p32.astype(np.float64), (np.zeros(N) if momentum else None)
    for s in range(N_STEPS):
        noise = rng.normal(size=N)
        g32 = _quadratic_grad(p32, t, noise).astype(np.float32)
        g_before = g32.copy()
        _core.sgd_step(p32, g32, buf32, lrs[s], moms[s], wd, decouple_wd)
        p, buf = ref.sgd_step(p, _quadratic_grad(p, t, noise), buf, lrs[s], moms[s], wd,
                              decouple_wd)
        msg = (f"sgd_step N={N} wd={wd} decouple_wd={decouple_wd} momentum={momentum} "
               f"seed={seed} step={s + 1} lr={lrs[s]:.4g} mom={moms[s]:.4g} float32")
        np.testing.assert_array_equal(g32, g_before, err_msg=msg + ": g was modified")
        assert_param_close(p32, p, msg + " p")
        if momentum:
            assert_param_close(buf32, buf, msg + " buf")


def test_sgd_step_formulas_one_step_by_hand():
    p = np.array([2.0, -4.0], np.float32)
    g = np.array([1.0, 3.0], np.float32)
    # plain, decoupled wd: p = p*(1 - lr*wd) - lr*g
    q = p.copy()
    _core.sgd_step(q, g, None, 0.1, 0.9, 0.5)
    np.testing.assert_allclose(q, p * (1 - 0.05) - 0.1 * g, rtol=1e-6)
    # momentum, L2: g' = g + wd*p; buf = mom*buf + g'; p -= lr*buf  (no dampening)
    q, buf = p.copy(), np.array([1.0, 1.0], np.float32)
    _core.sgd_step(q, g, buf, 0.1, 0.9, 0.5, decouple_wd=False)
    gl = g + 0.5 * p
    np.testing.assert_allclose(buf, 0.9 * 1.0 + gl, rtol=1e-6)
    np.testing.assert_allclose(q, p - 0.1 * (0.9 + gl), rtol=1e-6)


def test_optimizer_steps_on_empty_blocks():
    e = np.zeros(0, np.float32)
    _core.adam_step(e, e.copy(), e.copy(), e.copy(), 1e-3, 0.9, 0.99, 1e-5, 0.1, 1)
    _core.sgd_step(e, e.copy(), e.copy(), 1e-3, 0.9, 0.1)


# ---------------------------------------------------------------- onecycle

LESSON = dict(n=5 * 1250, lr_max=5e-3)


def _lesson_scheds():
    pos = np.arange(LESSON["n"]) / LESSON["n"]
    lr_max = LESSON["lr_max"]
    lrs = _core.onecycle(pos, lr_max / 25, lr_max, lr_max / 1e5, 0.25)
    moms = _core.onecycle(pos, 0.95, 0.85, 0.95, 0.25)
    return lrs, moms


def test_onecycle_lesson_numbers():
    lrs, moms = _lesson_scheds()
    assert lrs.dtype == np.float64 and lrs.shape == (6250,) and moms.shape == (6250,)
    assert lrs[0] == pytest.approx(2.0e-4, rel=1e-12)
    assert moms[0] == pytest.approx(0.95, rel=1e-12)
    assert lrs[1563] == pytest.approx(5e-3, rel=1e-6)
    assert moms[1563] == pytest.approx(0.85, rel=1e-6)
    assert lrs[3125] == pytest.approx(3.75e-3, rel=1e-3)
    assert moms[3125] == pytest.approx(0.875, rel=1e-3)
    assert lrs[6249] == pytest.approx(5.06e-8, rel=2e-3)
    assert moms[6249] == pytest.approx(0.95, rel=1e-6)
    # warm-up rises, annealing falls, the peak is at pct_start
    assert np.all(np.diff(lrs[:1563]) > 0) and np.all(np.diff(lrs[1563:]) < 0)
    assert int(np.argmax(lrs)) == 1563 and int(np.argmin(moms)) == 1563


@pytest.mark.parametrize("start,middle,end,pct", [
    (2e-4, 5e-3, 5e-8, 0.25), (0.95, 0.85, 0.95, 0.25), (1.0, 3.0, -2.0, 0.5),
    (1e-3, 1e-2, 1e-6, 0.9), (0.1, 1.0, 0.01, 0.01)])
def test_onecycle_matches_reference(start, middle, end, pct):
    rng = np.random.default_rng(3)
    pos = np.concatenate([np.linspace(0, 1, 501), rng.uniform(0, 1, 200),
                          [pct, np.nextafter(pct, 0)]])
    pos_before = pos.copy()
    got = _core.onecycle(pos, start, middle, end, pct)
    np.testing.assert_allclose(got, ref.onecycle(pos, start, middle, end, pct), rtol=1e-12,
                               atol=1e-15 * max(abs(start), abs(middle), abs(end)),
                               err_msg=f"onecycle start={start} middle={middle} end={end} pct={pct}")
    np.testing.assert_array_equal(pos, pos_before)
    assert got[0] == pytest.approx(start, rel=1e-12)
    assert got[-2] == pytest.approx(middle, rel=1e-12)


def test_onecycle_empty_and_fresh_output():
    pos = np.zeros(0)
    out = _core.onecycle(pos, 1.0, 2.0, 3.0, 0.3)
    assert out.shape == (0,) and out.dtype == np.float64
    pos = np.array([0.0, 0.5])
    a = _core.onecycle(pos, 1.0, 2.0, 3.0, 0.3)
    b = _core.onecycle(pos, 1.0, 2.0, 3.0, 0.3)
    assert not np.shares_memory(a, b) and not np.shares_memory(a, pos)
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata


# ---------------------------------------------------------------- dot_fit_epoch

NU, NI, K, R, BS = 23, 17, 4, 203, 32  # the last batch is partial (203 = 6*32 + 11)


def _problem(seed, has_bias):
    rng = np.random.default_rng(seed)
    P = ref.dot_n_params(NU, NI, K, has_bias)
    params = (rng.normal(size=P) * 0.3).astype(np.float32)
    # user NU-1 is never rated: its row only moves by weight decay and decaying moments
    x = np.stack([rng.integers(0, NU - 1, R), rng.integers(0, NI, R)], 1).astype(np.int32)
    y = rng.uniform(1, 5, R).astype(np.float32)
    return rng, params, x, y


def _buffers(P, opt, momentum):
    m = np.zeros(P, np.float32) if (opt == "adam" or momentum) else None
    v = np.zeros(P, np.float32) if opt == "adam" else None
    return m, v


def _as64(a):
    return None if a is None else a.astype(np.float64)


FIT_CASES = [
    # opt, momentum, has_bias, y_range, decouple_wd, n_wd fraction
    ("adam", True, True, (0.0, 5.5), True, 1.0),
    ("adam", True, True, None, True, 1.0),
    ("adam", True, False, None, True, 1.0),
    ("adam", True, False, (0.0, 5.5), False, 1.0),
    ("adam", True, True, (0.5, 5.5), False, 0.5),
    ("sgd", True, True, (0.0, 5.5), True, 1.0),
    ("sgd", True, False, None, False, 0.5),
    ("sgd", False, True, (0.0, 5.5), True, 1.0),
    ("sgd", False, False, None, False, 0.0),
]


@pytest.mark.parametrize("opt,momentum,has_bias,y_range,decouple_wd,wd_frac", FIT_CASES)
def test_dot_fit_epoch_matches_reference_over_three_epochs(opt, momentum, has_bias, y_range,
                                                           decouple_wd, wd_frac):
    seed = 1
    rng, params, x, y = _problem(seed, has_bias)
    P = params.size
    n_wd = int(P * wd_frac)
    grads = np.zeros(P, np.float32)
    m, v = _buffers(P, opt, momentum)
    J, E = -(-R // BS), 3
    lrs, moms = ref.fit_one_cycle_scheds(J * E, 1e-2 if opt == "adam" else 0.1)
    kw = dict(n_users=NU, n_items=NI, n_factors=K, has_bias=has_bias, y_range=y_range, bs=BS,
              opt=opt, wd=0.1, n_wd=n_wd, sqr_mom=0.99, eps=1e-5, decouple_wd=decouple_wd)
    st = dict(params=_as64(params), m=_as64(m), v=_as64(v), step=0)
    step = 0
    ro = dict(x=x.copy(), y=y.copy())
    for e in range(E):
        order = rng.permutation(R).astype(np.int64)
        lr_e, mom_e = lrs[e * J:(e + 1) * J].copy(), moms[e * J:(e + 1) * J].copy()
        losses = np.full(J, np.nan)
        order_before = order.copy()
        step, bad = _core.dot_fit_epoch(params, grads, m, v, losses, x, y, order, lr_e, mom_e,
                                        step=step, **kw)
        st = ref.dot_fit_epoch(st["params"], st["m"], st["v"], x, y, order, lr_e, mom_e,
                               step=st["step"], **kw)
        msg = (f"dot_fit_epoch opt={opt} momentum={momentum} has_bias={has_bias} "
               f"y_range={y_range} decouple_wd={decouple_wd} n_wd={n_wd}/{P} seed={seed} "
               f"epoch={e} R={R} bs={BS} K={K}")
        assert (step, bad) == (st["step"], -1) == ((e + 1) * J, st["bad_batch"]), msg
        np.testing.assert_allclose(losses, st["losses"], rtol=RTOL, err_msg=msg + " losses")
        assert_param_close(params, st["params"], msg + " params")
        if m is not None:
            assert_param_close(m, st["m"], msg + " m")
        if v is not None:
            assert_param_close(v, st["v"], msg + " v")
        assert not grads.any(), msg + ": grads are not zero on return"
        for name, a in [("x", x), ("y", y)]:
            np.testing.assert_array_equal(a, ro[name], err_msg=f"{msg}: {name} modified")
        np.testing.assert_array_equal(order, order_before, err_msg=msg + ": order modified")


def test_dot_fit_epoch_untouched_row_only_decays_with_sgd():
    "The '#na#' row (never indexed) only decays: w0 *= prod(1 - lr_t*wd)."
    rng, params, x, y = _problem(4, True)
    P = params.size
    lrs, moms = ref.fit_one_cycle_scheds(7, 0.1)
    start = params.copy()
    _core.dot_fit_epoch(params, np.zeros(P, np.float32), None, None, np.zeros(7), x, y,
                        np.arange(R, dtype=np.int64), lrs, moms, n_users=NU, n_items=NI,
                        n_factors=K, has_bias=True, y_range=(0.0, 5.5), bs=BS, opt="sgd",
                        wd=0.1, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0)
    row = slice((NU - 1) * K, NU * K)
    np.testing.assert_allclose(params[row], start[row] * np.prod(1 - lrs * 0.1), rtol=1e-6)


def test_dot_fit_epoch_fewer_batches_than_rows_and_zero_batches():
    "Batches use only order[:J*bs]; J=0 is a no-op that returns the step unchanged."
    rng, params, x, y = _problem(5, True)
    P = params.size
    kw = dict(n_users=NU, n_items=NI, n_factors=K, has_bias=True, y_range=None, bs=50,
              opt="adam", wd=0.0, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True)
    m, v = np.zeros(P, np.float32), np.zeros(P, np.float32)
    before = params.copy()
    step, bad = _core.dot_fit_epoch(params, np.zeros(P, np.float32), m, v, np.zeros(0), x, y,
                                    np.arange(R, dtype=np.int64), np.zeros(0), np.zeros(0),
                                    step=7, **kw)
    assert (step, bad) == (7, -1)
    np.testing.assert_array_equal(params, before)
    order = rng.permutation(R).astype(np.int64)
    lrs, moms = np.full(2, 1e-2), np.full(2, 0.9)
    losses = np.zeros(2)
    step, bad = _core.dot_fit_epoch(params, np.zeros(P, np.float32), m, v, losses, x, y, order,
                                    lrs, moms, step=7, **kw)
    r = ref.dot_fit_epoch(before, np.zeros(P), np.zeros(P), x, y, order, lrs, moms, step=7, **kw)
    assert (step, bad) == (9, -1) == (r["step"], r["bad_batch"])
    np.testing.assert_allclose(losses, r["losses"], rtol=RTOL)
    assert_param_close(params, r["params"], "dot_fit_epoch J=2 bs=50 R=203")


def test_dot_fit_epoch_batch_larger_than_the_data():
    "bs > n_rows is one batch holding every row (the batch is order[0:R])."
    rng, params, x, y = _problem(6, False)
    P = params.size
    kw = dict(n_users=NU, n_items=NI, n_factors=K, has_bias=False, y_range=(0.0, 5.5),
              bs=R + 100, opt="sgd", wd=0.01, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True)
    losses = np.zeros(1)
    order = rng.permutation(R).astype(np.int64)
    start = params.copy()
    step, bad = _core.dot_fit_epoch(params, np.zeros(P, np.float32), None, None, losses, x, y,
                                    order, np.array([0.5]), np.array([0.0]), step=0, **kw)
    r = ref.dot_fit_epoch(start, None, None, x, y, order, [0.5], [0.0], step=0, **kw)
    assert (step, bad) == (1, -1)
    np.testing.assert_allclose(losses, r["losses"], rtol=RTOL)
    assert_param_close(params, r["params"], "dot_fit_epoch bs > R")


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_dot_fit_epoch_stops_before_the_step_of_a_non_finite_batch(opt):
    """A huge lr at batch 3 blows the parameters up (beyond float64 too, so the reference
    agrees), so batch 4's loss is not finite: the call returns bad_batch=4 and the model
    equals a run of exactly 4 batches."""
    rng, params, x, y = _problem(7, True)
    P = params.size
    J = -(-R // BS)
    lrs = np.full(J, 1e-2)
    lrs[3] = 1e200
    moms = np.full(J, 0.9)
    order = rng.permutation(R).astype(np.int64)
    kw = dict(n_users=NU, n_items=NI, n_factors=K, has_bias=True, y_range=None, bs=BS, opt=opt,
              wd=0.0, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True)

    def run(n_batches):
        p = params.copy()
        g = np.zeros(P, np.float32)
        m = np.zeros(P, np.float32)
        v = np.zeros(P, np.float32) if opt == "adam" else None
        losses = np.full(n_batches, -1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            step, bad = _core.dot_fit_epoch(p, g, m, v, losses, x, y, order,
                                            lrs[:n_batches].copy(), moms[:n_batches].copy(),
                                            step=11, **kw)
        return p, g, m, v, losses, step, bad

    p, g, m, v, losses, step, bad = run(J)
    assert bad == 4, f"opt={opt}: bad_batch={bad}, losses={losses}"
    assert step == 11 + bad
    assert not np.isfinite(losses[bad])
    assert np.all(np.isfinite(losses[:bad]))
    assert not g.any(), "grads are not zero after the stop"
    p4, g4, m4, v4, losses4, step4, bad4 = run(bad)
    assert (step4, bad4) == (11 + bad, -1)
    np.testing.assert_array_equal(p, p4)
    np.testing.assert_array_equal(m, m4)
    if v is not None:
        np.testing.assert_array_equal(v, v4)
    np.testing.assert_array_equal(losses[:bad], losses4)
    # the reference agrees on where it stops
    with np.errstate(over="ignore", invalid="ignore"):
        r = ref.dot_fit_epoch(params, np.zeros(P), np.zeros(P) if opt == "adam" else None, x,
                              y, order, lrs, moms, step=11, **kw)
    assert (r["bad_batch"], r["step"]) == (bad, step)


def test_dot_fit_epoch_non_finite_first_batch_leaves_everything_untouched():
    rng, params, x, y = _problem(8, False)
    P = params.size
    params[:K] = np.inf  # user 0's row
    x[:, 0] = 0
    before = params.copy()
    m, v = np.zeros(P, np.float32), np.zeros(P, np.float32)
    losses = np.zeros(3)
    with np.errstate(over="ignore", invalid="ignore"):
        step, bad = _core.dot_fit_epoch(params, np.zeros(P, np.float32), m, v, losses, x, y,
                                        np.arange(R, dtype=np.int64), np.full(3, 1e-3),
                                        np.full(3, 0.9), n_users=NU, n_items=NI, n_factors=K,
                                        has_bias=False, y_range=None, bs=BS, opt="adam", wd=0.1,
                                        n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0)
    assert (step, bad) == (0, 0)
    np.testing.assert_array_equal(params, before)
    assert not m.any() and not v.any()
