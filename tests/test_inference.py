"""Using a trained model: get_preds/test_dl/predict/show_results/validate in fastai's shapes,
unknown-id policy, recommendations (C path vs a NumPy reference and vs the generic path),
fold-in of new users and items, and the ranking metrics against a slow reference."""
import numpy as np
import pandas as pd
import pytest

from collabc import (CollabDataLoaders, DotProduct, EmbeddingNN, FoldIn, Learner, collab_learner,
                     map_at_k, ndcg_at_k, precision_at_k, recall_at_k, set_seed)
from collabc.csr import csr_rows, seen_csr
from collabc.topn import _generic_top_n, top_n
from collabc.ranking import ranking_scores


def planted(seed=7, nu=80, ni=60, n=3000):
    "Ratings from a planted rank-3 model with biases; users 'u<k>' are strings, items ints."
    rng = np.random.default_rng(seed)
    u = rng.integers(1, nu + 1, n)
    i = rng.integers(1, ni + 1, n)
    pu, qi = rng.normal(size=(nu + 1, 3)), rng.normal(size=(ni + 1, 3))
    bu, bi = rng.normal(0, 0.5, nu + 1), rng.normal(0, 0.5, ni + 1)
    r = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) + bu[u] + bi[i] + rng.normal(0, 0.3, n)), 1, 5)
    df = pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.int64)})
    return df.drop_duplicates(["user", "item"]).reset_index(drop=True)


def quiet(learn):
    learn.logger = lambda *a: None
    return learn


@pytest.fixture(scope="module")
def learn():
    set_seed(0)
    dls = CollabDataLoaders.from_df(planted(), bs=32, seed=0)
    lr = quiet(collab_learner(dls, n_factors=8, y_range=(0.5, 5.5)))
    lr.fit_one_cycle(8, 1e-2, wd=0.05)
    return lr


def brute_force(learn, users, n, exclude_seen=True):
    "Every (user, item) prediction through model._predict, then a stable sort."
    m = learn.model
    seen = set(map(tuple, learn.dls.train.x.tolist()))
    out = []
    for u in users:
        x = np.stack([np.full(m.n_items, u), np.arange(m.n_items)], 1).astype(np.int32)
        p = m._predict(x)
        cand = [i for i in range(1, m.n_items) if not (exclude_seen and (u, i) in seen)]
        cand = sorted(cand, key=lambda i: (-p[i], i))[:n]
        out.append((cand, p[cand]))
    return out


# ---------------------------------------------------------------- get_preds / test_dl / predict
def test_get_preds_shapes_and_order(learn):
    preds, targs = learn.get_preds()
    dl = learn.dls.valid
    assert preds.shape == (dl.n,) and preds.dtype == np.float32
    assert targs.shape == (dl.n, 1) and targs.dtype == np.int64
    np.testing.assert_array_equal(preds, learn.model._predict(dl.x))
    np.testing.assert_array_equal(targs[:, 0], learn.dls.valid_ds["rating"].to_numpy())
    inp, p2, t2, dec, losses = learn.get_preds(with_input=True, with_decoded=True, with_loss=True)
    np.testing.assert_array_equal(inp, dl.x.astype(np.int64))
    np.testing.assert_array_equal(dec, preds)
    np.testing.assert_allclose(losses, (preds - targs[:, 0]) ** 2, rtol=1e-6)
    assert abs(float(losses.mean()) - learn.validate()[0]) < 1e-5
    ptrain, _ = learn.get_preds(ds_idx=0)
    assert ptrain.shape == (learn.dls.train.n,)    # the shuffled loader is read whole, in order


def test_test_dl_encodes_new_rows_with_the_existing_classes(learn):
    df = learn.dls.valid_ds.head(50)
    dl = learn.dls.test_dl(df)
    np.testing.assert_array_equal(dl.x, learn.dls.valid.x[:50])
    preds, targs = learn.get_preds(dl=dl)
    np.testing.assert_array_equal(preds, learn.get_preds()[0][:50])
    assert targs.shape == (50, 1)
    nolab = learn.dls.test_dl(df[["user", "item"]])
    p, t = learn.get_preds(dl=nolab)
    np.testing.assert_array_equal(p, preds)
    assert t is None
    with pytest.raises(ValueError, match="with_loss=True needs targets"):
        learn.get_preds(dl=nolab, with_loss=True)


