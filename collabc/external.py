"""Download, verify and unpack the data sets collabc's lessons use (fastai's `untar_data(URLs.ML_100k)`).

Where `untar_data(url)` looks, in order (the first hit wins):

1. ``$COLLABC_DATA/<folder>`` -- when the environment variable ``COLLABC_DATA`` names a directory that holds the
   unpacked data set folder (e.g. ``ml-100k/``) with something in it. Used as is, read only; no network. CI and
   offline machines set this.
2. The cache: ``<root>/data/<folder>``, where ``<root>`` is the ``base=`` argument, else ``$COLLABC_HOME``, else
   ``~/.collabc``. If only the archive is there (``<root>/archive/<file>.zip``, e.g. copied by hand), it is verified
   and unpacked without a download.
3. A download over HTTPS into ``<root>/archive/`` with a progress bar on stderr. The archive is streamed into a
   temporary ``.part`` file, its size and checksums are checked against the registry, and only then is it renamed
   (atomically) to its final name; it is unpacked the same way (into a temporary folder that is renamed at the end),
   so an interrupted run never leaves a file or folder that looks complete. Zip members with absolute paths or
   ``..`` components are rejected (zip-slip).

Every downloadable URL is described in a registry (`dataset_info`, `register_dataset`) holding the archive's byte
size, its md5 and/or sha256, and the folder it unpacks to; an archive that does not match is deleted and
`ChecksumError` is raised. When the network is unreachable `DownloadError` (an `OSError`, raised without a chained
cause) says first what to do -- point ``COLLABC_DATA`` at an existing copy, or download the URL by hand and save it
where the cache looks for the archive -- then why the download failed. A failed download leaves nothing behind: no
``.part`` file, and none of the cache folders it had to create.
"""
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

__all__ = ['URLs', 'untar_data', 'download_data', 'DatasetInfo', 'register_dataset', 'unregister_dataset',
           'dataset_info', 'registered_urls', 'cache_root', 'DownloadError', 'ChecksumError', 'UnsafeArchiveError',
           'ENV_DATA', 'ENV_HOME']

ENV_DATA = 'COLLABC_DATA'  # directory holding already unpacked data set folders (read only, checked first)
ENV_HOME = 'COLLABC_HOME'  # cache root (default ~/.collabc); downloads go to <root>/archive, unpacked to <root>/data

_LOCAL_HOSTS = frozenset({'127.0.0.1', 'localhost', '::1'})
_CHUNK = 1 << 16
_TIMEOUT = 30.0  # seconds, per socket operation


class URLs:
    "Download addresses of the data sets collabc knows, named as in fastai (`URLs.ML_100k`)."
    GROUPLENS = 'https://files.grouplens.org/datasets/movielens/'
    ML_100k = f'{GROUPLENS}ml-100k.zip'
    ML_1M = f'{GROUPLENS}ml-1m.zip'                        # ratings.dat (UserID::MovieID::Rating::Timestamp)
    ML_10M = f'{GROUPLENS}ml-10m.zip'                      # unpacks to ml-10M100K/; ratings.dat, half stars
    ML_20M = f'{GROUPLENS}ml-20m.zip'                      # ratings.csv (userId,movieId,rating,timestamp)
    ML_25M = f'{GROUPLENS}ml-25m.zip'                      # ratings.csv
    ML_LATEST_SMALL = f'{GROUPLENS}ml-latest-small.zip'    # ratings.csv; a rolling release (see the registry)


def _check_url(url):
    "Refuse anything but https, except plain http to this machine (for tests)."
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == 'https' and parts.hostname:
        return parts
    if parts.scheme == 'http' and parts.hostname in _LOCAL_HOSTS:
        return parts
    raise ValueError(f"refusing {url!r}: only https:// URLs (or http:// to 127.0.0.1/localhost) are allowed")


