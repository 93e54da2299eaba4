"""Compiled kernels of :class:`mixedmodels.linalg.fillin.ScatterFill` (numba).

Imported only when that kernel is built: importing numba takes ~0.3 s, which a fit that
never needs it should not pay.  Every function here is plain loops over numpy arrays, so
its semantics are those of the numpy reference in the docstring of the caller.

The fill of the dense block is

.. math::

    F_{ij} = \\sum_s \\sum_c W_{sic} W_{sjc}, \\qquad W_s = A_s r_s,

summed over the levels ``s`` whose panel has both rows ``i`` and ``j``.  ``A`` is read
where it is, as the CSC matrix the Gram holds: nothing is copied.  Each thread owns
a contiguous range of rows of ``F`` (balanced by the number of products) and walks it in
blocks of rows that stay in its cache; for every block it visits each level once,
continuing where the previous block stopped (a cursor per level), and forms that level's
``W`` rows on the fly (``p x p`` multiply-adds per entry), so no ``W`` the size of ``A`` is
ever stored.  Rows of different threads never meet: no atomics and no reduction.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

# numba picks its thread pool at the first parallel launch: TBB, else OpenMP, else its
# own workqueue.  GNU OpenMP kills a child forked after it ran ("fork() called from a
# process already using GNU OpenMP"; a fit followed by multiprocessing's fork), so unless
# the user chose a layer, ask for a fork-safe one (TBB, or workqueue on Linux)
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "forksafe"


@njit(cache=True, boundscheck=False, nogil=True)
def _first_at_or_after(rows, lo, hi, row):  # pragma: no cover - compiled
    """First position in ``rows[lo:hi]`` (sorted) whose value is ``>= row``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if rows[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def scatter_lower(  # noqa: PLR0912, PLR0915 - one compiled loop nest
    indptr, indices, data, p, r, scale, range_edges, block_rows, group_levels, out
):  # pragma: no cover - compiled
    """Add ``scale F`` to the lower triangle of ``out`` (``(q, q)``, C order).

    Each thread takes the levels ``group_levels`` at a time: it forms their ``W`` rows once
    into a buffer, then walks its rows of ``F`` in blocks of ``block_rows`` (a block of
    ``F`` that stays in the core's own cache), adding each level's products whose row
    falls in the block.  Cache misses in ``F`` cost more than revisiting a group's levels
    once per block.

    Parameters
    ----------
    indptr, indices, data
        ``A`` (``q x l p``) as a canonical CSC matrix (sorted rows, no duplicates) whose
        ``p`` columns of each level share one row pattern: level ``s``'s entry ``t`` is
        row ``indices[indptr[s p] + t]``, with the value ``data[indptr[s p + c] + t]`` in
        its column ``c``.
    p : int
        Columns per level.
    r : float64 (p, p, l)
        ``M_s = r_s r_s'``.
    range_edges : int64 (threads + 1,)
        The rows of ``F`` each thread owns.
    block_rows : int
        Rows of ``F`` per cache block.
    group_levels : int
        Levels whose ``W`` rows are formed together.
    """
    n_levels = (indptr.size - 1) // p
    n_ranges = range_edges.size - 1
    n_groups = (n_levels + group_levels - 1) // group_levels
    most = 0  # entries of the largest group
    for g in range(n_groups):
        g0 = g * group_levels
        g1 = min(n_levels, g0 + group_levels)
        size = 0
        for s in range(g0, g1):
            size += indptr[s * p + 1] - indptr[s * p]
        most = max(most, size)
    for part in prange(n_ranges):
        lo = range_edges[part]
        hi = range_edges[part + 1]
        if lo >= hi:
            continue
        w = np.empty((most, p))
        start = np.empty(group_levels + 1, dtype=np.int64)  # a level's first row of w
        cursor = np.empty(group_levels, dtype=np.int64)  # next entry of a level (local)
        for g in range(n_groups):
            g0 = g * group_levels
            g1 = min(n_levels, g0 + group_levels)
            at = 0
            for s in range(g0, g1):
                first = indptr[s * p]
                k = indptr[s * p + 1] - first
                start[s - g0] = at
                # W's rows of this level: values times r_s
                for u in range(k):
                    for c in range(p):
                        acc = 0.0
                        for a in range(p):
                            acc += data[indptr[s * p + a] + u] * r[a, c, s]
                        w[at + u, c] = acc
                at += k
                cursor[s - g0] = _first_at_or_after(indices, first, first + k, lo) - first
            start[g1 - g0] = at
            block_lo = lo
            while block_lo < hi:
                block_hi = min(block_lo + block_rows, hi)
                for s in range(g0, g1):
                    first = indptr[s * p]
                    k = indptr[s * p + 1] - first
                    t0 = cursor[s - g0]
                    if t0 >= k or indices[first + t0] >= block_hi:
                        continue
                    t1 = t0
                    while t1 < k and indices[first + t1] < block_hi:
                        t1 += 1
                    cursor[s - g0] = t1
                    base = start[s - g0]
                    if p == 1:
                        for t in range(t0, t1):
                            row = out[indices[first + t]]
                            wt = w[base + t, 0] * scale
                            for u in range(t + 1):
                                row[indices[first + u]] += wt * w[base + u, 0]
                    elif p == 2:
                        for t in range(t0, t1):
                            row = out[indices[first + t]]
                            w0 = w[base + t, 0] * scale
                            w1 = w[base + t, 1] * scale
                            for u in range(t + 1):
                                row[indices[first + u]] += (
                                    w0 * w[base + u, 0] + w1 * w[base + u, 1]
                                )
                    else:
                        for t in range(t0, t1):
                            row = out[indices[first + t]]
                            for u in range(t + 1):
                                acc = 0.0
                                for c in range(p):
                                    acc += w[base + t, c] * w[base + u, c]
                                row[indices[first + u]] += scale * acc
                block_lo = block_hi


# what structure_error finds (0: none); ScatterFill's message for each code
STRUCTURE_ERRORS = {
    1: "its column pointers do not start at 0, decrease or point past its row indices",
    2: "a row index is outside 0 .. rows - 1",
    3: "the row indices of a column are not strictly increasing (unsorted or duplicated)",
    4: "the columns of one level do not share one row pattern",
}


@njit(cache=True, boundscheck=False, nogil=True)
def structure_error(indptr, indices, n_rows, p):  # pragma: no cover - compiled
    """0 when ``indptr, indices`` (``(indptr.size - 1)`` columns, a multiple of ``p``) is
    a canonical CSC structure of ``n_rows`` rows whose ``p`` columns of every level have
    the same rows: everything :func:`scatter_lower` indexes without bounds checks.
    Otherwise the code of the first violation (:data:`STRUCTURE_ERRORS`).  The pointers
    are checked before any row index is read, so the check itself stays in bounds."""
    n_cols = indptr.size - 1
    if indptr[0] != 0 or indptr[n_cols] > indices.size:
        return 1
    for j in range(n_cols):
        if indptr[j + 1] < indptr[j]:
            return 1
    for j in range(n_cols):
        lo = indptr[j]
        hi = indptr[j + 1]
        for t in range(lo, hi):
            if indices[t] < 0 or indices[t] >= n_rows:
                return 2
            if t > lo and indices[t] <= indices[t - 1]:
                return 3
    for s in range(n_cols // p):
        first = indptr[s * p]
        k = indptr[s * p + 1] - first
        for c in range(1, p):
            base = indptr[s * p + c]
            if indptr[s * p + c + 1] - base != k:
                return 4
            for t in range(k):
                if indices[base + t] != indices[first + t]:
                    return 4
    return 0


@njit(cache=True, boundscheck=False, nogil=True)
def products_per_row(indptr, indices, p, n_rows):  # pragma: no cover - compiled
    """Products ``(i, j <= i)`` of each row ``i`` of ``F`` (the work of that row)."""
    out = np.zeros(n_rows, dtype=np.int64)
    for s in range((indptr.size - 1) // p):
        first = indptr[s * p]
        for t in range(indptr[s * p + 1] - first):
            out[indices[first + t]] += t + 1
    return out
