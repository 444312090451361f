"""Property-based tests (hypothesis) of every `collabc._core` entry point and of the public API.

For each entry point hypothesis draws sizes (empty included), values (with NaN and inf
mixed in), ids (negative, huge, repeated) and one mutation of the arguments: a wrong dtype,
the other byte order, a stride, Fortran order, misalignment, an extra axis, a read-only
output, a list instead of an array, an id out of range, an output that shares memory with an
input, a wrong size, or a non-finite / out-of-range hyperparameter. Each call must either
succeed, and then give the NumPy float64 reference's answer (where the inputs are finite) and
leave its read-only inputs untouched, or raise a clean exception (TypeError, ValueError,
IndexError, OverflowError, MemoryError) - never crash. The public API (CollabDataLoaders,
collab_learner, Learner.fit, EmbeddingNN, set_seed, the model's __call__) gets random bad
input with the same rule. Example counts are bounded so the file runs in well under a minute."""
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collabc import (Callback, CancelFitException, CollabDataLoaders, EmbeddingDotBias, EmbeddingNN,
                     TrainingDivergedError, _core, collab_learner, set_seed)

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import reference as ref  # noqa: E402
import reference_nn as ref_nn  # noqa: E402
import test_hardening as th  # noqa: E402  (good arguments of every entry point)

CLEAN = (TypeError, ValueError, IndexError, OverflowError, MemoryError)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- random valid arguments

class Case:
    "Keyword arguments of a valid call, which of them are written, ids and a reference check."

    def __init__(self, kw, written, ids=(), check=None):
        self.kw, self.written, self.ids, self.check = kw, set(written), dict(ids), check


def _vals(rng, *shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def _close(got, want, what, tol=2e-4):
    want = np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol * (1 + np.abs(want).max(initial=0)),
                               err_msg=what)


