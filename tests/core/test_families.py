"""Families and links as classes: each checked against an independent representation (the
log density it must agree with, the inverse it must undo, a numerical derivative)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mixedmodels.core.families import FAMILIES, LINKS, Binomial, Poisson, make_family
from mixedmodels.errors import ArgumentError

MU = np.array([0.03, 0.2, 0.5, 0.81, 0.97])


@pytest.mark.parametrize("name", sorted(LINKS))
def test_links_invert_and_differentiate(name):
    link = LINKS[name]()
    eta = link(MU)
    np.testing.assert_allclose(link.inverse(eta), MU, rtol=1e-12)
    # central difference with a step relative to eta (1/mu^2 maps MU to eta up to 1111):
    # error O(h^2 / eta^2) ~ 1e-12, rounding ~1e-10 relative; 1e-7 is safe
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-7)


def test_binomial_deviance_is_twice_the_log_likelihood_ratio():
    """d_i = 2 (log p(y | mu = y) - log p(y | mu)) with scipy's binomial pmf."""
    trials = np.array([5.0, 10, 1, 7, 3])
    successes = np.array([0.0, 4, 1, 7, 2])
    y = successes / trials
    saturated = stats.binom.logpmf(successes, trials, y)
    fitted = stats.binom.logpmf(successes, trials, MU)
    np.testing.assert_allclose(
        Binomial().unit_deviance(y, MU, trials), 2 * (saturated - fitted), rtol=1e-10
    )
    np.testing.assert_allclose(Binomial().log_density(y, MU, trials), fitted, rtol=1e-12)
    np.testing.assert_allclose(Binomial().variance(MU), MU * (1 - MU))


