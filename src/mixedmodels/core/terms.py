"""Numeric description of one random-effect term, as the core sees it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True)
class RandomBlock:
    """The rows of ``Z`` belonging to one random-effect term.

    ``Z_k`` has ``l * p`` columns, level-major (level ``i``'s ``p`` columns are adjacent):
    row ``r`` holds ``z[r]`` in the columns of level ``codes[r]`` and zeros elsewhere.
    The relative covariance factor is ``Lambda_k = I_l (x) lambda_k`` with ``lambda_k`` a
    ``p x p`` lower-triangular matrix whose column-wise lower triangle is this term's slice
    of theta.

    Attributes
    ----------
    codes : ndarray of int, shape (n,)
        Level of each row, in ``0 .. n_levels - 1``.
    n_levels : int
    z : ndarray, shape (n, p)
        The term's model matrix (e.g. a column of ones and ``Days``).
    """

    codes: np.ndarray
    n_levels: int
    z: np.ndarray

    @property
    def p(self) -> int:
        return self.z.shape[1]

    @property
    def size(self) -> int:
        """Number of random effects, ``l * p``."""
        return self.n_levels * self.p

    @property
    def n_theta(self) -> int:
        return self.p * (self.p + 1) // 2

    def theta_lower_bounds(self) -> np.ndarray:
        """0 for diagonal elements of lambda, -inf for the others (column-wise order)."""
        rows, cols = lower_triangle_indices(self.p)
        return np.where(rows == cols, 0.0, -np.inf)

    def theta_start(self) -> np.ndarray:
        """lme4's start: identity lambda."""
        rows, cols = lower_triangle_indices(self.p)
        return (rows == cols).astype(float)

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        """The ``p x p`` lower-triangular ``lambda_k`` for this term's theta slice."""
        lam = np.zeros((self.p, self.p))
        lam[lower_triangle_indices(self.p)] = theta
        return lam


@cache
def lower_triangle_indices(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a lower triangle, column by column (lme4's theta order).

    Cached; the arrays are read-only.
    """
    cols, rows = np.triu_indices(p)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols
