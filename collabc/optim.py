"""fastai's optimizers over a model's flat parameter block: `Adam` (the default) and `SGD`.

An optimizer owns its state buffers (Adam's moments, SGD's momentum buffer) as NumPy float32
arrays the size of the model's parameter block, plus its hyperparameters in `hypers`.
The arithmetic runs in C (`csrc/optim.c`); the epoch driver calls it once per batch.
"""
import numpy as np

__all__ = ["Optimizer", "Adam", "SGD", "Adagrad"]


def _check_hyper(name, v, lo=0.0, hi=None, lo_open=False):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None
    bad = not np.isfinite(f) or f < lo or (lo_open and f == lo) or (hi is not None and f >= hi)
    if bad:
        rng = f"({lo}, " if lo_open else f"[{lo}, "
        rng += f"{hi})" if hi is not None else "inf)"
        raise ValueError(f"{name} must be a finite number in {rng}, got {v!r}")
    return f


class Optimizer:
    "Base class: hyperparameters in `hypers`, state buffers sized for `n_params` floats."
    kind = None

    def __init__(self, n_params, lr, **hypers):
        if isinstance(n_params, bool) or not isinstance(n_params, (int, np.integer)) or n_params < 1:
            raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
        self.n_params = int(n_params)
        self.hypers = {}
        self.set_hypers(lr=lr, **hypers)
        self.step_count = 0

    def set_hypers(self, **kwargs):
        "Set hyperparameters (lr, mom, wd, ...), validating each."
        for k, v in kwargs.items():
            if k not in self._hyper_names:
                raise TypeError(f"{type(self).__name__} has no hyperparameter {k!r}; "
                                f"it has {sorted(self._hyper_names)}")
            if k == "mom" or k == "sqr_mom":
                v = _check_hyper(k, v, 0.0, 1.0)
            elif k == "eps":
                v = _check_hyper(k, v, 0.0, lo_open=True)
            elif k == "decouple_wd":
                v = bool(v)
            else:
                v = _check_hyper(k, v)
            self.hypers[k] = v

    def zero_state(self):
        "Forget the optimizer's history (moments and step count)."
        for buf in self._buffers():
            buf[:] = 0
        self.step_count = 0

    def state_dict(self):
        "Hyperparameters, step count and copies of the state buffers."
        return {"kind": self.kind, "hypers": dict(self.hypers), "step": self.step_count,
                "buffers": [b.copy() for b in self._buffers()]}

    def load_state_dict(self, sd):
        "Restore what `state_dict` returned (same kind and size)."
        bufs = self._buffers()
        if sd.get("kind") != self.kind or len(sd.get("buffers", ())) != len(bufs):
            raise ValueError(f"optimizer state is for {sd.get('kind')!r}, not {self.kind!r}")
        for b, s in zip(bufs, sd["buffers"]):
            s = np.asarray(s)
            if s.shape != b.shape:
                raise ValueError(f"optimizer state has shape {s.shape}, expected {b.shape}")
            b[:] = s
        self.set_hypers(**sd["hypers"])
        self.step_count = int(sd["step"])

    def __repr__(self):
        hp = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hypers.items())
        return f"{type(self).__name__}({hp}, step={self.step_count})"


class Adam(Optimizer):
    """fastai's Adam: dampened first moment, debiasing with the scheduled momentum, eps outside
    the square root, and weight decay decoupled (AdamW) by default, applied to every parameter
    the model marks for decay. Defaults are fastai's, not PyTorch's."""
    kind = "adam"
    _hyper_names = {"lr", "mom", "sqr_mom", "eps", "wd", "decouple_wd"}

    def __init__(self, n_params, lr=1e-3, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True):
        super().__init__(n_params, lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, decouple_wd=decouple_wd)
        self.m = np.zeros(self.n_params, np.float32)
        self.v = np.zeros(self.n_params, np.float32)

    def _buffers(self):
        return [self.m, self.v]


class SGD(Optimizer):
    """fastai's SGD: `p -= lr * g`, or with momentum (`mom != 0` at construction) a buffer
    `b = mom*b + g` and `p -= lr * b`; weight decay decoupled by default (fastai's default wd=0)."""
    kind = "sgd"
    _hyper_names = {"lr", "mom", "wd", "decouple_wd"}

    def __init__(self, n_params, lr=1e-3, mom=0.0, wd=0.0, decouple_wd=True):
        super().__init__(n_params, lr, mom=mom, wd=wd, decouple_wd=decouple_wd)
        self.m = np.zeros(self.n_params, np.float32) if self.hypers["mom"] != 0 else None
        self.v = None

    def _buffers(self):
        return [self.m] if self.m is not None else []


class Adagrad(Optimizer):
    """Row-wise Adagrad (LibMF's adaptive learning rate), for the sparse training path only:
    each user or item row keeps one accumulator of its mean squared gradient (its bias a second
    one) and steps by `lr * g / sqrt(acc + eps)`. `wd` is an L2 penalty on the rows a rating
    touches. Use with `Learner(..., train_mode='sparse')`."""
    kind = "adagrad"
    _hyper_names = {"lr", "eps", "wd", "decouple_wd", "mom"}

    def __init__(self, n_params, lr=1e-2, eps=1e-8, wd=0.0, decouple_wd=True):
        super().__init__(n_params, lr, eps=eps, wd=wd, decouple_wd=decouple_wd, mom=0.0)
        self.m = None
        self.v = np.zeros(0, np.float32)

    def _buffers(self):
        return [self.v]
