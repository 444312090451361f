"""Tensors with reverse-mode autograd over NumPy arrays, PyTorch's conventions, no PyTorch.

A `Tensor` wraps one NumPy array (`t.numpy()` and `np.asarray(t)` return it, never a copy):
float32 values and int64 indices by default, as PyTorch. Arithmetic, reductions, indexing and
shape operations follow PyTorch's semantics (broadcasting, `sum(dim, keepdim)`, `view`, `t()`,
`argsort(descending=)`, `x[:, 0]`, `table[ids]`, `[None]`, in-place `+=` on results).

Autograd is micrograd's and tinygrad's design: every differentiable operation is one small
`Function` subclass holding what its backward needs, with `backward` beside the forward that
records it. A result keeps its `Function` in `grad_fn`; `loss.backward()` collects the nodes
reachable from the loss, runs their `backward` once each in reverse creation order (creation
order is a topological order), and accumulates into the leaves' `.grad`. The hot operations run
C kernels (csrc/tensorops.c, embedding gather / scatter-add; linear.c; activation.c
sigmoid_range; loss.c MSE) with the same float32 arithmetic as the fused training drivers.

Deliberate differences from PyTorch, all in the direction of fewer surprises for a NumPy user:
`numpy()` works on tensors that require grad (it returns the data); an in-place operation on a
tensor that takes part in autograd computes a new array and rebinds the tensor to it (so
gradients stay right; other views of the old array do not see the change), while outside
autograd (no grad involved, or under `no_grad()`) it writes in place; `view` copies when the
memory layout needs it instead of raising; `float64` arrays passed to `tensor()` become float32
(fastai's `tensor`), but a `Tensor` can hold float64 (used by the finite-difference tests).
See docs/autograd.md.
"""
import itertools
import math
import operator
import threading

import numpy as np

from . import _core
from .seed import get_rng

__all__ = ["Tensor", "Parameter", "Size", "tensor", "as_tensor", "zeros", "ones", "full", "empty",
           "zeros_like", "ones_like", "full_like", "randn", "rand", "arange", "linspace", "eye",
           "cat", "stack", "where", "sigmoid", "relu", "tanh", "sigmoid_range", "one_hot", "mse_loss",
           "mse_loss_flat", "linear", "embedding", "dropout", "batch_norm", "cosine_similarity",
           "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]

float32, float64, int64, int32, uint8, bool_ = (np.dtype(t) for t in
                                                 (np.float32, np.float64, np.int64, np.int32,
                                                  np.uint8, np.bool_))
_F32, _F64, _I64 = float32, float64, int64


# ------------------------------------------------------------------------------ grad mode
class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()


def is_grad_enabled():
    "True when operations record the graph for `backward` (the default)."
    return _mode.enabled


class set_grad_enabled:
    "Context manager (and decorator) that turns gradient recording on or off, as in PyTorch."
    def __init__(self, mode):
        self.mode, self.prev = bool(mode), None
        self.prev = _mode.enabled
        _mode.enabled = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _mode.enabled = self.prev
        return False


class _GradSwitch:
    mode = True

    def __enter__(self):
        self.prev = _mode.enabled
        _mode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _mode.enabled = self.prev
        return False

    def __call__(self, fn):
        mode = self.mode

        def wrapped(*args, **kwargs):
            prev = _mode.enabled
            _mode.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _mode.enabled = prev
        wrapped.__name__, wrapped.__doc__, wrapped.__wrapped__ = fn.__name__, fn.__doc__, fn
        return wrapped


class no_grad(_GradSwitch):
    "Context manager / decorator: operations inside record no graph (evaluation, parameter edits)."
    mode = False


class enable_grad(_GradSwitch):
    "Context manager / decorator: turn gradient recording back on inside a `no_grad` block."
    mode = True


# ------------------------------------------------------------------------------ Size
class Size(tuple):
    "A tensor's shape: a tuple (PyTorch's `torch.Size`)."
    def __repr__(self):
        return f"Size({list(self)})"

    def numel(self):
        return math.prod(self)


# ------------------------------------------------------------------------------ autograd core
_seq = itertools.count()


class Function:
    """One differentiable operation recorded for backward (PyTorch's `grad_fn`).

    `parents` holds one edge per input: the input's own `Function` when it is a result, the
    input tensor itself when it is a leaf that requires grad, None when no gradient flows there.
    A subclass stores what its backward needs in its own slots and implements
    `backward(g)`: given the gradient `g` of its output, it hands each parent its gradient with
    `_send(parent, grad)`. Backward never modifies `g` in place."""
    __slots__ = ("parents", "g", "seq", "chk")
    _leaf = False
    name = "Backward"

    def __init__(self, parents):
        self.parents = parents
        self.g = None
        self.seq = next(_seq)
        self.chk = None

    def save_versions(self, *tensors):
        "Remember the versions of tensors whose values backward reads (checked before it runs)."
        self.chk = tuple((t, t._version) for t in tensors)

    def backward(self, g):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError(f"{type(self).__name__}.backward")

    @property
    def next_functions(self):
        "The parents as PyTorch shows them: ((Function or AccumulateGrad-like leaf, 0), ...)."
        return tuple((p, 0) for p in (self.parents or ()))

    def __repr__(self):
        return f"<{self.name} object at {hex(id(self))}>"


def _renamed(base, name):
    "A subclass of the Function `base` that differs only in the name PyTorch shows for it."
    return type(f"_{name}", (base,), {"__slots__": (), "name": name})


def _edge(t):
    c = t._ctx
    if c is not None:
        return c
    return t if t._rg else None


def _send(p, g):
    "Hands gradient g to parent edge p: accumulated in a node, or into a leaf's `.grad`."
    if p._leaf:
        _acc_leaf(p, g)
    elif p.g is None:
        p.g = g
    else:
        p.g = p.g + g


def _leaf_grad_buffer(t, rows=None):
    """The array a leaf's gradient accumulates into, created (zeros) if the leaf has none yet.
    For a packed parameter the write is logged (`rows`: only these rows of dim 0 are written;
    None: any of it) so that its block can zero just what backward wrote."""
    gt = t._grad
    if gt is None:
        buf = t._gview
        if buf is not None:  # a packed parameter whose grad was set to None: re-attach its view
            buf[...] = 0
        else:
            buf = np.zeros(t._data.shape, t._data.dtype)
        gt = t._grad = _wrap(buf)
    log = t._glog
    if log is not None and len(log) <= GRAD_LOG_MAX:  # past the cap: the block zeroes all of it
        log.append((gt._data, None if rows is None else rows.copy()))  # (ids copied: the caller may
    return gt._data                                                    # reuse its batch buffer)


GRAD_LOG_MAX = 64  # writes a parameter block remembers between two zero_grad calls


def _acc_leaf(t, g):
    gt = t._grad
    if gt is None and t._gview is None:
        a = np.array(g, dtype=t._data.dtype, copy=True)  # never alias the flowing gradient
        if a.shape != t._data.shape:
            a = np.ascontiguousarray(np.broadcast_to(a, t._data.shape))
        t._grad = _wrap(a)
        return
    buf = _leaf_grad_buffer(t)
    np.add(buf, g, out=buf, casting="unsafe")


def _fit(g, shape, dtype):
    "g reduced over broadcast dimensions to `shape` and cast to `dtype`."
    if g.shape == shape and g.dtype is dtype:
        return g
    if g.shape != shape:
        nd = g.ndim - len(shape)
        if nd > 0:
            g = g.sum(axis=tuple(range(nd)))
        axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g


def _run_backward(root, grad, retain_graph):
    nodes, seen = [root], {root}
    for n in nodes:  # grows while it is walked: every node reachable from the root, once
        ps = n.parents
        if ps is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time: backward() frees the "
                "graph it ran through. Call backward(retain_graph=True) the first time to run it "
                "again, or recompute the forward pass.")
        for p in ps:
            if p is not None and not p._leaf and p not in seen:
                seen.add(p)
                nodes.append(p)
    nodes.sort(key=_seq_of, reverse=True)  # creation order is a topological order
    root.g = grad
    try:
        for n in nodes:
            g = n.g
            if g is None:
                continue
            n.g = None
            if n.chk is not None:
                _check_versions(n)
            n.backward(g)
    finally:
        if retain_graph:
            for n in nodes:
                n.g = None
        else:
            for n in nodes:
                n.g = n.parents = None


def _check_versions(n):
    for t, v in n.chk:
        if t._version != v:
            raise RuntimeError(
                f"one of the tensors needed to compute the gradient of {n.name} was modified by an "
                f"in-place operation after it was used (shape {tuple(t._data.shape)}, version "
                f"{t._version}, expected {v}); use an out-of-place operation (x = x + y) or .clone() "
                f"it first")


_seq_of = operator.attrgetter("seq")


# ------------------------------------------------------------------------------ Tensor
_new = object.__new__


def _wrap(a, ctx=None):
    "A Tensor over the array a (no copy), produced by ctx (None: a leaf)."
    t = _new(Tensor)
    t._data = a
    t._ctx = ctx
    t._rg = ctx is not None
    t._grad = None
    t._gview = None
    t._glog = None
    t._version = 0
    return t


def _fix_float64(out, a, b):
    "PyTorch's promotion: float64 results only when an input tensor is float64."
    # (not getattr(..., None): NumPy reads dtype None as float64)
    if out.dtype == _F64 and getattr(a, "dtype", _I64) != _F64 and getattr(b, "dtype", _I64) != _F64:
        return out.astype(_F32)
    return out


def _to_array(x, like=None):
    "An operand that is not a Tensor, as an array (Python numbers stay numbers: weak types)."
    if isinstance(x, (bool, int, float, np.generic)):  # numbers are weakly typed, as in PyTorch
        return x.item() if isinstance(x, np.generic) else x
    if isinstance(x, Tensor):
        return x._data
    a = np.asarray(x)
    if a.dtype == _F64 and like is not None and like.dtype.kind == "f":
        a = a.astype(like.dtype)  # a float64 NumPy constant does not promote a float32 tensor
    if a.dtype.kind not in "biuf":
        raise TypeError(f"unsupported operand of type {type(x).__name__} (dtype {a.dtype}) for a tensor "
                        f"operation; expected a number, a Tensor or a numeric array")
    return a


def _shape_error(op, a, b):
    return RuntimeError(f"{op}: the shapes {tuple(np.shape(a))} and {tuple(np.shape(b))} cannot be "
                        f"broadcast together (each dimension must match or be 1)")


