"""The nonlinear model's linear algebra against dense references.

The per-group penalized least squares solution equals the dense solution of the augmented
system [[X'X, X'ZL], [L'Z'X, L'Z'ZL + I]] (an identity, to 1e-10); the analytic ML deviance
gradient equals central differences of the deviance (step 1e-6: error ~1e-8 relative,
tolerance 1e-5); nlme's fixed-effect df follow its containment rule on small designs.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.nonlinear import (
    Linearization,
    NonlinearProblem,
    deviance,
    gram,
    ml_deviance_gradient,
    pls,
    theta_pairs,
)
from mixedmodels.results.nlme_fit import fixed_df


def _problem(q: int, diagonal: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, m, p = 64, 8, 3
    groups = np.repeat(np.arange(m), n // m)
    problem = NonlinearProblem(
        y=rng.normal(size=n), model=None, n_model_parameters=p,
        fixed_matrices=[np.ones((n, 1))] * p, function_index=list(range(p)),
        random_index=list(range(q)), groups=groups, n_groups=m, diagonal=diagonal,
    )
    lin = Linearization(f=np.zeros(n), x=rng.normal(size=(n, p)), z=rng.normal(size=(n, q)),
                        w=rng.normal(size=n))
    theta = rng.uniform(0.3, 1.5, size=problem.n_theta)
    return problem, lin, theta


@pytest.mark.parametrize("q,diagonal", [(1, True), (2, False), (3, False), (3, True)])
def test_pls_matches_dense_solution(q, diagonal):
    problem, lin, theta = _problem(q, diagonal)
    lam = problem.lambda_of(theta)
    sol = pls(gram(problem, lin), lam)
    m, n = problem.n_groups, problem.n
    z = np.zeros((n, m * q))  # dense Z with Lambda applied: columns (group, term)
    for j in range(n):
        z[j, problem.groups[j] * q:(problem.groups[j] + 1) * q] = lin.z[j] @ lam
    a = np.hstack([lin.x, z])
    penalty = np.zeros(a.shape[1])
    penalty[lin.x.shape[1]:] = 1.0
    coef = np.linalg.solve(a.T @ a + np.diag(penalty), a.T @ lin.w)
    p = lin.x.shape[1]
    np.testing.assert_allclose(sol.beta, coef[:p], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.u.ravel(), coef[p:], rtol=1e-10, atol=1e-12)
    r = lin.w - a @ coef
    np.testing.assert_allclose(sol.pwrss, r @ r + coef[p:] @ coef[p:], rtol=1e-10)
    blocks = [lam.T @ (lin.z[problem.groups == i].T @ lin.z[problem.groups == i]) @ lam
              + np.eye(q) for i in range(m)]
    logdet = sum(np.linalg.slogdet(b)[1] for b in blocks)
    np.testing.assert_allclose(2 * sol.logdet_l, logdet, rtol=1e-10)


@pytest.mark.parametrize("q,diagonal", [(1, True), (2, False), (3, False), (3, True)])
def test_ml_gradient_matches_finite_differences(q, diagonal):
    problem, lin, theta = _problem(q, diagonal, seed=3)
    g = gram(problem, lin)
    pairs = theta_pairs(q, diagonal)
    value, grad = ml_deviance_gradient(g, problem.lambda_of(theta), pairs, problem.n)

    def dev(t):
        return deviance(pls(g, problem.lambda_of(t), False), problem.n, problem.p, False)

    assert value == pytest.approx(dev(theta), rel=1e-12)
    h = 1e-6
    numeric = [(dev(theta + h * e) - dev(theta - h * e)) / (2 * h) for e in np.eye(theta.size)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_fixed_df_containment():
    groups = np.repeat(np.arange(4), 5)
    rng = np.random.default_rng(1)
    within = rng.normal(size=20)  # varies within groups: residual stratum
    between = np.repeat(rng.normal(size=4), 5)  # constant within groups: group stratum
    # all columns vary: residual df n - m - (#residual columns) + 1
    np.testing.assert_array_equal(fixed_df(np.column_stack([within, within ** 2]), groups, 4),
                                  [20 - 4 - 2 + 1] * 2)
    # an intercept: residual df n - m - 1, group df m - 1 - 1, intercept gets the larger
    x = np.column_stack([np.ones(20), within, between])
    np.testing.assert_array_equal(fixed_df(x, groups, 4), [15, 15, 2])


def test_power_variance_gradient_matches_finite_differences():
    from mixedmodels.core.nonlinear import ml_deviance_gradient_power, power_weights

    problem, lin, theta = _problem(2, True, seed=5)
    v = np.random.default_rng(6).uniform(0.5, 3.0, size=problem.n)  # the fitted values
    pairs = theta_pairs(2, True)
    x = np.append(theta, 0.7)
    value, grad = ml_deviance_gradient_power(problem, lin, v, x, pairs)

    def dev(z):
        g = gram(problem, lin, power_weights(v, z[-1]))
        return deviance(pls(g, problem.lambda_of(z[:-1]), False), problem.n, problem.p, False,
                        g.log_weights)

    assert value == pytest.approx(dev(x), rel=1e-12)
    h = 1e-6
    numeric = [(dev(x + h * e) - dev(x - h * e)) / (2 * h) for e in np.eye(x.size)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
