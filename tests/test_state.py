"""State lives with its owner: the data's layout (shared loaders, the caller's arrays), the
optimizer's buffers through save/load/export (resuming as if never saved, all-or-nothing
loads), and the sparse path's results depending only on the data, the seed and n_blocks."""
import copy
import threading

import numpy as np
import pandas as pd
import pytest

from collabc import (SGD, Adagrad, Adam, CollabcFileError, CollabDataLoaders, DataLoader,
                     DataLoaders, EmbeddingDotBias, Learner, collab_learner, load_learner, set_seed)


def ratings(n=4000, nu=80, ni=60, seed=0):
    rng = np.random.default_rng(seed)
    u, i = rng.integers(1, nu + 1, n), rng.integers(1, ni + 1, n)
    pu, qi = rng.normal(size=(nu + 1, 3)), rng.normal(size=(ni + 1, 3))
    r = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) + rng.normal(0, 0.3, n)), 1, 5)
    return pd.DataFrame({"user": u, "item": i, "rating": r})


def dls_for(df, seed=0, bs=32):
    set_seed(seed)
    return CollabDataLoaders.from_df(df, bs=bs, seed=0)


def learner(dls, mode, opt=Adam, seed=1, n_threads=2, **kw):
    set_seed(seed)
    learn = collab_learner(dls, n_factors=6, y_range=(0, 5.5), train_mode=mode, opt_func=opt,
                           n_threads=n_threads, **kw)
    learn.logger = lambda *a: None
    return learn


def fit(learn, mode):
    if mode == "sparse":
        learn.fit_one_cycle(3, 0.02, wd=0.01)
    else:
        learn.fit_one_cycle(2, 5e-3, wd=0.1)
    return learn.model.params.copy()


@pytest.mark.parametrize("mode", ["exact", "sparse"])
def test_learners_sharing_a_dls_in_threads_train_as_if_apart(mode):
    df = ratings()
    apart = [fit(learner(dls_for(df), mode, seed=s), mode) for s in (1, 2)]
    shared = dls_for(df)
    x0, y0 = shared.train.x.copy(), shared.train.y.copy()
    learns = [learner(shared, mode, seed=s) for s in (1, 2)]
    out, errors = [None, None], []

    def run(k):
        try:
            out[k] = fit(learns[k], mode)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(2):
        np.testing.assert_array_equal(out[k], apart[k])
    np.testing.assert_array_equal(shared.train.x, x0)        # the training pairs are untouched
    np.testing.assert_array_equal(shared.train.y, y0)


def test_the_callers_arrays_are_never_modified():
    df = ratings(3000)
    full = dls_for(df)
    x, y = full.train.x.copy(), full.train.y.astype(np.float64)   # a float64 y gets converted, x not
    x_before, y_before = x.copy(), y.copy()
    dl = DataLoader(x, y, bs=32, shuffle=True)
    assert np.shares_memory(dl.x, x)                              # built without a copy
    dls = DataLoaders(dl, full.valid, full.classes, "user", "item", "rating")
    learn = learner(dls, "sparse", opt=Adagrad)
    learn.fit(2, 0.05)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    # and the rows the sparse path trained on are exactly the caller's pairs
    bx, by, starts = dl.block_layout(learn.n_blocks)
    key = lambda a, b: np.lexsort((b, a[:, 1], a[:, 0]))        # noqa: E731
    np.testing.assert_array_equal(bx[key(bx, by)], x[key(x, y)])
    np.testing.assert_array_equal(by[key(bx, by)], y[key(x, y)].astype(np.float32))
    assert starts[-1] == len(x) and not bx.flags.writeable


