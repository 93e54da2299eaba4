"""Compiled kernel of :class:`mixedmodels.linalg.gather.LevelQuadraticForms` (numba).

Imported only when that class is built (importing numba takes ~0.3 s).
The loop computes, for every level ``s`` of a CSC matrix ``A`` (``q x l p``) whose ``p``
columns of a level share one row pattern ``i_1 < ... < i_k``,

.. math::

    Q_s = A_s' T A_s = \\sum_t T_{i_t i_t} a_t a_t'
        + \\sum_t \\left(a_t g_t' + g_t a_t'\\right), \\qquad
    g_t = \\sum_{u < t} T_{i_t i_u} a_u,

with ``a_t`` the ``p`` values of the level's entry ``t``: one read of the symmetric ``T``
per pair ``u <= t`` (the products the fill kernel adds, read instead of written).  As in the
fill kernel, each thread owns a range of rows of ``T`` (balanced by products) and walks it
in blocks that stay in its cache, with the levels taken a group at a time: reading a pair
costs about what adding it costs in the fill (the access pattern is the same).  Each
thread keeps its own partial ``Q_s``; they are added in thread order afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def quadratic_forms(  # noqa: PLR0912 - one compiled loop nest
    indptr, indices, data, p, t, range_edges, block_rows, group_levels, out
):  # pragma: no cover
    """``out[part, :, :, s]`` summed over ``part`` is ``A_s' T A_s``.

    The rows of ``T`` are split among threads: each thread owns a range of rows
    (``range_edges``) and walks it in blocks of ``block_rows`` that stay in its cache,
    taking the levels ``group_levels`` at a time (a cursor per level, as the fill
    kernel); entry ``t`` of a level is handled by the thread owning row ``i_t``.
    ``out``: ``(threads, p, p, l)`` zeros, one partial sum per thread (the caller adds
    them, in thread order).  ``indptr``/``indices`` must be a checked structure (rows
    below ``t.shape[0]``, one pattern per level): nothing is bounds-checked."""
    n_levels = (indptr.size - 1) // p
    n_ranges = range_edges.size - 1
    n_groups = (n_levels + group_levels - 1) // group_levels
    for part in prange(n_ranges):
        lo = range_edges[part]
        hi = range_edges[part + 1]
        if lo >= hi:
            continue
        acc = out[part]
        g = np.empty(p)
        cursor = np.empty(group_levels, dtype=np.int64)
        for grp in range(n_groups):
            g0 = grp * group_levels
            g1 = min(n_levels, g0 + group_levels)
            for s in range(g0, g1):
                first = indptr[s * p]
                k = indptr[s * p + 1] - first
                a_lo = first
                a_hi = first + k
                while a_lo < a_hi:
                    mid = (a_lo + a_hi) // 2
                    if indices[mid] < lo:
                        a_lo = mid + 1
                    else:
                        a_hi = mid
                cursor[s - g0] = a_lo - first
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
                    if p == 2:
                        b0 = indptr[2 * s]
                        b1 = indptr[2 * s + 1]
                        q00 = 0.0
                        q01 = 0.0
                        q11 = 0.0
                        for tt in range(t0, t1):
                            row = t[indices[first + tt]]
                            s0 = 0.0
                            s1 = 0.0
                            for u in range(tt):
                                v = row[indices[first + u]]
                                s0 += v * data[b0 + u]
                                s1 += v * data[b1 + u]
                            d = row[indices[first + tt]]
                            a0 = data[b0 + tt]
                            a1 = data[b1 + tt]
                            q00 += d * a0 * a0 + 2.0 * a0 * s0
                            q01 += d * a0 * a1 + a0 * s1 + s0 * a1
                            q11 += d * a1 * a1 + 2.0 * a1 * s1
                        acc[0, 0, s] += q00
                        acc[0, 1, s] += q01
                        acc[1, 0, s] += q01
                        acc[1, 1, s] += q11
                        continue
                    for tt in range(t0, t1):
                        row = t[indices[first + tt]]
                        for c in range(p):
                            g[c] = 0.0
                        for u in range(tt):
                            v = row[indices[first + u]]
                            for c in range(p):
                                g[c] += v * data[indptr[s * p + c] + u]
                        d = row[indices[first + tt]]
                        for a in range(p):
                            wa = data[indptr[s * p + a] + tt]
                            for b in range(p):
                                wb = data[indptr[s * p + b] + tt]
                                acc[a, b, s] += d * wa * wb + wa * g[b] + g[a] * wb
                block_lo = block_hi
