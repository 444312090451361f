"""Experiment (not a test, not part of collabc): plain Bayesian MF on the fixed split, sampled in
NumPy the BPMF way, to see what closes issue 19's plain-MF target (valid MSE <= 0.795, 3 seeds).

Biased MF, rank 10: y ~ N(w0 + b_u + b_i + <v_u, v_i>, 1/alpha). Each user's (b_u, v_u), then
each item's, is drawn jointly from its (K+1)-dimensional Gaussian conditional (block Gibbs,
Salakhutdinov & Mnih 2008), not coordinate by coordinate as collabc's C sampler (and myFM) do.
Hyperpriors per side: the bias Normal-Gamma (alpha_0 = beta_0 = gamma_0 = 1, mu_0 = 0, as
collabc), the factors either Normal-Gamma per coordinate (`--prior gamma`, collabc's model) or
Normal-Wishart over the K coordinates together (`--prior wishart`: W_0 = I, nu_0 = K,
beta_0 = 2, mu_0 = 0, BPMF's). Predictions: the mean over the sweeps after burn-in. About 0.35 s
a sweep (NumPy, one core), so 500 sweeps take about 3 minutes.

    COLLABC_DATA=/path/to/data python bench/bpmf_prototype.py --prior wishart --samples 500 --seeds 0,1,2

It led to the C sampler's `factor_prior='wishart'` (coordinate-wise, the default for plain MF);
this script stays as the block-sampler reference for that prior.

Measured 2026-12-02 with this script (docs/bayes.md, "The Normal-Wishart factor prior"),
valid MSE for seeds 0 / 1 / 2, burn-in 50:
  wishart, 500 samples:             0.7941 / 0.7932 / 0.7934
  wishart, 200 samples:             0.7954 / 0.7951 / 0.7954
  gamma (collabc's priors), 500:    seed 1 only: 0.7951
  collabc's C sampler (coordinate-wise, gamma), 500: 0.7953 / 0.7985 / 0.7955; 200: 0.8000 / 0.7994 / 0.7975
  collabc's C sampler (coordinate-wise, wishart), 500: 0.7946 / 0.7928 / 0.7957; 200: 0.7961 / 0.7961 / 0.7982
"""
import argparse
import os
import time

import numpy as np
import pandas as pd


def load(root):
    names = ['u', 'i', 'r']
    tr = pd.read_csv(f'{root}/splits/ml100k_train.tsv', sep='\t', header=None, names=names)
    va = pd.read_csv(f'{root}/splits/ml100k_valid.tsv', sep='\t', header=None, names=names)
    return tr, va


def draw_rows(rng, own, z_oth, target, n_own, alpha, mu, prec):
    "Each row's theta = (b, v) ~ N(P^-1 h, P^-1), P = alpha sum z z' + prec, h = alpha sum z t + prec mu."
    Z = np.hstack([np.ones((own.size, 1)), z_oth])
    G = np.zeros((n_own, Z.shape[1], Z.shape[1]))
    np.add.at(G, own, Z[:, :, None] * Z[:, None, :])
    h = np.zeros((n_own, Z.shape[1]))
    np.add.at(h, own, Z * target[:, None])
    P = alpha * G + prec[None]
    L = np.linalg.cholesky(P)
    mean = np.linalg.solve(P, (alpha * h + prec @ mu)[:, :, None])[:, :, 0]
    eps = rng.standard_normal(mean.shape)
    return mean + np.linalg.solve(np.transpose(L, (0, 2, 1)), eps[:, :, None])[:, :, 0]


def normal_gamma(rng, t):
    "(mu, lambda) of one coordinate's values t: alpha_0 = beta_0 = gamma_0 = 1, mu_0 = 0."
    n, m = t.size, t.mean()
    b = 1.0 + ((t - m) ** 2).sum() + n * m * m / (1.0 + n)
    lam = rng.gamma((1.0 + n) / 2, 2.0 / b)
    return rng.normal(t.sum() / (1.0 + n), 1 / np.sqrt((1.0 + n) * lam)), lam


