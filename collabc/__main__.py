"""The `collabc` command: train, recommend and evaluate from the shell, with the public Python API.

    collabc lesson                                  # the lesson's model on MovieLens-100k
    collabc train ratings.csv -o model.npz          # a CSV/Parquet of ratings -> an exported model
    collabc recommend model.npz 42 196 -n 5         # top-n items for users
    collabc evaluate model.npz test.csv             # loss and ranking metrics on other ratings
    collabc datasets [fetch ml-100k]                # the known data sets

Usage errors exit with status 2 and one line; a missing or bad file, unknown ids or a failed
download exit with status 1 and the message alone (no traceback).
"""
import argparse
import importlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path

PROG = "collabc"
FORMATS = ("auto", "csv", "tsv", "parquet", "movielens")


class CliError(Exception):
    "A problem with the user's data or files: printed as one message, exit status 1."


# ------------------------------------------------------------------------------------- argument types
def _number(kind, test, what):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not test(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    parse.__name__ = what
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")
nonneg_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
finite_float = _number(float, math.isfinite, "a finite number")
open_unit = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")
any_int = _number(int, lambda v: True, "an integer")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    "Keeps the descriptions' line breaks and shows each option's default (unless it is None or off)."

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text \
                and (action.option_strings or action.nargs in ("?", "*")) and action.default != []:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    "argparse, with usage errors as one line (and the way to the help) instead of the usage block."

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _sub(subs, name, help, description):
    return subs.add_parser(name, help=help, description=description, formatter_class=_Formatter)


# ------------------------------------------------------------------------------------- reading files
def _format_of(path, fmt):
    if fmt != "auto":
        return fmt
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".data", ".dat")) or re.fullmatch(r"u[a-z0-9]*\.(base|test)", name):
        return "movielens"        # u.data, ratings.dat, the ml-100k splits u1.base ... ub.test
    if name.endswith(".tsv"):
        return "tsv"
    return "csv"


def _importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def read_ratings_file(path, fmt="auto", sep=None):
    """A DataFrame of the ratings in `path`: CSV/TSV with a header row, Parquet (needs pyarrow),
    or a MovieLens file (u.data, ratings.dat: columns user, item, rating, timestamp)."""
    import pandas as pd
    path = Path(path)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    fmt = _format_of(path, fmt)
    try:
        if fmt == "parquet":
            if not (_importable("pyarrow") or _importable("fastparquet")):
                raise CliError(f"{path}: reading Parquet needs pyarrow, which is not installed; "
                               f"pip install pyarrow (or pip install 'collabc[parquet]'), or give a CSV file")
            df = pd.read_parquet(path)
        elif fmt == "movielens":
            from .datasets import read_ratings
            name = path.name.lower()
            df = read_ratings(path, format="dat" if name.endswith(".dat") else
                              "csv" if name.endswith(".csv") else "tsv")
        else:
            df = pd.read_csv(path, sep=sep if sep is not None else ("\t" if fmt == "tsv" else ","))
    except CliError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError,
            ImportError) as e:
        raise CliError(f"{path}: cannot be read as {fmt} ({_one_line(e)})") from None
    if len(df) == 0:
        raise CliError(f"{path}: holds no ratings (0 rows)")
    return df


def _columns(df, path, user, item, rating, defaults=None):
    "The user, item and rating column names: given, else `defaults` if present, else the first three."
    cols = list(df.columns)
    if defaults and all(c in cols for c in defaults):
        fallback = list(defaults)
    else:
        fallback = cols[:3]
    names = []
    for opt, given, pos in (("--user-col", user, 0), ("--item-col", item, 1), ("--rating-col", rating, 2)):
        if given is None:
            if len(fallback) <= pos:
                raise CliError(f"{path}: has {len(cols)} column(s) {cols}; it needs user, item and rating "
                               f"columns")
            given = fallback[pos]
        elif given not in cols:
            raise CliError(f"{opt} {given!r} is not a column of {path}; its columns are {cols}")
        names.append(given)
    if len(set(names)) != 3:
        raise CliError(f"the user, item and rating columns must differ, got {names}")
    return names


def _one_line(e):
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(msg).split()) or type(e).__name__


def _load_model(path):
    from . import load_learner
    path = Path(path)
    if not path.is_file():
        raise CliError(f"{path}: no such file (an exported model, written by 'collabc train' or learn.export())")
    return load_learner(path)


