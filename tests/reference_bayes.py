"""Float64 NumPy reference of one Gibbs sweep of the Bayesian factorization machine
(csrc/bfm.c), written from the model alone: a dense design matrix X (every rating's row-local
and block features side by side), every conditional computed from freshly recomputed
predictions (no residual caches, no relation blocks), in the sweep's order. The random draws
come from the caller (`normal(slot)`, `gamma(slot, shape)`: the sampler's own draws for the sweep;
with the Normal-Wishart factor prior also `bartlett(slot, k, nu)`, `normals(slot, n)`: a slot's
stream), so a C sweep and this one must agree to rounding. No pytest code here."""
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


def wishart_hyper(V, group, G, k, prior, bartlett, normals, lam_slot, mu_slot):
    """The Normal-Wishart draw of every group's (mu (G, k), Lambda (G, k, k)) from the factor
    rows V (d, k), written from the conjugate posterior: W_n^-1 = I + S + (g0 n / (g0 + n))
    (xb - m0)(xb - m0)', nu_n = k + n; Lambda = M M' with M = R^-T A (R R' = W_n^-1, A the
    Bartlett factor drawn at lam_slot + g k); mu = (g0 m0 + n xb) / (g0 + n) + R A^-T z / sqrt(g0 + n),
    z the normals at mu_slot + g k."""
    _, _, g0, m0, _ = prior
    mu, Lam = np.zeros((G, k)), np.zeros((G, k, k))
    for g in range(G):
        X = V[group == g]
        n = X.shape[0]
        xb = X.mean(0) if n else np.zeros(k)
        bn = g0 + n
        Winv = np.eye(k) + (X - xb).T @ (X - xb) + (g0 * n / bn) * np.outer(xb - m0, xb - m0)
        R = np.linalg.cholesky(Winv)
        A = bartlett(lam_slot + g * k, k, k + n)
        M = np.linalg.solve(R.T, A)
        Lam[g] = M @ M.T
        y = np.linalg.solve(A.T, normals(mu_slot + g * k, k))
        mu[g] = (g0 * m0 + X.sum(0)) / bn + R @ y / np.sqrt(bn)
    return mu, Lam


def sweep(theta, hyper, X, y, group, k, prior, normal, gamma, fix_alpha=False, fix_groups=False,
          wishart=False, bartlett=None, normals=None):
    """One sweep from (theta, hyper); returns the new (theta, hyper). prior = (alpha_0, beta_0,
    gamma_0, mu_0, reg_0). Slots as csrc/bfm.h: 0 alpha, 1 w0, 2+g lambda_w, 2+G+g mu_w,
    2+2G+j w_j, 2+2G+d+gk+f lambda_V, 2+2G+d+Gk+gk+f mu_V, 2+2G+d+2Gk+jk+f V_jf. wishart: the
    factors' Normal-Wishart prior (hyper ends with Lambda_V (G, k, k); `wishart_hyper`)."""
    a0, b0, g0, m0, r0 = prior
    theta = theta.astype(np.float64).copy()
    hyper = hyper.astype(np.float64).copy()
    n, d = X.shape
    G = int(hyper.size - 1) // (2 * (1 + k) + (k * k if wishart else 0))
    y = y.astype(np.float64)
    w = theta[1:1 + d]
    V = theta[1 + d:].reshape(d, k)
    mu_w, lam_w = hyper[1:1 + G], hyper[1 + G:1 + 2 * G]
    mu_v = hyper[1 + 2 * G:1 + 2 * G + G * k].reshape(G, k)
    lam_v = hyper[1 + 2 * G + G * k:1 + 2 * G + 2 * G * k].reshape(G, k)
    Lam = hyper[1 + 2 * G + 2 * G * k:].reshape(G, k, k) if wishart else None
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
    if not fix_groups and wishart:
        mu_v[:], Lam[:] = wishart_hyper(V, group, G, k, prior, bartlett, normals, s_lv, s_mv)
        lam_v[:] = np.diagonal(Lam, axis1=1, axis2=2)
    elif not fix_groups:
        for f in range(k):
            mu_f, lam_f = mu_v[:, f].copy(), lam_v[:, f].copy()
            group_hyper(V[:, f], mu_f, lam_f, s_lv + f, s_mv + f, k)
            mu_v[:, f], lam_v[:, f] = mu_f, lam_f
    for f in range(k):
        for j in range(d):
            g = group[j]
            q = X @ V[:, f]
            h = X[:, j] * (q - X[:, j] * V[j, f])
            # the prior of V[j, f] given the rest of the row: N(mu_f - sum_{c != f} L_fc
            # (V_jc - mu_c) / L_ff, 1 / L_ff) (diagonal L: the Normal-Gamma prior)
            L = Lam[g] if wishart else np.diag(lam_v[g])
            other = np.delete(L[f] * (V[j] - mu_v[g]), f).sum()
            V[j, f] = draw(s_v + j * k + f, h, V[j, f], L[f, f], mu_v[g, f] - other / L[f, f], alpha)
    return theta, hyper


def blr_posterior(X, y, alpha, prior_prec, prior_mean):
    "Bayesian linear regression: posterior mean and covariance of the weights of A = X."
    A = alpha * X.T @ X + np.diag(prior_prec)
    cov = np.linalg.inv(A)
    return cov @ (alpha * X.T @ y + prior_prec * prior_mean), cov