def build(fn, draw, rng):
    "A random valid call of fn, with sizes from hypothesis and values from rng."
    n = lambda lo=0, hi=9: draw(st.integers(lo, hi))  # noqa: E731
    if fn in ("embedding_forward", "embedding_backward"):
        B, K, N = n(), n(1, 5), n(1, 7)
        w, idx, d = _vals(rng, N, K), rng.integers(0, N, B).astype(np.int32), _vals(rng, B, K)
        if fn == "embedding_forward":
            return Case(dict(out=np.zeros((B, K), np.float32), weight=w, idx=idx), ["out"], {"idx": N},
                        lambda kw, r: _close(kw["out"], ref.embedding_forward(w, idx), fn))
        dw0 = _vals(rng, N, K)
        return Case(dict(dweight=dw0.copy(), dout=d, idx=idx), ["dweight"], {"idx": N},
                    lambda kw, r: _close(kw["dweight"], dw0 + ref.embedding_backward(d, idx, N), fn))
    if fn in ("dotbias_forward", "dotbias_backward"):
        B, K, NU, NI, bias = n(), n(1, 5), n(1, 6), n(1, 6), draw(st.booleans())
        uw, iw = _vals(rng, NU, K), _vals(rng, NI, K)
        ub, ib = (_vals(rng, NU), _vals(rng, NI)) if bias else (None, None)
        users, items = rng.integers(0, NU, B).astype(np.int32), rng.integers(0, NI, B).astype(np.int32)
        if fn == "dotbias_forward":
            return Case(dict(out=np.zeros(B, np.float32), uw=uw, iw=iw, ub=ub, ib=ib, users=users, items=items),
                        ["out"], {"users": NU, "items": NI},
                        lambda kw, r: _close(kw["out"], ref.dotbias_forward(uw, iw, ub, ib, users, items), fn))
        dout = _vals(rng, B)

        def check(kw, r):
            g = ref.dotbias_backward(dout, uw, iw, users, items, has_bias=bias)
            _close(kw["duw"], g[0], fn)
            _close(kw["diw"], g[1], fn)
            if bias:
                _close(kw["dub"], g[2], fn)
                _close(kw["dib"], g[3], fn)
        z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
        return Case(dict(duw=z(NU, K), diw=z(NI, K), dub=z(NU) if bias else None, dib=z(NI) if bias else None,
                         dout=dout, uw=uw, iw=iw, users=users, items=items), ["duw", "diw", "dub", "dib"],
                    {"users": NU, "items": NI}, check)
    if fn in ("sigmoid_range_forward", "sigmoid_range_backward", "relu_forward", "relu_backward",
              "dropout_forward", "dropout_backward", "mse_forward", "mse_backward"):
        N = n(1 if fn.startswith("mse") else 0, 40)
        x, d = _vals(rng, N, scale=3), _vals(rng, N)
        lo = float(draw(st.floats(-5, 5)))
        hi = lo + float(draw(st.floats(0.5, 10)))
        mask = np.where(rng.random(N) < 0.3, 0.0, 1 / 0.7).astype(np.float32)
        if fn == "sigmoid_range_forward":
            return Case(dict(out=np.zeros(N, np.float32), x=x, lo=lo, hi=hi), ["out"], (),
                        lambda kw, r: _close(kw["out"], ref.sigmoid_range_forward(x, np.float32(lo), np.float32(hi)), fn))
        if fn == "sigmoid_range_backward":
            return Case(dict(dx=np.zeros(N, np.float32), dout=d, x=x, lo=lo, hi=hi), ["dx"], (),
                        lambda kw, r: _close(kw["dx"], ref.sigmoid_range_backward(d, x, np.float32(lo), np.float32(hi)), fn))
        if fn == "relu_forward":
            return Case(dict(out=np.zeros(N, np.float32), x=x), ["out"], (),
                        lambda kw, r: _close(kw["out"], ref.relu_forward(x), fn))
        if fn == "relu_backward":
            return Case(dict(dx=np.zeros(N, np.float32), dout=d, x=x), ["dx"], (),
                        lambda kw, r: _close(kw["dx"], ref.relu_backward(d, x), fn))
        if fn == "dropout_forward":
            return Case(dict(out=np.zeros(N, np.float32), x=x, mask=mask), ["out"], (),
                        lambda kw, r: _close(kw["out"], x.astype(np.float64) * mask, fn))
        if fn == "dropout_backward":
            return Case(dict(dx=np.ones(N, np.float32), dout=d, mask=mask), ["dx"], (),
                        lambda kw, r: _close(kw["dx"], 1 + d.astype(np.float64) * mask, fn))
        if fn == "mse_forward":
            return Case(dict(pred=x, y=d), [], (), lambda kw, r: _close(r, ref.mse_forward(x, d), fn, 1e-6))
        return Case(dict(dpred=np.zeros(N, np.float32), pred=x, y=d), ["dpred"], (),
                    lambda kw, r: _close(kw["dpred"], ref.mse_backward(x, d), fn))
    if fn in ("adam_step", "sgd_step"):
        N = n(0, 30)
        p, g = _vals(rng, N), _vals(rng, N)
        lr, mom, wd = float(draw(st.floats(0, 0.1))), float(draw(st.floats(0, 0.99))), float(draw(st.floats(0, 1)))
        dec = draw(st.booleans())
        if fn == "adam_step":
            m, v = _vals(rng, N, scale=0.1), np.abs(_vals(rng, N, scale=0.1))
            step = draw(st.integers(1, 10**6))

            def check(kw, r):
                rp, rm, rv = ref.adam_step(p, g, m, v, lr, mom, 0.99, 1e-5, wd, step, dec)
                _close(kw["p"], rp, fn, 1e-4)
                _close(kw["m"], rm, fn, 1e-4)
                _close(kw["v"], rv, fn, 1e-4)
            return Case(dict(p=p.copy(), g=g, m=m.copy(), v=v.copy(), lr=lr, mom=mom, sqr_mom=0.99, eps=1e-5,
                             wd=wd, step=step, decouple_wd=dec), ["p", "m", "v"], (), check)
        buf = _vals(rng, N) if draw(st.booleans()) else None

        def check(kw, r):
            rp, rb = ref.sgd_step(p, g, buf, lr, mom, wd, dec)
            _close(kw["p"], rp, fn, 1e-4)
            if buf is not None:
                _close(kw["buf"], rb, fn, 1e-4)
        return Case(dict(p=p.copy(), g=g, buf=None if buf is None else buf.copy(), lr=lr, mom=mom, wd=wd,
                         decouple_wd=dec), ["p", "buf"], (), check)
    if fn == "onecycle":
        N = n(0, 30)
        pos = rng.random(N)
        a, b, c, pct = (float(draw(st.floats(0, 1))) for _ in range(4))
        return Case(dict(pos=pos, start=a, middle=b, end=c, pct_start=pct), [], (),
                    lambda kw, r: _close(r, ref.onecycle(pos, a, b, c, pct), fn, 1e-9))
    if fn == "dot_predict":
        N, K, NU, NI, bias = n(), n(1, 4), n(1, 6), n(1, 6), draw(st.booleans())
        yr = draw(st.sampled_from([None, (0.0, 5.5), (-1.0, 1.0)]))
        P = ref.dot_n_params(NU, NI, K, bias)
        params = _vals(rng, P)
        x = np.stack([rng.integers(0, NU, N), rng.integers(0, NI, N)], 1).astype(np.int32).reshape(N, 2)
        return Case(dict(out=np.zeros(N, np.float32), params=params, x=x, n_users=NU, n_items=NI, n_factors=K,
                         has_bias=bias, y_range=yr), ["out"], {"x": (NU, NI)},
                    lambda kw, r: _close(kw["out"], ref.dot_predict(params, x, NU, NI, K, bias, yr), fn))
    if fn in ("linear_forward", "linear_backward"):
        B, DI, DO, bias = n(0, 40), n(1, 6), n(1, 5), draw(st.booleans())
        xT, W, b = _vals(rng, DI, B), _vals(rng, DO, DI), _vals(rng, DO) if bias else None
        if fn == "linear_forward":
            return Case(dict(outT=np.zeros((DO, B), np.float32), xT=xT, W=W, bias=b), ["outT"], (),
                        lambda kw, r: _close(kw["outT"], ref_nn.linear_forward(xT, W, b), fn))
        d = _vals(rng, DO, B)
        with_dx = draw(st.booleans())

        def check(kw, r):
            rdx, rdW, rdb = ref_nn.linear_backward(d, xT, W)
            _close(kw["dW"], rdW, fn)
            if with_dx:
                _close(kw["dxT"], rdx, fn)
            if bias:
                _close(kw["dbias"], rdb, fn)
        return Case(dict(dxT=np.zeros((DI, B), np.float32) if with_dx else None, dW=np.zeros((DO, DI), np.float32),
                         dbias=np.zeros(DO, np.float32) if bias else None, doutT=d, xT=xT, W=W),
                    ["dxT", "dW", "dbias"], (), check)
    if fn.startswith("batchnorm"):
        B, N = n(2, 30), n(1, 5)
        xT, gamma, beta = _vals(rng, N, B, scale=2) + 1, _vals(rng, N) + 1, _vals(rng, N)
        rm, rv = _vals(rng, N), np.abs(_vals(rng, N)) + 0.5
        if fn == "batchnorm_forward_train":
            def check(kw, r):
                o, mu, inv, rm2, rv2 = ref_nn.batchnorm_forward_train(xT, gamma, beta, rm, rv)
                for name, want in [("outT", o), ("mean", mu), ("invstd", inv), ("running_mean", rm2),
                                   ("running_var", rv2)]:
                    _close(kw[name], want, f"{fn} {name}", 1e-3)
            z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
            return Case(dict(outT=z(N, B), mean=z(N), invstd=z(N), xT=xT, gamma=gamma, beta=beta,
                             running_mean=rm.copy(), running_var=rv.copy(), momentum=0.1, eps=1e-5),
                        ["outT", "mean", "invstd", "running_mean", "running_var"], (), check)
        if fn == "batchnorm_forward_eval":
            return Case(dict(outT=np.zeros((N, B), np.float32), xT=xT, gamma=gamma, beta=beta, running_mean=rm,
                             running_var=rv, eps=1e-5), ["outT"], (),
                        lambda kw, r: _close(kw["outT"], ref_nn.batchnorm_forward_eval(xT, gamma, beta, rm, rv), fn, 1e-3))
        out, mean, inv = np.zeros((N, B), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)
        _core.batchnorm_forward_train(out, mean, inv, xT, gamma, beta, rm.copy(), rv.copy())
        d = _vals(rng, N, B)

        def check(kw, r):
            rdx, rdg, rdb = ref_nn.batchnorm_backward(d, xT, gamma)
            _close(kw["dxT"], rdx, fn, 2e-3)
            _close(kw["dgamma"], rdg, fn, 2e-3)
            _close(kw["dbeta"], rdb, fn, 2e-3)
        return Case(dict(dxT=np.zeros((N, B), np.float32), dgamma=np.zeros(N, np.float32),
                         dbeta=np.zeros(N, np.float32), doutT=d, xT=xT, mean=mean, invstd=inv, gamma=gamma),
                    ["dxT", "dgamma", "dbeta"], (), check)
    if fn == "dropout_mask":
        N, p, seed = n(0, 200), float(draw(st.floats(0, 0.95))), draw(st.integers(0, 2**64 - 1))

        def check(kw, r):
            m = kw["mask"]
            keep = np.float32(1 / (1 - p))
            assert np.all((m == 0) | (m == keep)), fn
            again = np.empty_like(m)
            _core.dropout_mask(again, p, seed)
            np.testing.assert_array_equal(again, m)
        return Case(dict(mask=np.full(N, 7.0, np.float32), p=p, seed=seed), ["mask"], (), check)
    if fn in ("embedding_concat_forward", "embedding_concat_backward"):
        E, B = n(1, 4), n(0, 8)
        rows = [n(1, 5) for _ in range(E)]
        dims = [n(1, 3) for _ in range(E)]
        tables = [_vals(rng, r, d) for r, d in zip(rows, dims)]
        ids = np.stack([rng.integers(0, r, B) for r in rows]).astype(np.int32).reshape(E, B)
        D = sum(dims)
        if fn == "embedding_concat_forward":
            want = np.concatenate([t[i] for t, i in zip(tables, ids)], 1).T if B else np.zeros((D, 0))
            return Case(dict(outT=np.zeros((D, B), np.float32), tables=tables, ids=ids), ["outT"], {"ids": rows},
                        lambda kw, r: _close(kw["outT"], want, fn))
        d = _vals(rng, D, B)

        def check(kw, r):
            off = 0
            for e, (t, dim) in enumerate(zip(kw["dtables"], dims)):
                _close(t, ref.embedding_backward(d[off:off + dim].T, ids[e], rows[e]), fn)
                off += dim
        return Case(dict(dtables=[np.zeros((r, dd), np.float32) for r, dd in zip(rows, dims)], doutT=d, ids=ids),
                    ["dtables"], {"ids": rows}, check)
    if fn in ("tensor_gather_forward", "tensor_gather_backward", "tensor_sum_rows_forward", "tensor_zero_rows"):
        B, K, N = n(), n(1, 5), n(1, 7)
        table, d = _vals(rng, N, K), _vals(rng, B, K)
        idx = rng.integers(0, N, (B, 2)).astype(np.int64)[:, 1]  # ids are read with any stride
        if fn == "tensor_sum_rows_forward":
            case = Case(dict(out=np.zeros(B, np.float32), x=d), ["out"], (),
                        lambda kw, r: _close(kw["out"], d.astype(np.float64).sum(1), fn))
        elif fn == "tensor_zero_rows":
            want = table.copy()
            want[idx] = 0
            case = Case(dict(table=table.copy(), idx=idx, wrap=False), ["table"], {"idx": N},
                        lambda kw, r: _close(kw["table"], want, fn))
        elif fn == "tensor_gather_forward":
            case = Case(dict(out=np.zeros((B, K), np.float32), table=table, idx=idx, wrap=False), ["out"],
                        {"idx": N}, lambda kw, r: _close(kw["out"], ref.embedding_forward(table, idx), fn))
        else:
            d0 = _vals(rng, N, K)
            case = Case(dict(dtable=d0.copy(), dout=d, idx=idx, wrap=False), ["dtable"], {"idx": N},
                        lambda kw, r: _close(kw["dtable"], d0 + ref.embedding_backward(d, idx, N), fn))
        case.strided_ok = {"idx"}
        return case
    # the drivers and the ranking / block entry points: fixed shapes, random values
    kw = th.good_args(fn)
    for name, a in kw.items():
        if isinstance(a, np.ndarray) and a.dtype == np.float32 and name in ("params", "qw", "qb", "cb", "y", "cw"):
            kw[name] = (a + _vals(rng, *a.shape, scale=0.1)).astype(np.float32)
    written = {"dot_fit_epoch": ["params", "grads", "m", "v", "losses"],
               "nn_fit_epoch": ["params", "grads", "stats", "m", "v", "losses"], "nn_predict": ["out"],
               "rank_pack": [], "rank_dot_topk": ["top_idx", "top_score"], "block_sort": ["x", "y", "extra"],
               "dot_fit_blocks": ["params", "losses", "m", "v", "pow1", "pow2"], "dot_layout": [],
               "optimizer_step": ["params", "m", "v"],
               "als_csr": [], "als_transpose": [], "als_gramian": ["G"], "als_solve": ["X"],
               "bpr_blocks": [], "bpr_fit_blocks": ["U", "V", "b", "acc", "losses", "stats", "triples"],
               "bpr_fold_in": ["x"],
               "bfm_run": ["rmse", "theta", "hyper", "theta_mean", "hyper_mean", "eval_mean", "cache",
                           "counters"],
               "bfm_predict": ["out"], "bfm_random": ["out"], "bfm_stream": ["out"], "isa": [],
               "isa_levels": []}[fn]
    ids = {"dot_fit_epoch": {"x": (th.tb.NU, th.tb.NI), "order": th.tb.R}, "nn_predict": {"x": (5, 4)},
           "nn_fit_epoch": {"x": (5, 4), "order": th.NN_R}, "dot_fit_blocks": {"blocks": 4},
           "als_csr": {"rows": th.IM_NU, "cols": th.IM_NI}, "als_transpose": {"indices": th.IM_NI},
           "als_solve": {"indices": th.IM_NI}, "bpr_blocks": {"indices": th.IM_NI},
           "bpr_fit_blocks": {"blocks": 4, "pairs": (th.IM_NU, th.IM_NI)},
           "bpr_fold_in": {"items": th.IM_NI}}.get(fn, {})

    def check(kw, r):
        for name in written:
            a = kw[name]
            if a is not None and a.dtype.kind == "f":
                assert np.all(np.isfinite(a)), f"{fn}: {name} not finite"
    case = Case(kw, written, ids, check)
    if fn == "als_csr":   # reads its ids through their stride (columns of an (n, 2) array)
        case.strided_ok = {"rows", "cols"}
    return case


