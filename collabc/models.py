"""The built-in collaborative-filtering models: ordinary `Module`s that can also train in C.

Each is written as fastai (or the book) writes it - `Embedding`s, `nn.Linear`s, a `forward` in
tensor operations - so `learn.model.u_weight.weight` is a `Parameter`, `state_dict()` has
fastai's names and a subclass may change anything. What makes them built-in is a fused
training path: their parameters are packed into one float32 block (`model.params`, in the
layout their C driver reads: `csrc/train.h` for the dot models, the op list of `csrc/nn.h` for
the neural ones), and a `Learner` trains them through that driver (`_fit_epoch`, and
`_fit_blocks` on the sparse path) instead of through autograd, many times faster. A subclass
that overrides `forward` or changes the parameters trains through autograd like any `Module`
(`_fused_ok()` says which).

* `EmbeddingDotBias` - fastai's dot-product model with user/item biases and optional y_range.
* `DotProduct`, `DotProductBias` - the book's step-by-step versions (fastbook chapter 8).
* `EmbeddingNN` (a fastai `TabularModel` on embeddings only) and the book's `CollabNN`.

Initial values are drawn from one child of collabc's generator in fastai's creation order,
so `set_seed(n)` reproduces them (and they are what earlier collabc versions drew).
"""
import numpy as np

from . import _core, nn
from ._checks import check_int, check_prob, check_y_range
from .cpu import default_threads
from .layers import BatchNorm, Embedding, LinBnDrop, Module, SigmoidRange, TabularModel, trunc_normal_
from .nn import pack_parameters, param_groups
from .seed import get_rng, preserve_rng
from .autograd import Parameter, Tensor, cat, no_grad, sigmoid_range, tensor, zeros

__all__ = ["Embedding", "Module", "EmbeddingDotBias", "DotProduct", "DotProductBias",
           "trunc_normal_", "sigmoid_range", "create_params", "emb_sz_rule", "get_emb_sz",
           "tabular_config", "EmbeddingNN", "TabularModel", "CollabNN", "predict_array", "is_dot_model"]


def _check_int(name, v, lo=1):
    return check_int(name, v, lo, 2**31 - 1)


_check_y_range = check_y_range
_check_p = check_prob


def create_params(size):
    "The book's `create_params`: `nn.Parameter(zeros(*size).normal_(0, 0.01))`."
    return Parameter(zeros(*size).normal_(0, 0.01))


def _trunc_normal(rng, shape, std=0.01):
    return (np.fmod(rng.standard_normal(shape, dtype=np.float32), 2.0) * np.float32(std)).astype(np.float32)


def _kaiming_uniform(rng, shape, fan_in):
    "PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5))."
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def _as_ids(x):
    "An (N, 2) batch of encoded (user, item) ids as int32 for the C drivers."
    x = np.asarray(x._data if isinstance(x, Tensor) else x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2) of (user, item) indices, got {x.shape}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"x must hold integer indices, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= 2**31):
        raise IndexError("x holds indices outside [0, 2**31)")
    return np.ascontiguousarray(x, dtype=np.int32)


def predict_array(model, x, bs=4096, shaped=False):
    """The model's predictions for the (N, 2) encoded (user, item) pairs `x` as a float32 (N,)
    array: through its C driver for a built-in model, else `model(x)` in eval mode without
    gradients, in batches of `bs`. A forward that does not give one value per row raises,
    naming the shape it returned and the shapes it may return. With `shaped`, the array has
    the shape the model's forward gives, (N,) or (N, 1), as fastai's `get_preds` returns it."""
    x = _as_ids(x)
    fused = getattr(model, "_fused_ok", None)
    if fused is not None and fused():
        out = model._predict(x)
        return out.reshape(-1, 1) if shaped and model.preds_ndim == 2 else out
    out, ndim = np.empty(len(x), np.float32), 1
    was = model.training
    model.eval()
    try:
        with no_grad():
            for a in range(0, len(x), bs):
                xb = x[a:a + bs].astype(np.int64)
                p = model(tensor(xb))
                out[a:a + len(xb)] = check_preds(model, p, len(xb))
                ndim = len(p.shape)
    finally:
        model.train(was)
    return out.reshape(-1, 1) if shaped and ndim == 2 else out


