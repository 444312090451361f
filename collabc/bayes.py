"""Bayesian factorization machines fitted by Gibbs sampling (issue 19), standalone for now.

`BayesianFM` is the sampler over grouped sparse features (row-local features and relation
blocks, see csrc/bfm.h); `bayes_fm(dls, ...)` builds one from collabc's data: the user and item
one-hots as the first groups, optionally the items each user rated and the users who rated each
item (SVD++-style implicit features, 1/sqrt(count)), the rating's day, and user and item
metadata. The sampler keeps its state between `run_sweeps(n)` calls, so a training loop can run
it in short segments; predictions and parameters are running means over the sweeps after
burn-in.
"""
import numbers
import os
import signal
import threading
import time

import numpy as np
import pandas as pd

from . import _core
from .nn import Module
from .paths import TrainingPath
from .seed import get_rng

__all__ = ["BayesianFM", "CollabBayesFM", "bayes_fm", "BayesModel", "BayesPath"]

_FIX = {'alpha': 1, 'groups': 2}


# ---------------------------------------------------------------------------------------------
# sparse helpers (CSR as (indptr int64, indices int32, data float32, n_cols))

def _csr(indptr, indices, data, n_cols, name):
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0 or indptr[-1] != indices.size \
            or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: indptr must rise from 0 to len(indices)")
    if data.shape != indices.shape:
        raise ValueError(f"{name}: data and indices must have the same length")
    if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
        raise ValueError(f"{name}: column indices must lie in [0, {n_cols})")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name}: values must be finite")
    if indices.size:
        rows = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
        key = np.sort(rows * int(n_cols) + indices)
        if np.any(key[1:] == key[:-1]):
            r = int(key[1:][key[1:] == key[:-1]][0] // int(n_cols))
            raise ValueError(f"{name}: row {r} lists a column twice (sum the duplicates first)")
    return indptr, indices, data, int(n_cols)


def _as_csr(m, name):
    "A CSR from a (indptr, indices, data, n_cols) tuple or anything with .indptr/.indices/.data/.shape."
    if hasattr(m, 'indptr') and hasattr(m, 'shape'):
        m = m.tocsr() if hasattr(m, 'tocsr') else m
        if hasattr(m, 'sum_duplicates'):
            m = m.copy()
            m.sum_duplicates()
        return _csr(m.indptr, m.indices, m.data, m.shape[1], name)
    if not isinstance(m, (tuple, list)) or len(m) != 4:
        raise TypeError(f"{name} must be a CSR matrix or a tuple (indptr, indices, data, n_cols)")
    return _csr(*m, name=name)


def _transpose(indptr, indices, data, n_cols):
    "The CSC of a CSR (rows of each column in increasing order)."
    n_rows = indptr.size - 1
    rows = np.repeat(np.arange(n_rows, dtype=np.int32), np.diff(indptr))
    order = np.argsort(indices, kind='stable')
    tptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n_cols), out=tptr[1:])
    return tptr, np.ascontiguousarray(rows[order]), np.ascontiguousarray(data[order])


def _group(idx, M):
    "Ratings grouped by block row: (gptr [M+1], grow [n]) with rows in increasing order."
    gptr = np.zeros(M + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=M), out=gptr[1:])
    return gptr, np.argsort(idx, kind='stable').astype(np.int32)


def _rows_from_lists(lists, n_cols, values=None):
    "CSR from a list of index arrays (one per row), values 1 or the given per-row values."
    lens = np.fromiter((len(a) for a in lists), dtype=np.int64, count=len(lists))
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    indices = np.concatenate([np.asarray(a, dtype=np.int32) for a in lists]) if lists else \
        np.zeros(0, np.int32)
    data = np.ones(indices.size, np.float32) if values is None else \
        np.repeat(np.asarray(values, np.float32), lens)
    return indptr, indices.astype(np.int32), data, n_cols


def _hstack(parts, n_rows):
    "Column-wise concatenation of CSRs with the same rows."
    if not parts:
        return np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), 0
    off, cols, vals, rows = 0, [], [], []
    for ptr, ind, dat, nc in parts:
        rows.append(np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(ptr)))
        cols.append(ind.astype(np.int64) + off)
        vals.append(dat)
        off += nc
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    order = np.lexsort((c, r))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    return indptr, c[order].astype(np.int32), v[order].astype(np.float32), off


def _default_threads(n_threads):
    if n_threads is None:
        return max(1, min(os.cpu_count() or 1, 64))
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    return int(n_threads)


def _int_arg(v, name, lo):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


# ---------------------------------------------------------------------------------------------
# the sampler

