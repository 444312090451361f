"""(user, item) pairs as CSR structures: `(indptr, indices)` with `indptr` (n_rows + 1,) int64
and each row's `indices` (int32) sorted and unique. The training pairs of a loader
(`DataLoader.seen`) are one; top-n scoring skips a query's row of it (`collabc.topn`)."""
import numpy as np

__all__ = ["seen_csr", "csr_rows", "csr_from_lists"]


def seen_csr(x, n_rows, n_cols, by_item=False):
    """The (user, item) pairs of `x` ((N, 2) indices) as a CSR structure: `(indptr, indices)` with
    `indptr` (n_rows+1,) int64 and each row's `indices` (int32) sorted and unique. Rows are users
    (or items with `by_item=True`)."""
    x = np.asarray(x)
    a, b = (x[:, 1], x[:, 0]) if by_item else (x[:, 0], x[:, 1])
    keys = np.unique(a.astype(np.int64) * n_cols + b)
    rows = keys // n_cols
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, (keys % n_cols).astype(np.int32)


def csr_rows(csr, rows):
    "The sub-CSR of the given rows, in that order."
    indptr, indices = csr
    starts, ends = indptr[rows], indptr[rows + 1]
    lens = ends - starts
    out_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lens, out=out_ptr[1:])
    if out_ptr[-1] == 0:
        return out_ptr, np.zeros(0, np.int32)
    pos = np.arange(out_ptr[-1], dtype=np.int64) + np.repeat(starts - out_ptr[:-1], lens)
    return out_ptr, np.ascontiguousarray(indices[pos])


def csr_from_lists(lists):
    "A CSR whose row q holds the indices of `lists[q]` (in the given order)."
    indptr = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=indptr[1:])
    indices = np.concatenate([np.asarray(x, np.int32) for x in lists]) if indptr[-1] else np.zeros(0, np.int32)
    return indptr, np.ascontiguousarray(indices, dtype=np.int32)
