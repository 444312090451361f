"""`fit_distributed`: the sparse path's stratified schedule (DSGD, Gemulla et al., KDD 2011)
over Ray actors, bit for bit the local `train_mode='sparse'` fit.

What runs where:

* the driver (this process) runs an ordinary `Learner` loop - schedules, callbacks, the recorder
  and the table, validation of an in-memory validation set - with a training path
  (`RayPath`) that sends each stratum's blocks to the workers instead of training them here;
* each worker (a Ray actor, `ShardActor`) owns `n_blocks / n_workers` groups of the *stationary*
  side (by default the larger of users and items), with their ratings and their rows of the
  model and of the optimizer (`collabc.ray._shards.Shard`);
* the groups of the other (moving, smaller) side travel from worker to worker through the
  object store, one packed float32 array each (rows and optimizer rows): a stratum's result for a
  moving group is an `ObjectRef` that the next stratum's call takes as an argument, so the
  driver queues whole segments without waiting and Ray moves each group straight from the
  worker that produced it to the one that needs it next. Per epoch that is about n_blocks times
  the moving table with its optimizer rows.

At the end of every epoch's training the driver gathers every group into the learner's model
and optimizer: that copy is the checkpoint. When a worker dies (its actor is restarted by Ray
and reloads its ratings), every worker is reset to the checkpoint and the epoch is replayed
from its first stratum with the same blocks, learning rates and momentums, so the final result
is the same as without the failure.
"""
import os
import pathlib
import time

import numpy as np
import pandas as pd
import ray

from .. import _core
from ..callback import Callback, CancelValidException
from ..csr import seen_csr
from ..data import CategoryMap, CollabDataLoaders, DataLoader, DataLoaders, encode_ids
from ..learner import collab_learner
from ..optim import Adagrad
from ..paths import SparsePath, TrainingPath
from ..seed import set_seed
from ._cluster import ensure_ray
from ._shards import Grid, Shard, local_blocks, shard_blocks

__all__ = ["fit_distributed", "RayPath", "ShardActor"]

_METHODS = ("fit", "fit_one_cycle", "fit_flat_cos")
_ACTOR_ERRORS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class _ShardActor:
    """One worker: a `Shard` built by `load` from its ratings - `blocks` (a `shard_blocks` dict)
    or `chunks` (ObjectRefs of the row chunks the Parquet readers routed to it) - plus, from
    Parquet, its share of the validation rows. Ray restarts it after a crash (empty: the
    constructor holds no data), and the driver loads it again."""

    def __init__(self, spec):
        self.spec = spec
        self.shard = None

    def load(self, blocks=None, chunks=None):
        spec = self.spec
        self.vx = np.zeros((0, 2), np.int32)
        self.vy = np.zeros(0, np.float32)
        if chunks is not None:
            parts = ray.get(list(chunks))
            x = np.concatenate([p["x"] for p in parts]) if parts else np.zeros((0, 2), np.int32)
            y = np.concatenate([p["y"] for p in parts]) if parts else np.zeros(0, np.float32)
            self.vx = np.ascontiguousarray(np.concatenate([p["vx"] for p in parts]), dtype=np.int32)
            self.vy = np.ascontiguousarray(np.concatenate([p["vy"] for p in parts]), dtype=np.float32)
            blocks = local_blocks(x, y, spec["nb"], spec["side"], spec["groups"])
            del x, y, parts
        self.shard = Shard(spec["groups"], blocks, spec["side"], spec["nb"], spec["n_users"],
                           spec["n_items"], spec["n_factors"], spec["has_bias"], spec["y_range"],
                           spec["kind"], n_threads=spec["n_threads"])
        return self.shard.n_ratings

    def loaded(self):
        return self.shard is not None

    def pid(self):
        return os.getpid()

    def info(self):
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "ratings": self.shard.n_ratings, "valid": int(self.vy.size)}

    def set_state(self, states):
        self.shard.set_state(states)
        return True

    def get_state(self):
        return self.shard.get_state()

    def train(self, tasks, hypers, *moving):
        losses, bad, new = self.shard.train(tasks, list(moving), hypers)
        return (np.array(losses, np.float64), np.array(bad, bool), *new)

    def predict_valid(self, params):
        "Predictions and targets of this worker's validation rows with the whole model `params`."
        s = self.spec
        out = np.empty(self.vy.size, np.float32)
        if self.vy.size:
            _core.dot_predict(out, params, self.vx, s["n_users"], s["n_items"], s["n_factors"],
                              s["has_bias"], s["y_range"])
        return out, self.vy

    def seen_pairs(self):
        "This worker's training (user, item) pairs with their global ids."
        sh, nb = self.shard, self.shard.nb
        parts = []
        for (own, mov), (lo, hi) in sh.block_rows.items():
            g, h = (own, mov) if sh.side == "user" else (mov, own)
            xl = sh.x[lo:hi].astype(np.int64)
            parts.append(np.stack([xl[:, 0] * nb + g, xl[:, 1] * nb + h], 1))
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros((0, 2), np.int32)