class BayesianFM:
    """A factorization machine fitted by Gibbs sampling over grouped sparse features.

    y: (n,) ratings. blocks: relation blocks, each a CSR (M_r rows x D_r features); idx: (R, n)
    the block row of each rating in each block. x: the row-local features (n x d0 CSR) or None.
    group: (d,) the group of every feature, d = d0 + sum D_r, row-local features first, then each
    block's in order. eval_rows: (x, idx) of rows whose predictions are averaged during sampling.
    Prior as myFM: alpha, lambda ~ Gamma(alpha_0/2, beta_0/2), mu ~ N(mu_0, 1/(gamma_0 lambda)),
    w0 ~ N(0, 1/reg_0); V starts at N(0, init_std^2), w at 0, alpha at 1, lambda at 1e-5.
    factor_prior: 'gamma' (the above for every coordinate of the factors, myFM's and libFM's) or
    'wishart' (BPMF's: a group's factor rows V[j] ~ N(mu, Lambda^-1) over the n_factors
    coordinates together, Lambda ~ Wishart(nu_0 = n_factors, W_0 = I), mu ~ N(mu_0,
    (gamma_0 Lambda)^-1); csrc/bfm.h). The linear weights are Normal-Gamma either way.
    fix: None, or 'alpha' and/or 'groups' to keep those hyperparameters at `hyper`'s values.
    """

    def __init__(self, y, blocks=(), idx=None, x=None, group=None, *, n_factors=10,
                 n_samples=500, burn_in=50, seed=None, n_threads=None, keep_samples=False,
                 init_std=0.1, alpha_0=1.0, beta_0=1.0, gamma_0=1.0, mu_0=0.0, reg_0=1.0,
                 eval_rows=None, group_names=None, fix=None, hyper=None, factor_prior='gamma'):
        self.n_factors = _int_arg(n_factors, 'n_factors', 0)
        self.n_samples = _int_arg(n_samples, 'n_samples', 1)
        self.burn_in = _int_arg(burn_in, 'burn_in', 0)
        if self.burn_in >= self.n_samples:
            raise ValueError(f"burn_in ({burn_in}) must be smaller than n_samples ({n_samples})")
        self.n_threads = _default_threads(n_threads)
        self.keep_samples = bool(keep_samples)
        prior = (alpha_0, beta_0, gamma_0, mu_0, reg_0)
        for name, v in zip(('alpha_0', 'beta_0', 'gamma_0', 'mu_0', 'reg_0'), prior):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if min(alpha_0, beta_0, gamma_0) <= 0 or reg_0 < 0:
            raise ValueError("alpha_0, beta_0 and gamma_0 must be > 0 and reg_0 >= 0")
        self.prior = tuple(float(v) for v in prior)
        if not isinstance(init_std, numbers.Real) or not np.isfinite(init_std) or init_std < 0:
            raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
        flags = 0
        for f in ([fix] if isinstance(fix, str) else (fix or ())):
            if f not in _FIX:
                raise ValueError(f"fix must hold 'alpha' and/or 'groups', got {f!r}")
            flags |= _FIX[f]
        self.flags = flags
        if factor_prior not in ('gamma', 'wishart'):
            raise ValueError(f"factor_prior must be 'gamma' or 'wishart', got {factor_prior!r}")
        self.factor_prior = factor_prior

        y = np.asarray(y)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"y must be a non-empty 1-d array of ratings, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"y must hold numbers, got dtype {y.dtype}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y holds NaN or infinite ratings")
        self.y = np.ascontiguousarray(y, dtype=np.float32)
        n = self.y.size
        self.blocks = []
        for r, b in enumerate(blocks):
            ptr, ind, dat, nc = _as_csr(b, f"blocks[{r}]")
            self.blocks.append((ptr, ind, dat) + _transpose(ptr, ind, dat, nc)
                               + (np.array([nc], np.int64),))
        R = len(self.blocks)
        self.d0 = 0
        self.x = None
        if x is not None:
            self.x = _as_csr(x, 'x')
            if self.x[0].size != n + 1:
                raise ValueError(f"x must have one row per rating ({n}), got {self.x[0].size - 1}")
            self.d0 = self.x[3]
        self.d = self.d0 + sum(int(b[6][0]) for b in self.blocks)
        self.idx = self._check_idx(idx, n, 'idx')
        if R and np.any(self.idx[0, 1:] < self.idx[0, :-1]):
            # the sampler's passes over the first block's rows read the ratings in order when
            # they are grouped by it (the users): a private copy of the rows in that order
            order = np.argsort(self.idx[0], kind='stable')
            self.y = np.ascontiguousarray(self.y[order])
            self.idx = np.ascontiguousarray(self.idx[:, order])
            if self.x is not None:
                ptr, ind, dat, nc = self.x
                lens = np.diff(ptr)[order]
                take = np.repeat(ptr[:-1][order] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) \
                    + np.arange(lens.sum())
                nptr = np.zeros(n + 1, np.int64)
                np.cumsum(lens, out=nptr[1:])
                self.x = (nptr, np.ascontiguousarray(ind[take]), np.ascontiguousarray(dat[take]), nc)
        if group is None:
            group = np.zeros(self.d, np.int32)
        group = np.asarray(group)
        if group.shape != (self.d,) or not np.issubdtype(group.dtype, np.integer) or \
                (group.size and group.min() < 0):
            raise ValueError(f"group must be {self.d} non-negative integers (one per feature)")
        self.group = np.ascontiguousarray(group, dtype=np.int32)
        self.n_groups = int(self.group.max()) + 1 if self.group.size else 1
        self.group_names = list(group_names) if group_names is not None else \
            [f"group{g}" for g in range(self.n_groups)]
        if len(self.group_names) != self.n_groups:
            raise ValueError(f"group_names must name {self.n_groups} groups")
        gptr, grow = [], []
        for r, b in enumerate(self.blocks):
            p, g = _group(self.idx[r], b[0].size - 1)
            gptr.append(p)
            grow.append(g)
        xt = _transpose(*self.x) if self.x is not None else (None, None, None)
        self._train = (self.y,) + (self.x[:3] if self.x is not None else (None, None, None)) + xt + (
            self.idx, np.concatenate(gptr) if gptr else np.zeros(0, np.int64),
            np.ascontiguousarray(np.stack(grow)) if grow else np.zeros((0, n), np.int32))
        self._blocks = tuple(self.blocks)

        K, d, G = self.n_factors, self.d, self.n_groups
        self.n_params = 1 + d * (1 + K)
        self.n_hyper = 1 + 2 * G * (1 + K) + (G * K * K if factor_prior == 'wishart' else 0)
        if seed is None:
            seed = int(get_rng().integers(0, 2**63 - 1))
        self.seed = _int_arg(seed, 'seed', 0)
        rng = np.random.default_rng(self.seed)
        self.theta = np.zeros(self.n_params)
        self.theta[1 + d:] = rng.normal(0.0, float(init_std), d * K)
        if hyper is None:
            hyper = np.empty(self.n_hyper)
            hyper[0] = 1.0
            hyper[1:1 + G] = 0.0
            hyper[1 + G:1 + 2 * G] = 1e-5
            hyper[1 + 2 * G:1 + 2 * G + G * K] = 0.0
            hyper[1 + 2 * G + G * K:1 + 2 * G + 2 * G * K] = 1e-5
            if factor_prior == 'wishart':
                hyper[1 + 2 * G + 2 * G * K:] = (1e-5 * np.eye(K))[None].repeat(G, 0).ravel()
        self.hyper = np.array(hyper, dtype=np.float64)
        if self.hyper.shape != (self.n_hyper,) or not np.all(np.isfinite(self.hyper)) or self.hyper[0] <= 0:
            raise ValueError(f"hyper must be {self.n_hyper} finite numbers with hyper[0] (alpha) > 0")
        self.theta_mean = np.zeros(self.n_params)
        self.hyper_mean = np.zeros(self.n_hyper)
        # the sampler's residual, q and block caches, kept between calls (counters[2]: valid)
        self.cache = np.zeros(2 * n + sum((b[0].size - 1) * (1 + 2 * K) for b in self.blocks))
        self.counters = np.zeros(4, np.int64)   # sweeps done, kept, cache valid, resume factor
        self.samples = None
        self.train_rmse = np.zeros(0)
        self._eval = None
        self.eval_mean = np.zeros(0)
        if eval_rows is not None:
            self._set_eval(*eval_rows)

    # ------------------------------------------------------------------ rows
    def _check_idx(self, idx, n, name):
        R = len(self.blocks)
        if idx is None:
            if R:
                raise ValueError(f"{name}: the block rows of every rating are needed ({R} blocks)")
            return np.zeros((0, n), np.int32)
        idx = np.asarray(idx)
        if idx.shape != (R, n) or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array of shape ({R}, {n}), got "
                             f"{idx.dtype} {idx.shape}")
        for r, b in enumerate(self.blocks):
            M = b[0].size - 1
            if n and (idx[r].min() < 0 or idx[r].max() >= M):
                raise IndexError(f"{name}[{r}] must lie in [0, {M}) (the rows of block {r})")
        return np.ascontiguousarray(idx, dtype=np.int32)

    def rows(self, idx, x=None):
        "The (x_ptr, x_col, x_val, idx) tuple of new rows: block rows idx (R, n), row-local x."
        idx = np.asarray(idx)
        n = idx.shape[1] if idx.ndim == 2 else (idx.shape[0] if idx.ndim == 1 and not self.blocks else -1)
        if n < 0:
            raise ValueError(f"idx must have shape ({len(self.blocks)}, n), got {idx.shape}")
        idx = self._check_idx(idx.reshape(len(self.blocks), n), n, 'idx')
        if self.d0:
            if x is None:
                raise ValueError(f"x: the rows' row-local features (n x {self.d0}) are needed")
            x = _as_csr(x, 'x')
            if x[0].size != n + 1 or x[3] != self.d0:
                raise ValueError(f"x must be {n} x {self.d0}, got {x[0].size - 1} x {x[3]}")
            return x[:3] + (idx,)
        return (None, None, None, idx)

    def _set_eval(self, idx, x=None):
        if self.counters[1] > 0:
            raise RuntimeError("eval rows must be set before the first kept sweep")
        self._eval = self.rows(idx, x)
        self.eval_mean = np.zeros(self._eval[3].shape[1])

    # ------------------------------------------------------------------ sampling
    @property
    def sweeps_done(self):
        "Sweeps run so far (burn-in included)."
        return int(self.counters[0])

    @property
    def n_kept(self):
        "Sweeps averaged in so far (those after burn-in)."
        return int(self.counters[1])

    def run_sweeps(self, n, sigint=True):
        """Runs n Gibbs sweeps from the current state; returns their training RMSE (n,) float64.

        The state (parameters, hyperparameters, running means, sweep counter) stays in the object,
        so calling run_sweeps(a) then run_sweeps(b) gives exactly run_sweeps(a + b). Called from
        the main thread, the sampler runs in a worker thread and Ctrl-C stops it after the factor
        in progress (a fraction of a sweep; the call's own SIGINT handler asks it to), then
        KeyboardInterrupt is raised with the sweeps completed recorded; the next call resumes inside
        the interrupted sweep, the chain unchanged bit for bit. A second Ctrl-C raises at once
        (the worker still ends after its factor). sigint=False leaves Ctrl-C to the caller (a
        training loop that stops between its calls): the sweeps run in the calling thread."""
        n = _int_arg(n, 'n', 0)
        rmse = np.zeros(n)
        if n == 0:
            return rmse
        if self.keep_samples:
            need = self.n_kept + n
            if self.samples is None or self.samples.shape[0] < need:
                grown = np.zeros((max(need, self.n_samples - self.burn_in), self.n_params))
                if self.samples is not None:
                    grown[:self.samples.shape[0]] = self.samples
                self.samples = grown
        stop = np.zeros(1, np.int64)
        done, error = [], []

        def call():
            try:
                done.append(_core.bfm_run(
                    rmse, self.theta, self.hyper, self.theta_mean, self.hyper_mean,
                    self.eval_mean if self._eval is not None else None, self.cache,
                    self.counters, self.n_factors, self.d0, self.group, self._blocks, self._train,
                    self._eval, self.prior, n, self.burn_in, self.seed, self.flags,
                    self.n_threads, self.samples, stop, self.factor_prior == 'wishart'))
            except BaseException as e:   # re-raised in the calling thread
                error.append(e)

        try:
            previous = signal.getsignal(signal.SIGINT) \
                if threading.current_thread() is threading.main_thread() else None
        except ValueError:       # not the main interpreter: no signal handling here
            previous = None
        if previous is None or not sigint:   # another thread, a handler not set from Python,
            call()                           # or the caller's own Ctrl-C handling
        else:
            # the first Ctrl-C only asks the worker to stop (the handler never raises inside
            # Thread.start or join, so the worker is always waited for); a second one raises
            interrupts = []

            def on_sigint(signum, frame):
                stop[0] = 1
                interrupts.append(signum)
                if len(interrupts) > 1:
                    raise KeyboardInterrupt

            previous = signal.signal(signal.SIGINT, on_sigint)
            try:
                worker = threading.Thread(target=call, name='collabc-bayes', daemon=True)
                worker.start()
                while worker.is_alive():
                    worker.join(0.05)
            finally:
                signal.signal(signal.SIGINT, previous)
            if interrupts:
                self._record(rmse, done)
                raise KeyboardInterrupt
        if error:
            raise error[0]
        return self._record(rmse, done)

    def _record(self, rmse, done):
        rmse = rmse[:int(done[0]) if done else 0]
        self.train_rmse = np.concatenate([self.train_rmse, rmse])
        return rmse

    def run_for(self, seconds, max_sweeps=None):
        """Runs whole sweeps for about `seconds` (at least one; at most max_sweeps, default the
        sweeps left to n_samples); returns their training RMSE. For a training loop's segments."""
        if not isinstance(seconds, numbers.Real) or not seconds > 0:
            raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
        left = max(0, self.n_samples - self.sweeps_done) if max_sweeps is None else \
            _int_arg(max_sweeps, 'max_sweeps', 0)
        out, t0 = [], time.perf_counter()
        while left > 0:
            t = time.perf_counter()
            out.append(self.run_sweeps(1 if not out else min(left, step)))
            left -= out[-1].size
            per = (time.perf_counter() - t) / out[-1].size
            remaining = seconds - (time.perf_counter() - t0)
            if remaining < per:
                break
            step = max(1, int(remaining / per))
        return np.concatenate(out) if out else np.zeros(0)

    def fit(self, n=None):
        "Runs the sweeps left to reach n_samples (or n more); returns their training RMSE."
        return self.run_sweeps(max(0, self.n_samples - self.sweeps_done) if n is None else n)

    # ------------------------------------------------------------------ predictions
    def _need_kept(self):
        if self.n_kept == 0:
            raise RuntimeError(f"no sample is averaged yet: run at least burn_in + 1 = "
                               f"{self.burn_in + 1} sweeps (done: {self.sweeps_done})")

    def predict_rows(self, rows, how='auto'):
        """Predictions for rows (from `rows()`): the mean over the kept samples.

        how: 'samples' averages the stored samples (keep_samples=True); 'mean' plugs the
        posterior-mean parameters in (exact for the linear terms, an approximation of the
        average of the factor terms, poor with implicit features); 'auto' is 'samples' when they
        are stored, else 'mean'; 'current' is the chain's current sample alone (burn-in
        monitoring: needs no kept sample)."""
        if how not in ('auto', 'samples', 'mean', 'current'):
            raise ValueError(f"how must be 'auto', 'samples', 'mean' or 'current', got {how!r}")
        if how == 'current':
            out = np.zeros(rows[3].shape[1])
            if out.size:
                _core.bfm_predict(out, self.theta.reshape(1, -1), self.n_factors, self.d0,
                                  self.group, self._blocks, rows, self.n_threads)
            return out
        self._need_kept()
        if how == 'samples' and self.samples is None:
            raise ValueError("how='samples' needs keep_samples=True")
        n = rows[3].shape[1]
        out = np.zeros(n)
        if n == 0:
            return out
        if how != 'mean' and self.samples is not None:
            thetas = np.ascontiguousarray(self.samples[:self.n_kept])
        else:
            thetas = self.theta_mean.reshape(1, -1)
        _core.bfm_predict(out, thetas, self.n_factors, self.d0, self.group, self._blocks, rows,
                          self.n_threads)
        return out

    def eval_predictions(self):
        "The running mean over the kept sweeps of the eval rows' predictions (exact sample average)."
        self._need_kept()
        if self._eval is None:
            raise ValueError("no eval rows were given")
        return self.eval_mean.copy()

    # ------------------------------------------------------------------ state
    _STATE = ('theta', 'hyper', 'theta_mean', 'hyper_mean', 'eval_mean', 'cache', 'counters',
              'train_rmse')

    def get_state(self):
        """The sampler's state as a dict of NumPy arrays (copies): parameters, hyperparameters,
        running means, caches, counters, the training RMSE so far, the seed, and the kept samples
        when stored. `set_state` on a model built from the same data and options continues the
        chain exactly."""
        st = {k: getattr(self, k).copy() for k in self._STATE}
        st['seed'] = np.array(self.seed, np.uint64)
        if self.samples is not None:
            st['samples'] = self.samples[:self.n_kept].copy()
        return st

    def set_state(self, state):
        "Restores a `get_state()` dict (shapes and dtypes checked)."
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from get_state(), got {type(state).__name__}")
        missing = [k for k in self._STATE + ('seed',) if k not in state]
        if missing:
            raise KeyError(f"state lacks {missing}")
        new = {}
        for k in self._STATE:
            cur, a = getattr(self, k), np.asarray(state[k])
            if k != 'train_rmse' and (a.shape != cur.shape or a.dtype != cur.dtype):
                raise ValueError(f"state[{k!r}] is {a.dtype} {a.shape}, this model needs "
                                 f"{cur.dtype} {cur.shape} (built from other data or options?)")
            new[k] = np.array(a, dtype=cur.dtype)
        c = new['counters']
        if c[2] not in (0, 1) or c[1] > c[0] or not 0 <= c[3] < max(self.n_factors, 1):
            raise ValueError("state['counters'] is inconsistent")
        for k, a in new.items():
            setattr(self, k, a)
        self.seed = int(np.asarray(state['seed']))
        self.samples = None
        if 'samples' in state:
            smp = np.asarray(state['samples'], np.float64)
            if smp.ndim != 2 or smp.shape[1] != self.n_params:
                raise ValueError(f"state['samples'] must have {self.n_params} columns")
            self.samples = np.ascontiguousarray(smp)
            self.keep_samples = True

    # ------------------------------------------------------------------ parameters
    def _split(self, theta):
        d, K = self.d, self.n_factors
        return theta[0], theta[1:1 + d], theta[1 + d:].reshape(d, K)

    @property
    def w0(self):
        "Posterior mean of the global bias."
        self._need_kept()
        return float(self.theta_mean[0])

    @property
    def w(self):
        "Posterior means of the linear weights (d,)."
        self._need_kept()
        return self._split(self.theta_mean)[1]

    @property
    def V(self):
        "Posterior means of the factors (d, n_factors)."
        self._need_kept()
        return self._split(self.theta_mean)[2]

    def hyper_means(self):
        """Posterior means of the hyperparameters: dict alpha, mu_w, lambda_w, mu_V, lambda_V
        (the factors' precisions per coordinate) and Lambda_V (G, K, K), the factors' precision
        matrices (diagonal, lambda_V, with factor_prior='gamma')."""
        self._need_kept()
        return self._hyper_dict(self.hyper_mean)

    def _hyper_dict(self, h):
        G, K = self.n_groups, self.n_factors
        lam_v = h[1 + 2 * G + G * K:1 + 2 * G + 2 * G * K].reshape(G, K)
        Lam = h[1 + 2 * G + 2 * G * K:].reshape(G, K, K) if self.factor_prior == 'wishart' else \
            lam_v[:, :, None] * np.eye(K)[None]
        return {'alpha': float(h[0]), 'mu_w': h[1:1 + G], 'lambda_w': h[1 + G:1 + 2 * G],
                'mu_V': h[1 + 2 * G:1 + 2 * G + G * K].reshape(G, K), 'lambda_V': lam_v,
                'Lambda_V': Lam}


