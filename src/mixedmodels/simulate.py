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

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mixedmodels.arguments import random_generator
from mixedmodels.errors import MixedModelsError, SimulationError


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
        r = float(_numbers(re_cor, "re_cor")[0])
        if not -1.0 <= r <= 1.0:
            raise SimulationError(f"correlation must lie in [-1, 1], got {r}")
        mat = np.full((k, k), r)
        np.fill_diagonal(mat, 1.0)
    else:
        mat = _numbers(np.ravel(re_cor), "re_cor")
        if mat.size != k * k:
            raise SimulationError(f"re_cor must be {k} x {k} for {k} random effects")
        mat = mat.reshape(np.shape(re_cor))
        if mat.shape != (k, k):
            raise SimulationError(f"re_cor must be {k} x {k} for {k} random effects")
        if np.any(np.abs(mat) > 1.0) or not np.allclose(mat, mat.T):
            raise SimulationError("re_cor must be symmetric with entries in [-1, 1]")
    if np.linalg.eigvalsh(mat).min() < -1e-12:
        raise SimulationError("re_cor is not a valid (positive semi-definite) correlation matrix")
    return mat


def _count(value: object, name: str) -> int:
    """A positive whole number (a whole float such as ``5.0`` too)."""
    ok = (
        isinstance(value, (numbers.Real, np.number))
        and not isinstance(value, (bool, np.bool_))
        and np.isfinite(float(value))
        and float(value).is_integer()
    )
    if not ok or int(value) < 1:
        raise SimulationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _numbers(value: object, name: str) -> np.ndarray:
    """Finite numbers as a float array."""
    try:
        out = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError) as exc:
        raise SimulationError(f"{name} must be numbers, got {value!r}") from exc
    if out.ndim != 1 or not np.isfinite(out).all():
        raise SimulationError(f"{name} must be finite numbers, got {value!r}")
    return out


def _cluster_sizes(n_clusters: int, cluster_size, rng: np.random.Generator) -> np.ndarray:
    if callable(cluster_size):
        drawn = cluster_size(rng, n_clusters)
        values = _numbers(drawn, "cluster_size(rng, n_clusters)")
    elif np.isscalar(cluster_size):
        values = np.full(n_clusters, _count(cluster_size, "cluster_size"))
    else:
        values = _numbers(cluster_size, "cluster_size")
    if values.shape != (n_clusters,) or np.any(values < 1) or np.any(values != np.round(values)):
        raise SimulationError(
            f"cluster sizes must be positive integers, one per cluster ({n_clusters})"
        )
    return values.astype(int)


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
    n_clusters = _count(n_clusters, "n_clusters")
    re_sd = _numbers(re_sd, "re_sd (random-effect standard deviations)")
    if np.any(re_sd < 0):
        raise SimulationError(f"random-effect standard deviations must be >= 0, got {re_sd}")
    sigma_values = _numbers(sigma, "sigma")
    if sigma_values.size != 1 or sigma_values[0] < 0:
        raise SimulationError(f"sigma must be a number >= 0, got {sigma!r}")
    sigma = float(sigma_values[0])
    beta = _numbers(fixed, "fixed")
    k = beta.size - 1
    if re_sd.size - 1 > k:
        raise SimulationError("more random slopes than covariates")
    if covariates is not None and not callable(covariates):
        raise SimulationError("covariates must be a function (rng, n) -> array (n, k)")
    try:
        rng = random_generator(seed)
    except MixedModelsError as exc:
        raise SimulationError(str(exc)) from exc
    sizes = _cluster_sizes(n_clusters, cluster_size, rng)
    n = int(sizes.sum())
    cluster = np.repeat(np.arange(int(n_clusters)), sizes)
    if k and covariates is None:
        x = rng.standard_normal((n, k))
    elif k:
        x = _numbers(np.ravel(covariates(rng, n)), "covariates(rng, n)")
        if x.size != n * k:
            raise SimulationError(f"covariates(rng, n) must return an array ({n}, {k})")
        x = x.reshape(n, k)
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
