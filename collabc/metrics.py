"""Validation metrics and the loss, fastai-style: each metric is computed on the predictions
of the whole validation set at once (fastai's AccumMetric), so `rmse` is the root of the exact
MSE, not a mean of batch RMSEs."""
import numpy as np

from .autograd import Tensor, mse_loss_flat

__all__ = ["MSELossFlat", "mse", "rmse", "mae"]


class MSELossFlat:
    """Mean squared error over flattened predictions and targets (fastai's `MSELossFlat`). On
    tensors it is the differentiable loss (`collabc.autograd.mse_loss_flat`, a Tensor you can
    call `.backward()` on); on arrays, a float."""
    name = "mse"

    def __call__(self, pred, targ):
        if isinstance(pred, Tensor) or isinstance(targ, Tensor):
            return mse_loss_flat(pred, targ)
        pred = np.asarray(pred, dtype=np.float64).reshape(-1)
        targ = np.asarray(targ, dtype=np.float64).reshape(-1)
        if pred.shape != targ.shape:
            raise ValueError(f"pred has {pred.size} values but targ has {targ.size}")
        return float(np.mean((pred - targ) ** 2)) if pred.size else float("nan")

    def __repr__(self):
        return "FlattenedLoss of MSELoss()"


def _flat(pred, targ):
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    targ = np.asarray(targ, dtype=np.float64).reshape(-1)
    if pred.shape != targ.shape:
        raise ValueError(f"pred has {pred.size} values but targ has {targ.size}")
    return pred, targ


def mse(pred, targ):
    "Mean squared error."
    p, t = _flat(pred, targ)
    return float(np.mean((p - t) ** 2))


def rmse(pred, targ):
    "Root mean squared error."
    return float(np.sqrt(mse(pred, targ)))


def mae(pred, targ):
    "Mean absolute error."
    p, t = _flat(pred, targ)
    return float(np.mean(np.abs(p - t)))


mse.name, rmse.name, mae.name = "mse", "_rmse", "mae"
