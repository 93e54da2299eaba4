"""The second-basin check is skipped where the model is affine in the parameters with
random effects: there each group's penalized least squares has one minimum, so the check
could find nothing and the estimates are those of the fit with the check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.design.nonlinear import ModelFunction
from mixedmodels.optim import nonlinear as onl
from tests.reference.nlme.cases import arguments, reference


def _fit(name: str) -> mm.NlmeFit:
    data, kw = arguments(name, reference())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.nlme(data=data, **kw)


@pytest.mark.parametrize("name", ["orange_ml", "loblolly", "co2_type_treatment"])
def test_affine_random_parameters_skip_the_check_with_the_same_estimates(name, monkeypatch):
    fit = _fit(name)
    assert fit.problem.random_affine
    # the modes searched from 0 and from far on either side are the fitted ones (one
    # minimum): 1e-6 in units of the random effects' sd (the search's stopping rule)
    est, problem = fit.estimate, fit.problem
    lam = problem.lambda_of(est.theta)
    u_fit = onl._u_of(est.b, lam)
    for start in (np.zeros_like(u_fit), u_fit + 10.0, u_fit - 10.0):
        u, _, _ = onl.conditional_modes(problem, est.beta, lam, start)
        assert np.max(np.abs(u - u_fit)) < 1e-6
    # with the check forced (the model not known to be affine): bitwise the same fit
    monkeypatch.setattr(ModelFunction, "affine_in", lambda self, parameters: False)
    checked = _fit(name)
    assert not checked.problem.random_affine
    assert checked.loglik == fit.loglik
    np.testing.assert_array_equal(checked.estimate.beta, est.beta)
    np.testing.assert_array_equal(checked.estimate.theta, est.theta)
    np.testing.assert_array_equal(checked.estimate.b, est.b)


@pytest.mark.parametrize("name", ["orange_two_diag", "co2", "theoph"])
def test_random_effects_entering_nonlinearly_are_checked(name):
    assert not _fit(name).problem.random_affine


@pytest.mark.parametrize("name", ["orange_two_diag", "co2", "soybean_diag"])
def test_mode_search_stops_once_every_group_is_near_its_fitted_mode(name):
    # the search with near= is the plain search cut at the first step after which every
    # group is within MODE_APART of its fitted mode (bitwise: the same steps), which on
    # these cases comes before MODE_PROBE steps
    fit = _fit(name)
    est, problem = fit.estimate, fit.problem
    lam = problem.lambda_of(est.theta)
    u_fit = onl._u_of(est.b, lam)
    zero = np.zeros_like(u_fit)
    plain = [onl.conditional_modes(problem, est.beta, lam, zero, max_iter=k)[0]
             for k in range(1, onl.MODE_PROBE + 1)]
    first = next(k for k, u in enumerate(plain) if np.max(np.abs(u - u_fit)) <= onl.MODE_APART)
    assert first + 1 < onl.MODE_PROBE
    u, _, _ = onl.conditional_modes(problem, est.beta, lam, zero, max_iter=onl.MODE_PROBE,
                                    near=u_fit, within=onl.MODE_APART)
    # (with numba the search with near= runs the groups' algebra in compiled kernels: the
    # same steps to rounding, 1e-12 of the largest mode; numpy's code: the same bits)
    np.testing.assert_allclose(u, plain[first], rtol=0, atol=1e-12 * np.abs(plain[first]).max())