# ---------------------------------------------------------------------------------------------
# collaborative filtering: the builder from CollabDataLoaders

def _days(col, name):
    "Days since the epoch (int64) of a date column: datetime64, or integer Unix seconds."
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if col.isna().any():
            raise ValueError(f"date_name={name!r}: the column has missing dates")
        return (col.dt.tz_localize(None) if getattr(col.dt, 'tz', None) is not None else col) \
            .to_numpy(dtype='datetime64[D]').astype(np.int64)
    if pd.api.types.is_integer_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return np.floor_divide(col.to_numpy(dtype=np.int64), 86400)
    raise TypeError(f"date_name={name!r}: the column must hold dates (datetime64) or integer Unix "
                    f"timestamps in seconds, got dtype {col.dtype}"
                    + (" (convert strings with pd.to_datetime)" if col.dtype == object else ""))


def _meta_features(meta, classes, side):
    """The metadata of each class as (CSR [n_classes x n_feat], groups [n_feat], group names,
    feature names). Categorical columns (object, category, bool, string) become one-hot features,
    one group per column; numeric columns one feature each (0/1 columns as they are, others
    standardised), together in one group."""
    arg = f"{side}_meta"
    if not isinstance(meta, pd.DataFrame):
        raise TypeError(f"{arg} must be a pandas DataFrame indexed by the raw {side} ids, got "
                        f"{type(meta).__name__}")
    if not meta.index.is_unique:
        raise ValueError(f"{arg}: its index (the {side} ids) has duplicates")
    if meta.shape[1] == 0:
        raise ValueError(f"{arg} has no columns")
    ids = list(classes[1:])
    missing = [i for i in ids if i not in meta.index]
    if missing:
        raise KeyError(f"{arg} has no row for {len(missing)} {side}s of the training data, e.g. "
                       f"{missing[:5]}")
    rows = meta.loc[ids]
    n = len(classes)
    parts, groups, gnames, fnames = [], [], [], []
    numeric = []
    for c in meta.columns:
        col = rows[c]
        if col.isna().any():
            bad = col.index[col.isna().to_numpy()][:5].tolist()
            raise ValueError(f"{arg}: column {c!r} has missing values (NaN) for {side}s {bad}")
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            v = col.to_numpy(dtype=np.float64)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{arg}: column {c!r} has infinite values")
            if not np.isin(v, (0.0, 1.0)).all():
                sd = v.std()
                if sd == 0:
                    raise ValueError(f"{arg}: numeric column {c!r} is constant")
                v = (v - v.mean()) / sd
            numeric.append((c, v))
            continue
        codes, uniq = pd.factorize(col, sort=True)
        lists = [[]] + [[int(k)] for k in codes]
        parts.append(_rows_from_lists(lists, len(uniq)))
        g = len(gnames)
        gnames.append(f"{side}_{c}")
        groups.append(np.full(len(uniq), g, np.int32))
        fnames += [f"{c}={u}" for u in uniq]
    if numeric:
        vals = np.zeros((n, len(numeric)))
        for t, (c, v) in enumerate(numeric):
            vals[1:, t] = v
        nz = vals != 0
        lists = [np.flatnonzero(nz[r]) for r in range(n)]
        ptr, ind, _, _ = _rows_from_lists(lists, len(numeric))
        parts.append((ptr, ind, vals[nz].astype(np.float32), len(numeric)))
        groups.append(np.full(len(numeric), len(gnames), np.int32))
        gnames.append(f"{side}_numeric")
        fnames += [c for c, _ in numeric]
    csr = _hstack(parts, n)
    return csr, (np.concatenate(groups) if groups else np.zeros(0, np.int32)), gnames, fnames


