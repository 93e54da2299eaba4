"""Covariance structures of a random-effect term: how theta maps to the relative factor.

A vector random-effect term with ``p`` coefficients per level has covariance
``Sigma = sigma^2 lambda lambda'`` with ``lambda`` a ``p x p`` lower-triangular matrix, the
term's *relative covariance factor*.  A structure says how the term's slice of theta
determines ``lambda``, which values are admissible (bounds), where the optimizer starts,
and how the reported parameters (standard deviations and correlations, as lme4's
``confint`` and the profiles name them) convert to and from theta.

The engine only ever asks a structure for ``lambda`` (or its lower triangle, column by
column: :meth:`CovarianceStructure.lambda_entries`), so a new structure is a new class here
and nothing else.  The first implementations:

* :class:`Unstructured` -- lme4's default: theta is the lower triangle of ``lambda``;
* :class:`Diagonal` -- independent coefficients (lme4's ``||``, glmmTMB's ``diag``):
  ``lambda = diag(theta)``;
* :class:`ScaledIdentity` -- one common variance: ``lambda = theta I_p`` (a penalized
  smooth's random part, glmmTMB's ``homdiag``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cache

import numpy as np


@cache
def lower_triangle_indices(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a lower triangle, column by column (lme4's theta order).

    Cached; the arrays are read-only.
    """
    cols, rows = np.triu_indices(p)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def covariance_to_reported(cov: np.ndarray) -> np.ndarray:
    """Standard deviations on the diagonal and correlations below it, walking the lower
    triangle column by column; a correlation with a zero standard deviation is NaN."""
    sd = np.sqrt(np.maximum(np.diagonal(cov), 0.0))
    rows, cols = lower_triangle_indices(cov.shape[0])
    out = np.empty(rows.size)
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        if r == c:
            out[i] = sd[r]
        else:
            denom = sd[r] * sd[c]
            out[i] = cov[r, c] / denom if denom > 0 else np.nan
    return out


class CovarianceStructure(ABC):
    """The map from a term's theta slice to its relative covariance factor ``lambda``.

    Parameters
    ----------
    p : int
        Coefficients per level of the term.
    """

    short_name: str = ""

    def __init__(self, p: int):
        self.p = int(p)

    # ------------------------------------------------------------------ parameters
    @property
    @abstractmethod
    def n_theta(self) -> int:
        """Length of the term's theta slice."""

    @abstractmethod
    def lower_bounds(self) -> np.ndarray:
        """Lower bound of each theta element (0 for a standard deviation's scale)."""

    def upper_bounds(self) -> np.ndarray:
        """Upper bound of each theta element (none by default)."""
        return np.full(self.n_theta, np.inf)

    @abstractmethod
    def start(self) -> np.ndarray:
        """lme4's start: ``lambda = I``."""

    @abstractmethod
    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        """The ``p x p`` lower-triangular ``lambda`` for this term's theta slice."""

    def lambda_entries(self, theta: np.ndarray) -> np.ndarray:
        """The lower triangle of ``lambda``, column by column (the engine's layout)."""
        return self.lambda_matrix(theta)[lower_triangle_indices(self.p)]

    @abstractmethod
    def theta_from_lambda(self, lam: np.ndarray) -> np.ndarray:
        """Theta whose ``lambda`` is nearest a given lower-triangular factor (used for
        starting values estimated without the structure)."""

    def covariance_basis(self) -> list[np.ndarray] | None:
        """Symmetric ``p x p`` matrices ``G_j`` with ``Sigma = sum_j psi_j G_j`` over the
        structure's covariances (Kenward-Roger's linear parametrization); None when the
        covariances are not a linear family (e.g. AR(1) in its correlation)."""
        return None

    # ------------------------------------------------------------------ reporting
    @abstractmethod
    def reported_names(self, columns: list[str]) -> list[str]:
        """Names of the reported parameters (``sd_<col>``, ``cor_<row>.<col>``), without the
        grouping factor."""

    @abstractmethod
    def reported_values(self, lam: np.ndarray, sigma: float) -> np.ndarray:
        """The reported parameters from ``lambda`` and the residual standard deviation."""

    @abstractmethod
    def theta_from_reported(self, values: np.ndarray, sigma: float) -> np.ndarray | None:
        """Theta from the reported parameters; None when they are not admissible."""

    @abstractmethod
    def reported_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the reported parameters (``sd >= 0``, ``-1 <= cor <= 1``)."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.p))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.p})"


