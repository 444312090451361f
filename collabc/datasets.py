"""Larger data sets: MovieLens 100k/1M/10M/20M/25M/latest-small as ratings frames, and synthetic ratings.

    from collabc.datasets import load_movielens, movies, synthetic
    ratings = load_movielens('ml-1m')            # downloads (verified) on first use, or reads $COLLABC_DATA/ml-1m
    ratings = load_movielens('/data/ml-25m')     # a folder (or a ratings file) you already have
    ratings = synthetic(162_541, 59_047, 25_000_095, rank=10, seed=0)   # ML-25M-shaped, no network

Every loader returns a `pandas.DataFrame` with the columns ``user`` (int32), ``item`` (int32), ``rating`` (float32)
and ``timestamp`` (int64, seconds since 1970), in file order, with a fresh `RangeIndex`; pass it straight to
`CollabDataLoaders.from_df`. `movies(path)` gives the titles (``item``, ``title``, ``genres``) and
``load_movielens(..., titles=True)`` joins the title column on.

The formats (all written by GroupLens):

=================  ========================  ============================================================
data set           ratings file              format
=================  ========================  ============================================================
ml-100k            ``u.data``                ``user<TAB>item<TAB>rating<TAB>timestamp``, no header
ml-1m, ml-10m      ``ratings.dat``           ``UserID::MovieID::Rating::Timestamp``, no header
ml-20m, ml-25m,    ``ratings.csv``           header ``userId,movieId,rating,timestamp``
ml-latest-small
=================  ========================  ============================================================

Parsing never goes through a Python loop per row nor through pandas' slow ``python`` engine (which is what
``sep='::'`` would force): a ``.dat`` file is read by pandas' C parser with ``sep=':'``, so that ``a::b`` is the
field ``a``, an empty field, then ``b``; the empty fields are read as 1-byte categoricals and must stay empty (a
stray single ``:`` is an error, not a silent column shift). Files are parsed in chunks of a million rows straight
into preallocated int32/float32/int64 columns, so the peak memory is the result plus one chunk. A 10-million-line
``ratings.dat`` (ML-10M's size) parses in about 1.5 s on a 2-core machine. The first lines of each file are
checked against its format, so a wrong file fails with a `ValueError` that names the file and shows the
offending line (or the row of a later bad line) rather than with a pandas traceback.

`synthetic` draws explicit ratings from a planted low-rank model with biases and noise, with heavy-tailed (log-normal)
user activity and (Zipf) item popularity like real rating data, vectorised and in chunks: 25 million ratings in a few
seconds and little memory beyond the output.
"""
import csv
import io
import math
import numbers
import os
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

from ._checks import check_float, check_int
from .external import URLs, dataset_info, untar_data
from .seed import get_rng

__all__ = ['MOVIELENS', 'RATING_DTYPES', 'load_movielens', 'read_ratings', 'movies', 'synthetic',
           'ml_100k', 'ml_1m', 'ml_10m', 'ml_20m', 'ml_25m', 'ml_latest_small']

#: The MovieLens releases `load_movielens` knows by name, and their download URLs (see `collabc.external.URLs`).
MOVIELENS = {
    'ml-100k': URLs.ML_100k,
    'ml-1m': URLs.ML_1M,
    'ml-10m': URLs.ML_10M,
    'ml-20m': URLs.ML_20M,
    'ml-25m': URLs.ML_25M,
    'ml-latest-small': URLs.ML_LATEST_SMALL,
}
_ALIASES = {'ml-10m100k': 'ml-10m'}

#: Column names and dtypes of every ratings frame the loaders return.
RATING_DTYPES = {'user': np.dtype(np.int32), 'item': np.dtype(np.int32), 'rating': np.dtype(np.float32),
                 'timestamp': np.dtype(np.int64)}
_COLS = list(RATING_DTYPES)

