"""Benchmark (not a test): top-n recommendation throughput.

1. MovieLens-100k: the lesson's model (collab_learner, n_factors=50, y_range=(0, 5.5), fit 5
   epochs), then top-10 for all 943 users with training items excluded: the C path
   (`collabc.topn.top_n`, arrays) and the full `learn.recommend_many` (DataFrame with
   titles). Target: <= 20 ms. Reference in the same run: NumPy - `U @ V.T` (BLAS) + biases +
   sigmoid_range, seen items set to -inf, `argpartition` then a sort of the 10.
2. Synthetic: 100,000 users x 50,000 items, 50 factors, random model, 20 seen items per user;
   top-10 for a sample of users, reported as users per second (and the extrapolated time for all
   100,000), against the same NumPy reference on a smaller sample.

    COLLABC_DATA=/path/to/folder/with/ml-100k python bench/bench_recommend.py [--full]
"""
import os
import sys
import time

import numpy as np

from collabc import CollabDataLoaders, collab_learner, set_seed
from collabc.__main__ import load_ml100k
from collabc.csr import csr_rows
from collabc.topn import rank_vectors, top_n


def best_of(f, repeat=7):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def numpy_topk(U, bu, V, bv, y_range, excl, n, first=1):
    "The obvious NumPy version: one GEMM, masks, argpartition, sort the n."
    z = U @ V.T + bu[:, None] + bv[None, :]
    if y_range is not None:
        lo, hi = y_range
        z = 1 / (1 + np.exp(-z)) * (hi - lo) + lo
    z[:, :first] = -np.inf
    indptr, indices = excl
    rows = np.repeat(np.arange(len(U)), np.diff(indptr))
    z[rows, indices] = -np.inf
    part = np.argpartition(-z, n - 1, axis=1)[:, :n]
    vals = np.take_along_axis(z, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)


def ml100k():
    ratings = load_ml100k()
    set_seed(42)
    dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=64)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
    learn.logger = lambda *a: None
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
    m = learn.model
    users = np.arange(1, m.n_users)
    labels = list(dls.classes["user"][1:])
    seen = learn.seen()
    t_c = best_of(lambda: top_n(learn, users, 10))
    t_c1 = best_of(lambda: top_n(learn, users, 10, threads=1))
    t_df = best_of(lambda: learn.recommend_many(labels, n=10))
    U, V = m.u_weight.weight, m.i_weight.weight
    bu, bv = m.u_bias.weight[:, 0], m.i_bias.weight[:, 0]
    excl = csr_rows(seen, users)
    t_np = best_of(lambda: numpy_topk(U[users], bu[users], V, bv, m.y_range, excl, 10))
    idx, sc = top_n(learn, users, 10)
    ridx, rsc = numpy_topk(U[users], bu[users], V, bv, m.y_range, excl, 10)
    agree = float(np.mean(idx == ridx))
    print(f"ML-100k, top-10 for all {len(users)} users ({m.n_items} items, 50 factors, seen excluded):")
    print(f"  C kernel, {os.cpu_count()} threads: {t_c * 1e3:7.2f} ms   (1 thread: {t_c1 * 1e3:.2f} ms)")
    print(f"  learn.recommend_many (DataFrame with titles): {t_df * 1e3:7.2f} ms   target <= 20 ms: "
          f"{'OK' if t_df <= 0.020 else 'MISSED'}")
    print(f"  NumPy reference (GEMM + argpartition): {t_np * 1e3:7.2f} ms   -> C path is "
          f"{t_np / t_c:.1f}x faster; same top-10 in {agree:.2%} of slots")


def synthetic(full=False):
    NU, NI, K, n, n_seen = 100_000, 50_000, 50, 10, 20
    rng = np.random.default_rng(0)
    V = (rng.standard_normal((NI, K), dtype=np.float32) * 0.3)
    bv = rng.standard_normal(NI, dtype=np.float32) * 0.1
    sample = NU if full else 4_000
    U = rng.standard_normal((sample, K), dtype=np.float32) * 0.3
    bu = rng.standard_normal(sample, dtype=np.float32) * 0.1
    seen = np.sort(rng.integers(0, NI, (sample, n_seen)), axis=1).astype(np.int32)
    indptr = np.arange(0, sample * n_seen + 1, n_seen, dtype=np.int64)
    excl = (indptr, seen.reshape(-1))
    t = best_of(lambda: rank_vectors(U, bu, V, bv, n, excl, first=0, y_range=(0, 5.5)), 1 if full else 3)
    ups = sample / t
    ref_n = 500
    ref_excl = (indptr[:ref_n + 1], seen[:ref_n].reshape(-1))
    t_np = best_of(lambda: numpy_topk(U[:ref_n], bu[:ref_n], V, bv, (0, 5.5), ref_excl, n, first=0), 2)
    print(f"Synthetic {NU:,} users x {NI:,} items, {K} factors, {n_seen} seen per user, top-{n}:")
    print(f"  C kernel, {os.cpu_count()} threads: {ups:,.0f} users/s ({sample:,} users in {t:.2f} s); "
          f"all {NU:,} users: {NU / ups:.1f} s{'' if full else ' (extrapolated; --full runs them all)'}")
    print(f"  NumPy reference: {ref_n / t_np:,.0f} users/s -> C path is {ups / (ref_n / t_np):.1f}x faster")


if __name__ == "__main__":
    ml100k()
    synthetic(full="--full" in sys.argv)
