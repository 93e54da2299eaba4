"""The first stage of a GLMM fit where Newton's stage 2 follows (optim/glmm._scale_search:
theta's scale along its start's direction) and Newton's Hessian by forward differences
of the gradient (optim/derivatives.hessian_by_forward_gradient), against closed forms;
the evaluations per fit they leave, against the counts before (a regression guard); the
glmmTMB families' one-call gradient against the generic kernel path (an identity)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels.optim.glmm as optim_glmm
from mixedmodels.optim.derivatives import hessian_by_forward_gradient
from tests.family_cases import family_cases

THETA0 = np.array([1.0, 0.0, 0.5])


def test_scale_search_finds_the_scale_of_a_quadratic_in_log_scale():
    """``f(s theta0) = (log s - log 3e4)^2``: factors of 10 out to 1e5 (where ``f`` rises),
    then the parabola through 1e3, 1e4, 1e5 in ``log s``, whose vertex is exact for a
    quadratic: ``s = 3e4`` to rounding (1e-9 relative), in 7 evaluations (1, 10, ..., 1e5
    and the vertex), theta0's zero kept."""
    calls = []

    def objective(theta: np.ndarray) -> float:
        calls.append(theta)
        return float((np.log(theta[0] / THETA0[0]) - np.log(3e4)) ** 2)

    found = optim_glmm._scale_search(objective, THETA0)
    assert found is not None
    np.testing.assert_allclose(found.x, 3e4 * THETA0, rtol=1e-9)
    assert found.fun == pytest.approx(0.0, abs=1e-18)
    assert found.n_evaluations == len(calls) == 7


def test_scale_search_downwards_and_near_the_start():
    """The minimum at ``s = 0.02`` (downwards: 0.1, 0.01, 0.001, then the vertex) and at
    ``s = 2`` (1 the lowest of 0.1, 1, 10: the vertex at once), each exact for the
    quadratic in ``log s``."""
    for target in (0.02, 2.0):

        def objective(theta: np.ndarray, target=target) -> float:
            return float((np.log(theta[2] / THETA0[2]) - np.log(target)) ** 2)

        found = optim_glmm._scale_search(objective, THETA0)
        np.testing.assert_allclose(found.x, target * THETA0, rtol=1e-9)


def test_scale_search_hands_over_where_theta_goes_to_zero_or_is_not_finite():
    """Falling all the way to ``s -> 0`` (the optimum on theta's bound) or no finite
    deviance at the start: None, so that BOBYQA's first stage runs instead."""
    assert optim_glmm._scale_search(lambda theta: float(theta[0]), THETA0) is None
    assert optim_glmm._scale_search(lambda theta: np.inf, THETA0) is None
    assert optim_glmm._scale_search(lambda theta: 1.0, np.zeros(2)) is None


M = np.array([0.7, -1.3, 2.1, 0.4])


def _gradient(x: np.ndarray) -> np.ndarray:
    """The gradient of ``sum(exp(d) - d) + (sum d)^2 / 2`` (``d = x - M``)."""
    d = x - M
    return np.exp(d) - 1.0 + np.sum(d)


def test_forward_gradient_hessian_against_the_closed_form():
    """Hessian ``diag(exp(x - M)) + 1 1'`` at ``x = M + 0.3``: forward differences at steps
    of 1e-6 have error ``h/2 max exp(d) ~ 7e-7`` (plus rounding ~1e-16 / 1e-6), asserted
    within 2e-6; with ``m = 2`` the trailing entries of the first two rows' gradients are
    never read (they are NaN here) and come from the last rows' by symmetry."""
    x = M + 0.3
    exact = np.diag(np.exp(x - M)) + 1.0

    def value_and_gradient(z: np.ndarray, full: bool):
        g = _gradient(z)
        if not full:
            g = np.concatenate([g[:2], [np.nan, np.nan]])
        return 0.0, g

    hess = hessian_by_forward_gradient(value_and_gradient, x, np.full(4, 1e-6), 2, _gradient(x))
    np.testing.assert_allclose(hess, exact, atol=2e-6)
    np.testing.assert_array_equal(hess, hess.T)


#: Laplace evaluations (modes) per fit before this stage's work (famcount's, BOBYQA's first
#: stage to 1e-8 and central-difference Hessians; benchmarks/results/glmm_counts_famcount.md)
BEFORE = {"sleepstudy_gamma_log": 94, "salamanders_zip": 59, "grouseticks_glmer_nb": 69}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_fits_take_at_most_60_percent_of_the_evaluations_they_took(name):
    """The fit's Laplace evaluations (stage 1's joint PIRLS runs, Newton's modes) at most
    60% of famcount's (measured 37/94, 30/59, 31/69); its agreement with lme4/glmmTMB is
    tests/test_glmer_families.py's."""
    (case,) = [c for c in family_cases() if c.name == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    assert fit.n_evaluations <= 0.6 * BEFORE[name]


@pytest.mark.parametrize("name", ["salamanders_zip", "owls_nbinom1", "beta_sim_logit"])
def test_likelihood_families_gradient_from_one_call_equals_the_kernel_path(name, monkeypatch):
    """glmmTMB's families: ``LaplaceGradient`` from one ``log_derivatives`` call per point
    (score, exact observed information, Laplace weights, data term) against the generic
    path through the family's kernel (three calls per point, the observed information by
    differences), at theta 1.1 times the optimum plus 0.01 and psi moved by 0.1: the same
    gradient in (theta, beta, psi) within 1e-7 relative to its largest entry (the
    differenced information's O(h^2) error, ~1e-8 relative, enters only where it differs
    from PIRLS's weights by more than 1e-6; measured at most 1e-14).  Each family is one
    of glmmTMB's (the fast path is taken)."""
    from mixedmodels.optim import laplace_gradient

    (case,) = [c for c in family_cases() if c.name == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    problem = fit.problem
    family = problem.family.with_extra(problem.family.extra_values + 0.1)
    theta = np.asarray(fit.theta, float) * 1.1 + 0.01
    at = problem.with_family(family)
    mode = at.mode(theta, fit.fixef.to_numpy())
    assert isinstance(family, laplace_gradient.LikelihoodFamily)
    fast = laplace_gradient.LaplaceGradient(at)(theta, mode, family, theta_part=True)

    class Nothing:
        pass

    monkeypatch.setattr(laplace_gradient, "LikelihoodFamily", Nothing)
    generic = laplace_gradient.LaplaceGradient(at)(theta, mode, family, theta_part=True)
    assert np.max(np.abs(fast - generic)) <= 1e-7 * np.max(np.abs(generic))
