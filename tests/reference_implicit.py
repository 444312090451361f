"""Float64 NumPy references of the implicit-feedback kernels (csrc/als.c, csrc/bpr.c): slow,
plain, written from the papers' formulas, used by tests/test_implicit*.py. No pytest code.

Implicit ALS (Hu, Koren & Volinsky 2008): every (user, item) pair has preference p = 1 if
observed else 0 and confidence c = 1 + alpha * w if observed else 1; the loss is
    L(X, Y) = sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + reg (sum_u |x_u|^2 + sum_i |y_i|^2).
BPR (Rendle et al. 2009): x_uij = U_u.(V_i - V_j) + b_i - b_j, loss -ln sigmoid(x_uij).
"""
import numpy as np


def dense_confidence(indptr, indices, w, n_cols, alpha):
    "(P, C): the dense preference and confidence matrices of a CSR (float64)."
    n_rows = len(indptr) - 1
    P = np.zeros((n_rows, n_cols))
    C = np.ones((n_rows, n_cols))
    for r in range(n_rows):
        cols = indices[indptr[r]:indptr[r + 1]]
        ws = np.ones(len(cols)) if w is None else np.asarray(w[indptr[r]:indptr[r + 1]], np.float64)
        P[r, cols] = 1.0
        C[r, cols] = 1.0 + alpha * ws
    return P, C


def als_loss(X, Y, P, C, reg):
    "The whole implicit-ALS loss of (X, Y), densely."
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    E = P - X @ Y.T
    return float((C * E * E).sum() + reg * ((X * X).sum() + (Y * Y).sum()))


def als_row_loss(X, Y, P, C, reg):
    "Each row's part sum_i c (p - x.y)^2 + reg |x|^2 (without the reg |Y|^2 term)."
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    E = P - X @ Y.T
    return (C * E * E).sum(1) + reg * (X * X).sum(1)


def als_exact_row(Y, cols, ws, alpha, reg):
    "The closed-form row: (Y^T C_u Y + reg I)^-1 Y^T C_u p_u."
    Y = np.asarray(Y, np.float64)
    K = Y.shape[1]
    if len(cols) == 0:
        return np.zeros(K)
    c1 = alpha * np.asarray(ws, np.float64)
    Yu = Y[cols]
    A = Y.T @ Y + reg * np.eye(K) + (Yu * c1[:, None]).T @ Yu
    b = ((1.0 + c1)[:, None] * Yu).sum(0)
    return np.linalg.solve(A, b)


def als_cg_row(x, Y, cols, ws, alpha, reg, cg_steps):
    "implicit's CG on one row, warm-started from x (float64); rows without items become 0."
    Y = np.asarray(Y, np.float64)
    x = np.array(x, np.float64)
    K = Y.shape[1]
    if len(cols) == 0:
        return np.zeros(K)
    c1 = alpha * np.asarray(ws, np.float64)
    Yu = Y[cols]
    G = Y.T @ Y + reg * np.eye(K)

    def A(v):
        return G @ v + Yu.T @ (c1 * (Yu @ v))

    b = ((1.0 + c1)[:, None] * Yu).sum(0)
    r = b - A(x)
    p = r.copy()
    rsold = r @ r
    if rsold < 1e-20:
        return x
    for _ in range(cg_steps):
        Ap = A(p)
        pap = p @ Ap
        if not pap > 0:
            break
        a = rsold / pap
        x += a * p
        r -= a * Ap
        rsnew = r @ r
        if rsnew < 1e-20:
            break
        p = r + (rsnew / rsold) * p
        rsold = rsnew
    return x


