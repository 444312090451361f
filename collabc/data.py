"""Ratings -> encoded arrays: fastai's `CollabDataLoaders` without PyTorch.

`CollabDataLoaders.from_df(ratings, ...)` splits a pandas frame of (user, item, rating) rows into a
training and a validation set, maps user and item labels to contiguous indices (`'#na#'` = 0) and
serves NumPy batches. It reproduces fastai 2.7's rules (fastai/collab.py, fastai/tabular/core.py):

* the validation set is the *head* of a random permutation, `cut = int(valid_pct * n)` rows;
* rows are reordered train then valid, and keep their original index labels;
* numeric id columns get their classes from the training rows only (ids seen only in validation
  encode to 0 = `'#na#'`); string/object and categorical id columns get classes from the whole frame
  (fastai's `df_shrink` turns object columns into categoricals before the split);
* the training loader shuffles and drops its last partial batch, the validation loader does neither.

Deliberate differences: the permutation comes from NumPy (`collabc.seed.get_rng`), not torch, so pass
`valid_idx` for an exact, shared split; `CategoryMap.o2i` is a plain dict, so unknown labels raise
`KeyError` instead of silently mapping to `'#na#'`; `from_df` returns a `CollabDataLoaders`.
"""
import numbers
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from . import _core
from ._checks import check_int
from .csr import seen_csr
from .display import in_notebook
from .seed import get_rng, new_seed

__all__ = ['CategoryMap', 'DataLoader', 'DataLoaders', 'CollabDataLoaders', 'encode_ids']

_NA = '#na#'
_MAX_CLASSES = 2**31 - 1          # indices are stored as int32
_CLASSES_FROM = ('auto', 'train', 'all')


# ----------------------------------------------------------------------------------------------
# CategoryMap

class CategoryMap(list):
    """The vocabulary of one id column: `'#na#'` at index 0, then the labels in order.

    `CategoryMap(col)` takes the unique non-missing values of `col` sorted ascending (numeric order
    for numbers, code-point order for strings); for a pandas categorical it takes *all* its
    categories in category order, as fastai does. `o2i` maps label -> index.

    Unlike fastai (whose `o2i` is a `defaultdict` that answers 0 for anything), `o2i` is a plain
    dict: looking up a label that is not in the map raises `KeyError`, so a typo or an unseen id
    is never silently treated as `'#na#'`.
    """

    def __init__(self, col=(), sort=True, add_na=True):
        if isinstance(col, (str, bytes)):
            raise TypeError(f"CategoryMap: col must be a collection of labels, not {type(col).__name__}")
        if isinstance(getattr(col, 'dtype', None), pd.CategoricalDtype):
            items = list(pd.Series(col).cat.categories.tolist())
        else:
            s = pd.Series(col, dtype=None if len(col) else object).dropna()
            _, uniques = pd.factorize(s, sort=sort)
            items = list(uniques.tolist())
        self._init_items(items, add_na)

    def _init_items(self, items, add_na, check=True):
        if add_na:
            if check and any(isinstance(v, str) and v == _NA for v in items):
                raise ValueError(f"CategoryMap: the label {_NA!r} is reserved for index 0 but occurs in the data")
            items = [_NA] + items
        list.__init__(self, items)
        self.o2i = {v: i for i, v in enumerate(self)}
        if len(self.o2i) != len(self):
            raise ValueError("CategoryMap: labels are not unique")

    @classmethod
    def _from_items(cls, items, add_na=True, check=True):
        "Build from labels that are already unique and in their final order."
        self = cls.__new__(cls)
        self._init_items(list(items), add_na, check)
        return self

    def __repr__(self):
        head = ', '.join(repr(v) for v in self[:10])
        return f"(#{len(self)}) [{head}{', ...' if len(self) > 10 else ''}]"


# ----------------------------------------------------------------------------------------------
# encoding new ids with existing classes

