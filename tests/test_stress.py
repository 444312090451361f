"""Issue 14: concurrency stress, with fixed seeds and bounded time (each test a few seconds).

* learners of every path (exact dot, exact neural, sparse) in threads at once, some sharing
  one `DataLoaders`, some with their own, each saving checkpoints and exporting to one shared
  path while it trains: every learner ends exactly where it ends when trained alone, and the
  shared export is always a complete file of one of them;
* processes exporting and saving to one path while the parent reads it: no writer fails, and
  every read is a complete file;
* writers killed (SIGKILL) at random moments: the target is always the old or a new complete
  file, never a torn one, and the next write leaves no temporaries behind."""
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd

from collabc import CollabDataLoaders, collab_learner, load_learner, set_seed

SEED = 1414


def ratings(seed, n=20000, nu=300, ni=200):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": rng.integers(0, nu, n), "item": rng.integers(0, ni, n),
                         "rating": rng.integers(1, 6, n).astype(np.float32)})


def make_dls(seed, path):
    set_seed(seed)
    return CollabDataLoaders.from_df(ratings(seed), bs=64, seed=seed, path=path)


SPECS = [  # (name, data seed (same seed: shared loaders), learner arguments)
    ("dot-a", 0, dict(n_factors=6)),
    ("dot-b", 0, dict(n_factors=6, wd=0.01)),
    ("nn", 0, dict(use_nn=True, layers=[12])),
    ("sparse", 0, dict(n_factors=6, train_mode="sparse", n_threads=2)),
    ("dot-own", 1, dict(n_factors=5)),
    ("sparse-own", 2, dict(n_factors=4, train_mode="sparse", n_threads=1)),
]


def build(spec, dls, seed):
    name, _, kw = spec
    set_seed(seed)
    learn = collab_learner(dls, y_range=(0, 5.5), **kw)
    learn.logger = lambda *a: None
    return learn


def test_learners_of_every_path_in_threads_match_their_solo_runs(tmp_path):
    shared = {s: make_dls(s, tmp_path) for s in {sp[1] for sp in SPECS}}
    solo = {}
    for k, spec in enumerate(SPECS):   # alone, on loaders of their own, the same two fits
        learn = build(spec, make_dls(spec[1], tmp_path), SEED + k)
        with learn.no_bar():
            learn.fit(1, 5e-3)
            learn.fit(1, 5e-3)
        solo[spec[0]] = learn.model.params.copy()

    target = tmp_path / "shared_export.npz"
    learns = [build(spec, shared[spec[1]], SEED + k) for k, spec in enumerate(SPECS)]
    errors, barrier = [], threading.Barrier(len(learns))

    def run(k, learn):
        try:
            barrier.wait()
            with learn.no_bar():
                for epoch in range(2):
                    learn.fit(1, 5e-3)
                    learn.save(f"ckpt-{k}")
                    learn.export(target)
        except Exception as e:   # noqa: BLE001  (any failure fails the test)
            errors.append(f"{SPECS[k][0]}: {e!r}")

    threads = [threading.Thread(target=run, args=(k, lr)) for k, lr in enumerate(learns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert time.perf_counter() - t0 < 120 and not any(t.is_alive() for t in threads)
    assert errors == []
    for spec, learn in zip(SPECS, learns):
        np.testing.assert_array_equal(learn.model.params, solo[spec[0]], err_msg=spec[0])
    final = load_learner(target).model.params
    assert any(final.shape == lr.model.params.shape and np.array_equal(final, lr.model.params) for lr in learns)
    for k, learn in enumerate(learns):   # each checkpoint is that learner's last state
        fresh = build(SPECS[k], shared[SPECS[k][1]], 0)
        fresh.load(f"ckpt-{k}")
        np.testing.assert_array_equal(fresh.model.params, learn.model.params)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".collabc-tmp")]


WRITER = """
import sys
from collabc import load_learner
learn = load_learner(sys.argv[1])
learn.model.params[:] += float(sys.argv[3])
learn.export(sys.argv[2])
print("writing", flush=True)
while True:
    learn.export(sys.argv[2])
"""


def _writer(src, target, k, tmp_path):
    "A process exporting to target in a loop; its first line says it is in the loop."
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(src), str(target), str(k)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _learner(tmp_path):
    set_seed(SEED)
    learn = collab_learner(make_dls(3, tmp_path), n_factors=5, y_range=(0, 5.5))
    learn.logger = lambda *a: None
    with learn.no_bar():
        learn.fit(1, 5e-3)
    return learn


def test_processes_writing_one_path_while_it_is_read(tmp_path):
    learn = _learner(tmp_path)
    src = learn.export(tmp_path / "src.npz")
    target = tmp_path / "target.npz"
    learn.export(target)
    writers = [_writer(src, target, k, tmp_path) for k in range(1, 4)]
    versions, reads = set(), 0
    try:
        for w in writers:   # all three in their export loops
            assert w.stdout.readline() == "writing\n", w.communicate()[1]
        deadline = time.perf_counter() + 3
        while time.perf_counter() < deadline:
            p = load_learner(target).model.params   # must always be a complete file
            versions.add(round(float(p[0] - learn.model.params[0])))
            reads += 1
        died = [w for w in writers if w.poll() is not None]
    finally:
        for w in writers:
            w.kill()
        errs = [w.communicate()[1] for w in writers]   # reaps them and closes their pipes
    assert not died, errs
    assert versions <= {0, 1, 2, 3} and len(versions) >= 3
    learn.export(target)   # removes the killed writers' temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.npz", "target.npz"]


def test_writers_killed_at_random_moments_never_tear_the_target(tmp_path):
    learn = _learner(tmp_path)
    src = learn.export(tmp_path / "src.npz")
    target = tmp_path / "target.npz"
    learn.export(target)
    rng = np.random.default_rng(SEED)
    kills = 0
    for k in range(6):
        w = _writer(src, target, k + 1, tmp_path)
        assert w.stdout.readline() == "writing\n", w.communicate()[1]
        time.sleep(float(rng.uniform(0.0, 0.2)))   # somewhere in an export (each takes ~10 ms)
        w.send_signal(signal.SIGKILL)
        err = w.communicate()[1]
        assert w.returncode == -signal.SIGKILL, err   # it was still writing, not dead of an error
        kills += 1
        p = load_learner(target).model.params        # the old or a new complete file
        assert round(float(p[0] - learn.model.params[0])) == k + 1   # this writer's, whole
    assert kills == 6
    learn.export(target)   # removes the killed writers' temporaries, and nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.npz", "target.npz"]
