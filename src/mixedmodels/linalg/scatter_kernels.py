"""Compiled kernels of :class:`mixedmodels.linalg.fillin.ScatterFill` (numba).

Imported only when that kernel is built: importing numba takes ~0.3 s, which a fit that
never needs it should not pay.  Every function here is plain loops over numpy arrays, so
its semantics are those of the numpy reference in the docstring of the caller.

The fill of the dense block is

.. math::

    F_{ij} = \\sum_s \\sum_c W_{sic} W_{sjc}, \\qquad W_s = A_s r_s,

summed over the levels ``s`` whose panel has both rows ``i`` and ``j``.  ``A`` is read
where it is, as the CSC matrix the Gram holds: nothing the size of ``A`` is copied.  Each
thread owns a contiguous range of rows of ``F`` (balanced by the number of products) and
takes the levels a group at a time (consecutive levels, a few MB of ``W``): it forms the
group's ``W`` rows into a buffer, sorts the group's entries that fall in its rows by the
row of ``F`` they land in (a counting sort), then walks its rows of ``F`` once, adding to
each row, while it sits in the core's first-level cache, the products of every level of
the group that has an entry there.  Rows of different threads never meet: no atomics and
no reduction.

Order of the sums: each entry ``F_ij`` receives at most one product per level, and the
products are added in the order of the levels (the columns of ``A``), whatever the number
of threads or the size of the groups; so the result is bitwise the same for every split.
Each product is ``(scale W_si) . W_sj`` for p <= 3 (the p terms written out) and
``scale (W_si . W_sj)`` above, as in the kernel's earlier versions, which walked the
levels in order too: the same F bitwise, but for p = 3 with a scale other than 1.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# numba picks its thread pool at the first parallel launch: TBB, else OpenMP, else its
# own workqueue.  GNU OpenMP kills a child forked after it ran ("fork() called from a
# process already using GNU OpenMP"; a fit followed by multiprocessing's fork), so unless
# the user chose a layer, ask for a fork-safe one (TBB, or workqueue on Linux)
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "forksafe"


# lines of the next row of F prefetched per pair of the current row (measured: 3 into
# the first-level cache or 6 into the second, 1.5 ns per product against 1.8 without;
# the whole row at once, 2.0)
PREFETCH_LINES_PER_PAIR = 6


def _prefetch_codegen(locality):
    """Code of a call of ``llvm.prefetch`` (read, data cache) of ``array[index]`` kept in
    the caches down to ``locality`` (3: all levels, 2: from the second level on)."""

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        at = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, view, [at], wraparound=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = builder.module.declare_intrinsic(
            "llvm.prefetch",
            [byte_pointer],
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
        )
        arguments = [builder.bitcast(pointer, byte_pointer), i32(0), i32(locality), i32(1)]
        builder.call(function, arguments)
        return context.get_dummy_value()

    return codegen


@intrinsic
def _prefetch(typingctx, array, index):  # pragma: no cover - compiled
    """Ask the CPU to bring ``array[index]`` into all its caches (``llvm.prefetch``: a
    hint, never a fault, so ``index`` needs no bounds; the kernel passes valid ones)."""
    return types.void(array, index), _prefetch_codegen(3)


@intrinsic
def _prefetch_l2(typingctx, array, index):  # pragma: no cover - compiled
    """As :func:`_prefetch`, into the second-level cache (not the first)."""
    return types.void(array, index), _prefetch_codegen(2)


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


@njit(cache=True, boundscheck=False, nogil=True)
def _level_window(indptr, indices, s, p, lo, hi, n_rows):  # pragma: no cover - compiled
    """``(first, e0, e1)``: level ``s``'s entries start at ``indices[first]``; those in
    the rows ``lo .. hi - 1`` are ``e0 .. e1 - 1`` (rows are sorted within a level)."""
    first = indptr[s * p]
    k = indptr[s * p + 1] - first
    e0 = first if lo == 0 else _first_at_or_after(indices, first, first + k, lo)
    e1 = first + k if hi == n_rows else _first_at_or_after(indices, e0, first + k, hi)
    return first, e0, e1


@njit(cache=True, boundscheck=False, nogil=True)
def _pairs_by_row(  # noqa: PLR0913 - the buffers of a compiled loop
    rows, level_lo, level_hi, level_at, g0, n_levels, lo, hi, bucket, pair_first, pair_last,
    pair_level,
):  # pragma: no cover - compiled
    """Counting sort of a group's entries in the rows ``lo .. hi - 1`` by row (stable:
    levels in order within a row).

    Level ``g0 + j`` of the group has its rows at ``rows[level_at[j]:]`` and its entries
    in the range at ``level_lo[j] .. level_hi[j] - 1`` of them.  Each entry ``t`` becomes
    a pair: ``pair_first`` the level's first position, ``pair_last`` the entry's own
    (``level_at[j] + t``), ``pair_level`` the level (not written when ``pair_level`` is
    empty: the fill needs no level, and the store costs it ~5%).  Afterwards ``bucket[i]`` ends row
    ``lo + i``'s pairs (and starts the next row's); returns the number of pairs.
    """
    keep_level = pair_level.size > 0
    bucket[:] = 0
    for j in range(n_levels):
        base = level_at[j]
        for t in range(level_lo[j], level_hi[j]):
            bucket[rows[base + t] - lo + 1] += 1
    for i in range(hi - lo):
        bucket[i + 1] += bucket[i]
    for j in range(n_levels):
        base = level_at[j]
        for t in range(level_lo[j], level_hi[j]):
            i = rows[base + t] - lo
            position = bucket[i]
            bucket[i] = position + 1
            pair_first[position] = base
            pair_last[position] = base + t
            if keep_level:
                pair_level[position] = g0 + j
    return bucket[hi - lo - 1]


@njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def scatter_lower(  # noqa: PLR0912, PLR0913, PLR0915 - one compiled loop nest
    indptr, indices, data, p, r, scale, range_edges, group_edges, out
):  # pragma: no cover - compiled
    """Add ``scale F`` to the lower triangle of ``out`` (``(q, q)``, C order).

    For each group of levels ``group_edges[g] .. group_edges[g + 1] - 1``, each thread
    (rows ``range_edges[part] .. range_edges[part + 1] - 1`` of ``F``):

    1. forms the group's ``W`` rows that its rows need (a level's entries up to its last
       one in the thread's rows; the products of an entry ``t`` reach back to the level's
       first entry) into ``w``, column ``c`` at ``w[c * most + position]``, beside their
       rows of ``F`` in ``rows`` (``uint32``: no sign, so no wrap-around code in the
       inner loop);
    2. counting-sorts the entries in its rows by their row of ``F`` (stable: levels in
       order within a row), each one a pair ``(level's first position, own position)``;
    3. walks its rows once; for row ``i`` and each of its pairs ``(b, e)`` adds
       ``sum_c scale w[c, e] w[c, u]`` to ``F[i, rows[u]]`` for ``u = b .. e``, the
       row staying in the first-level cache; the next pair's ``W`` and, a few lines per
       pair, the next row are prefetched.

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
        The rows of ``F`` each thread owns (``0 = range_edges[0] <= ... <= q``).
    group_edges : int64 (groups + 1,)
        The levels of each group (``0 = group_edges[0] <= ... <= group_edges[-1] = l``).
    """
    n_groups = group_edges.size - 1
    n_ranges = range_edges.size - 1
    n_rows = out.shape[0]
    most = 1  # entries of the largest group
    most_levels = 1  # levels of the largest group
    for g in range(n_groups):
        g0 = group_edges[g]
        g1 = group_edges[g + 1]
        most = max(most, indptr[g1 * p] - indptr[g0 * p])  # p columns of k_s entries each
        most_levels = max(most_levels, g1 - g0)
    most = most // p + 1
    for part in prange(n_ranges):
        lo = range_edges[part]
        hi = range_edges[part + 1]
        if lo >= hi:
            continue
        w = np.empty(most * p)
        rows = np.empty(most, dtype=np.uint32)
        pair_first = np.empty(most, dtype=np.uint32)
        pair_last = np.empty(most, dtype=np.uint32)
        no_levels = np.empty(0, dtype=np.int64)  # the fill needs no level of a pair
        level_lo = np.empty(most_levels, dtype=np.int64)  # the level's entries in lo .. hi - 1
        level_hi = np.empty(most_levels, dtype=np.int64)
        level_at = np.empty(most_levels, dtype=np.int64)  # its first position in w
        bucket = np.empty(hi - lo + 1, dtype=np.int64)
        w0 = w[:most]
        w1 = w[most : 2 * most] if p > 1 else w[:most]
        w2 = w[2 * most : 3 * most] if p > 2 else w[:most]
        for g in range(n_groups):
            g0 = group_edges[g]
            g1 = group_edges[g + 1]
            at = 0
            for s in range(g0, g1):
                first, e0, e1 = _level_window(indptr, indices, s, p, lo, hi, n_rows)
                level_lo[s - g0] = e0 - first
                level_hi[s - g0] = e1 - first
                level_at[s - g0] = at
                # W's rows of this level that the thread's rows reach: values times r_s
                if p == 2:
                    second = indptr[s * p + 1]
                    r00 = r[0, 0, s]
                    r01 = r[0, 1, s]
                    r10 = r[1, 0, s]
                    r11 = r[1, 1, s]
                    for u in range(e1 - first):
                        rows[at + u] = indices[first + u]
                        d0 = data[first + u]
                        d1 = data[second + u]
                        w0[at + u] = d0 * r00 + d1 * r10
                        w1[at + u] = d0 * r01 + d1 * r11
                else:
                    for u in range(e1 - first):
                        rows[at + u] = indices[first + u]
                        for c in range(p):
                            acc = 0.0
                            for a in range(p):
                                acc += data[indptr[s * p + a] + u] * r[a, c, s]
                            w[c * most + at + u] = acc
                at += e1 - first
            # the pairs, row by row, levels in order within a row; bucket[i] then ends
            # row i's pairs (and starts row i + 1's)
            n_pairs = _pairs_by_row(
                rows, level_lo, level_hi, level_at, g0, g1 - g0, lo, hi, bucket,
                pair_first, pair_last, no_levels,
            )
            begin = 0
            for i in range(hi - lo):
                end = bucket[i]
                if end == begin:
                    continue
                row = out[lo + i]
                # the next row's lower triangle into the second-level cache, a few lines
                # per pair, so it is there before this row ends (a burst would stall)
                next_row = min(lo + i + 1, hi - 1)
                ahead_row = out[next_row]
                line = 0
                for pair in range(begin, end):
                    for _ in range(PREFETCH_LINES_PER_PAIR):
                        if line <= next_row:
                            _prefetch_l2(ahead_row, line)
                            line += 8
                    # the next pair's first two lines of W and rows, and its last entry
                    ahead = min(pair + 1, n_pairs - 1)
                    first_ahead = pair_first[ahead]
                    last_ahead = pair_last[ahead]
                    _prefetch(rows, first_ahead)
                    _prefetch(rows, min(first_ahead + 16, last_ahead))
                    _prefetch(w0, first_ahead)
                    _prefetch(w0, min(first_ahead + 8, last_ahead))
                    _prefetch(w0, last_ahead)
                    if p > 1:
                        _prefetch(w1, first_ahead)
                        _prefetch(w1, min(first_ahead + 8, last_ahead))
                        _prefetch(w1, last_ahead)
                    u = np.uint64(pair_first[pair])
                    e = np.uint64(pair_last[pair])
                    if p == 1:
                        a0 = w0[e] * scale
                        while u <= e:
                            row[rows[u]] += a0 * w0[u]
                            u += np.uint64(1)
                    elif p == 2:
                        a0 = w0[e] * scale
                        a1 = w1[e] * scale
                        while u <= e:
                            row[rows[u]] += a0 * w0[u] + a1 * w1[u]
                            u += np.uint64(1)
                    elif p == 3:
                        a0 = w0[e] * scale
                        a1 = w1[e] * scale
                        a2 = w2[e] * scale
                        while u <= e:
                            row[rows[u]] += a0 * w0[u] + a1 * w1[u] + a2 * w2[u]
                            u += np.uint64(1)
                    else:
                        last = pair_last[pair]
                        for v in range(pair_first[pair], last + 1):
                            acc = 0.0
                            for c in range(p):
                                acc += w[c * most + last] * w[c * most + v]
                            row[rows[v]] += scale * acc
                begin = end


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
