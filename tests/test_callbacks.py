"""The training loop's events and fastai's callbacks: the order of events, attribute access,
`cbs=` wherever fastai takes it, the control exceptions, and each shipped callback with fastai's
semantics (early stopping, saving the best model, lr on plateau, CSV log, live graph, NaN stop),
plus fit_flat_cos / fit_sgdr / summary / final_record and lr_find on both paths."""
import csv
import math
import os
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pytest

from collabc import (SGD, Adagrad, Adam, Callback, CancelBatchException, CancelEpochException,
                     CancelFitException, CancelTrainException, CancelValidException, CollabDataLoaders,
                     CSVLogger, EarlyStoppingCallback, Learner, ReduceLROnPlateau, SaveModelCallback,
                     ShowGraphCallback, TerminateOnNaNCallback, TrainingDivergedError, collab_learner,
                     EmbeddingDotBias, set_seed)


def make(df, seed=0, bs=16, **kw):
    set_seed(seed)
    dls = CollabDataLoaders.from_df(df, bs=bs, seed=0)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), **kw)
    learn.logger = lambda *a: None
    return learn


class Events(Callback):
    "Records every event it sees."
    order = 100

    def __init__(self):
        self.seen = []


def _recording(name):
    def f(self):
        self.seen.append(name)
    return f


for _e in ("after_create", "before_fit", "before_epoch", "before_train", "before_segment", "after_segment",
           "after_train", "before_validate", "after_validate", "after_epoch", "after_fit",
           "after_cancel_fit", "after_cancel_epoch", "after_cancel_train", "after_cancel_validate",
           "after_cancel_batch"):
    setattr(Events, _e, _recording(_e))


def scripted(values, name="score"):
    "A metric returning the given values, one per call (epoch)."
    it = iter(values)

    def metric(preds, targs):
        return float(next(it))
    metric.__name__ = name
    return metric


def test_events_run_in_fastais_order(synth_ratings):
    ev = Events()
    learn = make(synth_ratings, cbs=ev)
    assert ev.seen == ["after_create"]
    ev.seen.clear()
    learn.fit(2, 1e-3)
    seq = [e for e in ev.seen if e not in ("before_segment", "after_segment")]
    epoch = ["before_epoch", "before_train", "after_train", "before_validate", "after_validate", "after_epoch"]
    assert seq == ["before_fit"] + epoch * 2 + ["after_fit"]
    # segments sit between before_train and after_train, and cover every batch
    first = ev.seen.index("before_train")
    assert ev.seen[first + 1] == "before_segment" and "after_segment" in ev.seen
    assert ev.seen.count("before_segment") == ev.seen.count("after_segment") >= 2


def test_callback_reads_the_learner_and_gets_a_name(synth_ratings):
    got = {}

    class PeekCallback(Callback):
        order = 70   # after the recorder

        def after_epoch(self):
            got.setdefault("epochs", []).append((self.epoch, self.n_epoch, type(self.model).__name__,
                                                 self.opt.kind, len(self.recorder.values)))

        def after_segment(self):
            got["seg"] = (self.iter, self.seg_done, len(self.seg_losses), self.n_iter, self.train_iter)

    learn = make(synth_ratings)
    learn.add_cb(PeekCallback)
    assert isinstance(learn.peek, PeekCallback) and learn.peek.learn is learn
    assert learn.recorder.name == "recorder" and learn.progress.name == "progress"
    learn.fit(2, 1e-3)
    assert got["epochs"] == [(0, 2, "EmbeddingDotBias", "adam", 1), (1, 2, "EmbeddingDotBias", "adam", 2)]
    it, done, n, n_iter, train_iter = got["seg"]
    assert it + done == n_iter and done == n and train_iter == 2 * n_iter
    learn.remove_cb(learn.peek)
    assert not hasattr(learn, "peek")