# ratings files, in the order a folder is searched
_RATINGS_FILES = ('ratings.dat', 'ratings.csv', 'u.data')
_MOVIES_FILES = ('movies.dat', 'movies.csv', 'u.item')
_CSV_HEADER = ['userId', 'movieId', 'rating', 'timestamp']
_FORMATS = {
    'dat': ("'::'-separated ratings.dat (UserID::MovieID::Rating::Timestamp)",
            re.compile(r'\d+::\d+::[0-9.]+::\d+')),
    'csv': ("ratings.csv with the header userId,movieId,rating,timestamp", re.compile(r'\d+,\d+,[0-9.]+,\d+')),
    'tsv': ("tab-separated u.data (user, item, rating, timestamp)", re.compile(r'\d+\t\d+\t[0-9.]+\t\d+')),
}
_DAT_GAPS = ('_1', '_3', '_5')
_PARSE_CHUNK = 1 << 20   # rows per parsed chunk
_N_CHECK = 5          # lines checked against the format before the whole file is parsed
# ml-100k's u.item genre flags, in u.genre's order
_U_GENRES = ('unknown', 'Action', 'Adventure', 'Animation', "Children's", 'Comedy', 'Crime', 'Documentary',
             'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery', 'Romance', 'Sci-Fi', 'Thriller',
             'War', 'Western')


# ----------------------------------------------------------------------------------------------
# reading ratings files

def _infer_format(path):
    name = path.name.lower()
    if name == 'u.data' or name.endswith(('.data', '.tsv')):
        return 'tsv'
    if name.endswith('.dat'):
        return 'dat'
    if name.endswith('.csv'):
        return 'csv'
    raise ValueError(f"cannot tell the format of {path} from its name; pass format='dat' "
                     "(UserID::MovieID::Rating::Timestamp), 'csv' (header userId,movieId,rating,timestamp) or "
                     "'tsv' (u.data)")


def _head_lines(path, n, limit=1 << 12):
    "The first `n` lines of `path` (bytes, without line endings, each cut at `limit` bytes)."
    lines = []
    with open(path, 'rb') as f:
        while len(lines) < n:
            raw = f.readline(limit)
            if not raw:
                break
            if not raw.endswith(b'\n') and len(raw) == limit:   # an overlong line: skip its rest
                while True:
                    more = f.readline(1 << 16)
                    if not more or more.endswith(b'\n'):
                        break
            lines.append(raw.rstrip(b'\r\n'))
    return lines


def _check_head(path, fmt):
    "Raise ValueError unless the first lines of `path` look like `fmt`; return the number of header lines."
    desc, pattern = _FORMATS[fmt]
    lines = _head_lines(path, _N_CHECK + 1)
    if not lines or not any(lines):
        raise ValueError(f"{path} is empty: expected a {desc}")
    header = 0
    if fmt == 'csv':
        got = lines[0].decode('utf-8', 'replace').lstrip('\ufeff').strip().split(',')
        if got != _CSV_HEADER:
            raise ValueError(f"{path} is not a {desc}: its first line is {lines[0][:200]!r}")
        header = 1
    for k, line in enumerate(lines[header:header + _N_CHECK], start=header + 1):
        if not line.strip():                      # blank lines are skipped by the parser too
            continue
        try:
            text = line.decode('ascii').strip()
        except UnicodeDecodeError:
            text = None
        if text is None or not pattern.fullmatch(text):
            raise ValueError(f"{path} is not a {desc}: line {k} is {line[:200]!r}")
    return header


