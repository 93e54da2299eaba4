"""The Newton polish after BOBYQA (:mod:`mixedmodels.optim.polish`).

The reference for "at the optimum" is independent of the polish: Richardson-extrapolated
differences of the objective (:func:`mixedmodels.optim.derivatives.hessian_and_gradient`)
give the Newton step still to take from the reported theta.  Measured over these cases
after the polish: 3e-12 to 9e-11 on the analytic path (the differences' own noise: their
gradient carries the objective's rounding, 1e-13 relative, over steps of 3e-4 to 3e-3),
1.2e-9 and 1.3e-9 on the finite-difference path (its central gradients' h^2 error, steps
of 1e-4 relative: the same point for any fit of the same data), 2e-10 on the crossed
path's analytic gradients (mathachieve_nested_slopes_ml); before it, BOBYQA's
points were up to 5e-5 away (orthodont_factor_interaction_ml).  1e-8 is asserted.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.optim.derivatives import hessian_and_gradient
from mixedmodels.optim.polish import (
    _newton_direction,
    central_gradient,
    polish,
    stencil_derivatives,
)
from tests.catalogue import case

REMAINING_STEP = 1e-8


def _fit(name: str):
    """The catalogue case's fit (tests/catalogue.py), its warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return case(name).fit()


def _remaining_step(problem, theta: np.ndarray) -> float:
    """The Newton step from ``theta`` on its free coordinates, by differences."""
    lower = problem.theta_lower_bounds()
    free = ~((lower == 0) & (theta == 0))

    def f(x):
        full = theta.copy()
        full[free] = x
        return problem.objective(full)

    hessian, gradient = hessian_and_gradient(f, theta[free])
    step = np.linalg.solve(hessian, gradient)
    return float(np.max(np.abs(step) / np.maximum(1.0, np.abs(theta[free]))))


@pytest.mark.parametrize(
    "name, kind",
    [
        ("sleepstudy_slopes_reml", "analytic"),
        ("orthodont_factor_interaction_ml", "analytic"),
        ("pastes_nested_reml", "analytic"),
        ("machines_slash_reml", "analytic"),
        ("bodyweight_three_terms_reml", "analytic"),
        ("mathachieve_nested_slopes_ml", "analytic-gradient"),
        ("mathachieve_cluster_predictors_reml", "finite-difference"),
    ],
)
def test_reported_theta_is_the_optimum(name, kind):
    fit = _fit(name)
    assert f"{kind} Newton polish" in fit.optimizer_message
    assert _remaining_step(fit.problem, fit.theta) < REMAINING_STEP


def test_bobyqa_point_was_not_the_optimum_and_the_polish_descends():
    fit = _fit("orthodont_factor_interaction_ml")
    problem = fit.problem
    # BOBYQA's end point, perturbed the way it stops (5e-5 measured): the polish goes back
    start = fit.theta + np.array([5e-5, -3e-5, 2e-5, 0.0, 1e-5, -2e-5])[: fit.theta.size]
    value = problem.objective(start)
    theta, best, outcome = polish(problem, start, value)
    assert _remaining_step(problem, start) > 1e-6
    assert best < value and outcome.decrease == pytest.approx(value - best)
    assert best == problem.objective(theta)
    np.testing.assert_allclose(theta, fit.theta, rtol=0, atol=1e-9)
    assert outcome.steps >= 1 and outcome.moved == pytest.approx(
        np.max(np.abs(theta - start)), rel=1e-12
    )


def test_a_coordinate_at_its_bound_is_held():
    fit = _fit("dyestuff2_singular_reml")
    assert np.all(fit.theta == 0)
    assert "no Newton polish: no free theta" in fit.optimizer_message
    # one of two terms at 0: it stays there, the other is polished
    fit = _fit("cake_recipe_random_slope_reml")
    lower = fit.problem.theta_lower_bounds()
    start = fit.theta.copy()
    held = (lower == 0) & (start == 0)
    theta, _, _ = polish(fit.problem, start, fit.problem.objective(start))
    np.testing.assert_array_equal(theta[held], 0.0)


