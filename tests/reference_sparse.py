"""Float64 NumPy reference of the sparse path (csrc/sparse.c): rating by rating, in the order
the blocks list and the block-sorted rows give. No pytest code here."""
import numpy as np


def fit_blocks(params, x, y, starts, blocks, lrs, nu, ni, k, has_bias, y_range, opt, wd,
               mom=0.9, sqr_mom=0.999, eps=1e-8, state=None):
    "Returns (params, losses, state) after training the listed blocks in order."
    p = params.astype(np.float64).copy()
    U = p[:nu * k].reshape(nu, k)
    I = p[nu * k:(nu + ni) * k].reshape(ni, k)
    BU = p[(nu + ni) * k:(nu + ni) * k + nu] if has_bias else None
    BI = p[(nu + ni) * k + nu:] if has_bias else None
    rows = nu + ni
    if state is None:
        state = {"m": np.zeros_like(p), "v": np.zeros_like(p), "acc": np.zeros(2 * rows),
                 "pow1": np.ones(rows), "pow2": np.ones(rows)}
    losses = []

    def update(vec, off, g, b_idx, gb, row, lr):
        if opt == "sgd":
            vec -= lr * g
            if b_idx is not None:
                p[b_idx] -= lr * gb
        elif opt == "adagrad":
            state["acc"][row] += np.mean(g * g)
            vec -= lr * g / np.sqrt(state["acc"][row] + eps)
            if b_idx is not None:
                state["acc"][rows + row] += gb * gb
                p[b_idx] -= lr * gb / np.sqrt(state["acc"][rows + row] + eps)
        else:
            state["pow1"][row] *= mom
            state["pow2"][row] *= sqr_mom
            a = lr / (1 - state["pow1"][row])
            r2 = 1 / np.sqrt(1 - state["pow2"][row])
            m, v = state["m"], state["v"]
            sl = slice(off, off + k)
            m[sl] = mom * m[sl] + (1 - mom) * g
            v[sl] = sqr_mom * v[sl] + (1 - sqr_mom) * g * g
            vec -= a * m[sl] / (np.sqrt(v[sl]) * r2 + eps)
            if b_idx is not None:
                m[b_idx] = mom * m[b_idx] + (1 - mom) * gb
                v[b_idx] = sqr_mom * v[b_idx] + (1 - sqr_mom) * gb * gb
                p[b_idx] -= a * m[b_idx] / (np.sqrt(v[b_idx]) * r2 + eps)

    for pos, b in enumerate(blocks):
        sse, n = 0.0, 0
        for r in range(starts[b], starts[b + 1]):
            u, i = int(x[r, 0]), int(x[r, 1])
            z = U[u] @ I[i] + (BU[u] + BI[i] if has_bias else 0.0)
            if y_range is not None:
                s = 1 / (1 + np.exp(-z))
                pred, dpred = s * (y_range[1] - y_range[0]) + y_range[0], (y_range[1] - y_range[0]) * s * (1 - s)
            else:
                pred, dpred = z, 1.0
            err = pred - y[r]
            sse += err * err
            n += 1
            dz = 2 * err * dpred
            gu = dz * I[i] + wd * U[u]
            gi = dz * U[u] + wd * I[i]
            gbu = dz + wd * BU[u] if has_bias else 0.0
            gbi = dz + wd * BI[i] if has_bias else 0.0
            update(U[u], u * k, gu, (nu + ni) * k + u if has_bias else None, gbu, u, lrs[pos])
            update(I[i], nu * k + i * k, gi, (nu + ni) * k + nu + i if has_bias else None, gbi, nu + i, lrs[pos])
        losses.append(sse / n if n else 0.0)
    return p, np.array(losses), state