@dataclass(frozen=True)
class DatasetInfo:
    "What is known about one archive: its URL, byte size, checksums, the folder it unpacks to and its file name."
    url: str
    size: Optional[int]
    md5: Optional[str]
    sha256: Optional[str]
    folder: str
    fname: str

    def __post_init__(self):
        _check_url(self.url)
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"size must be a non-negative int or None, got {self.size!r} for {self.url}")
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"{self.url}: give at least one checksum (md5 or sha256); unverified downloads are refused")
        for name, n in (('md5', 32), ('sha256', 64)):
            v = getattr(self, name)
            if v is not None:
                if not isinstance(v, str) or len(v) != n or any(c not in '0123456789abcdefABCDEF' for c in v):
                    raise ValueError(f"{self.url}: {name} must be {n} hex digits, got {v!r}")
                object.__setattr__(self, name, v.lower())
        for name in ('folder', 'fname'):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or v in ('.', '..') or '/' in v or '\\' in v:
                raise ValueError(f"{self.url}: {name} must be a plain file name, got {v!r}")


# The registry: URL -> DatasetInfo, one entry per archive.
# ml-100k.zip: size 4,924,029 bytes is in fastai/fastai `fastai/data/checks.txt` (whose md5 "39f6af2d..." is of the
# first 2**20 bytes only, see fastai's `_check_file`, so it is not used here). The whole-file md5 is the one
# GroupLens publishes in ml-100k.zip.md5 and that many projects check (e.g. a Keras MovieLens example, course
# READMEs); the sha256 is the one ISG-Siegen/OmniRec (src/omnirec/data_loaders/movielens_100k.py) and others check.
#
# The other MovieLens archives. Every size and digest below is of the whole file and was found in at least two
# independent places; none was computed here (no network), so they are cross-checked quotations:
# * sizes and sha256 of ml-1m, ml-20m, ml-25m, ml-latest-small (and ml-100k, which matches the entry above):
#   tensorflow/datasets `tensorflow_datasets/url_checksums/movielens.txt` (url, size, sha256).
# * md5: the `<name>.zip.md5` files GroupLens publishes next to each archive, as quoted by e.g.
#   numericalalgorithmsgroup/MLFirstSteps_Azure `ncf/verify_dataset.sh` (1m, 25m, "From: curl -O ...zip.md5") and
#   eli-osherovich/papers_with_code `datasets/movielens/dl_config.py` (1m, 10m, 20m, 25m).
#   No md5 for ml-latest-small was found, so that entry is checked by size and sha256 only.
# * sha256 cross-checks: ISG-Siegen/OmniRec `src/omnirec/data_loaders/movielens_small.py` (1m, 10m) and
#   `movielens_large.py` (20m, 25m, latest-small); Keras and TensorFlow MovieLens examples (1m,
#   `MOVIELENS_ZIP_HASH`); several other projects pin ml-latest-small's 696d65a3... (e.g. a Rust MovieLens
#   downloader, next to 25m's 8b21cfb7...).
# * ml-10m (not in TFDS): size 65,566,137 from an R edX-capstone script (`zip_file_size <- 65566137`) and notebooks
#   (`maybe_download('ml-10m.zip', 65566137)`); sha256 813c411c... from OmniRec and a project's download manifest
#   that also records that size and the GroupLens md5 ce571fd5....
# * sizes also match wget logs of the GroupLens server ("Length: 5917549", "Length: 198702078", "Length: 261978986",
#   "Length: 978202") found in several notebooks.
# ml-latest-small is GroupLens's *rolling* "latest" release (this is the 2018-09-26 snapshot: 100,836 ratings,
# 610 users, 9,742 movies); if GroupLens re-issues it, the download fails with ChecksumError instead of silently
# giving different data -- register_dataset() the new size/sha256 (or point COLLABC_DATA at a copy) to use it.
_REGISTRY = {
    URLs.ML_100k: DatasetInfo(URLs.ML_100k, size=4_924_029, md5='0e33842e24a9c977be4e0107933c0723',
                              sha256='50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229',
                              folder='ml-100k', fname='ml-100k.zip'),
    URLs.ML_1M: DatasetInfo(URLs.ML_1M, size=5_917_549, md5='c4d9eecfca2ab87c1945afe126590906',
                            sha256='a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20',
                            folder='ml-1m', fname='ml-1m.zip'),
    URLs.ML_10M: DatasetInfo(URLs.ML_10M, size=65_566_137, md5='ce571fd55effeba0271552578f2648bd',
                             sha256='813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862',
                             folder='ml-10M100K', fname='ml-10m.zip'),
    URLs.ML_20M: DatasetInfo(URLs.ML_20M, size=198_702_078, md5='cd245b17a1ae2cc31bb14903e1204af3',
                             sha256='96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3',
                             folder='ml-20m', fname='ml-20m.zip'),
    URLs.ML_25M: DatasetInfo(URLs.ML_25M, size=261_978_986, md5='6b51fb2759a8657d3bfcbfc42b592ada',
                             sha256='8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa',
                             folder='ml-25m', fname='ml-25m.zip'),
    URLs.ML_LATEST_SMALL: DatasetInfo(URLs.ML_LATEST_SMALL, size=978_202, md5=None,
                                      sha256='696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436',
                                      folder='ml-latest-small', fname='ml-latest-small.zip'),
}


