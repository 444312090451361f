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
  and the ZIP rebuilt with valid CRCs, so the mutation reaches the JSON and .npy parsers.

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

# keep huge allocations from a hostile input a MemoryError, not an out-of-memory kill
_LIMIT = 8 * 2**30
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


TARGETS = {"data": target_data, "zip": target_zip, "model": target_model}
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
