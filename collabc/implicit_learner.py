"""Implicit feedback in the familiar API: `implicit_learner(dls, model='als' | 'bpr', ...)` gives a
collabc `Learner` whose `fit` trains implicit ALS or BPR (`collabc.implicit`) through the one
training loop of `collabc.learner`: the epoch table (training loss and ranking metrics on the
held-out interactions), the progress bar, Ctrl-C between segments and the callbacks.

    dls = CollabDataLoaders.from_df(ratings[ratings.rating >= 4].drop(columns='rating'),
                                    implicit=True, time_name='timestamp', seed=0)
    learn = implicit_learner(dls, 'als', n_factors=64, reg=10.0, alpha=5.0)
    learn.fit(15)
    learn.ranking_metrics()          # precision/recall/NDCG/MAP@10, the popularity baseline beside

Pieces: `ImplicitPath` (a `collabc.paths.TrainingPath`: an epoch of the model's `EpochRun` in
the segments the loop asks for), `ImplicitRecorder` (the epoch table's columns: train_loss, then
the ranking metrics; there is no validation loss), `ImplicitLearner` (the Learner with ranking
metrics as its validation, the model's own fold-in and an optimizer that only holds the
schedule). Learning rates: BPR trains each block at the loop's lr, so `fit(n, lr)`,
`fit_one_cycle`, `fit_flat_cos` and `fit_sgdr` schedule it; ALS solves each row and has no
learning rate, so every fit method runs its n epochs as n ALS iterations and ignores lr, wd
and momentum.
"""
import time

import numpy as np
import pandas as pd

from .callback import Recorder, TrainingDivergedError
from .display import format_time
from .data import encode_ids
from .foldin import FoldIn, _parse_ratings
from .implicit import ImplicitData, ImplicitModel, auto_groups, evaluate, _int, _METRICS
from .learner import Learner, _LEARNERS, _exclusive
from .optim import SGD
from .paths import TrainingPath

__all__ = ["implicit_learner", "ImplicitLearner", "ImplicitPath", "ImplicitRecorder"]


class ImplicitPath(TrainingPath):
    """An epoch of an implicit model (`model.core.epoch(...)`, an `EpochRun`) in segments.
    ALS: n_users + n_items iterations (rows: the users, then the items), granularity 1, lr
    ignored; each iteration's loss is the model's loss when the epoch started (ALS reports its
    loss once per epoch). BPR: n_groups^2 blocks in the epoch's strata (from the learner's
    data order stream), granularity n_groups (one stratum, all threads busy), each block at its
    scheduled lr with its own mean loss. `epoch_loss` is the loss of the last finished epoch
    (for ALS, at the start of a fit, the loss of the model as it is: `als_loss`, O(nnz K)).
    A BPR score that becomes NaN or infinite raises `TrainingDivergedError` from `run`."""
    restorable = False   # never reports divergence (see collabc.paths)

    def __init__(self, learn):
        super().__init__(learn)
        core = learn.model.core
        self.core, self.als = core, learn.model.kind == "als"
        self.unit = "row" if self.als else "block"
        self.run_, self.epoch_loss, self.result = None, None, None

    def _inter(self):
        data = self.learn.data
        if data is None:
            raise ValueError("this learner has no training interactions (it was loaded from an export); "
                             "build one with implicit_learner(dls) on CollabDataLoaders.from_df(..., "
                             "implicit=True) to train")
        return data.interactions(self.learn.n_threads)

    @property
    def granularity(self):
        return 1 if self.als else self._groups()

    def _groups(self):
        core = self.core
        if core.n_groups is None:   # BPR's 'auto' grid, a function of the data only
            inter = self._inter()
            core.n_groups = auto_groups(inter.nnz, core.n_users, core.n_items)
        return core.n_groups

    @property
    def n_iter(self):
        return self.core.n_users + self.core.n_items if self.als else self._groups() ** 2

    def prepare_opt(self, opt):
        "BPR with Adagrad: its accumulators are an optimizer buffer (saved with `save(with_opt=True)`)."
        core = self.core
        if not self.als and core.opt == "adagrad":
            core.acc = opt.buffer("acc", core.n_users + 2 * core.n_items)

    def begin_fit(self):
        inter = self._inter()
        self.prepare_opt(self.learn.opt)   # the learner's optimizer may be new or reloaded
        if self.als:   # the model may have changed since the last fit (load, a callback): measured again
            self.epoch_loss = als_loss(self.core, inter)

    def begin_epoch(self, rng):
        inter = self._inter()
        threads = self.learn.n_threads
        self.run_ = (self.core.epoch(inter, threads) if self.als else
                     self.core.epoch(inter, threads, rng=rng))
        self.result = None

    def run(self, start, lrs, moms, losses):
        ep = self.run_
        if start > ep.n_done:   # a callback cancelled the segments between: those units stay untrained
            ep.skip(start - ep.n_done)
        n = len(lrs)
        try:
            ep.run(n, lrs=None if self.als else lrs)
        except FloatingPointError as e:
            raise TrainingDivergedError(f"training diverged: {e}") from None
        if self.als:
            losses[:] = self.epoch_loss
        else:
            losses[:] = ep.unit_losses[start:start + n]
        if ep.done:
            self.result = ep.result()
            self.epoch_loss = self.result["loss"]
        return -1


