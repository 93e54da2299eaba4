"""The analytic gradient of the Laplace deviance in beta (optim/laplace_gradient.py)
against extrapolated central differences of the deviance itself, and the Hessian for
``vcov`` made from it against the one made from values alone.

Reference: numDeriv-style Richardson differences (steps 1e-3 and 5e-4 relative, error
O(h^4)) of ``GlmmProblem.mode(theta, beta).laplace``, PIRLS converged to a gradient of
1e-11 on canonical links: their error is ~1e-8 absolute on these deviances (of order
1e2-1e4), so the tolerance is 1e-6 absolute plus 1e-9 relative to the gradient's largest
element (measured: at most 1.6e-6 on grouseticks' observation-level fit, whose deviance
is ~1.8e3, and ~1e-8 on cbpp).  A non-canonical link (probit) converges PIRLS linearly,
leaving ~1e-5 of noise in the differenced values: 1e-4 there.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.optim.derivatives import hessian_and_gradient, hessian_by_pairs
from mixedmodels.optim.laplace_gradient import BetaGradient, has_deviance_gradient

CASES = {
    # one scalar term: everything eliminated (q2 = 0)
    "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", None),
    # crossed scalar terms: the larger eliminated, a dense coupling block
    "grouseticks": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
        "poisson",
        None,
    ),
    # an observation-level term eliminated, a sparse coupling block (q1 q2 > 20,000)
    "grouseticks_index": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
        None,
    ),
    # a vector-valued term only: nothing eliminated (q1 = 0)
    "sleepstudy_slopes": ("sleepstudy", "y ~ Days + (Days | Subject)", "binomial", None),
    # a non-canonical link: observed and expected information differ
    "cbpp_probit": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
        "probit",
    ),
}

_FITS: dict[str, object] = {}


def _fit(name: str):
    if name not in _FITS:
        data, formula, family, link = CASES[name]
        frame = mm.datasets.load(data)
        if data == "sleepstudy":
            frame = frame.assign(y=(frame["Reaction"] > 300).astype(float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = mm.glmer(formula, frame, family, link=link)
    return _FITS[name]


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_differences_of_the_laplace_deviance(name):
    fit = _fit(name)
    problem = fit.problem
    assert has_deviance_gradient(problem.family)
    gradient = BetaGradient(problem)
    theta, beta = np.asarray(fit.theta, float), fit.fixef.to_numpy()
    rng = np.random.default_rng(3)
    # at the optimum (gradient ~0) and away from it (gradient of order 1e0-1e4)
    for th, be in [(theta, beta), (theta * 1.1 + 0.02, beta + 0.05 * rng.normal(size=beta.size))]:
        mode = problem.mode(th, be)
        analytic = gradient(th, mode)

        def laplace(b, th=th, u=mode.u):
            return problem.mode(th, b, u).laplace

        _, numeric = hessian_and_gradient(laplace, be, 1e-3 * np.maximum(np.abs(be), 0.1))
        tol = 1e-4 if name == "cbpp_probit" else 1e-6
        atol = tol + 1e-9 * float(np.max(np.abs(numeric)))
        np.testing.assert_allclose(analytic, numeric, rtol=0, atol=atol)


def test_gradient_splits_the_largest_scalar_term():
    sizes = {
        name: (BetaGradient(_fit(name).problem).q1, BetaGradient(_fit(name).problem).q2)
        for name in ("cbpp", "grouseticks", "grouseticks_index", "sleepstudy_slopes")
    }
    assert sizes == {
        "cbpp": (15, 0),
        "grouseticks": (118, 63),
        "grouseticks_index": (403, 181),
        "sleepstudy_slopes": (0, 36),
    }


@pytest.mark.parametrize("name", ["cbpp", "grouseticks_index", "sleepstudy_slopes"])
def test_vcov_from_the_gradient_equals_the_hessian_of_values(name):
    """The fit's vcov (beta columns of the Hessian from differences of the analytic
    gradient) against 2 H^-1 with H by pairs of values alone (optim/derivatives), the same
    steps: both O(h^2), standard errors within 1e-5 relative (measured <= 5e-6 over the
    glmer catalogue)."""
    fit = _fit(name)
    problem = fit.problem
    theta, beta = np.asarray(fit.theta, float), fit.fixef.to_numpy()
    k = theta.size
    x = np.concatenate([theta, beta])
    u0 = problem.mode(theta, beta).u

    def laplace(z):
        return problem.mode(z[:k], z[k:], u0).laplace

    hess = hessian_by_pairs(laplace, x, 1e-3 * np.maximum(np.abs(x), 0.1))
    by_values = 2 * np.linalg.inv(hess)[k:, k:]
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov)), np.sqrt(np.diag(by_values)), rtol=1e-5)
    np.testing.assert_allclose(fit.vcov, by_values, rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------ every family: LaplaceGradient
FAMILY_GRADIENT_CASES = [
    "gamma_sim_log",  # lme4's Gamma: kappa = dT/dD != 1, observed != expected information
    "orthodont_gaussian_log",
    "sleepstudy_gamma_inverse",  # an inverse link: eta ~ 3e-3
    "dyestuff_invgauss_identity",  # theta ~ 4e4, phi ~ 6e-7
    "salamanders_glmer_nb",  # lme4's negative binomial: T = -2 sum log p, psi = log k
    "owls_nbinom1",  # glmmTMB's: psi = log phi
    "salamanders_zip",  # zero inflation: psi = two logit coefficients
    "beta_sim_logit",
]


@pytest.mark.parametrize("name", FAMILY_GRADIENT_CASES)
def test_laplace_gradient_matches_differences_for_every_family(name):
    """``LaplaceGradient`` in (beta, psi) against Richardson-extrapolated central
    differences of the Laplace deviance (steps 1e-2 and 5e-3 standard errors in beta, 1e-2
    and 5e-3 in psi; PIRLS converged to 1e-10 in u for these families), at the optimum and
    at a point away from it (theta 1.1 times, beta 0.3 standard errors off, psi 0.05 off).
    Compared in units of the standard errors (``|g_j| se_j``: the change of the deviance
    per standard error): within 2e-5, measured at most 3e-6 (beta_sim_logit) where the
    gradient is up to 16 per standard error."""
    from mixedmodels.optim.laplace_gradient import LaplaceGradient
    from tests.family_cases import family_cases

    (case,) = [c for c in family_cases() if c.name == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    problem = fit.problem
    family = problem.family
    theta, beta = np.asarray(fit.theta, float), fit.fixef.to_numpy()
    se = np.sqrt(np.diag(np.asarray(fit.vcov)))
    psi = family.extra_values
    p = beta.size
    units = np.concatenate([se, np.ones(psi.size)])
    gradient = LaplaceGradient(problem)
    rng = np.random.default_rng(1)

    def deviance(th, x, u):
        fam = family.with_extra(x[p:]) if psi.size else family
        return problem.with_family(fam).mode(th, x[:p], u).laplace

    for th, be, ps in [
        (theta, beta, psi),
        (theta * 1.1, beta + 0.3 * se * rng.normal(size=p), psi + 0.05),
    ]:
        fam = family.with_extra(ps) if psi.size else family
        mode = problem.with_family(fam).mode(th, be)
        analytic = gradient(th, mode, fam)
        x = np.concatenate([be, ps])
        steps = 1e-2 * units
        numeric = np.empty(x.size)
        for i in range(x.size):
            est = []
            for h in (steps[i], steps[i] / 2):
                e = np.zeros(x.size)
                e[i] = h
                est.append((deviance(th, x + e, mode.u) - deviance(th, x - e, mode.u)) / (2 * h))
            numeric[i] = (4 * est[1] - est[0]) / 3
        assert np.max(np.abs(analytic - numeric) * units) <= 2e-5


THETA_GRADIENT_CASES = [
    "gamma_sim_log",  # one scalar term, eliminated
    "sleepstudy_gamma_log",  # a (Days | Subject) term: lambda 2 x 2 lower triangular
    "grouseticks_glmer_nb",  # two crossed scalar terms: one eliminated, one dense
    "salamanders_zip",
    "orthodont_gaussian_inverse",
]


def _richardson_theta_gradient(problem, theta, beta, u, fraction: float) -> np.ndarray:
    """The Laplace deviance's gradient in theta (beta held) by Richardson-extrapolated
    central differences: steps ``fraction`` and ``fraction / 2`` of ``max(|theta_j|,
    0.01)``, PIRLS from ``u`` (error O(h^4))."""
    k = theta.size
    numeric = np.empty(k)
    for i in range(k):
        est = []
        for h in (fraction * max(abs(theta[i]), 1e-2), fraction / 2 * max(abs(theta[i]), 1e-2)):
            e = np.zeros(k)
            e[i] = h
            up = problem.mode(theta + e, beta, u).laplace
            down = problem.mode(theta - e, beta, u).laplace
            est.append((up - down) / (2 * h))
        numeric[i] = (4 * est[1] - est[0]) / 3
    return numeric


@pytest.mark.parametrize("name", THETA_GRADIENT_CASES)
def test_laplace_gradient_in_theta_matches_differences(name):
    """``LaplaceGradient(..., theta_part=True)``: the gradient in theta against
    Richardson-extrapolated central differences of the Laplace deviance (steps 1e-3 and
    5e-4 of max(|theta_j|, 0.01)) at theta 1.1 times the optimum plus 0.01 (there the
    gradient is of order 1-1e4): within 1e-6 relative (measured at most 1e-7, on
    sleepstudy_gamma_log); its beta part equal to the gradient without theta."""
    from mixedmodels.optim.laplace_gradient import LaplaceGradient
    from tests.family_cases import family_cases

    (case,) = [c for c in family_cases() if c.name == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    problem = fit.problem
    family = problem.family
    beta = fit.fixef.to_numpy()
    theta = np.asarray(fit.theta, float) * 1.1 + 0.01
    k = theta.size
    gradient = LaplaceGradient(problem)
    mode = problem.mode(theta, beta)
    analytic = gradient(theta, mode, family, extras=False, theta_part=True)
    numeric = _richardson_theta_gradient(problem, theta, beta, mode.u, 1e-3)
    np.testing.assert_allclose(analytic[:k], numeric, rtol=1e-6)
    np.testing.assert_allclose(analytic[k:], gradient(theta, mode, family, extras=False))


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + cs(Days | Subject)",
        "Reaction ~ Days + diag(Days | Subject)",
        # a scalar term eliminated, a vector-valued one in the dense rest (the coupling
        # block dense: every day meets every subject)
        "Reaction ~ Days + (Days | Subject) + (1 | DaysF)",
    ],
)
def test_laplace_gradient_in_theta_for_structured_terms(formula):
    """The gradient in theta where ``lambda`` is the structure's (a compound-symmetry
    term's ``lambda`` is nonlinear in its correlation parameter; a diagonal one's is
    ``diag(theta)``), and with a vector-valued term beside an eliminated scalar one:
    against Richardson-extrapolated central differences of the Laplace deviance at theta
    1.1 times the Gamma (log link) optimum, the tolerance of the unstructured cases above
    (1e-6 relative).  Steps 1e-2 and 5e-3 of max(|theta_j|, 0.01) (error O(h^4), ~1e-8):
    with 1e-3 the difference quotient of the crossed fit's smallest entry (-0.24, where the
    others are 7-50) is off by 4e-6 relative, PIRLS's convergence noise over a step of
    5e-5 (the analytic value agrees with the larger steps' to 3e-8)."""
    from mixedmodels.optim.laplace_gradient import LaplaceGradient

    frame = mm.datasets.load("sleepstudy")
    frame = frame.assign(DaysF=frame["Days"].astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer(formula, frame, "gamma", link="log")
    problem = fit.problem
    beta = fit.fixef.to_numpy()
    theta = np.asarray(fit.theta, float) * 1.1
    k = theta.size
    mode = problem.mode(theta, beta)
    analytic = LaplaceGradient(problem)(theta, mode, problem.family, theta_part=True)
    numeric = _richardson_theta_gradient(problem, theta, beta, mode.u, 1e-2)
    assert np.max(np.abs(numeric)) > 1.0  # away from the optimum: a gradient to compare
    np.testing.assert_allclose(analytic[:k], numeric, rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["sleepstudy_gamma_log", "grouseticks_glmer_nb", "salamanders_zip"]
)
def test_laplace_gradient_kept_values_give_a_fresh_instances_numbers(name):
    """What a ``LaplaceGradient`` keeps between calls (A's values and d lambda / d theta
    per theta, the family's kernel) changes no bit: the gradients at two thetas, then at
    the first again with another beta (its values kept), equal those of a new instance at
    each point."""
    from mixedmodels.optim.laplace_gradient import LaplaceGradient
    from tests.family_cases import family_cases

    (case,) = [c for c in family_cases() if c.name == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    problem = fit.problem
    family = problem.family
    theta, beta = np.asarray(fit.theta, float), fit.fixef.to_numpy()
    kept = LaplaceGradient(problem)
    points = [(theta, beta), (theta * 1.05, beta), (theta, beta * 1.01)]
    for th, be in points:
        mode = problem.mode(th, be)
        got = kept(th, mode, family, theta_part=True)
        fresh = LaplaceGradient(problem)(th, mode, family, theta_part=True)
        assert np.array_equal(got, fresh)
    assert len(kept._theta_known) == 2  # the third point's theta was the first's