class DownloadError(OSError):
    "The archive could not be fetched (no network, refused connection, HTTP error, interrupted transfer)."


class ChecksumError(DownloadError):
    "The archive's size or checksum differs from the registry; the file has been deleted."


class UnsafeArchiveError(ValueError):
    "The archive has a member that would be written outside its destination (absolute path or `..`)."


def _default_names(url):
    "File name and folder name derived from `url` (`.../ml-100k.zip` -> `ml-100k.zip`, `ml-100k`)."
    fname = PurePosixPath(urllib.parse.urlsplit(url).path).name
    if not fname:
        raise ValueError(f"cannot derive a file name from {url!r}; pass folder= and fname=")
    folder = fname
    for ext in ('.zip', '.tar.gz', '.tgz', '.tar'):
        if folder.lower().endswith(ext) and len(folder) > len(ext):
            folder = folder[:-len(ext)]
            break
    return fname, folder


def register_dataset(url, size=None, md5=None, sha256=None, folder=None, fname=None):
    """Add (or replace) the registry entry for `url` and return its `DatasetInfo`.

    `size` is the archive's length in bytes (None: not checked), `md5`/`sha256` its hex digests (at least one is
    required; every one given must match), `folder` the name of the directory the archive unpacks to and `fname`
    the archive's file name in the cache (both default to the URL's last path component, minus `.zip` for the
    folder). The URL must be https, or plain http to 127.0.0.1/localhost.
    """
    d_fname, d_folder = _default_names(url) if (folder is None or fname is None) else (None, None)
    info = DatasetInfo(url=url, size=size, md5=md5, sha256=sha256, folder=folder if folder is not None else d_folder,
                       fname=fname if fname is not None else d_fname)
    _REGISTRY[url] = info
    return info


def unregister_dataset(url):
    "Remove `url` from the registry (no error if it is not there)."
    _REGISTRY.pop(url, None)


def registered_urls():
    "The URLs in the registry, in insertion order."
    return list(_REGISTRY)


def dataset_info(url):
    "The registry entry for `url`; `ValueError` naming the url and the known ones if there is none."
    try:
        return _REGISTRY[url]
    except (KeyError, TypeError):
        known = '\n  '.join(_REGISTRY) or '(none)'
        raise ValueError(f"unknown data set URL {url!r}: no size/checksum registered for it. Known URLs:\n  {known}\n"
                         "Use register_dataset(url, size, md5=..., sha256=..., folder=...) or pass md5=/sha256= to "
                         "untar_data.") from None


def cache_root(base=None):
    "The cache root: `base` if given, else `$COLLABC_HOME`, else `~/.collabc` (not created)."
    if base is not None:
        return Path(base).expanduser()
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / '.collabc'


def _has_content(p):
    "True when `p` is a directory with at least one entry."
    try:
        with os.scandir(p) as it:
            return any(True for _ in it)
    except OSError:
        return False


def _env_folder(folder):
    "`$COLLABC_DATA/<folder>` if that is a non-empty directory, else None."
    env = os.environ.get(ENV_DATA)
    if not env:
        return None
    p = Path(env).expanduser() / folder
    return p if _has_content(p) else None


def _fmt_bytes(n):
    for unit in ('B', 'KB', 'MB', 'GB'):
        if n < 1000 or unit == 'GB':
            return f"{n:.0f} {unit}" if unit == 'B' else f"{n:.1f} {unit}"
        n /= 1000


