"""Collaborative-filtering models whose parameters live in one float32 block.

Every model keeps all its parameters in one contiguous NumPy float32 array (`model.params`);
the named tables (`u_weight.weight`, `i_bias.weight`, ...) are views into it, so editing a
view edits the model. Parameters that take weight decay come first (`model.n_wd` of them).
Training runs in C one epoch per call (`csrc/train.c`); prediction too.

* `EmbeddingDotBias` - fastai's dot-product model with user/item biases and optional y_range.
* `DotProduct`, `DotProductBias` - the lesson's step-by-step versions (fastbook chapter 8).
* `EmbeddingNN` (= fastai's `TabularModel` on embeddings only) and the book's `CollabNN` - the
  neural models: embeddings concatenated, then Linear/ReLU/BatchNorm/Dropout blocks.
"""
import numpy as np

from . import _core
from ._checks import check_int, check_prob, check_y_range
from .seed import get_rng, preserve_rng

__all__ = ["Embedding", "Module", "EmbeddingDotBias", "DotProduct", "DotProductBias",
           "trunc_normal_", "sigmoid_range", "create_params", "emb_sz_rule", "get_emb_sz",
           "tabular_config", "EmbeddingNN", "TabularModel", "CollabNN"]


def _check_int(name, v, lo=1):
    return check_int(name, v, lo, 2**31 - 1)