def is_dot_model(model):
    """A built-in dot-product model still on its fused path (its tables can be read directly), or
    a model whose `_tables()` are a dot model's (`_dot_like`, e.g. collabc.bayes.BayesModel)."""
    return (isinstance(model, _DotFamily) and model._fused_ok()) or getattr(type(model), "_dot_like", False)


def check_preds(model, pred, n):
    "`pred` (a model's forward output for n rows) as a flat float32 array, or a clear error."
    a = np.asarray(pred._data if isinstance(pred, Tensor) else pred)
    if a.shape not in ((n,), (n, 1)):
        raise ValueError(f"{type(model).__name__}.forward returned shape {a.shape} for a batch of {n} rows; "
                         f"MSELossFlat needs one prediction per row: shape ({n},) or ({n}, 1)")
    return a.reshape(n).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# what the built-in models share

class _Fused:
    """The fused path's bookkeeping: the packed parameter block (`_block`, its `data` is
    `params`), the parameters it holds, and `_fused_ok()`."""
    preds_ndim = 1  # fastai's shapes: (N,) predictions; models whose forward gives (N, 1) say 2

    def _pack(self, params, n_wd):
        names = {id(p): n for n, p in self.named_parameters()}
        self._block = pack_parameters(params)
        self._block.n_wd = int(n_wd)
        self._layout = [(names[id(p)], tuple(p.shape)) for p in params]   # in block order

    @property
    def params(self):
        "The flat float32 parameter block the C driver trains (every parameter is a view into it)."
        self._fused_ok()   # a parameter replaced by one of the same shape is packed in first
        return self._block.data

    @property
    def n_params(self):
        return int(self._block.data.size)

    @property
    def n_wd(self):
        "Leading floats of `params` that take weight decay (fastai's wd_bn_bias=False rule)."
        return self._block.n_wd

    def _fused_ok(self):
        """True while this model is still the built-in it was built as: its forward is the
        class's own and its parameters are the packed ones (a replaced parameter of the same
        shape is packed again, its values kept). Else it trains through autograd."""
        if type(self).forward is not type(self)._fused_forward:
            return False
        current = dict(self.named_parameters())
        if len(current) != len(self._layout) or any(tuple(current[n].shape) != s if n in current else True
                                                     for n, s in self._layout):
            return False
        params = [current[n] for n, _ in self._layout]
        if any(p is not q for p, q in zip(params, self._block.params)):
            self._pack(params, self._block.n_wd)   # same layout, new Parameter objects
        return True

    def named_parameter_arrays(self):
        "(state-dict name, NumPy view) of every parameter, in block order."
        return [(n, p._data) for n, p in self.named_parameters()]


# ---------------------------------------------------------------------------------------------
# dot-product models