def _parse_ids(values, classes, what):
    "Command-line strings -> ids of the type the model's classes hold (int, float or str)."
    sample = classes[1] if len(classes) > 1 else ""
    kind = int if isinstance(sample, int) else float if isinstance(sample, float) else str
    out = []
    for s in values:
        try:
            out.append(kind(s))
        except ValueError:
            raise CliError(f"{what} id {s!r} is not {'an integer' if kind is int else 'a number'}; "
                           f"this model's {what} ids are {kind.__name__}s") from None
    return out


def _print_frame(df, csv):
    if csv is None:
        print(df.to_string(index=False))
    elif csv == "-":
        df.to_csv(sys.stdout, index=False)
    else:
        df.to_csv(csv, index=False)
        print(f"wrote {len(df)} rows to {csv}")


# ------------------------------------------------------------------------------------- commands
def ml100k_folder(data):
    "The ml-100k folder: in or at `data` when given, else untar_data(URLs.ML_100k)."
    if data is not None:
        folder = Path(data).expanduser()
        for p in (folder / "ml-100k", folder):
            if (p / "u.data").is_file() and (p / "u.item").is_file():
                return p
        raise CliError(f"--data {folder}: holds neither ml-100k/u.data and u.item nor u.data and u.item")
    from .external import URLs, untar_data
    return untar_data(URLs.ML_100k)


def load_ml100k(data=None):
    "The lesson's ratings frame: u.data merged with the movie titles of u.item."
    import pandas as pd
    path = ml100k_folder(data)
    ratings = pd.read_csv(path / "u.data", delimiter="\t", header=None,
                          names=["user", "movie", "rating", "timestamp"])
    movies = pd.read_csv(path / "u.item", delimiter="|", encoding="latin-1", usecols=(0, 1),
                         names=("movie", "title"), header=None)
    return ratings.merge(movies)


def lesson(args):
    from . import CollabDataLoaders, collab_learner, rmse, set_seed
    if args.seed is not None:
        set_seed(args.seed)
    ratings = load_ml100k(args.data)
    dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=args.bs)
    print(f"{len(ratings):,} ratings: {len(dls.classes['user'])} users, "
          f"{len(dls.classes['title'])} titles (with '#na#'); "
          f"{len(dls.train)} train batches of {args.bs}")
    learn = collab_learner(dls, n_factors=args.n_factors, y_range=(0, 5.5),
                           metrics=[rmse] if args.rmse else None)
    t = time.perf_counter()
    learn.fit_one_cycle(args.epochs, args.lr, wd=args.wd)
    print(f"fit_one_cycle({args.epochs}, {args.lr:g}, wd={args.wd:g}) took "
          f"{time.perf_counter() - t:.2f} s; final valid MSE {learn.recorder.values[-1][1]:.6f}")
    return 0


def train(args):
    from . import CollabDataLoaders, collab_learner, rmse, set_seed
    df = read_ratings_file(args.ratings, args.format, args.sep)
    u, i, r = _columns(df, args.ratings, args.user_col, args.item_col, args.rating_col)
    if args.seed is not None:
        set_seed(args.seed)
    try:
        dls = CollabDataLoaders.from_df(df[[u, i, r]], user_name=u, item_name=i, rating_name=r,
                                        valid_pct=args.valid_pct, bs=args.bs)
    except (ValueError, TypeError, KeyError) as e:
        raise CliError(f"{args.ratings}: {_one_line(e)}") from None
    if len(dls.train) == 0:
        raise CliError(f"{args.ratings}: {dls.train.n} training rows make no batch of --bs {args.bs}; "
                       f"use a smaller --bs")
    print(f"{len(df):,} ratings: {dls.n_users - 1:,} users, {dls.n_items - 1:,} items; "
          f"{dls.train.n:,} train / {dls.valid.n:,} valid rows, {len(dls.train)} batches of {args.bs}")
    kw = dict(y_range=tuple(args.y_range) if args.y_range else None, metrics=[rmse])
    if args.use_nn:
        learn = collab_learner(dls, n_factors=args.n_factors, use_nn=True, layers=args.layers, **kw)
    else:
        learn = collab_learner(dls, n_factors=args.n_factors, **kw)
    from . import TrainingDivergedError
    t = time.perf_counter()
    try:
        learn.fit_one_cycle(args.epochs, args.lr, wd=args.wd)
    except TrainingDivergedError as e:
        raise CliError(f"{_one_line(e)} (--lr)") from None
    out = Path(args.output).expanduser().resolve()
    try:
        learn.export(out)
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"trained in {time.perf_counter() - t:.2f} s; exported to {out}")
    return 0


