"""Every way of writing the same model, checked against the others (tutorial models 1-6)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import mixedmodels as mm


@pytest.fixture(scope="module")
def seed_fit():
    return mm.lmer("y ~ x + (1|clus)", mm.datasets.load("seedsim"))


@pytest.fixture(scope="module")
def seed_fit_ml():
    return mm.lmer("y ~ x + (1|clus)", mm.datasets.load("seedsim"), reml=False)


@pytest.fixture(scope="module")
def sleep_fit():
    return mm.lmer("Reaction ~ Days + (Days|Subject)", mm.datasets.load("sleepstudy"))


def test_z_is_the_indicator_matrix_for_random_intercepts(seed_fit):
    df = mm.datasets.load("seedsim")
    Z = seed_fit.Z
    assert sp.issparse(Z) and Z.shape == (250, 50)
    expected = (df.clus.cat.codes.to_numpy()[:, None] == np.arange(50)[None, :]).astype(float)
    np.testing.assert_array_equal(Z.toarray(), expected)
    np.testing.assert_array_equal(seed_fit.X[:, 1], df.x.to_numpy())


def test_lambda_and_covariance_of_random_effects(sleep_fit):
    lam = sleep_fit.Lambda.toarray()
    cov = sleep_fit.ranef_cov()["Subject"].to_numpy()
    np.testing.assert_allclose(sleep_fit.sigma**2 * lam[:2, :2] @ lam[:2, :2].T, cov, rtol=1e-12)
    vc = sleep_fit.varcorr
    assert cov[0, 0] == pytest.approx(vc.vcov[0]) and cov[1, 0] == pytest.approx(vc.vcov[2])


def test_fitted_equals_x_beta_plus_z_b(sleep_fit):
    np.testing.assert_allclose(
        sleep_fit.X @ sleep_fit.fixef.to_numpy() + sleep_fit.Z @ sleep_fit.b,
        sleep_fit.fitted,
        rtol=1e-12,
    )


def test_icc_of_random_intercepts(seed_fit):
    tau2 = seed_fit.varcorr.vcov[0]
    sigma2 = seed_fit.sigma**2
    assert seed_fit.icc() == pytest.approx(tau2 / (tau2 + sigma2), rel=1e-12)


def test_marginal_covariance_structure(seed_fit):
    cov = seed_fit.marginal_cov()
    tau2, sigma2 = seed_fit.varcorr.vcov[0], seed_fit.sigma**2
    assert sp.issparse(cov)
    np.testing.assert_allclose(cov.diagonal(), tau2 + sigma2, rtol=1e-12)
    dense = cov.toarray()
    assert dense[0, 1] == pytest.approx(tau2)  # rows 0 and 1: same cluster
    assert dense[0, 5] == 0.0  # different clusters
    assert cov.nnz == 50 * 5 * 5  # block diagonal: one 5 x 5 block per cluster


def test_marginal_log_density_equals_ml_loglik(seed_fit_ml):
    fit = seed_fit_ml
    mean = fit.X @ fit.fixef.to_numpy()
    y = mm.datasets.load("seedsim").y.to_numpy()
    logpdf = stats.multivariate_normal(mean, fit.marginal_cov().toarray()).logpdf(y)
    assert logpdf == pytest.approx(fit.loglik, rel=1e-10)


def test_penalized_loss_is_minimal_at_the_fit(sleep_fit):
    fit = sleep_fit
    base = fit.penalized_loss()
    rng = np.random.default_rng(0)
    beta, b = fit.fixef.to_numpy(), fit.b
    for _ in range(20):
        db = rng.normal(size=b.size) * 0.5
        dbeta = rng.normal(size=beta.size) * 0.5
        assert fit.penalized_loss(beta + dbeta, b + db) > base
    # closed form: zero gradient in beta -> X'(y - X beta - Z b) = 0
    r = mm.datasets.load("sleepstudy").Reaction.to_numpy() - fit.X @ beta - fit.Z @ b
    np.testing.assert_allclose(fit.X.T @ r, 0.0, atol=1e-6 * np.abs(fit.X.T @ fit.fitted).max())


def test_penalty_for_random_intercepts_is_sigma2_over_tau2(seed_fit):
    b = seed_fit.b
    lam = seed_fit.sigma**2 / seed_fit.varcorr.vcov[0]
    r = mm.datasets.load("seedsim").y.to_numpy() - seed_fit.fitted
    assert seed_fit.penalized_loss() == pytest.approx(float(r @ r) + lam * float(b @ b), rel=1e-9)


def test_simulate_from_fit_has_fitted_moments(seed_fit):
    sims = seed_fit.simulate(2000, seed=1)
    assert sims.shape == (250, 2000)
    mean = seed_fit.X @ seed_fit.fixef.to_numpy()
    # mean of 2000 draws: sd of the mean is sqrt(var / 2000); 5 sd bound
    sd = np.sqrt(seed_fit.marginal_cov().diagonal())
    assert np.all(np.abs(sims.mean(axis=1) - mean) < 5 * sd / np.sqrt(2000) + 1e-12)
    same = seed_fit.simulate(3, seed=1)
    np.testing.assert_array_equal(same, seed_fit.simulate(3, seed=1))


def test_loglik_at_any_parameters_is_the_marginal_density(seed_fit_ml):
    fit = seed_fit_ml
    assert fit.loglik_at() == pytest.approx(fit.loglik, rel=1e-10)
    y = mm.datasets.load("seedsim").y.to_numpy()
    beta, theta, sigma = np.array([2.5, 0.9]), np.array([0.3]), 1.3
    tau2 = (theta[0] * sigma) ** 2
    Z = fit.Z.toarray()
    cov = sigma**2 * np.eye(250) + tau2 * Z @ Z.T
    expected = stats.multivariate_normal(fit.X @ beta, cov).logpdf(y)
    assert fit.loglik_at(beta, theta, sigma) == pytest.approx(expected, rel=1e-10)
    assert fit.loglik_at(beta, theta, sigma) < fit.loglik
