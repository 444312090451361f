"""Benchmark (not a test): Bayesian factorization machines by Gibbs sampling (issue 19),
collabc (`bayes_learner(...).fit()`, over `collabc.bayes.bayes_fm`) against myFM (`pip install myfm`; the benchmark's only use of
it, never a dependency of collabc) on the fixed MovieLens-100k split
(COLLABC_DATA/splits/ml100k_{train,valid}.tsv; dates from COLLABC_DATA/ml-100k/u.data).

Both systems get the same features (myFM's are built from collabc's own arrays: user block =
one-hot user [+ the items the user rated, 1/sqrt(count)], item block = one-hot item [+ the users
who rated it], row-local = one-hot day of the rating), the same rank, samples and burn-in, and
myFM's default priors, which are collabc's (for plain MF collabc's default factor prior is
Normal-Wishart, which myFM does not offer; the `-gamma` configurations use myFM's). Each run is its own subprocess (peak memory is its
VmHWM, seconds are the sampler's alone, not the feature building), collabc and myFM
alternating. Valid MSE is of the averaged prediction on all 20,000 validation rows (unclipped;
clipped to [1, 5] in brackets).

    python bench/bench_bayes.py                  # (a) plain rank 10, 200 samples; (b) implicit both
                                                 #   sides + dates, 500 samples, 50 burn-in; 3 seeds
    python bench/bench_bayes.py --table          # every feature set, collabc, 3 seeds + the lesson's model
    python bench/bench_bayes.py --large          # seconds per sweep on the 25M synthetic set
    python bench/bench_bayes.py --burn-in 5      # myFM's default burn-in (n_kept_samples = n_iter - 5)
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {   # name: (bayes_fm options, n_samples, burn_in, label)
    # plain MF: factor_prior 'auto' is 'wishart' (Normal-Wishart over the factors); myFM has
    # only the Normal-Gamma prior, which 'plain-gamma' gives collabc too
    'plain': (dict(implicit='none'), 200, 50, "plain MF with biases (200 samples)"),
    'plain500': (dict(implicit='none'), 500, 50, "plain MF with biases (500 samples)"),
    'plain-gamma': (dict(implicit='none', factor_prior='gamma'), 200, 50,
                    "plain MF with biases, Normal-Gamma factor prior (200 samples)"),
    'plain500-gamma': (dict(implicit='none', factor_prior='gamma'), 500, 50,
                       "plain MF with biases, Normal-Gamma factor prior (500 samples)"),
    'svdpp': (dict(implicit='user'), 500, 50, "+ items each user rated (SVD++-style)"),
    'both': (dict(implicit='both'), 500, 50, "+ users who rated each item (both sides)"),
    'dates': (dict(implicit='both', date_name='timestamp'), 500, 50, "+ rating-date features (the day, the user's day)"),
    'meta': (dict(implicit='both', date_name='timestamp', meta=True), 500, 50,
             "+ user and item metadata"),
}


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float('nan')


def cpu_info():
    model, flags = '?', []
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name') and model == '?':
                model = line.split(':', 1)[1].strip()
            if line.startswith('flags') and not flags:
                flags = line.split(':', 1)[1].split()
    simd = [f for f in flags if f.startswith(('avx', 'sse4', 'fma'))]
    return model, os.cpu_count(), simd


def data_dir():
    root = os.environ.get('COLLABC_DATA')
    if not root:
        sys.exit("set COLLABC_DATA to the folder holding ml-100k/ and splits/")
    return root


def fixed_split():
    "The fixed split as one frame (train rows then valid rows) with timestamps, and n_train."
    root = data_dir()
    names = ['user', 'movie', 'rating']
    tr = pd.read_csv(f'{root}/splits/ml100k_train.tsv', sep='\t', header=None, names=names)
    va = pd.read_csv(f'{root}/splits/ml100k_valid.tsv', sep='\t', header=None, names=names)
    ud = pd.read_csv(f'{root}/ml-100k/u.data', sep='\t', header=None, names=names + ['timestamp'])
    df = pd.concat([tr, va], ignore_index=True).merge(ud[['user', 'movie', 'timestamp']],
                                                      on=['user', 'movie'], how='left')
    assert len(df) == len(tr) + len(va) and df.timestamp.notna().all()
    return df, len(tr)


def metadata():
    "u.user (age, gender, occupation) and u.item (19 genre flags, release year) by raw id."
    root = data_dir()
    users = pd.read_csv(f'{root}/ml-100k/u.user', sep='|', header=None,
                        names=['user', 'age', 'gender', 'occupation', 'zip'], index_col='user')
    genres = [f'g{i}' for i in range(19)]
    items = pd.read_csv(f'{root}/ml-100k/u.item', sep='|', header=None, encoding='latin-1',
                        names=['movie', 'title', 'release', 'video', 'url'] + genres, index_col='movie')
    year = pd.to_datetime(items.release, format='%d-%b-%Y', errors='coerce').dt.year
    items['year'] = year.fillna(year.median()).astype(int)
    return users[['age', 'gender', 'occupation']], items[genres + ['year']]


def build(config, seed, n_threads):
    "The configuration's `bayes_learner` (the public API) on the fixed split, and its loaders."
    from collabc import CollabDataLoaders, bayes_learner
    opts, n_samples, burn_in, _ = CONFIGS[config]
    burn_in = int(os.environ.get('COLLABC_BENCH_BURN_IN', burn_in))   # --burn-in (both systems)
    opts = dict(opts)
    df, n_train = fixed_split()
    dls = CollabDataLoaders.from_df(df, valid_idx=np.arange(n_train, len(df)))
    if opts.pop('meta', False):
        opts['user_meta'], opts['item_meta'] = metadata()
    learn = bayes_learner(dls, n_factors=10, n_samples=n_samples, burn_in=burn_in, seed=seed,
                          n_threads=n_threads, **opts)
    learn.logger = lambda *a: None
    return learn, dls


def one_collabc(config, seed, n_threads):
    "learn.fit() of bayes_learner: every sweep through the Learner's loop (its table computed, not shown)."
    learn, dls = build(config, seed, n_threads)
    t = time.perf_counter()
    with learn.no_bar():
        learn.fit()
    sec = time.perf_counter() - t
    p = learn.model.fm.valid_preds()
    return p, dls.valid.y.astype(np.float64), sec


def one_myfm(config, seed, n_threads):
    "myFM on collabc's feature arrays (the same features, rows, groups)."
    import myfm
    import scipy.sparse as sps
    learn, dls = build(config, seed, n_threads)
    m = learn.model.fm
    del n_threads      # myFM's Gibbs sampler is single-threaded

    def block(r):
        ptr, ind, dat, tptr, trow, tval, nf = m.blocks[r]
        return sps.csr_matrix((dat.astype(np.float64), ind, ptr), shape=(ptr.size - 1, int(nf[0])))
    B = [block(0), block(1)]
    rel_t = [myfm.RelationBlock(m.idx[r].astype(np.int64), B[r]) for r in range(2)]
    rel_v = [myfm.RelationBlock(m._eval[3][r].astype(np.int64), B[r]) for r in range(2)]
    X_t = X_v = None
    if m.d0:
        ptr, ind, dat, _ = m.x
        X_t = sps.csr_matrix((dat.astype(np.float64), ind, ptr), shape=(ptr.size - 1, m.d0))
        ptr, ind, dat = m._eval[:3]
        X_v = sps.csr_matrix((dat.astype(np.float64), ind, ptr), shape=(ptr.size - 1, m.d0))
    fm = myfm.MyFMRegressor(rank=m.n_factors, random_seed=seed)
    y = m.y.astype(np.float64)
    t = time.perf_counter()
    fm.fit(X_t, y, X_rel=rel_t, grouping=[int(g) for g in m.group], n_iter=m.n_samples,
           n_kept_samples=m.n_samples - m.burn_in)
    sec = time.perf_counter() - t
    n_valid = dls.valid.y.size
    p = fm.predict(X_v if X_v is not None else sps.csr_matrix((n_valid, 0)), rel_v)
    return p, dls.valid.y.astype(np.float64), sec


def one_lesson(seed):
    "The lesson's recipe on the fixed split: collab_learner(n_factors=50, y_range=(0, 5.5)), fit_one_cycle(5, 5e-3, wd=0.1)."
    from collabc import CollabDataLoaders, collab_learner, set_seed
    set_seed(seed)
    df, n_train = fixed_split()
    dls = CollabDataLoaders.from_df(df[['user', 'movie', 'rating']], valid_idx=np.arange(n_train, len(df)))
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
    learn.logger = lambda *a: None
    t = time.perf_counter()
    with learn.no_bar():
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
    sec = time.perf_counter() - t
    p, y = learn.get_preds()
    return np.asarray(p, np.float64), np.asarray(y, np.float64).ravel(), sec


def child(system, config, seed, n_threads):
    if system == 'collabc':
        p, y, sec = one_collabc(config, seed, n_threads)
    elif system == 'myfm':
        p, y, sec = one_myfm(config, seed, n_threads)
    else:
        p, y, sec = one_lesson(seed)
    print(json.dumps({'mse': float(np.mean((p - y) ** 2)),
                      'mse_clip': float(np.mean((np.clip(p, 1, 5) - y) ** 2)),
                      'sec': sec, 'peak_mib': peak_mib()}))


def spawn(system, config, seed, n_threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(n_threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', system, config,
                          str(seed), str(n_threads)], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{system} {config} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(name, rs):
    mse = [r['mse'] for r in rs]
    clip = [r['mse_clip'] for r in rs]
    sec = [r['sec'] for r in rs]
    mem = [r['peak_mib'] for r in rs]
    return (f"| {name} | {' / '.join(f'{v:.4f}' for v in mse)} (clipped {' / '.join(f'{v:.4f}' for v in clip)}) "
            f"| {min(sec):.1f}-{max(sec):.1f} | {max(mem):.0f} |")


def compare(configs, seeds, n_threads):
    print("| model | valid MSE, seeds " + " / ".join(map(str, seeds)) + " | seconds | peak MiB |")
    print("| --- | --- | --- | --- |")
    summary = []
    for config in configs:
        res = {'collabc': [], 'myfm': []}
        for k, seed in enumerate(seeds):       # alternate which goes first
            order = ('collabc', 'myfm') if k % 2 == 0 else ('myfm', 'collabc')
            for system in order:
                res[system].append(spawn(system, config, seed, n_threads))
        label = CONFIGS[config][3]
        print(row(f"collabc: {label}", res['collabc']))
        print(row(f"myFM 0.4: {label}", res['myfm']))
        ratio_t = np.mean([a['sec'] / b['sec'] for a, b in zip(res['collabc'], res['myfm'])])
        ratio_m = np.mean([a['peak_mib'] / b['peak_mib'] for a, b in zip(res['collabc'], res['myfm'])])
        d_mse = np.mean([a['mse'] - b['mse'] for a, b in zip(res['collabc'], res['myfm'])])
        summary.append(f"{config}: collabc/myFM seconds {ratio_t:.2f}x, peak memory {ratio_m:.2f}x, "
                       f"valid MSE difference {d_mse:+.4f} (mean over seeds; collabc "
                       f"{np.mean([r['mse'] for r in res['collabc']]):.4f}, myFM "
                       f"{np.mean([r['mse'] for r in res['myfm']]):.4f})")
        sys.stdout.flush()
    print()
    for s in summary:
        print(s)


def table(seeds, n_threads):
    print("| model | valid MSE, seeds " + " / ".join(map(str, seeds)) + " | seconds | peak MiB |")
    print("| --- | --- | --- | --- |")
    print(row("the lesson's model (collab_learner n_factors=50, fit_one_cycle(5, 5e-3, wd=0.1))",
              [spawn('lesson', 'plain', s, n_threads) for s in seeds]))
    for config in CONFIGS:
        print(row(f"collabc bayes_learner rank 10: {CONFIGS[config][3]}",
                  [spawn('collabc', config, s, n_threads) for s in seeds]))
        sys.stdout.flush()


def large(n_threads, sweeps=3, epochs=2):
    "Seconds per sweep on the 25M synthetic set beside the sparse path's seconds per epoch."
    sys.path.insert(0, HERE)
    import gc
    from bench_large import build as build_large
    from collabc import Adagrad, CategoryMap, DataLoader, DataLoaders, collab_learner
    from collabc.bayes import BayesianFM
    nu, ni = 162_541, 59_047
    t = time.perf_counter()
    x, y, cut, floor = build_large(nu, ni, 25_000_095)
    print(f"25M synthetic ({len(y):,} ratings, {len(y) - cut:,} held out): generated in "
          f"{time.perf_counter() - t:.1f} s")
    eye = lambda m: (np.arange(m + 1, dtype=np.int64), np.arange(m, dtype=np.int32),
                     np.ones(m, np.float32), m)
    t = time.perf_counter()
    idx = np.ascontiguousarray(x[:cut].T)
    ev = np.ascontiguousarray(x[cut:].T)
    m = BayesianFM(y[:cut], [eye(nu + 1), eye(ni + 1)], idx, group=np.r_[np.zeros(nu + 1), np.ones(ni + 1)].astype(np.int32),
                   n_factors=10, n_samples=sweeps + 1, burn_in=1, seed=0, n_threads=n_threads,
                   eval_rows=(ev,))
    t_build = time.perf_counter() - t
    per = []
    for s in range(sweeps + 1):
        t = time.perf_counter()
        m.run_sweeps(1)
        per.append(time.perf_counter() - t)
    hold = float(np.sqrt(np.mean((m.eval_predictions() - y[cut:]) ** 2)))
    print(f"collabc BayesianFM rank 10 (plain MF, 2 blocks), {n_threads} threads: setup {t_build:.1f} s; "
          f"seconds per sweep {' '.join(f'{v:.2f}' for v in per)} (median {np.median(per):.2f}); "
          f"holdout RMSE of the average of {m.n_kept} samples {hold:.4f} (planted model's {floor:.4f}); "
          f"peak {peak_mib():.0f} MiB")
    del m, idx, ev
    gc.collect()
    classes = {"user": CategoryMap(range(1, nu + 1)), "item": CategoryMap(range(1, ni + 1))}
    dls = DataLoaders(DataLoader(x[:cut], y[:cut], bs=64, shuffle=True),
                      DataLoader(x[cut:], y[cut:], bs=4096), classes, "user", "item", "rating")
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), opt_func=Adagrad,
                           train_mode="sparse", n_threads=n_threads)
    learn.logger = lambda *a: None
    with learn.no_bar():
        learn.fit(epochs, 0.05, wd=0.02)
    times = learn.recorder.times
    print(f"sparse path (collab_learner train_mode='sparse', rank 50, Adagrad), {n_threads} threads: "
          f"seconds per epoch {' '.join(f'{v:.2f}' for v in times)} (the first groups the rows into blocks)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--table', action='store_true', help='every feature set (collabc) and the lesson')
    p.add_argument('--large', action='store_true', help='the 25M synthetic set only')
    p.add_argument('--configs', default='plain,dates', help='comma-separated: ' + ','.join(CONFIGS))
    p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--burn-in', type=int, default=None,
                   help="every configuration's burn-in (default 50; myFM's own default is 5)")
    p.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.burn_in is not None:       # the children read it (collabc's and myFM's runs alike)
        os.environ['COLLABC_BENCH_BURN_IN'] = str(a.burn_in)
    if a.child:
        system, config, seed, nt = a.child
        child(system, config, int(seed), int(nt))
        return
    model, ncpu, simd = cpu_info()
    print(f"CPU: {model}, {ncpu} cores; SIMD: {' '.join(simd)}")
    seeds = [int(s) for s in a.seeds.split(',')]
    print(f"burn-in: {a.burn_in} sweeps" if a.burn_in is not None else "burn-in: 50 sweeps (the issue's)")
    if a.large:
        large(a.threads)
    elif a.table:
        table(seeds, a.threads)
    else:
        compare(a.configs.split(','), seeds, a.threads)


if __name__ == '__main__':
    main()