def recommend(args):
    learn = _load_model(args.model)
    d = learn.dls
    if args.all_users:
        users = list(d.classes[d.user_name][1:])
    else:
        users = _parse_ids(args.users, d.classes[d.user_name], "user")
    try:
        df = learn.recommend_many(users, n=args.n, exclude_seen=not args.include_seen)
    except KeyError as e:
        raise CliError(_one_line(e)) from None
    except ValueError as e:
        raise CliError(f"{args.model}: {_one_line(e)}") from None
    _print_frame(df, args.csv)
    return 0


def evaluate(args):
    import numpy as np

    from . import DataLoaders, mae, mse, rmse
    learn = _load_model(args.model)
    if getattr(learn, "rank_metrics", None) is not None:   # an implicit learner: scores, not ratings
        raise CliError(f"{args.model} is an implicit-feedback model (ALS or BPR): its scores are no ratings, "
                       "so a loss on a ratings file means nothing; rank on held-out interactions in "
                       "Python with implicit_learner(...).ranking_metrics() (see docs/implicit.md)")
    d = learn.dls
    df = read_ratings_file(args.ratings, args.format, args.sep)
    u, i, r = _columns(df, args.ratings, args.user_col, args.item_col, args.rating_col,
                       defaults=(d.user_name, d.item_name, d.rating_name))
    frame = df[[u, i, r]].rename(columns={u: d.user_name, i: d.item_name, r: d.rating_name})
    known = np.ones(len(frame), bool)
    for col, is_item in ((d.user_name, False), (d.item_name, True)):
        try:
            known &= d.encode(frame[col].to_numpy(), is_item=is_item, unknown="na") > 0
        except (TypeError, ValueError) as e:
            raise CliError(f"{args.ratings}: column {col!r}: {_one_line(e)}") from None
    n_unknown = int((~known).sum())
    if n_unknown and args.unknown == "error":
        first = frame[~known].iloc[0]
        user, item = (v.item() if isinstance(v, np.generic) else v for v in (first[d.user_name], first[d.item_name]))
        raise CliError(f"{args.ratings}: {n_unknown} row(s) have a user or item the model does not know, "
                       f"e.g. user {user!r}, item {item!r}; "
                       f"--unknown skip leaves them out")
    frame = frame[known]
    if len(frame) == 0:
        raise CliError(f"{args.ratings}: none of its rows has a user and an item the model knows")
    try:
        dl = d.test_dl(frame, with_labels=True)
        preds, targs = learn.get_preds(dl=dl)
        result = {"rows": int(len(frame)), "skipped_unknown": n_unknown,
                  "mse": mse(preds, targs), "rmse": rmse(preds, targs), "mae": mae(preds, targs)}
        if not args.no_ranking:
            learn.dls = DataLoaders(d.train, dl, d.classes, d.user_name, d.item_name, d.rating_name)
            result.update(learn.ranking_metrics(k=args.k, threshold=args.threshold))
            result["ranked_users"] = result.pop("n_users")
    except (ValueError, TypeError, KeyError) as e:
        raise CliError(f"{args.ratings}: {_one_line(e)}") from None
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:<17}{v:.6f}" if isinstance(v, float) else f"{k:<17}{v}")
    return 0


def _status(info):
    "Where `untar_data` would find the data set now, without downloading."
    from .external import ENV_DATA, cache_root
    env = os.environ.get(ENV_DATA)
    for where, p in ((ENV_DATA, Path(env).expanduser() / info.folder if env else None),
                     ("cache", cache_root() / "data" / info.folder)):
        if p is not None and p.is_dir() and any(p.iterdir()):
            return f"{where}: {p}"
    return "not downloaded"


