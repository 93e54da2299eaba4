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
  smooth's random part, glmmTMB's ``homdiag``);
* :class:`CompoundSymmetry`, :class:`HomogeneousCompoundSymmetry`, :class:`AR1`,
  :class:`Toeplitz` -- standard deviations times a correlation matrix with few parameters
  (glmmTMB's ``cs``, ``homcs``, ``ar1``, ``toep``); ``lambda`` is the semi-definite
  Cholesky factor of the relative covariance.

:data:`STRUCTURES` maps the names a formula uses (``diag(x | g)``) to the classes.
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
    #: ``lambda`` is diagonal whatever theta (the engine's dense path then scales ``Z'Z``
    #: elementwise instead of multiplying by ``Lambda``)
    diagonal: bool = False
    #: fewest coefficients per level the structure means anything with (None: any)
    min_columns: int | None = None
    #: what the structure correlates, for the error when a term has too few columns
    needs: str = ""

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
    diagonal = True

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
    diagonal = True

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


def psd_cholesky(a: np.ndarray) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L' = a`` for a positive *semi*-definite ``a``
    (column by column; a pivot that rounding makes zero or negative gives a zero column,
    the limit of the factors of nearby definite matrices)."""
    a = np.asarray(a, dtype=float)
    p = a.shape[0]
    low = np.zeros((p, p))
    for j in range(p):
        pivot = a[j, j] - low[j, :j] @ low[j, :j]
        if pivot <= 1e-14 * max(a[j, j], 1e-300):
            continue
        low[j, j] = np.sqrt(pivot)
        low[j + 1 :, j] = (a[j + 1 :, j] - low[j + 1 :, :j] @ low[j, :j]) / low[j, j]
    return low


def toeplitz_from_partial(partial: np.ndarray) -> np.ndarray:
    """Autocorrelations at lags ``0 .. m`` of the stationary process with partial
    autocorrelations ``partial`` (``m`` of them, each in [-1, 1]): Durbin-Levinson.  Every
    such vector gives a positive semi-definite Toeplitz matrix, and every positive definite
    one comes from one."""
    acf = [1.0]
    phi = np.zeros(0)
    for k, r in enumerate(np.asarray(partial, dtype=float)):
        # rho_{k+1} = sum_j phi_j rho_{k+1-j} + r (1 - sum_j phi_j rho_j)
        prev = np.array(acf[1:][::-1]) if k else np.zeros(0)
        innovation = 1.0 - float(phi @ np.array(acf[1 : k + 1])) if k else 1.0
        acf.append(float(phi @ prev) + r * innovation if k else r)
        phi = np.append(phi - r * phi[::-1], r)
    return np.array(acf)


def partial_from_toeplitz(acf: np.ndarray) -> np.ndarray | None:
    """Inverse of :func:`toeplitz_from_partial`; None when the autocorrelations are not
    those of a positive definite Toeplitz matrix."""
    acf = np.asarray(acf, dtype=float)
    partial = []
    phi = np.zeros(0)
    variance = 1.0
    for k in range(1, acf.size):
        r = (acf[k] - float(phi @ acf[1:k][::-1])) / variance if variance > 0 else np.nan
        if not np.isfinite(r) or abs(r) > 1.0:
            return None
        partial.append(r)
        phi = np.append(phi - r * phi[::-1], r)
        variance *= 1.0 - r * r
    return np.array(partial)


class _CorrelationStructure(CovarianceStructure):
    """Standard deviations (one common, or one per coefficient) times a correlation matrix
    with few parameters; ``lambda`` is the (semi-definite) Cholesky factor of the
    relative covariance.  theta = relative standard deviations, then the correlation
    parameters (bounded)."""

    homogeneous: bool = False
    correlation_label: str = "cor"

    @property
    def n_sd(self) -> int:
        return 1 if self.homogeneous else self.p

    @property
    @abstractmethod
    def n_correlation(self) -> int: ...

    @abstractmethod
    def correlation_matrix(self, params: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def correlation_bounds(self) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def correlation_from_matrix(self, corr: np.ndarray) -> np.ndarray:
        """Admissible parameters near a full correlation matrix's (for starts)."""

    @abstractmethod
    def reported_correlations(self, params: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def params_from_reported(self, values: np.ndarray) -> np.ndarray | None: ...

    @abstractmethod
    def correlation_names(self) -> list[str]: ...

    @property
    def n_theta(self) -> int:
        return self.n_sd + self.n_correlation

    def _split(self, theta):
        theta = np.asarray(theta, dtype=float)
        sd = np.full(self.p, theta[0]) if self.homogeneous else theta[: self.p]
        return sd, theta[self.n_sd :]

    def lower_bounds(self):
        return np.concatenate([np.zeros(self.n_sd), self.correlation_bounds()[0]])

    def upper_bounds(self):
        return np.concatenate([np.full(self.n_sd, np.inf), self.correlation_bounds()[1]])

    def start(self):
        return np.concatenate([np.ones(self.n_sd), np.zeros(self.n_correlation)])

    def relative_covariance(self, theta) -> np.ndarray:
        sd, params = self._split(theta)
        return self.correlation_matrix(params) * np.outer(sd, sd)

    def lambda_matrix(self, theta):
        return psd_cholesky(self.relative_covariance(theta))

    def theta_from_lambda(self, lam):
        cov = np.asarray(lam, dtype=float) @ np.asarray(lam, dtype=float).T
        sd = np.sqrt(np.maximum(np.diagonal(cov), 0.0))
        safe = np.where(sd > 0, sd, 1.0)
        corr = cov / np.outer(safe, safe)
        sds = np.array([np.sqrt(np.mean(sd**2))]) if self.homogeneous else sd
        return np.concatenate([sds, self.correlation_from_matrix(corr)])

    def reported_names(self, columns):
        sds = [f"sd_{columns[0]}"] if self.homogeneous else [f"sd_{c}" for c in columns]
        return sds + self.correlation_names()

    @abstractmethod
    def correlations_of(self, corr: np.ndarray) -> np.ndarray:
        """The reported correlations read off a correlation matrix of this structure."""

    def reported_values(self, lam, sigma):
        cov = sigma**2 * (np.asarray(lam, dtype=float) @ np.asarray(lam, dtype=float).T)
        sd = np.sqrt(np.maximum(np.diagonal(cov), 0.0))
        sds = np.array([np.sqrt(np.mean(sd**2))]) if self.homogeneous else sd
        if np.any(sd == 0):
            return np.concatenate([sds, np.full(self.n_correlation, np.nan)])
        return np.concatenate([sds, self.correlations_of(cov / np.outer(sd, sd))])

    def theta_from_reported(self, values, sigma):
        values = np.asarray(values, dtype=float)
        params = self.params_from_reported(values[self.n_sd :])
        if params is None:
            return None
        return np.concatenate([values[: self.n_sd] / sigma, params])

    def reported_bounds(self):
        k = self.n_correlation
        return (
            np.concatenate([np.zeros(self.n_sd), np.full(k, -1.0)]),
            np.concatenate([np.full(self.n_sd, np.inf), np.ones(k)]),
        )


class CompoundSymmetry(_CorrelationStructure):
    """A common correlation ``rho`` between all coefficients, a standard deviation per
    coefficient (glmmTMB's ``cs``); ``rho`` in ``[-1 / (p - 1), 1]``."""

    short_name = "cs"
    correlation_label = "cs"

    @property
    def n_correlation(self):
        return 1 if self.p > 1 else 0

    def correlation_matrix(self, params):
        if self.p == 1:
            return np.ones((1, 1))
        rho = float(params[0])
        return np.full((self.p, self.p), rho) + (1.0 - rho) * np.eye(self.p)

    def correlation_bounds(self):
        if self.p == 1:
            return np.zeros(0), np.zeros(0)
        return np.array([-1.0 / (self.p - 1)]), np.array([1.0])

    def correlation_from_matrix(self, corr):
        if self.p == 1:
            return np.zeros(0)
        lo, hi = self.correlation_bounds()
        off = corr[~np.eye(self.p, dtype=bool)].mean()
        return np.clip([off], lo + 1e-3, hi - 1e-3)

    def reported_correlations(self, params):
        return np.asarray(params, dtype=float)

    def correlations_of(self, corr):
        if self.p == 1:
            return np.zeros(0)
        return np.array([corr[~np.eye(self.p, dtype=bool)].mean()])

    def params_from_reported(self, values):
        lo, hi = self.correlation_bounds()
        values = np.asarray(values, dtype=float)
        return values if np.all((values >= lo) & (values <= hi)) else None

    def correlation_names(self):
        return ["cor_cs"] if self.p > 1 else []


class HomogeneousCompoundSymmetry(CompoundSymmetry):
    """Compound symmetry with one common variance (glmmTMB's ``homcs``)."""

    short_name = "homcs"
    homogeneous = True


class AR1(_CorrelationStructure):
    """Correlation ``rho^|i - j|`` between coefficients ``i`` and ``j`` (in column order,
    e.g. the levels of a time factor), one common variance (glmmTMB's ``ar1``)."""

    short_name = "ar1"
    homogeneous = True
    # one column has no correlation: ar1(0 + time | g) with a numeric time would be a
    # random slope on time, not AR(1) (glmmTMB refuses it too)
    min_columns = 2
    needs = "the indicator columns of a time factor, one per time point"

    @property
    def n_correlation(self):
        return 1 if self.p > 1 else 0

    def correlation_matrix(self, params):
        if self.p == 1:
            return np.ones((1, 1))
        lags = np.abs(np.subtract.outer(np.arange(self.p), np.arange(self.p)))
        return float(params[0]) ** lags

    def correlation_bounds(self):
        if self.p == 1:
            return np.zeros(0), np.zeros(0)
        return np.array([-1.0]), np.array([1.0])

    def correlation_from_matrix(self, corr):
        if self.p == 1:
            return np.zeros(0)
        return np.clip([np.mean(np.diagonal(corr, 1))], -0.95, 0.95)

    def reported_correlations(self, params):
        return np.asarray(params, dtype=float)

    def correlations_of(self, corr):
        return np.array([np.mean(np.diagonal(corr, 1))]) if self.p > 1 else np.zeros(0)

    def params_from_reported(self, values):
        values = np.asarray(values, dtype=float)
        return values if np.all(np.abs(values) <= 1.0) else None

    def correlation_names(self):
        return ["cor_ar1"] if self.p > 1 else []


class Toeplitz(_CorrelationStructure):
    """A correlation per lag ``|i - j|`` (a Toeplitz matrix), a standard deviation per
    coefficient (glmmTMB's ``toep``).  The correlations are moved through their partial
    autocorrelations in ``[-1, 1]``, which reach exactly the positive semi-definite
    Toeplitz matrices; reported are the correlations at lags 1 .. p - 1."""

    short_name = "toep"

    @property
    def n_correlation(self):
        return self.p - 1

    def correlation_matrix(self, params):
        acf = toeplitz_from_partial(params)
        lags = np.abs(np.subtract.outer(np.arange(self.p), np.arange(self.p)))
        return acf[lags]

    def correlation_bounds(self):
        return np.full(self.p - 1, -1.0), np.full(self.p - 1, 1.0)

    def correlation_from_matrix(self, corr):
        acf = np.array([1.0] + [np.mean(np.diagonal(corr, k)) for k in range(1, self.p)])
        partial = partial_from_toeplitz(acf)
        if partial is None:
            partial = np.zeros(self.p - 1)
        return np.clip(partial, -0.95, 0.95)

    def reported_correlations(self, params):
        return toeplitz_from_partial(params)[1:]

    def correlations_of(self, corr):
        return np.array([np.mean(np.diagonal(corr, k)) for k in range(1, self.p)])

    def params_from_reported(self, values):
        return partial_from_toeplitz(np.concatenate([[1.0], values]))

    def correlation_names(self):
        return [f"cor_lag{k}" for k in range(1, self.p)]


#: Structures by the name a formula calls them (``diag(x | g)``, glmmTMB's names).
STRUCTURES: dict[str, type[CovarianceStructure]] = {
    "us": Unstructured,
    "diag": Diagonal,
    "cs": CompoundSymmetry,
    "homcs": HomogeneousCompoundSymmetry,
    "ar1": AR1,
    "toep": Toeplitz,
}
