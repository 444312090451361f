"""fastai's layers for collaborative filtering, as ordinary `Module`s over collabc tensors:
`Module` (fastai's: no `super().__init__()` needed), `Embedding` (truncated-normal init, std
0.01), `trunc_normal_`, `sigmoid_range` / `SigmoidRange`, `BatchNorm` (weight 1, bias 1e-3),
`LinBnDrop`, and `TabularModel` with fastai 2.7's signature, structure and state-dict names.
These are the generic path: a model built from them trains through autograd (`collabc.nn`)."""
import enum

import numpy as np

from . import nn
from .nn import Module
from .seed import get_rng
from .tensor import Tensor, cat, sigmoid_range

__all__ = ["Module", "Embedding", "trunc_normal_", "sigmoid_range", "SigmoidRange", "NormType",
           "BatchNorm", "LinBnDrop", "TabularModel"]


def trunc_normal_(x, mean=0.0, std=1.0, rng=None):
    """fastai's `trunc_normal_`, in place: N(0, 1) wrapped by fmod 2 (not resampled), times std,
    plus mean; draws from collabc's generator (`set_seed` makes them reproducible)."""
    a = x._data if isinstance(x, Tensor) else x
    rng = get_rng() if rng is None else rng
    v = np.fmod(rng.standard_normal(a.shape, dtype=np.float32), 2.0) * np.float32(std)
    a[...] = v + np.float32(mean) if mean else v
    if isinstance(x, Tensor):
        x._version += 1
    return x


class Embedding(nn.Embedding):
    "fastai's `Embedding`: a `nn.Embedding` initialised with `trunc_normal_(std=0.01)`."

    def __init__(self, ni, nf, std=0.01):
        super().__init__(ni, nf, _weight=np.zeros((ni, nf), np.float32))
        trunc_normal_(self.weight, std=std)


class SigmoidRange(Module):
    "Sigmoid module with range `(low, high)`."

    def __init__(self, low, high):
        self.low, self.high = low, high

    def forward(self, x):
        return sigmoid_range(x, self.low, self.high)

    def __repr__(self):
        return f"SigmoidRange(low={self.low!r}, high={self.high!r})"


class NormType(enum.Enum):
    Batch = 1
    BatchZero = 2


def BatchNorm(nf, ndim=1, norm_type=NormType.Batch, **kwargs):
    """fastai's `BatchNorm`: a BatchNorm1d with weight 1 (0 for NormType.BatchZero) and bias 1e-3.
    Only ndim=1 (inputs of shape (batch, features)) is available."""
    if ndim != 1:
        raise ValueError(f"BatchNorm: only ndim=1 (BatchNorm1d over (batch, features)) is available, got ndim={ndim}")
    bn = nn.BatchNorm1d(nf, **kwargs)
    if bn.affine:
        bn.bias._data[...] = 1e-3
        bn.weight._data[...] = 0.0 if norm_type == NormType.BatchZero else 1.0
    return bn


class LinBnDrop(nn.Sequential):
    "fastai's block: `BatchNorm1d`, `Dropout` and `Linear` (+ activation), Linear first if lin_first."

    def __init__(self, n_in, n_out, bn=True, p=0.0, act=None, lin_first=False):
        layers = [BatchNorm(n_out if lin_first else n_in, ndim=1)] if bn else []
        if p != 0:
            layers.append(nn.Dropout(p))
        lin = [nn.Linear(n_in, n_out, bias=not bn)]
        if act is not None:
            lin.append(act)
        layers = lin + layers if lin_first else layers + lin
        super().__init__(*layers)


def _is_listy(x):
    return isinstance(x, (list, tuple, np.ndarray))


class TabularModel(Module):
    """fastai's `TabularModel` (2.7): embeddings of the categorical columns concatenated, embedding
    dropout, optional continuous columns through BatchNorm, then `LinBnDrop` blocks to `out_sz`,
    and `SigmoidRange(*y_range)` when given. `forward(x_cat, x_cont=None)`."""

    def __init__(self, emb_szs, n_cont, out_sz, layers, ps=None, embed_p=0.0, y_range=None,
                 use_bn=True, bn_final=False, bn_cont=True, act_cls=nn.ReLU(inplace=True),
                 lin_first=True):
        if not _is_listy(layers):
            raise TypeError(f"layers must be a list of layer sizes, got {layers!r}")
        layers = list(layers)
        ps = [0] * len(layers) if ps is None else ps
        if not _is_listy(ps):
            ps = [ps] * len(layers)
        ps = list(ps)
        if len(ps) != len(layers):
            raise ValueError(f"ps has {len(ps)} probabilities but layers has {len(layers)} sizes")
        self.embeds = nn.ModuleList([Embedding(ni, nf) for ni, nf in emb_szs])
        self.emb_drop = nn.Dropout(embed_p)
        self.bn_cont = nn.BatchNorm1d(n_cont) if bn_cont else None
        n_emb = sum(e.embedding_dim for e in self.embeds)
        self.n_emb, self.n_cont = n_emb, n_cont
        sizes = [n_emb + n_cont] + layers + [out_sz]
        actns = [act_cls for _ in range(len(sizes) - 2)] + [None]
        _layers = [LinBnDrop(sizes[i], sizes[i + 1], bn=use_bn and (i != len(actns) - 1 or bn_final), p=p,
                             act=a, lin_first=lin_first)
                   for i, (p, a) in enumerate(zip(ps + [0.0], actns))]
        if y_range is not None:
            _layers.append(SigmoidRange(*y_range))
        self.layers = nn.Sequential(*_layers)

    def forward(self, x_cat, x_cont=None):
        if self.n_emb != 0:
            x = [e(x_cat[:, i]) for i, e in enumerate(self.embeds)]
            x = cat(x, 1)
            x = self.emb_drop(x)
        if self.n_cont != 0:
            if x_cont is None:
                raise TypeError(f"{type(self).__name__}.forward: the model has {self.n_cont} continuous "
                                f"inputs, pass x_cont")
            if self.bn_cont is not None:
                x_cont = self.bn_cont(x_cont)
            x = cat([x, x_cont], 1) if self.n_emb != 0 else x_cont
        return self.layers(x)
