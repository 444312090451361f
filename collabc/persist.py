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

Loading treats the file as hostile until checked, and never allocates memory out of proportion
to the file's size:

* the ZIP: every member must be stored uncompressed and unencrypted (the writer only stores,
  so a deflated member - a possible decompression bomb - is refused before it is read), its
  local header must agree with the central directory, the members' declared sizes must fit in
  the file, and every member must pass its CRC check;
* the metadata: at most 1 MiB, UTF-8, valid JSON (no NaN/Infinity, integers of at most
  Python's 4300 digits, nesting within the interpreter's recursion limit), the format name and
  version, and the type of every field that is read (`names.user` a string, `learner.lr` a
  number, ...);
* each array: its `.npy` header is parsed on its own first (version 1.0/2.0, a number or
  unicode dtype, a non-negative shape) and the byte count it declares must equal the data the
  member holds before anything is allocated; dtype and shape must equal the listing;
* the model: every size in its configuration (users, items, factors, embedding and layer
  widths) is checked against the shapes of the stored tensors *before* the model is built, so
  a configuration claiming a huge model allocates nothing.

Any failure raises `CollabcFileError` (a `ValueError`) naming the file and the problem.
"""
import json
import math
import os
import reprlib
import struct
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
_MAX_META_BYTES = 2**20  # the metadata member: real ones are a few KB; parsed JSON can take ~20x its size
_NPY_VERSIONS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
# ZIP general-purpose flag bits zipfile cannot read (or that the writer never sets):
# encrypted (0), compressed patched data (5), strong encryption (6)
_ZIP_UNSUPPORTED_FLAGS = 0x1 | 0x20 | 0x40
# what zipfile (and the numbers it unpacks from a damaged file) can raise while reading one
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               NotImplementedError, RuntimeError, struct.error, OverflowError)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 6, 6


def _brief(v):
    "A repr of a value read from a file, bounded in length (for error messages)."
    return _REPR.repr(v)


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


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed (the writer never writes NaN or infinities)")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_zip_members(z, path, size, bad):
    """Refuse what the writer never produces, from the central directory and each member's local
    header, before any member is read: compressed or encrypted members, local headers that
    disagree with the directory, and declared sizes that do not fit in the file."""
    infos = z.infolist()
    total = 0
    for info in infos:
        name = _brief(info.filename)
        if info.compress_type != zipfile.ZIP_STORED:
            raise bad(f"member {name} is compressed (method {info.compress_type}); collabc files store "
                      f"their members uncompressed, so this file was not written by collabc or is corrupted")
        if info.flag_bits & _ZIP_UNSUPPORTED_FLAGS:
            raise bad(f"member {name} is encrypted or uses an unsupported ZIP feature (flags {info.flag_bits:#x})")
        if info.file_size != info.compress_size:
            raise bad(f"member {name} is corrupted: a stored member of {info.compress_size} bytes "
                      f"declares {info.file_size} bytes of content")
        total += info.file_size
        if not 0 <= info.header_offset <= size - 30:
            raise bad(f"member {name} is corrupted or truncated: its header offset {info.header_offset} "
                      f"is outside the file ({size} bytes)")
    if total > size:
        raise bad(f"the file is corrupted: its members declare {total} bytes in all, more than the file's "
                  f"{size} bytes")
    with open(path, "rb") as f:
        for info in infos:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise bad(f"the file is corrupted or truncated: member {_brief(info.filename)} has no local header")
            flags, method = struct.unpack("<HH", local[6:10])
            if method != zipfile.ZIP_STORED or flags & _ZIP_UNSUPPORTED_FLAGS:
                raise bad(f"the file is corrupted: member {_brief(info.filename)}'s local header says compression "
                          f"method {method}, flags {flags:#x} (collabc files store members uncompressed)")


def _read_metadata(z, bad):
    "The JSON metadata member, parsed after bounding its size; its format name and version checked."
    try:
        info = z.getinfo(_META)
    except KeyError:
        raise bad(f"not a collabc file: it has no {_META}") from None
    if info.file_size > _MAX_META_BYTES:
        raise bad(f"its metadata ({_META}) is {info.file_size} bytes, more than the {_MAX_META_BYTES} a "
                  f"collabc file can have")
    try:
        raw = z.read(info)
    except _ZIP_ERRORS as e:
        raise bad(f"the file is corrupted or truncated ({e})") from None
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise bad("its metadata is not valid collabc metadata (JSON nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise bad(f"its metadata is not valid JSON ({_brief(str(e))})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise bad(f"not a collabc file (format {_brief(found)})")
    version = header.get("format_version")
    if not _is_int(version):
        raise bad(f"format_version must be an integer, got {_brief(version)}")
    if version > FORMAT_VERSION or version < 1:
        raise bad(f"unknown format version {_brief(version)} (written by collabc "
                  f"{_brief(header.get('collabc_version', '?'))}); this collabc {_core.__version__} reads "
                  f"version {FORMAT_VERSION}")
    return header


def _read_npy(z, name, spec, bad):
    """The array stored as member `name`.npy. Its header is read first and checked - a number or
    unicode dtype, a shape equal to the listing's `spec`, and a byte count equal to the data the
    member holds - so no header claim can make this allocate more than the member's size."""
    try:
        info = z.getinfo(name + ".npy")
    except KeyError:
        raise bad(f"array {_brief(name)} is listed but missing") from None

    def unreadable(why):
        return bad(f"array {_brief(name)} is unreadable ({why})")

    try:
        with z.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version not in _NPY_VERSIONS:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran_order, dtype = _NPY_VERSIONS[version](f)
            except Exception as e:  # noqa: BLE001  numpy's header parser on hostile bytes: ValueError,
                # EOFError, tokenize.TokenError, SyntaxError, ...; none of it may escape unwrapped
                raise unreadable(f"bad .npy header: {type(e).__name__}: {_brief(str(e))}") from None
            if dtype.hasobject or dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype:
                raise unreadable(f"dtype {_brief(str(dtype))} is not allowed: only numbers and unicode strings, "
                                 f"never pickled objects")
            if not all(_is_int(d) and d >= 0 for d in shape):
                raise unreadable(f"bad .npy shape {_brief(shape)}")
            if (not isinstance(spec, dict) or dtype.str != spec.get("dtype")
                    or list(shape) != spec.get("shape")):
                raise bad(f"array {_brief(name)} is {dtype.str} {_brief(list(shape))} but the metadata says "
                          f"{_brief(spec)}")
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            held = info.file_size - f.tell()
            if nbytes != held:
                raise unreadable(f"its header declares {nbytes} bytes of data but the member holds {held}")
            a = np.empty(count, dtype)
            if nbytes and f.readinto(a.view(np.uint8)) != nbytes:
                raise unreadable("the member ends early")
    except CollabcFileError:
        raise
    except _ZIP_ERRORS as e:
        raise unreadable(f"{type(e).__name__}: {_brief(str(e))}") from None
    return a.reshape(shape[::-1]).T if fortran_order else a.reshape(shape)