class _Progress:
    "A plain-text progress bar on stderr (a redrawn line on a tty; one line at start and end otherwise)."

    def __init__(self, name, total, enabled=True, stream=None):
        self.name, self.total, self.enabled = name, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.last = 0.0
        self.done = 0
        self.started = False

    def _write(self, s):
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def start(self, url, dest):
        self.started = True
        if not self.enabled:
            return
        size = f" ({_fmt_bytes(self.total)})" if self.total else ''
        if self.tty:
            self._write(f"Downloading {url}{size}\n")
        else:
            self._write(f"Downloading {url}{size} to {dest} ...\n")

    def update(self, done):
        self.done = done
        if not (self.enabled and self.tty):
            return
        now = time.monotonic()
        if now - self.last < 0.1 and done != self.total:
            return
        self.last = now
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = '#' * int(30 * frac)
            line = f"\r{self.name}: [{bar:<30}] {100 * frac:5.1f}% {_fmt_bytes(done)}/{_fmt_bytes(self.total)}"
        else:
            line = f"\r{self.name}: {_fmt_bytes(done)}"
        self._write(line)

    def finish(self, ok=True):
        if not (self.enabled and self.started):
            return
        if self.tty:
            self.update(self.done)
            self._write('\n')
        if ok:
            self._write(f"Downloaded {self.name}: {self.done} bytes\n")


def _offline_message(url, info, dest, archive_path, reason):
    "What to do first (COLLABC_DATA, or the archive saved by hand), then why the download failed."
    env = os.environ.get(ENV_DATA)
    env_note = f"now {env!r}, which has no non-empty '{info.folder}/'" if env else "it is not set"
    return (f"Set {ENV_DATA} to a folder that contains '{info.folder}/' ({env_note}), or download {url} by "
            f"hand and save it as {archive_path} (collabc verifies it and unpacks it to {dest}).\n"
            f"The download failed: {reason}.")


def _open_url(url, timeout):
    "urlopen, with proxies bypassed for 127.0.0.1/localhost."
    req = urllib.request.Request(url, headers={'User-Agent': 'collabc'})
    if urllib.parse.urlsplit(url).hostname in _LOCAL_HOSTS:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return opener.open(req, timeout=timeout)
    return urllib.request.urlopen(req, timeout=timeout)


def _hashers(info):
    hs = {}
    if info.md5:
        hs['md5'] = hashlib.md5(usedforsecurity=False)
    if info.sha256:
        hs['sha256'] = hashlib.sha256()
    return hs


def _verify(info, nbytes, hashers, where):
    "Raise ChecksumError when the size or a digest differs from `info`."
    if info.size is not None and nbytes != info.size:
        raise ChecksumError(f"size mismatch for {info.url} ({where}): expected {info.size} bytes, got {nbytes}. "
                            "The file has been deleted; try again, and if it persists the upstream archive changed.")
    for name, h in hashers.items():
        expected, actual = getattr(info, name), h.hexdigest()
        if actual != expected:
            raise ChecksumError(f"{name} mismatch for {info.url} ({where}): expected {expected}, got {actual}. "
                                "The file has been deleted; try again, and if it persists the upstream archive "
                                "changed.")


def _check_file(info, path):
    "Verify an archive already on disk; raises ChecksumError."
    hs = _hashers(info)
    n = 0
    with open(path, 'rb') as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
            for h in hs.values():
                h.update(b)
    _verify(info, n, hs, str(path))


def _make_dirs(path):
    "Create the folder `path` and its missing parents; return the folders created, deepest first."
    path, created = Path(path), []
    p = path
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return created


def _remove_dirs(created):
    "Remove the folders `_make_dirs` created, as long as they are empty (a failed run leaves nothing)."
    for d in created:
        try:
            os.rmdir(d)
        except OSError:
            return


