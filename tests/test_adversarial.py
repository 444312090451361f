"""Issue 14: what adversarial testing found in the binding and the training drivers, each a
reproducer that crashed or misled before the fix. Anything that could crash the interpreter
runs in a subprocess, so a regression fails one test instead of killing the run.

* sequences of arrays: `embedding_concat_*` must own references to the tables it reads (a
  sequence that makes its items on the fly, a 3-D array, a list another thread empties);
* sizes: the neural driver's scratch size overflowed (width 2**22, 2**18 ops, 2**22 rows) and
  it wrote past a 16 MiB buffer; now every size product is checked (a MemoryError);
* ids that change under a call: another thread writing out-of-range ids into the arrays a
  call reads (the learner's loaders, the sparse layout, every `_core` entry point that takes
  ids) gives a clean exception or a correct result, never a crash;
* limits that are not limits: `recommend(n=10**9)` allocates for what can be returned; the
  BatchNorm error for a last batch of one row says what happened and what to do."""
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pandas as pd
import pytest

from collabc import CollabDataLoaders, _core, collab_learner, set_seed


def run_py(code, timeout=180, env=None):
    "Runs `code` in a fresh interpreter; returns (exit code, stdout, stderr)."
    e = dict(os.environ)
    e.update(env or {})
    # cwd: `python -c` puts the working directory first on sys.path, and a source checkout's
    # collabc/ (no built extension) would shadow the installed package
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=timeout, env=e, cwd=tempfile.gettempdir())
    return p.returncode, p.stdout, p.stderr


def assert_survived(rc, out, err):
    assert rc == 0, f"the subprocess died (exit {rc}; -11 is a segfault)\nstdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"


# ---------------------------------------------------------------- 1. sequences of arrays

SEQ_PRELUDE = """
import numpy as np
from collabc import _core

class Tables:
    "A sequence (not a list or tuple) whose items are new arrays, made on each access."
    def __len__(self):
        return 2
    def __getitem__(self, i):
        if i >= 2:
            raise IndexError(i)
        return np.full((5, 3), i + 1.0, np.float32)

ids = np.array([[0, 4, 2, 1], [3, 0, 1, 4]], np.int32)
"""


@pytest.mark.parametrize("malloc", ["", "debug"])
def test_a_sequence_of_new_arrays_is_held_while_the_kernel_reads_it(malloc):
    rc, out, err = run_py(SEQ_PRELUDE + """
out = np.zeros((6, 4), np.float32)
_core.embedding_concat_forward(out, Tables(), ids)
assert (out[:3] == 1).all() and (out[3:] == 2).all(), out
t3 = np.stack([np.full((5, 3), 1.0, np.float32), np.full((5, 3), 2.0, np.float32)])
out[:] = 0
_core.embedding_concat_forward(out, t3, ids)          # a 3-D array is a sequence of 2-D views
assert (out[:3] == 1).all() and (out[3:] == 2).all(), out
d3 = np.zeros((2, 5, 3), np.float32)
_core.embedding_concat_backward(d3, np.ones((6, 4), np.float32), ids)
assert d3[0].sum() == 12 and d3[1].sum() == 12, d3  # accumulated into d3's own rows
print("ok")
""", env={"PYTHONMALLOC": malloc} if malloc else None)
    assert_survived(rc, out, err)
    assert out.strip() == "ok"


def test_gradients_into_tables_made_on_the_fly_are_accepted_and_released():
    "dtables made on the fly are written (into temporaries) and released, like any argument."
    rc, out, err = run_py(SEQ_PRELUDE + """
import gc, sys
for _ in range(2000):
    _core.embedding_concat_backward(Tables(), np.ones((6, 4), np.float32), ids)
gc.collect()
print("ok")
""", env={"PYTHONMALLOC": "debug"})
    assert_survived(rc, out, err)


def test_a_list_emptied_by_another_thread_during_the_call_keeps_its_tables_alive():
    rc, out, err = run_py("""
import threading, numpy as np
from collabc import _core
B = 200_000
ids = np.zeros((2, B), np.int32)
ids[0] = np.arange(B) % 1000
ids[1] = np.arange(B) % 500
stop = False
def churn(tables):
    while not stop:
        tables[:] = []            # drops the list's references to the arrays
        tables[:] = [np.ones((1000, 16), np.float32), np.ones((500, 8), np.float32)]
out = np.zeros((24, B), np.float32)
tables = [np.ones((1000, 16), np.float32), np.ones((500, 8), np.float32)]
t = threading.Thread(target=churn, args=(tables,))
t.start()
done = errors = 0
try:
    for _ in range(100):
        try:
            _core.embedding_concat_forward(out, tables, ids)
            assert (out == 1).all()
            done += 1
        except (TypeError, ValueError):   # the list was empty at the call
            errors += 1
finally:
    stop = True
    t.join()
print(done, errors)
""", env={"PYTHONMALLOC": "debug"})
    assert_survived(rc, out, err)


