"""Simulating data from a mixed model written out in its parameters.

For cluster ``c`` with rows ``i``:

.. math::

    y_{ci} = x_{ci}' \\beta + z_{ci}' \\gamma_c + e_{ci}, \\quad
    \\gamma_c \\sim N(0, D), \\quad D = S R S, \\quad e_{ci} \\sim N(0, \\sigma^2)

with ``S = diag(re_sd)`` and ``R`` the random-effect correlation matrix; ``z`` holds the
intercept and the first ``len(re_sd) - 1`` covariates.  In matrix form
``y = X beta + Z gamma + e`` (the tutorial's models 3a/3b).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mixedmodels.errors import SimulationError


@dataclass(frozen=True)
class SimulationParts:
    """The matrix form of a simulated data set: ``y = X beta + Z gamma + e``."""

    X: np.ndarray
    Z: sp.csc_matrix
    beta: np.ndarray
    gamma: np.ndarray  # (n_clusters, n_random)
    e: np.ndarray
    D: np.ndarray  # random-effect covariance


def _correlation_matrix(re_cor, k: int) -> np.ndarray:
    if re_cor is None:
        return np.eye(k)
    if np.isscalar(re_cor):
        r = float(re_cor)
        if not -1.0 <= r <= 1.0:
            raise SimulationError(f"correlation must lie in [-1, 1], got {r}")
        mat = np.full((k, k), r)
        np.fill_diagonal(mat, 1.0)
    else:
        mat = np.asarray(re_cor, dtype=float)
        if mat.shape != (k, k):
            raise SimulationError(f"re_cor must be {k} x {k} for {k} random effects")
        if np.any(np.abs(mat) > 1.0) or not np.allclose(mat, mat.T):
            raise SimulationError("re_cor must be symmetric with entries in [-1, 1]")
    if np.linalg.eigvalsh(mat).min() < -1e-12:
        raise SimulationError("re_cor is not a valid (positive semi-definite) correlation matrix")
    return mat


def _cluster_sizes(n_clusters: int, cluster_size, rng: np.random.Generator) -> np.ndarray:
    if callable(cluster_size):
        sizes = np.asarray(cluster_size(rng, n_clusters), dtype=int)
    elif np.isscalar(cluster_size):
        sizes = np.full(n_clusters, int(cluster_size))
    else:
        sizes = np.asarray(cluster_size, dtype=int)
    if sizes.shape != (n_clusters,) or np.any(sizes < 1):
        raise SimulationError("cluster sizes must be positive, one per cluster")
    return sizes


def simulate_mixed(
    n_clusters: int,
    cluster_size: int | Sequence[int] | Callable = 5,
    *,
    fixed: Sequence[float] = (3.0, 0.75),
    re_sd: Sequence[float] = (0.5,),
    re_cor: float | np.ndarray | None = None,
    sigma: float = 1.0,
    covariates: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    seed: int | np.random.Generator | None = None,
    return_parts: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, SimulationParts]:
    """Draw a data set from a linear mixed model given by its parameters.

    The defaults are the tutorial's setup: 50 clusters of 5 (pass ``n_clusters=50``),
    intercept 3, slope 0.75, random-intercept sd 0.5, residual sd 1.

    Parameters
    ----------
    n_clusters : int
    cluster_size : int, sequence of int, or callable ``(rng, n_clusters) -> sizes``
        Equal or unequal cluster sizes.
    fixed : sequence of float
        Intercept followed by one slope per covariate.
    re_sd : sequence of float
        Standard deviations of the random intercept and of random slopes of the first
        ``len(re_sd) - 1`` covariates.
    re_cor : float or matrix, optional
        Correlation of the random effects (a scalar for all pairs).
    sigma : float
        Residual standard deviation.
    covariates : callable ``(rng, n) -> array (n, k)``, optional
        Covariate generator; standard normal by default.
    seed : int or numpy Generator
    return_parts : bool
        Also return X, Z, gamma and e.

    Returns
    -------
    DataFrame with columns ``y``, ``x1..xk`` (``x`` when k = 1) and ``cluster``
    (categorical); with ``return_parts`` a (DataFrame, SimulationParts) pair.
    """
    if int(n_clusters) < 1:
        raise SimulationError(f"n_clusters must be at least 1, got {n_clusters}")
    re_sd = np.asarray(re_sd, dtype=float)
    if np.any(re_sd < 0):
        raise SimulationError(f"random-effect standard deviations must be >= 0, got {re_sd}")
    if sigma < 0:
        raise SimulationError(f"sigma must be >= 0, got {sigma}")
    beta = np.asarray(fixed, dtype=float)
    k = beta.size - 1
    if re_sd.size - 1 > k:
        raise SimulationError("more random slopes than covariates")
    rng = np.random.default_rng(seed)
    sizes = _cluster_sizes(int(n_clusters), cluster_size, rng)
    n = int(sizes.sum())
    cluster = np.repeat(np.arange(int(n_clusters)), sizes)
    if k:
        x = (
            rng.standard_normal((n, k))
            if covariates is None
            else np.asarray(covariates(rng, n), dtype=float).reshape(n, k)
        )
    else:
        x = np.empty((n, 0))
    X = np.column_stack([np.ones(n), x])
    q = re_sd.size
    D = np.outer(re_sd, re_sd) * _correlation_matrix(re_cor, q)
    gamma = rng.multivariate_normal(np.zeros(q), D, size=int(n_clusters), method="eigh")
    zcols = X[:, :q]
    rows = np.repeat(np.arange(n), q)
    cols = (cluster[:, None] * q + np.arange(q)[None, :]).ravel()
    Z = sp.csc_matrix((zcols.ravel(), (rows, cols)), shape=(n, int(n_clusters) * q))
    e = rng.standard_normal(n) * sigma
    y = X @ beta + Z @ gamma.ravel() + e
    names = ["x"] if k == 1 else [f"x{j + 1}" for j in range(k)]
    frame = pd.DataFrame({"y": y, **{nm: x[:, j] for j, nm in enumerate(names)}})
    frame["cluster"] = pd.Categorical(cluster + 1)
    if return_parts:
        return frame, SimulationParts(X=X, Z=Z, beta=beta, gamma=gamma, e=e, D=D)
    return frame
