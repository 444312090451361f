"""`collabc.display.in_notebook()` decides by capability (an IPython shell attached to a kernel,
with a display publisher), so Google Colab, whose shell subclasses ipykernel's
ZMQInteractiveShell, gets HTML tables, and a terminal IPython shell gets text."""
import subprocess
import sys
import tempfile
import textwrap
import types

import pytest

from collabc import display


def _run(code):
    """Run `code` in a fresh interpreter (IPython shells are process-wide singletons), from a
    folder without a `collabc/` so that the installed package is imported; its stdout."""
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                           timeout=120, cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.split()


def test_colab_like_subclass_of_the_kernel_shell_is_a_notebook():
    pytest.importorskip("ipykernel")
    out = _run("""
        from ipykernel.zmqshell import ZMQInteractiveShell
        from collabc.display import in_notebook

        class Shell(ZMQInteractiveShell):      # google.colab._shell.Shell's shape: a subclass
            pass

        class Kernel:                          # the kernel object a running ipykernel attaches
            pass

        print(in_notebook())                   # IPython imported, no shell yet
        Shell.instance(kernel=Kernel())
        print(type(__import__("IPython").get_ipython()).__name__, in_notebook())
    """)
    assert out == ["False", "Shell", "True"]


def test_terminal_ipython_is_not_a_notebook():
    pytest.importorskip("IPython")
    out = _run("""
        from IPython.terminal.interactiveshell import TerminalInteractiveShell
        from collabc.display import in_notebook
        TerminalInteractiveShell.instance()
        print(type(__import__("IPython").get_ipython()).__name__, in_notebook())
    """)
    assert out == ["TerminalInteractiveShell", "False"]


def test_kernel_shell_without_a_kernel_is_not_a_notebook():
    pytest.importorskip("ipykernel")
    out = _run("""
        from ipykernel.zmqshell import ZMQInteractiveShell
        from collabc.display import in_notebook
        ZMQInteractiveShell.instance()         # never attached to a kernel
        print(in_notebook())
    """)
    assert out == ["False"]


def _fake_ipython(monkeypatch, shell):
    mod = types.ModuleType("IPython")
    mod.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", mod)


@pytest.mark.parametrize("attrs, expected", [
    ({"kernel": object(), "display_pub": object()}, True),     # any class name will do
    ({"kernel": None, "display_pub": object()}, False),
    ({"display_pub": object()}, False),                        # a terminal-like shell
    ({"kernel": object()}, False),                             # nothing to publish HTML with
])
def test_capability_not_class_name(monkeypatch, attrs, expected):
    shell = type("SomeFrontEndShell", (), attrs)()
    _fake_ipython(monkeypatch, shell)
    assert display.in_notebook() is expected


def test_no_ipython_or_no_shell(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert display.in_notebook() is False
    _fake_ipython(monkeypatch, None)
    assert display.in_notebook() is False

    def broken():
        raise RuntimeError("no shell")
    mod = types.ModuleType("IPython")
    mod.get_ipython = broken
    monkeypatch.setitem(sys.modules, "IPython", mod)
    assert display.in_notebook() is False