def datasets(args):
    from .datasets import MOVIELENS
    from .external import dataset_info, untar_data
    if args.action == "fetch":
        for name in args.names:
            print(untar_data(MOVIELENS[name], force_download=args.force, progress=not args.quiet))
        return 0
    rows = []
    for name, url in MOVIELENS.items():
        info = dataset_info(url)
        size = f"{info.size / 1e6:.1f} MB" if info.size else "?"
        rows.append((name, size, _status(info), url))
    widths = [max(len(r[j]) for r in rows + [("name", "size", "where", "url")]) for j in range(4)]
    for row in [("name", "size", "where", "url")] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


# ------------------------------------------------------------------------------------- the parser
def _ratings_options(p, what):
    p.add_argument("ratings", help=f"{what}: .csv (header row), .tsv, .parquet (needs pyarrow) or a "
                                   "MovieLens u.data / ratings.dat")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="file format; auto goes by the file name")
    p.add_argument("--sep", default=None, help="CSV field separator (default ',' or tab for .tsv)")
    p.add_argument("--user-col", metavar="NAME", help="user id column (default: the first column)")
    p.add_argument("--item-col", metavar="NAME", help="item id column (default: the second column)")
    p.add_argument("--rating-col", metavar="NAME", help="rating column (default: the third column)")


def build_parser():
    from . import __version__
    from .datasets import MOVIELENS
    p = _Parser(prog=PROG, formatter_class=_Formatter,
                description="Collaborative filtering the fastai way (Lesson 7), with a C core.",
                epilog="Run 'collabc COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subs = p.add_subparsers(dest="cmd", metavar="COMMAND", title="commands")

    le = _sub(subs, "lesson", "train the lesson's dot-product model on MovieLens-100k",
              "Train fastai Lesson 7's model (collab_learner(dls, n_factors, y_range=(0, 5.5)),\n"
              "fit_one_cycle(epochs, lr, wd)) on MovieLens-100k and print the epoch table. The data\n"
              "come from --data, else $COLLABC_DATA/ml-100k, else the collabc cache, else GroupLens.")
    le.add_argument("--data", metavar="DIR", help="a folder holding ml-100k/ (or the ml-100k folder itself)")
    le.add_argument("--epochs", type=positive_int, default=5, help="epochs of fit_one_cycle")
    le.add_argument("--lr", type=positive_float, default=5e-3, help="maximum learning rate")
    le.add_argument("--wd", type=nonneg_float, default=0.1, help="weight decay")
    le.add_argument("--n-factors", type=positive_int, default=50, help="latent factors per user and movie")
    le.add_argument("--bs", type=positive_int, default=64, help="batch size")
    le.add_argument("--seed", type=any_int, default=None, help="seed for the split, initialisation and order")
    le.add_argument("--rmse", action="store_true", help="also show the _rmse metric")
    le.set_defaults(func=lesson)

    tr = _sub(subs, "train", "train a model on a ratings file and export it",
              "Train a collaborative-filtering model on a file of ratings (one row per user, item and\n"
              "rating) with fit_one_cycle, print the epoch table, and export the model for\n"
              "'collabc recommend' / 'collabc evaluate' (or load_learner in Python).")
    _ratings_options(tr, "the ratings to train on")
    tr.add_argument("-o", "--output", default="export.npz", help="the exported model file")
    tr.add_argument("--valid-pct", type=open_unit, default=0.2, help="fraction held out for validation")
    tr.add_argument("--seed", type=any_int, default=None, help="seed for the split, initialisation and order")
    tr.add_argument("--n-factors", type=positive_int, default=50,
                    help="latent factors (with --use-nn: the hidden layer width when --layers is not given)")
    tr.add_argument("--y-range", type=finite_float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                    help="squash predictions into (LOW, HIGH) with a sigmoid, e.g. 0 5.5 for 1-5 stars")
    tr.add_argument("--use-nn", action="store_true", help="the neural model (EmbeddingNN) instead of the dot product")
    tr.add_argument("--layers", type=positive_int, nargs="+", metavar="N", default=None,
                    help="hidden layer sizes of the neural model, e.g. 100 50")
    tr.add_argument("--epochs", type=positive_int, default=5, help="epochs of fit_one_cycle")
    tr.add_argument("--lr", type=positive_float, default=5e-3, help="maximum learning rate")
    tr.add_argument("--wd", type=nonneg_float, default=0.1, help="weight decay")
    tr.add_argument("--bs", type=positive_int, default=64, help="batch size")
    tr.set_defaults(func=train)

    rc = _sub(subs, "recommend", "top-n items for users of an exported model",
              "Print the n items each user is predicted to rate highest (items the user rated in\n"
              "training are left out), as a table or CSV: user, rank, item, score.")
    rc.add_argument("model", help="an exported model (collabc train, learn.export())")
    rc.add_argument("users", nargs="*", metavar="USER", help="user ids as in the training data")
    rc.add_argument("--all-users", action="store_true", help="every user the model knows")
    rc.add_argument("-n", type=positive_int, default=10, help="items per user")
    rc.add_argument("--include-seen", action="store_true", help="do not leave out the items rated in training")
    rc.add_argument("--csv", metavar="PATH", default=None, help="write CSV to PATH ('-' for standard output)")
    rc.set_defaults(func=recommend)

    ev = _sub(subs, "evaluate", "loss and ranking metrics of an exported model on a ratings file",
              "Score an exported model on a file of ratings: MSE, RMSE and MAE of its predictions, and\n"
              "precision, recall, NDCG and MAP at k of its top-k recommendations (each user's items\n"
              "from the file are the relevant ones; items rated in training are not ranked). The\n"
              "columns default to the model's column names when the file has them.")
    ev.add_argument("model", help="an exported model (collabc train, learn.export())")
    _ratings_options(ev, "the ratings to score")
    ev.add_argument("-k", type=positive_int, default=10, help="cut-off of the ranking metrics")
    ev.add_argument("--threshold", type=finite_float, default=None,
                    help="count only ratings >= THRESHOLD as relevant in the ranking metrics")
    ev.add_argument("--unknown", choices=("skip", "error"), default="skip",
                    help="rows whose user or item the model does not know: leave out, or fail")
    ev.add_argument("--no-ranking", action="store_true", help="only the rating errors")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=evaluate)

    ds = _sub(subs, "datasets", "list or fetch the known data sets",
              "List the data sets collabc can download (checked by size and checksum) and where each is\n"
              "found now ($COLLABC_DATA, the cache), or fetch some and print their folders.")
    ds.add_argument("action", nargs="?", choices=("list", "fetch"), default="list", help="what to do")
    ds.add_argument("names", nargs="*", metavar="NAME", help=f"data sets to fetch: {', '.join(MOVIELENS)}")
    ds.add_argument("--force", action="store_true", help="download again even if present")
    ds.add_argument("--quiet", action="store_true", help="no progress output")
    ds.set_defaults(func=datasets)
    p.commands = {"lesson": le, "train": tr, "recommend": rc, "evaluate": ev, "datasets": ds}
    return p


