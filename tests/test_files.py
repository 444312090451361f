"""Issue 14: the file guarantees of `learn.save` / `learn.export` (collabc.persist,
collabc.checkpoint), each from a reproducer that lost or corrupted a file before the fix.

* atomic: writers of one path at once (threads and processes) each write a private temporary
  (created exclusively, fsync'ed, renamed over the target, the folder fsync'ed): the target is
  always a complete file and no call fails;
* never follows links: a link planted at a temporary's name is never written through; a link
  at the target is replaced by the file, its target untouched;
* refuses what loading would refuse, before touching the file: NaN/inf parameters, optimizer
  buffers or hyperparameters (a diverged fit keeps the good checkpoint); labels it could not
  give back exactly (mixed types), naming the column;
* round-trips what `from_df` accepts, exactly and with types: strings with NULs, uint64 ids
  at or above 2**63, integers of any size, booleans, floats;
* inconsistent files are refused at load: classes longer or shorter than the model's tables,
  duplicate ZIP members, unsorted seen lists;
* crash-safe: a writer killed with SIGKILL leaves the target intact, and its stale temporary
  (ours by name, its pid gone) is removed by the next write in that folder - nothing else is."""
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

from collabc import CollabcFileError, CollabDataLoaders, collab_learner, load_learner, set_seed
from collabc import SGD
from collabc import persist
from collabc.persist import read_archive, remove_stale_temporaries, write_archive


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


def frame(users=None, items=None, n=600, seed=0):
    "Ratings of the given user/item labels (default 20 users x 15 items), every label rated."
    rng = np.random.default_rng(seed)
    users = list(range(1, 21)) if users is None else list(users)
    items = list(range(1, 16)) if items is None else list(items)
    u = np.concatenate([np.arange(len(users)), rng.integers(0, len(users), n)])[:max(n, len(users))]
    i = np.concatenate([np.arange(len(items)), rng.integers(0, len(items), n)])[:max(n, len(items))]
    m = min(len(u), len(i))
    return pd.DataFrame({"user": pd.Series([users[k] for k in u[:m]], dtype=object),
                         "item": pd.Series([items[k] for k in i[:m]], dtype=object),
                         "rating": rng.integers(1, 6, m).astype(np.float32)})


def learner(tmp_path, df=None, fit=True, **kw):
    set_seed(0)
    dls = CollabDataLoaders.from_df(frame() if df is None else df, bs=32, seed=0, path=tmp_path,
                                    valid_idx=np.arange(5) if df is not None else None)
    learn = quiet(collab_learner(dls, n_factors=4, y_range=(0, 5.5), **kw))
    if fit:
        with learn.no_bar():
            learn.fit(1, 1e-2)
    return learn


def temporaries(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.endswith(".collabc-tmp"))


# ---------------------------------------------------------------- 4. atomic, concurrent writers

