"""Cross products of rows that come in chunks: partial Grams, added.

Every block of ``[Z X y]' W [Z X y]`` is a sum over rows, so the Gram of all rows is the sum
of the Grams of any partition of them (whole Grams of two row sets add by
:func:`mixedmodels.core.gram.add_grams`).  Here :func:`chunk_gram` and :class:`GramSum`: a
chunk's sums over the levels its rows touch only (:class:`ChunkGram`), added into
level-indexed arrays allocated once, and the off-diagonal blocks' per-chunk pieces merged
once into the final sparse matrices (:meth:`GramSum.gram`).  Time and memory are linear in
the rows: no partial is as large as the whole Gram, and no sparse matrix is copied per
chunk.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mixedmodels.core.gram import (
    Gram,
    _cross_random,
    _unless_ones,
    grouped_cross_products,
)
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.fillin import small_pages
from mixedmodels.linalg.optional_kernels import OptionalKernels

#: Use the compiled kernels (:mod:`mixedmodels.core.reduce_kernels`) when numba loads;
#: False forces the numpy code (the tests compare both).
USE_KERNELS = True
_REDUCE_KERNELS = OptionalKernels(
    "mixedmodels.core.reduce_kernels", "the compiled kernels of the chunk sums", "using numpy"
)


def reduce_kernels():
    """The compiled kernels of the chunk sums (:mod:`mixedmodels.core.reduce_kernels`), or
    None when they are switched off (:data:`USE_KERNELS`), numba is missing or fails to
    load (reported once as a :class:`~mixedmodels.errors.MixedModelsWarning`; the numpy
    code gives the same sums)."""
    return _REDUCE_KERNELS.load() if USE_KERNELS else None


def _no_weights(weights: np.ndarray | None) -> tuple[np.ndarray, bool]:
    return (np.empty(0), False) if weights is None else (weights, True)


# ---------------------------------------------------------------------- compact partials
@dataclass
class LevelSums:
    """One term's sums over a range of its levels (those a chunk's rows touch).

    Attributes
    ----------
    first : int
        The first level of the range.
    diagonal : ndarray (p, p, span)
        ``Z_k' W Z_k`` of levels ``first .. first + span - 1``.
    xy_random : ndarray (m, span * p)
        ``[X y]' W Z_k`` of the same levels, level-major.
    """

    first: int
    diagonal: np.ndarray
    xy_random: np.ndarray


@dataclass
class SparsePiece:
    """A chunk's ``Z_j' W Z_k`` as CSC columns ``first .. first + len(indptr) - 2`` of the
    whole block (canonical: sorted row indices, no duplicates).

    Attributes
    ----------
    first : int
    indptr : ndarray of int64
    indices : ndarray of int32 (int64 when the block has 2**31 rows or more)
    data : ndarray of float64
    """

    first: int
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Entries in each of the piece's columns."""
        return np.diff(self.indptr)


@dataclass
class ChunkGram:
    """The Gram of one chunk's rows, kept to the levels they touch (engine order).

    Attributes
    ----------
    terms : list of LevelSums
    off_diagonal : dict (j, k) -> SparsePiece, j > k
    xy_xy : ndarray (m, m)
    """

    terms: list[LevelSums]
    off_diagonal: dict[tuple[int, int], SparsePiece]
    xy_xy: np.ndarray


