"""Detect and drop linearly dependent fixed-effect columns, as lme4 does."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def independent_columns(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Indices of the columns to keep, scanning left to right as R's ``qr`` does.

    A column is dropped when its distance from the span of the kept columns to its left is
    below ``tol`` times its norm, so the later of two dependent columns goes (lme4 drops
    ``Days2`` from ``Days + Days2`` when ``Days2 = 2 Days``).  The scan runs on the small
    triangular ``R`` of one QR of ``X`` (``R'R = X'X``, same geometry).
    """
    n, p = X.shape
    if p == 0:
        return np.arange(0)
    r = sla.qr(X, mode="r", check_finite=False)[0][: min(n, p)]
    norms = np.linalg.norm(r, axis=0)
    kept: list[int] = []
    for j in range(p):
        if norms[j] == 0:
            continue
        if kept:
            coef, *_ = np.linalg.lstsq(r[:, kept], r[:, j], rcond=None)
            resid = np.linalg.norm(r[:, j] - r[:, kept] @ coef)
        else:
            resid = norms[j]
        if resid > tol * norms[j]:
            kept.append(j)
    return np.array(kept, dtype=int)