class _DotFamily(_Fused, Module):
    "The dot-product models: one C driver for all of them (csrc/train.c, csrc/sparse.c)."
    _attr_names = ("u_weight", "i_weight", "u_bias", "i_bias")

    def _setup(self, n_factors, n_users, n_items, y_range, bias, init):
        self.n_factors = _check_int("n_factors", n_factors)
        self.n_users = _check_int("n_users", n_users)
        self.n_items = _check_int("n_items", n_items)
        self.y_range = _check_y_range(y_range)
        self.has_bias = bool(bias)
        if init not in ("trunc_normal", "normal"):
            raise ValueError(f"init must be 'trunc_normal' or 'normal', got {init!r}")
        # the block's layout is the C core's (csrc/train.h cf_dot_offsets), all of it decayed;
        # the tables are created, and drawn from one generator, in fastai's order
        tables, total = _core.dot_layout(self.n_users, self.n_items, self.n_factors, self.has_bias)
        attrs = dict(zip(("u_weight", "i_weight", "u_bias", "i_bias"), self._attr_names))
        rng = get_rng()
        params = []
        for c, _, shape in tables:
            w = (_trunc_normal(rng, shape) if init == "trunc_normal"
                 else (rng.standard_normal(shape) * 0.01).astype(np.float32))
            emb = Embedding(shape[0], shape[1], _weight=w)
            setattr(self, attrs[c], emb)
            params.append(emb.weight)
        self._pack(params, total)
        self.stats = np.zeros(0, np.float32)   # no running statistics (the neural models have some)
        if [int(o) for o in self._block.offsets[:-1]] != [off for _, off, _ in tables]:
            raise RuntimeError("collabc bug: the packed dot model does not have the C layout")

    @classmethod
    def planned_shapes(cls, **args):
        """{state-dict name: shape} of the model `cls(**args)` would build, found without building
        it (load_learner checks a file's sizes with it before allocating anything)."""
        a = cls._args_to_core(**args)
        attrs = dict(zip(("u_weight", "i_weight", "u_bias", "i_bias"), cls._attr_names))
        tables, _ = _core.dot_layout(a["n_users"], a["n_items"], a["n_factors"], a["has_bias"])
        return {f"{attrs[c]}.weight": tuple(shape) for c, _, shape in tables}

    def _core_args(self):
        return dict(n_users=self.n_users, n_items=self.n_items, n_factors=self.n_factors,
                    has_bias=self.has_bias, y_range=self.y_range)

    def _tables(self):
        "The four tables' NumPy views (biases None without them): users, items, user and item biases."
        uw, iw, ub, ib = (getattr(self, n, None) for n in self._attr_names)
        return (uw.weight._data, iw.weight._data, ub.weight._data if self.has_bias else None,
                ib.weight._data if self.has_bias else None)

    def _predict(self, x):
        out = np.empty(len(x), np.float32)
        a = self._core_args()
        _core.dot_predict(out, self.params, _as_ids(x), a["n_users"], a["n_items"], a["n_factors"],
                          a["has_bias"], a["y_range"], n_threads=default_threads())
        return out

    def _fit_epoch(self, opt, grads, x, y, order, bs, lrs, moms, losses, n_wd=None):
        "Batches in C; returns the index of a batch whose loss was not finite, or -1."
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
        "fastai's `bias`: the biases of the raw ids in `arr` (items by default), a 1-D tensor."
        if not self.has_bias:
            raise AttributeError(f"{type(self).__name__} has no biases")
        tab = self._tables()[3 if is_item else 2]
        return tensor(tab[self._ids(arr, is_item), 0].copy())

    def weight(self, arr, is_item=True):
        "fastai's `weight`: the factors of the raw ids in `arr` (items by default), (len(arr), n_factors)."
        tab = self._tables()[1 if is_item else 0]
        return tensor(tab[self._ids(arr, is_item)].copy())

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

    @staticmethod
    def _check_core_args(n_factors, n_users, n_items, y_range):
        return dict(n_factors=_check_int("n_factors", n_factors), n_users=_check_int("n_users", n_users),
                    n_items=_check_int("n_items", n_items), y_range=_check_y_range(y_range))


class EmbeddingDotBias(_DotFamily):
    """fastai's `EmbeddingDotBias`: `sum(u_weight[u] * i_weight[i]) + u_bias[u] + i_bias[i]`,
    squashed by `sigmoid_range` when `y_range` is given. All four tables start from fastai's
    truncated normal (std 0.01) and all four take weight decay."""

    def __init__(self, n_factors, n_users, n_items, y_range=None):
        self._setup(n_factors, n_users, n_items, y_range, bias=True, init="trunc_normal")
        self.classes = None

    def forward(self, x):
        users, items = x[:, 0], x[:, 1]
        dot = self.u_weight(users) * self.i_weight(items)
        res = dot.sum(1) + self.u_bias(users).squeeze() + self.i_bias(items).squeeze()
        if self.y_range is None:
            return res
        return sigmoid_range(res, *self.y_range)

    _fused_forward = forward

    @classmethod
    def _args_to_core(cls, n_factors, n_users, n_items, y_range=None):
        return {**cls._check_core_args(n_factors, n_users, n_items, y_range), "has_bias": True}

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
    """The book's first model: `(user_factors[u] * movie_factors[i]).sum()`, through
    `sigmoid_range(*y_range)` when given. No biases."""
    _attr_names = ("user_factors", "movie_factors", "user_bias", "movie_bias")

    def __init__(self, n_users, n_movies, n_factors, y_range=None):
        self._setup(n_factors, n_users, n_movies, y_range, bias=False, init="trunc_normal")

    def forward(self, x):
        users = self.user_factors(x[:, 0])
        movies = self.movie_factors(x[:, 1])
        res = (users * movies).sum(dim=1)
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)

    _fused_forward = forward

    @classmethod
    def _args_to_core(cls, n_users, n_movies, n_factors, y_range=None):
        return {**cls._check_core_args(n_factors, n_users, n_movies, y_range), "has_bias": False}

    def _init_args(self):
        a = super()._init_args()
        return {"n_users": a["n_users"], "n_movies": a["n_items"], "n_factors": a["n_factors"],
                "y_range": a["y_range"]}


