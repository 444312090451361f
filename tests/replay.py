"""fastai's recorded epochs without MovieLens data: tests/data/fastai_replay.npz -> the recordings.

The shared recordings (shared/reference/fastai_golden_{dot,nn}.npz, see its README) hold fastai's
training batches, i.e. MovieLens ratings, which may not be redistributed. The committed file
`tests/data/fastai_replay.npz` (written once by scripts/make_replay.py) holds everything else:

* `u_data_sha256`: the sha256 of the `u.data` the rows below index;
* `batch_rows` (1250, 64) int32: each training batch as row numbers (0-based lines) of `u.data`;
* `valid_rows` (20000,) int32: the validation set, in fastai's order, the same way;
* `lr`, `mom`: the schedule (the same for both recordings);
* `dot/<key>`, `nn/<key>`: every other array of the recordings (parameters at init, after steps 1,
  2, 10, 100 and 1250, per-step and smoothed losses, valid loss, printed train loss).

`rebuild(model, ml100k_folder)` reads `u.data` (checking its sha256) and `u.item`, builds the frame
`user, title, rating` in `u.data` order, encodes it with collabc's `CollabDataLoaders.from_df`
classes for that split (users from the training rows, titles from the whole frame, '#na#' at 0:
fastai's rules) and returns a dict with exactly the recordings' keys, values and dtypes.
`tests/test_replay_data.py` checks that against the shared recordings, array for array.
"""
import hashlib
import pathlib

import numpy as np
import pandas as pd

REPLAY_FILE = pathlib.Path(__file__).parent / "data" / "fastai_replay.npz"
MODELS = ("dot", "nn")
SHARED = ("lr", "mom")                       # the same in both recordings, stored once
DATA_KEYS = ("batch_x", "batch_y", "valid_x", "valid_y", "n_users", "n_items")   # rebuilt from u.data
ROW_KEYS = ("u_data_sha256", "batch_rows", "valid_rows")


class Recording(dict):
    "A dict of arrays that also answers `.files`, like the `NpzFile` of a shared recording."

    @property
    def files(self):
        return list(self)


def identical(a, b):
    "Same dtype, shape and bytes (so NaN equals NaN, as in the first smoothed loss)."
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_ml100k(folder):
    """The lesson's ratings in `u.data` order (row i = line i): user, movie, rating, timestamp,
    title (from `u.item`). Unlike `ratings.merge(movies)`, this never reorders the rows."""
    folder = pathlib.Path(folder)
    ratings = pd.read_csv(folder / "u.data", delimiter="\t", header=None,
                          names=["user", "movie", "rating", "timestamp"])
    movies = pd.read_csv(folder / "u.item", delimiter="|", encoding="latin-1", usecols=(0, 1),
                         names=("movie", "title"), header=None)
    titles = ratings["movie"].map(movies.set_index("movie")["title"])
    if titles.isna().any():
        raise ValueError(f"{folder / 'u.data'}: movie ids without a title in u.item: "
                         f"{sorted(set(ratings['movie'][titles.isna()]))[:10]}")
    return ratings.assign(title=titles)


def encode_rows(frame, valid_rows):
    """fastai's encoding of every row of `frame` for the split whose validation rows are
    `valid_rows` (all other rows train): (x (n, 2) int32 of [user index, title index], classes)."""
    from collabc import CollabDataLoaders
    from collabc.data import encode_ids
    dls = CollabDataLoaders.from_df(frame[["user", "title", "rating"]], valid_idx=valid_rows,
                                    bs=64, shuffle=False)
    x = np.empty((len(frame), 2), np.int32)
    x[:, 0] = encode_ids(dls.classes["user"], frame["user"].to_numpy(), "user", unknown="na")
    x[:, 1] = encode_ids(dls.classes["title"], frame["title"].to_numpy(), "title", unknown="na")
    return x, dls.classes


def rebuild(model, ml100k_folder, replay=REPLAY_FILE):
    "The recording of `model` ('dot' or 'nn') rebuilt from the committed file and `u.data`."
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    folder = pathlib.Path(ml100k_folder)
    with np.load(replay, allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    expected, actual = str(stored["u_data_sha256"]), sha256_file(folder / "u.data")
    if actual != expected:
        raise ValueError(f"{folder / 'u.data'} is not the MovieLens-100k file the replay indexes: "
                         f"sha256 {actual}, expected {expected}")
    frame = read_ml100k(folder)
    batch_rows, valid_rows = stored["batch_rows"], stored["valid_rows"]
    x, classes = encode_rows(frame, valid_rows)
    y = frame["rating"].to_numpy()
    out = Recording()
    prefix = f"{model}/"
    for k, v in stored.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif k in SHARED:
            out[k] = v
    out["batch_x"] = x[batch_rows].astype(np.int16)
    out["batch_y"] = y[batch_rows].astype(np.int8)
    out["valid_x"] = x[valid_rows].astype(np.int16)
    out["valid_y"] = y[valid_rows].astype(np.int8)
    out["n_users"] = np.array(len(classes["user"]), np.int64)
    out["n_items"] = np.array(len(classes["title"]), np.int64)
    return out
