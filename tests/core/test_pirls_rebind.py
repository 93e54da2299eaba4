"""PIRLS with a family whose own parameters change between evaluations (core/pirls.py:
``GlmmProblem.with_family``): the rebound problem reuses its source's kernel (the response
terms computed once per fit) and finds the same conditional mode, to the last bit, as a
problem built afresh with that family; and the stationarity test that ends PIRLS is false
for a non-finite score (no separate finiteness pass: the gradient's ``<`` decides)."""

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core.pirls import GlmmProblem
from tests.family_cases import load_data


@pytest.fixture(scope="module")
def zinb_fit():
    data = load_data("Salamanders")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.glmer("count ~ spp + mined + (1|site)", data, "nbinom2", zi="~mined")


def test_rebound_problem_gives_the_fresh_problems_mode(zinb_fit):
    """Exact equality (the same operations on the same numbers): u, the deviance and the
    Laplace deviance at the estimates and at other values of the family's parameters."""
    problem = zinb_fit.problem
    theta, beta = np.asarray(zinb_fit.theta, float), np.asarray(zinb_fit.fixef, float)
    family = problem.family
    problem.mode(theta, beta)  # the source's kernel exists
    for shift in (0.0, 0.3, -0.5):
        other = family.with_extra(family.extra_values + shift)
        rebound = problem.with_family(other)
        fresh = GlmmProblem(
            problem.blocks, problem.X, problem.y, problem.prior_weights, problem.offset, other
        )
        a, b = rebound.mode(theta, beta), fresh.mode(theta, beta)
        assert rebound.family_kernel().response is problem.family_kernel().response
        np.testing.assert_array_equal(a.u, b.u)
        assert a.deviance == b.deviance
        assert a.laplace == b.laplace


def test_stationary_is_false_for_a_non_finite_score(zinb_fit):
    """At the mode the scores pass the test; with one row's score inf, -inf or nan they
    do not (with beta held and with beta updated)."""
    problem = zinb_fit.problem
    theta, beta = np.asarray(zinb_fit.theta, float), np.asarray(zinb_fit.fixef, float)
    mode = problem.mode(theta, beta)
    lambdas = problem.lambdas(theta)
    h, r = problem.family_kernel().working(mode.eta, mode.mu)
    score = h * r
    assert problem._stationary(score, mode.u, lambdas, False)
    for bad in (np.inf, -np.inf, np.nan):
        broken = score.copy()
        broken[7] = bad
        for update_beta in (False, True):
            assert not problem._stationary(broken, mode.u, lambdas, update_beta)