# ---------------------------------------------------------------- 2. sizes that overflow

def test_a_network_too_wide_for_its_batch_is_a_memory_error_not_a_wrapped_buffer():
    """Width 2**22, 2**18 - 1 ReLUs and a Linear, batches of 2**22 rows: the activations need
    (2**40 + 1) * 2**22 floats, 2**64 + 2**24 bytes, which wrapped to a 16 MiB buffer."""
    rc, out, err = run_py("""
import numpy as np
from collabc import _core
W, NR, B = 2**22, 2**18 - 1, 2**22
tables = np.array([[1, W, 0]], np.int64)
ops = np.zeros((NR + 1, 6), np.int64)
ops[:NR] = [1, W, W, -1, -1, -1]
ops[NR] = [0, W, 1, W, -1, -1]
P = 2 * W
z = lambda n: np.zeros(n, np.float32)
try:
    _core.nn_fit_epoch(z(P), z(P), z(0), z(P), z(P), np.zeros(1), np.zeros((B, 1), np.int32), z(B),
                       np.arange(B, dtype=np.int64), np.full(1, 1e-3), np.full(1, 0.9), tables=tables,
                       ops=ops, ps=np.zeros(NR + 1), y_range=None, bn_momentum=0.1, bn_eps=1e-5, bs=B,
                       opt="adam", wd=0.0, n_wd=P, sqr_mom=0.99, eps=1e-5, decouple_wd=True, step=0,
                       seed=0)
except MemoryError as e:
    print("MemoryError:", e)
""")
    assert_survived(rc, out, err)
    assert "MemoryError: nn_fit_epoch(): cannot allocate the scratch space" in out
    assert "smaller bs" in out


def test_a_panel_size_that_overflows_is_refused_not_matched_to_any_panel():
    "cf_rank_panel_size returns -1 when NC x K does not fit; -1 must not mean 'any size' here."
    q = np.zeros((0, 2**60), np.float32)   # no rows: a 0-byte array of a huge width
    with pytest.raises(ValueError, match="too large"):
        _core.rank_dot_topk(np.zeros((0, 1), np.int32), np.zeros((0, 1), np.float32), q, None,
                            np.zeros(16, np.float32), None, None, None, 1000, 0, None)


# ---------------------------------------------------------------- 3. ids that change under a call

SCRIBBLE_FIT = """
import sys, threading, time
import numpy as np, pandas as pd
from collabc import CollabDataLoaders, collab_learner, set_seed

mode = {mode!r}
rng = np.random.default_rng(0)
n = 20_000
df = pd.DataFrame({{"user": rng.integers(0, 300, n), "item": rng.integers(0, 200, n),
                   "rating": rng.integers(1, 6, n).astype(float)}})
set_seed(0)
dls = CollabDataLoaders.from_df(df, bs=64)

def learner():
    set_seed(1)
    kw = dict(use_nn=True, layers=[16]) if mode == "nn" else {{}}
    return collab_learner(dls, n_factors=8, y_range=(0, 5.5), n_threads=2,
                          train_mode="sparse" if mode == "sparse" else "exact", **kw)

ref = learner()
with ref.no_bar(), ref.no_logging():
    ref.fit(2, 1e-2)

targets = [dls.train.x, dls.valid.x]
if mode == "sparse":
    lx = dls.train.block_layout(ref.n_blocks)[0]
    lx.flags.writeable = True      # owner-held copies can be made writeable: the kernel checks as it reads
    targets.append(lx)
stop = False
def scribble():
    r = np.random.default_rng(2)
    while not stop:
        x = targets[int(r.integers(0, len(targets)))]
        i = int(r.integers(0, len(x) - 500))
        old = x[i:i + 500].copy()
        x[i:i + 500] = [2**30, -5] if r.integers(0, 2) else [-1, 2**31 - 1]
        time.sleep(0.0003)
        x[i:i + 500] = old
        time.sleep(0.003)          # mostly good data: most checks before a call pass

t = threading.Thread(target=scribble)
t.start()
ok = failed = 0
try:
    for trial in range(6):
        try:
            learn = learner()        # checks the ids against the model: may see a scribble
            with learn.no_bar(), learn.no_logging():
                learn.fit(2, 1e-2)
        except (IndexError, ValueError) as e:
            assert any(w in str(e) for w in ("outside", "indices up to", "wrote", "write")), e
            failed += 1
            continue
        # a fit that completes trained on the right data: exactly the undisturbed fit
        assert np.array_equal(learn.model.params, ref.model.params), "a completed fit differs"
        ok += 1
finally:
    stop = True
    t.join()
print("survived", ok, failed)
"""


