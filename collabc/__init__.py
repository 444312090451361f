"""collabc: fastai-style collaborative filtering with a C core and no PyTorch.

    from collabc import *
    dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
"""
from . import _core
from .data import CategoryMap, CollabDataLoaders, DataLoader, DataLoaders
from .external import URLs, untar_data
from .learner import Learner, Recorder, TrainingDivergedError, collab_learner
from .metrics import MSELossFlat, mae, mse, rmse
from .models import (CollabNN, DotProduct, DotProductBias, Embedding, EmbeddingDotBias,
                     EmbeddingNN, TabularModel, create_params, emb_sz_rule, get_emb_sz,
                     sigmoid_range, tabular_config, trunc_normal_)
from .optim import SGD, Adagrad, Adam
from .seed import set_seed
from .inference import FoldIn
from .interpret import SuggestionMethod, minimum, most_similar, pca, plot_pca, slide, steep, valley
from .persist import CollabcFileError, load_learner
from .ranking import map_at_k, ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k

__version__ = _core.__version__

__all__ = ["CategoryMap", "CollabDataLoaders", "DataLoader", "DataLoaders", "URLs", "untar_data",
           "Learner", "Recorder", "TrainingDivergedError", "collab_learner", "MSELossFlat", "mae",
           "mse", "rmse", "DotProduct", "DotProductBias", "Embedding", "EmbeddingDotBias",
           "create_params", "sigmoid_range", "trunc_normal_", "CollabNN", "EmbeddingNN",
           "TabularModel", "emb_sz_rule", "get_emb_sz", "tabular_config", "SGD", "Adam", "Adagrad", "set_seed",
           "FoldIn", "SuggestionMethod", "minimum", "most_similar", "pca", "plot_pca", "slide", "steep",
           "valley", "CollabcFileError", "load_learner", "map_at_k", "ndcg_at_k", "precision_at_k",
           "ranking_metrics", "recall_at_k"]
from . import datasets; from .datasets import load_movielens, synthetic; __all__ += ["datasets", "load_movielens", "synthetic"]  # noqa: E402,E702
