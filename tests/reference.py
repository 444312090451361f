"""Slow float64 NumPy reference of every collabc C kernel (house style 18).

Plain functions, no pytest: each takes NumPy arrays of any dtype, works in float64 and
returns new arrays (nothing is modified in place). Forward functions return the output;
backward functions return the gradient contribution, which the C kernels *add* into their
outputs. The formulas follow csrc/*.h and fastai (spec sections 1.9 and 1.10).
"""
import math

import numpy as np

F64 = np.float64


def _f(a):
    return np.asarray(a, dtype=F64)


# ---------------------------------------------------------------- embedding

def embedding_forward(weight, idx):
    "out[b] = weight[idx[b]]; weight (N,K), idx (B,) -> (B,K)."
    weight = _f(weight)
    idx = np.asarray(idx, dtype=np.int64)
    return weight[idx].reshape(len(idx), weight.shape[1])


def embedding_backward(dout, idx, n_rows):
    "dweight (n_rows,K) with dweight[idx[b]] += dout[b]; repeated ids add up."
    dout = _f(dout)
    dw = np.zeros((n_rows, dout.shape[1]), F64)
    np.add.at(dw, np.asarray(idx, dtype=np.int64), dout)
    return dw


# ---------------------------------------------------------------- dot product + biases

def dotbias_forward(uw, iw, ub, ib, users, items):
    "out[b] = uw[u].iw[i] + ub[u] + ib[i]; ub/ib None for the plain dot product."
    uw, iw = _f(uw), _f(iw)
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    out = (uw[users] * iw[items]).sum(axis=1)
    if ub is not None:
        out = out + _f(ub)[users]
    if ib is not None:
        out = out + _f(ib)[items]
    return out


def dotbias_backward(dout, uw, iw, users, items, has_bias=True):
    "(duw, diw, dub, dib) of dotbias_forward for upstream dout (B,); dub/dib None without bias."
    dout, uw, iw = _f(dout), _f(uw), _f(iw)
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    duw = np.zeros_like(uw)
    diw = np.zeros_like(iw)
    np.add.at(duw, users, dout[:, None] * iw[items])
    np.add.at(diw, items, dout[:, None] * uw[users])
    if not has_bias:
        return duw, diw, None, None
    dub = np.zeros(uw.shape[0], F64)
    dib = np.zeros(iw.shape[0], F64)
    np.add.at(dub, users, dout)
    np.add.at(dib, items, dout)
    return duw, diw, dub, dib


# ---------------------------------------------------------------- activations

def sigmoid(x):
    x = _f(x)
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_range_forward(x, lo, hi):
    return sigmoid(x) * (hi - lo) + lo


def sigmoid_range_backward(dout, x, lo, hi):
    s = sigmoid(x)
    return _f(dout) * (hi - lo) * s * (1.0 - s)


def relu_forward(x):
    return np.maximum(_f(x), 0.0)


def relu_backward(dout, x):
    return np.where(_f(x) > 0, _f(dout), 0.0)


# ---------------------------------------------------------------- loss

def mse_forward(pred, y):
    d = _f(pred) - _f(y)
    return float(np.mean(d * d))


def mse_backward(pred, y):
    pred, y = _f(pred), _f(y)
    return 2.0 * (pred - y) / pred.size


# ---------------------------------------------------------------- optimizers (fastai)

def adam_step(p, g, m, v, lr, mom, sqr_mom, eps, wd, step, decouple_wd=True):
    """fastai Adam, one step; returns new (p, m, v). step is the 1-based count after this
    update. weight_decay (p *= 1-lr*wd) or l2_reg (g += wd*p); average_grad with dampening;
    average_sqr_grad; debias with the current mom; eps outside the sqrt."""
    p, g, m, v = _f(p).copy(), _f(g).copy(), _f(m), _f(v)
    if wd != 0:
        if decouple_wd:
            p *= 1.0 - lr * wd
        else:
            g += wd * p
    m = mom * m + (1.0 - mom) * g
    v = sqr_mom * v + (1.0 - sqr_mom) * g * g
    debias1 = 1.0 - mom ** step
    debias2 = 1.0 - sqr_mom ** step
    p = p - (lr / debias1) * m / (np.sqrt(v / debias2) + eps)
    return p, m, v


def sgd_step(p, g, buf, lr, mom, wd, decouple_wd=True):
    """fastai SGD, one step; returns new (p, buf) (buf None for plain SGD).
    with buf: buf = mom*buf + g; p -= lr*buf (no dampening).  without: p -= lr*g."""
    p, g = _f(p).copy(), _f(g).copy()
    if wd != 0:
        if decouple_wd:
            p *= 1.0 - lr * wd
        else:
            g += wd * p
    if buf is None:
        return p - lr * g, None
    buf = mom * _f(buf) + g
    return p - lr * buf, buf


# ---------------------------------------------------------------- schedules (fastai)

def sched_cos(start, end, pos):
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def combined_cos(pos, start, middle, end, pct_start):
    """fastai combine_scheds([pct, 1-pct], [SchedCos(start, middle), SchedCos(middle, end)])
    at one position pos in [0, 1]: phase 0 for pos < pct with local pos/pct, phase 1 with
    local (pos-pct)/(1-pct)."""
    if pos < pct_start:
        return sched_cos(start, middle, pos / pct_start)
    return sched_cos(middle, end, (pos - pct_start) / (1 - pct_start))


