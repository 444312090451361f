"""Offline, `untar_data(URLs.ML_100k)` fails with one short exception that says first what to do
(set COLLABC_DATA, or download the archive by hand and save it where collabc looks), without a
chain of tracebacks, and leaves nothing on disk; the command line prints only that message."""
import os
import socket
import subprocess
import sys
import textwrap
import traceback
import urllib.error
import urllib.request

import pytest

from collabc.external import ENV_DATA, ENV_HOME, URLs, DownloadError, untar_data

URL = URLs.ML_100k


def _no_network(*args, **kwargs):
    "What urlopen raises without DNS: URLError wrapping socket.gaierror."
    raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    home = tmp_path / "home"                      # not created: a failure must not create it
    monkeypatch.setenv(ENV_HOME, str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv(ENV_DATA, raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    return home


def _check_message(msg, home, env_note, paths=()):
    lines = msg.splitlines()
    short = msg
    for p in (str(home / "archive" / "ml-100k.zip"), str(home / "data" / "ml-100k"), *paths):
        short = short.replace(p, "P")
    assert len(lines) == 2 and len(short) < 300, msg       # the machine's paths aside
    # what to do comes first: COLLABC_DATA, or the archive saved by hand (from where, to where)
    assert lines[0].startswith(f"Set {ENV_DATA} to a folder that contains 'ml-100k/' ({env_note})")
    assert f"or download {URL} by hand and save it as {home / 'archive' / 'ml-100k.zip'}" in lines[0]
    assert str(home / "data" / "ml-100k") in lines[0]
    assert lines[1] == "The download failed: [Errno -2] Name or service not known."


def test_offline_error_is_one_short_exception(offline):
    with pytest.raises(DownloadError) as ei:
        untar_data(URL, progress=False)
    e = ei.value
    _check_message(str(e), offline, "it is not set")
    assert e.__cause__ is None and e.__suppress_context__   # raise ... from None
    shown = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    assert shown.count("Traceback (most recent call last)") == 1
    for noise in ("gaierror", "URLError", "During handling", "direct cause"):
        assert noise not in shown
    assert not offline.exists(), "a failed download must leave no folder behind"


def test_offline_message_names_the_collabc_data_in_use(offline, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(ENV_DATA, str(elsewhere))
    with pytest.raises(DownloadError) as ei:
        untar_data(URL, progress=False)
    _check_message(str(ei.value), offline, f"now {str(elsewhere)!r}, which has no non-empty 'ml-100k/'",
                   paths=[str(elsewhere)])
    assert list(elsewhere.iterdir()) == [] and not offline.exists()


def test_offline_keeps_existing_cache_folders(offline):
    (offline / "archive").mkdir(parents=True)
    (offline / "archive" / "other.zip").write_bytes(b"x")
    with pytest.raises(DownloadError):
        untar_data(URL, progress=False)
    assert sorted(p.name for p in offline.rglob("*")) == ["archive", "other.zip"]


@pytest.mark.parametrize("argv", [["lesson"], ["datasets", "fetch", "ml-100k"]])
def test_command_line_prints_only_the_message(tmp_path, argv):
    "The real command in a fresh process, its urlopen failing as without DNS: exit 1, two lines."
    home = tmp_path / "home"
    code = textwrap.dedent(f"""
        import socket, sys, urllib.error, urllib.request
        def no_network(*a, **k):
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        urllib.request.urlopen = no_network
        from collabc.__main__ import main
        sys.exit(main({argv!r}))
    """)
    env = {k: v for k, v in os.environ.items() if k != ENV_DATA}
    env[ENV_HOME] = str(home)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)   # not the checkout: the installed collabc
    assert r.returncode == 1
    assert r.stdout == ""
    prefix = f"collabc {argv[0]}: error: "
    assert r.stderr.startswith(prefix)
    _check_message(r.stderr[len(prefix):].rstrip("\n"), home, "it is not set")
    assert "Traceback" not in r.stderr
    assert not home.exists()