class DotProductBias(_DotFamily):
    """The book's `DotProductBias`: dot product plus user and movie biases, through
    `sigmoid_range(*y_range)`; its forward returns (N, 1) (`sum(dim=1, keepdim=True)`).
    `init='normal'` draws the book's `create_params` values (N(0, 0.01))."""
    _attr_names = ("user_factors", "movie_factors", "user_bias", "movie_bias")
    preds_ndim = 2

    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5), init="trunc_normal"):
        self._setup(n_factors, n_users, n_movies, y_range, bias=True, init=init)
        self.init = init

    def forward(self, x):
        users = self.user_factors(x[:, 0])
        movies = self.movie_factors(x[:, 1])
        res = (users * movies).sum(dim=1, keepdim=True)
        res += self.user_bias(x[:, 0]) + self.movie_bias(x[:, 1])
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)

    _fused_forward = forward

    @classmethod
    def _args_to_core(cls, n_users, n_movies, n_factors, y_range=(0, 5.5), init="trunc_normal"):
        if init not in ("trunc_normal", "normal"):
            raise ValueError(f"init must be 'trunc_normal' or 'normal', got {init!r}")
        return {**cls._check_core_args(n_factors, n_users, n_movies, y_range), "has_bias": True}

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


class _NNFused(_Fused):
    """The neural models' fused path (csrc/nn.c): embedding tables concatenated, then a list of
    ops (Linear, ReLU, BatchNorm1d, Dropout) read off the modules, over the parameter block
    (decayed parameters first: embeddings and Linear weights; fastai's wd_bn_bias=False rule)
    and a block of the BatchNorm running statistics."""
    preds_ndim = 2  # fastai's TabularModel and the book's CollabNN return (N, 1)

    def _fuse(self, tables, body, y_range):
        """tables: the Embedding modules in column order; body: the modules after the
        concatenation, in order (Linear/ReLU/BatchNorm1d/Dropout, a final SigmoidRange allowed).
        Builds the op table, packs the parameters and the running statistics; a module the C
        driver does not know leaves the model on the autograd path (`_fused_ops` None)."""
        decayed, rest = param_groups(self)
        self._pack(decayed + rest, sum(p.numel() for p in decayed))
        offsets = {id(p): int(o) for p, o in zip(self._block.params, self._block.offsets[:-1])}
        bns = [m for m in body if isinstance(m, nn.BatchNorm1d)]
        self._bns = bns
        stats = [t for bn in bns for t in (bn.running_mean, bn.running_var)]
        self.stats = np.concatenate([t._data.reshape(-1) for t in stats]).astype(np.float32) if stats \
            else np.zeros(0, np.float32)
        stat_off, off = {}, 0
        for t in stats:   # each running statistic becomes a view into `stats`
            n = t._data.size
            stat_off[id(t)] = off
            t._data = self.stats[off:off + n].reshape(t._data.shape)
            t._version += 1
            off += n
        rows, ps, width = [], [], sum(e.embedding_dim for e in tables)
        ok = True
        for k, m in enumerate(body):
            if isinstance(m, nn.Linear):
                rows.append((_LINEAR, m.in_features, m.out_features, offsets[id(m.weight)],
                             offsets[id(m.bias)] if m.bias is not None else -1, -1))
                width = m.out_features
            elif isinstance(m, nn.ReLU):
                rows.append((_RELU, width, width, -1, -1, -1))
            elif isinstance(m, nn.BatchNorm1d) and m.affine and m.track_running_stats:
                rows.append((_BATCHNORM, width, width, offsets[id(m.weight)], offsets[id(m.bias)],
                             stat_off[id(m.running_mean)]))
            elif isinstance(m, nn.Dropout):
                if m.p == 0:
                    continue
                rows.append((_DROPOUT, width, width, -1, -1, -1))
            elif isinstance(m, SigmoidRange) and k == len(body) - 1:
                continue
            else:
                ok = False
                break
            ps.append(float(getattr(m, "p", 0.0)) if isinstance(m, nn.Dropout) else 0.0)
        self._fused_ops = None
        if ok and width == 1 and len({(bn.momentum, bn.eps) for bn in bns}) <= 1:
            self._tables = np.array([(e.num_embeddings, e.embedding_dim, offsets[id(e.weight)]) for e in tables],
                                    dtype=np.int64).reshape(-1, 3)
            self._fused_ops = np.array(rows, dtype=np.int64).reshape(-1, 6)
            self._ps = np.array(ps, dtype=np.float64)
        self.bn_momentum = bns[0].momentum if bns else 0.1
        self.bn_eps = bns[0].eps if bns else 1e-5
        self.n_users = int(tables[0].num_embeddings)
        self.n_items = int(tables[1].num_embeddings) if len(tables) > 1 else 0
        self._drop_rng = get_rng()

    def _fused_ok(self):
        return self._fused_ops is not None and super()._fused_ok()

    def _net_args(self):
        return dict(tables=self._tables, ops=self._fused_ops, ps=self._ps, y_range=self.y_range,
                    bn_momentum=self.bn_momentum, bn_eps=self.bn_eps)

    def _predict(self, x):
        out = np.empty(len(x), np.float32)
        _core.nn_predict(out, self.params, self.stats, _as_ids(x), **self._net_args())
        return out

    def _check_batches(self, n, bs, drop_last):
        """Refuses, before training, batches that training-mode BatchNorm cannot normalise:
        batches of one row (bs=1, or a last batch of one row when it is kept)."""
        if not self._bns:
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
        "Batches in C; returns the index of a batch whose loss was not finite, or -1."
        h = opt.hypers
        step, bad = _core.nn_fit_epoch(
            self.params, grads, self.stats, opt.m, opt.v, losses, x, y, order, lrs, moms, bs=bs,
            opt=opt.kind, wd=h["wd"], n_wd=self.n_wd if n_wd is None else n_wd,
            sqr_mom=h.get("sqr_mom", 0.0), eps=h.get("eps", 1.0), decouple_wd=h["decouple_wd"],
            step=opt.step_count, seed=int(self._drop_rng.integers(0, 2**63 - 1)),
            **self._net_args())
        done = (step - opt.step_count)
        opt.step_count = step
        for bn in self._bns:   # what BatchNorm1d's forward counts in training mode
            bn.num_batches_tracked._data[...] += done
        return bad

    def get_config(self):
        "A JSON-able description that rebuilds this model with `from_config` (class and arguments)."
        return {"class": type(self).__name__, "args": self._init_args()}