_check_y_range = check_y_range


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
    """One embedding table: `weight` is a (ni, nf) float32 view into its model's parameter block.
    Assigning `emb.weight = array` copies the values into the model (shape must match), as
    editing the view in place does; it never detaches the table from the model."""
    def __init__(self, weight):
        self._weight = weight

    @property
    def weight(self):
        return self._weight

    @weight.setter
    def weight(self, value):
        a = np.asarray(value)
        if a.shape != self._weight.shape:
            raise ValueError(f"weight must have shape {self._weight.shape}, got {a.shape}")
        if a.dtype.kind not in "fiu":
            raise TypeError(f"weight must hold numbers, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError("weight holds NaN or inf")
        self._weight[...] = a

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

    def _build(self, layout, offsets=None, total=None):
        """Allocates the block: decayed tensors first, in layout order, unless `offsets`
        ({name: offset}) and `total` place them (the dot models take theirs from the C core)."""
        decayed = [e for e in layout if e[3]]
        rest = [e for e in layout if not e[3]]
        order = decayed + rest
        sizes = [int(np.prod(e[2])) for e in order]
        self.params = np.zeros(sum(sizes) if total is None else total, np.float32)
        self.n_wd = sum(int(np.prod(e[2])) for e in decayed)
        self._names, self._offsets, off = [], {}, 0
        for (attr, name, shape, _), n in zip(order, sizes):
            if offsets is not None:
                off = offsets[name]
            view = self.params[off:off + n].reshape(shape)
            self._offsets[name] = off
            off += n
            self._names.append((name, view))
            if attr:
                setattr(self, attr, Embedding(view))
        self._layout = [(e[1], tuple(e[2]), e[3]) for e in order]
        self.stats = np.zeros(0, np.float32)
        self._stat_names = []

    def _build_stats(self, entries):
        "Buffers that are not trained (BatchNorm running statistics): (name, size, fill) entries."
        self.stats = np.zeros(sum(n for _, n, _ in entries), np.float32)
        self._stat_names, self._stat_offsets, off = [], {}, 0
        for name, n, fill in entries:
            view = self.stats[off:off + n]
            view[:] = fill
            self._stat_offsets[name] = off
            self._stat_names.append((name, view))
            off += n

    @property
    def n_params(self):
        return self.params.size

    def named_parameters(self):
        "(fastai state-dict name, view) pairs, in block order."
        return list(self._names)

    def parameters(self):
        return [v for _, v in self._names]

    def state_dict(self):
        "Copies of every tensor (parameters and buffers) under fastai's state-dict names."
        return {name: v.copy() for name, v in self._names + self._stat_names}

    def load_state_dict(self, sd):
        "Copy tensors in from a dict name -> array; every name and shape must match."
        sd = dict(sd)
        tensors = self._names + self._stat_names
        names = [n for n, _ in tensors]
        missing = [n for n in names if n not in sd]
        extra = [n for n in sd if n not in names]
        if missing or extra:
            raise KeyError(f"state dict does not match the model: missing {missing}, unexpected {extra}")
        for name, view in tensors:
            a = np.asarray(sd[name])
            if a.shape != view.shape:
                raise ValueError(f"state dict entry {name!r} has shape {a.shape}, the model's is {view.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"state dict entry {name!r} holds NaN or inf")
        for name, view in tensors:
            view[...] = np.asarray(sd[name], dtype=np.float32)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    @classmethod
    def from_config(cls, config, classes=None):
        """Rebuild a model from `get_config()` output: same class and constructor arguments,
        parameters as freshly initialised (load them with `load_state_dict`). Draws its
        initial values without moving collabc's global random stream. `classes` (a dict of
        `CategoryMap`) is attached when the config names a user and an item key."""
        if not isinstance(config, dict) or config.get("class") != cls.__name__:
            raise ValueError(f"config is for {config.get('class') if isinstance(config, dict) else config!r}, "
                             f"not {cls.__name__}")
        args = config.get("args")
        if not isinstance(args, dict):
            raise ValueError(f"config['args'] must be a dict of constructor arguments, got {args!r}")
        with preserve_rng():
            model = cls(**args)
        if classes is not None and config.get("user") is not None:
            for k in (config["user"], config["item"]):
                if k not in classes:
                    raise KeyError(f"config names the column {k!r}, which is not a key of classes {list(classes)}")
            model.classes, model.user, model.item = classes, config["user"], config["item"]
        return model

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
        # the block's layout is the C core's (csrc/train.h cf_dot_offsets), all of it decayed
        attrs = dict(zip(("u_weight", "i_weight", "u_bias", "i_bias"), self._attr_names))
        tables, total = _core.dot_layout(self.n_users, self.n_items, self.n_factors, self.has_bias)
        layout = [(attrs[c], f"{attrs[c]}.weight", shape, True) for c, _, shape in tables]
        self._build(layout, {f"{attrs[c]}.weight": off for c, off, _ in tables}, total)
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

    def _fit_epoch(self, opt, grads, x, y, order, bs, lrs, moms, losses, n_wd=None):
        "One epoch in C; returns the index of a batch whose loss was not finite, or -1."
        h = opt.hypers
        step, bad = _core.dot_fit_epoch(
            self.params, grads, opt.m, opt.v, losses, x, y, order, lrs, moms, bs=bs,
            opt=opt.kind, wd=h["wd"], n_wd=self.n_wd if n_wd is None else n_wd, sqr_mom=h.get("sqr_mom", 0.0),
            eps=h.get("eps", 1.0), decouple_wd=h["decouple_wd"], step=opt.step_count,
            **self._core_args())
        opt.step_count = step
        return bad

    def _fit_blocks(self, opt, x, y, starts, blocks, lrs, moms, losses, n_threads):
        """The sparse path (csrc/sparse.c): trains the listed blocks of block-sorted x / y with
        the optimizer's own buffers (see `SparsePath.prepare_opt`); returns the position of a
        block whose error was not finite, or -1."""
        h, st = opt.hypers, opt.state
        return _core.dot_fit_blocks(
            self.params, losses, x, y, starts, blocks, lrs, moms, opt=opt.kind, m=st.get("m"),
            v=st.get("v"), pow1=st.get("pow1"), pow2=st.get("pow2"), wd=h["wd"],
            sqr_mom=h.get("sqr_mom", 0.0), eps=h.get("eps", 1e-8),
            n_threads=n_threads, **self._core_args())

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

    def get_config(self):
        """A JSON-able description that rebuilds this model with `from_config`: the class name,
        its constructor arguments (`args`) and, for a `from_classes` model, the `user`/`item`
        keys of its classes (the classes themselves are stored apart)."""
        cfg = {"class": type(self).__name__, "args": self._init_args()}
        if getattr(self, "classes", None) is not None:
            cfg["user"], cfg["item"] = self.user, self.item
        return cfg

    def _init_args(self):
        y = None if self.y_range is None else [self.y_range[0], self.y_range[1]]
        return {"n_factors": self.n_factors, "n_users": self.n_users, "n_items": self.n_items,
                "y_range": y}


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

    def _init_args(self):
        a = super()._init_args()
        return {"n_users": a["n_users"], "n_movies": a["n_items"], "n_factors": a["n_factors"],
                "y_range": a["y_range"]}


class DotProductBias(_DotFamily):
    """The book's `DotProductBias`: dot product plus user and movie biases, through
    `sigmoid_range(*y_range)`. `init='normal'` gives the book's `create_params` version."""
    _attr_names = ("user_factors", "movie_factors", "user_bias", "movie_bias")

    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5), init="trunc_normal"):
        self._setup(n_factors, n_users, n_movies, y_range, bias=True, init=init)
        self.init = init

    def _init_args(self):
        a = super()._init_args()
        return {"n_users": a["n_users"], "n_movies": a["n_items"], "n_factors": a["n_factors"],
                "y_range": a["y_range"], "init": self.init}


