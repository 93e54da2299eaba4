"""Small dense matrices stacked along a leading "level" axis, processed all at once.

A random-effect term with ``p`` coefficients per level gives ``l`` independent ``p x p``
blocks; looping over ``p`` (tiny) with vector operations over ``l`` (large) keeps the work
in numpy's compiled loops.
"""

from __future__ import annotations

import numpy as np


def cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of symmetric positive-definite matrices.

    Parameters
    ----------
    a : ndarray, shape (l, p, p)

    Returns
    -------
    ndarray, shape (l, p, p)
        ``L`` with ``L[i] @ L[i].T == a[i]``; a non-positive pivot gives NaN entries,
        which the caller detects.
    """
    p = a.shape[1]
    if p == 1:
        with np.errstate(invalid="ignore"):
            return np.sqrt(a)
    low = np.zeros_like(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(p):
            head = low[:, j, :j]
            d = np.sqrt(a[:, j, j] - np.einsum("lk,lk->l", head, head))
            low[:, j, j] = d
            if j + 1 < p:
                below = a[:, j + 1 :, j] - np.einsum("lik,lk->li", low[:, j + 1 :, :j], head)
                low[:, j + 1 :, j] = below / d[:, None]
    return low


def log_diagonal_sum(low: np.ndarray) -> float:
    """Sum of the logs of the diagonals of a stack of triangular matrices."""
    return float(np.log(np.diagonal(low, axis1=1, axis2=2)).sum())


def solve_right_lower_transposed(b: np.ndarray, low: np.ndarray) -> np.ndarray:
    """``X`` with ``X[:, i, :] @ low[i].T == b[:, i, :]`` for every level ``i``.

    Parameters
    ----------
    b : ndarray, shape (m, l, p)
    low : ndarray, shape (l, p, p), lower triangular

    Returns
    -------
    ndarray, shape (m, l, p)
    """
    p = low.shape[1]
    if p == 1:
        return b / low[:, 0, :]
    x = np.empty_like(b)
    for j in range(p):
        acc = b[:, :, j]
        if j:
            acc = acc - np.einsum("mlk,lk->ml", x[:, :, :j], low[:, j, :j])
        x[:, :, j] = acc / low[:, j, j]
    return x


def invert_lower(low: np.ndarray) -> np.ndarray:
    """Inverses of a stack of lower-triangular matrices (shape (l, p, p))."""
    p = low.shape[1]
    if p == 1:
        return 1.0 / low
    eye = np.broadcast_to(np.eye(p), low.shape).transpose(1, 0, 2)  # (p, l, p)
    # rows of inv(L)' solve X L' = I, i.e. X = inv(L)'
    return solve_right_lower_transposed(np.ascontiguousarray(eye), low).transpose(1, 2, 0)


def congruence(lam: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``lam.T @ a[i] @ lam`` for every level (lam: (p, p), a: (l, p, p))."""
    if lam.shape[0] == 1:
        return a * (lam[0, 0] ** 2)
    return lam.T @ a @ lam
