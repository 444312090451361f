"""What goes into collabc's files, and how it comes back: checkpoints (`learn.save` /
`learn.load`) and exported learners (`learn.export` / `load_learner`), written and read in
the format of `collabc.persist` (which checks the archive itself).

* A checkpoint holds the model's tensors and, with `with_opt`, the optimizer's state (its kind,
  hyperparameters, step count and every named buffer: Adam's moments and, on the sparse path,
  each row's step powers; Adagrad's sums) and the learner's data order, so that a learner that
  loads it resumes training exactly as if it had never stopped.
* An export holds the model (configuration and tensors), the classes and column names, the
  loss, metrics, opt_func, hyperparameters and training path, and by default the training
  (user, item) pairs (for `exclude_seen`) and the training MSE (for fold-in); no training rows.

Loading checks everything against the learner before anything changes: a file that does not
fit raises `CollabcFileError` and leaves the model, the optimizer and the data order as they
were; an export's classes must match its model's tables and its seen pairs must be sorted.

Writing refuses, before the file is touched, what loading would refuse or could not give back
exactly: parameters, optimizer buffers or hyperparameters that are NaN or infinite (a
diverged fit: an existing good file is kept), and labels of mixed types. Labels round-trip
exactly, types included: integers (int64, uint64, or any size as decimal text), floats,
booleans and strings (`label_encoding` "str+1" stores strings with a trailing NUL, which
NumPy's unicode arrays would drop, with one extra character).
"""
import math
import re
import warnings
from functools import partial

import numpy as np

from .bayes import BayesModel
from .data import CategoryMap, DataLoader, DataLoaders
from . import foldin
from .implicit import ImplicitModel
from .metrics import MSELossFlat, mae, mse, rmse
from .models import CollabNN, DotProduct, DotProductBias, EmbeddingDotBias, EmbeddingNN, Module
from .optim import SGD, Adagrad, Adam
from .persist import CollabcFileError, brief as _brief, is_int, is_number, read_archive, write_archive

__all__ = ["save", "load", "export", "read_export", "MODEL_CLASSES", "CollabcFileError"]

_KNOWN_METRICS = {"mse": mse, "rmse": rmse, "_rmse": rmse, "mae": mae}
_OPT_FUNCS = {"Adam": Adam, "SGD": SGD, "Adagrad": Adagrad}
#: the model classes files can name (each has get_config() and from_config())
MODEL_CLASSES = {c.__name__: c for c in (EmbeddingDotBias, DotProduct, DotProductBias, EmbeddingNN, CollabNN,
                                         ImplicitModel, BayesModel)}


def _model_config(model):
    """The built-in models' `get_config()`; for a model the user wrote, its class name only (the
    file holds its weights, never its code: `load_learner(path, model=MyModel(...))` gives
    them back to a model the user builds)."""
    if hasattr(model, "get_config") and type(model).__name__ in MODEL_CLASSES:
        return model.get_config()
    return {"class": type(model).__name__, "args": None, "user_model": True}


def _optional(name, shape):
    """Tensors a file may lack (written before the models were Modules): BatchNorm's batch
    counters and the empty tensors of fastai's unused `bn_cont`."""
    return name.endswith("num_batches_tracked") or (len(shape) > 0 and int(np.prod(shape)) == 0)


