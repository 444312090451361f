"""Command line: `python -m collabc lesson` trains the lesson's dot-product model on
MovieLens-100k (downloading it, or reading $COLLABC_DATA/ml-100k) and prints the epoch table."""
import argparse
import sys
import time


def load_ml100k():
    "The lesson's ratings frame: u.data merged with the movie titles of u.item."
    import pandas as pd

    from .external import URLs, untar_data
    path = untar_data(URLs.ML_100k)
    ratings = pd.read_csv(path / "u.data", delimiter="\t", header=None,
                          names=["user", "movie", "rating", "timestamp"])
    movies = pd.read_csv(path / "u.item", delimiter="|", encoding="latin-1", usecols=(0, 1),
                         names=("movie", "title"), header=None)
    return ratings.merge(movies)


def lesson(args):
    from . import CollabDataLoaders, collab_learner, rmse, set_seed
    if args.seed is not None:
        set_seed(args.seed)
    ratings = load_ml100k()
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


def main(argv=None):
    p = argparse.ArgumentParser(prog="collabc", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    le = sub.add_parser("lesson", help="train the lesson's dot model on MovieLens-100k")
    le.add_argument("--epochs", type=int, default=5)
    le.add_argument("--lr", type=float, default=5e-3)
    le.add_argument("--wd", type=float, default=0.1)
    le.add_argument("--n-factors", type=int, default=50)
    le.add_argument("--bs", type=int, default=64)
    le.add_argument("--seed", type=int, default=None)
    le.add_argument("--rmse", action="store_true", help="also show the _rmse metric")
    args = p.parse_args(argv)
    return lesson(args)


if __name__ == "__main__":
    sys.exit(main())