# ---------------------------------------------------------------------------------------------
# neural models

_LINEAR, _RELU, _BATCHNORM, _DROPOUT = 0, 1, 2, 3


def emb_sz_rule(n_cat):
    "fastai's rule of thumb for an embedding size: `min(600, round(1.6 * n_cat**0.56))`."
    n_cat = _check_int("n_cat", n_cat)
    return min(600, round(1.6 * n_cat ** 0.56))


def get_emb_sz(dls, sz_dict=None):
    "`[(n_classes, size)]` for `dls.cat_names` (user then item), `sz_dict` overriding by name."
    sz_dict = {} if sz_dict is None else dict(sz_dict)
    names = list(getattr(dls, "cat_names", list(dls.classes)))
    unknown = [k for k in sz_dict if k not in names]
    if unknown:
        raise KeyError(f"emb_szs names {unknown} that are not columns of the data ({names})")
    return [(len(dls.classes[n]), _check_int(f"emb_szs[{n!r}]", sz_dict[n]) if n in sz_dict
             else int(emb_sz_rule(len(dls.classes[n])))) for n in names]


def tabular_config(ps=None, embed_p=0.0, y_range=None, use_bn=True, bn_final=False, bn_cont=True,
                   act_cls=None, lin_first=True):
    "fastai's `tabular_config`: the keyword arguments of `EmbeddingNN` as a dict."
    return dict(ps=ps, embed_p=embed_p, y_range=y_range, use_bn=use_bn, bn_final=bn_final,
                bn_cont=bn_cont, act_cls=act_cls, lin_first=lin_first)


_check_p = check_prob


def _kaiming_uniform(rng, shape, fan_in):
    "PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5))."
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


