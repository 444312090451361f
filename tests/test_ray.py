"""collabc.ray (issue 16): the shard protocol without Ray, then on one Ray session - a
`ray.cluster_utils.Cluster` of two fake nodes of one CPU each, started once - the distributed fit
against the local sparse fit bit for bit (2 and 4 workers, Parquet input, a worker killed
mid-epoch), a Tune trial against the same fit run locally, k-fold splits, `recommend_all`
against `recommend`, and the errors for bad keys and an unreachable cluster. Skipped only when
the extra is not installed (`pip install "collabc[ray]"`); CI installs it."""
import os
import signal
import socket

import numpy as np
import pandas as pd
import pytest

if os.environ.get("COLLABC_REQUIRE_RAY"):     # CI: the extra is installed, so these tests must run
    import ray.data  # noqa: F401
    import ray.tune  # noqa: F401
pytest.importorskip("ray", reason='collabc[ray] is not installed (pip install "collabc[ray]")')
pytest.importorskip("ray.tune", reason='collabc[ray] is not installed (pip install "collabc[ray]")')

import ray  # noqa: E402

# Ray Data's own configuration code warns about its deprecated settings on first use
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
              pytest.mark.xdist_group("ray")]   # one local Ray at a time (see pyproject.toml)

from collabc import (SGD, Adagrad, Adam, Callback, CollabDataLoaders, collab_learner,  # noqa: E402
                     load_learner, rmse, set_seed)
from collabc.datasets import synthetic  # noqa: E402
from collabc.ray import (cross_validate, fit_distributed, fold_dls, kfold, recommend_all,  # noqa: E402
                         split_config, tune_collab)
from collabc.ray._cluster import ensure_ray  # noqa: E402
from collabc.ray._shards import Grid, Shard, shard_blocks  # noqa: E402

OPTS = {"adagrad": (Adagrad, 0.05), "adam": (Adam, 0.01), "sgd": (SGD, 0.02)}


@pytest.fixture(scope="module")
def ratings():
    return synthetic(400, 250, 12000, seed=3)


def _local(df, opt="adagrad", nb=4, epochs=2, method="fit", seed=0, **kw):
    "The local sparse fit that fit_distributed must reproduce."
    set_seed(seed)
    dls = CollabDataLoaders.from_df(df, bs=64, **kw)
    learn = collab_learner(dls, n_factors=6, y_range=(0, 5.5), opt_func=OPTS[opt][0],
                           train_mode="sparse", n_blocks=nb, n_threads=2)
    with learn.no_logging():
        getattr(learn, method)(epochs, OPTS[opt][1], wd=0.02)
    return learn


def _same(a, b):
    assert np.array_equal(a.model.params, b.model.params)
    assert sorted(a.opt.state) == sorted(b.opt.state)
    for k in a.opt.state:
        assert np.array_equal(a.opt.state[k], b.opt.state[k]), k


# ---------------------------------------------------------------------------- without Ray

@pytest.mark.parametrize("opt", ["adagrad", "adam", "sgd"])
@pytest.mark.parametrize("side", ["user", "item"])
def test_shards_train_the_grid_exactly(ratings, opt, side):
    """The shard protocol, run in-process: three shards, each block trained on a small model of
    its two groups' rows, strata visited in the learner's order but the blocks inside each
    stratum in a different order every time - parameters and optimizer state equal the local
    sparse fit bit for bit (a block depends only on its groups' rows; blocks of a stratum commute)."""
    nb, epochs = 4, 2
    ref = _local(ratings, opt, nb, epochs)
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=64)
    learn = collab_learner(dls, n_factors=6, y_range=(0, 5.5), opt_func=OPTS[opt][0],
                           train_mode="sparse", n_blocks=nb)
    learn.create_opt()
    m, params = learn.model, learn.model.params.copy()
    bufs = {k: v.copy() for k, v in learn.opt.state.items()}
    grid = Grid(m.n_users, m.n_items, m.n_factors, m.has_bias, learn.opt.kind, nb, side)
    own, mov = grid.pack(params, bufs)
    x, y, starts = dls.train.block_layout(nb)
    owner = {g: g % 3 for g in range(nb)}
    shards = []
    for s in range(3):
        groups = [g for g in range(nb) if owner[g] == s]
        sh = Shard(groups, shard_blocks(x, y, starts, nb, side, groups), side, nb, m.n_users, m.n_items,
                   m.n_factors, m.has_bias, m.y_range, learn.opt.kind, n_threads=2)
        sh.set_state({g: own[g] for g in groups})
        shards.append(sh)
    h = learn.opt.hypers
    hypers = {"wd": 0.02, "sqr_mom": h.get("sqr_mom", 0.0), "eps": h.get("eps", 1e-8)}
    rng, flip = dls.train.new_rng(), np.random.default_rng(7)
    for _ in range(epochs):
        strata, groups = rng.permutation(nb), rng.permutation(nb)
        for s in strata:
            order = flip.permutation(groups)
            for w in flip.permutation(3):
                tasks = []
                for g in order:
                    a, b = (g, (g + s) % nb) if side == "user" else ((g + s) % nb, g)
                    if owner[a] == w:
                        tasks.append((a, b, OPTS[opt][1], h.get("mom", 0.0)))
                _, bad, new = shards[w].train(tasks, [mov[t[1]] for t in tasks], hypers)
                assert not any(bad)
                mov.update({t[1]: n for t, n in zip(tasks, new)})
    for sh in shards:
        own.update(sh.get_state())
    grid.unpack(params, bufs, own, mov)
    assert np.array_equal(params, ref.model.params)
    for k in bufs:
        assert np.array_equal(bufs[k], ref.opt.state[k]), k


