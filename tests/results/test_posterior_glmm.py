"""The Bayesian view of GLMMs against the exact posterior by quadrature.

Intercept-only models with a random intercept per group: ``y_gi ~ Binomial(n_gi,
expit(beta + b_g))`` (cbpp, Polya-Gamma Gibbs) and ``y_gi ~ Poisson(exp(beta + b_g))``
(grouseticks' broods, Metropolis-Hastings within Gibbs), ``b_g ~ N(0, tau^2)``.  A group's
likelihood depends on its totals only; it is integrated over ``b_g`` by adaptive
Gauss-Hermite quadrature (12 nodes around each integrand's mode, scaled by its curvature:
relative error far below 1e-6), and the posterior of ``(beta, tau)`` is evaluated on a
60 x 60 grid in ``(beta, log tau)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special

import mixedmodels as mm
from mixedmodels.priors import HalfStudentT, Normal


def _log_lik_and_curvature(family: str, y, n, eta):
    if family == "binomial":
        p = special.expit(eta)
        return y * -np.logaddexp(0, -eta) + (n - y) * -np.logaddexp(0, eta), n * p * (1 - p)
    mu = np.exp(eta)
    return y * eta - n * mu, n * mu


def quadrature(family, y, n, beta_range, tau_range, beta_prior, tau_prior) -> dict:
    nodes, weights = np.polynomial.hermite.hermgauss(12)
    beta = np.linspace(*beta_range, 60)
    log_tau = np.linspace(np.log(tau_range[0]), np.log(tau_range[1]), 60)
    bb, lt = np.meshgrid(beta, log_tau, indexing="ij")
    tau2 = np.exp(2 * lt)[..., None]
    b = np.zeros((*bb.shape, len(y)))
    for _ in range(50):  # Newton for each integrand's mode
        eta = bb[..., None] + b
        _, curvature = _log_lik_and_curvature(family, y, n, eta)
        mean = special.expit(eta) * n if family == "binomial" else np.exp(eta) * n
        gradient = y - mean - b / tau2
        b = b + np.clip(gradient / (curvature + 1 / tau2), -2, 2)
    _, curvature = _log_lik_and_curvature(family, y, n, bb[..., None] + b)
    scale = 1 / np.sqrt(curvature + 1 / tau2)
    points = b[..., None] + np.sqrt(2) * scale[..., None] * nodes
    log_lik, _ = _log_lik_and_curvature(
        family, y[:, None], n[:, None], bb[..., None, None] + points
    )
    log_g = log_lik - 0.5 * points**2 / tau2[..., None] - 0.5 * np.log(2 * np.pi * tau2[..., None])
    log_g += nodes**2 + np.log(weights * np.sqrt(2) * scale[..., None])
    log_post = special.logsumexp(log_g, axis=-1).sum(-1)
    log_post += -0.5 * ((bb - beta_prior.mean) / beta_prior.sd) ** 2
    log_post += np.vectorize(tau_prior.log_density_sd)(np.exp(lt)) + lt
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    assert w[[0, -1]].sum() + w[:, [0, -1]].sum() < 1e-6  # the grid holds the posterior
    return {"beta": float((w * bb).sum()), "tau": float((w * np.exp(lt)).sum())}


CASES = {
    "binomial-logit, cbpp": (
        "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
        "cbpp",
        "binomial",
        ("herd", "incidence", "size"),
        (-4.0, 1.5),
        (0.02, 4.0),
    ),
    "poisson-log, grouseticks": (
        "TICKS ~ 1 + (1 | BROOD)",
        "grouseticks",
        "poisson",
        ("BROOD", "TICKS", None),
        (-1.5, 2.5),
        (0.3, 4.0),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_posterior_means_equal_the_quadrature(case):
    """Posterior means of beta and tau within 4 Monte Carlo standard errors of the exact
    values; 4 chains x 300 draws."""
    formula, name, family, (group, count, size), beta_range, tau_range = CASES[case]
    data = mm.datasets.load(name)
    fit = mm.glmer(formula, data, family)
    priors = {"fixef": Normal(-1 if family == "binomial" else 0, 2), "sd": HalfStudentT(3, 1)}
    post = fit.sample_posterior(300, 100, seed=3, progress=False, **priors)
    table = post.summary()
    totals = data.groupby(group, observed=True).agg(
        y=(count, "sum"), n=(size or count, "sum" if size else "count")
    )
    exact = quadrature(
        family,
        totals.y.to_numpy(float),
        totals.n.to_numpy(float),
        beta_range,
        tau_range,
        priors["fixef"],
        priors["sd"],
    )
    for row, key in (("(Intercept)", "beta"), (f"sd_(Intercept)|{group}", "tau")):
        got, mcse = table.loc[row, "mean"], table.loc[row, "mcse_mean"]
        assert abs(got - exact[key]) < 4 * mcse, (row, got, exact[key], mcse)
    assert table["r_hat"].max() < 1.02
    assert list(post.draws.columns) == fit.parameter_names  # no sigma


def test_other_links_are_refused():
    cbpp = mm.datasets.load("cbpp")
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, "binomial", link="probit"
    )
    with pytest.raises(mm.ArgumentError, match="this fit is binomial with the probit link"):
        fit.sample_posterior(10, 0, progress=False)


GROUSE = {
    "broods and locations": "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)",
    "with observation-level effects": (
        "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)"
    ),
}


def _grouse_summary(formula: str, draws: int, warmup: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)  # HEIGHT's scale
        fit = mm.glmer(formula, mm.datasets.load("grouseticks"), "poisson")
    post = fit.sample_posterior(draws, warmup, chains=4, seed=11, n_jobs=2, progress=False)
    return post.summary()


def test_grouseticks_partially_confounded_terms_mix():
    """Broods nested in locations (partly confounded variances): with the joint Laplace
    step, the nested centring and interweaving, 4 chains x 200 draws (100 warm-up) already
    agree (rank-normalized R-hat < 1.05, bulk ESS > 50 of 800 draws for every parameter;
    measured 1.009 and 80).  The term-by-term updates alone gave R-hat 1.45 for the
    location sd with 4 x 1,000 draws."""
    table = _grouse_summary(GROUSE["broods and locations"], 200, 100)
    assert table["r_hat"].max() < 1.05, table
    assert table["ess_bulk"].min() > 50, table


@pytest.mark.slow
@pytest.mark.parametrize("case", list(GROUSE))
def test_grouseticks_converges(case):
    """4 chains x 1,000 draws (500 warm-up): R-hat < 1.03 and bulk ESS > 150 for every
    parameter.  Issue 11's bar is R-hat < 1.01 and ESS > 400; measured (one run each,
    other seeds): broods and locations R-hat 1.008-1.017 and ESS 220-290 for the sds,
    with observation-level effects R-hat 1.004 and ESS 340-350 (the term-by-term updates
    alone: R-hat 1.45).  With the Laplace-frame sd moves, broods and locations (seed 1):
    R-hat 1.007 and 1.007, ESS 581 and 632 for the sds, fixed effects R-hat <= 1.002 and
    ESS >= 1,671; with observation-level effects R-hat <= 1.008 and ESS >= 571 (the bar
    met in those runs)."""
    table = _grouse_summary(GROUSE[case], 1000, 500)
    assert table["r_hat"].max() < 1.03, table
    assert table["ess_bulk"].min() > 150, table


def test_poisson_draws_do_not_depend_on_n_jobs():
    """Each chain keeps its own Newton start and step size: chains 1-2 run in another
    process with n_jobs=2 than with n_jobs=1 and give the same draws (to the bit)."""
    fit = mm.glmer("TICKS ~ YEAR + (1 | BROOD)", mm.datasets.load("grouseticks"), "poisson")
    a = fit.sample_posterior(15, 10, chains=3, seed=5, progress=False, n_jobs=1)
    b = fit.sample_posterior(15, 10, chains=3, seed=5, progress=False, n_jobs=2)
    np.testing.assert_array_equal(a.draws.to_numpy(), b.draws.to_numpy())
    assert not np.array_equal(a.draws.xs(0).to_numpy(), a.draws.xs(1).to_numpy())