SIMPLE = ["embedding_forward", "embedding_backward", "dotbias_forward", "dotbias_backward",
          "sigmoid_range_forward", "sigmoid_range_backward", "relu_forward", "relu_backward", "mse_forward",
          "mse_backward", "adam_step", "sgd_step", "onecycle", "dot_predict", "linear_forward", "linear_backward",
          "batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward", "dropout_mask",
          "dropout_forward", "dropout_backward", "embedding_concat_forward", "embedding_concat_backward"]
ENTRY_POINTS = sorted(n for n in dir(_core) if not n.startswith("_"))


# ---------------------------------------------------------------- mutations

def _array_names(case):
    return [k for k, v in case.kw.items() if isinstance(v, np.ndarray)]


def _byteswap(a):
    return a.astype(a.dtype.newbyteorder())


def _strided(a):
    big = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype) if a.ndim else a
    big[::2] = a
    return big[::2]


def _misaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


MUTATIONS = ["none", "none", "special", "dtype", "byteswap", "strided", "fortran", "misaligned", "readonly",
             "extra_axis", "list", "bad_id", "alias", "size", "hyper"]


def mutate(case, draw, rng):
    """Apply one drawn mutation; returns (description, expectation), where expectation is
    'ok' (must succeed and match the reference), 'clean' (success or a clean error; values
    not compared) or 'error' (must raise a clean error)."""
    kind = draw(st.sampled_from(MUTATIONS))
    kw = case.kw
    arrays = _array_names(case)
    if kind == "none" or not arrays:
        return "none", "ok"
    if kind == "special":
        floats = [k for k in arrays if kw[k].dtype.kind == "f" and kw[k].size and k not in case.written]
        if not floats:
            return "none", "ok"
        name = draw(st.sampled_from(floats))
        a = kw[name].copy()
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -0.0]))
        kw[name] = a
        return f"special value in {name}", "clean"
    if kind == "hyper":
        scalars = [k for k, v in kw.items() if isinstance(v, float) and not isinstance(v, bool)]
        if not scalars:
            return "none", "ok"
        name = draw(st.sampled_from(scalars))
        kw[name] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 1e300, 2.0, 0.0]))
        return f"{name}={kw[name]}", "clean"
    if kind == "bad_id":
        if not case.ids:
            return "none", "ok"
        name = draw(st.sampled_from(sorted(case.ids)))
        a = kw[name].copy()
        if not a.size:
            return "none", "ok"
        limit = case.ids[name]
        bad = draw(st.sampled_from([-1, "limit", np.iinfo(a.dtype).min, np.iinfo(a.dtype).max]))
        pos = draw(st.integers(0, a.size - 1))
        if bad == "limit":
            if isinstance(limit, (tuple, list)):
                col = pos % a.shape[-1] if isinstance(limit, tuple) else pos // a.shape[-1]
                bad = limit[col] if isinstance(limit, tuple) else limit[col]
            else:
                bad = limit
        a.flat[pos] = bad
        kw[name] = a
        return f"{name}[{pos}] = {bad}", "error"
    name = draw(st.sampled_from(arrays))
    a = kw[name]
    if kind == "dtype":
        kw[name] = a.astype(np.float64 if a.dtype != np.float64 else np.float32)
        return f"{name} as {kw[name].dtype}", "error"
    if kind == "byteswap":
        kw[name] = _byteswap(a)
        return f"{name} byteswapped", "error"
    if kind == "strided":
        if a.ndim == 0 or a.shape[0] < 2:
            return "none", "ok"
        kw[name] = _strided(a)
        return f"{name} strided", ("ok" if name in getattr(case, "strided_ok", ()) else "error")
    if kind == "fortran":
        f = np.asfortranarray(a) if a.ndim == 2 else a
        kw[name] = f
        ok = f.flags.c_contiguous or name in getattr(case, "strided_ok", ())
        return f"{name} in Fortran order", ("ok" if ok else "error")
    if kind == "misaligned":
        if a.size == 0:
            return "none", "ok"
        kw[name] = _misaligned(a)
        return f"{name} misaligned", "error"
    if kind == "readonly":
        kw[name] = _readonly(a)
        return f"{name} read-only", ("error" if name in case.written else "ok")
    if kind == "extra_axis":
        kw[name] = a[None]
        return f"{name} with an extra axis", "error"
    if kind == "list":
        kw[name] = a.tolist()
        return f"{name} as a list", "error"
    if kind == "alias":
        outs = [k for k in arrays if k in case.written and kw[k].size]
        ins = [k for k in arrays if k != name and kw[k].size]
        if not outs or not ins:
            return "none", "ok"
        out = draw(st.sampled_from(outs))
        src = draw(st.sampled_from([k for k in ins if k != out] or ["none"]))
        if src == "none" or kw[src].dtype != kw[out].dtype or kw[src].nbytes < kw[out].nbytes:
            return "none", "ok"
        kw[out] = kw[src].reshape(-1)[:kw[out].size].reshape(kw[out].shape)  # a view into src
        return f"{out} aliases {src}", "error"
    if kind == "size":
        if a.ndim == 0:
            return "none", "ok"
        axis = draw(st.integers(0, a.ndim - 1))
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, 1)
        kw[name] = np.pad(a, pad)
        return f"{name} one longer on axis {axis}", "clean"  # some sizes are free (a new batch size)
    raise AssertionError(kind)


