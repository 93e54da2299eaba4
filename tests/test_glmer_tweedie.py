"""glmmTMB's ``tweedie()`` family (a compound Poisson-gamma response, power 1 < p < 2 and
dispersion estimated), against glmmTMB 1.1.5 on a simulated case (reference/families/
tweedie_sim.json and data/tweedie_sim.csv, made by make_tweedie_reference.R; 30 groups of
12, 6% exact zeros).  The agreement of the log-likelihood, fixed effects, sd, standard
errors, sigma and fitted values is checked with the other glmmTMB cases in
test_glmer_families.py (the case is one of them); here: the power and its Wald interval,
the series density, simulation.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from mixedmodels.core.families import Tweedie, make_family, tweedie_log_series
from tests.catalogue import fit_cache
from tests.family_cases import family_cases

CASE = next(c for c in family_cases("glmmTMB") if c.name == "tweedie_sim")
fitted = fit_cache()


def test_power_and_its_wald_interval_match_glmmtmb():
    """The power within 1e-4 relative (measured 1.3e-6), its Wald interval (glmmTMB's
    1 + plogis(psi -+ z se(psi))) within 2e-3 of its width (as the other Wald intervals)."""
    fit = fitted(CASE)
    ref = CASE.reference
    assert fit.extra_parameters["power"] == pytest.approx(ref["power"], rel=1e-4)
    assert fit.parameters["power"] == pytest.approx(ref["power"], rel=1e-4)
    lo, hi = ref["power_wald"]
    np.testing.assert_allclose(fit.confint().loc["power"], [lo, hi], atol=2e-3 * (hi - lo))
    assert "Dispersion parameter for tweedie family (): 1.07 " in fit.summary()
    assert f"{ref['sigma']:.3g}" == "1.07"


def test_series_density_has_the_tweedie_mean_and_variance():
    """The series density on y > 0 integrates, by the trapezoid rule on a grid geometric
    below 1e-3 (2,000 points) and uniform above (100,001, to 40 sd), to the mean mu and the
    variance phi mu^p within 1e-6 relative (a closed form the series does not use), for
    powers near 1 and 2 and a small dispersion."""
    for mu, phi, power in [(2.0, 1.2, 1.6), (0.3, 0.5, 1.1), (1.0, 0.05, 1.5), (5.0, 2.0, 1.8)]:
        family = Tweedie(phi=phi, power=power)
        top = mu + 40 * np.sqrt(phi * mu**power)  # 40 sd: the tail beyond is < 1e-12
        grid = np.concatenate(
            [np.geomspace(1e-10, 1e-3, 2001)[:-1], np.linspace(1e-3, top, 100_001)]
        )
        log_f = family.log_derivatives(grid, np.full(grid.shape, np.log(mu)), np.ones(grid.shape))[
            0
        ]
        density = np.exp(log_f)
        mean = integrate.trapezoid(density * grid, grid)
        second = integrate.trapezoid(density * grid**2, grid)
        assert mean == pytest.approx(mu, rel=1e-6)
        assert second - mean**2 == pytest.approx(phi * mu**power, rel=1e-6)


def test_series_reduces_to_the_poisson_gamma_sum_for_a_single_term():
    """With one summand the series is one term: at p = 1.5 (alpha = -1), W_1 = z /
    Gamma(1) and the density of y > 0 given one gamma summand follows; checked against the
    direct sum over N of Poisson(N) x Gamma(N alpha shape) densities (N up to 200) within
    1e-10 relative."""
    from scipy import special, stats

    phi, power, mu = 0.7, 1.5, 1.3
    y = np.array([0.01, 0.4, 1.0, 2.5, 7.0])
    lam = mu ** (2 - power) / (phi * (2 - power))
    shape = (2 - power) / (power - 1)
    scale = phi * (power - 1) * mu ** (power - 1)
    n = np.arange(1, 201)[:, None]
    direct = np.sum(
        stats.poisson.pmf(n, lam) * stats.gamma.pdf(y[None, :], n * shape, scale=scale), axis=0
    )
    theta = mu ** (1 - power) / (1 - power)
    kappa = mu ** (2 - power) / (2 - power)
    series = np.exp(-np.log(y) + tweedie_log_series(y, phi, power) + (y * theta - kappa) / phi)
    np.testing.assert_allclose(series, direct, rtol=1e-10)
    assert special.gammaln(1.0) == 0.0


def test_simulate_draws_compound_poisson_gamma_with_the_fitted_moments():
    """With the random effects drawn anew: the share of zeros is mean(exp(-lambda_i))
    given the effects; over 400 draws the empirical share is within 0.01 of the average
    of that expectation over fresh effects (computed by Monte Carlo with 4000 effect
    draws; the sd of the empirical share over 144,000 values is ~7e-4)."""
    fit = fitted(CASE)
    sims = fit.simulate(400, seed=3)
    assert sims.shape == (fit.nobs, 400) and np.all(sims >= 0)
    family = fit.family
    p, phi = family.power, family.phi
    rng = np.random.default_rng(0)
    fixed = fit.predict(include_random=False)
    groups = CASE.data()["g"].cat.codes.to_numpy()
    b = rng.standard_normal((4000, 30)) * fit.theta[0]
    mu = np.exp(fixed[None, :] + b[:, groups])
    expected = np.mean(np.exp(-(mu ** (2 - p)) / (phi * (2 - p))))
    assert (sims == 0).mean() == pytest.approx(expected, abs=0.01)


def test_tweedie_is_found_by_name_and_rejects_negative_responses():
    assert isinstance(make_family("tweedie"), Tweedie)
    assert Tweedie().check_response(np.array([0.0, -1.0])) == (
        "a tweedie response must be non-negative"
    )
