"""Detect and drop linearly dependent fixed-effect columns, as lme4 does."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as sla

from mixedmodels.errors import RankDeficiencyWarning

_TRTRS = sla.lapack.dtrtrs
_POTRF = sla.lapack.dpotrf

#: the scan's Schur complements are its Cholesky factor's squared pivots: when every
#: squared pivot of the whole scaled Gram matrix exceeds this (1e6 times the scan's
#: threshold ``tol^2`` at the default tol, far beyond the rounding, ~p eps, of either
#: factorization), the scan would keep every column, and is skipped
CLEAR_PIVOT = 1e-8


def independent_columns(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Indices of the columns to keep, scanning left to right as R's ``qr`` does.

    A column is dropped when its distance from the span of the kept columns to its left is
    below ``tol`` times its norm, so the later of two dependent columns goes (lme4 drops
    ``Days2`` from ``Days + Days2`` when ``Days2 = 2 Days``).  The scan is an incremental
    Cholesky of the small Gram matrix ``X'X``: the squared distance of column ``j`` from the
    kept columns is the Schur complement ``G_jj - g' G_kk^-1 g``, compared with
    ``tol^2 G_jj``.  Columns are first scaled to unit norm for accuracy.
    """
    if X.shape[1] == 0:
        return np.arange(0)
    return independent_columns_of_gram(X.T @ X, X.shape[0], tol)


def independent_columns_of_gram(cross: np.ndarray, n: int, tol: float = 1e-7) -> np.ndarray:
    """:func:`independent_columns` from ``X'X`` and the number of rows ``n`` alone (the rows
    need not be in memory)."""
    p = cross.shape[0]
    if p == 0:
        return np.arange(0)
    if _all_clearly_independent(cross, n, tol):
        return np.arange(p)
    norms = np.sqrt(np.maximum(np.diagonal(cross), 0.0))
    scale = np.where(norms > 0, norms, 1.0)
    gram = cross / np.outer(scale, scale)
    kept: list[int] = []
    low = np.zeros((p, p))  # Cholesky factor of gram[kept][:, kept]
    for j in range(p):
        if len(kept) == n:  # n columns span everything: the rest depend on them
            break
        if norms[j] == 0:
            continue
        k = len(kept)
        g = gram[kept, j]
        w = _TRTRS(low[:k, :k], g, lower=1)[0] if k else g  # the factor is triangular
        schur = gram[j, j] - float(w @ w)
        if schur > tol**2 * gram[j, j]:
            low[k, :k] = w
            low[k, k] = np.sqrt(schur)
            kept.append(j)
    return np.array(kept, dtype=int)


def _all_clearly_independent(cross: np.ndarray, n: int, tol: float) -> bool:
    """Whether the scan of :func:`independent_columns_of_gram` would keep every column,
    known without it: no more columns than rows, and the Cholesky factor of the
    unit-diagonal ``X'X`` exists with every squared pivot (the scan's Schur complements)
    above ``max(CLEAR_PIVOT, 1e6 tol^2)`` (one LAPACK call instead of a triangular solve
    per column; NaN or infinite entries fail the tests and go to the scan)."""
    diagonal = cross.diagonal()
    if cross.shape[0] > n or not diagonal.min() > 0:
        return False
    norms = np.sqrt(diagonal)
    low, info = _POTRF(cross / norms / norms[:, None], lower=1, clean=0)
    return info == 0 and bool(low.diagonal().min() ** 2 > max(CLEAR_PIVOT, 1e6 * tol**2))


def dropped_columns(names: list[str], keep: np.ndarray) -> list[str]:
    """The names of the columns not kept, after a warning that names them (lme4's
    "fixed-effect model matrix is rank deficient so dropping ... columns")."""
    kept = set(keep.tolist())
    dropped = [name for i, name in enumerate(names) if i not in kept]
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=4,
        )
    return dropped
