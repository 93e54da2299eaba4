"""The fitted-value variance covariate's fixed point (optim/residual.py).

BodyWeight with ``varPower()`` (nlme's default covariate, the fitted values): at the
returned optimum, holding the covariate at the optimum's own fitted values and searching
again to 1e-12 must not move the estimates (the definition of the fixed point nlme
iterates to).  Tolerance 1e-4 relative on every parameter, a tenth of the agreement
tests' 1e-3: the loop stops when the fitted values change by less than 1e-7 relative
(FITTED_TOLERANCE) and BOBYQA's own stopping noise along the flat off-diagonal entry of
theta is about 1e-5 relative (measured 1.8e-5 REML, 3.6e-5 ML); a loop stopped at 1e-3
misses by more than 1e-4.  The evaluation count is
bounded at 200 (304 REML / 341 ML before the graded search accuracies; 107-130 now).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.optim.bobyqa import minimize_bounded
from mixedmodels.optim.residual import fitted_sorted, solve_residual


@pytest.mark.parametrize("reml", [True, False])
def test_bodyweight_varpower_is_a_fixed_point(reml):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer(
            "weight ~ Time * Diet + (Time | Rat)",
            mm.datasets.load("BodyWeight"),
            reml=reml,
            weights=mm.var.Power(),
        )
    rp = fit.residual_problem
    x = fit.optimum_parameters
    _, solution, _ = solve_residual(rp, x)
    rp.with_fitted(fitted_sorted(rp, solution))
    z = rp.to_internal(x)
    again = minimize_bounded(
        rp.internal_objective,
        z,
        rp.lower_bounds(),
        upper=rp.upper_bounds(),
        ftol_abs=1e-12,
        xtol_abs=1e-12,
        initial_step=np.maximum(0.005 * np.abs(z), 1e-4),
    )
    moved = rp.from_internal(again.x)
    np.testing.assert_allclose(moved, x, rtol=1e-4, atol=1e-7)
    assert fit.n_evaluations < 200