@pytest.mark.parametrize("mode", ["dot", "nn", "sparse"])
def test_ids_scribbled_during_fit_give_an_index_error_or_the_right_fit(mode):
    rc, out, err = run_py(SCRIBBLE_FIT.format(mode=mode), timeout=300)
    assert_survived(rc, out, err)
    assert out.startswith("survived"), out


SCRIBBLE_CORE = """
import threading, time
import numpy as np
from collabc import _core

rng = np.random.default_rng(0)
NU, NI, K, B = 400, 300, 16, 50_000
f32 = lambda *s: rng.normal(size=s).astype(np.float32)
users = rng.integers(0, NU, B).astype(np.int32)
items = rng.integers(0, NI, B).astype(np.int32)
x = np.stack([users, items], 1).copy()
ys = rng.uniform(1, 5, B).astype(np.float32)
P = (NU + NI) * (K + 1)
params = f32(P) * 0.1
uw, iw, ub, ib, dout, dcat = f32(NU, K), f32(NI, K), f32(NU), f32(NI), f32(B), f32(2 * K, B)
order = rng.permutation(B).astype(np.int64)
xs = x.copy()
xb, yb = x.copy(), ys.copy()
starts = _core.block_sort(xb, yb, None, 4)
NP = (NU + NI) * 8 + 16 + 1
nn_params = f32(NP) * 0.1
net = dict(tables=np.array([[NU, 8, 0], [NI, 8, NU * 8]], np.int64),
           ops=np.array([[0, 16, 1, (NU + NI) * 8, (NU + NI) * 8 + 16, -1]], np.int64), ps=np.zeros(1),
           y_range=(0.0, 5.5), bn_momentum=0.1, bn_eps=1e-5)
z = lambda *s: np.zeros(s, np.float32)

def embedding_forward():
    out = z(B, K); _core.embedding_forward(out, uw, users); return out
def embedding_backward():
    d = z(NU, K); _core.embedding_backward(d, dcat[:K].T.copy(), users); return d
def dotbias_forward():
    out = z(B); _core.dotbias_forward(out, uw, iw, ub, ib, users, items); return out
def dotbias_backward():
    g = [z(NU, K), z(NI, K), z(NU), z(NI)]
    _core.dotbias_backward(*g, dout, uw, iw, users, items); return g
def embedding_concat_forward():
    out = z(2 * K, B); _core.embedding_concat_forward(out, [uw, iw], np.stack([users, items])); return out
def embedding_concat_backward():
    d = [z(NU, K), z(NI, K)]; _core.embedding_concat_backward(d, dcat, np.stack([users, items])); return d
def dot_predict():
    out = z(B); _core.dot_predict(out, params, x, NU, NI, K, True, (0, 5.5)); return out
def nn_predict():
    out = z(B); _core.nn_predict(out, nn_params, z(0), x, **net); return out
def dot_fit_epoch():
    p = params.copy()
    _core.dot_fit_epoch(p, z(P), z(P), z(P), np.zeros(B // 1000), x, ys, order, np.full(B // 1000, 1e-3),
                        np.full(B // 1000, 0.9), n_users=NU, n_items=NI, n_factors=K, has_bias=True,
                        y_range=(0, 5.5), bs=1000, opt="adam", wd=0.01, n_wd=P, sqr_mom=0.99, eps=1e-5,
                        decouple_wd=True, step=0)
    return p
def nn_fit_epoch():
    p = nn_params.copy()
    _core.nn_fit_epoch(p, z(NP), z(0), z(NP), z(NP), np.zeros(B // 1000), x, ys, order, np.full(B // 1000, 1e-3),
                       np.full(B // 1000, 0.9), bs=1000, opt="adam", wd=0.01, n_wd=NP, sqr_mom=0.99, eps=1e-5,
                       decouple_wd=True, step=0, seed=0, **net)
    return p
def dot_fit_blocks():
    p = params.copy()
    _core.dot_fit_blocks(p, np.zeros(16), xb, yb, starts,
                         np.array([0, 5, 10, 15, 1, 6, 11, 12, 2, 7, 8, 13, 3, 4, 9, 14]), np.full(16, 1e-2),
                         np.zeros(16), n_users=NU, n_items=NI, n_factors=K, has_bias=True, y_range=(0, 5.5),
                         opt="sgd", m=None, v=None, pow1=None, pow2=None, wd=0.01, sqr_mom=0.0, eps=1e-8,
                         n_threads=2)
    return p
def block_sort():   # sorts xs in place, which the scribbler's restores then garble: check the starts' form
    st = _core.block_sort(xs, z(B), None, 4)
    return int(st[-1]), bool(np.all(np.diff(st) >= 0))

# what each call reads that the scribbler writes to (and restores)
calls = {embedding_forward: [users], embedding_backward: [users], dotbias_forward: [users, items],
         dotbias_backward: [users, items], embedding_concat_forward: [users, items],
         embedding_concat_backward: [users, items], dot_predict: [x], nn_predict: [x],
         dot_fit_epoch: [x, order], nn_fit_epoch: [x, order], dot_fit_blocks: [xb], block_sort: [xs]}
reference = {f: f() for f in calls}   # before any scribbling
stop = False
arrays = []

def scribble():
    r = np.random.default_rng(1)
    while not stop:
        if not arrays:
            time.sleep(0.001)
            continue
        a = arrays[int(r.integers(0, len(arrays)))]
        flat = a.reshape(-1)
        i = int(r.integers(0, max(1, flat.size - 64)))
        old = flat[i:i + 64].copy()
        flat[i:i + 64] = -7 if r.integers(0, 2) else 2**30
        time.sleep(0.0002)
        flat[i:i + 64] = old
        time.sleep(0.001 + 0.01 * r.random())   # mostly good data: most checks before a call pass

same = lambda a, b: all(np.array_equal(u, v) for u, v in zip(a, b)) if isinstance(a, list) else np.array_equal(a, b)
t = threading.Thread(target=scribble)
t.start()
try:
    for f, targets in calls.items():
        arrays[:] = targets
        errors = 0
        for _ in range(N_CALLS):
            try:
                res = f()
            except (IndexError, ValueError):
                errors += 1
                continue
            # a call that returns normally read only good ids: its result is the undisturbed one
            assert same(res, reference[f]), f"{f.__name__} returned a wrong result without an error"
        arrays[:] = []
        print(f.__name__, errors)
finally:
    stop = True
    t.join()
print("survived")
"""


