"""Coding matrices of factors, as R's ``contr.*`` functions make them, with R's names.

A factor with ``k`` levels is coded by a ``k x c`` matrix: its row for a level is that
level's values in the model matrix.  Indicator coding is the identity (``c = k``); contrasts
have ``c = k - 1`` columns:

* treatment: indicators of levels 2..k (named by the level);
* sum: ``e_j`` for levels 1..k-1, ``-1`` everywhere on level k (named ``1..k-1``);
* helmert: column ``j`` is ``-1`` on levels ``1..j``, ``j`` on level ``j + 1`` (``1..k-1``);
* poly: orthonormal polynomials of degree 1..k-1 on the scores 1..k (``.L .Q .C ^4 ...``).
"""

from __future__ import annotations

import numpy as np

from mixedmodels.errors import ArgumentError

CODINGS = ("treatment", "sum", "helmert", "poly")


def orthogonal_polynomials(
    x: np.ndarray, degree: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R's ``poly(x, degree)``: orthonormal polynomials, computed as R computes them.

    With ``c = x - mean(x)`` and ``X = [c^0 ... c^degree] = QR``, the monic orthogonal
    polynomials are ``Z = Q diag(R)``; the columns are ``Z_j / ||Z_j||``, ``j = 1..degree``.
    They satisfy ``P_{j+1} = (x - a_j) P_j - (n_j / n_{j-1}) P_{j-1}`` with
    ``a_j = sum(x P_j^2) / n_j`` and ``n_j = sum(P_j^2)``, which new ``x`` use.

    Returns
    -------
    (columns, alpha, norm2)
        ``alpha`` (length ``degree``) and ``norm2`` (length ``degree + 2``, R's layout
        ``1, n_0, n_1, ...``) re-create the columns for new ``x``
        (:func:`polynomials_from`).
    """
    x = np.asarray(x, dtype=float)
    mean = float(np.mean(x))
    centred = x - mean
    powers = centred[:, None] ** np.arange(degree + 1)[None, :]
    q, r = np.linalg.qr(powers)
    z = q * np.diag(r)[None, :]
    norms = np.sum(z * z, axis=0)
    alpha = (np.sum(centred[:, None] * z * z, axis=0) / norms + mean)[:degree]
    norm2 = np.concatenate([[1.0], norms])
    return z[:, 1:] / np.sqrt(norms[1:]), alpha, norm2


def polynomials_from(x: np.ndarray, alpha: np.ndarray, norm2: np.ndarray) -> np.ndarray:
    """The columns of :func:`orthogonal_polynomials` for new ``x`` (R's ``predict.poly``)."""
    x = np.asarray(x, dtype=float)
    degree = len(alpha)
    previous = np.zeros_like(x)
    current = np.ones_like(x)
    columns = np.empty((len(x), degree))
    for j in range(degree):
        following = (x - alpha[j]) * current - (norm2[j + 1] / norm2[j]) * previous
        previous, current = current, following
        columns[:, j] = current
    return columns / np.sqrt(norm2[2:])


def _poly_suffixes(count: int) -> list[str]:
    named = [".L", ".Q", ".C"]
    return [named[j] if j < 3 else f"^{j + 1}" for j in range(count)]


def coding_matrix(kind: str, levels: list[str]) -> tuple[np.ndarray, list[str]]:
    """The ``k x c`` coding matrix of ``kind`` ("indicator" or one of :data:`CODINGS`)
    and R's suffixes of its columns."""
    k = len(levels)
    if kind == "indicator":
        return np.eye(k), list(levels)
    if kind == "treatment":
        return np.eye(k)[:, 1:], list(levels[1:])
    if kind == "sum":
        mat = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
        return mat, [str(j + 1) for j in range(k - 1)]
    if kind == "helmert":
        mat = np.zeros((k, k - 1))
        for j in range(k - 1):
            mat[: j + 1, j] = -1.0
            mat[j + 1, j] = j + 1.0
        return mat, [str(j + 1) for j in range(k - 1)]
    if kind == "poly":
        columns, _, _ = orthogonal_polynomials(np.arange(1.0, k + 1.0), k - 1)
        return columns, _poly_suffixes(k - 1)
    raise ArgumentError(f"unknown coding {kind!r}; use one of {', '.join(CODINGS)}")
