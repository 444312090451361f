"""Collaborative-filtering models whose parameters live in one float32 block.

Every model keeps all its parameters in one contiguous NumPy float32 array (`model.params`);
the named tables (`u_weight.weight`, `i_bias.weight`, ...) are views into it, so editing a
view edits the model. Parameters that take weight decay come first (`model.n_wd` of them).
Training runs in C one epoch per call (`csrc/train.c`); prediction too.

* `EmbeddingDotBias` - fastai's dot-product model with user/item biases and optional y_range.
* `DotProduct`, `DotProductBias` - the lesson's step-by-step versions (fastbook chapter 8).
"""
import numpy as np

from . import _core
from .seed import get_rng

__all__ = ["Embedding", "Module", "EmbeddingDotBias", "DotProduct", "DotProductBias",
           "trunc_normal_", "sigmoid_range", "create_params"]


def _check_int(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    if v >= 2**31:
        raise ValueError(f"{name} must be < 2**31, got {v}")
    return int(v)


def _check_y_range(y_range):
    if y_range is None:
        return None
    try:
        lo, hi = (float(v) for v in y_range)
    except (TypeError, ValueError):
        raise TypeError(f"y_range must be None or a (low, high) pair of numbers, got {y_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or not lo < hi:
        raise ValueError(f"y_range must be finite with low < high, got {y_range!r}")
    return (lo, hi)


def trunc_normal_(x, std=0.01, rng=None):
    """fastai's `trunc_normal_` in place: N(0, 1) wrapped by fmod 2 (not resampled), times std."""
    rng = get_rng() if rng is None else rng
    x[...] = np.fmod(rng.standard_normal(x.shape, dtype=np.float32), 2.0) * np.float32(std)
    return x


def create_params(size, std=0.01, rng=None):
    "The book's `create_params`: a float32 array of `size` from normal(0, std)."
    rng = get_rng() if rng is None else rng
    return (rng.standard_normal(size) * std).astype(np.float32)


def sigmoid_range(x, low, high):
    "Sigmoid scaled to (low, high), in NumPy: `sigmoid(x) * (high - low) + low`."
    x = np.asarray(x, dtype=np.float32)
    return (1 / (1 + np.exp(-x))) * np.float32(high - low) + np.float32(low)


class Embedding:
    "One embedding table: `weight` is a (ni, nf) float32 view into its model's parameter block."
    def __init__(self, weight):
        self.weight = weight

    @property
    def num_embeddings(self):
        return self.weight.shape[0]

    @property
    def embedding_dim(self):
        return self.weight.shape[1]

    def __repr__(self):
        return f"Embedding({self.weight.shape[0]}, {self.weight.shape[1]})"


class Module:
    """Base of collabc models: a layout of named tensors in one parameter block.

    Subclasses call `_build(layout)` with (attribute, fastai state-dict name, shape, decayed)
    entries, then fill the parameters, and implement `_fit_epoch` and `_predict`.
    """
    training = True

    def _build(self, layout):
        decayed = [e for e in layout if e[3]]
        rest = [e for e in layout if not e[3]]
        order = decayed + rest
        sizes = [int(np.prod(e[2])) for e in order]
        self.params = np.zeros(sum(sizes), np.float32)
        self.n_wd = sum(int(np.prod(e[2])) for e in decayed)
        self._names, off = [], 0
        for (attr, name, shape, _), n in zip(order, sizes):
            view = self.params[off:off + n].reshape(shape)
            off += n
            self._names.append((name, view))
            if attr:
                setattr(self, attr, Embedding(view))
        self._layout = [(e[1], tuple(e[2]), e[3]) for e in order]

    @property
    def n_params(self):
        return self.params.size

    def named_parameters(self):
        "(fastai state-dict name, view) pairs, in block order."
        return list(self._names)

    def parameters(self):
        return [v for _, v in self._names]

    def state_dict(self):
        "Copies of every tensor under fastai's state-dict names."
        return {name: v.copy() for name, v in self._names}

    def load_state_dict(self, sd):
        "Copy tensors in from a dict name -> array; every name and shape must match."
        sd = dict(sd)
        names = [n for n, _ in self._names]
        missing = [n for n in names if n not in sd]
        extra = [n for n in sd if n not in names]
        if missing or extra:
            raise KeyError(f"state dict does not match the model: missing {missing}, unexpected {extra}")
        for name, view in self._names:
            a = np.asarray(sd[name])
            if a.shape != view.shape:
                raise ValueError(f"state dict entry {name!r} has shape {a.shape}, the model's is {view.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"state dict entry {name!r} holds NaN or inf")
        for name, view in self._names:
            view[...] = np.asarray(sd[name], dtype=np.float32)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x):
        "Predictions for x, an (N, 2) array of encoded (user, item) indices."
        return self._predict(_as_index_pairs(x))

    def __repr__(self):
        inner = "\n".join(f"  ({a}): {getattr(self, a)!r}" for a in self._attrs)
        return f"{type(self).__name__}(\n{inner}\n)"


def _as_index_pairs(x, name="x"):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) of (user, item) indices, got {x.shape}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer indices, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= 2**31):
        raise IndexError(f"{name} holds indices outside [0, 2**31)")
    return np.ascontiguousarray(x, dtype=np.int32)