def read_ratings(path, format=None):
    """Parse one MovieLens ratings file into a frame ``user, item, rating, timestamp`` (int32, int32, float32,
    int64), in file order.

    `format` is ``'dat'`` (``UserID::MovieID::Rating::Timestamp``, ML-1M/10M ``ratings.dat``), ``'csv'`` (header
    ``userId,movieId,rating,timestamp``, ML-20M/25M/latest ``ratings.csv``) or ``'tsv'`` (ML-100k ``u.data``);
    by default it follows the file name (``*.dat``, ``*.csv``, ``u.data``/``*.data``/``*.tsv``).
    Raises `FileNotFoundError` for a missing file and `ValueError` (naming the file and showing the line) for a
    file in another format, a malformed line, a missing or non-finite rating, or an id outside int32.
    """
    path = Path(path)
    if format is None:
        format = _infer_format(path)
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {sorted(_FORMATS)} or None, got {format!r}")
    if not path.is_file():
        raise FileNotFoundError(f"ratings file {path} does not exist" if not path.exists()
                                else f"{path} is not a file")
    header = _check_head(path, format)
    dtypes = dict(RATING_DTYPES)
    if format == 'dat':
        # sep=':' keeps pandas' C parser: 'a::b' is a, '', b. The empty columns 1, 3, 5 are read as categoricals
        # (1 byte a row, no categories when all are empty) so that a stray single ':' cannot go unnoticed.
        names = ['user', '_1', 'item', '_3', 'rating', '_5', 'timestamp']
        kw = dict(sep=':', header=None, names=names)
        dtypes.update({c: 'category' for c in _DAT_GAPS})
    elif format == 'csv':
        kw = dict(sep=',', header=0, names=_COLS)
    else:
        kw = dict(sep='\t', header=None, names=_COLS)
    desc = _FORMATS[format][0]
    n_max = _count_lines(path) - header          # rows at most (blank lines are skipped)
    out = {c: np.empty(n_max, t) for c, t in RATING_DTYPES.items()}
    n = 0
    try:
        # chunks parsed into preallocated columns: peak memory is the output plus one chunk, not twice the output
        with pd.read_csv(path, dtype=dtypes, engine='c', skip_blank_lines=True, chunksize=_PARSE_CHUNK,
                         **kw) as reader:
            for chunk in reader:
                m = len(chunk)
                if n + m > n_max:
                    raise ValueError(f"more rows than the {n_max} lines counted")
                if format == 'dat':
                    for c in _DAT_GAPS:
                        if len(chunk[c].cat.categories):
                            k = n + int(np.flatnonzero(chunk[c].notna().to_numpy())[0])
                            raise _RowError(k, "has a single ':' (or extra text) where '::' belongs")
                r = chunk['rating'].to_numpy()
                bad = ~np.isfinite(r)
                if bad.any():
                    k = n + int(np.flatnonzero(bad)[0])
                    raise _RowError(k, "has a missing or non-finite rating")
                for c in _COLS:
                    out[c][n:n + m] = chunk[c].to_numpy()
                n += m
    except _RowError as e:
        raise ValueError(f"{path} is not a valid {desc}: data row {e.row + 1} (line {e.row + 1 + header}, not "
                         f"counting blank lines) {e.what}") from None
    except (ValueError, OverflowError, TypeError) as e:  # pandas' ParserError is a ValueError
        raise ValueError(f"{path} is not a valid {desc}: {e}") from None
    if n == 0:
        raise ValueError(f"{path} has no ratings")
    return pd.DataFrame({c: out[c][:n] for c in _COLS}, copy=False)


class _RowError(Exception):
    def __init__(self, row, what):
        super().__init__(row, what)
        self.row, self.what = row, what


def _count_lines(path):
    "Number of lines of `path` (a last line without a newline counts), reading it in blocks."
    n, last = 0, b'\n'
    with open(path, 'rb') as f:
        while True:
            b = f.read(1 << 24)
            if not b:
                break
            n += b.count(b'\n')
            last = b[-1:]
    return n + (last != b'\n')


# ----------------------------------------------------------------------------------------------
# locating data sets

def _name_key(s):
    k = s.strip().lower()
    k = _ALIASES.get(k, k)
    if k not in MOVIELENS and f'ml-{k}' in MOVIELENS:
        k = f'ml-{k}'
    return k if k in MOVIELENS else None


def _resolve(source, untar_kwargs):
    "A folder or ratings file for `source` (a path, a MovieLens name or a registered URL)."
    if isinstance(source, os.PathLike):
        p = Path(source)
    elif isinstance(source, str):
        if urllib.parse.urlsplit(source).scheme in ('http', 'https'):
            dataset_info(source)      # ValueError naming the known URLs if it is not registered
            return untar_data(source, **untar_kwargs)
        p = Path(source).expanduser()
        if not p.exists():
            key = _name_key(source)
            if key is not None:
                return untar_data(MOVIELENS[key], **untar_kwargs)
            raise FileNotFoundError(f"{source!r} is neither an existing file or folder nor a MovieLens name "
                                    f"(known names: {', '.join(MOVIELENS)})")
    else:
        raise TypeError(f"source must be a path, a MovieLens name or a URL, got {type(source).__name__}")
    if untar_kwargs:
        raise TypeError(f"{sorted(untar_kwargs)} only apply when downloading (source is a name or URL), "
                        f"not to the path {p}")
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    return p


