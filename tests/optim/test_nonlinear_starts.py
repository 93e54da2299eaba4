"""Starting points of the Lindstrom-Bates LME step against the values they estimate.

A linear "nonlinear" model ``f = a + c t`` with random ``a`` and ``c`` is simulated with a
known relative covariance ``D / sigma^2``; with 400 groups of 12 rows the moment estimate
``moment_theta`` has a sampling error of a few percent, so it must be within 15% of the
true relative sds and within 0.15 of the true correlation.  The exponent start
``_power_slope`` is checked on residuals with a known power (standard error about 0.01,
bound 0.05).  Both are only starts: the fits' agreement with nlme is tested elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.nonlinear import NonlinearProblem, gram
from mixedmodels.optim.nonlinear import _power_slope, moment_theta

RNG = np.random.default_rng(12)


def _linear_problem(diagonal: bool):
    m, per = 400, 12
    groups = np.repeat(np.arange(m), per)
    t = np.tile(np.linspace(0, 3, per), m)
    sigma = 0.5
    sd = np.array([2.0, 0.8])
    rho = 0.0 if diagonal else 0.5
    cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    b = RNG.multivariate_normal(np.zeros(2), cov, m)
    y = 10 + b[groups, 0] + (1 + b[groups, 1]) * t + sigma * RNG.standard_normal(t.size)

    def model(phi):
        return phi[:, 0] + phi[:, 1] * t, np.column_stack([np.ones_like(t), t])

    problem = NonlinearProblem(
        y=y, model=model, n_model_parameters=2,
        fixed_matrices=[np.ones((t.size, 1)), np.ones((t.size, 1))], function_index=[0, 1],
        random_index=[0, 1], groups=groups, n_groups=m, diagonal=diagonal,
    )
    return problem, sd / sigma, rho


@pytest.mark.parametrize("diagonal", [False, True])
def test_moment_theta_estimates_the_relative_covariance(diagonal):
    problem, rel_sd, rho = _linear_problem(diagonal)
    lin = problem.linearize(np.array([9.0, 1.2]), np.zeros((problem.n_groups, 2)))
    theta = moment_theta(problem, gram(problem, lin))
    lam = problem.lambda_of(theta)
    d = lam @ lam.T
    np.testing.assert_allclose(np.sqrt(np.diag(d)), rel_sd, rtol=0.15)
    if not diagonal:
        assert d[0, 1] / np.sqrt(d[0, 0] * d[1, 1]) == pytest.approx(rho, abs=0.15)


def test_moment_theta_needs_groups_that_determine_their_effects():
    problem, _, _ = _linear_problem(False)
    lin = problem.linearize(np.array([9.0, 1.2]), np.zeros((problem.n_groups, 2)))
    lin.z[:, 1] = 0.0  # no group can estimate its slope
    assert moment_theta(problem, gram(problem, lin)) is None


def test_power_slope():
    v = RNG.uniform(1, 50, 20_000)
    r = v**0.9 * RNG.standard_normal(v.size)
    assert _power_slope(v, r) == pytest.approx(0.9, abs=0.05)
    assert _power_slope(np.full(10, 2.0), r[:10]) is None  # no spread
    assert _power_slope(v[:5], np.exp(100 * np.log(v[:5]))) == 3.0  # clipped


def _intercept_problem(diagonal: bool, m: int = 300):
    """``f = a + c t`` with a random ``a`` only (sd 2, sigma 0.5: relative sd 4)."""
    per = 10
    groups = np.repeat(np.arange(m), per)
    t = np.tile(np.linspace(0, 3, per), m)
    y = 10 + 2.0 * RNG.standard_normal(m)[groups] + t + 0.5 * RNG.standard_normal(t.size)

    def model(phi):
        return phi[:, 0] + phi[:, 1] * t, np.column_stack([np.ones_like(t), t])

    return NonlinearProblem(
        y=y, model=model, n_model_parameters=2,
        fixed_matrices=[np.ones((t.size, 1)), np.ones((t.size, 1))], function_index=[0, 1],
        random_index=[0], groups=groups, n_groups=m, diagonal=diagonal,
    )


def _moment_by_lapack(problem, g):
    """The moment estimate of one random effect through the stacked 1 x 1 LAPACK calls
    (eigenvalues, solve, inverse, eigh, Cholesky) of the general path."""
    m, p = problem.n_groups, g.mtm.shape[0] - 1
    beta = np.linalg.solve(g.mtm[:p, :p], g.mtm[:p, p])
    rss = float(g.mtm[p, p] - g.mtm[p, :p] @ beta)
    zz = np.moveaxis(g.ztz, 2, 0)
    zr = g.ztm[:, :, p] - g.ztm[:, :, :p] @ beta
    assert np.min(np.linalg.eigvalsh(zz)[:, 0]) > 0
    b = np.linalg.solve(zz, zr.T[:, :, None])[:, :, 0]
    sigma2 = (rss - float((zr.T * b).sum())) / (problem.n - p - m)
    centred = b - b.mean(axis=0)
    d = (centred.T @ centred / (m - 1) - sigma2 * np.linalg.inv(zz).mean(axis=0)) / sigma2
    if problem.diagonal:
        return np.sqrt(np.maximum(np.diag(d), 1e-4 * max(float(np.max(np.diag(d))), 1e-8)))
    values, vectors = np.linalg.eigh((d + d.T) / 2)
    d = (vectors * np.maximum(values, 1e-4 * max(float(values.max()), 1e-8))) @ vectors.T
    return problem.theta_of(np.linalg.cholesky(d))


@pytest.mark.parametrize("diagonal", [False, True])
def test_moment_theta_of_one_random_effect(diagonal):
    """One random effect (divisions for the 1 x 1 systems): within 15% of the true
    relative sd (300 groups), and bitwise the stacked LAPACK calls' value, at the truth
    and at a start far from it."""
    problem = _intercept_problem(diagonal)
    for beta in (np.array([10.0, 1.0]), np.array([3.0, -2.0])):
        lin = problem.linearize(beta, np.zeros((problem.n_groups, 1)))
        g = gram(problem, lin)
        theta = moment_theta(problem, g)
        assert np.array_equal(theta, _moment_by_lapack(problem, g))
    lin = problem.linearize(np.array([10.0, 1.0]), np.zeros((problem.n_groups, 1)))
    assert moment_theta(problem, gram(problem, lin))[0] == pytest.approx(4.0, rel=0.15)
