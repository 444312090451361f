"""Binding hygiene of collabc._core (house style 20): every validation path of every entry
point raises the right exception type with a message naming the function and the argument;
ids and order entries are range-checked before anything is written; written arrays may not
alias other arguments; reference counts and resident memory stay flat over many calls;
read-only inputs come back unmodified; the GIL is released (two threads train at once and
both get the single-threaded answer)."""
import gc
import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from collabc import _core

# ---------------------------------------------------------------- valid arguments per entry point

B, K, NU, NI = 6, 3, 5, 4
R, J, BS = 10, 3, 4  # dot_fit_epoch: 10 rows, 3 batches of 4 (the last one has 2 rows)
P_BIAS = (NU + NI) * K + NU + NI


def _f32(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _ids(n, limit, seed=0):
    ids = np.random.default_rng(seed).integers(0, limit, n).astype(np.int32)
    ids[0], ids[1] = limit - 1, 0  # both ends of the valid range
    return ids


def _pairs(n, seed=0):
    return np.stack([_ids(n, NU, seed), _ids(n, NI, seed + 1)], axis=1)


DOT_CFG = dict(n_users=NU, n_items=NI, n_factors=K, has_bias=True, y_range=(0.0, 5.5))


def good_args(fn):
    "Fresh keyword arguments of a call of _core.<fn> that succeeds."
    if fn == "embedding_forward":
        return dict(out=np.zeros((B, K), np.float32), weight=_f32(NU, K), idx=_ids(B, NU))
    if fn == "embedding_backward":
        return dict(dweight=np.zeros((NU, K), np.float32), dout=_f32(B, K), idx=_ids(B, NU))
    if fn == "dotbias_forward":
        return dict(out=np.zeros(B, np.float32), uw=_f32(NU, K), iw=_f32(NI, K, seed=1),
                    ub=_f32(NU, seed=2), ib=_f32(NI, seed=3), users=_ids(B, NU),
                    items=_ids(B, NI, seed=1))
    if fn == "dotbias_backward":
        return dict(duw=np.zeros((NU, K), np.float32), diw=np.zeros((NI, K), np.float32),
                    dub=np.zeros(NU, np.float32), dib=np.zeros(NI, np.float32), dout=_f32(B),
                    uw=_f32(NU, K), iw=_f32(NI, K, seed=1), users=_ids(B, NU),
                    items=_ids(B, NI, seed=1))
    if fn == "sigmoid_range_forward":
        return dict(out=np.zeros(B, np.float32), x=_f32(B), lo=0.0, hi=5.5)
    if fn == "sigmoid_range_backward":
        return dict(dx=np.zeros(B, np.float32), dout=_f32(B), x=_f32(B, seed=1), lo=0.0, hi=5.5)
    if fn == "relu_forward":
        return dict(out=np.zeros(B, np.float32), x=_f32(B))
    if fn == "relu_backward":
        return dict(dx=np.zeros(B, np.float32), dout=_f32(B), x=_f32(B, seed=1))
    if fn == "mse_forward":
        return dict(pred=_f32(B), y=_f32(B, seed=1))
    if fn == "mse_backward":
        return dict(dpred=np.zeros(B, np.float32), pred=_f32(B), y=_f32(B, seed=1))
    if fn == "adam_step":
        return dict(p=_f32(B), g=_f32(B, seed=1), m=np.zeros(B, np.float32),
                    v=np.zeros(B, np.float32), lr=1e-3, mom=0.9, sqr_mom=0.99, eps=1e-5,
                    wd=0.01, step=1, decouple_wd=True)
    if fn == "sgd_step":
        return dict(p=_f32(B), g=_f32(B, seed=1), buf=np.zeros(B, np.float32), lr=1e-2, mom=0.9,
                    wd=0.01, decouple_wd=True)
    if fn == "onecycle":
        return dict(pos=np.linspace(0, 1, B, endpoint=False), start=1e-4, middle=1e-3, end=1e-8,
                    pct_start=0.25)
    if fn == "dot_predict":
        return dict(out=np.zeros(B, np.float32), params=_f32(P_BIAS), x=_pairs(B), **DOT_CFG)
    if fn == "dot_fit_epoch":
        return dict(params=_f32(P_BIAS) * 0.1, grads=np.zeros(P_BIAS, np.float32),
                    m=np.zeros(P_BIAS, np.float32), v=np.zeros(P_BIAS, np.float32),
                    losses=np.zeros(J), x=_pairs(R), y=np.linspace(1, 5, R, dtype=np.float32),
                    order=np.random.default_rng(0).permutation(R).astype(np.int64),
                    lrs=np.full(J, 1e-3), moms=np.full(J, 0.9), bs=BS, opt="adam", wd=0.01,
                    n_wd=P_BIAS, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0, **DOT_CFG)
    raise KeyError(fn)


# written arrays, optional (None allowed) arrays, and arrays whose size is derived from
# another argument (so one extra row must be refused with *their* name)
WRITTEN = {
    "embedding_forward": ["out"], "embedding_backward": ["dweight"], "dotbias_forward": ["out"],
    "dotbias_backward": ["duw", "diw", "dub", "dib"], "sigmoid_range_forward": ["out"],
    "sigmoid_range_backward": ["dx"], "relu_forward": ["out"], "relu_backward": ["dx"],
    "mse_forward": [], "mse_backward": ["dpred"], "adam_step": ["p", "m", "v"],
    "sgd_step": ["p", "buf"], "onecycle": [], "dot_predict": ["out"],
    "dot_fit_epoch": ["params", "grads", "m", "v", "losses"],
}
OPTIONAL = {"dotbias_forward": ["ub", "ib"], "dotbias_backward": ["dub", "dib"],
            "sgd_step": ["buf"], "dot_fit_epoch": ["m", "v"]}
DERIVED = {
    "embedding_forward": [("out", 0), ("out", 1)], "embedding_backward": [("dout", 0), ("dout", 1)],
    "dotbias_forward": [("out", 0), ("iw", 1), ("ub", 0), ("ib", 0), ("items", 0)],
    "dotbias_backward": [("duw", 0), ("duw", 1), ("diw", 0), ("dub", 0), ("dib", 0), ("dout", 0),
                         ("iw", 1), ("items", 0)],
    "sigmoid_range_forward": [("out", 0)], "sigmoid_range_backward": [("dx", 0), ("dout", 0)],
    "relu_forward": [("out", 0)], "relu_backward": [("dx", 0), ("dout", 0)],
    "mse_forward": [("pred", 0)], "mse_backward": [("dpred", 0), ("pred", 0)],
    "adam_step": [("g", 0), ("m", 0), ("v", 0)], "sgd_step": [("g", 0), ("buf", 0)],
    "onecycle": [], "dot_predict": [("out", 0), ("params", 0), ("x", 1)],
    "dot_fit_epoch": [("params", 0), ("grads", 0), ("m", 0), ("v", 0), ("y", 0),
                      ("moms", 0), ("losses", 0), ("x", 1)],
}
FUNCS = sorted(WRITTEN)


def call(fn, kw):
    return getattr(_core, fn)(**kw)


def array_args(fn):
    return [k for k, v in good_args(fn).items() if isinstance(v, np.ndarray)]


def _cases(kind):
    return [(fn, name) for fn in FUNCS for name in array_args(fn)
            if kind != "written" or name in WRITTEN[fn]]


def expect(fn, kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(fn, kw)


def named(fn, name):
    return rf"^{fn}\(\): argument '{name}'"


# ---------------------------------------------------------------- the valid calls succeed

@pytest.mark.parametrize("fn", FUNCS)
def test_good_arguments_succeed_and_inputs_are_unmodified(fn):
    kw = good_args(fn)
    written = set(WRITTEN[fn])
    saved = {}
    for name, a in kw.items():
        if isinstance(a, np.ndarray) and name not in written:
            saved[name] = a.copy()
            a.flags.writeable = False  # read-only inputs are accepted
    call(fn, kw)
    for name, a in saved.items():
        np.testing.assert_array_equal(kw[name], a, err_msg=f"{fn}: input {name!r} modified")


def test_the_module_lists_every_entry_point():
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert set(FUNCS) <= public, set(FUNCS) - public
    assert isinstance(_core.__version__, str)
    for fn in FUNCS:
        assert getattr(_core, fn).__doc__, fn
        assert getattr(_core, fn).__text_signature__.startswith("("), fn


# ---------------------------------------------------------------- per-array validation

def _wrong_dtype(a):
    return a.astype({np.float32: np.float64, np.float64: np.float32, np.int32: np.int64,
                     np.int64: np.int32}[a.dtype.type])


def _float_ids(a):
    return a.astype(np.float32 if a.dtype == np.int32 else np.float64)


def _strided(a):
    s = np.repeat(a, 2, axis=0)[::2]
    assert s.shape == a.shape and not s.flags.c_contiguous
    return s


def _byteswapped(a):
    s = a.astype(a.dtype.newbyteorder("S"))
    assert not s.dtype.isnative
    return s


def _misaligned(a):
    buf = bytearray(a.nbytes + a.itemsize)
    s = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    s[...] = a
    assert not s.flags.aligned and s.flags.writeable and s.flags.c_contiguous
    return s


def _extra_axis(a):
    return a.reshape(a.shape + (1,))


@pytest.mark.parametrize("fn,name", _cases("all"))
def test_wrong_dtype_is_a_type_error(fn, name):
    kw = good_args(fn)
    want = kw[name].dtype.name
    kw[name] = _wrong_dtype(kw[name])
    expect(fn, kw, TypeError, named(fn, name) + f" must have dtype {want}, got numpy")


@pytest.mark.parametrize("fn,name", [(fn, n) for fn, n in _cases("all")
                                     if good_args(fn)[n].dtype.kind == "i"])
def test_float_ids_are_a_type_error(fn, name):
    kw = good_args(fn)
    kw[name] = _float_ids(kw[name])
    expect(fn, kw, TypeError, named(fn, name) + " must have dtype int")


@pytest.mark.parametrize("fn,name", _cases("all"))
def test_a_list_is_a_type_error(fn, name):
    kw = good_args(fn)
    kw[name] = kw[name].tolist()
    expect(fn, kw, TypeError, named(fn, name) + r" must be a \w+ ndarray, got list")


@pytest.mark.parametrize("fn,name", [(fn, n) for fn, n in _cases("all")
                                     if n not in OPTIONAL.get(fn, [])])
def test_none_for_a_required_array_is_a_type_error(fn, name):
    kw = good_args(fn)
    kw[name] = None
    expect(fn, kw, TypeError, named(fn, name) + r" must be a \w+ ndarray, got None")


@pytest.mark.parametrize("fn,name", _cases("all"))
def test_byteswapped_is_a_value_error(fn, name):
    kw = good_args(fn)
    kw[name] = _byteswapped(kw[name])
    expect(fn, kw, ValueError, named(fn, name) + " must be in native byte order")


@pytest.mark.parametrize("fn,name", _cases("all"))
def test_strided_is_a_value_error(fn, name):
    kw = good_args(fn)
    kw[name] = _strided(kw[name])
    expect(fn, kw, ValueError, named(fn, name) + " must be C-contiguous")


@pytest.mark.parametrize("fn,name", [(fn, n) for fn, n in _cases("all")
                                     if good_args(fn)[n].ndim == 2])
def test_fortran_order_is_a_value_error(fn, name):
    kw = good_args(fn)
    kw[name] = np.asfortranarray(kw[name])
    assert not kw[name].flags.c_contiguous
    expect(fn, kw, ValueError, named(fn, name) + " must be C-contiguous")


@pytest.mark.parametrize("fn,name", _cases("all"))
def test_misaligned_is_a_value_error(fn, name):
    kw = good_args(fn)
    kw[name] = _misaligned(kw[name])
    expect(fn, kw, ValueError, named(fn, name) + " must be aligned")


@pytest.mark.parametrize("fn,name", _cases("written"))
def test_read_only_output_is_a_value_error(fn, name):
    kw = good_args(fn)
    kw[name].flags.writeable = False
    expect(fn, kw, ValueError, named(fn, name) + " is written in place and must be writeable")


@pytest.mark.parametrize("fn,name", _cases("all"))
def test_wrong_ndim_is_a_value_error(fn, name):
    kw = good_args(fn)
    shape = kw[name].shape
    kw[name] = _extra_axis(kw[name])
    got = re.escape(str(shape + (1,)))
    expect(fn, kw, ValueError, named(fn, name) + rf" has shape {got} but \(.*\) was expected")


@pytest.mark.parametrize("fn,name,axis", [(fn, n, ax) for fn in FUNCS for n, ax in DERIVED[fn]])
def test_wrong_size_is_a_value_error(fn, name, axis):
    kw = good_args(fn)
    a = kw[name]
    kw[name] = np.ascontiguousarray(np.concatenate([a, np.take(a, [0], axis=axis)], axis=axis))
    expect(fn, kw, ValueError, named(fn, name) + " has shape")


def test_shape_message_shows_expected_shape():
    kw = good_args("embedding_forward")
    kw["out"] = np.zeros((B, K + 1), np.float32)
    expect("embedding_forward", kw, ValueError,
           re.escape(f"argument 'out' has shape ({B}, {K + 1}) but ({B}, {K}) was expected"))
    kw = good_args("adam_step")
    kw["g"] = np.zeros(B + 1, np.float32)
    expect("adam_step", kw, ValueError,
           re.escape(f"argument 'g' has shape ({B + 1},) but ({B},) was expected"))


def test_wrong_types_for_scalars_are_type_errors():
    kw = good_args("adam_step")
    kw["lr"] = "fast"
    with pytest.raises(TypeError):
        call("adam_step", kw)
    kw = good_args("dot_fit_epoch")
    kw["opt"] = 3
    with pytest.raises(TypeError):
        call("dot_fit_epoch", kw)
    kw = good_args("dot_fit_epoch")
    del kw["bs"]
    with pytest.raises(TypeError, match="bs"):
        call("dot_fit_epoch", kw)


# ---------------------------------------------------------------- optional arrays

def test_biases_both_or_neither():
    for fn, (a, b) in [("dotbias_forward", ("ub", "ib")), ("dotbias_backward", ("dub", "dib"))]:
        for missing in (a, b):
            kw = good_args(fn)
            kw[missing] = None
            expect(fn, kw, ValueError, rf"^{fn}\(\): pass both '{a}' and '{b}' or neither")
        kw = good_args(fn)
        kw[a] = kw[b] = None
        call(fn, kw)


def test_sgd_without_buffer_and_adam_without_moments():
    kw = good_args("sgd_step")
    kw["buf"] = None
    call("sgd_step", kw)
    for missing in ("m", "v"):
        kw = good_args("dot_fit_epoch")
        kw[missing] = None
        expect("dot_fit_epoch", kw, TypeError, r"Adam needs the moment buffers 'm' and 'v'")
    kw = good_args("dot_fit_epoch")
    kw.update(opt="sgd", m=None, v=None, eps=0.0, sqr_mom=5.0)  # Adam constants are not checked
    assert call("dot_fit_epoch", kw) == (J, -1)
    kw = good_args("dot_fit_epoch")
    kw.update(opt="sgd", v=None)
    assert call("dot_fit_epoch", kw) == (J, -1)


# ---------------------------------------------------------------- ids and order

ID_CASES = [  # fn, argument, column (None for 1-D), limit, what the message calls the id
    ("embedding_forward", "idx", None, NU, "an"),
    ("embedding_backward", "idx", None, NU, "an"),
    ("dotbias_forward", "users", None, NU, "a user"),
    ("dotbias_forward", "items", None, NI, "an item"),
    ("dotbias_backward", "users", None, NU, "a user"),
    ("dotbias_backward", "items", None, NI, "an item"),
    ("dot_predict", "x", 0, NU, "a user"),
    ("dot_predict", "x", 1, NI, "an item"),
    ("dot_fit_epoch", "x", 0, NU, "a user"),
    ("dot_fit_epoch", "x", 1, NI, "an item"),
]


@pytest.mark.parametrize("bad_value", ["negative", "limit", "int32_max"])
@pytest.mark.parametrize("fn,name,col,limit,what", ID_CASES)
def test_ids_out_of_range_are_index_errors_and_nothing_is_written(fn, name, col, limit, what,
                                                                  bad_value):
    kw = good_args(fn)
    value = {"negative": -1, "limit": limit, "int32_max": 2**31 - 1}[bad_value]
    row = 3
    if col is None:
        kw[name][row] = value
    else:
        kw[name][row, col] = value
    before = {n: kw[n].copy() for n in WRITTEN[fn] if kw.get(n) is not None}
    expect(fn, kw, IndexError,
           named(fn, name) + re.escape(f" holds {what} id {value} at row {row}, "
                                       f"outside [0, {limit})"))
    for n, a in before.items():
        np.testing.assert_array_equal(kw[n], a, err_msg=f"{fn}: {n!r} written before the error")


@pytest.mark.parametrize("value", [-1, R, 2**40])
def test_order_out_of_range_is_an_index_error_and_nothing_is_written(value):
    kw = good_args("dot_fit_epoch")
    kw["order"][7] = value
    before = kw["params"].copy()
    expect("dot_fit_epoch", kw, IndexError,
           named("dot_fit_epoch", "order") + re.escape(f" holds {value} at position 7, "
                                                       f"outside [0, {R})"))
    np.testing.assert_array_equal(kw["params"], before)
    assert not kw["m"].any() and not kw["losses"].any()


def test_only_the_order_entries_the_batches_use_are_read():
    """A call may train part of an epoch (order is any length; the batches use a prefix), so
    only the entries used are checked; an order too short for the batches is refused."""
    kw = good_args("dot_fit_epoch")
    kw.update(lrs=np.full(1, 1e-3), moms=np.full(1, 0.9), losses=np.zeros(1))
    kw["order"][-1] = R  # never read by one batch
    call("dot_fit_epoch", kw)
    kw["order"] = np.ascontiguousarray(kw["order"][:3])
    call("dot_fit_epoch", kw)  # one short batch of 3 rows
    kw.update(lrs=np.full(2, 1e-3), moms=np.full(2, 0.9), losses=np.zeros(2))
    expect("dot_fit_epoch", kw, ValueError, r"^dot_fit_epoch\(\): 2 batches of bs=\d+ do not fit 3 order entries")


# ---------------------------------------------------------------- aliasing

def _alias_cases():
    n = B
    base = np.zeros(2 * n, np.float32)
    cases = []

    def add(fn, updates, written, other):
        cases.append(pytest.param(fn, updates, written, other, id=f"{fn}-{written}-{other}"))

    same = np.zeros(n, np.float32)
    add("adam_step", dict(p=same, g=same), "p", "g")
    add("adam_step", dict(m=base[:n], v=base[n // 2:n // 2 + n]), "m", "v")
    add("adam_step", dict(v=base[n:], g=base[n - 1:2 * n - 1].copy(), p=base[n - 1:2 * n - 1]),
        "p", "v")
    add("sgd_step", dict(p=same, buf=same), "p", "buf")
    x = np.zeros(n, np.float32)
    add("relu_forward", dict(out=x, x=x), "out", "x")
    add("relu_backward", dict(dx=x, dout=x), "dx", "dout")
    add("sigmoid_range_forward", dict(out=x, x=x), "out", "x")
    add("mse_backward", dict(dpred=x, y=x), "dpred", "y")
    big = np.zeros((NU + B) * K, np.float32)
    add("embedding_backward", dict(dweight=big[:NU * K].reshape(NU, K),
                                   dout=big[(NU - 1) * K:(NU - 1 + B) * K].reshape(B, K)),
        "dweight", "dout")
    w = np.zeros((B, K), np.float32)
    add("embedding_forward", dict(out=w, weight=w), "out", "weight")
    dw = np.zeros((NU, K), np.float32)
    add("dotbias_backward", dict(duw=dw, uw=dw), "duw", "uw")
    add("dotbias_backward", dict(duw=dw, diw=dw[:NI]), "duw", "diw")
    add("dot_predict", dict(out=np.zeros(P_BIAS, np.float32)[:B]), None, None)  # no overlap
    p = np.zeros(P_BIAS, np.float32)
    add("dot_fit_epoch", dict(params=p, grads=p), "params", "grads")
    add("dot_fit_epoch", dict(m=p, v=p), "m", "v")
    lr = np.full(J, 1e-3)
    add("dot_fit_epoch", dict(losses=lr, lrs=lr), "losses", "lrs")
    return cases


@pytest.mark.parametrize("fn,updates,written,other", _alias_cases())
def test_written_arrays_must_not_share_memory(fn, updates, written, other):
    kw = good_args(fn)
    kw.update(updates)
    if written is None:
        call(fn, kw)  # control: a view into another buffer that overlaps nothing is fine
        return
    expect(fn, kw, ValueError,
           rf"^{fn}\(\): argument '{written}' is written in place and must not share memory "
           rf"with argument '{other}'")


def test_adjacent_slices_of_one_buffer_are_accepted():
    buf = np.zeros(4 * B, np.float32)
    p, g, m, v = (buf[i * B:(i + 1) * B] for i in range(4))
    p[:] = 1.0
    g[:] = 0.5
    _core.adam_step(p, g, m, v, 1e-2, 0.9, 0.99, 1e-5, 0.0, 1)
    np.testing.assert_allclose(p, 1.0 - 1e-2 * 0.5 / (0.5 + 1e-5), rtol=1e-6)
    np.testing.assert_array_equal(g, 0.5)


def test_read_only_inputs_may_alias_each_other():
    x = _f32(B)
    out = np.zeros(B, np.float32)
    _core.relu_backward(out, x, x)
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0))
    assert _core.mse_forward(x, x) == 0.0


# ---------------------------------------------------------------- hyperparameters

NAN, INF = float("nan"), float("inf")

HYPER_CASES = [
    ("adam_step", dict(lr=NAN), ValueError, r"argument 'lr' must be finite, got nan"),
    ("adam_step", dict(lr=INF), ValueError, r"argument 'lr' must be finite, got inf"),
    ("adam_step", dict(lr=-1e-3), ValueError, r"lr and wd must be >= 0"),
    ("adam_step", dict(wd=-0.1), ValueError, r"lr and wd must be >= 0"),
    ("adam_step", dict(wd=NAN), ValueError, r"argument 'wd' must be finite"),
    ("adam_step", dict(mom=1.0), ValueError, r"momentum must be in \[0, 1\), got 1"),
    ("adam_step", dict(mom=-0.1), ValueError, r"momentum must be in \[0, 1\)"),
    ("adam_step", dict(mom=NAN), ValueError, r"argument 'mom' must be finite"),
    ("adam_step", dict(sqr_mom=1.0), ValueError, r"sqr_mom < 1"),
    ("adam_step", dict(sqr_mom=NAN), ValueError, r"argument 'sqr_mom' must be finite"),
    ("adam_step", dict(eps=0.0), ValueError, r"eps > 0"),
    ("adam_step", dict(eps=-1e-8), ValueError, r"eps > 0"),
    ("adam_step", dict(eps=NAN), ValueError, r"argument 'eps' must be finite"),
    ("adam_step", dict(step=0), ValueError, r"argument 'step' must be >= 1, got 0"),
    ("adam_step", dict(step=-3), ValueError, r"argument 'step' must be >= 1, got -3"),
    ("sgd_step", dict(lr=NAN), ValueError, r"argument 'lr' must be finite"),
    ("sgd_step", dict(lr=-1.0), ValueError, r"lr and wd must be >= 0"),
    ("sgd_step", dict(mom=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    ("sgd_step", dict(wd=INF), ValueError, r"argument 'wd' must be finite"),
    ("sigmoid_range_forward", dict(lo=5.5, hi=0.0), ValueError, r"y_range must have lo < hi"),
    ("sigmoid_range_forward", dict(lo=1.0, hi=1.0), ValueError, r"y_range must have lo < hi"),
    ("sigmoid_range_forward", dict(lo=NAN), ValueError, r"argument 'lo' must be finite"),
    ("sigmoid_range_backward", dict(hi=INF), ValueError, r"argument 'hi' must be finite"),
    ("sigmoid_range_backward", dict(lo=2.0, hi=1.0), ValueError, r"y_range must have lo < hi"),
    ("mse_forward", dict(pred=np.zeros(0, np.float32), y=np.zeros(0, np.float32)), ValueError,
     r"argument 'len\(pred\)' must be >= 1, got 0"),
    ("mse_backward", dict(dpred=np.zeros(0, np.float32), pred=np.zeros(0, np.float32),
                          y=np.zeros(0, np.float32)), ValueError, r"'len\(pred\)' must be >= 1"),
    ("onecycle", dict(pct_start=1.5), ValueError, r"pct_start must be in \[0, 1\]"),
    ("onecycle", dict(pct_start=-0.1), ValueError, r"pct_start must be in \[0, 1\]"),
    ("onecycle", dict(pct_start=NAN), ValueError, r"pct_start must be in \[0, 1\]"),
    ("dot_predict", dict(n_users=0), ValueError, r"argument 'n_users' must be >= 1, got 0"),
    ("dot_predict", dict(n_items=-2), ValueError, r"argument 'n_items' must be >= 1"),
    ("dot_predict", dict(n_factors=0), ValueError, r"argument 'n_factors' must be >= 1"),
    ("dot_predict", dict(n_users=2**31), ValueError, r"n_users, n_items and n_factors must be < 2\*\*31"),
    ("dot_predict", dict(y_range=(5.5, 0.0)), ValueError, r"y_range must have lo < hi"),
    ("dot_predict", dict(y_range=(0.0, NAN)), ValueError, r"argument 'hi' must be finite"),
    ("dot_predict", dict(y_range=(0.0, 1.0, 2.0)), TypeError, r"y_range must be None or a"),
    ("dot_predict", dict(has_bias=False), ValueError, r"argument 'params' has shape"),
    ("dot_fit_epoch", dict(opt="adamw"), ValueError, r"opt must be 'adam' or 'sgd', got 'adamw'"),
    ("dot_fit_epoch", dict(opt="ADAM"), ValueError, r"opt must be 'adam' or 'sgd'"),
    ("dot_fit_epoch", dict(bs=0), ValueError, r"argument 'bs' must be >= 1, got 0"),
    ("dot_fit_epoch", dict(n_wd=-1), ValueError, r"need 0 <= n_wd <= \d+ and step >= 0"),
    ("dot_fit_epoch", dict(n_wd=P_BIAS + 1), ValueError, r"n_wd"),
    ("dot_fit_epoch", dict(step=-1), ValueError, r"step >= 0"),
    ("dot_fit_epoch", dict(wd=-0.1), ValueError, r"lr and wd must be >= 0"),
    ("dot_fit_epoch", dict(wd=NAN), ValueError, r"argument 'wd' must be finite"),
    ("dot_fit_epoch", dict(sqr_mom=1.0), ValueError, r"sqr_mom < 1"),
    ("dot_fit_epoch", dict(eps=0.0), ValueError, r"eps > 0"),
    ("dot_fit_epoch", dict(lrs=np.array([1e-3, NAN, 1e-3])), ValueError,
     r"argument 'lr' must be finite, got nan"),
    ("dot_fit_epoch", dict(lrs=np.array([1e-3, 1e-3, -1.0])), ValueError, r"lr and wd must be >= 0"),
    ("dot_fit_epoch", dict(moms=np.array([0.9, 1.0, 0.9])), ValueError, r"momentum must be in"),
    ("dot_fit_epoch", dict(y_range=(3.0, 3.0)), ValueError, r"y_range must have lo < hi"),
    ("dot_fit_epoch", dict(n_factors=0), ValueError, r"argument 'n_factors' must be >= 1"),
]


@pytest.mark.parametrize("fn,updates,exc,pattern", HYPER_CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1])}-{i}" for i, c in enumerate(HYPER_CASES)])
def test_bad_hyperparameters(fn, updates, exc, pattern):
    kw = good_args(fn)
    kw.update(updates)
    before = {n: kw[n].copy() for n in WRITTEN[fn] if isinstance(kw.get(n), np.ndarray)}
    expect(fn, kw, exc, rf"^{fn}\(\): .*" + pattern if exc is ValueError else pattern)
    for n, a in before.items():
        np.testing.assert_array_equal(kw[n], a, err_msg=f"{fn}: {n!r} written before the error")


@pytest.mark.parametrize("fn", ["dot_predict", "dot_fit_epoch"])
@pytest.mark.parametrize("y_range", ["0-5", 5.5, [0.0, 5.5], np.array([0.0, 5.5])],
                         ids=["str", "float", "list", "array"])
def test_y_range_that_is_not_a_tuple_is_a_type_error_or_works(fn, y_range):
    """A (lo, hi) list or array may be accepted (fastai only unpacks y_range) or refused with
    a TypeError naming y_range; a str or a float must be refused. Never a SystemError."""
    kw, ref_kw = good_args(fn), good_args(fn)
    kw["y_range"] = y_range
    try:
        res = call(fn, kw)
    except TypeError as e:
        assert "y_range" in str(e)
        return
    assert not isinstance(y_range, (str, float)), f"{fn} accepted y_range={y_range!r}"
    assert res == call(fn, ref_kw)
    for name in WRITTEN[fn]:
        np.testing.assert_array_equal(kw[name], ref_kw[name])


def test_a_range_finite_in_double_but_not_in_float32_is_refused_or_finite():
    """lo/hi are checked as doubles but used as float32: (-1e39, 1e39) passes 'must be finite'
    and becomes (-inf, inf) in the kernel, so every output is NaN. Refuse it or stay finite."""
    out, x = np.zeros(3, np.float32), np.array([-1.0, 0.0, 1.0], np.float32)
    try:
        _core.sigmoid_range_forward(out, x, -1e39, 1e39)
    except ValueError as e:
        assert "lo" in str(e) or "hi" in str(e) or "y_range" in str(e)
        return
    assert np.all(np.isfinite(out)), f"sigmoid_range_forward(lo=-1e39, hi=1e39) gave {out}"


def test_batches_that_exactly_fit_are_accepted():
    "J batches fit R rows exactly when (J-1)*bs < R: the last batch may be partial, never empty."
    kw = good_args("dot_fit_epoch")
    kw["bs"] = 5  # 2 full batches use all 10 rows; a third would start at row 10
    expect("dot_fit_epoch", kw, ValueError, r"3 batches of bs=5 do not fit 10 order entries")
    kw = good_args("dot_fit_epoch")
    kw.update(bs=5, lrs=np.full(2, 1e-3), moms=np.full(2, 0.9), losses=np.zeros(2))
    assert call("dot_fit_epoch", kw) == (2, -1)
    kw = good_args("dot_fit_epoch")
    kw.update(bs=R, lrs=np.full(1, 1e-3), moms=np.full(1, 0.9), losses=np.zeros(1))
    assert call("dot_fit_epoch", kw) == (1, -1)


# ---------------------------------------------------------------- reference counts

def _failing_kwargs(fn):
    kw = good_args(fn)
    first = array_args(fn)[0]
    kw[first] = _wrong_dtype(kw[first])
    return kw


@pytest.mark.parametrize("fn", FUNCS)
def test_reference_counts_are_unchanged(fn):
    for kw, exc in [(good_args(fn), None), (_failing_kwargs(fn), TypeError)]:
        # arrays and tuples only: small ints, interned strings and constants are shared with
        # the rest of the interpreter, so their counts move on their own
        kw = {n: (tuple(float(t) for t in a) if isinstance(a, tuple) else a)
              for n, a in kw.items()}
        objs = [a for a in kw.values() if isinstance(a, (np.ndarray, tuple))]
        gc.collect()
        before = [sys.getrefcount(o) for o in objs]
        for _ in range(300):
            if exc is None:
                r = call(fn, kw)
                del r
            else:
                try:
                    call(fn, kw)
                except exc:
                    pass
                else:
                    raise AssertionError(f"{fn} accepted {kw}")
        gc.collect()
        after = [sys.getrefcount(o) for o in objs]
        names = [n for n, a in kw.items() if isinstance(a, (np.ndarray, tuple))]
        assert after == before, (f"{fn} ({'success' if exc is None else 'failure'} path): "
                                 f"refcounts {dict(zip(names, before))} -> {dict(zip(names, after))}")


def test_returned_objects_are_owned_once():
    out = _core.onecycle(np.linspace(0, 1, 5), 1.0, 2.0, 3.0, 0.5)
    assert sys.getrefcount(out) == 2
    res = call("dot_fit_epoch", good_args("dot_fit_epoch"))
    assert sys.getrefcount(res) == 2 and res == (J, -1)
    r = _core.mse_forward(_f32(B), _f32(B, seed=1))
    assert type(r) is float


def test_index_error_path_keeps_reference_counts():
    kw = good_args("dot_fit_epoch")
    kw["order"][0] = -5
    objs = [a for a in kw.values() if isinstance(a, np.ndarray)]
    before = [sys.getrefcount(o) for o in objs]
    for _ in range(300):
        with pytest.raises(IndexError):
            call("dot_fit_epoch", kw)
    assert [sys.getrefcount(o) for o in objs] == before


# ---------------------------------------------------------------- memory

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_resident_memory_stays_flat_over_10000_calls():
    """A leak of the scratch buffers or a returned array (several KB per call) would grow RSS
    by tens of MB over 10,000 calls; the bound is generous against allocator noise."""
    pos = np.linspace(0, 1, 1000, endpoint=False)  # 8 KB returned per onecycle call
    fit = good_args("dot_fit_epoch")
    fit.update(bs=R, lrs=np.full(1, 1e-3), moms=np.full(1, 0.9), losses=np.zeros(1))
    bad = _failing_kwargs("adam_step")
    bad_ids = good_args("embedding_backward")
    bad_ids["idx"][2] = NU
    pred = good_args("dot_predict")

    def work(n):
        for _ in range(n):
            _core.onecycle(pos, 1e-4, 1e-3, 1e-8, 0.25)
            fit["step"] = 0
            _core.dot_fit_epoch(**fit)
            _core.dot_predict(**pred)
            try:
                _core.adam_step(**bad)
            except TypeError:
                pass
            try:
                _core.embedding_backward(**bad_ids)
            except IndexError:
                pass

    work(500)  # warm up the allocator and caches
    gc.collect()
    before = _rss_bytes()
    work(10000)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 16 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB over 10,000 calls"


# ---------------------------------------------------------------- threads (GIL released)

def _large_fit(seed):
    rng = np.random.default_rng(seed)
    nu, ni, k, rows, bs = 3000, 2000, 32, 300_000, 1024
    P = (nu + ni) * k + nu + ni
    n_batches = -(-rows // bs)
    pos = np.arange(n_batches) / n_batches
    kw = dict(params=(rng.normal(size=P) * 0.01).astype(np.float32),
              grads=np.zeros(P, np.float32), m=np.zeros(P, np.float32),
              v=np.zeros(P, np.float32), losses=np.zeros(n_batches),
              x=np.stack([rng.integers(0, nu, rows), rng.integers(0, ni, rows)],
                         1).astype(np.int32),
              y=rng.uniform(1, 5, rows).astype(np.float32),
              order=rng.permutation(rows).astype(np.int64),
              lrs=_core.onecycle(pos, 2e-4, 5e-3, 5e-8, 0.25),
              moms=_core.onecycle(pos, 0.95, 0.85, 0.95, 0.25),
              n_users=nu, n_items=ni, n_factors=k, has_bias=True, y_range=(0.0, 5.5), bs=bs,
              opt="adam", wd=0.1, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0)
    return kw


def test_two_threads_train_concurrently_and_match_single_threaded_runs():
    serial = [_large_fit(s) for s in (1, 2)]
    results = [_core.dot_fit_epoch(**kw) for kw in serial]
    threaded = [_large_fit(s) for s in (1, 2)]
    out, errors = [None, None], []
    barrier = threading.Barrier(2)

    def worker(i):
        try:
            barrier.wait()
            out[i] = _core.dot_fit_epoch(**threaded[i])
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a training thread did not finish"
    assert not errors, errors
    for i in (0, 1):
        assert out[i] == results[i] == (len(serial[i]["lrs"]), -1)
        for name in ("params", "m", "v", "losses", "grads"):
            np.testing.assert_array_equal(threaded[i][name], serial[i][name],
                                          err_msg=f"thread {i}: {name} differs from serial run")
        assert np.all(np.isfinite(serial[i]["losses"]))
    assert not np.array_equal(serial[0]["params"], serial[1]["params"])


def test_the_floating_point_mode_is_restored_after_training():
    "dot_fit_epoch flushes subnormals only for the duration of the call."
    tiny = np.array([1e-40], np.float32)  # subnormal
    assert tiny[0] != 0
    call("dot_fit_epoch", good_args("dot_fit_epoch"))
    out = np.zeros(1, np.float32)
    _core.relu_forward(out, tiny)
    assert out[0] == tiny[0] != 0
    assert (np.float32(1e-38) * np.float32(1e-3)) != 0


# ---------------------------------------------------------------- memory safety on huge sizes

def _run_isolated(code):
    "Run code in a fresh interpreter (a crash must not take pytest down); returns the result."
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(_core.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # run from the package's parent folder: `python -c` puts the working directory first on
    # sys.path, and a source checkout there would shadow the installed, compiled package
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=60)


def test_overflowing_n_factors_is_refused_not_a_crash():
    """(n_users + n_items) * n_factors must not wrap around int64: with n_users=2, n_items=1,
    n_factors=(2**64+2)//3 the product wraps to 2 and a 2-float params array passes the shape
    check, after which dot_predict reads far outside the array."""
    r = _run_isolated("""
        import numpy as np
        from collabc import _core
        out = np.zeros(1, np.float32)
        params = np.zeros(2, np.float32)
        x = np.array([[1, 0]], np.int32)
        try:
            _core.dot_predict(out, params, x, 2, 1, (2**64 + 2) // 3, False, None)
        except (ValueError, OverflowError, MemoryError) as e:
            print("refused:", type(e).__name__, e)
        else:
            print("accepted")
    """)
    assert r.returncode == 0 and r.stdout.startswith("refused"), (
        f"returncode {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr[-500:]!r}")


_HUGE_BS = """
    import numpy as np
    from collabc import _core
    nu, ni, k, R = 3, 4, 2, 50
    P = (nu + ni) * k + nu + ni
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, nu, R), rng.integers(0, ni, R)], 1).astype(np.int32)
    y = rng.normal(size=R).astype(np.float32)
    p = np.zeros(P, np.float32)
    try:
        res = _core.dot_fit_epoch(p, np.zeros(P, np.float32), np.zeros(P, np.float32),
            np.zeros(P, np.float32), np.zeros(1), x, y, np.arange(R, dtype=np.int64),
            np.array([1e-3]), np.array([0.9]), n_users=nu, n_items=ni, n_factors=k,
            has_bias=True, y_range=None, bs=BS, opt="adam", wd=0.0, n_wd=P,
            sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0)
        print("ok", res)
    except ValueError as e:
        print("refused", e)
"""


def test_batch_size_near_2_to_62_is_not_a_heap_overflow():
    """bs=2**62 with one batch passes every check, then the driver's malloc(bs * 2 * 4) and
    malloc(bs * 5 * 4) wrap around to malloc(0) and the batch gather writes past the end of
    the heap block (glibc aborts). It must train (bs acts as n_rows) or be refused."""
    r = _run_isolated(_HUGE_BS.replace("BS", str(2**62)))
    assert r.returncode == 0 and r.stdout.split()[:1] in (["ok"], ["refused"]), (
        f"returncode {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr[-300:]!r}")


def test_batch_size_larger_than_the_data_needs_no_memory_for_absent_rows():
    """One batch holds at most n_rows rows, so bs=2**40 over 50 rows should train like
    bs=50 (or be refused with a ValueError), not raise MemoryError from a 28 TB scratch."""
    r = _run_isolated(_HUGE_BS.replace("BS", str(2**40)))
    assert r.returncode == 0 and r.stdout.split()[:1] in (["ok"], ["refused"]), (
        f"returncode {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr[-300:]!r}")
