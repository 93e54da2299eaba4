"""Adaptive Gauss-Hermite quadrature for nonlinear mixed models (``mm.nlme(...,
method="Laplace", n_agq=k)``), against references independent of the quadrature:

(i) one node is the Laplace approximation: the criterion at any sigma, the fit itself;
(ii) at fixed parameters the quadrature equals the marginal likelihood integrated by
     ``scipy.integrate.quad`` group by group (tolerance 1e-13 relative) and converges to it
     as the nodes grow;
(iii) the 25-node fit maximizes the quad-integrated likelihood: Nelder-Mead on it, started
     from our estimates, gains nothing;
(iv) a model linear in its random effect and Gaussian has an exact Laplace approximation:
     every ``n_agq`` gives lme4's ``lmer(REML = FALSE)`` (tests/reference/nlme_agq/
     make_reference.R), and the standard errors R's numDeriv Hessian of the exact marginal
     deviance.

Cases: Theoph with a random ``lKa`` (``lKa ~ 1 | Subject``; the absorption rate enters the
curve nonlinearly, 11 observations per subject: Laplace overstates the log-likelihood by
0.53 there), Orange with a random ``xmid`` and Orange with nlme's random ``Asym`` (a
logistic curve is linear in its asymptote: exact Laplace).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize

import mixedmodels as mm
from mixedmodels.core import agq
from mixedmodels.core.agq import MAX_NODES, agq_deviance, normal_rule
from mixedmodels.errors import ArgumentError
from mixedmodels.optim.nonlinear import conditional_modes
from mixedmodels.optim.nonlinear_agq import AgqDeviance, fit_agq
from tests.reference.nlme.cases import load

REFERENCE = json.loads(
    (Path(__file__).parents[1] / "reference" / "nlme_agq" / "sleepstudy_intercept_ml.json")
    .read_text()
)

CASES = {
    "theoph_lka": ("Theoph", "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", "lKe + lKa + lCl ~ 1",
                   "lKa ~ 1 | Subject"),
    "orange_xmid": ("Orange", "circumference ~ SSlogis(age, Asym, xmid, scal)",
                    "Asym + xmid + scal ~ 1", "xmid ~ 1 | Tree"),
    "orange": ("Orange", "circumference ~ SSlogis(age, Asym, xmid, scal)",
               "Asym + xmid + scal ~ 1", "Asym ~ 1 | Tree"),
}


def _fit(name: str, **kwargs):
    data, model, fixed, random = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.nlme(model, load(data), fixed, random, method="Laplace", **kwargs)


@pytest.fixture(scope="module")
def laplace():
    return {name: _fit(name) for name in CASES}


@pytest.fixture(scope="module")
def theoph25():
    return _fit("theoph_lka", n_agq=25)


# ------------------------------------------------------------- brute-force reference


def _group_g(problem, beta, lam, modes, i, u):
    """g_i(u): group i's residual sum of squares with its effect at lam u, plus u^2."""
    at = modes.copy()
    at[i] = u
    f = problem.fitted(beta, (lam * at)[:, None])
    rows = problem.groups == i
    return float(((problem.y[rows] - f[rows]) ** 2).sum() + u * u)


def quad_deviance(problem, beta, theta, sigma, modes):
    """-2 log L with each group's integral over u by scipy.integrate.quad on
    [mode - L, mode + L], L = |mode| + 40 sigma (g_i(u) >= u^2 bounds the integrand by a
    normal density of sd sigma, so the tails beyond are below e^-700), the mode a breakpoint
    and its g_i the integrand's scale (a constant: any value gives the same integral)."""
    lam = float(theta[0])
    s2 = sigma * sigma
    total = 0.0
    for i in range(problem.n_groups):
        n_i = int((problem.groups == i).sum())
        c = _group_g(problem, beta, lam, modes, i, modes[i])
        half = abs(modes[i]) + 40 * sigma
        value, error = integrate.quad(
            lambda u, i=i, c=c: np.exp(-(_group_g(problem, beta, lam, modes, i, u) - c)
                                       / (2 * s2)),
            modes[i] - half, modes[i] + half, points=[modes[i]], epsabs=0.0, epsrel=1e-13,
            limit=500,
        )
        assert error < 1e-11 * value
        total += (n_i + 1) * np.log(2 * np.pi * s2) + c / s2 - 2 * np.log(value)
    return total