ShardActor = ray.remote(_ShardActor)


class RayPath(TrainingPath):
    """The sparse path's epoch (same strata from the learner's stream, same blocks, same
    per-block lr and momentum) trained by `ShardActor`s; see the module docstring. The driver's
    model and optimizer buffers are brought up to date after each epoch's training (`sync`)."""
    unit = "block"

    def __init__(self, learn, workers, loads, owner, side, max_failures=3):
        super().__init__(learn)
        self.loads = list(loads)   # each worker's `load` arguments (ObjectRefs), to reload a restarted one
        self.nb = learn.n_blocks
        self.granularity = self.nb
        self.workers, self.owner, self.side = list(workers), dict(owner), side
        m = learn.model
        self.max_failures = max_failures
        self.failures = 0
        self.stats = {"epoch_seconds": [], "bytes_moved": [], "bytes_synced": [], "restarts": 0}
        self._sparse = SparsePath(learn)
        self.dirty = False
        self.grid = None
        self._m = m

    @property
    def n_iter(self):
        return self.nb * self.nb

    def prepare_opt(self, opt):
        self._sparse.prepare_opt(opt)   # the same buffers as the local sparse path

    def load(self, only_empty=False):
        "Gives each worker its ratings (`only_empty`: only those that lost them in a restart)."
        workers = range(len(self.workers))
        if only_empty:
            workers = [w for w, ok in zip(workers, ray.get([w.loaded.remote() for w in self.workers])) if not ok]
        ray.get([self.workers[w].load.remote(**self.loads[w]) for w in workers])
        if not only_empty:
            self.stats["nodes"] = len({i["node"] for i in ray.get([w.info.remote() for w in self.workers])})

    def _grid(self):
        m, opt = self.learn.model, self.learn.opt
        return Grid(m.n_users, m.n_items, m.n_factors, m.has_bias, opt.kind, self.nb, self.side)

    def _push(self):
        "Loads the driver's model and optimizer rows (the checkpoint) into every worker."
        self.grid = self._grid()
        own, mov = self.grid.pack(self.learn.model.params, self.learn.opt.state)
        calls = []
        for w, worker in enumerate(self.workers):
            mine = {g: own[g] for g in range(self.nb) if self.owner[g] == w}
            calls.append(worker.set_state.remote(mine))
        ray.get(calls)
        self.mov_refs = {h: ray.put(mov[h]) for h in range(self.nb)}
        self.mov_at = {h: -1 for h in range(self.nb)}
        self.mov_bytes = {h: mov[h].nbytes for h in range(self.nb)}
        self.dirty = False

    def begin_fit(self):
        self._push()

    def begin_epoch(self, rng):
        nb = self.nb
        strata, groups = rng.permutation(nb), rng.permutation(nb)
        self.blocks = np.array([g * nb + (g + s) % nb for s in strata for g in groups], dtype=np.int64)
        self.log = []          # (start, lrs, moms, hypers) of this epoch's segments, for a replay
        self.moved = 0
        self.t0 = time.perf_counter()

    def _hypers(self):
        h = self.learn.opt.hypers
        return {"wd": float(h["wd"]), "sqr_mom": float(h.get("sqr_mom", 0.0)), "eps": float(h.get("eps", 1e-8))}

    def _queue(self, start, lrs, moms, hypers):
        "Submits the strata of one segment; returns [(positions, loss ref, bad ref)]."
        nb, out = self.nb, []
        for p in range(start, start + len(lrs), nb):
            per_worker = {}
            for k in range(p, p + nb):
                g, h = divmod(int(self.blocks[k]), nb)
                own, mov = (g, h) if self.side == "user" else (h, g)
                per_worker.setdefault(self.owner[own], []).append((k, own, mov))
            for w, items in sorted(per_worker.items()):
                tasks = [(own, mov, float(lrs[k - start]), float(moms[k - start])) for k, own, mov in items]
                refs = self.workers[w].train.options(num_returns=len(tasks) + 2).remote(
                    tasks, hypers, *[self.mov_refs[mov] for _, _, mov in items])
                for (k, own, mov), ref in zip(items, refs[2:]):
                    if self.mov_at[mov] != w:
                        self.moved += self.mov_bytes[mov]
                    self.mov_refs[mov], self.mov_at[mov] = ref, w
                out.append(([k for k, _, _ in items], refs[0], refs[1]))
        return out

    def _collect(self, queued, start, losses):
        bad = -1
        for positions, lref, bref in queued:
            ls, bs = ray.get([lref, bref])
            for k, loss, b in zip(positions, ls, bs):
                if start <= k < start + len(losses):
                    losses[k - start] = loss
                    if b and (bad < 0 or k - start < bad):
                        bad = k - start
        return bad

    def run(self, start, lrs, moms, losses):
        hypers = self._hypers()
        self.log.append((start, np.array(lrs), np.array(moms), hypers))
        self.dirty = True
        while True:
            try:
                bad = self._collect(self._queue(start, lrs, moms, hypers), start, losses)
                break
            except _ACTOR_ERRORS as e:
                self._recover(e)
                for s0, l0, m0, h0 in self.log[:-1]:   # the epoch up to this segment, again
                    self._collect(self._queue(s0, l0, m0, h0), s0, np.zeros(len(l0)))
        if start + len(lrs) == self.n_iter:
            self.stats["bytes_moved"].append(self.moved)
        return bad

    def _recover(self, error):
        "A worker died: wait until Ray has restarted it, then reset every worker to the checkpoint."
        self.failures += 1
        self.stats["restarts"] += 1
        if self.failures > self.max_failures:
            raise RuntimeError(f"fit_distributed: a worker died {self.failures} times "
                               f"(max_failures={self.max_failures}); last error: {error}") from error
        self.learn.logger(f"fit_distributed: a worker died ({type(error).__name__}); it is restarted "
                          f"and epoch {self.learn.epoch} resumes from the checkpoint taken at its start")
        deadline = time.monotonic() + 300
        for w, worker in enumerate(self.workers):
            while True:
                try:
                    ray.get(worker.pid.remote(), timeout=60)
                    break
                except ray.exceptions.ActorDiedError:
                    raise RuntimeError(f"fit_distributed: worker {w} died and Ray could not restart it") from error
                except (*_ACTOR_ERRORS, ray.exceptions.GetTimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"fit_distributed: worker {w} did not come back within 300 s") from error
                    time.sleep(0.2)
        self.load(only_empty=True)
        self._push()
        self.dirty = True

    def sync(self):
        "Gathers every group from the workers into the driver's model and optimizer buffers."
        if not self.dirty:
            return
        states = ray.get([w.get_state.remote() for w in self.workers])
        own = {}
        for s in states:
            own.update(s)
        mov = dict(zip(self.mov_refs, ray.get(list(self.mov_refs.values()))))
        self.grid.unpack(self.learn.model.params, self.learn.opt.state, own, mov)
        self.stats["bytes_synced"].append(sum(a.nbytes for a in own.values()) + sum(a.nbytes for a in mov.values()))
        self.dirty = False