@pytest.mark.parametrize("opt", [Adagrad, Adam])
def test_reorder_groups_the_callers_arrays_in_place_with_the_same_result(opt):
    "DataLoader(reorder=True): no copy of the rows for the sparse layout, the same fit bit for bit."
    full = dls_for(ratings(3000))
    results = {}
    for reorder in (False, True):
        x, y = full.train.x.copy(), full.train.y.copy()
        dl = DataLoader(x, y, bs=32, shuffle=True, reorder=reorder)
        dl.seed, dl.rng = full.train.seed, full.train.new_rng()
        learn = learner(DataLoaders(dl, full.valid, full.classes, "user", "item", "rating"), "sparse", opt=opt)
        results[reorder] = fit(learn, "sparse")
        bx, by, starts = dl.block_layout(learn.n_blocks)
        assert np.shares_memory(bx, x) == reorder and np.shares_memory(dl.x, x)
        if reorder:     # the same rows, grouped by block, read-only now
            assert not x.flags.writeable and not y.flags.writeable
            key = lambda a, b: np.lexsort((b, a[:, 1], a[:, 0]))        # noqa: E731
            x0, y0 = full.train.x, full.train.y
            np.testing.assert_array_equal(x[key(x, y)], x0[key(x0, y0)])
            np.testing.assert_array_equal(y[key(x, y)], y0[key(x0, y0)])
            assert not np.array_equal(x, x0)
            # a second fit (the layout is kept) and another grid (the arrays regrouped) still train
            results["again"] = fit(learner(DataLoaders(dl, full.valid, full.classes, "user", "item",
                                                       "rating"), "sparse", opt=opt), "sparse")
            with pytest.raises(ValueError, match=f"grouped in place for n_blocks={learn.n_blocks}"):
                dl.block_layout(learn.n_blocks + 1)      # one grid: regrouping would change the fit
            results["copied"] = fit(learner(DataLoaders(copy.deepcopy(dl), full.valid, full.classes, "user",
                                                        "item", "rating"), "sparse", opt=opt), "sparse")
        else:
            np.testing.assert_array_equal(x, full.train.x)   # the default never touches them
    np.testing.assert_array_equal(results[True], results[False])
    np.testing.assert_array_equal(results["again"], results[False])
    np.testing.assert_array_equal(results["copied"], results[False])   # a copy keeps its layout
    with pytest.raises(ValueError, match="reorder=True groups x and y in place, but they are read-only"):
        ro = full.train.x.copy()
        ro.flags.writeable = False
        DataLoader(ro, full.train.y.copy(), reorder=True)
    with pytest.raises(TypeError, match="reorder must be True or False"):
        DataLoader(full.train.x, full.train.y, reorder="yes")


def test_sparse_results_do_not_depend_on_threads_or_timing():
    df = ratings(6000)
    dls = dls_for(df)
    ref = None
    for t in range(1, 9):
        got = fit(learner(dls, "sparse", opt=Adam, n_threads=t), "sparse")
        if ref is None:
            ref = got
        np.testing.assert_array_equal(got, ref, err_msg=f"{t} threads")
    # repeated fit_one_cycle runs (segments are sized by time) give the same parameters
    np.testing.assert_array_equal(fit(learner(dls, "sparse", opt=Adam, n_threads=3), "sparse"), ref)
    # n_blocks is part of the recipe: another grid is another (valid) result
    other = fit(learner(dls, "sparse", opt=Adam, n_blocks=5), "sparse")
    assert not np.array_equal(other, ref)


@pytest.mark.parametrize("opt", [Adagrad, Adam, SGD])
def test_sparse_learners_save_load_and_resume_as_if_never_saved(tmp_path, opt):
    df = ratings()
    dls = dls_for(df)
    a = learner(dls, "sparse", opt=opt, path=tmp_path)
    a.fit_one_cycle(2, 0.02)
    a.save("ckpt")
    a.fit(2, 0.01)                                             # uninterrupted
    b = learner(dls, "sparse", opt=opt, seed=9, path=tmp_path)  # a fresh learner, other init
    b.load("ckpt")
    b.fit(2, 0.01)                                             # resumed
    np.testing.assert_array_equal(b.model.params, a.model.params)
    for k, buf in a.opt.state.items():
        np.testing.assert_array_equal(b.opt.state[k], buf, err_msg=k)
    assert set(a.opt.state) == set(b.opt.state)