def als_loss(core, inter, chunk=1 << 22):
    """The ALS training loss `L / (sum of all confidences)` of the model as it is (what an epoch
    reports for its end), in float64: sum_{u,i} (x_u.y_i)^2 from the two Gramians, corrected on
    the training pairs, plus reg (|X|^2 + |Y|^2)."""
    X, Y = core.user_factors, core.item_factors
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    total = float(np.sum((X64.T @ X64) * (Y64.T @ Y64)))
    ptr = inter.indptr
    # the training pairs, users in blocks of about `chunk` factor values (scores in float32, as trained)
    cuts = np.unique(np.searchsorted(ptr, np.arange(0, inter.nnz, max(1, chunk // core.n_factors)), "right") - 1)
    for ua, ub in zip(cuts, np.append(cuts[1:], core.n_users)):
        lo, hi = int(ptr[ua]), int(ptr[ub])
        users = np.repeat(np.arange(ua, ub, dtype=np.int32), np.diff(ptr[ua:ub + 1]))
        s = np.einsum("ij,ij->i", X[users], Y[inter.indices[lo:hi]]).astype(np.float64)
        w = 1.0 if inter.weights is None else inter.weights[lo:hi].astype(np.float64)
        total += float(np.sum((1.0 + core.alpha * w) * (1 - s) ** 2 - s * s))
    total += core.reg * (float(np.sum(X64 * X64)) + float(np.sum(Y64 * Y64)))
    return total / inter.confidence_total(core.alpha)


class ImplicitRecorder(Recorder):
    """The `Recorder` of an implicit learner: the epoch table's columns are epoch, train_loss
    (the epoch's exact training loss: ALS's normalised objective, BPR's mean -ln sigmoid of its
    samples; the smoothed per-block loss when an epoch was cut short), then the ranking metrics
    (`learn.rank_names`, e.g. 'ndcg@10': monitor them with EarlyStoppingCallback or
    SaveModelCallback), then time. There is no valid_loss column."""
    name = "recorder"

    def before_fit(self):
        super().before_fit()
        self.metric_names = ["epoch", "train_loss", *self.learn.rank_names] + (["time"] if self.add_time else [])

    def after_epoch(self):
        path = self.learn._path
        ended = getattr(path, "result", None) is not None   # the epoch ran to its end
        loss = path.epoch_loss if ended else self.smooth_loss
        if not self._ran and self.valid_values is None:
            return
        self.iters.append(len(self.losses))
        vals = self.valid_values
        if vals is None:
            vals = [float("nan")] * len(self.learn.rank_names)
        self.values.append([loss, *vals])
        elapsed = time.perf_counter() - self.start_epoch
        self.times.append(elapsed)
        log = [self.learn.epoch, loss, *vals]
        if self.add_time:
            log.append(format_time(elapsed))
        self.learn.logger(log)

    def plot_loss(self, skip_start=5, with_valid=False, ax=None):
        "The training loss per iteration (an implicit learner has no validation loss)."
        return super().plot_loss(skip_start, False, ax)


class ImplicitLearner(Learner):
    """A `Learner` for an `ImplicitModel` (made by `implicit_learner`). Differences from the
    rating learners: validation is ranking metrics at `k` on `dls.implicit`'s held-out pairs
    (training items excluded), `rank_metrics` a subset of ('precision', 'recall', 'ndcg',
    'map'); `ranking_metrics()` reports them with the popularity baseline beside;
    `fold_in_user(items)` is the model's own (ALS: the exact user solve; BPR: SGD steps on the
    new row); the optimizer only carries the loop's lr and momentum schedule (and BPR-Adagrad's
    accumulators); `wd` is not used (the models' `reg` regularises). The epoch table evaluates at
    most `eval_users` users with held-out pairs (a fixed random sample, the same every epoch, so
    that validation stays cheap on millions of users; None: all), as does `validate()`;
    `ranking_metrics()` evaluates every user."""

    def __init__(self, dls, model, k=10, rank_metrics=_METRICS, eval_users=5_000, lr=None, metrics=None,
                 opt_func=SGD, default_cbs=True, **kwargs):
        if not isinstance(model, ImplicitModel):
            raise TypeError(f"model must be an ImplicitModel (see implicit_learner), got {type(model).__name__}")
        if metrics:
            raise TypeError("an implicit learner reports ranking metrics: choose them with "
                            "rank_metrics=('precision', 'recall', 'ndcg', 'map') and k")
        if isinstance(rank_metrics, str):
            rank_metrics = [rank_metrics]
        rank_metrics = list(rank_metrics)
        bad = [m for m in rank_metrics if m not in _METRICS]
        if bad or not rank_metrics:
            raise ValueError(f"rank_metrics must be a non-empty list of {list(_METRICS)}, got {rank_metrics!r}")
        self.k, self.rank_metrics = _int("k", k), rank_metrics
        if lr is None:
            lr = model.core.lr if model.kind == "bpr" else 1.0
        data = getattr(dls, "implicit", None)
        if data is not None and not isinstance(data, ImplicitData):
            raise TypeError(f"dls.implicit must be an ImplicitData, got {type(data).__name__}")
        if data is not None and (data.n_users, data.n_items) != (model.n_users, model.n_items):
            raise ValueError(f"the model has {model.n_users} users and {model.n_items} items but the data "
                             f"{data.n_users} and {data.n_items}")
        self.data = data
        self.eval_users = None if eval_users is None else _int("eval_users", eval_users)
        self._eval_sample = None
        super().__init__(dls, model, lr=lr, opt_func=opt_func, default_cbs=default_cbs, **kwargs)
        if default_cbs:
            self.remove_cb(self.recorder)
            self.add_cb(ImplicitRecorder())

    rank_names = property(lambda self: [f"{m}@{self.k}" for m in self.rank_metrics],
                          doc="the ranking metrics' column names, e.g. 'ndcg@10'")

    @property
    def _path(self):
        if self._path_override is not None:
            return self._path_override
        if self._path_obj is None:
            self._path_obj = ImplicitPath(self)
            self._path_obj.kind = f"implicit {self.model.kind}"
        return self._path_obj

    def _validate_values(self, dl=None):
        if self.data is None:
            return [float("nan")] * len(self.rank_metrics)
        if self._eval_sample is None:   # drawn once (a fixed seed): every epoch evaluates the same users
            users = self.data.relevant()[0]
            if self.eval_users is not None and len(users) > self.eval_users:
                users = np.sort(np.random.default_rng(0).choice(users, self.eval_users, replace=False))
            self._eval_sample = users
        if len(self._eval_sample) == 0:
            return [float("nan")] * len(self.rank_metrics)
        rep = evaluate(self.model.core, self.data, self.k, baseline=False, threads=self.n_threads,
                       users=self._eval_sample)
        return [rep[n] for n in self.rank_names]

    @_exclusive
    def validate(self, ds_idx=1, dl=None):
        "The ranking metrics (`rank_names`) on the held-out interactions."
        return self._validate_values()

    @_exclusive
    def ranking_metrics(self, k=None, baseline=True, threads=None):
        """precision, recall, NDCG and MAP at k (default `self.k`) on the held-out interactions,
        training items excluded, with the popularity baseline beside (`baseline`): a
        `collabc.implicit.RankingReport` (a dict) whose `verdict` says whether the model beats
        popularity."""
        if self.data is None:
            raise ValueError("this learner has no held-out interactions (it was loaded from an export); "
                             "evaluate on the learner that was trained, or on a new implicit_learner")
        return evaluate(self.model.core, self.data, self.k if k is None else k, baseline,
                        self.n_threads if threads is None else threads)

    @_exclusive
    def fold_in_user(self, items, name=None, **kwargs):
        """A new user (`FoldIn`) from the items it interacted with: a list of item ids (each
        weight 1), {item: weight}, a Series indexed by item, or a DataFrame with the item and
        weight columns. ALS: the exact closed-form solve with every item frozen
        (`ImplicitALS.fold_in`); BPR: SGD steps on the new row (`BPR.fold_in`, kwargs n_steps,
        lr, seed; weights are not used). The `FoldIn` works with recommend and most_similar."""
        d = self.dls
        if isinstance(items, (dict, pd.Series, pd.DataFrame)):
            idx, w = _parse_ratings(self, items, is_item=False)
        else:
            if isinstance(items, (str, bytes)) or np.ndim(items) == 0:
                items = [items]
            idx = encode_ids(d.classes[d.item_name], list(items), f"item column {d.item_name!r}", hint=False)
            w = None
        core = self.model.core
        if self.model.kind == "als":
            factors = core.fold_in(np.asarray(idx, np.int64), w, **kwargs)
        else:
            factors = core.fold_in(np.asarray(idx, np.int64), **kwargs)
        return FoldIn(self, factors, 0.0, False, rated=idx, name=name, n_ratings=len(idx))

    def summary(self):
        "The Learner's summary, with the loss the model trains on."
        loss = ("ALS: confidence-weighted squared error over every (user, item) pair + reg"
                if self.model.kind == "als" else "BPR: -ln sigmoid(x_ui - x_uj) + reg")
        text = super().summary()
        return type(text)(text.replace(f"Loss function: {self.loss_func!r}", f"Loss function: {loss}"))

    def lr_find(self, *args, **kwargs):
        "fastai's `lr_find` for BPR; ALS has no learning rate to find."
        if self.model.kind == "als":
            raise TypeError("lr_find: ALS has no learning rate (each row is solved); fit(n) runs n iterations")
        return super().lr_find(*args, **kwargs)

    @_exclusive
    def fold_in_item(self, ratings, name=None, **kwargs):
        "Not available for implicit models (fold in new users; retrain for new items)."
        raise TypeError("fold_in_item is not available for implicit models: fold in new users with "
                        "fold_in_user, or retrain with the new item's interactions")


def implicit_learner(dls, model="als", n_factors=64, k=10, rank_metrics=_METRICS, seed=None,
                     n_threads=None, **kwargs):
    """A `Learner` that trains implicit ALS (`model='als'`) or BPR (`'bpr'`) on `dls` from
    `CollabDataLoaders.from_df(df, implicit=True, ...)` (an `ImplicitLearner`).

    Hyperparameters (kwargs) go to the model: ALS `reg` (0.01), `alpha` (1.0, > 0), `cg_steps`
    (3), `init_scale`; BPR `lr` (0.01, the learner's lr), `reg`, `reg_bias`, `opt` ('sgd' or
    'adagrad'), `eps`, `n_groups` ('auto'); `seed` draws the initial tables. Learner
    arguments (`cbs`, `path`, `model_dir`, `n_threads`, `eval_users`, ...) are taken too. Each epoch's row
    shows the training loss and precision/recall/NDCG/MAP at `k` on the held-out interactions
    (`rank_metrics` chooses which)."""
    data = getattr(dls, "implicit", None)
    if not isinstance(data, ImplicitData):
        raise TypeError("dls must hold implicit interactions: build it with "
                        "CollabDataLoaders.from_df(df, implicit=True, ...)")
    learner_keys = {"cbs", "path", "model_dir", "opt_func", "moms", "default_cbs", "eval_users"}
    lkw = {k_: kwargs.pop(k_) for k_ in list(kwargs) if k_ in learner_keys}
    m = ImplicitModel(model, data.n_users, data.n_items, n_factors, seed=seed, **kwargs)
    m.classes, m.user, m.item = dls.classes, dls.user_name, dls.item_name
    return ImplicitLearner(dls, m, k=k, rank_metrics=rank_metrics, n_threads=n_threads, **lkw)


_LEARNERS["ImplicitModel"] = ImplicitLearner
