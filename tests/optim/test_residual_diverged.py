"""A fitted-value variance function whose fixed point runs off (compound symmetry within a
random intercept's groups, which the random effects already describe, with varPower or
varExp of the fitted values on BodyWeight): the searches end where nothing can be
factored.  The last objective was then evaluated outside the package's error handling and
numpy's LinAlgError reached the user; now a ConvergenceError that says what diverged."""

from __future__ import annotations

import warnings

import pytest

import mixedmodels as mm
from mixedmodels.errors import ConvergenceError


@pytest.mark.parametrize(
    ("formula", "reml", "variance"),
    [
        ("weight ~ Time + (1 | Rat)", False, mm.var.Power),
        ("weight ~ Time + (Time | Rat)", True, mm.var.Exp),
    ],
)
def test_a_diverging_fitted_value_fixed_point_is_a_convergence_error(formula, reml, variance):
    data = mm.datasets.load("BodyWeight")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = mm.lmer(formula, data, reml=reml, correlation=mm.cor.CompSymm(),
                          weights=variance())
        except ConvergenceError as error:
            assert "fixed point diverged" in str(error)
            assert "compound symmetry" in str(error)
            return
    # a search that does reach a fixed point must give a finite fit (never a LinAlgError)
    assert fit.loglik == fit.loglik and abs(fit.loglik) < 1e6
