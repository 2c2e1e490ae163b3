"""Top k of each row of a sparse matrix, looking only at the row's non-zeros.

Rows are grouped by their number of non-zeros (in powers of two), each group padded to its
longest row and partitioned at once: the work follows the non-zeros, never the full width
of a mostly-zero row, and there is no Python loop over rows.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# rows of up to this many non-zeros share one bucket: one pass over them all cost less than a
# pass per length (a masked chunk's rows are mostly this short: a reader's matched papers)
SHORT = 16


def topk_rows(
    matrix: sp.csr_matrix, k: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, cols, values)`` of the k largest entries of each row, largest first.

    ``k`` is one number or one per row. Ties keep the lower column first, so results do
    not depend on the order of the non-zeros.
    """
    # no sorting or duplicate check: a product's rows come out without duplicates, and
    # sorting them would cost as much as the selection itself
    matrix = matrix.tocsr()
    n_rows = matrix.shape[0]
    lengths = np.diff(matrix.indptr)
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (n_rows,))
    take = np.minimum(lengths, np.maximum(ks, 0))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(take, out=indptr[1:])
    cols = np.empty(indptr[-1], dtype=np.int32)
    values = np.empty(indptr[-1], dtype=matrix.dtype)
    live = np.flatnonzero(take > 0)
    if not len(live):
        return indptr, cols, values
    buckets = np.ceil(np.log2(np.maximum(lengths[live], SHORT))).astype(np.int64)
    for bucket in np.unique(buckets):
        rows = live[buckets == bucket]
        width = int(lengths[rows].max())
        span = np.arange(width)
        valid = span[None, :] < lengths[rows][:, None]
        at = np.minimum(matrix.indptr[rows][:, None] + span[None, :], len(matrix.data) - 1)
        vals = matrix.data[at]
        vals[~valid] = -np.inf
        kk = int(take[rows].max())
        if kk < width:
            # argpartition on the padded non-zeros only: the kk largest end up last
            part = np.argpartition(vals, width - kk, axis=1)[:, width - kk :]
        else:
            part = np.broadcast_to(span, (len(rows), width))
        picked = np.take_along_axis(vals, part, axis=1)
        picked_at = np.take_along_axis(at, part, axis=1)
        picked_cols = matrix.indices[picked_at]
        order = np.lexsort((picked_cols, -picked), axis=1)
        picked = np.take_along_axis(picked, order, axis=1)
        picked_cols = np.take_along_axis(picked_cols, order, axis=1)
        keep = np.arange(picked.shape[1])[None, :] < take[rows][:, None]
        dest = (indptr[rows][:, None] + np.arange(picked.shape[1])[None, :])[keep]
        cols[dest] = picked_cols[keep]
        values[dest] = picked[keep]
    return indptr, cols, values