def _check_emb_szs(emb_szs):
    emb_szs = list(emb_szs)
    if len(emb_szs) < 1:
        raise ValueError("emb_szs must list at least one (n_classes, size) pair")
    out = []
    for e, sz in enumerate(emb_szs):
        try:
            n, d = sz
        except (TypeError, ValueError):
            raise TypeError(f"emb_szs[{e}] must be an (n_classes, size) pair, got {sz!r}") from None
        out.append((_check_int(f"emb_szs[{e}][0]", n), _check_int(f"emb_szs[{e}][1]", d)))
    return out


def _check_layers(layers, ps, embed_p, act_cls):
    if act_cls is not None and not (isinstance(act_cls, nn.ReLU) or act_cls is nn.ReLU
                                    or getattr(act_cls, "__name__", "").lower() == "relu"):
        if not isinstance(act_cls, nn.Module):
            raise ValueError(f"act_cls must be an activation Module such as nn.ReLU(), got {act_cls!r}")
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
    return layers, ps, _check_p("embed_p", embed_p)


class EmbeddingNN(_NNFused, TabularModel):
    """fastai's `EmbeddingNN`: a `TabularModel` with embeddings only (`n_cont=0, out_sz=1`): the
    user and item embeddings concatenated, embedding dropout `embed_p`, then for each width in
    `layers` a `LinBnDrop` block (Linear without bias when BatchNorm follows, ReLU, BatchNorm1d,
    Dropout; `lin_first=False` puts BatchNorm and Dropout first), a final Linear to one output
    (with bias) and `SigmoidRange(*y_range)`. fastai's initialisation and state-dict names
    (`embeds.0.weight`, `layers.0.0.weight`, `layers.0.2.running_mean`, ...). With ReLU (the
    default `act_cls`) it trains through the fused C driver; another activation trains through
    autograd."""

    def __init__(self, emb_szs, layers, ps=None, embed_p=0.0, y_range=None, use_bn=True,
                 bn_final=False, bn_cont=True, act_cls=None, lin_first=True):
        emb_szs = _check_emb_szs(emb_szs)
        layers, ps, embed_p = _check_layers(layers, ps, embed_p, act_cls)
        self.y_range = _check_y_range(y_range)
        act = nn.ReLU(inplace=True) if act_cls is None or act_cls is nn.ReLU else act_cls
        with preserve_rng():    # the modules' own draws are replaced below, from one generator
            super().__init__(emb_szs, n_cont=0, out_sz=1, layers=layers, ps=ps, embed_p=embed_p,
                             y_range=self.y_range, use_bn=use_bn, bn_final=bn_final, bn_cont=bn_cont,
                             act_cls=act, lin_first=lin_first)
        self.emb_szs, self.layers_sizes, self.ps, self.embed_p = emb_szs, layers, ps, embed_p
        self.use_bn, self.bn_final, self.lin_first = bool(use_bn), bool(bn_final), bool(lin_first)
        self.bn_cont_flag = bool(bn_cont)
        self.act_name = type(act).__name__
        body = ([self.emb_drop] if embed_p > 0 else []) + [m for blk in self.layers for m in
                                                              (blk if isinstance(blk, nn.Sequential) else [blk])]
        _init_nn(list(self.embeds), body)
        self._fuse(list(self.embeds), body, self.y_range)

    forward = TabularModel.forward
    _fused_forward = TabularModel.forward

    def _init_args(self):
        y = None if self.y_range is None else [self.y_range[0], self.y_range[1]]
        return {"emb_szs": [list(e) for e in self.emb_szs], "layers": list(self.layers_sizes),
                "ps": list(self.ps), "embed_p": self.embed_p, "y_range": y, "use_bn": self.use_bn,
                "bn_final": self.bn_final, "bn_cont": self.bn_cont_flag, "lin_first": self.lin_first}

    @classmethod
    def planned_shapes(cls, emb_szs, layers, ps=None, embed_p=0.0, y_range=None, use_bn=True,
                       bn_final=False, bn_cont=True, act_cls=None, lin_first=True):
        "{state-dict name: shape} of `EmbeddingNN(**args)`, computed without building it."
        emb_szs = _check_emb_szs(emb_szs)
        layers, ps, embed_p = _check_layers(layers, ps, embed_p, act_cls)
        _check_y_range(y_range)
        out = {f"embeds.{e}.weight": (n, d) for e, (n, d) in enumerate(emb_szs)}
        if bn_cont:
            out.update({"bn_cont.weight": (0,), "bn_cont.bias": (0,), "bn_cont.running_mean": (0,),
                        "bn_cont.running_var": (0,), "bn_cont.num_batches_tracked": ()})
        sizes = [sum(d for _, d in emb_szs)] + layers + [1]
        last = len(sizes) - 2
        for i in range(len(sizes) - 1):
            n_in, n_out, p = sizes[i], sizes[i + 1], (ps + [0.0])[i]
            bn = bool(use_bn) and (i != last or bool(bn_final))
            lin = [("lin", n_in, n_out, not bn)] + ([("act",)] if i != last else [])
            rest = ([("bn", n_out if lin_first else n_in)] if bn else []) + ([("drop",)] if p != 0 else [])
            for j, m in enumerate(lin + rest if lin_first else rest + lin):
                pre = f"layers.{i}.{j}"
                if m[0] == "lin":
                    out[f"{pre}.weight"] = (m[2], m[1])
                    if m[3]:
                        out[f"{pre}.bias"] = (m[2],)
                elif m[0] == "bn":
                    out.update({f"{pre}.weight": (m[1],), f"{pre}.bias": (m[1],), f"{pre}.running_mean": (m[1],),
                                f"{pre}.running_var": (m[1],), f"{pre}.num_batches_tracked": ()})
        return out


