"""PIRLS's Newton steps for lme4's families (core/families.py): the links' second
derivatives and the variance functions' derivatives against central differences of the
first ones, and the steps' weights against the second derivative of the unit deviance in
eta (central differences; the reference is the deviance itself, not the formula).  Central
differences with step 1e-5 have truncation error ~1e-10 and rounding error ~1e-11 relative
on these smooth functions, hence the tolerances of 1e-6."""

import numpy as np
import pytest
from scipy import special

from mixedmodels.core.families import (
    LINKS,
    Binomial,
    Gamma,
    Gaussian,
    InverseGaussian,
    NegativeBinomial,
    _newton_working,
)

H = 1e-5

#: (link, eta values inside the link's domain)
LINK_POINTS = {
    "log": np.linspace(-2.0, 2.0, 9),
    "identity": np.linspace(0.5, 3.0, 9),
    "sqrt": np.linspace(0.5, 3.0, 9),
    "inverse": np.linspace(0.2, 3.0, 9),
    "1/mu^2": np.linspace(0.2, 3.0, 9),
}


@pytest.mark.parametrize("name", sorted(LINK_POINTS))
def test_link_second_derivative_against_differences(name):
    link = LINKS[name]()
    eta = LINK_POINTS[name]
    numeric = (link.mu_eta(eta + H) - link.mu_eta(eta - H)) / (2 * H)
    np.testing.assert_allclose(link.mu_eta_derivative(eta), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "family", [Gamma(), InverseGaussian(), Gaussian(), NegativeBinomial(k=2.5)], ids=repr
)
def test_variance_derivative_against_differences(family):
    mu = np.linspace(0.3, 4.0, 9)
    numeric = (family.variance(mu + H) - family.variance(mu - H)) / (2 * H)
    np.testing.assert_allclose(family.variance_derivative(mu), numeric, rtol=1e-6, atol=1e-9)


CASES = [
    (Gamma(LINKS["log"]()), np.array([0.4, 1.3, 2.2, 5.0, 0.05, 3.1])),
    (Gamma(LINKS["inverse"]()), np.array([0.4, 1.3, 2.2, 5.0, 0.05, 3.1])),
    (InverseGaussian(LINKS["log"]()), np.array([0.4, 1.3, 2.2, 5.0, 0.05, 3.1])),
    (Gaussian(LINKS["log"]()), np.array([0.4, 1.3, 2.2, 5.0, 0.05, 3.1])),
    (NegativeBinomial(k=1.7), np.array([0.0, 1.0, 3.0, 7.0, 0.0, 12.0])),
]


@pytest.mark.parametrize("family, y", CASES, ids=lambda c: repr(c) if hasattr(c, "link") else "")
def test_newton_weights_are_the_deviance_curvature(family, y):
    """``h`` is half the second derivative of the unit deviance in eta where that is at
    least 1e-3 of Fisher's weight (Fisher's weight elsewhere), and ``h r`` is minus half
    its first derivative in every row (the step's gradient is the deviance's)."""
    link = family.link
    mu0 = np.array([0.8, 1.1, 2.0, 3.5, 0.9, 2.5])
    eta = link(mu0)
    w = np.array([1.0, 2.0, 0.5, 1.0, 1.5, 1.0])

    def dev(e):
        return family.unit_deviance(y, link.inverse(e), w)

    d1 = (dev(eta + H) - dev(eta - H)) / (2 * H)
    d2 = (dev(eta + H) - 2 * dev(eta) + dev(eta - H)) / H**2
    h, r = _newton_working(family, y, eta, link.inverse(eta), w)
    fisher = w * link.mu_eta(eta) ** 2 / family.variance(link.inverse(eta))
    np.testing.assert_allclose(h * r, -0.5 * d1, rtol=1e-6, atol=1e-8)
    newton = 0.5 * d2
    expected = np.where(newton >= 1e-3 * fisher, newton, fisher)
    np.testing.assert_allclose(h, expected, rtol=1e-4, atol=1e-6)  # d2 by differences: 1e-5


def test_binary_binomial_deviance_is_the_general_formula():
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.4).astype(float)
    mu = np.clip(rng.random(200), 1e-6, 1 - 1e-6)
    w = rng.uniform(0.5, 3.0, 200)
    general = 2 * w * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))
    np.testing.assert_allclose(Binomial().unit_deviance(y, mu, w), general, rtol=1e-12)
    # a proportion among the rows takes the general formula
    y[0] = 0.25
    general = 2 * w * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))
    np.testing.assert_allclose(Binomial().unit_deviance(y, mu, w), general, rtol=1e-12)