def test_a_ridge_moves_along_the_identified_directions_only():
    # (Sex | Subject) with Sex between subjects: three theta, two variances identified
    fit = _fit("orthodont_between_slope_reml")
    assert "ridge: 2 of 3 directions identified" in fit.optimizer_message
    flipped = _fit_reversed("orthodont_between_slope_reml")
    assert flipped.objective == pytest.approx(fit.objective, rel=1e-12)
    np.testing.assert_allclose(flipped.fixef, fit.fixef, rtol=1e-10)


def _fit_reversed(name: str):
    c = case(name)
    frame = c.data().iloc[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(c.formula, frame, reml=c.reml, contrasts=c.reference.get("contrasts"))


def test_newton_direction_closed_forms():
    hessian = np.array([[4.0, 1.0], [1.0, 3.0]])
    gradient = np.array([1.0, 2.0])
    direction, rank = _newton_direction(gradient, hessian)
    np.testing.assert_allclose(direction, -np.linalg.solve(hessian, gradient), rtol=1e-14)
    assert rank == 2
    # indefinite: no step
    assert _newton_direction(gradient, np.array([[1.0, 2.0], [2.0, 1.0]])) is None
    assert _newton_direction(gradient, np.array([[-1.0, 0.0], [0.0, 1.0]])) is None
    # singular (a ridge along (1, -1)): the step is the minimum-norm one, orthogonal to it
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    direction, rank = _newton_direction(np.array([2.0, 2.0]), singular)
    assert rank == 1
    np.testing.assert_allclose(direction, [-1.0, -1.0], rtol=1e-12)


def test_stencil_and_central_differences_closed_forms():
    # a quadratic: the stencil's gradient and Hessian are exact (rounding only: f's 1e-15
    # over steps of 1e-3 squared leaves 1e-9 in the Hessian)
    a = np.array([[4.0, 1.0], [1.0, 3.0]])
    b = np.array([1.0, -2.0])

    def quadratic(x):
        return 0.5 * x @ a @ x + b @ x + 7.0

    x = np.array([0.7, -0.4])
    gradient, hessian = stencil_derivatives(quadratic, x, quadratic(x), np.array([1e-3, 1e-3]))
    np.testing.assert_allclose(gradient, a @ x + b, rtol=0, atol=1e-10)
    np.testing.assert_allclose(hessian, a, rtol=0, atol=1e-7)

    # f = x0^4 + x0 x1 + 3 x1^2 - x1: central differences of x0^4 give 4 x0^3 + 4 x0 h^2,
    # its second differences 12 x0^2 + 2 h^2; the rest is quadratic (exact); the forward
    # cross difference sees x0 x1 only
    def quartic(x):
        return x[0] ** 4 + x[0] * x[1] + 3 * x[1] ** 2 - x[1]

    h = np.array([1e-2, 2e-2])
    gradient = central_gradient(quartic, x, h)
    exact = [4 * 0.7**3 + 4 * 0.7 * h[0] ** 2 - 0.4, 0.7 + 6 * -0.4 - 1]
    np.testing.assert_allclose(gradient, exact, rtol=1e-12)
    again, hessian = stencil_derivatives(quartic, x, quartic(x), h)
    np.testing.assert_allclose(again, gradient, rtol=1e-12)
    np.testing.assert_allclose(
        hessian, [[12 * 0.7**2 + 2 * h[0] ** 2, 1.0], [1.0, 6.0]], rtol=1e-9
    )


def test_evaluations_are_counted_in_the_fit():
    fit = _fit("sleepstudy_slopes_reml")
    # BOBYQA's 8 evaluations at the coarse tolerances (29 at lme4-like ones) and the
    # polish's: one analytic Hessian, one value
    assert fit.n_evaluations == 10
    assert fit.optimizer_message.startswith("xtol reached; analytic Newton polish: 1 step")
