"""Derive tests/data/fastai_replay.npz, the data-free form of fastai's recorded epochs.

    python scripts/make_replay.py --reference ../shared/reference --data ../shared/data [--out FILE]

(`--reference` defaults to $COLLABC_REFERENCE, `--data` to $COLLABC_DATA.) The recordings
`fastai_golden_{dot,nn}.npz` hold every training batch and the validation set as encoded
(user index, title index) pairs with their ratings: MovieLens data, which may not be committed.
This script replaces them by row numbers of `u.data` and keeps everything else (parameters,
schedule, losses), so that `tests/replay.py` can rebuild the recordings from `u.data` alone.

How an encoded pair maps back to a row: the recordings use fastai's classes, '#na#' at 0, then the
users sorted (integer ids: the training rows' users) and the titles sorted (strings: the whole
frame). Each recorded (user, title, rating) is matched to the `u.data` rows with that user, title
and rating. MovieLens-100k has 18 titles shared by two movie ids, so 307 (user, title) pairs have
two rows: where their ratings differ the rating tells them apart; where they are equal (261 pairs)
the two rows encode to the same recorded values and are assigned in row order. Each row must be
used exactly once over the batches and the validation set, which is checked. The result is then
rebuilt with `tests/replay.py` (collabc's own classes for the derived split) and compared with
the recordings array by array; the script fails unless every array is identical.
"""
import argparse
import os
import pathlib
import sys

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from replay import (DATA_KEYS, MODELS, REPLAY_FILE, SHARED, identical, read_ml100k,  # noqa: E402
                    rebuild, sha256_file)


def load_recordings(reference):
    recs = {}
    for model in MODELS:
        f = pathlib.Path(reference) / f"fastai_golden_{model}.npz"
        if not f.is_file():
            raise SystemExit(f"make_replay: {f} does not exist (--reference must be the folder of "
                             f"fastai_golden_dot.npz and fastai_golden_nn.npz)")
        with np.load(f, allow_pickle=False) as z:
            recs[model] = {k: z[k] for k in z.files}
    for k in (*SHARED, "batch_x", "batch_y", "valid_x", "valid_y", "n_users", "n_items"):
        if not all(identical(recs[MODELS[0]][k], recs[m][k]) for m in MODELS[1:]):
            raise SystemExit(f"make_replay: the recordings differ in {k!r}; this format stores it once")
    return recs


def rows_of(frame, rec):
    """u.data row numbers of the recorded training batches (1250, 64) and validation set."""
    users = np.sort(frame["user"].unique())              # candidate classes; checked by the rebuild
    titles = np.sort(frame["title"].unique())
    bx, by = rec["batch_x"].reshape(-1, 2).astype(np.int64), rec["batch_y"].reshape(-1)
    vx, vy = rec["valid_x"].astype(np.int64), rec["valid_y"]
    x, y = np.concatenate([bx, vx]), np.concatenate([by, vy]).astype(np.int64)
    if (x == 0).any():
        raise SystemExit("make_replay: a recorded pair uses '#na#' (index 0); such a row cannot be "
                         "told apart from others and this format does not support it")
    if x[:, 0].max() > len(users) or x[:, 1].max() > len(titles):
        raise SystemExit("make_replay: recorded indices beyond the classes of u.data/u.item")
    rec_keys = pd.DataFrame({"user": users[x[:, 0] - 1], "title": titles[x[:, 1] - 1], "rating": y})
    data = frame[["user", "title", "rating"]].copy()
    data["row"] = np.arange(len(frame))
    # the k-th occurrence of a (user, title, rating) in the recording takes the k-th such row
    rec_keys["k"] = rec_keys.groupby(["user", "title", "rating"], sort=False).cumcount()
    data["k"] = data.groupby(["user", "title", "rating"], sort=False).cumcount()
    merged = rec_keys.merge(data, on=["user", "title", "rating", "k"], how="left", sort=False)
    if len(merged) != len(rec_keys) or merged["row"].isna().any():
        n = int(merged["row"].isna().sum())
        raise SystemExit(f"make_replay: {n} recorded (user, title, rating) occurrences have no row "
                         "of u.data left: the recordings were not made from this u.data")
    rows = merged["row"].to_numpy(np.int64)
    if len(rows) != len(frame) or np.unique(rows).size != len(frame):
        raise SystemExit(f"make_replay: the recordings cover {np.unique(rows).size} of {len(frame)} "
                         "rows of u.data; expected each row exactly once")
    nb = bx.shape[0]
    return rows[:nb].reshape(rec["batch_x"].shape[:2]).astype(np.int32), rows[nb:].astype(np.int32)


def duplicate_report(frame):
    pairs = frame.groupby(["user", "title"]).size()
    triples = frame.groupby(["user", "title", "rating"]).size()
    return (f"{int((pairs > 1).sum())} (user, title) pairs with several rows, "
            f"{int((triples > 1).sum())} of them with equal ratings (interchangeable)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", default=os.environ.get("COLLABC_REFERENCE"),
                   help="folder of fastai_golden_{dot,nn}.npz (default $COLLABC_REFERENCE)")
    p.add_argument("--data", default=os.environ.get("COLLABC_DATA"),
                   help="folder holding ml-100k/ (default $COLLABC_DATA)")
    p.add_argument("--out", default=str(REPLAY_FILE), help="the file to write")
    args = p.parse_args(argv)
    if not args.reference or not args.data:
        p.error("give --reference and --data (or set COLLABC_REFERENCE and COLLABC_DATA)")
    ml = pathlib.Path(args.data) / "ml-100k"
    if not (ml / "u.data").is_file():
        p.error(f"{ml / 'u.data'} does not exist")

    recs = load_recordings(args.reference)
    frame = read_ml100k(ml)
    print(f"u.data: {len(frame)} rows; {duplicate_report(frame)}")
    batch_rows, valid_rows = rows_of(frame, recs[MODELS[0]])

    out = {"u_data_sha256": np.array(sha256_file(ml / "u.data")),
           "batch_rows": batch_rows, "valid_rows": valid_rows}
    for k in SHARED:
        out[k] = recs[MODELS[0]][k]
    for model, rec in recs.items():
        for k, v in rec.items():
            if k not in DATA_KEYS and k not in SHARED:
                out[f"{model}/{k}"] = v
    dest = pathlib.Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp.npz")
    np.savez_compressed(tmp, **out)

    for model, rec in recs.items():      # the rebuilt recording must equal the original exactly
        back = rebuild(model, ml, replay=tmp)
        if sorted(back) != sorted(rec):
            tmp.unlink()
            raise SystemExit(f"make_replay: {model}: rebuilt keys {sorted(set(back) ^ set(rec))} differ")
        bad = [k for k in rec if not identical(back[k], rec[k])]
        if bad:
            tmp.unlink()
            raise SystemExit(f"make_replay: {model}: rebuilt arrays differ from the recording: {bad}")
    os.replace(tmp, dest)
    print(f"wrote {dest} ({dest.stat().st_size:,} bytes); both recordings rebuild exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
