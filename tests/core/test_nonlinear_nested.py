"""The nested (multilevel) nonlinear model's linear algebra against independent references.

- One level: the dense nested PLS equals the per-group PLS of the one-level problem
  (:func:`mixedmodels.core.nonlinear.pls`): two implementations of one model, to 1e-10.
- Two levels: the solution equals the dense augmented system solved directly
  (``[[X'X, X'ZL], [L'Z'X, L'Z'ZL + I]]``), and the deviance equals ``-2 log`` of the
  multivariate normal density of ``w`` with covariance ``sigma^2 (I + Z L L'Z')`` at the
  profiled ``beta`` and ``sigma`` (scipy), to 1e-10 relative.
- The analytic ML gradient in theta equals 5-point differences of the deviance (step 1e-3:
  truncation ~1e-9, rounding ~1e-11; tolerance 1e-6 relative).
- nlme's df with nested strata on a small design (getFixDF's rule by hand).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mixedmodels.core.nonlinear import (
    Level,
    Linearization,
    MultilevelLinearization,
    MultilevelProblem,
    NonlinearProblem,
    deviance,
    gram,
    multilevel_deviance,
    multilevel_gram,
    multilevel_ml_gradient,
    multilevel_pls,
    pls,
)
from mixedmodels.results.nlme_fit import fixed_df


def _nested(q: int, diagonal: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, p = 96, 3
    site = np.repeat(np.arange(4), 24)
    plot = np.repeat(np.arange(12), 8)  # 3 plots per site
    levels = [Level(list(range(q)), site, 4, diagonal), Level(list(range(q)), plot, 12, diagonal)]
    problem = MultilevelProblem(
        y=rng.normal(size=n), model=None, n_model_parameters=p,
        fixed_matrices=[np.ones((n, 1))] * p, function_index=list(range(p)), levels=levels,
    )
    lin = MultilevelLinearization(f=np.zeros(n), x=rng.normal(size=(n, p)),
                                  z=[rng.normal(size=(n, q)) for _ in levels],
                                  w=rng.normal(size=n))
    theta = rng.uniform(0.3, 1.5, size=problem.n_theta)
    return problem, lin, theta


@pytest.mark.parametrize("q,diagonal", [(1, False), (2, False), (2, True)])
def test_one_level_equals_the_grouped_pls(q, diagonal):
    rng = np.random.default_rng(3)
    n, m, p = 64, 8, 3
    groups = np.repeat(np.arange(m), n // m)
    x, z, w = rng.normal(size=(n, p)), rng.normal(size=(n, q)), rng.normal(size=n)
    one = NonlinearProblem(y=w, model=None, n_model_parameters=p,
                           fixed_matrices=[np.ones((n, 1))] * p, function_index=list(range(p)),
                           random_index=list(range(q)), groups=groups, n_groups=m,
                           diagonal=diagonal)
    nested = MultilevelProblem(y=w, model=None, n_model_parameters=p,
                               fixed_matrices=[np.ones((n, 1))] * p,
                               function_index=list(range(p)),
                               levels=[Level(list(range(q)), groups, m, diagonal)])
    theta = rng.uniform(0.3, 1.5, size=one.n_theta)
    ref = pls(gram(one, Linearization(np.zeros(n), x, z, w)), one.lambda_of(theta))
    got = multilevel_pls(nested, multilevel_gram(nested, MultilevelLinearization(
        np.zeros(n), x, [z], w)), nested.lambdas(theta))
    np.testing.assert_allclose(got.beta, ref.beta, rtol=1e-10)
    np.testing.assert_allclose(got.u, ref.u.ravel(), rtol=1e-9, atol=1e-12)
    assert got.pwrss == pytest.approx(ref.pwrss, rel=1e-10)
    assert multilevel_deviance(got, n, p, False) == pytest.approx(
        deviance(ref, n, p, False), rel=1e-12)
    assert multilevel_deviance(got, n, p, True) == pytest.approx(
        deviance(ref, n, p, True), rel=1e-12)


@pytest.mark.parametrize("q,diagonal", [(1, False), (2, False), (2, True)])
def test_two_levels_against_dense_references(q, diagonal):
    problem, lin, theta = _nested(q, diagonal)
    sol = multilevel_pls(problem, multilevel_gram(problem, lin), problem.lambdas(theta))
    zl = problem.z_matrix(lin) @ problem.lambda_full(problem.lambdas(theta))
    x, w = lin.x, lin.w
    big = np.block([[x.T @ x, x.T @ zl], [zl.T @ x, zl.T @ zl + np.eye(zl.shape[1])]])
    both = np.linalg.solve(big, np.concatenate([x.T @ w, zl.T @ w]))
    p = x.shape[1]
    np.testing.assert_allclose(sol.beta, both[:p], rtol=1e-10)
    np.testing.assert_allclose(sol.u, both[p:], rtol=1e-9, atol=1e-12)
    n = w.size
    sigma2 = sol.pwrss / n
    cov = sigma2 * (np.eye(n) + zl @ zl.T)
    want = -2 * stats.multivariate_normal(x @ sol.beta, cov).logpdf(w)
    assert multilevel_deviance(sol, n, p, False) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("q,diagonal", [(1, False), (2, False), (2, True)])
def test_gradient_against_differences(q, diagonal):
    problem, lin, theta = _nested(q, diagonal, seed=5)
    g = multilevel_gram(problem, lin)

    def dev(t):
        return multilevel_deviance(multilevel_pls(problem, g, problem.lambdas(t)), problem.n,
                                   problem.p, False)

    value, grad = multilevel_ml_gradient(problem, g, problem.lambdas(theta),
                                         problem.theta_positions())
    assert value == pytest.approx(dev(theta), rel=1e-14)
    h = 1e-3
    numeric = []
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = h
        numeric.append((-dev(theta + 2 * e) + 8 * dev(theta + e) - 8 * dev(theta - e)
                        + dev(theta - 2 * e)) / (12 * h))
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.max(np.abs(numeric)))


def test_nested_df_strata():
    """getFixDF with levels site (4) and plot (12) in 96 rows: strata 4, 12 - 4 = 8,
    96 - 12 = 84.  A column varying within plots is at the residual stratum, one constant
    within plots but varying within sites at the plot stratum, one constant within sites
    at the site stratum; each stratum loses its columns and, an intercept being present,
    the first loses one more; the intercept gets the largest."""
    site = np.repeat(np.arange(4), 24)
    plot = np.repeat(np.arange(12), 8)
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(96), rng.normal(size=96), rng.normal(size=12)[plot],
                         rng.normal(size=4)[site]])
    df = fixed_df(x, [site, plot], [4, 12])
    np.testing.assert_array_equal(df, [83, 83, 7, 2])
