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
from mixedmodels.linalg.optional_kernels import clear_stale_cache

# the sparse fallback forms T A for this many entries of A at a time (q x entries doubles)
FALLBACK_CHUNK_BYTES = 2**27
# the compiled kernel copies a group of levels' values and rows (about this many bytes)
# before it walks its rows of T once for them
GATHER_GROUP_BYTES = 2**21


def _gather_kernels():
    """The compiled module, or None when numba is missing or fails to load (the fill's
    loader reports such a failure once; the same numba is behind both)."""
    if scatter_kernels() is None:
        return None
    # (its kernels call scatter_kernels': numba's cache of them does not see an edit there)
    clear_stale_cache("mixedmodels.linalg.gather_kernels")
    from mixedmodels.linalg import gather_kernels

    return gather_kernels


def level_groups_by_bytes(indptr: np.ndarray, p: int, group_bytes: int) -> np.ndarray:
    """Edges of consecutive groups of levels whose entries (``p`` values and a row each)
    take about ``group_bytes``; every group has at least one level."""
    n_levels = (indptr.size - 1) // p
    starts = np.asarray(indptr[::p], dtype=np.int64)  # p x (entries before each level)
    step = p * max(1, group_bytes // (8 * p + 4))  # a group's entries, in indptr's units
    edges = [0]
    while edges[-1] < n_levels:
        start = edges[-1]
        target = starts[start] + step
        stop = int(np.searchsorted(starts, target, side="right")) - 1
        edges.append(min(n_levels, max(stop, start + 1)))
    return np.asarray(edges, dtype=np.int64)


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
    follow_values : bool, optional
        ``a``'s values may change in place between calls (its structure may not): each
        call reads them again.  When ``a`` is not canonical CSC, its values reach the
        kernel's CSC copy through the order of the conversion, found once by converting
        the entries' positions (``O(entries)`` per call); where duplicate entries leave no
        one-to-one order, each call converts ``a`` again.
    """

    def __init__(self, a: sp.spmatrix, p: int, *, follow_values: bool = False) -> None:
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
            raise ArgumentError(f"p must be a positive integer, not {p!r}")
        if a.shape[1] % p:
            raise ArgumentError(f"A has {a.shape[1]} columns: not {p} columns per level")
        csc = a if (sp.isspmatrix_csc(a) or isinstance(a, sp.csc_array)) else a.tocsc()
        if csc is a and not a.has_canonical_format:
            csc = a.copy()
        csc.sum_duplicates()
        self.a = csc
        self._source = a if (follow_values and csc is not a) else None
        self._order = self._conversion_order(a, csc) if self._source is not None else None
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
            self._groups = level_groups_by_bytes(csc.indptr, self.p, GATHER_GROUP_BYTES)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """``(p, p, l)``: ``A_s' T A_s`` for the symmetric ``t`` (``q x q``, both
        triangles filled)."""
        if np.shape(t) != (self.q, self.q):
            raise ArgumentError(f"T must be {self.q} x {self.q}, not {np.shape(t)}")
        t = np.ascontiguousarray(t, dtype=np.float64)
        self._read_values()
        if self._kernels is not None:
            a = self.a
            parts = np.zeros((self._edges.size - 1, self.p, self.p, self.n_levels))
            # one parallel launch at a time in the process: numba's workqueue pool aborts
            # when two threads launch at once (the fill kernel takes the same lock)
            with _SCATTER_LOCK:
                self._kernels.quadratic_forms(
                    a.indptr, a.indices, a.data, self.p, t, self._edges, self._groups, parts
                )
            return parts.sum(axis=0)
        return self._sparse(t, np.zeros((self.p, self.p, self.n_levels)))

    @staticmethod
    def _conversion_order(a: sp.spmatrix, csc: sp.spmatrix) -> np.ndarray | None:
        """Positions in ``a.data`` of ``csc.data``'s values (``csc`` canonical, made from
        ``a``), or None when duplicate entries were summed."""
        tags = a.copy()
        tags.data = np.arange(a.nnz, dtype=float)
        tags = tags.tocsc()
        tags.sum_duplicates()
        if tags.nnz != a.nnz or not np.array_equal(tags.indices, csc.indices):
            return None
        return tags.data.astype(np.int64)

    def _read_values(self) -> None:
        """The source's current values into the CSC copy (``follow_values`` only)."""
        if self._source is None:
            return
        if self._order is not None:
            self.a.data[:] = self._source.data[self._order]
            return
        csc = self._source.tocsc()
        csc.sum_duplicates()
        self.a.data[:] = csc.data

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
