"""`nn`: modules over collabc tensors, as `torch.nn` (and fastai's `Module`), without PyTorch.

`Module` is fastai's `Module`: parameters (`nn.Parameter`), sub-modules and buffers register
themselves when assigned as attributes, with no `super().__init__()` needed (calling it is
harmless); `forward` is the only method a subclass writes. Layers: `Embedding` (PyTorch's
N(0, 1) init; fastai's truncated-normal `Embedding` is in `collabc.layers`), `Linear`, `ReLU`,
`Sigmoid`, `Sequential`, `ModuleList`, `Dropout`, `BatchNorm1d`, `CosineSimilarity`, `MSELoss`,
`Identity`, and `functional` (alias `F`).

Training support for a Learner (it owns the optimizer; this module owns the layout):
`pack_parameters(params)` moves parameters and their gradients into one float32 block each,
`param_groups(model)` is fastai's weight-decay rule (`wd_bn_bias=False`), `pack_model` does
both with the decayed parameters first, and `train_step(model, x, y)` runs forward, loss and
backward for one batch.
"""
import math
import types
from collections import OrderedDict
from types import MappingProxyType

import numpy as np

from . import _core
from . import tensor as _t
from .seed import get_rng
from .tensor import Parameter, Tensor, _wrap

__all__ = ["Module", "Parameter", "Embedding", "Linear", "ReLU", "Sigmoid", "Identity", "Sequential",
           "ModuleList", "Dropout", "BatchNorm1d", "CosineSimilarity", "MSELoss", "functional", "F",
           "ParamBlock", "pack_parameters", "pack_model", "norm_bias_params", "param_groups",
           "train_step"]

_F32 = np.dtype(np.float32)


def _addindent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


class Module:
    """fastai's `Module` (PyTorch's `nn.Module` without the `super().__init__()` chore).

    Assigning an `nn.Parameter` registers a parameter, a `Module` a sub-module; plain tensors
    stay plain attributes (use `register_buffer` for state that is saved but not trained).
    `module(x)` calls `forward(x)`."""

    # The registries are created by the first attribute assignment (so no __init__ has to run
    # first); until then these empty, read-only class-level ones answer.
    _parameters = _modules = _buffers = MappingProxyType({})
    _non_persistent = frozenset()
    training = True

    def __init__(self):
        pass

    def _registries(self):
        d = self.__dict__
        if "_parameters" not in d:
            d["_parameters"], d["_modules"], d["_buffers"] = OrderedDict(), OrderedDict(), OrderedDict()
            d["_non_persistent"] = set()
        return d

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" method')

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------- registration
    def __setattr__(self, name, value):
        d = self._registries()
        params, mods, bufs = d["_parameters"], d["_modules"], d["_buffers"]
        if isinstance(value, Parameter):
            mods.pop(name, None)
            bufs.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            bufs.pop(name, None)
            mods[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                f"(nn.Parameter or None expected)")
            params[name] = None
        elif name in mods:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                f"(a Module or None expected)")
            mods[name] = None
        elif name in bufs:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                f"(a Tensor or None expected)")
            bufs[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        d = self._registries()
        for reg in ("_parameters", "_modules", "_buffers"):
            d[reg].pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        "Register `param` (an nn.Parameter or None) as `name`."
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' as parameter '{name}' "
                            f"(nn.Parameter or None expected)")
        self._registries()["_parameters"][name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        "Register `tensor` as a buffer: saved in `state_dict` (if persistent), never trained."
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' as buffer '{name}' (a Tensor or None expected)")
        d = self._registries()
        d["_parameters"].pop(name, None)
        d["_modules"].pop(name, None)
        d["_buffers"][name] = tensor
        if not persistent:
            d["_non_persistent"].add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        setattr(self, name, module)

    register_module = add_module

    # ---------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        "(name, module) for this module and every sub-module, depth first, each once."
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        "(name, parameter) in registration order (this module's own first), each parameter once."
        memo = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mp, m in mods:
            for k, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in memo):
                    continue
                memo.add(id(p))
                yield (f"{mp}.{k}" if mp else k), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        memo = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for k, b in m._buffers.items():
                if b is None or id(b) in memo:
                    continue
                memo.add(id(b))
                yield (f"{mp}.{k}" if mp else k), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---------------------------------------------------------------- state
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Every parameter and persistent buffer under PyTorch's names (`layers.0.weight`,
        `bn.running_mean`, ...): tensors that share memory with the model (detached)."""
        out = OrderedDict() if destination is None else destination
        for k, p in self._parameters.items():
            if p is not None:
                out[prefix + k] = p if keep_vars else p.detach()
        for k, b in self._buffers.items():
            if b is not None and k not in self._non_persistent:
                out[prefix + k] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in (in place: packed parameters stay packed). Keys and shapes must match
        (with strict=False, missing and unexpected keys are allowed). Returns
        (missing_keys, unexpected_keys)."""
        own = self.state_dict(keep_vars=True)
        sd = dict(state_dict)
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        errors = []
        if strict and (missing or unexpected):
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        values = {}
        for k, t in own.items():
            if k not in sd:
                continue
            v = sd[k]
            a = v._data if isinstance(v, Tensor) else np.asarray(v)
            if a.shape != t._data.shape:
                errors.append(f"size mismatch for {k}: copying a param with shape {tuple(a.shape)} from "
                              f"checkpoint, the shape in current model is {tuple(t._data.shape)}.")
            elif a.dtype.kind not in "biuf":
                errors.append(f"{k}: expected numbers, got dtype {a.dtype}")
            else:
                values[k] = a
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        for k, a in values.items():
            t = own[k]
            t._data[...] = a
            t._version += 1
        return missing, unexpected

    def train(self, mode=True):
        "Training mode (dropout active, batch statistics) for this module and every sub-module."
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget the gradients. A packed parameter keeps its gradient (a view into its block),
        zeroed in place; the others' `.grad` becomes None (or zeros with set_to_none=False)."""
        for p in self.parameters():
            if p._gview is not None:
                p._gview[...] = 0
                if p._grad is None or p._grad._data is not p._gview:
                    p._grad = _wrap(p._gview)
            elif p._grad is not None:
                if set_to_none:
                    p._grad = None
                else:
                    p._grad._data[...] = 0

    def cpu(self):
        return self

    def to(self, *args, **kwargs):
        return self

    def cuda(self, *args, **kwargs):
        raise RuntimeError("collabc runs on the CPU only (no CUDA)")

    def float(self):
        return self

    def extra_repr(self):
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): {_addindent(repr(m), 2)}" for k, m in self._modules.items()]
        lines = extra_lines + child_lines
        main = type(self).__name__ + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


