"""Satterthwaite's degrees of freedom for fixed-effect contrasts (lmerTest's method).

With variance parameters ``v = (theta, sigma)``, ``A = 2 H^-1`` their asymptotic covariance
(``H`` the Hessian of the deviance ``-2 log L(theta, sigma)``, REML or ML as fitted, beta
profiled out) and ``C(v) = sigma^2 (R_X'R_X)^-1`` the covariance of beta, a contrast ``l``
has

.. math::

    \\nu = \\frac{2 (l' C l)^2}{g' A g}, \\quad g_i = l' \\frac{\\partial C}{\\partial v_i} l.

The deviance is split as ``f(theta, sigma) = a(theta) + PWRSS(theta) / sigma^2 + d log(2 pi
sigma^2)`` (``a = log|L_Z|^2 (+ log|R_X|^2)``, ``d = n - p`` for REML, ``n`` for ML), so the
``sigma`` rows of ``H`` and of the Jacobian are analytic and only ``theta`` is differenced.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from mixedmodels.core.dense import fixed_covariance, pieces_from_fixed_factor
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.errors import DegenerateFitWarning
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.derivatives import hessian_and_gradient, jacobian, step_sizes


@dataclass(frozen=True)
class VarianceParameterInfo:
    """Everything Satterthwaite's formula needs, computed once per fit."""

    varpar: np.ndarray
    vcov_varpar: np.ndarray  # A
    vcov_beta: np.ndarray  # C
    jacobian: list[np.ndarray]  # dC / dv_i


def _theta_pieces(problem, theta: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(log|L_Z|^2, log|R_X|^2, PWRSS, (R_X'R_X)^-1) at theta, by the model's own path
    (dense, one term, crossed or blocked)."""
    ld_z, r = problem.fixed_factor(theta)
    p = problem.n_fixed
    return (*pieces_from_fixed_factor(ld_z, r, p), fixed_covariance(r, p))


def variance_parameter_info(problem, theta: np.ndarray, sigma: float) -> VarianceParameterInfo:
    """Hessian-based covariance of (theta, sigma) and the derivatives of vcov(beta).

    The Hessian's diagonal, the gradient of PWRSS and the Jacobian of ``(R_X'R_X)^-1``
    are all differenced at the same points ``theta -+ h e_i``; each point is factorized
    once.  Where the model cannot be evaluated next to ``theta`` (a degenerate fit such as
    a residual sd of essentially 0) the covariance is NaN, so every df is NaN, with a
    :class:`DegenerateFitWarning`.

    For a :class:`~mixedmodels.core.residual_problem.ResidualProblem` (a fit with
    ``correlation=`` or a variance function), ``theta`` is the whole optimum ``(theta,
    u_cor, u_var)`` and the structure's parameters join the variance parameters
    (:mod:`mixedmodels.inference.residual_satterthwaite`).
    """
    if isinstance(problem, ResidualProblem):
        from mixedmodels.inference.residual_satterthwaite import (
            residual_variance_parameter_info,
        )

        return residual_variance_parameter_info(problem, theta, sigma)
    try:
        with problem.blas_context():
            return _variance_parameter_info(problem, theta, sigma)
    except NotPositiveDefiniteError:
        warnings.warn(
            "Satterthwaite df cannot be computed: the model cannot be evaluated next to "
            "the estimate (degenerate fit); df and p-values are NaN",
            DegenerateFitWarning,
            stacklevel=3,
        )
        theta = np.asarray(theta, dtype=float)
        _, _, _, unscaled = _theta_pieces(problem, theta)
        k = theta.size + 1
        return VarianceParameterInfo(
            varpar=np.append(theta, sigma),
            vcov_varpar=np.full((k, k), np.nan),
            vcov_beta=sigma**2 * unscaled,
            jacobian=[np.full_like(unscaled, np.nan) for _ in range(k)],
        )


def _variance_parameter_info(problem, theta: np.ndarray, sigma: float) -> VarianceParameterInfo:
    theta = np.asarray(theta, dtype=float)
    reml = problem.reml
    dof = problem.n - problem.n_fixed if reml else problem.n
    s2 = sigma**2
    cache: dict[bytes, tuple[float, float, float, np.ndarray]] = {}

    def pieces(th: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        key = np.asarray(th, dtype=float).tobytes()
        if key not in cache:
            cache[key] = _theta_pieces(problem, th)
        return cache[key]

    def a_plus_scaled_pwrss(th: np.ndarray) -> float:
        ld_z, ld_x, pwrss, _ = pieces(th)
        return ld_z + (ld_x if reml else 0.0) + pwrss / s2

    steps = step_sizes(theta)
    h_theta, _ = hessian_and_gradient(a_plus_scaled_pwrss, theta, steps)
    grad_pwrss = np.array(
        [d[0] for d in jacobian(lambda th: np.array([pieces(th)[2]]), theta, steps)]
    )
    _, _, pwrss0, unscaled0 = pieces(theta)
    k = theta.size
    hess = np.zeros((k + 1, k + 1))
    hess[:k, :k] = h_theta
    hess[:k, k] = hess[k, :k] = -2.0 * grad_pwrss / sigma**3
    hess[k, k] = 6.0 * pwrss0 / sigma**4 - 2.0 * dof / sigma**2
    vcov_varpar = 2.0 * np.linalg.pinv(hess)
    jac = [s2 * d for d in jacobian(lambda th: pieces(th)[3], theta, steps)]
    jac.append(2.0 * sigma * unscaled0)
    return VarianceParameterInfo(
        varpar=np.append(theta, sigma),
        vcov_varpar=vcov_varpar,
        vcov_beta=s2 * unscaled0,
        jacobian=jac,
    )


def contrast_df(info: VarianceParameterInfo, contrast: np.ndarray) -> float:
    """Satterthwaite df of the single contrast ``l' beta``."""
    ell = np.asarray(contrast, dtype=float)
    var = float(ell @ info.vcov_beta @ ell)
    grad = np.array([float(ell @ d @ ell) for d in info.jacobian])
    denom = float(grad @ info.vcov_varpar @ grad)
    if math.isnan(denom):
        return math.nan
    if denom <= 0:
        return math.inf
    return 2.0 * var**2 / denom


def f_test(
    info: VarianceParameterInfo, beta: np.ndarray, L: np.ndarray
) -> tuple[float, float, float]:
    """F statistic, numerator df and Satterthwaite denominator df for ``L beta = 0``.

    Multi-df contrasts as lmerTest: ``L C L' = P D P'``; each eigen-direction gets its own
    df ``nu_i``; with ``E = sum nu_i / (nu_i - 2)`` over ``nu_i > 2`` the denominator df is
    ``2E / (E - q)``.
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    q = L.shape[0]
    vl = L @ info.vcov_beta @ L.T
    eigval, eigvec = np.linalg.eigh(vl)
    rotated = eigvec.T @ L
    est = rotated @ beta
    f = float(np.sum(est**2 / eigval)) / q
    nus = np.array([contrast_df(info, row) for row in rotated])
    if q == 1:
        return f, 1.0, float(nus[0])
    big = nus > 2
    e = float(np.sum(nus[big] / (nus[big] - 2)))
    den = 2 * e / (e - q) if e > q else math.nan
    return f, float(q), den