def test_every_entry_point_survives_ids_written_during_the_call():
    rc, out, err = run_py(SCRIBBLE_CORE.replace("N_CALLS", "20"), timeout=300)
    assert_survived(rc, out, err)
    assert out.strip().endswith("survived"), out


def test_rank_survives_its_exclusion_lists_written_during_the_call():
    rc, out, err = run_py("""
import threading, time
import numpy as np
from collabc import _core
rng = np.random.default_rng(0)
Q, NC, K, n = 3000, 2000, 16, 10
cw = rng.normal(size=(NC, K)).astype(np.float32)
panel = _core.rank_pack(cw)
lists = [np.sort(rng.choice(NC, 40, replace=False)).astype(np.int32) for _ in range(Q)]
ind = np.concatenate(lists)
ptr = np.concatenate([[0], np.cumsum([len(l) for l in lists])]).astype(np.int64)
stop = False
def scribble():
    r = np.random.default_rng(1)
    while not stop:
        a = (ptr, ind)[int(r.integers(0, 2))]
        i = int(r.integers(1, a.size - 8))
        old = a[i:i + 8].copy()
        a[i:i + 8] = -(2**40) if a is ptr else -3
        time.sleep(0.0002)
        a[i:i + 8] = old
        time.sleep(0.002)
t = threading.Thread(target=scribble)
t.start()
errors = 0
try:
    for _ in range(60):
        idx, sc = np.zeros((Q, n), np.int32), np.zeros((Q, n), np.float32)
        try:
            _core.rank_dot_topk(idx, sc, rng.normal(size=(Q, K)).astype(np.float32), None, panel, None,
                                ptr, ind, NC, 1, None)
        except (IndexError, ValueError):   # the check before the call, or the kernel's, saw it
            errors += 1
finally:
    stop = True
    t.join()
print("survived", errors)
""")
    assert_survived(rc, out, err)