def test_unknown_ids_raise_by_default_and_map_to_na_on_request(learn):
    df = pd.DataFrame({"user": [1, 9999, 2, 8888], "item": [1, 2, 7777, 3]})
    with pytest.raises(KeyError, match=r"2 user column 'user' id\(s\).*\[9999, 8888\].*unknown='na'"):
        learn.dls.test_dl(df)
    dl = learn.dls.test_dl(df.iloc[[0, 1, 3]], unknown="na")
    assert dl.x[:, 0].tolist() == [1, 0, 0]
    with pytest.raises(KeyError, match="item column 'item'.*7777"):
        learn.dls.test_dl(df.iloc[[2]])
    with pytest.raises(ValueError, match="unknown must be"):
        learn.dls.test_dl(df, unknown="ignore")
    with pytest.raises(KeyError, match="lacks the column"):
        learn.dls.test_dl(df[["user"]])
    with pytest.raises(ValueError, match="missing value"):
        learn.dls.test_dl(pd.DataFrame({"user": [1, None], "item": [1, 2]}))


def test_model_bias_and_weight_take_raw_ids_and_raise_fastais_message(learn):
    m = learn.model
    b = m.bias([3, 5], is_item=True)
    np.testing.assert_array_equal(b, m.i_bias.weight[[learn.dls.classes["item"].o2i[3],
                                                      learn.dls.classes["item"].o2i[5]], 0])
    assert m.weight([1], is_item=False).shape == (1, 8)
    with pytest.raises(KeyError, match="You're trying to access an item that isn't in the training data"):
        m.bias([3, 12345])
    with pytest.raises(KeyError, match="a user that isn't in the training data"):
        m.weight(["nobody"], is_item=False)


def test_predict_one_row(learn):
    full, dec, pred = learn.predict({"user": 4, "item": 9})
    want = learn.model._predict(np.array([[learn.dls.classes["user"].o2i[4],
                                           learn.dls.classes["item"].o2i[9]]], np.int32))[0]
    assert list(full.columns) == ["user", "item", "rating_pred"]
    assert full.iloc[0]["user"] == 4 and full["rating_pred"].iloc[0] == want
    assert dec == want and pred == want
    assert learn.predict(pd.Series({"user": 4, "item": 9}))[2] == want
    assert learn.predict((4, 9))[2] == want
    with pytest.raises(KeyError, match="424242"):
        learn.predict((424242, 9))
    assert learn.predict((424242, 9), unknown="na")[2] == learn.model._predict(
        np.array([[0, learn.dls.classes["item"].o2i[9]]], np.int32))[0]
    with pytest.raises(TypeError, match="row must be"):
        learn.predict(42)


def test_show_results(learn, capsys):
    df = learn.show_results(max_n=4)
    out = capsys.readouterr().out
    assert list(df.columns) == ["user", "item", "rating", "rating_pred"] and len(df) == 4
    assert "rating_pred" in out
    x = learn.dls.test_dl(df).x
    np.testing.assert_array_equal(df["rating_pred"].to_numpy(), learn.model._predict(x))
    assert len(learn.show_results(max_n=10_000, shuffle=False)) == learn.dls.valid.n
    with pytest.raises(ValueError, match="max_n"):
        learn.show_results(max_n=0)


# ---------------------------------------------------------------- recommendations
def test_recommend_matches_brute_force(learn):
    labels = [1, 2, 17, 80]
    idx = [learn.dls.classes["user"].o2i[u] for u in labels]
    got = learn.recommend_many(labels, n=7)
    assert list(got.columns) == ["user", "rank", "item", "score"] and len(got) == 28
    for u, ui, (cand, scores) in zip(labels, idx, brute_force(learn, idx, 7)):
        rows = got[got["user"] == u]
        assert rows["rank"].tolist() == list(range(1, 8))
        assert rows["item"].tolist() == [learn.dls.classes["item"][c] for c in cand]
        np.testing.assert_array_equal(rows["score"].to_numpy(), scores)   # the model's predictions
    one = learn.recommend(17, n=7)
    assert list(one.columns) == ["item", "score"]
    pd.testing.assert_frame_equal(one, got[got["user"] == 17][["item", "score"]].reset_index(drop=True))


def test_recommend_excludes_seen_items_and_na(learn):
    u = 5
    ui = learn.dls.classes["user"].o2i[u]
    seen = set(learn.dls.train.x[learn.dls.train.x[:, 0] == ui, 1].tolist())
    rec = learn.recommend(u, n=1000)
    got = {learn.dls.classes["item"].o2i[i] for i in rec["item"]}
    assert not got & seen and 0 not in got
    assert len(rec) == learn.model.n_items - 1 - len(seen)     # fewer rows than n when items run out
    everything = learn.recommend(u, n=1000, exclude_seen=False)
    assert len(everything) == learn.model.n_items - 1