def _unlink(p):
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def download_data(url, archive_path, info=None, progress=True, timeout=_TIMEOUT, dest=None):
    """Download `url` to the file `archive_path`, verifying it against `info` (default: the registry), and return
    `archive_path` as a `Path`.

    The bytes go to a temporary ``.part`` file next to `archive_path` that is renamed only after the size and
    checksums match; on any failure it is removed. Network failures raise `DownloadError`, a size/checksum
    mismatch `ChecksumError`. `dest` (the unpacked folder the caller will make) is only used in error messages.
    """
    info = dataset_info(url) if info is None else info
    _check_url(url)
    archive_path = Path(archive_path)
    dest = Path(dest) if dest is not None else archive_path.parent / info.folder
    bar = _Progress(info.fname, info.size, enabled=progress)
    created = _make_dirs(archive_path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{info.fname}.', suffix='.part', dir=archive_path.parent)
    except BaseException:
        _remove_dirs(created)
        raise
    ok = False
    try:
        with os.fdopen(fd, 'wb') as out:
            hs = _hashers(info)
            n = 0
            try:
                resp = _open_url(url, timeout)
            except urllib.error.HTTPError as e:
                e.close()
                raise DownloadError(_offline_message(url, info, dest, archive_path,
                                                     f"HTTP error {e.code} {e.reason}")) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                reason = getattr(e, 'reason', None) or e
                raise DownloadError(_offline_message(url, info, dest, archive_path, f"{reason}")) from None
            with resp:
                total = resp.headers.get('Content-Length')
                total = int(total) if total and total.isdigit() else None
                if info.size is not None and total is not None and total != info.size:
                    raise ChecksumError(f"size mismatch for {url}: expected {info.size} bytes, the server announces "
                                        f"{total}. Nothing was kept.")
                bar.total = info.size if info.size is not None else total
                bar.start(url, archive_path)
                while True:
                    try:
                        b = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise DownloadError(_offline_message(url, info, dest, archive_path,
                                                             f"transfer interrupted after {n} bytes ({e!r})")) from None
                    if not b:
                        break
                    out.write(b)
                    n += len(b)
                    for h in hs.values():
                        h.update(b)
                    if info.size is not None and n > info.size:
                        raise ChecksumError(f"size mismatch for {url}: expected {info.size} bytes, received more "
                                            f"({n} so far). Nothing was kept.")
                    bar.update(n)
        _verify(info, n, hs, 'download')
        os.replace(tmp, archive_path)
        ok = True
    finally:
        if not ok:
            _unlink(tmp)
            _remove_dirs(created)
        bar.finish(ok)
    return archive_path


def _unsafe_member(name):
    "True when a zip member name is absolute, has a drive, or has a `..` component."
    if not name or '\x00' in name:
        return True
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.drive or pure.root or '..' in pure.parts:
            return True
    return False


def _extract(info, archive_path, dest):
    """Unpack `archive_path` into the folder `dest` safely and atomically; returns `dest`.

    The members are written into a temporary folder next to `dest`, which is renamed to `dest` only once every
    member has been unpacked; on any failure it is removed, so no half-unpacked folder is ever left. Errors name
    the archive (and its URL) and what was wrong:

    * `UnsafeArchiveError` (a `ValueError`), before anything is written, for a member with an absolute path or
      `..` that would escape `dest` (zip-slip);
    * `ValueError` for an archive that cannot be unpacked: not a ZIP, a corrupted directory or member (bad CRC,
      a truncated or undecompressable member, an unknown compression method or ZIP version, encryption), or
      members the file system refuses as named (a name too long, a file where a folder must go);
    * `OSError` (same errno) when the machine cannot take the data: no space, no permission, a read-only or
      failing disk.
    """
    import errno
    import struct
    import zlib

    where = f"{archive_path} (from {info.url})"
    # OSErrors that say the machine cannot take the data; any other OSError while unpacking is the archive's
    environment = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EMFILE,
                   errno.ENFILE, errno.ENOMEM}
    corrupt = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
               ValueError, struct.error, OverflowError)

    def failure(e, member=None):
        "The clean error for exception `e` raised while opening the archive or unpacking `member`."
        what = f"member {member!r}: " if member is not None else ''
        if isinstance(e, OSError) and e.errno in environment:
            return OSError(e.errno, f"cannot unpack {where} into {dest}: {what}{e.strerror or e}")
        if isinstance(e, OSError):
            return ValueError(f"{where} cannot be unpacked into {dest}: {what}{e}")
        return ValueError(f"{where} is not a valid zip archive: {what}{type(e).__name__}: {e}")

    created = _make_dirs(dest.parent)
    try:
        zf = zipfile.ZipFile(archive_path)
    except (OSError, *corrupt) as e:
        _remove_dirs(created)
        raise failure(e) from e
    tmp, ok = None, False
    try:
        with zf:
            members = zf.infolist()
            bad = [m.filename for m in members if _unsafe_member(m.filename)]
            if bad:
                raise UnsafeArchiveError(f"refusing to unpack {archive_path} (from {info.url}): member(s) with an "
                                         f"absolute path or '..' would escape the destination: {', '.join(bad[:5])}")
            tmp = Path(tempfile.mkdtemp(prefix=f'.{info.folder}.', suffix='.tmp', dir=dest.parent))
            root = tmp.resolve()
            for m in members:
                target = (tmp / m.filename).resolve()
                if target != root and root not in target.parents:
                    raise UnsafeArchiveError(f"refusing to unpack {archive_path}: member {m.filename!r} escapes "
                                             "the destination")
            for m in members:
                try:
                    zf.extract(m, tmp)
                except (OSError, *corrupt) as e:
                    raise failure(e, m.filename) from e
        src = tmp / info.folder
        if not src.is_dir():  # archive without a top-level folder: its contents are the data set
            src = tmp
        try:
            os.replace(src, dest)
        except OSError:
            if not _has_content(dest):  # not a lost race with another process: a real failure
                raise
        ok = True
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            _remove_dirs(created)
    return dest