class _Sync(Callback):
    """Keeps the driver's model current: gathers it from the workers when an epoch's training
    ends (before validation, trackers and savers look at it) and when the fit ends."""
    order = -20

    def __init__(self, path):
        self.path = path

    def after_train(self):
        self.path.sync()
        self.path.stats["epoch_seconds"].append(time.perf_counter() - self.path.t0)

    def after_fit(self):
        self.path.sync()

    def cleanup_fit(self):
        try:
            self.path.sync()
        except Exception:   # the fit is failing already; its own error is the one to see
            pass


class _RemoteValid(Callback):
    """Validation on the workers (their validation rows, read from Parquet): each predicts its
    rows with the whole model; the driver computes the loss and the metrics over all of them."""
    order = -19

    def __init__(self, path):
        self.path = path

    def before_validate(self):
        ref = ray.put(self.learn.model.params)
        outs = ray.get([w.predict_valid.remote(ref) for w in self.path.workers])
        preds = np.concatenate([o[0] for o in outs])
        targs = np.concatenate([o[1] for o in outs])
        if preds.size == 0:
            vals = [float("nan")] * (1 + len(self.learn.metrics))
        else:
            vals = [_core.mse_forward(preds, targs)] + [float(m(preds, targs)) for m in self.learn.metrics]
        self.learn.valid_values = vals
        raise CancelValidException()


