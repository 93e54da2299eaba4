"""The crossed path's analytic gradient against central differences of its objective.

Reference: ``(f(theta + h e_i) - f(theta - h e_i)) / 2h`` of ``LmmProblem.objective`` on
the crossed path, with ``h = 1e-6 max(1, |theta_i|)``.  Its error is the truncation
``h^2 f''' / 6`` (~1e-12) plus the objective's rounding over ``h`` (~1e-16 |f| / 1e-6, about
1e-8 of the gradient's largest entry here), so the two agree to 1e-6 of the largest entry
(observed: 3e-10 to 4e-9).  For unstructured terms the entries are theta itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.linalg import gather
from tests.core.test_crossed import KINDS, crossed_problem, large_problem, random_theta


def crossed_only(problem: LmmProblem, reml: bool) -> LmmProblem:
    """The same model, its objective forced onto the crossed path (small q)."""
    out = LmmProblem(problem.blocks, problem.X, problem.y, weights=problem.weights, reml=reml)
    out.dense_objective = None
    return out


def central_differences(problem: LmmProblem, theta: np.ndarray) -> np.ndarray:
    out = np.empty(theta.size)
    for i in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        out[i] = (problem.objective(up) - problem.objective(down)) / (2 * h)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_central_differences(kind, weighted, reml):
    rng = np.random.default_rng(len(kind) + 7 * weighted + 3 * reml)
    problem = crossed_only(crossed_problem(kind, rng, weighted), reml)
    theta = random_theta(problem, rng)
    assert np.array_equal(problem.lambda_entries(theta), theta)  # unstructured terms
    value, gradient = problem.entry_gradient(theta)
    assert value == problem.objective(theta)
    reference = central_differences(problem, theta)
    np.testing.assert_allclose(gradient, reference, rtol=0, atol=1e-6 * np.abs(reference).max())


def test_gradient_with_a_variance_at_zero_and_the_sparse_quadratic_forms(monkeypatch):
    """theta on the boundary (a singular lambda: nothing inverts it) and the quadratic
    forms by sparse products instead of the compiled kernel."""
    rng = np.random.default_rng(5)
    problem = crossed_only(crossed_problem("slope_slope", rng), True)
    theta = random_theta(problem, rng)
    theta[0] = 0.0  # the subject intercept's scale
    _, compiled = problem.entry_gradient(theta)
    monkeypatch.setattr(gather, "_gather_kernels", lambda: None)
    fresh = crossed_only(problem, True)
    _, sparse = fresh.entry_gradient(theta)
    np.testing.assert_allclose(sparse, compiled, rtol=1e-12, atol=1e-12 * np.abs(compiled).max())
    # the boundary coordinate: a one-sided difference into the admissible side
    h = 1e-6
    up = theta.copy()
    up[0] = h
    one_sided = (problem.objective(up) - problem.objective(theta)) / h
    assert abs(compiled[0] - one_sided) <= 1e-4 * np.abs(compiled).max()
    reference = central_differences(problem, theta)
    np.testing.assert_allclose(compiled[1:], reference[1:], atol=1e-6 * np.abs(reference).max())


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_vanishes_at_the_fitted_optimum(reml):
    """At the optimum the free coordinates' derivatives are 0 (to the optimizer's
    tolerance: 1e-4 of the gradient's size at a random theta)."""
    from mixedmodels.optim.lmm import optimize_problem

    rng = np.random.default_rng(11)
    problem = large_problem(rng, reml)
    assert problem.crossed_objective() is not None
    result = optimize_problem(problem)
    _, at_optimum = problem.entry_gradient(result.x)
    _, elsewhere = problem.entry_gradient(random_theta(problem, rng))
    assert np.abs(at_optimum).max() <= 1e-4 * np.abs(elsewhere).max()


def test_dense_and_one_term_paths_have_no_crossed_gradient():
    rng = np.random.default_rng(2)
    problem = crossed_problem("scalar", rng)  # q = 42: the dense path
    assert problem.entry_gradient(random_theta(problem, rng)) is None


def test_levels_taken_in_chunks_give_the_same_gradient(monkeypatch):
    """LEVEL_CHUNK levels at a time (7 of 30 here, a partial last chunk): the same sums in
    another grouping, to rounding."""
    from mixedmodels.core import crossed_gradient

    rng = np.random.default_rng(8)
    problem = crossed_only(crossed_problem("slope_slope", rng, weighted=True), True)
    theta = random_theta(problem, rng)
    _, whole = problem.entry_gradient(theta)
    monkeypatch.setattr(crossed_gradient, "LEVEL_CHUNK", 7)
    _, chunked = crossed_only(problem, True).entry_gradient(theta)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12 * np.abs(whole).max())