def test_poisson_deviance_is_twice_the_log_likelihood_ratio():
    y = np.array([0.0, 1, 3, 10, 2])
    mu = np.array([0.5, 1.5, 2.0, 8.0, 2.0])
    saturated = stats.poisson.logpmf(y, np.maximum(y, 1e-300))
    fitted = stats.poisson.logpmf(y, mu)
    np.testing.assert_allclose(
        Poisson().unit_deviance(y, mu, np.ones(5)), 2 * (saturated - fitted), rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(Poisson().variance(mu), mu)


def test_registry_builds_every_family_with_each_of_its_links():
    for name, cls in FAMILIES.items():
        assert make_family(name).link.name == cls.links[0]
        for link in cls.links:
            family = make_family(name.upper(), link)
            assert isinstance(family, cls) and family.link.name == link


@pytest.mark.parametrize(
    "name, link, words",
    [("gamma2", None, "'gamma2'"), ("poisson", "logit", "'logit'"), (3, None, "3")],
)
def test_unknown_family_or_link_names_it(name, link, words):
    with pytest.raises(ArgumentError, match=words):
        make_family(name, link)


def test_simulation_has_the_family_mean_and_variance():
    """Means and variances of 200,000 draws within 5 standard errors of mu and V(mu)."""
    rng = np.random.default_rng(7)
    mu = np.full(200_000, 2.5)
    draws = Poisson().simulate(mu, np.ones_like(mu), rng)
    assert abs(draws.mean() - 2.5) < 5 * np.sqrt(2.5 / mu.size)
    assert abs(draws.var() - 2.5) < 5 * np.sqrt(2 * 2.5**2 / mu.size + 2.5 / mu.size)
    p = np.full(200_000, 0.3)
    props = Binomial().simulate(p, np.full_like(p, 4.0), rng)
    assert abs(props.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 4 / p.size)


@pytest.mark.parametrize("name", ["gamma", "inverse_gaussian", "gaussian"])
def test_dispersion_family_deviance_is_twice_the_scaled_log_likelihood_ratio(name):
    """``d_i = 2 phi (log p(y | y, phi) - log p(y | mu, phi))`` for any ``phi``: the unit
    deviance and the log density (scipy's Gamma and normal, the inverse Gaussian's closed
    form) describe the same distribution."""
    family = make_family(name, "log")
    y = np.array([0.4, 1.0, 2.5, 7.0])
    mu = np.array([0.5, 1.3, 2.0, 9.0])
    w = np.array([1.0, 2.0, 1.0, 0.5])
    for phi in (0.3, 1.7):
        ratio = family.log_density(y, y, w, phi) - family.log_density(y, mu, w, phi)
        np.testing.assert_allclose(family.unit_deviance(y, mu, w), 2 * phi * ratio, rtol=1e-10)


def test_dispersion_family_densities_match_scipy():
    y, mu, phi = np.array([0.4, 2.5]), np.array([0.5, 2.0]), 0.3
    np.testing.assert_allclose(
        make_family("gamma").log_density(y, mu, np.ones(2), phi),
        stats.gamma.logpdf(y, 1 / phi, scale=mu * phi),
        rtol=1e-12,
    )
    # scipy's invgauss(mu / lambda, scale = lambda) is the inverse Gaussian with mean mu
    # and shape lambda = 1 / phi
    lam = 1 / phi
    np.testing.assert_allclose(
        make_family("inverse_gaussian").log_density(y, mu, np.ones(2), phi),
        stats.invgauss.logpdf(y, mu / lam, scale=lam),
        rtol=1e-12,
    )


def test_dispersion_family_aic_is_rs():
    """R's ``family$aic`` with ``phi = deviance / sum(w)`` (gaussian: ``/ n``) and + 2:
    checked through closed forms of the sums (gaussian: ``n (log(2 pi dev/n) + 1) + 2 -
    sum(log w)``; inverse Gaussian: ``sum(w) (log(2 pi dev/sum(w)) + 1) + 3 sum(w log y)
    + 2``)."""
    y = np.array([0.4, 1.0, 2.5, 7.0])
    mu = np.array([0.5, 1.3, 2.0, 9.0])
    w = np.array([1.0, 2.0, 1.0, 0.5])
    gauss = make_family("gaussian", "log")
    dev = float(np.sum(gauss.unit_deviance(y, mu, w)))
    expected = 4 * (np.log(2 * np.pi * dev / 4) + 1) + 2 - np.sum(np.log(w))
    assert gauss.aic(y, mu, w, dev) == pytest.approx(expected, rel=1e-12)
    ig = make_family("inverse_gaussian")
    dev = float(np.sum(ig.unit_deviance(y, mu, w)))
    expected = w.sum() * (np.log(2 * np.pi * dev / w.sum()) + 1) + 3 * np.sum(w * np.log(y)) + 2
    assert ig.aic(y, mu, w, dev) == pytest.approx(expected, rel=1e-12)


def test_dispersion_family_simulation_has_mean_and_variance():
    """Means and variances of 200,000 draws within 5 standard errors of mu and phi V(mu)."""
    rng = np.random.default_rng(3)
    n = 200_000
    mu = np.full(n, 2.0)
    for name, var in (("gamma", 0.3 * 4.0), ("inverse_gaussian", 0.3 * 8.0), ("gaussian", 0.3)):
        draws = make_family(name, "log").simulate(mu, np.ones(n), rng, 0.3)
        assert abs(draws.mean() - 2.0) < 5 * np.sqrt(var / n)
        assert abs(draws.var() / var - 1) < 0.05


def test_trigamma_matches_scipy():
    """The fast trigamma against scipy's polygamma(1, x) from 1e-4 to 1e4: 1e-12 relative."""
    from scipy import special

    from mixedmodels.core.families import _trigamma

    x = np.concatenate([np.logspace(-4, 4, 400), np.arange(1, 60) + 0.5])
    np.testing.assert_allclose(_trigamma(x), special.polygamma(1, x), rtol=1e-12)


@pytest.mark.parametrize("name", ["nbinom2", "nbinom1", "beta"])
def test_likelihood_family_derivatives_and_densities(name):
    """log p against scipy's nbinom / beta pmf and pdf; d1 and d2 against central
    differences of log p and d1 (step 1e-5: error ~1e-10 absolute, 1e-7 allowed)."""
    family = make_family(name).with_extra(np.array([np.log(1.7)]))
    if name == "beta":
        y = np.array([0.1, 0.5, 0.93, 0.02])
        eta = np.array([-1.0, 0.2, 1.5, -2.5])
        mu = 1 / (1 + np.exp(-eta))
        expected = stats.beta.logpdf(y, mu * 1.7, (1 - mu) * 1.7)
    else:
        y = np.array([0.0, 1, 3, 7, 12])
        eta = np.array([0.3, -0.2, 1.1, 2.0, 1.7])
        mu = np.exp(eta)
        size = 1.7 if name == "nbinom2" else mu / 1.7
        prob = size / (size + mu)
        expected = stats.nbinom.logpmf(y, size, prob)
    w = np.ones(y.size)
    logp, d1, d2 = family.log_derivatives(y, eta, w)
    np.testing.assert_allclose(logp, expected, rtol=1e-12)
    h = 1e-5
    up, down = family.log_derivatives(y, eta + h, w), family.log_derivatives(y, eta - h, w)
    np.testing.assert_allclose(d1, (up[0] - down[0]) / (2 * h), atol=1e-7)
    np.testing.assert_allclose(d2, (up[1] - down[1]) / (2 * h), atol=1e-7)


def test_zero_inflated_density_is_the_mixture():
    """p(0) = pi + (1 - pi) f(0), p(y) = (1 - pi) f(y): against scipy's Poisson; derivatives
    by central differences."""
    from mixedmodels.core.families import PoissonLikelihood, ZeroInflated

    X = np.column_stack([np.ones(5), [0.0, 1, 0, 1, 1]])
    family = ZeroInflated(PoissonLikelihood(), X, ["(Intercept)", "x"], [-0.5, 1.0])
    pi = 1 / (1 + np.exp(-(X @ [-0.5, 1.0])))
    y = np.array([0.0, 0, 2, 5, 1])
    eta = np.array([0.2, 1.0, 0.7, 1.6, -0.4])
    f = stats.poisson.pmf(y, np.exp(eta))
    expected = np.log(np.where(y == 0, pi + (1 - pi) * f, (1 - pi) * f))
    logp, d1, d2 = family.log_derivatives(y, eta, np.ones(5))
    np.testing.assert_allclose(logp, expected, rtol=1e-12)
    h = 1e-5
    up = family.log_derivatives(y, eta + h, np.ones(5))
    down = family.log_derivatives(y, eta - h, np.ones(5))
    np.testing.assert_allclose(d1, (up[0] - down[0]) / (2 * h), atol=1e-7)
    np.testing.assert_allclose(d2, (up[1] - down[1]) / (2 * h), atol=1e-7)


def test_log_link_caps_a_runaway_linear_predictor_without_overflow():
    """Reproducer (test_fuzz, glmer poisson ``h ~ h:f + (1 + x | g)``): a scoring step
    to eta > 709 overflowed ``exp`` with a RuntimeWarning.  The log link caps eta at 700,
    so the mean is exp(700) (closed form), finite, and no numpy warning is raised."""
    import warnings

    link = LINKS["log"]()
    eta = np.array([1000.0, 700.0, 1.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for values in (link.inverse(eta), link.mu_eta(eta)):
            np.testing.assert_allclose(values, np.exp([700.0, 700.0, 1.5]), rtol=1e-15)
        mu = link.inverse(np.array([1000.0]))
        logp = Poisson(link).log_density(np.array([3.0]), mu, np.ones(1))
    assert np.all(np.isfinite(logp))