def quad_vec_deviance(fit, beta, theta, sigma):
    """The same integrals for all groups at once (scipy.integrate.quad_vec over
    ``u = mode + sigma t``, ``|t| <= 40 + max |mode| / sigma``): the groups' modes only
    centre the integration variable (an exact change of variables)."""
    problem, design = fit.problem, fit.design
    lam = float(theta[0])
    modes, _, _ = _scalar_modes(problem, beta, lam, np.zeros(problem.n_groups))
    modes = modes[:, 0]
    s2 = sigma * sigma

    def g(u):  # the model's values only (no gradient program): 30% faster
        phi = problem.phi(beta, (lam * u)[:, None])
        f, _ = design.model(phi, design.covariates, gradient=False)
        return np.bincount(problem.groups, (problem.y - f) ** 2, minlength=problem.n_groups) \
            + u * u

    c = g(modes)
    half = 40 + np.max(np.abs(modes)) / sigma  # as quad_deviance's interval, in t
    value, _ = integrate.quad_vec(
        lambda t: np.exp(-(g(modes + sigma * t) - c) / (2 * s2)), -half, half,
        epsabs=0.0, epsrel=1e-11, norm="max", points=[0.0],
    )
    n_i = np.bincount(problem.groups, minlength=problem.n_groups)
    return float(np.sum((n_i + 1) * np.log(2 * np.pi * s2) + c / s2
                        - 2 * np.log(sigma * value)))


def _scalar_modes(problem, beta, lam: float, u):
    """The conditional modes of one scalar random effect with relative factor ``lam``."""
    return conditional_modes(problem, beta, np.array([[lam]]), np.reshape(u, (-1, 1)))


def _agq_at(fit, beta, theta, sigma, k):
    dev = AgqDeviance(fit.problem, k, np.zeros((fit.problem.n_groups, 1)))
    value, u, _ = dev.at(beta, theta, sigma)
    return value, u[:, 0]


# ------------------------------------------------------------------------------- (i)


@pytest.mark.parametrize("name", ["theoph_lka", "orange_xmid"])
def test_one_node_is_the_laplace_criterion_at_any_sigma(laplace, name):
    """With one node the quadrature is ``n log(2 pi sigma^2) + log|A| + PWRSS / sigma^2``
    (closed form, 1e-12 relative: the same sums) at any sigma; at sigma^2 = PWRSS / n that
    is the Laplace fit's profiled criterion, -2 logLik of the Laplace fit to 1e-6 relative
    (measured: Orange 0, Theoph 0; before the modes' quasi-Newton steps, Theoph's
    Gauss-Newton modes stopped after 50 steps 6e-4 short of the minimum: 1.2e-7)."""
    fit = laplace[name]
    est, problem = fit.estimate, fit.problem
    lam = float(est.theta[0])
    u, lin, pwrss = _scalar_modes(problem, est.beta, lam, est.b[:, 0] / lam)
    logdet = np.log(1 + lam**2 * np.bincount(problem.groups, lin.z[:, 0] ** 2)).sum()
    n = problem.n
    for sigma in (np.sqrt(pwrss / n), 0.5 * est.sigma, 3 * est.sigma):
        closed = n * np.log(2 * np.pi * sigma**2) + logdet + pwrss / sigma**2
        value, _ = _agq_at(fit, est.beta, est.theta, sigma, 1)
        assert value == pytest.approx(closed, rel=1e-12)
    profiled = n * (1 + np.log(2 * np.pi * pwrss / n)) + logdet
    assert profiled == pytest.approx(-2 * fit.loglik, rel=1e-6)
    assert profiled <= -2 * fit.loglik + 1e-9  # the exact modes' PWRSS is the smaller


@pytest.mark.parametrize("name", ["orange_xmid", "theoph_lka"])
def test_one_node_fit_jointly_in_sigma_is_the_laplace_fit(laplace, name):
    """Maximizing the one-node criterion over (beta, theta, log sigma) jointly reaches the
    Laplace fit, whose sigma is profiled: logLik to 1e-10 relative (measured: Orange 2e-14,
    Theoph 4e-14), estimates to 1e-5 (the optimizers' tolerances; measured 6e-8 at most).
    Theoph is the reproducer of the Laplace fit's Gauss-Newton modes stopping after 50
    steps 6e-4 short of the minimum: its logLik was then 0.017 below this maximum."""
    fit = laplace[name]
    joint = fit_agq(fit.problem, fit.estimate, 1)
    assert joint.loglik == pytest.approx(fit.loglik, rel=1e-10)
    np.testing.assert_allclose(joint.beta, fit.estimate.beta, rtol=1e-5)
    np.testing.assert_allclose(joint.sigma * joint.theta, fit.sigma * fit.estimate.theta,
                               rtol=1e-5)
    np.testing.assert_allclose(joint.sigma, fit.sigma, rtol=1e-5)


