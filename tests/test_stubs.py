"""collabc/_core.pyi agrees with the compiled module: the same public functions, and each
stub's parameters match the names in the function's signature line."""
import ast
import inspect
import pathlib

import collabc
from collabc import _core


def _stub_functions():
    path = pathlib.Path(collabc.__file__).with_name("_core.pyi")
    tree = ast.parse(path.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_stub_lists_every_function():
    public = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    assert public == set(_stub_functions())


def test_stub_parameter_names_match():
    for name, node in _stub_functions().items():
        stub = [a.arg for a in node.args.args + node.args.kwonlyargs]
        sig = inspect.signature(getattr(_core, name))
        assert list(sig.parameters) == stub, name
