"""The README says what running its code prints: the lesson in ten lines and `collabc lesson
--seed 42` both print the epoch table shown beside them (the numbers; the time column is the
machine's). Also: the README gives exactly the two set-up commands, and every notebook and docs
page it links exists."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import ml100k_path

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    "The fenced blocks of the README in language `lang` ('' for plain ones), in order."
    return [body for tag, body in re.findall(r"^```(\w*)\n(.*?)^```$", README, re.S | re.M) if tag == lang]


def _table_rows(text):
    "The epoch rows (epoch, train_loss, valid_loss) of a printed table."
    return [tuple(line.split()[:3]) for line in text.splitlines() if re.match(r"^\d+\s+\d+\.\d{6}\s+\d+\.\d{6}", line)]


def _readme_table():
    table = next(b for b in _blocks("") if b.startswith("epoch"))
    rows = _table_rows(table)
    assert len(rows) == 5
    return rows


def _run(args, **kw):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=str(ROOT / "tests"), **kw)


@pytest.mark.slow
def test_the_lesson_in_ten_lines_prints_the_readmes_table():
    ml100k_path()
    code = _blocks("python")[0]
    assert "fit_one_cycle(5, 5e-3, wd=0.1)" in code and code.count("\n") <= 11
    r = _run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr[-2000:]
    assert _table_rows(r.stdout) == _readme_table()


@pytest.mark.slow
def test_collabc_lesson_prints_the_same_table():
    ml100k_path()
    exe = pathlib.Path(sys.executable).with_name("collabc")
    args = [str(exe)] if exe.exists() else [sys.executable, "-m", "collabc"]
    r = _run(args + ["lesson", "--seed", "42"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert _table_rows(r.stdout) == _readme_table()


def test_two_setup_commands_and_links_that_exist():
    commands = re.findall(r"^    (pip install .*)$", README, re.M)
    assert commands[:2] == ['pip install . && collabc lesson', 'pip install ".[test]" && pytest']
    for link in re.findall(r"\]\(((?:notebooks|docs)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), link