@pytest.mark.parametrize("opt", [Adagrad, Adam])
def test_sparse_learners_export_and_load_bit_identically(tmp_path, opt):
    dls = dls_for(ratings())
    a = learner(dls, "sparse", opt=opt, path=tmp_path, n_blocks=6)
    a.fit(2, 0.02)
    a.export("model.npz")
    b = load_learner(tmp_path / "model.npz")
    assert b.train_mode == "sparse" and b.n_blocks == 6 and b.opt_func is opt
    p_a, _ = a.get_preds()
    p_b, _ = b.get_preds(dl=b.dls.test_dl(dls.valid_ds))
    np.testing.assert_array_equal(p_a, p_b)
    pd.testing.assert_frame_equal(a.recommend_many([1, 2, 3]), b.recommend_many([1, 2, 3]))


def test_a_failed_load_changes_nothing(tmp_path):
    dls = dls_for(ratings())
    exact = learner(dls, "exact", path=tmp_path)
    exact.fit(1, 1e-3)
    exact.save("exact_adam")                      # Adam without the sparse path's step powers
    target = learner(dls, "sparse", opt=Adam, path=tmp_path, seed=5)
    target.fit(1, 0.01)
    params, opt_sd, rng = target.model.params.copy(), target.opt.state_dict(), target.data_rng.bit_generator.state
    with pytest.raises(CollabcFileError, match="optimizer state does not fit"):
        target.load("exact_adam")
    np.testing.assert_array_equal(target.model.params, params)
    after = target.opt.state_dict()
    assert after["step"] == opt_sd["step"] and after["hypers"] == opt_sd["hypers"]
    for k in opt_sd["buffers"]:
        np.testing.assert_array_equal(after["buffers"][k], opt_sd["buffers"][k])
    assert target.data_rng.bit_generator.state == rng
    # the wrong optimizer kind, likewise refused before anything changes
    sgd = learner(dls, "sparse", opt=SGD, path=tmp_path)
    p2 = sgd.model.params.copy()
    with pytest.raises(CollabcFileError, match="not 'sgd'"):
        sgd.load("exact_adam")
    np.testing.assert_array_equal(sgd.model.params, p2)
    assert sgd.opt is None


def test_a_sparse_adagrad_checkpoint_loads_into_a_fresh_learner(tmp_path):
    dls = dls_for(ratings())
    a = learner(dls, "sparse", opt=Adagrad, path=tmp_path)
    a.fit(1, 0.05)
    a.save("ada")
    b = learner(dls, "sparse", opt=Adagrad, path=tmp_path, seed=3)
    b.load("ada")
    np.testing.assert_array_equal(b.opt.state["v"], a.opt.state["v"])
    assert b.opt.state["v"].size == 2 * (dls.n_users + dls.n_items)


def test_format_1_checkpoints_still_load(tmp_path):
    "Checkpoints written before named optimizer buffers (format 1) load into the same learner."
    from collabc.persist import write_archive
    dls = dls_for(ratings())
    a = learner(dls, "exact", path=tmp_path)
    a.fit(1, 1e-3)
    sd = a.opt.state_dict()
    meta = {"model": a.model.get_config(), "has_opt": True,
            "opt": {"kind": "adam", "hypers": sd["hypers"], "step": sd["step"], "n_buffers": 2}}
    arrays = {f"model/{n}": v for n, v in a.model.state_dict().items()}
    arrays.update({"opt/0": sd["buffers"]["m"], "opt/1": sd["buffers"]["v"]})
    write_archive(tmp_path / "models" / "old.npz", "checkpoint", meta, arrays)
    b = learner(dls, "exact", path=tmp_path, seed=7)
    b.load("old")
    np.testing.assert_array_equal(b.model.params, a.model.params)
    np.testing.assert_array_equal(b.opt.state["v"], a.opt.state["v"])
    assert b.opt.step_count == a.opt.step_count


def test_default_threads_never_fail_on_big_machines(monkeypatch):
    import os
    monkeypatch.setattr(os, "cpu_count", lambda: 256)
    dls = dls_for(ratings(500))
    learn = Learner(dls, EmbeddingDotBias(4, dls.n_users, dls.n_items), train_mode="sparse")
    assert learn.n_threads == 64
    with pytest.raises(ValueError, match="n_threads"):
        Learner(dls, EmbeddingDotBias(4, dls.n_users, dls.n_items), n_threads=65)