def _build_model(cfg, classes, arrays, path):
    """The model described by `cfg` (from `get_config()`), built only after every size in it
    (users, items, factors, embedding and layer widths) has been checked against the shapes of
    the stored `model/` tensors in `arrays`: those are bounded by the file's size, so a
    configuration claiming a huge model is refused before anything is allocated."""
    if not isinstance(cfg, dict):
        raise CollabcFileError(f"{path}: its model configuration is not a dict")
    name = cfg.get("class")
    cls = MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CollabcFileError(f"{path}: unknown model class {_brief(name)}; known: {sorted(MODEL_CLASSES)}")
    args = cfg.get("args")
    if not isinstance(args, dict):
        raise CollabcFileError(f"{path}: the {name} configuration's args must be a dict, got {_brief(args)}")
    for key in ("user", "item"):
        if cfg.get(key) is not None and not isinstance(cfg[key], (str, int)):
            raise CollabcFileError(f"{path}: the {name} configuration's {key} column must be a string, "
                                   f"got {_brief(cfg[key])}")
    try:
        planned = cls.planned_shapes(**args)   # computed from the arguments: nothing allocated
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CollabcFileError(f"{path}: cannot rebuild {name} from its configuration ({e})") from None
    stored = {k[len("model/"):]: a.shape for k, a in arrays.items() if k.startswith("model/")}
    missing = [n for n, shape in planned.items() if n not in stored and not _optional(n, shape)]
    if missing:
        raise CollabcFileError(f"{path}: its {name} configuration needs tensors the file does not hold: "
                               f"{_brief(missing)}")
    for n, shape in planned.items():
        if n in stored and stored[n] != shape:
            raise CollabcFileError(f"{path}: tensor {n!r} has shape {stored[n]} but the model configuration "
                                   f"says {shape} (its sizes do not match the stored tensors)")
    try:
        return cls.from_config(cfg, classes)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CollabcFileError(f"{path}: cannot rebuild {name} from its configuration ({e})") from None


def _checked(model, sd, path, strict=True):
    "A model with its own check of a state dict (BayesModel, ImplicitModel) runs it: a misfit is a CollabcFileError."
    check = getattr(model, "check_state_dict", None)
    if check is not None:
        try:
            check(sd, strict)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            raise CollabcFileError(f"{path}: its model state does not fit ({e})") from None
    return sd


def _model_state(model, arrays, path, strict=True):
    """The model's state dict with the file's `model/` tensors in place, checked (names, shapes,
    finite values) without touching the model."""
    sd = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    own = {k: np.asarray(v) for k, v in model.state_dict().items()}
    # files from before the models were Modules lack BatchNorm's batch counters and fastai's
    # empty `bn_cont`: those keep the model's values
    missing = [n for n in own if n not in sd and not _optional(n, own[n].shape)]
    extra = [n for n in sd if n not in own]
    if strict and (missing or extra):
        raise CollabcFileError(f"{path}: its tensors do not match the model: missing {missing}, unexpected {extra}")
    for name, a in sd.items():
        if name in own and a.shape != own[name].shape:
            raise CollabcFileError(f"{path}: tensor {name!r} has shape {a.shape} but the model's is "
                                   f"{own[name].shape} (a different number of users, items or factors?)")
        if name in own and (a.dtype.kind not in "fiu" or not np.all(np.isfinite(a))):
            raise CollabcFileError(f"{path}: tensor {name!r} holds NaN or inf")
    own.update({n: a for n, a in sd.items() if n in own})
    return _checked(model, own, path, strict)


_LABEL_ENCODINGS = ("int-decimal", "str+1")   # beyond the array's own dtype (format 3)


def _labels_array(cmap, what, column):
    """The labels of `cmap` (without '#na#') as an array that gives them back exactly, and the
    `label_encoding` needed to read it (None: the array's dtype says it all)."""
    items = list(cmap)[1:]
    ints = [isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items]
    if all(ints):
        items = [int(v) for v in items]
        if all(-2**63 <= v < 2**63 for v in items):
            return np.array(items, dtype=np.int64), None
        if all(0 <= v < 2**64 for v in items):
            return np.array(items, dtype=np.uint64), None
        return np.array([str(v) for v in items], dtype=str), "int-decimal"
    if all(isinstance(v, (bool, np.bool_)) for v in items):
        return np.array(items, dtype=np.bool_), None
    if all(isinstance(v, str) for v in items):
        if any(v.endswith("\x00") for v in items):   # NumPy's unicode arrays drop trailing NULs
            return np.array([v + "." for v in items], dtype=str), "str+1"
        return (np.array(items, dtype=str) if items else np.zeros(0, "<U1")), None
    if all(isinstance(v, (float, np.floating)) for v in items):
        return np.array(items, dtype=np.float64), None
    kinds = sorted({type(v).__name__ for v in items})
    raise TypeError(f"the {what} column {column!r} has labels of types {kinds}; export stores labels "
                    f"that are all integers, all floats, all booleans or all strings, so that they come "
                    f"back exactly: convert the column before CollabDataLoaders.from_df (e.g. .astype(str))")


