"""fastai's optimizers over a model's flat parameter block: `Adam` (the default), `SGD`, and
row-wise `Adagrad` for the sparse path.

An optimizer owns every buffer it updates, by name, in `state` (float32 NumPy arrays): Adam's
moments `m` and `v` (and, on the sparse path, each row's step powers `pow1` and `pow2`), SGD's
momentum buffer `m`, Adagrad's sums `v`. It owns its hyperparameters (`hypers`) and its step
count too, and saves and restores all of it through `state_dict` / `load_state_dict`; a state
that does not fit is refused before anything changes. The arithmetic runs in C
(`csrc/optim.c`, `csrc/sparse.c`); a training path asks for the buffers it needs with
`buffer(name, size, fill)`.
"""
import numpy as np

from ._checks import check_float, check_int

__all__ = ["Optimizer", "Adam", "SGD", "Adagrad"]


def _check_hyper(name, v, lo=0.0, hi=None, lo_open=False):
    return check_float(name, v, lo, hi, lo_open=lo_open, hi_open=hi is not None)


class Optimizer:
    """Base class: hyperparameters in `hypers`, named state buffers in `state`, the step count
    in `step_count`. `n_params` is the size of the parameter block it steps."""
    kind = None
    _hyper_names = set()

    def __init__(self, n_params, lr, **hypers):
        self.n_params = check_int("n_params", n_params, 1)
        self.hypers = {}
        self.set_hypers(lr=lr, **hypers)
        self.step_count = 0
        self.state = {}

    def set_hypers(self, **kwargs):
        "Set hyperparameters (lr, mom, wd, ...), validating each."
        checked = {}
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
            checked[k] = v
        self.hypers.update(checked)

    def buffer(self, name, size, fill=0.0):
        """The state buffer `name` (float32, `size` values), made (filled with `fill`) if the
        optimizer does not have it yet or has it at another size."""
        size = check_int("size", size, 0)
        buf = self.state.get(name)
        if buf is None or buf.size != size:
            buf = self.state[name] = np.full(size, fill, np.float32)
        return buf

    # the buffers the exact path's C driver reads (None when absent)
    m = property(lambda self: self.state.get("m"))
    v = property(lambda self: self.state.get("v"))

    def zero_state(self):
        "Forget the optimizer's history (every buffer back to its start, step count 0)."
        for name, buf in self.state.items():
            buf[:] = 1.0 if name in ("pow1", "pow2") else 0.0
        self.step_count = 0

    def state_dict(self):
        "Hyperparameters, step count and copies of the named state buffers."
        return {"kind": self.kind, "hypers": dict(self.hypers), "step": self.step_count,
                "buffers": {k: b.copy() for k, b in self.state.items()}}

    def check_state_dict(self, sd, shapes=None):
        """Checks `sd` (from `state_dict`) against this optimizer without changing anything and
        returns it normalised: same kind, known hyperparameters with valid values, a
        non-negative step, and float32-convertible finite buffers whose shapes are those of
        `shapes` ({name: shape}, default: the buffers this optimizer has). Raises ValueError
        or TypeError saying what does not fit."""
        if not isinstance(sd, dict) or sd.get("kind") != self.kind:
            found = sd.get("kind") if isinstance(sd, dict) else type(sd).__name__
            raise ValueError(f"optimizer state is for {found!r}, not {self.kind!r}")
        hypers = sd.get("hypers", {})
        if not isinstance(hypers, dict):
            raise TypeError(f"optimizer hypers must be a dict, got {type(hypers).__name__}")
        probe = type(self).__new__(type(self))
        probe.hypers = dict(self.hypers)
        probe.set_hypers(**hypers)
        step = check_int("optimizer step", sd.get("step", 0), 0)
        bufs = sd.get("buffers", {})
        if isinstance(bufs, (list, tuple)):  # format 1: positional, in the base buffers' order
            names = self._base_buffers()
            if len(bufs) != len(names):
                raise ValueError(f"optimizer state has {len(bufs)} buffers, {self.kind} has {len(names)}")
            bufs = dict(zip(names, bufs))
        if not isinstance(bufs, dict):
            raise TypeError("optimizer buffers must be a dict of arrays")
        want = {k: b.shape for k, b in self.state.items()} if shapes is None else dict(shapes)
        missing = [k for k in want if k not in bufs]
        extra = [k for k in bufs if k not in want]
        if missing or extra:
            raise ValueError(f"optimizer state has the buffers {sorted(bufs)}, but this {self.kind} "
                             f"optimizer needs {sorted(want)}")
        out = {}
        for k, b in bufs.items():
            a = np.asarray(b)
            if a.shape != tuple(want[k]):
                raise ValueError(f"optimizer buffer {k!r} has shape {a.shape}, expected {tuple(want[k])}")
            if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
                raise ValueError(f"optimizer buffer {k!r} must hold finite numbers")
            out[k] = a.astype(np.float32)
        return {"kind": self.kind, "hypers": probe.hypers, "step": step, "buffers": out}

    def load_state_dict(self, sd, shapes=None):
        "Restores what `state_dict` returned, after `check_state_dict` (all or nothing)."
        sd = self.check_state_dict(sd, shapes)
        self.hypers = sd["hypers"]
        self.step_count = sd["step"]
        for k, a in sd["buffers"].items():
            if k in self.state and self.state[k].shape == a.shape:
                self.state[k][...] = a
            else:
                self.state[k] = a.copy()

    def _base_buffers(self):
        "Names of the buffers a fresh optimizer of this kind has (format 1 files list them so)."
        return []

    def __repr__(self):
        hp = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hypers.items())
        return f"{type(self).__name__}({hp}, step={self.step_count})"


