"""collabc on Ray (`pip install "collabc[ray]"`): sweeps and cross-validation on Ray Tune,
batch top-n over Ray Data actors, and the sparse path's stratified training over Ray actors.

    from collabc.ray import tune_collab, cross_validate, recommend_all, fit_distributed

* `tune_collab(data, param_space, epochs=..., num_samples=..., cv=None)` - one ordinary collabc
  fit per trial on Ray Tune, reported every epoch (ASHA stops trials early); the encoded ratings
  go to the object store once for all trials; returns the trials as a DataFrame and the best
  configuration. `cross_validate(data, k, **learner_kwargs)` - k folds, mean and spread.
* `recommend_all(model_path, users, out, n=10)` - top-n for many users from an exported model,
  one model per Ray Data actor, written as Parquet (user, rank, item, score).
* `fit_distributed(data, n_workers=..., n_blocks=..., epochs=..., lr=...)` - the sparse path's
  schedule over Ray actors, bit for bit the local `train_mode='sparse'` fit; data in memory or
  in Parquet files; survives the loss of a worker.

See docs/ray.md.
"""
try:
    import ray  # noqa: F401
    import ray.tune  # noqa: F401
    import ray.data  # noqa: F401
except ImportError as e:   # the optional extra is missing: say how to get it
    raise ImportError(f"collabc.ray needs Ray with Tune and Data ({e}); install the extra: "
                      f"pip install \"collabc[ray]\"") from e

from ._cluster import ensure_ray
from .distributed import fit_distributed
from .batch import recommend_all
from .sweep import SweepResult, cross_validate, fold_dls, kfold, split_config, tune_collab

__all__ = ["ensure_ray", "fit_distributed", "recommend_all", "tune_collab", "cross_validate", "kfold", "fold_dls",
           "split_config", "SweepResult"]