def encode_ids(classes, ids, what='ids', unknown='raise', hint=True):
    """int32 indices of `ids` (a label or a sequence of labels) in `classes` (a `CategoryMap`).
    unknown='raise': a `KeyError` naming the labels without a class (the label '#na#' counts
    as unknown); unknown='na': those become 0, fastai's behaviour. `hint` adds that advice to
    the error message (off where there is no `unknown` option)."""
    if unknown not in ('raise', 'na'):
        raise ValueError(f"unknown must be 'raise' or 'na', got {unknown!r}")
    if isinstance(ids, (str, bytes)) or np.ndim(ids) == 0:
        ids = [ids]
    vals = pd.Index(np.asarray(ids, dtype=object) if not isinstance(ids, (pd.Series, pd.Index))
                    else ids.to_numpy(dtype=object), dtype=object)
    index = getattr(classes, '_pd_index', None)
    if index is None or len(index) != len(classes):
        index = pd.Index(list(classes), dtype=object)
        classes._pd_index = index
    try:
        idx = index.get_indexer(vals)
    except TypeError:
        idx = np.array([classes.o2i.get(v, -1) if _hashable(v) else -1 for v in vals], dtype=np.int64)
    bad = idx <= 0
    if bad.any():
        if unknown == 'raise':
            unknown_ids = list(dict.fromkeys(vals[bad].tolist()))
            raise KeyError(f"{len(unknown_ids)} {what} id(s) not in the training classes: "
                           f"{unknown_ids[:10]!r}{' ...' if len(unknown_ids) > 10 else ''}"
                           + ("; pass unknown='na' to map them to '#na#' (index 0) as fastai does"
                              if hint else ""))
        idx = np.where(bad, 0, idx)
    return idx.astype(np.int32)


def _hashable(v):
    try:
        hash(v)
    except TypeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# argument checks

def _check_bs(bs, name):
    return check_int(name, bs, 1, kind_error=ValueError)


def _first_label(index, mask):
    return index[int(np.flatnonzero(mask)[0])]


# ----------------------------------------------------------------------------------------------
# DataLoader

