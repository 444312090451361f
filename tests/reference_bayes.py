"""Float64 NumPy reference of one Gibbs sweep of the Bayesian factorization machine
(csrc/bfm.c), written from the model alone: a dense design matrix X (every rating's row-local
and block features side by side), every conditional computed from freshly recomputed
predictions (no residual caches, no relation blocks), in the sweep's order. The random draws
come from the caller (`normal(slot)`, `gamma(slot, shape)`: the sampler's own draws for the sweep),
so a C sweep and this one must agree to rounding. No pytest code here."""
import numpy as np


def predict(theta, X, k):
    "FM predictions: w0 + X w + 1/2 sum_f [(X V)_f^2 - (X^2 V^2)_f]."
    d = X.shape[1]
    w0, w, V = theta[0], theta[1:1 + d], theta[1 + d:].reshape(d, k)
    XV = X @ V
    return w0 + X @ w + 0.5 * ((XV ** 2).sum(1) - ((X ** 2) @ (V ** 2)).sum(1))


def dense_design(blocks, idx, x0, n):
    """X (n, d): the row-local CSR x0 = (indptr, indices, data, d0) (or None) then each block's
    CSR (indptr, indices, data, n_feat) row idx[r, i] for rating i."""
    parts = []
    if x0 is not None:
        ptr, ind, dat, d0 = x0
        A = np.zeros((n, d0))
        for i in range(n):
            for p in range(ptr[i], ptr[i + 1]):
                A[i, ind[p]] += dat[p]
        parts.append(A)
    for r, (ptr, ind, dat, nf) in enumerate(blocks):
        B = np.zeros((ptr.size - 1, nf))
        for b in range(ptr.size - 1):
            for p in range(ptr[b], ptr[b + 1]):
                B[b, ind[p]] += dat[p]
        parts.append(B[idx[r]])
    return np.hstack(parts)


def sweep(theta, hyper, X, y, group, k, prior, normal, gamma, fix_alpha=False, fix_groups=False):
    """One sweep from (theta, hyper); returns the new (theta, hyper). prior = (alpha_0, beta_0,
    gamma_0, mu_0, reg_0). Slots as csrc/bfm.h: 0 alpha, 1 w0, 2+g lambda_w, 2+G+g mu_w,
    2+2G+j w_j, 2+2G+d+gk+f lambda_V, 2+2G+d+Gk+gk+f mu_V, 2+2G+d+2Gk+jk+f V_jf."""
    a0, b0, g0, m0, r0 = prior
    theta = theta.astype(np.float64).copy()
    hyper = hyper.astype(np.float64).copy()
    n, d = X.shape
    G = int(hyper.size - 1) // (2 * (1 + k))
    y = y.astype(np.float64)
    w = theta[1:1 + d]
    V = theta[1 + d:].reshape(d, k)
    mu_w, lam_w = hyper[1:1 + G], hyper[1 + G:1 + 2 * G]
    mu_v = hyper[1 + 2 * G:1 + 2 * G + G * k].reshape(G, k)
    lam_v = hyper[1 + 2 * G + G * k:].reshape(G, k)
    s_w, s_lv = 2 + 2 * G, 2 + 2 * G + d
    s_mv, s_v = s_lv + G * k, s_lv + 2 * G * k

    def resid():
        return predict(theta, X, k) - y

    def draw(slot, h, t_old, lam, mu, alpha):
        "the conditional of a parameter entering yhat as t h (e: residuals at t_old)"
        e = resid()
        quad = alpha * (h * h).sum() + lam
        lin = alpha * (h * (t_old * h - e)).sum() + lam * mu
        return lin / quad + normal(slot) / np.sqrt(quad)

    e = resid()
    if not fix_alpha:
        hyper[0] = gamma(0, (a0 + n) / 2.0) / ((b0 + (e * e).sum()) / 2.0)
    alpha = hyper[0]
    theta[0] = draw(1, np.ones(n), theta[0], r0, 0.0, alpha)

    def group_hyper(vals, mu, lam, lam_slot, mu_slot, stride):
        for g in range(G):
            sel = vals[group == g]
            shape = (a0 + sel.size) / 2.0
            rate = (b0 + ((sel - mu[g]) ** 2).sum()) / 2.0
            lam[g] = gamma(lam_slot + g * stride, shape) / rate
        for g in range(G):
            sel = vals[group == g]
            quad = lam[g] * (g0 + sel.size)
            lin = lam[g] * (g0 * m0 + sel.sum())
            mu[g] = lin / quad + normal(mu_slot + g * stride) / np.sqrt(quad)

    if not fix_groups:
        group_hyper(w, mu_w, lam_w, 2, 2 + G, 1)
    for j in range(d):
        g = group[j]
        w[j] = draw(s_w + j, X[:, j], w[j], lam_w[g], mu_w[g], alpha)
    if not fix_groups:
        for f in range(k):
            mu_f, lam_f = mu_v[:, f].copy(), lam_v[:, f].copy()
            group_hyper(V[:, f], mu_f, lam_f, s_lv + f, s_mv + f, k)
            mu_v[:, f], lam_v[:, f] = mu_f, lam_f
    for f in range(k):
        for j in range(d):
            g = group[j]
            q = X @ V[:, f]
            h = X[:, j] * (q - X[:, j] * V[j, f])
            V[j, f] = draw(s_v + j * k + f, h, V[j, f], lam_v[g, f], mu_v[g, f], alpha)
    return theta, hyper


def blr_posterior(X, y, alpha, prior_prec, prior_mean):
    "Bayesian linear regression: posterior mean and covariance of the weights of A = X."
    A = alpha * X.T @ X + np.diag(prior_prec)
    cov = np.linalg.inv(A)
    return cov @ (alpha * X.T @ y + prior_prec * prior_mean), cov
