"""Benchmark (not a test): what collabc.ray costs on one machine.

1. The sparse path on the 25M synthetic set (bench_large.py's shape: 162,541 x 59,047,
   25,000,095 ratings, 2% held out; 50 factors, row-wise Adagrad, 8 x 8 blocks): a local fit
   (`train_mode='sparse'`, 2 threads) and `fit_distributed` with 2 workers of 1 CPU on a local
   Ray, in the same run: seconds per epoch (the first local epoch, which also groups the rows into
   blocks, is left out of the mean), bytes moved between workers and gathered by the driver per
   epoch, and whether the two results are bit-identical.
2. A 20-trial sweep (`tune_collab`, 2 trials at a time on 2 CPUs) against the same 20 fits run one
   after the other in this process: the 1M synthetic shape, the exact path, fit_one_cycle.

On 2 cores no speed-up is expected: the numbers show the overhead (Ray start-up excluded).

    python bench/bench_ray.py                  # both parts
    python bench/bench_ray.py --small          # the distributed part on the 1M shape instead
"""
import argparse
import time

import numpy as np

from collabc import (Adagrad, CategoryMap, DataLoader, DataLoaders, collab_learner, set_seed)

from bench_autograd import cpu_model
from bench_large import build


def loaders(n_users, n_items, n_ratings, bs=4096):
    x, y, n_train, floor = build(n_users, n_items, n_ratings)
    classes = {"user": CategoryMap._from_items(range(1, n_users + 1)),
               "item": CategoryMap._from_items(range(1, n_items + 1))}
    return DataLoaders(DataLoader(x[:n_train], y[:n_train], bs=bs, shuffle=True),
                       DataLoader(x[n_train:], y[n_train:], bs=bs), classes, "user", "item", "rating")


def distributed(shape, epochs):
    from collabc.ray import fit_distributed
    print(f"== sparse path, {shape[2]:,} ratings ({shape[0]:,} users x {shape[1]:,} items), "
          f"{epochs} epochs, 8 x 8 blocks, Adagrad lr 0.05 wd 0.02, 50 factors")
    t = time.perf_counter()
    dls = loaders(*shape)
    print(f"data: {time.perf_counter() - t:.1f} s")
    set_seed(0)
    local = collab_learner(dls, n_factors=50, y_range=(0, 5.5), opt_func=Adagrad, train_mode="sparse",
                           n_blocks=8, n_threads=2)
    with local.no_logging():
        local.fit(epochs, 0.05, wd=0.02)
    lt = local.recorder.times
    print(f"local (2 threads): {np.mean(lt[1:]):.3f} s per epoch (first epoch {lt[0]:.3f} s, with the "
          f"block grouping); holdout MSE {local.recorder.values[-1][1]:.4f}")
    t = time.perf_counter()
    dist = fit_distributed(dls, seed=0, n_workers=2, n_blocks=8, epochs=epochs, lr=0.05, wd=0.02,
                           opt_func=Adagrad, n_factors=50, y_range=(0, 5.5))
    total = time.perf_counter() - t
    st = dist.ray_stats
    dt = dist.recorder.times
    print(f"distributed (2 workers x 1 CPU): {np.mean(dt[1:]):.3f} s per epoch (first {dt[0]:.3f} s); "
          f"{total:.1f} s in all with sending the ratings and starting the workers")
    print(f"  per epoch: {np.mean(st['bytes_moved']) / 2**20:.1f} MiB moved between workers, "
          f"{np.mean(st['bytes_synced']) / 2**20:.1f} MiB gathered by the driver (checkpoint); "
          f"moving side: {'items' if st['side'] == 'user' else 'users'}")
    same = np.array_equal(dist.model.params, local.model.params) and all(
        np.array_equal(dist.opt.state[k], local.opt.state[k]) for k in local.opt.state)
    print(f"  overhead: {np.mean(dt[1:]) / np.mean(lt[1:]):.2f}x the local epoch; "
          f"bit-identical to the local fit: {same}")


def sweep(n_trials=20, epochs=3):
    from ray import tune
    from collabc.ray import tune_collab
    print(f"== sweep: {n_trials} trials, 1M shape (6,040 x 3,706, 1,000,209 ratings), exact path, "
          f"bs 1024, fit_one_cycle({epochs})")
    dls = loaders(6_040, 3_706, 1_000_209, bs=1024)
    space = {"n_factors": tune.choice([16, 32, 50]), "lr_max": tune.loguniform(1e-3, 1e-2),
             "wd": tune.loguniform(1e-2, 0.3)}
    t = time.perf_counter()
    res = tune_collab(dls, space, num_samples=n_trials, epochs=epochs, y_range=(0, 5.5),
                      storage_path="/tmp/collabc_bench_ray")
    par = time.perf_counter() - t
    configs = [{k: row[f"config/{k}"] for k in space} for _, row in res.trials.iterrows()]
    t = time.perf_counter()
    for c in configs:      # the same trials, one after the other, in this process
        set_seed(0)
        learn = collab_learner(dls, n_factors=int(c["n_factors"]), y_range=(0, 5.5), n_threads=1)
        with learn.no_logging():
            learn.fit_one_cycle(epochs, c["lr_max"], wd=c["wd"])
    seq = time.perf_counter() - t
    print(f"one after the other (this process): {seq:.1f} s ({seq / n_trials:.2f} s a trial)")
    print(f"tune_collab, 2 trials at a time: {par:.1f} s ({par / seq:.2f}x the sequential time); "
          f"best valid_loss {res.trials.valid_loss.min():.4f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="the distributed part on the 1M shape")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args()
    import ray
    print(f"CPU: {cpu_model()} ({__import__('os').cpu_count()} cores)")
    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t:.1f} s (not counted below)")
    shape = (6_040, 3_706, 1_000_209) if args.small else (162_541, 59_047, 25_000_095)
    distributed(shape, args.epochs)
    if not args.no_sweep:
        sweep()
