"""`recommend_all`: top-n for many users from an exported model, on Ray Data.

The exported file (`learn.export()`) is read once in the driver and put in the object store;
each Ray Data actor (`concurrency` of them) writes it to its own temporary folder and loads it
with `load_learner` once, then scores batch after batch of users with the C top-n
(`learn.recommend_many`: every item, seen items skipped, ties to the smaller index) and the
rows go to Parquet files `(user, rank, item, score)`. Each user's rows are exactly
`learn.recommend(user, n)`'s.
"""
import os
import pathlib
import tempfile

import numpy as np
import pandas as pd
import ray

from ..learner import load_learner
from ._cluster import ensure_ray

__all__ = ["recommend_all"]


class _Recommender:
    """A Ray Data actor: the exported model, loaded once, scoring batches of users - the ids of a
    batch, or (users given in memory) chunk numbers of the users' array."""

    def __init__(self, refs, column, n, exclude_seen, threads, chunk):
        blob, users = ray.get(refs[0]), (ray.get(refs[1]) if len(refs) > 1 else None)
        self.dir = tempfile.mkdtemp(prefix="collabc_model_")
        path = pathlib.Path(self.dir) / "export.npz"
        path.write_bytes(blob)
        self.learn = load_learner(path)
        self.users, self.chunk = users, chunk
        self.column, self.n, self.exclude_seen, self.threads = column, n, exclude_seen, threads

    def __call__(self, batch):
        if self.users is not None:
            c = self.chunk
            users = [u for k in batch["id"].tolist() for u in self.users[k * c:(k + 1) * c]]
        else:
            users = batch[self.column].tolist()
        recs = self.learn.recommend_many(users, n=self.n, exclude_seen=self.exclude_seen,
                                         threads=self.threads)
        d = self.learn.dls
        return pd.DataFrame({"user": recs[d.user_name].to_numpy(), "rank": recs["rank"].to_numpy(np.int32),
                             "item": recs[d.item_name].to_numpy(),
                             "score": recs["score"].to_numpy(np.float32)})


def _users_source(users, column, batch_size):
    """(Ray Dataset, users list or None): Parquet files are read by Ray Data; users in memory
    (a list, a Series, a DataFrame column) go to the object store once and the dataset holds
    chunk numbers (`ray.data.range`), which the actors turn into the users of each chunk."""
    import ray.data
    if isinstance(users, (str, os.PathLike)) or (
            isinstance(users, (list, tuple)) and users and all(isinstance(u, (str, os.PathLike)) for u in users)
            and all(str(u).endswith(".parquet") or pathlib.Path(u).is_dir() for u in users)):
        paths = [str(users)] if isinstance(users, (str, os.PathLike)) else [str(u) for u in users]
        for p in paths:
            if not os.path.exists(p):
                raise FileNotFoundError(f"users: no Parquet file or folder at {p!r}")
        return ray.data.read_parquet(paths).select_columns([column]), None
    if isinstance(users, pd.DataFrame):
        if column not in users.columns:
            raise KeyError(f"users has no column {column!r} (the model's user column); it has "
                           f"{list(users.columns)}; pass column=...")
        vals = users[column].tolist()
    elif isinstance(users, (pd.Series, pd.Index, np.ndarray, list, tuple)):
        vals = list(users.tolist() if hasattr(users, "tolist") else users)
    else:
        raise TypeError(f"users must be a list of user ids, a DataFrame or Parquet path(s), got "
                        f"{type(users).__name__}")
    if not vals:
        raise ValueError("users is empty")
    n_chunks = -(-len(vals) // batch_size)
    return ray.data.range(n_chunks, override_num_blocks=n_chunks), vals


def recommend_all(model_path, users, out, n=10, exclude_seen=True, column=None, batch_size=4096,
                  concurrency=2, cpus_per_worker=1, address=None):
    """Top-`n` items for every user of `users` with the model exported at `model_path`, written
    as Parquet files (columns user, rank, item, score; `n` rows per user, fewer when fewer items
    are left) under the folder `out`. `users`: a list (or Series) of raw user ids, a DataFrame
    with the model's user column (or `column`), or Parquet files / a folder of them (read by Ray
    Data). `concurrency` actors each load the model once and score `batch_size` users a call.
    Unknown users raise the `KeyError` of `recommend` (inside Ray's error). Returns `out`."""
    model_path = pathlib.Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model_path: no exported model at {str(model_path)!r} (write one with learn.export())")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    for name, v in (("batch_size", batch_size), ("concurrency", concurrency)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    learn = load_learner(model_path)      # checks the file here, before any worker starts
    if exclude_seen:
        learn.seen()                      # raises if the export holds no training pairs
    column = learn.dls.user_name if column is None else column
    ensure_ray(address)
    ds, vals = _users_source(users, column, int(batch_size))
    refs = [ray.put(model_path.read_bytes())] + ([] if vals is None else [ray.put(vals)])
    recs = ds.map_batches(_Recommender, fn_constructor_args=(refs, column, int(n), bool(exclude_seen),
                                                             int(cpus_per_worker), int(batch_size)),
                          batch_size=int(batch_size) if vals is None else 1, batch_format="pandas",
                          compute=ray.data.ActorPoolStrategy(min_size=1, max_size=int(concurrency)),
                          num_cpus=cpus_per_worker)
    out = str(out)
    recs.write_parquet(out)
    return out