def test_n_agq_1_is_the_laplace_fit(laplace):
    """``n_agq=1`` (the default) is the Laplace fit, bit for bit."""
    one = _fit("orange_xmid", n_agq=1)
    ref = laplace["orange_xmid"]
    assert one.loglik == ref.loglik
    np.testing.assert_array_equal(one.fixef.to_numpy(), ref.fixef.to_numpy())
    np.testing.assert_array_equal(one.std_errors.to_numpy(), ref.std_errors.to_numpy())
    assert one.summary().startswith("Nonlinear mixed-effects model fit by Laplace")


# ------------------------------------------------------------------------------ (ii)


@pytest.mark.parametrize("name", ["theoph_lka", "orange_xmid"])
def test_quadrature_equals_brute_force_integration(laplace, name, monkeypatch):
    """At the Laplace estimates: 25 nodes equal quad's integrals to 1e-8 relative (measured
    Theoph 7e-11, Orange 0); the error falls with the nodes (1 > 3 > 7 nodes, each at least
    5 times smaller: Theoph 1.09, 0.12, 2e-4 in deviance, Orange 0.010, 5e-4, 1e-7) and one
    node, the Laplace approximation, is off by more than 1e-3.

    Away from them (theta 1.5 times, sigma 0.8 times: a wider, less normal integrand on
    Theoph) 25 nodes are within 1e-7 (measured 1.7e-8) and the kernel with 60 nodes (numpy's
    rule beyond the public cap of 25) within 1e-12 (measured 7e-14)."""
    fit = laplace[name]
    est = fit.estimate
    value25, modes = _agq_at(fit, est.beta, est.theta, est.sigma, 25)
    reference = quad_deviance(fit.problem, est.beta, est.theta, est.sigma, modes)
    assert value25 == pytest.approx(reference, rel=1e-8)
    errors = [abs(_agq_at(fit, est.beta, est.theta, est.sigma, k)[0] - reference)
              for k in (1, 3, 7)]
    assert errors[0] > 1e-3
    assert errors[1] < errors[0] / 5 and errors[2] < errors[1] / 5
    theta, sigma = 1.5 * est.theta, 0.8 * est.sigma
    value25, modes = _agq_at(fit, est.beta, theta, sigma, 25)
    reference = quad_deviance(fit.problem, est.beta, theta, sigma, modes)
    assert value25 == pytest.approx(reference, rel=1e-7)
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    monkeypatch.setattr(agq, "normal_rule", lambda k: (nodes, weights / np.sqrt(2 * np.pi)))
    assert _agq_at(fit, est.beta, theta, sigma, 60)[0] == pytest.approx(reference, rel=1e-12)


def test_quad_vec_reference_is_the_per_group_quad(laplace):
    """The vectorized integration used for (iii) equals the per-group one (1e-10)."""
    fit = laplace["theoph_lka"]
    est = fit.estimate
    _, modes = _agq_at(fit, est.beta, est.theta, est.sigma, 25)
    assert quad_vec_deviance(fit, est.beta, est.theta, est.sigma) == pytest.approx(
        quad_deviance(fit.problem, est.beta, est.theta, est.sigma, modes), rel=1e-10)


# ----------------------------------------------------------------------------- (iii)


def test_25_nodes_maximize_the_integrated_likelihood(theoph25):
    """Nelder-Mead on the quad-integrated deviance over (beta, theta, log sigma), started
    from the 25-node fit with a simplex 1e-3 wide, gains less than 1e-7 in logLik and moves
    the fixed effects, the random-effect sd and sigma by less than 1e-4 relative (measured:
    7e-12 and 1e-6, its own tolerance; 162 evaluations)."""
    fit = theoph25
    problem, est = fit.problem, fit.estimate
    p = problem.p

    def deviance(x):
        return quad_vec_deviance(fit, x[:p], x[p:p + 1], float(np.exp(x[-1])))

    x0 = np.concatenate([est.beta, est.theta, [np.log(est.sigma)]])
    start = deviance(x0)
    assert -start / 2 == pytest.approx(fit.loglik, rel=1e-8)
    simplex = np.vstack([x0] + [x0 + 1e-3 * max(abs(v), 0.1) * e
                                for v, e in zip(x0, np.eye(x0.size), strict=True)])
    res = optimize.minimize(deviance, x0, method="Nelder-Mead", options=dict(
        initial_simplex=simplex, xatol=1e-6, fatol=1e-9, maxfev=3000))
    assert (start - res.fun) / 2 < 1e-7
    beta, theta, sigma = res.x[:p], res.x[p], np.exp(res.x[-1])
    np.testing.assert_allclose(beta, est.beta, rtol=1e-4)
    np.testing.assert_allclose(theta * sigma, est.theta[0] * est.sigma, rtol=1e-4)
    np.testing.assert_allclose(sigma, est.sigma, rtol=1e-4)