class Tensor:
    """A NumPy array plus what autograd needs: `requires_grad`, `.grad`, `grad_fn`.

    `Tensor(data)` makes a float32 tensor (PyTorch's legacy constructor); use `tensor(data)` to
    keep integer and bool data, as in fastai."""
    __slots__ = ("_data", "_ctx", "_rg", "_grad", "_gview", "_glog", "_version")
    __array_priority__ = 1000
    _leaf = True

    def __init__(self, data=(), requires_grad=False):
        a = data._data if isinstance(data, Tensor) else data
        self._data = np.array(a, dtype=_F32, copy=None)
        if self._data.ndim and not self._data.flags.writeable:
            self._data = self._data.copy()
        self._ctx = None
        self._rg = False
        self._grad = None
        self._gview = None
        self._glog = None
        self._version = 0
        if requires_grad:
            self.requires_grad = True

    # ---------------------------------------------------------------- autograd attributes
    @property
    def requires_grad(self):
        "Whether gradients flow to (leaf) or through (result) this tensor."
        return self._rg

    @requires_grad.setter
    def requires_grad(self, v):
        v = bool(v)
        if self._ctx is not None:
            if not v:
                raise RuntimeError("requires_grad can only be changed on leaf tensors; use .detach() "
                                   "to get a tensor that does not require grad")
            return
        if v and self._data.dtype.kind != "f":
            raise RuntimeError(f"only tensors of floating point dtype can require gradients, this one "
                               f"is {self._data.dtype}")
        self._rg = v

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self):
        "The accumulated gradient (a Tensor of this tensor's shape), or None before any backward."
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad = None
            return
        g = value._data if isinstance(value, Tensor) else np.asarray(value)
        if g.shape != self._data.shape:
            raise RuntimeError(f"assigned grad has shape {tuple(g.shape)} but the tensor has shape "
                               f"{tuple(self._data.shape)}")
        if self._gview is not None:  # packed: the gradient lives in the block, copy into it
            self._gview[...] = g
            self._grad = _wrap(self._gview)
            if self._glog is not None:
                self._glog.append((self._gview, None))
        else:
            self._grad = value if isinstance(value, Tensor) else _wrap(np.array(g, dtype=self._data.dtype))

    @property
    def grad_fn(self):
        "The Function that produced this tensor (None for a leaf)."
        return self._ctx

    @property
    def is_leaf(self):
        return self._ctx is None

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`. `self` must be a single value
        unless `gradient` (d(loss)/d(self), of self's shape) is given."""
        if self._ctx is None:
            if self._rg:  # a leaf: its gradient is the seed itself
                g = np.ones_like(self._data) if gradient is None else _to_array(gradient)
                _acc_leaf(self, np.asarray(g, dtype=self._data.dtype))
                return
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn: nothing it was computed from requires grad (create the "
                               "parameters with requires_grad=True / nn.Parameter, and do not call "
                               "backward on a result computed under no_grad())")
        if gradient is None:
            if self._data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs: "
                                   f"backward() was called on a tensor of shape "
                                   f"{tuple(self._data.shape)}; reduce it first (e.g. .sum() or "
                                   f".mean()) or pass backward(gradient) of that shape")
            g = np.ones(self._data.shape, self._data.dtype)
        else:
            g = np.asarray(_to_array(gradient), dtype=self._data.dtype)
            if g.shape != self._data.shape:
                raise RuntimeError(f"backward(gradient): gradient has shape {tuple(g.shape)} but the "
                                   f"tensor has shape {tuple(self._data.shape)}")
        _run_backward(self._ctx, g, retain_graph)

    def detach(self):
        "The same data (shared, no copy) outside the graph."
        return _wrap(self._data)

    def detach_(self):
        self._ctx, self._rg = None, False
        return self

    def retain_grad(self):
        raise RuntimeError("retain_grad() is not supported by collabc tensors: the gradient of an "
                           "intermediate result is not kept; compute it as the gradient of a leaf")

    def zero_(self):
        return self.fill_(0)

    # ---------------------------------------------------------------- data access
    @property
    def data(self):
        "The data as a tensor outside the graph (shares memory, as PyTorch's `.data`)."
        return _wrap(self._data)

    @data.setter
    def data(self, value):
        a = value._data if isinstance(value, Tensor) else np.asarray(value)
        if self._gview is not None:  # packed parameter: copy into its place in the block
            if a.shape != self._data.shape:
                raise RuntimeError(f"cannot assign data of shape {tuple(a.shape)} to a packed parameter of "
                                   f"shape {tuple(self._data.shape)}: its memory is part of a "
                                   f"parameter block")
            self._data[...] = a
        else:
            self._data = a
        self._version += 1

    def numpy(self, force=False):
        "The underlying NumPy array itself (no copy: writing to it writes to the tensor)."
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self._data
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # an ndarray or NumPy scalar on the left of +, -, *, /, @ defers to the tensor (so the
        # result is a Tensor in the graph); any other ufunc sees plain arrays and returns arrays
        if method == "__call__" and not kwargs and len(inputs) == 2 and ufunc in _UFUNC_OPS:
            a, b = inputs
            if isinstance(b, Tensor) and not isinstance(a, Tensor):
                return getattr(b, _UFUNC_OPS[ufunc][1])(a)
            if isinstance(a, Tensor):
                return getattr(a, _UFUNC_OPS[ufunc][0])(b)
        args = [x._data if isinstance(x, Tensor) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x._data if isinstance(x, Tensor) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*args, **kwargs)

    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        "The shape, or its length along `dim`."
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_norm_dim(dim, self._data.ndim, "size")]

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    @property
    def device(self):
        return "cpu"

    @property
    def is_cuda(self):
        return False

    def cpu(self):
        "Tensors always live in main memory: returns self."
        return self

    def cuda(self, *args, **kwargs):
        raise RuntimeError("collabc runs on the CPU only (no CUDA): use .cpu(), which is a no-op")

    def to(self, *args, **kwargs):
        "`to('cpu')` is a no-op; `to(dtype)` converts (e.g. `to(np.float32)`)."
        for a in list(args) + list(kwargs.values()):
            if a is None or (isinstance(a, str) and a == "cpu") or isinstance(a, bool):
                continue
            if isinstance(a, str) and a.startswith("cuda"):
                self.cuda()
            return self.type(a)
        return self

    def item(self):
        "The single value as a Python number."
        if self._data.size != 1:
            raise ValueError(f"a Tensor with {self._data.size} elements cannot be converted to a Python "
                             f"number (item() needs exactly one)")
        return self._data.reshape(()).item()

    def tolist(self):
        return self._data.tolist()

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __contains__(self, v):
        return bool(np.any(self._data == _to_array(v)))

    def _scalar(self, kind):
        if self._data.size != 1:
            raise ValueError(f"only one element tensors can be converted to Python scalars "
                             f"(this one has shape {tuple(self._data.shape)})")
        return kind(self._data.reshape(()).item())

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an index "
                            f"(this one: dtype {self._data.dtype}, shape {tuple(self._data.shape)})")
        return int(self._data.reshape(()).item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous "
                               f"(shape {tuple(self._data.shape)}); use .any() or .all()")
        return bool(self._data.reshape(()).item())

    def __format__(self, spec):
        if self._data.ndim == 0 and spec:
            return format(self._data.item(), spec)
        return format(repr(self), spec)

    __hash__ = object.__hash__

    def __reduce_ex__(self, protocol):
        # pickling and deepcopy keep the data and requires_grad, never the graph
        return (_rebuild, (type(self), np.array(self._data), self._rg))

    def __repr__(self):
        return _tensor_repr(self)

    # ---------------------------------------------------------------- conversions
    def type(self, dtype=None):
        if dtype is None:
            return str(self._data.dtype)
        dt = np.dtype(dtype)
        if dt == self._data.dtype:
            return self
        return _cast(self, dt)

    def float(self):
        return self.type(_F32)

    def double(self):
        return self.type(_F64)

    def long(self):
        return self.type(_I64)

    def int(self):
        return self.type(int32)

    def bool(self):
        return self.type(bool_)

    def type_as(self, other):
        return self.type(other._data.dtype)

    def clone(self):
        return _unary(self, _Clone, self._data.copy())

    def contiguous(self):
        if self._data.flags.c_contiguous:
            return self
        return _unary(self, _Clone, np.ascontiguousarray(self._data))

    def is_contiguous(self):
        return bool(self._data.flags.c_contiguous)


def _rebuild(cls, data, rg):
    if cls is Parameter:
        return Parameter(_wrap(data), requires_grad=rg)
    t = _wrap(data)
    t._rg = bool(rg)
    return t


class Parameter(Tensor):
    """A tensor that is a model parameter: requires grad by default, and registers itself in a
    `Module` on attribute assignment. `Parameter(t)` shares t's data (no copy), as in PyTorch."""
    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            a = np.zeros(0, _F32)
        elif isinstance(data, Tensor):
            a = data._data
        else:
            a = np.asarray(data)
            if a.dtype == _F64:
                a = a.astype(_F32)
        if requires_grad and a.dtype.kind != "f":
            raise TypeError(f"Parameter: only floating point data can require gradients, got dtype "
                            f"{a.dtype} (pass a float tensor, e.g. zeros(...) or t.float())")
        self._data = a
        self._ctx = None
        self._rg = bool(requires_grad)
        self._grad = None
        self._gview = None
        self._glog = None
        self._version = 0

    def __repr__(self):
        return "Parameter containing:\n" + _tensor_repr(self)


# ------------------------------------------------------------------------------ repr (PyTorch's)
_PRINT = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80}


class _Formatter:
    "PyTorch's _tensor_str._Formatter: one width and style (int, fixed, scientific) per tensor."
    def __init__(self, values, floating):
        self.floating, self.int_mode, self.sci_mode, self.max_width = floating, True, False, 1
        p = _PRINT["precision"]
        if not floating:
            for v in values:
                self.max_width = max(self.max_width, len(f"{v}"))
            return
        vals = [v for v in values if math.isfinite(v) and v != 0]
        if not vals:
            return
        absv = [abs(v) for v in vals]
        lo, hi = min(absv), max(absv)
        self.int_mode = all(v == math.ceil(v) for v in vals)
        if self.int_mode:
            if hi / lo > 1000.0 or hi > 1.0e8:
                self.sci_mode = True
                widths = [len(f"{v:.{p}e}") for v in vals]
            else:
                widths = [len(f"{v:.0f}") + 1 for v in vals]
        elif hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4:
            self.sci_mode = True
            widths = [len(f"{v:.{p}e}") for v in vals]
        else:
            widths = [len(f"{v:.{p}f}") for v in vals]
        self.max_width = max(widths)

    def format(self, v):
        p = _PRINT["precision"]
        if self.floating:
            if self.sci_mode:
                s = f"{v:{self.max_width}.{p}e}"
            elif self.int_mode:
                s = f"{v:.0f}"
                if not (math.isinf(v) or math.isnan(v)):
                    s += "."
            else:
                s = f"{v:.{p}f}"
        else:
            s = f"{v}"
        return (self.max_width - len(s)) * " " + s


def _summarized(a, edge):
    "The edge items of every dimension (PyTorch's get_summarized_data)."
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * edge:
        a = np.concatenate([a[:edge], a[-edge:]])
    if a.ndim == 1:
        return a
    return np.stack([_summarized(r, edge) for r in a]) if len(a) else a


def _vector_str(a, indent, summarize, fmt):
    edge, width = _PRINT["edgeitems"], _PRINT["linewidth"]
    per_line = max(1, int(math.floor((width - indent) / (fmt.max_width + 2))))
    if summarize and a.shape[0] > 2 * edge:
        data = [fmt.format(v) for v in a[:edge].tolist()] + [" ..."] + \
               [fmt.format(v) for v in a[-edge:].tolist()]
    else:
        data = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _array_str(a, indent, summarize, fmt):
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector_str(a, indent, summarize, fmt)
    edge = _PRINT["edgeitems"]
    if summarize and a.shape[0] > 2 * edge:
        rows = [_array_str(a[i], indent + 1, summarize, fmt) for i in range(edge)] + ["..."] + \
               [_array_str(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0] - edge, a.shape[0])]
    else:
        rows = [_array_str(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0])]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


_DEFAULT_DTYPES = (_F32, _I64, bool_)


def _tensor_repr(t):
    a = t._data
    prefix, indent = "tensor(", 7
    suffixes = []
    if a.size == 0:
        body = "[]"
        if a.shape != (0,):
            suffixes.append(f"size={tuple(a.shape)}")
    else:
        summarize = a.size > _PRINT["threshold"]
        shown = _summarized(a, _PRINT["edgeitems"]) if summarize else a
        floating = a.dtype.kind == "f"
        vals = shown.reshape(-1).tolist()
        fmt = _Formatter(vals, floating)
        body = _array_str(a, indent, summarize, fmt)
    if a.dtype not in _DEFAULT_DTYPES:
        suffixes.append(f"dtype={a.dtype}")
    if t._ctx is not None:
        suffixes.append(f"grad_fn=<{t._ctx.name}>")
    elif t._rg:
        suffixes.append("requires_grad=True")
    out = [prefix + body]
    last = len(out[0]) - out[0].rfind("\n") + 1
    for s in suffixes:
        if last + len(s) + 2 > _PRINT["linewidth"]:
            out.append(",\n" + " " * indent + s)
            last = indent + len(s)
        else:
            out.append(", " + s)
            last += len(s) + 2
    return "".join(out) + ")"


# ------------------------------------------------------------------------------ elementwise ops
def _f32_contig(a):
    "True when a C kernel can read a in place as float32 (C- or F-ordered)."
    return a.dtype == _F32 and (a.flags.c_contiguous or a.flags.f_contiguous)


def _like_layout(g, ref):
    "g in ref's memory order, so both ravel(order='K') the same way."
    if ref.flags.c_contiguous:
        return np.ascontiguousarray(g)
    return np.asfortranarray(g)


class _Add(Function):
    __slots__ = ("a", "b")
    name = "AddBackward0"

    def backward(self, g):
        pa, pb = self.parents
        if pa is not None:
            _send(pa, _fit(g, self.a.shape, self.a.dtype))
        if pb is not None:
            _send(pb, _fit(g, self.b.shape, self.b.dtype))


class _Sub(Function):
    __slots__ = ("a", "b")
    name = "SubBackward0"

    def backward(self, g):
        pa, pb = self.parents
        if pa is not None:
            _send(pa, _fit(g, self.a.shape, self.a.dtype))
        if pb is not None:
            _send(pb, _fit(-g, self.b.shape, self.b.dtype))


class _Mul(Function):
    __slots__ = ("a", "b")
    name = "MulBackward0"

    def backward(self, g):
        pa, pb = self.parents
        a, b = self.a, self.b
        if pa is not None:
            _send(pa, _fit(g * b, a.shape, a.dtype))
        if pb is not None:
            _send(pb, _fit(g * a, b.shape, b.dtype))


class _Div(Function):
    __slots__ = ("a", "b")
    name = "DivBackward0"

    def backward(self, g):
        pa, pb = self.parents
        a, b = self.a, self.b
        if pa is not None:
            _send(pa, _fit(g / b, a.shape, a.dtype))
        if pb is not None:
            _send(pb, _fit(-g * a / (b * b), b.shape, b.dtype))


class _Pow(Function):
    __slots__ = ("a", "b", "out")
    name = "PowBackward0"

    def backward(self, g):
        pa, pb = self.parents
        a, b = self.a, self.b
        if pa is not None:
            _send(pa, _fit(g * b * np.power(a, b - 1), a.shape, a.dtype))
        if pb is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * self.out * np.log(a)
            _send(pb, _fit(gb, b.shape, b.dtype))


_SAVES_VALUES = (_Mul, _Div, _Pow)


def _binary(cls, ufunc, sym, a, b, at, bt):
    """out = ufunc(a, b) for arrays (or Python numbers) a, b that come from the tensors at, bt
    (None for constants), recording cls when a gradient can flow."""
    try:
        out = ufunc(a, b)
    except ValueError as e:
        if "broadcast" in str(e):
            raise _shape_error(f"'{sym}'", a, b) from None
        raise
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if out.dtype is _F64:
        out = _fix_float64(out, a, b)
    ra = at is not None and at._rg
    rb = bt is not None and bt._rg
    if (ra or rb) and _mode.enabled:
        ctx = cls(((at._ctx or at) if ra else None, (bt._ctx or bt) if rb else None))
        if type(a) is not np.ndarray:
            a = np.asarray(a, dtype=out.dtype)
        if type(b) is not np.ndarray:
            b = np.asarray(b, dtype=out.dtype)
        ctx.a = a
        ctx.b = b
        if cls in _SAVES_VALUES:
            if at is not None and bt is not None:
                ctx.chk = ((at, at._version), (bt, bt._version))
            else:
                t = at if at is not None else bt
                ctx.chk = ((t, t._version),)
            if cls is _Pow:
                ctx.out = out
        return _wrap(out, ctx)
    return _wrap(out)


def _true_divide(a, b):
    out = np.true_divide(a, b)
    if out.dtype == _F64 and getattr(a, "dtype", _F64) != _F64 and getattr(b, "dtype", _F64) != _F64:
        out = out.astype(_F32)
    return out


def _power(a, b):
    if isinstance(b, np.ndarray) and b.dtype.kind in "iu" and getattr(a, "dtype", None) is not None \
            and a.dtype.kind in "iu" and np.any(b < 0):
        raise RuntimeError("integers to negative integer powers are not allowed (use a float tensor)")
    return np.power(a, b)


_BINARY = {"add": (_Add, np.add, "+"), "sub": (_Sub, np.subtract, "-"),
           "mul": (_Mul, np.multiply, "*"), "div": (_Div, _true_divide, "/"),
           "pow": (_Pow, _power, "**")}


def _bin(name, x, y, reverse=False):
    cls, uf, sym = _BINARY[name]
    xa = x._data
    if type(y) is Tensor or isinstance(y, Tensor):
        ya, yt = y._data, y
    else:
        ya, yt = _to_array(y, xa), None
    if reverse:
        return _binary(cls, uf, sym, ya, xa, yt, x)
    return _binary(cls, uf, sym, xa, ya, x, yt)


def _cmp(ufunc, x, y):
    ya = y._data if isinstance(y, Tensor) else _to_array(y, x._data)
    try:
        out = ufunc(x._data, ya)
    except ValueError as e:
        if "broadcast" in str(e):
            raise _shape_error("comparison", x._data, ya) from None
        raise
    return _wrap(np.asarray(out))


def _inplace(self, name, other):
    cls, uf, sym = _BINARY[name]
    ot = other if isinstance(other, Tensor) else None
    oa = other._data if ot is not None else _to_array(other, self._data)
    if _mode.enabled and (self._rg or (ot is not None and ot._rg)):
        if self._ctx is None and self._rg:
            raise RuntimeError(
                f"a leaf tensor that requires grad (e.g. a parameter) cannot be changed in place "
                f"('{sym}=') while gradients are recorded; do it inside `with no_grad():`, or "
                f"write x = x {sym} y to make a new tensor")
        res = _binary(cls, uf, sym, self._data, oa, self, ot)
        out = res._data
        if out.shape != self._data.shape:
            raise RuntimeError(f"in-place '{sym}=': the result has shape {tuple(out.shape)} but the "
                               f"tensor has shape {tuple(self._data.shape)} (an in-place operation "
                               f"cannot change the shape; other shape {tuple(np.shape(oa))})")
        if out.dtype != self._data.dtype:
            if not np.can_cast(out.dtype, self._data.dtype, "same_kind"):
                raise RuntimeError(f"in-place '{sym}=': result type {out.dtype} can't be cast to the "
                                   f"tensor's type {self._data.dtype}")
            out = out.astype(self._data.dtype)
        ctx = res._ctx
        if ctx.chk is not None:  # the old array it saved is no longer the tensor's: no check
            ctx.chk = tuple((t, v) for t, v in ctx.chk if t is not self) or None
        self._data, self._ctx, self._rg = out, ctx, True
    else:
        a = self._data
        try:
            uf(a, oa, out=a) if uf is not _true_divide else np.true_divide(a, oa, out=a)
        except TypeError:
            raise RuntimeError(f"in-place '{sym}=': result type {np.result_type(a, oa)} can't be cast to "
                               f"the tensor's type {a.dtype}") from None
        except ValueError as e:
            if "read-only" in str(e):
                raise RuntimeError(f"in-place '{sym}=' on a read-only tensor (a broadcast view); "
                                   f"use .clone() first") from None
            raise RuntimeError(f"in-place '{sym}=': the shape {tuple(np.shape(oa))} cannot be broadcast "
                               f"to the tensor's shape {tuple(a.shape)}") from None
    self._version += 1
    return self


# ---------------------------------------------------------------- unary
class _Neg(Function):
    __slots__ = ()
    name = "NegBackward0"

    def backward(self, g):
        _send(self.parents[0], -g)


class _Clone(Function):
    __slots__ = ()
    name = "CloneBackward0"

    def backward(self, g):
        _send(self.parents[0], g)


class _Cast(Function):
    __slots__ = ("dtype",)
    name = "ToCopyBackward0"

    def backward(self, g):
        _send(self.parents[0], g.astype(self.dtype))


class _Exp(Function):
    __slots__ = ("out",)
    name = "ExpBackward0"

    def backward(self, g):
        _send(self.parents[0], g * self.out)


class _Log(Function):
    __slots__ = ("x",)
    name = "LogBackward0"

    def backward(self, g):
        _send(self.parents[0], g / self.x)


class _Sqrt(Function):
    __slots__ = ("out",)
    name = "SqrtBackward0"

    def backward(self, g):
        _send(self.parents[0], g / (2 * self.out))


class _Abs(Function):
    __slots__ = ("x",)
    name = "AbsBackward0"

    def backward(self, g):
        _send(self.parents[0], g * np.sign(self.x))


class _Sigmoid(Function):
    __slots__ = ("out",)
    name = "SigmoidBackward0"

    def backward(self, g):
        s = self.out
        _send(self.parents[0], g * (s * (1 - s)))


class _Tanh(Function):
    __slots__ = ("out",)
    name = "TanhBackward0"

    def backward(self, g):
        _send(self.parents[0], g * (1 - self.out * self.out))


class _Relu(Function):
    __slots__ = ("x",)
    name = "ReluBackward0"

    def backward(self, g):
        x = self.x
        if _f32_contig(x) and g.shape == x.shape:
            g = _like_layout(g, x)
            dx = np.zeros_like(x)
            _core.relu_backward(dx.ravel(order="K"), g.ravel(order="K"), x.ravel(order="K"))
            _send(self.parents[0], dx)
        else:
            _send(self.parents[0], g * (x > 0))


class _Clamp(Function):
    __slots__ = ("x", "lo", "hi")
    name = "ClampBackward1"

    def backward(self, g):
        x, lo, hi = self.x, self.lo, self.hi
        keep = np.ones(x.shape, bool)
        if lo is not None:
            keep &= x >= lo
        if hi is not None:
            keep &= x <= hi
        _send(self.parents[0], g * keep)


class _NoGradient(Function):
    "Recorded for an operation that has no gradient, so that backward names it."
    __slots__ = ("op",)
    name = "NotDifferentiableBackward"

    def backward(self, g):
        raise RuntimeError(f"{self.op}() has no gradient, and the loss depends on its result through a "
                           f"tensor that requires grad; compute it under `with no_grad():` or on "
                           f".detach()ed inputs, or use a differentiable operation instead")


def _no_grad_op(op, x, result):
    "Wraps the result of an operation without a gradient; backward through it raises, naming op."
    if type(result) is not np.ndarray:
        result = np.asarray(result)
    if _mode.enabled and x._rg and result.dtype.kind in "fc":
        ctx = _NoGradient((_edge(x),))
        ctx.op = op
        return _wrap(result, ctx)
    return _wrap(result)


def _unary(src, cls, result, **saved):
    "Wraps result = f(src) and records cls (with the saved arrays) when src needs a gradient."
    if type(result) is not np.ndarray:
        result = np.asarray(result)
    if _mode.enabled and src._rg:
        ctx = cls((_edge(src),))
        for k, v in saved.items():
            setattr(ctx, k, v)
        if "x" in saved:
            ctx.save_versions(src)
        return _wrap(result, ctx)
    return _wrap(result)


def _float_input(x, op):
    if x._data.dtype.kind not in "fc":
        raise TypeError(f"{op}() needs a floating point tensor, got dtype {x._data.dtype} "
                        f"(convert with .float())")
    return x._data


def _cast(x, dt):
    a = x._data.astype(dt)
    if dt.kind == "f" and x._data.dtype.kind == "f":
        return _unary(x, _Cast, a, dtype=x._data.dtype)
    return _wrap(a)


def _relu(x):
    a = x._data
    if _f32_contig(a):
        out = np.empty_like(a)
        _core.relu_forward(out.ravel(order="K"), a.ravel(order="K"))
    else:
        out = np.maximum(a, 0) if a.dtype.kind != "b" else a.copy()
    return _unary(x, _Relu, out, x=a)


def _sigmoid_array(a):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-a))


def _clamp(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    a = x._data
    out = np.clip(a, min, max)
    if x._rg and _mode.enabled:
        return _unary(x, _Clamp, out, x=a, lo=min, hi=max)
    return _wrap(out)


# ---------------------------------------------------------------- reductions
def _norm_dim(d, ndim, op="dim"):
    if isinstance(d, Tensor):
        d = int(d)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an integer, got {d!r}")
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return int(d) % n


def _norm_dims(dim, ndim, op):
    "A reduction's dims as a sorted tuple of non-negative axes (None: all)."
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (list, tuple)):
        dims = tuple(sorted({_norm_dim(d, ndim, op) for d in dim}))
    else:
        dims = (_norm_dim(dim, ndim, op),)
    return dims if ndim else ()


class _Sum(Function):
    __slots__ = ("shape", "kshape", "scale")
    name = "SumBackward1"

    def backward(self, g):
        full = np.empty(self.shape, g.dtype)
        full[...] = g.reshape(self.kshape)  # broadcast over the summed dimensions
        if self.scale != 1:
            full *= np.asarray(self.scale, g.dtype)
        _send(self.parents[0], full)


_ROWSUM_MAX = 1024


def _sum(x, dim=None, keepdim=False, mean=False, op="sum"):
    a = x._data
    nd = a.ndim
    if type(dim) is int and -nd <= dim < nd:
        dims = (dim % nd,)
    else:
        dims = _norm_dims(dim, nd, op)
    if mean and a.dtype.kind not in "fc":
        raise TypeError(f"mean(): needs a floating point tensor, got dtype {a.dtype} (use .float())")
    shape = a.shape
    if (not mean and a.dtype is _F32 and nd == 2 and dims[0] == 1 and a.flags.c_contiguous
            and 0 < shape[1] <= _ROWSUM_MAX):
        # rows of a float32 matrix: summed left to right in C (the fused kernels' order)
        out = np.empty(shape[0], _F32)
        _core.tensor_sum_rows_forward(out, a)
        if keepdim:
            out = out.reshape(shape[0], 1)
    else:
        kw = {} if a.dtype.kind in "fc" or mean else {"dtype": _I64}
        out = (np.mean if mean else np.sum)(a, axis=dims, keepdims=keepdim, **kw)
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if x._rg and _mode.enabled:
        cls = (_MeanAll if mean else _SumAll) if dim is None else (_Mean if mean else _Sum)
        ctx = cls((x._ctx or x,))
        ctx.shape = shape
        if len(dims) == 1:
            d = dims[0]
            ctx.kshape = shape[:d] + (1,) + shape[d + 1:]
            n = shape[d]
        else:
            ctx.kshape = tuple(1 if i in dims else s for i, s in enumerate(shape))
            n = math.prod(shape[d] for d in dims)
        ctx.scale = 1.0 / n if mean and n else 1
        return _wrap(out, ctx)
    return _wrap(out)


_Mean = _renamed(_Sum, "MeanBackward1")


_SumAll = _renamed(_Sum, "SumBackward0")


_MeanAll = _renamed(_Sum, "MeanBackward0")


class _MaxMin(Function):
    __slots__ = ("shape", "dim", "keepdim", "idx", "mask")
    name = "MaxBackward0"

    def backward(self, g):
        if self.mask is not None:  # full reduction: ties share the gradient evenly
            m = self.mask
            _send(self.parents[0], m * (g / m.sum()).astype(g.dtype))
            return
        d = self.dim
        if not self.keepdim:
            g = np.expand_dims(g, d)
        out = np.zeros(self.shape, g.dtype)
        np.put_along_axis(out, np.expand_dims(self.idx, d) if not self.keepdim else self.idx, g, axis=d)
        _send(self.parents[0], out)


_MinBackward = _renamed(_MaxMin, "MinBackward0")


def _maxmin(x, dim, keepdim, is_max):
    a = x._data
    op = "max" if is_max else "min"
    if a.size == 0:
        raise RuntimeError(f"{op}(): cannot reduce an empty tensor")
    cls = _MaxMin if is_max else _MinBackward
    if dim is None:
        v = a.max() if is_max else a.min()
        out = np.asarray(v)
        if _mode.enabled and x._rg:
            ctx = cls((_edge(x),))
            ctx.mask, ctx.shape = (a == v).astype(a.dtype), a.shape
            return _wrap(out, ctx)
        return _wrap(out)
    d = _norm_dim(dim, a.ndim, op)
    idx = (np.argmax if is_max else np.argmin)(a, axis=d, keepdims=keepdim)
    vals = np.take_along_axis(a, idx if keepdim else np.expand_dims(idx, d), axis=d)
    if not keepdim:
        vals = np.squeeze(vals, d)
    t = _wrap(np.asarray(vals))
    if _mode.enabled and x._rg:
        ctx = cls((_edge(x),))
        ctx.shape, ctx.dim, ctx.keepdim, ctx.idx, ctx.mask = a.shape, d, keepdim, idx, None
        t = _wrap(np.asarray(vals), ctx)
    return _MaxResult(t, _wrap(np.asarray(idx, dtype=_I64)))


class _MaxResult(tuple):
    "(values, indices), as PyTorch's torch.return_types.max."
    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])

    def __repr__(self):
        return f"(values={self[0]!r},\nindices={self[1]!r})"


# ---------------------------------------------------------------- shape operations
class _Reshape(Function):
    __slots__ = ("shape",)
    name = "ViewBackward0"

    def backward(self, g):
        _send(self.parents[0], g.reshape(self.shape))


class _Permute(Function):
    __slots__ = ("inv",)
    name = "PermuteBackward0"

    def backward(self, g):
        _send(self.parents[0], g.transpose(self.inv))


class _Expand(Function):
    __slots__ = ("shape", "dtype")
    name = "ExpandBackward0"

    def backward(self, g):
        _send(self.parents[0], _fit(g, self.shape, self.dtype))


def _shape_args(shape, op):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = tuple(shape[0])
    out = []
    for s in shape:
        if isinstance(s, Tensor):
            s = int(s)
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{op}: sizes must be integers, got {s!r}")
        out.append(int(s))
    return tuple(out)


def _reshape(x, shape, op="view", cls=None):
    "x with a new shape (a view when the memory layout allows it, else a copy)."
    a = x._data
    try:
        out = a.reshape(shape)
    except ValueError:
        raise RuntimeError(f"{op}: shape {list(shape)} is invalid for a tensor of {a.size} elements "
                           f"(shape {tuple(a.shape)})") from None
    if _mode.enabled and x._rg:
        ctx = (cls or _Reshape)((_edge(x),))
        ctx.shape = a.shape
        return _wrap(out, ctx)
    return _wrap(out)


_Squeeze = _renamed(_Reshape, "SqueezeBackward0")


_Unsqueeze = _renamed(_Reshape, "UnsqueezeBackward0")


_Flatten = _renamed(_Reshape, "ReshapeAliasBackward0")


def _permute(x, perm, cls=None):
    a = x._data
    perm = tuple(_norm_dim(p, a.ndim, "permute") for p in perm)
    if sorted(perm) != list(range(a.ndim)):
        raise RuntimeError(f"permute: {list(perm)} is not a permutation of the {a.ndim} dimensions "
                           f"of a tensor of shape {tuple(a.shape)}")
    out = a.transpose(perm)
    if _mode.enabled and x._rg:
        ctx = (cls or _Permute)((_edge(x),))
        ctx.inv = tuple(np.argsort(perm).tolist())
        return _wrap(out, ctx)
    return _wrap(out)


_Transpose = _renamed(_Permute, "TBackward0")


# ---------------------------------------------------------------- indexing
def _index_parts(idx):
    "The index with Tensors replaced by arrays, and whether it uses advanced (fancy) indexing."
    if isinstance(idx, Tensor):
        return idx._data, True
    if isinstance(idx, tuple):
        parts, fancy = [], False
        for i in idx:
            if isinstance(i, Tensor):
                i = i._data
            if isinstance(i, (np.ndarray, list)):
                fancy = True
            parts.append(i)
        return tuple(parts), fancy
    return idx, isinstance(idx, (np.ndarray, list))


class _Gather(Function):
    "table[ids] along dim 0 (embedding lookup): the gradient is a scatter-add of rows."
    __slots__ = ("idx", "wrap", "shape", "dtype", "out_shape")
    name = "IndexBackward0"

    def backward(self, g):
        p = self.parents[0]
        if p._leaf:
            gt, log = p._grad, p._glog
            if (gt is not None and log is not None and len(log) <= GRAD_LOG_MAX and g.dtype is _F32
                    and g.ndim == 2 and g.flags.c_contiguous):  # a packed table: straight into its block
                buf = gt._data
                if buf.ndim == 2:
                    idx = self.idx
                    log.append((buf, idx.copy()))
                    _core.tensor_gather_backward(buf, g, idx, self.wrap)
                    return
            buf = _leaf_grad_buffer(p, self.idx)
        else:
            buf = np.zeros(self.shape, self.dtype)
        _scatter_rows(buf, g, self.idx, self.wrap)
        if not p._leaf:
            _send(p, buf)


_EmbeddingBackward = _renamed(_Gather, "EmbeddingBackward0")


def _scatter_rows(buf, g, idx, wrap):
    "buf[idx[b]] += g[b] for every b (repeated ids accumulate)."
    n = idx.shape[0]
    if buf.dtype is _F32 and buf.flags.c_contiguous:
        if not (g.dtype is _F32 and g.flags.c_contiguous):
            g = np.ascontiguousarray(g, dtype=_F32)
        if buf.ndim == 2 and g.ndim == 2:
            _core.tensor_gather_backward(buf, g, idx, wrap)
            return
        rows = buf.shape[0]
        K = buf.size // rows if rows else 0
        _core.tensor_gather_backward(buf.reshape(rows, K), g.reshape(n, K), idx, wrap)
    else:
        np.add.at(buf, idx.reshape(-1), g.reshape((-1,) + buf.shape[1:]))


def _gather(x, idx, wrap=True, cls=_Gather, what=None):
    "x[idx] for an integer index array idx (any shape) along dim 0."
    a = x._data
    if a.ndim == 0:
        raise IndexError("invalid index of a 0-d tensor: it has no dimension to index")
    if idx.dtype is not _I64:
        idx = idx.astype(_I64)
    flat = idx if idx.ndim == 1 else idx.reshape(-1)
    n, rows = flat.shape[0], a.shape[0]
    if a.dtype is _F32 and a.flags.c_contiguous:
        out = np.empty((n,) + a.shape[1:], _F32)
        try:
            if a.ndim == 2:
                _core.tensor_gather_forward(out, a, flat, wrap)
            else:
                K = a.size // rows if rows else 0
                _core.tensor_gather_forward(out.reshape(n, K), a.reshape(rows, K), flat, wrap)
        except IndexError:
            bad = flat[(flat >= rows) | (flat < (-rows if wrap else 0))][0]
            raise IndexError(f"index {int(bad)} is out of range for {what or 'a tensor'} with "
                             f"{rows} rows (shape {tuple(a.shape)}); valid indices are "
                             f"{-rows if wrap else 0} to {rows - 1}") from None
    else:
        lo = -rows if wrap else 0
        if flat.size and (flat.min() < lo or flat.max() >= rows):
            bad = flat[(flat >= rows) | (flat < lo)][0]
            raise IndexError(f"index {int(bad)} is out of range for {what or 'a tensor'} with {rows} "
                             f"rows (shape {tuple(a.shape)})")
        out = a[flat]
    if idx.ndim != 1:
        out = out.reshape(idx.shape + a.shape[1:])
    if x._rg and _mode.enabled:
        ctx = cls((x._ctx or x,))
        ctx.idx, ctx.wrap, ctx.shape, ctx.dtype = flat, wrap, a.shape, a.dtype
        return _wrap(out, ctx)
    return _wrap(out)


class _Index(Function):
    __slots__ = ("idx", "shape", "dtype", "fancy")
    name = "IndexBackward0"

    def backward(self, g):
        out = np.zeros(self.shape, self.dtype)
        if self.fancy:
            np.add.at(out, self.idx, g)
        else:
            out[self.idx] = g
        _send(self.parents[0], out)


_Select = _renamed(_Index, "SelectBackward0")


_Slice = _renamed(_Index, "SliceBackward0")


_BASIC = (int, slice, type(None), type(Ellipsis))


def _getitem(x, idx):
    a = x._data
    if type(idx) is tuple:
        for i in idx:
            if type(i) not in _BASIC:
                break
        else:  # basic indexing (ints, slices, None, ...): a view
            try:
                out = a[idx]
            except IndexError as e:
                raise IndexError(f"{e} (indexing a tensor of shape {tuple(a.shape)})") from None
            if type(out) is not np.ndarray:
                out = np.asarray(out)
            if x._rg and _mode.enabled:
                ctx = _Slice((x._ctx or x,))
                ctx.idx, ctx.shape, ctx.dtype, ctx.fancy = idx, a.shape, a.dtype, False
                return _wrap(out, ctx)
            return _wrap(out)
    idx, fancy = _index_parts(idx)
    if fancy and isinstance(idx, (np.ndarray, list)):
        arr = np.asarray(idx)
        if arr.dtype.kind in "iu":
            return _gather(x, arr)
        if arr.dtype.kind != "b" and arr.size:
            raise IndexError(f"tensors used as indices must be integer or bool, got dtype {arr.dtype}")
        if arr.size == 0:
            idx = arr.astype(_I64)
    try:
        out = a[idx]
    except IndexError as e:
        raise IndexError(f"{e} (indexing a tensor of shape {tuple(a.shape)})") from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if _mode.enabled and x._rg:
        cls = _Index if fancy else (_Select if isinstance(idx, (int, np.integer)) else _Slice)
        ctx = cls((_edge(x),))
        ctx.idx, ctx.shape, ctx.dtype, ctx.fancy = idx, a.shape, a.dtype, fancy
        return _wrap(out, ctx)
    return _wrap(out)


class _SetItem(Function):
    __slots__ = ("idx", "vshape", "vdtype")
    name = "CopySlices"

    def backward(self, g):
        ps, pv = self.parents
        if ps is not None:
            gs = g.copy()
            gs[self.idx] = 0
            _send(ps, gs)
        if pv is not None:
            _send(pv, _fit(np.asarray(g[self.idx]), self.vshape, self.vdtype))


def _setitem(x, idx, value):
    idx, _ = _index_parts(idx)
    vt = value if isinstance(value, Tensor) else None
    va = value._data if vt is not None else _to_array(value, x._data)
    if _mode.enabled and (x._rg or (vt is not None and vt._rg)):
        if x._ctx is None and x._rg:
            raise RuntimeError("a leaf tensor that requires grad (e.g. a parameter) cannot be assigned "
                               "to in place while gradients are recorded; do it inside `with no_grad():`")
        new = x._data.copy()
        new[idx] = va
        ctx = _SetItem((_edge(x), None if vt is None else _edge(vt)))
        ctx.idx, ctx.vshape = idx, np.shape(va)
        ctx.vdtype = getattr(va, "dtype", new.dtype)
        x._data, x._ctx, x._rg = new, ctx, True
    else:
        x._data[idx] = va
    x._version += 1


# ---------------------------------------------------------------- joining
class _Cat(Function):
    __slots__ = ("bounds", "dim", "dtypes")
    name = "CatBackward0"

    def backward(self, g):
        d = self.dim
        for p, (lo, hi), dt in zip(self.parents, self.bounds, self.dtypes):
            if p is not None:
                sl = (slice(None),) * d + (slice(lo, hi),)
                _send(p, _fit(g[sl], g[sl].shape, dt))


class _Stack(Function):
    __slots__ = ("dim", "dtypes")
    name = "StackBackward0"

    def backward(self, g):
        for i, (p, dt) in enumerate(zip(self.parents, self.dtypes)):
            if p is not None:
                _send(p, np.take(g, i, axis=self.dim).astype(dt, copy=False))


def _as_tensors(tensors, op):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}() expects a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}() expects a non-empty list of tensors")
    return [t if isinstance(t, Tensor) else tensor(t) for t in tensors]


def cat(tensors, dim=0):
    "Concatenate tensors along an existing dimension `dim` (`torch.cat`)."
    ts = _as_tensors(tensors, "cat")
    arrays = [t._data for t in ts]
    nd = arrays[0].ndim
    if nd == 0:
        raise RuntimeError("cat(): zero-dimensional tensors cannot be concatenated (use stack)")
    d = _norm_dim(dim, nd, "cat")
    for i, a in enumerate(arrays):
        if a.ndim != nd or a.shape[:d] + a.shape[d + 1:] != arrays[0].shape[:d] + arrays[0].shape[d + 1:]:
            raise RuntimeError(f"cat(): sizes of tensors must match except in dimension {d}: tensor 0 has "
                               f"shape {tuple(arrays[0].shape)}, tensor {i} has shape {tuple(a.shape)}")
    out = np.concatenate(arrays, axis=d)
    if out.dtype == _F64 and all(a.dtype != _F64 for a in arrays):
        out = out.astype(_F32)  # PyTorch: float32 with int64 stays float32
    if _mode.enabled and any(t._rg for t in ts):
        ctx = _Cat(tuple(_edge(t) for t in ts))
        edges = np.cumsum([0] + [a.shape[d] for a in arrays])
        ctx.bounds = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
        ctx.dim, ctx.dtypes = d, [a.dtype for a in arrays]
        return _wrap(out, ctx)
    return _wrap(out)


def stack(tensors, dim=0):
    "Stack same-shaped tensors along a new dimension `dim` (`torch.stack`)."
    ts = _as_tensors(tensors, "stack")
    arrays = [t._data for t in ts]
    for i, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise RuntimeError(f"stack(): expects each tensor to be the same shape, but got "
                               f"{tuple(arrays[0].shape)} at entry 0 and {tuple(a.shape)} at entry {i}")
    d = _norm_dim(dim, arrays[0].ndim + 1, "stack")
    out = np.stack(arrays, axis=d)
    if _mode.enabled and any(t._rg for t in ts):
        ctx = _Stack(tuple(_edge(t) for t in ts))
        ctx.dim, ctx.dtypes = d, [a.dtype for a in arrays]
        return _wrap(out, ctx)
    return _wrap(out)


class _Where(Function):
    __slots__ = ("cond", "a", "b")
    name = "WhereBackward0"

    def backward(self, g):
        pa, pb = self.parents
        zero = np.zeros((), g.dtype)
        if pa is not None:
            _send(pa, _fit(np.where(self.cond, g, zero), self.a.shape, self.a.dtype))
        if pb is not None:
            _send(pb, _fit(np.where(self.cond, zero, g), self.b.shape, self.b.dtype))


def where(condition, input, other):
    "Elementwise `input` where `condition` holds, else `other` (`torch.where`)."
    c = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    at = input if isinstance(input, Tensor) else None
    bt = other if isinstance(other, Tensor) else None
    a = at._data if at is not None else np.asarray(_to_array(input))
    b = bt._data if bt is not None else np.asarray(_to_array(other))
    out = np.where(c.astype(bool), a, b)
    out = _fix_float64(out, a, b) if out.dtype == _F64 else out
    if _mode.enabled and ((at is not None and at._rg) or (bt is not None and bt._rg)):
        ctx = _Where((None if at is None else _edge(at), None if bt is None else _edge(bt)))
        ctx.cond, ctx.a, ctx.b = c.astype(bool), a, b
        return _wrap(out, ctx)
    return _wrap(out)


# ---------------------------------------------------------------- matrix product
class _MatMul(Function):
    __slots__ = ("a", "b")
    name = "MmBackward0"

    def backward(self, g):
        pa, pb = self.parents
        a, b = self.a, self.b
        if a.ndim == 1 and b.ndim == 1:  # a dot product: g is a scalar
            if pa is not None:
                _send(pa, _fit(g * b, a.shape, a.dtype))
            if pb is not None:
                _send(pb, _fit(g * a, b.shape, b.dtype))
            return
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        if pa is not None:
            ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
            if a.ndim == 1:
                ga = ga.reshape(ga.shape[:-2] + (ga.shape[-1],))
            _send(pa, _fit(ga, a.shape, a.dtype))
        if pb is not None:
            gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
            if b.ndim == 1:
                gb = gb.reshape(gb.shape[:-2] + (gb.shape[-2],))
            _send(pb, _fit(gb, b.shape, b.dtype))


def _matmul(at, bt, a, b):
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        raise RuntimeError("matmul ('@'): both arguments need at least 1 dimension, got shapes "
                           f"{tuple(np.shape(a))} and {tuple(np.shape(b))}")
    try:
        out = np.matmul(a, b)
    except ValueError:
        ka = np.shape(a)[-1]
        kb = np.shape(b)[-2] if np.ndim(b) > 1 else np.shape(b)[0]
        raise RuntimeError(f"matmul ('@'): shapes {tuple(np.shape(a))} and {tuple(np.shape(b))} cannot be "
                           f"multiplied ({ka} columns against {kb} rows)") from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if out.dtype == _F64:
        out = _fix_float64(out, a, b)
    if _mode.enabled and ((at is not None and at._rg) or (bt is not None and bt._rg)):
        ctx = _MatMul((None if at is None else _edge(at), None if bt is None else _edge(bt)))
        ctx.a, ctx.b = np.asarray(a), np.asarray(b)
        ctx.save_versions(*[t for t in (at, bt) if t is not None])
        return _wrap(out, ctx)
    return _wrap(out)


# ------------------------------------------------------------------------------ nn operations
def _as_t(x):
    return x if isinstance(x, Tensor) else tensor(x)


class _Linear(Function):
    "x @ W.T + b through the C kernels over feature-major (transposed) activations."
    __slots__ = ("xT", "w", "has_bias")
    name = "AddmmBackward0"

    def backward(self, g):
        px, pw, pb = self.parents
        xT, W = self.xT, self.w
        gT = np.ascontiguousarray(g.T, dtype=_F32)
        dW, w_direct = _kernel_grad(pw, W.shape)
        db, b_direct = _kernel_grad(pb, (W.shape[0],)) if self.has_bias else (None, True)
        dxT = np.zeros(xT.shape, _F32) if px is not None else None
        _core.linear_backward(dxT, dW, db, gT, xT, W)
        if px is not None:
            _send(px, dxT.T)
        if pw is not None and not w_direct:
            _send(pw, dW)
        if pb is not None and not b_direct:
            _send(pb, db)


def _kernel_grad(p, shape):
    """A float32 buffer a C backward kernel can accumulate into for parent edge p: the leaf's own
    gradient when possible (returned with True), else fresh zeros to send on."""
    if p is not None and p._leaf:
        buf = _leaf_grad_buffer(p)
        if buf.dtype == _F32 and buf.flags.c_contiguous:
            return buf, True
    return np.zeros(shape, _F32), False


_LinearNoBias = _renamed(_Linear, "MmBackward0")


def linear(input, weight, bias=None):
    "`input @ weight.T + bias` (`F.linear`): weight (out_features, in_features)."
    x, w = _as_t(input), _as_t(weight)
    b = None if bias is None else _as_t(bias)
    a, W = x._data, w._data
    if W.ndim != 2:
        raise RuntimeError(f"linear: weight must be 2-D (out_features, in_features), got shape {tuple(W.shape)}")
    if a.ndim == 0 or a.shape[-1] != W.shape[1]:
        raise RuntimeError(f"linear: the input has shape {tuple(a.shape)}, its last dimension must be "
                           f"in_features = {W.shape[1]} (weight shape {tuple(W.shape)})")
    if b is not None and b._data.shape != (W.shape[0],):
        raise RuntimeError(f"linear: bias has shape {tuple(b._data.shape)}, expected ({W.shape[0]},)")
    fast = (a.ndim == 2 and a.dtype == _F32 and W.dtype == _F32 and W.flags.c_contiguous and
            (b is None or (b._data.dtype == _F32 and b._data.flags.c_contiguous)) and a.shape[0] > 0)
    if not fast:
        out = x @ w.t()
        return out + b if b is not None else out
    xT = a.T
    if not xT.flags.c_contiguous:
        xT = np.ascontiguousarray(xT)
    outT = np.empty((W.shape[0], a.shape[0]), _F32)
    _core.linear_forward(outT, xT, W, None if b is None else b._data)
    out = outT.T
    if _mode.enabled and (x._rg or w._rg or (b is not None and b._rg)):
        ctx = (_Linear if b is not None else _LinearNoBias)(
            (_edge(x), _edge(w), None if b is None else _edge(b)))
        ctx.xT, ctx.w, ctx.has_bias = xT, W, b is not None
        ctx.save_versions(x, w)
        return _wrap(out, ctx)
    return _wrap(out)


class _SigmoidRange(Function):
    __slots__ = ("x", "lo", "hi")
    name = "SigmoidRangeBackward0"

    def backward(self, g):
        x, lo, hi = self.x, self.lo, self.hi
        if x.dtype is _F32:
            if x.flags.c_contiguous:
                if not (g.dtype is _F32 and g.flags.c_contiguous):
                    g = np.ascontiguousarray(g, dtype=_F32)
                dx = np.zeros(x.shape, _F32)
                _core.sigmoid_range_backward(dx.reshape(-1), g.reshape(-1), x.reshape(-1), lo, hi)
            else:
                g = _like_layout(np.asarray(g, _F32), x)
                dx = np.zeros_like(x)
                _core.sigmoid_range_backward(dx.ravel(order="K"), g.ravel(order="K"), x.ravel(order="K"), lo,
                                             hi)
        else:
            s = _sigmoid_array(x)
            dx = g * (hi - lo) * (s * (1 - s))
        _send(self.parents[0], dx)


def sigmoid_range(x, low, high):
    "fastai's `sigmoid_range`: `sigmoid(x) * (high - low) + low`, one operation (C for float32)."
    if not isinstance(x, Tensor):
        x = tensor(x)
    a = x._data
    lo, hi = float(low), float(high)
    if not lo < hi or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"sigmoid_range: need finite low < high, got low={low!r}, high={high!r}")
    if a.dtype is _F32:
        flags = a.flags
        if flags.c_contiguous:
            out = np.empty(a.shape, _F32)
            _core.sigmoid_range_forward(out.reshape(-1), a.reshape(-1), lo, hi)
        else:
            if not flags.f_contiguous:
                a = np.ascontiguousarray(a)
            out = np.empty_like(a)
            _core.sigmoid_range_forward(out.ravel(order="K"), a.ravel(order="K"), lo, hi)
    else:
        _float_input(x, "sigmoid_range")
        out = _sigmoid_array(a) * (hi - lo) + lo
    if x._rg and _mode.enabled:
        ctx = _SigmoidRange((x._ctx or x,))
        ctx.x, ctx.lo, ctx.hi = a, lo, hi
        ctx.chk = ((x, x._version),)
        return _wrap(out, ctx)
    return _wrap(out)


class _MSE(Function):
    __slots__ = ("p", "y", "value", "shape_p", "shape_y")
    name = "MseLossBackward0"

    def backward(self, g):
        pp, py = self.parents
        p, y = self.p, self.y
        gv = float(g)
        if p.dtype == _F32 and y.dtype == _F32:
            dp = np.zeros(p.shape, _F32)
            _core.mse_backward(dp, p, y)
            if gv != 1.0:
                dp *= np.float32(gv)
        else:
            dp = (2.0 * gv / p.size) * (p - y)
        if pp is not None:
            _send(pp, dp.reshape(self.shape_p))
        if py is not None:
            _send(py, (-dp).reshape(self.shape_y).astype(y.dtype, copy=False))


def mse_loss(input, target, reduction="mean"):
    """Mean squared error (`F.mse_loss`). Unlike PyTorch, input and target must have the same
    shape: broadcasting (N, 1) against (N,) into (N, N) is the classic silent bug, so it raises."""
    p, t = _as_t(input), _as_t(target)
    if p._data.shape != t._data.shape:
        raise RuntimeError(f"mse_loss: input has shape {tuple(p._data.shape)} but target has shape "
                           f"{tuple(t._data.shape)}; they must match (flatten both with .view(-1), as "
                           f"MSELossFlat does)")
    if reduction != "mean":
        if reduction not in ("sum", "none"):
            raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        d = p - t
        sq = d * d
        return sq.sum() if reduction == "sum" else sq
    return _mse(p, t)


def _mse(p, t):
    pa, ta = p._data, t._data
    if pa.size == 0:
        raise RuntimeError("mse_loss: the input is empty")
    pf, tf = pa.reshape(-1), ta.reshape(-1)
    if pa.dtype is _F32 and ta.dtype is _F32:
        if not pf.flags.c_contiguous:
            pf = np.ascontiguousarray(pf)
        if not tf.flags.c_contiguous:
            tf = np.ascontiguousarray(tf)
        value = _core.mse_forward(pf, tf)
        out = np.asarray(value, _F32)
    else:
        d = pf.astype(np.result_type(pa.dtype, ta.dtype, _F32)) - tf
        value = float(np.mean(d * d))
        out = np.asarray(value, d.dtype)
    if (p._rg or t._rg) and _mode.enabled:
        ctx = _MSE((_edge(p), _edge(t)))
        ctx.p, ctx.y, ctx.value, ctx.shape_p, ctx.shape_y = pf, tf, value, pa.shape, ta.shape
        ctx.chk = ((p, p._version), (t, t._version))
        return _wrap(out, ctx)
    return _wrap(out)


def mse_loss_flat(input, target):
    """fastai's `MSELossFlat()(input, target)`: mean of (input.view(-1) - target.float().view(-1))**2,
    as one operation (its backward reshapes the gradient to input's shape)."""
    p = input if isinstance(input, Tensor) else tensor(input)
    t = target if isinstance(target, Tensor) else _wrap(np.asarray(target))
    if t._data.dtype.kind != "f":
        t = t.float()
    if p._data.size != t._data.size:
        raise RuntimeError(f"MSELossFlat: input has {p._data.size} values (shape {tuple(p._data.shape)}) "
                           f"but target has {t._data.size} (shape {tuple(t._data.shape)})")
    return _mse(p, t)


def embedding(input, weight):
    "Rows of `weight` for the integer ids in `input` (`F.embedding`); ids must be in [0, rows)."
    ids = input._data if isinstance(input, Tensor) else np.asarray(input)
    w = weight if isinstance(weight, Tensor) else tensor(weight)
    W = w._data
    if ids.dtype is _I64 and ids.ndim == 1 and W.dtype is _F32 and W.ndim == 2 and W.flags.c_contiguous:
        out = np.empty((ids.shape[0], W.shape[1]), _F32)
        try:
            _core.tensor_gather_forward(out, W, ids, False)
        except IndexError:  # the general path words the error
            return _gather(w, ids, False, _EmbeddingBackward, "an embedding table")
        if w._rg and _mode.enabled:
            ctx = _EmbeddingBackward((w._ctx or w,))
            ctx.idx, ctx.wrap, ctx.shape, ctx.dtype = ids, False, W.shape, _F32
            return _wrap(out, ctx)
        return _wrap(out)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: the ids must be an integer tensor, got dtype {ids.dtype} "
                        f"(a float tensor of ids? use .long())")
    if w._data.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D (rows, dim), got shape {tuple(w._data.shape)}")
    return _gather(w, ids, wrap=False, cls=_EmbeddingBackward,
                   what="an embedding table")


class _Dropout(Function):
    __slots__ = ("mask",)
    name = "NativeDropoutBackward0"

    def backward(self, g):
        _send(self.parents[0], g * self.mask)


def dropout(input, p=0.5, training=True, rng=None):
    """Inverted dropout (`F.dropout`): in training, zero each value with probability p and scale
    the rest by 1/(1-p); the identity otherwise. `rng` is a NumPy Generator (default: collabc's)."""
    x = _as_t(input)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    a = _float_input(x, "dropout")
    if p == 1.0:
        mask = np.zeros(a.shape, a.dtype)
    else:
        rng = rng if rng is not None else get_rng()
        mask = np.empty(a.size, _F32)
        _core.dropout_mask(mask, p, int(rng.integers(0, 2**63 - 1)))
        mask = mask.reshape(a.shape).astype(a.dtype, copy=False)
    return _unary(x, _Dropout, a * mask, mask=mask)


class _BatchNorm(Function):
    __slots__ = ("xT", "mean", "invstd", "gamma", "affine")
    name = "NativeBatchNormBackward0"

    def backward(self, g):
        px, pw, pb = self.parents
        xT, gamma = self.xT, self.gamma
        N = xT.shape[0]
        gT = np.ascontiguousarray(np.asarray(g, _F32).T)
        dxT = np.zeros(xT.shape, _F32)
        dg, g_direct = _kernel_grad(pw, (N,))
        db, b_direct = _kernel_grad(pb, (N,))
        _core.batchnorm_backward(dxT, dg, db, gT, xT, self.mean, self.invstd, gamma)
        if px is not None:
            _send(px, dxT.T)
        if pw is not None and not g_direct:
            _send(pw, dg)
        if pb is not None and not b_direct:
            _send(pb, db)


class _BatchNorm64(Function):
    "The same in NumPy (float64 inputs, evaluation mode): xhat = (x - mean) * invstd."
    __slots__ = ("xhat", "invstd", "gamma", "batch_stats")
    name = "NativeBatchNormBackward0"

    def backward(self, g):
        px, pw, pb = self.parents
        xhat, inv, gamma = self.xhat, self.invstd, self.gamma
        if pw is not None:
            _send(pw, (g * xhat).sum(0))
        if pb is not None:
            _send(pb, g.sum(0))
        if px is not None:
            if self.batch_stats:
                B = g.shape[0]
                dx = gamma * inv / B * (B * g - g.sum(0) - xhat * (g * xhat).sum(0))
            else:
                dx = g * (gamma * inv)
            _send(px, dx)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """`F.batch_norm` over (batch, features) input: batch statistics in training (the running
    statistics, if given, updated in place with the unbiased variance), running statistics
    otherwise."""
    x = _as_t(input)
    a = _float_input(x, "batch_norm")
    if a.ndim != 2:
        raise RuntimeError(f"batch_norm: expected 2-D input (batch, features), got shape {tuple(a.shape)}")
    B, N = a.shape
    w = None if weight is None else _as_t(weight)
    b = None if bias is None else _as_t(bias)
    rm = None if running_mean is None else _as_t(running_mean)._data
    rv = None if running_var is None else _as_t(running_var)._data
    for name, arr in (("running_mean", rm), ("running_var", rv), ("weight", None if w is None else w._data),
                      ("bias", None if b is None else b._data)):
        if arr is not None and arr.shape != (N,):
            raise RuntimeError(f"batch_norm: {name} has shape {tuple(arr.shape)} but the input has {N} "
                               f"features (shape {tuple(a.shape)})")
    if training and B < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(a.shape)}")
    if not training and (rm is None or rv is None):
        raise RuntimeError("batch_norm: evaluation mode needs running_mean and running_var")
    gamma = w._data if w is not None else np.ones(N, a.dtype)
    beta = b._data if b is not None else np.zeros(N, a.dtype)
    rec = _mode.enabled and (x._rg or (w is not None and w._rg) or (b is not None and b._rg))
    edges = (_edge(x), None if w is None else _edge(w), None if b is None else _edge(b))
    c_ok = (a.dtype == _F32 and gamma.dtype == _F32 and beta.dtype == _F32 and
            all(s is None or (s.dtype == _F32 and s.flags.c_contiguous) for s in (rm, rv)))
    if c_ok and training:
        xT = np.ascontiguousarray(a.T)
        outT = np.empty((N, B), _F32)
        mean, invstd = np.empty(N, _F32), np.empty(N, _F32)
        rm_ = rm if rm is not None else np.zeros(N, _F32)
        rv_ = rv if rv is not None else np.ones(N, _F32)
        _core.batchnorm_forward_train(outT, mean, invstd, xT, np.ascontiguousarray(gamma),
                                      np.ascontiguousarray(beta), rm_, rv_, float(momentum), float(eps))
        out = outT.T
        if rec:
            ctx = _BatchNorm(edges)
            ctx.xT, ctx.mean, ctx.invstd, ctx.gamma = xT, mean, invstd, np.ascontiguousarray(gamma)
            ctx.save_versions(*[t for t in (x, w) if t is not None])
            return _wrap(out, ctx)
        return _wrap(out)
    if training:
        mu = a.mean(0)
        var = a.var(0)
        if rm is not None:
            rm[...] = (1 - momentum) * rm + momentum * mu
        if rv is not None:
            rv[...] = (1 - momentum) * rv + momentum * var * B / (B - 1)
    else:
        mu, var = rm.astype(a.dtype), rv.astype(a.dtype)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (a - mu) * inv
    out = (xhat * gamma + beta).astype(a.dtype, copy=False)
    if rec:
        ctx = _BatchNorm64(edges)
        ctx.xhat, ctx.invstd, ctx.gamma, ctx.batch_stats = xhat, inv, gamma, bool(training)
        return _wrap(out, ctx)
    return _wrap(out)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    "`F.cosine_similarity`: x1.x2 / (max(|x1|, eps) * max(|x2|, eps)) along `dim`, broadcasting."
    a, b = _as_t(x1), _as_t(x2)
    try:
        np.broadcast_shapes(a._data.shape, b._data.shape)
    except ValueError:
        raise RuntimeError(f"cosine_similarity: shapes {tuple(a._data.shape)} and {tuple(b._data.shape)} "
                           f"cannot be broadcast together") from None
    dot = (a * b).sum(dim)
    e2 = float(eps) ** 2
    na = (a * a).sum(dim).clamp(min=e2).sqrt()
    nb = (b * b).sum(dim).clamp(min=e2).sqrt()
    return dot / (na * nb)


# ------------------------------------------------------------------------------ creation
def _dtype_arg(dtype, default):
    if dtype is None:
        return default
    if isinstance(dtype, str) and dtype in ("float", "long", "int", "double", "bool"):
        dtype = {"float": _F32, "long": _I64, "int": int32, "double": _F64, "bool": bool_}[dtype]
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype (e.g. np.float32, np.int64), got {dtype!r}") from None


def _leaf(a, requires_grad):
    t = _wrap(a)
    if requires_grad:
        t.requires_grad = True
    return t


def tensor(x, *rest, dtype=None, requires_grad=False):
    """fastai's `tensor`: a Tensor from a list, tuple, number, array, Series or Tensor;
    `tensor(1, 2, 3)` is `tensor([1, 2, 3])`. Python floats and float64 arrays give float32
    (unless `dtype` says otherwise), Python ints int64, bools bool. A NumPy array of another
    dtype is shared, not copied."""
    if rest:
        x = (x,) + rest
    if isinstance(x, Tensor):
        a = x._data if dtype is None else x._data.astype(_dtype_arg(dtype, None), copy=False)
        return _leaf(a, requires_grad) if a is not x._data or requires_grad else x
    if hasattr(x, "values") and hasattr(x, "dtype") and not isinstance(x, np.ndarray):  # pandas
        x = x.values
    if isinstance(x, np.ndarray):
        a = x
    elif isinstance(x, (list, tuple)):
        if any(isinstance(v, Tensor) for v in x):
            x = [v._data if isinstance(v, Tensor) else v for v in x]
        a = np.array(x)
    else:
        a = np.array(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"tensor(): cannot make a tensor of {type(x).__name__} with dtype {a.dtype}; "
                        f"expected numbers or bools")
    if dtype is not None:
        a = a.astype(_dtype_arg(dtype, None), copy=False)
    elif a.dtype == _F64 or a.dtype == np.uint16:
        a = a.astype(_F32)
    elif a.dtype.kind == "i" and a.dtype != _I64 and not isinstance(x, np.ndarray):
        a = a.astype(_I64)
    return _leaf(a, requires_grad)


def as_tensor(x, dtype=None):
    "A Tensor sharing x's memory when x is already an array of the right dtype (no float64 cast)."
    if isinstance(x, Tensor):
        return x if dtype is None else x.type(dtype)
    a = np.asarray(x, dtype=None if dtype is None else _dtype_arg(dtype, None))
    return _wrap(a)


def _sized(fill, size, dtype, requires_grad, default=_F32, op="zeros"):
    shape = _shape_args(size, op)
    if any(s < 0 for s in shape):
        raise RuntimeError(f"{op}: negative dimension in size {list(shape)}")
    return _leaf(fill(shape, _dtype_arg(dtype, default)), requires_grad)


def zeros(*size, dtype=None, requires_grad=False):
    "A tensor of zeros (float32 by default): `zeros(2, 3)` or `zeros((2, 3))`."
    return _sized(np.zeros, size, dtype, requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    "A tensor of ones (float32 by default)."
    return _sized(np.ones, size, dtype, requires_grad, op="ones")


def empty(*size, dtype=None, requires_grad=False):
    "An uninitialised tensor (float32 by default)."
    return _sized(np.empty, size, dtype, requires_grad, op="empty")


def full(size, fill_value, dtype=None, requires_grad=False):
    "A tensor filled with `fill_value` (float32 for a float, int64 for an int, as PyTorch)."
    default = _I64 if isinstance(fill_value, (int, np.integer)) and not isinstance(fill_value, bool) else \
        (bool_ if isinstance(fill_value, bool) else _F32)
    return _sized(lambda s, d: np.full(s, fill_value, d), (size,), dtype, requires_grad, default, "full")


def zeros_like(t, dtype=None, requires_grad=False):
    return _leaf(np.zeros(np.shape(_to_array(t)), _dtype_arg(dtype, np.asarray(_to_array(t)).dtype)),
                 requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _leaf(np.ones(np.shape(_to_array(t)), _dtype_arg(dtype, np.asarray(_to_array(t)).dtype)),
                 requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    a = np.asarray(_to_array(t))
    return _leaf(np.full(a.shape, fill_value, _dtype_arg(dtype, a.dtype)), requires_grad)


def randn(*size, dtype=None, requires_grad=False, generator=None):
    "Standard normal draws from collabc's generator (`set_seed` makes them reproducible)."
    rng = generator if generator is not None else get_rng()
    return _sized(lambda s, d: rng.standard_normal(s).astype(d), size, dtype, requires_grad, op="randn")


def rand(*size, dtype=None, requires_grad=False, generator=None):
    "Uniform [0, 1) draws from collabc's generator."
    rng = generator if generator is not None else get_rng()
    return _sized(lambda s, d: rng.random(s).astype(d), size, dtype, requires_grad, op="rand")


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    "`torch.arange`: int64 for integer arguments, float32 otherwise."
    if end is None:
        start, end = 0, start
    vals = [_to_array(v) if isinstance(v, Tensor) else v for v in (start, end, step)]
    is_int = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals)
    return _leaf(np.arange(*vals, dtype=_dtype_arg(dtype, _I64 if is_int else _F32)), requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False):
    return _leaf(np.linspace(start, end, int(steps), dtype=_dtype_arg(dtype, _F32)), requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    return _leaf(np.eye(n, m, dtype=_dtype_arg(dtype, _F32)), requires_grad)


def one_hot(x, c):
    "fastai's `one_hot`: a uint8 vector of length c with ones at the indices in x (`.float()` it)."
    res = np.zeros(int(c), np.uint8)
    if isinstance(x, Tensor):
        x = x._data
    idx = np.asarray(x, dtype=_I64).reshape(-1) if not isinstance(x, (int, np.integer)) else x
    try:
        res[idx] = 1
    except IndexError:
        raise IndexError(f"one_hot: index {x!r} is out of range for {int(c)} classes") from None
    return _wrap(res)


# ------------------------------------------------------------------------------ functions
def sigmoid(x):
    "1 / (1 + exp(-x))."
    x = _as_t(x)
    a = _float_input(x, "sigmoid")
    out = _sigmoid_array(a).astype(a.dtype, copy=False)
    return _unary(x, _Sigmoid, out, out=out)


def relu(x):
    "max(x, 0)."
    return _relu(_as_t(x))


def tanh(x):
    x = _as_t(x)
    out = np.tanh(_float_input(x, "tanh"))
    return _unary(x, _Tanh, out, out=out)


def exp(x):
    x = _as_t(x)
    out = np.exp(_float_input(x, "exp"))
    return _unary(x, _Exp, out, out=out)


def log(x):
    x = _as_t(x)
    a = _float_input(x, "log")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a)
    return _unary(x, _Log, out, x=a)


def sqrt(x):
    x = _as_t(x)
    a = _float_input(x, "sqrt")
    with np.errstate(invalid="ignore"):
        out = np.sqrt(a)
    return _unary(x, _Sqrt, out, out=out)


def mean(x, dim=None, keepdim=False):
    return _sum(_as_t(x), dim, keepdim, mean=True, op="mean")


# ------------------------------------------------------------------------------ Tensor methods
def _pca(x, k=2):
    "fastai's `Tensor.pca`: centre, SVD of x.t(), project onto the first k left singular vectors."
    a = x._data
    if a.ndim != 2:
        raise RuntimeError(f"pca: expected a 2-D tensor (rows, features), got shape {tuple(a.shape)}")
    c = a - a.mean(0)
    U, _, _ = np.linalg.svd(c.T, full_matrices=False)
    return _wrap(np.asarray(c @ U[:, :k], dtype=a.dtype))


def _argsort(x, dim=-1, descending=False, stable=False):
    a = x._data
    if a.ndim == 0:
        return _wrap(np.zeros((), _I64))
    d = _norm_dim(dim, a.ndim, "argsort")
    if descending:
        key = a.astype(_I64) if a.dtype.kind in "bu" else a
        idx = np.argsort(-key, axis=d, kind="stable")
    else:
        idx = np.argsort(a, axis=d, kind="stable")
    return _wrap(idx.astype(_I64, copy=False))


def _sort(x, dim=-1, descending=False):
    idx = _argsort(x, dim, descending)
    a = x._data
    d = _norm_dim(dim, a.ndim, "sort") if a.ndim else 0
    vals = np.take_along_axis(a, idx._data, axis=d) if a.ndim else a.copy()
    return _MaxResult(_no_grad_op("sort", x, vals), idx)


def _squeeze(x, dim=None):
    a = x._data
    if dim is None:
        shape = tuple(s for s in a.shape if s != 1)
    else:
        d = _norm_dim(dim, a.ndim, "squeeze")
        shape = a.shape if a.ndim == 0 or a.shape[d] != 1 else a.shape[:d] + a.shape[d + 1:]
    return _reshape(x, shape, "squeeze", _Squeeze)


def _unsqueeze(x, dim):
    a = x._data
    d = _norm_dim(dim, a.ndim + 1, "unsqueeze")
    return _reshape(x, a.shape[:d] + (1,) + a.shape[d:], "unsqueeze", _Unsqueeze)


def _view(x, *shape):
    shape = _shape_args(shape, "view")
    return _reshape(x, shape, "view")


def _flatten(x, start_dim=0, end_dim=-1):
    a = x._data
    if a.ndim == 0:
        return _reshape(x, (1,), "flatten", _Flatten)
    s, e = _norm_dim(start_dim, a.ndim, "flatten"), _norm_dim(end_dim, a.ndim, "flatten")
    shape = a.shape[:s] + (int(np.prod(a.shape[s:e + 1])),) + a.shape[e + 1:]
    return _reshape(x, shape, "flatten", _Flatten)


def _t(x):
    a = x._data
    if a.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but it has {a.ndim} (shape "
                           f"{tuple(a.shape)}); use transpose(dim0, dim1) or permute")
    if a.ndim < 2:
        return x
    return _permute(x, (1, 0), _Transpose)


def _transpose(x, dim0, dim1):
    a = x._data
    perm = list(range(a.ndim))
    d0, d1 = _norm_dim(dim0, a.ndim, "transpose"), _norm_dim(dim1, a.ndim, "transpose")
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return _permute(x, perm)


def _expand(x, *sizes):
    a = x._data
    sizes = _shape_args(sizes, "expand")
    shape = list(sizes)
    off = len(shape) - a.ndim
    if off < 0:
        raise RuntimeError(f"expand: the number of sizes ({len(shape)}) must be at least the number of "
                           f"dimensions ({a.ndim})")
    for i, s in enumerate(shape):
        if s == -1:
            if i < off:
                raise RuntimeError("expand: -1 is not allowed in a new leading dimension")
            shape[i] = a.shape[i - off]
    try:
        out = np.broadcast_to(a, tuple(shape))
    except ValueError:
        raise RuntimeError(f"expand: a tensor of shape {tuple(a.shape)} cannot be expanded to {tuple(sizes)} "
                           f"(only dimensions of size 1 can grow)") from None
    if _mode.enabled and x._rg:
        ctx = _Expand((_edge(x),))
        ctx.shape, ctx.dtype = a.shape, a.dtype
        return _wrap(out, ctx)
    return _wrap(out)


def _inplace_fill(x, arr_fn):
    "Overwrite x's data (no graph): normal_, uniform_, fill_, zero_, copy_."
    if _mode.enabled and x._rg and x._ctx is None:
        raise RuntimeError("a leaf tensor that requires grad (e.g. a parameter) cannot be filled in place "
                           "while gradients are recorded; do it inside `with no_grad():` or before "
                           "wrapping it in nn.Parameter")
    if x._ctx is not None and _mode.enabled:
        raise RuntimeError("in-place fill of a result that is part of the graph; use a new tensor")
    arr_fn(x._data)
    x._version += 1
    return x


def _normal_(x, mean=0.0, std=1.0, generator=None):
    "Fill with N(mean, std) draws from collabc's generator (`set_seed` makes them reproducible)."
    rng = generator if generator is not None else get_rng()

    def f(a):
        a[...] = rng.standard_normal(a.shape) * std + mean
    return _inplace_fill(x, f)


def _uniform_(x, a=0.0, b=1.0, generator=None):
    rng = generator if generator is not None else get_rng()

    def f(arr):
        arr[...] = rng.uniform(a, b, arr.shape)
    return _inplace_fill(x, f)


def _fill_(x, value):
    def f(a):
        a[...] = _to_array(value)
    return _inplace_fill(x, f)


def _copy_(x, src):
    s = _to_array(src)

    def f(a):
        try:
            np.copyto(a, s, casting="unsafe")
        except ValueError:
            raise RuntimeError(f"copy_: the source of shape {tuple(np.shape(s))} cannot be broadcast to "
                               f"the tensor's shape {tuple(a.shape)}") from None
    return _inplace_fill(x, f)


def _uf_inplace(ufunc, sym):
    def method(self, *args):
        if _mode.enabled and self._rg:
            raise RuntimeError(f"in-place {ufunc.__name__}_ on a tensor that requires grad while "
                               f"gradients are recorded; do it inside `with no_grad():`")
        try:
            ufunc(self._data, *[_to_array(a, self._data) for a in args], out=self._data)
        except TypeError:
            raise RuntimeError(f"{ufunc.__name__}_: the result can't be cast to the tensor's type "
                               f"{self._data.dtype}") from None
        self._version += 1
        return self
    method.__name__ = f"{sym}_"
    return method


def _var(x, dim=None, keepdim=False, unbiased=True, correction=None):
    a = x._data
    dims = _norm_dims(dim, a.ndim, "var")
    n = 1
    for d in dims:
        n *= a.shape[d]
    c = (1 if unbiased else 0) if correction is None else correction
    m = x.mean(dims if dims else None, keepdim=True)
    d = x - m
    return (d * d).sum(dims if dims else None, keepdim=keepdim) / max(n - c, 0)


_T = Tensor
_T.__add__ = lambda self, o: _bin("add", self, o)
_T.__radd__ = lambda self, o: _bin("add", self, o, True)
_T.__sub__ = lambda self, o: _bin("sub", self, o)
_T.__rsub__ = lambda self, o: _bin("sub", self, o, True)
_T.__mul__ = lambda self, o: _bin("mul", self, o)
_T.__rmul__ = lambda self, o: _bin("mul", self, o, True)
_T.__truediv__ = lambda self, o: _bin("div", self, o)
_T.__rtruediv__ = lambda self, o: _bin("div", self, o, True)
_T.__pow__ = lambda self, o: _bin("pow", self, o)
_T.__rpow__ = lambda self, o: _bin("pow", self, o, True)
_T.__matmul__ = lambda self, o: _matmul(self, o if isinstance(o, Tensor) else None, self._data,
                                        o._data if isinstance(o, Tensor) else np.asarray(_to_array(o)))
_T.__rmatmul__ = lambda self, o: _matmul(None, self, np.asarray(_to_array(o)), self._data)
_T.__iadd__ = lambda self, o: _inplace(self, "add", o)
_T.__isub__ = lambda self, o: _inplace(self, "sub", o)
_T.__imul__ = lambda self, o: _inplace(self, "mul", o)
_T.__itruediv__ = lambda self, o: _inplace(self, "div", o)
_T.add_ = _T.__iadd__
_T.sub_ = _T.__isub__
_T.mul_ = _T.__imul__
_T.div_ = _T.__itruediv__
_T.__neg__ = lambda self: _unary(self, _Neg, np.negative(self._data))
_T.__pos__ = lambda self: self
_T.__abs__ = lambda self: _unary(self, _Abs, np.abs(self._data), x=self._data)
_T.__floordiv__ = lambda self, o: _no_grad_op("floor_divide ('//')", self,
                                              np.floor_divide(self._data, _to_array(o, self._data)))
_T.__mod__ = lambda self, o: _no_grad_op("remainder ('%')", self, np.mod(self._data, _to_array(o, self._data)))
_T.__eq__ = lambda self, o: _cmp(np.equal, self, o)
_T.__ne__ = lambda self, o: _cmp(np.not_equal, self, o)
_T.__lt__ = lambda self, o: _cmp(np.less, self, o)
_T.__le__ = lambda self, o: _cmp(np.less_equal, self, o)
_T.__gt__ = lambda self, o: _cmp(np.greater, self, o)
_T.__ge__ = lambda self, o: _cmp(np.greater_equal, self, o)
_T.__and__ = lambda self, o: _cmp(np.logical_and, self, o) if self._data.dtype == bool_ else \
    _wrap(np.asarray(np.bitwise_and(self._data, _to_array(o))))
_T.__or__ = lambda self, o: _cmp(np.logical_or, self, o) if self._data.dtype == bool_ else \
    _wrap(np.asarray(np.bitwise_or(self._data, _to_array(o))))
_T.__invert__ = lambda self: _wrap(np.asarray(~self._data))
_T.__getitem__ = _getitem
_T.__setitem__ = _setitem
_T.add = _T.__add__
_T.sub = _T.__sub__
_T.mul = _T.__mul__
_T.div = _T.__truediv__
_T.pow = _T.__pow__
_T.matmul = _T.__matmul__
_T.mm = _T.__matmul__
_T.dot = _T.__matmul__
_T.neg = _T.__neg__
_T.abs = _T.__abs__
_T.eq, _T.ne, _T.lt, _T.le, _T.gt, _T.ge = _T.__eq__, _T.__ne__, _T.__lt__, _T.__le__, _T.__gt__, _T.__ge__
_T.sum = lambda self, dim=None, keepdim=False, axis=None: _sum(self, dim if axis is None else axis, keepdim)
_T.mean = lambda self, dim=None, keepdim=False, axis=None: _sum(self, dim if axis is None else axis, keepdim,
                                                               mean=True, op="mean")
_T.var = _var
_T.std = lambda self, dim=None, keepdim=False, unbiased=True: _var(self, dim, keepdim, unbiased).sqrt()
_T.max = lambda self, dim=None, keepdim=False: _maxmin(self, dim, keepdim, True)
_T.min = lambda self, dim=None, keepdim=False: _maxmin(self, dim, keepdim, False)
_T.argmax = lambda self, dim=None, keepdim=False: _wrap(np.asarray(
    np.argmax(self._data, axis=None if dim is None else _norm_dim(dim, self._data.ndim, "argmax"),
              keepdims=keepdim), dtype=_I64))
_T.argmin = lambda self, dim=None, keepdim=False: _wrap(np.asarray(
    np.argmin(self._data, axis=None if dim is None else _norm_dim(dim, self._data.ndim, "argmin"),
              keepdims=keepdim), dtype=_I64))
_T.argsort = _argsort
_T.sort = _sort
_T.any = lambda self, dim=None: _wrap(np.asarray(np.any(self._data, axis=dim)))
_T.all = lambda self, dim=None: _wrap(np.asarray(np.all(self._data, axis=dim)))
_T.norm = lambda self, p=2, dim=None, keepdim=False: (
    (self * self).sum(dim, keepdim).sqrt() if p == 2 else
    (abs(self) ** p).sum(dim, keepdim) ** (1.0 / p))
_T.exp = exp
_T.log = log
_T.sqrt = sqrt
_T.sigmoid = sigmoid
_T.relu = relu
_T.tanh = tanh
_T.clamp = lambda self, min=None, max=None: _clamp(self, min, max)
_T.clip = _T.clamp
_T.clamp_min = lambda self, min: _clamp(self, min, None)
_T.clamp_max = lambda self, max: _clamp(self, None, max)
_T.view = _view
_T.reshape = _view
_T.view_as = lambda self, other: _view(self, other._data.shape)
_T.reshape_as = _T.view_as
_T.flatten = _flatten
_T.squeeze = _squeeze
_T.unsqueeze = _unsqueeze
_T.t = _t
_T.T = property(lambda self: _permute(self, tuple(range(self._data.ndim))[::-1], _Transpose)
                if self._data.ndim > 1 else self)
_T.transpose = _transpose
_T.permute = lambda self, *dims: _permute(self, _shape_args(dims, "permute"))
_T.expand = _expand
_T.expand_as = lambda self, other: _expand(self, other._data.shape)
_T.pca = _pca
_T.normal_ = _normal_
_T.uniform_ = _uniform_
_T.fill_ = _fill_
_T.copy_ = _copy_
_T.fmod_ = _uf_inplace(np.fmod, "fmod")
_T.clamp_ = lambda self, min=None, max=None: _inplace_fill(self, lambda a: np.clip(a, min, max, out=a))
_T.fmod = lambda self, o: _no_grad_op("fmod", self, np.fmod(self._data, _to_array(o, self._data)))
_T.sign = lambda self: _no_grad_op("sign", self, np.sign(self._data))
_T.round = lambda self: _no_grad_op("round", self, np.round(self._data))
_T.floor = lambda self: _no_grad_op("floor", self, np.floor(self._data))
_T.ceil = lambda self: _no_grad_op("ceil", self, np.ceil(self._data))
_T.isnan = lambda self: _wrap(np.isnan(self._data))
_T.nonzero = lambda self: _wrap(np.argwhere(self._data).astype(_I64))
_T.unique = lambda self: _no_grad_op("unique", self, np.unique(self._data))


def _topk(x, k, dim=-1, largest=True):
    "The k largest (or smallest) values along dim and their indices (no gradient)."
    d = _norm_dim(dim, x._data.ndim, "topk")
    idx = np.take(_argsort(x, d, largest)._data, np.arange(int(k)), axis=d)
    return _MaxResult(_no_grad_op("topk", x, np.take_along_axis(x._data, idx, axis=d)), _wrap(idx))


_T.topk = _topk


_UFUNC_OPS = {np.add: ("__add__", "__radd__"), np.subtract: ("__sub__", "__rsub__"),
              np.multiply: ("__mul__", "__rmul__"), np.true_divide: ("__truediv__", "__rtruediv__"),
              np.matmul: ("__matmul__", "__rmatmul__"), np.power: ("__pow__", "__rpow__")}