def untar_data(url, archive=None, data=None, c_key='data', force_download=False, base=None, *, md5=None,
               sha256=None, size=None, progress=True, timeout=_TIMEOUT):
    """Return the `Path` of the unpacked data set at `url`, downloading, verifying and unpacking it if needed.

    Lookup order: ``$COLLABC_DATA/<folder>`` (if non-empty), then the cache folder ``<data>/<folder>`` (`data`
    defaults to ``<root>/<c_key>``, where root is `base`, else ``$COLLABC_HOME``, else ``~/.collabc``), then the
    archive in ``<archive>`` (default ``<root>/archive``) if already there and valid, else a download.
    `force_download=True` skips ``$COLLABC_DATA`` and the cache, deletes the cached archive and folder and
    downloads again.

    `url` must be in the registry (see `register_dataset`), unless `md5` and/or `sha256` (and optionally `size`) are
    passed, which then describe the archive (folder name = URL file name without `.zip`); otherwise `ValueError`.
    Raises `DownloadError` (an `OSError`) when offline, `ChecksumError` on a corrupt archive, `UnsafeArchiveError`
    on a zip-slip member. `progress=False` silences the stderr progress output; `timeout` is per socket operation.
    """
    if md5 is not None or sha256 is not None:
        fname, folder = _default_names(url)
        info = DatasetInfo(url=url, size=size, md5=md5, sha256=sha256, folder=folder, fname=fname)
    else:
        if size is not None:
            raise ValueError("size= is only used together with md5= or sha256=")
        info = dataset_info(url)
    if not isinstance(c_key, str) or not c_key or c_key in ('.', '..') or '/' in c_key or '\\' in c_key:
        raise ValueError(f"c_key must be a plain folder name such as 'data', got {c_key!r}")

    if not force_download:
        found = _env_folder(info.folder)
        if found is not None:
            return found
    root = cache_root(base)
    data_dir = Path(data).expanduser() if data is not None else root / c_key
    archive_dir = Path(archive).expanduser() if archive is not None else root / 'archive'
    dest = data_dir / info.folder
    archive_path = archive_dir / info.fname

    if force_download:
        _unlink(archive_path)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
    elif _has_content(dest):
        return dest

    if archive_path.is_file():
        try:
            _check_file(info, archive_path)
        except ChecksumError:
            _unlink(archive_path)  # stale or corrupt: fetch it again
        else:
            return _extract(info, archive_path, dest)
    download_data(url, archive_path, info=info, progress=progress, timeout=timeout, dest=dest)
    return _extract(info, archive_path, dest)