def _ratings_file(folder):
    for name in _RATINGS_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no MovieLens ratings file in {folder}: looked for {', '.join(_RATINGS_FILES)}")


def load_movielens(source, titles=False, **untar_kwargs):
    """The ratings of a MovieLens release as a frame ``user, item, rating, timestamp`` (int32, int32, float32,
    int64), in file order.

    `source` is one of
      * a name from `MOVIELENS` (``'ml-100k'``, ``'ml-1m'``, ``'ml-10m'``, ``'ml-20m'``, ``'ml-25m'``,
        ``'ml-latest-small'``; ``'1m'`` etc. work too) or its URL (``URLs.ML_1M``): fetched with `untar_data`
        (``$COLLABC_DATA/<folder>`` first, else the cache, else a verified download); `untar_kwargs` (``base=``,
        ``progress=``, ...) are passed on to it;
      * a folder holding ``ratings.dat``, ``ratings.csv`` or ``u.data`` (searched in that order);
      * a ratings file itself (format from its name, see `read_ratings`).
    An existing path wins over a name. `titles=True` adds a ``title`` column from the folder's movies file
    (see `movies`). Raises `FileNotFoundError` when there is no such path/name or no ratings file in the folder,
    `ValueError` for a file in the wrong format.
    """
    p = _resolve(source, untar_kwargs)
    f = p if p.is_file() else _ratings_file(p)
    df = read_ratings(f)
    if titles:
        m = movies(f.parent)
        idx = pd.Index(m['item'].to_numpy()).get_indexer(df['item'].to_numpy())
        missing = idx < 0
        if missing.any():
            ids = pd.unique(df['item'].to_numpy()[missing])
            raise ValueError(f"{len(ids)} rated item id(s) have no title in the movies file of {f.parent}: "
                             f"{ids[:10].tolist()}")
        df['title'] = m['title'].to_numpy()[idx]
    return df


def _decode(b):
    "UTF-8 if the bytes are valid UTF-8 (ML-10M and later), else latin-1 (ML-100k/1M)."
    try:
        return b.decode('utf-8')
    except UnicodeDecodeError:
        return b.decode('latin-1')


def movies(path):
    """The movies of a MovieLens folder (or movies file) as a frame ``item`` (int32), ``title``, ``genres``
    ('|'-separated names).

    Reads ``movies.dat`` (``MovieID::Title::Genres``; latin-1 in ML-1M, UTF-8 in ML-10M: detected),
    ``movies.csv`` (``movieId,title,genres``, UTF-8) or ML-100k's ``u.item`` (``|``-separated, latin-1, genre
    flags turned into names). Join titles onto ratings with ``ratings.merge(movies(path)[['item', 'title']])``
    or ``load_movielens(path, titles=True)``.
    """
    p = Path(path)
    if p.is_dir():
        for name in _MOVIES_FILES:
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise FileNotFoundError(f"no MovieLens movies file in {p}: looked for {', '.join(_MOVIES_FILES)}")
    elif not p.is_file():
        raise FileNotFoundError(f"movies file {p} does not exist")
    name = p.name.lower()
    try:
        if name.endswith('.dat'):
            text = _decode(p.read_bytes())
            if text.strip() and '::' not in text.split('\n', 1)[0]:
                raise ValueError(f"its first line has no '::': {text.split(chr(10), 1)[0][:200]!r}")
            df = pd.read_csv(io.StringIO(text.replace('::', '\t')), sep='\t', header=None,
                             names=['item', 'title', 'genres'], dtype={'item': np.int32, 'title': str,
                                                                       'genres': str},
                             quoting=csv.QUOTE_NONE, keep_default_na=False)
        elif name.endswith('.csv'):
            df = pd.read_csv(p, dtype={'movieId': np.int32, 'title': str, 'genres': str}, keep_default_na=False)
            if list(df.columns[:3]) != ['movieId', 'title', 'genres']:
                raise ValueError(f"expected the header movieId,title,genres, got {list(df.columns)}")
            df = df.rename(columns={'movieId': 'item'})[['item', 'title', 'genres']]
        else:   # u.item
            raw = pd.read_csv(p, sep='|', header=None, encoding='latin-1', quoting=csv.QUOTE_NONE,
                              keep_default_na=False, dtype=str)
            if raw.shape[1] < 2:
                raise ValueError("expected '|'-separated fields (u.item)")
            flags = raw.iloc[:, 5:5 + len(_U_GENRES)].to_numpy() == '1' if raw.shape[1] >= 5 + len(_U_GENRES) \
                else np.zeros((len(raw), 0), bool)
            genres = ['|'.join(g for g, f in zip(_U_GENRES, row) if f) for row in flags] if flags.size \
                else [''] * len(raw)
            df = pd.DataFrame({'item': raw.iloc[:, 0].astype(np.int32), 'title': raw.iloc[:, 1], 'genres': genres})
    except (ValueError, OverflowError, TypeError) as e:
        raise ValueError(f"{p} is not a valid MovieLens movies file: {e}") from None
    return df.reset_index(drop=True)


