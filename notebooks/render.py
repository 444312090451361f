"""Execute the lesson notebooks and write them as HTML pages (figures embedded) to read without Jupyter.

    python notebooks/render.py                     # every notebooks/*.ipynb -> notebooks/_build/
    python notebooks/render.py --out DIR 05_interpretation.ipynb

Each notebook runs top to bottom in a fresh kernel (nbclient + ipykernel) whose working folder is
a temporary directory, so it imports the *installed* collabc (`pip install .` first) and leaves
no files behind. MovieLens-100k comes from `$COLLABC_DATA/ml-100k` when that variable is set,
else it is downloaded once. The output folder gets one `<name>.html` per notebook plus an
`index.html` linking them; a notebook that fails is still written (with its error shown) and the
command exits with status 1. Needs nbclient, nbconvert and ipykernel
(`pip install ".[notebooks]"`).
"""
import argparse
import html
import os
import pathlib
import re
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def execute(path, timeout=600, kernel_name="python3", cwd=None):
    """Run the notebook at `path` in a fresh kernel; returns `(nb, seconds, error)` where `nb`
    holds the outputs (up to the failing cell) and `error` is None or the exception. Figures use
    the inline backend even when MPLBACKEND is set for headless runs."""
    import nbclient
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    t0 = time.perf_counter()
    error = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                             resources={"metadata": {"path": str(cwd or tmp)}})
            try:
                client.execute()
            except Exception as e:   # CellExecutionError, timeouts: keep what ran
                error = e
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old
    return nb, time.perf_counter() - t0, error


def to_html(nb):
    "The executed notebook as one self-contained HTML page (images as data: URIs)."
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def _index(rows):
    items = "\n".join(
        f'<li><a href="{html.escape(name)}.html">{html.escape(name)}</a> &mdash; {html.escape(title)} '
        f'({secs:.1f} s{"" if ok else ", <b>FAILED</b>"})</li>' for name, title, secs, ok in rows)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>collabc notebooks</title></head>\n"
            f"<body><h1>collabc: the collaborative-filtering lesson</h1>\n<ul>\n{items}\n</ul></body></html>\n")


def _last_line(error):
    "The last line of an execution error (the exception), without terminal colour codes."
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _title(nb, default):
    for c in nb.cells:
        if c.cell_type == "markdown":
            for line in c.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return default


def main(argv=None):
    ap = argparse.ArgumentParser(description="Execute the notebooks and write HTML with figures.")
    ap.add_argument("notebooks", nargs="*", type=pathlib.Path,
                    help="notebooks to render (default: every notebooks/*.ipynb)")
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "_build",
                    help="output folder (default: notebooks/_build)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    args = ap.parse_args(argv)
    paths = [p if p.exists() else HERE / p for p in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        ap.error(f"no such notebook: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for path in paths:
        nb, secs, error = execute(path, timeout=args.timeout)
        name = path.stem
        (args.out / f"{name}.html").write_text(to_html(nb), encoding="utf-8")
        rows.append((name, _title(nb, name), secs, error is None))
        status = "ok" if error is None else "FAILED: " + _last_line(error)
        print(f"{name:24s} {secs:6.1f} s  {status}", flush=True)
        if error is not None:
            failed.append(name)
    (args.out / "index.html").write_text(_index(rows), encoding="utf-8")
    print(f"wrote {len(rows)} notebooks to {args.out}/ (open index.html); total {sum(r[2] for r in rows):.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
