"""Stage 2 of the GLMM fit by the quasi-Newton method (optim/glmm._newton_stage) against
closed forms, and the fit it gives against the BOBYQA stage it replaces (two
representations of the same optimum and Hessian)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels.optim.glmm as optim_glmm
from tests.family_cases import family_cases

M = np.array([0.7, -1.3, 2.1, 0.4])


def _f(x: np.ndarray) -> float:
    """``sum(exp(d) - d) + (sum d)^2 / 2`` with ``d = x - M``: minimum at ``M`` (every
    term's derivative is 0 there), Hessian there ``I + 1 1'``; not quadratic."""
    d = x - M
    return float(np.sum(np.exp(d) - d) + 0.5 * np.sum(d) ** 2)


def _gradient(x: np.ndarray) -> np.ndarray:
    d = x - M
    return np.exp(d) - 1.0 + np.sum(d)


def _hessian(x: np.ndarray) -> np.ndarray:
    return np.diag(np.exp(x - M)) + 1.0


def _run(x0, lower, start=True):
    steps = np.full(M.size, 1e-3)
    return optim_glmm._newton_stage(
        _f,
        lambda x, f0: (_hessian(x), _gradient(x), 0),
        lambda x: (_gradient(x), 0),
        x0,
        lower,
        steps,
        1,
        lambda x: False,
        (lambda x, f0: (np.eye(M.size), _gradient(x), 0)) if start else None,
    )


@pytest.mark.parametrize("start", [True, False])
def test_newton_stage_finds_the_closed_form_minimum(start):
    """From 1.5 away in every coordinate, with an identity start Hessian (BFGS updates) or
    the exact one: converged to the minimum ``M`` within 1e-4 (the Newton decrement at the
    last exact Hessian is below 1e-8, and the final step is taken: the error is of the
    order of that step squared), the returned Hessian the exact one at a point within
    1e-4 of ``M``, ``I + 1 1'`` within 1e-3."""
    result = _run(M + 1.5, np.array([-np.inf] * M.size), start)
    assert result.converged
    np.testing.assert_allclose(result.x, M, atol=1e-4)
    assert result.fun == pytest.approx(M.size, abs=1e-8)  # f(M) = number of terms
    np.testing.assert_allclose(result.hessian, np.eye(M.size) + 1.0, atol=1e-3)


def test_newton_stage_hands_over_near_a_bound():
    """The first coordinate (theta) bounded below at 0.6, its minimum at 0.7: within two
    Hessian steps (1e-3) of the bound the stage stops unconverged at its best point (no
    point below the bound evaluated), for BOBYQA to go on."""
    lower = np.array([0.6999, -np.inf, -np.inf, -np.inf])
    result = _run(M + 0.5, lower)
    assert not result.converged
    assert "bound" in result.message
    assert result.x[0] >= lower[0]
    assert result.fun <= _f(M + 0.5)


@pytest.mark.parametrize(
    "name", ["salamanders_zip", "sleepstudy_gamma_log", "salamanders_glmer_nb", "owls_nbinom1"]
)
def test_newton_and_bobyqa_stages_agree(name, monkeypatch):
    """The fit with Newton's stage 2 (vcov from its last Hessian) against the fit where
    Newton is stopped before its first exact Hessian and BOBYQA finishes (vcov from
    central differences of the gradient at BOBYQA's optimum): log-likelihoods within 1e-8
    absolute, fixed effects within 1e-4 standard errors, theta within 1e-4 relative,
    standard errors within 1e-4 relative (measured: 1e-10, 9e-6, 3e-6, 5e-6); Newton's
    fit takes fewer evaluations."""
    (case,) = [c for c in family_cases() if c.name == name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        newton = case.fit()
        monkeypatch.setattr(optim_glmm, "NEWTON_ITERATIONS", 0)
        bobyqa = case.fit()
    se = np.sqrt(np.diag(np.asarray(newton.vcov)))
    assert newton.loglik == pytest.approx(bobyqa.loglik, abs=1e-8)
    fixef_gap = np.abs(newton.fixef.to_numpy() - bobyqa.fixef.to_numpy()) / se
    assert np.max(fixef_gap) <= 1e-4
    np.testing.assert_allclose(newton.theta, bobyqa.theta, rtol=1e-4)
    np.testing.assert_allclose(se, np.sqrt(np.diag(np.asarray(bobyqa.vcov))), rtol=1e-4)
    assert newton.n_evaluations < bobyqa.n_evaluations
