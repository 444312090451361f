"""collabc: fastai-style collaborative filtering with a C core and no PyTorch.

    from collabc import *
    dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
    learn.fit_one_cycle(5, 5e-3, wd=0.1)

The star import brings what fastai's lesson 7 uses, as `from fastai.collab import *` does:
the data and learner API, the built-in models, and the pieces a learner writes models with
(`Module`, `Embedding`, `nn`, `tensor`, `Tensor`, `zeros`, `cat`, `sigmoid_range`, `L`,
`delegates`, ...) plus `np`, `pd`, `plt` (when matplotlib is installed) and `Path`.
"""
import importlib.util as _ilu
from pathlib import Path

import numpy as np
import pandas as pd

from . import _core, nn
from .data import CategoryMap, CollabDataLoaders, DataLoader, DataLoaders
from .external import URLs, untar_data
from .callback import (Callback, CancelBatchException, CancelEpochException, CancelFitException,
                       CancelTrainException, CancelValidException, CSVLogger, EarlyStoppingCallback,
                       ProgressCallback, ReduceLROnPlateau, SaveModelCallback, ShowGraphCallback,
                       TerminateOnNaNCallback, TrackerCallback, TrainEvalCallback, event)
from .fastcore import L, delegates
from .layers import BatchNorm, Embedding, LinBnDrop, Module, SigmoidRange, TabularModel, trunc_normal_
from .learner import Learner, Recorder, TrainingDivergedError, bayes_learner, collab_learner, load_learner
from .metrics import MSELossFlat, mae, mse, rmse
from .models import (CollabNN, DotProduct, DotProductBias, EmbeddingDotBias, EmbeddingNN,
                     create_params, emb_sz_rule, get_emb_sz, tabular_config)
from .optim import SGD, Adagrad, Adam
from .seed import set_seed
from .autograd import (Parameter, Tensor, arange, cat, linspace, no_grad, one_hot, ones, ones_like, rand,
                     randn, sigmoid, sigmoid_range, stack, tensor, zeros, zeros_like)
from .cpu import cpu_info
from .foldin import FoldIn
from .interpret import most_similar, pca, plot_pca
from .schedule import (LRFinder, ParamScheduler, SchedCos, SchedExp, SchedLin, SchedNo, SchedPoly,
                       SuggestionMethod, combine_scheds, combined_cos, minimum, slide, steep, valley)
from .persist import CollabcFileError
from .ranking import map_at_k, ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k

__version__ = _core.__version__

__all__ = ["CategoryMap", "CollabDataLoaders", "DataLoader", "DataLoaders", "URLs", "untar_data",
           "Learner", "Recorder", "TrainingDivergedError", "collab_learner", "bayes_learner", "MSELossFlat", "mae",
           "mse", "rmse", "DotProduct", "DotProductBias", "Embedding", "EmbeddingDotBias",
           "create_params", "sigmoid_range", "trunc_normal_", "CollabNN", "EmbeddingNN",
           "TabularModel", "emb_sz_rule", "get_emb_sz", "tabular_config", "SGD", "Adam", "Adagrad", "set_seed",
           "FoldIn", "SuggestionMethod", "minimum", "most_similar", "pca", "plot_pca", "slide", "steep",
           "valley", "CollabcFileError", "load_learner", "map_at_k", "ndcg_at_k", "precision_at_k",
           "ranking_metrics", "recall_at_k", "Callback", "CancelBatchException", "CancelEpochException",
           "CancelFitException", "CancelTrainException", "CancelValidException", "CSVLogger",
           "EarlyStoppingCallback", "ProgressCallback", "ReduceLROnPlateau", "SaveModelCallback",
           "ShowGraphCallback", "TerminateOnNaNCallback", "TrackerCallback", "TrainEvalCallback", "event",
           "LRFinder", "ParamScheduler", "SchedCos", "SchedExp", "SchedLin", "SchedNo", "SchedPoly",
           "combine_scheds", "combined_cos",
           # what the lesson's own model code uses (fastai's star import brings these too)
           "np", "pd", "Path", "nn", "Module", "L", "delegates", "BatchNorm", "LinBnDrop", "SigmoidRange",
           "Tensor", "Parameter", "tensor", "zeros", "ones", "zeros_like", "ones_like", "rand", "randn",
           "arange", "linspace", "cat", "stack", "one_hot", "sigmoid", "no_grad"]
if _ilu.find_spec("matplotlib") is not None:
    __all__.append("plt")


def __getattr__(name):
    "`collabc.plt` is matplotlib.pyplot, imported on first use (the star import asks for it)."
    if name == "plt":
        import matplotlib.pyplot as plt
        globals()["plt"] = plt
        return plt
    raise AttributeError(f"module 'collabc' has no attribute {name!r}")


from . import datasets; from .datasets import load_movielens, synthetic; __all__ += ["datasets", "load_movielens", "synthetic"]  # noqa: E402,E702
from .implicit_learner import implicit_learner; __all__ += ["implicit_learner"]  # noqa: E402,E702