def test_cbs_everywhere_fastai_takes_them(synth_ratings):
    ev = Events()
    learn = make(synth_ratings, cbs=[ev])                       # collab_learner -> Learner
    assert ev in learn.cbs
    dls = learn.dls
    ev2 = Events()
    learn2 = Learner(dls, EmbeddingDotBias(4, dls.n_users, dls.n_items), cbs=ev2)
    learn2.logger = lambda *a: None
    assert ev2.seen == ["after_create"]
    for fit, args in ((learn.fit, (1, 1e-3)), (learn.fit_one_cycle, (1, 1e-3)), (learn.fit_flat_cos, (1, 1e-3)),
                      (learn.fit_sgdr, (1, 1, 1e-3))):
        extra = Events()
        fit(*args, cbs=extra)
        assert "after_fit" in extra.seen and extra not in learn.cbs   # a fit's cbs are for that fit only
    with learn.added_cbs(Events()) as l2:
        assert any(isinstance(c, Events) and c is not ev for c in l2.cbs)
    assert sum(isinstance(c, Events) for c in learn.cbs) == 1
    with pytest.raises(TypeError, match="Callback"):
        learn.fit(1, cbs=[object()])
    with pytest.raises(TypeError, match="Callback"):
        make(synth_ratings, cbs=[42])


def test_early_stopping_stops_at_the_right_epoch(synth_ratings):
    # improvements at epochs 0 and 1, then none: patience 2 stops after epoch 3
    learn = make(synth_ratings, metrics=scripted([5, 4, 4.5, 4.6, 3, 2, 1]))
    learn.fit(7, 1e-3, cbs=EarlyStoppingCallback(monitor="score", comp=np.less, patience=2))
    assert len(learn.recorder.values) == 4
    assert [v[2] for v in learn.recorder.values] == [5, 4, 4.5, 4.6]
    assert len(learn.recorder.losses) == 4 * len(learn.dls.train) == learn.recorder.iters[-1]
    # min_delta: 4.0 is not better than 5 by more than 2
    learn = make(synth_ratings, metrics=scripted([5, 4, 3.5, 2]))
    learn.fit(4, 1e-3, cbs=EarlyStoppingCallback(monitor="score", min_delta=2, patience=1))
    assert len(learn.recorder.values) == 2
    with pytest.raises(ValueError, match="monitor='nope' is not a column"):
        make(synth_ratings).fit(1, cbs=EarlyStoppingCallback(monitor="nope"))


def test_save_model_reloads_the_best(synth_ratings, tmp_path):
    snaps = []

    class Snap(Callback):
        order = 70

        def after_epoch(self):
            snaps.append(self.model.params.copy())

    learn = make(synth_ratings, metrics=scripted([3, 1, 2, 2.5] + [1] * 10, "error"), path=tmp_path)
    learn.fit(4, 1e-2, cbs=[SaveModelCallback(monitor="error", fname="best"), Snap()])
    assert (tmp_path / "models" / "best.npz").exists()
    np.testing.assert_array_equal(learn.model.params, snaps[1])       # epoch 1 was the best
    assert not np.array_equal(snaps[1], snaps[3])
    # every_epoch saves fname_<epoch> and keeps the last model; at_end saves once
    learn.fit(2, 1e-2, cbs=SaveModelCallback(every_epoch=1, fname="e"))
    assert {p.name for p in (tmp_path / "models").glob("e_*.npz")} == {"e_0.npz", "e_1.npz"}
    learn.fit(1, 1e-2, cbs=SaveModelCallback(at_end=True, fname="end"))
    assert (tmp_path / "models" / "end.npz").exists()