class _NNModel(Module):
    """Embedding tables concatenated, then a list of ops run by the C driver (csrc/nn.c).

    `_setup_nn(tables, ops, y_range)`: tables are (name, rows, dim); ops are tuples
    ('linear', prefix, n_in, n_out, bias) | ('relu', n) | ('bn', prefix, n) | ('dropout', n, p).
    Embeddings and Linear weights take weight decay; Linear biases and BatchNorm do not
    (fastai's wd_bn_bias=False; `Learner(wd_bn_bias=True)` decays them too)."""

    def _setup_nn(self, tables, ops, y_range, bn_momentum=0.1, bn_eps=1e-5):
        self.y_range = _check_y_range(y_range)
        self.bn_momentum, self.bn_eps = bn_momentum, bn_eps
        layout, stats = [], []
        for name, rows, dim in tables:
            layout.append((None, f"{name}.weight", (rows, dim), True))
        for op in ops:
            if op[0] == "linear":
                _, pre, n_in, n_out, bias = op
                layout.append((None, f"{pre}.weight", (n_out, n_in), True))
                if bias:
                    layout.append((None, f"{pre}.bias", (n_out,), False))
            elif op[0] == "bn":
                _, pre, n = op
                layout += [(None, f"{pre}.weight", (n,), False), (None, f"{pre}.bias", (n,), False)]
                stats += [(f"{pre}.running_mean", n, 0.0), (f"{pre}.running_var", n, 1.0)]
        self._build(layout)
        self._build_stats(stats)
        views = dict(self._names)
        rng = get_rng()
        self._drop_rng = get_rng()
        for name, rows, dim in tables:
            trunc_normal_(views[f"{name}.weight"], 0.01, rng)
        rows = []
        for op in ops:
            if op[0] == "linear":
                _, pre, n_in, n_out, bias = op
                views[f"{pre}.weight"][...] = _kaiming_uniform(rng, (n_out, n_in), n_in)
                if bias:
                    views[f"{pre}.bias"][...] = _kaiming_uniform(rng, (n_out,), n_in)
                rows.append((_LINEAR, n_in, n_out, self._offsets[f"{pre}.weight"],
                             self._offsets[f"{pre}.bias"] if bias else -1, -1, 0.0))
            elif op[0] == "relu":
                rows.append((_RELU, op[1], op[1], -1, -1, -1, 0.0))
            elif op[0] == "bn":
                _, pre, n = op
                views[f"{pre}.weight"][...] = 1.0
                views[f"{pre}.bias"][...] = 1e-3
                rows.append((_BATCHNORM, n, n, self._offsets[f"{pre}.weight"],
                             self._offsets[f"{pre}.bias"], self._stat_offsets[f"{pre}.running_mean"], 0.0))
            elif op[0] == "dropout":
                rows.append((_DROPOUT, op[1], op[1], -1, -1, -1, float(op[2])))
        self._tables = np.array([(rows_, dim, self._offsets[f"{name}.weight"])
                                 for name, rows_, dim in tables], dtype=np.int64)
        self._ops = np.array([r[:6] for r in rows], dtype=np.int64).reshape(-1, 6)
        self._ps = np.array([r[6] for r in rows], dtype=np.float64)
        self.n_users, self.n_items = int(tables[0][1]), int(tables[1][1]) if len(tables) > 1 else 0

    preds_ndim = 2  # fastai's TabularModel returns (N, 1) predictions

    def get_config(self):
        "A JSON-able description that rebuilds this model with `from_config` (class and arguments)."
        return {"class": type(self).__name__, "args": self._init_args()}

    def _net_args(self):
        return dict(tables=self._tables, ops=self._ops, ps=self._ps, y_range=self.y_range,
                    bn_momentum=self.bn_momentum, bn_eps=self.bn_eps)

    def _predict(self, x):
        out = np.empty(len(x), np.float32)
        _core.nn_predict(out, self.params, self.stats, x, **self._net_args())
        return out

    def _check_batches(self, n, bs, drop_last):
        """Refuses, before training, batches that training-mode BatchNorm cannot normalise:
        batches of one row (bs=1, or a last batch of one row when it is kept)."""
        if not (self._ops[:, 0] == _BATCHNORM).any():
            return
        if bs < 2:
            raise ValueError(f"this model has BatchNorm, which needs at least 2 rows per batch to compute "
                             f"batch statistics, but bs={bs}: use a larger bs")
        if not drop_last and n % bs == 1:
            raise ValueError(f"the training set's last batch holds one row ({n} rows in batches of bs={bs} "
                             f"leave 1 over), and BatchNorm cannot compute the batch statistics of a single "
                             f"row: pass drop_last=True to the training DataLoader (shuffle=True drops it by "
                             f"default) or choose a bs that does not leave one row over")

    def _fit_epoch(self, opt, grads, x, y, order, bs, lrs, moms, losses, n_wd=None):
        "One epoch in C; returns the index of a batch whose loss was not finite, or -1."
        h = opt.hypers
        step, bad = _core.nn_fit_epoch(
            self.params, grads, self.stats, opt.m, opt.v, losses, x, y, order, lrs, moms, bs=bs,
            opt=opt.kind, wd=h["wd"], n_wd=self.n_wd if n_wd is None else n_wd,
            sqr_mom=h.get("sqr_mom", 0.0), eps=h.get("eps", 1.0), decouple_wd=h["decouple_wd"],
            step=opt.step_count, seed=int(self._drop_rng.integers(0, 2**63 - 1)),
            **self._net_args())
        opt.step_count = step
        return bad

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        lines += [f"  ({n}): {tuple(v.shape)}" for n, v in self._names]
        return "\n".join(lines) + "\n)"