def _index_dtype(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


def _level_sums(
    block: RandomBlock,
    columns: list[np.ndarray],
    weights: np.ndarray | None,
    stacked: np.ndarray | None = None,
):
    """One term's :class:`LevelSums` over the levels a chunk's rows touch (``stacked``:
    ``columns`` as one ``(m, n)`` array, for the compiled kernel)."""
    m, p = len(columns), block.p
    if block.codes.size == 0:
        return LevelSums(0, np.zeros((p, p, 0)), np.zeros((m, 0)))
    first = int(block.codes.min())
    span = int(block.codes.max()) - first + 1
    kernels = reduce_kernels() if span > 1 and stacked is not None else None
    if kernels is not None:
        diagonal = np.zeros((p, p, span))
        per_level = np.zeros((m, p, span))
        w, weighted = _no_weights(weights)
        kernels.level_sums(
            block.codes, first, block.z, stacked, w, weighted, diagonal, per_level
        )
        xy = np.ascontiguousarray(per_level.transpose(0, 2, 1)).reshape(m, span * p)
        return LevelSums(first, diagonal, xy)
    local = block.codes - first if first else block.codes
    if span == 1:  # one level: plain cross products (BLAS)
        diagonal = grouped_cross_products(local, 1, block.z, block.z, weights)
        per_level = grouped_cross_products(local, 1, columns, block.z, weights)
    else:
        sums = _PerLevelSums(local, span, weights)
        z = [block.z[:, c] for c in range(p)]
        diagonal = np.empty((p, p, span))
        for a in range(p):
            for c in range(a, p):
                diagonal[a, c] = diagonal[c, a] = sums(z[a], z[c])
        per_level = np.empty((m, p, span))
        for i, column in enumerate(columns):
            for c in range(p):
                per_level[i, c] = sums(column, z[c])
    xy = np.ascontiguousarray(per_level.transpose(0, 2, 1)).reshape(m, span * p)
    return LevelSums(first, diagonal, xy)


class _PerLevelSums:
    """Per-level sums ``sum_{r in level} w_r a_r b_r`` of column pairs, each pair summed
    once: a model's fixed-effect columns are often the term's own (an intercept, the
    slope's variable), so ``[X y]' W Z`` repeats products of ``Z' W Z``.  Columns of ones
    multiply nothing and equal columns are recognised; the sums are those of
    :func:`~mixedmodels.core.gram.grouped_cross_products` (bit for bit without weights;
    with weights the three factors may be multiplied in another order)."""

    def __init__(self, codes: np.ndarray, n_levels: int, weights: np.ndarray | None):
        self.codes, self.n_levels, self.weights = codes, n_levels, weights
        self.columns: list[np.ndarray] = []  # distinct columns (not ones) seen so far
        self.done: dict[tuple[int, int], np.ndarray] = {}

    def _key(self, column: np.ndarray) -> int:
        """-1 for a column of ones, else the index of an equal column seen before."""
        if _unless_ones(column) is None:
            return -1
        for i, seen in enumerate(self.columns):
            if seen is column or (seen[0] == column[0] and np.array_equal(seen, column)):
                return i
        self.columns.append(column)
        return len(self.columns) - 1

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ka, kb = sorted((self._key(a), self._key(b)))
        if (ka, kb) not in self.done:
            factors = [self.columns[k] for k in (ka, kb) if k >= 0]
            if self.weights is not None:
                factors.append(self.weights)
            v = None
            for f in factors:
                v = f if v is None else v * f
            self.done[ka, kb] = np.bincount(self.codes, weights=v, minlength=self.n_levels)
        return self.done[ka, kb]


def _piece_of(mat: sp.spmatrix) -> SparsePiece:
    mat = mat.tocsc()
    mat.sum_duplicates()
    return SparsePiece(
        0,
        mat.indptr.astype(np.int64),
        mat.indices.astype(_index_dtype(mat.shape[0])),
        np.asarray(mat.data, dtype=float),
    )


def _cross_piece(bj: RandomBlock, bk: RandomBlock, weights: np.ndarray | None) -> SparsePiece:
    """``Z_j' W Z_k`` of one chunk's rows as a :class:`SparsePiece`: one stored entry for
    every (level of j, level of k) pair some row has, times ``p_j p_k`` (explicit zeros
    kept, as :func:`~mixedmodels.core.gram.build_gram` keeps them)."""
    if bj.n_levels == 1 or bk.n_levels == 1 or bj.codes.size == 0:
        return _piece_of(_cross_random(bj, bk, weights))
    pj, pk = bj.p, bk.p
    lo = int(bk.codes.min())
    kernels = reduce_kernels() if bk.codes.size < 2**31 else None  # int32 row numbers
    if kernels is not None:
        span = int(bk.codes.max()) - lo + 1
        order, edges, pairs = kernels.cross_counts(bj.codes, bk.codes, lo, span, bj.n_levels)
        counts = np.repeat(pairs * pj, pk)  # columns (level, b), level-major
        indptr = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        indices = _scratch(int(indptr[-1]), _index_dtype(bj.size))
        data = _scratch(int(indptr[-1]))
        w, weighted = _no_weights(weights)
        kernels.cross_fill(
            bj.codes, order, edges, bj.z, bk.z, w, weighted, indptr, indices, data
        )
        return SparsePiece(lo * pk, indptr, indices, data)
    # rows in (level of k, level of j) order, stable; fast when the rows come grouped by
    # the level of k (a subject's rows together)
    order = np.argsort((bk.codes - lo) * bj.n_levels + bj.codes, kind="stable")
    ck, rj = bk.codes[order], bj.codes[order]
    new = np.empty(rj.size, dtype=bool)
    new[0] = True
    np.not_equal(ck[1:], ck[:-1], out=new[1:])
    new[1:] |= rj[1:] != rj[:-1]
    starts = np.flatnonzero(new)
    local, pair_j = ck[starts] - lo, rj[starts].astype(np.int64)
    del ck, rj, new
    n_pairs = starts.size
    values = np.empty((n_pairs, pj, pk))
    # columns of ones (intercepts) multiply nothing; a product of ones is a row count
    left = [_unless_ones(bj.z[:, a]) for a in range(pj)]
    right = [_unless_ones(bk.z[:, b]) for b in range(pk)]
    counts = None
    for a in range(pj):
        for b in range(pk):
            factors = [f for f in (left[a], right[b], weights) if f is not None]
            if not factors:
                if counts is None:
                    counts = np.diff(np.append(starts, order.size)).astype(float)
                values[:, a, b] = counts
                continue
            v = factors[0] if len(factors) == 1 else np.multiply(factors[0], factors[1])
            if len(factors) == 3:
                v *= factors[2]
            values[:, a, b] = np.add.reduceat(v[order], starts)
    # CSC: column (level of k, b) holds its pairs' rows (level of j, a), j ascending
    per_level = np.bincount(local, minlength=int(local[-1]) + 1)
    counts = np.repeat(per_level * pj, pk)  # columns (level, b), level-major
    indptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # pair t of level s (the level's pairs start at pair g_s, n_s of them) sits in column
    # (s, b) at indptr[s pk + b] + (t - g_s) pj + a = pj ((pk - 1) g_s + t + b n_s) + a
    first_pair = np.cumsum(per_level) - per_level
    base = (pk - 1) * first_pair[local] + np.arange(n_pairs)
    n_s = per_level[local] if pk > 1 else None
    indices = _scratch(int(indptr[-1]), _index_dtype(bj.size))
    data = _scratch(int(indptr[-1]))
    for b in range(pk):
        at = base if b == 0 else base + b * n_s
        for a in range(pj):
            pos = at * pj + a if pj > 1 else at
            indices[pos] = pair_j * pj + a
            data[pos] = values[:, a, b]
    return SparsePiece(lo * pk, indptr, indices, data)


def chunk_gram(
    blocks: list[RandomBlock],
    X: np.ndarray,
    y_work: np.ndarray,
    weights: np.ndarray | None,
) -> ChunkGram:
    """The Gram of one chunk's rows over the levels they touch (``blocks`` in the engine's
    order), to be added by :class:`GramSum`."""
    columns = [X[:, j] for j in range(X.shape[1])] + [y_work]
    stacked = None
    if reduce_kernels() is not None:
        stacked = np.empty((len(columns), y_work.size))
        for i, column in enumerate(columns):
            stacked[i] = column
    terms = [_level_sums(b, columns, weights, stacked) for b in blocks]
    off = {
        (j, k): _cross_piece(blocks[j], blocks[k], weights)
        for j in range(len(blocks))
        for k in range(j)
    }
    p = X.shape[1]
    wX = X if weights is None else X * weights[:, None]
    wy = y_work if weights is None else y_work * weights
    xy_xy = np.empty((p + 1, p + 1))
    xy_xy[:p, :p] = X.T @ wX
    xy_xy[:p, p] = xy_xy[p, :p] = X.T @ wy
    xy_xy[p, p] = y_work @ wy
    return ChunkGram(terms, off, xy_xy)


def _scratch(size: int, dtype: type = np.float64) -> np.ndarray:
    """An array for a chunk's piece: in a memory map of its own when over 1 MB, returned to
    the system when freed (the piece is copied into the sum's region at once).  On the
    heap, pieces of tens of MB freed among the chunks' other arrays stayed resident
    (fragments the allocator keeps for reuse)."""
    nbytes = size * np.dtype(dtype).itemsize
    if nbytes < 2**20:
        return np.empty(size, dtype=dtype)
    buffer = mmap.mmap(-1, nbytes, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, dtype=dtype, count=size)


class _Region:
    """A growing array in an anonymous memory map of its own: appended to, grown in place
    (``mremap``: no copy), returned to the system when released.  The allocator's heap would
    keep freed memory for its own reuse, and the final blocks could not take its place."""

    def __init__(self, dtype: type):
        self.dtype = np.dtype(dtype)
        self.size = 0  # entries
        self.map: mmap.mmap | None = None

    def append(self, values: np.ndarray) -> None:
        """Add ``values`` at the end."""
        if not values.size:
            return
        item = self.dtype.itemsize
        need = (self.size + values.size) * item
        if self.map is None:
            self.map = mmap.mmap(-1, max(need, 2**22), mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        elif need > len(self.map):
            self.map.resize(max(need, len(self.map) * 3 // 2))
        view = np.frombuffer(self.map, self.dtype, count=values.size, offset=self.size * item)
        view[...] = values
        del view  # no view may outlive an append: the map cannot be resized under one
        self.size += values.size

    def read(self, start: int, stop: int) -> np.ndarray:
        """A copy of entries ``start .. stop - 1``."""
        item = self.dtype.itemsize
        view = np.frombuffer(self.map, self.dtype, count=stop - start, offset=start * item)
        out = view.copy()
        del view
        return out

    def release(self, stop: int) -> None:
        """Return the whole pages before entry ``stop`` to the system (read no more)."""
        if self.map is None:
            return
        end = stop * self.dtype.itemsize // mmap.PAGESIZE * mmap.PAGESIZE
        if end > 0:
            self.map.madvise(mmap.MADV_DONTNEED, 0, end)

    def array(self) -> np.ndarray:
        """The entries, in place (the map shrunk to them); nothing may be appended after."""
        if self.map is None or not self.size:
            return np.empty(0, self.dtype)
        self.map.resize(self.size * self.dtype.itemsize)
        return np.frombuffer(self.map, self.dtype, count=self.size)

    def close(self) -> None:
        """Free the map (no view of it may be alive)."""
        if self.map is not None:
            self.map.close()
            self.map = None


@dataclass
class _Placed:
    """Where one chunk's piece sits in its block's regions."""

    first: int
    counts: np.ndarray
    offset: int


class _BlockPieces:
    """The pieces of one off-diagonal block, in chunk order, appended to two regions
    (row indices, values).  While each piece starts at or after the column where the
    previous one ended (a subject's rows within one chunk, chunks in subject order), the
    regions are the block's CSC arrays themselves and :meth:`csc` copies nothing."""

    def __init__(self, shape: tuple[int, int], index_dtype: type, level_columns: int):
        self.shape = shape
        self.level_columns = level_columns  # columns of one level of the column term
        self.indices = _Region(index_dtype)
        self.data = _Region(np.float64)
        self.counts = np.zeros(shape[1], dtype=np.int64)
        self.placed: list[_Placed] = []
        self.end = 0  # the column after the last piece's
        self.in_order = True

    def add(self, piece: SparsePiece) -> None:
        counts = piece.counts
        if not counts.size or not piece.data.size:
            return
        if (
            self.in_order
            and self.end - self.level_columns <= piece.first < self.end
            and piece.first >= self.placed[-1].first
        ):
            piece = self._merge_tail(piece)  # the level at the boundary with the last chunk
            counts = piece.counts
            if not counts.size:
                return
        self.in_order = self.in_order and piece.first >= self.end
        self.end = max(self.end, piece.first + counts.size)
        self.counts[piece.first : piece.first + counts.size] += counts
        self.placed.append(_Placed(piece.first, counts, self.data.size))
        self.indices.append(piece.indices)
        self.data.append(piece.data)

    def _merge_tail(self, piece: SparsePiece) -> SparsePiece:
        """Add the columns ``piece`` shares with the last piece (the last level written: the
        level at the boundary of two chunks in level order) where they are, and return the
        rest of ``piece``."""
        last = self.placed[-1]
        c0, c1 = piece.first, min(self.end, piece.first + piece.counts.size)
        k = c1 - c0
        old_counts = last.counts[c0 - last.first : c1 - last.first]
        start = self.data.size - int(old_counts.sum())
        new_counts = piece.counts[:k]
        split = int(piece.indptr[k])
        columns = np.concatenate(
            [np.repeat(np.arange(k), old_counts), np.repeat(np.arange(k), new_counts)]
        )
        rows = np.concatenate([self.indices.read(start, self.data.size), piece.indices[:split]])
        values = np.concatenate([self.data.read(start, self.data.size), piece.data[:split]])
        order = np.lexsort((rows, columns))  # stable: this chunk's after the last's
        columns, rows, values = columns[order], rows[order], values[order]
        first = np.ones(rows.size, dtype=bool)
        first[1:] = (columns[1:] != columns[:-1]) | (rows[1:] != rows[:-1])
        starts = np.flatnonzero(first)
        merged = np.bincount(columns[starts], minlength=k)
        self.indices.size = self.data.size = start
        self.indices.append(rows[starts])
        self.data.append(np.add.reduceat(values, starts) if values.size else values)
        self.counts[c0:c1] = merged
        last.counts = last.counts.copy()
        last.counts[c0 - last.first : c1 - last.first] = merged
        return SparsePiece(
            c1, piece.indptr[k:] - split, piece.indices[split:], piece.data[split:]
        )

    def csc(self) -> sp.csc_matrix:
        """The block as one canonical CSC matrix (int32 indices and indptr when they fit);
        the regions are freed or become its arrays."""
        nnz = int(self.counts.sum())
        dtype = _index_dtype(max(nnz, self.shape[0]))
        indptr = np.zeros(self.shape[1] + 1, dtype=dtype)
        np.cumsum(self.counts, out=indptr[1:])
        if self.in_order:  # the pieces follow each other: the regions are the arrays
            indices, data = self.indices.array(), self.data.array()
            if indices.dtype != dtype:
                indices = indices.astype(dtype)
            mat = sp.csc_matrix((data, indices, indptr), shape=self.shape, copy=False)
            mat.sum_duplicates()  # one O(nnz) check: canonical already
            return mat
        return self._merged(nnz, dtype, indptr)

    def _merged(self, nnz: int, dtype: type, indptr: np.ndarray) -> sp.csc_matrix:
        """Each piece's columns copied into their slots in chunk order, the regions'
        pages released as they are read; then the columns of levels that span chunks
        sorted and their duplicates added in place."""
        # no transparent huge pages: the final block is written column region by region
        # while the regions are released, and a huge page would make each region's
        # first write resident 2 MB at once
        with small_pages():
            indices = np.empty(nnz, dtype=dtype)
            data = np.empty(nnz)
        free = indptr[:-1].astype(np.int64)  # next free slot of every column
        released = 0
        for k, place in enumerate(self.placed):
            n = place.counts
            stop = self.placed[k + 1].offset if k + 1 < len(self.placed) else self.data.size
            columns = slice(place.first, place.first + n.size)
            dest = np.repeat(free[columns] - (np.cumsum(n) - n), n)
            dest += np.arange(dest.size)
            indices[dest] = self.indices.read(place.offset, stop)
            data[dest] = self.data.read(place.offset, stop)
            free[columns] += n
            del dest
            if stop - released > 2**22:  # every 32 MB of values
                self.indices.release(stop)
                self.data.release(stop)
                released = stop
        self.placed = []
        self.indices.close()
        self.data.close()
        mat = sp.csc_matrix((data, indices, indptr), shape=self.shape, copy=False)
        mat.sum_duplicates()  # no-op (one check) when no level pair spans chunks
        return mat


class GramSum:
    """The Gram of all chunks, added one :class:`ChunkGram` at a time.

    The level-indexed blocks (``Z_k' W Z_k`` per level, ``[X y]' W Z_k``) are allocated once
    at their full size and each chunk adds into the levels it touches; the off-diagonal
    blocks' pieces are copied into memory maps of their own as they come
    (:class:`_BlockPieces`: they are the block's entries, once each when no level pair
    spans chunks) and become one CSC matrix per block in :meth:`gram` (without a copy
    when the chunks come in the order of the columns' levels): column-major
    over the earlier (larger) term, the layout in which the crossed path's fill kernel
    reads ``A = Z_R' W Z_0`` where it is (:func:`~mixedmodels.linalg.fillin.
    scatter_in_place`), so a 100M-row problem holds that block once.

    Parameters
    ----------
    blocks : list of RandomBlock
        The terms in the engine's order (rows not needed: :func:`~mixedmodels.core.
        reduced.term_shapes`).
    n_fixed : int
        Columns of ``X`` (``m = n_fixed + 1`` with the response).
    """

    def __init__(self, blocks: list[RandomBlock], n_fixed: int):
        m = n_fixed + 1
        self.shapes = [(b.n_levels, b.p) for b in blocks]
        self.diagonal = [np.zeros((b.p, b.p, b.n_levels)) for b in blocks]
        self.xy_random = [np.zeros((m, b.size)) for b in blocks]
        self.xy_xy = np.zeros((m, m))
        self.sizes = [b.size for b in blocks]
        keys = [(j, k) for j in range(len(blocks)) for k in range(j)]
        self.pieces: dict[tuple[int, int], _BlockPieces] = {
            (j, k): _BlockPieces(
                (self.sizes[j], self.sizes[k]), _index_dtype(self.sizes[j]), blocks[k].p
            )
            for j, k in keys
        }

    def add(self, part: ChunkGram) -> GramSum:
        """Add one chunk's sums (returns self); its pieces are copied, so ``part`` may be
        freed at once."""
        for (_, p), d, xy, t in zip(
            self.shapes, self.diagonal, self.xy_random, part.terms, strict=True
        ):
            span = t.diagonal.shape[2]
            d[:, :, t.first : t.first + span] += t.diagonal
            xy[:, t.first * p : (t.first + span) * p] += t.xy_random
        for key, piece in part.off_diagonal.items():
            self.pieces[key].add(piece)
        self.xy_xy += part.xy_xy
        return self

    def gram(self) -> Gram:
        """The Gram of every chunk added (the pieces' memory becomes the blocks' or is
        released as they are merged)."""
        off = {key: self.pieces.pop(key).csc() for key in list(self.pieces)}
        return Gram(self.diagonal, off, self.xy_random, self.xy_xy)


# ---------------------------------------------------------------------- nesting
@dataclass
class Ranged:
    """Values of a range of levels, ``first .. first + len(values) - 1`` (those a chunk's
    rows touch): a chunk's partial of a level-indexed sum."""

    first: int
    values: np.ndarray


def _level_range(codes: np.ndarray) -> tuple[int, int]:
    if not codes.size:
        return 0, 0
    first = int(codes.min())
    return first, int(codes.max()) - first + 1


def level_counts(block: RandomBlock) -> Ranged:
    """Rows per level over the levels a chunk's rows touch."""
    first, span = _level_range(block.codes)
    local = block.codes - first if first else block.codes
    return Ranged(first, np.bincount(local, minlength=span))


def nesting_partial(inner: RandomBlock, outer: RandomBlock) -> Ranged:
    """For each level of ``inner`` a chunk's rows touch: the level of ``outer`` its rows
    have in this chunk, -1 when it has no rows here, -2 when they have several."""
    first, span = _level_range(inner.codes)
    local = inner.codes - first if first else inner.codes
    out = np.full(span, -1, dtype=np.int64)
    out[local] = outer.codes
    clash = np.zeros(span, dtype=bool)
    clash[local[out[local] != outer.codes]] = True
    out[clash] = -2
    return Ranged(first, out)


def merge_nesting(total: np.ndarray, part: Ranged) -> None:
    """Add a chunk's :func:`nesting_partial` into ``total`` (all levels; -1 where no rows
    were seen yet), in place."""
    seen = total[part.first : part.first + part.values.size]
    new = part.values
    out = np.where(seen == -1, new, seen)
    out[(seen >= 0) & (new >= 0) & (seen != new)] = -2
    out[(seen == -2) | (new == -2)] = -2
    seen[...] = out


def is_nested_by(partial: np.ndarray) -> bool:
    """Every level of the inner term occurs with a single level of the outer term."""
    return bool(np.all(partial != -2))
