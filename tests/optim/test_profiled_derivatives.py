"""The analytic gradient and Hessian of the profiled objective (dense path) against
Richardson-extrapolated differences of the objective itself (an independent computation:
the engine's factorization, differenced).

Tolerances: the differences carry ``O(h^4)`` truncation and the objective's rounding over
``h`` (``step_sizes``: 3e-3 relative).  Measured over the Gaussian catalogue at a point off
the optimum: gradient within 4e-8 and Hessian within 8e-6 of the differences (relative to
their largest entry); 1e-6 and 1e-4 are asserted.  The analytic value is the engine's
objective by other sums: 3e-14 relative measured, 1e-12 asserted.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.optim.derivatives import hessian_and_gradient
from mixedmodels.optim.profiled_derivatives import DenseDerivatives
from tests.catalogue import case, gaussian_cases

GRADIENT_RTOL = 1e-6
HESSIAN_RTOL = 1e-4
VALUE_RTOL = 1e-12
CASES = [
    "sleepstudy_slopes_reml",
    "sleepstudy_slopes_ml",
    "sleepstudy_weighted_reml",
    "sleepstudy_uncorrelated_reml",
    "penicillin_crossed_reml",
    "pastes_nested_reml",
    "machines_slash_reml",
    "orthodont_factor_interaction_ml",
    "oxboys_crossed_slopes_reml",
    "arabidopsis_crossed_factor_slopes_reml",
]


def _fit(name: str):
    """The catalogue case's fit (tests/catalogue.py), its warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return case(name).fit()


def _off_optimum(theta: np.ndarray) -> np.ndarray:
    """A point next to the optimum, every diagonal element away from its bound."""
    return np.where(theta == 0, 0.05, theta) * 1.05 + 0.01


def test_the_cases_are_in_the_catalogue():
    names = {c.name for c in gaussian_cases()}
    assert set(CASES) <= names


@pytest.mark.parametrize("name", CASES)
def test_gradient_and_hessian_equal_extrapolated_differences(name):
    fit = _fit(name)
    problem = fit.problem
    theta = _off_optimum(fit.theta)
    found = DenseDerivatives(problem).at(theta)
    hessian, gradient = hessian_and_gradient(problem.objective, theta)
    assert found.value == pytest.approx(problem.objective(theta), rel=VALUE_RTOL)
    assert np.max(np.abs(found.gradient - gradient)) <= GRADIENT_RTOL * max(
        1.0, np.max(np.abs(gradient))
    )
    assert np.max(np.abs(found.hessian - hessian)) <= HESSIAN_RTOL * np.max(np.abs(hessian))
    np.testing.assert_array_equal(found.hessian, found.hessian.T)


def test_gradient_alone_is_the_same_gradient():
    problem = _fit("pastes_nested_reml").problem
    theta = _off_optimum(problem.theta_start())
    derivatives = DenseDerivatives(problem)
    both, alone = derivatives.at(theta), derivatives.at(theta, hessian=False)
    assert alone.hessian is None
    np.testing.assert_array_equal(alone.gradient, both.gradient)
    assert derivatives.value(theta) == both.value


def test_a_nonlinear_structure_is_left_to_differences():
    sleep = mm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer("Reaction ~ Days + cs(Days | Subject)", sleep)
    assert DenseDerivatives(fit.problem).at(fit.theta) is None


def test_only_the_dense_path_has_them():
    problem = _fit("mathachieve_cluster_predictors_reml").problem
    assert problem.dense_objective is None
    with pytest.raises(ValueError, match="dense path"):
        DenseDerivatives(problem)