def _named(key, doc_extra):
    def loader(titles=False, **untar_kwargs):
        return load_movielens(key, titles=titles, **untar_kwargs)
    loader.__name__ = loader.__qualname__ = key.replace('-', '_')
    loader.__doc__ = (f"`load_movielens({key!r})`: the {key} ratings as ``user, item, rating, timestamp``"
                      f"{doc_extra} (downloaded and verified on first use; ``$COLLABC_DATA`` first).")
    return loader


ml_100k = _named('ml-100k', ': 100,000 ratings (1-5 stars) of 1,682 movies by 943 users, u.data')
ml_1m = _named('ml-1m', ': 1,000,209 ratings (1-5 stars) of 3,706 movies by 6,040 users, ratings.dat')
ml_10m = _named('ml-10m', ': 10,000,054 ratings (0.5-5, half stars) of 10,677 movies by 69,878 users, '
                          'ratings.dat in ml-10M100K/')
ml_20m = _named('ml-20m', ': 20,000,263 ratings (0.5-5) of 26,744 movies by 138,493 users, ratings.csv')
ml_25m = _named('ml-25m', ': 25,000,095 ratings (0.5-5) of 59,047 movies by 162,541 users, ratings.csv')
ml_latest_small = _named('ml-latest-small', ': 100,836 ratings (0.5-5) of 9,724 movies by 610 users '
                                            '(the 2018-09 snapshot), ratings.csv')


# ----------------------------------------------------------------------------------------------
# synthetic ratings

_CHUNK = 1 << 17    # rows per vectorised chunk: keeps temporaries at a few MB


def _check_int(name, v, lo=1):
    return check_int(name, v, lo, kind_error=ValueError)


def _check_real(name, v, lo=0.0, strict=False):
    return check_float(name, v, lo, lo_open=strict, kind_error=ValueError)


def _alias_table(p):
    "Walker/Vose alias table of the distribution `p` (a loop over categories, not over draws)."
    n = len(p)
    q = (np.asarray(p, np.float64) * (n / p.sum())).tolist()
    prob = np.ones(n, np.float64)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i, v in enumerate(q) if v < 1.0]
    large = [i for i, v in enumerate(q) if v >= 1.0]
    while small and large:
        s, l = small.pop(), large[-1]
        prob[s], alias[s] = q[s], l
        q[l] += q[s] - 1.0
        if q[l] < 1.0:
            large.pop()
            small.append(l)
    return prob, alias


def _alias_draw(rng, table, size):
    "`size` int64 draws from an alias table: O(1) each."
    prob, alias = table
    idx = rng.integers(0, len(prob), size)
    return np.where(rng.random(size) < prob[idx], idx, alias[idx])


def _capped_counts(rng, total, weights, cap, base):
    "Multinomial counts with `base` each plus `total - base*k` spread by `weights`, redistributing above `cap`."
    k = len(weights)
    p = weights / weights.sum()
    counts = base + rng.multinomial(total - base * k, p).astype(np.int64)
    while True:
        over = counts > cap
        if not over.any():
            return counts
        excess = int((counts[over] - cap).sum())
        counts[over] = cap
        room = np.where(counts < cap, p, 0.0)
        if not room.sum() > 0:                    # the weight left is below float resolution: spread evenly
            room = (counts < cap).astype(np.float64)
        counts += rng.multinomial(excess, room / room.sum())


