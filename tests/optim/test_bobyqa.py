"""The optimizer wrapper: nothing non-finite reaches NLopt, and what the caller gets back
is the best finite point.  Minima are closed forms; BOBYQA's tolerances (ftol 1e-12 here)
put them within 1e-5 in x."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixedmodels.errors import ArgumentError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim import minimize_bounded


def quadratic(x: np.ndarray) -> float:
    return float((x[0] - 2.0) ** 2 + (x[1] + 1.0) ** 2)


def test_finite_problem_reaches_the_closed_form_minimum():
    res = minimize_bounded(quadratic, np.zeros(2), np.full(2, -np.inf), ftol_abs=1e-12)
    np.testing.assert_allclose(res.x, [2.0, -1.0], atol=1e-5)
    assert res.converged


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_start_is_refused(bad):
    seen = []
    with pytest.raises(ArgumentError, match=r"start must be finite; x0\[1\]"):
        minimize_bounded(lambda x: seen.append(x) or 0.0, np.array([0.0, bad]), np.zeros(2))
    assert seen == []  # the objective (and NLopt) never ran


def test_nan_bounds_and_bad_steps_are_refused():
    with pytest.raises(ArgumentError, match="lower bounds hold NaN"):
        minimize_bounded(quadratic, np.zeros(2), np.array([0.0, np.nan]))
    with pytest.raises(ArgumentError, match="initial step"):
        minimize_bounded(quadratic, np.zeros(2), np.zeros(2), initial_step=np.array([0.1, 0.0]))


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf, "raise"])
def test_non_finite_values_never_reach_nlopt(bad_value):
    """Where the objective is NaN, +-inf or raises NotPositiveDefiniteError (here x0 > 3)
    the search goes on over the finite part and ends at its minimum (2, -1)."""

    def objective(x: np.ndarray) -> float:
        if x[0] > 3.0:
            if bad_value == "raise":
                raise NotPositiveDefiniteError
            return bad_value
        return quadratic(x)

    res = minimize_bounded(
        objective, np.array([2.9, 0.0]), np.full(2, -np.inf), initial_step=1.0, ftol_abs=1e-12
    )
    np.testing.assert_allclose(res.x, [2.0, -1.0], atol=1e-5)
    assert math.isfinite(res.fun) and res.fun < 1e-9


def test_non_finite_value_at_the_start_is_left_behind():
    def objective(x: np.ndarray) -> float:
        return math.nan if x[0] < 0.5 else quadratic(x)

    res = minimize_bounded(
        objective, np.zeros(2), np.full(2, -np.inf), initial_step=1.0, ftol_abs=1e-12
    )
    np.testing.assert_allclose(res.x, [2.0, -1.0], atol=1e-5)


def test_start_outside_the_bounds_is_moved_onto_them():
    """min of (x + 1)^2 over x >= 0 is at the bound, with value 1."""
    res = minimize_bounded(lambda x: float((x[0] + 1.0) ** 2), np.array([-5.0]), np.zeros(1))
    assert res.x[0] == pytest.approx(0.0, abs=1e-8)
    assert res.fun == pytest.approx(1.0, abs=1e-8)


def test_nowhere_finite_objective_returns_the_start_with_infinite_value():
    res = minimize_bounded(lambda x: math.nan, np.ones(2), np.zeros(2))
    assert res.fun == math.inf
    np.testing.assert_array_equal(res.x, np.ones(2))


def test_pure_objective_is_not_evaluated_again_at_the_optimum():
    """``pure=True``: NLopt's final point, the best seen, keeps its known value instead of a
    repeated evaluation; the search and its result are the same to the bit (reference: the
    same search with ``pure=False``), with one call fewer."""

    def counted():
        calls = []

        def f(x):
            calls.append(x.copy())
            return float((x[0] - 1.3) ** 2 + 2.0 * (x[1] + 0.4) ** 2 + x[0] * x[1] * 0.3)

        return f, calls

    f_plain, plain_calls = counted()
    f_pure, pure_calls = counted()
    start, lower = np.array([0.5, 0.5]), np.array([0.0, -np.inf])
    plain = minimize_bounded(f_plain, start, lower, ftol_abs=1e-12)
    pure = minimize_bounded(f_pure, start, lower, ftol_abs=1e-12, pure=True)
    assert np.array_equal(plain.x, pure.x) and plain.fun == pure.fun
    assert plain.n_evaluations == pure.n_evaluations == len(pure_calls)
    assert len(plain_calls) == len(pure_calls) + 1  # the repeated evaluation
    assert np.array_equal(plain_calls[-1], pure.x)
