"""The Bayesian view of a binomial-logit GLMM (Polya-Gamma Gibbs) against the exact
posterior by quadrature.

cbpp with a random intercept per herd: ``incidence ~ Binomial(size, expit(beta + b_h))``,
``b_h ~ N(0, tau^2)``.  Each herd's likelihood integrates over ``b_h`` by 30-node
Gauss-Hermite quadrature (its integrand is smooth: error far below 1e-6), and the
posterior of ``(beta, tau)`` is evaluated on a 100 x 100 grid in ``(beta, log tau)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import mixedmodels as mm
from mixedmodels.priors import HalfStudentT, Normal


@pytest.fixture(scope="module")
def cbpp():
    return mm.datasets.load("cbpp")


def quadrature(data, beta_prior: Normal, tau_prior: HalfStudentT) -> dict[str, float]:
    # an intercept-only model: a herd's likelihood depends on its totals only
    totals = data.groupby("herd", observed=True)[["incidence", "size"]].sum()
    y = totals.incidence.to_numpy(dtype=float)
    n = totals["size"].to_numpy(dtype=float)
    nodes, weights = np.polynomial.hermite.hermgauss(30)
    beta = np.linspace(-3.5, 0.5, 100)
    log_tau = np.linspace(np.log(0.02), np.log(4.0), 100)
    bb, lt = np.meshgrid(beta, log_tau, indexing="ij")
    eta = bb[..., None, None] + np.sqrt(2) * np.exp(lt)[..., None, None] * nodes[:, None]
    per_herd = y * -np.logaddexp(0, -eta) + (n - y) * -np.logaddexp(0, eta)  # (B, T, K, H)
    log_lik = special.logsumexp(per_herd + np.log(weights / np.sqrt(np.pi))[:, None], axis=2)
    log_post = log_lik.sum(-1)
    log_post += -0.5 * ((bb - beta_prior.mean) / beta_prior.sd) ** 2
    log_post += np.vectorize(tau_prior.log_density_sd)(np.exp(lt)) + lt
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    return {"beta": float((w * bb).sum()), "tau": float((w * np.exp(lt)).sum())}


def test_logit_posterior_means_equal_the_quadrature(cbpp):
    """Posterior means of beta and tau within 4 Monte Carlo standard errors of the exact
    values; 4 chains x 400 draws."""
    fit = mm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, "binomial")
    priors = {"fixef": Normal(-1, 2), "sd": HalfStudentT(3, 1)}
    post = fit.sample_posterior(400, 100, seed=3, progress=False, **priors)
    table = post.summary()
    exact = quadrature(cbpp, priors["fixef"], priors["sd"])
    for row, key in (("(Intercept)", "beta"), ("sd_(Intercept)|herd", "tau")):
        got, mcse = table.loc[row, "mean"], table.loc[row, "mcse_mean"]
        assert abs(got - exact[key]) < 4 * mcse, (row, got, exact[key], mcse)
    assert list(post.draws.columns) == fit.parameter_names  # no sigma


def test_only_the_logit_link(cbpp):
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, "binomial", link="probit"
    )
    with pytest.raises(mm.ArgumentError, match="logit link; this fit is binomial with the probit"):
        fit.sample_posterior(10, 0, progress=False)
