"""Saving and loading without pickle: `learn.save`/`learn.load` (checkpoints) and
`learn.export`/`load_learner` (a learner ready for inference).

The file is a ZIP archive (stored, not compressed) that `np.load` can open too:

* `collabc.json` - UTF-8 JSON: `format` ("collabc"), `format_version` (1), `kind` ("checkpoint"
  or "learner"), `collabc_version`, `arrays` ({name: {"dtype", "shape"}}) and the metadata of that
  kind (model configuration from `model.get_config()`, classes' column names, optimizer kind and
  hyperparameters, ...);
* one `<name>.npy` member per array (`model/u_weight.weight`, `opt/0`, `classes/user`, ...),
  written and read with `allow_pickle=False`, so loading never runs code. Numbers and unicode
  strings only.

Loading checks the ZIP CRC of every member, the JSON, the format name and version, that every
listed array exists with its dtype and shape, and that they fit the model; any failure raises
`CollabcFileError` (a `ValueError`) naming the file and the problem.
"""
import json
import os
import warnings
import zipfile
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from . import _core
from .data import CategoryMap, DataLoader, DataLoaders
from .metrics import MSELossFlat, mae, mse, rmse
from .optim import SGD, Adam

__all__ = ["CollabcFileError", "write_archive", "read_archive", "save_checkpoint",
           "load_checkpoint", "export_learner", "load_learner", "model_classes", "FORMAT_VERSION"]

FORMAT = "collabc"
FORMAT_VERSION = 1
_META = "collabc.json"
_DTYPE_KINDS = "biufU"
_KNOWN_METRICS = {"mse": mse, "rmse": rmse, "_rmse": rmse, "mae": mae}
_OPT_FUNCS = {"Adam": Adam, "SGD": SGD}


class CollabcFileError(ValueError):
    "A file that is not a readable collabc archive: truncated, corrupted, another version or kind."


def model_classes():
    """Model classes that `load_learner`/`learn.load` can rebuild, by class name. Each needs
    `get_config()` and `from_config()`; adding a class is adding its name here."""
    from . import models
    names = ("EmbeddingDotBias", "DotProduct", "DotProductBias", "EmbeddingNN", "CollabNN")
    return {n: getattr(models, n) for n in names if hasattr(models, n)}


# ---------------------------------------------------------------------------------------------
# the archive