class Adam(Optimizer):
    """fastai's Adam: dampened first moment, debiasing with the scheduled momentum, eps outside
    the square root, and weight decay decoupled (AdamW) by default, applied to every parameter
    the model marks for decay. Defaults are fastai's, not PyTorch's. On the sparse path it is
    lazy Adam: each row steps only when a rating touches it, with its own step powers."""
    kind = "adam"
    _hyper_names = {"lr", "mom", "sqr_mom", "eps", "wd", "decouple_wd"}

    def __init__(self, n_params, lr=1e-3, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True):
        super().__init__(n_params, lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, decouple_wd=decouple_wd)
        self.buffer("m", self.n_params)
        self.buffer("v", self.n_params)

    def _base_buffers(self):
        return ["m", "v"]


class SGD(Optimizer):
    """fastai's SGD: `p -= lr * g`, or with momentum (`mom != 0` at construction) a buffer
    `b = mom*b + g` and `p -= lr * b`; weight decay decoupled by default (fastai's default wd=0)."""
    kind = "sgd"
    _hyper_names = {"lr", "mom", "wd", "decouple_wd"}

    def __init__(self, n_params, lr=1e-3, mom=0.0, wd=0.0, decouple_wd=True):
        super().__init__(n_params, lr, mom=mom, wd=wd, decouple_wd=decouple_wd)
        if self.hypers["mom"] != 0:
            self.buffer("m", self.n_params)

    def _base_buffers(self):
        return ["m"] if "m" in self.state else []


class Adagrad(Optimizer):
    """Row-wise Adagrad (LibMF's adaptive learning rate), for the sparse training path only:
    each user or item row keeps one accumulator of its mean squared gradient (its bias a second
    one) and steps by `lr * g / sqrt(acc + eps)`. `wd` is an L2 penalty on the rows a rating
    touches. Use with `Learner(..., train_mode='sparse')`; the sparse path sizes its sums."""
    kind = "adagrad"
    _hyper_names = {"lr", "eps", "wd", "decouple_wd", "mom"}

    def __init__(self, n_params, lr=1e-2, eps=1e-8, wd=0.0, decouple_wd=True):
        super().__init__(n_params, lr, eps=eps, wd=wd, decouple_wd=decouple_wd, mom=0.0)

    def _base_buffers(self):
        return ["v"]
