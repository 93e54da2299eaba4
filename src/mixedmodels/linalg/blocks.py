"""Block types of the factor ``L`` and the operations the blocked Cholesky needs.

Diagonal blocks of ``L`` are either :class:`BlockDiagonal` (one small ``p x p`` triangle per
level; no fill-in) or :class:`DenseTriangle` (a LAPACK factor, where crossed factors fill the
block in).  Off-diagonal blocks are scipy CSR matrices while sparse, and numpy arrays once a
dense factor has touched them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mixedmodels.linalg import batched

Matrix = np.ndarray | sp.csr_matrix


class NotPositiveDefiniteError(ArithmeticError):
    """A diagonal block lost positive definiteness (round-off at an extreme theta)."""


@dataclass(frozen=True)
class BlockDiagonal:
    """``l`` independent lower-triangular ``p x p`` blocks, stored level-last (p, p, l)."""

    blocks: np.ndarray

    @property
    def size(self) -> int:
        return self.blocks.shape[0] * self.blocks.shape[2]

    def log_det(self) -> float:
        """``log det L`` (half the log determinant of ``L L'``)."""
        return batched.log_diagonal_sum(self.blocks)

    def to_dense(self) -> np.ndarray:
        return block_diagonal_to_dense(self.blocks)


@dataclass(frozen=True)
class DenseTriangle:
    """A dense lower-triangular factor."""

    matrix: np.ndarray

    @property
    def size(self) -> int:
        return self.matrix.shape[0]

    def log_det(self) -> float:
        return float(np.log(np.diagonal(self.matrix)).sum())

    def to_dense(self) -> np.ndarray:
        return self.matrix


DiagonalFactor = BlockDiagonal | DenseTriangle


def block_diagonal_to_dense(blocks: np.ndarray) -> np.ndarray:
    """Dense (l*p, l*p) matrix with the (p, p, l) blocks on its diagonal."""
    p, _, n_levels = blocks.shape
    if p == 1:
        return np.diag(blocks[0, 0])
    out = np.zeros((n_levels, p, n_levels, p))
    idx = np.arange(n_levels)
    out[idx, :, idx, :] = batched.to_level_first(blocks)
    return out.reshape(n_levels * p, n_levels * p)


def block_diagonal_sparse(blocks: np.ndarray) -> sp.csr_matrix:
    """Sparse matrix with the (p, p, l) blocks on its diagonal."""
    p, _, n_levels = blocks.shape
    if p == 1:
        return sp.diags_array(blocks[0, 0]).tocsr()
    bsr = sp.bsr_matrix(
        (batched.to_level_first(blocks), np.arange(n_levels), np.arange(n_levels + 1)),
        shape=(n_levels * p,) * 2,
    )
    return bsr.tocsr()


def diagonal_blocks_of(matrix: Matrix, n_levels: int, p: int) -> np.ndarray:
    """The diagonal ``p x p`` blocks, level-last (p, p, l), of a square matrix."""
    if sp.issparse(matrix):
        coo = matrix.tocoo()
        keep = coo.row // p == coo.col // p
        out = np.zeros((p, p, n_levels))
        np.add.at(out, (coo.row[keep] % p, coo.col[keep] % p, coo.row[keep] // p), coo.data[keep])
        return out
    dense = np.asarray(matrix).reshape(n_levels, p, n_levels, p)
    idx = np.arange(n_levels)
    return batched.to_level_last(dense[idx, :, idx, :])


def product_transposed(a: Matrix, b: Matrix) -> Matrix:
    """``a @ b.T`` keeping sparse x sparse sparse and anything else dense."""
    if sp.issparse(a) and sp.issparse(b):
        return (a @ b.T).tocsr()
    if sp.issparse(a):
        return np.asarray(a @ np.asarray(b).T)
    if sp.issparse(b):
        return np.asarray(b @ a.T).T
    return a @ b.T


def subtract(a: Matrix, b: Matrix) -> Matrix:
    """``a - b`` for any mix of sparse and dense (dense if either is)."""
    if sp.issparse(a) and sp.issparse(b):
        return (a - b).tocsr()
    if sp.issparse(a):
        return a.toarray() - b
    if sp.issparse(b):
        return a - b.toarray()
    return a - b


def factor_diagonal(block: np.ndarray, dense: bool) -> DiagonalFactor:
    """Cholesky factor of a diagonal block given as (p, p, l) blocks or a dense matrix."""
    if not dense:
        low = batched.cholesky(block)
        if not np.all(np.isfinite(low)):
            raise NotPositiveDefiniteError
        return BlockDiagonal(low)
    low, info = sla.lapack.dpotrf(block, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise NotPositiveDefiniteError
    return DenseTriangle(low)


def solve_right_transposed(rhs: Matrix, factor: DiagonalFactor) -> Matrix:
    """``rhs @ inv(L).T`` for a diagonal factor ``L`` (the off-diagonal step of Cholesky)."""
    if isinstance(factor, BlockDiagonal):
        low = factor.blocks
        p, _, n_levels = low.shape
        if sp.issparse(rhs):
            if p == 1:
                return (rhs @ sp.diags_array(1.0 / low[0, 0])).tocsr()
            inv_t = batched.invert_lower(low).transpose(1, 0, 2)
            return (rhs @ block_diagonal_sparse(inv_t)).tocsr()
        m = rhs.shape[0]
        out = batched.solve_right_lower_transposed(rhs.reshape(m, n_levels, p), low)
        return out.reshape(m, n_levels * p)
    dense_rhs = rhs.toarray() if sp.issparse(rhs) else rhs
    return sla.solve_triangular(factor.matrix, dense_rhs.T, lower=True, check_finite=False).T


def solve_lower(factor: DiagonalFactor, rhs: np.ndarray) -> np.ndarray:
    """``inv(L) @ rhs`` for a diagonal factor (rhs dense, (size, k))."""
    if isinstance(factor, BlockDiagonal):
        # inv(L) rhs = (rhs' inv(L)')'
        return solve_right_transposed(np.ascontiguousarray(rhs.T), factor).T
    return sla.solve_triangular(factor.matrix, rhs, lower=True, check_finite=False)


def solve_lower_transposed(factor: DiagonalFactor, rhs: np.ndarray) -> np.ndarray:
    """``inv(L).T @ rhs`` for a diagonal factor (rhs dense, (size, k))."""
    if isinstance(factor, BlockDiagonal):
        low = factor.blocks
        p, _, n_levels = low.shape
        inv = batched.invert_lower(low)  # (p, p, l)
        k = rhs.shape[1]
        r = rhs.reshape(n_levels, p, k)
        return np.einsum("jil,ljk->lik", inv, r).reshape(n_levels * p, k)
    return sla.solve_triangular(factor.matrix, rhs, lower=True, trans=1, check_finite=False)


def matmul(a: Matrix, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with a dense result."""
    return np.asarray(a @ b)


def matmul_transposed_left(a: Matrix, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` with a dense result."""
    return np.asarray(a.T @ b)
