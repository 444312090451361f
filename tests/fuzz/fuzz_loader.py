"""Coverage-guided fuzzing (atheris / libFuzzer) of collabc's loaders, one target per run:

    python tests/fuzz/fuzz_loader.py --target=data  -runs=20000 -max_total_time=60
    python tests/fuzz/fuzz_loader.py --target=zip   -runs=20000 -max_total_time=30
    python tests/fuzz/fuzz_loader.py --target=model -runs=20000 -max_total_time=60

* data:  `CollabDataLoaders.from_df` on small random frames (ints, floats with NaN/inf, strings,
  None, booleans, categoricals; random column names, valid_pct, bs, seed, valid_idx), then, when
  the frame is accepted, checks the loaders' invariants and trains and predicts one epoch of
  a tiny model on them (so the C drivers see whatever the loader produces);
* zip:   `untar_data` of an archive in the cache (random bytes, or a ZIP built from fuzzed
  member names and contents, with zip-slip names among them), with matching checksums so
  nothing is ever downloaded (download_data is replaced by a function that fails the run);
  whatever is unpacked must stay inside the destination;
* model: `load_learner` of a mutated exported learner: raw byte mutations of a valid file
  (the seed), or one member replaced by fuzzed bytes / a fuzzed .npy header / edited JSON
  and the ZIP rebuilt with valid CRCs, so the mutation reaches the JSON and .npy parsers;
* core:  every training and inference entry point of `collabc._core` called with good arguments
  (tests/test_hardening.py's) of which a few are mutated: arrays turned into lists, tuples,
  memoryviews, bytes, ndarray subclasses, scalars or None, given another dtype, shape, byte
  order or memory layout, made read-only or non-contiguous, filled with extreme ids and values;
  numbers set to boundary values; the sequence of tables replaced by sequences that make their
  items on the fly, lie about their length, mutate themselves or their source list while they
  are read, raise, or hold non-arrays. Only TypeError, ValueError, IndexError, OverflowError or
  MemoryError may come back (under ASan/valgrind: and no memory error);
* learn: a small learner built from fuzzed ratings (labels of every kind from_df accepts:
  huge and unsigned integers, strings with NULs, floats, booleans), model (dot, neural,
  sparse), bs, optimizer and y_range, trained one epoch, then get_preds, predict, recommend /
  recommend_many / most_similar with fuzzed n and query containers (lists, arrays,
  memoryviews, generators), fold-in with fuzzed ratings, save/load and export/load_learner,
  which must give back the same classes (values and types) and parameters.

Every input must either succeed (then the result is checked) or raise a clean exception
(CLEAN below). Any other exception is reported by libFuzzer as a crash and fails the run,
except the exceptions of known, reported bugs (KNOWN_BUGS), which are counted and printed.
A statistics line goes to stderr every 1,024 inputs and at the end (-runs reached)."""
import atexit
import io
import json
import os
import resource
import sys
import tempfile
import zipfile
from pathlib import Path

import atheris

# keep huge allocations from a hostile input a MemoryError, not an out-of-memory kill (under
# AddressSanitizer, which reserves terabytes of address space for its shadow memory, that is
# ASAN_OPTIONS=allocator_may_return_null=1 and libFuzzer's -malloc_limit_mb instead)
_LIMIT = 8 * 2**30
if "libasan" not in os.environ.get("LD_PRELOAD", ""):
    resource.setrlimit(resource.RLIMIT_AS, (_LIMIT, _LIMIT))
os.environ.pop("COLLABC_DATA", None)  # never satisfy untar_data from a real data folder

with atheris.instrument_imports():
    import numpy as np  # noqa: F401  (instrumented imports: collabc only, numpy is not ours)
import numpy as np  # noqa: E402,F811
import pandas as pd  # noqa: E402

with atheris.instrument_imports(include=["collabc"]):
    import collabc  # noqa: E402
    from collabc import external  # noqa: E402
    from collabc import persist  # noqa: E402

