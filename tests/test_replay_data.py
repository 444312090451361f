"""The data-free form of fastai's recorded epochs (tests/data/fastai_replay.npz, tests/replay.py).

It holds no MovieLens data (row numbers of u.data instead of batches), rebuilds the shared
recordings exactly from u.data (CI sets COLLABC_DATA and COLLABC_REFERENCE, so this runs there),
is what scripts/make_replay.py derives, and lets the replay tests run with COLLABC_DATA alone.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import ml100k_path
from replay import DATA_KEYS, MODELS, REPLAY_FILE, identical, rebuild

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _reference(model):
    folder = os.environ.get("COLLABC_REFERENCE")
    if not folder:
        pytest.skip("COLLABC_REFERENCE is not set (the shared recordings to compare with)")
    f = pathlib.Path(folder) / f"fastai_golden_{model}.npz"
    if not f.exists():
        pytest.skip(f"{f} does not exist")
    with np.load(f) as z:
        return {k: z[k] for k in z.files}


def _committed():
    with np.load(REPLAY_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_committed_file_holds_row_numbers_not_ratings():
    z = _committed()
    assert REPLAY_FILE.stat().st_size < 1_500_000
    names = {k.split("/")[-1] for k in z}
    assert not names & set(DATA_KEYS), "batches, ratings or class counts must not be committed"
    ints = {k for k, v in z.items() if v.dtype.kind in "iu"}
    assert ints == {"batch_rows", "valid_rows"}, ints
    assert z["batch_rows"].shape == (1250, 64) and z["valid_rows"].shape == (20000,)
    rows = np.concatenate([z["batch_rows"].ravel(), z["valid_rows"]])
    assert np.array_equal(np.sort(rows), np.arange(100_000)), "each u.data row exactly once"
    assert len(str(z["u_data_sha256"])) == 64
    for model in MODELS:
        assert z[f"{model}/init/" + ("u_weight.weight" if model == "dot" else "embeds.0.weight")].dtype == np.float32


@pytest.mark.parametrize("model", MODELS)
def test_rebuilt_from_u_data_equals_shared_recording(model):
    "Every array of the shared recording, rebuilt from u.data and the committed file, bit for bit."
    ref = _reference(model)
    back = rebuild(model, ml100k_path())
    assert sorted(back) == sorted(ref)
    differ = [k for k in ref if not identical(back[k], ref[k])]
    assert not differ, f"rebuilt arrays differ from fastai_golden_{model}.npz: {differ}"


def test_make_replay_reproduces_committed_file(tmp_path):
    "scripts/make_replay.py derives exactly the committed file from the shared recordings."
    ref = os.environ.get("COLLABC_REFERENCE")
    if not ref:
        pytest.skip("COLLABC_REFERENCE is not set (the shared recordings to derive from)")
    data = ml100k_path().parent
    out = tmp_path / "replay.npz"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_replay.py"), "--reference", ref,
                        "--data", str(data), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "both recordings rebuild exactly" in r.stdout
    assert "307 (user, title) pairs with several rows, 261 of them with equal ratings" in r.stdout
    with np.load(out) as z:
        new = {k: z[k] for k in z.files}
    old = _committed()
    assert sorted(new) == sorted(old)
    assert [k for k in old if not identical(new[k], old[k])] == []


def test_rebuild_refuses_another_u_data(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t881250949\n")
    with pytest.raises(ValueError, match=r"u\.data is not the MovieLens-100k file .* sha256 [0-9a-f]{64}, "
                                         r"expected [0-9a-f]{64}"):
        rebuild("dot", folder)
    with pytest.raises(ValueError, match="model must be one of"):
        rebuild("cnn", folder)


def test_replay_tests_run_with_collabc_data_only(tmp_path):
    "Without COLLABC_REFERENCE the five fastai replay tests run (from the committed form), none skips."
    ml100k_path()
    env = {k: v for k, v in os.environ.items() if k != "COLLABC_REFERENCE"}
    tests = [str(ROOT / "tests" / f) for f in ("test_parity.py", "test_nn.py", "test_learner.py")]
    # run from a scratch folder so that the installed collabc is imported, not ./collabc
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
                        "-k", "replay or schedule_matches_recorded", *tests],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("5 passed") and "skipped" not in summary, r.stdout[-3000:]
