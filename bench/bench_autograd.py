"""Benchmark (not a test): a user-written model trained through collabc's autograd against the
built-in fused C drivers, per training step, measured in the same run, alternating.

Models: the lesson's DotProductBias (four Embeddings, n_factors=50, y_range=(0, 5.5)) against
`_core.dot_fit_epoch`, and the book's CollabNN (user 74, item 102, n_act=100) against
`_core.nn_fit_epoch`, one epoch of bs=64 over MovieLens-100k's 80,000 training-size rows
(1,250 steps; synthetic ids of the same shape when COLLABC_DATA is unset), fastai's Adam with a
one-cycle schedule and wd=0.1. A generic step is: zero the packed gradient block, `train_step`
(forward, MSELossFlat, backward), and fastai's Adam as one C call per decay range
(`_core.adam_step`). Targets (issue 12): generic <= 3x fused for DotProductBias, <= 2x for
CollabNN. Prints the CPU, per-step medians over the rounds, the ratios, and where a generic
step's time goes.

    COLLABC_DATA=/path/to/folder/with/ml-100k python bench/bench_autograd.py [rounds]
"""
import os
import platform
import sys
import time

import numpy as np

from collabc import _core, nn
from collabc.layers import Embedding, Module
from collabc.nn import pack_model, train_step
from collabc.tensor import cat, sigmoid_range

BS, N_ROWS = 64, 80_000


class DotProductBias(Module):
    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):
        self.user_factors = Embedding(n_users, n_factors)
        self.user_bias = Embedding(n_users, 1)
        self.movie_factors = Embedding(n_movies, n_factors)
        self.movie_bias = Embedding(n_movies, 1)
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors(x[:, 0])
        movies = self.movie_factors(x[:, 1])
        res = (users * movies).sum(dim=1, keepdim=True)
        res += self.user_bias(x[:, 0]) + self.movie_bias(x[:, 1])
        return sigmoid_range(res, *self.y_range)


class CollabNN(Module):
    def __init__(self, user_sz, item_sz, y_range=(0, 5.5), n_act=100):
        self.user_factors = Embedding(*user_sz)
        self.item_factors = Embedding(*item_sz)
        self.layers = nn.Sequential(nn.Linear(user_sz[1] + item_sz[1], n_act), nn.ReLU(), nn.Linear(n_act, 1))
        self.y_range = y_range

    def forward(self, x):
        embs = self.user_factors(x[:, 0]), self.item_factors(x[:, 1])
        x = self.layers(cat(embs, dim=1))
        return sigmoid_range(x, *self.y_range)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_data():
    root = os.environ.get("COLLABC_DATA")
    path = os.path.join(root, "ml-100k", "u.data") if root else None
    if path and os.path.exists(path):
        raw = np.loadtxt(path, dtype=np.int64)[:N_ROWS]
        u = np.unique(raw[:, 0], return_inverse=True)[1] + 1
        i = np.unique(raw[:, 1], return_inverse=True)[1] + 1
        src = "MovieLens-100k"
        y = raw[:, 2]
    else:
        rng = np.random.default_rng(0)
        u, i, y = rng.integers(1, 944, N_ROWS), rng.integers(1, 1683, N_ROWS), rng.integers(1, 6, N_ROWS)
        src = "synthetic ids (COLLABC_DATA unset)"
    x = np.stack([u, i], 1).astype(np.int32)
    return x, y.astype(np.float32), int(u.max()) + 1, int(i.max()) + 1, src


def schedule(J, lr=5e-3):
    pos = np.arange(J, dtype=np.float64) / J
    return _core.onecycle(pos, lr / 25, lr, lr / 1e5, 0.25), _core.onecycle(pos, 0.95, 0.85, 0.95, 0.25)


class Generic:
    "A user model trained step by step through autograd; times each part of a step."
    def __init__(self, model):
        self.model, self.blk = model, pack_model(model)
        self.m, self.v = np.zeros_like(self.blk.data), np.zeros_like(self.blk.data)
        self.step = 0

    def epoch(self, x, y, order, lrs, moms):
        blk, w, m, v = self.blk, self.blk.n_wd, self.m, self.v
        t_zero = t_fb = t_opt = 0.0
        clock = time.perf_counter
        for j in range(len(lrs)):
            rows = order[j * BS:(j + 1) * BS]
            xb, yb = x[rows].astype(np.int64), y[rows].reshape(-1, 1)
            t0 = clock()
            blk.zero_grad()
            t1 = clock()
            train_step(self.model, xb, yb)
            t2 = clock()
            self.step += 1
            _core.adam_step(blk.data[:w], blk.grad[:w], m[:w], v[:w], lrs[j], moms[j], 0.99, 1e-5, 0.1, self.step)
            if w < blk.data.size:
                _core.adam_step(blk.data[w:], blk.grad[w:], m[w:], v[w:], lrs[j], moms[j], 0.99, 1e-5, 0.0,
                                self.step)
            t3 = clock()
            t_zero, t_fb, t_opt = t_zero + t1 - t0, t_fb + t2 - t1, t_opt + t3 - t2
        n = len(lrs)
        return (t_zero + t_fb + t_opt) / n, t_zero / n, t_fb / n, t_opt / n


