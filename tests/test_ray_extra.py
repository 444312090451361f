"""Without the extra, `import collabc.ray` says how to get it (Ray hidden in a subprocess), and
the rest of collabc never imports Ray."""
import subprocess
import sys

HIDE_RAY = """
import sys
class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoRay())
"""


def _run(code, cwd):
    "Runs `code` with Ray hidden, from `cwd` (not the checkout: the installed collabc is imported)."
    return subprocess.run([sys.executable, "-c", HIDE_RAY + code], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_missing_extra_names_it(tmp_path):
    r = _run("import collabc.ray", tmp_path)
    assert r.returncode != 0
    assert "ImportError: collabc.ray needs Ray with Tune and Data" in r.stderr
    assert 'pip install "collabc[ray]"' in r.stderr


def test_collabc_itself_needs_no_ray(tmp_path):
    r = _run("import collabc, collabc.learner, collabc.paths; assert 'ray' not in sys.modules; print('ok')",
             tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
