"""Satterthwaite's degrees of freedom for fits with structured residuals, with the
uncertainty of the correlation and variance-function parameters propagated.

The variance parameters are ``v = (theta, u_cor, u_var, sigma)`` (the structure's
parameters on their unconstrained scales; the df do not depend on the scale, see below).
With ``V(u)`` the residual structure, the whitened problem at ``u`` (rows divided by the
variance function and premultiplied by the correlation's inverse Cholesky factor, see
:class:`~mixedmodels.core.residual_problem.ResidualProblem`) is an ordinary linear mixed
model, so the deviance (REML criterion or -2 log L as fitted, beta profiled out) is

.. math::

    f(\\theta, u, \\sigma) = a(\\theta, u) + \\log|V(u)| + PWRSS(\\theta, u) / \\sigma^2
                             + d \\log(2 \\pi \\sigma^2)

(``a = log|L_Z|^2 (+ log|R_X|^2)`` of the whitened problem, ``d = n - p`` for REML, ``n``
for ML), and ``vcov(beta) = C(v) = sigma^2 (R_X'R_X)^-1`` of the whitened problem.  As in
:mod:`mixedmodels.inference.satterthwaite`, ``A = 2 H^-1`` (``H`` the Hessian of ``f``
over all of ``v``) and ``g_i = l' dC/dv_i l`` give ``nu = 2 (l'Cl)^2 / g'Ag``; the
``sigma`` row and column of ``H`` and ``dC/dsigma`` are analytic, the rest extrapolated
central differences.  ``g'Ag`` is the delta-method variance of ``l'Cl`` and is unchanged
by any smooth one-to-one reparametrization of ``v`` at the optimum, so the df equal those
computed on nlme's or lme4's scales.

A variance function of the fitted values keeps its covariate at the fit's fixed point
(the covariate is not differentiated, as in nlme's ``apVar``).
"""

from __future__ import annotations

import warnings

import numpy as np

from mixedmodels.core.dense import fixed_covariance, pieces_from_fixed_factor
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.errors import DegenerateFitWarning
from mixedmodels.inference.satterthwaite import VarianceParameterInfo
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.derivatives import hessian_and_gradient, jacobian, step_sizes
from mixedmodels.optim.residual import residual_blas
from mixedmodels.optim.residual_profile import per_level

_Pieces = tuple[float, float, float, np.ndarray]


def _single_term_factor(lam: np.ndarray, grams: np.ndarray) -> tuple[float, np.ndarray]:
    """``log|L_Z|^2`` and the lower Cholesky factor of the ``[X y]`` Schur complement of
    one random-effect term from per-level cross products of the whitened ``[z X y]``
    (the algebra of :func:`~mixedmodels.core.residual_heads.single_term_pieces`, which
    returns only the factor's diagonal summaries)."""
    q = lam.shape[0]
    zz, zxy = grams[:, :q, :q], grams[:, :q, q:]
    d = lam.T @ zz @ lam
    d[:, np.arange(q), np.arange(q)] += 1.0
    low = np.linalg.cholesky(d)
    c = np.linalg.solve(low, lam.T @ zxy)
    s = grams[:, q:, q:].sum(axis=0) - np.einsum("lpa,lpb->ab", c, c)
    ld_z = 2.0 * float(np.log(np.diagonal(low, axis1=1, axis2=2)).sum())
    return ld_z, np.linalg.cholesky(s)


def _pieces(rp: ResidualProblem, x: np.ndarray) -> _Pieces:
    """``(log|L_Z|^2 + log|V|, log|R_X|^2, PWRSS, (R_X'R_X)^-1)`` at ``x = (theta, u)``."""
    theta, u_cor, u_var = rp.split(x)
    if per_level(rp):  # one term, levels contiguous: batched per-level algebra
        grams, log_det = rp.level_grams(u_cor, u_var)
        ld_z, r = _single_term_factor(rp.sorted_blocks[0].lambda_matrix(theta), grams)
    else:
        problem, log_det = rp.problem_at(u_cor, u_var)
        ld_z, r = problem.fixed_factor(theta)
    ld_z, ld_x, pwrss = pieces_from_fixed_factor(ld_z, r, rp.n_fixed)
    return ld_z + log_det, ld_x, pwrss, fixed_covariance(r, rp.n_fixed)


def residual_variance_parameter_info(
    rp: ResidualProblem, x: np.ndarray, sigma: float
) -> VarianceParameterInfo:
    """Covariance of ``(theta, u_cor, u_var, sigma)`` and the derivatives of vcov(beta).

    Parameters
    ----------
    rp : ResidualProblem
        The fitted problem (with a fitted-value covariate at its fixed point).
    x : ndarray
        The optimum ``(theta, u_cor, u_var)``.
    sigma : float
        The fitted residual scale.

    Returns
    -------
    VarianceParameterInfo
        ``varpar = (x, sigma)``; NaN covariance (so NaN df) with a
        :class:`DegenerateFitWarning` where the model cannot be evaluated next to ``x``.
    """
    x = np.asarray(x, dtype=float)
    try:
        with residual_blas(rp):
            return _info(rp, x, sigma)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError):
        warnings.warn(
            "Satterthwaite df cannot be computed: the model cannot be evaluated next to "
            "the estimate (degenerate fit); df and p-values are NaN",
            DegenerateFitWarning,
            stacklevel=3,
        )
        unscaled = _pieces(rp, x)[3]
        k = x.size + 1
        return VarianceParameterInfo(
            varpar=np.append(x, sigma),
            vcov_varpar=np.full((k, k), np.nan),
            vcov_beta=sigma**2 * unscaled,
            jacobian=[np.full_like(unscaled, np.nan) for _ in range(k)],
        )


def _info(rp: ResidualProblem, x: np.ndarray, sigma: float) -> VarianceParameterInfo:
    dof = rp.n - rp.n_fixed if rp.reml else rp.n
    s2 = sigma**2
    cache: dict[bytes, _Pieces] = {}

    def pieces(z: np.ndarray) -> _Pieces:
        key = np.asarray(z, dtype=float).tobytes()
        if key not in cache:
            cache[key] = _pieces(rp, z)
        return cache[key]

    def a_plus_scaled_pwrss(z: np.ndarray) -> float:
        ld_zv, ld_x, pwrss, _ = pieces(z)
        return ld_zv + (ld_x if rp.reml else 0.0) + pwrss / s2

    steps = step_sizes(x)
    h_x, _ = hessian_and_gradient(a_plus_scaled_pwrss, x, steps)
    grad_pwrss = np.array([d[0] for d in jacobian(lambda z: np.array([pieces(z)[2]]), x, steps)])
    _, _, pwrss0, unscaled0 = pieces(x)
    k = x.size
    hess = np.zeros((k + 1, k + 1))
    hess[:k, :k] = h_x
    hess[:k, k] = hess[k, :k] = -2.0 * grad_pwrss / sigma**3
    hess[k, k] = 6.0 * pwrss0 / sigma**4 - 2.0 * dof / sigma**2
    vcov_varpar = 2.0 * np.linalg.pinv(hess)
    jac = [s2 * d for d in jacobian(lambda z: pieces(z)[3], x, steps)]
    jac.append(2.0 * sigma * unscaled0)
    return VarianceParameterInfo(
        varpar=np.append(x, sigma),
        vcov_varpar=vcov_varpar,
        vcov_beta=s2 * unscaled0,
        jacobian=jac,
    )
