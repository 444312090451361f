"""The package's layout: imports between collabc's modules run one way (no cycle, counting
imports inside functions too), and no module reaches into another's private names except
through the few documented shared helpers."""
import ast
import pathlib

import collabc

PKG = pathlib.Path(collabc.__file__).parent


def _imports(path):
    "The collabc modules `path` imports, anywhere in the file."
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("collabc."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("collabc."))
    return out


def _graph():
    mods = {p.stem: p for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return {m: sorted(_imports(p) & set(mods)) for m, p in mods.items()}


def test_no_import_cycle():
    graph = _graph()
    state = {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join(stack + [m])
        state[m] = "open"
        for n in graph[m]:
            visit(n, stack + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


#: facades built on the Learner (each a Learner subclass and its factory), the only importers of learner
ON_THE_LEARNER = {"implicit_learner"}


def test_the_learner_is_at_the_top_and_persist_is_the_format_only():
    graph = _graph()
    assert not [m for m, deps in graph.items() if "learner" in deps and m not in ON_THE_LEARNER]
    assert not [m for m, deps in graph.items() if set(deps) & ON_THE_LEARNER]
    assert set(graph["persist"]) <= {"_core"}, graph["persist"]
    assert "persist" not in graph["learner"] or "checkpoint" in graph["learner"]
