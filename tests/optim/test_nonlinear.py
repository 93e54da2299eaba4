"""The Lindstrom-Bates alternation's pieces: Newton on a bounded covariance parameter, and
the fixed point (the LME step's solution of the linearized model is the PNLS solution)."""

from __future__ import annotations

import numpy as np

import mixedmodels as mm
from mixedmodels.core.nonlinear import gram, pls
from mixedmodels.optim.bounded_newton import newton_gradient
from tests.reference.nlme.cases import arguments


def test_newton_leaves_a_bound_where_the_function_is_even():
    """f(x) = (x^2 - 1)^2 has a zero gradient at the bound x = 0 (a maximum): the probe
    moves off it and Newton finds x = 1."""

    def fun_grad(x):
        return float((x[0] ** 2 - 1) ** 2), np.array([4 * x[0] * (x[0] ** 2 - 1)])

    x, _, ok = newton_gradient(fun_grad, np.array([0.0]), np.array([0.0]))
    assert ok
    # it stops when a step would gain < 1e-10; with curvature 8 at x = 1 that is |x - 1|
    # below ~5e-6
    assert abs(x[0] - 1) < 1e-5


def test_fixed_point():
    data, kwargs = arguments("theoph")
    fit = mm.nlme(data=data, **kwargs)
    problem, est = fit.problem, fit.estimate
    lam = problem.lambda_of(est.theta)
    lin = problem.linearize(est.beta, est.b)
    sol = pls(gram(problem, lin), lam)
    np.testing.assert_allclose(sol.beta, est.beta, rtol=1e-7)
    np.testing.assert_allclose(sol.u @ lam.T, est.b, atol=1e-7 * np.abs(est.b).max())