def _init_nn(tables, body):
    """Initial values as collabc always drew them, from one child generator: the tables'
    truncated normal (std 0.01), then each Linear's weight and bias U(+-1/sqrt(fan_in))
    (PyTorch's default), in order; BatchNorm keeps fastai's weight 1, bias 1e-3."""
    rng = get_rng()
    for e in tables:
        e.weight._data[...] = _trunc_normal(rng, e.weight.shape)
    for m in body:
        if isinstance(m, nn.Linear):
            m.weight._data[...] = _kaiming_uniform(rng, m.weight.shape, m.in_features)
            if m.bias is not None:
                m.bias._data[...] = _kaiming_uniform(rng, m.bias.shape, m.in_features)
    for t in [e.weight for e in tables] + [p for m in body for p in m.parameters()]:
        t._version += 1


class CollabNN(_NNFused, Module):
    """The book's `CollabNN`: user and item factors concatenated, `nn.Linear(n_act)`, `nn.ReLU`,
    `nn.Linear(1)`, `sigmoid_range(*y_range)`. `user_sz` / `item_sz` are (n_classes, size)."""

    def __init__(self, user_sz, item_sz, y_range=(0, 5.5), n_act=100):
        (nu, du), (ni, di) = user_sz, item_sz
        nu, du = _check_int("user_sz[0]", nu), _check_int("user_sz[1]", du)
        ni, di = _check_int("item_sz[0]", ni), _check_int("item_sz[1]", di)
        n_act = _check_int("n_act", n_act)
        self.user_sz, self.item_sz, self.n_act = (nu, du), (ni, di), n_act
        with preserve_rng():
            self.user_factors = Embedding(nu, du, _weight=np.zeros((nu, du), np.float32))
            self.item_factors = Embedding(ni, di, _weight=np.zeros((ni, di), np.float32))
            self.layers = nn.Sequential(nn.Linear(du + di, n_act), nn.ReLU(), nn.Linear(n_act, 1))
        self.y_range = _check_y_range(y_range)
        tables = [self.user_factors, self.item_factors]
        _init_nn(tables, list(self.layers))
        self._fuse(tables, list(self.layers), self.y_range)

    def forward(self, x):
        embs = self.user_factors(x[:, 0]), self.item_factors(x[:, 1])
        x = self.layers(cat(embs, dim=1))
        return x if self.y_range is None else sigmoid_range(x, *self.y_range)

    _fused_forward = forward

    def _init_args(self):
        y = None if self.y_range is None else [self.y_range[0], self.y_range[1]]
        return {"user_sz": list(self.user_sz), "item_sz": list(self.item_sz), "y_range": y,
                "n_act": self.n_act}

    @classmethod
    def planned_shapes(cls, user_sz, item_sz, y_range=(0, 5.5), n_act=100):
        "{state-dict name: shape} of `CollabNN(**args)`, computed without building it."
        try:
            (nu, du), (ni, di) = user_sz, item_sz
        except (TypeError, ValueError):
            raise TypeError(f"user_sz and item_sz must be (n_classes, size) pairs, got {user_sz!r}, {item_sz!r}") from None
        nu, du = _check_int("user_sz[0]", nu), _check_int("user_sz[1]", du)
        ni, di = _check_int("item_sz[0]", ni), _check_int("item_sz[1]", di)
        n_act = _check_int("n_act", n_act)
        _check_y_range(y_range)
        return {"user_factors.weight": (nu, du), "item_factors.weight": (ni, di),
                "layers.0.weight": (n_act, du + di), "layers.0.bias": (n_act,),
                "layers.2.weight": (1, n_act), "layers.2.bias": (1,)}


def _from_config(cls, config, classes=None):
    """Rebuild a model from `get_config()` output: same class and constructor arguments,
    parameters as freshly initialised (load them with `load_state_dict`). Draws its initial
    values without moving collabc's global random stream. `classes` (a dict of `CategoryMap`)
    is attached when the config names a user and an item key."""
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


for _cls in (EmbeddingDotBias, DotProduct, DotProductBias, EmbeddingNN, CollabNN):
    _cls.from_config = classmethod(_from_config)
