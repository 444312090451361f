"""Benchmark (not a test): the lesson's own models, written by the user, trained by `Learner`
through autograd, against the built-in models trained by their fused C drivers - the same
fit, `fit_one_cycle(5, 5e-3, wd=...)` on MovieLens-100k (item_name='title', bs=64), measured
in the same run, alternating, the median of `rounds` rounds.

* the book's `DotProductBias` (four `Embedding`s, `sum(dim=1, keepdim=True)`, `res += ...`)
  against `collab_learner(dls, n_factors=50, y_range=(0, 5.5))`, wd=0.1;
* the book's `CollabNN(*get_emb_sz(dls))` against the built-in `CollabNN`, wd=0.01.

Targets (issue 12): user DotProductBias <= 3x the built-in fit, user CollabNN <= 2x the
built-in one, and both >= 15x faster than fastai's recorded 28 s and 60 s.

    COLLABC_DATA=/path/to/folder/with/ml-100k python bench/bench_user_models.py [rounds]
"""
import platform
import sys
import time

import numpy as np

from bench_autograd import CollabNN as CollabNNWritten, DotProductBias
from collabc import CollabDataLoaders, CollabNN, Learner, MSELossFlat, collab_learner, get_emb_sz, set_seed
from collabc.__main__ import load_ml100k

FASTAI = {"DotProductBias": 28.0, "CollabNN": 60.0}   # seconds, fastai 2.7 on this machine class


UserDotProductBias, UserCollabNN = DotProductBias, CollabNNWritten   # the book's code (bench_autograd.py)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                flags = next(f for f in open("/proc/cpuinfo") if f.startswith("flags")).split()
                simd = [f for f in ("avx512f", "avx2", "neon") if f in flags]
                return f"{name} ({', '.join(simd) or 'no AVX2/AVX-512'})"
    except (OSError, StopIteration):
        pass
    return platform.processor() or platform.machine()


def timed_fit(make, wd):
    learn = make()
    learn.logger = lambda *a: None
    t = time.perf_counter()
    learn.fit_one_cycle(5, 5e-3, wd=wd)
    return time.perf_counter() - t, learn.recorder.values[-1][1], learn._path.kind


def main(rounds=3):
    ratings = load_ml100k()
    set_seed(42)
    dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=64)
    nu, ni = len(dls.classes["user"]), len(dls.classes["title"])
    embs = get_emb_sz(dls)
    pairs = {
        "DotProductBias": (0.1, lambda: Learner(dls, UserDotProductBias(nu, ni, 50), loss_func=MSELossFlat()),
                           lambda: collab_learner(dls, n_factors=50, y_range=(0, 5.5))),
        "CollabNN": (0.01, lambda: Learner(dls, UserCollabNN(*embs), loss_func=MSELossFlat()),
                     lambda: Learner(dls, CollabNN(*embs), loss_func=MSELossFlat())),
    }
    targets = {"DotProductBias": 3.0, "CollabNN": 2.0}
    print(f"CPU: {cpu_name()}; {rounds} rounds, alternating; fit_one_cycle(5, 5e-3) on MovieLens-100k")
    for name, (wd, user, builtin) in pairs.items():
        ts_user, ts_builtin = [], []
        for _ in range(rounds):
            set_seed(1)
            tu, vu, ku = timed_fit(user, wd)
            set_seed(1)
            tb, vb, kb = timed_fit(builtin, wd)
            ts_user.append(tu)
            ts_builtin.append(tb)
        mu, mb = np.median(ts_user), np.median(ts_builtin)
        ratio = mu / mb
        print(f"{name}: written by the user ({ku}) {mu:.2f} s, valid {vu:.4f}; built-in ({kb}) {mb:.2f} s, "
              f"valid {vb:.4f}; ratio {ratio:.2f}x (target <= {targets[name]}x: "
              f"{'PASS' if ratio <= targets[name] else 'FAIL'}); per round "
              f"{', '.join(f'{a / b:.2f}' for a, b in zip(ts_user, ts_builtin))}")
        print(f"  vs fastai's {FASTAI[name]:.0f} s: user model {FASTAI[name] / mu:.0f}x faster, built-in "
              f"{FASTAI[name] / mb:.0f}x (target >= 15x: {'PASS' if FASTAI[name] / mu >= 15 else 'FAIL'})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
