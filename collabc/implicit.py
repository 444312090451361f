"""Implicit feedback: clicks, views, plays, purchases instead of star ratings.

Data: `implicit_from_df(df, ...)` turns a frame of (user, item[, weight][, time]) interactions into
an `ImplicitData`: repeated pairs summed, a per-user hold-out split (random, or each user's most
recent interactions by a time column), users and items encoded the collabc way ('#na#' at 0),
the training pairs as an `Interactions` (CSR, both directions) and collabc `DataLoaders`.
MovieLens becomes implicit by keeping the ratings >= 4:

    data = implicit_from_df(ratings[ratings.rating >= 4].drop(columns='rating'), time_name='timestamp')

Models, each trained by a C kernel (csrc/als.c, csrc/bpr.c) and scored for top-n by csrc/rank.c:

* `ImplicitALS` - Hu, Koren & Volinsky (2008): every (user, item) pair counts, observed ones with
  preference 1 and confidence 1 + alpha * weight, the others with preference 0 and confidence 1;
  alternating half-steps solve each user's (then each item's) weighted ridge regression with a few
  conjugate-gradient steps warm-started from the current factors (Takacs et al. 2011), the
  Gramian computed once per half-step.
* `BPR` - Rendle et al. (2009): a user's positive item should outscore a uniformly drawn negative
  one (never a positive of the user); SGD or row-wise Adagrad over a grid of user-group x
  item-group blocks on threads that never share a row, bit-identical for any number of threads.
* `Popularity` - the baseline every model is reported beside: items by their training count.

Both models train an epoch at a time (`fit_epoch`) or in segments (`epoch(...)`, then `run(n)`
repeatedly), for a training loop that wants a progress bar and Ctrl-C between segments.
`evaluate` gives precision, recall, NDCG and MAP at k on the held-out pairs with the training
items excluded from the ranking, with the popularity baseline beside.
"""
import math
import os
import time

import numpy as np
import pandas as pd

from . import _core
from ._checks import check_float, check_int
from .csr import csr_rows
from .data import CategoryMap, DataLoader, DataLoaders, register_implicit_split
from .autograd import tensor
from .layers import Embedding
from .models import _DotFamily
from .ranking import ranking_scores
from .seed import get_rng
from .topn import rank_vectors

__all__ = ["implicit_from_df", "ImplicitData", "Interactions", "ImplicitALS", "BPR", "Popularity",
           "evaluate", "EpochRun", "ImplicitModel"]

_NA = "#na#"


# ---------------------------------------------------------------------------------------------
# argument checks

def _int(name, v, lo=1):
    return check_int(name, v, lo=lo)


def _real(name, v, lo=0, strict=False):
    return check_float(name, v, lo=lo, lo_open=strict)


def _threads(n):
    return (os.cpu_count() or 1) if n is None else _int("n_threads", n)


def _weights(w, name, n):
    "float32 weights: finite and >= 0 (a ValueError naming `name` otherwise)."
    if isinstance(w, pd.Series):
        dtype = w.dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) \
                or pd.api.types.is_complex_dtype(dtype):
            raise TypeError(f"{name} must be a real numeric column, got dtype {dtype}")
        w = w.to_numpy(dtype=np.float64, na_value=np.nan)
    w = np.asarray(w)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {w.shape}")
    if not (np.issubdtype(w.dtype, np.number) or w.dtype == np.bool_) or np.iscomplexobj(w):
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    w64 = w.astype(np.float64, copy=False)
    bad = ~np.isfinite(w64) | (w64 < 0)
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and >= 0 (a confidence weight); it has {int(bad.sum())} "
                         f"bad value(s), first {float(w64[p])!r} at position {p}")
    w32 = w64.astype(np.float32)
    if not np.isfinite(w32).all():
        raise ValueError(f"{name} has values beyond float32 range")
    return np.ascontiguousarray(w32)


def _ids(a, name, n_max=None):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer indices, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or (n_max is not None and a.max() >= n_max)):
        raise IndexError(f"{name} must lie in [0, {n_max if n_max is not None else '2**31'}), "
                         f"got values from {a.min()} to {a.max()}")
    if a.size and a.max() >= 2**31 - 1:
        raise IndexError(f"{name} must be < 2**31 - 1 (indices are int32)")
    return a


