"""Many fits at once: hyper-parameter sweeps on Ray Tune (`tune_collab`) and k-fold
cross-validation (`cross_validate`), each trial or fold an ordinary collabc fit.

The ratings are encoded once, in the driver, and put in Ray's object store once for all
trials (`tune.with_parameters`); a trial rebuilds its loaders around those arrays (no copy of
the training rows for a plain split; one gather per fold with cv) and reports after every epoch
through a callback, so Tune's schedulers (ASHA...) stop poor trials early. A trial is exactly

    set_seed(seed); learn = collab_learner(dls, **learner_config)
    learn.<method>(epochs, **fit_config)

with `dls` the given CollabDataLoaders (the same seeds, hence the same batch order), or for a
DataFrame `set_seed(seed); dls = CollabDataLoaders.from_df(data, valid_pct=valid_pct,
seed=seed, bs=bs)` - the same fit run locally gives the same numbers. With `cv=k` a trial trains the k folds of
`kfold(n, k, seed)` in lockstep (threads; the C training releases the GIL) and reports the mean
and the standard deviation over the folds each epoch.
"""
import collections
import contextlib
import inspect
import queue
import random
import signal
import threading

import numpy as np
import pandas as pd
import ray
from ray import tune

from ..callback import Callback, CancelFitException
from ..data import CategoryMap, CollabDataLoaders, DataLoader, DataLoaders, encode_ids
from ..learner import Learner, TrainingDivergedError, collab_learner
from ..seed import preserve_rng, set_seed
from ._cluster import ensure_ray

__all__ = ["tune_collab", "cross_validate", "kfold", "fold_dls", "SweepResult", "split_config"]

_METHODS = ("fit", "fit_one_cycle", "fit_flat_cos")
_RESERVED = {"dls", "model", "cbs", "n_epoch", "reset_opt", "start_epoch", "self", "kwargs",
             "default_cbs", "path", "model_dir"}

SweepResult = collections.namedtuple("SweepResult", ["trials", "best_config", "history"])
SweepResult.__doc__ = ("`tune_collab`'s result: `trials` (a DataFrame, one row per trial: its "
                       "configuration, last reported metrics and epochs run), `best_config` (a dict) "
                       "and `history` (every epoch's report of every trial).")


