"""Per-level quadratic forms ``A_s' T A_s`` of a dense symmetric ``T``: the fill read back.

The crossed path's fill adds ``A_s M_s A_s'`` over the levels ``s`` of the eliminated
term into a dense ``q x q`` block.  Its derivative in theta needs the transpose operation:
for a dense symmetric ``T`` (``q x q``), the ``p x p`` matrices

.. math::

    Q_s = A_s' T A_s, \\qquad s = 1, \\dots, l,

which read ``T`` at the same pairs of rows the fill writes.  :class:`LevelQuadraticForms`
checks ``A``'s structure once and computes them by the compiled kernel
(:mod:`mixedmodels.linalg.gather_kernels`, numba) when numba loads, else by sparse
products over chunks of levels (``q`` times the entries of a chunk per chunk).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mixedmodels.errors import ArgumentError
from mixedmodels.linalg.fillin import (
    _SCATTER_LOCK,
    balanced_edges,
    scatter_kernels,
    scatter_threads,
)

# the sparse fallback forms T A for this many entries of A at a time (q x entries doubles)
FALLBACK_CHUNK_BYTES = 2**27
# the compiled kernel's blocks of T's rows (bytes, kept in a core's 1 MB L2 cache) and levels
# per group (measured on 100,000 levels x 100 entries into 2,000 rows, p = 2, with the
# machine shared: 65 rows and 1,024 levels 2.2 ns per pair, 32 rows 3.1, 16 rows 3.3-4.1)
GATHER_BLOCK_BYTES = 2**20
GATHER_GROUP_LEVELS = 1024


def _gather_kernels():
    """The compiled module, or None when numba is missing or fails to load (the fill's
    loader reports such a failure once; the same numba is behind both)."""
    if scatter_kernels() is None:
        return None
    from mixedmodels.linalg import gather_kernels

    return gather_kernels


class LevelQuadraticForms:
    """``Q_s = A_s' T A_s`` for every level of ``A``.

    Parameters
    ----------
    a : scipy.sparse matrix, shape (q, l p)
        CSR or CSC; the ``p`` columns of a level share one row pattern (the crossed
        path's ``A = Z_R' W Z_0``).  A CSC matrix is read in place; others are converted
        once.
    p : int
        Columns per level.
    """

    def __init__(self, a: sp.spmatrix, p: int) -> None:
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
            raise ArgumentError(f"p must be a positive integer, not {p!r}")
        if a.shape[1] % p:
            raise ArgumentError(f"A has {a.shape[1]} columns: not {p} columns per level")
        csc = a if (sp.isspmatrix_csc(a) or isinstance(a, sp.csc_array)) else a.tocsc()
        if csc is a and not a.has_canonical_format:
            csc = a.copy()
        csc.sum_duplicates()
        self.a = csc
        self.p = int(p)
        self.q = csc.shape[0]
        self.n_levels = csc.shape[1] // p
        self._kernels = _gather_kernels()
        if self._kernels is not None:
            code = scatter_kernels().structure_error(csc.indptr, csc.indices, self.q, self.p)
            if code:  # not one row pattern per level: the sparse products handle any
                self._kernels = None
        if self._kernels is not None:
            work = scatter_kernels().products_per_row(csc.indptr, csc.indices, self.p, self.q)
            self._edges = balanced_edges(work, scatter_threads(int(work.sum())))
            self._block_rows = max(8, GATHER_BLOCK_BYTES // (8 * max(self.q, 1)))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """``(p, p, l)``: ``A_s' T A_s`` for the symmetric ``t`` (``q x q``, both
        triangles filled)."""
        if np.shape(t) != (self.q, self.q):
            raise ArgumentError(f"T must be {self.q} x {self.q}, not {np.shape(t)}")
        t = np.ascontiguousarray(t, dtype=np.float64)
        if self._kernels is not None:
            a = self.a
            parts = np.zeros((self._edges.size - 1, self.p, self.p, self.n_levels))
            # one parallel launch at a time in the process: numba's workqueue pool aborts
            # when two threads launch at once (the fill kernel takes the same lock)
            with _SCATTER_LOCK:
                self._kernels.quadratic_forms(
                    a.indptr, a.indices, a.data, self.p, t, self._edges, self._block_rows,
                    GATHER_GROUP_LEVELS, parts,
                )
            return parts.sum(axis=0)
        return self._sparse(t, np.zeros((self.p, self.p, self.n_levels)))

    def _sparse(self, t: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Chunks of levels: ``(T A_c)`` densely, then the column pairs of each level."""
        a, p = self.a, self.p
        per_chunk = max(1, FALLBACK_CHUNK_BYTES // (8 * max(self.q, 1) * p))
        for lo in range(0, self.n_levels, per_chunk):
            hi = min(self.n_levels, lo + per_chunk)
            block = a[:, lo * p : hi * p]
            ta = np.asarray((block.T @ t).T)  # T A_c: (q, (hi - lo) p)
            for c in range(p):
                left = block[:, c::p]
                for d in range(p):
                    prod = left.multiply(ta[:, d::p])
                    out[c, d, lo:hi] = np.asarray(prod.sum(axis=0)).ravel()
        return out