class CollabBayesFM(BayesianFM):
    """A `BayesianFM` over collabc's encoded (user, item) pairs; built by `bayes_fm(dls, ...)`.

    Block 0 is the user side (one-hot user, optionally the items the user rated and metadata),
    block 1 the item side; row-local features are the rating's day (`date_name`) and, with
    `user_day`, the (user, day) pair (timeSVD++'s per-user day effect, Koren 2009). The validation
    rows of `dls` are watched: `valid_preds()` is their exact average over the kept samples."""
    _ud_keys = None    # sorted user * n_days + day code of the (user, day) features, or None

    def predict(self, x, dates=None, how='auto'):
        """Averaged predictions (n,) float64 for encoded pairs x (n, 2) [user index, item index].

        The validation pairs of dls (same rows in the same order) get the running mean over the
        kept samples; other pairs average the stored samples (keep_samples=True) or, without them,
        use the posterior-mean parameters (how='mean'). dates: the rows' dates when the model uses
        them (date_name)."""
        x = self._check_x(x)
        if how == 'auto' and self._eval is not None and self.n_kept and \
                x.shape[0] == self._valid_x.shape[0] and np.array_equal(x, self._valid_x) and \
                (self._date_cats is None or dates is None or
                 np.array_equal(self._day_codes(dates, x.shape[0]), self._valid_days)):
            return self.eval_predictions()
        return self.predict_rows(self._pair_rows(x, dates), how=how)

    def _check_x(self, x):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != 2 or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"x must be an integer array of (user index, item index) pairs of "
                             f"shape (n, 2), got {x.dtype} {x.shape}")
        for c, (what, size) in enumerate((('user', self.n_users), ('item', self.n_items))):
            if x.shape[0] and (x[:, c].min() < 0 or x[:, c].max() >= size):
                raise IndexError(f"x[:, {c}] holds {what} indices outside [0, {size})")
        return np.ascontiguousarray(x, dtype=np.int32)

    def _day_codes(self, dates, n):
        days = _days(pd.Series(dates), 'dates') if not isinstance(dates, pd.Series) else _days(dates, 'dates')
        if days.shape[0] != n:
            raise ValueError(f"dates must have one entry per row ({n}), got {days.shape[0]}")
        pos = np.searchsorted(self._date_cats, days)
        pos = np.minimum(pos, len(self._date_cats) - 1)
        return np.where(self._date_cats[pos] == days, pos, -1)

    def _ud_codes(self, users, codes):
        "The (user, day) feature of each row (-1: a pair the training rows do not hold)."
        if self._ud_keys is None or not self._ud_keys.size:
            return np.full(codes.shape[0], -1, np.int64)
        key = np.asarray(users, np.int64) * len(self._date_cats) + codes
        pos = np.minimum(np.searchsorted(self._ud_keys, key), self._ud_keys.size - 1)
        return np.where((codes >= 0) & (self._ud_keys[pos] == key), pos, -1)

    def _date_csr(self, codes, users=None):
        """The row-local features (CSR): the day one-hot (codes >= 0) and, when the model has
        them, the (user, day) one-hot after it."""
        nd = len(self._date_cats)
        cols = [codes]
        if self._ud_keys is not None:
            ud = self._ud_codes(users, codes)
            cols.append(np.where(ud >= 0, nd + ud, -1))
        cols = np.stack(cols, 1)
        have = cols >= 0
        ptr = np.zeros(codes.size + 1, np.int64)
        np.cumsum(have.sum(1), out=ptr[1:])
        width = nd + (0 if self._ud_keys is None else self._ud_keys.size)
        return (ptr, cols[have].astype(np.int32), np.ones(int(have.sum()), np.float32), width)

    def _pair_rows(self, x, dates):
        x = self._check_x(x)
        xd = None
        if self._date_cats is not None:
            if dates is None:
                raise ValueError(f"dates: the model uses the rating date ({self.date_name!r}); "
                                 f"pass the rows' dates")
            xd = self._date_csr(self._day_codes(dates, x.shape[0]), x[:, 0])
        return self.rows(np.ascontiguousarray(x.T), xd)

    def valid_preds(self):
        "Averaged predictions for the validation rows of dls, in their order (n_valid,) float64."
        return self.eval_predictions()

    def valid_mse(self, clip=None):
        "Mean squared error of `valid_preds()` (clip=(lo, hi) clips the predictions first)."
        p = self.valid_preds()
        if clip is not None:
            p = np.clip(p, *clip)
        return float(np.mean((p - self._valid_y) ** 2))

    # ------------------------------------------------------------------ tables
    def _slice(self, name):
        return self._feature_slices[name]

    def bias(self, is_item=True):
        "Posterior-mean biases (n_items,) or (n_users,) of the one-hot features (index 0 '#na#')."
        return self.w[self._slice('item' if is_item else 'user')].copy()

    def weight(self, is_item=True, effective=False):
        """Posterior-mean factors (n, n_factors) of the item (or user) one-hot features.

        effective=True adds the side's other features (implicit sets, metadata): the vector
        that meets the other side's in the prediction."""
        V = self.V
        if not effective:
            return V[self._slice('item' if is_item else 'user')].copy()
        r = 1 if is_item else 0
        ptr, ind, dat = self.blocks[r][:3]
        off = self.d0 + (0 if r == 0 else int(self.blocks[0][6][0]))
        rows = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
        out = np.zeros((ptr.size - 1, self.n_factors))
        np.add.at(out, rows, dat[:, None].astype(np.float64) * V[off + ind])
        return out

    def most_similar(self, i, n=10, is_item=True, effective=False):
        """The n items (or users) whose posterior-mean factors are nearest to index i's by cosine
        similarity, i itself and '#na#' left out: (indices (n,) int64, similarities (n,) float64)."""
        W = self.weight(is_item, effective)
        size = W.shape[0]
        i = _int_arg(i, 'i', 1)
        if i >= size:
            raise IndexError(f"i must lie in [1, {size}), got {i}")
        n = min(_int_arg(n, 'n', 1), size - 2)
        norm = np.linalg.norm(W, axis=1)
        sim = W @ W[i] / np.maximum(norm * norm[i], 1e-300)
        sim[[0, i]] = -np.inf
        top = np.argsort(-sim, kind='stable')[:n]
        return top, sim[top]

    # ------------------------------------------------------------------ fold-in
    def fold_in_user(self, items, ratings):
        """A new user from (item index, rating) pairs, everything else fixed at its posterior mean.

        The user's bias and factors are the posterior mean of their conditional (a Bayesian linear
        regression with the user group's prior mean and precision and the noise precision, all at
        their posterior means); the user's implicit features are the given items. The user has no
        metadata, and the ratings and scores no date features (an unknown day). Returns a dict
        with 'bias', 'factors' and 'scores' (n_items,) float64, the predictions for every item."""
        self._need_kept()
        items = np.asarray(items)
        ratings = np.asarray(ratings, dtype=np.float64)
        if items.ndim != 1 or items.size == 0 or not np.issubdtype(items.dtype, np.integer):
            raise ValueError("items must be a non-empty 1-d array of item indices (use "
                             "model.average_user() for a user without ratings)")
        if ratings.shape != items.shape:
            raise ValueError(f"ratings must have one entry per item ({items.size}), got {ratings.shape}")
        if not np.all(np.isfinite(ratings)):
            raise ValueError("ratings holds NaN or infinite values")
        if items.min() < 1 or items.max() >= self.n_items:
            raise IndexError(f"items must lie in [1, {self.n_items}) (0 is '#na#')")
        w0, w, V = self._split(self.theta_mean)
        K = self.n_factors
        # the new user's block row: its one-hot (the unknowns) + implicit items (known)
        ub = self.blocks[0]
        n_uf = int(ub[6][0])
        lin_u, p_u, s_u = 0.0, np.zeros(K), np.zeros(K)
        if 'user_implicit' in self._feature_slices:
            sl = self._slice('user_implicit')
            uniq = np.unique(items)
            xv = 1.0 / np.sqrt(uniq.size)
            j = sl.start + uniq
            lin_u = xv * w[j].sum()
            p_u = xv * V[j].sum(0)
            s_u = xv * xv * (V[j] ** 2).sum(0)
        S = self.weight(is_item=True, effective=True)                       # item block q
        ib = self.blocks[1]
        off_i = self.d0 + n_uf
        rows = np.repeat(np.arange(ib[0].size - 1), np.diff(ib[0]))
        lin_i = np.bincount(rows, weights=ib[2] * w[off_i + ib[1]], minlength=self.n_items)
        sq_i = np.zeros((self.n_items, K))
        np.add.at(sq_i, rows, (ib[2][:, None].astype(np.float64) ** 2) * V[off_i + ib[1]] ** 2)
        z = p_u + S                                                         # (n_items, K)
        c = w0 + lin_u + lin_i + 0.5 * ((z ** 2).sum(1) - s_u.sum() - sq_i.sum(1))
        h = self.hyper_means()
        g = int(self.group[self._slice('user').start])
        prec = np.zeros((K + 1, K + 1))
        prec[0, 0], prec[1:, 1:] = h['lambda_w'][g], h['Lambda_V'][g]
        mu = np.concatenate([[h['mu_w'][g]], h['mu_V'][g]])
        Z = np.hstack([np.ones((items.size, 1)), z[items]])
        A = h['alpha'] * Z.T @ Z + prec
        b = h['alpha'] * Z.T @ (ratings - c[items]) + prec @ mu
        sol = np.linalg.solve(A, b)
        scores = c + sol[0] + z @ sol[1:]
        return {'bias': float(sol[0]), 'factors': sol[1:], 'scores': scores}


