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

from mixedmodels.linalg.scatter_kernels import (
    PREFETCH_LINES_PER_PAIR,
    _level_window,
    _pairs_by_row,
    _prefetch,
    _prefetch_l2,
)


@njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def quadratic_forms(  # noqa: PLR0912, PLR0915 - one compiled loop nest
    indptr, indices, data, p, t, range_edges, group_edges, out
):  # pragma: no cover
    """``out[part, :, :, s]`` summed over ``part`` is ``A_s' T A_s``.

    Each thread owns the rows ``range_edges[part] .. range_edges[part + 1] - 1`` of ``T``
    and takes the levels a group at a time (``group_edges``): it copies the group's
    values and rows that its rows reach (a level's entries up to its last one in the
    thread's rows) into buffers, counting-sorts the entries in its rows by row (stable:
    levels in order within a row), then walks its rows once, reading each row of ``T``
    for all of the group's entries there while it sits in the first-level cache.  A
    level's entries are summed in the order of their rows, whatever the groups.
    ``out``: ``(threads, p, p, l)`` zeros.  ``indptr``/``indices`` must be a checked
    structure (rows below ``t.shape[0]``, one pattern per level): nothing is
    bounds-checked.
    """
    n_groups = group_edges.size - 1
    n_ranges = range_edges.size - 1
    n_rows = t.shape[0]
    most = 1
    most_levels = 1
    for g in range(n_groups):
        g0 = group_edges[g]
        g1 = group_edges[g + 1]
        most = max(most, indptr[g1 * p] - indptr[g0 * p])
        most_levels = max(most_levels, g1 - g0)
    most = most // p + 1
    for part in prange(n_ranges):
        lo = range_edges[part]
        hi = range_edges[part + 1]
        if lo >= hi:
            continue
        acc = out[part]
        values = np.empty((p, most))
        rows = np.empty(most, dtype=np.uint32)
        pair_first = np.empty(most, dtype=np.int64)
        pair_last = np.empty(most, dtype=np.int64)
        pair_level = np.empty(most, dtype=np.int64)
        level_lo = np.empty(most_levels, dtype=np.int64)
        level_hi = np.empty(most_levels, dtype=np.int64)
        level_at = np.empty(most_levels, dtype=np.int64)
        bucket = np.empty(hi - lo + 1, dtype=np.int64)
        g_sum = np.empty(p)
        for g in range(n_groups):
            g0 = group_edges[g]
            g1 = group_edges[g + 1]
            at = 0
            for s in range(g0, g1):
                first, e0, e1 = _level_window(indptr, indices, s, p, lo, hi, n_rows)
                level_lo[s - g0] = e0 - first
                level_hi[s - g0] = e1 - first
                level_at[s - g0] = at
                for u in range(e1 - first):
                    rows[at + u] = indices[first + u]
                for c in range(p):
                    base = indptr[s * p + c]
                    for u in range(e1 - first):
                        values[c, at + u] = data[base + u]
                at += e1 - first
            n_pairs = _pairs_by_row(
                rows, level_lo, level_hi, level_at, g0, g1 - g0, lo, hi, bucket,
                pair_first, pair_last, pair_level,
            )
            begin = 0
            for i in range(hi - lo):
                end = bucket[i]
                if end == begin:
                    continue
                row = t[lo + i]
                # the next row's lower triangle into the second-level cache, a few lines per
                # pair (as the fill kernel), and the next pair's first lines of its entries
                next_row = min(lo + i + 1, hi - 1)
                ahead_row = t[next_row]
                line = 0
                for pair in range(begin, end):
                    for _ in range(PREFETCH_LINES_PER_PAIR):
                        if line <= next_row:
                            _prefetch_l2(ahead_row, line)
                            line += 8
                    ahead = min(pair + 1, n_pairs - 1)
                    first_ahead = pair_first[ahead]
                    _prefetch(rows, first_ahead)
                    _prefetch(values[0], first_ahead)
                    if p > 1:
                        _prefetch(values[1], first_ahead)
                    u0 = pair_first[pair]
                    e = pair_last[pair]
                    s = pair_level[pair]
                    d = row[lo + i]
                    if p == 2:
                        s0 = 0.0
                        s1 = 0.0
                        for u in range(u0, e):
                            v = row[rows[u]]
                            s0 += v * values[0, u]
                            s1 += v * values[1, u]
                        a0 = values[0, e]
                        a1 = values[1, e]
                        acc[0, 0, s] += d * a0 * a0 + 2.0 * a0 * s0
                        cross = d * a0 * a1 + a0 * s1 + s0 * a1
                        acc[0, 1, s] += cross
                        acc[1, 0, s] += cross
                        acc[1, 1, s] += d * a1 * a1 + 2.0 * a1 * s1
                    elif p == 1:
                        s0 = 0.0
                        for u in range(u0, e):
                            s0 += row[rows[u]] * values[0, u]
                        a0 = values[0, e]
                        acc[0, 0, s] += d * a0 * a0 + 2.0 * a0 * s0
                    else:
                        for c in range(p):
                            g_sum[c] = 0.0
                        for u in range(u0, e):
                            v = row[rows[u]]
                            for c in range(p):
                                g_sum[c] += v * values[c, u]
                        for a in range(p):
                            wa = values[a, e]
                            for b in range(p):
                                wb = values[b, e]
                                acc[a, b, s] += d * wa * wb + wa * g_sum[b] + g_sum[a] * wb
                begin = end