def _check(p, args):
    "Usage errors argparse cannot see alone (exit 2)."
    from .datasets import MOVIELENS
    sub = p.commands[args.cmd]
    if args.cmd == "train":
        if args.y_range is not None and not args.y_range[0] < args.y_range[1]:
            sub.error(f"--y-range: LOW must be below HIGH, got {args.y_range[0]:g} {args.y_range[1]:g}")
        if args.layers is not None and not args.use_nn:
            sub.error("--layers needs --use-nn")
    if args.cmd == "recommend" and bool(args.all_users) == bool(args.users):
        sub.error("give one or more user ids, or --all-users" if not args.users
                  else "give user ids or --all-users, not both")
    if args.cmd == "datasets":
        if args.action == "list" and args.names:
            sub.error("'list' takes no names")
        if args.action == "fetch" and not args.names:
            sub.error(f"name the data sets to fetch, from {', '.join(MOVIELENS)}")
        for name in args.names:
            if name not in MOVIELENS:
                sub.error(f"unknown data set {name!r}; known: {', '.join(MOVIELENS)}")


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.cmd is None:
        p.print_help()
        return 0
    _check(p, args)
    from .external import DownloadError, UnsafeArchiveError
    from . import CollabcFileError
    try:
        return args.func(args)
    except (CliError, DownloadError, UnsafeArchiveError, CollabcFileError) as e:
        print(f"{PROG} {args.cmd}: error: {e}", file=sys.stderr)
    except BrokenPipeError:   # the reader of standard output went away (`collabc recommend ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{PROG} {args.cmd}: error: {where}{e.strerror or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG} {args.cmd}: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