class EmbeddingNN(_NNModel):
    """fastai's `EmbeddingNN` (a `TabularModel` with embeddings only): the user and item
    embeddings concatenated, embedding dropout `embed_p`, then for each width in `layers` a
    `LinBnDrop` block (Linear without bias when BatchNorm follows, ReLU, BatchNorm1d, Dropout;
    `lin_first=False` puts BatchNorm and Dropout before the Linear), a final Linear to one
    output (with bias), and `sigmoid_range(*y_range)`. PyTorch's initialisation: embeddings
    trunc-normal std 0.01, Linear U(+-1/sqrt(fan_in)), BatchNorm weight 1, bias 1e-3.
    State-dict names follow fastai (`embeds.0.weight`, `layers.0.0.weight`, `layers.0.2.bias`,
    ...); fastai's empty `bn_cont` is not stored. Only ReLU activations are available."""

    def __init__(self, emb_szs, layers, ps=None, embed_p=0.0, y_range=None, use_bn=True,
                 bn_final=False, bn_cont=True, act_cls=None, lin_first=True):
        if act_cls is not None and getattr(act_cls, "__name__", type(act_cls).__name__).lower() != "relu":
            raise ValueError(f"act_cls: only ReLU is available, got {act_cls!r}")
        emb_szs = list(emb_szs)
        if len(emb_szs) < 1:
            raise ValueError("emb_szs must list at least one (n_classes, size) pair")
        tables = []
        for e, sz in enumerate(emb_szs):
            try:
                n, d = sz
            except (TypeError, ValueError):
                raise TypeError(f"emb_szs[{e}] must be an (n_classes, size) pair, got {sz!r}") from None
            tables.append((f"embeds.{e}", _check_int(f"emb_szs[{e}][0]", n), _check_int(f"emb_szs[{e}][1]", d)))
        if isinstance(layers, (int, np.integer)) or layers is None:
            raise TypeError(f"layers must be a list of layer widths, got {layers!r}")
        layers = [_check_int(f"layers[{i}]", w) for i, w in enumerate(layers)]
        if not layers:
            raise ValueError("layers must list at least one hidden layer width")
        if ps is None:
            ps = [0.0] * len(layers)
        elif not isinstance(ps, (list, tuple, np.ndarray)):
            ps = [ps] * len(layers)
        ps = [_check_p(f"ps[{i}]", p) for i, p in enumerate(ps)]
        if len(ps) != len(layers):
            raise ValueError(f"ps has {len(ps)} probabilities but layers has {len(layers)} layers")
        embed_p = _check_p("embed_p", embed_p)
        n_emb = sum(d for _, _, d in tables)
        sizes = [n_emb] + layers + [1]
        ops = []
        if embed_p > 0:
            ops.append(("dropout", n_emb, embed_p))
        last = len(sizes) - 2
        for i in range(len(sizes) - 1):
            n_in, n_out, p = sizes[i], sizes[i + 1], (ps + [0.0])[i]
            bn = bool(use_bn) and (i != last or bool(bn_final))
            act = i != last
            lin = [("linear", f"layers.{i}.?", n_in, n_out, not bn)] + ([("relu", n_out)] if act else [])
            rest = ([("bn", f"layers.{i}.?", n_out if lin_first else n_in)] if bn else []) + \
                   ([("dropout", n_out if lin_first else n_in, p)] if p != 0 else [])
            block = lin + rest if lin_first else rest + lin
            # number the modules inside the block as nn.Sequential does (activations count too)
            ops += [(o[0], o[1].replace("?", str(j)), *o[2:]) if o[0] in ("linear", "bn") else o
                    for j, o in enumerate(block)]
        self.layers_sizes, self.ps, self.embed_p = layers, ps, embed_p
        self.use_bn, self.bn_final, self.lin_first = bool(use_bn), bool(bn_final), bool(lin_first)
        self.emb_szs = [(n, d) for _, n, d in tables]
        self.bn_cont = bool(bn_cont)
        self._setup_nn(tables, ops, y_range)
        self.embeds = [Embedding(dict(self._names)[f"embeds.{e}.weight"]) for e in range(len(tables))]


    def _init_args(self):
        y = None if self.y_range is None else [self.y_range[0], self.y_range[1]]
        return {"emb_szs": [list(e) for e in self.emb_szs], "layers": list(self.layers_sizes),
                "ps": list(self.ps), "embed_p": self.embed_p, "y_range": y, "use_bn": self.use_bn,
                "bn_final": self.bn_final, "bn_cont": self.bn_cont, "lin_first": self.lin_first}


TabularModel = EmbeddingNN


class CollabNN(_NNModel):
    """The book's `CollabNN`: user and item factors concatenated, Linear(n_act) with bias,
    ReLU, Linear(1), `sigmoid_range(*y_range)`. `user_sz`/`item_sz` are (n_classes, size)."""

    def __init__(self, user_sz, item_sz, y_range=(0, 5.5), n_act=100):
        (nu, du), (ni, di) = user_sz, item_sz
        nu, du = _check_int("user_sz[0]", nu), _check_int("user_sz[1]", du)
        ni, di = _check_int("item_sz[0]", ni), _check_int("item_sz[1]", di)
        n_act = _check_int("n_act", n_act)
        tables = [("user_factors", nu, du), ("item_factors", ni, di)]
        ops = [("linear", "layers.0", du + di, n_act, True), ("relu", n_act),
               ("linear", "layers.2", n_act, 1, True)]
        self.user_sz, self.item_sz, self.n_act = (nu, du), (ni, di), n_act
        self._setup_nn(tables, ops, y_range)
        views = dict(self._names)
        self.user_factors = Embedding(views["user_factors.weight"])
        self.item_factors = Embedding(views["item_factors.weight"])

    def _init_args(self):
        y = None if self.y_range is None else [self.y_range[0], self.y_range[1]]
        return {"user_sz": list(self.user_sz), "item_sz": list(self.item_sz), "y_range": y,
                "n_act": self.n_act}
