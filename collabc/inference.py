"""fastai's prediction API for a `Learner` (its methods delegate here): `get_preds`, `predict`,
`show_results`, in fastai's shapes and orders.
"""
import numpy as np
import pandas as pd

from .display import in_notebook
from .seed import get_rng
from .topn import check_n

__all__ = ["get_preds", "predict", "show_results"]


def _preds_shape(model, preds):
    "fastai's shapes: (N,) for the dot models, (N, 1) for models that declare `preds_ndim = 2`."
    return preds.reshape(-1, 1) if getattr(model, "preds_ndim", 1) == 2 else preds


# ---------------------------------------------------------------------------------------------
# fastai's prediction API

def _targets(learn, dl):
    if not getattr(dl, "has_y", True):
        return None
    dt = getattr(learn.dls, "_y_dtype", np.dtype(np.float32))
    y = dl.y.reshape(-1, 1)
    return y.astype(dt) if np.dtype(dt).kind in "iub" else y.copy()


def get_preds(learn, ds_idx=1, dl=None, with_input=False, with_decoded=False, with_loss=False,
              act=None, reorder=True):
    """fastai's `Learner.get_preds`: `[inputs,] preds, targs[, decoded][, losses]` for the rows of
    `learn.dls[ds_idx]` (or `dl`, e.g. from `dls.test_dl(df)`) in the dataset's order (the split
    order, as fastai; a shuffled training loader is read unshuffled and complete).
    preds: float32 (N,) for the dot models; targs: (N, 1) in the rating column's dtype, or None
    for a `test_dl` without ratings; inputs: (N, 2) int64 encoded (user, item); losses: (N,)
    float32 squared errors. `act` is applied to preds (MSE's activation is the identity)."""
    if dl is None:
        if isinstance(ds_idx, bool) or ds_idx not in (0, 1):
            raise ValueError(f"ds_idx must be 0 (train) or 1 (valid), got {ds_idx!r}")
        dl = learn.dls[ds_idx]
    if not hasattr(dl, "x") or not hasattr(dl, "y"):
        raise TypeError(f"dl must be a collabc DataLoader, got {type(dl).__name__}")
    preds = learn.model._predict(dl.x) if dl.n else np.zeros(0, np.float32)
    if act is not None:
        preds = np.asarray(act(preds), dtype=np.float32)
    preds = _preds_shape(learn.model, preds)
    targs = _targets(learn, dl)
    res = [preds, targs]
    if with_input:
        res.insert(0, dl.x.astype(np.int64))
    if with_decoded:
        res.insert(3 if with_input else 2, preds)
    if with_loss:
        if targs is None:
            raise ValueError("with_loss=True needs targets, but this DataLoader has no rating column")
        res.append(((preds.reshape(-1) - dl.y) ** 2).astype(np.float32))
    return tuple(res)


def _row_frame(learn, row):
    u, i = learn.dls.user_name, learn.dls.item_name
    if isinstance(row, pd.Series):
        return row.to_frame().T
    if isinstance(row, dict):
        return pd.DataFrame([row])
    if isinstance(row, pd.DataFrame):
        if len(row) != 1:
            raise ValueError(f"predict takes one row; got a DataFrame of {len(row)} rows "
                             f"(use learn.get_preds(dl=learn.dls.test_dl(df)) for many)")
        return row
    if isinstance(row, (tuple, list)) and len(row) == 2:
        return pd.DataFrame({u: [row[0]], i: [row[1]]})
    raise TypeError(f"row must be a pandas Series, a dict, a one-row DataFrame or a (user, item) "
                    f"pair, got {type(row).__name__}")


def predict(learn, row, unknown="raise"):
    """fastai's `predict` for one row (a Series/dict with the user and item columns, or a
    (user, item) pair): `(full_dec, dec_pred, pred)` - a one-row DataFrame of the user, the item
    and `<rating>_pred`, then the prediction twice (decoding is the identity for MSE)."""
    df = _row_frame(learn, row)
    dl = learn.dls.test_dl(df, unknown=unknown, with_labels=False)
    preds = learn.model._predict(dl.x)
    u, i, r = learn.dls.user_name, learn.dls.item_name, learn.dls.rating_name
    full = pd.DataFrame({u: df[u].to_numpy(), i: df[i].to_numpy(), f"{r}_pred": preds})
    p = _preds_shape(learn.model, preds)[0]
    return full, p, p


def show_results(learn, ds_idx=1, dl=None, max_n=9, shuffle=True):
    """fastai's `show_results`: `max_n` rows of the validation set (random ones if `shuffle`) as
    a DataFrame user, item, rating, `<rating>_pred`; shown as HTML in a notebook, printed
    otherwise, and returned."""
    max_n = check_n(max_n, "max_n")
    dl = learn.dls[ds_idx] if dl is None else dl
    if dl.n == 0:
        raise ValueError("show_results: the DataLoader has no rows")
    rows = get_rng().permutation(dl.n)[:max_n] if shuffle else np.arange(min(max_n, dl.n))
    x = dl.x[rows]
    d = learn.dls
    users = np.asarray(d.classes[d.user_name], dtype=object)[x[:, 0]]
    items = np.asarray(d.classes[d.item_name], dtype=object)[x[:, 1]]
    cols = {d.user_name: users, d.item_name: items}
    targs = _targets(learn, dl)
    if targs is not None:
        cols[d.rating_name] = targs[rows, 0]
    cols[f"{d.rating_name}_pred"] = learn.model._predict(np.ascontiguousarray(x))
    df = pd.DataFrame(cols)
    if in_notebook():
        from IPython.display import HTML, display
        display(HTML(df.to_html(index=False)))
    else:
        print(df.to_string(index=False))
    return df