def test_agq_and_laplace_differ_where_the_effect_enters_nonlinearly(laplace, theoph25):
    """Theoph's random absorption rate: the Laplace approximation overstates the
    log-likelihood at its own optimum (brute force there: 0.55 lower), and the 25-node fit's
    maximum lies below the Laplace fit's (measured -216.818 against -216.291)."""
    assert theoph25.loglik < laplace["theoph_lka"].loglik - 0.1


# ------------------------------------------------------------------------------ (iv)


@pytest.mark.parametrize("n_agq", [1, 2, 5, 25])
def test_linear_gaussian_model_gives_lmer_for_every_n_agq(n_agq):
    """Reaction ~ b0 + b1 * Days with b0 ~ 1 | Subject is lmer's random-intercept model;
    its integrand is Gaussian, so Laplace and every quadrature are exact: logLik, fixed
    effects, sd and sigma equal lmer(REML = FALSE)'s to 1e-6 relative (measured 2e-8), the
    standard errors R's numDeriv Hessian of the exact deviance to 1e-6 (measured 3e-9)."""
    data = mm.datasets.load("sleepstudy")
    fit = mm.nlme("Reaction ~ b0 + b1 * Days", data, "b0 + b1 ~ 1", "b0 ~ 1 | Subject",
                  method="Laplace", n_agq=n_agq, start={"b0": 250, "b1": 10})
    ref = REFERENCE
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref["fixef"], rtol=1e-6)
    assert fit.varcorr["StdDev"].iloc[0] == pytest.approx(ref["sd"], rel=1e-6)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-6)
    np.testing.assert_allclose(fit.std_errors.to_numpy(), ref["se_hessian"], rtol=1e-6)