def test_kfold_partitions_the_ratings():
    folds = kfold(1003, 5, seed=4)
    assert len(folds) == 5 and {len(f) for f in folds} <= {200, 201}
    allrows = np.concatenate(folds)
    assert np.array_equal(np.sort(allrows), np.arange(1003))          # each rating in exactly one fold
    assert all(np.array_equal(a, b) for a, b in zip(folds, kfold(1003, 5, seed=4)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, kfold(1003, 5, seed=5)))
    with pytest.raises(ValueError, match="cv/k must be an integer >= 2"):
        kfold(10, 1)


def test_bad_param_space_keys_fail_before_any_trial(ratings, tmp_path):
    assert split_config({"n_factors": 4, "lr_max": 1e-2, "wd": 0.1, "bs": 32, "y_range": (0, 5.5)}) == \
        ({"bs": 32}, {"n_factors": 4, "y_range": (0, 5.5)}, {"lr_max": 1e-2, "wd": 0.1})
    with pytest.raises(ValueError, match=r"neither collab_learner nor Learner.fit_one_cycle accept: \['n_factor'\]"):
        tune_collab(ratings, {"n_factor": 8}, epochs=1, storage_path=str(tmp_path))
    with pytest.raises(ValueError, match=r"\['pct_start'\] belong to another fit method"):
        tune_collab(ratings, {"pct_start": 0.3}, epochs=1, method="fit", storage_path=str(tmp_path))
    with pytest.raises(ValueError, match="neither collab_learner"):
        cross_validate(ratings, 3, epochs=1, bogus=1)
    assert not list(tmp_path.iterdir())