def _frozen(kw, written):
    return {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray) and k not in written}


@pytest.mark.parametrize("fn", ENTRY_POINTS)
@SETTINGS
@given(data=st.data())
def test_entry_point_succeeds_correctly_or_raises_cleanly(fn, data):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    case = build(fn, data.draw, rng)
    what, expect = mutate(case, data.draw, rng)
    event(f"expect {expect}")
    frozen = _frozen(case.kw, case.written)
    try:
        result = getattr(_core, fn)(**case.kw)
    except CLEAN as e:
        event(f"raised {type(e).__name__}")
        assert expect != "ok", f"{fn} with {what}: unexpected {type(e).__name__}: {e}"
        assert fn in str(e) or isinstance(e, (TypeError, MemoryError, OverflowError)), \
            f"{fn} with {what}: the message does not name the function: {e}"
        return
    assert expect != "error", f"{fn} accepted {what}"
    for k, v in frozen.items():  # read-only inputs are never written
        np.testing.assert_array_equal(case.kw[k], v, err_msg=f"{fn} changed its input {k!r} ({what})")
    if expect == "ok" and case.check is not None:
        case.check(case.kw, result)


# ---------------------------------------------------------------- huge sizes (in a subprocess)

@pytest.mark.parametrize("code", [
    "_core.dot_predict(np.zeros(1, np.float32), np.zeros(2, np.float32), np.array([[1, 0]], np.int32), "
    "2**31 - 1, 2**31 - 1, 2**31 - 1, True, None)",
    "_core.embedding_forward(np.zeros((1, 2**40), np.float32)[:, :0].reshape(1, 0), np.zeros((3, 0), np.float32), "
    "np.array([2**31 - 1], np.int32))",
    "_core.dropout_mask(np.zeros(4, np.float32), 0.5, 2**64)",
    "_core.dot_fit_epoch(np.zeros(18, np.float32), np.zeros(18, np.float32), None, None, np.zeros(1), "
    "np.zeros((2, 2), np.int32), np.zeros(2, np.float32), np.arange(2), np.ones(1), np.zeros(1), n_users=1, "
    "n_items=1, n_factors=8, has_bias=True, y_range=None, bs=2**63 - 1, opt='sgd', wd=0.0, n_wd=2**63 - 1, "
    "sqr_mom=0.0, eps=1.0, decouple_wd=True, step=2**63 - 1)",
    "_core.nn_predict(np.zeros(1, np.float32), np.zeros(8, np.float32), np.zeros(0, np.float32), "
    "np.zeros((1, 1), np.int32), tables=np.array([[2**62, 4, 0]]), ops=np.array([[0, 4, 1, 0, -1, -1]]), "
    "ps=np.zeros(1), y_range=None, bn_momentum=0.1, bn_eps=1e-5)",
    "_core.nn_predict(np.zeros(1, np.float32), np.zeros(8, np.float32), np.zeros(0, np.float32), "
    "np.zeros((1, 1), np.int32), tables=np.array([[2, 2, 0]]), ops=np.array([[0, 2, 2**62, 4, -1, -1]]), "
    "ps=np.zeros(1), y_range=None, bn_momentum=0.1, bn_eps=1e-5)",
    "_core.rank_pack(np.zeros((2**31, 0), np.float32))",
    "_core.block_sort(np.zeros((4, 2), np.int32), np.zeros(4, np.float32), None, 2**32)",
], ids=["dot_predict", "embedding_forward", "dropout_mask", "dot_fit_epoch", "nn_predict_rows", "nn_predict_width",
        "rank_pack", "block_sort"])