class _ShardedRows(DataLoader):
    "A loader whose rows live on the Ray workers: it counts them (n) and holds none here."

    def __init__(self, n, bs, shuffle):
        super().__init__(np.zeros((0, 2), np.int32), np.zeros(0, np.float32), bs=bs, shuffle=shuffle)
        self.n = int(n)


# ------------------------------------------------------------------------------- Parquet input

def _parquet_parts(paths):
    "[(file, row group)] of Parquet files or folders of them, in order; and the schema's names."
    import pyarrow.parquet as pq
    files = []
    for p in paths:
        p = pathlib.Path(p)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*.parquet") if q.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"data: no Parquet file or folder at {str(p)!r}")
    if not files:
        raise ValueError(f"data: no .parquet files in {[str(p) for p in paths]}")
    parts, names = [], None
    for f in files:
        meta = pq.ParquetFile(f).metadata
        cols = list(meta.schema.names)
        if names is None:
            names = cols
        elif cols != names:
            raise ValueError(f"data: {str(f)!r} has the columns {cols}, the first file {names}")
        parts += [(str(f), rg) for rg in range(meta.num_row_groups)]
    return parts, names


def _read(parts, cols):
    "The columns `cols` of the row groups `parts`, one pandas frame per row group."
    import pyarrow.parquet as pq
    for f, rg in parts:
        yield pq.ParquetFile(f).read_row_group(rg, columns=cols).to_pandas()


@ray.remote
def _scan(parts, cols, valid_col):
    "Distinct user and item ids (of the training rows and of all rows) and row counts of some row groups."
    u, i, r = cols
    out = {"u_train": [], "i_train": [], "u_all": [], "i_all": [], "n_train": 0, "n_valid": 0,
           "dtypes": None}
    for df in _read(parts, cols + ([valid_col] if valid_col else [])):
        if df[[u, i, r]].isna().any().any():
            raise ValueError(f"data: missing values in the columns {[u, i, r]} of the Parquet input")
        valid = df[valid_col].to_numpy(bool) if valid_col else np.zeros(len(df), bool)
        out["u_all"].append(pd.unique(df[u])), out["i_all"].append(pd.unique(df[i]))
        out["u_train"].append(pd.unique(df[u][~valid])), out["i_train"].append(pd.unique(df[i][~valid]))
        out["n_train"] += int((~valid).sum())
        out["n_valid"] += int(valid.sum())
        out["dtypes"] = (str(df[u].dtype), str(df[i].dtype), pd.api.types.is_numeric_dtype(df[u]),
                         pd.api.types.is_numeric_dtype(df[i]))
    for k in ("u_train", "i_train", "u_all", "i_all"):
        out[k] = pd.unique(np.concatenate(out[k])) if out[k] else np.zeros(0)
    return out