STATS = {"inputs": 0, "accepted": 0, "clean_errors": 0, "known_bugs": 0}
KNOWN = {}


def _report():
    known = ", ".join(f"{k}: {v}" for k, v in sorted(KNOWN.items())) or "none"
    print(f"[fuzz {TARGET}] inputs {STATS['inputs']}, accepted {STATS['accepted']}, clean errors "
          f"{STATS['clean_errors']}, known-bug exceptions {STATS['known_bugs']} ({known})",
          file=sys.stderr, flush=True)


def _count(kind):
    STATS[kind] += 1
    STATS["inputs"] += 1
    if STATS["inputs"] % 1024 == 0:
        _report()


def _is_known(e, known):
    "e matches one of the (exception type, message substring) pairs of an already reported bug"
    return any(isinstance(e, t) and sub in str(e) for t, sub in known)


def _known(e):
    key = f"{type(e).__name__}"
    KNOWN[key] = KNOWN.get(key, 0) + 1
    _count("known_bugs")


# ---------------------------------------------------------------- data loader

def _column(fdp, n):
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        return pd.Series([fdp.ConsumeIntInRange(-3, 12) for _ in range(n)])
    if kind == 1:
        return pd.Series([fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else
                          float(fdp.PickValueInList([np.nan, np.inf, -np.inf, 0.0, 1.5]))
                          for _ in range(n)])
    if kind == 2:
        return pd.Series([fdp.PickValueInList(["a", "b", "#na#", "", "é", "a b"]) for _ in range(n)], dtype=object)
    if kind == 3:
        return pd.Series([fdp.PickValueInList([1, "1", None, 2.5, True, (1,)]) for _ in range(n)], dtype=object)
    if kind == 4:
        return pd.Series([fdp.ConsumeBool() for _ in range(n)])
    if kind == 5:
        return pd.Categorical([fdp.PickValueInList(["x", "y", "z"]) for _ in range(n)])
    if kind == 6:
        return pd.Series([fdp.ConsumeInt(8) for _ in range(n)])
    return pd.Series([fdp.ConsumeIntInRange(1, 5) for _ in range(n)], dtype="Int64")