def test_huge_sizes_are_refused_or_harmless_never_a_crash(code):
    r = th._run_isolated(f"""
        import numpy as np
        from collabc import _core
        try:
            {code}
            print("ok")
        except (TypeError, ValueError, IndexError, OverflowError, MemoryError) as e:
            print("refused", type(e).__name__, e)
    """, timeout=60)
    assert r.returncode == 0 and r.stdout.split()[:1] in (["ok"], ["refused"]), \
        f"returncode {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr[-400:]!r}"


# ---------------------------------------------------------------- the public API

_LABELS = st.one_of(st.integers(-3, 20), st.sampled_from(["a", "b", "c", "#na#", ""]), st.none(),
                    st.floats(allow_nan=True), st.booleans())
_RATINGS = st.one_of(st.integers(-5, 10), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                     st.sampled_from(["5", "x"]))


@SETTINGS
@given(rows=st.lists(st.tuples(_LABELS, _LABELS, _RATINGS), min_size=0, max_size=25),
       valid_pct=st.one_of(st.floats(-0.5, 1.5), st.just(0.2), st.just(float("nan"))),
       bs=st.one_of(st.integers(-2, 70), st.just(2**40), st.floats(0, 5)),
       seed=st.one_of(st.none(), st.integers(-1, 2**64)))
