"""The lesson notebooks (notebooks/*.ipynb).

* Every notebook is committed without outputs and matches notebooks/make_notebooks.py (its source).
* Every notebook runs top to bottom in a fresh kernel (nbclient + ipykernel) against the
  *installed* collabc, with no error output. The notebooks assert their own key numbers (valid
  MSE bands, class counts, ...) in cells, so a regression fails here. The run goes through
  notebooks/render.py, the command that renders them to HTML, and the HTML is checked too.
* What a reader must see: the epoch table as fastai's HTML table wherever a model is trained,
  figures (image/png) where the lesson has pictures.

The executed notebooks need MovieLens-100k through COLLABC_DATA.
"""
import importlib.util
import json
import os
import pathlib
import re

import pytest

NB_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))

# what each executed notebook must show besides running cleanly
EXPECT = {
    "01_data.ipynb": set(),
    "02_embeddings.ipynb": {"html"},                      # show_batch
    "03_dot_product.ipynb": {"epoch_table", "png"},       # sigmoid_range, plot_loss
    "04_from_scratch.ipynb": {"epoch_table"},
    "05_interpretation.ipynb": {"epoch_table", "png"},    # the PCA map of the movies
    "06_collab_learner.ipynb": {"epoch_table", "png"},    # plot_loss, plot_pca
    "07_bootstrapping.ipynb": {"epoch_table", "png"},     # recommendation concentration
    "08_neural.ipynb": {"epoch_table"},
    "09_scale.ipynb": {"epoch_table", "html"},            # needs collabc[ray]: skipped without it
    "10_implicit.ipynb": {"ranking_table"},               # implicit_learner's table: ranking metrics
    "11_bayes.ipynb": {"epoch_table"},
}


def _load(name):
    "notebooks/<name>.py as a module (notebooks/ is not a package)."
    spec = importlib.util.spec_from_file_location(f"_collabc_notebooks_{name}", NB_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _clean(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_every_notebook_is_listed():
    assert {p.name for p in NOTEBOOKS} == set(EXPECT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    stale = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not stale, f"{path.name} is committed with outputs in code cells {stale}; clear them"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_notebooks_match_their_generator():
    pytest.importorskip("nbformat")
    stale = _load("make_notebooks").stale_notebooks(NB_DIR)
    assert not stale, f"run `python notebooks/make_notebooks.py`: {stale} differ from it"


def _has_epoch_table(html):
    return '<table border="1" class="dataframe">' in html and "<th>train_loss</th>" in html \
        and "<th>valid_loss</th>" in html


# notebooks that start a local Ray run in the worker of tests/test_ray.py (one Ray at a time)
RUNS = [pytest.param(p, marks=pytest.mark.xdist_group("ray")) if "collabc.ray" in p.read_text() else p
        for p in NOTEBOOKS]


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not os.environ.get("COLLABC_DATA"):
        pytest.skip("COLLABC_DATA is not set (the notebooks read MovieLens-100k)")
    if path.name == "09_scale.ipynb" and not os.environ.get("COLLABC_REQUIRE_RAY") \
            and importlib.util.find_spec("ray") is None:
        pytest.skip('09_scale needs collabc[ray] (pip install "collabc[ray]")')
    render = _load("render")
    nb, seconds, error = render.execute(path, cwd=tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    tracebacks = [_clean("\n".join(o.get("traceback", []))) for o in outputs if o.output_type == "error"]
    assert error is None and not tracebacks, "\n\n".join(tracebacks) or _clean(str(error))

    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    png = [o for o in outputs if "image/png" in o.get("data", {})]
    expect = EXPECT.get(path.name, set())
    if "epoch_table" in expect:
        # the epoch table renders as fastai's HTML table in Jupyter
        assert any(_has_epoch_table(h) for h in html), f"{path.name}: no HTML epoch table"
    if "ranking_table" in expect:   # an implicit learner's table: train_loss and ranking metrics
        assert any("<th>train_loss</th>" in h and "<th>ndcg@10</th>" in h for h in html), \
            f"{path.name}: no HTML epoch table with ranking metrics"
    if "html" in expect:
        assert html, f"{path.name}: no HTML output"
    if "png" in expect:
        assert png, f"{path.name}: no figure (image/png output)"

    if importlib.util.find_spec("nbconvert") is None:   # the HTML is checked where nbconvert is (CI)
        return
    page = render.to_html(nb)
    if "png" in expect:
        assert "data:image/png;base64," in page, f"{path.name}: the HTML page lacks its figures"
    if "epoch_table" in expect:
        assert "<th>train_loss</th>" in page
