"""Argument checks shared by every module: one definition of "a positive integer", "a finite
number in a range", "a probability", so that every public function rejects bad input with the
same kind of message (the argument's name, what was expected, what was given).

TypeError for the wrong kind of value, ValueError for a value out of range.
"""
import math
import numbers

import numpy as np

__all__ = ["is_int", "check_int", "check_float", "check_prob", "check_y_range"]


def is_int(v):
    "True for Python and NumPy integers (not booleans)."
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_int(name, v, lo=None, hi=None, kind_error=TypeError):
    """`v` as an int, after checking it is an integer (`kind_error`, TypeError by default,
    otherwise) within [lo, hi] (ValueError otherwise; None leaves that side open)."""
    if not is_int(v):
        raise kind_error(f"{name} must be an integer{_range_words(lo, hi)}, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer{_range_words(lo, hi)}, got {v!r}")
    return int(v)


def _range_words(lo, hi):
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def check_float(name, v, lo=None, hi=None, lo_open=False, hi_open=False, kind_error=TypeError):
    """`v` as a finite float (`kind_error`, TypeError by default, if it is not a real number,
    ValueError if it is not finite or outside the interval from lo to hi, each end closed
    unless `*_open`)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
        raise kind_error(f"{name} must be a number, got {v!r}")
    f = float(v)
    bad = (not math.isfinite(f) or (lo is not None and (f < lo or (lo_open and f == lo)))
           or (hi is not None and (f > hi or (hi_open and f == hi))))
    if bad:
        if lo is not None and hi is not None:
            what = f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        elif lo is not None:
            what = f" {'>' if lo_open else '>='} {lo}"
        elif hi is not None:
            what = f" {'<' if hi_open else '<='} {hi}"
        else:
            what = ""
        raise ValueError(f"{name} must be a finite number{what}, got {v!r}")
    return f


def check_prob(name, p):
    "A dropout-style probability in [0, 1)."
    try:
        return check_float(name, p, 0.0, 1.0, hi_open=True)
    except TypeError:
        raise TypeError(f"{name} must be a dropout probability, got {p!r}") from None
    except ValueError:
        raise ValueError(f"{name} must be a dropout probability in [0, 1), got {p!r}") from None


def check_y_range(y_range):
    "None, or a (low, high) pair of finite floats with low < high."
    if y_range is None:
        return None
    try:
        lo, hi = (float(v) for v in y_range)
    except (TypeError, ValueError):
        raise TypeError(f"y_range must be None or a (low, high) pair of numbers, got {y_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"y_range must be finite with low < high, got {y_range!r}")
    return (lo, hi)
