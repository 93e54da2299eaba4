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
    off_diagonal : dict (j, k) -> csr_matrix, j > k
        ``Z_j' W Z_k``.
    xy_random : list of ndarray (m, l_k * p_k)
        ``[X y]' W Z_k`` with ``m = n_fixed + 1``.
    xy_xy : ndarray (m, m)
        ``[X y]' W [X y]``.
    """

    diagonal: list[np.ndarray]
    off_diagonal: dict[tuple[int, int], sp.csr_matrix]
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
    for a, column in enumerate(columns):
        lw = column if weights is None else column * weights
        for b in range(a if symmetric else 0, right.shape[1]):
            out[a, b] = np.bincount(codes, weights=lw * right[:, b], minlength=n_levels)
            if symmetric:
                out[b, a] = out[a, b]
    return out


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
