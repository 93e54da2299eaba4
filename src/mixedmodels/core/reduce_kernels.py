"""Compiled kernels of :mod:`mixedmodels.core.reduce` (numba): a chunk's per-level sums and
its ``Z_j' W Z_k`` piece, one pass over the rows each.

Imported only through :func:`mixedmodels.core.reduce.reduce_kernels` (numba is optional and
its import costs ~0.3 s).  The semantics are those of the numpy code in
:mod:`mixedmodels.core.reduce` (``_PerLevelSums``, ``_cross_piece``), which stays as the
fallback: every sum adds the same products (``(a b) w``) in the same order (the rows' order
within a level or a pair), so both give the same numbers bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, boundscheck=False, nogil=True)
def level_sums(
    codes, first, z, columns, weights, has_weights, diagonal, xy
):  # pragma: no cover - compiled
    """Add a chunk's per-level sums into ``diagonal`` and ``xy`` (zeroed by the caller).

    Parameters
    ----------
    codes : int64 (n,)
        Level of every row (``first .. first + span - 1``).
    z : float64 (n, p)
        The term's columns.
    columns : float64 (m, n)
        ``[X y]`` column by column.
    weights : float64 (n,) (ignored unless ``has_weights``)
    diagonal : float64 (p, p, span)
        ``sum w z_a z_c`` per level (both triangles written).
    xy : float64 (m, p, span)
        ``sum w column_i z_c`` per level.
    """
    n, p = z.shape
    m = columns.shape[0]
    for r in range(n):
        s = codes[r] - first
        w = weights[r] if has_weights else 1.0
        for a in range(p):
            za = z[r, a]
            for c in range(a, p):
                v = za * z[r, c]
                if has_weights:
                    v = v * w
                diagonal[a, c, s] += v
        for i in range(m):
            ci = columns[i, r]
            for c in range(p):
                v = ci * z[r, c]
                if has_weights:
                    v = v * w
                xy[i, c, s] += v
    for a in range(p):
        for c in range(a + 1, p):
            for s in range(diagonal.shape[2]):
                diagonal[c, a, s] = diagonal[a, c, s]


@njit(cache=True, boundscheck=False, nogil=True)
def cross_counts(codes_j, codes_k, lo, span, n_levels_j):  # pragma: no cover - compiled
    """The rows in (level of k, level of j) order, stable (two counting sorts, least
    significant first; none when the rows are in that order already), where each local
    level of k's rows start (``span + 1`` edges), and the number of distinct levels of j
    among each level of k's rows."""
    n = codes_k.size
    edges = np.zeros(span + 1, dtype=np.int64)
    ordered = True
    for r in range(n):
        edges[codes_k[r] - lo + 1] += 1
        if r and (
            codes_k[r] < codes_k[r - 1]
            or (codes_k[r] == codes_k[r - 1] and codes_j[r] < codes_j[r - 1])
        ):
            ordered = False
    for s in range(span):
        edges[s + 1] += edges[s]
    order = np.empty(n, dtype=np.int32)
    if ordered:
        for r in range(n):
            order[r] = r
    else:
        fill_j = np.zeros(n_levels_j + 1, dtype=np.int64)
        for r in range(n):
            fill_j[codes_j[r] + 1] += 1
        for j in range(n_levels_j):
            fill_j[j + 1] += fill_j[j]
        by_j = np.empty(n, dtype=np.int32)
        for r in range(n):
            j = codes_j[r]
            by_j[fill_j[j]] = r
            fill_j[j] += 1
        fill = edges[:-1].copy()
        for t in range(n):
            r = by_j[t]
            s = codes_k[r] - lo
            order[fill[s]] = r
            fill[s] += 1
    pairs = np.zeros(span, dtype=np.int64)
    for s in range(span):
        count = 0
        last = -1
        for t in range(edges[s], edges[s + 1]):
            j = codes_j[order[t]]
            if j != last:
                count += 1
                last = j
        pairs[s] = count
    return order, edges, pairs


@njit(cache=True, boundscheck=False, nogil=True)
def cross_fill(
    codes_j, order, edges, zj, zk, weights, has_weights, indptr, indices, data
):  # pragma: no cover - compiled
    """Fill a chunk's ``Z_j' W Z_k`` piece from :func:`cross_counts`: CSC column ``(s, b)``
    (local level ``s`` of k, its column ``b``) holds rows ``(level of j, a)`` of the pairs
    of level ``s``, levels of j ascending, each ``sum w zj_a zk_b`` over the pair's rows
    (in their order).  ``indptr`` is the piece's column pointer; ``indices`` and ``data``
    are written in full."""
    pj = zj.shape[1]
    pk = zk.shape[1]
    span = edges.size - 1
    for s in range(span):
        u = -1  # the level's pair being summed
        last = -1
        for t in range(edges[s], edges[s + 1]):
            r = order[t]
            j = codes_j[r]
            if j != last:
                u += 1
                last = j
                for b in range(pk):
                    base = indptr[s * pk + b] + u * pj
                    for a in range(pj):
                        indices[base + a] = j * pj + a
                        data[base + a] = 0.0
            for b in range(pk):
                base = indptr[s * pk + b] + u * pj
                for a in range(pj):
                    v = zj[r, a] * zk[r, b]
                    if has_weights:
                        v = v * weights[r]
                    data[base + a] += v
