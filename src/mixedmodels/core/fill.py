"""Precomputed fill-in of a dense diagonal block from the first (diagonal) block.

For scalar terms ``j`` (first, ``p = 1``, block-diagonal factor) and ``k`` (dense), the
update ``L[k,0] L[k,0]'`` equals ``(theta_k theta_0)^2 A D A'`` with ``A = Z_k'WZ_0`` and
``D = diag(1 / L[0,0]^2)``: its lower triangle is a fixed linear map of ``D``.  We store
that map as (target position, source column, coefficient) triples once, so each theta
costs one ``bincount`` instead of a sparse matrix product and a densification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MAX_TRIPLES = 30_000_000


@dataclass(frozen=True)
class FillPlan:
    """Triples giving the lower triangle of ``A diag(w) A'`` as ``bincount`` input."""

    size: int
    target: np.ndarray  # flat index i * size + j, i >= j
    source: np.ndarray  # column of A
    coefficient: np.ndarray  # A[i, s] * A[j, s]

    def lower_product(self, w: np.ndarray) -> np.ndarray:
        """Dense matrix whose lower triangle is that of ``A diag(w) A'``."""
        flat = np.bincount(
            self.target, weights=self.coefficient * w[self.source], minlength=self.size**2
        )
        return flat.reshape(self.size, self.size)


def make_fill_plan(a: sp.csr_matrix) -> FillPlan | None:
    """The triples for ``A diag(w) A'``; None when there would be too many."""
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
    order = np.argsort(target, kind="stable")  # sorted targets: bincount runs 2x faster
    return FillPlan(
        size=a.shape[0],
        target=target[order],
        source=col_of[first][order],
        coefficient=(csc.data[first] * csc.data[second])[order],
    )