def test_recommend_bad_input(learn):
    with pytest.raises(KeyError, match="31337") as e:
        learn.recommend(31337)
    assert "unknown='na'" not in str(e.value)     # recommend has no such option
    with pytest.raises(KeyError, match=r"\[31337\]"):
        learn.recommend_many([1, 31337])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            learn.recommend(1, n=bad)
    with pytest.raises(ValueError, match="n must be"):
        learn.recommend_many([1, 2], n=0)


def test_generic_path_agrees_with_the_c_path(learn):
    users = np.arange(1, learn.model.n_users, dtype=np.int64)
    fast = top_n(learn, users, 6)
    slow = _generic_top_n(learn.model, users.astype(np.int32), 6, csr_rows(learn.seen(), users), 1,
                          learn.model.n_items)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])


def test_recommend_with_a_neural_model():
    set_seed(1)
    dls = CollabDataLoaders.from_df(planted(3, nu=20, ni=15, n=300), bs=16, seed=0)
    learn = quiet(collab_learner(dls, use_nn=True, layers=[8], y_range=(0.5, 5.5)))
    learn.fit(1, 1e-3)
    rec = learn.recommend_many([1, 2], n=4)
    ui = [dls.classes["user"].o2i[1], dls.classes["user"].o2i[2]]
    for u, (cand, scores) in zip([1, 2], brute_force(learn, ui, 4)):
        rows = rec[rec["user"] == u]
        assert rows["item"].tolist() == [dls.classes["item"][c] for c in cand]
        np.testing.assert_allclose(rows["score"].to_numpy(), scores, rtol=1e-6)
    with pytest.raises(TypeError, match="fold-in needs a dot-product model"):
        learn.fold_in_user({1: 5})


def test_book_model_without_biases_recommends():
    set_seed(2)
    dls = CollabDataLoaders.from_df(planted(4, nu=20, ni=15, n=300), bs=16, seed=0)
    learn = quiet(Learner(dls, DotProduct(dls.n_users, dls.n_items, 4, y_range=(0, 5.5))))
    learn.fit(2, 5e-3)
    ui = dls.classes["user"].o2i[3]
    cand, scores = brute_force(learn, [ui], 5)[0]
    rec = learn.recommend(3, n=5)
    assert rec["item"].tolist() == [dls.classes["item"][c] for c in cand]
    np.testing.assert_array_equal(rec["score"].to_numpy(), scores)


def test_recommend_users_for_an_item(learn):
    item = 12
    ii = learn.dls.classes["item"].o2i[item]
    got = learn.recommend_users(item, n=5)
    m = learn.model
    x = np.stack([np.arange(m.n_users), np.full(m.n_users, ii)], 1).astype(np.int32)
    p = m._predict(x)
    raters = set(learn.dls.train.x[learn.dls.train.x[:, 1] == ii, 0].tolist())
    cand = sorted([u for u in range(1, m.n_users) if u not in raters], key=lambda u: (-p[u], u))[:5]
    assert got["user"].tolist() == [learn.dls.classes["user"][u] for u in cand]
    np.testing.assert_array_equal(got["score"].to_numpy(), p[cand])


def test_seen_csr():
    x = np.array([[2, 5], [0, 1], [2, 3], [2, 5], [1, 0]])
    indptr, indices = seen_csr(x, 4, 6)
    assert indptr.tolist() == [0, 1, 2, 4, 4] and indices.tolist() == [1, 0, 3, 5]
    indptr, indices = seen_csr(x, 6, 4, by_item=True)
    assert indptr.tolist() == [0, 1, 2, 2, 3, 3, 4] and indices.tolist() == [1, 0, 2, 2]


# ---------------------------------------------------------------- new users and items
def test_fold_in_recovers_a_trained_user(learn):
    "Folding a training user back in from its own ratings lands near its trained row."
    u = 10
    ui = learn.dls.classes["user"].o2i[u]
    df = learn.dls.train_ds
    mine = df[df["user"] == u]
    new = learn.fold_in_user(dict(zip(mine["item"], mine["rating"])), name="again")
    assert isinstance(new, FoldIn) and new.n_ratings == len(mine) and new.name == "again"
    items = learn.dls.classes["item"][1:]
    p_new = new.predict(items)
    x = np.stack([np.full(len(items), ui), np.arange(1, len(items) + 1)], 1).astype(np.int32)
    p_old = learn.model._predict(x)
    assert np.corrcoef(p_new, p_old)[0, 1] > 0.9
    assert np.sqrt(np.mean((p_new - p_old) ** 2)) < 0.3


