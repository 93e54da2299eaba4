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

import importlib.util
import mmap
import warnings
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
from mixedmodels.errors import MixedModelsWarning
from mixedmodels.linalg.fillin import small_pages

#: Use the compiled kernels (:mod:`mixedmodels.core.reduce_kernels`) when numba loads;
#: False forces the numpy code (the tests compare both).
USE_KERNELS = True
_kernel_failure: str | None = None


def reduce_kernels():
    """The compiled kernels of the chunk sums (:mod:`mixedmodels.core.reduce_kernels`), or
    None when they are switched off (:data:`USE_KERNELS`), numba is missing or fails to
    load (reported once as a :class:`~mixedmodels.errors.MixedModelsWarning`; the numpy
    code gives the same sums)."""
    global _kernel_failure
    if not USE_KERNELS or _kernel_failure is not None:
        return None
    if importlib.util.find_spec("numba") is None:
        return None
    try:
        from mixedmodels.core import reduce_kernels as module
    except Exception as exc:  # noqa: BLE001 - any failure of the optional import falls back
        _kernel_failure = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            "the compiled kernels of the chunk sums are unavailable (numba failed to load: "
            f"{_kernel_failure}); using numpy",
            MixedModelsWarning,
            stacklevel=2,
        )
        return None
    return module


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
        indices = _mapped(int(indptr[-1]), _index_dtype(bj.size))
        data = _mapped(int(indptr[-1]))
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
    indices = _mapped(int(indptr[-1]), _index_dtype(bj.size))
    data = _mapped(int(indptr[-1]))
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


def _mapped(shape: int | tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """An array in memory mapped for it alone (when larger than 1 MB), so that freeing it
    returns the memory to the system at once.  The allocator's heap would keep freed
    pieces of a few MB for its own reuse, and the final blocks (allocated apart) could not
    take their place: the pieces and the blocks would be resident together."""
    size = int(np.prod(shape))
    nbytes = size * np.dtype(dtype).itemsize
    if nbytes < 2**20:
        return np.empty(shape, dtype=dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    buffer = mmap.mmap(-1, nbytes, flags=flags)
    return np.frombuffer(buffer, dtype=dtype, count=size).reshape(shape)


def _off_heap(array: np.ndarray) -> np.ndarray:
    """``array``, or a copy of it in its own memory map (:func:`_mapped`) when it is on
    the heap and larger than 1 MB (a piece computed elsewhere, such as a Dask worker)."""
    if _is_mapped(array) or array.nbytes < 2**20:
        return array
    out = _mapped(array.shape, array.dtype)
    out[...] = array
    return out


def _is_mapped(array: np.ndarray) -> bool:
    """``array`` lives in a memory map of its own (:func:`_mapped`)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


class GramSum:
    """The Gram of all chunks, added one :class:`ChunkGram` at a time.

    The level-indexed blocks (``Z_k' W Z_k`` per level, ``[X y]' W Z_k``) are allocated once
    at their full size and each chunk adds into the levels it touches; the off-diagonal
    blocks' pieces are kept (they are the block's entries, once each when no level pair
    spans chunks) and merged into one CSC matrix per block by :meth:`gram`: column-major
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
        self.pieces: dict[tuple[int, int], list[SparsePiece]] = {key: [] for key in keys}
        self.counts = {key: np.zeros(blocks[key[1]].size, dtype=np.int64) for key in keys}

    def add(self, part: ChunkGram) -> GramSum:
        """Add one chunk's sums (returns self)."""
        for (_, p), d, xy, t in zip(
            self.shapes, self.diagonal, self.xy_random, part.terms, strict=True
        ):
            span = t.diagonal.shape[2]
            d[:, :, t.first : t.first + span] += t.diagonal
            xy[:, t.first * p : (t.first + span) * p] += t.xy_random
        for key, piece in part.off_diagonal.items():
            counts = piece.counts
            if counts.size and piece.data.size:
                self.counts[key][piece.first : piece.first + counts.size] += counts
                self.pieces[key].append(
                    SparsePiece(
                        piece.first,
                        piece.indptr,
                        _off_heap(piece.indices),
                        _off_heap(piece.data),
                    )
                )
        self.xy_xy += part.xy_xy
        return self

    def gram(self) -> Gram:
        """The Gram of every chunk added (the pieces are released as they are merged)."""
        off = {}
        for key in list(self.pieces):
            shape = (self.sizes[key[0]], self.sizes[key[1]])
            off[key] = _merge_pieces(shape, self.pieces.pop(key), self.counts.pop(key))
        return Gram(self.diagonal, off, self.xy_random, self.xy_xy)


def _merge_pieces(
    shape: tuple[int, int], pieces: list[SparsePiece], counts: np.ndarray
) -> sp.csc_matrix:
    """One canonical CSC matrix (int32 indices and indptr when they fit) from the pieces of
    all chunks: each piece's columns are copied into their slots in chunk order (when no
    level spans chunks, the pieces simply follow each other), then the columns of levels
    that span chunks are sorted and their duplicates added in place."""
    nnz = int(counts.sum())
    dtype = _index_dtype(max(nnz, shape[0]))
    indptr = np.zeros(shape[1] + 1, dtype=dtype)
    np.cumsum(counts, out=indptr[1:])
    # no transparent huge pages: the final block is written column region by region while
    # the pieces are freed, and a huge page would make each region's first write resident
    # 2 MB at once
    with small_pages():
        indices = np.empty(nnz, dtype=dtype)
        data = np.empty(nnz)
    free = indptr[:-1].astype(np.int64)  # next free slot of every column
    pieces.reverse()
    while pieces:
        piece = pieces.pop()  # chunk order; each piece is freed once copied
        n = piece.counts
        columns = slice(piece.first, piece.first + n.size)
        dest = np.repeat(free[columns] - piece.indptr[:-1], n)
        dest += np.arange(dest.size)
        indices[dest] = piece.indices
        data[dest] = piece.data
        free[columns] += n
        del piece, dest
    mat = sp.csc_matrix((data, indices, indptr), shape=shape, copy=False)
    mat.sum_duplicates()  # no-op (one check) when no level pair spans chunks
    return mat


# ---------------------------------------------------------------------- nesting
def nesting_partial(inner: RandomBlock, outer: RandomBlock) -> np.ndarray:
    """For each level of ``inner``: the level of ``outer`` its rows have in this chunk, -1
    when it has no rows here, -2 when they have several."""
    first = np.full(inner.n_levels, -1, dtype=np.int64)
    first[inner.codes] = outer.codes
    clash = np.zeros(inner.n_levels, dtype=bool)
    clash[inner.codes[first[inner.codes] != outer.codes]] = True
    first[clash] = -2
    return first


def merge_nesting(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two chunks' :func:`nesting_partial` results, combined."""
    out = np.where(a == -1, b, a)
    out[(a >= 0) & (b >= 0) & (a != b)] = -2
    out[(a == -2) | (b == -2)] = -2
    return out


def is_nested_by(partial: np.ndarray) -> bool:
    """Every level of the inner term occurs with a single level of the outer term."""
    return bool(np.all(partial != -2))
