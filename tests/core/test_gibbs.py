"""The Bayesian view's sampler against closed forms: given the variance components, the
posterior of (beta, b) under a flat prior on beta is normal with Henderson's mixed-model
solution as its mean, and its beta block has the frequentist vcov(beta) as covariance."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core.gibbs import GibbsProblem, draw_coefficients


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def problem(fit):
    blocks = [t.block for t in fit.design.terms]
    return GibbsProblem.from_arrays(fit.X, fit.Z, fit.design.y, None, blocks)


def _variances(fit):
    return fit.sigma**2, [info[2] for info in fit._term_info()]


def test_conditional_mean_is_the_fitted_beta_and_modes(fit, problem):
    """Mean of (beta, b) | sigma^2, Sigma at the REML estimates = (fixef, ranef): the
    mixed-model equations (1e-8 relative: two solvers of one linear system)."""
    sigma2, covs = _variances(fit)
    mean = problem.conditional_mean(sigma2, covs)
    np.testing.assert_allclose(mean[:2], fit.fixef, rtol=1e-8)
    b = np.concatenate([frame.to_numpy().ravel() for frame in fit.ranef.values()])
    np.testing.assert_allclose(mean[2:], b, rtol=1e-6, atol=1e-8)


def test_coefficient_draws_have_the_frequentist_covariance(fit, problem):
    """4,000 draws: beta's mean within 4 Monte Carlo standard errors of fixef and its
    sample covariance within 10% of vcov(beta) = sigma^2 (R_X'R_X)^-1 (the variance of a
    sample variance from 4,000 draws is ~2.2% relative)."""
    sigma2, covs = _variances(fit)
    rng = np.random.default_rng(5)
    draws = np.array([draw_coefficients(problem, sigma2, covs, rng)[:2] for _ in range(4000)])
    vcov = fit.vcov.to_numpy()
    se = np.sqrt(np.diag(vcov) / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - fit.fixef.to_numpy()) < 4 * se)
    np.testing.assert_allclose(np.cov(draws.T), vcov, rtol=0.1, atol=0.1 * abs(vcov[0, 1]))