def normal_wishart(rng, X):
    "(mu, Lambda) of the rows X (n, K): W_0 = I, nu_0 = K, beta_0 = 2, mu_0 = 0."
    from scipy.stats import wishart
    n, K = X.shape
    xb = X.mean(0)
    S = (X - xb).T @ (X - xb) / n
    bn = 2.0 + n
    Winv = np.eye(K) + n * S + (2.0 * n / bn) * np.outer(xb, xb)
    W = np.linalg.inv(Winv)
    Lam = wishart.rvs(df=K + n, scale=(W + W.T) / 2, random_state=rng)
    return rng.multivariate_normal(n * xb / bn, np.linalg.inv(bn * Lam)), Lam


def hyper(rng, T, prior):
    K1 = T.shape[1]
    mu, P = np.zeros(K1), np.zeros((K1, K1))
    mu[0], P[0, 0] = normal_gamma(rng, T[:, 0])
    if prior == 'wishart':
        mu[1:], P[1:, 1:] = normal_wishart(rng, T[:, 1:])
    else:
        for f in range(1, K1):
            mu[f], P[f, f] = normal_gamma(rng, T[:, f])
    return mu, P


def run(tr, va, K, n_samples, burn_in, prior, seed):
    rng = np.random.default_rng(seed)
    nu, ni = max(tr.u.max(), va.u.max()) + 1, max(tr.i.max(), va.i.max()) + 1
    U, I, y = tr.u.values, tr.i.values, tr.r.values.astype(float)
    Uv, Iv, yv = va.u.values, va.i.values, va.r.values.astype(float)
    w0 = y.mean()
    Tu, Ti = np.zeros((nu, K + 1)), np.zeros((ni, K + 1))
    Tu[:, 1:], Ti[:, 1:] = rng.normal(0, 0.1, (nu, K)), rng.normal(0, 0.1, (ni, K))
    acc, kept = np.zeros(yv.size), 0
    for s in range(n_samples):
        pred = w0 + Tu[U, 0] + Ti[I, 0] + (Tu[U, 1:] * Ti[I, 1:]).sum(1)
        alpha = rng.gamma((1.0 + y.size) / 2, 2.0 / (1.0 + ((y - pred) ** 2).sum()))
        prec0 = alpha * y.size + 1.0
        w0 = rng.normal(alpha * (y - pred + w0).sum() / prec0, 1 / np.sqrt(prec0))
        mu_u, P_u = hyper(rng, Tu, prior)
        mu_i, P_i = hyper(rng, Ti, prior)
        Tu = draw_rows(rng, U, Ti[I, 1:], y - w0 - Ti[I, 0], nu, alpha, mu_u, P_u)
        Ti = draw_rows(rng, I, Tu[U, 1:], y - w0 - Tu[U, 0], ni, alpha, mu_i, P_i)
        if s >= burn_in:
            acc += w0 + Tu[Uv, 0] + Ti[Iv, 0] + (Tu[Uv, 1:] * Ti[Iv, 1:]).sum(1)
            kept += 1
    p = acc / kept
    return float(np.mean((p - yv) ** 2)), float(np.mean((np.clip(p, 1, 5) - yv) ** 2))


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--prior', choices=['wishart', 'gamma'], default='wishart')
    a.add_argument('--samples', type=int, default=500)
    a.add_argument('--burn-in', type=int, default=50)
    a.add_argument('--factors', type=int, default=10)
    a.add_argument('--seeds', default='0,1,2')
    args = a.parse_args()
    root = os.environ.get('COLLABC_DATA')
    if not root:
        raise SystemExit("set COLLABC_DATA to the folder holding splits/ (the fixed split)")
    tr, va = load(root)
    for seed in (int(s) for s in args.seeds.split(',')):
        t = time.perf_counter()
        mse, clipped = run(tr, va, args.factors, args.samples, args.burn_in, args.prior, seed)
        print(f"prior={args.prior} samples={args.samples} burn_in={args.burn_in} seed={seed}: "
              f"valid MSE {mse:.4f} (clipped {clipped:.4f}), {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == '__main__':
    main()