def target_data(data):
    fdp = atheris.FuzzedDataProvider(data)
    n = fdp.ConsumeIntInRange(0, 40)
    names = [fdp.PickValueInList(["user", "item", "rating", "x", 0, 1]) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    cols = {}
    for name in names:
        cols[name] = _column(fdp, n)
    try:
        df = pd.DataFrame(cols)
    except (ValueError, TypeError):
        return
    kw = {}
    if fdp.ConsumeBool():
        kw["valid_pct"] = fdp.PickValueInList([0.2, 0.0, 1.0, 0.5, -0.1, float("nan"), 0.99, "0.2", True])
    if fdp.ConsumeBool():
        kw["bs"] = fdp.PickValueInList([1, 2, 64, 0, -1, 2**40, 1.5, None])
    if fdp.ConsumeBool():
        kw["seed"] = fdp.PickValueInList([0, 1, None, -1, 2**70])
    if fdp.ConsumeBool():
        kw["valid_idx"] = fdp.PickValueInList([[0], [0, 0], [-1], [n], list(range(n)), [True] * n, [], "0",
                                               np.array([0.5]), [n - 1] if n else [0]])
    for key in ("user_name", "item_name", "rating_name"):
        if fdp.ConsumeBool():
            kw[key] = fdp.PickValueInList(["user", "item", "rating", "x", 0, 1, None, "missing"])
    try:
        dls = collabc.CollabDataLoaders.from_df(df, **kw)
    except (TypeError, ValueError, KeyError):
        _count("clean_errors")
        return
    _check_loaders(dls, len(df))
    _count("accepted")


def _check_loaders(dls, n):
    tr, va = dls.train, dls.valid
    assert tr.n + va.n == n, (tr.n, va.n, n)
    for dl in (tr, va):
        assert dl.x.dtype == np.int32 and dl.x.flags.c_contiguous and dl.x.shape == (dl.n, 2)
        assert dl.y.dtype == np.float32 and np.all(np.isfinite(dl.y))
        if dl.n:
            assert dl.x[:, 0].min() >= 0 and dl.x[:, 0].max() < dls.n_users
            assert dl.x[:, 1].min() >= 0 and dl.x[:, 1].max() < dls.n_items
    for cmap in dls.classes.values():
        assert cmap[0] == "#na#" and len(cmap.o2i) == len(cmap)
    if len(tr) >= 1 and n <= 40:
        learn = collabc.collab_learner(dls, n_factors=2, y_range=(0, 5.5))
        learn.show_table, learn.logger = False, (lambda *a, **k: None)
        try:
            learn.fit(1, 1e-2)
        except collabc.TrainingDivergedError:
            pass
        assert np.all(np.isfinite(learn.model.params))
        if va.n:
            p = learn.model._predict(va.x)
            assert p.shape == (va.n,) and np.all((p >= 0) & (p <= 5.5))


# ---------------------------------------------------------------- zip unpacking

_WORK = Path(tempfile.mkdtemp(prefix="collabc-fuzz-zip-"))


def _no_network(*a, **k):
    raise AssertionError("the fuzz run tried to download (checksums should always match)")


external.download_data = _no_network

# exceptions of bugs already reported in collabc/external.py _extract, as (type, message
# substring) pairs; remove an entry when the bug is fixed (none open)
KNOWN_ZIP_BUGS = []

_NAMES = ["fz/u.data", "fz/", "u.item", "../evil", "/abs", "fz/../../evil", "C:\\evil", "fz\\..\\..\\x",
          "", "fz/a\x00b", "fz/" + "d" * 300, "./fz/ok", "fz//double", "..", "fz/sub/deep/file"]


def _fuzz_zip(fdp):
    buf = io.BytesIO()
    try:
        with zipfile.ZipFile(buf, "w", fdp.PickValueInList([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as z:
            for _ in range(fdp.ConsumeIntInRange(0, 4)):
                name = fdp.PickValueInList(_NAMES) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(20)
                info = zipfile.ZipInfo(name or "x")
                info.external_attr = fdp.ConsumeIntInRange(0, 2**32 - 1)
                z.writestr(info, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
    except (ValueError, UnicodeEncodeError, OSError):
        return fdp.ConsumeBytes(64)
    b = bytearray(buf.getvalue())
    for _ in range(fdp.ConsumeIntInRange(0, 2)):  # a few raw corruptions on top
        if b:
            b[fdp.ConsumeIntInRange(0, len(b) - 1)] = fdp.ConsumeIntInRange(0, 255)
    return bytes(b)


def target_zip(data):
    import hashlib
    import shutil
    fdp = atheris.FuzzedDataProvider(data)
    body = _fuzz_zip(fdp) if fdp.ConsumeBool() else fdp.ConsumeBytes(fdp.remaining_bytes())
    root = Path(tempfile.mkdtemp(dir=_WORK))
    try:
        (root / "archive").mkdir()
        (root / "archive" / "fz.zip").write_bytes(body)
        try:
            out = external.untar_data("https://example.invalid/fz.zip", sha256=hashlib.sha256(body).hexdigest(),
                                      size=len(body), archive=root / "archive", data=root / "data",
                                      progress=False)
        except (ValueError, OSError):  # UnsafeArchiveError and "not a valid zip" are ValueErrors
            _count("clean_errors")
        except Exception as e:
            if not _is_known(e, KNOWN_ZIP_BUGS):
                raise
            _known(e)
        else:
            assert Path(out).resolve() == (root / "data" / "fz").resolve(), out
            _count("accepted")
        # nothing may escape the destination: root holds only archive/ and data/
        assert sorted(p.name for p in root.iterdir()) in (["archive"], ["archive", "data"]), list(root.iterdir())
        assert sorted(p.name for p in (root / "archive").iterdir()) == ["fz.zip"]
        if (root / "data").exists():
            kids = [p.name for p in (root / "data").iterdir() if not p.name.startswith(".fz.")]
            assert kids in ([], ["fz"]), kids
        assert not (_WORK / "evil").exists() and not Path("/abs").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- model files

def _seed_learner():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"u": rng.integers(1, 30, 300), "i": rng.integers(1, 20, 300), "r": rng.integers(1, 6, 300)})
    collabc.set_seed(0)
    dls = collabc.CollabDataLoaders.from_df(df, bs=32)
    learn = collabc.collab_learner(dls, n_factors=3, y_range=(0, 5.5))
    learn.show_table, learn.logger = False, (lambda *a, **k: None)
    learn.fit(1, 1e-2)
    d = Path(tempfile.mkdtemp(prefix="collabc-fuzz-model-"))
    return learn.export(d / "seed.npz").read_bytes(), d


_MODEL_FILE = None


def _mutate_member(fdp, seed):
    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = fdp.PickValueInList(sorted(members))
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:  # replace the member's bytes
        members[name] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256))
    elif mode == 1 and name.endswith(".npy"):  # a fuzzed .npy header over the real data
        shape = tuple(fdp.ConsumeIntInRange(0, 2**34) for _ in range(fdp.ConsumeIntInRange(0, 3)))
        descr = fdp.PickValueInList(["<f4", "<f8", "<i8", "<i4", "|O", "<U3", "|b1", ">f4", "<c8", "|V8"])
        buf = io.BytesIO()
        try:
            np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fdp.ConsumeBool(),
                                                       "shape": shape})
        except ValueError:
            return None
        members[name] = buf.getvalue() + members[name][128:]
    elif mode == 2:  # edit one value of the JSON metadata
        h = json.loads(members["collabc.json"])
        path = []
        node = h
        while isinstance(node, dict) and node and fdp.ConsumeBool():
            k = fdp.PickValueInList(sorted(node, key=str))
            path.append(k)
            node = node[k]
        value = fdp.PickValueInList([None, -1, 0, 1, 2**31, 2**63, 1e308, "x", [], {}, [1, 2], True, 0.5,
                                     "EmbeddingNN", "../x"])
        if path:
            parent = h
            for k in path[:-1]:
                parent = parent[k]
            parent[path[-1]] = value
        members["collabc.json"] = json.dumps(h).encode()
    else:  # flip bytes inside one member
        b = bytearray(members[name])
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            if b:
                b[fdp.ConsumeIntInRange(0, len(b) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
        members[name] = bytes(b)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return buf.getvalue()


# exceptions of bugs already reported (collabc/persist.py read_archive / load_learner), as
# (type, message substring) pairs: remove an entry when the bug is fixed (tests/test_hardening.py
# has an xfail test for each; none open)
KNOWN_BUGS = []


def target_model(data):
    seed, d = _MODEL_FILE
    fdp = atheris.FuzzedDataProvider(data)
    body = _mutate_member(fdp, seed) if fdp.ConsumeBool() else data
    if body is None:
        return
    p = d / "input.npz"
    p.write_bytes(body)
    try:
        learn = collabc.load_learner(p)
    except ValueError:  # CollabcFileError, or a ValueError naming a bad setting
        _count("clean_errors")
        return
    except Exception as e:
        if isinstance(e, TypeError) and " must be " in str(e):  # the Learner's checks of lr, wd, ...
            _count("clean_errors")
            return
        if not _is_known(e, KNOWN_BUGS):
            raise
        _known(e)
        return
    m = learn.model
    assert np.all(np.isfinite(m.params))
    x = np.stack([np.arange(m.n_users) % m.n_users, np.arange(m.n_users) % max(m.n_items, 1)], 1).astype(np.int32)
    assert np.all(np.isfinite(m._predict(x[:50])))
    _count("accepted")


# ---------------------------------------------------------------- the C entry points

_TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_TESTS))
import test_hardening as _th  # noqa: E402  (good arguments of every entry point)

