"""Which factors should `most_similar` use for a Bayesian model? Measures, on the fixed split,
the genre coherence of each item's 10 nearest items (mean Jaccard index of the genre flags in
u.item between the item and each neighbour, over the items with at least 20 and at least 100
training ratings) for the two candidates:

* side by side: the cosine of the draws' vectors concatenated, (V_1 ... V_S), which is what the
  Learner's `most_similar` uses (the same tables as its predictions and `recommend`);
* posterior mean: the cosine of the draws' average factor vector (1/S) sum_s V_s, what
  `CollabBayesFM.most_similar` uses.

It also prints how aligned the chain's draws are (mean cosine between a draw's row and the
posterior-mean row; the posterior mean's norm against a draw's) and the neighbours of three
titles. Usage: COLLABC_DATA=... python bench/bayes_similar.py [--implicit none|user|both]
[--seed 0] [--samples 200] [--burn-in 20]
"""
import argparse
import numpy as np
import pandas as pd

from bench_bayes import cpu_info, data_dir, fixed_split, metadata


def nearest(T, j, n=10):
    "The n rows of T nearest to row j by cosine (j and index 0, '#na#', left out)."
    norms = np.maximum(np.linalg.norm(T, axis=1), 1e-8)
    c = (T @ T[j]) / (norms * norms[j])
    c[[0, j]] = -np.inf
    return np.argsort(-c, kind='stable')[:n]


def jaccard(a, b):
    u = (a | b).sum()
    return (a & b).sum() / u if u else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--implicit', default='none', choices=['none', 'user', 'both'])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--samples', type=int, default=200)
    ap.add_argument('--burn-in', type=int, default=20)
    a = ap.parse_args()
    from collabc import CollabDataLoaders, bayes_learner
    model, n_cpu, simd = cpu_info()
    print(f"CPU: {model}, {n_cpu} cores, {' '.join(simd)}")
    df, n_train = fixed_split()
    dls = CollabDataLoaders.from_df(df, valid_idx=np.arange(n_train, len(df)))
    learn = bayes_learner(dls, n_factors=10, n_samples=a.samples, burn_in=a.burn_in, seed=a.seed,
                          implicit=a.implicit)
    learn.logger = lambda *args: None
    with learn.no_bar():
        learn.fit()
    draws = learn.model._current()['draw_i_weight'].astype(np.float64)    # (S, n_items, K)
    S, n_items, _ = draws.shape
    tables = {'side by side': draws.transpose(1, 0, 2).reshape(n_items, -1), 'posterior mean': draws.mean(0)}
    _, items = metadata()
    genres = items[[f'g{i}' for i in range(19)]]
    classes = list(dls.classes['movie'])
    G = np.zeros((n_items, 19), bool)
    for j, c in enumerate(classes[1:], 1):
        G[j] = genres.loc[c].to_numpy().astype(bool)
    counts = np.bincount(dls.train.x[:, 1], minlength=n_items)
    print(f"implicit={a.implicit}, seed {a.seed}, {a.samples} samples, burn-in {a.burn_in}, {S} draws")
    for min_count in (20, 100):
        rows = np.where(counts >= min_count)[0]
        near = {k: [nearest(T, j) for j in rows] for k, T in tables.items()}
        for k in tables:
            score = np.mean([np.mean([jaccard(G[j], G[i]) for i in nb]) for j, nb in zip(rows, near[k])])
            print(f"  items with >= {min_count} ratings ({rows.size}): {k:14s} top-10 genre Jaccard {score:.4f}")
        same = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(*near.values())])
        print(f"  the two top-10 lists share {same:.2f} of their items")
    unit = lambda X: X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)
    mean = tables['posterior mean']
    print(f"mean cosine of a draw's row with the posterior-mean row: {np.mean(np.sum(unit(draws) * unit(mean)[None], -1)):.3f}; "
          f"posterior-mean norm / a draw's norm: {np.linalg.norm(mean, axis=1).mean() / np.linalg.norm(draws, axis=2).mean():.3f}")
    title = pd.read_csv(f'{data_dir()}/ml-100k/u.item', sep='|', header=None, encoding='latin-1', index_col=0)[1]
    for mid in (50, 98, 1):
        j = classes.index(mid)
        for k, T in tables.items():
            print(f"{title[mid][:24]:24s} {k:14s}: " + "; ".join(title[classes[i]][:24] for i in nearest(T, j, 5)))


if __name__ == '__main__':
    main()
