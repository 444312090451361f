"""learn.save/load and learn.export/load_learner: round trips with identical predictions and
identical continued training, the archive format (no pickle, np.load-able), and clear errors for
missing, truncated, corrupted, foreign, newer-version and mismatched files."""
import json
import pickle
import zipfile
from functools import partial

import numpy as np
import pandas as pd
import pytest

from collabc import (Adam, CollabcFileError, CollabDataLoaders, DotProductBias, Learner, collab_learner,
                     load_learner, mae, rmse, set_seed)
from collabc.persist import FORMAT_VERSION, read_archive, write_archive


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


def ratings(seed=7, nu=50, ni=30, n=1500):
    rng = np.random.default_rng(seed)
    u = rng.integers(1, nu + 1, n)
    i = rng.integers(1, ni + 1, n)
    r = np.clip(np.rint(3 + rng.normal(0, 1, n)), 1, 5)
    return pd.DataFrame({"user": [f"u{k}" for k in u], "movie": i, "rating": r.astype(np.int64)})


def trained(tmp_path, **kw):
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings(), bs=32, seed=0, path=tmp_path)
    learn = quiet(collab_learner(dls, n_factors=5, y_range=(0, 5.5), metrics=[rmse, mae], **kw))
    learn.fit_one_cycle(2, 1e-2, wd=0.1)
    return learn


def test_export_load_learner_round_trip(tmp_path):
    learn = trained(tmp_path, opt_func=partial(Adam, sqr_mom=0.9))
    path = learn.export()
    assert path == tmp_path / "export.npz" and path.exists()
    new = load_learner(path)
    assert type(new.model) is type(learn.model) and new.model.y_range == learn.model.y_range
    np.testing.assert_array_equal(new.model.params, learn.model.params)
    assert new.dls.classes == learn.dls.classes
    assert [m.name for m in new.metrics] == ["_rmse", "mae"]
    assert new.opt_func.keywords == {"sqr_mom": 0.9} and new.wd == learn.wd and new.lr == learn.lr
    df = learn.dls.valid_ds
    p_old = learn.get_preds()[0]
    p_new, t_new = new.get_preds(dl=new.dls.test_dl(df))
    np.testing.assert_array_equal(p_new, p_old)
    assert t_new.dtype == np.int64
    pd.testing.assert_frame_equal(new.recommend_many(["u1", "u2"], n=5), learn.recommend_many(["u1", "u2"], n=5))
    assert new.model.bias([3]).tolist() == learn.model.bias([3]).tolist()
    assert new.predict(("u3", 4))[2] == learn.predict(("u3", 4))[2]
    f_old = learn.fold_in_user({1: 5, 2: 1})
    f_new = new.fold_in_user({1: 5, 2: 1})
    np.testing.assert_allclose(f_new.factors, f_old.factors, rtol=1e-6)
    # np.load reads it too, without pickle
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["model/u_weight.weight"], learn.model.u_weight.weight.numpy())
        assert json.loads(z["collabc.json"])["format_version"] == FORMAT_VERSION


def test_export_without_seen_pairs(tmp_path):
    learn = trained(tmp_path)
    new = load_learner(learn.export("bare.npz", with_seen=False))
    with pytest.raises(ValueError, match="exclude_seen=True needs the training ratings"):
        new.recommend("u1")
    assert len(new.recommend("u1", n=3, exclude_seen=False)) == 3


def test_export_book_model(tmp_path):
    set_seed(1)
    dls = CollabDataLoaders.from_df(ratings(), bs=32, seed=0, path=tmp_path)
    learn = quiet(Learner(dls, DotProductBias(dls.n_users, dls.n_items, 4, init="normal")))
    learn.fit(1, 1e-2)
    new = load_learner(learn.export())
    assert new.model.init == "normal" and new.model.get_config() == learn.model.get_config()
    np.testing.assert_array_equal(new.model.params, learn.model.params)


def test_save_load_with_optimizer_continues_identically(tmp_path):
    learn = trained(tmp_path)
    path = learn.save("stage1")
    assert path == tmp_path / "models" / "stage1.npz"
    snapshot = learn.model.params.copy()
    learn.dls.train.rng = np.random.default_rng(123)
    learn.fit(1, 1e-3)
    after_a = learn.model.params.copy()
    learn.load("stage1")
    np.testing.assert_array_equal(learn.model.params, snapshot)
    learn.dls.train.rng = np.random.default_rng(123)
    learn.fit(1, 1e-3)
    np.testing.assert_array_equal(learn.model.params, after_a)


def test_load_without_opt_and_missing_opt_warns(tmp_path):
    learn = trained(tmp_path)
    learn.save("noopt", with_opt=False)
    with pytest.warns(UserWarning, match="doesn't contain an optimizer state"):
        learn.load("noopt")
    other = trained(tmp_path)
    other.opt = None
    other.load("noopt", with_opt=False)
    assert other.opt is None
    np.testing.assert_array_equal(other.model.params, learn.model.params)


