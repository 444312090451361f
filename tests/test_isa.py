"""The instruction-set versions of the hot kernels (csrc/simd.h, csrc/isa.h): `collabc.cpu_info()`
reports the CPU and the version in use; COLLABC_ISA forces one at import (an unknown name, or one
the CPU cannot run, fails the import with a clear ValueError); and every version the CPU runs
trains and ranks to the same bits (each forced in a fresh process)."""
import os
import subprocess
import sys
import textwrap

import pytest

import collabc
from collabc import _core
from collabc.cpu import _proc_cpuinfo, format_cpu_info

LEVELS = ("avx512", "avx2", "generic")


def run(code, isa=None, tmp_path=None):
    "Runs code in a new process with COLLABC_ISA=isa (unset for None); returns (status, out, err)."
    env = dict(os.environ)
    env.pop("COLLABC_ISA", None)
    if isa is not None:
        env["COLLABC_ISA"] = isa
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       env=env, timeout=300, cwd=tmp_path)
    return p.returncode, p.stdout, p.stderr


def test_cpu_info_reports_the_version_in_use():
    info = collabc.cpu_info()
    assert set(info) == {"model", "machine", "isa_found", "built", "supported", "clone", "forced"}
    assert info["clone"] == _core.isa() and info["clone"] in info["supported"]
    assert set(info["supported"]) <= set(info["built"]) <= set(LEVELS)
    assert info["built"][-1] == info["supported"][-1] == "generic"
    assert isinstance(info["model"], str) and info["model"]
    if os.environ.get("COLLABC_ISA") in (None, "", "auto"):  # not forced: the widest supported
        assert info["clone"] == info["supported"][0]
    # the versions this CPU runs follow what /proc/cpuinfo lists (x86-64 Linux builds)
    if info["built"] == list(LEVELS):
        flags = set(info["isa_found"])
        assert ("avx2" in info["supported"]) == ("avx2" in flags)
        assert ("avx512" in info["supported"]) == ("avx512f" in flags)
    line = format_cpu_info(info)
    assert info["model"] in line and "running: " + info["clone"] in line


def test_proc_cpuinfo_parsing(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse4_2 avx2 fma\n\n"
                 "processor\t: 1\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse4_2 avx2 fma\n")
    assert _proc_cpuinfo(str(f)) == ("Some CPU 9000", {"fpu", "sse4_2", "avx2", "fma"})
    f.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU part\t: 0xd0c\n")  # aarch64
    assert _proc_cpuinfo(str(f)) == (None, {"fp", "asimd", "evtstrm"})
    assert _proc_cpuinfo(str(tmp_path / "missing")) == (None, set())


@pytest.mark.parametrize("name", ["avx512", "AVX2", "generic", "scalar", "auto"])
def test_forcing_a_version(name, tmp_path):
    built, supported = _core.isa_levels()
    want = {"scalar": "generic", "auto": supported[0]}.get(name.lower(), name.lower())
    rc, out, err = run("import collabc; i = collabc.cpu_info(); print(i['clone'], i['forced'])", name, tmp_path)
    if want in supported:
        assert rc == 0, err
        assert out.split() == [want, name]
    else:  # a version this CPU (or build) cannot run: the import says so, and what it can use
        assert rc != 0 and "ValueError" in err
        msg = err.strip().splitlines()[-1]
        assert f"COLLABC_ISA={name}" in msg and "generic" in msg and "unset COLLABC_ISA" in msg


@pytest.mark.parametrize("name", ["avx", "sse2", "avx512 ", "neon!"])
def test_unknown_version_is_a_clear_error(name, tmp_path):
    rc, out, err = run("import collabc", name, tmp_path)
    assert rc != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("ValueError: COLLABC_ISA=") and "not an instruction set collabc knows" in last
    assert "avx512, avx2, generic" in last


HASH = """
import hashlib
import numpy as np, pandas as pd
import collabc
from collabc import Adagrad, Adam, SGD, CollabDataLoaders, collab_learner, set_seed
from collabc.datasets import synthetic
from collabc.topn import rank_vectors
m = hashlib.sha256()
u, i, r = synthetic(120, 90, 5000, seed=1, as_frame=False)
df = pd.DataFrame({"user": u, "item": i, "rating": r})
for opt, k in ((SGD, 50), (Adagrad, 50), (Adagrad, 16), (Adam, 37)):
    set_seed(0)
    dls = CollabDataLoaders.from_df(df, bs=64, seed=0)
    learn = collab_learner(dls, n_factors=k, y_range=(0, 5.5), opt_func=opt, train_mode="sparse", n_threads=2)
    learn.logger = lambda *a: None
    learn.fit(1, 0.05 if opt is not Adam else 5e-3, wd=0.02)
    for p in learn.model.parameters():
        m.update(np.ascontiguousarray(p.data).tobytes())
for use_nn in (False, True):
    set_seed(0)
    learn = collab_learner(dls, n_factors=20, use_nn=use_nn, layers=[30], y_range=(0, 5.5))
    learn.logger = lambda *a: None
    learn.fit_one_cycle(1, 5e-3, wd=0.1)
    for p in learn.model.parameters():
        m.update(np.ascontiguousarray(p.data).tobytes())
rng = np.random.default_rng(0)
q, c = rng.standard_normal((60, 50), dtype=np.float32), rng.standard_normal((300, 50), dtype=np.float32)
for a in rank_vectors(q, None, c, None, 10):
    m.update(np.ascontiguousarray(a).tobytes())
print(collabc.cpu_info()["clone"], m.hexdigest())
"""


def test_every_version_gives_the_same_bits(tmp_path):
    _, supported = _core.isa_levels()
    seen = {}
    for name in supported:
        rc, out, err = run(HASH, name, tmp_path)
        assert rc == 0, err
        clone, digest = out.split()
        assert clone == name
        seen[name] = digest
    assert len(set(seen.values())) == 1, seen
