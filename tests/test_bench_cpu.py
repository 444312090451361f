"""bench/bench_cpu.py's own parts on tiny inputs (the benchmark itself is not a test): the naive C
floors compile and train (the SGD floor's error falls), and LibMF's per-iteration time is read from
the intervals between its per-iteration lines (a stand-in mf-train that sleeps between lines)."""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
import bench_cpu  # noqa: E402

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")


def tiny(tmp_path, nu=30, ni=20, n=3000):
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(1, nu, n), rng.integers(1, ni, n)], 1).astype(np.int32)
    y = (1 + 2 * x[:, 0] / nu + 2 * x[:, 1] / ni).astype(np.float32)  # learnable: biases alone fit it
    x.tofile(tmp_path / "x.bin")
    y.tofile(tmp_path / "y.bin")
    return n, nu, ni


@needs_cc
def test_sgd_floor_trains(tmp_path):
    exe = bench_cpu.compile_c(bench_cpu.FLOOR_SGD_C, str(tmp_path), "floor_sgd")
    n, nu, ni = tiny(tmp_path)
    out = []
    for epochs in (1, 6):
        p = subprocess.run([exe, str(tmp_path / "x.bin"), str(tmp_path / "y.bin"), str(n), str(nu), str(ni),
                            str(epochs)], capture_output=True, text=True, check=True)
        out.append(json.loads(p.stdout))
    assert all(d["ns_per_rating"] > 0 and d["s_per_epoch"] > 0 for d in out)
    assert out[1]["mse"] < out[0]["mse"]  # the last epoch's training error after 6 epochs is lower


@needs_cc
def test_lesson_floor_runs_every_step(tmp_path):
    exe = bench_cpu.compile_c(bench_cpu.FLOOR_LESSON_C, str(tmp_path), "floor_lesson")
    n, nu, ni = tiny(tmp_path)
    p = subprocess.run([exe, str(tmp_path / "x.bin"), str(tmp_path / "y.bin"), str(n), str(nu), str(ni), "2"],
                       capture_output=True, text=True, check=True)
    d = json.loads(p.stdout)
    assert d["steps"] == 2 * (n // 64) and d["fit_s"] > 0


def test_libmf_seconds_per_iteration_from_its_lines(tmp_path):
    fake = tmp_path / "mf-train"
    fake.write_text("#!" + sys.executable + "\n"
                    "import sys, time\n"
                    "time.sleep(0.3)  # parsing: in no interval\n"
                    "print('iter tr_rmse va_rmse obj', flush=True)\n"
                    "for i in range(int(sys.argv[sys.argv.index('-t') + 1])):\n"
                    "    time.sleep(0.05)\n"
                    "    print(f'{i:4d} 1.0 1.0 1.0', flush=True)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    sec = bench_cpu.libmf_per_iter(str(fake), str(tmp_path), 3)
    assert 0.04 < sec < 0.5  # 0.05 s a line (a loaded machine may add to it), never the 0.3 s of parsing