def _labels_from(arr, encoding, what, fname):
    "The labels stored by `_labels_array`, as Python values."
    if encoding is None:
        if arr.dtype.kind not in "biufU":
            raise CollabcFileError(f"{fname}: the {what} classes must be a 1-d array of integers, floats, "
                                   f"booleans or strings, got {arr.dtype.str} {list(arr.shape)}")
        return arr.tolist()
    if arr.dtype.kind != "U":
        raise CollabcFileError(f"{fname}: the {what} classes are {encoding}-encoded but stored as "
                               f"{arr.dtype.str}, not strings")
    items = arr.tolist()
    if encoding == "str+1":
        if any(not v for v in items):
            raise CollabcFileError(f"{fname}: the {what} classes are str+1-encoded but one is empty")
        return [v[:-1] for v in items]
    out = []
    for v in items:   # int-decimal: ASCII digits with an optional sign, no more than Python parses
        if not re.fullmatch(r"-?[0-9]{1,4300}", v):
            raise CollabcFileError(f"{fname}: the {what} classes are int-decimal-encoded but hold "
                                   f"{_brief(v)}")
        out.append(int(v))
    return out


def _refuse_nonfinite(arrays, values, file, action):
    """Raises a ValueError before anything is written when an array of `arrays` or a number of
    `values` ({description: value}) is NaN or infinite: loading would refuse the file (or JSON
    could not hold it), and a good file at `file` must not be replaced by it."""
    bad = [n.split("/", 1)[-1] for n, a in arrays.items()   # tensors and optimizer buffers (not labels)
           if n.startswith(("model/", "opt/")) and a.dtype.kind == "f" and not np.all(np.isfinite(a))]
    if bad:
        raise ValueError(f"cannot {action} {file}: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} "
                         f"hold{'s' if len(bad) == 1 else ''} NaN or inf (did training diverge?); nothing "
                         f"was written, so an existing file there is kept. Load a good checkpoint or "
                         f"rebuild the model, and train with a lower learning rate")
    for desc, v in values.items():
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            raise ValueError(f"cannot {action} {file}: {desc} is {v}, not a finite number (did training "
                             f"diverge?); nothing was written, so an existing file there is kept")


def _opt_func_spec(f):
    kwargs = {}
    if isinstance(f, partial):
        if f.args:
            raise TypeError(f"opt_func {f!r} cannot be exported: pass its arguments as keywords")
        kwargs, f = dict(f.keywords), f.func
    name = getattr(f, "__name__", None)
    if name not in _OPT_FUNCS or _OPT_FUNCS[name] is not f:
        raise TypeError(f"opt_func {f!r} cannot be exported: only collabc's {', '.join(_OPT_FUNCS)} "
                        f"(or partials of them)")
    if not all(isinstance(v, (int, float, bool)) for v in kwargs.values()):
        raise TypeError(f"opt_func {name} has non-numeric keyword arguments {kwargs!r}; they cannot be exported")
    return {"name": name, "kwargs": kwargs}


def _rng_state(rng):
    "The learner's data-order generator state as JSON-able data."
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"], "state": st["state"], "has_uint32": st["has_uint32"],
            "uinteger": st["uinteger"]}


def _check_rng_state(state, path):
    "A PCG64 state read from a file, checked by loading it into a scratch generator."
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        np.random.PCG64().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CollabcFileError(f"{path}: its data-order state is invalid ({e})") from None
    return state


# ---------------------------------------------------------------------------------------------
# checkpoints: learn.save / learn.load

def save(learn, file, with_opt=True):
    """fastai's `learn.save`: the model's tensors (and, with `with_opt`, the optimizer's state
    and the learner's data order) to `file`. Returns the path."""
    meta = {"model": _model_config(learn.model), "has_opt": bool(with_opt and learn.opt is not None)}
    arrays = {f"model/{n}": np.asarray(v) for n, v in learn.model.state_dict().items()}
    hypers = {}
    if meta["has_opt"]:
        sd = learn.opt.state_dict()
        meta["opt"] = {"kind": sd["kind"], "hypers": sd["hypers"], "step": int(sd["step"]),
                       "buffers": sorted(sd["buffers"])}
        arrays.update({f"opt/{k}": b for k, b in sd["buffers"].items()})
        hypers = {f"the optimizer's {k}": v for k, v in sd["hypers"].items()}
    if with_opt:
        meta["data_rng"] = _rng_state(learn.data_rng)
    _refuse_nonfinite(arrays, hypers, file, "save")
    return write_archive(file, "checkpoint", meta, arrays)