class _DotFamily(Module):
    "Shared machinery of the dot-product models (one C driver for all of them)."
    _attr_names = ("u_weight", "i_weight", "u_bias", "i_bias")

    def _setup(self, n_factors, n_users, n_items, y_range, bias, init):
        self.n_factors = _check_int("n_factors", n_factors)
        self.n_users = _check_int("n_users", n_users)
        self.n_items = _check_int("n_items", n_items)
        self.y_range = _check_y_range(y_range)
        self.has_bias = bool(bias)
        uw, iw, ub, ib = self._attr_names
        layout = [(uw, f"{uw}.weight", (self.n_users, self.n_factors), True),
                  (iw, f"{iw}.weight", (self.n_items, self.n_factors), True)]
        if self.has_bias:
            layout += [(ub, f"{ub}.weight", (self.n_users, 1), True),
                       (ib, f"{ib}.weight", (self.n_items, 1), True)]
        self._build(layout)
        self._attrs = [e[0] for e in layout]
        rng = get_rng()
        for _, view in self._names:  # fastai's creation order: u_weight, i_weight, u_bias, i_bias
            if init == "trunc_normal":
                trunc_normal_(view, 0.01, rng)
            elif init == "normal":
                view[...] = create_params(view.shape, 0.01, rng)
            else:
                raise ValueError(f"init must be 'trunc_normal' or 'normal', got {init!r}")

    def _core_args(self):
        return dict(n_users=self.n_users, n_items=self.n_items, n_factors=self.n_factors,
                    has_bias=self.has_bias, y_range=self.y_range)

    def _predict(self, x):
        out = np.empty(len(x), np.float32)
        a = self._core_args()
        _core.dot_predict(out, self.params, x, a["n_users"], a["n_items"], a["n_factors"],
                          a["has_bias"], a["y_range"])
        return out

    def _fit_epoch(self, opt, grads, x, y, order, bs, lrs, moms, losses):
        "One epoch in C; returns the index of a batch whose loss was not finite, or -1."
        h = opt.hypers
        step, bad = _core.dot_fit_epoch(
            self.params, grads, opt.m, opt.v, losses, x, y, order, lrs, moms, bs=bs,
            opt=opt.kind, wd=h["wd"], n_wd=self.n_wd, sqr_mom=h.get("sqr_mom", 0.0),
            eps=h.get("eps", 1.0), decouple_wd=h["decouple_wd"], step=opt.step_count,
            **self._core_args())
        opt.step_count = step
        return bad

    def _ids(self, arr, is_item):
        "Indices of raw ids (labels) through the classes the model was built from."
        if getattr(self, "classes", None) is None:
            raise ValueError("bias()/weight() need a model built with from_classes "
                             "(they translate labels through its classes)")
        name = self.item if is_item else self.user
        o2i = self.classes[name].o2i
        arr = list(np.atleast_1d(np.asarray(arr, dtype=object)))
        unknown = [o for o in arr if o not in o2i]
        if unknown:
            raise KeyError(f"You're trying to access {'an item' if is_item else 'a user'} that isn't "
                           f"in the training data. If it was in your original data, it may have been "
                           f"split such that it's only in the validation set now. Unknown: {unknown[:10]!r}")
        return np.array([o2i[o] for o in arr], dtype=np.int64)

    def bias(self, arr, is_item=True):
        "Biases of the raw ids in `arr` (items by default), as a float32 array."
        if not self.has_bias:
            raise AttributeError(f"{type(self).__name__} has no biases")
        tab = getattr(self, self._attr_names[3] if is_item else self._attr_names[2]).weight
        return tab[self._ids(arr, is_item), 0].copy()

    def weight(self, arr, is_item=True):
        "Factors of the raw ids in `arr` (items by default), as a (len(arr), n_factors) array."
        tab = getattr(self, self._attr_names[1] if is_item else self._attr_names[0]).weight
        return tab[self._ids(arr, is_item)].copy()


class EmbeddingDotBias(_DotFamily):
    """fastai's `EmbeddingDotBias`: `sum(u_weight[u] * i_weight[i]) + u_bias[u] + i_bias[i]`,
    squashed by `sigmoid_range` when `y_range` is given. All four tables start from fastai's
    truncated normal (std 0.01) and all four take weight decay."""
    def __init__(self, n_factors, n_users, n_items, y_range=None):
        self._setup(n_factors, n_users, n_items, y_range, bias=True, init="trunc_normal")
        self.classes = None

    @classmethod
    def from_classes(cls, n_factors, classes, user=None, item=None, y_range=None):
        "Build from `dls.classes`; `user`/`item` default to its first and second key."
        keys = list(classes)
        if len(keys) < 2 and (user is None or item is None):
            raise ValueError(f"classes must name a user and an item column, got keys {keys}")
        user = keys[0] if user is None else user
        item = keys[1] if item is None else item
        for k in (user, item):
            if k not in classes:
                raise KeyError(f"{k!r} is not a key of classes {keys}")
        res = cls(n_factors, len(classes[user]), len(classes[item]), y_range=y_range)
        res.classes, res.user, res.item = classes, user, item
        return res


class DotProduct(_DotFamily):
    """The book's first model: `(user_factors[u] * movie_factors[i]).sum()`, optionally through
    `sigmoid_range(*y_range)`. No biases."""
    _attr_names = ("user_factors", "movie_factors", "user_bias", "movie_bias")

    def __init__(self, n_users, n_movies, n_factors, y_range=None):
        self._setup(n_factors, n_users, n_movies, y_range, bias=False, init="trunc_normal")


class DotProductBias(_DotFamily):
    """The book's `DotProductBias`: dot product plus user and movie biases, through
    `sigmoid_range(*y_range)`. `init='normal'` gives the book's `create_params` version."""
    _attr_names = ("user_factors", "movie_factors", "user_bias", "movie_bias")

    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5), init="trunc_normal"):
        self._setup(n_factors, n_users, n_movies, y_range, bias=True, init=init)
