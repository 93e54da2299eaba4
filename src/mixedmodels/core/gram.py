"""The blocks of ``A = [Z_1 .. Z_k X y]' W [Z_1 .. Z_k X y]``, computed once in O(n).

Everything the objective needs for any theta is in these blocks; no later step touches
the n rows again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mixedmodels.core.terms import RandomBlock


@dataclass(frozen=True)
class Gram:
    """Cross products in the engine's block order.

    Attributes
    ----------
    diagonal : list of ndarray (p_k, p_k, l_k)
        ``Z_k' W Z_k``, block diagonal because each row belongs to one level (level-last).
    off_diagonal : dict (j, k) -> csr_matrix or csc_matrix, j > k
        ``Z_j' W Z_k``, shape ``(l_j p_j, l_k p_k)``: CSR when built from rows in memory
        (:func:`build_gram`, :class:`GramPlan`), canonical CSC (int32 indices when they
        fit) when summed over chunks (:class:`~mixedmodels.core.reduce.GramSum`), the
        layout the crossed fill reads in place; consumers that read the stored arrays
        convert (``.tocsr()`` is free for CSR).
    xy_random : list of ndarray (m, l_k * p_k)
        ``[X y]' W Z_k`` with ``m = n_fixed + 1``.
    xy_xy : ndarray (m, m)
        ``[X y]' W [X y]``.
    """

    diagonal: list[np.ndarray]
    off_diagonal: dict[tuple[int, int], sp.csr_matrix | sp.csc_matrix]
    xy_random: list[np.ndarray]
    xy_xy: np.ndarray


def grouped_cross_products(
    codes: np.ndarray,
    n_levels: int,
    left: np.ndarray | list[np.ndarray],
    right: np.ndarray,
    weights: np.ndarray | None,
) -> np.ndarray:
    """Per-level sums ``sum_{r in level} w_r left[r, a] right[r, b]``, shape (a, b, l).

    ``left`` is an (n, a) array or a list of ``a`` columns.
    """
    if n_levels == 1:  # one level (a smooth's random part): a plain cross product
        L = left if isinstance(left, np.ndarray) else np.column_stack(left)
        wr = right if weights is None else right * weights[:, None]
        return (L.T @ wr)[:, :, None]
    columns = list(left.T) if isinstance(left, np.ndarray) else list(left)
    out = np.empty((len(columns), right.shape[1], n_levels))
    symmetric = left is right
    # columns of ones (intercepts) multiply nothing (bit for bit the same sums)
    right_columns = [_unless_ones(right[:, b]) for b in range(right.shape[1])]
    for a, column in enumerate(columns):
        lw = _unless_ones(column)
        if weights is not None:
            lw = weights if lw is None else lw * weights
        for b in range(a if symmetric else 0, right.shape[1]):
            rb = right_columns[b]
            v = rb if lw is None else lw if rb is None else lw * rb
            out[a, b] = np.bincount(codes, weights=v, minlength=n_levels)
            if symmetric:
                out[b, a] = out[a, b]
    return out


def _unless_ones(column: np.ndarray) -> np.ndarray | None:
    """``column``, or None when every entry is 1."""
    return None if bool(np.all(column == 1.0)) else column


def _cross_random(bj: RandomBlock, bk: RandomBlock, weights: np.ndarray | None) -> sp.csr_matrix:
    """``Z_j' W Z_k`` as CSR (duplicates summed)."""
    if bk.n_levels == 1:  # a one-level block (a smooth's random part): per-level sums
        per = grouped_cross_products(bj.codes, bj.n_levels, bj.z, bk.z, weights)
        return sp.csr_matrix(per.transpose(2, 0, 1).reshape(bj.size, bk.p))
    if bj.n_levels == 1:
        per = grouped_cross_products(bk.codes, bk.n_levels, bk.z, bj.z, weights)
        return sp.csr_matrix(per.transpose(1, 2, 0).reshape(bj.p, bk.size))
    rows, cols, vals = [], [], []
    for a in range(bj.p):
        for b in range(bk.p):
            v = bj.z[:, a] * bk.z[:, b]
            if weights is not None:
                v = v * weights
            rows.append(bj.codes * bj.p + a)
            cols.append(bk.codes * bk.p + b)
            vals.append(v)
    coo = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(bj.size, bk.size),
    )
    return coo.tocsr()


def _one_level_cross(bj: RandomBlock, bk: RandomBlock, weights: np.ndarray) -> np.ndarray:
    """``Z_j' W Z_k`` as a dense ``(l_j p_j, l_k p_k)`` array when one of the blocks has a
    single level (every entry is then some row's product: the pattern is full)."""
    if bk.n_levels == 1:
        per = grouped_cross_products(bj.codes, bj.n_levels, bj.z, bk.z, weights)
        return per.transpose(2, 0, 1).reshape(bj.size, bk.p)
    per = grouped_cross_products(bk.codes, bk.n_levels, bk.z, bj.z, weights)
    return per.transpose(1, 2, 0).reshape(bj.p, bk.size)


