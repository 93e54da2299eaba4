"""PIRLS's conditional mode does not depend on where it starts (core/pirls.py): from zero,
from a given u and from a better ``guess`` the mode and the Laplace deviance agree to the
convergence tolerance (the reference is the cold start from u = 0, converged to a relative
change of 1e-12); and the gradient test that stops PIRLS agrees with the mode's definition
``u = Lambda' Z' s`` (scores ``s``)."""

import warnings

import numpy as np
import pytest

import mixedmodels as mm


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sleep = mm.datasets.load("sleepstudy")
        out["gamma"] = mm.glmer("Reaction ~ Days + (Days | Subject)", sleep, "gamma", link="log")
        cbpp = mm.datasets.load("cbpp")
        out["binomial"] = mm.glmer(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"
        )
    return out


@pytest.mark.parametrize("name", ["gamma", "binomial"])
def test_mode_is_independent_of_the_start(fits, name):
    fit = fits[name]
    problem = fit.problem
    theta, beta = np.asarray(fit.theta, float), np.asarray(fit.fixef, float)
    cold = problem.mode(theta, beta)
    rng = np.random.default_rng(0)
    shaken = cold.u + 0.3 * rng.normal(size=cold.u.size)
    warm = problem.mode(theta, beta, shaken)
    guessed = problem.mode(theta, beta, shaken, guess=(None, cold.u + 1e-6))
    for mode in (warm, guessed):
        np.testing.assert_allclose(mode.u, cold.u, rtol=0, atol=1e-8)
        assert mode.laplace == pytest.approx(cold.laplace, rel=1e-11)
    # a worse guess is not taken: the result is the same mode
    bad = problem.mode(theta, beta, cold.u, guess=(None, cold.u + 5.0))
    np.testing.assert_allclose(bad.u, cold.u, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["gamma", "binomial"])
def test_gradient_vanishes_at_the_mode_only(fits, name):
    fit = fits[name]
    problem = fit.problem
    theta, beta = np.asarray(fit.theta, float), np.asarray(fit.fixef, float)
    mode = problem.mode(theta, beta)
    lambdas = problem.lambdas(theta)
    fam = problem.family
    h, r = fam.working(problem.y, mode.eta, mode.mu, problem.prior_weights)
    # at the mode: u = Lambda' Z' s to the tolerance PIRLS converged to
    grad = mode.u - problem.scale(lambdas, problem.Zt @ (h * r), transpose=True)
    assert np.max(np.abs(grad)) < 1e-7
    assert not problem._stationary(h * r, mode.u + 1e-6, lambdas, False)