_CORE_FNS = ["dot_fit_epoch", "nn_fit_epoch", "dot_fit_blocks", "dot_predict", "nn_predict",
             "rank_dot_topk", "rank_pack", "embedding_concat_forward", "embedding_concat_backward",
             "block_sort", "embedding_forward", "embedding_backward", "dotbias_forward",
             "dotbias_backward"]
_CORE_CLEAN = (TypeError, ValueError, IndexError, OverflowError, MemoryError)
_EXTREME_IDS = [-1, -2**31, 2**31 - 1, 2**30, 7, 0]
_EXTREME_FLOATS = [np.nan, np.inf, -np.inf, -0.0, 3.4e38, 1e-45, 0.0]
_BOUNDARY = [0, -1, 1, 2, 2**31, 2**31 - 1, 2**63 - 1, -2**63, 2**64, 10**30, 0.5, float("nan"),
             float("inf"), "3", None, True, b"x", (1, 2), [1]]


class _Sub(np.ndarray):
    "An ndarray subclass with its own attribute, to reach PyArray_Check's subclass path."
    def __array_finalize__(self, obj):
        self.tag = getattr(obj, "tag", 1)


class _Tables:
    """A sequence of tables (not a list or tuple) that makes its items on the fly and may lie
    about its length, raise, return non-arrays, or empty the list it draws from while read."""
    def __init__(self, items, mode):
        self.items, self.mode = list(items), mode

    def __len__(self):
        if self.mode == 2:
            return len(self.items) + 3   # a length it cannot serve
        return len(self.items)

    def __getitem__(self, i):
        if i >= len(self.items):
            raise IndexError(i)
        item = self.items[i]
        if self.mode == 1:
            return item.copy()           # a new array, referenced by nothing else
        if self.mode == 3:
            self.items.clear()           # mutates the source while it is being read
            return item
        if self.mode == 4 and i == 1:
            raise RuntimeError("a table that cannot be read")
        if self.mode == 5:
            return item.tolist()         # not an array
        return item