def write_archive(path, kind, meta, arrays):
    """Write `arrays` ({name: ndarray of numbers or unicode}) and the JSON-able `meta` to `path`
    as a collabc archive of `kind`; written to a temporary file first, then renamed."""
    path = Path(path)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
              "collabc_version": _core.__version__, **meta, "arrays": {}}
    clean = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.kind not in _DTYPE_KINDS:
            raise TypeError(f"array {name!r} has dtype {a.dtype}; only numbers and unicode strings can be saved")
        clean[name] = a
        header["arrays"][name] = {"dtype": a.dtype.str, "shape": list(a.shape)}
    text = json.dumps(header, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr(_META, text)
            for name, a in clean.items():
                with z.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, a, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_archive(path, kind=None):
    """`(header, arrays)` of a collabc archive, after checking it completely (see the module
    docstring). `kind` ("learner" or "checkpoint") must match when given."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a collabc file")

    def bad(why):
        return CollabcFileError(f"{path}: {why}")

    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
            raise bad("this looks like a pickle (a fastai .pkl/.pth?); collabc never loads pickles") from None
        if head == b"PK\x03\x04":
            raise bad("the file is truncated or corrupted (its ZIP directory is unreadable)") from None
        raise bad("not a collabc file (not a ZIP archive), or truncated") from None
    with z:
        try:
            broken = z.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise bad(f"the file is corrupted or truncated ({e})") from None
        if broken is not None:
            raise bad(f"the file is corrupted: member {broken!r} fails its CRC check")
        try:
            header = json.loads(z.read(_META).decode("utf-8"))
        except KeyError:
            raise bad(f"not a collabc file: it has no {_META}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad(f"its metadata is not valid JSON ({e})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise bad(f"not a collabc file (format {header.get('format') if isinstance(header, dict) else None!r})")
        version = header.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise bad(f"format_version must be an integer, got {version!r}")
        if version > FORMAT_VERSION or version < 1:
            raise bad(f"unknown format version {version} (written by collabc "
                      f"{header.get('collabc_version', '?')}); this collabc {_core.__version__} reads "
                      f"version {FORMAT_VERSION}")
        if kind is not None and header.get("kind") != kind:
            hint = {"checkpoint": "learn.save() writes checkpoints: read them with learn.load()",
                    "learner": "learn.export() writes learners: read them with load_learner()"}
            raise bad(f"holds a {header.get('kind')!r}, not a {kind!r}; "
                      f"{hint.get(header.get('kind'), '')}")
        listing = header.get("arrays")
        if not isinstance(listing, dict):
            raise bad("its metadata has no array listing")
        arrays = {}
        for name, spec in listing.items():
            try:
                with z.open(name + ".npy") as f:
                    a = np.lib.format.read_array(f, allow_pickle=False)
            except KeyError:
                raise bad(f"array {name!r} is listed but missing") from None
            except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as e:
                raise bad(f"array {name!r} is unreadable ({e})") from None
            if (not isinstance(spec, dict) or a.dtype.str != spec.get("dtype")
                    or list(a.shape) != spec.get("shape")):
                raise bad(f"array {name!r} is {a.dtype.str} {list(a.shape)} but the metadata says {spec!r}")
            if a.dtype.kind not in _DTYPE_KINDS:
                raise bad(f"array {name!r} has the unsupported dtype {a.dtype}")
            arrays[name] = a
    return header, arrays


# ---------------------------------------------------------------------------------------------
# pieces

def _model_config(model):
    if not hasattr(model, "get_config"):
        raise TypeError(f"{type(model).__name__} has no get_config(): it cannot be saved in the collabc "
                        f"format (see collabc.persist.model_classes)")
    return model.get_config()


def _build_model(cfg, classes, path):
    if not isinstance(cfg, dict):
        raise CollabcFileError(f"{path}: its model configuration is not a dict")
    cls = model_classes().get(cfg.get("class"))
    if cls is None:
        raise CollabcFileError(f"{path}: unknown model class {cfg.get('class')!r}; known: {sorted(model_classes())}")
    try:
        return cls.from_config(cfg, classes)
    except (TypeError, ValueError, KeyError) as e:
        raise CollabcFileError(f"{path}: cannot rebuild {cfg.get('class')} from its configuration ({e})") from None


def _load_model_arrays(model, arrays, path, strict=True):
    sd = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    own = dict(model.state_dict())
    missing = [n for n in own if n not in sd]
    extra = [n for n in sd if n not in own]
    if strict and (missing or extra):
        raise CollabcFileError(f"{path}: its tensors do not match the model: missing {missing}, unexpected {extra}")
    for name, a in sd.items():
        if name in own and a.shape != own[name].shape:
            raise CollabcFileError(f"{path}: tensor {name!r} has shape {a.shape} but the model's is "
                                   f"{own[name].shape} (a different number of users, items or factors?)")
        if name in own and not np.all(np.isfinite(a)):
            raise CollabcFileError(f"{path}: tensor {name!r} holds NaN or inf")
    own.update({n: a for n, a in sd.items() if n in own})
    model.load_state_dict(own)


def _labels_array(cmap, what):
    items = list(cmap)[1:]
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items):
        return np.array(items, dtype=np.int64)
    if all(isinstance(v, str) for v in items):
        return np.array(items, dtype=str) if items else np.zeros(0, "<U1")
    if all(isinstance(v, (float, np.floating)) for v in items):
        return np.array(items, dtype=np.float64)
    kinds = sorted({type(v).__name__ for v in items})
    raise TypeError(f"the {what} labels are of types {kinds}; only all-integer, all-string or all-float "
                    f"labels can be exported")


def _opt_func_spec(f):
    kwargs = {}
    if isinstance(f, partial):
        if f.args:
            raise TypeError(f"opt_func {f!r} cannot be exported: pass its arguments as keywords")
        kwargs, f = dict(f.keywords), f.func
    name = getattr(f, "__name__", None)
    if name not in _OPT_FUNCS or _OPT_FUNCS[name] is not f:
        raise TypeError(f"opt_func {f!r} cannot be exported: only collabc's Adam and SGD (or partials of them)")
    if not all(isinstance(v, (int, float, bool)) for v in kwargs.values()):
        raise TypeError(f"opt_func {name} has non-numeric keyword arguments {kwargs!r}; they cannot be exported")
    return {"name": name, "kwargs": kwargs}


# ---------------------------------------------------------------------------------------------
# checkpoints: learn.save / learn.load

def save_checkpoint(learn, file, with_opt=True):
    """fastai's `learn.save`: the model's tensors (and, with `with_opt`, the optimizer's state,
    hyperparameters and step count) to `file`. Returns the path."""
    meta = {"model": _model_config(learn.model), "has_opt": bool(with_opt and learn.opt is not None)}
    arrays = {f"model/{n}": v for n, v in learn.model.state_dict().items()}
    if meta["has_opt"]:
        sd = learn.opt.state_dict()
        meta["opt"] = {"kind": sd["kind"], "hypers": sd["hypers"], "step": int(sd["step"]),
                       "n_buffers": len(sd["buffers"])}
        arrays.update({f"opt/{i}": b for i, b in enumerate(sd["buffers"])})
    return write_archive(file, "checkpoint", meta, arrays)


def load_checkpoint(learn, file, with_opt=True, strict=True):
    """fastai's `learn.load`: tensors from `file` into `learn.model` (names and shapes must
    match; `strict=False` loads the matching ones), and the optimizer state if `with_opt` and the
    file has one (else a warning, as fastai). Returns the learner."""
    header, arrays = read_archive(file, kind="checkpoint")
    cfg = header.get("model", {})
    if isinstance(cfg, dict) and cfg.get("class") != type(learn.model).__name__:
        raise CollabcFileError(f"{file}: holds a {cfg.get('class')} but the learner's model is a "
                               f"{type(learn.model).__name__}")
    _load_model_arrays(learn.model, arrays, file, strict=strict)
    if with_opt:
        if not header.get("has_opt"):
            warnings.warn("Saved file doesn't contain an optimizer state.")
        else:
            o = header.get("opt", {})
            bufs = [arrays.get(f"opt/{i}") for i in range(int(o.get("n_buffers", 0)))]
            if any(b is None for b in bufs):
                raise CollabcFileError(f"{file}: optimizer buffers are missing")
            if learn.opt is None:
                learn.create_opt()
            try:
                learn.opt.load_state_dict({"kind": o.get("kind"), "hypers": o.get("hypers", {}),
                                           "step": o.get("step", 0), "buffers": bufs})
            except (ValueError, TypeError) as e:
                raise CollabcFileError(f"{file}: the optimizer state does not fit ({e})") from None
    return learn


# ---------------------------------------------------------------------------------------------
# learners: learn.export / load_learner

def export_learner(learn, file, with_seen=True):
    """fastai's `learn.export`: the model (configuration and tensors), the classes, the column
    names, the loss, metrics, opt_func and hyperparameters - no training data and no optimizer
    state - to `file`. With `with_seen` it also keeps the (user, item) pairs of the training set
    (as CSR indices) so the loaded learner can exclude seen items from recommendations, and the
    training MSE used by fold-in. Returns the path."""
    from .inference import _noise_var, _seen
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
                        "loss_func": "MSELossFlat", "wd_bn_bias": bool(getattr(learn, "wd_bn_bias", False))},
            "with_seen": bool(with_seen)}
    for key in ("user", "item", "rating"):
        if not isinstance(meta["names"][key], (str, int)):
            raise TypeError(f"the {key} column name {meta['names'][key]!r} must be a string to export")
    arrays = {f"model/{n}": v for n, v in learn.model.state_dict().items()}
    arrays["classes/user"] = _labels_array(d.classes[d.user_name], "user")
    arrays["classes/item"] = _labels_array(d.classes[d.item_name], "item")
    if with_seen:
        indptr, indices = _seen(learn)
        arrays["seen/indptr"], arrays["seen/indices"] = indptr, indices
        meta["noise_var"] = _noise_var(learn)
    return write_archive(file, "learner", meta, arrays)


def _classes_from(arr):
    return CategoryMap._from_items(arr.tolist(), add_na=True, check=True)


def load_learner(fname, cpu=True):
    """fastai's `load_learner`: rebuild an exported `Learner` from `fname` (never unpickles).
    Its `dls` holds the classes and column names and no rows (so `dls.test_dl(df)` works); the
    model gives identical predictions to the exported one. `cpu` is accepted for fastai
    compatibility (collabc only runs on the CPU)."""
    from .learner import Learner
    header, arrays = read_archive(fname, kind="learner")
    try:
        names = header["names"]
        u, i, r = names["user"], names["item"], names["rating"]
        lmeta = header["learner"]
        cu, ci = _classes_from(arrays["classes/user"]), _classes_from(arrays["classes/item"])
    except (KeyError, TypeError, ValueError) as e:
        raise CollabcFileError(f"{fname}: incomplete learner metadata ({e!r})") from None
    classes = {u: cu, i: ci}
    model = _build_model(header.get("model"), classes, fname)
    _load_model_arrays(model, arrays, fname)
    empty = lambda: DataLoader(np.zeros((0, 2), np.int32), np.zeros(0, np.float32), bs=64)  # noqa: E731
    dls = DataLoaders(empty(), empty(), classes, u, i, r)
    try:
        dls._y_dtype = np.dtype(header.get("y_dtype", "<f4"))
        spec = lmeta["opt_func"]
        opt_func = _OPT_FUNCS[spec["name"]]
        if spec.get("kwargs"):
            opt_func = partial(opt_func, **spec["kwargs"])
        metrics = [_KNOWN_METRICS[m] for m in lmeta.get("metrics", [])]
        kwargs = dict(loss_func=MSELossFlat(), opt_func=opt_func, lr=lmeta["lr"], metrics=metrics,
                      wd=lmeta.get("wd"), moms=tuple(lmeta["moms"]), model_dir=lmeta.get("model_dir", "models"))
        if lmeta.get("wd_bn_bias"):
            kwargs["wd_bn_bias"] = True
    except (KeyError, TypeError, ValueError) as e:
        raise CollabcFileError(f"{fname}: incomplete learner metadata ({e!r})") from None
    learn = Learner(dls, model, path=Path(fname).parent, **kwargs)
    if "seen/indptr" in arrays:
        indptr, indices = arrays["seen/indptr"], arrays["seen/indices"]
        if (indptr.shape != (model.n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices)
                or np.any(np.diff(indptr) < 0) or (len(indices) and (indices.min() < 0 or indices.max() >= model.n_items))):
            raise CollabcFileError(f"{fname}: its seen-items structure does not fit the model")
        learn._stored_seen = (indptr.astype(np.int64), indices.astype(np.int32))
        learn._stored_noise_var = header.get("noise_var")
    return learn