def test_exports_to_one_path_from_threads_never_fail_or_corrupt(tmp_path):
    learns = [learner(tmp_path) for _ in range(4)]   # a Learner serves one thread at a time
    for lr in learns[1::2]:
        lr.model.params[:] *= 2   # two different, recognisable files
    target = tmp_path / "shared.npz"
    errors, seen = [], []

    def write(learn, k):
        try:
            for _ in range(6):
                learn.export(target)
        except Exception as e:   # noqa: BLE001  (any failure is the bug)
            errors.append(repr(e))

    def read():
        for _ in range(30):
            if target.exists():
                try:
                    seen.append(load_learner(target).model.params[0])
                except Exception as e:   # noqa: BLE001
                    errors.append(repr(e))

    threads = [threading.Thread(target=write, args=(learns[k], k)) for k in range(4)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = load_learner(target).model.params
    assert any(np.array_equal(final, lr.model.params) for lr in learns)
    assert set(np.float32(v) for v in seen) <= {learns[0].model.params[0], learns[1].model.params[0]}
    assert temporaries(tmp_path) == []


def test_exports_to_one_path_from_processes_never_fail_or_corrupt(tmp_path):
    learn = learner(tmp_path)
    src = learn.export(tmp_path / "src.npz")
    target = tmp_path / "shared.npz"
    code = f"""
        from collabc import load_learner
        learn = load_learner({str(src)!r})
        for _ in range(8):
            learn.export({str(target)!r})
        print("ok")
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(4)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 and out.strip() == "ok" for out, err, rc in results), results
    np.testing.assert_array_equal(load_learner(target).model.params, learn.model.params)
    assert temporaries(tmp_path) == []


def test_the_temporary_is_fsynced_renamed_over_the_target_and_the_folder_fsynced(tmp_path, monkeypatch):
    learn = learner(tmp_path)
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        return real_fsync(fd)

    def replace(a, b):
        assert pathlib.Path(a).parent == pathlib.Path(b).parent, "the temporary must be in the target's folder"
        assert pathlib.Path(a).name.endswith(".collabc-tmp")
        events.append("rename")
        return real_replace(a, b)

    monkeypatch.setattr(persist.os, "fsync", fsync)
    monkeypatch.setattr(persist.os, "replace", replace)
    learn.save("ckpt")
    assert events == ["fsync file", "rename", "fsync folder"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    learn = learner(tmp_path)
    path = learn.export()
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        learn.export()
    assert path.read_bytes() == before and temporaries(tmp_path) == []


# ---------------------------------------------------------------- 5. links

def test_a_link_at_the_old_temporary_name_is_never_followed(tmp_path):
    learn = learner(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "export.npz.tmp").symlink_to(victim)
    learn.export()
    assert victim.read_text() == "precious"
    load_learner(tmp_path / "export.npz")


def test_a_link_planted_at_the_temporary_name_is_refused_not_followed(tmp_path, monkeypatch):
    "Temporaries are created exclusively (O_EXCL | O_NOFOLLOW): even a predicted name is safe."
    learn = learner(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    monkeypatch.setattr(persist.secrets, "token_hex", lambda n: "ab" * n)
    name = f".export.npz.{persist._host_tag()}-{os.getpid()}-{'ab' * 8}.collabc-tmp"
    (tmp_path / name).symlink_to(victim)
    with pytest.raises(FileExistsError):
        learn.export()
    assert victim.read_text() == "precious"
    assert (tmp_path / name).is_symlink()   # ours by name, but a live writer's (this process): kept


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_at_the_target_is_replaced_by_the_file_never_written_through(tmp_path, dangling):
    learn = learner(tmp_path)
    victim = tmp_path / "victim.npz"
    if not dangling:
        victim.write_text("precious")
    link = tmp_path / "export.npz"
    link.symlink_to(victim)
    learn.export()
    assert not link.is_symlink() and link.is_file()
    assert victim.read_text() == "precious" if not dangling else not victim.exists()
    np.testing.assert_array_equal(load_learner(link).model.params, learn.model.params)


def test_a_folder_at_the_target_is_refused(tmp_path):
    learn = learner(tmp_path)
    (tmp_path / "export.npz").mkdir()
    with pytest.raises(IsADirectoryError):
        learn.export()


# ---------------------------------------------------------------- 6. non-finite values

def diverged(tmp_path):
    "A fit that diverges (SGD, lr=1e4, no y_range): finite parameters of ~1e26, NaN predictions."
    set_seed(0)
    dls = CollabDataLoaders.from_df(frame(n=3000), bs=64, seed=0, path=tmp_path)
    learn = quiet(collab_learner(dls, n_factors=4, opt_func=SGD))
    return learn


def test_a_diverged_fit_never_replaces_a_good_checkpoint(tmp_path):
    learn = diverged(tmp_path)
    with learn.no_bar():
        learn.fit(1, 1e-3)
    good = learn.save("ckpt")
    good_bytes = good.read_bytes()
    learn.model.params[7] = np.nan
    with pytest.raises(ValueError, match=r"cannot save .*ckpt.npz: u_weight.weight holds NaN or inf "
                                         r"\(did training diverge\?\); nothing was written"):
        learn.save("ckpt")
    assert good.read_bytes() == good_bytes and temporaries(good.parent) == []
    learn.model.params[7] = 0.0
    learn.opt.hypers["wd"] = float("inf")    # past set_hypers' checks, as a bad callback could
    with pytest.raises(ValueError, match="the optimizer's wd is inf, not a finite number"):
        learn.save("ckpt")
    assert good.read_bytes() == good_bytes
    learn.load("ckpt")


def test_non_finite_optimizer_buffers_are_not_saved(tmp_path):
    learn = learner(tmp_path)            # Adam: moments m and v
    good = learn.save("ckpt")
    good_bytes = good.read_bytes()
    learn.opt.state["v"][3] = np.inf
    with pytest.raises(ValueError, match=r"cannot save .*: v holds NaN or inf"):
        learn.save("ckpt")
    assert good.read_bytes() == good_bytes
    learn.save("ckpt", with_opt=False)   # the model alone is fine


def test_a_diverged_model_is_not_exported_and_the_message_says_why(tmp_path):
    from collabc import TrainingDivergedError
    learn = diverged(tmp_path)
    with learn.no_bar():
        learn.fit(1, 1e-3)
    good = learn.export()
    good_bytes = good.read_bytes()
    with pytest.raises(TrainingDivergedError), learn.no_bar():
        learn.fit(3, 1e4)
    assert np.all(np.isfinite(learn.model.params))      # finite, but its predictions are not
    with pytest.raises(ValueError, match=r"cannot export .*: the model's training MSE \(kept for fold-in\) "
                                         r"is (nan|inf)"):
        learn.export()
    assert good.read_bytes() == good_bytes
    learn.model.params[0] = np.inf
    with pytest.raises(ValueError, match="u_weight.weight holds NaN or inf"):
        learn.export(with_seen=False)
    assert good.read_bytes() == good_bytes


def test_write_archive_names_a_non_finite_metadata_field(tmp_path):
    with pytest.raises(ValueError, match=r"learner.moms.1 is nan, not a finite number.*nothing was written"):
        write_archive(tmp_path / "x.npz", "learner", {"learner": {"moms": [0.9, float("nan")]}}, {})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 7. labels round-trip exactly

LABELS = {
    "strings with NULs": ["u196", "u196\x00", "\x00", "a\x00b", "u196\x00\x00", "é\x00"],
    "uint64 from 2**63": np.array([2**63, 2**64 - 1, 5, 2**63 + 7], dtype=np.uint64),
    "int64 extremes": np.array([-2**63, 2**63 - 1, 0, -5], dtype=np.int64),
    "ints beyond 64 bits": [2**70, -2**70, 3, 2**64],
    "booleans": [True, False],
    "floats": [0.5, float("inf"), -1e300, 2.0, float("-inf")],
    "float32": np.array([0.1, 2.5, -3.75], dtype=np.float32),
    "plain strings": ["a", "b", "", " c "],
    "small ints": np.array([3, 1, 2], dtype=np.int8),
}


def _series(labels):
    return pd.Series(labels) if isinstance(labels, np.ndarray) else pd.Series(labels, dtype=object)


@pytest.mark.parametrize("kind", sorted(LABELS))
@pytest.mark.parametrize("column", ["user", "item"])
def test_labels_round_trip_exactly_with_their_types(tmp_path, kind, column):
    labels = list(_series(LABELS[kind]))
    df = frame(**{f"{column}s": labels})
    if isinstance(LABELS[kind], np.ndarray):   # a column of that dtype, not of Python objects
        df[column] = df[column].astype(LABELS[kind].dtype)
    learn = learner(tmp_path, df)
    new = load_learner(learn.export())
    old_c, new_c = learn.dls.classes[column], new.dls.classes[column]
    assert len(new_c) == len(old_c)
    for a, b in zip(old_c, new_c):
        assert type(a) is type(b) and (a == b or (a != a and b != b)), (a, b)
        assert repr(a) == repr(b)
    np.testing.assert_array_equal(new.model.params, learn.model.params)
    some = old_c[2]
    if column == "user":
        pd.testing.assert_frame_equal(new.recommend(some, n=5), learn.recommend(some, n=5))
    else:
        assert new.model.bias([some]).tolist() == learn.model.bias([some]).tolist()


@pytest.mark.parametrize("names", [("u\x00", 7, 2.5), ("user", "item", True)])
def test_column_names_round_trip_exactly(tmp_path, names):
    df = frame().rename(columns=dict(zip(["user", "item", "rating"], names)))
    set_seed(0)
    learn = quiet(collab_learner(CollabDataLoaders.from_df(df, bs=32, seed=0, path=tmp_path), n_factors=4))
    new = load_learner(learn.export())
    got = (new.dls.user_name, new.dls.item_name, new.dls.rating_name)
    assert got == names and [type(v) for v in got] == [type(v) for v in names]
    pd.testing.assert_frame_equal(new.recommend(df[names[0]].iloc[0], n=3), learn.recommend(df[names[0]].iloc[0], n=3))


def test_mixed_labels_are_refused_at_export_naming_the_column(tmp_path):
    df = frame(items=[1, 2.5, 3, 4.25, 5, 6.5, 7, 8.5, 9, 10.5, 11, 12.5, 13, 14.5, 15])
    learn = learner(tmp_path, df)
    with pytest.raises(TypeError, match=r"the item column 'item' has labels of types \['float', 'int'\].*"
                                        r"astype\(str\)"):
        learn.export()
    assert not (tmp_path / "export.npz").exists() and temporaries(tmp_path) == []


def test_timestamps_are_refused_at_export_naming_the_column(tmp_path):
    df = frame(users=list(pd.date_range("2024-01-01", periods=20)))
    df["user"] = pd.to_datetime(df["user"])
    learn = learner(tmp_path, df)
    with pytest.raises(TypeError, match=r"the user column 'user' has labels of types \['Timestamp'\]"):
        learn.export()


def test_files_of_format_2_with_plain_labels_still_load(tmp_path):
    learn = learner(tmp_path)
    path = learn.export()
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(members["collabc.json"])
    assert "label_encoding" not in meta   # plain labels need none
    meta["format_version"] = 2
    members["collabc.json"] = json.dumps(meta).encode()
    old = tmp_path / "v2.npz"
    with zipfile.ZipFile(old, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    assert load_learner(old).dls.classes == learn.dls.classes


# ---------------------------------------------------------------- 8. inconsistent files

def rewrite(src, dst, arrays=None, extra=()):
    "A copy of archive src with some arrays replaced (listing updated) and extra raw members added."
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    meta = json.loads(dict(members)["collabc.json"])
    out = []
    for name, data in members:
        key = name[:-4] if name.endswith(".npy") else None
        if key in (arrays or {}):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arrays[key], allow_pickle=False)
            data = buf.getvalue()
            meta["arrays"][key] = {"dtype": arrays[key].dtype.str, "shape": list(arrays[key].shape)}
        out.append((name, data))
    out = [(n, json.dumps(meta).encode() if n == "collabc.json" else d) for n, d in out]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zipfile warns about the duplicate names we add on purpose
        with zipfile.ZipFile(dst, "w") as z:
            for n, d in list(out) + list(extra):
                z.writestr(n, d)
    return dst


@pytest.mark.parametrize("change", [1, -1])
def test_classes_that_do_not_match_the_model_are_refused_at_load(tmp_path, change):
    learn = learner(tmp_path)
    path = learn.export()
    _, arrays = read_archive(path)
    users = arrays["classes/user"]
    users = np.concatenate([users, [999]]) if change > 0 else users[:-1]
    bad = rewrite(path, tmp_path / "bad.npz", {"classes/user": users})
    with pytest.raises(CollabcFileError, match=r"user classes \('#na#' included\) but its model has 21 user "
                                               r"rows"):
        load_learner(bad)


def test_duplicate_members_are_refused_at_load(tmp_path):
    learn = learner(tmp_path)
    path = learn.export()
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.startswith("model/"))
        data = bytearray(z.read(name))
    data[-4:] = np.float32(123.0).tobytes()
    bad = rewrite(path, tmp_path / "dup.npz", extra=[(name, bytes(data))])
    with pytest.raises(CollabcFileError, match="appears more than once"):
        load_learner(bad)
    bad = rewrite(path, tmp_path / "dup2.npz", extra=[("collabc.json", b"{}")])
    with pytest.raises(CollabcFileError, match="appears more than once"):
        load_learner(bad)


def test_an_unsorted_seen_list_is_refused_at_load(tmp_path):
    learn = learner(tmp_path)
    path = learn.export()
    _, arrays = read_archive(path)
    indptr, indices = arrays["seen/indptr"], arrays["seen/indices"].copy()
    u = int(np.argmax(np.diff(indptr) >= 2))
    a = indptr[u]
    indices[a], indices[a + 1] = indices[a + 1], indices[a]
    bad = rewrite(path, tmp_path / "unsorted.npz", {"seen/indices": indices})
    with pytest.raises(CollabcFileError, match="not sorted"):
        load_learner(bad)
    indices = arrays["seen/indices"].copy()
    indices[a + 1] = indices[a]                       # a repeated item
    bad = rewrite(path, tmp_path / "repeated.npz", {"seen/indices": indices})
    with pytest.raises(CollabcFileError, match="not sorted"):
        load_learner(bad)


# ---------------------------------------------------------------- 9. killed writers

KILLED_WRITER = """
import os, signal
import numpy as np
from collabc import load_learner
learn = load_learner({src!r})
learn.model.params[:] += 1
real, calls = np.lib.format.write_array, [0]
def write_then_die(*a, **k):
    calls[0] += 1
    if calls[0] == 3:                       # a few members in: the temporary is half written
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
np.lib.format.write_array = write_then_die
learn.{call}
"""


@pytest.mark.parametrize("call", ["export({target!r})", "save('ckpt')"])
def test_a_killed_writer_leaves_the_target_and_the_next_write_removes_its_temporary(tmp_path, call):
    learn = learner(tmp_path)
    src = learn.export(tmp_path / "src.npz")
    target = tmp_path / "out.npz" if "export" in call else tmp_path / "models" / "ckpt.npz"
    first = learn.export(target) if "export" in call else learn.save("ckpt")
    before = first.read_bytes()
    code = KILLED_WRITER.format(src=str(src), call=call.format(target=str(target)))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert target.read_bytes() == before                 # the target is intact
    stale = temporaries(target.parent)
    assert len(stale) == 1 and stale[0].startswith(f".{target.name}.{persist._host_tag()}-")
    learn.export(target) if "export" in call else learn.save("ckpt")
    assert temporaries(target.parent) == []               # the dead writer's temporary is gone


def test_only_dead_writers_temporaries_of_our_naming_are_removed(tmp_path):
    host = persist._host_tag()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"], cwd=tmp_path)
    dead_pid.wait()   # reaped: its pid names no process (until the system reuses it)
    try:
        names = {
            "dead": f".a.npz.{host}-{dead_pid.pid}-{'0' * 16}.collabc-tmp",
            "live": f".a.npz.{host}-{sleeper.pid}-{'1' * 16}.collabc-tmp",
            "mine": f".a.npz.{host}-{os.getpid()}-{'2' * 16}.collabc-tmp",
            "other host": f".a.npz.{'f' * 8 if host != 'f' * 8 else 'e' * 8}-{dead_pid.pid}-{'3' * 16}.collabc-tmp",
            "not ours": "a.npz.tmp",
            "near miss": f".a.npz.{host}-{dead_pid.pid}-{'4' * 15}.collabc-tmp",
        }
        for n in names.values():
            (tmp_path / n).write_text("x")
        (tmp_path / "dir.collabc-tmp").mkdir()
        assert remove_stale_temporaries(tmp_path) == [names["dead"]]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [n for k, n in names.items() if k != "dead"] + ["dir.collabc-tmp"])
    finally:
        sleeper.kill()
        sleeper.wait()
