"""Shared fixtures: MovieLens-100k from the folder named by COLLABC_DATA (CI points it at
shared/data; tests that need it skip with the reason when it is unset), and small synthetic
ratings that need no files."""
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