def onecycle(pos, start, middle, end, pct_start):
    return np.array([combined_cos(float(q), start, middle, end, pct_start) for q in pos], F64)


def fit_one_cycle_scheds(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25,
                         moms=(0.95, 0.85, 0.95)):
    "Per-step (lr, mom) arrays of fastai's fit_one_cycle over n_steps batches."
    pos = np.arange(n_steps) / n_steps
    lrs = onecycle(pos, lr_max / div, lr_max, lr_max / div_final, pct_start)
    ms = onecycle(pos, moms[0], moms[1], moms[2], pct_start)
    return lrs, ms


# ---------------------------------------------------------------- dot-product model

def dot_n_params(n_users, n_items, k, has_bias):
    return (n_users + n_items) * k + ((n_users + n_items) if has_bias else 0)


def dot_split(block, n_users, n_items, k, has_bias):
    "Views (uw, iw, ub, ib) into a flat block laid out u_weight|i_weight|u_bias|i_bias."
    a = n_users * k
    b = a + n_items * k
    uw = block[:a].reshape(n_users, k)
    iw = block[a:b].reshape(n_items, k)
    if not has_bias:
        return uw, iw, None, None
    return uw, iw, block[b:b + n_users], block[b + n_users:b + n_users + n_items]


def dot_predict(params, x, n_users, n_items, k, has_bias, y_range):
    "Predictions of the dot model for the (user, item) rows of x (N,2)."
    uw, iw, ub, ib = dot_split(_f(params), n_users, n_items, k, has_bias)
    x = np.asarray(x, dtype=np.int64).reshape(-1, 2)
    z = dotbias_forward(uw, iw, ub, ib, x[:, 0], x[:, 1])
    if y_range is not None:
        return sigmoid_range_forward(z, y_range[0], y_range[1])
    return z


def dot_loss_grad(params, x, y, n_users, n_items, k, has_bias, y_range):
    "(MSE loss, dense gradient w.r.t. the flat parameter block) on the rows x (B,2), y (B,)."
    params = _f(params)
    uw, iw, ub, ib = dot_split(params, n_users, n_items, k, has_bias)
    x = np.asarray(x, dtype=np.int64).reshape(-1, 2)
    users, items = x[:, 0], x[:, 1]
    z = dotbias_forward(uw, iw, ub, ib, users, items)
    pred = sigmoid_range_forward(z, *y_range) if y_range is not None else z
    loss = mse_forward(pred, y)
    dpred = mse_backward(pred, y)
    dz = sigmoid_range_backward(dpred, z, *y_range) if y_range is not None else dpred
    duw, diw, dub, dib = dotbias_backward(dz, uw, iw, users, items, has_bias)
    parts = [duw.ravel(), diw.ravel()] + ([dub, dib] if has_bias else [])
    return loss, np.concatenate(parts)


def dot_fit_epoch(params, m, v, x, y, order, lrs, moms, *, n_users, n_items, n_factors,
                  has_bias, y_range, bs, opt, wd, n_wd, sqr_mom, eps, decouple_wd, step):
    """One epoch of the dot model, mirroring _core.dot_fit_epoch: batch j is the rows
    order[j*bs:(j+1)*bs] of x/y with lr lrs[j] and mom moms[j]; losses[j] is the batch MSE
    before its step; every step is dense over the whole block, [0, n_wd) with weight decay
    and the rest without. m is Adam's first moment or SGD's momentum buffer (None: plain SGD);
    v is Adam's second moment. Stops before the step of the first batch whose loss is not
    finite. Returns dict(params, m, v, losses, step, bad_batch) (float64 copies)."""
    params = _f(params).copy()
    m = None if m is None else _f(m).copy()
    v = None if v is None else _f(v).copy()
    x = np.asarray(x, dtype=np.int64)
    y = _f(y)
    order = np.asarray(order, dtype=np.int64)
    n_batches = len(lrs)
    losses = np.zeros(n_batches, F64)
    bad = -1
    for j in range(n_batches):
        rows = order[j * bs:(j + 1) * bs]
        with np.errstate(over="ignore", invalid="ignore"):
            loss, grad = dot_loss_grad(params, x[rows], y[rows], n_users, n_items, n_factors,
                                       has_bias, y_range)
        losses[j] = loss
        if not np.isfinite(loss):
            bad = j
            break
        step += 1
        lr, mom = float(lrs[j]), float(moms[j])
        new_p = np.empty_like(params)
        for lo_, hi_, wd_ in ((0, n_wd, wd), (n_wd, params.size, 0.0)):
            sl = slice(lo_, hi_)
            if opt == "adam":
                new_p[sl], m[sl], v[sl] = adam_step(params[sl], grad[sl], m[sl], v[sl], lr, mom,
                                                    sqr_mom, eps, wd_, step, decouple_wd)
            elif opt == "sgd":
                new_p[sl], b = sgd_step(params[sl], grad[sl], None if m is None else m[sl], lr,
                                        mom, wd_, decouple_wd)
                if m is not None:
                    m[sl] = b
            else:
                raise ValueError(opt)
        params = new_p
    return dict(params=params, m=m, v=v, losses=losses, step=step, bad_batch=bad)
