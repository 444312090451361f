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
    the inline backend even when MPLBACKEND is set for headless runs. The kernel talks to this
    process over local (IPC) sockets in a private temporary folder, not over TCP, so no port is
    opened and ipykernel has no unencrypted-TCP warning to print."""
    import nbclient
    import nbformat
    from traitlets.config import Config
    nb = nbformat.read(str(path), as_version=4)
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    t0 = time.perf_counter()
    error = None
    try:
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as sockets:
            ipc = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
            # shutdown_kernel="immediate": the outputs are in `nb` by then, and a graceful shutdown
            # request races ipykernel's own closing of its IOPub thread, which then prints a
            # "Socket operation on non-socket" traceback now and then (seen in CI)
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, config=ipc,
                                             shutdown_kernel="immediate",
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


# Wide outputs (the 15 x 15 crosstab, long tables) scroll sideways inside their cell instead of
# being cut off at the page's edge: nbconvert's lab template lays an output out as a table cell,
# which clips what does not fit.
PAGE_CSS = """
.jp-OutputArea-child { display: flex; overflow: visible; }
.jp-OutputArea-child .jp-OutputPrompt { flex: 0 0 var(--jp-cell-prompt-width); }
.jp-OutputArea-output { display: block; flex: 1 1 auto; min-width: 0; overflow-x: auto; }
"""

INDEX_CSS = """
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
       color: #1f2328; max-width: 48em; margin: 2.5em auto; padding: 0 1.2em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
.lead { color: #57606a; margin-top: 0; }
ol.notebooks { list-style: none; padding: 0; }
ol.notebooks li { margin: 0 0 1.3em; padding-left: 0.9em; border-left: 3px solid #d0d7de; }
ol.notebooks li.failed { border-left-color: #cf222e; }
a.title { font-weight: 600; font-size: 1.08em; color: #0969da; text-decoration: none; }
a.title:hover { text-decoration: underline; }
.meta { color: #57606a; font-size: 0.85em; margin-left: 0.4em; }
.meta b { color: #cf222e; }
li p { margin: 0.25em 0 0; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6;
       padding: 0.1em 0.3em; border-radius: 4px; }
"""


def to_html(nb):
    "The executed notebook as one self-contained HTML page (images as data: URIs)."
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body.replace("</head>", f"<style>{PAGE_CSS}</style>\n</head>", 1)


def markdown(text, inline=False):
    """Markdown -> HTML with mistune (nbconvert's own Markdown renderer). `inline`: one line
    without the enclosing paragraph, and a leading "6." is text, not a numbered list."""
    import mistune
    if inline:
        text = re.sub(r"^(\d+)\.", r"\1\\.", text.strip())
    out = mistune.html(text).strip()
    if inline and out.startswith("<p>") and out.endswith("</p>"):
        out = out[3:-4]
    return out


def _index(rows):
    "The index page: one entry per notebook (rows of name, title, summary, seconds, ok)."
    items = []
    for name, title, summary, secs, ok in rows:
        cls, status = ('', '') if ok else (' class="failed"', ', <b>failed</b>')
        desc = markdown(summary) if summary else ''
        items.append(f'<li{cls}><a class="title" href="{html.escape(name)}.html">{markdown(title, inline=True)}</a>'
                     f'<span class="meta">{html.escape(name)} &middot; {secs:.1f} s{status}</span>\n{desc}</li>')
    body = "\n".join(items)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>collabc notebooks</title>\n<style>{INDEX_CSS}</style></head>\n<body>\n"
            "<h1>collabc: the collaborative-filtering lesson</h1>\n"
            "<p class=\"lead\">fastai's Lesson 7 (fastbook chapter 8) rebuilt with collabc, in the lesson's "
            "order. Each page is the notebook executed top to bottom in a fresh kernel.</p>\n"
            f"<ol class=\"notebooks\">\n{body}\n</ol>\n</body></html>\n")


def _last_line(error):
    "The last line of an execution error (the exception), without terminal colour codes."
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _title(nb, default):
    "The notebook's heading (its first '# ' line) and the paragraph after it, as Markdown."
    for c in nb.cells:
        if c.cell_type == "markdown":
            lines = c.source.splitlines()
            for k, line in enumerate(lines):
                if line.startswith("# "):
                    rest = "\n".join(lines[k + 1:]).strip()
                    return line[2:].strip(), rest.split("\n\n")[0].strip()
    return default, ""


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
        rows.append((name, *_title(nb, name), secs, error is None))
        status = "ok" if error is None else "FAILED: " + _last_line(error)
        print(f"{name:24s} {secs:6.1f} s  {status}", flush=True)
        if error is not None:
            failed.append(name)
    (args.out / "index.html").write_text(_index(rows), encoding="utf-8")
    print(f"wrote {len(rows)} notebooks to {args.out}/ (open index.html); total {sum(r[3] for r in rows):.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