def test_csv_logger_writes_one_row_per_epoch(synth_ratings, tmp_path):
    from collabc import rmse
    learn = make(synth_ratings, metrics=[rmse], path=tmp_path)
    cb = CSVLogger()
    learn.fit(3, 1e-3, cbs=cb)
    with (tmp_path / "history.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "train_loss", "valid_loss", "_rmse", "time"]
    assert len(rows) == 4 and [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for r, v in zip(rows[1:], learn.recorder.values):
        np.testing.assert_allclose([float(c) for c in r[1:4]], v, atol=1e-6)
    assert len(cb.read_log()) == 3
    learn.fit(1, 1e-3, cbs=CSVLogger(append=True))
    with (tmp_path / "history.csv").open() as f:
        assert len(list(csv.reader(f))) == 6   # a second header, one row


@pytest.mark.parametrize("exc, where", [(CancelTrainException, "after_segment"),
                                        (CancelValidException, "before_validate"),
                                        (CancelEpochException, "after_segment"),
                                        (CancelFitException, "after_epoch"),
                                        (CancelBatchException, "before_segment")])
def test_cancel_exceptions_leave_the_recorder_consistent(synth_ratings, exc, where):
    calls = []

    class Raise(Callback):
        order = 60   # after the recorder, as trackers run

    def raiser(self):
        calls.append(self.epoch)
        if self.epoch == 1 and calls.count(1) == 1:
            raise exc()
    setattr(Raise, where, raiser)
    ev = Events()
    learn = make(synth_ratings, bs=8)
    learn.fit(3, 1e-3, cbs=[Raise(), ev])
    rec, n_iter = learn.recorder, len(learn.dls.train)
    assert len(rec.losses) == len(rec.lrs) == len(rec.moms)
    assert rec.iters == sorted(rec.iters) and rec.iters[-1] == len(rec.losses)
    assert f"after_cancel_{ {CancelTrainException: 'train', CancelValidException: 'validate', CancelEpochException: 'epoch', CancelFitException: 'fit', CancelBatchException: 'batch'}[exc]}" in ev.seen
    if exc is CancelFitException:
        assert len(rec.values) == 2 and ev.seen[-1] == "after_fit"
    else:
        assert len(rec.values) == 3
    if exc is CancelValidException:
        assert math.isnan(rec.values[1][1]) and np.isfinite(rec.values[2][1])
    if exc in (CancelTrainException, CancelEpochException, CancelBatchException):
        assert len(rec.losses) < 3 * n_iter
    if exc is CancelTrainException:
        assert np.isfinite(rec.values[1][1])   # validation still ran
    assert np.isfinite(learn.model.params).all()


def test_reduce_lr_on_plateau(synth_ratings):
    learn = make(synth_ratings, metrics=scripted([3, 3, 3, 3]))
    learn.fit(4, 1e-2, cbs=ReduceLROnPlateau(monitor="score", patience=1, factor=10))
    # epoch 0 sets the best; epochs 1, 2, 3 do not improve: lr / 10 three times
    np.testing.assert_allclose(learn.opt.hypers["lr"], 1e-5)
    lrs = np.array(learn.recorder.lrs).reshape(4, -1)[:, 0]
    np.testing.assert_allclose(lrs, [1e-2, 1e-2, 1e-3, 1e-4])


def test_terminate_on_nan_stops_quietly(synth_ratings):
    def unbounded():
        set_seed(0)
        learn = collab_learner(CollabDataLoaders.from_df(synth_ratings, bs=16, seed=0), n_factors=4, opt_func=SGD)
        learn.logger = lambda *a: None
        return learn
    with pytest.raises(TrainingDivergedError):
        unbounded().fit(2, 1e6)
    learn = unbounded()
    learn.fit(2, 1e6, cbs=TerminateOnNaNCallback())
    assert np.isfinite(learn.model.params).all() and len(learn.recorder.values) == 0


def test_show_graph_draws_a_figure_at_the_end(synth_ratings):
    import matplotlib
    matplotlib.use("Agg")
    cb = ShowGraphCallback()
    learn = make(synth_ratings)
    learn.fit(2, 1e-3, cbs=cb)
    lines = cb.fig.axes[0].get_lines()
    assert len(lines) == 2 and len(lines[0].get_xdata()) == len(learn.recorder.losses)
    np.testing.assert_allclose(lines[1].get_ydata(), [v[1] for v in learn.recorder.values])


def test_fit_flat_cos_and_sgdr_schedules(synth_ratings):
    learn = make(synth_ratings)
    learn.fit_flat_cos(4, 1e-2, pct_start=0.5)
    lrs = np.array(learn.recorder.hps["lr"])
    half = len(lrs) // 2
    np.testing.assert_allclose(lrs[:half], 1e-2)
    assert np.all(np.diff(lrs[half:]) < 0) and lrs[-1] < 1e-2 / 100
    learn.fit_sgdr(3, 1, 1e-2)                                   # cycles of 1, 2, 4 epochs
    n = len(learn.dls.train)
    assert len(learn.recorder.values) == 7
    lrs = np.array(learn.recorder.hps["lr"])
    for start in (0, n, 3 * n):                                  # each cycle restarts at lr_max
        np.testing.assert_allclose(lrs[start], 1e-2)
    assert lrs[n - 1] < 1e-3 and lrs[3 * n - 1] < 1e-3


def test_start_epoch_skips_epochs_and_their_schedule(synth_ratings):
    a, b = make(synth_ratings), make(synth_ratings)
    a.fit_one_cycle(3, 1e-2)
    b.fit_one_cycle(3, 1e-2, start_epoch=1)
    n = len(a.dls.train)
    assert len(b.recorder.values) == 2
    np.testing.assert_allclose(b.recorder.lrs, a.recorder.lrs[n:])


def test_summary_and_final_record(synth_ratings):
    learn = make(synth_ratings)
    s = learn.summary()
    for text in ("u_weight.weight", "i_bias.weight", "Total params", "Adam", "lr=0.001", "MSELoss",
                 "Training path: exact", "Recorder"):
        assert text in s, text
    nu, ni = learn.dls.n_users, learn.dls.n_items
    assert f"Total params: {(nu + ni) * 5:,}" in s
    assert learn.final_record is None
    learn.fit(1, 1e-3)
    assert learn.final_record == learn.recorder.values[-1]
    assert "Recorder(1 epochs" in repr(learn.recorder)


OPTS = [("exact", Adam), ("exact", SGD), ("sparse", Adam), ("sparse", SGD), ("sparse", Adagrad)]


@pytest.mark.parametrize("mode, opt", OPTS)
def test_lr_find_on_both_paths_and_every_optimizer(synth_ratings, mode, opt):
    learn = make(synth_ratings, train_mode=mode, opt_func=opt, n_threads=2)
    learn.fit(1, 1e-3)
    before = (learn.model.params.copy(), learn.opt.state_dict(), learn.data_rng.bit_generator.state)
    sug = learn.lr_find(num_it=60, show_plot=False, suggest_funcs=("valley", "minimum"))
    assert 1e-7 <= sug.valley <= 10 and 1e-8 <= sug.minimum <= 10
    rec = learn.recorder
    assert 6 <= len(rec.lrs) <= 60 + learn._path.granularity and rec.lrs == sorted(rec.lrs)
    np.testing.assert_allclose(rec.lrs[0], 1e-7)
    np.testing.assert_array_equal(learn.model.params, before[0])             # restored
    after = learn.opt.state_dict()
    assert after["hypers"] == before[1]["hypers"] and after["step"] == before[1]["step"]
    for k in before[1]["buffers"]:
        np.testing.assert_array_equal(after["buffers"][k], before[1]["buffers"][k])
    assert learn.data_rng.bit_generator.state == before[2]


def test_fit_a_million_epochs_starts_flat_and_stops_on_ctrl_c(tmp_path):
    "Schedules are per segment: fit(10**6) allocates nothing up front and Ctrl-C stops it within a second."
    code = textwrap.dedent("""
        import os, signal, threading, time
        import numpy as np, pandas as pd
        from collabc import CollabDataLoaders, collab_learner, set_seed
        def rss():
            return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
        rng = np.random.default_rng(0)
        df = pd.DataFrame({'u': rng.integers(0, 50, 3000), 'i': rng.integers(0, 40, 3000),
                           'r': rng.integers(1, 6, 3000)})
        set_seed(0)
        learn = collab_learner(CollabDataLoaders.from_df(df, bs=64, seed=0), n_factors=8, y_range=(0, 5.5))
        learn.logger = lambda *a: None
        learn.fit(1)                       # warm up
        base = rss()
        sent = []
        def interrupt():
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(1.5, interrupt).start()
        learn.fit_one_cycle(10**6, 1e-3)
        stopped = time.perf_counter()
        print(len(learn.recorder.values), (rss() - base) / 2**20, stopped - sent[0])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    epochs, grown_mb, lag = r.stdout.split()
    assert int(epochs) >= 1
    assert float(grown_mb) < 50, f"fit(10**6) grew memory by {grown_mb} MB"
    assert float(lag) < 1.0, f"Ctrl-C took {lag} s to stop the fit"
