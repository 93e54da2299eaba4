"""Numeric description of one random-effect term, as the core sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixedmodels.reterms.structures import (
    CovarianceStructure,
    Unstructured,
    lower_triangle_indices,
)

__all__ = ["RandomBlock", "lower_triangle_indices"]


@dataclass(frozen=True)
class RandomBlock:
    """The rows of ``Z`` belonging to one random-effect term.

    ``Z_k`` has ``l * p`` columns, level-major (level ``i``'s ``p`` columns are adjacent):
    row ``r`` holds ``z[r]`` in the columns of level ``codes[r]`` and zeros elsewhere.
    The relative covariance factor is ``Lambda_k = I_l (x) lambda_k`` with ``lambda_k`` a
    ``p x p`` lower-triangular matrix given by the term's slice of theta through its
    covariance :attr:`structure` (unstructured, lme4's default, unless told otherwise).

    Attributes
    ----------
    codes : ndarray of int, shape (n,)
        Level of each row, in ``0 .. n_levels - 1``.
    n_levels : int
    z : ndarray, shape (n, p)
        The term's model matrix (e.g. a column of ones and ``Days``).
    structure : CovarianceStructure, optional
        How theta maps to ``lambda_k``; :class:`~mixedmodels.core.structures.Unstructured`
        when not given.
    """

    codes: np.ndarray
    n_levels: int
    z: np.ndarray
    structure: CovarianceStructure | None = None

    def __post_init__(self) -> None:
        if self.structure is None:
            object.__setattr__(self, "structure", Unstructured(self.z.shape[1]))
        elif self.structure.p != self.z.shape[1]:
            raise ValueError(
                f"a covariance structure for {self.structure.p} coefficients was given to a "
                f"term with {self.z.shape[1]}"
            )

    @property
    def p(self) -> int:
        return self.z.shape[1]

    @property
    def size(self) -> int:
        """Number of random effects, ``l * p``."""
        return self.n_levels * self.p

    @property
    def n_theta(self) -> int:
        return self.structure.n_theta

    def theta_lower_bounds(self) -> np.ndarray:
        """Lower bounds of this term's theta slice (0 for scales, -inf for the others)."""
        return self.structure.lower_bounds()

    def theta_upper_bounds(self) -> np.ndarray:
        """Upper bounds of this term's theta slice (+inf unless the structure bounds it)."""
        return self.structure.upper_bounds()

    def theta_start(self) -> np.ndarray:
        """lme4's start: identity lambda."""
        return self.structure.start()

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        """The ``p x p`` lower-triangular ``lambda_k`` for this term's theta slice."""
        return self.structure.lambda_matrix(theta)
