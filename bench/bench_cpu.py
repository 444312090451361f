"""Benchmark (not a test): collabc on whatever CPU runs it, each kernel version forced in turn,
against LibMF and against naive C floors, in one run.

Prints the CPU (model, the instruction-set extensions found, the kernel versions built) and then,
for each version this CPU runs (COLLABC_ISA=avx512 / avx2 / generic, each in a fresh process):

- the sparse path (`train_mode='sparse'`, 50 factors, y_range (0, 5.5), row-wise Adagrad, lr 0.05,
  wd 0.02, 2 threads) on the synthetic MovieLens-1M shape of bench/bench_large.py (6,040 x 3,706,
  1,000,209 ratings, 2% held out) and, with --large, the MovieLens-25M shape: median seconds per
  epoch (epochs after the first; an epoch includes the holdout RMSE, as LibMF's iteration
  includes its evaluation); single-thread SGD nanoseconds per rating on the 1M shape;
- the lesson: `fit_one_cycle(5, 5e-3, wd=0.1)` of the dot model on MovieLens-100k (bs 64, 50
  factors, y_range (0, 5.5); seconds of the whole fit, its per-epoch validation included),
  median of --reps fits;
- top-10 for all 943 users of that model (`collabc.topn.top_n`, seen items excluded): median ms;
- the lesson's neural model, `collab_learner(dls, use_nn=True, y_range=(0, 5.5), layers=[100,
  50])` with `fit_one_cycle(5, 5e-3, wd=0.1)`: seconds of the whole fit, median of --nn-reps.

Against:
- LibMF (`mf-train -k 50 -s 2 -l2 0.02 -r 0.05 -p valid train`), built by this script from a
  checkout (--libmf-src, with LibMF's own Makefile and default flags: -O3 -march=native
  -DUSESSE -fopenmp) or given as a binary (--libmf-bin). Seconds per iteration = the median
  interval between the lines it prints (and flushes) after each iteration: text parsing and
  set-up are in none. Not --quiet, so each iteration includes LibMF's evaluation (training loss,
  regulariser and the holdout RMSE), as collabc's epoch includes its holdout RMSE.
- The SGD floor: a naive C program compiled here with -O3 -march=native, one rating at a time
  in the data's order, 50 factors with biases and y_range's sigmoid (the same arithmetic as
  collabc's SGD step), no blocking, one thread: nanoseconds per rating on the same 1M set.
- The lesson floor: a naive C program (same flags) doing the same training as
  fit_one_cycle(5, 5e-3, wd=0.1) on the lesson's training split: 5 epochs of shuffled batches of
  64, forward (dot + biases + sigmoid_range), MSE, backward into dense gradients, fastai's Adam
  (beta2 0.99, eps 1e-5, decoupled weight decay) over every parameter every step, one-cycle
  learning-rate and momentum schedules, one thread, float32; it does no validation.

Ratios printed: collabc / LibMF (target <= 0.8), collabc 1-thread SGD / floor, lesson fit /
lesson floor (target <= 0.8), top-10 ms (target <= 6), and each version / the widest one (the
dot and NN fits and top-10: target <= 1.3 per core).

    python bench/bench_cpu.py --libmf-src /path/to/libmf            # 1M shape
    python bench/bench_cpu.py --libmf-bin /path/to/mf-train --large  # and the 25M shape
    python bench/bench_cpu.py --isa avx2 generic                      # only those versions

MovieLens-100k is read from COLLABC_DATA (the lesson parts are skipped without it). The machine
should be quiet: numbers from a shared machine are noisy (medians help, ratios inside one run
help more; --rounds 3 runs LibMF and each version three times in turn and prints the median of
the ratios taken inside each round).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"1M": (6040, 3706, 1_000_209), "25M": (162_541, 59_047, 25_000_095)}

FLOOR_SGD_C = r"""
/* naive SGD floor: one rating at a time, K factors with biases, y_range sigmoid, L2 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define K 50
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    FILE *fx = fopen(argv[1], "rb"), *fy = fopen(argv[2], "rb");
    long n = atol(argv[3]), nu = atol(argv[4]), ni = atol(argv[5]), epochs = atol(argv[6]);
    int32_t *x = malloc(8 * n); float *y = malloc(4 * n);
    if (!fx || !fy || fread(x, 8, n, fx) != (size_t)n || fread(y, 4, n, fy) != (size_t)n) return 1;
    float *P = malloc(4 * nu * K), *Q = malloc(4 * ni * K), *bu = calloc(nu, 4), *bi = calloc(ni, 4);
    unsigned s = 1;
    for (long k = 0; k < nu * K; k++) P[k] = ((s = s * 1103515245u + 12345u) >> 8) * (0.02f / 16777216.0f);
    for (long k = 0; k < ni * K; k++) Q[k] = ((s = s * 1103515245u + 12345u) >> 8) * (0.02f / 16777216.0f);
    const float lr = 0.05f, wd = 0.02f, span = 5.5f;
    double best = 1e30, sse = 0;
    for (long e = 0; e < epochs; e++) {
        double t = now();
        sse = 0;
        for (long r = 0; r < n; r++) {
            float *p = P + (long)x[2 * r] * K, *q = Q + (long)x[2 * r + 1] * K;
            float *b1 = bu + x[2 * r], *b2 = bi + x[2 * r + 1];
            float z = 0;
            for (int k = 0; k < K; k++) z += p[k] * q[k];
            z += *b1 + *b2;
            float sg = 1.0f / (1.0f + expf(-z)), err = sg * span - y[r];
            float dz = 2.0f * err * span * sg * (1.0f - sg);
            sse += (double)err * err;
            for (int k = 0; k < K; k++) {
                float a = p[k], b = q[k];
                p[k] = a - lr * (dz * b + wd * a);
                q[k] = b - lr * (dz * a + wd * b);
            }
            *b1 -= lr * (dz + wd * *b1);
            *b2 -= lr * (dz + wd * *b2);
        }
        t = now() - t;
        if (t < best) best = t;
    }
    printf("{\"ns_per_rating\": %.3f, \"s_per_epoch\": %.5f, \"mse\": %.5f}\n", 1e9 * best / n, best, sse / n);
    return 0;
}
"""

FLOOR_LESSON_C = r"""
/* naive lesson floor: fit_one_cycle(E, lr_max, wd) of the dot model with biases, fastai's
 * Adam (decoupled wd), one-cycle schedules, bs rows a batch, dense update of every parameter */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define K 50
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double cosine(double a, double b, double p) { return b + (a - b) / 2 * (1 + cos(M_PI * p)); }
int main(int argc, char **argv) {
    FILE *fx = fopen(argv[1], "rb"), *fy = fopen(argv[2], "rb");
    long n = atol(argv[3]), nu = atol(argv[4]), ni = atol(argv[5]), E = atol(argv[6]), bs = 64;
    const double lr_max = 5e-3, wd = 0.1, b2 = 0.99, eps = 1e-5, pct = 0.25;
    int32_t *x = malloc(8 * n); float *y = malloc(4 * n);
    if (!fx || !fy || fread(x, 8, n, fx) != (size_t)n || fread(y, 4, n, fy) != (size_t)n) return 1;
    long NP = (nu + ni) * (K + 1);  /* U [nu K], I [ni K], bu [nu], bi [ni] */
    float *p = malloc(4 * NP), *g = calloc(NP, 4), *m = calloc(NP, 4), *v = calloc(NP, 4);
    float *U = p, *I = p + nu * K, *BU = p + (nu + ni) * K, *BI = BU + nu;
    long gU = 0, gI = nu * K, gBU = (nu + ni) * K, gBI = gBU + nu;
    unsigned s = 7;
    for (long k = 0; k < (nu + ni) * K; k++) p[k] = (((s = s * 1103515245u + 12345u) >> 8) / 16777216.0f - 0.5f) * 0.02f;
    for (long k = (nu + ni) * K; k < NP; k++) p[k] = 0;
    long *ord = malloc(8 * n), nb = n / bs, steps = nb * E, step = 0;  /* drop_last, as fastai */
    for (long r = 0; r < n; r++) ord[r] = r;
    double t0 = now();
    for (long e = 0; e < E; e++) {
        for (long r = n - 1; r > 0; r--) { long j = (s = s * 1103515245u + 12345u) % (r + 1); long tmp = ord[r]; ord[r] = ord[j]; ord[j] = tmp; }
        for (long b = 0; b < nb; b++, step++) {
            double f = (double)step / steps, lr, mom;
            if (f < pct) { lr = cosine(lr_max / 25, lr_max, f / pct); mom = cosine(0.95, 0.85, f / pct); }
            else { lr = cosine(lr_max, lr_max / 25 / 1e5, (f - pct) / (1 - pct)); mom = cosine(0.85, 0.95, (f - pct) / (1 - pct)); }
            for (long j = 0; j < bs; j++) {
                long r = ord[b * bs + j], u = x[2 * r], i = x[2 * r + 1];
                float z = 0;
                for (int k = 0; k < K; k++) z += U[u * K + k] * I[i * K + k];
                z += BU[u] + BI[i];
                float sg = 1.0f / (1.0f + expf(-z)), err = sg * 5.5f - y[r];
                float dz = 2.0f * err / bs * 5.5f * sg * (1.0f - sg);
                for (int k = 0; k < K; k++) { g[gU + u * K + k] += dz * I[i * K + k]; g[gI + i * K + k] += dz * U[u * K + k]; }
                g[gBU + u] += dz;
                g[gBI + i] += dz;
            }
            const float b1 = (float)mom, c1 = 1.0f - b1, bb2 = (float)b2, c2 = 1.0f - bb2;
            const float decay = (float)(1 - lr * wd);
            const double t = step + 1;  /* fastai's Adam: debias with the step count */
            const float d1 = (float)(1 - pow(mom, t)), d2 = (float)sqrt(1 - pow(b2, t));
            const float al = (float)lr / d1;
            for (long k = 0; k < NP; k++) {
                float w = p[k] * decay, gk = g[k];
                m[k] = b1 * m[k] + c1 * gk;
                v[k] = bb2 * v[k] + c2 * gk * gk;
                p[k] = w - al * m[k] / (sqrtf(v[k]) / d2 + (float)eps);
                g[k] = 0;
            }
        }
    }
    printf("{\"fit_s\": %.4f, \"steps\": %ld}\n", now() - t0, steps);
    return 0;
}
"""


def cpu_line():
    from collabc.cpu import format_cpu_info
    return format_cpu_info()


# ---------------------------------------------------------------- workers (one clone each)

def worker_sparse(a):
    from collabc import SGD, Adagrad, CategoryMap, DataLoader, DataLoaders, collab_learner, rmse
    x = np.load(os.path.join(a.data, "x.npy"), mmap_mode="r")
    y = np.load(os.path.join(a.data, "y.npy"), mmap_mode="r")
    cut = int(np.load(os.path.join(a.data, "cut.npy")))
    nu, ni, _ = SHAPES[a.shape]
    classes = {"user": CategoryMap(range(1, nu + 1)), "item": CategoryMap(range(1, ni + 1))}
    dls = DataLoaders(DataLoader(np.asarray(x[:cut]), np.asarray(y[:cut]), bs=64, shuffle=True),
                      DataLoader(np.asarray(x[cut:]), np.asarray(y[cut:]), bs=4096), classes,
                      "user", "item", "rating")
    opt = {"adagrad": Adagrad, "sgd": SGD}[a.opt]
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), opt_func=opt, metrics=[rmse],
                           train_mode="sparse", n_threads=a.threads)
    learn.logger = lambda *args: None
    learn.fit(a.epochs, 0.05, wd=0.02)
    t = np.array(learn.recorder.times[1:])
    med = float(np.median(t))
    print(json.dumps({"s_per_epoch": med, "ns_per_rating": med / cut * 1e9,
                      "rmse": float(learn.recorder.values[-1][2])}))


def worker_lesson(a):
    from collabc import CollabDataLoaders, collab_learner, set_seed
    from collabc.__main__ import load_ml100k
    from collabc.topn import top_n
    ratings = load_ml100k(a.ml100k)
    fits, tops = [], []
    for rep in range(a.reps):
        set_seed(42 + rep)
        dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=64)
        learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
        learn.logger = lambda *args: None
        t = time.perf_counter()
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
        fits.append(time.perf_counter() - t)
    nn_fits = []
    for rep in range(a.nn_reps):
        set_seed(42 + rep)
        nn = collab_learner(dls, use_nn=True, y_range=(0, 5.5), layers=[100, 50])
        nn.logger = lambda *args: None
        t = time.perf_counter()
        nn.fit_one_cycle(5, 5e-3, wd=0.1)
        nn_fits.append(time.perf_counter() - t)
    users = np.arange(1, learn.dls.n_users)
    top_n(learn, users, 10)  # warm-up (the seen-items index is built once)
    for _ in range(20):
        t = time.perf_counter()
        top_n(learn, users, 10)
        tops.append((time.perf_counter() - t) * 1e3)
    if a.dump:  # the training split, for the lesson floor
        np.asarray(dls.train.x, np.int32).tofile(os.path.join(a.dump, "lx.bin"))
        np.asarray(dls.train.y, np.float32).tofile(os.path.join(a.dump, "ly.bin"))
        with open(os.path.join(a.dump, "lshape.json"), "w") as f:
            json.dump([len(dls.train.y), dls.n_users, dls.n_items], f)
    print(json.dumps({"fit_s": statistics.median(fits), "fits": fits, "topn_ms": statistics.median(tops),
                      "nn_fit_s": statistics.median(nn_fits) if nn_fits else None,
                      "n_users": int(len(users))}))


# ---------------------------------------------------------------- the driver

def run_json(cmd, env=None, timeout=7200):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def clone_env(isa):
    env = dict(os.environ)
    env["COLLABC_ISA"] = isa
    return env


def make_data(shape, folder):
    "The synthetic set of bench_large (holdout at the tail) as .npy and LibMF text files."
    sys.path.insert(0, HERE)
    from bench_large import build
    nu, ni, n = SHAPES[shape]
    x, y, cut, _ = build(nu, ni, n)
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "x.npy"), x)
    np.save(os.path.join(folder, "y.npy"), y)
    np.save(os.path.join(folder, "cut.npy"), np.int64(cut))
    x[:cut].tofile(os.path.join(folder, "x.bin"))
    y[:cut].tofile(os.path.join(folder, "y.bin"))
    import pandas as pd
    for name, sl in (("train.txt", slice(0, cut)), ("valid.txt", slice(cut, None))):
        pd.DataFrame({"u": x[sl, 0], "i": x[sl, 1], "r": y[sl]}).to_csv(
            os.path.join(folder, name), sep=" ", header=False, index=False)
    return cut


def build_libmf(src, out):
    "mf-train built from a LibMF checkout with its own Makefile and default flags."
    work = os.path.join(out, "libmf")
    shutil.copytree(src, work, ignore=shutil.ignore_patterns(".git", "*.o", "mf-train", "mf-predict"))
    subprocess.run(["make", "-C", work, "-j2", "mf-train"], check=True, capture_output=True)
    return os.path.join(work, "mf-train")


def libmf_per_iter(binary, folder, epochs):
    """Median seconds between LibMF's per-iteration lines (it prints and flushes one after each
    iteration, its evaluation included): parsing and set-up are not in any interval."""
    cmd = [binary, "-k", "50", "-s", "2", "-l2", "0.02", "-r", "0.05", "-t", str(epochs + 2),
           "-p", os.path.join(folder, "valid.txt"), os.path.join(folder, "train.txt"),
           os.path.join(folder, "model.txt")]
    stamps = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        for line in proc.stdout:
            if line.split() and line.split()[0].isdigit():  # "iter tr_rmse va_rmse obj"
                stamps.append(time.perf_counter())
    if proc.returncode != 0 or len(stamps) < 3:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    return statistics.median(np.diff(stamps))


def compile_c(source, out, name):
    c = os.path.join(out, name + ".c")
    with open(c, "w") as f:
        f.write(source)
    exe = os.path.join(out, name)
    subprocess.run([os.environ.get("CC", "cc"), "-O3", "-march=native", "-o", exe, c, "-lm"], check=True)
    return exe


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--libmf-src", help="a LibMF checkout (github.com/cjlin1/libmf) to build mf-train from")
    p.add_argument("--libmf-bin", help="an mf-train binary")
    p.add_argument("--large", action="store_true", help="also the 25M shape (slow: minutes per version)")
    p.add_argument("--epochs", type=int, default=5, help="sparse-path epochs per run (the first is not timed)")
    p.add_argument("--reps", type=int, default=3, help="lesson fits per version")
    p.add_argument("--nn-reps", type=int, default=1, help="fits of the lesson's neural model per version (0: none)")
    p.add_argument("--rounds", type=int, default=1,
                   help="sparse-path rounds (LibMF, then each version, again): ratios taken inside "
                        "a round, their median printed")
    p.add_argument("--isa", nargs="+", help="the versions to run (default: all this CPU runs)")
    p.add_argument("--data", help="COLLABC_DATA, the folder holding ml-100k/ (default: $COLLABC_DATA)")
    p.add_argument("--keep", help="a folder for the generated data and binaries (default: a temporary one)")
    p.add_argument("--worker", choices=["sparse", "lesson"], help=argparse.SUPPRESS)
    p.add_argument("--shape", default="1M", help=argparse.SUPPRESS)
    p.add_argument("--opt", default="adagrad", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--ml100k", help=argparse.SUPPRESS)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker == "sparse":
        return worker_sparse(a)
    if a.worker == "lesson":
        return worker_lesson(a)

    from collabc import _core
    built, supported = _core.isa_levels()
    if a.rounds < 1:
        p.error(f"--rounds must be >= 1, got {a.rounds}")
    isas = a.isa or list(supported)
    for i in isas:
        if i not in supported:
            p.error(f"--isa {i}: this CPU runs {', '.join(supported)}")
    work = a.keep or tempfile.mkdtemp(prefix="bench_cpu_")
    os.makedirs(work, exist_ok=True)
    data_root = a.data or os.environ.get("COLLABC_DATA")
    me = [sys.executable, os.path.abspath(__file__)]
    lscpu = shutil.which("lscpu")
    print(cpu_line())
    if lscpu:
        out = subprocess.run([lscpu], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith(("Model name", "CPU(s):", "CPU max MHz", "L2 cache", "L3 cache")):
                print("  " + " ".join(line.split()))
    print(f"kernel versions run: {', '.join(isas)} (each forced by COLLABC_ISA in its own process)")

    libmf = a.libmf_bin or (build_libmf(a.libmf_src, work) if a.libmf_src else None)
    floor_sgd = compile_c(FLOOR_SGD_C, work, "floor_sgd")
    res = {}
    for shape in (["1M", "25M"] if a.large else ["1M"]):
        folder = os.path.join(work, shape)
        t = time.perf_counter()
        cut = make_data(shape, folder)
        print(f"\n== sparse path, {shape} shape ({cut:,} training ratings; data made in "
              f"{time.perf_counter() - t:.0f} s)")
        r = res[shape] = {}
        nu, ni, _ = SHAPES[shape]
        fl = run_json([floor_sgd, os.path.join(folder, "x.bin"), os.path.join(folder, "y.bin"),
                       str(cut), str(nu + 1), str(ni + 1), "3"])
        print(f"naive C SGD floor, 1 thread: {fl['ns_per_rating']:.1f} ns per rating "
              f"({fl['s_per_epoch']:.3f} s per epoch)")
        # rounds: LibMF, then each version, again and again; a ratio is taken inside a round
        # (the machine's speed drifts between rounds), and its median over the rounds printed
        lms, ada, ratios = [], {isa: [] for isa in isas}, {isa: [] for isa in isas}
        for rnd in range(a.rounds):
            lm = libmf_per_iter(libmf, folder, a.epochs) if libmf else None
            head = f"round {rnd + 1}: " if a.rounds > 1 else ""
            if lm:
                lms.append(lm)
                print(f"{head}LibMF mf-train, 2 threads: {lm:.4f} s per iteration (its evaluation included)")
            for isa in isas:
                base = me + ["--data", folder, "--shape", shape, "--epochs", str(a.epochs)]
                t = run_json(base + ["--worker", "sparse", "--opt", "adagrad", "--threads", "2"],
                             clone_env(isa))["s_per_epoch"]
                ada[isa].append(t)
                line = f"  {isa:8s} Adagrad 2 threads {t:.4f} s/epoch"
                if lm:
                    ratios[isa].append(t / lm)
                    line += f" = {t / lm:.2f}x LibMF"
                if shape == "1M" and rnd == 0:
                    sgd = run_json(base + ["--worker", "sparse", "--opt", "sgd", "--threads", "1"], clone_env(isa))
                    line += (f"; SGD 1 thread {sgd['ns_per_rating']:.1f} ns/rating = "
                             f"{sgd['ns_per_rating'] / fl['ns_per_rating']:.2f}x the floor")
                    r[isa + "_sgd"] = sgd["ns_per_rating"]
                print(line, flush=True)
        for isa in isas:
            r[isa] = statistics.median(ada[isa])
        if a.rounds > 1:
            print(f"  medians over {a.rounds} rounds: " + ", ".join(
                f"{isa} {r[isa]:.4f} s/epoch" + (f" = {statistics.median(ratios[isa]):.2f}x LibMF "
                                                 f"(rounds {min(ratios[isa]):.2f}-{max(ratios[isa]):.2f})"
                                                 if lms else "") for isa in isas))
        w = r[isas[0]]
        print("  versus " + isas[0] + ": " + ", ".join(f"{i} {r[i] / w:.2f}x" for i in isas))

    if data_root and os.path.exists(os.path.join(data_root, "ml-100k", "u.data")):
        print(f"\n== lesson: fit_one_cycle(5, 5e-3, wd=0.1) on MovieLens-100k (median of {a.reps}), "
              f"top-10 for all users (median of 20)")
        floor_lesson = compile_c(FLOOR_LESSON_C, work, "floor_lesson")
        les = {}
        for k, isa in enumerate(isas):
            les[isa] = run_json(me + ["--worker", "lesson", "--ml100k", data_root, "--reps", str(a.reps),
                                      "--nn-reps", str(a.nn_reps)]
                                + (["--dump", work] if k == 0 else []), clone_env(isa))
        with open(os.path.join(work, "lshape.json")) as f:
            n, nu, ni = json.load(f)
        fl = min((run_json([floor_lesson, os.path.join(work, "lx.bin"), os.path.join(work, "ly.bin"),
                            str(n), str(nu), str(ni), "5"]) for _ in range(2)), key=lambda d: d["fit_s"])
        print(f"naive C lesson floor (same training, no validation): {fl['fit_s']:.3f} s")
        for isa in isas:
            d = les[isa]
            print(f"  {isa:8s} fit {d['fit_s']:.3f} s = {d['fit_s'] / fl['fit_s']:.2f}x the floor "
                  f"({d['fit_s'] / les[isas[0]]['fit_s']:.2f}x {isas[0]}); top-10 for "
                  f"{d['n_users']} users {d['topn_ms']:.2f} ms ({d['topn_ms'] / les[isas[0]]['topn_ms']:.2f}x)")
        if a.nn_reps:
            print(f"the lesson's neural model, fit_one_cycle(5, 5e-3, wd=0.1) (median of {a.nn_reps}):")
            for isa in isas:
                d = les[isa]
                print(f"  {isa:8s} NN fit {d['nn_fit_s']:.3f} s ({d['nn_fit_s'] / les[isas[0]]['nn_fit_s']:.2f}x {isas[0]})")
    else:
        print("\n(lesson and top-10 skipped: set COLLABC_DATA to a folder holding ml-100k/)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