def test_no_pickle_can_be_loaded(tmp_path):
    f = tmp_path / "evil.pkl"
    f.write_bytes(pickle.dumps({"model": [1, 2, 3]}, protocol=2))
    with pytest.raises(CollabcFileError, match="pickle"):
        load_learner(f)
    # an object array smuggled into a valid archive is refused by read_array(allow_pickle=False)
    good = trained(tmp_path).export()
    with zipfile.ZipFile(good) as z:
        meta = json.loads(z.read("collabc.json"))
    meta["arrays"]["classes/user"] = {"dtype": "|O", "shape": [2]}
    bad = tmp_path / "objects.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            if item.filename == "collabc.json":
                zout.writestr(item, json.dumps(meta))
            elif item.filename == "classes/user.npy":
                with zout.open(item.filename, "w") as f:
                    np.lib.format.write_array(f, np.array(["a", 1], dtype=object), allow_pickle=True)
            else:
                zout.writestr(item, zin.read(item.filename))
    with pytest.raises(CollabcFileError, match="classes/user.*unreadable"):
        load_learner(bad)


def test_truncated_and_corrupted_files(tmp_path):
    learn = trained(tmp_path)
    path = learn.export()
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        p = tmp_path / f"cut{cut}.npz"
        p.write_bytes(data[:cut])
        with pytest.raises(CollabcFileError, match="truncated|corrupted|not a collabc"):
            load_learner(p)
    # flip one byte inside the parameter data: the CRC check catches it
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("model/u_weight.weight.npy")
    pos = info.header_offset + 30 + len(info.filename) + 200
    corrupt = bytearray(data)
    corrupt[pos] ^= 0xFF
    p = tmp_path / "flip.npz"
    p.write_bytes(bytes(corrupt))
    with pytest.raises(CollabcFileError, match="corrupted.*CRC"):
        load_learner(p)
    p = tmp_path / "text.npz"
    p.write_text("hello")
    with pytest.raises(CollabcFileError, match="not a collabc file"):
        load_learner(p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_learner(tmp_path / "missing.npz")


def rewrite_meta(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "collabc.json":
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta)
            zout.writestr(item, data)


def test_unknown_version_kind_and_format(tmp_path):
    learn = trained(tmp_path)
    path = learn.export()
    p = tmp_path / "v2.npz"
    rewrite_meta(path, p, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CollabcFileError, match=f"unknown format version {FORMAT_VERSION + 1}"):
        load_learner(p)
    rewrite_meta(path, p, lambda m: m.update(format="other"))
    with pytest.raises(CollabcFileError, match="not a collabc file"):
        load_learner(p)
    rewrite_meta(path, p, lambda m: m["model"].update({"class": "Mystery"}))
    with pytest.raises(CollabcFileError, match="unknown model class 'Mystery'"):
        load_learner(p)
    rewrite_meta(path, p, lambda m: m["arrays"]["model/u_weight.weight"].update(shape=[1, 1]))
    with pytest.raises(CollabcFileError, match="metadata says"):
        load_learner(p)
    ckpt = learn.save("ck")
    with pytest.raises(CollabcFileError, match="holds a 'checkpoint'.*learn.load"):
        load_learner(ckpt)
    with pytest.raises(CollabcFileError, match="holds a 'learner'.*load_learner"):
        learn.load(path)


def test_mismatched_shapes_and_models(tmp_path):
    learn = trained(tmp_path)
    learn.save("five")
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings(), bs=32, seed=0, path=tmp_path)
    other = quiet(collab_learner(dls, n_factors=7, y_range=(0, 5.5)))
    with pytest.raises(CollabcFileError, match="u_weight.weight.*shape.*\\(51, 5\\).*\\(51, 7\\)"):
        other.load("five")
    book = quiet(Learner(dls, DotProductBias(dls.n_users, dls.n_items, 5)))
    with pytest.raises(CollabcFileError, match="holds a EmbeddingDotBias but the learner's model is a DotProductBias"):
        book.load("five")


def test_write_archive_refuses_objects(tmp_path):
    with pytest.raises(TypeError, match="only numbers and unicode"):
        write_archive(tmp_path / "x.npz", "learner", {}, {"a": np.array([{}], dtype=object)})
    p = write_archive(tmp_path / "ok.npz", "learner", {"k": 1}, {"a": np.arange(3), "s": np.array(["x", "yz"])})
    header, arrays = read_archive(p)
    assert header["k"] == 1 and arrays["s"].tolist() == ["x", "yz"]


def test_export_refuses_what_it_cannot_store(tmp_path):
    learn = trained(tmp_path)
    learn.opt_func = lambda n, lr: None
    with pytest.raises(TypeError, match="opt_func .* cannot be exported"):
        learn.export()
