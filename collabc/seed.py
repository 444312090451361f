"""One source of randomness for collabc: split, initialisation and shuffling.

`set_seed(n)` re-seeds the global NumPy generator that every collabc component draws from
(and, for the user's own code, Python's `random` and `np.random`), so the same seed gives the
same split, the same initial parameters and the same batch order, hence identical losses.
"""
import contextlib
import random

import numpy as np

from ._checks import is_int

__all__ = ["set_seed", "get_rng", "new_seed", "preserve_rng"]

_rng = np.random.default_rng()


def set_seed(s, reproducible=True):
    "Seed collabc's generator, Python's `random` and `np.random` with the integer `s`."
    global _rng
    if not (is_int(s) and s >= 0):
        raise ValueError(f"set_seed: s must be a non-negative integer, got {s!r}")
    s = int(s)
    _rng = np.random.default_rng(int(s))
    random.seed(int(s))
    np.random.seed(int(s) % 2**32)


def new_seed():
    "A seed for one component, drawn from the global generator (what `get_rng()` seeds its child with)."
    return int(_rng.integers(0, 2**63 - 1))


def get_rng(seed=None):
    "A generator for one component: a fresh one from `seed` when given, else a child of the global one."
    if seed is not None:
        if not (is_int(seed) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        return np.random.default_rng(int(seed))
    return np.random.default_rng(new_seed())


@contextlib.contextmanager
def preserve_rng():
    "Within this context collabc's global generator may be drawn from; its state is restored after."
    state = _rng.bit_generator.state
    try:
        yield
    finally:
        _rng.bit_generator.state = state
