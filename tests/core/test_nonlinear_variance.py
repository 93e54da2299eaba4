"""Variance functions in the nonlinear core: the adapter from the seam
(:class:`~mixedmodels.core.nonlinear.RowVariance`) and the weighted ML / REML criteria with
their gradients in ``(theta, delta)``.

References: the dense marginal likelihood of the linearized model (``V = S^-2 + Z Lambda
Lambda' Z'``; agreement to 1e-9 relative, rounding of two routes), central differences of
the criteria (step 1e-6: truncation ~1e-12, rounding ~1e-10 of deviances ~100; bound 1e-6
absolute on gradients of size 1-30), and the seam's own ``sd_of`` on the data's labels.
"""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core.nonlinear import (
    RowVariance,
    deviance,
    gram,
    ml_deviance_gradient_weighted,
    pls,
    reml_deviance_gradient_weighted,
    theta_pairs,
)
from tests.core.test_nonlinear import _problem


def _weighted_case(q, diagonal, seed=5):
    problem, lin, theta = _problem(q, diagonal, seed=seed)
    rng = np.random.default_rng(seed + 1)
    v = rng.uniform(0.5, 3.0, size=problem.n)
    cat = rng.integers(0, 3, size=problem.n)
    # log sd = d0 log v + d1 [cat == 1] + d2 [cat == 2]: a varPower times a varIdent
    jac = np.column_stack([np.log(v), cat == 1, cat == 2]).astype(float)
    x = np.concatenate([theta + 0.1, [0.7, 0.3, -0.2]])
    return problem, lin, jac, x


def _criterion(problem, lin, jac, x, reml):
    nt = problem.n_theta
    g = gram(problem, lin, np.exp(-(jac @ x[nt:])))
    return deviance(pls(g, problem.lambda_of(x[:nt]), False), problem.n, problem.p, reml,
                    g.log_weights)


@pytest.mark.parametrize("reml", [False, True])
def test_weighted_criterion_matches_dense_likelihood(reml):
    problem, lin, jac, x = _weighted_case(2, False)
    nt = problem.n_theta
    lam = problem.lambda_of(x[:nt])
    sd = np.exp(jac @ x[nt:])
    n, p = problem.n, problem.p
    z = np.zeros((n, problem.n_groups * 2))
    for j in range(n):
        g = problem.groups[j]
        z[j, 2 * g:2 * g + 2] = lin.z[j] @ lam
    v = np.diag(sd**2) + z @ z.T
    vi = np.linalg.inv(v)
    xtvx = lin.x.T @ vi @ lin.x
    beta = np.linalg.solve(xtvx, lin.x.T @ vi @ lin.w)
    r = lin.w - lin.x @ beta
    dof = n - p if reml else n
    dense = (np.linalg.slogdet(v)[1] + dof * (1 + np.log(2 * np.pi * (r @ vi @ r) / dof))
             + (np.linalg.slogdet(xtvx)[1] if reml else 0.0))
    assert _criterion(problem, lin, jac, x, reml) == pytest.approx(dense, rel=1e-9)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("q,diagonal", [(2, True), (2, False), (1, True)])
def test_weighted_gradients_match_central_differences(reml, q, diagonal):
    problem, lin, jac, x = _weighted_case(q, diagonal)
    nt = problem.n_theta
    x = np.concatenate([x[:nt], x[-3:]])
    function = reml_deviance_gradient_weighted if reml else ml_deviance_gradient_weighted
    value, grad = function(problem, lin, problem.lambda_of(x[:nt]), np.exp(-(jac @ x[nt:])),
                           jac, theta_pairs(q, diagonal))
    assert value == pytest.approx(_criterion(problem, lin, jac, x, reml), rel=1e-12)
    h = 1e-6
    numeric = [(_criterion(problem, lin, jac, x + h * e, reml)
                - _criterion(problem, lin, jac, x - h * e, reml)) / (2 * h)
               for e in np.eye(x.size)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_row_variance_orders_rows_as_nlme():
    """Ident's reference level is the first met in the rows sorted by group (nlme's order),
    whatever the data's order; the weights in the data's order are the seam's ``sd_of`` of
    the rows' own labels."""
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 6, size=40)
    labels = np.where(rng.uniform(size=40) < 0.5, "a", "b")
    first = labels[np.argsort(groups, kind="stable")][0]
    rows = RowVariance(mm.var.Ident("g"), {"g": labels}, groups)
    assert rows.function.levels[0] == first
    u = np.array([0.4])
    expected = mm.var.Ident("g")
    expected.bind({"g": labels}, np.argsort(groups, kind="stable"))
    np.testing.assert_allclose(rows.at(None).weights(u), 1 / expected.sd_of(u, {"g": labels}),
                               rtol=1e-15)


@pytest.mark.parametrize(
    "function,column",
    [(lambda: mm.var.Power(), lambda v, x: np.log(np.abs(v))),
     (lambda: mm.var.Power("x"), lambda v, x: np.log(np.abs(x))),
     (lambda: mm.var.Exp("x"), lambda v, x: x),
     (lambda: mm.var.Exp(), lambda v, x: v)],
)
def test_jacobian_is_the_derivative_of_log_sd(function, column):
    """``d log sd / d delta`` in closed form (``log|v|`` for a power, ``v`` for an
    exponential), to the rounding of the difference quotient (1e-10)."""
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(5), 6)
    x = rng.uniform(0.5, 4.0, size=30)
    fitted = rng.uniform(1.0, 9.0, size=30)
    rows = RowVariance(function(), {"x": x}, groups)
    assert rows.log_linear
    np.testing.assert_allclose(rows.at(fitted).jacobian(np.array([0.3]))[:, 0],
                               column(fitted, x), rtol=1e-9, atol=1e-10)