def xy_random_block(
    block: RandomBlock, xy_columns: list[np.ndarray], weights: np.ndarray | None
) -> np.ndarray:
    """``[X y]' W Z_k`` laid out as (m, l * p)."""
    per_level = grouped_cross_products(block.codes, block.n_levels, xy_columns, block.z, weights)
    # (m, p, l) -> (m, l, p), flattened level-major
    m = len(xy_columns)
    return np.ascontiguousarray(per_level.transpose(0, 2, 1)).reshape(m, block.size)


def build_gram(
    blocks: list[RandomBlock], X: np.ndarray, y: np.ndarray, weights: np.ndarray | None
) -> Gram:
    """All cross-product blocks for ``blocks`` (already in engine order) and ``[X y]``.

    ``[X y]`` is never formed: its columns are used one by one.
    """
    diagonal = [grouped_cross_products(b.codes, b.n_levels, b.z, b.z, weights) for b in blocks]
    off = {
        (j, k): _cross_random(blocks[j], blocks[k], weights)
        for j in range(len(blocks))
        for k in range(j)
    }
    columns = [X[:, j] for j in range(X.shape[1])] + [y]
    xy_random = [xy_random_block(b, columns, weights) for b in blocks]
    wX = X if weights is None else X * weights[:, None]
    wy = y if weights is None else y * weights
    p = X.shape[1]
    xy_xy = np.empty((p + 1, p + 1))
    xy_xy[:p, :p] = X.T @ wX
    xy_xy[:p, p] = xy_xy[p, :p] = X.T @ wy
    xy_xy[p, p] = y @ wy
    return Gram(diagonal, off, xy_random, xy_xy)


def is_nested(inner: RandomBlock, outer: RandomBlock) -> bool:
    """True when every level of ``inner`` occurs with a single level of ``outer``."""
    first = np.full(inner.n_levels, -1)
    first[inner.codes] = outer.codes
    return bool(np.all(first[inner.codes] == outer.codes))


def add_grams(a: Gram, b: Gram) -> Gram:
    """The Gram of the stacked rows of two row sets with the same terms (same levels and
    columns): every block is the sum of the two sets' blocks."""
    if len(a.diagonal) != len(b.diagonal) or a.off_diagonal.keys() != b.off_diagonal.keys():
        raise ValueError("the two Grams have different random-effect terms")
    return Gram(
        diagonal=[x + y for x, y in zip(a.diagonal, b.diagonal, strict=True)],
        off_diagonal={
            key: (a.off_diagonal[key] + b.off_diagonal[key]).tocsr() for key in a.off_diagonal
        },
        xy_random=[x + y for x, y in zip(a.xy_random, b.xy_random, strict=True)],
        xy_xy=a.xy_xy + b.xy_xy,
    )