class DataLoader:
    """Batches of encoded (user, item) pairs and ratings for one split, as NumPy arrays.

    `x` is an (n, 2) int32 C-contiguous array of [user index, item index], `y` an (n,) float32
    C-contiguous array of ratings. Each epoch visits the rows in `order()`: a fresh permutation from
    the loader's own generator `rng` (seeded from `collabc.seed.new_seed()` at construction, like
    fastai's per-loader `random.Random`) if `shuffle`, else `0..n-1`. Batch `i` is
    `order[i*bs:(i+1)*bs]`; the last partial batch is dropped if `drop_last` (default: `shuffle`).
    Iterating yields `(xb, yb)`: xb (b, 2) int64 (fastai's LongTensor), yb (b, 1) float32.
    `df` is the split's rows of the original frame, in split order (optional).

    The loader owns what is derived from its rows and never changes the arrays it was given:
    `block_layout(nb)` (the sparse path's rows grouped into blocks, a copy made once and shared
    by every learner that trains from this loader) and `seen(...)` (the (user, item) pairs as
    CSR). `new_rng()` gives each consumer (a `Learner`) its own stream of epoch orders that
    starts where a fresh loader's would, so learners sharing a loader do not disturb each
    other's batch order.

    `reorder=True` trades that guarantee for memory on large data: the sparse path then groups
    the rows into blocks *in place*, in `x` and `y` themselves (the arrays you gave when they are
    already C-contiguous int32 and float32, so nothing is copied), instead of in a copy - 12 bytes
    a rating less at training time (300 MB at 25M ratings). The loader's row order changes on the
    first sparse fit (the same rows; the fit's result is bit for bit the one of `reorder=False`),
    and `x` and `y` become read-only; the loader then serves that one `n_blocks` only. Use it when
    this loader serves the sparse path alone and nothing else reads the arrays.
    """

    has_y = True   # False for a test_dl built from rows without ratings: y is then all zeros

    def __init__(self, x, y, bs=64, shuffle=False, drop_last=None, df=None, reorder=False):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"DataLoader: x must have shape (n, 2), got {x.shape}")
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"DataLoader: x must hold integer indices, got dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() > _MAX_CLASSES - 1):
            raise ValueError("DataLoader: x indices must lie in [0, 2**31-1)")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"DataLoader: y must have shape ({x.shape[0]},), got {y.shape}")
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_) or np.iscomplexobj(y):
            raise TypeError(f"DataLoader: y must be real numbers, got dtype {y.dtype}")
        self.x = np.ascontiguousarray(x, dtype=np.int32)
        self.y = np.ascontiguousarray(y, dtype=np.float32)
        self.n = int(self.x.shape[0])
        if not isinstance(reorder, (bool, np.bool_)):
            raise TypeError(f"DataLoader: reorder must be True or False, got {reorder!r}")
        self.reorder = bool(reorder)
        if self.reorder and not (self.x.flags.writeable and self.y.flags.writeable):
            raise ValueError("DataLoader: reorder=True groups x and y in place, but they are read-only; "
                             "pass writeable arrays or reorder=False (a copy)")
        self.bs = _check_bs(bs, 'bs')
        self.shuffle = bool(shuffle)
        self.drop_last = self.shuffle if drop_last is None else bool(drop_last)
        self.seed = new_seed()
        self.rng = np.random.default_rng(self.seed)
        self._lock = threading.Lock()
        self._layouts, self._seen = {}, {}
        self._stored_seen = None
        if df is not None and not isinstance(df, pd.DataFrame):
            raise TypeError(f"DataLoader: df must be a pandas DataFrame or None, got {type(df).__name__}")
        if df is not None and len(df) != self.n:
            raise ValueError(f"DataLoader: df has {len(df)} rows but x has {self.n}")
        self._df, self._src, self._rows = df, None, None

    @property
    def df(self):
        "The pandas rows of this split, in split order, original index labels kept (None if unknown)."
        if self._df is None and self._src is not None:
            self._df = self._src.take(self._rows)
        return self._df

    def __len__(self):
        return self.n // self.bs + (0 if self.drop_last or self.n % self.bs == 0 else 1)

    def order(self, rng=None):
        """Row order for one epoch: int64 C-contiguous, a new permutation each call if `shuffle`,
        drawn from `rng` (default: the loader's own `rng`, which iteration uses)."""
        if self.shuffle:
            return np.ascontiguousarray((self.rng if rng is None else rng).permutation(self.n),
                                        dtype=np.int64)
        return np.arange(self.n, dtype=np.int64)

    def new_rng(self):
        """A generator of epoch orders for one consumer: the stream a freshly built loader with
        this one's seed would give, independent of anyone else drawing from this loader."""
        return np.random.default_rng(self.seed)

    def block_layout(self, nb, n_threads=1):
        """`(x, y, starts)`: the rows grouped into nb x nb blocks of (user mod nb, item mod nb) as
        the sparse training path reads them (`_core.block_sort`): block b is rows
        [starts[b], starts[b+1]) of x, y. A copy, made on first use and kept (one per nb);
        the loader's own x and y and the arrays it was built from are never reordered, and
        learners sharing the loader share the copy, which nothing writes after it is made. With
        `reorder=True` the loader's own x and y are grouped in place instead, for one nb only
        (another raises ValueError: the order within a block depends on the order before)."""
        nb = check_int("n_blocks", nb, 1, 4096)
        with self._lock:
            layout = self._layouts.get(nb)
            if layout is None:
                if self.reorder and self._layouts:
                    (done,) = self._layouts
                    raise ValueError(f"this loader's rows are grouped in place for n_blocks={done} "
                                     f"(reorder=True keeps one layout), so n_blocks={nb} cannot be "
                                     f"used with it; train with n_blocks={done}, or build the loader "
                                     f"with reorder=False")
                if self.reorder:
                    x, y = self.x, self.y
                else:
                    x, y = self.x.copy(), self.y.copy()
                starts = _core.block_sort(x, y, None, nb, check_int("n_threads", n_threads, 1))
                for a in (x, y, starts):
                    a.flags.writeable = False
                layout = self._layouts[nb] = (x, y, starts)
            return layout

    def seen(self, n_users, n_items, by_item=False):
        """The (user, item) pairs of this loader as a CSR `(indptr, indices)` (see
        `collabc.csr.seen_csr`): per user (per item with `by_item`), sorted and unique. Made
        once per shape and kept; a loader rebuilt by `load_learner` holds the pairs that were
        exported with the model instead of rows."""
        key = (int(n_users), int(n_items), bool(by_item))
        with self._lock:
            if key not in self._seen:
                if self.n == 0 and self._stored_seen is not None:
                    indptr, indices = self._stored_seen
                    if by_item:
                        users = np.repeat(np.arange(n_users, dtype=np.int32), np.diff(indptr))
                        csr = seen_csr(np.stack([users, indices], 1), n_items, n_users, by_item=True)
                    else:
                        csr = (indptr, indices)
                elif self.n == 0:
                    raise ValueError("exclude_seen=True needs the training ratings, but this learner "
                                     "has none (exported with with_seen=False?); pass exclude_seen=False")
                else:
                    csr = seen_csr(self.x, n_items if by_item else n_users,
                                   n_users if by_item else n_items, by_item=by_item)
                self._seen[key] = csr
            return self._seen[key]

    def __getstate__(self):
        "Pickles (and copies) without the lock and the derived caches, which are rebuilt on use."
        state = dict(self.__dict__)
        state["_lock"], state["_seen"] = None, {}
        if not self.reorder:   # a layout made in place is the rows themselves: it stays
            state["_layouts"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def set_seen(self, indptr, indices):
        "Stores exported training pairs (user CSR) on a loader without rows (`load_learner`)."
        self._stored_seen = (np.asarray(indptr, np.int64), np.asarray(indices, np.int32))
        self._seen.clear()

    def _batch(self, idx):
        return self.x[idx].astype(np.int64), self.y[idx].reshape(-1, 1)

    def __iter__(self):
        order, bs = self.order(), self.bs
        for i in range(len(self)):
            yield self._batch(order[i * bs:(i + 1) * bs])

    def one_batch(self):
        "The first batch of a fresh epoch: `(xb, yb)`."
        if len(self) == 0:
            raise ValueError(f"DataLoader has no batches: {self.n} rows, bs={self.bs}, drop_last={self.drop_last}")
        return next(iter(self))

    def __repr__(self):
        return (f"DataLoader(n={self.n}, bs={self.bs}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, batches={len(self)})")


# ----------------------------------------------------------------------------------------------
# DataLoaders

class DataLoaders:
    """A training and a validation `DataLoader` plus the vocabularies that decode their indices.

    `classes` maps `user_name` and `item_name` (in that order) to their `CategoryMap`;
    `n_users`/`n_items` count `'#na#'`. `dls[0]`/`dls[1]` are `train`/`valid`; `train_ds`/`valid_ds`
    are the pandas rows of each split.
    """
    n_inp = 1

    def __init__(self, train, valid, classes, user_name, item_name, rating_name, path='.'):
        if not isinstance(train, DataLoader) or not isinstance(valid, DataLoader):
            raise TypeError("DataLoaders: train and valid must be DataLoader instances")
        if list(classes) != [user_name, item_name]:
            raise ValueError(f"DataLoaders: classes must have keys [{user_name!r}, {item_name!r}], got {list(classes)}")
        self.train, self.valid = train, valid
        self.classes = {user_name: classes[user_name], item_name: classes[item_name]}
        self.user_name, self.item_name, self.rating_name = user_name, item_name, rating_name
        self.path = Path(path)
        self._y_dtype = np.dtype(np.float32)

    loaders = property(lambda self: [self.train, self.valid], doc="[train, valid]")
    cat_names = property(lambda self: [self.user_name, self.item_name], doc="[user_name, item_name]")
    n_users = property(lambda self: len(self.classes[self.user_name]), doc="number of user classes, incl. '#na#'")
    n_items = property(lambda self: len(self.classes[self.item_name]), doc="number of item classes, incl. '#na#'")
    train_ds = property(lambda self: self.train.df, doc="the training rows (DataFrame, split order)")
    valid_ds = property(lambda self: self.valid.df, doc="the validation rows (DataFrame, split order)")
    bs = property(lambda self: self.train.bs, doc="training batch size")

    def __getitem__(self, i):
        return self.loaders[i]

    def one_batch(self):
        "The first batch of a fresh (shuffled) training epoch: `(xb, yb)`."
        return self.train.one_batch()

    def one_batch_df(self, max_n=10):
        "Up to `max_n` rows of one shuffled training batch, decoded to labels, as a DataFrame."
        max_n = _check_bs(max_n, 'max_n')
        xb, yb = self.one_batch()
        xb, yb = xb[:max_n], yb[:max_n, 0]
        users = np.asarray(self.classes[self.user_name], dtype=object)[xb[:, 0]]
        items = np.asarray(self.classes[self.item_name], dtype=object)[xb[:, 1]]
        ratings = yb.astype(self._y_dtype) if self._y_dtype.kind in 'iub' else yb
        return pd.DataFrame({self.user_name: users, self.item_name: items, self.rating_name: ratings})

    def encode(self, ids, is_item=False, unknown='raise'):
        """Indices (int32 array) of raw user ids (or item ids with `is_item=True`) through
        `classes`. unknown='raise' (default): a `KeyError` naming the ids that have no class;
        unknown='na': they become 0 ('#na#'), fastai's silent behaviour."""
        name = self.item_name if is_item else self.user_name
        return encode_ids(self.classes[name], ids, f"{'item' if is_item else 'user'} column {name!r}", unknown)

    def test_dl(self, test_items, rm_type_tfms=None, with_labels=None, unknown='raise', bs=None):
        """A `DataLoader` over new rows (fastai's `dls.test_dl(df)`), encoded with the existing
        classes, in the frame's order, unshuffled. `test_items` is a DataFrame (or a dict/Series
        for one row) with the user and item columns; the rating column is optional and, when
        present (and `with_labels` is not False), gives the targets. Ids without a class raise a
        `KeyError` naming them, unless `unknown='na'` maps them to '#na#' (index 0) as fastai
        does. `bs` defaults to the validation batch size."""
        if isinstance(test_items, pd.Series):
            test_items = test_items.to_frame().T
        elif isinstance(test_items, dict):
            test_items = pd.DataFrame([test_items])
        if not isinstance(test_items, pd.DataFrame):
            raise TypeError(f"test_items must be a pandas DataFrame (or a dict/Series for one row), "
                            f"got {type(test_items).__name__}")
        if unknown not in ('raise', 'na'):
            raise ValueError(f"unknown must be 'raise' or 'na', got {unknown!r}")
        missing = [c for c in (self.user_name, self.item_name) if c not in test_items.columns]
        if missing:
            raise KeyError(f"test_items lacks the column(s) {missing}; it has {list(test_items.columns)}")
        index = test_items.index
        x = np.empty((len(test_items), 2), np.int32)
        for j, (arg, name) in enumerate((("user column", self.user_name), ("item column", self.item_name))):
            col = test_items[name]
            _check_ids(col, f"{arg} {name!r}", index)
            x[:, j] = encode_ids(self.classes[name], col.to_numpy(), f"{arg} {name!r}", unknown)
        has_y = self.rating_name in test_items.columns and with_labels is not False
        if with_labels and self.rating_name not in test_items.columns:
            raise KeyError(f"with_labels=True but test_items has no rating column {self.rating_name!r}")
        if has_y:
            y, _ = _ratings_array(test_items[self.rating_name], self.rating_name, index)
        else:
            y = np.zeros(len(test_items), np.float32)
        dl = DataLoader(x, y, bs=self.valid.bs if bs is None else bs, shuffle=False, drop_last=False,
                        df=test_items)
        dl.has_y = has_y
        return dl

    def show_batch(self, max_n=10):
        "Show `max_n` decoded rows of a shuffled training batch (HTML in a notebook, else printed)."
        df = self.one_batch_df(max_n)
        if in_notebook():
            from IPython.display import HTML, display
            display(HTML(df.to_html(index=False)))
        else:
            print(df.to_string(index=False))

    def __repr__(self):
        return (f"{type(self).__name__}(user={self.user_name!r} ({self.n_users}), "
                f"item={self.item_name!r} ({self.n_items}), rating={self.rating_name!r}; "
                f"train: {self.train.n} rows, {len(self.train)} batches; "
                f"valid: {self.valid.n} rows, {len(self.valid)} batches; bs={self.bs})")


# ----------------------------------------------------------------------------------------------
# from_df helpers

def _resolve_names(ratings, user_name, item_name, rating_name):
    cols = list(ratings.columns)
    names = {}
    for pos, (arg, val) in enumerate((('user_name', user_name), ('item_name', item_name),
                                      ('rating_name', rating_name))):
        if val is None:
            if len(cols) <= pos:
                raise ValueError(f"{arg} defaults to ratings.columns[{pos}], but ratings has only "
                                 f"{len(cols)} column(s): {cols}; pass {arg} explicitly")
            val = cols[pos]
        try:
            loc = ratings.columns.get_loc(val)
        except (KeyError, TypeError, pd.errors.InvalidIndexError):
            raise KeyError(f"{arg}={val!r} is not a column of ratings; columns are {cols}") from None
        if not isinstance(loc, (int, np.integer)):
            raise ValueError(f"{arg}={val!r} names several columns of ratings; column names must be unique")
        names[arg] = val
    u, i, r = names['user_name'], names['item_name'], names['rating_name']
    if u == i or u == r or i == r:
        raise ValueError(f"user_name, item_name and rating_name must be three different columns, "
                         f"got {u!r}, {i!r}, {r!r}")
    return u, i, r


def _ratings_array(col, name, index):
    dtype = col.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) \
            or pd.api.types.is_complex_dtype(dtype):
        raise TypeError(f"rating_name={name!r} must be a real numeric column, got dtype {dtype}; "
                        f"convert it first, e.g. with pd.to_numeric")
    with np.errstate(over='ignore', invalid='ignore'):
        y = col.to_numpy(dtype=np.float32, na_value=np.nan)
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"rating_name={name!r} has {int(bad.sum())} NaN, missing or infinite value(s) "
                         f"(or beyond float32 range); first at row label {_first_label(index, bad)!r}")
    np_dtype = getattr(dtype, 'numpy_dtype', dtype)
    return np.ascontiguousarray(y), (np_dtype if isinstance(np_dtype, np.dtype) else np.dtype(np.float32))


