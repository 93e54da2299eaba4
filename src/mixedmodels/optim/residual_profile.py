"""Profile-likelihood intervals for the parameters of a residual correlation structure or
variance function.

For a parameter ``u_k`` on its unconstrained scale, the profiled criterion
``d(v) = min { objective(x) : x_k = v }`` (theta and the other structure parameters
re-optimized, beta and sigma profiled as always) gives the signed root
``zeta(v) = sign(v - u_hat) sqrt(d(v) - d(u_hat))``; the interval's ends are where
``|zeta| = z_{(1 + level) / 2}`` (lme4's definition for its parameters), found by Brent's
method, and reported on the natural scale.  With a fitted-value variance covariate the
covariate is held at its fixed point.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.optim.bobyqa import minimize_bounded

MAX_EXPANSIONS = 12  # the bracket grows by doubling: 2^12 standard errors


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


def profile_interval(
    rp: ResidualProblem, x_hat: np.ndarray, best: float, k: int, se: float, level: float
) -> tuple[float, float]:
    """Ends of the profile interval of coordinate ``k`` (unconstrained scale); +-inf when
    the profile stays below the cut-off however far it goes."""
    z = stats.norm.ppf(0.5 + level / 2)
    centre = float(x_hat[k])
    step = se if np.isfinite(se) and se > 0 else 0.5

    def zeta(v: float) -> float:
        d = max(profiled(rp, x_hat, k, v) - best, 0.0)
        return math.copysign(math.sqrt(d), v - centre) if v != centre else 0.0

    ends = []
    for direction in (-1.0, 1.0):
        inner, width = centre, step
        found = None
        for _ in range(MAX_EXPANSIONS):
            outer = centre + direction * width
            value = zeta(outer)
            if abs(value) >= z:
                found = optimize.brentq(lambda v: abs(zeta(v)) - z, inner, outer, xtol=1e-6)
                break
            inner, width = outer, 2.0 * width
        ends.append(found if found is not None else direction * np.inf)
    return ends[0], ends[1]
