"""Detect and drop linearly dependent fixed-effect columns, as lme4 does."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def independent_columns(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Indices (in original order) of a maximal set of linearly independent columns.

    Pivoted QR; a column is kept when ``|R_ii| > tol * |R_11|`` (lme4's rank tolerance).
    """
    if X.shape[1] == 0:
        return np.arange(0)
    _, r, piv = sla.qr(X, mode="economic", pivoting=True)
    diag = np.abs(np.diagonal(r))
    if diag.size == 0 or diag[0] == 0:
        return np.arange(0)
    rank = int(np.sum(diag > tol * diag[0]))
    return np.sort(piv[:rank])
