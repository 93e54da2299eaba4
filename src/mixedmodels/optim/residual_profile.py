"""The numeric pieces of profiles of fits with structured residuals.

:func:`profiled`: the criterion minimized with one coordinate of ``(theta, u_cor, u_var)``
held (beta and sigma profiled out); :func:`explicit_deviance`: the criterion at a given
sigma; :func:`with_fixed_value`: the problem with one fixed effect held.  The profiles
themselves (lme4's zeta and interval ends over every parameter) are built from them in
:mod:`mixedmodels.inference.residual_profile`.  A fitted-value variance covariate is held
at its fixed point throughout.
"""

from __future__ import annotations

import math

import numpy as np

from mixedmodels.core.residual_heads import single_term_pieces
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.bobyqa import minimize_bounded


def profiled(rp: ResidualProblem, x_hat: np.ndarray, k: int, value: float) -> float:
    """``min objective`` with coordinate ``k`` held at ``value`` (warm start at the optimum)."""
    free = np.ones(x_hat.size, dtype=bool)
    free[k] = False
    lower = rp.lower_bounds()[free]
    upper = rp.upper_bounds()[free]

    def f(z: np.ndarray) -> float:
        x = x_hat.copy()
        x[free] = z
        x[k] = value
        return rp.objective(x)

    if not free.any():
        return f(np.zeros(0))
    start = np.clip(x_hat[free], lower, upper)
    steps = np.maximum(0.1 * np.abs(start), 0.02)
    result = minimize_bounded(f, start, lower, upper=upper, ftol_abs=1e-10, initial_step=steps)
    return result.fun


LOG_2PI = math.log(2 * math.pi)
BIG = 1e100  # the deviance where the model cannot be evaluated


def explicit_deviance(rp: ResidualProblem, x: np.ndarray, sigma: float) -> float:
    """REML criterion or deviance at ``(theta, u_cor, u_var)`` and a given ``sigma`` (beta
    profiled out): ``a + log|V| + PWRSS / sigma^2 + d log(2 pi sigma^2)``, equal to
    ``rp.objective(x)`` at ``sigma^2 = PWRSS / d``; :data:`BIG` where it cannot be
    evaluated."""
    if not (sigma > 0 and math.isfinite(sigma)):
        return BIG
    theta, u_cor, u_var = rp.split(x)
    try:
        if per_level(rp):  # one term, levels contiguous: the objective's batched path
            grams, log_det = rp.level_grams(u_cor, u_var)
            lam = rp.sorted_blocks[0].lambda_matrix(theta)
            ld_z, ld_x, pwrss = single_term_pieces(lam, grams, rp.n_fixed)
        else:
            problem, log_det = rp.problem_at(u_cor, u_var)
            ld_z, ld_x, pwrss = problem.pieces(theta)
    except (np.linalg.LinAlgError, NotPositiveDefiniteError):
        return BIG
    d = rp.n - rp.n_fixed if rp.reml else rp.n
    out = ld_z + log_det + pwrss / sigma**2 + d * (LOG_2PI + 2.0 * math.log(sigma))
    out = out + ld_x if rp.reml else out
    return float(out) if math.isfinite(out) else BIG


def per_level(rp: ResidualProblem) -> bool:
    """Whether :meth:`ResidualProblem.level_grams` applies: one random-effect term whose
    levels are all present and contiguous in the sorted rows."""
    if len(rp.sorted_blocks) != 1:
        return False
    codes = rp.sorted_blocks[0].codes
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1])
    n_levels = rp.sorted_blocks[0].n_levels
    return starts.size == n_levels and bool(np.all(codes[starts] == np.arange(n_levels)))


def with_fixed_value(rp: ResidualProblem, j: int, value: float) -> ResidualProblem:
    """The same problem with ``beta_j`` held at ``value``: column ``j`` moved into the
    offset (a fitted-value variance covariate stays where it is)."""
    keep = np.arange(rp.n_fixed) != j
    X = rp.unsort(rp.X[:, keep])
    y = rp.unsort(rp.y - value * rp.X[:, j])
    values = {name: rp.unsort(v) for name, v in rp.values.items()}
    return ResidualProblem(
        rp.blocks,
        X,
        y,
        rp.layout,
        rp.correlation,
        rp.variance,
        values,
        rp.reml,
        rp.group_label,
    )
