"""Replay fastai 2.7.13's recorded trajectory (shared/reference/fastai_golden_dot.npz) through
collabc's C core: same initial parameters, same batches, same lr/mom per step. Every parameter
snapshot (steps 1, 2, 10, 100, 1250) and the final valid MSE must match within 1e-5.

The recording is the shared file in COLLABC_REFERENCE (a folder holding fastai_golden_dot.npz)
when that is set, as in .ci/run; otherwise it is rebuilt from the committed row numbers
(tests/data/fastai_replay.npz) and COLLABC_DATA's ml-100k/u.data (tests/replay.py). With neither
the tests skip and say why.
"""

import numpy as np

from collabc import _core

NAMES = ["u_weight.weight", "i_weight.weight", "u_bias.weight", "i_bias.weight"]
SNAPS = [(1, "step1"), (2, "step2"), (10, "step10"), (100, "step100"), (1250, "final")]


def _block(d, prefix):
    return np.concatenate([d[f"{prefix}/{n}"].ravel() for n in NAMES]).astype(np.float32)


def test_replay_dot_every_snapshot(golden_dot):
    d = golden_dot
    nu, ni = int(d["n_users"]), int(d["n_items"])
    k = d["init/u_weight.weight"].shape[1]
    params = _block(d, "init")
    P = params.size
    grads, m, v = (np.zeros(P, np.float32) for _ in range(3))
    bx = d["batch_x"].astype(np.int32)
    by = d["batch_y"].astype(np.float32)
    bs = bx.shape[1]
    step, done, all_losses = 0, 0, []
    for n_steps, snap in SNAPS:
        x = np.ascontiguousarray(bx[done:n_steps].reshape(-1, 2))
        y = np.ascontiguousarray(by[done:n_steps].ravel())
        losses = np.zeros(n_steps - done)
        step, bad = _core.dot_fit_epoch(
            params, grads, m, v, losses, x, y, np.arange(len(y), dtype=np.int64),
            np.ascontiguousarray(d["lr"][done:n_steps]), np.ascontiguousarray(d["mom"][done:n_steps]),
            n_users=nu, n_items=ni, n_factors=k, has_bias=True, y_range=(0.0, 5.5), bs=bs,
            opt="adam", wd=0.1, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=step)
        assert bad == -1 and step == n_steps
        all_losses.append(losses)
        ref = _block(d, snap)
        err = np.abs(params.astype(np.float64) - ref).max()
        assert err < 1e-5, f"after {n_steps} steps the parameters differ from fastai by {err:.3g}"
        done = n_steps
    losses = np.concatenate(all_losses)
    np.testing.assert_allclose(losses, d["loss"], atol=1e-5, err_msg="per-batch losses differ")

    vx = d["valid_x"].astype(np.int32)
    out = np.empty(len(vx), np.float32)
    _core.dot_predict(out, params, vx, nu, ni, k, True, (0.0, 5.5))
    valid_mse = _core.mse_forward(out, d["valid_y"].astype(np.float32))
    assert abs(valid_mse - float(d["valid_loss"])) < 1e-5, (valid_mse, float(d["valid_loss"]))


def test_schedule_matches_recorded(golden_dot):
    "collabc's one-cycle for one epoch of 1250 batches reproduces fastai's recorded lr and mom."
    d = golden_dot
    n = len(d["lr"])
    pos = np.arange(n, dtype=np.float64) / n
    lrs = _core.onecycle(pos, 5e-3 / 25, 5e-3, 5e-3 / 1e5, 0.25)
    moms = _core.onecycle(pos, 0.95, 0.85, 0.95, 0.25)
    # fastai rounds each phase's local position to float32 (its pcts are a float32 tensor),
    # which moves the last, tiny learning rates by up to ~2e-5 relative.
    np.testing.assert_allclose(lrs, d["lr"], rtol=5e-5)
    np.testing.assert_allclose(moms, d["mom"], rtol=1e-6)