def bayes_fm(dls, n_factors=10, n_samples=500, burn_in=50, implicit='both', date_name=None,
             user_meta=None, item_meta=None, seed=None, n_threads=None, keep_samples=False,
             user_day=True, factor_prior='auto', **kwargs):
    """A `CollabBayesFM` on the training rows of `dls` (a CollabDataLoaders), watching its
    validation rows. implicit: 'both' (the items each user rated and the users who rated each
    item, from the training rows, 1/sqrt(count)), 'user' (the first only) or 'none'. date_name:
    a column of the rows (datetime64 or integer Unix seconds) whose day becomes a one-hot feature,
    and with user_day (the default) the (user, day) pair too, for the pairs of the training rows:
    a per-user day effect and factors (timeSVD++'s b_{u,t}). user_meta / item_meta: DataFrames
    indexed by the raw ids. factor_prior: the prior of the factors, 'gamma' (Normal-Gamma per
    coordinate, myFM's), 'wishart' (Normal-Wishart per group over the factors together, BPMF's;
    see `BayesianFM`) or 'auto' (the default): 'wishart' for plain MF (implicit='none', no
    dates, no metadata), where it measured better on the fixed split, else 'gamma', which
    measured better with the extra features (docs/bayes.md). Other keyword arguments go to
    `BayesianFM` (init_std, alpha_0, beta_0, gamma_0, mu_0, reg_0)."""
    if implicit not in ('both', 'user', 'none'):
        raise ValueError(f"implicit must be 'both', 'user' or 'none', got {implicit!r}")
    if factor_prior not in ('auto', 'gamma', 'wishart'):
        raise ValueError(f"factor_prior must be 'auto', 'gamma' or 'wishart', got {factor_prior!r}")
    if factor_prior == 'auto':
        plain = implicit == 'none' and date_name is None and user_meta is None and item_meta is None
        factor_prior = 'wishart' if plain else 'gamma'
    un, iname = dls.user_name, dls.item_name
    ucls, icls = dls.classes[un], dls.classes[iname]
    NU, NI = len(ucls), len(icls)
    xt, yt = dls.train.x, dls.train.y
    xv, yv = dls.valid.x, dls.valid.y
    if xt.shape[0] == 0:
        raise ValueError("dls has no training rows")

    def side(is_user):
        n, other = (NU, NI) if is_user else (NI, NU)
        a, b = (0, 1) if is_user else (1, 0)
        name = 'user' if is_user else 'item'
        parts = [(np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int32),
                  np.ones(n, np.float32), n)]
        groups = [np.zeros(n, np.int32)]
        gnames, slices, off = [name], {name: slice(0, n)}, n
        if implicit == 'both' or (implicit == 'user' and is_user):
            # the set of items each user rated (users who rated each item): a pair rated twice
            # counts once
            key = np.unique(xt[:, a].astype(np.int64) * other + xt[:, b])
            own, oth = key // other, (key % other).astype(np.int32)
            cnt_set = np.bincount(own, minlength=n)
            ptr = np.zeros(n + 1, np.int64)
            np.cumsum(cnt_set, out=ptr[1:])
            vals = np.repeat(1.0 / np.sqrt(np.maximum(cnt_set, 1)), cnt_set).astype(np.float32)
            parts.append((ptr, oth, vals, other))
            groups.append(np.full(other, 1, np.int32))
            gnames.append(f"{name}_implicit")
            slices[f"{name}_implicit"] = slice(off, off + other)
            off += other
        meta = user_meta if is_user else item_meta
        if meta is not None:
            csr, g, gn, _ = _meta_features(meta, ucls if is_user else icls, name)
            parts.append(csr)
            groups.append(g + len(gnames))
            gnames += gn
            slices[f"{name}_meta"] = slice(off, off + csr[3])
            off += csr[3]
        return _hstack(parts, n), np.concatenate(groups), gnames, slices

    ublock, ug, ugn, usl = side(True)
    iblock, ig, ign, isl = side(False)
    groups, names, slices = [], [], {}
    xd = xdv = None
    date_cats = valid_days = ud_keys = None
    d0 = 0
    if date_name is not None:
        df_t, df_v = dls.train.df, dls.valid.df
        if df_t is None or date_name not in df_t.columns:
            raise KeyError(f"date_name={date_name!r} is not a column of the ratings")
        dt = _days(df_t[date_name], date_name)
        dv = _days(df_v[date_name], date_name)
        date_cats = np.unique(dt)
        d0 = date_cats.size
        groups.append(np.zeros(d0, np.int32))
        names.append('date')
        slices['date'] = slice(0, d0)
        if not isinstance(user_day, bool):
            raise TypeError(f"user_day must be True or False, got {user_day!r}")
        if user_day:
            ud_keys = np.unique(xt[:, 0].astype(np.int64) * d0 + np.searchsorted(date_cats, dt))
            groups.append(np.full(ud_keys.size, 1, np.int32))
            names.append('user_day')
            slices['user_day'] = slice(d0, d0 + ud_keys.size)
            d0 += ud_keys.size
    goff = len(names)
    groups.append(ug + goff)
    names += ugn
    for k_, s in usl.items():
        slices[k_] = slice(d0 + s.start, d0 + s.stop)
    goff = len(names)
    groups.append(ig + goff)
    names += ign
    for k_, s in isl.items():
        slices[k_] = slice(d0 + ublock[3] + s.start, d0 + ublock[3] + s.stop)

    model = CollabBayesFM.__new__(CollabBayesFM)
    model.n_users, model.n_items = NU, NI
    model.date_name = date_name
    model._date_cats = date_cats
    model._ud_keys = ud_keys
    model._feature_slices = slices
    model.classes = {un: ucls, iname: icls}
    if date_cats is not None:
        model._valid_days = None
        codes_t = model._day_codes(pd.Series(dt.astype('datetime64[D]')), dt.size)
        xd = model._date_csr(codes_t, xt[:, 0])
        valid_days = model._day_codes(pd.Series(dv.astype('datetime64[D]')), dv.size)
        xdv = model._date_csr(valid_days, xv[:, 0])
    model._valid_days = valid_days
    model._valid_x = np.ascontiguousarray(xv, dtype=np.int32)
    model._valid_y = np.asarray(yv, dtype=np.float64)
    BayesianFM.__init__(model, yt, blocks=(ublock, iblock), idx=np.ascontiguousarray(xt.T), x=xd,
                        group=np.concatenate(groups), n_factors=n_factors, n_samples=n_samples,
                        burn_in=burn_in, seed=seed, n_threads=n_threads,
                        keep_samples=keep_samples, group_names=names,
                        eval_rows=(np.ascontiguousarray(xv.T), xdv) if xv.shape[0] else None,
                        factor_prior=factor_prior, **kwargs)
    return model


# ---------------------------------------------------------------------------------------------
# the Learner's model and training path (`bayes_learner` in collabc.learner)

def _side_tables(w, V, block, off):
    """Per block row: the summed factors p (M, K), the linear part lin (M,) and the within-row
    pair term 0.5 (|p|^2 - sum x^2 |v|^2) (M,) of the features of `block` at offset `off`."""
    ptr, ind, dat = block[:3]
    M = ptr.size - 1
    rows = np.repeat(np.arange(M), np.diff(ptr))
    x = dat.astype(np.float64)
    p = np.zeros((M, V.shape[1]))
    np.add.at(p, rows, x[:, None] * V[off + ind])
    lin = np.bincount(rows, weights=x * w[off + ind], minlength=M)
    sq = np.bincount(rows, weights=x * x * (V[off + ind] ** 2).sum(1), minlength=M)
    return p, lin, 0.5 * ((p ** 2).sum(1) - sq)