def test_from_df_random_frames(rows, valid_pct, bs, seed):
    df = pd.DataFrame(rows, columns=["user", "item", "rating"]) if rows else pd.DataFrame(columns=["user", "item", "rating"])
    try:
        dls = CollabDataLoaders.from_df(df, valid_pct=valid_pct, bs=bs, seed=seed)
    except (TypeError, ValueError, KeyError):
        return
    assert dls.train.n + dls.valid.n == len(df)
    for dl in (dls.train, dls.valid):
        assert np.all(np.isfinite(dl.y))
        if dl.n:
            assert 0 <= dl.x[:, 0].min() and dl.x[:, 0].max() < dls.n_users
            assert 0 <= dl.x[:, 1].min() and dl.x[:, 1].max() < dls.n_items
    learn = th.quiet(collab_learner(dls, n_factors=2, y_range=(0, 5.5)))
    if len(dls.train):
        try:
            learn.fit(1, 1e-2)
        except TrainingDivergedError:
            pass
        assert np.all(np.isfinite(learn.model.params))


@pytest.fixture(scope="module")
def dls():
    set_seed(0)
    return CollabDataLoaders.from_df(th.ratings(n=400), bs=32)


_ANY = st.one_of(st.none(), st.integers(-2, 5), st.just(2**31), st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from(["", "x", (1,), [], [0, 5], (5, 0), (0, 5.5), [3, 2], {}, [(2, 2)]]))