def _mutate_array(fdp, a):
    kind = fdp.ConsumeIntInRange(0, 15)
    if kind == 0:
        return a.tolist()
    if kind == 1:
        return tuple(a.reshape(-1).tolist())
    if kind == 2:
        return memoryview(np.ascontiguousarray(a))
    if kind == 3:
        return a.tobytes()
    if kind == 4:
        return a.view(_Sub)
    if kind == 5:
        return fdp.PickValueInList(_BOUNDARY)
    if kind == 6:
        return a.astype(fdp.PickValueInList([np.float64, np.float32, np.int64, np.int32, np.int16, np.bool_,
                                             np.uint32, object, np.complex64]))
    if kind == 7 and a.size:
        return np.repeat(a, 2, axis=0)[::2]          # non-contiguous, same values
    if kind == 8 and a.ndim == 2:
        return np.asfortranarray(a) if a.shape[0] > 1 and a.shape[1] > 1 else a.T
    if kind == 9:
        return a.byteswap().view(a.dtype.newbyteorder())
    if kind == 10:
        b = a.copy()
        b.flags.writeable = False
        return b
    if kind == 11:
        return a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1)
    if kind == 12:
        return a[: fdp.ConsumeIntInRange(0, max(0, len(a)))] if a.ndim else a
    if kind == 13 and a.size:                         # extreme values in place
        b = a.copy()
        flat = b.reshape(-1)
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            k = fdp.ConsumeIntInRange(0, flat.size - 1)
            if b.dtype.kind in "iu":
                v = fdp.PickValueInList(_EXTREME_IDS)
                flat[k] = v if np.can_cast(np.min_scalar_type(v), b.dtype, "same_kind") else 0
            elif b.dtype.kind == "f":
                flat[k] = fdp.PickValueInList(_EXTREME_FLOATS)
        return b
    if kind == 14:
        b = np.zeros((a.shape[0] + 1,) + a.shape[1:], a.dtype) if a.ndim else a
        return b
    return np.ascontiguousarray(a)[::-1] if a.ndim else a