def als_half_step(X, Y, indptr, indices, w, alpha, reg, cg_steps, rows=None):
    "A copy of X (float64) with the rows (default all) solved by als_cg_row against Y."
    X = np.array(X, np.float64)
    rows = range(X.shape[0]) if rows is None else rows
    for u in rows:
        cols = indices[indptr[u]:indptr[u + 1]]
        ws = np.ones(len(cols)) if w is None else w[indptr[u]:indptr[u + 1]]
        X[u] = als_cg_row(X[u], Y, cols, ws, alpha, reg, cg_steps)
    return X


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def bpr_replay(U, V, b, triples, lrs, reg, reg_bias, opt="sgd", acc=None, eps=1e-8):
    """Applies the BPR samples (u, i, j) in order (j < 0: skipped) at learning rates lrs (one per
    sample) to float64 copies; returns (U, V, b, acc, mean loss, correct, skipped). Adagrad is
    row-wise: acc[row] += mean(g^2), row -= lr g / sqrt(acc + eps); acc = users, items, biases."""
    U, V, b = (np.array(a, np.float64) for a in (U, V, b))
    NU, NI = U.shape[0], V.shape[0]
    acc = np.zeros(NU + 2 * NI) if acc is None else np.array(acc, np.float64)
    loss, correct, skipped, used = 0.0, 0, 0, 0
    for (u, i, j), lr in zip(np.asarray(triples), lrs):
        if j < 0:
            skipped += 1
            continue
        pu, qi, qj = U[u].copy(), V[i].copy(), V[j].copy()
        x = pu @ (qi - qj) + b[i] - b[j]
        correct += x > 0
        loss += np.logaddexp(0.0, -x)
        used += 1
        z = sigmoid(-x)
        gu, gi, gj = reg * pu - z * (qi - qj), reg * qi - z * pu, reg * qj + z * pu
        gbi, gbj = reg_bias * b[i] - z, reg_bias * b[j] + z
        if opt == "sgd":
            U[u], V[i], V[j] = pu - lr * gu, qi - lr * gi, qj - lr * gj
            b[i], b[j] = b[i] - lr * gbi, b[j] - lr * gbj
        else:
            for row, g, p in ((u, gu, pu), (NU + i, gi, qi), (NU + j, gj, qj)):
                acc[row] += np.mean(g * g)
            U[u] = pu - lr * gu / np.sqrt(acc[u] + eps)
            V[i] = qi - lr * gi / np.sqrt(acc[NU + i] + eps)
            V[j] = qj - lr * gj / np.sqrt(acc[NU + j] + eps)
            acc[NU + NI + i] += gbi * gbi
            acc[NU + NI + j] += gbj * gbj
            b[i] -= lr * gbi / np.sqrt(acc[NU + NI + i] + eps)
            b[j] -= lr * gbj / np.sqrt(acc[NU + NI + j] + eps)
    return U, V, b, acc, (loss / used if used else 0.0), correct, skipped


def ranking_metrics(scores, train_sets, valid_sets, k):
    """precision@k, recall@k, NDCG@k (binary gains) and MAP@k from a dense score matrix
    (users x items), ranking every item but 0 and the user's training items, over the users
    with validation items; ties to the smaller index. Returns a dict."""
    prec, rec, ndcg, ap = [], [], [], []
    for u, rel in valid_sets.items():
        s = np.array(scores[u], np.float64)
        s[0] = -np.inf
        s[list(train_sets.get(u, ()))] = -np.inf
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        top = [i for i in order[:k] if np.isfinite(s[i])]
        hits = [1.0 if i in rel else 0.0 for i in top] + [0.0] * (k - len(top))
        n_rel = len(rel)
        prec.append(sum(hits) / k)
        rec.append(sum(hits) / n_rel)
        dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, n_rel)))
        ndcg.append(dcg / idcg)
        run, tot = 0.0, 0.0
        for r, h in enumerate(hits):
            if h:
                run += 1
                tot += run / (r + 1)
        ap.append(tot / min(k, n_rel))
    return {f"precision@{k}": np.mean(prec), f"recall@{k}": np.mean(rec),
            f"ndcg@{k}": np.mean(ndcg), f"map@{k}": np.mean(ap)}