def test_orange_asymptote_is_exact_for_every_n_agq(laplace):
    """SSlogis is linear in Asym: nlme's Orange model has an exact Laplace approximation,
    and 7 and 25 nodes give the Laplace fit's logLik (1e-10 relative) and estimates (1e-6:
    the joint optimization's tolerance)."""
    ref = laplace["orange"]
    for k in (7, 25):
        fit = _fit("orange", n_agq=k)
        assert fit.loglik == pytest.approx(ref.loglik, rel=1e-10)
        np.testing.assert_allclose(fit.fixef.to_numpy(), ref.fixef.to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(fit.varcorr["StdDev"].to_numpy(),
                                   ref.varcorr["StdDev"].to_numpy(), rtol=1e-6)


# -------------------------------------------------------------------- modes, results


def test_scalar_modes_minimize_each_groups_penalized_rss(laplace):
    """The modes (secant steps for one scalar effect): the derivative of g_i vanishes there
    (central differences, relative to g_i's curvature scale), and the iteration restarted
    from them stays put."""
    fit = laplace["orange_xmid"]
    problem, est = fit.problem, fit.estimate
    lam = float(est.theta[0])
    u, _, _ = _scalar_modes(problem, est.beta * 1.01, lam, np.zeros(problem.n_groups))
    u = u[:, 0]
    for i in range(problem.n_groups):
        h = 1e-5 * max(abs(u[i]), 1.0)  # truncation ~h^2 and rounding ~1e-13 / h: 1e-10
        up = _group_g(problem, est.beta * 1.01, lam, u, i, u[i] + h)
        down = _group_g(problem, est.beta * 1.01, lam, u, i, u[i] - h)
        # g'(u) / g''(u) is the distance to the minimum: below 1e-8 of the scale of u
        slope, curvature = (up - down) / (2 * h), (up + down - 2 * _group_g(
            problem, est.beta * 1.01, lam, u, i, u[i])) / h**2
        assert abs(slope / curvature) < 1e-8 * max(abs(u[i]), 1.0)
    gn, _, _ = conditional_modes(problem, est.beta * 1.01, problem.lambda_of(est.theta),
                                 u[:, None])
    np.testing.assert_allclose(gn[:, 0], u, rtol=1e-8, atol=1e-10)


def test_results_of_an_agq_fit(theoph25):
    """Summary label as glmer's; AIC from the quadrature logLik with fixed effects, theta
    and sigma counted; ranef the conditional modes at the estimates; predict at both levels
    the model at (fixef, ranef) and (fixef, 0)."""
    fit = theoph25
    assert ("fit by maximum likelihood (Adaptive Gauss-Hermite Quadrature, nAGQ = 25)"
            in fit.summary().splitlines()[0])
    assert fit.n_params == 5
    assert fit.aic == pytest.approx(-2 * fit.loglik + 10, rel=1e-14)
    est, problem = fit.estimate, fit.problem
    lam = float(est.theta[0])
    u, _, _ = _scalar_modes(problem, est.beta, lam, np.zeros(problem.n_groups))
    np.testing.assert_allclose(fit.ranef["lKa"].to_numpy(), lam * u[:, 0], rtol=1e-7,
                               atol=1e-9)
    data = load("Theoph")
    np.testing.assert_allclose(fit.predict(data, level=1),
                               problem.fitted(est.beta, est.b), rtol=1e-12)
    np.testing.assert_allclose(fit.predict(data, level=0),
                               problem.fitted(est.beta, np.zeros_like(est.b)), rtol=1e-12)
    assert fit.varcorr["StdDev"].iloc[0] == pytest.approx(lam * fit.sigma, rel=1e-14)
    assert np.all(np.isfinite(fit.std_errors.to_numpy()))


@pytest.mark.parametrize("k", [2, 7, 25])
def test_nodes_in_one_stacked_model_call_equal_one_call_per_node(laplace, k):
    """The fit's path (every node's rows stacked into one call of the model's values, the
    covariates repeated) and one model call per node give the same deviance (1e-13)."""
    fit = laplace["theoph_lka"]
    design, est = fit.design, fit.estimate

    def stacked(phi, copies):
        tiled = {name: np.tile(v, copies) for name, v in design.covariates.items()}
        return design.model(phi, tiled, gradient=False)[0]

    u0 = np.zeros((fit.problem.n_groups, 1))
    one = AgqDeviance(fit.problem, k, u0)(est.beta, est.theta, est.sigma)
    both = AgqDeviance(fit.problem, k, u0, stacked)(est.beta, est.theta, est.sigma)
    assert both == pytest.approx(one, rel=1e-13)


def test_anova_refuses_fits_with_different_nodes(laplace, theoph25):
    with pytest.raises(ArgumentError, match="quadrature nodes"):
        theoph25.anova(laplace["theoph_lka"])


# ------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_agq=0), "n_agq must be at least 1"),
        (dict(n_agq=26), "n_agq must be at most 25"),
        (dict(n_agq=2.5), "n_agq must be an integer"),
        (dict(n_agq=True), "n_agq must be an integer"),
        (dict(n_agq=3, method="ML"), "needs method='Laplace', not 'ML'"),
        (dict(n_agq=3, method="REML"), "needs method='Laplace', not 'REML'"),
        (dict(n_agq=3, weights="varPower"), "weights='varPower' \\(a variance function\\)"),
        (dict(n_agq=3, random="pdDiag(Asym + xmid ~ 1) | Tree"),
         "one scalar random effect; 'pdDiag\\(Asym \\+ xmid ~ 1\\) \\| Tree' has 2"),
        (dict(n_agq=3, random="Asym + xmid ~ 1 | Tree"), "has 3 random-effect parameters"),
    ],
)
def test_refusals_name_the_reason(kwargs, message):
    arguments = dict(method="Laplace", random="Asym ~ 1 | Tree")
    arguments.update(kwargs)
    with pytest.raises(ArgumentError, match=message):
        mm.nlme("circumference ~ SSlogis(age, Asym, xmid, scal)", load("Orange"),
                "Asym + xmid + scal ~ 1", **arguments)


def test_normal_rule():
    """Nodes and weights integrate the standard normal's moments exactly up to degree
    2k - 1 (E z^2 = 1, E z^4 = 3), weights summing to one; outside 1..25 refused."""
    for k in (1, 2, 7, MAX_NODES):
        nodes, weights = normal_rule(k)
        assert weights.sum() == pytest.approx(1.0, rel=1e-14)
        if k >= 2:
            assert weights @ nodes**2 == pytest.approx(1.0, rel=1e-12)
        if k >= 3:
            assert weights @ nodes**4 == pytest.approx(3.0, rel=1e-12)
    with pytest.raises(ValueError):
        normal_rule(0)


def test_not_finite_at_a_node_is_refused_not_propagated(laplace):
    """A model that is not finite at the mode gives an infinite deviance (the optimizer
    treats it as a wall), never NaN."""
    fit = laplace["orange_xmid"]
    problem, est = fit.problem, fit.estimate
    f = np.full(problem.n, np.nan)
    value = agq_deviance(problem, est.beta, float(est.theta[0]), est.sigma,
                         np.zeros(problem.n_groups), np.ones(problem.n), f, 7)
    assert value == np.inf
