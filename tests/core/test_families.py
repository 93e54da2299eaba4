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
    h = 1e-6  # central difference: error O(h^2) ~ 1e-12, relative 1e-8 is safe
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