def test_fold_in_beats_the_average_user_on_held_out_ratings():
    "Hold 15 users out of training entirely; fold each in from half its ratings, score the rest."
    df = planted(11, nu=120, ni=60, n=6000)
    held = df["user"].isin(range(1, 16))
    set_seed(3)
    dls = CollabDataLoaders.from_df(df[~held].reset_index(drop=True), bs=32, seed=0)
    learn = quiet(collab_learner(dls, n_factors=6, y_range=(0.5, 5.5)))
    learn.fit_one_cycle(10, 1e-2, wd=0.05)
    err_fold, err_avg = [], []
    avg = learn.average_user()
    for u, g in df[held].groupby("user"):
        g = g.sample(frac=1.0, random_state=int(u))
        fit, test = g.iloc[: len(g) // 2], g.iloc[len(g) // 2:]
        new = learn.fold_in_user(dict(zip(fit["item"], fit["rating"])))
        err_fold.append(np.mean((new.predict(test["item"].tolist()) - test["rating"]) ** 2))
        err_avg.append(np.mean((avg.predict(test["item"].tolist()) - test["rating"]) ** 2))
    assert np.mean(err_fold) < 0.8 * np.mean(err_avg), (np.mean(err_fold), np.mean(err_avg))


def test_fold_in_then_recommend_immediately(learn):
    likes = {3: 5, 7: 5, 11: 1}
    new = learn.fold_in_user(likes)
    rec = learn.recommend(new, n=5)
    assert not set(rec["item"]) & set(likes) and len(rec) == 5
    np.testing.assert_array_equal(rec["score"].to_numpy(), new.predict(rec["item"].tolist()))
    every = learn.recommend(new, n=1000)
    assert len(every) == learn.model.n_items - 1 - len(likes)
    sims = learn.most_similar(learn.fold_in_item({1: 5, 2: 4, 3: 1}), n=3)
    assert len(sims) == 3


def test_fold_in_without_y_range_is_exact_ridge():
    set_seed(4)
    dls = CollabDataLoaders.from_df(planted(5, nu=30, ni=20, n=500), bs=16, seed=0)
    learn = quiet(collab_learner(dls, n_factors=3))
    learn.fit(2, 5e-3)
    ratings = {1: 4.0, 2: 2.0, 5: 5.0, 7: 3.0}
    new = learn.fold_in_user(ratings, noise_var=0.5)
    from collabc.foldin import _prior
    mu, var = _prior(learn, False)
    o2i = dls.classes["item"].o2i
    ii = [o2i[k] for k in ratings]
    A = np.concatenate([learn.model.i_weight.weight[ii], np.ones((4, 1))], 1).astype(np.float64)
    c = learn.model.i_bias.weight[ii, 0].astype(np.float64)
    r = np.array(list(ratings.values()))
    theta = np.linalg.solve(A.T @ A / 0.5 + np.diag(1 / var), A.T @ (r - c) / 0.5 + mu / var)
    np.testing.assert_allclose(new.factors, theta[:3], rtol=1e-5, atol=1e-7)
    assert abs(new.bias - theta[3]) < 1e-5


def test_fold_in_item_and_recommend_users(learn):
    new = learn.fold_in_item({1: 5, 2: 5, 3: 4, 4: 1}, name="new film")
    assert new.is_item
    top = learn.recommend_users(new, n=4)
    assert list(top.columns) == ["user", "score"] and not set(top["user"]) & {1, 2, 3, 4}
    np.testing.assert_array_equal(top["score"].to_numpy(), new.predict(top["user"].tolist()))
    with pytest.raises(ValueError, match="new item"):
        learn.recommend(new)


def test_average_user_is_the_mean_trained_row(learn):
    avg = learn.average_user()
    rows = np.unique(learn.dls.train.x[:, 0])
    rows = rows[rows > 0]
    np.testing.assert_allclose(avg.factors, learn.model.u_weight.weight[rows].mean(0), rtol=1e-5, atol=1e-7)
    assert abs(avg.bias - learn.model.u_bias.weight[rows, 0].mean()) < 1e-6
    assert len(learn.recommend(avg, n=3)) == 3
    assert learn.average_item().is_item


def test_fold_in_bad_input(learn):
    with pytest.raises(ValueError, match="ratings is empty.*average_user"):
        learn.fold_in_user({})
    with pytest.raises(ValueError, match="ratings is empty.*average_item"):
        learn.fold_in_item([])
    with pytest.raises(KeyError, match="55555"):
        learn.fold_in_user({1: 4, 55555: 3})
    with pytest.raises(ValueError, match="NaN"):
        learn.fold_in_user({1: float("nan")})
    with pytest.raises(TypeError, match="ratings must be"):
        learn.fold_in_user("5 stars")
    with pytest.raises(KeyError, match="columns"):
        learn.fold_in_user(pd.DataFrame({"film": [1], "rating": [3]}))
    with pytest.raises(ValueError, match="noise_var"):
        learn.fold_in_user({1: 4}, noise_var=-1)


# ---------------------------------------------------------------- ranking metrics
def slow_ranking(learn, k, threshold=None):
    "Loops: per user, rank every unseen item by prediction and count hits."
    m = learn.model
    x, y = learn.dls.valid.x, learn.dls.valid.y
    tr = learn.dls.train.x
    out = {"p": [], "r": [], "ndcg": [], "ap": []}
    for u in np.unique(x[:, 0]):
        if u == 0:
            continue
        rel = {int(i) for i, r in zip(x[x[:, 0] == u, 1], y[x[:, 0] == u])
               if i > 0 and (threshold is None or r >= threshold)}
        if not rel:
            continue
        seen = set(tr[tr[:, 0] == u, 1].tolist())
        p = m._predict(np.stack([np.full(m.n_items, u), np.arange(m.n_items)], 1).astype(np.int32))
        ranked = sorted([i for i in range(1, m.n_items) if i not in seen], key=lambda i: (-p[i], i))[:k]
        hits = [1.0 if i in rel else 0.0 for i in ranked] + [0.0] * (k - len(ranked))
        out["p"].append(sum(hits) / k)
        out["r"].append(sum(hits) / len(rel))
        dcg = sum(h / np.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / np.log2(j + 2) for j in range(min(k, len(rel))))
        out["ndcg"].append(dcg / idcg)
        prec = [sum(hits[:j + 1]) / (j + 1) for j in range(k)]
        out["ap"].append(sum(pj * h for pj, h in zip(prec, hits)) / min(k, len(rel)))
    return {key: float(np.mean(v)) for key, v in out.items()}, len(out["p"])


@pytest.mark.parametrize("k,threshold", [(5, None), (10, 4)])
def test_ranking_metrics_match_a_slow_reference(learn, k, threshold):
    got = learn.ranking_metrics(k=k, threshold=threshold)
    want, n_users = slow_ranking(learn, k, threshold)
    assert got["n_users"] == n_users
    for key, name in (("p", "precision"), ("r", "recall"), ("ndcg", "ndcg"), ("ap", "map")):
        assert abs(got[f"{name}@{k}"] - want[key]) < 1e-12, (name, got, want)
    assert precision_at_k(learn, k, threshold=threshold) == got[f"precision@{k}"]
    assert recall_at_k(learn, k, threshold=threshold) == got[f"recall@{k}"]
    assert ndcg_at_k(learn, k, threshold=threshold) == got[f"ndcg@{k}"]
    assert map_at_k(learn, k, threshold=threshold) == got[f"map@{k}"]


def test_ranking_scores_by_hand():
    top = np.array([[1, 2, 3], [4, 5, -1]])
    rel = [np.array([2, 9]), np.array([4])]
    s = ranking_scores(top, rel, 3)
    assert s["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert s["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert s["ndcg@3"] == pytest.approx(((1 / np.log2(3)) / (1 + 1 / np.log2(3)) + 1) / 2)
    assert s["map@3"] == pytest.approx(((1 / 2) / 2 + 1) / 2)
    with pytest.raises(ValueError, match="k must be"):
        ranking_scores(top, rel, 0)
    with pytest.raises(ValueError, match="relevant"):
        ranking_scores(top, [np.array([2]), np.array([], int)], 3)


def test_ranking_metrics_bad_input(learn):
    with pytest.raises(ValueError, match="k must be"):
        learn.ranking_metrics(k=0)
    with pytest.raises(ValueError, match="no relevant"):
        learn.ranking_metrics(k=5, threshold=99)
