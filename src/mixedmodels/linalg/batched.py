"""Small dense matrices stacked along a trailing "level" axis, processed all at once.

A random-effect term with ``p`` coefficients per level gives ``l`` independent ``p x p``
blocks.  They are stored level-last, shape ``(p, p, l)``, so that element ``[i, j]`` of every
block is one contiguous vector; looping over ``p`` (tiny) with vector operations over ``l``
(large) keeps the work in numpy's fast contiguous loops.  Stacked ``matmul`` on tiny
matrices is an order of magnitude slower.
"""

from __future__ import annotations

import numpy as np


def cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of stacked symmetric positive-definite matrices.

    Parameters
    ----------
    a : ndarray, shape (p, p, l)

    Returns
    -------
    ndarray, shape (p, p, l)
        ``L`` with ``L L' = a`` for each level; a non-positive pivot gives NaN entries,
        which the caller detects.
    """
    p = a.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        if p == 1:
            return np.sqrt(a)
        low = np.zeros_like(a)
        for j in range(p):
            acc = a[j, j].copy()
            for k in range(j):
                acc -= low[j, k] * low[j, k]
            d = np.sqrt(acc)
            low[j, j] = d
            for i in range(j + 1, p):
                acc = a[i, j].copy()
                for k in range(j):
                    acc -= low[i, k] * low[j, k]
                low[i, j] = acc / d
    return low


def log_diagonal_sum(low: np.ndarray) -> float:
    """Sum of the logs of the diagonals of stacked triangular matrices (p, p, l)."""
    return float(sum(np.log(low[j, j]).sum() for j in range(low.shape[0])))


def solve_right_lower_transposed(b: np.ndarray, low: np.ndarray) -> np.ndarray:
    """``X`` with ``X[:, i, :] @ L_i' == b[:, i, :]`` for every level ``i``.

    Parameters
    ----------
    b : ndarray, shape (m, l, p)
    low : ndarray, shape (p, p, l), lower triangular

    Returns
    -------
    ndarray, shape (m, l, p)
    """
    p = low.shape[0]
    if p == 1:
        return b / low[0, 0][:, None]
    x = np.empty_like(b)
    for j in range(p):
        acc = b[:, :, j].copy()
        for k in range(j):
            acc -= x[:, :, k] * low[j, k]
        x[:, :, j] = acc / low[j, j]
    return x


def invert_lower(low: np.ndarray) -> np.ndarray:
    """Inverses of stacked lower-triangular matrices (p, p, l)."""
    p = low.shape[0]
    if p == 1:
        return 1.0 / low
    inv = np.zeros_like(low)
    for j in range(p):
        inv[j, j] = 1.0 / low[j, j]
        for i in range(j + 1, p):
            acc = np.zeros_like(low[0, 0])
            for k in range(j, i):
                acc -= low[i, k] * inv[k, j]
            inv[i, j] = acc / low[i, i]
    return inv


def congruence(lam: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``lam' a_i lam`` for every level (lam: (p, p) lower triangular, a: (p, p, l))."""
    p = lam.shape[0]
    if p == 1:
        return a * (lam[0, 0] ** 2)
    t = np.zeros_like(a)  # a @ lam
    for j in range(p):
        for k in range(j, p):
            if lam[k, j] != 0.0:
                t[:, j] += a[:, k] * lam[k, j]
    out = np.zeros_like(a)  # lam' @ t
    for i in range(p):
        for k in range(i, p):
            if lam[k, i] != 0.0:
                out[i] += lam[k, i] * t[k]
    return out


def right_multiply(b: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``b[:, i, :] @ lam`` for every level (b: (m, l, p), lam: (p, p) lower triangular)."""
    swapped = right_multiply_component_major(b.transpose(0, 2, 1), lam)
    return swapped.transpose(0, 2, 1)


def to_level_first(blocks: np.ndarray) -> np.ndarray:
    """(p, p, l) -> (l, p, p)."""
    return np.ascontiguousarray(blocks.transpose(2, 0, 1))


def to_level_last(blocks: np.ndarray) -> np.ndarray:
    """(l, p, p) -> (p, p, l)."""
    return np.ascontiguousarray(blocks.transpose(1, 2, 0))


def right_multiply_component_major(b: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``b_i @ lam`` for every level with ``b`` stored component-major, shape (m, p, l)."""
    p = lam.shape[0]
    if p == 1:
        return b * lam[0, 0]
    out = np.zeros_like(b)
    for j in range(p):
        for k in range(j, p):
            if lam[k, j] != 0.0:
                out[:, j] += b[:, k] * lam[k, j]
    return out


def solve_right_lower_transposed_component_major(b: np.ndarray, low: np.ndarray) -> np.ndarray:
    """As :func:`solve_right_lower_transposed` with ``b`` and the result shaped (m, p, l):
    every slice ``[:, j, :]`` is contiguous over the levels."""
    p = low.shape[0]
    x = np.empty_like(b)
    for j in range(p):
        acc = b[:, j].copy()
        for k in range(j):
            acc -= x[:, k] * low[j, k]
        x[:, j] = acc / low[j, j]
    return x