def test_a_bad_id_found_in_flight_names_the_argument_not_an_internal_error():
    "The binding raised RuntimeError('internal error 1') when the kernel, not the check, found it."
    rc, out, err = run_py(SCRIBBLE_FIT.format(mode="dot").replace("for trial in range(6)",
                                                                  "for trial in range(3)"))
    assert_survived(rc, out, err)
    assert "internal error" not in out + err


# ---------------------------------------------------------------- 11. limits that are not limits

def _small_learner(**kw):
    "50 users x 40 items, 3,000 ratings (every id in the training set), untrained."
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"user": rng.integers(0, 50, n), "item": rng.integers(0, 40, n),
                       "rating": rng.integers(1, 6, n).astype(float)})
    set_seed(0)
    dls = CollabDataLoaders.from_df(df, bs=64)
    return collab_learner(dls, n_factors=4, y_range=(0, 5.5), **kw)


@pytest.mark.parametrize("use_nn", [False, True])
def test_recommend_with_a_huge_n_allocates_only_what_it_can_return(use_nn):
    import tracemalloc
    learn = _small_learner(use_nn=use_nn, layers=[8] if use_nn else None)
    user = learn.dls.classes["user"][1]
    small = learn.recommend(user, n=39)
    tracemalloc.start()
    big = learn.recommend(user, n=10**9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"recommend(n=10**9) peaked at {peak / 2**20:.0f} MiB for 40 items"
    pd.testing.assert_frame_equal(big, small)   # every item the user has not rated
    many = learn.recommend_many(list(learn.dls.classes["user"][1:4]), n=10**12)
    assert many.groupby("user").size().max() <= 39


def test_most_similar_and_recommend_users_with_a_huge_n():
    learn = _small_learner()
    item = learn.dls.classes["item"][1]
    assert len(learn.most_similar(item, n=10**10)) == 39     # every other item
    assert len(learn.recommend_users(item, n=10**10)) <= 49


def test_rank_vectors_clamps_n_to_the_candidates():
    from collabc.topn import rank_vectors
    rng = np.random.default_rng(0)
    idx, sc = rank_vectors(rng.normal(size=(3, 4)), None, rng.normal(size=(7, 4)), None, n=10**9, first=1)
    assert idx.shape == (3, 6) and (idx >= 1).all()


# ---------------------------------------------------------------- 12. messages that mislead

def test_a_last_batch_of_one_row_says_so_and_what_to_do():
    "EmbeddingNN (BatchNorm) with shuffle=False: n % bs == 1 leaves a last batch of one row."
    from collabc import DataLoader, DataLoaders
    learn = _small_learner(use_nn=True, layers=[8])
    d = learn.dls
    n = d.train.n
    bs = next(b for b in range(64, n) if n % b == 1)
    train = DataLoader(d.train.x, d.train.y, bs=bs, shuffle=False)
    learn.dls = DataLoaders(train, d.valid, d.classes, d.user_name, d.item_name, d.rating_name)
    before = learn.model.params.copy()
    with pytest.raises(ValueError) as e:
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
    msg = str(e.value)
    assert "one row" in msg and "BatchNorm" in msg and "drop_last" in msg, msg
    assert f"bs={bs}" in msg and f"{n} rows" in msg, msg
    assert np.array_equal(learn.model.params, before), "it trained before refusing"
    train = DataLoader(d.train.x, d.train.y, bs=bs, shuffle=False, drop_last=True)
    learn.dls = DataLoaders(train, d.valid, d.classes, d.user_name, d.item_name, d.rating_name)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)


def test_the_binding_names_the_single_row_last_batch():
    import test_hardening as th
    kw = th.good_args("nn_fit_epoch")   # 12 rows, bs=4, 3 batches, BatchNorm
    kw["order"] = kw["order"][:9]       # 9 entries in batches of 4: the last holds one row
    with pytest.raises(ValueError, match=r"last batch holds a single row \(9 order entries in batches "
                                         r"of bs=4 leave 1 over\).*drop_last=True"):
        _core.nn_fit_epoch(**kw)
    kw = th.good_args("nn_fit_epoch")
    kw.update(bs=1, lrs=np.full(12, 1e-3), moms=np.full(12, 0.9), losses=np.zeros(12))
    with pytest.raises(ValueError, match="at least 2 rows in every batch .* got bs=1"):
        _core.nn_fit_epoch(**kw)
