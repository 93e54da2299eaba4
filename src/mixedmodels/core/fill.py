"""Precomputed fill-in of a dense diagonal block from the first (diagonal) block.

For scalar terms ``0`` (first, block-diagonal factor) and ``k`` (dense), the update
``L[k,0] L[k,0]'`` equals ``(theta_k theta_0)^2 A D A'`` with ``A = Z_k'WZ_0`` and
``D = diag(1 / L[0,0]^2)``: its lower triangle is a fixed linear map of ``D``.  We store that
map once as a sparse matrix ``M`` (one row per structurally nonzero lower-triangle position,
one column per level of term 0, ``M[(i,j), s] = A[i,s] A[j,s]``), so each theta costs one
sparse matrix-vector product instead of a sparse matrix product and a densification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MAX_TRIPLES = 30_000_000


@dataclass(frozen=True)
class FillPlan:
    """``lower(A diag(w) A')`` as ``M @ w`` scattered into a dense matrix."""

    size: int
    positions: np.ndarray  # flat indices i * size + j (i >= j) of the rows of M
    map: sp.csr_matrix

    def lower_product(self, w: np.ndarray) -> np.ndarray:
        """Dense matrix whose lower triangle is that of ``A diag(w) A'`` (upper: zero)."""
        out = np.zeros(self.size * self.size)
        out[self.positions] = self.map @ w
        return out.reshape(self.size, self.size)


def make_fill_plan(a: sp.csr_matrix) -> FillPlan | None:
    """The map for ``A diag(w) A'``; None when it would hold too many entries."""
    csc = a.tocsc()
    csc.sort_indices()
    counts = np.diff(csc.indptr)
    n_triples = int((counts * (counts + 1) // 2).sum())
    if n_triples > MAX_TRIPLES:
        return None
    nnz = csc.nnz
    col_of = np.repeat(np.arange(csc.shape[1]), counts)
    pos_in_col = np.arange(nnz) - csc.indptr[col_of]
    reps = pos_in_col + 1
    first = np.repeat(np.arange(nnz), reps)  # entry t (row i)
    offsets = np.arange(n_triples) - np.repeat(np.cumsum(reps) - reps, reps)
    second = csc.indptr[col_of[first]] + offsets  # entries t' <= t in the same column
    rows = csc.indices
    target = rows[first].astype(np.int64) * a.shape[0] + rows[second]
    positions, row_index = np.unique(target, return_inverse=True)
    fill_map = sp.csr_matrix(
        (csc.data[first] * csc.data[second], (row_index, col_of[first])),
        shape=(positions.size, a.shape[1]),
    )
    return FillPlan(size=a.shape[0], positions=positions, map=fill_map)
