"""Benchmark (not a test): collabc's implicit-feedback models against the `implicit` library.

Same data, factors 64, same regularisation, iterations and 2 threads for both; `implicit` (0.7.x,
CPU) is only needed here: `pip install implicit` in the benchmark environment, never as a
dependency of collabc.

* MovieLens-100k made implicit (ratings >= 4), held out per user (20%, random, `implicit_from_df`),
  3 seeds: seconds per iteration of ALS and BPR (reference and candidate alternate), and
  precision@10 / NDCG@10 of both libraries' factors on the same held-out pairs, through the same
  evaluation (`collabc.implicit.evaluate`: training items excluded), popularity beside.
* A 25M-interaction synthetic set shaped like ML-25M (162,541 users x 59,047 items, every pair of
  `collabc.datasets.synthetic` taken as an interaction): seconds per iteration and peak resident
  memory (VmHWM), each library in its own subprocess, run alternately.

Same model on both sides: implicit's ALS weighs an observed pair by its stored value times its
`alpha`, so it gets the confidences 1 + alpha * w with alpha=1; its BPR gets the binary matrix
(it samples negatives from the interactions, collabc uniformly from the positive's item group).
Threads: both get 2; BLAS is limited to one thread (implicit's advice). The machine is shared,
so the per-iteration medians of alternating runs and their ratios are what to read.

    COLLABC_DATA=/path/to/folder python bench/bench_implicit.py            # both data sets
    python bench/bench_implicit.py --small                                # ML-100k only
    python bench/bench_implicit.py --large --iters 3                      # the 25M set only
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

ALS = dict(factors=64, reg=10.0, alpha=5.0)
BPR_H = dict(factors=64, lr=0.01, reg=0.01)
SHAPE_25M = (162_541, 59_047, 25_000_095)


def cpu_info():
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                        "avx512_vnni", "avx512_bf16") if f in flags]
    return model, simd, os.cpu_count()


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------ MovieLens-100k

def ml100k():
    import pandas as pd

    from collabc import URLs, untar_data
    path = untar_data(URLs.ML_100k)
    return pd.read_csv(path / "u.data", delimiter="\t", header=None,
                       names=["user", "movie", "rating", "timestamp"])


def implicit_als(C, iters, seed, threads=2):
    import implicit
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):
        m = implicit.cpu.als.AlternatingLeastSquares(factors=ALS["factors"], regularization=ALS["reg"],
                                                     alpha=1.0, iterations=iters, num_threads=threads,
                                                     random_state=seed)
        ts = []
        m.fit(C, show_progress=False, callback=lambda it, t, loss: ts.append(t))
    return m, ts


def implicit_bpr(C, iters, seed, threads=2):
    import implicit
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):
        m = implicit.cpu.bpr.BayesianPersonalizedRanking(factors=BPR_H["factors"], learning_rate=BPR_H["lr"],
                                                         regularization=BPR_H["reg"], iterations=iters,
                                                         num_threads=threads, random_state=seed)
        ts = []
        m.fit(C, show_progress=False, callback=lambda it, t, c, s: ts.append(t))
    return m, ts


def collabc_fit(model, inter, iters, threads=2):
    ts, cpu = [], []
    for _ in range(iters):
        t, c = time.perf_counter(), time.process_time()
        model.fit_epoch(inter, n_threads=threads)
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return ts, cpu


def csr_of(inter, data):
    import scipy.sparse as sp
    return sp.csr_matrix((data, inter.indices, inter.indptr), shape=(inter.n_users, inter.n_items))


def bench_small(seeds=(0, 1, 2), als_iters=15, bpr_iters=100):
    from collabc.implicit import BPR, ImplicitALS, evaluate, implicit_from_df
    r = ml100k()
    df = r[r.rating >= 4].drop(columns="rating")   # MovieLens made implicit
    rows = {k: [] for k in ("als_t", "als_c", "bpr_t", "bpr_c")}
    q = {k: [] for k in ("als_t", "als_c", "bpr_t", "bpr_c", "pop")}
    for seed in seeds:
        d = implicit_from_df(df, item_name="movie", seed=seed)
        inter = d.interactions()
        conf = np.full(inter.nnz, 1 + ALS["alpha"], np.float32)
        order = ("theirs", "ours") if seed % 2 == 0 else ("ours", "theirs")
        for who in order:   # reference and candidate alternate from seed to seed
            if who == "theirs":
                m, ts = implicit_als(csr_of(inter, conf), als_iters, seed)
                rows["als_t"] += ts
                w = ImplicitALS(d.n_users, d.n_items, ALS["factors"], reg=ALS["reg"], alpha=ALS["alpha"])
                w.user_factors[:], w.item_factors[:] = m.user_factors, m.item_factors
                q["als_t"].append(evaluate(w, d))
                m, ts = implicit_bpr(csr_of(inter, np.ones(inter.nnz, np.float32)), bpr_iters, seed)
                rows["bpr_t"] += ts
                w = BPR(d.n_users, d.n_items, BPR_H["factors"] + 1)   # its last column holds the bias
                w.user_factors[:], w.item_factors[:] = m.user_factors, m.item_factors
                w.item_bias[:] = 0
                q["bpr_t"].append(evaluate(w, d))
            else:
                m = ImplicitALS(d.n_users, d.n_items, ALS["factors"], reg=ALS["reg"], alpha=ALS["alpha"], seed=seed)
                rows["als_c"] += collabc_fit(m, inter, als_iters)[0]
                rep = evaluate(m, d)
                q["als_c"].append(rep)
                q["pop"].append(rep["baseline"])
                m = BPR(d.n_users, d.n_items, BPR_H["factors"], lr=BPR_H["lr"], reg=BPR_H["reg"], seed=seed)
                rows["bpr_c"] += collabc_fit(m, inter, bpr_iters)[0]
                q["bpr_c"].append(evaluate(m, d))
    print(f"\nMovieLens-100k, ratings >= 4 ({len(df)} interactions; per user 20% held out), "
          f"seeds {list(seeds)}, 2 threads, factors 64")
    print(f"  ALS reg={ALS['reg']} alpha={ALS['alpha']} (confidence 1 + alpha), {als_iters} iterations, CG 3 steps; "
          f"BPR lr={BPR_H['lr']} reg={BPR_H['reg']}, {bpr_iters} iterations, SGD")
    for model in ("als", "bpr"):
        t, c = np.median(rows[f"{model}_t"]), np.median(rows[f"{model}_c"])
        print(f"  {model.upper()} seconds per iteration (median): implicit {t:.4f}, collabc {c:.4f}, "
              f"ratio collabc/implicit {c / t:.2f}")
    print("  held-out ranking (mean +- sd over seeds), training items excluded:")
    for name, key in (("implicit ALS", "als_t"), ("collabc ALS", "als_c"), ("implicit BPR", "bpr_t"),
                      ("collabc BPR", "bpr_c"), ("popularity", "pop")):
        p = np.array([x["precision@10"] for x in q[key]])
        n = np.array([x["ndcg@10"] for x in q[key]])
        print(f"    {name:<13} precision@10 {p.mean():.4f} +- {p.std():.4f}   NDCG@10 {n.mean():.4f} +- {n.std():.4f}"
              f"   per seed P@10 {np.round(p, 4).tolist()}")


# ------------------------------------------------------------------------------ the 25M set

def large_data(cache):
    cache = pathlib.Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    fu, fi = cache / "ml25m_shape_users.npy", cache / "ml25m_shape_items.npy"
    if not (fu.exists() and fi.exists()):
        from collabc.datasets import synthetic
        t = time.perf_counter()
        u, i, _ = synthetic(*SHAPE_25M, seed=0, as_frame=False)
        np.save(fu, u)
        np.save(fi, i)
        print(f"  generated the 25M set in {time.perf_counter() - t:.1f} s -> {cache}")
    return fu, fi


def worker(mode, cache, iters, threads):
    "One library, one model, in this process: prints a JSON line."
    fu, fi = large_data(cache)
    u, i = np.load(fu), np.load(fi)
    NU, NI = SHAPE_25M[0] + 1, SHAPE_25M[1] + 1        # ids from 1: row 0 is '#na#'
    base = vm("VmRSS")
    t0 = time.perf_counter()
    out = {"mode": mode}
    if mode.endswith("implicit"):
        import scipy.sparse as sp
        data = np.full(len(u), 1 + ALS["alpha"] if mode.startswith("als") else 1.0, np.float32)
        C = sp.csr_matrix((data, (u, i)), shape=(NU, NI))
        del u, i, data
        out["build_s"] = time.perf_counter() - t0
        c0 = time.process_time()
        _, ts = (implicit_als if mode.startswith("als") else implicit_bpr)(C, iters, 0, threads)
        out["cpu_s"] = (time.process_time() - c0) / iters
    else:
        from collabc.implicit import BPR, ImplicitALS, Interactions
        inter = Interactions(u, i, None, NU, NI, threads)
        del u, i
        if mode.startswith("als"):
            inter.item_csr()
            m = ImplicitALS(NU, NI, ALS["factors"], reg=ALS["reg"], alpha=ALS["alpha"], seed=0)
        else:
            m = BPR(NU, NI, BPR_H["factors"], lr=BPR_H["lr"], reg=BPR_H["reg"], seed=0)
            from collabc.implicit import auto_groups
            inter.blocks(auto_groups(inter.nnz, NU, NI))
        out["build_s"] = time.perf_counter() - t0
        ts, cpu = collabc_fit(m, inter, iters, threads)
        out["cpu_s"] = float(np.mean(cpu))
    out["per_iter"] = [float(x) for x in ts]
    out["peak_mib"], out["loaded_mib"] = vm("VmHWM"), base
    print(json.dumps(out), flush=True)


def bench_large(cache, iters, rounds, threads=2):
    large_data(cache)
    res = {}
    for model in ("als", "bpr"):
        for r in range(rounds):
            for lib in (("implicit", "collabc") if r % 2 == 0 else ("collabc", "implicit")):
                mode = f"{model}-{lib}"
                p = subprocess.run([sys.executable, __file__, "--worker", mode, "--cache", str(cache),
                                    "--iters", str(iters), "--threads", str(threads)],
                                   capture_output=True, text=True, check=False,
                                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
                if p.returncode != 0:
                    print(p.stderr[-2000:])
                    raise SystemExit(f"worker {mode} failed")
                res.setdefault(mode, []).append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"\nSynthetic ML-25M shape ({SHAPE_25M[0]:,} users x {SHAPE_25M[1]:,} items, {SHAPE_25M[2]:,} "
          f"interactions, unweighted), {threads} threads, factors 64, {iters} iterations x {rounds} alternating "
          f"runs, each in its own process")
    for model in ("als", "bpr"):
        t, c = res[f"{model}-implicit"], res[f"{model}-collabc"]
        it_t = np.median([x for r in t for x in r["per_iter"]])
        it_c = np.median([x for r in c for x in r["per_iter"]])
        cpu_t, cpu_c = np.median([r["cpu_s"] for r in t]), np.median([r["cpu_s"] for r in c])
        pk_t, pk_c = max(r["peak_mib"] for r in t), max(r["peak_mib"] for r in c)
        ld = np.median([r["loaded_mib"] for r in t + c])
        print(f"  {model.upper()}: seconds per iteration (median) implicit {it_t:.2f}, collabc {it_c:.2f}, "
              f"ratio {it_c / it_t:.2f}; CPU seconds per iteration implicit {cpu_t:.2f}, collabc {cpu_c:.2f}")
        print(f"       build: implicit {np.median([r['build_s'] for r in t]):.2f} s (scipy CSR), collabc "
              f"{np.median([r['build_s'] for r in c]):.2f} s (Interactions); peak memory (VmHWM) implicit "
              f"{pk_t:.0f} MiB, collabc {pk_c:.0f} MiB, ratio {pk_c / pk_t:.2f} (both include the "
              f"{ld:.0f} MiB process with the loaded id arrays)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="MovieLens-100k only")
    ap.add_argument("--large", action="store_true", help="the 25M set only")
    ap.add_argument("--iters", type=int, default=2, help="iterations per run on the 25M set")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs per library on the 25M set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "collabc_bench"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.cache, a.iters, a.threads)
    import implicit

    import collabc
    model, simd, ncpu = cpu_info()
    print(f"CPU: {model}, {ncpu} logical cores; instruction sets: {' '.join(simd)}")
    print(f"  AVX-512: {'yes' if 'avx512f' in simd else 'no'} (collabc's kernels are compiled for AVX-512, AVX2 "
          f"and x86-64 and the loader picks the best the CPU has)")
    print(f"collabc {collabc.__version__}, implicit {implicit.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at start")
    if not a.large:
        bench_small()
    if not a.small:
        bench_large(a.cache, a.iters, a.rounds, a.threads)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