def read_archive(path, kind=None):
    """`(header, arrays)` of a collabc archive, after checking it completely (see the module
    docstring). `kind` ("learner" or "checkpoint") must match when given. Raises
    `CollabcFileError` naming `path` for anything that is not a well-formed collabc archive,
    whatever its bytes; `FileNotFoundError`/`IsADirectoryError` when there is no file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a collabc file")

    def bad(why):
        return CollabcFileError(f"{path}: {why}")

    size = path.stat().st_size
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
    except _ZIP_ERRORS as e:  # e.g. NotImplementedError for a corrupted "version needed" byte
        raise bad(f"the file is corrupted or truncated ({type(e).__name__}: {_brief(str(e))})") from None
    with z:
        _check_zip_members(z, path, size, bad)
        for info in z.infolist():  # every member's CRC, read in bounded chunks
            try:
                with z.open(info) as f:
                    while f.read(1 << 20):
                        pass
            except _ZIP_ERRORS as e:
                what = ("fails its CRC check" if isinstance(e, zipfile.BadZipFile) and "CRC" in str(e)
                        else f"is unreadable ({type(e).__name__}: {_brief(str(e))})")
                raise bad(f"the file is corrupted or truncated: member {_brief(info.filename)} {what}") from None
        header = _read_metadata(z, bad)
        if kind is not None and header.get("kind") != kind:
            hint = {"checkpoint": "learn.save() writes checkpoints: read them with learn.load()",
                    "learner": "learn.export() writes learners: read them with load_learner()"}
            found = header.get("kind")
            raise bad(f"holds a {_brief(found)}, not a {kind!r}; "
                      f"{hint.get(found, '') if isinstance(found, str) else ''}")
        listing = header.get("arrays")
        if not isinstance(listing, dict):
            raise bad("its metadata has no array listing")
        arrays = {name: _read_npy(z, name, spec, bad) for name, spec in listing.items()}
    return header, arrays


# ---------------------------------------------------------------------------------------------
# pieces

def _model_config(model):
    if not hasattr(model, "get_config"):
        raise TypeError(f"{type(model).__name__} has no get_config(): it cannot be saved in the collabc "
                        f"format (see collabc.persist.model_classes)")
    return model.get_config()


class _Layout(Exception):
    "Raised in place of allocating by `_planned_tensors`' probe: the tensors a model would hold."
    def __init__(self, tensors):
        super().__init__("layout")
        self.tensors = tensors


def _planned_tensors(cls, args):
    """{state-dict name: shape} of the parameter tensors `cls(**args)` would allocate, found
    without allocating them: the constructor runs (validating its arguments as usual) on a
    subclass whose `Module._build` - the one step that allocates the parameter block - raises
    `_Layout` with the layout instead. Raises what the constructor raises for bad arguments."""
    from .seed import preserve_rng

    def _build(self, layout):
        raise _Layout({e[1]: tuple(int(d) for d in e[2]) for e in layout})

    probe = type(cls.__name__, (cls,), {"_build": _build, "__module__": cls.__module__})
    try:
        with preserve_rng():
            probe(**args)
    except _Layout as e:
        return e.tensors
    raise RuntimeError(f"collabc bug: {cls.__name__}() built its parameters without Module._build, so "
                       f"load_learner cannot check a file's sizes before allocating")


def _build_model(cfg, classes, arrays, path):
    """The model described by `cfg` (from `get_config()`), built only after every size in it
    (users, items, factors, embedding and layer widths) has been checked against the shapes of
    the stored `model/` tensors in `arrays`: those are bounded by the file's size, so a
    configuration claiming a huge model is refused before anything is allocated."""
    if not isinstance(cfg, dict):
        raise CollabcFileError(f"{path}: its model configuration is not a dict")
    name = cfg.get("class")
    cls = model_classes().get(name) if isinstance(name, str) else None
    if cls is None:
        raise CollabcFileError(f"{path}: unknown model class {_brief(name)}; known: {sorted(model_classes())}")
    args = cfg.get("args")
    if not isinstance(args, dict):
        raise CollabcFileError(f"{path}: the {name} configuration's args must be a dict, got {_brief(args)}")
    for key in ("user", "item"):
        if cfg.get(key) is not None and not isinstance(cfg[key], (str, int)):
            raise CollabcFileError(f"{path}: the {name} configuration's {key} column must be a string, "
                                   f"got {_brief(cfg[key])}")
    try:
        planned = _planned_tensors(cls, args)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CollabcFileError(f"{path}: cannot rebuild {name} from its configuration ({e})") from None
    stored = {k[len("model/"):]: a.shape for k, a in arrays.items() if k.startswith("model/")}
    missing = [n for n in planned if n not in stored]
    if missing:
        raise CollabcFileError(f"{path}: its {name} configuration needs tensors the file does not hold: "
                               f"{_brief(missing)}")
    for n, shape in planned.items():
        if stored[n] != shape:
            raise CollabcFileError(f"{path}: tensor {n!r} has shape {stored[n]} but the model configuration "
                                   f"says {shape} (its sizes do not match the stored tensors)")
    try:
        return cls.from_config(cfg, classes)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CollabcFileError(f"{path}: cannot rebuild {name} from its configuration ({e})") from None


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


def _opt_meta(header, arrays, file):
    "The checkpoint's optimizer metadata and buffers, type-checked: (meta, [buffer arrays])."
    o = header.get("opt", {})
    if not isinstance(o, dict):
        raise CollabcFileError(f"{file}: its optimizer metadata is not a dict")
    n = o.get("n_buffers", 0)
    if not _is_int(n) or not 0 <= n <= len(arrays):
        raise CollabcFileError(f"{file}: its optimizer metadata has a bad n_buffers {_brief(n)}")
    if not isinstance(o.get("kind"), str) or not isinstance(o.get("hypers", {}), dict) \
            or not _is_int(o.get("step", 0)) or o.get("step", 0) < 0:
        raise CollabcFileError(f"{file}: its optimizer metadata is malformed (kind {_brief(o.get('kind'))}, "
                               f"hypers {_brief(o.get('hypers'))}, step {_brief(o.get('step'))})")
    bufs = [arrays.get(f"opt/{i}") for i in range(n)]
    if any(b is None for b in bufs):
        raise CollabcFileError(f"{file}: optimizer buffers are missing")
    return o, bufs


def load_checkpoint(learn, file, with_opt=True, strict=True):
    """fastai's `learn.load`: tensors from `file` into `learn.model` (names and shapes must
    match; `strict=False` loads the matching ones), and the optimizer state if `with_opt` and the
    file has one (else a warning, as fastai). Returns the learner. The whole file, optimizer
    metadata included, is checked before the model is touched; a bad file raises
    `CollabcFileError`."""
    header, arrays = read_archive(file, kind="checkpoint")
    cfg = header.get("model", {})
    if isinstance(cfg, dict) and cfg.get("class") != type(learn.model).__name__:
        found = cfg.get("class")
        raise CollabcFileError(f"{file}: holds a {found if isinstance(found, str) else _brief(found)} but the "
                               f"learner's model is a {type(learn.model).__name__}")
    opt_state = _opt_meta(header, arrays, file) if with_opt and header.get("has_opt") else None
    _load_model_arrays(learn.model, arrays, file, strict=strict)
    if with_opt:
        if opt_state is None:
            warnings.warn("Saved file doesn't contain an optimizer state.")
        else:
            o, bufs = opt_state
            if learn.opt is None:
                learn.create_opt()
            try:
                learn.opt.load_state_dict({"kind": o.get("kind"), "hypers": o.get("hypers", {}),
                                           "step": o.get("step", 0), "buffers": bufs})
            except (ValueError, TypeError, OverflowError) as e:
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


def _classes_from(arr, what, fname):
    if arr is None:
        raise CollabcFileError(f"{fname}: the {what} classes (classes/{what}) are missing")
    if arr.ndim != 1 or arr.dtype.kind not in "iufU":
        raise CollabcFileError(f"{fname}: the {what} classes must be a 1-d array of integers, floats or "
                               f"strings, got {arr.dtype.str} {list(arr.shape)}")
    try:
        return CategoryMap._from_items(arr.tolist(), add_na=True, check=True)
    except (TypeError, ValueError) as e:
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
        if not isinstance(v, (str, int)):  # what export_learner accepts
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
    if not _is_number(lr):
        raise bad(f"the learner's lr must be a number, got {_brief(lr)}")
    if wd is not None and not _is_number(wd):
        raise bad(f"the learner's wd must be a number or null, got {_brief(wd)}")
    if not isinstance(moms, list) or len(moms) != 3 or not all(_is_number(m) for m in moms):
        raise bad(f"the learner's moms must be a list of 3 numbers, got {_brief(moms)}")
    model_dir = lmeta.get("model_dir", "models")
    if not isinstance(model_dir, str):
        raise bad(f"the learner's model_dir must be a string, got {_brief(model_dir)}")
    if lmeta.get("loss_func", "MSELossFlat") != "MSELossFlat":
        raise bad(f"unknown loss_func {_brief(lmeta.get('loss_func'))} (collabc trains with MSELossFlat)")
    if not isinstance(lmeta.get("wd_bn_bias", False), bool):
        raise bad(f"the learner's wd_bn_bias must be true or false, got {_brief(lmeta.get('wd_bn_bias'))}")
    kwargs = dict(loss_func=MSELossFlat(), opt_func=opt_func, lr=lr, metrics=[_KNOWN_METRICS[m] for m in metrics],
                  wd=wd, moms=tuple(moms), model_dir=model_dir)
    if lmeta.get("wd_bn_bias"):
        kwargs["wd_bn_bias"] = True
    noise_var = header.get("noise_var")
    if noise_var is not None and not (_is_number(noise_var) and math.isfinite(noise_var) and noise_var > 0):
        raise bad(f"noise_var must be a positive number or null, got {_brief(noise_var)}")
    return cols, y_dtype, kwargs


def load_learner(fname, cpu=True):
    """fastai's `load_learner`: rebuild an exported `Learner` from `fname` (never unpickles).
    Its `dls` holds the classes and column names and no rows (so `dls.test_dl(df)` works); the
    model gives identical predictions to the exported one. `cpu` is accepted for fastai
    compatibility (collabc only runs on the CPU). Everything in the file is checked (see the
    module docstring) before the model is built; a bad file raises `CollabcFileError`."""
    from .learner import Learner
    header, arrays = read_archive(fname, kind="learner")
    (u, i, r), y_dtype, kwargs = _learner_meta(header, fname)
    classes = {u: _classes_from(arrays.get("classes/user"), "user", fname),
               i: _classes_from(arrays.get("classes/item"), "item", fname)}
    seen = None
    if "seen/indptr" in arrays or "seen/indices" in arrays:
        seen = arrays.get("seen/indptr"), arrays.get("seen/indices")
        if any(a is None or a.ndim != 1 or a.dtype.kind not in "iu" for a in seen):
            raise CollabcFileError(f"{fname}: its seen-items structure must be two 1-d integer arrays "
                                   f"(seen/indptr and seen/indices)")
    model = _build_model(header.get("model"), classes, arrays, fname)
    _load_model_arrays(model, arrays, fname)
    empty = lambda: DataLoader(np.zeros((0, 2), np.int32), np.zeros(0, np.float32), bs=64)  # noqa: E731
    dls = DataLoaders(empty(), empty(), classes, u, i, r)
    dls._y_dtype = y_dtype
    try:
        learn = Learner(dls, model, path=Path(fname).parent, **kwargs)
        learn.opt_func(1, lr=learn.lr)  # the optimizer's stored keyword arguments, checked now, not at fit
    except (TypeError, ValueError, OverflowError) as e:
        raise CollabcFileError(f"{fname}: its learner settings are invalid ({e})") from None
    if seen is not None:
        indptr, indices = seen
        if (indptr.shape != (model.n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices)
                or np.any(np.diff(indptr) < 0) or (len(indices) and (indices.min() < 0 or indices.max() >= model.n_items))):
            raise CollabcFileError(f"{fname}: its seen-items structure does not fit the model")
        learn._stored_seen = (indptr.astype(np.int64), indices.astype(np.int32))
        learn._stored_noise_var = header.get("noise_var")
    return learn
