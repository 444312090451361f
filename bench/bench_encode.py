"""Benchmark (not a test): the data path at MovieLens-25M scale, without the network.

1. `collabc.datasets.synthetic` generates an ML-25M-shaped set (162,541 users, 59,047 items, 25,000,095 ratings,
   heavy-tailed like the real one): seconds (a cold and a warm call) and the frame's size.
2. `CollabDataLoaders.from_df` encodes it with integer ids (int32 columns, as the loaders return them).
3. The same ratings with string ids ('u123', 'i456': pandas' default string dtype) and `from_df` again.
4. With ``--parse``: a 10M-row ``UserID::MovieID::Rating::Timestamp`` file (ML-10M's format and size) is written to
   a temporary folder and parsed by `collabc.datasets.read_ratings`.

For every phase it prints the seconds and the resident memory before it, at its peak and after it (VmRSS and
VmHWM from /proc/self/status; the peak is reset before each phase through /proc/self/clear_refs where the kernel
allows it, else it is the process-wide peak from getrusage): "peak - before" is what the phase needed at most,
"after - before" what it kept. The first `synthetic` call also pays for the process's first touch of fresh memory,
hence the second, "warm" one. Targets (issue 6): seconds, not minutes, per phase; memory a small multiple of the
data (25M ratings are 300 MB as int32/int32/float32).

    python bench/bench_encode.py [--n-ratings 25000095] [--parse] [--seed 0]
"""
import argparse
import gc
import os
import resource
import shutil
import tempfile
import time

import numpy as np
import pandas as pd

from collabc import CollabDataLoaders
from collabc.datasets import read_ratings, synthetic

ML25M = (162_541, 59_047, 25_000_095)


def _status_mb(key):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak():
    "Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible here."
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class Phase:
    "Time a phase and report RSS before it and its peak RSS."

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        gc.collect()
        self.resettable = _reset_peak()
        self.before = _status_mb('VmRSS')
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t
        peak = _status_mb('VmHWM') if self.resettable else None
        how = 'VmHWM' if peak is not None else 'ru_maxrss (process peak)'
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        after = _status_mb('VmRSS')
        fmt = lambda v: f"{v:6.0f} MB" if v is not None else "   n/a"
        print(f"{self.name:<44} {self.seconds:6.2f} s   RSS before {fmt(self.before)}  peak {fmt(peak)}  "
              f"after {fmt(after)}  ({how})", flush=True)
        return False


def string_ids(df):
    "The same frame with string user/item ids: labels built once per id, then gathered (no loop per row)."
    nu, ni = int(df['user'].max()), int(df['item'].max())
    ulab = np.array([f'u{k}' for k in range(nu + 1)], dtype=object)
    ilab = np.array([f'i{k}' for k in range(ni + 1)], dtype=object)
    return pd.DataFrame({'user': pd.array(ulab[df['user'].to_numpy()], dtype='str'),
                         'item': pd.array(ilab[df['item'].to_numpy()], dtype='str'),
                         'rating': df['rating']})


def write_dat(path, n, seed=0):
    "A `UserID::MovieID::Rating::Timestamp` file of `n` ML-10M-like rows (written in chunks)."
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(1, 71_568, n))
    with open(path, 'w') as f:
        for s in range(0, n, 1_000_000):
            e = min(n, s + 1_000_000)
            chunk = pd.DataFrame({'u': user[s:e], 'i': rng.integers(1, 65_134, e - s),
                                  'r': rng.integers(1, 11, e - s) / 2,
                                  't': rng.integers(789_652_009, 1_231_131_736, e - s)})
            text = chunk.to_csv(sep='\t', header=False, index=False, float_format='%g')
            f.write(text.replace('\t', '::'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n-ratings', type=int, default=ML25M[2])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--parse', action='store_true', help="also write and parse a 10M-row ratings.dat")
    ap.add_argument('--parse-rows', type=int, default=10_000_054)
    args = ap.parse_args()
    nu, ni = ML25M[0], ML25M[1]
    print(f"numpy {np.__version__}, pandas {pd.__version__}, {os.cpu_count()} CPUs; "
          f"baseline RSS {_status_mb('VmRSS') or 0:.0f} MB")

    with Phase(f"synthetic {nu:,} x {ni:,}, {args.n_ratings:,} (cold)"):
        df = synthetic(nu, ni, args.n_ratings, rank=10, seed=args.seed)
    del df
    with Phase(f"synthetic {nu:,} x {ni:,}, {args.n_ratings:,} (warm)"):
        df = synthetic(nu, ni, args.n_ratings, rank=10, seed=args.seed)
    nbytes = sum(df[c].to_numpy().nbytes for c in df.columns)
    print(f"  frame: {len(df):,} rows, {nbytes / 1e6:.0f} MB ({', '.join(f'{c} {t}' for c, t in df.dtypes.items())}); "
          f"{df['user'].nunique():,} users, {df['item'].nunique():,} items, mean rating {df['rating'].mean():.3f}")

    with Phase("from_df, integer ids"):
        dls = CollabDataLoaders.from_df(df, bs=4096, seed=0)
    print(f"  {dls}")
    del dls

    with Phase("build string ids (not part of encoding)"):
        sdf = string_ids(df)
    print(f"  dtypes: {', '.join(f'{c} {t}' for c, t in sdf.dtypes.items())}")
    del df
    with Phase("from_df, string ids"):
        dls = CollabDataLoaders.from_df(sdf, bs=4096, seed=0)
    print(f"  {dls}")
    del dls, sdf

    if args.parse:
        d = tempfile.mkdtemp(prefix='collabc-bench-')
        try:
            path = os.path.join(d, 'ratings.dat')
            t = time.perf_counter()
            write_dat(path, args.parse_rows, seed=args.seed)
            print(f"  wrote {path}: {args.parse_rows:,} rows, {os.path.getsize(path) / 1e6:.0f} MB "
                  f"in {time.perf_counter() - t:.1f} s")
            with Phase(f"read_ratings {args.parse_rows:,}-row ratings.dat"):
                r = read_ratings(path)
            print(f"  {len(r):,} rows, {', '.join(f'{c} {t}' for c, t in r.dtypes.items())}")
            del r
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