def _route(parts, cols, valid_col, classes, nb, side, owner, n_workers):
    """Reads some row groups, encodes their ids and splits their rows by the worker that owns
    each row's stationary group (validation rows by the same rule): one chunk per worker."""
    u, i, r = cols
    ucls, icls = classes
    xs, ys, vxs, vys = [], [], [], []
    for df in _read(parts, cols + ([valid_col] if valid_col else [])):
        x = np.empty((len(df), 2), np.int32)
        x[:, 0] = encode_ids(ucls, df[u].to_numpy(), "user", unknown="na")
        x[:, 1] = encode_ids(icls, df[i].to_numpy(), "item", unknown="na")
        y = df[r].to_numpy(np.float32)
        valid = df[valid_col].to_numpy(bool) if valid_col else np.zeros(len(df), bool)
        xs.append(x[~valid]), ys.append(y[~valid]), vxs.append(x[valid]), vys.append(y[valid])
    x, y = np.concatenate(xs), np.concatenate(ys)
    vx, vy = np.concatenate(vxs), np.concatenate(vys)
    col = 0 if side == "user" else 1
    owner = np.asarray(owner)
    w_of, vw_of = owner[x[:, col] % nb], owner[vx[:, col] % nb]
    return tuple({"x": x[w_of == w], "y": y[w_of == w], "vx": vx[vw_of == w], "vy": vy[vw_of == w]}
                 for w in range(n_workers)) if n_workers > 1 else \
        {"x": x, "y": y, "vx": vx, "vy": vy}


_route_remote = ray.remote(_route)


def _classes_from_scans(scans, numeric):
    "The user and item CategoryMaps: numeric ids from the training rows, others from all rows (from_df's 'auto')."
    out = []
    for side, is_num in zip(("u", "i"), numeric):
        key = f"{side}_train" if is_num else f"{side}_all"
        vals = [s[key] for s in scans if len(s[key])]
        out.append(CategoryMap(pd.unique(np.concatenate(vals)) if vals else []))
    return out


# ------------------------------------------------------------------------------- the entry point