def _aligned(shape, dtype=np.float32, align=64):
    "A zeroed C-contiguous array starting on a cache line (rows of other threads' groups never share one)."
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    buf = np.zeros(n + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + n].view(dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------
# interactions (the training CSR)

class Interactions:
    """The training pairs of an implicit model as CSR matrices: `indptr` (n_users+1,) int64 and
    `indices` (nnz,) int32 per user (each row sorted, no repeats: repeated pairs are merged,
    their weights summed), `weights` (nnz,) float32 or None (every weight 1). `item_csr()` is the
    transpose (built once), `blocks(nb)` BPR's grouping (built once per nb).

    `Interactions(users, items, weights=None, n_users=None, n_items=None)`: users and items are
    integer indices (row 0, '#na#', normally unused); weights finite and >= 0.
    """

    def __init__(self, users, items, weights=None, n_users=None, n_items=None, n_threads=None):
        users, items = _ids(users, "users"), _ids(items, "items")
        if users.shape != items.shape:
            raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
        if users.size == 0:
            raise ValueError("no interactions: users and items are empty")
        n_users = int(users.max()) + 1 if n_users is None else _int("n_users", n_users)
        n_items = int(items.max()) + 1 if n_items is None else _int("n_items", n_items)
        _ids(users, "users", n_users)
        _ids(items, "items", n_items)
        w = None if weights is None else _weights(weights, "weights", len(users))
        if w is not None and np.all(w == 1.0):
            w = None
        u32 = users if users.dtype == np.int32 else users.astype(np.int32)
        i32 = items if items.dtype == np.int32 else items.astype(np.int32)
        self.indptr, self.indices, self.weights = _core.als_csr(u32, i32, w, n_users, n_items,
                                                                _threads(n_threads))
        self.n_users, self.n_items = n_users, n_items
        self._item_csr = None
        self._blocks = {}

    @classmethod
    def from_pairs(cls, x, weights=None, n_users=None, n_items=None, n_threads=None):
        "From an (n, 2) array of [user, item] indices (no copy of an int32 array)."
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (n, 2), got {x.shape}")
        return cls(x[:, 0], x[:, 1], weights, n_users, n_items, n_threads)

    nnz = property(lambda self: int(self.indptr[-1]), doc="number of distinct training pairs")

    def item_csr(self):
        "(indptr (n_items+1,), indices (nnz,) users, weights or None): the transpose, built once."
        if self._item_csr is None:
            self._item_csr = _core.als_transpose(self.indptr, self.indices, self.weights, self.n_items)
        return self._item_csr

    def blocks(self, nb):
        "(pairs (nnz, 2) int32, starts (nb*nb+1,) int64): BPR's grid of blocks, built once per nb."
        nb = _int("nb", nb)
        if nb not in self._blocks:
            self._blocks = {nb: _core.bpr_blocks(self.indptr, self.indices, self.n_items, nb)}
        return self._blocks[nb]

    def seen(self):
        "The training pairs per user as `collabc.inference.seen_csr` gives them: (indptr, indices)."
        return self.indptr, self.indices

    def rows(self, users):
        "The sub-CSR (indptr, indices) of the given users, in that order (for exclusion in ranking)."
        return csr_rows(self.seen(), np.asarray(users, np.int64))

    def item_counts(self):
        "(n_items,) int64: how many training users each item has."
        return np.bincount(self.indices, minlength=self.n_items)

    def confidence_total(self, alpha):
        "sum over every (user, item) pair but '#na#''s of the ALS confidence (the loss's normaliser)."
        w_sum = float(self.nnz) if self.weights is None else float(self.weights.sum(dtype=np.float64))
        return self.nnz + alpha * w_sum + (self.n_users - 1) * (self.n_items - 1) - self.nnz

    def __repr__(self):
        return (f"Interactions({self.n_users} users, {self.n_items} items, {self.nnz} pairs, "
                f"{'weighted' if self.weights is not None else 'unweighted'})")


# ---------------------------------------------------------------------------------------------
# data: a frame of interactions -> classes, split, loaders

class ImplicitData:
    """Encoded implicit interactions split per user (made by `implicit_from_df`).

    `classes` {user_name: CategoryMap, item_name: CategoryMap} ('#na#' at 0; classes from the
    training pairs); `train_x` / `valid_x` (n, 2) int32 [user, item] and `train_w` / `valid_w`
    float32 weights (the summed weight column, or the number of repeats); a held-out item unknown
    at training time has index 0 and is left out of the evaluation. `interactions()` is the
    training CSR; `dataloaders()` the collabc DataLoaders (y = weights)."""

    def __init__(self, classes, user_name, item_name, weight_name, train_x, train_w, valid_x, valid_w):
        self.classes = classes
        self.user_name, self.item_name, self.weight_name = user_name, item_name, weight_name
        self.train_x, self.train_w, self.valid_x, self.valid_w = train_x, train_w, valid_x, valid_w
        self._inter = None

    n_users = property(lambda self: len(self.classes[self.user_name]), doc="user classes, '#na#' included")
    n_items = property(lambda self: len(self.classes[self.item_name]), doc="item classes, '#na#' included")

    def interactions(self, n_threads=None):
        "The training pairs as an `Interactions` (built once; unweighted when every weight is 1)."
        if self._inter is None:
            self._inter = Interactions.from_pairs(self.train_x, self.train_w, self.n_users,
                                                  self.n_items, n_threads)
        return self._inter

    def relevant(self):
        """(users (Q,) int64 ascending, [items of each user]): the held-out pairs whose user and
        item are known at training time, per user."""
        x = self.valid_x[(self.valid_x[:, 0] > 0) & (self.valid_x[:, 1] > 0)]
        if len(x) == 0:
            return np.zeros(0, np.int64), []
        order = np.lexsort((x[:, 1], x[:, 0]))
        x = x[order]
        users, starts = np.unique(x[:, 0], return_index=True)
        return users.astype(np.int64), np.split(x[:, 1], starts[1:])

    def dataloaders(self, bs=64, val_bs=None, shuffle=True, path=".", cls=DataLoaders):
        """collabc `DataLoaders` (of class `cls`) over the split: x = [user, item], y = the weights
        (rating_name = the weight column's name, or 'weight'); `dls.implicit` is this
        ImplicitData (what `implicit_learner` trains and evaluates on)."""
        train = DataLoader(self.train_x, self.train_w, bs=bs, shuffle=shuffle)
        valid = DataLoader(self.valid_x, self.valid_w, bs=bs if val_bs is None else val_bs, shuffle=False)
        dls = cls(train, valid, self.classes, self.user_name, self.item_name, self.weight_name or "weight",
                  path=path)
        dls.implicit = self
        return dls

    def __repr__(self):
        return (f"ImplicitData(user={self.user_name!r} ({self.n_users}), item={self.item_name!r} "
                f"({self.n_items}), weight={self.weight_name!r}; train: {len(self.train_x)} pairs, "
                f"valid: {len(self.valid_x)} pairs)")


def _column(df, arg, val, pos):
    cols = list(df.columns)
    if val is None:
        if pos is None or len(cols) <= pos:
            raise ValueError(f"{arg} defaults to df.columns[{pos}], but df has only {len(cols)} "
                             f"column(s): {cols}; pass {arg}")
        val = cols[pos]
    if val not in df.columns:
        raise KeyError(f"{arg}={val!r} is not a column of df; columns are {cols}")
    return val


def _codes(col, name):
    "int64 codes of a label column in sorted label order (category order for a categorical)."
    na = col.isna().to_numpy()
    if na.any():
        raise ValueError(f"{name} has {int(na.sum())} missing value(s) (NaN/None); first at row "
                         f"{int(np.flatnonzero(na)[0])}")
    try:
        codes, uniques = pd.factorize(col, sort=True)
    except TypeError as e:
        raise TypeError(f"{name}: its values cannot be hashed and sorted ({e})") from None
    labels = uniques.tolist()
    if any(isinstance(v, str) and v == _NA for v in labels):
        raise ValueError(f"{name} contains the label {_NA!r}, which is reserved for index 0")
    return codes.astype(np.int64), labels


def implicit_from_df(df, user_name=None, item_name=None, weight_name=None, valid_pct=0.2,
                     time_name=None, seed=None, min_train=1):
    """Interactions from `df` (no rating column needed) -> `ImplicitData`.

    user_name / item_name default to the first two columns; weight_name (optional) is a column of
    counts or weights (finite, >= 0) used as confidence, else every row counts 1. Rows with the
    same (user, item) become one pair, their weights summed (their latest time kept).
    The split holds out, for each user with n pairs, round(valid_pct * n) of them (halves up), at
    most n - min_train: chosen at random (`get_rng(seed)`), or with `time_name` the user's most
    recent ones (ties at random). valid_pct=0 holds nothing out. Users and items are encoded
    '#na#' = 0 then their labels sorted, from the training pairs: a held-out item never seen in
    training encodes to 0 and is left out of the evaluation."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError("df is empty (0 rows): no interactions")
    valid_pct = _real("valid_pct", valid_pct)
    if valid_pct >= 1:
        raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct!r}")
    min_train = _int("min_train", min_train)
    user_name = _column(df, "user_name", user_name, 0)
    item_name = _column(df, "item_name", item_name, 1)
    names = [user_name, item_name]
    if weight_name is not None:
        names.append(_column(df, "weight_name", weight_name, None))
    if time_name is not None:
        names.append(_column(df, "time_name", time_name, None))
    if len(set(names)) != len(names):
        raise ValueError(f"user_name, item_name, weight_name and time_name must be different columns, got {names}")

    ucode, ulabels = _codes(df[user_name], f"user_name={user_name!r}")
    icode, ilabels = _codes(df[item_name], f"item_name={item_name!r}")
    w = (np.ones(len(df), np.float64) if weight_name is None
         else _weights(df[weight_name], f"weight_name={weight_name!r}", len(df)).astype(np.float64))
    t = None
    if time_name is not None:
        tc = df[time_name]
        if tc.isna().any():
            raise ValueError(f"time_name={time_name!r} has missing values")
        if pd.api.types.is_datetime64_any_dtype(tc.dtype):
            t = tc.to_numpy().astype("datetime64[ns]").astype(np.int64)
        elif pd.api.types.is_numeric_dtype(tc.dtype) and not pd.api.types.is_bool_dtype(tc.dtype):
            t = tc.to_numpy(dtype=np.float64)
            if not np.isfinite(t).all():
                raise ValueError(f"time_name={time_name!r} has infinite values")
        else:
            raise TypeError(f"time_name={time_name!r} must be numeric or datetime, got dtype {tc.dtype}")

    # one pair per (user, item): weights summed, the latest time kept
    key = ucode * len(ilabels) + icode
    order = np.lexsort((t, key)) if t is not None else np.argsort(key, kind="stable")
    key_s = key[order]
    first = np.ones(len(key_s), bool)
    first[1:] = key_s[1:] != key_s[:-1]
    group = np.cumsum(first) - 1
    n_pairs = int(group[-1]) + 1
    wsum = np.bincount(group, weights=w[order], minlength=n_pairs)
    last = np.append(np.flatnonzero(first)[1:], len(key_s)) - 1
    pu, pi = ucode[order][last], icode[order][last]
    pt = t[order][last] if t is not None else None

    # per-user hold-out: rank each user's pairs (at random, or oldest first) and keep the tail
    rng = get_rng(seed)
    tie = rng.random(n_pairs)
    rank_order = np.lexsort((tie, pt, pu)) if pt is not None else np.lexsort((tie, pu))
    counts = np.bincount(pu, minlength=len(ulabels))
    n_hold = np.minimum(np.floor(valid_pct * counts + 0.5).astype(np.int64),
                        np.maximum(counts - min_train, 0))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos_in_user = np.arange(n_pairs) - np.repeat(starts, counts)
    is_valid = np.zeros(n_pairs, bool)
    is_valid[rank_order] = pos_in_user >= np.repeat(counts - n_hold, counts)

    # classes from the training pairs ('#na#' = 0)
    train = ~is_valid
    maps = {}
    enc = []
    for name, codes, labels in ((user_name, pu, ulabels), (item_name, pi, ilabels)):
        present = np.zeros(len(labels), bool)
        present[codes[train]] = True
        keep = np.flatnonzero(present)
        new = np.zeros(len(labels), np.int32)
        new[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
        maps[name] = CategoryMap._from_items([labels[k] for k in keep], check=False)
        enc.append(new[codes])
    x = np.stack(enc, 1).astype(np.int32)
    wp = wsum.astype(np.float32)
    return ImplicitData(maps, user_name, item_name, weight_name,
                        np.ascontiguousarray(x[train]), np.ascontiguousarray(wp[train]),
                        np.ascontiguousarray(x[is_valid]), np.ascontiguousarray(wp[is_valid]))


register_implicit_split(implicit_from_df)   # CollabDataLoaders.from_df(..., implicit=True)


def _inter(data):
    if isinstance(data, ImplicitData):
        return data.interactions()
    if isinstance(data, Interactions):
        return data
    raise TypeError(f"expected an ImplicitData or Interactions, got {type(data).__name__}")


# ---------------------------------------------------------------------------------------------
# training in segments

class EpochRun:
    """One epoch of a model, run in segments: `run(n)` trains the next n units (ALS: rows, users
    then items; BPR: blocks, in multiples of `unit` for full parallelism), `run_for(seconds)`
    about that long, `done` tells whether the epoch is complete, `result()` its statistics (a
    dict with 'loss'). Stopping early leaves the model with every update made so far.
    BPR also has `lrs` (n_units,), each block's learning rate (`run(n, lrs=...)` sets those of
    the segment, for a schedule) and `unit_losses` (n_units,), each block's mean loss once run;
    ALS has neither (None): it has no learning rate, and reports its loss per epoch."""

    def __init__(self, n_units, unit, step, finish, lrs=None, unit_losses=None, skip=None):
        self.n_units, self.unit = int(n_units), int(unit)
        self.n_done = 0
        self.lrs, self.unit_losses = lrs, unit_losses
        self._step, self._finish, self._result, self._skip = step, finish, None, skip

    def skip(self, n):
        """Passes over the next n units without training them (a training loop's skipped
        segment): ALS rows keep their values; BPR blocks count as skipped samples in `result()`.
        Returns the units done so far."""
        n = min(_int("n", n, lo=0), self.n_units - self.n_done)
        if n > 0 and self._skip is not None:
            self._skip(self.n_done, n)
        self.n_done += n
        return self.n_done

    done = property(lambda self: self.n_done >= self.n_units, doc="True once every unit has run")
    progress = property(lambda self: self.n_done / self.n_units if self.n_units else 1.0)

    def run(self, n=None, lrs=None):
        """Trains the next n units (all that are left by default), at learning rates `lrs` ((n,),
        BPR only; default: the epoch's); returns the units done so far."""
        left = self.n_units - self.n_done
        n = left if n is None else min(_int("n", n, lo=0), left)
        if lrs is not None:
            if self.lrs is None:
                raise ValueError("this model has no learning rate (ALS solves each row exactly enough); "
                                 "pass lrs=None")
            lrs = np.asarray(lrs, np.float64)
            if lrs.shape != (n,) or not (np.isfinite(lrs).all() and (lrs >= 0).all()):
                raise ValueError(f"lrs must be {n} finite learning rates >= 0 (one per unit of the "
                                 f"segment), got shape {lrs.shape}")
            self.lrs[self.n_done:self.n_done + n] = lrs
        if n > 0:
            self._step(self.n_done, n)
            self.n_done += n
        return self.n_done

    def run_for(self, seconds=0.25, first=None):
        """Trains for about `seconds`: a first segment of `first` units (default one `unit`),
        then segments sized by the rate measured so far. Returns the units done so far."""
        seconds = _real("seconds", seconds, strict=True)
        t_end = time.perf_counter() + seconds
        n = self.unit if first is None else _int("first", first)
        while not self.done:
            t0 = time.perf_counter()
            self.run(n)
            dt, left = time.perf_counter() - t0, t_end - time.perf_counter()
            if left <= 0:
                break
            n = max(self.unit, int(n * left / max(dt, 1e-6)) // self.unit * self.unit)
        return self.n_done

    def result(self):
        "The epoch's statistics (after the last unit): a dict with at least 'loss'."
        if not self.done:
            raise RuntimeError(f"the epoch is not finished: {self.n_done} of {self.n_units} units run")
        if self._result is None:
            self._result = self._finish()
        return self._result


# ---------------------------------------------------------------------------------------------
# models

class _FactorModel:
    "What ALS and BPR share: the tables, scoring for top-n, fitting by epochs."
    has_item_bias = False

    def _init_tables(self, n_users, n_items, n_factors):
        self.n_users = _int("n_users", n_users, lo=2)
        self.n_items = _int("n_items", n_items, lo=2)
        self.n_factors = _int("n_factors", n_factors)
        self.user_factors = _aligned((self.n_users, self.n_factors))
        self.item_factors = _aligned((self.n_items, self.n_factors))
        self.item_bias = _aligned((self.n_items,)) if self.has_item_bias else None
        self.epochs_done = 0

    def _check_data(self, data):
        inter = _inter(data)
        if (inter.n_users, inter.n_items) != (self.n_users, self.n_items):
            raise ValueError(f"the data has {inter.n_users} users and {inter.n_items} items, the model "
                             f"{self.n_users} and {self.n_items}")
        return inter

    def rank_tables(self):
        "(user factors, None, item factors, item biases or None): the arguments of `rank_vectors`."
        return self.user_factors, None, self.item_factors, self.item_bias

    def score(self, users, items):
        "float32 scores of the (user, item) index pairs: u.v (+ the item's bias)."
        users = _ids(users, "users", self.n_users)
        items = _ids(items, "items", self.n_items)
        if users.shape != items.shape:
            raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
        out = np.empty(len(users), np.float32)   # in C, pair by pair: no (n, K) gathers
        ib = self.item_bias
        ub = None if ib is None else np.zeros(self.n_users, np.float32)   # the kernel takes both biases
        _core.dotbias_forward(out, self.user_factors, self.item_factors, ub, ib,
                              np.ascontiguousarray(users, np.int32), np.ascontiguousarray(items, np.int32))
        return out

    def recommend(self, users, n=10, exclude=None, threads=None):
        """(idx (Q, n) int32, scores (Q, n) float32): the n best items per user index, best first,
        never '#na#'; `exclude` an `Interactions` (its pairs of these users are skipped; a user
        without any raises ValueError) or a per-query CSR (indptr, indices)."""
        users = _ids(np.atleast_1d(users), "users", self.n_users)
        if isinstance(exclude, Interactions):
            empty = users[exclude.indptr[users + 1] == exclude.indptr[users]]
            if empty.size and not isinstance(self, Popularity):   # popularity is their fallback
                raise ValueError(f"user(s) {empty[:10].tolist()} have no training interactions, so the model "
                                 f"learned nothing for them; recommend Popularity's items, or fold_in their "
                                 f"interactions")
            exclude = exclude.rows(users)
        uw, ub, iw, ib = self.rank_tables()
        return rank_vectors(uw[users], ub, iw, ib, n, exclude, first=1, threads=threads)

    def fit_epoch(self, data, n_threads=None):
        "Trains one whole epoch (iteration) on `data`; returns its training loss."
        ep = self.epoch(data, n_threads)
        ep.run()
        return ep.result()["loss"]

    def fit(self, data, n_epochs, n_threads=None, callback=None):
        """Trains n_epochs epochs; `callback(epoch, result)` after each. Returns the list of each
        epoch's result dict."""
        out = []
        for e in range(_int("n_epochs", n_epochs)):
            ep = self.epoch(data, n_threads)
            ep.run()
            out.append(ep.result())
            if callback is not None:
                callback(e, out[-1])
        return out


class ImplicitALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with the conjugate-gradient solver.

    Loss: L = sum over all (user, item) pairs but '#na#''s of c_ui (p_ui - x_u.y_i)^2 +
    reg (sum |x_u|^2 + sum |y_i|^2), p = 1 for a training pair (confidence c = 1 + alpha * w),
    else p = 0 (c = 1). An epoch solves every user row, then every item row, each by `cg_steps`
    CG steps from its current value; its loss is L / (sum of all confidences) (as `implicit`
    reports it). Tables start uniform in [0, init_scale) (rows 0, '#na#', stay 0); `seed` or
    collabc's global generator. Equivalent to `implicit.als.AlternatingLeastSquares(factors,
    regularization=reg, alpha=1)` fitted on the confidences 1 + alpha * w."""

    def __init__(self, n_users, n_items, n_factors=64, reg=0.01, alpha=1.0, cg_steps=3,
                 init_scale=0.01, seed=None):
        self._init_tables(n_users, n_items, n_factors)
        self.reg = _real("reg", reg)
        self.alpha = _real("alpha", alpha, strict=True)
        self.cg_steps = _int("cg_steps", cg_steps)
        init_scale = _real("init_scale", init_scale)
        rng = get_rng(seed)
        for t in (self.user_factors, self.item_factors):
            t[1:] = rng.random((t.shape[0] - 1, t.shape[1]), dtype=np.float32) * np.float32(init_scale)
        self._gram_cache = None

    def epoch(self, data, n_threads=None):
        """An `EpochRun` of n_users + n_items units: the user rows, then the item rows; the
        Gramian of the fixed table is computed when its half-step starts."""
        inter = self._check_data(data)
        threads = _threads(n_threads)
        NU, NI, K = self.n_users, self.n_items, self.n_factors
        st = {"G": np.zeros((K, K), np.float32), "side": None, "obj": 0.0, "sq": 0.0}

        def step(done, n):
            while n > 0:
                side = "user" if done < NU else "item"
                if st["side"] != side:
                    fixed = self.item_factors if side == "user" else self.user_factors
                    st["sq"] = _core.als_gramian(st["G"], fixed, threads)
                    st["side"], st["obj"] = side, 0.0
                    self._gram_cache = None
                if side == "user":
                    a, b = done, min(NU, done + n)
                    X, Y, (ip, ix, iw) = self.user_factors, self.item_factors, (inter.indptr, inter.indices, inter.weights)
                else:
                    a, b = done - NU, min(NI, done - NU + n)
                    X, Y, (ip, ix, iw) = self.item_factors, self.user_factors, inter.item_csr()
                st["obj"] += _core.als_solve(X, st["G"], Y, ip, ix, iw, a, b, self.alpha, self.reg,
                                             self.cg_steps, threads)
                n -= b - a
                done += b - a

        def finish():
            self.epochs_done += 1
            total = st["obj"] + self.reg * st["sq"]
            return {"loss": total / inter.confidence_total(self.alpha), "objective": total}

        return EpochRun(NU + NI, 1, step, finish)

    def _gramian(self):
        if self._gram_cache is None:
            Y = self.item_factors.astype(np.float64)
            self._gram_cache = Y.T @ Y
        return self._gram_cache

    def fold_in(self, items, weights=None):
        """The factors (K,) float32 of a new user who interacted with the item indices `items`
        (weights as in training), every item frozen: the exact solve
        (Y^T Y + Y^T (C_u - I) Y + reg I)^-1 Y^T C_u p_u (what a full ALS user step converges to)."""
        items, w = _fold_items(items, weights, self.n_items)
        c1 = self.alpha * w
        Y = self.item_factors.astype(np.float64)
        Yu = Y[items]
        A = self._gramian() + self.reg * np.eye(self.n_factors) + (Yu * c1[:, None]).T @ Yu
        b = ((1.0 + c1)[:, None] * Yu).sum(0)
        return np.linalg.solve(A, b).astype(np.float32)

    def __repr__(self):
        return (f"ImplicitALS({self.n_users} users, {self.n_items} items, n_factors={self.n_factors}, "
                f"reg={self.reg:g}, alpha={self.alpha:g}, cg_steps={self.cg_steps})")


def _fold_items(items, weights, n_items):
    items = np.atleast_1d(items)
    if items.size:
        items = _ids(items, "items", n_items)
    if items.size == 0:
        raise ValueError("fold-in needs at least one interaction: a user with no interactions has no "
                         "factors to fit (recommend the popular items instead)")
    if np.any(items == 0):
        raise ValueError("items must not contain 0 ('#na#')")
    w = np.ones(len(items)) if weights is None else _weights(weights, "weights", len(items)).astype(np.float64)
    u, inv = np.unique(items, return_inverse=True)
    return u.astype(np.int64), np.bincount(inv, weights=w)


class BPR(_FactorModel):
    """Bayesian personalised ranking (Rendle et al. 2009) with item biases.

    Each epoch draws one sample per training pair: a positive (u, i) at random and a negative j
    uniformly among the items of i's group (ids j = i mod n_groups) that u has not interacted
    with, then one SGD (lr) or row-wise Adagrad step on -ln sigmoid(u.(v_i - v_j) + b_i - b_j) +
    reg |rows|^2 + reg_bias b^2. The pairs form an n_groups x n_groups grid of blocks (user
    group, item group); an epoch visits them in random strata, threads training blocks that share
    no group, and gives the same result for any number of threads (n_groups='auto': chosen from
    the data's size at the first epoch, see `auto_groups`). Tables start uniform in
    (-0.5, 0.5) / n_factors (as `implicit`), biases 0, rows 0 ('#na#') untrained."""

    has_item_bias = True

    def __init__(self, n_users, n_items, n_factors=64, lr=0.01, reg=0.01, reg_bias=None,
                 opt="sgd", eps=1e-8, n_groups="auto", seed=None):
        self._init_tables(n_users, n_items, n_factors)
        self.lr = _real("lr", lr, strict=True)
        self.reg = _real("reg", reg)
        self.reg_bias = self.reg if reg_bias is None else _real("reg_bias", reg_bias)
        if opt not in ("sgd", "adagrad"):
            raise ValueError(f"opt must be 'sgd' or 'adagrad', got {opt!r}")
        self.opt = opt
        self.eps = _real("eps", eps, strict=True)
        if isinstance(n_groups, str) and n_groups == "auto":
            self.n_groups = None   # chosen from the data at the first epoch
        elif isinstance(n_groups, str):
            raise ValueError(f"n_groups must be 'auto' or an integer in [1, 4096], got {n_groups!r}")
        else:
            self.n_groups = check_int("n_groups", n_groups, lo=1, hi=4096)
        rng = get_rng(seed)
        for t in (self.user_factors, self.item_factors):
            t[1:] = (rng.random((t.shape[0] - 1, t.shape[1]), dtype=np.float32) - np.float32(0.5)) \
                / np.float32(self.n_factors)
        self.acc = _aligned((self.n_users + 2 * self.n_items,)) if opt == "adagrad" else None
        self._rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
        self._seed = int(rng.integers(0, 2**63 - 1))
        self._epochs_started = 0

    def epoch(self, data, n_threads=None, lrs=None, rng=None):
        """An `EpochRun` of n_groups^2 units, the blocks in this epoch's random strata (unit:
        n_groups blocks, one stratum); `lrs` optional per-block learning rates (a schedule);
        `rng` the generator of the strata order (default: the model's own)."""
        inter = self._check_data(data)
        threads = _threads(n_threads)
        if self.n_groups is None:
            self.n_groups = auto_groups(inter.nnz, self.n_users, self.n_items)
        nb = self.n_groups
        pairs, starts = inter.blocks(nb)
        rng = self._rng if rng is None else rng
        strata, groups = rng.permutation(nb), rng.permutation(nb)
        blocks = np.array([g * nb + (g + s) % nb for s in strata for g in groups], np.int64)
        if lrs is None:
            lrs = np.full(nb * nb, self.lr)
        else:
            lrs = np.array(lrs, np.float64)
            if lrs.shape != (nb * nb,) or not (np.isfinite(lrs).all() and (lrs >= 0).all()):
                raise ValueError(f"lrs must be {nb * nb} finite learning rates >= 0, got shape {lrs.shape}")
        losses = np.zeros(nb * nb)
        stats = np.zeros((nb * nb, 2), np.int64)
        epoch_id = self._epochs_started      # keys the samples: a new epoch never repeats one
        self._epochs_started += 1

        def step(done, n):
            sl = slice(done, done + n)
            bad = _core.bpr_fit_blocks(self.user_factors, self.item_factors, self.item_bias, self.acc,
                                       losses[sl], stats[sl], None, pairs, starts, blocks[sl], lrs[sl],
                                       opt=self.opt, reg=self.reg, reg_bias=self.reg_bias, eps=self.eps,
                                       seed=self._seed, epoch=epoch_id, n_threads=threads)
            if bad >= 0:
                raise FloatingPointError(
                    f"BPR diverged: a score became NaN or infinite in epoch {epoch_id}, block "
                    f"{done + bad} (lr={lrs[done + bad]:.3g}); the samples before it were applied. "
                    f"Lower lr.")

        def finish():
            self.epochs_done += 1
            sizes = (starts[blocks + 1] - starts[blocks]).astype(np.float64)
            used = sizes - stats[:, 1]
            n_used = used.sum()
            return {"loss": float(losses @ used / n_used) if n_used else float("nan"),
                    "auc": float(stats[:, 0].sum() / n_used) if n_used else float("nan"),
                    "skipped": float(stats[:, 1].sum() / sizes.sum()) if sizes.sum() else 0.0}

        def skip(done, n):   # the blocks' samples count as skipped, not as used with loss 0
            b = blocks[done:done + n]
            stats[done:done + n, 1] = starts[b + 1] - starts[b]

        return EpochRun(nb * nb, nb, step, finish, lrs=lrs, unit_losses=losses, skip=skip)

    def fold_in(self, items, n_steps=None, lr=0.05, seed=0):
        """The factors (K,) float32 of a new user who interacted with the item indices `items`,
        the trained items and biases frozen: `n_steps` (default 200 per item, at least 2000)
        SGD steps of BPR on the new row from 0, deterministic for `seed`."""
        items, _ = _fold_items(items, None, self.n_items)
        if len(items) >= self.n_items - 1:
            raise ValueError("fold-in needs an item the user has not interacted with (a negative)")
        n_steps = max(2000, 200 * len(items)) if n_steps is None else _int("n_steps", n_steps, lo=0)
        x = np.zeros(self.n_factors, np.float32)
        _core.bpr_fold_in(x, self.item_factors, self.item_bias, items.astype(np.int32), n_steps,
                          _real("lr", lr), self.reg, _int("seed", seed, lo=0))
        return x

    def __repr__(self):
        return (f"BPR({self.n_users} users, {self.n_items} items, n_factors={self.n_factors}, "
                f"lr={self.lr:g}, reg={self.reg:g}, opt={self.opt!r}, n_groups={self.n_groups})")


def auto_groups(nnz, n_users, n_items):
    """BPR's default grid: about 25,000 pairs a block (a block's rows then stay in cache), 2 to 32
    groups a side, at least 64 items and users a group. A function of the data only, so the
    results do not depend on the number of threads."""
    nb = round(math.sqrt(nnz / 25_000))
    nb = min(32, max(2, nb), max(1, min(n_users, n_items) // 64))
    return max(1, nb)


class Popularity:
    """The baseline: every user gets the items with the most training users (ties to the smaller
    index). `Popularity(data)` counts the training pairs of an ImplicitData or Interactions."""

    def __init__(self, data):
        inter = _inter(data)
        self.n_users, self.n_items = inter.n_users, inter.n_items
        self.counts = inter.item_counts().astype(np.float32)

    def rank_tables(self):
        return (np.zeros((self.n_users, 1), np.float32), None, np.zeros((self.n_items, 1), np.float32),
                self.counts)

    recommend = _FactorModel.recommend

    def __repr__(self):
        return f"Popularity({self.n_items} items)"


# ---------------------------------------------------------------------------------------------
# evaluation

_METRICS = ("precision", "recall", "ndcg", "map")


class RankingReport(dict):
    """precision/recall/NDCG/MAP at k of a model (the dict's items), `baseline` the same for
    the popularity baseline, and `beats_baseline` whether the model is ahead on NDCG@k."""

    def __repr__(self):
        k = self["k"]
        keys = [f"{m}@{k}" for m in _METRICS]
        rows = [f"{'':<12}" + "".join(f"{c:>14}" for c in keys)]
        rows.append(f"{self['model']:<12}" + "".join(f"{self[c]:>14.4f}" for c in keys))
        if self.get("baseline") is not None:
            rows.append(f"{'popularity':<12}" + "".join(f"{self['baseline'][c]:>14.4f}" for c in keys))
            rows.append(self["verdict"])
        return "\n".join(rows) + f"\n({self['n_users']} users evaluated)"


def _scores(model, users, k, inter, threads):
    uw, ub, iw, ib = model.rank_tables()
    return rank_vectors(uw[users], None if ub is None else ub[users], iw, ib, k, inter.rows(users),
                        first=1, threads=threads)[0]


def evaluate(model, data, k=10, baseline=True, threads=None, users=None):
    """Ranking quality of `model` on `data`'s held-out pairs: for every user with held-out items
    known at training time, the model ranks every item but '#na#' and the user's training items;
    precision@k = hits / k, recall@k = hits / |held out|, NDCG@k (binary gains) and MAP@k
    (normalised by min(k, |held out|)), averaged over those users (`collabc.ranking`'s
    definitions). With `baseline`, the popularity baseline is measured on the same users and the
    report says whether the model beats it. `users` (user indices) evaluates only those of them
    that have held-out pairs. Returns a `RankingReport` (a dict)."""
    if not isinstance(data, ImplicitData):
        raise TypeError(f"data must be an ImplicitData (with a held-out split), got {type(data).__name__}")
    k = _int("k", k)
    inter = data.interactions()
    if (getattr(model, "n_users", None), getattr(model, "n_items", None)) != (inter.n_users, inter.n_items):
        raise ValueError("the model's tables do not match the data's users and items")
    users_, relevant = data.relevant()
    if users is not None:
        keep = np.isin(users_, _ids(np.asarray(users), "users", inter.n_users))
        users_, relevant = users_[keep], [r for r, k_ in zip(relevant, keep) if k_]
    users = users_
    if len(users) == 0:
        raise ValueError("no held-out pairs to evaluate (valid_pct=0, or every held-out item is unknown "
                         "to the training data)")
    rep = RankingReport(ranking_scores(_scores(model, users, k, inter, threads), relevant, k))
    rep["k"], rep["model"] = k, type(model).__name__
    if baseline:
        base = ranking_scores(_scores(Popularity(inter), users, k, inter, threads), relevant, k)
        rep["baseline"] = base
        rep["beats_baseline"] = rep[f"ndcg@{k}"] > base[f"ndcg@{k}"]
        rep["verdict"] = (f"{rep['model']} beats the popularity baseline (NDCG@{k} {rep[f'ndcg@{k}']:.4f} > "
                          f"{base[f'ndcg@{k}']:.4f})" if rep["beats_baseline"] else
                          f"{rep['model']} does NOT beat the popularity baseline (NDCG@{k} "
                          f"{rep[f'ndcg@{k}']:.4f} <= {base[f'ndcg@{k}']:.4f})")
    return rep


# ---------------------------------------------------------------------------------------------
# the models as collabc Modules (what a Learner holds)

_HYPERS = {"als": ("reg", "alpha", "cg_steps", "init_scale", "seed"),
           "bpr": ("lr", "reg", "reg_bias", "opt", "eps", "n_groups", "seed")}
_SAVED = {"als": ("reg", "alpha", "cg_steps"), "bpr": ("lr", "reg", "reg_bias", "opt", "eps", "n_groups")}


class ImplicitModel(_DotFamily):
    """An `ImplicitALS` or `BPR` (`core`) as a collabc dot-product `Module`, what
    `implicit_learner` puts in a `Learner`: its parameters `u_weight.weight`, `i_weight.weight`
    (and BPR's `i_bias.weight`, (n_items, 1)) are the core's own tables (no copy), so the
    Learner's recommend, most_similar, get_preds, save/load and export read and write the
    model the C kernels train. Scores are `u . v` (+ the item's bias); there is no user bias
    and no y_range. `ImplicitModel('als' | 'bpr', n_users, n_items, n_factors, **hypers)`."""

    y_range, has_bias = None, False

    def __init__(self, model, n_users, n_items, n_factors=64, **hypers):
        if model not in _HYPERS:
            raise ValueError(f"model must be 'als' or 'bpr', got {model!r}")
        unknown = sorted(set(hypers) - set(_HYPERS[model]))
        if unknown:
            raise TypeError(f"unknown hyperparameter(s) {unknown} for model={model!r}; it takes "
                            f"{list(_HYPERS[model])}")
        core = (ImplicitALS if model == "als" else BPR)(n_users, n_items, n_factors, **hypers)
        self.kind, self.core = model, core
        self.n_users, self.n_items, self.n_factors = core.n_users, core.n_items, core.n_factors
        self.u_weight = Embedding(self.n_users, self.n_factors, _weight=core.user_factors)
        self.i_weight = Embedding(self.n_items, self.n_factors, _weight=core.item_factors)
        if core.item_bias is not None:
            self.i_bias = Embedding(self.n_items, 1, _weight=core.item_bias.reshape(-1, 1))
            # BPR's sample stream (its seed, epochs started): saved, so a loaded checkpoint resumes exactly
            self.register_buffer("sampling", tensor(np.zeros(2, np.int64)))
        self.classes = None

    def state_dict(self, *args, **kwargs):
        if self.kind == "bpr":
            self.sampling._data[:] = (self.core._seed, self.core._epochs_started)
        return super().state_dict(*args, **kwargs)

    def check_state_dict(self, state_dict, strict=True):
        "Raises ValueError if `state_dict` holds a state this model cannot train on (checked at load)."
        if self.kind == "bpr" and "sampling" in state_dict:
            v = np.asarray(getattr(state_dict["sampling"], "_data", state_dict["sampling"]))
            if v.shape != (2,) or v.dtype.kind not in "iu" or v.min() < 0 or v.max() >= 2**63:
                raise ValueError(f"the BPR sampling state must be two integers in [0, 2**63), got {_short(v)}")

    def load_state_dict(self, state_dict, strict=True):
        self.check_state_dict(state_dict, strict)
        out = super().load_state_dict(state_dict, strict)
        if self.kind == "bpr":
            self.core._seed, self.core._epochs_started = (int(x) for x in self.sampling._data)
        return out

    def _tables(self):
        c = self.core
        return (c.user_factors, c.item_factors, None,
                None if c.item_bias is None else c.item_bias.reshape(-1, 1))

    def _fused_ok(self):
        return True   # scored by the C ranking kernel and `core.score`, never through autograd

    @property
    def n_params(self):
        return int(sum(p._data.size for p in self.parameters()))

    def forward(self, x):
        users, items = x[:, 0], x[:, 1]
        res = (self.u_weight(users) * self.i_weight(items)).sum(1)
        return res + self.i_bias(items).squeeze() if self.kind == "bpr" else res

    def _predict(self, x):
        return self.core.score(x[:, 0], x[:, 1])

    def _fit_epoch(self, *args, **kwargs):
        raise TypeError("an ImplicitModel trains with implicit_learner(dls, 'als' | 'bpr') (an ImplicitLearner), "
                        "not with the rating Learner's MSE training")

    _fit_blocks = _fit_epoch

    def hypers(self):
        "The hyperparameters a file keeps (those that rebuild the model; not the seed)."
        c = self.core
        out = {k: getattr(c, k) for k in _SAVED[self.kind]}
        if self.kind == "bpr" and out["n_groups"] is None:
            out["n_groups"] = "auto"
        return out

    def _init_args(self):
        return {"model": self.kind, "n_users": self.n_users, "n_items": self.n_items,
                "n_factors": self.n_factors, **self.hypers()}

    @classmethod
    def planned_shapes(cls, model, n_users, n_items, n_factors=64, **hypers):
        "{state-dict name: shape} of `cls(**args)`, without building it (see `_DotFamily`)."
        if model not in _HYPERS:
            raise ValueError(f"model must be 'als' or 'bpr', got {_short(model)}")
        unknown = sorted(set(hypers) - set(_SAVED[model]))
        if unknown:
            raise TypeError(f"unknown hyperparameter(s) {unknown} for model={model!r}")
        nu, ni, k = _int("n_users", n_users, lo=2), _int("n_items", n_items, lo=2), _int("n_factors", n_factors)
        out = {"u_weight.weight": (nu, k), "i_weight.weight": (ni, k)}
        if model == "bpr":
            out["i_bias.weight"], out["sampling"] = (ni, 1), (2,)
        return out

    @classmethod
    def from_config(cls, cfg, classes=None):
        "The model `get_config()` describes (tables freshly drawn: load the weights next)."
        res = cls(**cfg["args"])
        if classes is not None and cfg.get("user") is not None:
            res.classes, res.user, res.item = classes, cfg["user"], cfg["item"]
        return res

    def __repr__(self):
        return f"ImplicitModel({self.core!r})"


def _short(v):
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."