def _keys(f):
    return {n for n, p in inspect.signature(f).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - _RESERVED


def split_config(config, method="fit_one_cycle"):
    """Splits a configuration into (loader, learner, fit) keyword arguments: keys `method`
    (`fit`, `fit_one_cycle` or `fit_flat_cos`) accepts go to it, keys of `collab_learner` or
    `Learner` to the learner, `bs` to the loaders. Any other key raises ValueError naming it."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    fit_keys = _keys(getattr(Learner, method))
    learner_keys = _keys(collab_learner) | _keys(Learner.__init__)
    other_fits = (_keys(Learner.fit) | _keys(Learner.fit_one_cycle) | _keys(Learner.fit_flat_cos)) - fit_keys
    loaders, learner, fit, bad = {}, {}, {}, []
    for k, v in config.items():
        if k == "bs":
            loaders[k] = v
        elif k in fit_keys:
            fit[k] = v
        elif k in learner_keys:
            learner[k] = v
        else:
            bad.append(k)
    if bad:
        hint = [k for k in bad if k in other_fits]
        raise ValueError(
            f"param_space/settings have keys that neither collab_learner nor Learner.{method} accept: "
            f"{sorted(bad, key=str)}" + (f" ({hint} belong to another fit method: pass method=...)" if hint else "")
            + f"; allowed: {sorted(fit_keys | learner_keys | {'bs'})}")
    return loaders, learner, fit


def kfold(n, k, seed=0):
    """The validation rows of each of k folds of n ratings: a seeded permutation cut into k
    nearly equal parts, so every rating is in exactly one validation fold."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"cv/k must be an integer >= 2, got {k!r}")
    if k > n:
        raise ValueError(f"cv/k={k} folds need at least {k} ratings, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(perm, k)]


@contextlib.contextmanager
def _seeded(seed):
    "Within: `set_seed(seed)`; after: collabc's, Python's and NumPy's global generators as they were."
    py, legacy = random.getstate(), np.random.get_state()
    with preserve_rng():
        set_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(legacy)


def _loader(x, y, bs, shuffle, seed=None):
    with preserve_rng():
        dl = DataLoader(x, y, bs=bs, shuffle=shuffle)
    if seed is not None:
        dl.seed, dl.rng = seed, np.random.default_rng(seed)
    return dl


def _payload(data, cv, seed, valid_pct, bs, names):
    """The encoded arrays every trial shares: a plain split (`cv=None`) or all ratings with
    their folds; a CollabDataLoaders is used as it is (its rows, classes and seeds)."""
    if isinstance(data, pd.DataFrame):
        u, i, r = names
        if cv is None:
            with _seeded(seed):     # the loaders' seeds too: set_seed(seed); from_df(data, seed=seed, ...)
                dls = CollabDataLoaders.from_df(data, valid_pct=valid_pct, seed=seed, bs=bs,
                                                user_name=u, item_name=i, rating_name=r)
        else:
            cols = list(data.columns)
            u, i, r = (cols[p] if v is None else v for p, v in enumerate((u, i, r)))
            for arg, c in (("user_name", u), ("item_name", i), ("rating_name", r)):
                if c not in data.columns:
                    raise KeyError(f"{arg}={c!r} is not a column of data; columns are {cols}")
            ucls, icls = CategoryMap(data[u]), CategoryMap(data[i])
            x = np.empty((len(data), 2), np.int32)
            x[:, 0] = encode_ids(ucls, data[u].to_numpy(), "user")
            x[:, 1] = encode_ids(icls, data[i].to_numpy(), "item")
            y = data[r].to_numpy(np.float32)
            if not np.isfinite(y).all():
                raise ValueError(f"rating_name={r!r} has NaN or infinite values")
            return {"cv": cv, "x": x, "y": y, "folds": kfold(len(y), cv, seed), "classes": {u: ucls, i: icls},
                    "names": (u, i, r), "bs": bs, "val_bs": bs}
    elif isinstance(data, DataLoaders):
        dls = data
    else:
        raise TypeError(f"data must be a DataFrame or a CollabDataLoaders, got {type(data).__name__}")
    names = (dls.user_name, dls.item_name, dls.rating_name)
    if cv is not None:
        x = np.concatenate([dls.train.x, dls.valid.x])
        y = np.concatenate([dls.train.y, dls.valid.y])
        return {"cv": cv, "x": x, "y": y, "folds": kfold(len(y), cv, seed), "classes": dls.classes,
                "names": names, "bs": dls.train.bs, "val_bs": dls.valid.bs}
    return {"cv": None, "train": (dls.train.x, dls.train.y, dls.train.seed), "bs": dls.train.bs,
            "valid": (dls.valid.x, dls.valid.y), "val_bs": dls.valid.bs, "classes": dls.classes,
            "names": names}


def fold_dls(payload, fold=None, bs=None):
    """The loaders of one trial (or of fold `fold` with cv) from a shared payload; `bs`
    overrides the training batch size. Fold f trains on the other folds' rows in their order."""
    names, classes = payload["names"], payload["classes"]
    bs = payload["bs"] if bs is None else bs
    if payload["cv"] is None:
        x, y, s = payload["train"]
        train = _loader(x, y, bs, True, s)
        valid = _loader(*payload["valid"], payload["val_bs"], False)
    else:
        va = payload["folds"][fold]
        mask = np.ones(len(payload["y"]), bool)
        mask[va] = False
        tr = np.flatnonzero(mask)
        train = _loader(payload["x"][tr], payload["y"][tr], bs, True)
        valid = _loader(payload["x"][va], payload["y"][va], payload["val_bs"], False)
    return CollabDataLoaders(train, valid, dict(classes), *names)


def _make_learner(payload, fold, seed, loaders, learner_cfg, cpus):
    "The learner of one trial or fold: `set_seed`, its loaders, `collab_learner`."
    set_seed(seed if fold is None else seed + fold)
    dls = fold_dls(payload, fold, loaders.get("bs"))
    cfg = dict(learner_cfg)
    cfg.setdefault("n_threads", cpus)
    return collab_learner(dls, **cfg)


class _Lockstep(Callback):
    "After each epoch: hands the epoch's record to the trial's reporter and waits for its go."
    order = 90   # after the Recorder

    def __init__(self, fold, out, go, stop):
        self.fold, self.out, self.go, self.stop = fold, out, go, stop

    def after_epoch(self):
        self.out.put(("epoch", self.fold, self.epoch, list(self.recorder.values[-1])))
        self.go[self.epoch].wait()
        if self.stop.is_set():
            raise CancelFitException()


def _run_folds(payload, spec, config, report):
    """Trains the trial's learners (one, or one per fold) in lockstep, calling `report(epoch,
    [values per fold], names)` after each epoch. Returns None, or the error of a diverged fit."""
    loaders, learner_cfg, fit_cfg = split_config({**spec["fixed"], **config}, spec["method"])
    folds = [None] if payload["cv"] is None else list(range(payload["cv"]))
    cpus = max(1, spec["cpus"] // len(folds))
    learners = [_make_learner(payload, f, spec["seed"], loaders, learner_cfg, cpus) for f in folds]
    epochs = spec["epochs"]
    out, stop = queue.Queue(), threading.Event()
    go = [threading.Event() for _ in range(epochs)]

    def work(j, learn):
        try:
            with learn.no_logging():
                getattr(learn, spec["method"])(epochs, cbs=[_Lockstep(j, out, go, stop)], **fit_cfg)
            out.put(("done", j, None, None))
        except BaseException as e:   # handed to the reporting thread, which raises it
            out.put(("error", j, None, e))

    threads = [threading.Thread(target=work, args=(j, ln), daemon=True) for j, ln in enumerate(learners)]
    for t in threads:
        t.start()
    names = learners[0].recorder.metric_names
    failure = None
    try:
        for e in range(epochs):
            got = {}
            while len(got) < len(learners):
                kind, j, ep, val = out.get()
                if kind == "epoch":
                    got[j] = val
                elif kind == "error":
                    failure = val
                    break
            if failure is not None:
                break
            report(e, [got[j] for j in range(len(learners))], learners[0].recorder.metric_names)
            go[e].set()
    finally:
        stop.set()
        for ev in go:
            ev.set()
        for t in threads:
            t.join()
    if failure is not None:
        if isinstance(failure, TrainingDivergedError):
            return failure
        raise failure
    return None


def _summary(values, names):
    "One report from the folds' epoch records: the metrics' mean (and std over folds with cv)."
    cols = [n for n in names[1:] if n != "time"]
    arr = np.array([v[:len(cols)] for v in values], np.float64)
    out = {}
    for j, n in enumerate(cols):
        out[n] = float(arr[:, j].mean())
        if len(values) > 1:
            out[f"{n}_std"] = float(arr[:, j].std(ddof=1))
    return out


def _trial(config, data=None, spec=None):
    "One Tune trial: its fits, reported every epoch."
    def report(epoch, values, names):
        tune.report({"epoch": epoch, **_summary(values, names)})

    err = _run_folds(data, spec, config, report)
    if err is not None:   # a diverged trial is the worst trial, not a failed sweep
        worst = float("inf") if spec["mode"] == "min" else -float("inf")
        tune.report({spec["metric"]: worst, "diverged": True})


def _check_common(epochs, cpus, mode):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(cpus, (int, float)) or isinstance(cpus, bool) or cpus <= 0:
        raise ValueError(f"cpus_per_trial must be a positive number, got {cpus!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


def tune_collab(data, param_space, *, epochs, metric="valid_loss", mode="min", num_samples=1,
                cv=None, scheduler=None, search_alg=None, cpus_per_trial=1, method="fit_one_cycle",
                seed=0, valid_pct=0.2, bs=64, user_name=None, item_name=None, rating_name=None,
                storage_path=None, name=None, max_concurrent_trials=None, address=None, verbose=0,
                **settings):
    """A hyper-parameter sweep on Ray Tune: each trial is an ordinary collabc fit (see the module
    docstring), reported after every epoch, so `scheduler=ASHAScheduler()` stops poor trials early.

    data: a DataFrame (split by `valid_pct` and `seed` as `from_df` does, or into `cv` folds) or
    a CollabDataLoaders. param_space: {key: value or a `ray.tune` search space}; any key that
    `collab_learner` (and `Learner`) or the fit `method` ('fit_one_cycle' by default, 'fit',
    'fit_flat_cos') accepts, and `bs`; `settings` (other keyword arguments) are fixed values of
    the same keys. A key none of them accepts raises ValueError before any trial starts.
    cv: k for k-fold cross-validation in every trial (mean and `<metric>_std` are reported).
    metric / mode: what picks the best trial ('valid_loss' or a metric's column, e.g. '_rmse').
    cpus_per_trial: CPUs Ray reserves per trial (training threads of its learners).
    Returns `SweepResult(trials, best_config, history)`."""
    _check_common(epochs, cpus_per_trial, mode)
    if not isinstance(param_space, dict):
        raise TypeError(f"param_space must be a dict of search spaces, got {type(param_space).__name__}")
    split_config({**settings, **param_space}, method)   # bad keys fail here, before Ray starts
    payload = _payload(data, cv, seed, valid_pct, bs, (user_name, item_name, rating_name))
    ensure_ray(address)
    spec = {"fixed": settings, "method": method, "seed": seed, "epochs": int(epochs),
            "cpus": int(max(1, cpus_per_trial)), "metric": metric, "mode": mode}
    trainable = tune.with_resources(tune.with_parameters(_trial, data=payload, spec=spec),
                                    {"cpu": cpus_per_trial})
    tuner = tune.Tuner(trainable, param_space=param_space,
                       tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=num_samples,
                                                   scheduler=scheduler, search_alg=search_alg,
                                                   max_concurrent_trials=max_concurrent_trials,
                                                   reuse_actors=True),   # no process start per trial
                       run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=verbose))
    # Ray Tune installs its own SIGINT handler while it runs and leaves it in place: put back
    # the caller's, so Ctrl-C (and a later Learner.fit) works as before the sweep
    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    try:
        results = tuner.fit()
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    errors = [r.error for r in results if r.error is not None]
    if errors and len(errors) == len(results):
        raise RuntimeError(f"every trial failed; the first error: {errors[0]}") from errors[0]
    rows, hist = [], []
    for r in results:
        cfg = dict(r.config or {})
        m = dict(r.metrics or {})
        row = {"trial_id": m.get("trial_id"), **{f"config/{k}": v for k, v in cfg.items()}}
        for k, v in m.items():
            if k in ("epoch", "diverged") or k == metric or k.startswith(("train_loss", "valid_loss", "_")) \
                    or k.endswith("_std"):
                row[k] = v
        row["epochs"] = m.get("training_iteration", 0)
        row["error"] = None if r.error is None else str(r.error)
        rows.append(row)
        if r.metrics_dataframe is not None:
            h = r.metrics_dataframe.copy()
            if "trial_id" not in h:
                h.insert(0, "trial_id", m.get("trial_id"))
            hist.append(h)
    trials = pd.DataFrame(rows)
    if metric in trials:
        trials = trials.sort_values(metric, ascending=(mode == "min"), kind="stable").reset_index(drop=True)
    best = results.get_best_result(metric=metric, mode=mode)
    history = pd.concat(hist, ignore_index=True) if hist else pd.DataFrame()
    return SweepResult(trials, dict(best.config), history)


@ray.remote
def _cv_fold(payload, spec, fold):
    "One fold of cross_validate, trained as fold `fold` of a cv trial is: its epoch records."
    records = []

    def report(epoch, values, names):
        records.append(values[0])

    err = _run_folds(_one_fold(payload, fold, spec["seed"]), dict(spec, seed=spec["seed"] + fold), {}, report)
    return records, None if err is None else str(err)


def _one_fold(payload, fold, seed):
    "A plain-split payload for fold `fold` (its training loader seeded as cv trials seed it)."
    with _seeded(seed + fold):
        dls = fold_dls(payload, fold)
    return {"cv": None, "train": (dls.train.x, dls.train.y, dls.train.seed), "bs": dls.train.bs,
            "valid": (dls.valid.x, dls.valid.y), "val_bs": dls.valid.bs, "classes": dls.classes,
            "names": payload["names"]}


def cross_validate(data, k=5, *, epochs=5, method="fit_one_cycle", seed=0, cpus_per_fold=1, bs=64,
                   user_name=None, item_name=None, rating_name=None, address=None, **settings):
    """k-fold cross-validation on Ray: the folds of `kfold(n, k, seed)` trained at once, one Ray
    task each, every one an ordinary fit (`settings` go to `collab_learner` and the fit `method`,
    as in `tune_collab`). Returns a DataFrame with one row per fold (its last epoch's
    train_loss, valid_loss and metrics) and the rows 'mean' and 'std'. The numbers equal those of
    `tune_collab(data, {}, cv=k, ...)`'s single trial."""
    _check_common(epochs, cpus_per_fold, "min")
    split_config(settings, method)
    payload = _payload(data, k, seed, 0.2, bs, (user_name, item_name, rating_name))
    ensure_ray(address)
    spec = {"fixed": settings, "method": method, "seed": seed, "epochs": int(epochs),
            "cpus": int(max(1, cpus_per_fold))}
    ref = ray.put(payload)
    outs = ray.get([_cv_fold.options(num_cpus=cpus_per_fold).remote(ref, spec, f) for f in range(k)])
    rows = []
    for f, (records, err) in enumerate(outs):
        if err is not None:
            raise TrainingDivergedError(f"fold {f}: {err}")
        rows.append(records[-1])
    cols = _metric_cols(settings, method, payload)
    table = pd.DataFrame([r[:len(cols)] for r in rows], columns=cols)
    table.index.name = "fold"
    summary = pd.DataFrame([table.mean(), table.std(ddof=1)], index=["mean", "std"])
    return pd.concat([table, summary])


def _metric_cols(settings, method, payload):
    "The columns of a fold's epoch record: train_loss, valid_loss and the metrics' names."
    metrics = split_config(settings, method)[1].get("metrics") or []
    metrics = [metrics] if callable(metrics) else list(metrics)
    return ["train_loss", "valid_loss"] + [getattr(m, "name", getattr(m, "__name__", "metric")) for m in metrics]