def test_unreachable_cluster_is_named(monkeypatch):
    with socket.socket() as s:             # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ConnectionError, match=f"could not reach the Ray cluster at '127.0.0.1:{port}'"):
        ensure_ray(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(ValueError, match="address must be 'host:port'"):
        ensure_ray("nowhere", timeout=2)


def test_fit_distributed_checks_its_arguments(ratings):
    with pytest.raises(ValueError, match="n_workers=5 is more than n_blocks=4"):
        fit_distributed(ratings, n_workers=5, n_blocks=4, epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        fit_distributed(ratings, n_workers=2, n_blocks=4, epochs=1, lr=0.1, method="fit_sgd")
    with pytest.raises(TypeError, match="data must be a DataFrame"):
        fit_distributed({"a": 1}, n_workers=2, n_blocks=4, epochs=1, lr=0.1)


# ---------------------------------------------------------------------------- on Ray

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One Ray session for the module: two fake nodes of one CPU each (objects cross nodes).
    Started from an empty folder: Ray puts the driver's working directory on its workers' path,
    and from a source checkout they would import the uncompiled ./collabc, not the installed one."""
    from ray.cluster_utils import Cluster
    if ray.is_initialized():
        ray.shutdown()
    cwd, env = os.getcwd(), os.environ.get("RAY_ADDRESS")
    os.chdir(tmp_path_factory.mktemp("ray_driver"))
    try:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        c.add_node(num_cpus=1)
        ray.init(address=c.address, log_to_driver=False)
        yield c
        ray.shutdown()
        c.shutdown()
    finally:
        os.chdir(cwd)
        # ray.init leaves RAY_ADDRESS naming the cluster, which is gone now
        if env is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = env


@pytest.mark.parametrize("n_workers, opt, method, cpus", [(2, "adagrad", "fit_one_cycle", 1),
                                                          (4, "adam", "fit", 0.5)])
def test_fit_distributed_equals_the_local_sparse_fit(cluster, ratings, tmp_path, n_workers, opt, method, cpus):
    ref = _local(ratings, opt, 4, 2, method)
    learn = fit_distributed(ratings, seed=0, n_workers=n_workers, n_blocks=4, epochs=2, lr=OPTS[opt][1],
                            wd=0.02, opt_func=OPTS[opt][0], n_factors=6, y_range=(0, 5.5), method=method,
                            cpus_per_worker=cpus)
    _same(learn, ref)
    assert learn.recorder.values == ref.recorder.values
    st = learn.ray_stats
    assert st["restarts"] == 0 and len(st["bytes_moved"]) == 2 and all(b > 0 for b in st["bytes_moved"])
    assert st["nodes"] == 2            # the workers were spread over both nodes: groups crossed nodes
    # an ordinary Learner: recommend, export / load_learner, fold-in
    user = ratings.user.iloc[0]
    pd.testing.assert_frame_equal(learn.recommend(user), ref.recommend(user))
    learn.path = tmp_path
    back = load_learner(learn.export())
    pd.testing.assert_frame_equal(back.recommend(user), ref.recommend(user))
    assert back.fold_in_user({ratings.item.iloc[0]: 5.0, ratings.item.iloc[1]: 1.0}) is not None


class _KillWorker(Callback):
    "Kills worker 1's process (SIGKILL) after the first stratum of epoch 1."
    order = 95

    def before_fit(self):
        self.learn.seg_max = self.learn.n_blocks     # one stratum per segment: a kill lands mid-epoch
        self.killed = None

    def after_segment(self):
        if self.epoch == 1 and self.iter == 0 and self.killed is None:
            self.killed = ray.get(self.learn.ray_workers[1].pid.remote())
            os.kill(self.killed, signal.SIGKILL)


def test_a_killed_worker_gives_the_same_result(cluster, ratings):
    ref = _local(ratings, "adagrad", 4, 3)
    kill = _KillWorker()
    learn = fit_distributed(ratings, seed=0, n_workers=2, n_blocks=4, epochs=3, lr=0.05, wd=0.02,
                            n_factors=6, y_range=(0, 5.5), cbs=[kill])
    assert kill.killed is not None and learn.ray_stats["restarts"] == 1
    _same(learn, ref)
    assert learn.recorder.values == ref.recorder.values


def test_parquet_routing_ends_before_the_workers_take_the_cpus(cluster, ratings, tmp_path, monkeypatch):
    """The workers (actors holding cpus_per_worker CPUs each for their lifetime) start only after
    every routing task has finished: on a cluster whose CPUs the workers take (this one: two
    nodes of one CPU, two workers), a routing task still waiting for a CPU would never run, and
    the workers would wait forever for its rows (seen once as a hang of the test below)."""
    import collabc.ray.distributed as dist
    routed, early = [], []

    class Watch:
        "`remote.options(...).remote(...)` as before, with `before()` and `after(result)` around the call."
        def __init__(self, remote, before=None, after=None):
            self.remote_, self.before, self.after = remote, before, after

        def options(self, **kw):
            self.opts = self.remote_.options(**kw)
            return self

        def remote(self, *a, **k):
            if self.before:
                self.before()
            out = self.opts.remote(*a, **k)
            if self.after:
                self.after(out)
            return out

    def not_ready():
        ready, _ = ray.wait(routed, num_returns=len(routed), timeout=0, fetch_local=False)
        early.append(len(routed) - len(ready))

    monkeypatch.setattr(dist, "_route_remote", Watch(dist._route_remote,
                                                     after=lambda r: routed.extend(r if isinstance(r, list) else [r])))
    monkeypatch.setattr(dist, "ShardActor", Watch(dist.ShardActor, before=not_ready))
    for k in range(2):
        ratings.iloc[k::2].to_parquet(tmp_path / f"part{k}.parquet", row_group_size=1500)
    learn = fit_distributed(str(tmp_path), seed=0, n_workers=2, n_blocks=4, epochs=1, lr=0.05, wd=0.02,
                            n_factors=6, y_range=(0, 5.5))
    assert routed and early == [0, 0], f"routing outputs not ready when each worker started: {early}"
    assert learn.recorder.values


def test_parquet_input_read_in_partitions(cluster, ratings, tmp_path):
    df = ratings.copy()
    df["is_valid"] = np.random.default_rng(1).random(len(df)) < 0.2
    for k in range(3):
        df.iloc[k::3].to_parquet(tmp_path / f"part{k}.parquet", row_group_size=1500)
    ref = _local(df.drop(columns="is_valid"), "adagrad", 4, 2, valid_idx=df.is_valid.to_numpy())
    learn = fit_distributed(str(tmp_path), seed=0, n_workers=2, n_blocks=4, epochs=2, lr=0.05, wd=0.02,
                            n_factors=6, y_range=(0, 5.5), valid_col="is_valid", with_seen=True)
    _same(learn, ref)
    assert learn.dls.train.n == 0            # the driver kept no rows ...
    for got, want in zip(learn.recorder.values, ref.recorder.values):
        assert got[0] == want[0] and got[1] == pytest.approx(want[1], rel=1e-12)   # ... validated on the workers
    user = df.user.iloc[0]
    pd.testing.assert_frame_equal(learn.recommend(user), ref.recommend(user))   # seen pairs kept
    with pytest.raises(KeyError, match="valid_col='nope' is not a column"):
        fit_distributed(str(tmp_path), n_workers=2, n_blocks=4, epochs=1, lr=0.05, valid_col="nope")


def test_a_tune_trial_is_the_local_fit(cluster, ratings, tmp_path):
    from ray import tune
    set_seed(1)
    dls = CollabDataLoaders.from_df(ratings, bs=256)
    import signal
    handler = signal.getsignal(signal.SIGINT)
    res = tune_collab(dls, {"n_factors": tune.grid_search([4, 8])}, epochs=2, y_range=(0, 5.5),
                      lr_max=5e-3, wd=0.1, metrics=[rmse], storage_path=str(tmp_path))
    assert signal.getsignal(signal.SIGINT) is handler   # Tune's own Ctrl-C handler is not left behind
    assert len(res.trials) == 2 and res.trials.error.isna().all()
    assert res.best_config["n_factors"] == res.trials.iloc[0]["config/n_factors"]
    for nf in (4, 8):
        set_seed(0)
        learn = collab_learner(dls, n_factors=nf, y_range=(0, 5.5), metrics=[rmse])
        with learn.no_logging():
            learn.fit_one_cycle(2, 5e-3, wd=0.1)
        tid = res.trials.set_index("config/n_factors").loc[nf, "trial_id"]
        hist = res.history[res.history.trial_id == tid].sort_values("epoch")
        assert hist.valid_loss.tolist() == [v[1] for v in learn.recorder.values]
        assert hist._rmse.tolist() == [v[2] for v in learn.recorder.values]


def test_cross_validation_folds(cluster, ratings, tmp_path):
    table = cross_validate(ratings, 3, epochs=1, n_factors=4, y_range=(0, 5.5), lr_max=5e-3, bs=256)
    assert list(table.index) == [0, 1, 2, "mean", "std"]
    assert table.loc["mean", "valid_loss"] == pytest.approx(table.loc[[0, 1, 2], "valid_loss"].mean())
    # fold 1 by hand: its loaders, seed + fold, the same fit
    from collabc.ray.sweep import _payload
    payload = _payload(ratings, 3, 0, 0.2, 256, (None, None, None))
    set_seed(1)
    dls = fold_dls(payload, 1)
    assert dls.valid.n + dls.train.n == len(ratings)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), n_threads=1)
    with learn.no_logging():
        learn.fit_one_cycle(1, 5e-3)
    assert table.loc[1, "valid_loss"] == learn.recorder.values[-1][1]


def test_recommend_all_equals_recommend(cluster, ratings, tmp_path):
    set_seed(2)
    dls = CollabDataLoaders.from_df(ratings, bs=256, path=tmp_path)
    learn = collab_learner(dls, n_factors=6, y_range=(0, 5.5))
    with learn.no_logging():
        learn.fit_one_cycle(1, 5e-3)
    model = learn.export()
    users = list(dls.classes["user"][1:])
    want = learn.recommend_many(users, n=5).rename(columns={"user": "user", "item": "item"})
    pd.DataFrame({"user": users}).to_parquet(tmp_path / "users.parquet", row_group_size=100)
    for src, out in ((users, tmp_path / "out_list"), (str(tmp_path / "users.parquet"), tmp_path / "out_pq")):
        recommend_all(model, src, out, n=5, batch_size=97)
        got = pd.read_parquet(out).sort_values(["user", "rank"]).reset_index(drop=True)
        assert list(got.columns) == ["user", "rank", "item", "score"]
        assert got.user.tolist() == want.user.tolist() and got["rank"].tolist() == want["rank"].tolist()
        assert got.item.tolist() == want.item.tolist()
        assert np.array_equal(got.score.to_numpy(), want.score.to_numpy(np.float32))
    with pytest.raises(FileNotFoundError, match="no exported model"):
        recommend_all(tmp_path / "missing.npz", users, tmp_path / "x")