# ------------------------------------------------------------------------------ layers
def _check_size(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


class Embedding(Module):
    """A table of `num_embeddings` rows of size `embedding_dim`; `emb(ids)` gathers rows
    (torch.nn.Embedding: weight drawn from N(0, 1); fastai's `Embedding` uses std 0.01)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None):
        if padding_idx is not None or max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding: padding_idx, max_norm, scale_grad_by_freq and sparse are "
                                      "not available (collabc's embedding gradients are dense, as fastai "
                                      "trains them)")
        self.num_embeddings = _check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("embedding_dim", embedding_dim)
        self.padding_idx = padding_idx
        if _weight is None:
            w = get_rng().standard_normal((self.num_embeddings, self.embedding_dim)).astype(np.float32)
        else:
            w = np.asarray(_weight._data if isinstance(_weight, Tensor) else _weight, dtype=np.float32)
            if w.shape != (self.num_embeddings, self.embedding_dim):
                raise ValueError(f"_weight has shape {w.shape}, expected "
                                 f"({self.num_embeddings}, {self.embedding_dim})")
        self.weight = Parameter(w)

    def forward(self, input):
        return _t.embedding(input, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Linear(Module):
    """`y = x @ weight.T + bias`, weight (out_features, in_features). PyTorch's default init:
    weight and bias uniform in +-1/sqrt(in_features)."""

    def __init__(self, in_features, out_features, bias=True):
        self.in_features = _check_size("in_features", in_features, 0)
        self.out_features = _check_size("out_features", out_features, 0)
        rng = get_rng()
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        self.weight = Parameter(rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(np.float32))
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, self.out_features).astype(np.float32))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        return _t.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    "max(x, 0). (`inplace` is accepted for compatibility; the result is always a new tensor.)"

    def __init__(self, inplace=False):
        self.inplace = bool(inplace)

    def forward(self, input):
        return _t.relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    def forward(self, input):
        return _t.sigmoid(input)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        pass

    def forward(self, input):
        return input


class _ModuleSeq(Module):
    "What Sequential and ModuleList share: sub-modules 0, 1, ... indexed, counted, iterated."

    def __getitem__(self, idx):
        mods = list(self._modules.items())
        if isinstance(idx, slice):
            return type(self)._from_items(mods[idx])
        try:
            return mods[idx][1]
        except IndexError:
            raise IndexError(f"index {idx} is out of range for a {type(self).__name__} of {len(mods)} "
                             f"modules") from None

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_ModuleSeq):
    "Sub-modules `0`, `1`, ... applied in order (or named, from an OrderedDict)."

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for k, m in args[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(args):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
                self.add_module(str(i), m)

    @classmethod
    def _from_items(cls, items):
        return Sequential(OrderedDict(items))

    def forward(self, input):
        for m in self._modules.values():
            input = m(input)
        return input


class ModuleList(_ModuleSeq):
    "A list of sub-modules, registered as `0`, `1`, ... (no forward of its own)."

    def __init__(self, modules=None):
        if modules is not None:
            self.extend(modules)

    @classmethod
    def _from_items(cls, items):
        return ModuleList([m for _, m in items])

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


class Dropout(Module):
    "Inverted dropout in training mode (zero with probability p, scale the rest by 1/(1-p))."

    def __init__(self, p=0.5, inplace=False):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, bool(inplace)
        self._rng = get_rng()

    def forward(self, input):
        return _t.dropout(input, self.p, self.training, self._rng)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class BatchNorm1d(Module):
    """PyTorch's BatchNorm1d over (batch, features): in training, batch statistics (biased
    variance to normalise) and running estimates updated with `momentum` from the unbiased
    variance (cumulative average when momentum is None); in evaluation, the running estimates."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        self.num_features = _check_size("num_features", num_features, 0)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        n = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(n, np.float32))
            self.bias = Parameter(np.zeros(n, np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", _wrap(np.zeros(n, np.float32)))
            self.register_buffer("running_var", _wrap(np.ones(n, np.float32)))
            self.register_buffer("num_batches_tracked", _wrap(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, input):
        x = input if isinstance(input, Tensor) else _t.tensor(input)
        if x._data.ndim != 2 or x._data.shape[1] != self.num_features:
            raise RuntimeError(f"BatchNorm1d({self.num_features}): expected input of shape (batch, "
                               f"{self.num_features}), got {tuple(x._data.shape)}")
        use_batch = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            if x._data.shape[0] < 2:
                raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                                 f"{tuple(x._data.shape)}")
            self.num_batches_tracked._data += 1
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked._data)
        track = self.training and self.track_running_stats
        return _t.batch_norm(x, self.running_mean if track or not use_batch else None,
                             self.running_var if track or not use_batch else None,
                             self.weight, self.bias, use_batch, momentum or 0.0, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class CosineSimilarity(Module):
    "Cosine similarity along `dim`, broadcasting (e.g. `(N, K)` against `(1, K)`)."

    def __init__(self, dim=1, eps=1e-8):
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return _t.cosine_similarity(x1, x2, self.dim, self.eps)


class MSELoss(Module):
    "Mean squared error of same-shaped input and target (see `collabc.tensor.mse_loss`)."

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, input, target):
        return _t.mse_loss(input, target, self.reduction)


def _torch_one_hot(tensor, num_classes=-1):
    "PyTorch's `F.one_hot`: int64 (..., num_classes) from an integer tensor."
    a = tensor._data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if a.dtype.kind not in "iu":
        raise TypeError(f"one_hot is only applicable to integer tensors, got dtype {a.dtype}")
    n = int(a.max()) + 1 if num_classes == -1 else int(num_classes)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise RuntimeError(f"one_hot: class values must be in [0, {n})")
    return _wrap(np.eye(n, dtype=np.int64)[a])


functional = types.SimpleNamespace(
    relu=_t.relu, sigmoid=_t.sigmoid, tanh=_t.tanh, linear=_t.linear, embedding=_t.embedding,
    dropout=_t.dropout, batch_norm=_t.batch_norm, mse_loss=_t.mse_loss,
    cosine_similarity=_t.cosine_similarity, one_hot=_torch_one_hot)
F = functional


# ------------------------------------------------------------------------------ training support
class ParamBlock:
    """Parameters whose values live in one contiguous float32 array `data` and whose gradients
    live in another, `grad`, of the same layout: parameter i is `data[offsets[i]:offsets[i+1]]`.
    Every parameter's `.data` and `.grad` are views into the blocks, and backward accumulates
    into them in place, so `zero_grad()` is one fill and an optimizer step is one C call."""

    def __init__(self, params):
        params = list(params)
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or p._ctx is not None:
                raise TypeError(f"pack_parameters: item {i} is a {type(p).__name__}, expected a "
                                f"Parameter (a leaf tensor)")
            if p._data.dtype != _F32:
                raise TypeError(f"pack_parameters: parameter {i} has dtype {p._data.dtype}; only float32 "
                                f"parameters can be packed")
            if id(p) in seen:
                raise ValueError(f"pack_parameters: parameter {i} appears twice in the list")
            seen.add(id(p))
        sizes = [int(p._data.size) for p in params]
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        total = int(offsets[-1])
        self.data = np.empty(total, _F32)
        self.grad = np.zeros(total, _F32)
        self.params = params
        self.offsets = offsets
        self._log = []  # what backward wrote since the last zero_grad: (grad array, rows or None)
        for p, lo, hi in zip(params, offsets[:-1].tolist(), offsets[1:].tolist()):
            shape = p._data.shape
            self.data[lo:hi] = p._data.reshape(-1)
            if p._grad is not None:
                self.grad[lo:hi] = p._grad._data.reshape(-1)
            p._data = self.data[lo:hi].reshape(shape)
            p._gview = self.grad[lo:hi].reshape(shape)
            p._grad = _wrap(p._gview)
            p._glog = self._log
            p._version += 1
        self._log.append((self.grad, None))  # gradients carried over: the first zero_grad clears all

    def __len__(self):
        return self.data.size

    @property
    def n_params(self):
        return self.data.size

    def zero_grad(self, touched_only=True):
        """Zero the gradients (the views stay attached). By default only what backward wrote
        since the last call: the rows an embedding lookup (`table[ids]`) scattered into, and the
        whole gradient of any other parameter; so a step of an embedding model costs a few rows,
        not the whole block. After writing into `grad` other than through backward (e.g.
        `blk.grad[:] = ...`), call `zero_grad(touched_only=False)`: one fill of the block."""
        log = self._log
        if not touched_only or len(log) > _t.GRAD_LOG_MAX:
            self.grad.fill(0)
        else:
            done = set()
            for buf, rows in log:
                if rows is None:
                    if id(buf) not in done:
                        done.add(id(buf))
                        buf.fill(0)
                elif id(buf) not in done:
                    if buf.ndim == 2:
                        _core.tensor_zero_rows(buf, rows, True)
                    else:
                        buf[rows] = 0
        log.clear()
        for p in self.params:
            if p._grad is None or p._grad._data is not p._gview:
                p._grad = _wrap(p._gview)

    def __repr__(self):
        return f"ParamBlock({len(self.params)} parameters, {self.data.size} floats)"


def pack_parameters(params):
    """Move the values and gradients of `params` (in this order) into one float32 block each and
    return the `ParamBlock`. Values and any existing gradients are kept; each parameter's data
    and grad become views into the blocks. Calling it again with another list re-packs those
    parameters into new blocks (values kept); parameters left out keep their old storage."""
    return ParamBlock(params)


_NORM_TYPES = (BatchNorm1d,)


def norm_bias_params(m, with_bias=True):
    """fastai's `norm_bias_params`: every parameter of the BatchNorm layers in m, plus (with_bias)
    every module's `.bias` parameter. Embedding tables (bias embeddings included) are not in it."""
    if isinstance(m, _NORM_TYPES):
        return list(m.parameters())
    res = []
    for c in m.children():
        res += norm_bias_params(c, with_bias)
    b = getattr(m, "bias", None)
    if with_bias and isinstance(b, Parameter):
        res.append(b)
    return res


def param_groups(model, wd_bn_bias=False):
    """fastai's weight-decay rule: (decayed, not decayed) parameters in `parameters()` order.
    With wd_bn_bias=False (fastai's default) BatchNorm parameters and every module's `.bias`
    skip weight decay; everything else (embeddings, bias embeddings, Linear weights) takes it."""
    params = list(model.parameters())
    if wd_bn_bias:
        return params, []
    skip = {id(p) for p in norm_bias_params(model, True)}
    return [p for p in params if id(p) not in skip], [p for p in params if id(p) in skip]


def pack_model(model, wd_bn_bias=False):
    """Pack a model's parameters with the decayed ones first: returns the ParamBlock with
    `n_wd`, the number of leading floats that take weight decay (`block.data[:n_wd]`)."""
    decayed, rest = param_groups(model, wd_bn_bias)
    block = ParamBlock(decayed + rest)
    block.n_wd = int(sum(p._data.size for p in decayed))
    return block


def _batch_tensor(a):
    return a if isinstance(a, Tensor) else _wrap(np.asarray(a))


def train_step(model, x, y, loss_func=None):
    """One training step's forward, loss and backward: `loss_func(model(x), y)` (default fastai's
    MSELossFlat), gradients accumulated into the parameters' `.grad` (the packed blocks after
    `pack_parameters`). x: the batch of ids ((bs, 2) integers, array or Tensor); y: the targets.
    Returns the loss as a Python float (for MSE, the double-precision mean, as the fused drivers
    report it). Zeroing the gradients and stepping the optimizer are the caller's."""
    xb = _batch_tensor(x)
    if xb._data.dtype.kind in "iu" and xb._data.dtype != np.int64:
        xb = _wrap(xb._data.astype(np.int64))
    yb = _batch_tensor(y)
    pred = model(xb)
    if not isinstance(pred, Tensor):
        raise TypeError(f"train_step: {type(model).__name__}.forward returned a {type(pred).__name__}, "
                        f"expected a Tensor")
    loss = _t.mse_loss_flat(pred, yb) if loss_func is None else loss_func(pred, yb)
    if not isinstance(loss, Tensor):
        raise TypeError(f"train_step: the loss function returned a {type(loss).__name__}, expected a Tensor")
    ctx = loss._ctx
    value = ctx.value if isinstance(ctx, _t._MSE) else None
    loss.backward()
    return float(loss._data) if value is None else value