def _opt_state(header, arrays, file):
    """The checkpoint's optimizer state as `Optimizer.check_state_dict` takes it: named buffers
    (format 2) or positional ones (format 1)."""
    o = header.get("opt", {})
    if not isinstance(o, dict):
        raise CollabcFileError(f"{file}: its optimizer metadata is not a dict")
    if not isinstance(o.get("kind"), str) or not isinstance(o.get("hypers", {}), dict) \
            or not is_int(o.get("step", 0)) or o.get("step", 0) < 0:
        raise CollabcFileError(f"{file}: its optimizer metadata is malformed (kind {_brief(o.get('kind'))}, "
                               f"hypers {_brief(o.get('hypers'))}, step {_brief(o.get('step'))})")
    if "buffers" in o:
        names = o["buffers"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise CollabcFileError(f"{file}: its optimizer buffer names are malformed ({_brief(names)})")
        bufs = {n: arrays.get(f"opt/{n}") for n in names}
    else:   # format 1
        n = o.get("n_buffers", 0)
        if not is_int(n) or not 0 <= n <= len(arrays):
            raise CollabcFileError(f"{file}: its optimizer metadata has a bad n_buffers {_brief(n)}")
        bufs = [arrays.get(f"opt/{i}") for i in range(n)]
    if any(b is None for b in (bufs.values() if isinstance(bufs, dict) else bufs)):
        raise CollabcFileError(f"{file}: optimizer buffers are missing")
    return {"kind": o.get("kind"), "hypers": o.get("hypers", {}), "step": o.get("step", 0), "buffers": bufs}


def load(learn, file, with_opt=True, strict=True):
    """fastai's `learn.load`: tensors from `file` into `learn.model` (names and shapes must
    match; `strict=False` loads the matching ones), and if `with_opt` the optimizer state and
    data order the file holds (a warning, as fastai, when it has none). Everything is checked
    first - the model's tensors, the optimizer's kind, hyperparameters, step and every buffer's
    shape, the data-order state - and only then applied, so a bad file raises
    `CollabcFileError` and changes nothing."""
    header, arrays = read_archive(file, kind="checkpoint")
    cfg = header.get("model", {})
    if isinstance(cfg, dict) and cfg.get("class") != type(learn.model).__name__:
        found = cfg.get("class")
        raise CollabcFileError(f"{file}: holds a {found if isinstance(found, str) else _brief(found)} but the "
                               f"learner's model is a {type(learn.model).__name__}")
    model_sd = _model_state(learn.model, arrays, file, strict=strict)
    opt, opt_sd, rng_state = None, None, None
    if with_opt and header.get("has_opt"):
        state = _opt_state(header, arrays, file)
        try:
            opt = learn.opt if learn.opt is not None else learn._new_opt()
            opt_sd = opt.check_state_dict(state)
        except (ValueError, TypeError, OverflowError) as e:
            raise CollabcFileError(f"{file}: the optimizer state does not fit ({e})") from None
    if with_opt and "data_rng" in header:
        rng_state = _check_rng_state(header["data_rng"], file)
    # everything fits: apply
    learn.model.load_state_dict(model_sd)
    if opt_sd is not None:
        opt.load_state_dict(opt_sd)
        learn.opt = opt
    elif with_opt:
        warnings.warn("Saved file doesn't contain an optimizer state.")
    if rng_state is not None:
        learn.data_rng.bit_generator.state = rng_state
    return learn


# ---------------------------------------------------------------------------------------------
# learners: learn.export / load_learner

def export(learn, file, with_seen=True):
    """fastai's `learn.export`: the model (configuration and tensors), the classes, the column
    names, the loss, metrics, opt_func, hyperparameters and training path - no training data
    and no optimizer state - to `file`. With `with_seen` it also keeps the (user, item) pairs of
    the training set (as CSR indices) so the loaded learner can exclude seen items from
    recommendations, and the training MSE used by fold-in. Returns the path."""
    d = learn.dls
    metrics = []
    for m in learn.metrics:
        name = getattr(m, "name", getattr(m, "__name__", None))
        if name in _KNOWN_METRICS and _KNOWN_METRICS[name] is m:
            metrics.append(name)
        else:
            warnings.warn(f"metric {m!r} is not one of collabc's mse/rmse/mae and is not exported")
    meta = {"model": _model_config(learn.model),
            "names": {"user": d.user_name, "item": d.item_name, "rating": d.rating_name},
            "y_dtype": np.dtype(getattr(d, "_y_dtype", np.float32)).str,
            "learner": {"opt_func": _opt_func_spec(learn.opt_func), "lr": learn.lr, "wd": learn.wd,
                        "moms": list(learn.moms), "metrics": metrics, "model_dir": str(learn.model_dir),
                        "loss_func": "MSELossFlat", "wd_bn_bias": bool(learn.wd_bn_bias),
                        "train_mode": learn.train_mode, "n_blocks": learn.n_blocks},
            "with_seen": bool(with_seen)}
    for key in ("user", "item", "rating"):   # JSON gives these back exactly (a tuple would come back a list)
        v = meta["names"][key]
        if not (isinstance(v, (str, int)) or (isinstance(v, float) and math.isfinite(v))):
            raise TypeError(f"the {key} column name {v!r} cannot be exported: column names must be strings, "
                            f"integers, booleans or finite floats; rename the column before from_df")
    for what, col, rows in (("user", d.user_name, getattr(learn.model, "n_users", None)),
                            ("item", d.item_name, getattr(learn.model, "n_items", None))):
        if rows is not None and len(d.classes[col]) != rows:   # load_learner refuses such a file: each row needs a label
            raise ValueError(f"cannot export {file}: the model has {rows} {what} rows but the data has "
                             f"{len(d.classes[col])} {what} classes ('#na#' included); an exported learner "
                             f"needs one class per row (build the model from the data: "
                             f"collab_learner, or n_users=dls.n_users / n_items=dls.n_items)")
    # a model may export less than it checkpoints (collabc.bayes: the draws, not the sampler)
    state = getattr(learn.model, "inference_state_dict", learn.model.state_dict)()
    arrays = {f"model/{n}": np.asarray(v) for n, v in state.items()}
    encodings = {}
    for what, col in (("user", d.user_name), ("item", d.item_name)):
        arrays[f"classes/{what}"], enc = _labels_array(d.classes[col], what, col)
        if enc is not None:
            encodings[what] = enc
    if encodings:
        meta["label_encoding"] = encodings
    values = {"the learner's lr": learn.lr, "the learner's wd": learn.wd,
              **{f"the learner's moms[{k}]": m for k, m in enumerate(learn.moms)}}
    _refuse_nonfinite(arrays, values, file, "export")
    if with_seen:
        indptr, indices = learn.seen()
        arrays["seen/indptr"], arrays["seen/indices"] = indptr, indices
        meta["noise_var"] = foldin.train_noise_var(learn)
        _refuse_nonfinite({}, {"the model's training MSE (kept for fold-in)": meta["noise_var"]}, file, "export")
    return write_archive(file, "learner", meta, arrays)


def _classes_from(arr, encoding, what, fname):
    if arr is None:
        raise CollabcFileError(f"{fname}: the {what} classes (classes/{what}) are missing")
    if arr.ndim != 1:
        raise CollabcFileError(f"{fname}: the {what} classes must be a 1-d array, got {arr.dtype.str} "
                               f"{list(arr.shape)}")
    try:
        return CategoryMap._from_items(_labels_from(arr, encoding, what, fname), add_na=True, check=True)
    except (TypeError, ValueError) as e:
        if isinstance(e, CollabcFileError):
            raise
        raise CollabcFileError(f"{fname}: the {what} classes are invalid ({e})") from None


def _learner_meta(header, fname):
    """The learner part of an export file's metadata, every field type-checked (values are
    checked again by `Learner`): (user, item, rating column names, y dtype, Learner kwargs)."""
    def bad(why):
        return CollabcFileError(f"{fname}: {why}")

    names = header.get("names")
    if not isinstance(names, dict):
        raise bad(f"incomplete learner metadata: names must be a dict of the user, item and rating column "
                  f"names, got {_brief(names)}")
    cols = []
    for key in ("user", "item", "rating"):
        v = names.get(key)
        if not (isinstance(v, (str, int)) or (isinstance(v, float) and math.isfinite(v))):  # what export writes
            raise bad(f"incomplete learner metadata: the {key} column name must be a string, got {_brief(v)}")
        cols.append(v)
    if cols[0] == cols[1]:
        raise bad(f"the user and item columns have the same name {_brief(cols[0])}")
    y_dtype = header.get("y_dtype", "<f4")
    try:
        y_dtype = np.dtype(y_dtype) if isinstance(y_dtype, str) else None
    except (TypeError, ValueError):
        y_dtype = None
    if y_dtype is None or y_dtype.kind not in "biuf" or y_dtype.fields is not None or y_dtype.subdtype:
        raise bad(f"y_dtype must name a numeric dtype, got {_brief(header.get('y_dtype'))}")
    lmeta = header.get("learner")
    if not isinstance(lmeta, dict):
        raise bad(f"incomplete learner metadata: learner must be a dict, got {_brief(lmeta)}")
    spec = lmeta.get("opt_func")
    if (not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in _OPT_FUNCS
            or not isinstance(spec.get("kwargs", {}), dict)
            or not all(isinstance(v, (int, float, bool)) for v in spec.get("kwargs", {}).values())):
        raise bad(f"opt_func must be one of {sorted(_OPT_FUNCS)} with numeric keyword arguments, got {_brief(spec)}")
    opt_func = _OPT_FUNCS[spec["name"]]
    if spec.get("kwargs"):
        opt_func = partial(opt_func, **spec["kwargs"])
    metrics = lmeta.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m in _KNOWN_METRICS for m in metrics):
        raise bad(f"metrics must be a list of {sorted(_KNOWN_METRICS)}, got {_brief(metrics)}")
    lr, wd, moms = lmeta.get("lr"), lmeta.get("wd"), lmeta.get("moms")
    if not is_number(lr):
        raise bad(f"the learner's lr must be a number, got {_brief(lr)}")
    if wd is not None and not is_number(wd):
        raise bad(f"the learner's wd must be a number or null, got {_brief(wd)}")
    if not isinstance(moms, list) or len(moms) != 3 or not all(is_number(m) for m in moms):
        raise bad(f"the learner's moms must be a list of 3 numbers, got {_brief(moms)}")
    model_dir = lmeta.get("model_dir", "models")
    if not isinstance(model_dir, str):
        raise bad(f"the learner's model_dir must be a string, got {_brief(model_dir)}")
    if lmeta.get("loss_func", "MSELossFlat") != "MSELossFlat":
        raise bad(f"unknown loss_func {_brief(lmeta.get('loss_func'))} (collabc trains with MSELossFlat)")
    if not isinstance(lmeta.get("wd_bn_bias", False), bool):
        raise bad(f"the learner's wd_bn_bias must be true or false, got {_brief(lmeta.get('wd_bn_bias'))}")
    train_mode, n_blocks = lmeta.get("train_mode", "exact"), lmeta.get("n_blocks", 8)
    if train_mode not in ("exact", "sparse"):
        raise bad(f"the learner's train_mode must be 'exact' or 'sparse', got {_brief(train_mode)}")
    if not is_int(n_blocks) or not 1 <= n_blocks <= 4096:
        raise bad(f"the learner's n_blocks must be an integer in [1, 4096], got {_brief(n_blocks)}")
    kwargs = dict(loss_func=MSELossFlat(), opt_func=opt_func, lr=lr, metrics=[_KNOWN_METRICS[m] for m in metrics],
                  wd=wd, moms=tuple(moms), model_dir=model_dir, train_mode=train_mode, n_blocks=n_blocks)
    if lmeta.get("wd_bn_bias"):
        kwargs["wd_bn_bias"] = True
    noise_var = header.get("noise_var")
    if noise_var is not None and not (is_number(noise_var) and math.isfinite(noise_var) and noise_var > 0):
        raise bad(f"noise_var must be a positive number or null, got {_brief(noise_var)}")
    return cols, y_dtype, kwargs