def _check_ids(col, name, index):
    na = col.isna().to_numpy()
    if na.any():
        raise ValueError(f"{name} has {int(na.sum())} missing value(s) (NaN/None); "
                         f"first at row label {_first_label(index, na)!r}")


def _split(n, valid_pct, seed, valid_idx, index):
    "Positions of the (train, valid) rows."
    if valid_idx is None:
        if isinstance(valid_pct, bool) or not isinstance(valid_pct, numbers.Real) or not 0 < valid_pct < 1:
            raise ValueError(f"valid_pct must be a number in the open interval (0, 1), got {valid_pct!r}")
        perm = get_rng(seed).permutation(n)
        cut = int(valid_pct * n)
        if cut == 0:
            raise ValueError(f"valid_pct={valid_pct!r} of {n} rows leaves the validation set empty "
                             f"(int(valid_pct*n) == 0); use more rows or a larger valid_pct")
        if cut >= n:
            raise ValueError(f"valid_pct={valid_pct!r} of {n} rows leaves the training set empty")
        return perm[cut:], perm[:cut]

    if isinstance(valid_idx, (str, bytes, dict, set, frozenset)) or np.isscalar(valid_idx):
        raise TypeError(f"valid_idx must be a sequence of row positions or a boolean mask, "
                        f"got {type(valid_idx).__name__}")
    if isinstance(valid_idx, pd.Series) and pd.api.types.is_bool_dtype(valid_idx.dtype) \
            and not valid_idx.index.equals(index):
        raise ValueError("valid_idx: a boolean Series must have the same index as ratings")
    if isinstance(valid_idx, (pd.Series, pd.Index)):
        if valid_idx.hasnans:
            raise ValueError("valid_idx contains missing values")
        arr = valid_idx.to_numpy(dtype=bool if pd.api.types.is_bool_dtype(valid_idx.dtype) else None)
    else:
        arr = np.asarray(valid_idx)
    if arr.ndim != 1:
        raise ValueError(f"valid_idx must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("valid_idx is empty: the validation set would be empty")
    if arr.dtype == np.bool_:
        if arr.shape[0] != n:
            raise ValueError(f"valid_idx: a boolean mask must have one entry per row ({n}), got {arr.shape[0]}")
        valid = np.flatnonzero(arr).astype(np.int64)
        if valid.size == 0:
            raise ValueError("valid_idx: the boolean mask selects no rows: the validation set would be empty")
    elif np.issubdtype(arr.dtype, np.integer):
        valid = arr.astype(np.int64)
        lo, hi = int(valid.min()), int(valid.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"valid_idx holds positions outside [0, {n}): min {lo}, max {hi} "
                             f"(valid_idx are row positions, not index labels)")
    else:
        raise TypeError(f"valid_idx must hold integer row positions or booleans, got dtype {arr.dtype}")
    in_train = np.ones(n, dtype=bool)
    in_train[valid] = False
    if n - int(np.count_nonzero(in_train)) != valid.size:
        vals, counts = np.unique(valid, return_counts=True)
        raise ValueError(f"valid_idx has duplicated positions, e.g. {int(vals[counts > 1][0])}")
    train = np.flatnonzero(in_train).astype(np.int64)
    if train.size == 0:
        raise ValueError("valid_idx covers every row: the training set would be empty")
    return train, valid


def _categorify(col, name, rule, train_pos, valid_pos):
    """Classes and int32 codes for one id column, vectorised (one hashing pass over the column).

    rule 'train': classes are the values present in the training rows; 'all': every value of the
    column (every category for a categorical). Values without a class encode to 0 ('#na#').
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        sorted_uniques = col.cat.categories                  # category order is the class order
        rank = np.arange(len(sorted_uniques))
    else:
        try:
            codes, uniques = pd.factorize(col)                # unsorted: no remap of the long codes
            rank, sorted_uniques = pd.factorize(uniques, sort=True)
        except TypeError as e:
            raise TypeError(f"{name}: its values cannot be hashed and sorted ({e})") from None
    n_uniq = len(sorted_uniques)
    if rule == 'train':
        if train_pos.size <= valid_pos.size:
            count = np.bincount(codes[train_pos], minlength=n_uniq)
        else:                                                 # gather the smaller split
            count = np.bincount(codes, minlength=n_uniq) - np.bincount(codes[valid_pos], minlength=n_uniq)
        present = np.zeros(n_uniq, dtype=bool)
        present[rank] = count > 0
        keep = np.flatnonzero(present)
    else:
        keep = np.arange(n_uniq)
    if keep.size + 1 > _MAX_CLASSES:
        raise ValueError(f"{name} has {keep.size + 1} classes (incl. '#na#'), more than the "
                         f"{_MAX_CLASSES} that int32 indices can address")
    items = sorted_uniques.take(keep).tolist()
    if any(isinstance(v, str) and v == _NA for v in items):
        raise ValueError(f"{name} contains the label {_NA!r}, which is reserved for index 0")
    new_index = np.zeros(n_uniq, dtype=np.int32)
    new_index[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    return CategoryMap._from_items(items, check=False), new_index[rank][codes]


# ----------------------------------------------------------------------------------------------
# CollabDataLoaders

class CollabDataLoaders(DataLoaders):
    "`DataLoaders` for collaborative filtering, built with `from_df` or `from_csv` (fastai's API)."

    @classmethod
    def from_df(cls, ratings, valid_pct=0.2, user_name=None, item_name=None, rating_name=None,
                seed=None, path='.', bs=64, val_bs=None, shuffle=True, valid_idx=None,
                classes_from='auto', implicit=False, weight_name=None, time_name=None, min_train=1):
        """Split `ratings`, encode its user and item columns and build the loaders.

        ratings: DataFrame; user_name/item_name/rating_name default to its first three columns
        (other columns are carried along in `train_ds`/`valid_ds`, unused).
        valid_pct, seed: the validation set is the first `int(valid_pct*n)` positions of
        `get_rng(seed).permutation(n)` (fastai's RandomSplitter, with NumPy's generator).
        valid_idx: instead of a random split, the validation rows as row positions (kept in the
        given order) or a boolean mask of length n; training rows keep their original order and
        `valid_pct`/`seed` are ignored.
        classes_from: 'auto' (fastai: numeric ids from the training rows, string/object and
        categorical ids from the whole frame), 'train' or 'all'. Classes are `'#na#'` then the sorted
        values (category order for a categorical column); ids without a class encode to 0.
        bs / val_bs (default bs): batch sizes; the training loader shuffles (if `shuffle`) and
        drops its last partial batch, the validation loader keeps its order and every row.

        implicit=True: `ratings` holds interactions (clicks, plays, purchases; no rating column):
        `collabc.implicit.implicit_from_df(ratings, user_name, item_name, weight_name, valid_pct,
        time_name, seed, min_train)` sums repeated pairs (weights from `weight_name`, else 1
        each) and holds out `valid_pct` of each user's pairs (at random, or the most recent by
        `time_name`); the loaders carry it as `dls.implicit` for `implicit_learner`.
        """
        if implicit:
            return _implicit_loaders(cls, ratings, valid_pct, user_name, item_name, rating_name, seed, path,
                                     bs, val_bs, shuffle, valid_idx, classes_from, weight_name, time_name,
                                     min_train)
        for arg, v, default in (('weight_name', weight_name, None), ('time_name', time_name, None),
                                ('min_train', min_train, 1)):
            if v is not default and v != default:
                raise ValueError(f"{arg} is for implicit feedback: pass implicit=True (got {arg}={v!r})")
        if not isinstance(ratings, pd.DataFrame):
            raise TypeError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
        if len(ratings) == 0:
            raise ValueError("ratings is empty (0 rows)")
        if not isinstance(classes_from, str) or classes_from not in _CLASSES_FROM:
            raise ValueError(f"classes_from must be one of {_CLASSES_FROM}, got {classes_from!r}")
        bs = _check_bs(bs, 'bs')
        val_bs = bs if val_bs is None else _check_bs(val_bs, 'val_bs')
        user_name, item_name, rating_name = _resolve_names(ratings, user_name, item_name, rating_name)
        n, index = len(ratings), ratings.index
        ucol, icol = ratings[user_name], ratings[item_name]
        _check_ids(ucol, f"user_name={user_name!r}", index)
        _check_ids(icol, f"item_name={item_name!r}", index)
        y, y_dtype = _ratings_array(ratings[rating_name], rating_name, index)
        train_pos, valid_pos = _split(n, valid_pct, seed, valid_idx, index)
        if n < 2**31:  # halves the memory the loaders keep to map rows back to the frame
            train_pos, valid_pos = train_pos.astype(np.int32), valid_pos.astype(np.int32)

        classes, codes = {}, {}
        for arg, name, col in (('user_name', user_name, ucol), ('item_name', item_name, icol)):
            rule = classes_from
            if rule == 'auto':
                numeric = pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(col.dtype, pd.CategoricalDtype)
                rule = 'train' if numeric else 'all'
            classes[name], codes[name] = _categorify(col, f"{arg}={name!r}", rule, train_pos, valid_pos)

        # one random gather per row for both ids: view each (user, item) int32 pair as one int64
        enc = np.empty((n, 2), dtype=np.int32)
        enc[:, 0], enc[:, 1] = codes.pop(user_name), codes.pop(item_name)
        enc = enc.view(np.int64).reshape(n)
        src = ratings.copy(deep=False)
        loaders = []
        for pos, b, shuf in ((train_pos, bs, shuffle), (valid_pos, val_bs, False)):
            x = enc[pos].view(np.int32).reshape(pos.size, 2)
            dl = DataLoader(x, y[pos], bs=b, shuffle=shuf, drop_last=shuf)
            dl._src, dl._rows = src, pos
            loaders.append(dl)
        dls = cls(loaders[0], loaders[1], classes, user_name, item_name, rating_name, path=path)
        dls._y_dtype = y_dtype
        return dls

    @classmethod
    def from_csv(cls, csv, **kwargs):
        "`from_df(pd.read_csv(csv), **kwargs)`: a comma-separated file with a header row."
        return cls.from_df(pd.read_csv(csv), **kwargs)


_IMPLICIT_SPLIT = None


def register_implicit_split(split):
    """Called by `collabc.implicit` (which builds on this module, so this module does not import
    it) with its `implicit_from_df`, the split `from_df(..., implicit=True)` uses."""
    global _IMPLICIT_SPLIT
    _IMPLICIT_SPLIT = split


def _implicit_loaders(cls, df, valid_pct, user_name, item_name, rating_name, seed, path, bs, val_bs,
                      shuffle, valid_idx, classes_from, weight_name, time_name, min_train):
    "`from_df(..., implicit=True)`: the loaders of `collabc.implicit.implicit_from_df`'s split."
    if _IMPLICIT_SPLIT is None:
        raise RuntimeError("implicit=True needs collabc.implicit: import collabc (or collabc.implicit) first")
    if rating_name is not None:
        raise ValueError(f"implicit=True has no rating column: pass the interaction counts or weights as "
                         f"weight_name={rating_name!r} (or neither: every row counts 1)")
    if valid_idx is not None:
        raise ValueError("implicit=True splits per user (valid_pct, time_name), not by valid_idx")
    if classes_from != 'auto':
        raise ValueError("implicit=True takes its classes from the training pairs; leave classes_from='auto'")
    bs = _check_bs(bs, 'bs')
    val_bs = bs if val_bs is None else _check_bs(val_bs, 'val_bs')
    data = _IMPLICIT_SPLIT(df, user_name, item_name, weight_name, valid_pct, time_name, seed, min_train)
    return data.dataloaders(bs, val_bs, shuffle, path, cls=cls)
