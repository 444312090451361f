"""scripts/check_spills.py on the installed extension: no hot loop of any instruction-set version
of the hot kernels moves vector registers through the stack, apart from the known ones it lists
with their exact counts; and the checker itself finds a spill where there is one."""
import importlib.util
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from collabc import _core

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "check_spills.py"
pytestmark = pytest.mark.skipif(shutil.which("objdump") is None,
                                reason="objdump (GNU binutils) is not installed: nothing to disassemble with")


def load():
    spec = importlib.util.spec_from_file_location("check_spills", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_hot_loop_spills_in_the_installed_extension():
    p = subprocess.run([sys.executable, str(SCRIPT), _core.__file__], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    built, _ = _core.isa_levels()
    if "avx2" in built:  # every version of the sparse kernels was found and checked
        for k in ("run_rows_sgd", "run_rows_adagrad", "run_rows_adam", "cf_linear_forward"):
            for v in built:
                assert f"{k}_{v}: " in p.stdout


def test_sparse_sgd_and_linear_are_clean_in_every_version():
    cs = load()
    funcs = cs.disassemble(_core.__file__)
    for k in ("run_rows_sgd", "cf_linear_forward", "cf_linear_backward", "cf_sgd_step"):
        vers = cs.versions_of(funcs, k)
        assert vers, k
        for name in vers.values():
            res = cs.check_function(funcs[name])
            assert res, f"{name}: no hot loop found"
            # clean, apart from the loops KNOWN lists (run_rows_sgd_avx512: its loops over ratings
            # for K < 16, which go through a stack chunk; the count must match exactly)
            assert len([r for r in res if r[3]]) == cs.KNOWN.get(name, (0, ""))[0], name


def test_checker_finds_a_spill(tmp_path):
    "A loop that keeps 24 vectors live across its trips spills on x86-64: the checker says so."
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    src = tmp_path / "spill.c"
    src.write_text(textwrap.dedent("""
        typedef float v8 __attribute__((vector_size(32)));
        __attribute__((noinline)) void run_rows_sgd_avx2(v8 *restrict out, const v8 *restrict x, long n) {
            v8 a[24];
            for (int k = 0; k < 24; k++) a[k] = x[k];
            for (long i = 0; i < n; i++)
                for (int k = 0; k < 24; k++) a[k] = a[k] * x[24 + (i & 7)] + a[(k + 5) % 24];
            for (int k = 0; k < 24; k++) out[k] = a[k];
        }
        __attribute__((noinline)) void run_rows_sgd_generic(v8 *restrict out, const v8 *restrict x, long n) {
            for (long i = 0; i < n; i++) out[i] = x[i] * x[i];
        }
    """))
    obj = tmp_path / "spill.o"
    r = subprocess.run(["cc", "-O2", "-mavx2", "-fno-tree-vectorize", "-c", str(src), "-o", str(obj)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot compile an AVX2 test object here: " + r.stderr[-300:])
    p = subprocess.run([sys.executable, str(SCRIPT), str(obj), "--kernels", "run_rows_sgd"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout
    assert "run_rows_sgd_avx2:" in p.stdout and "FAIL" in p.stdout
    assert "run_rows_sgd_generic: 1 hot loop(s), 0 with" in p.stdout