def _mutate_tables(fdp, tables):
    mode = fdp.ConsumeIntInRange(0, 7)
    if mode <= 5:
        return _Tables(tables, mode)
    if mode == 6:   # a 3-D array is a sequence of 2-D views (when the tables share a shape)
        return np.stack([t[: min(x.shape[0] for x in tables), : min(x.shape[1] for x in tables)]
                         for t in tables])
    return (t for t in tables)   # a generator: not a sequence


def target_core(data):
    fdp = atheris.FuzzedDataProvider(data)
    fn = fdp.PickValueInList(_CORE_FNS)
    kw = _th.good_args(fn)
    names = sorted(kw)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        name = fdp.PickValueInList(names)
        v = kw[name]
        if name in ("tables", "dtables") and isinstance(v, list):
            kw[name] = _mutate_tables(fdp, v)
        elif isinstance(v, np.ndarray):
            kw[name] = _mutate_array(fdp, v)
        else:
            kw[name] = fdp.PickValueInList(_BOUNDARY + [v])
    try:
        getattr(collabc._core, fn)(**kw)
    except _CORE_CLEAN:
        _count("clean_errors")
        return
    except RuntimeError as e:
        if "cannot be read" not in str(e):   # only _Tables' own exception may pass through
            raise
        _count("clean_errors")
        return
    _count("accepted")


# ---------------------------------------------------------------- a learner end to end

def _labels(fdp, n):
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind == 0:
        return [fdp.ConsumeIntInRange(0, 9) + 2**63 for _ in range(n)], np.uint64
    if kind == 1:
        return [fdp.PickValueInList(["u1", "u1\x00", "\x00", "é\x00\x00", "a", "", "#na#x"]) for _ in range(n)], None
    if kind == 2:
        return [fdp.PickValueInList([2**70, -2**70, 3, 2**64, -1]) for _ in range(n)], None
    if kind == 3:
        return [fdp.PickValueInList([0.5, -1e300, float("inf"), 2.0, 1e-300]) for _ in range(n)], None
    if kind == 4:
        return [fdp.ConsumeBool() for _ in range(n)], None
    if kind == 5:
        return [fdp.PickValueInList([1, 2.5, 3]) for _ in range(n)], None   # mixed: export refuses
    return [fdp.ConsumeIntInRange(-3, 12) for _ in range(n)], np.int64


def _same_labels(a, b):
    return len(a) == len(b) and all(type(x) is type(y) and repr(x) == repr(y) for x, y in zip(a, b))


_LEARN_DIR = Path(tempfile.mkdtemp(prefix="collabc-fuzz-learn-"))
_LEARN_CLEAN = (TypeError, ValueError, KeyError, IndexError)


