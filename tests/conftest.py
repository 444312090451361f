"""Shared fixtures: MovieLens-100k from the folder named by COLLABC_DATA (CI points it at
shared/data; tests that need it skip with the reason when it is unset), fastai's recorded epochs
(from COLLABC_REFERENCE, or rebuilt from the committed row numbers and COLLABC_DATA), and small
synthetic ratings that need no files."""
import os
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest

# the float64 references (reference.py, reference_nn.py, reference_sparse.py) live beside the
# tests and are imported by name from every test file
sys.path.insert(0, str(pathlib.Path(__file__).parent))


def ml100k_path():
    root = os.environ.get("COLLABC_DATA")
    if not root:
        pytest.skip("COLLABC_DATA is not set (point it at a folder holding ml-100k/)")
    p = pathlib.Path(root) / "ml-100k"
    if not (p / "u.data").exists():
        pytest.skip(f"{p / 'u.data'} does not exist")
    return p


@pytest.fixture(scope="session")
def ml100k_ratings():
    "The lesson's frame: u.data merged with titles from u.item."
    p = ml100k_path()
    ratings = pd.read_csv(p / "u.data", delimiter="\t", header=None,
                          names=["user", "movie", "rating", "timestamp"])
    movies = pd.read_csv(p / "u.item", delimiter="|", encoding="latin-1", usecols=(0, 1),
                         names=("movie", "title"), header=None)
    return ratings.merge(movies)


@pytest.fixture
def synth_ratings():
    "2,000 ratings of 60 users on 40 items from a planted rank-2 model, rounded to 1..5."
    rng = np.random.default_rng(7)
    nu, ni, n = 60, 40, 2000
    u = rng.integers(1, nu + 1, n)
    i = rng.integers(1, ni + 1, n)
    pu, qi = rng.normal(size=(nu + 1, 2)), rng.normal(size=(ni + 1, 2))
    r = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) + rng.normal(0, 0.3, n)), 1, 5)
    return pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.int64)})


# ---------------------------------------------------------------- fastai's recorded trajectories
def _golden(model):
    """fastai's recorded epoch of `model` ('dot' or 'nn'): the shared recording
    $COLLABC_REFERENCE/fastai_golden_<model>.npz when COLLABC_REFERENCE is set, else rebuilt from
    the committed tests/data/fastai_replay.npz and $COLLABC_DATA/ml-100k/u.data (tests/replay.py)."""
    folder = os.environ.get("COLLABC_REFERENCE")
    if folder:
        f = pathlib.Path(folder) / f"fastai_golden_{model}.npz"
        if not f.exists():
            pytest.skip(f"{f} does not exist (COLLABC_REFERENCE must be the folder of fastai_golden_*.npz)")
        return np.load(f)
    if not os.environ.get("COLLABC_DATA"):
        pytest.skip("COLLABC_DATA is not set: the fastai replay rebuilds fastai's batches from "
                    "ml-100k/u.data (point COLLABC_DATA at a folder holding ml-100k/)")
    from replay import rebuild
    return rebuild(model, ml100k_path())


@pytest.fixture(scope="session")
def golden_dot():
    "fastai_golden_dot.npz: one recorded epoch of collab_learner(n_factors=8)."
    return _golden("dot")


@pytest.fixture(scope="session")
def golden_nn():
    "fastai_golden_nn.npz: one recorded epoch of collab_learner(use_nn=True, layers=[16, 8])."
    return _golden("nn")


@pytest.fixture
def golden_dls():
    "Builds DataLoaders that serve a golden file's batches in fastai's recorded order."
    from collabc import CategoryMap, DataLoader, DataLoaders

    def make(d):
        nu, ni = int(d["n_users"]), int(d["n_items"])
        x = d["batch_x"].reshape(-1, 2).astype(np.int32)
        y = d["batch_y"].reshape(-1).astype(np.float32)
        train = DataLoader(x, y, bs=64, shuffle=True)
        train.order = lambda rng=None: np.arange(len(y), dtype=np.int64)  # fastai's recorded batch order
        valid = DataLoader(d["valid_x"].astype(np.int32), d["valid_y"].astype(np.float32), bs=64)
        classes = {"user": CategoryMap(range(1, nu)), "title": CategoryMap(range(1, ni))}
        return DataLoaders(train, valid, classes, "user", "title", "rating")
    return make