def _check_workers(n_workers, n_blocks):
    for name, v in (("n_workers", n_workers), ("n_blocks", n_blocks)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if n_workers > n_blocks:
        raise ValueError(f"n_workers={n_workers} is more than n_blocks={n_blocks}: each worker owns at "
                         f"least one of the n_blocks groups; raise n_blocks or lower n_workers")


def fit_distributed(data, *, n_workers=2, n_blocks=8, epochs, lr, wd=None, opt_func=Adagrad,
                    n_factors=50, y_range=None, method="fit", fit_kwargs=None, side="auto", seed=None,
                    valid_pct=0.2, valid_col=None, bs=64, user_name=None, item_name=None,
                    rating_name=None, metrics=None, cbs=None, cpus_per_worker=1, max_failures=3,
                    with_seen=None, address=None, **learner_kwargs):
    """Trains a dot-product model with the sparse path's stratified schedule on `n_workers` Ray
    actors and returns an ordinary `Learner` (export, recommend, fold-in as usual).

    The result is bit for bit that of the local fit

        set_seed(seed); dls = CollabDataLoaders.from_df(data, valid_pct=valid_pct, bs=bs)
        learn = collab_learner(dls, n_factors, y_range=y_range, opt_func=opt_func,
                               train_mode='sparse', n_blocks=n_blocks, ...)
        learn.<method>(epochs, lr, wd=wd, **fit_kwargs)

    for any n_workers (with data a CollabDataLoaders, `set_seed(seed)` then `collab_learner`).

    data: a DataFrame, a `CollabDataLoaders`, or Parquet files / folders (a path or a list):
    those are read by Ray tasks in row groups and routed to the workers, so no process holds all
    ratings; `valid_col` names a boolean column marking validation rows (as `from_df(df,
    valid_idx=df[valid_col])`; without it every row trains and valid_loss is NaN).
    method: 'fit', 'fit_one_cycle' or 'fit_flat_cos' (`fit_kwargs` go to it, e.g. pct_start).
    side: which table stays with the workers - 'user', 'item' or 'auto' (the larger one stays,
    the smaller one moves: about n_blocks x the smaller table crosses the object store per epoch).
    cpus_per_worker: CPUs (and training threads) of each worker. max_failures: worker deaths the
    fit survives (each one replays the epoch from its checkpoint). with_seen: keep the training
    (user, item) pairs for `recommend(exclude_seen=True)` and `export` (default: True for
    in-memory data, False for Parquet, where they would come to the driver). address: the Ray
    cluster to join when Ray is not running yet (default: $RAY_ADDRESS or a local instance).
    Other keyword arguments go to `collab_learner` (e.g. `moms`, `n_threads` is ignored).

    After the fit `learn.ray_stats` holds per epoch the seconds, the bytes moved between workers
    and the bytes gathered by the driver, and the number of worker restarts."""
    _check_workers(n_workers, n_blocks)
    if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, (int, float)) or not cpus_per_worker > 0:
        raise ValueError(f"cpus_per_worker must be a positive number, got {cpus_per_worker!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if side not in ("auto", "user", "item"):
        raise ValueError(f"side must be 'auto', 'user' or 'item', got {side!r}")
    fit_kwargs = dict(fit_kwargs or {})
    for bad in ("cbs", "n_epoch", "lr", "lr_max", "wd"):
        if bad in fit_kwargs:
            raise TypeError(f"fit_kwargs may not hold {bad!r}: pass it as fit_distributed's own argument")
    for bad in ("train_mode", "n_blocks", "use_nn"):
        if bad in learner_kwargs:
            raise TypeError(f"fit_distributed sets {bad!r} itself (sparse path, dot-product model)")
    learner_kwargs.pop("n_threads", None)
    remote_rows = isinstance(data, (str, os.PathLike)) or (
        isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data))
    if not (remote_rows or isinstance(data, (pd.DataFrame, DataLoaders))):
        raise TypeError(f"data must be a DataFrame, a CollabDataLoaders or Parquet path(s), got "
                        f"{type(data).__name__}")
    ensure_ray(address)   # after every argument check: a bad call fails before connecting
    if seed is not None:
        set_seed(seed)
    if remote_rows:
        dls, scans, parts, cols = _parquet_dls(data, valid_col, bs, user_name, item_name, rating_name,
                                               n_workers)
    elif isinstance(data, pd.DataFrame):
        dls = CollabDataLoaders.from_df(data, valid_pct=valid_pct, bs=bs, user_name=user_name,
                                        item_name=item_name, rating_name=rating_name)
    elif isinstance(data, DataLoaders):
        dls = data
    else:
        raise TypeError(f"data must be a DataFrame, a CollabDataLoaders or Parquet path(s), got "
                        f"{type(data).__name__}")
    learn = collab_learner(dls, n_factors=n_factors, y_range=y_range, opt_func=opt_func,
                           train_mode="sparse", n_blocks=n_blocks, metrics=metrics, cbs=cbs,
                           n_threads=max(1, int(cpus_per_worker)), **learner_kwargs)
    m = learn.model
    if side == "auto":
        side = "user" if m.n_users >= m.n_items else "item"
    owner = {g: g % n_workers for g in range(n_blocks)}
    learn.create_opt()
    spec = {"nb": n_blocks, "side": side, "n_users": m.n_users, "n_items": m.n_items,
            "n_factors": m.n_factors, "has_bias": m.has_bias, "y_range": m.y_range,
            "kind": learn.opt.kind, "n_threads": max(1, int(cpus_per_worker))}
    actor = ShardActor.options(num_cpus=cpus_per_worker, max_restarts=max_failures,
                               max_task_retries=0, scheduling_strategy="SPREAD")
    workers, loads = [], []
    if remote_rows:
        classes = (dls.classes[dls.user_name], dls.classes[dls.item_name])
        cref = ray.put(classes)
        routed = [_route_remote.options(num_returns=n_workers).remote(
                      p, cols, valid_col, cref, n_blocks, side, [owner[g] for g in range(n_blocks)], n_workers)
                  for p in parts]
        routed = [r if isinstance(r, list) else [r] for r in routed]
        # every routing task ends before a worker starts: a worker holds its CPUs for its
        # lifetime, so on a cluster the workers fill, a routing task still waiting for a CPU
        # would never run and the workers would wait for its rows forever
        outs = [r for rs in routed for r in rs]
        ray.wait(outs, num_returns=len(outs), fetch_local=False)
        for w in range(n_workers):
            s = dict(spec, groups=[g for g in range(n_blocks) if owner[g] == w])
            workers.append(actor.remote(s))
            loads.append({"chunks": [r[w] for r in routed]})
    else:
        x, y, starts = dls.train.block_layout(n_blocks)
        for w in range(n_workers):
            groups = [g for g in range(n_blocks) if owner[g] == w]
            workers.append(actor.remote(dict(spec, groups=groups)))
            loads.append({"blocks": ray.put(shard_blocks(x, y, starts, n_blocks, side, groups))})
    path = RayPath(learn, workers, loads, owner, side, max_failures)
    learn.ray_workers = workers
    extra = [_Sync(path)] + ([_RemoteValid(path)] if remote_rows else [])
    try:
        path.load()
        kwargs = dict(fit_kwargs)
        kwargs["wd"] = wd
        with learn.trained_by(path):   # the Learner's own loop, through the workers
            getattr(learn, method)(epochs, lr, cbs=extra, **kwargs)
        if remote_rows and (with_seen is True):
            pairs = np.concatenate(ray.get([w.seen_pairs.remote() for w in workers]))
            seen = seen_csr(pairs, m.n_users, m.n_items)
            del pairs
        else:
            seen = None
    finally:
        del learn.ray_workers
        for w in workers:
            ray.kill(w)
    learn.ray_stats = dict(path.stats, n_workers=n_workers, n_blocks=n_blocks, side=side)
    if remote_rows:
        learn.dls = _rowless(dls, seen)
    elif with_seen is False:
        learn.dls = _rowless(dls, None)
    return learn