def _water_fill(p, cap):
    "Probabilities `p` with no entry above `cap` (mass above it moved proportionally to the others)."
    p = p / p.sum()
    fixed = np.zeros(len(p), bool)
    for _ in range(len(p)):
        over = (p > cap * (1 + 1e-12)) & ~fixed
        if not over.any():
            break
        fixed |= over
        free_mass = 1.0 - cap * fixed.sum()
        rest = np.where(fixed, 0.0, p)
        if fixed.all() or rest.sum() <= 0 or free_mass <= 0:
            return np.where(fixed, cap, 0.0) / (cap * fixed.sum())
        p = np.where(fixed, cap, rest * (free_mass / rest.sum()))
    return p


def _in_sorted(sorted_keys, keys):
    "Boolean mask: which `keys` occur in the sorted array `sorted_keys`."
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, bool)
    pos = np.searchsorted(sorted_keys, keys)
    np.minimum(pos, sorted_keys.size - 1, out=pos)
    return sorted_keys[pos] == keys


def _unique_keys(rng, user, n_items, table):
    """Sorted unique int64 keys ``(user-1)*n_items + item-1``, one per entry of the sorted int32 array `user`
    (so each user keeps its count): items drawn by popularity (alias `table`), duplicates replaced by fresh draws
    for the same user (by popularity twice, then uniformly among items, then exactly from the items the user
    lacks). Works in one int64 buffer: no copy of the keys."""
    n = user.size
    keys = np.empty(n, np.int64)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        k = user[s:e].astype(np.int64)
        k -= 1
        k *= n_items
        k += _alias_draw(rng, table, e - s)
        keys[s:e] = k
    keys.sort()
    # compact the duplicates away in place (the write position never passes the read position)
    w = 1
    need = []
    for s in range(1, n, _CHUNK):
        e = min(n, s + _CHUNK)
        dup = keys[s:e] == keys[s - 1:e - 1]
        if dup.any():
            need.append((keys[s:e][dup] // n_items).astype(np.int32))
            kept = keys[s:e][~dup]
        else:
            kept = keys[s:e]
        keys[w:w + kept.size] = kept
        w += kept.size
    if w == n:
        return keys
    need = np.concatenate(need)                # one entry per missing rating: its user (0-based), sorted
    have = keys[:w]
    added = np.empty(0, np.int64)
    for rnd in range(64):
        if need.size == 0:
            break
        # a round over `need` in chunks (temporaries of a few MB): a candidate is kept if its pair is new and
        # not drawn earlier in the round; earlier chunks can hold only the user that runs across the boundary
        got, left = [], []
        run_user, run_got = -1, added[:0]
        for s in range(0, need.size, _CHUNK):
            part = need[s:s + _CHUNK]
            nd = part.astype(np.int64)
            items = _alias_draw(rng, table, nd.size) if rnd < 2 else rng.integers(0, n_items, nd.size)
            cand = nd * n_items + items
            ok = ~_in_sorted(have, cand) & ~_in_sorted(added, cand)
            if nd[0] == run_user:
                ok &= ~_in_sorted(run_got, cand)
            first = np.zeros(cand.size, bool)
            first[np.unique(cand, return_index=True)[1]] = True
            ok &= first
            kept = np.sort(cand[ok])
            got.append(kept)
            left.append(part[~ok])
            last = int(nd[-1])
            mine = kept[np.searchsorted(kept, last * n_items):]
            run_got = np.sort(np.concatenate([run_got, mine])) if last == run_user else mine
            run_user = last
        added = np.sort(np.concatenate([added] + got))
        need = np.concatenate(left)
    if need.size:   # nearly full users: choose exactly among the items they lack (a loop over these few users)
        extra = [added]
        users, n_missing = np.unique(need, return_counts=True)
        for u, m in zip(users.tolist(), n_missing.tolist()):
            lo, hi = u * n_items, (u + 1) * n_items
            own = np.concatenate([have[np.searchsorted(have, lo):np.searchsorted(have, hi)],
                                  added[np.searchsorted(added, lo):np.searchsorted(added, hi)]]) - lo
            free = np.setdiff1d(np.arange(n_items, dtype=np.int64), own, assume_unique=True)
            extra.append(lo + rng.choice(free, m, replace=False))
        added = np.concatenate(extra)
    keys[w:] = np.sort(added)
    keys.sort(kind='stable')          # two sorted runs: timsort merges them in linear time
    return keys


def synthetic(n_users, n_items, n_ratings, rank=10, seed=0, noise=0.5, rating_scale=(0.5, 5.0), step='auto',
              user_skew=1.2, item_skew=1.0, mean=None, unique=True, as_frame=True, return_truth=False):
    """Explicit ratings from a planted low-rank model, shaped like real rating data; no network, no files.

    ``rating = clip(round(mean + b_user + b_item + p_user . q_item + noise * N(0, 1)))``, with user biases
    ~ N(0, 0.35²), item biases ~ N(0, 0.45²) and rank-`rank` factors scaled so that the dot product has standard
    deviation 0.6 (with the default noise the ratings' spread is about 0.9, MovieLens' about 1.0).

    * Who rates what is heavy-tailed like real data: user activity weights are log-normal with sigma `user_skew`
      (1.2 matches ML-25M: median/mean activity ~ 0.5), item popularity is Zipf with exponent `item_skew` over a
      random order of the items (the top 10% of items get about 2/3 of the ratings at ML-25M's shape). Each user
      gets at least one rating when ``n_ratings >= n_users``; items may get none (as in MovieLens' movies files).
      A user gets at most max(0.5, min(1, 1.5 * density)) of the items, and an item's expected share is capped the
      same way, so the tails stay realistic and unique pairs stay possible.
    * `unique=True` (default): no (user, item) pair occurs twice (duplicates are redrawn for the same user).
      `unique=False` skips that (faster, and items are then drawn independently of each other).
    * `rating_scale` = (low, high) and `step`: ratings are rounded to ``low + k*step`` and clipped to the scale.
      ``step='auto'`` means whole stars when both bounds are integers (``(1, 5)``: ML-100k/1M style) and half stars
      otherwise (``(0.5, 5.0)``, the default: ML-10M and later); ``step=None`` keeps them continuous.
      `mean` (default: low + 0.675 * (high - low), 3.54 on 0.5-5) is the global offset.
    * `seed` (an int, default 0) makes the result deterministic (for a given collabc and NumPy version);
      ``seed=None`` draws from collabc's global generator (`collabc.set_seed`).

    Returns a DataFrame ``user, item, rating`` (int32 ids from 1, float32 ratings) sorted by user, then item (as
    MovieLens files are), or with ``as_frame=False`` the tuple of those three arrays. With ``return_truth=True``
    it returns ``(ratings, truth)``, `truth` a dict of the planted ``mean``, ``user_bias`` (n_users,),
    ``item_bias`` (n_items,), ``user_factors`` (n_users, rank), ``item_factors`` (n_items, rank); user id ``u`` is
    row ``u - 1``. Generation is vectorised (no Python loop per rating) and done in chunks; besides the result
    (12 bytes a rating) it needs one int64 key per rating: ML-25M's shape (162,541 users, 59,047 items,
    25,000,095 ratings) takes about 4 s and adds about 410 MB to the peak resident memory, 300 MB of which is
    the result.
    """
    n_users = _check_int('n_users', n_users)
    n_items = _check_int('n_items', n_items)
    n_ratings = _check_int('n_ratings', n_ratings)
    rank = _check_int('rank', rank)
    noise = _check_real('noise', noise)
    user_skew = _check_real('user_skew', user_skew)
    item_skew = _check_real('item_skew', item_skew)
    if seed is not None:
        check_int("seed", seed, 0, kind_error=ValueError)
    try:
        lo, hi = rating_scale
        lo_f, hi_f = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"rating_scale must be a pair (low, high) of numbers, got {rating_scale!r}") from None
    if not (math.isfinite(lo_f) and math.isfinite(hi_f) and lo_f < hi_f):
        raise ValueError(f"rating_scale must be finite with low < high, got {rating_scale!r}")
    if isinstance(step, str):
        if step != 'auto':
            raise ValueError(f"step must be 'auto', None or a positive number, got {step!r}")
        ints = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (lo, hi))
        step = 1.0 if ints else 0.5
    elif step is not None:
        step = _check_real('step', step, strict=True)
    if step is not None and step > hi_f - lo_f:
        raise ValueError(f"step={step!r} is larger than the rating scale {rating_scale!r}")
    mean = lo_f + 0.675 * (hi_f - lo_f) if mean is None else _check_real('mean', mean, lo=-math.inf)
    if unique and n_ratings > n_users * n_items:
        raise ValueError(f"n_ratings={n_ratings} exceeds the {n_users * n_items} distinct (user, item) pairs of "
                         f"{n_users} users x {n_items} items; lower it or pass unique=False")
    if n_users * n_items >= 2**62:
        raise ValueError(f"n_users * n_items = {n_users * n_items} is too large (must be < 2**62)")
    if max(n_users, n_items) >= 2**31 - 1:
        raise ValueError("n_users and n_items must be < 2**31 - 1 (ids are int32)")

    entropy = seed if seed is not None else int(get_rng().integers(0, 2**63 - 1))
    g_users, g_items, g_model, g_pairs, g_noise = (np.random.default_rng(s)
                                                   for s in np.random.SeedSequence(entropy).spawn(5))

    # who rates what: heavy-tailed activity and popularity, capped so that unique pairs stay possible
    density = n_ratings / (n_users * n_items)
    frac = max(0.5, min(1.0, 1.5 * density))
    z = g_users.standard_normal(n_users)
    user_w = np.exp(user_skew * (z - z.max()))    # log-normal weights, scaled so that no sigma overflows
    user_cap = min(n_items, math.ceil(frac * n_items)) if unique else n_ratings
    counts = _capped_counts(g_users, n_ratings, user_w, user_cap, base=1 if n_ratings >= n_users else 0)
    order = g_items.permutation(n_items)
    item_p = _water_fill((order + 1.0) ** -item_skew, min(1.0, math.ceil(frac * n_users) / n_ratings))
    table = _alias_table(item_p)

    user = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), counts)
    item = np.empty(n_ratings, np.int32)
    if unique:
        keys = _unique_keys(g_pairs, user, n_items, table)
        for s in range(0, n_ratings, _CHUNK):
            e = min(n_ratings, s + _CHUNK)
            k = user[s:e].astype(np.int64)
            k -= 1
            k *= n_items
            np.subtract(keys[s:e], k, out=k)
            k += 1
            item[s:e] = k
        del keys
    else:
        for s in range(0, n_ratings, _CHUNK):
            e = min(n_ratings, s + _CHUNK)
            item[s:e] = _alias_draw(g_pairs, table, e - s) + 1

    # the planted model
    scale = (0.6 ** 2 / rank) ** 0.25              # entries ~ N(0, scale²): the dot product has sd 0.6
    user_bias = g_model.normal(0.0, 0.35, n_users).astype(np.float32)
    item_bias = g_model.normal(0.0, 0.45, n_items).astype(np.float32)
    user_factors = g_model.normal(0.0, scale, (n_users, rank)).astype(np.float32)
    item_factors = g_model.normal(0.0, scale, (n_items, rank)).astype(np.float32)
    rating = np.empty(n_ratings, np.float32)
    mu, nz = np.float32(mean), np.float32(noise)
    lo32, hi32 = np.float32(lo_f), np.float32(hi_f)
    st = None if step is None else np.float32(step)
    for s in range(0, n_ratings, _CHUNK):
        e = min(n_ratings, s + _CHUNK)
        u, i = user[s:e] - 1, item[s:e] - 1
        r = np.einsum('ij,ij->i', user_factors[u], item_factors[i])
        r += user_bias[u]
        r += item_bias[i]
        r += mu
        if noise:
            r += nz * g_noise.standard_normal(e - s, dtype=np.float32)
        if st is not None:
            r = np.rint((r - lo32) / st) * st + lo32
        np.clip(r, lo32, hi32, out=r)
        rating[s:e] = r

    out = (pd.DataFrame({'user': user, 'item': item, 'rating': rating}, copy=False) if as_frame
           else (user, item, rating))
    if return_truth:
        return out, {'mean': float(mean), 'user_bias': user_bias, 'item_bias': item_bias,
                     'user_factors': user_factors, 'item_factors': item_factors}
    return out
