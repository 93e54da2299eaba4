"""simulate, predict, anova, the bootstrap and marginal_cov() for every residual structure.

Each structure (AR1, CAR1, CompSymm, ARMA(1,1), varIdent, varPower of the fitted values,
varExp, a combined variance function with AR(1) errors) is checked by identities between
two representations, which fail when either side is wrong:

- ``marginal_cov()`` against the fit's ML log-likelihood: ``log N(y; X beta, Sigma)``
  written out densely equals ``loglik`` (1e-9 relative; both are exact up to rounding);
- ``simulate`` against ``marginal_cov()``: the sample covariance of 4,000 draws in one
  group is Sigma's block (relative Frobenius error of a sample covariance from N draws is
  about ``sqrt(2 / N)`` times a factor near 1 for these blocks, 2-3%; tolerance 8%) and
  the sample mean is ``X beta`` (within 5 of its standard errors);
- ``predict``: without random effects ``X beta``, with them the fitted values, on the
  fitted rows passed as new data the same (1e-10 relative), and prediction-interval
  variances equal confidence variances plus the conditional variance of ``z'b`` plus the
  row's residual variance, the diagonal of ``residual_cov()`` (1e-10 relative);
- ``anova(plain, structured)``: Chisq, Df, AIC and BIC from the two ML log-likelihoods
  and parameter counts (1e-9 relative);
- the bootstrap: a replicate is the refit of the response simulated from the same
  generator (1e-8 relative), and a few replicates are finite and vary.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm

OVARY = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
BODYWEIGHT = "weight ~ Time + Diet + (1 | Rat)"
ORTHODONT = "distance ~ age + Sex + (1 | Subject)"

CASES = {
    "AR1": ("Ovary", OVARY, "Mare", lambda: {"correlation": mm.cor.AR1()}),
    "CAR1": ("BodyWeight", BODYWEIGHT, "Rat", lambda: {"correlation": mm.cor.CAR1("Time")}),
    "CompSymm": (
        "Machines",
        "score ~ Machine + (1 | Worker)",
        "Worker",
        lambda: {"correlation": mm.cor.CompSymm(group="Worker/Machine")},
    ),
    "ARMA": ("Ovary", OVARY, "Mare", lambda: {"correlation": mm.cor.ARMA(p=1, q=1)}),
    "varIdent": ("Orthodont", ORTHODONT, "Subject", lambda: {"weights": mm.var.Ident("Sex")}),
    "varPower": ("BodyWeight", BODYWEIGHT, "Rat", lambda: {"weights": mm.var.Power()}),
    "varExp": ("BodyWeight", BODYWEIGHT, "Rat", lambda: {"weights": mm.var.Exp("Time")}),
    "combined": (
        "Orthodont",
        ORTHODONT,
        "Subject",
        lambda: {
            "correlation": mm.cor.AR1(),
            "weights": mm.var.Combined(mm.var.Ident("Sex"), mm.var.Power("age")),
        },
    ),
}
_FITS: dict[str, mm.ResidualLmerFit] = {}


def fitted(case: str) -> mm.ResidualLmerFit:
    if case not in _FITS:
        data, formula, _, kwargs = CASES[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[case] = mm.lmer(formula, mm.datasets.load(data), reml=False, **kwargs())
    return _FITS[case]


def _first_group(fit, group: str) -> np.ndarray:
    codes = fit.design.data[group].astype(str).to_numpy()
    return np.flatnonzero(codes == codes[0])


@pytest.mark.parametrize("case", list(CASES))
def test_marginal_cov_gives_the_loglik(case):
    fit = fitted(case)
    sigma = fit.marginal_cov().toarray()
    np.testing.assert_allclose(sigma, sigma.T, atol=1e-12 * np.abs(sigma).max())
    r = fit.design.y - fit.X @ fit.fixef.to_numpy()
    sign, log_det = np.linalg.slogdet(sigma)
    assert sign > 0
    loglik = -0.5 * (log_det + r @ np.linalg.solve(sigma, r) + r.size * np.log(2 * np.pi))
    assert loglik == pytest.approx(fit.loglik, rel=1e-9)
    # the structure is there: the residual part is not sigma^2 I
    resid = fit.residual_cov().toarray()
    assert np.abs(resid - fit.sigma**2 * np.eye(fit.nobs)).max() > 1e-3 * fit.sigma**2


@pytest.mark.parametrize("case", list(CASES))
def test_simulated_responses_have_the_marginal_covariance(case):
    fit = fitted(case)
    rows = _first_group(fit, CASES[case][2])
    sims = fit.simulate(4000, seed=11)[rows]
    sigma = fit.marginal_cov().toarray()[np.ix_(rows, rows)]
    mean = (fit.X @ fit.fixef.to_numpy())[rows]
    dev = sims - sims.mean(axis=1, keepdims=True)
    cov = dev @ dev.T / (sims.shape[1] - 1)
    assert np.linalg.norm(cov - sigma) / np.linalg.norm(sigma) < 0.08
    se = np.sqrt(np.diagonal(sigma) / sims.shape[1])
    assert np.all(np.abs(sims.mean(axis=1) - mean) < 5 * se)


@pytest.mark.parametrize("case", list(CASES))
def test_predictions(case):
    fit = fitted(case)
    beta = fit.fixef.to_numpy()
    scale = np.abs(fit.fitted).max()
    np.testing.assert_allclose(fit.predict(include_random=False), fit.X @ beta, atol=1e-10 * scale)
    np.testing.assert_allclose(fit.predict(), fit.fitted, atol=1e-10 * scale)
    again = fit.predict(fit.design.data)
    np.testing.assert_allclose(np.asarray(again), fit.fitted, atol=1e-10 * scale)
    conf = fit.predict(interval="confidence")
    pred = fit.predict(interval="prediction")
    covs = fit._conditional_covariances[0][fit.design.terms[0].codes, 0, 0]
    resid_var = fit.residual_cov().diagonal()
    np.testing.assert_allclose(pred["se"] ** 2, conf["se"] ** 2 + covs + resid_var, rtol=1e-10)
    new = fit.predict(fit.design.data.iloc[:5], interval="prediction")
    np.testing.assert_allclose(new["se"], pred["se"].to_numpy()[:5], rtol=1e-8)


@pytest.mark.parametrize("case", list(CASES))
def test_anova_against_the_plain_model(case):
    data, formula, _, _ = CASES[case]
    fit = fitted(case)
    plain = mm.lmer(formula, mm.datasets.load(data), reml=False)
    table = mm.anova(plain, fit)
    k = fit.n_parameters - plain.n_parameters
    assert k == fit.residual_problem.n_cor + fit.residual_problem.n_var
    assert table["Df"].iloc[1] == k
    chisq = 2 * (fit.loglik - plain.loglik)
    assert table["Chisq"].iloc[1] == pytest.approx(chisq, rel=1e-9)
    aic = -2 * np.array([plain.loglik, fit.loglik]) + 2 * np.array(
        [plain.n_parameters, fit.n_parameters]
    )
    np.testing.assert_allclose(table["AIC"], aic, rtol=1e-9)
    n = fit.nobs
    bic = aic + (np.log(n) - 2) * np.array([plain.n_parameters, fit.n_parameters])
    np.testing.assert_allclose(table["BIC"], bic, rtol=1e-9)


@pytest.mark.parametrize("case", list(CASES))
def test_bootstrap_replicate_is_the_refit_of_a_simulation(case):
    fit = fitted(case)
    replicate = fit.bootstrap_replicate(np.random.default_rng(5))
    y = fit.simulate(1, seed=np.random.default_rng(5))[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = mm.refit(fit, y)
    np.testing.assert_allclose(replicate, refit.parameters.to_numpy(), rtol=1e-8, atol=1e-10)
    assert list(refit.parameters.index) == fit.parameter_names
    boot = fit.bootstrap(nsim=3, seed=2, progress=False)
    draws = boot.replicates
    assert draws.shape == (3, len(fit.parameter_names))
    assert np.all(np.isfinite(draws.to_numpy()))
    names = list(fit.correlation_parameters.index) + list(fit.variance_parameters.index)
    assert np.all(draws[names].std() > 0)