class FusedDot:
    def __init__(self, nu, ni, k):
        self.cfg = dict(n_users=nu, n_items=ni, n_factors=k, has_bias=True, y_range=(0, 5.5))
        P = (nu + ni) * (k + 1)
        self.p = (np.random.default_rng(1).standard_normal(P) * 0.01).astype(np.float32)
        self.g, self.m, self.v = (np.zeros(P, np.float32) for _ in range(3))
        self.step = 0

    def epoch(self, x, y, order, lrs, moms):
        losses = np.zeros(len(lrs))
        t = time.perf_counter()
        self.step, _ = _core.dot_fit_epoch(self.p, self.g, self.m, self.v, losses, x, y, order, lrs, moms, bs=BS,
                                           opt="adam", wd=0.1, n_wd=self.p.size, sqr_mom=0.99, eps=1e-5,
                                           decouple_wd=True, step=self.step, **self.cfg)
        return (time.perf_counter() - t) / len(lrs)


class FusedNN:
    def __init__(self, nu, ni, du=74, di=102, h=100):
        sizes = [nu * du, ni * di, h * (du + di), h, 1 * h, 1]  # tables, W0, W2 | b0, b2
        offs = np.cumsum([0] + sizes)
        P = int(offs[-1])
        rng = np.random.default_rng(2)
        self.p = (rng.standard_normal(P) * 0.05).astype(np.float32)
        self.g, self.m, self.v = (np.zeros(P, np.float32) for _ in range(3))
        self.n_wd = int(offs[4])
        self.kw = dict(tables=np.array([[nu, du, offs[0]], [ni, di, offs[1]]], np.int64),
                       ops=np.array([[0, du + di, h, offs[2], offs[4], -1], [1, h, h, -1, -1, -1],
                                     [0, h, 1, offs[3], offs[5], -1]], np.int64),
                       ps=np.zeros(3), y_range=(0, 5.5), bn_momentum=0.1, bn_eps=1e-5)
        self.step = 0

    def epoch(self, x, y, order, lrs, moms):
        losses = np.zeros(len(lrs))
        t = time.perf_counter()
        self.step, _ = _core.nn_fit_epoch(self.p, self.g, np.zeros(0, np.float32), self.m, self.v, losses, x, y,
                                          order, lrs, moms, bs=BS, opt="adam", wd=0.1, n_wd=self.n_wd,
                                          sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=self.step, seed=0,
                                          **self.kw)
        return (time.perf_counter() - t) / len(lrs)


def main(rounds=5):
    x, y, nu, ni, src = load_data()
    J = len(y) // BS
    lrs, moms = schedule(J)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); Python {platform.python_version()}, "
          f"NumPy {np.__version__}")
    print(f"data: {src}, {len(y)} rows, {nu} users, {ni} items; {J} steps of bs={BS} per epoch; {rounds} rounds, "
          f"fused and generic alternating")
    pairs = [("DotProductBias", FusedDot(nu, ni, 50), Generic(DotProductBias(nu, ni, 50)), 3.0),
             ("CollabNN", FusedNN(nu, ni), Generic(CollabNN((nu, 74), (ni, 102))), 2.0)]
    rng = np.random.default_rng(0)
    res = {name: ([], []) for name, *_ in pairs}
    for _ in range(rounds):
        order = rng.permutation(len(y)).astype(np.int64)
        for name, fused, generic, _ in pairs:
            res[name][0].append(fused.epoch(x, y, order, lrs, moms))
            res[name][1].append(generic.epoch(x, y, order, lrs, moms))
    for name, fused, generic, target in pairs:
        f = np.median(res[name][0])
        g = np.median(np.array(res[name][1]), axis=0)
        ratio = g[0] / f
        print(f"{name}: fused {f * 1e6:6.1f} us/step ({f * J * 5:.2f} s for fit_one_cycle(5)), generic "
              f"{g[0] * 1e6:6.1f} us/step = zero_grad {g[1] * 1e6:.1f} + forward/loss/backward {g[2] * 1e6:.1f} + "
              f"Adam {g[3] * 1e6:.1f}; ratio {ratio:.2f}x (target <= {target:g}x): "
              f"{'PASS' if ratio <= target else 'FAIL'}")
        per_round = [gr[0] / fr for fr, gr in zip(res[name][0], res[name][1])]
        print(f"    per-round ratios: {' '.join(f'{r:.2f}' for r in per_round)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