def _parquet_dls(data, valid_col, bs, user_name, item_name, rating_name, n_workers):
    "Scans Parquet input with Ray tasks: the loaders (classes, row counts, no rows) and the read plan."
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    parts, names = _parquet_parts(paths)
    cols = []
    for pos, (arg, v) in enumerate((("user_name", user_name), ("item_name", item_name),
                                    ("rating_name", rating_name))):
        v = names[pos] if v is None else v
        if v not in names:
            raise KeyError(f"{arg}={v!r} is not a column of the Parquet input; columns are {names}")
        cols.append(v)
    if valid_col is not None and valid_col not in names:
        raise KeyError(f"valid_col={valid_col!r} is not a column of the Parquet input; columns are {names}")
    n_tasks = min(len(parts), max(2 * n_workers, 1))
    plan = [parts[t::n_tasks] for t in range(n_tasks)]
    scans = ray.get([_scan.remote(p, cols, valid_col) for p in plan])
    if sum(s["n_train"] for s in scans) == 0:
        raise ValueError("data: the Parquet input has no training rows")
    numeric = next(s["dtypes"] for s in scans if s["dtypes"] is not None)[2:]
    ucls, icls = _classes_from_scans(scans, numeric)
    n_train = sum(s["n_train"] for s in scans)
    n_valid = sum(s["n_valid"] for s in scans)
    train, valid = _ShardedRows(n_train, bs, True), _ShardedRows(n_valid, bs, False)
    dls = CollabDataLoaders(train, valid, {cols[0]: ucls, cols[1]: icls}, *cols)
    return dls, scans, plan, cols


def _rowless(dls, seen):
    "The loaders without rows (classes and names kept; the training pairs if given) for the returned learner."
    from ..seed import preserve_rng
    with preserve_rng():
        empty = [DataLoader(np.zeros((0, 2), np.int32), np.zeros(0, np.float32), bs=dl.bs, shuffle=sh)
                 for dl, sh in ((dls.train, True), (dls.valid, False))]
    empty[0].seed, empty[0].rng = dls.train.seed, np.random.default_rng(dls.train.seed)
    if seen is not None:
        empty[0].set_seen(*seen)
    out = CollabDataLoaders(empty[0], empty[1], dls.classes, dls.user_name, dls.item_name,
                            dls.rating_name, path=dls.path)
    return out