class Unstructured(CovarianceStructure):
    """A general positive semi-definite covariance: theta is the lower triangle of
    ``lambda`` by column, diagonal elements bounded below by 0 (lme4's parametrization)."""

    short_name = "us"

    @property
    def n_theta(self) -> int:
        return self.p * (self.p + 1) // 2

    def lower_bounds(self) -> np.ndarray:
        rows, cols = lower_triangle_indices(self.p)
        return np.where(rows == cols, 0.0, -np.inf)

    def start(self) -> np.ndarray:
        rows, cols = lower_triangle_indices(self.p)
        return (rows == cols).astype(float)

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        lam = np.zeros((self.p, self.p))
        lam[lower_triangle_indices(self.p)] = theta
        return lam

    def lambda_entries(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta, dtype=float)

    def theta_from_lambda(self, lam: np.ndarray) -> np.ndarray:
        return np.asarray(lam, dtype=float)[lower_triangle_indices(self.p)]

    def covariance_basis(self) -> list[np.ndarray]:
        out = []
        for a, b in zip(*lower_triangle_indices(self.p), strict=True):
            e = np.zeros((self.p, self.p))
            e[a, b] = e[b, a] = 1.0
            out.append(e)
        return out

    def reported_names(self, columns: list[str]) -> list[str]:
        rows, cols = lower_triangle_indices(self.p)
        return [
            f"sd_{columns[r]}" if r == c else f"cor_{columns[r]}.{columns[c]}"
            for r, c in zip(rows, cols, strict=True)
        ]

    def reported_values(self, lam: np.ndarray, sigma: float) -> np.ndarray:
        return covariance_to_reported(sigma**2 * (lam @ lam.T))

    def theta_from_reported(self, values: np.ndarray, sigma: float) -> np.ndarray | None:
        if self.p == 1:
            return np.asarray(values, dtype=float) / sigma
        rows, cols = lower_triangle_indices(self.p)
        sd = np.zeros(self.p)
        corr = np.eye(self.p)
        for e, r, c in zip(values, rows, cols, strict=True):
            if r == c:
                sd[r] = e
            else:
                corr[r, c] = corr[c, r] = e
        cov = corr * np.outer(sd, sd) / sigma**2
        try:
            lam = np.linalg.cholesky(cov + 1e-300 * np.eye(self.p))
        except np.linalg.LinAlgError:
            return None
        return lam[rows, cols]

    def reported_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = lower_triangle_indices(self.p)
        diagonal = rows == cols
        return np.where(diagonal, 0.0, -1.0), np.where(diagonal, np.inf, 1.0)


class Diagonal(CovarianceStructure):
    """Independent coefficients with their own variances: ``lambda = diag(theta)``,
    ``theta >= 0`` (lme4's ``(x || g)`` as one term, glmmTMB's ``diag``)."""

    short_name = "diag"

    @property
    def n_theta(self) -> int:
        return self.p

    def lower_bounds(self) -> np.ndarray:
        return np.zeros(self.p)

    def start(self) -> np.ndarray:
        return np.ones(self.p)

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        return np.diag(np.asarray(theta, dtype=float))

    def theta_from_lambda(self, lam: np.ndarray) -> np.ndarray:
        # the standard deviations of lambda lambda' (its row norms), not its diagonal
        return np.sqrt(np.sum(np.asarray(lam, dtype=float) ** 2, axis=1))

    def covariance_basis(self) -> list[np.ndarray]:
        out = []
        for a in range(self.p):
            e = np.zeros((self.p, self.p))
            e[a, a] = 1.0
            out.append(e)
        return out

    def reported_names(self, columns: list[str]) -> list[str]:
        return [f"sd_{c}" for c in columns]

    def reported_values(self, lam: np.ndarray, sigma: float) -> np.ndarray:
        return sigma * np.abs(np.diagonal(lam))

    def theta_from_reported(self, values: np.ndarray, sigma: float) -> np.ndarray | None:
        return np.asarray(values, dtype=float) / sigma

    def reported_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.p), np.full(self.p, np.inf)


class ScaledIdentity(CovarianceStructure):
    """Independent coefficients with one common variance: ``lambda = theta I_p``,
    ``theta >= 0``.  A penalized smooth's random part in the mixed-model form has this
    structure (its penalty is the identity after reparametrization).

    Parameters
    ----------
    p : int
    label : str, optional
        Name of the common standard deviation in reports (``sd_<label>``); the first
        column's name by default.
    """

    short_name = "homdiag"

    def __init__(self, p: int, label: str | None = None):
        super().__init__(p)
        self.label = label

    @property
    def n_theta(self) -> int:
        return 1

    def lower_bounds(self) -> np.ndarray:
        return np.zeros(1)

    def start(self) -> np.ndarray:
        return np.ones(1)

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        return float(np.asarray(theta, dtype=float)[0]) * np.eye(self.p)

    def theta_from_lambda(self, lam: np.ndarray) -> np.ndarray:
        # root mean of the variances of lambda lambda'
        lam = np.asarray(lam, dtype=float)
        return np.array([np.sqrt(np.sum(lam**2) / self.p)])

    def covariance_basis(self) -> list[np.ndarray]:
        return [np.eye(self.p)]

    def reported_names(self, columns: list[str]) -> list[str]:
        return [f"sd_{self.label if self.label is not None else columns[0]}"]

    def reported_values(self, lam: np.ndarray, sigma: float) -> np.ndarray:
        return np.array([sigma * abs(float(lam[0, 0]))])

    def theta_from_reported(self, values: np.ndarray, sigma: float) -> np.ndarray | None:
        return np.asarray(values, dtype=float) / sigma

    def reported_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(1), np.full(1, np.inf)

    def __repr__(self) -> str:
        return f"ScaledIdentity({self.p}, label={self.label!r})"