@SETTINGS
@given(n_factors=_ANY, y_range=_ANY, use_nn=st.booleans(), layers=_ANY, lr=_ANY, wd=_ANY, n_epoch=_ANY)
def test_collab_learner_and_fit_with_random_arguments(dls, n_factors, y_range, use_nn, layers, lr, wd, n_epoch):
    kw = dict(n_factors=n_factors, y_range=y_range, use_nn=use_nn)
    if use_nn:
        kw["layers"] = layers
    try:
        learn = th.quiet(collab_learner(dls, **kw))
    except (TypeError, ValueError, KeyError):
        return
    try:   # any n_epoch the fit accepts (2**31 included) runs two epochs at most: a fit that
        # neither diverges nor ends would never finish (while shrinking, hypothesis tries such cases)
        learn.fit(n_epoch, lr, wd=wd, cbs=_StopAfter(2))
    except (TypeError, ValueError, TrainingDivergedError):
        pass
    assert np.all(np.isfinite(learn.model.params))


class _StopAfter(Callback):
    "Cancels the fit after `n` epochs."
    def __init__(self, n):
        self.n = n

    def after_epoch(self):
        if self.learn.epoch + 1 >= self.n:
            raise CancelFitException()


@SETTINGS
@given(emb_szs=st.one_of(_ANY, st.lists(st.tuples(st.integers(-1, 6), st.integers(-1, 4)), max_size=3)),
       layers=_ANY, ps=_ANY, embed_p=_ANY, y_range=_ANY, use_bn=st.booleans())
