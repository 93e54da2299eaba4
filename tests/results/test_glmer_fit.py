"""glmer's API: response forms, prediction, errors; identities between representations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.core.families import make_family


@pytest.fixture(scope="module")
def cbpp():
    return mm.datasets.load("cbpp")


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return mm.glmer("cbind(incidence, size - incidence) ~ period + (1|herd)", cbpp, "binomial")


def test_proportion_with_trials_as_weights_equals_cbind(cbpp, cbpp_fit):
    """R's two spellings of a binomial response give the same likelihood (1e-6: two
    optimizer runs on the same function)."""
    frame = cbpp.assign(prop=cbpp.incidence / cbpp["size"])
    fit = mm.glmer("prop ~ period + (1|herd)", frame, "binomial", weights="size")
    assert fit.loglik == pytest.approx(cbpp_fit.loglik, rel=1e-9)
    np.testing.assert_allclose(fit.fixef, cbpp_fit.fixef, rtol=1e-6)


def test_binary_response_forms_agree():
    df = mm.datasets.load("sleepstudy")
    df = df.assign(
        slow=df.Reaction > 300,
        slow01=(df.Reaction > 300).astype(int),
        slowf=pd.Categorical(np.where(df.Reaction > 300, "yes", "no"), categories=["no", "yes"]),
    )
    fits = [
        mm.glmer(f"{y} ~ Days + (1|Subject)", df, "binomial") for y in ("slow", "slow01", "slowf")
    ]
    for other in fits[1:]:
        np.testing.assert_allclose(other.fixef, fits[0].fixef, rtol=1e-10)


def test_predict_new_data_reproduces_fitted_rows(cbpp, cbpp_fit):
    rows = cbpp.iloc[[0, 7, 30]]
    np.testing.assert_allclose(cbpp_fit.predict(rows), cbpp_fit.predict()[[0, 7, 30]], rtol=1e-12)
    response = cbpp_fit.predict(rows, type="response")
    np.testing.assert_allclose(response, cbpp_fit.fitted[[0, 7, 30]], rtol=1e-12)
    marginal = cbpp_fit.predict(rows, include_random=False)
    np.testing.assert_allclose(marginal, cbpp_fit.predict(include_random=False)[[0, 7, 30]])


def test_new_levels_are_an_error_unless_allowed(cbpp, cbpp_fit):
    new = cbpp.iloc[[0]].copy()
    new["herd"] = pd.Categorical(["99"])
    with pytest.raises(mm.errors.NewLevelError, match="99"):
        cbpp_fit.predict(new)
    eta = cbpp_fit.predict(new, allow_new_levels=True)
    assert eta[0] == pytest.approx(cbpp_fit.fixef.iloc[0])


def test_conditional_modes_are_lambda_u(cbpp_fit):
    """b = Lambda u: the ranef table is the spherical modes scaled by theta."""
    u = cbpp_fit._solution.mode.u
    np.testing.assert_allclose(cbpp_fit.ranef["herd"].iloc[:, 0], cbpp_fit.theta[0] * u)


def test_loglik_is_the_laplace_formula(cbpp_fit):
    """logLik = -(sum -2 log p(y|mu) + ||u||^2 + log|L|^2) / 2, recomputed from parts."""
    problem, mode = cbpp_fit.problem, cbpp_fit._solution.mode
    from scipy import stats

    trials = problem.prior_weights
    logp = stats.binom.logpmf(np.round(problem.y * trials), trials, mode.mu).sum()
    expected = -0.5 * (-2 * logp + mode.u @ mode.u + mode.log_det)
    assert cbpp_fit.loglik == pytest.approx(expected, rel=1e-12)


def test_probit_link_inverse_and_derivative():
    fam = make_family("binomial", "probit")
    eta = np.linspace(-3, 3, 7)
    h = 1e-6
    numeric = (fam.link.inverse(eta + h) - fam.link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(fam.link.mu_eta(eta), numeric, rtol=1e-7)
    np.testing.assert_allclose(fam.link(fam.link.inverse(eta)), eta, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"family": "gama"}, mm.ArgumentError, "binomial"),  # gamma is a family now
        ({"family": "poisson", "link": "logit"}, mm.ArgumentError, "not available"),
        ({"family": "binomial", "n_agq": 30}, mm.ArgumentError, "n_agq"),
    ],
)
def test_bad_arguments(cbpp, kwargs, error, message):
    with pytest.raises(error, match=message):
        mm.glmer("cbind(incidence, size - incidence) ~ period + (1|herd)", cbpp, **kwargs)


def test_response_outside_the_family_is_a_data_error(cbpp):
    with pytest.raises(mm.DataError, match="binomial response"):
        mm.glmer("incidence ~ period + (1|herd)", cbpp, "binomial")
    with pytest.raises(mm.FormulaError, match="cbind"):
        mm.glmer("cbind(incidence, size) ~ period + (1|herd)", cbpp, "poisson")


def test_user_dataframe_not_modified(cbpp):
    before = cbpp.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm.glmer("cbind(incidence, size - incidence) ~ period + (1|herd)", cbpp, "binomial")
    pd.testing.assert_frame_equal(cbpp, before)


def test_quadrature_needs_one_scalar_term():
    df = mm.datasets.load("grouseticks")
    with pytest.raises(mm.ArgumentError, match="single scalar"):
        mm.glmer("TICKS ~ YEAR + (1|BROOD) + (1|LOCATION)", df, "poisson", n_agq=5)


def test_one_quadrature_node_is_the_laplace_approximation(cbpp_fit):
    """AGQ with one node (z = 0, w = 1) reduces to the Laplace deviance exactly."""
    problem = cbpp_fit.problem
    theta, beta = cbpp_fit.theta, cbpp_fit.fixef.to_numpy()
    one_node, mode = problem.quadrature_deviance(theta, beta, 1)
    assert one_node == pytest.approx(mode.laplace, rel=1e-12)


def test_more_quadrature_nodes_converge(cbpp_fit):
    """The AGQ deviance settles as nodes are added (25 vs 15 nodes agree to 1e-8)."""
    problem = cbpp_fit.problem
    theta, beta = cbpp_fit.theta, cbpp_fit.fixef.to_numpy()
    d15 = problem.quadrature_deviance(theta, beta, 15)[0]
    d25 = problem.quadrature_deviance(theta, beta, 25)[0]
    assert d15 == pytest.approx(d25, rel=1e-8)


def test_linear_predictor_is_x_beta_plus_z_lambda_u(cbpp_fit):
    """eta = X beta + Z Lambda u: the matrix form reproduces the fitted linear predictor."""
    u = cbpp_fit._solution.mode.u
    eta = cbpp_fit.X @ cbpp_fit.fixef.to_numpy() + cbpp_fit.Z @ (cbpp_fit.Lambda @ u)
    np.testing.assert_allclose(eta, cbpp_fit.linear_predictor, rtol=1e-12)


def test_a_separated_group_still_fits():
    """A level whose responses are all 0 pushes its mode far out; the means stay inside
    (0, 1) and the Laplace deviance finite (R's linkinv clamps the same way)."""
    df = mm.datasets.load("cbpp").copy()
    df.loc[df.herd == "1", "incidence"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer("cbind(incidence, size - incidence) ~ period + (1|herd)", df, "binomial")
    assert np.isfinite(fit.loglik)
    assert np.all((fit.fitted > 0) & (fit.fitted < 1))
    assert fit.ranef["herd"].loc["1"].iloc[0] < fit.ranef["herd"].iloc[:, 0].median()


def test_refit_to_its_own_response_is_the_same_fit(cbpp_fit):
    again = cbpp_fit.refit(cbpp_fit.problem.y)
    assert again.loglik == pytest.approx(cbpp_fit.loglik, rel=1e-9)
    np.testing.assert_allclose(again.fixef, cbpp_fit.fixef, rtol=1e-5)


def test_parametric_bootstrap_of_a_glmm(cbpp_fit):
    """bootMer for glmer: the same replicates whatever n_jobs, and the fixed effects'
    bootstrap sd within 35% of the Hessian standard errors (30 replicates: the sd of a
    sample sd is ~13% relative, so 35% is ~2.7 of them)."""
    one = cbpp_fit.bootstrap(30, seed=4, progress=False)
    two = cbpp_fit.bootstrap(30, seed=4, progress=False, n_jobs=2)
    np.testing.assert_allclose(one.replicates.to_numpy(), two.replicates.to_numpy())
    assert list(one.replicates.columns) == cbpp_fit.parameter_names
    boot_sd = one.replicates[list(cbpp_fit.fixef.index)].std().to_numpy()
    np.testing.assert_allclose(boot_sd, np.sqrt(np.diag(cbpp_fit.vcov)), rtol=0.35)


def test_simulated_responses_follow_the_family(cbpp_fit):
    """Binomial proportions on the trials' grid; the average over 400 draws is close to
    the marginal mean E[mu] (within 0.03 on proportions ~0.1-0.3)."""
    sims = cbpp_fit.simulate(400, seed=9)
    trials = cbpp_fit.problem.prior_weights
    np.testing.assert_allclose(sims * trials[:, None], np.round(sims * trials[:, None]))
    rng = np.random.default_rng(1)
    u = rng.standard_normal((400, 1)) * cbpp_fit.theta[0]
    eta = cbpp_fit.predict(include_random=False)
    marginal = (1 / (1 + np.exp(-(eta[None, :] + u)))).mean(axis=0)
    assert np.max(np.abs(sims.mean(axis=1) - marginal)) < 0.03