def target_learn(data):
    fdp = atheris.FuzzedDataProvider(data)
    n = fdp.ConsumeIntInRange(2, 60)
    users, udt = _labels(fdp, n)
    items, idt = _labels(fdp, n)
    df = pd.DataFrame({"user": pd.Series(users, dtype=udt if udt else object),
                       "item": pd.Series(items, dtype=idt if idt else object),
                       "rating": [float(fdp.ConsumeIntInRange(1, 5)) for _ in range(n)]})
    kind = fdp.PickValueInList(["dot", "nn", "sparse"])
    kw = {"n_factors": fdp.ConsumeIntInRange(1, 4), "y_range": fdp.PickValueInList([(0, 5.5), None])}
    if kind == "nn":
        kw = {"use_nn": True, "layers": [fdp.ConsumeIntInRange(1, 6)], "y_range": kw["y_range"]}
    elif kind == "sparse":
        kw.update(train_mode="sparse", n_threads=fdp.ConsumeIntInRange(1, 3),
                  opt_func=fdp.PickValueInList([collabc.Adam, collabc.SGD, collabc.Adagrad]))
    try:
        collabc.set_seed(fdp.ConsumeIntInRange(0, 3))
        dls = collabc.CollabDataLoaders.from_df(df, bs=fdp.PickValueInList([1, 2, 4, 64]),
                                                valid_pct=0.25, path=_LEARN_DIR)
        learn = collabc.collab_learner(dls, **kw)
    except _LEARN_CLEAN:
        _count("clean_errors")
        return
    learn.logger = lambda *a, **k: None
    try:
        with learn.no_bar():
            learn.fit(1, fdp.PickValueInList([1e-3, 1e-2, 1.0]))
    except collabc.TrainingDivergedError:
        pass
    except ValueError as e:   # a BatchNorm batch of one row, or a training set smaller than bs
        assert "row" in str(e) or "bs" in str(e), e
        _count("clean_errors")
        return
    preds, _ = learn.get_preds()
    assert len(preds) == dls.valid.n, (preds.shape, dls.valid.n)
    u_cls = dls.classes["user"]
    q = u_cls[fdp.ConsumeIntInRange(1, len(u_cls) - 1)]
    n_rec = fdp.PickValueInList([1, 3, 10**9, 2**63, 0, -1, 1.5, "2", None])
    container = fdp.ConsumeIntInRange(0, 3)
    queries = [q, q] if container == 0 else np.array([q], dtype=object) if container == 1 else (x for x in [q])
    for call in (lambda: learn.recommend(q, n=n_rec), lambda: learn.recommend_many(list(queries), n=n_rec),
                 lambda: learn.most_similar(dls.classes["item"][1], n=n_rec) if kind != "nn" else None,
                 lambda: learn.predict({"user": q, "item": dls.classes["item"][-1]}),
                 lambda: learn.fold_in_user({dls.classes["item"][1]: fdp.PickValueInList([5, 0, -1e9, float("nan"), "x"])})
                 if kind != "nn" else None):
        try:
            out = call()
        except _LEARN_CLEAN:
            continue
        if isinstance(out, pd.DataFrame):   # at most every item for each of at most 2 queries
            assert len(out) <= 2 * len(dls.classes["item"]), len(out)
    if not np.all(np.isfinite(learn.model.params)):
        try:
            learn.save("fz")
        except ValueError as e:
            assert "NaN or inf" in str(e), e
            _count("clean_errors")
            return
        raise AssertionError("a model with NaN or inf parameters was saved")
    learn.save("fz")
    learn.load("fz")
    try:
        path = learn.export(_LEARN_DIR / "fz.npz")
    except (TypeError, ValueError) as e:   # mixed labels; a model whose predictions are not finite
        assert "labels of types" in str(e) or "not a finite number" in str(e), e
        _count("clean_errors")
        return
    new = collabc.load_learner(path)
    for col in ("user", "item"):
        assert _same_labels(new.dls.classes[col], dls.classes[col]), col
    assert np.array_equal(new.model.params, learn.model.params)
    _count("accepted")


TARGETS = {"data": target_data, "zip": target_zip, "model": target_model, "core": target_core,
           "learn": target_learn}
TARGET = "data"


def main():
    global TARGET, _MODEL_FILE
    argv = [a for a in sys.argv if not a.startswith("--target=")]
    for a in sys.argv:
        if a.startswith("--target="):
            TARGET = a.split("=", 1)[1]
    if TARGET not in TARGETS:
        sys.exit(f"unknown target {TARGET!r}; one of {sorted(TARGETS)}")
    if TARGET == "model":
        _MODEL_FILE = _seed_learner()
        corpus = _MODEL_FILE[1] / "corpus"
        corpus.mkdir()
        (corpus / "seed").write_bytes(_MODEL_FILE[0])
        if not any(not a.startswith("-") for a in argv[1:]):  # no input or corpus given
            argv.append(str(corpus))  # libFuzzer starts from the valid file
    atexit.register(_report)
    atheris.Setup(argv, TARGETS[TARGET])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