class GramPlan:
    """The structure of ``[Z X y]' W [Z X y]`` for fixed ``Z`` and ``X``, computed once, so
    that the Gram for new weights and a new response is a few bincounts and BLAS products
    through precomputed index maps (a GLMM's scoring steps only reweight).

    For every off-diagonal pair of terms the CSR pattern of ``Z_j' W Z_k`` is fixed here
    (every position some row touches, whatever its weight) together with, for every row
    and every pair of columns ``(a, b)``, the position of its product in the CSR values:
    a refill is one bincount into those values.  ``[X y]' W Z_k`` is one sparse-times-dense
    product with the stored ``Z_k'``.

    Parameters
    ----------
    blocks : list of RandomBlock
        The terms in the engine's order (the order of the Gram's blocks).
    X : ndarray (n, p)
    """

    def __init__(self, blocks: list[RandomBlock], X: np.ndarray):
        self.blocks = list(blocks)
        self.X = np.asarray(X, dtype=float)
        self.n, self.p = self.X.shape
        # per-level products z_a z_b of each term (the weights multiply them per refill)
        self._diagonal_products = []
        for b in self.blocks:
            a_idx, c_idx = np.tril_indices(b.p)
            ones = b.p == 1 and bool(np.all(b.z == 1.0))
            prods = None if ones else b.z[:, a_idx] * b.z[:, c_idx]
            self._diagonal_products.append((a_idx, c_idx, prods))
        self._off: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None, sp.csr_matrix]] = {}
        for j in range(len(self.blocks)):
            for k in range(j):
                self._off[j, k] = self._off_diagonal_plan(self.blocks[j], self.blocks[k])
        # [X y]' W Z_k by one bincount: the flat position (level p + a) m + c of every
        # row's product with column c of [X y]
        m = self.p + 1
        self._xy_keys = []
        for b in self.blocks:
            base = b.codes.astype(np.int64)[:, None] * b.p + np.arange(b.p)  # (n, p)
            keys = (base[:, :, None] * m + np.arange(m)).ravel()
            self._xy_keys.append(keys)
        self._z_ones = [b.p == 1 and bool(np.all(b.z == 1.0)) for b in self.blocks]
        # pairs with a one-level block (a smooth's random part) whose pattern is full: their
        # products are dense per-level cross products (BLAS for two one-level blocks), not
        # bincounts of every row's p_j p_k products
        self._dense_off = {
            key: template.nnz == template.shape[0] * template.shape[1]
            and (self.blocks[key[0]].n_levels == 1 or self.blocks[key[1]].n_levels == 1)
            for key, (_, _, template) in self._off.items()
        }
        self._xy = np.empty((self.n, m))  # [X y], X copied once; a refill writes y
        self._xy[:, : self.p] = self.X
        self._wxy = np.empty((self.n, m))

    def _off_diagonal_plan(self, bj: RandomBlock, bk: RandomBlock):
        """The CSR pattern of ``Z_j' W Z_k`` and, for the rows' products (column pairs
        ``(a, b)`` stacked), their positions in its values."""
        keys = []
        for a in range(bj.p):
            for b in range(bk.p):
                row = bj.codes.astype(np.int64) * bj.p + a
                keys.append(row * bk.size + (bk.codes.astype(np.int64) * bk.p + b))
        keys = np.concatenate(keys)
        unique, positions = np.unique(keys, return_inverse=True)
        rows, cols = unique // bk.size, unique % bk.size
        indptr = np.zeros(bj.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=bj.size), out=indptr[1:])
        index_dtype = np.int32 if max(unique.size, bk.size) < 2**31 else np.int64
        template = sp.csr_matrix(
            (np.zeros(unique.size), cols.astype(index_dtype), indptr.astype(index_dtype)),
            shape=(bj.size, bk.size),
        )
        ones = bj.p == 1 and bk.p == 1 and bool(np.all(bj.z == 1.0) and np.all(bk.z == 1.0))
        if ones:
            products = None
        else:
            products = np.concatenate(
                [bj.z[:, a] * bk.z[:, b] for a in range(bj.p) for b in range(bk.p)]
            )
        return positions.ravel(), products, template

    @property
    def n_rows(self) -> int:
        return self.n

    def off_diagonal_pattern(self, j: int, k: int) -> sp.csr_matrix:
        """The fixed CSR pattern of ``Z_j' W Z_k`` (values of the last refill)."""
        return self._off[j, k][2]

    def gram(self, weights: np.ndarray | None, y: np.ndarray, out: Gram | None = None) -> Gram:
        """The Gram for ``weights`` (None: unit) and response ``y``.

        With ``out`` (a Gram this plan made), its off-diagonal CSR matrices get the new
        values in place (their patterns are this plan's) and the other blocks are replaced
        in its lists: no sparse object is created.
        """
        w = np.ones(self.n) if weights is None else np.asarray(weights, dtype=float)
        diagonal = []
        for b, (a_idx, c_idx, prods) in zip(self.blocks, self._diagonal_products, strict=True):
            if b.n_levels == 1:  # one level: z' W z by BLAS
                diagonal.append(grouped_cross_products(b.codes, 1, b.z, b.z, w))
                continue
            if prods is None:
                diagonal.append(np.bincount(b.codes, weights=w, minlength=b.n_levels)[None, None])
                continue
            d = np.empty((b.p, b.p, b.n_levels))
            for e, (a, c) in enumerate(zip(a_idx, c_idx, strict=True)):
                d[a, c] = np.bincount(b.codes, weights=w * prods[:, e], minlength=b.n_levels)
                if a != c:
                    d[c, a] = d[a, c]
            diagonal.append(d)
        off = {} if out is None else out.off_diagonal
        for key, (positions, prods, template) in self._off.items():
            bj, bk = self.blocks[key[0]], self.blocks[key[1]]
            if self._dense_off[key]:  # the full pattern's values, row-major
                values = _one_level_cross(bj, bk, w).ravel()
            else:
                reps = bj.p * bk.p
                v = np.tile(w, reps) if reps > 1 else w
                if prods is not None:
                    v = v * prods
                values = np.bincount(positions, weights=v, minlength=template.data.size)
            if out is None:
                mat = sp.csr_matrix(
                    (values, template.indices, template.indptr), shape=template.shape, copy=False
                )
                off[key] = mat
            else:
                off[key].data[:] = values
        m = self.p + 1
        xy = self._xy
        xy[:, self.p] = y
        wxy = np.multiply(xy, w[:, None], out=self._wxy)
        xy_random = []
        for b, keys, ones in zip(self.blocks, self._xy_keys, self._z_ones, strict=True):
            if b.n_levels == 1:  # one level: [X y]' W z by BLAS
                xy_random.append(np.ascontiguousarray(wxy.T @ b.z))
                continue
            v = wxy.ravel() if ones else (b.z[:, :, None] * wxy[:, None, :]).ravel()
            sums = np.bincount(keys, weights=v, minlength=b.size * m)
            xy_random.append(np.ascontiguousarray(sums.reshape(b.size, m).T))
        xy_xy = xy.T @ wxy
        xy_xy = 0.5 * (xy_xy + xy_xy.T)
        if out is None:
            return Gram(diagonal, off, xy_random, xy_xy)
        out.diagonal[:] = diagonal
        out.xy_random[:] = xy_random
        out.xy_xy[...] = xy_xy
        return out