class BayesPath(TrainingPath):
    """The Learner's training path for a `BayesModel` (see `collabc.paths`): an iteration is a
    Gibbs sweep, an epoch `sweeps_per_epoch` sweeps (fewer at the end of `fit()`), the loss of
    a sweep the training MSE of that sweep's sample. There is no optimizer to step: learning
    rates, momentums and weight decay do not apply (`check_fit` refuses them). Ctrl-C is the
    loop's: it stops between segments (whole sweeps)."""
    restorable = False   # never reports divergence (see collabc.paths)
    unit = "sweep"
    granularity = 1
    first_segment = 1      # the first segment of an epoch is one sweep, then ~0.25 s each
    n_params = 1           # the Learner's optimizer is never stepped

    def __init__(self, learn):
        super().__init__(learn)
        self.target = None

    @property
    def model(self):
        return self.learn.model

    @property
    def n_iter(self):
        m = self.model
        if self.target is None or m.fm is None:
            return m.sweeps_per_epoch
        return max(1, min(m.sweeps_per_epoch, self.target - m.fm.sweeps_done))

    def check_fit(self, how, lr=None, wd=None):
        "Refuses what does not apply to a sampler: schedules, lr_find, lr, wd."
        if how != "fit":
            raise TypeError(f"{how}() does not apply to the Bayesian model: a Gibbs sampler has no "
                            f"learning rate or momentum to schedule. Use learn.fit() (the sweeps left "
                            f"to n_samples) or learn.fit(n_epoch) (n_epoch x sweeps_per_epoch sweeps)")
        for name, v in (("lr", lr), ("wd", wd)):
            if v is not None:
                raise ValueError(f"{name} does not apply to the Bayesian model (a Gibbs sampler); "
                                 f"call learn.fit() or learn.fit(n_epoch) without it")

    def default_epochs(self):
        "fit() without n_epoch: the sweeps left to n_samples, in epochs of sweeps_per_epoch."
        m = self.model
        m._need_sampler()
        left = m.fm.n_samples - m.fm.sweeps_done
        if left <= 0:
            raise ValueError(f"all n_samples={m.fm.n_samples} sweeps have run; learn.fit(n_epoch) "
                             f"runs n_epoch x {m.sweeps_per_epoch} more")
        return -(-left // m.sweeps_per_epoch)

    def set_epochs(self, n_epoch):
        self.target = self.model.fm.sweeps_done + n_epoch * self.model.sweeps_per_epoch \
            if self.model.fm is not None else None

    def prepare_opt(self, opt):
        "No buffers: nothing is stepped."

    def begin_fit(self):
        self.model._need_sampler()

    def begin_epoch(self, rng):
        "Nothing: the sampler draws from its own counter-based stream (its seed)."

    def run(self, start, lrs, moms, losses):
        rmse = self.model._run(len(lrs))
        losses[:] = rmse ** 2
        bad = np.flatnonzero(~np.isfinite(rmse))
        return int(bad[0]) if bad.size else -1

    def diverged(self, epoch, it, loss, lr):
        return (f"the sampler's training loss became {loss} in epoch {epoch}, sweep {it}: the data "
                f"or the priors give a non-finite chain")


class BayesModel(Module):
    """A Bayesian factorization machine (`CollabBayesFM`) as a collabc model: what
    `bayes_learner` trains and `load_learner` gives back.

    It predicts the average over posterior samples. The validation rows of its data get the
    exact running mean over every kept sweep (what the epoch table shows); other pairs, top-n,
    similarity and fold-in use `n_draws` stored draws (kept sweeps evenly spaced over
    [burn_in, n_samples)), each held as dot-model tables: per draw, a user's vector is the sum
    of its one-hot, implicit and metadata factors and its bias the global bias plus their
    linear and within-user pair terms (the same for items). The average of the draws'
    predictions is then one dot product of the draws' vectors side by side (user side scaled
    by 1/n_draws), so `_tables()` is a dot model of rank n_factors x draws and the whole
    dot-model toolbox (recommend, most_similar, pca, FoldIn) works on it. During burn-in (no
    draw yet) the current sample stands in. Date features enter the validation and training
    rows' predictions; other pairs are predicted for an unknown day (the day terms averaged over
    the training days, the (user, day) terms over the user's own training days).

    Built for inference (`from_config`, by `load_learner`) it holds the draws only."""
    own_path = "bayes"
    _dot_like = True
    has_bias = True
    y_range = None
    preds_ndim = 1

    def __init__(self, n_factors, n_users, n_items, n_draws=25, n_dates=0, implicit_user=False,
                 sweeps_per_epoch=10, n_udays=0, factor_prior='gamma'):
        super().__init__()
        if factor_prior not in ('gamma', 'wishart'):
            raise ValueError(f"factor_prior must be 'gamma' or 'wishart', got {factor_prior!r}")
        self.factor_prior = factor_prior
        self.rank = _int_arg(n_factors, 'n_factors', 1)
        self.n_users = _int_arg(n_users, 'n_users', 1)
        self.n_items = _int_arg(n_items, 'n_items', 1)
        self.n_draws = _int_arg(n_draws, 'n_draws', 1)
        self.n_dates = _int_arg(n_dates, 'n_dates', 0)
        self.n_udays = _int_arg(n_udays, 'n_udays', 0)
        if self.n_udays and not self.n_dates:
            raise ValueError("n_udays (user-day features) needs n_dates > 0")
        if not isinstance(implicit_user, bool):
            raise TypeError(f"implicit_user must be True or False, got {implicit_user!r}")
        self.implicit_user = implicit_user
        self.sweeps_per_epoch = _int_arg(sweeps_per_epoch, 'sweeps_per_epoch', 1)
        self.fm = None
        self._draws = {k: np.zeros(s, dt) for k, (s, dt) in self._draw_shapes().items()}
        self._cache = None

    # ------------------------------------------------------------------ configuration
    @staticmethod
    def _shapes(n_factors, n_users, n_items, n_draws=25, n_dates=0, implicit_user=False, n_udays=0,
                factor_prior='gamma'):
        S, K = n_draws, n_factors
        out = {"draw_w0": ((S,), np.float32), "draw_u_weight": ((S, n_users, K), np.float32),
               "draw_u_bias": ((S, n_users), np.float32), "draw_i_weight": ((S, n_items, K), np.float32),
               "draw_i_bias": ((S, n_items), np.float32),
               "draw_user_prior": ((S, 3 + 2 * K), np.float32), "n_drawn": ((1,), np.int64)}
        if n_dates:
            out.update({"draw_date_weight": ((S, n_dates, K), np.float32),
                        "draw_date_bias": ((S, n_dates), np.float32), "date_days": ((n_dates,), np.int64),
                        "date_freq": ((n_dates,), np.float32)})
        if n_udays:
            out.update({"draw_uday_weight": ((S, n_udays, K), np.float32),
                        "draw_uday_bias": ((S, n_udays), np.float32), "uday_user": ((n_udays,), np.int64),
                        "uday_code": ((n_udays,), np.int64), "uday_freq": ((n_udays,), np.float32)})
        if implicit_user:
            out.update({"draw_imp_weight": ((S, n_items, K), np.float32),
                        "draw_imp_bias": ((S, n_items), np.float32)})
        if factor_prior == 'wishart':   # the user factors' prior precision (draw_user_prior: its diagonal)
            out["draw_user_prec"] = ((S, K, K), np.float32)
        return out

    def _draw_shapes(self):
        return self._shapes(self.rank, self.n_users, self.n_items, self.n_draws, self.n_dates,
                            self.implicit_user, self.n_udays, self.factor_prior)

    @classmethod
    def planned_shapes(cls, n_factors, n_users, n_items, n_draws=25, n_dates=0, implicit_user=False,
                       sweeps_per_epoch=10, n_udays=0, factor_prior='gamma'):
        "The shapes of the tensors a model of these arguments holds (nothing allocated)."
        for name, v, lo in (("n_factors", n_factors, 1), ("n_users", n_users, 1), ("n_items", n_items, 1),
                            ("n_draws", n_draws, 1), ("n_dates", n_dates, 0),
                            ("sweeps_per_epoch", sweeps_per_epoch, 1), ("n_udays", n_udays, 0)):
            _int_arg(v, name, lo)
        if factor_prior not in ('gamma', 'wishart'):
            raise ValueError(f"factor_prior must be 'gamma' or 'wishart', got {factor_prior!r}")
        return {k: s for k, (s, _) in cls._shapes(n_factors, n_users, n_items, n_draws, n_dates,
                                                  implicit_user, n_udays, factor_prior).items()}

    def get_config(self):
        "A JSON-able description that rebuilds the inference model with `from_config`."
        return {"class": type(self).__name__,
                "args": {"n_factors": self.rank, "n_users": self.n_users, "n_items": self.n_items,
                         "n_draws": self.n_draws, "n_dates": self.n_dates,
                         "implicit_user": self.implicit_user, "sweeps_per_epoch": self.sweeps_per_epoch,
                         **({"n_udays": self.n_udays} if self.n_udays else {}),
                         **({"factor_prior": self.factor_prior} if self.factor_prior != 'gamma' else {})},
                **({"user": self.user, "item": self.item} if getattr(self, "classes", None) is not None else {})}

    @classmethod
    def from_config(cls, config, classes=None):
        "The model of `get_config()`, with empty draws (`load_state_dict` fills them)."
        if not isinstance(config, dict) or config.get("class") != cls.__name__ \
                or not isinstance(config.get("args"), dict):
            raise ValueError(f"config is not a {cls.__name__} configuration")
        model = cls(**config["args"])
        if classes is not None and config.get("user") in classes and config.get("item") in classes:
            model.classes, model.user, model.item = classes, config["user"], config["item"]
        return model

    @classmethod
    def from_dls(cls, dls, n_factors=10, n_samples=500, burn_in=50, implicit='both', date_name=None,
                 user_meta=None, item_meta=None, seed=None, n_threads=None, n_draws=25,
                 sweeps_per_epoch=None, **kwargs):
        "The sampler (`bayes_fm`) on `dls` in a model; see `collabc.bayes_learner`."
        fm = bayes_fm(dls, n_factors=n_factors, n_samples=n_samples, burn_in=burn_in,
                      implicit=implicit, date_name=date_name, user_meta=user_meta,
                      item_meta=item_meta, seed=seed, n_threads=n_threads, **kwargs)
        if sweeps_per_epoch is None:
            sweeps_per_epoch = max(1, -(-n_samples // 10))
        model = cls(n_factors, fm.n_users, fm.n_items, n_draws=n_draws,
                    n_dates=0 if fm._date_cats is None else len(fm._date_cats),
                    implicit_user='user_implicit' in fm._feature_slices,
                    sweeps_per_epoch=sweeps_per_epoch,
                    n_udays=0 if fm._ud_keys is None else fm._ud_keys.size, factor_prior=fm.factor_prior)
        model.fm = fm
        model.classes, model.user, model.item = dls.classes, dls.user_name, dls.item_name
        model._train_x = np.ascontiguousarray(dls.train.x, dtype=np.int32)
        if fm._date_cats is not None:
            nd = len(fm._date_cats)
            model._draws["date_days"][:] = fm._date_cats
            codes = fm.x[1][fm.x[1] < nd]
            model._draws["date_freq"][:] = np.bincount(codes, minlength=nd) / max(codes.size, 1)
            if fm._ud_keys is not None:
                # each (user, day) feature: its user, its day, its share of the user's training rows
                cnt = np.bincount(fm.x[1][fm.x[1] >= nd] - nd, minlength=fm._ud_keys.size)
                user = fm._ud_keys // nd
                model._draws["uday_user"][:] = user
                model._draws["uday_code"][:] = fm._ud_keys % nd
                model._draws["uday_freq"][:] = cnt / np.maximum(
                    np.bincount(user, weights=cnt, minlength=fm.n_users), 1)[user]
        kept = n_samples - burn_in
        model.stride = max(1, kept // model.n_draws)
        return model

    # ------------------------------------------------------------------ state
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """The draws (float32 tables), and while it has its sampler the sampler's whole state
        (`sampler_*`: parameters, hyperparameters, running means, caches, counters, seed), so
        that a checkpoint resumes the chain exactly."""
        out = dict(self._draws)
        if self.fm is not None:
            st = self.fm.get_state()
            st.pop('train_rmse')
            st.pop('samples', None)
            out.update({f"sampler_{k}": np.asarray(v).reshape(-1) if k == 'seed' else v
                        for k, v in st.items()})
        return {prefix + k: v for k, v in out.items()}

    def named_buffers(self, prefix="", recurse=True):
        "The draws' tables (what `summary()` lists): not trained by an optimizer, drawn."
        for k, v in self._draws.items():
            yield prefix + k, v

    def inference_state_dict(self):
        "What an export holds: the draws only."
        return dict(self._draws)

    def check_state_dict(self, state_dict, strict=True):
        """Raises ValueError/KeyError unless `state_dict` fits this model (keys, shapes, the draw
        count, the sampler's counters); changes nothing. Returns (missing, unexpected) keys."""
        own = self.state_dict()
        sd = dict(state_dict)
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not fit: missing {missing}, unexpected {unexpected}")
        for k, v in sd.items():
            if k in own and np.shape(v) != own[k].shape:
                raise ValueError(f"state_dict[{k!r}] has shape {np.shape(v)}, the model's is {own[k].shape}")
        n = int(np.asarray(sd.get("n_drawn", self._draws["n_drawn"]))[0])
        if not 0 <= n <= self.n_draws:
            raise ValueError(f"n_drawn must lie in [0, {self.n_draws}], got {n}")
        if "date_freq" in sd and not (np.all(np.asarray(sd["date_freq"]) >= 0)):
            raise ValueError("date_freq must be non-negative")
        for k, hi in (("uday_user", self.n_users), ("uday_code", self.n_dates)):
            v = np.asarray(sd.get(k, np.zeros(0, np.int64)))
            if v.size and not (v.min() >= 0 and v.max() < hi):
                raise ValueError(f"{k} must lie in [0, {hi})")
        f = np.asarray(sd.get("uday_freq", np.zeros(0)))
        if not np.all((f >= 0) & (f <= 1)):
            raise ValueError("uday_freq must lie in [0, 1]")
        # the fold-in's prior: the noise precision and the precisions positive, the factors'
        # matrix (Normal-Wishart) symmetric positive definite, for the draws stored
        pr = np.asarray(sd.get("draw_user_prior", np.ones((0, 3 + 2 * self.rank))), np.float64)[:n]
        if not np.all(pr[:, [0, 2] + list(range(3 + self.rank, 3 + 2 * self.rank))] > 0):
            raise ValueError("draw_user_prior must hold positive precisions (alpha, lambda_w, lambda_V)")
        P = np.asarray(sd.get("draw_user_prec", np.zeros((0, self.rank, self.rank))), np.float64)[:n]
        if P.size and not (np.array_equal(P, P.transpose(0, 2, 1)) and np.all(np.linalg.eigvalsh(P) > 0)):
            raise ValueError("draw_user_prec must hold symmetric positive definite matrices")
        if self.fm is not None and "sampler_counters" in sd:
            c = np.asarray(sd["sampler_counters"])
            if c[2] not in (0, 1) or not 0 <= c[1] <= c[0] or not 0 <= c[3] < max(self.rank, 1):
                raise ValueError("the sampler's counters are inconsistent")
            if n and c[1] < n:
                raise ValueError(f"{n} draws stored but only {c[1]} sweeps kept")
        return missing, unexpected

    def load_state_dict(self, state_dict, strict=True):
        missing, unexpected = self.check_state_dict(state_dict, strict)
        sd = dict(state_dict)
        if self.fm is not None and "sampler_theta" in sd:
            st = {k[len("sampler_"):]: np.asarray(v) for k, v in sd.items() if k.startswith("sampler_")}
            st['seed'] = np.asarray(st['seed']).reshape(())
            st['train_rmse'] = self.fm.train_rmse
            self.fm.set_state(st)
        for k in self._draws:
            if k in sd:
                self._draws[k] = np.array(sd[k], dtype=self._draws[k].dtype)
        self._cache = None
        return missing, unexpected

    # ------------------------------------------------------------------ sampling
    def _need_sampler(self):
        if self.fm is None:
            raise RuntimeError("this BayesModel holds posterior draws for inference (from "
                               "load_learner) and no sampler: build one with bayes_learner(dls) to train")

    def _run(self, n):
        "n sweeps, storing the draws that fall among them; their training RMSE."
        fm, out = self.fm, []
        self._cache = None
        while n > 0:
            nd = int(self._draws["n_drawn"][0])
            at = fm.burn_in + (nd + 1) * self.stride
            k = n if nd >= self.n_draws or at <= fm.sweeps_done else min(n, at - fm.sweeps_done)
            out.append(fm.run_sweeps(k, sigint=False))
            n -= k
            if nd < self.n_draws and fm.sweeps_done == at:
                self._store_draw(nd)
        return np.concatenate(out) if out else np.zeros(0)

    def _draw_from(self, theta, hyper):
        "One draw's tables from a sample (theta, hyper) of the sampler."
        fm = self.fm
        w0, w, V = fm._split(theta)
        ub, ib = fm.blocks
        p_u, lin_u, pair_u = _side_tables(w, V, ub, fm.d0)
        p_i, lin_i, pair_i = _side_tables(w, V, ib, fm.d0 + int(ub[6][0]))
        d = {"draw_w0": w0, "draw_u_weight": p_u, "draw_u_bias": w0 + lin_u + pair_u,
             "draw_i_weight": p_i, "draw_i_bias": lin_i + pair_i}
        if self.n_dates:
            d["draw_date_weight"], d["draw_date_bias"] = V[:self.n_dates], w[:self.n_dates]
        if self.n_udays:
            d["draw_uday_weight"], d["draw_uday_bias"] = V[self.n_dates:fm.d0], w[self.n_dates:fm.d0]
        if self.implicit_user:
            sl = fm._slice('user_implicit')
            d["draw_imp_weight"], d["draw_imp_bias"] = V[sl], w[sl]
        g = int(fm.group[fm._slice('user').start])
        h = fm._hyper_dict(hyper)
        d["draw_user_prior"] = np.concatenate([[h['alpha'], h['mu_w'][g], h['lambda_w'][g]],
                                               h['mu_V'][g], h['lambda_V'][g]])
        if self.factor_prior == 'wishart':
            d["draw_user_prec"] = h['Lambda_V'][g]
        return d

    def _store_draw(self, s):
        for k, v in self._draw_from(self.fm.theta, self.fm.hyper).items():
            self._draws[k][s] = v
        self._draws["n_drawn"][0] = s + 1
        self._cache = None

    def _date_mean(self, d):
        "Per draw, the date terms averaged over the training days: (w_bar (S,), v_bar (S, K))."
        S = d["draw_w0"].shape[0]
        if not self.n_dates:
            return np.zeros(S), np.zeros((S, self.rank))
        f = self._draws["date_freq"].astype(np.float64)
        return d["draw_date_bias"] @ f, np.einsum("sdk,d->sk", d["draw_date_weight"].astype(np.float64), f)

    def _current(self):
        """The draws to use: the stored ones, or (none yet) the sampler's current sample. With
        user-day features, each user's vector and bias hold the user's day terms averaged over
        the user's training days (`_uday_mean`, kept as d["uday_mean"]): what an unknown day of
        the user adds."""
        n = int(self._draws["n_drawn"][0])
        if n:
            d = {k: v[:n] for k, v in self._draws.items() if k.startswith("draw_")}
        elif self.fm is None:
            raise RuntimeError("the model holds no posterior draw yet: train it (learn.fit()) first")
        else:
            d = {k: np.asarray(v, np.float32)[None] for k, v in self._draw_from(self.fm.theta, self.fm.hyper).items()}
        if self.n_udays:
            ew, ev = d["uday_mean"] = self._uday_mean(d)
            p_u = d["draw_u_weight"].astype(np.float64)
            d["draw_u_bias"] = (d["draw_u_bias"] + ew + (p_u * ev).sum(2)).astype(np.float32)
            d["draw_u_weight"] = (p_u + ev).astype(np.float32)
        return d

    def _uday_mean(self, d):
        "Per draw, each user's (user, day) terms averaged over the user's training days: (S, n_users), (S, n_users, K)."
        user, f = self._draws["uday_user"], self._draws["uday_freq"].astype(np.float64)
        S = d["draw_w0"].shape[0]
        ev = np.zeros((S, self.n_users, self.rank))
        np.add.at(ev.transpose(1, 0, 2), user, (f[None, :, None] * d["draw_uday_weight"]).transpose(1, 0, 2))
        ew = np.zeros((S, self.n_users))
        np.add.at(ew.T, user, (f[None, :] * d["draw_uday_bias"]).T)
        return ew, ev

    # ------------------------------------------------------------------ the dot-model view
    def _tables(self):
        """(U, I, bu, bi): the draws side by side, U (n_users, K x draws) scaled by 1/draws,
        I (n_items, K x draws), biases (n, 1) averaged, so that bu + bi + U.I is the average of
        the draws' predictions (for an unknown day)."""
        key = (int(self._draws["n_drawn"][0]), None if self.fm is None else self.fm.sweeps_done)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        d = self._current()
        S = d["draw_w0"].shape[0]
        U = np.ascontiguousarray(d["draw_u_weight"].transpose(1, 0, 2).reshape(self.n_users, -1) / np.float32(S))
        I = np.ascontiguousarray(d["draw_i_weight"].transpose(1, 0, 2).reshape(self.n_items, -1))
        wbar, vbar = self._date_mean(d)     # an unknown day: the date terms averaged over the days
        bu = (d["draw_u_bias"] + np.einsum("snk,sk->sn", d["draw_u_weight"], vbar) + wbar[:, None]).mean(0)
        bi = (d["draw_i_bias"] + np.einsum("snk,sk->sn", d["draw_i_weight"], vbar)).mean(0)
        bu, bi = bu.astype(np.float32)[:, None], bi.astype(np.float32)[:, None]
        tabs = (U, I, bu, bi)
        self._cache = (key, tabs)
        return tabs

    @property
    def n_factors(self):
        "The width of the dot-model tables: n_factors of the sampler x the draws in use."
        return self._tables()[0].shape[1]

    def _fused_ok(self):
        return True

    def _ids(self, arr, is_item):
        cls = getattr(self, "classes", None)
        if cls is None:
            raise ValueError("this model was not built from classes: index its tables directly")
        from .data import encode_ids
        name = self.item if is_item else self.user
        return encode_ids(cls[name], list(arr), f"{'item' if is_item else 'user'} column {name!r}", hint=False)

    def bias(self, arr, is_item=True):
        "The lesson's `model.bias(ids, is_item)`: the posterior-mean biases of raw ids (float32)."
        U, I, bu, bi = self._tables()
        return (bi if is_item else bu)[self._ids(arr, is_item), 0]

    def weight(self, arr, is_item=True):
        "The lesson's `model.weight(ids, is_item)`: the draws' vectors of raw ids side by side."
        U, I, bu, bi = self._tables()
        return (I if is_item else U)[self._ids(arr, is_item)]

    # ------------------------------------------------------------------ predictions
    def forward(self, x):
        from .autograd import tensor
        return tensor(self._predict(np.asarray(getattr(x, "_data", x))))

    def _predict(self, x):
        x = np.asarray(x)
        fm = self.fm
        if fm is not None and fm.n_kept and x.shape == fm._valid_x.shape and np.array_equal(x, fm._valid_x):
            return fm.eval_predictions().astype(np.float32)
        codes = None
        if fm is not None and fm._date_cats is not None and x.shape == self._train_x.shape \
                and np.array_equal(x, self._train_x):
            ptr, ind = fm.x[0], fm.x[1]   # the sampler's rows are the training rows sorted by user
            order = np.argsort(self._train_x[:, 0], kind='stable')

            def feature(j, off):
                "Each training row's j-th row-local feature less off (-1: none), in dls order."
                has = np.diff(ptr) > j
                sorted_ = np.full(x.shape[0], -1, np.int64)
                sorted_[has] = ind[ptr[:-1][has] + j] - off
                out = np.empty_like(sorted_)
                out[order] = sorted_
                return out
            codes = feature(0, 0)           # the day, then its (user, day)
            ud = feature(1, self.n_dates) if self.n_udays else None
            return self._predict_draws(x, codes, ud)
        return self._predict_draws(x, codes)

    def _predict_draws(self, x, codes=None, ud=None):
        """The average of the draws' predictions for pairs x (n, 2), day codes (n,) or None, and
        (user, day) feature codes (n,) or None (-1: unknown, the user's average day terms)."""
        U, I, bu, bi = self._tables()
        u, i = x[:, 0], x[:, 1]
        out = np.einsum("nk,nk->n", U[u].astype(np.float64), I[i]) + bu[u, 0] + bi[i, 0]
        if codes is not None and self.n_dates:   # known days: the day's terms, not their average
            d = self._current()
            wbar, vbar = self._date_mean(d)
            have = codes >= 0
            c = codes[have]
            Wd = d["draw_date_weight"][:, c] - vbar[:, None]       # (S, m, K)
            uu = d["draw_u_weight"][:, u[have]] + d["draw_i_weight"][:, i[have]]
            out[have] += (d["draw_date_bias"][:, c] - wbar[:, None] + (Wd * uu).sum(2)).mean(0)
            if ud is not None and self.n_udays:
                # a known (user, day): its own terms in place of the user's average ones;
                # d's user vectors hold the average ev already (see _current)
                ew, ev = d["uday_mean"]
                k = have & (ud >= 0)
                e, uk = ud[k], u[k]
                dv = d["draw_uday_weight"][:, e] - ev[:, uk]                   # (S, m, K)
                other = (d["draw_u_weight"][:, uk] - ev[:, uk] + d["draw_i_weight"][:, i[k]]
                         + d["draw_date_weight"][:, codes[k]])
                out[k] += (d["draw_uday_bias"][:, e] - ew[:, uk] + (dv * other).sum(2)).mean(0)
        return out.astype(np.float32)

    # ------------------------------------------------------------------ fold-in
    def fold_in_user(self, learn, items, ratings, name=None):
        """A new user (`FoldIn`) from encoded item indices and ratings: for every draw, the
        posterior mean of the user's conditional (its one-hot bias and factors; everything else
        fixed at the draw, its implicit features the rated items, no metadata, an unknown day),
        a Bayesian linear regression solved exactly; the draws' solutions side by side as one
        dot-model vector, so its scores are the average over the draws. The day of the ratings
        is unknown: the date terms are averaged over the training days, as in `_tables()`."""
        from .foldin import FoldIn
        d = self._current()
        S, K = d["draw_w0"].shape[0], self.rank
        items = np.asarray(items, dtype=np.int64)
        r = np.asarray(ratings, dtype=np.float64)
        if items.size == 0:
            raise ValueError("ratings is empty: fold-in needs at least one rating")
        if items.min() < 1:
            raise ValueError("fold-in ratings cannot be about '#na#'")
        facs, biases = [], []
        uniq = np.unique(items)
        wbar, vbar = self._date_mean(d)
        for s in range(S):
            I = d["draw_i_weight"][s].astype(np.float64)
            bi = d["draw_i_bias"][s].astype(np.float64)
            p, lin, half = np.zeros(K), 0.0, 0.0
            if self.implicit_user:
                xv = 1.0 / np.sqrt(uniq.size)
                Vj = d["draw_imp_weight"][s][uniq].astype(np.float64)
                p = xv * Vj.sum(0)
                lin = xv * float(d["draw_imp_bias"][s][uniq].sum())
                half = 0.5 * (p @ p - xv * xv * float((Vj ** 2).sum()))
            pr = d["draw_user_prior"][s].astype(np.float64)
            alpha, mu = pr[0], np.concatenate([[pr[1]], pr[3:3 + K]])
            prec = np.diag(np.concatenate([[pr[2]], pr[3 + K:]]))   # the bias's and factors' precision
            if "draw_user_prec" in d:                   # Normal-Wishart: the factors' matrix
                prec[1:, 1:] = d["draw_user_prec"][s]
            # score_j = c_j + b + v.z_j (the user's one-hot bias b and factors v unknown)
            c0 = float(d["draw_w0"][s]) + lin + half + wbar[s] + vbar[s] @ p
            Z = np.hstack([np.ones((items.size, 1)), p + vbar[s] + I[items]])
            c = c0 + bi[items] + I[items] @ (p + vbar[s])
            A = alpha * Z.T @ Z + prec
            sol = np.linalg.solve(A, alpha * Z.T @ (r - c) + prec @ mu)
            b, v = sol[0], sol[1:]
            facs.append(p + v)
            biases.append(c0 + b + v @ (p + vbar[s]))
        return FoldIn(learn, np.concatenate(facs) / S, float(np.mean(biases)), False, rated=items,
                      name=name, n_ratings=items.size)

    def __repr__(self):
        return (f"BayesModel(n_factors={self.rank}, n_users={self.n_users}, n_items={self.n_items}, "
                f"draws={int(self._draws['n_drawn'][0])}/{self.n_draws}"
                + ("" if self.fm is None else f", sweeps={self.fm.sweeps_done}/{self.fm.n_samples}") + ")")


def make_bayes_path(learn):
    "The training path of a `BayesModel` (`collabc.paths.make_path` asks the model for it)."
    return BayesPath(learn)


BayesModel.make_path = staticmethod(make_bayes_path)
