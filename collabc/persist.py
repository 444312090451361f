"""The collabc file format, without pickle: what `learn.save`/`learn.load` (checkpoints) and
`learn.export`/`load_learner` (a learner ready for inference) write and read. What goes into
each kind of file is `collabc.checkpoint`'s business; this module is the format only.

The file is a ZIP archive (stored, not compressed) that `np.load` can open too:

* `collabc.json` - UTF-8 JSON: `format` ("collabc"), `format_version` (3; 1 and 2 are still
  read; 3 added `label_encoding`, see `collabc.checkpoint`),
  `kind` ("checkpoint"
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

Writing is atomic and crash-safe, and never follows a link:

* the archive is written to a new temporary file in the target's folder, created exclusively
  (O_CREAT | O_EXCL | O_NOFOLLOW: never an existing file or a link planted at its name) under a
  name of its own (`.<name>.<host>-<pid>-<random>.collabc-tmp`), so writers of the same target
  at once never share one; it is flushed and fsync'ed, renamed over the target (rename replaces
  a link at the target by the new file, never writes through it to the link's target), and the
  folder is fsync'ed, so the target is at all times the old complete file or the new one;
* a writer that fails removes its temporary; one killed outright leaves it, and the next write
  in that folder removes every temporary of this naming whose writer (same host, by pid) is
  gone - never another program's files, nor a live writer's;
* nothing is written when the metadata holds a NaN or infinity (JSON cannot), and the error
  names the field.
"""
import hashlib
import json
import math
import os
import re
import reprlib
import secrets
import socket
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import _core

__all__ = ["CollabcFileError", "write_archive", "read_archive", "remove_stale_temporaries",
           "FORMAT_VERSION", "brief", "is_int", "is_number"]

FORMAT = "collabc"
FORMAT_VERSION = 3
_META = "collabc.json"
_DTYPE_KINDS = "biufU"
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


def brief(v):
    "A repr of a value read from a file, bounded in length (for error messages)."
    return _REPR.repr(v)


_brief = brief


class CollabcFileError(ValueError):
    "A file that is not a readable collabc archive: truncated, corrupted, another version or kind."


# ---------------------------------------------------------------------------------------------
# the archive

# temporaries: .<target name>.<host>-<pid>-<random>.collabc-tmp, in the target's folder
_TMP_SUFFIX = ".collabc-tmp"
_TMP_NAME = re.compile(r"\..+\.([0-9a-f]{8})-([0-9]+)-[0-9a-f]{16}" + re.escape(_TMP_SUFFIX), re.S)
_OPEN_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _host_tag():
    "8 hex digits naming this machine in temporaries' names (a pid means nothing elsewhere)."
    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _alive(pid):
    "Whether process `pid` of this machine may still be writing (when unsure: yes)."
    if pid == os.getpid() or os.name == "nt":   # Windows' os.kill(pid, 0) would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temporaries(folder):
    """Removes the temporaries of collabc's writers (this naming, this machine) in `folder`
    whose writer is gone (killed before it could rename or remove them); never another
    program's files, nor a live writer's. Returns the names removed."""
    host, removed = _host_tag(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_NAME.fullmatch(e.name)
        if not m or m.group(1) != host or _alive(int(m.group(2))):
            continue
        try:
            if e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(e.name)
        except OSError:   # gone already, or not ours to remove
            pass
    return removed


def _nonfinite(v, where=""):
    "The path and value of the first NaN or infinity in JSON-able `v`, or None."
    if isinstance(v, float) and not math.isfinite(v):
        return where or "the value", v
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, (list, tuple)) else ()
    for k, x in items:
        found = _nonfinite(x, f"{where}.{k}" if where else str(k))
        if found:
            return found
    return None


def _fsync_folder(folder):
    "Makes a rename in `folder` durable (where the system allows opening a folder)."
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_archive(path, kind, meta, arrays):
    """Write `arrays` ({name: ndarray of numbers or unicode}) and the JSON-able `meta` to `path`
    as a collabc archive of `kind`, atomically (see the module docstring: a private temporary
    in the same folder, fsync'ed, renamed over `path`, which is replaced even when it is a
    link, never written through). Everything is checked before anything is written."""
    path = Path(path)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
              "collabc_version": _core.__version__, **meta, "arrays": {}}
    clean = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        if not a.flags.c_contiguous:   # (np.ascontiguousarray would make a 0-d array 1-d)
            a = a.copy(order="C")
        if a.dtype.kind not in _DTYPE_KINDS:
            raise TypeError(f"array {name!r} has dtype {a.dtype}; only numbers and unicode strings can be saved")
        clean[name] = a
        header["arrays"][name] = {"dtype": a.dtype.str, "shape": list(a.shape)}
    bad = _nonfinite(meta)
    if bad:
        raise ValueError(f"cannot write {path}: {bad[0]} is {bad[1]}, not a finite number (a collabc file "
                         f"stores finite numbers only); nothing was written")
    text = json.dumps(header, allow_nan=False)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    tmp = folder / f".{path.name}.{_host_tag()}-{os.getpid()}-{secrets.token_hex(8)}{_TMP_SUFFIX}"
    fd = os.open(tmp, _OPEN_FLAGS, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                z.writestr(_META, text)
                for name, a in clean.items():
                    with z.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)
    return path


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed (the writer never writes NaN or infinities)")


def is_int(v):
    "A JSON integer (not a boolean)."
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    "A JSON number (not a boolean)."
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_is_int, _is_number = is_int, is_number


def _check_zip_members(z, fh, size, bad):
    """Refuse what the writer never produces, from the central directory and each member's local
    header, before any member is read: compressed or encrypted members, local headers that
    disagree with the directory, and declared sizes that do not fit in the file."""
    infos = z.infolist()
    names = set()
    for info in infos:   # zipfile reads the last of several members of one name: refuse them all
        if info.filename in names:
            raise bad(f"member {_brief(info.filename)} appears more than once; collabc files name each "
                      f"member once, so this file was not written by collabc or was tampered with")
        names.add(info.filename)
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
    for info in infos:   # through the one handle the archive was opened with (see read_archive)
        fh.seek(info.header_offset)
        local = fh.read(30)
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
    whatever its bytes; `FileNotFoundError`/`IsADirectoryError` when there is no file. The file
    is opened once and read through that handle only, so a writer replacing it meanwhile
    (atomically, as write_archive does) leaves this reading the old file whole."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a collabc file")

    def bad(why):
        return CollabcFileError(f"{path}: {why}")

    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    with fh:
        return _read_open_archive(fh, kind, bad)


def _read_open_archive(fh, kind, bad):
    size = os.fstat(fh.fileno()).st_size
    try:
        z = zipfile.ZipFile(fh)
    except zipfile.BadZipFile:
        fh.seek(0)
        head = fh.read(4)
        if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
            raise bad("this looks like a pickle (a fastai .pkl/.pth?); collabc never loads pickles") from None
        if head == b"PK\x03\x04":
            raise bad("the file is truncated or corrupted (its ZIP directory is unreadable)") from None
        raise bad("not a collabc file (not a ZIP archive), or truncated") from None
    except _ZIP_ERRORS as e:  # e.g. NotImplementedError for a corrupted "version needed" byte
        raise bad(f"the file is corrupted or truncated ({type(e).__name__}: {_brief(str(e))})") from None
    with z:
        _check_zip_members(z, fh, size, bad)
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


