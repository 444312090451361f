"""The two fastcore helpers the lesson uses: `L`, a list whose repr shows its length, and
`delegates`, which puts the parameters a subclass passes on through `**kwargs` into its
signature (so `EmbeddingNN`'s signature lists `TabularModel`'s keyword arguments)."""
import inspect
import itertools
import operator

import numpy as np

__all__ = ["L", "coll_repr", "delegates"]


def coll_repr(c, max_n=10):
    "fastcore's repr of a collection: `(#3) [a,b,c]`, at most max_n items shown."
    return f"(#{len(c)}) [" + ",".join(itertools.islice(map(repr, c), max_n)) + \
        ("..." if len(c) > max_n else "") + "]"


def _listify(o):
    if o is None:
        return []
    if isinstance(o, list):
        return o
    if isinstance(o, (str, bytes, dict)) or not hasattr(o, "__iter__"):
        return [o]
    return list(o)


class L(list):
    """fastcore's `L`: a list that can also be indexed by a list of indices or a bool mask,
    with `map`, `filter`, `concat`, `attrgot`; its repr is `(#n) [...]`."""

    def __init__(self, items=None, *rest):
        super().__init__(_listify(items) + list(rest))

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return L(list.__getitem__(self, idx))
        if isinstance(idx, int) or (hasattr(idx, "__index__") and getattr(idx, "ndim", 1) == 0):
            return list.__getitem__(self, operator.index(idx))
        idx = list(idx)
        if idx and all(isinstance(i, (bool, np.bool_)) for i in idx):
            if len(idx) != len(self):
                raise IndexError(f"a mask of {len(idx)} values cannot index an L of {len(self)} items")
            return L([o for o, m in zip(self, idx) if m])
        return L([list.__getitem__(self, operator.index(i)) for i in idx])

    def __repr__(self):
        return coll_repr(self)

    def _repr_pretty_(self, p, cycle):
        p.text("..." if cycle else coll_repr(self))

    def __add__(self, other):
        return L(list(self) + _listify(other))

    def __radd__(self, other):
        return L(_listify(other) + list(self))

    def __mul__(self, n):
        return L(list(self) * n)

    def map(self, f, *args, **kwargs):
        return L([f(o, *args, **kwargs) for o in self])

    def filter(self, f, negate=False):
        return L([o for o in self if bool(f(o)) != negate])

    def concat(self):
        return L([x for o in self for x in _listify(o)])

    def attrgot(self, k, default=None):
        return L([getattr(o, k, default) for o in self])

    def itemgot(self, i):
        return L([o[i] for o in self])

    def enumerate(self):
        return L(list(enumerate(self)))

    def unique(self):
        seen, out = set(), []
        for o in self:
            if o not in seen:
                seen.add(o)
                out.append(o)
        return L(out)

    def sorted(self, key=None, reverse=False):
        return L(sorted(self, key=key, reverse=reverse))

    def sum(self):
        return sum(self)


def delegates(to=None, keep=False, but=None):
    """fastcore's `delegates`: replace `**kwargs` in the decorated function's (or class's)
    signature by the keyword parameters (those with defaults) of `to` (a function or a class,
    whose `__init__` is used); with no `to`, the base class's `__init__`. `keep` keeps `**kwargs`."""
    but = set(but or ())

    def _f(f):
        if to is None:
            to_f, from_f = f.__base__.__init__, f.__init__
        else:
            to_f, from_f = (to.__init__ if isinstance(to, type) else to), f
        from_f = getattr(from_f, "__func__", from_f)
        to_f = getattr(to_f, "__func__", to_f)
        if hasattr(from_f, "__delwrap__"):
            return f
        sig = inspect.signature(from_f)
        sigd = dict(sig.parameters)
        if "kwargs" not in sigd:
            raise TypeError(f"delegates: {getattr(from_f, '__qualname__', from_f)} has no **kwargs to replace")
        k = sigd.pop("kwargs")
        extra = {n: p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                 for n, p in inspect.signature(to_f).parameters.items()
                 if p.default is not inspect.Parameter.empty and n not in sigd and n not in but}
        sigd.update(extra)
        if keep:
            sigd["kwargs"] = k
        else:
            from_f.__delwrap__ = to_f
        from_f.__signature__ = sig.replace(parameters=list(sigd.values()))
        return f
    return _f