def _user_model(cfg, model, fname):
    """The model to load an export into: the one the caller built (`load_learner(..., model=)`),
    which must be of the class the file names; a file of a user-written model needs one."""
    name = cfg.get("class") if isinstance(cfg, dict) else None
    if model is None:
        if isinstance(cfg, dict) and cfg.get("user_model"):
            raise CollabcFileError(f"{fname}: holds the weights of a model you wrote ({_brief(name)}), not its "
                                   f"code: build the model and pass it, load_learner(path, model={name}(...))")
        return None
    if not isinstance(model, Module):
        raise TypeError(f"model must be a collabc Module (the model to load the weights into), got "
                        f"{type(model).__name__}")
    if type(model).__name__ != name:
        raise CollabcFileError(f"{fname}: holds a {_brief(name)} but the model passed is a {type(model).__name__}")
    return model


def read_export(fname, model=None):
    """The parts of an exported learner, every one checked before the model is built:
    `(dls, model, learner_kwargs, extras)` where `dls` holds the classes, the column names and
    (if exported) the training pairs but no rows, and `extras` the stored `noise_var`. `model`
    (one the caller built, of the class the file names) receives the weights instead of a
    model rebuilt from the file's configuration."""
    header, arrays = read_archive(fname, kind="learner")
    (u, i, r), y_dtype, kwargs = _learner_meta(header, fname)
    enc = header.get("label_encoding", {})
    if not isinstance(enc, dict) or any(k not in ("user", "item") or v not in _LABEL_ENCODINGS
                                        for k, v in enc.items()):
        raise CollabcFileError(f"{fname}: its label_encoding must map 'user'/'item' to one of "
                               f"{list(_LABEL_ENCODINGS)}, got {_brief(enc)}")
    classes = {u: _classes_from(arrays.get("classes/user"), enc.get("user"), "user", fname),
               i: _classes_from(arrays.get("classes/item"), enc.get("item"), "item", fname)}
    seen = None
    if "seen/indptr" in arrays or "seen/indices" in arrays:
        seen = arrays.get("seen/indptr"), arrays.get("seen/indices")
        if any(a is None or a.ndim != 1 or a.dtype.kind not in "iu" for a in seen):
            raise CollabcFileError(f"{fname}: its seen-items structure must be two 1-d integer arrays "
                                   f"(seen/indptr and seen/indices)")
    given = _user_model(header.get("model"), model, fname)
    model = given if given is not None else _build_model(header.get("model"), classes, arrays, fname)
    model.load_state_dict(_model_state(model, arrays, fname))
    for what, col, rows in (("user", u, getattr(model, "n_users", None)), ("item", i, getattr(model, "n_items", None))):
        if rows is not None and len(classes[col]) != rows:   # every index the model can return must have a label
            raise CollabcFileError(f"{fname}: it holds {len(classes[col])} {what} classes ('#na#' included) "
                                   f"but its model has {rows} {what} rows; the file is inconsistent")
    empty = lambda: DataLoader(np.zeros((0, 2), np.int32), np.zeros(0, np.float32), bs=64)  # noqa: E731
    dls = DataLoaders(empty(), empty(), classes, u, i, r)
    dls._y_dtype = y_dtype
    if seen is not None:
        indptr, indices = seen
        n_users, n_items = len(classes[u]), len(classes[i])
        if (indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices)
                or np.any(np.diff(indptr) < 0) or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))):
            raise CollabcFileError(f"{fname}: its seen-items structure does not fit the model")
        # each user's items strictly increasing (sorted, unique), as the ranking kernel needs
        step = np.diff(indices.astype(np.int64))
        starts = np.zeros(len(indices), bool)
        starts[indptr[1:-1][indptr[1:-1] < len(indices)]] = True
        if len(step) and np.any((step <= 0) & ~starts[1:]):
            raise CollabcFileError(f"{fname}: its seen-items structure is not sorted (each user's items must "
                                   f"be strictly increasing)")
        dls.train.set_seen(indptr.astype(np.int64), indices.astype(np.int32))
    return dls, model, kwargs, {"noise_var": header.get("noise_var")}
