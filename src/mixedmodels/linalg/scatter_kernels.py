"""Compiled kernels of :class:`mixedmodels.linalg.fillin.ScatterFill` (numba).

Imported only when that kernel is built: importing numba takes ~0.3 s, which a fit that
never needs it should not pay.  Every function here is plain loops over numpy arrays, so
its semantics are those of the numpy reference in the docstring of the caller.

The fill of the dense block is

.. math::

    F_{ij} = \\sum_s \\sum_c W_{sic} W_{sjc}, \\qquad W_s = A_s r_s,

summed over the levels ``s`` whose panel has both rows ``i`` and ``j``.  Each thread owns
a contiguous range of rows of ``F`` (balanced by the number of products) and walks it in
blocks of rows that stay in its cache; for every block it visits each level once,
continuing where the previous block stopped (a cursor per level), and forms that level's
``W`` rows on the fly (``p x p`` multiply-adds per entry), so no ``W`` the size of ``A`` is
ever stored.  Rows of different threads never meet: no atomics and no reduction.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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
def scatter_lower(starts, rows, values, r, scale, range_edges, block_rows, out):  # pragma: no cover
    """Add ``scale F`` to the lower triangle of ``out`` (``(q, q)``, C order).

    Parameters
    ----------
    starts : int64 (l + 1,)
        Level ``s`` holds entries ``starts[s]:starts[s + 1]``.
    rows : int32 or int64 (entries,)
        Row of ``A`` of each entry, strictly increasing within a level.
    values : float64 (entries, p)
        ``A``'s values of each entry.
    r : float64 (p, p, l)
        ``M_s = r_s r_s'``.
    range_edges : int64 (threads + 1,)
        The rows of ``F`` each thread owns.
    block_rows : int
        Rows per cache block.
    """
    n_levels = starts.size - 1
    p = values.shape[1]
    n_ranges = range_edges.size - 1
    kmax = 0
    for s in range(n_levels):
        kmax = max(kmax, starts[s + 1] - starts[s])
    for part in prange(n_ranges):
        lo = range_edges[part]
        hi_range = range_edges[part + 1]
        if lo >= hi_range:
            continue
        cursor = np.empty(n_levels, dtype=np.int64)
        for s in range(n_levels):
            cursor[s] = _first_at_or_after(rows, starts[s], starts[s + 1], lo)
        w = np.empty((kmax, p))
        block_lo = lo
        while block_lo < hi_range:
            block_hi = min(block_lo + block_rows, hi_range)
            for s in range(n_levels):
                t0 = cursor[s]
                end = starts[s + 1]
                if t0 >= end or rows[t0] >= block_hi:
                    continue
                t1 = t0
                while t1 < end and rows[t1] < block_hi:
                    t1 += 1
                cursor[s] = t1
                first = starts[s]
                # W's rows of this level up to the block's last entry: values times r_s
                for u in range(first, t1):
                    for c in range(p):
                        acc = 0.0
                        for a in range(p):
                            acc += values[u, a] * r[a, c, s]
                        w[u - first, c] = acc
                if p == 1:
                    for t in range(t0, t1):
                        row = out[rows[t]]
                        wt = w[t - first, 0] * scale
                        for u in range(first, t + 1):
                            row[rows[u]] += wt * w[u - first, 0]
                elif p == 2:
                    for t in range(t0, t1):
                        row = out[rows[t]]
                        w0 = w[t - first, 0] * scale
                        w1 = w[t - first, 1] * scale
                        for u in range(first, t + 1):
                            row[rows[u]] += w0 * w[u - first, 0] + w1 * w[u - first, 1]
                else:
                    for t in range(t0, t1):
                        row = out[rows[t]]
                        for u in range(first, t + 1):
                            acc = 0.0
                            for c in range(p):
                                acc += w[t - first, c] * w[u - first, c]
                            row[rows[u]] += scale * acc
            block_lo = block_hi


@njit(cache=True, boundscheck=False, nogil=True)
def products_per_row(starts, rows, n_rows):  # pragma: no cover - compiled
    """Products ``(i, j <= i)`` of each row ``i`` of ``F`` (the work of that row)."""
    out = np.zeros(n_rows, dtype=np.int64)
    for s in range(starts.size - 1):
        first = starts[s]
        for t in range(first, starts[s + 1]):
            out[rows[t]] += t - first + 1
    return out