def test_embedding_nn_with_random_arguments(emb_szs, layers, ps, embed_p, y_range, use_bn):
    try:
        m = EmbeddingNN(emb_szs, layers, ps=ps, embed_p=embed_p, y_range=y_range, use_bn=use_bn)
    except (TypeError, ValueError, KeyError):
        return
    assert m.params.dtype == np.float32 and np.all(np.isfinite(m.params))
    x = np.zeros((3, len(m._tables)), np.int32)
    out = np.empty(3, np.float32)
    _core.nn_predict(out, m.params, m.stats, x, **m._net_args())
    assert np.all(np.isfinite(out))


@SETTINGS
@given(x=st.one_of(_ANY, st.lists(st.lists(st.integers(-2**40, 2**40), min_size=0, max_size=3), max_size=4)),
       dtype=st.sampled_from([None, np.int8, np.int64, np.uint64, np.float32, np.float64, object]))
def test_model_call_with_random_ids(x, dtype):
    model = EmbeddingDotBias(3, 5, 4, y_range=(0, 5.5))
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(x, dtype=dtype) if dtype is not None else x
    except (TypeError, ValueError, OverflowError):
        return
    try:
        out = model(arr)
    except (TypeError, ValueError, IndexError):
        return
    assert out.dtype == np.float32 and np.all((out >= 0) & (out <= 5.5))


@SETTINGS
@given(s=st.one_of(_ANY, st.integers(-2**70, 2**70)))
def test_set_seed_with_random_values(s):
    try:
        set_seed(s)
    except (TypeError, ValueError):
        return
    a = CollabDataLoaders.from_df(th.ratings(n=50), bs=8).train.order()
    set_seed(s)
    b = CollabDataLoaders.from_df(th.ratings(n=50), bs=8).train.order()
    np.testing.assert_array_equal(a, b)
