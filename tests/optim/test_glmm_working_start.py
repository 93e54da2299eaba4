"""theta's start for GLMMs with a vector-valued term (optim/start.glmm_working_start): the
moment start of the working response's linear mixed model, against that start computed
from an LmmProblem built by hand (an identity between two representations), its
scalar-only and unusable cases, and the evaluations it saves sleepstudy's Gamma fit."""

from __future__ import annotations

import warnings

import numpy as np

import mixedmodels as mm
from mixedmodels.api import glmm_problem
from mixedmodels.core.families import make_family
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.design.model import build_design
from mixedmodels.optim.start import glmm_working_start, moment_start
from tests.family_cases import family_cases


def _problem(formula: str, family: str, link: str):
    data = mm.datasets.load("sleepstudy")
    return glmm_problem(build_design(formula, data), make_family(family, link))


def test_gaussian_identity_working_response_is_the_response():
    """With the gaussian family and the identity link the working response is ``y`` and
    the weights are 1 whatever beta is: the start is moment_start of the LMM of ``y``
    (per-level regressions of sleepstudy's ``(Days | Subject)``), to rounding."""
    problem = _problem("Reaction ~ Days + (Days | Subject)", "gaussian", "identity")
    found = glmm_working_start(problem, np.array([250.0, 5.0]))
    lmm = LmmProblem(problem.blocks, problem.X, problem.y, reml=False)
    expected, _ = moment_start(lmm)
    assert found is not None
    np.testing.assert_allclose(found, expected, rtol=1e-9)


def test_log_link_working_response_at_beta():
    """Gamma with the log link: ``z = eta + (y - mu) / mu`` and weights 1 (``W = (d mu /
    d eta)^2 / V(mu) = mu^2 / mu^2``), built here from the closed form at beta."""
    problem = _problem("Reaction ~ Days + (Days | Subject)", "gamma", "log")
    beta = np.array([5.5, 0.03])
    eta = problem.X @ beta
    mu = np.exp(eta)
    z = eta + (problem.y - mu) / mu
    expected, _ = moment_start(LmmProblem(problem.blocks, problem.X, z, reml=False))
    np.testing.assert_allclose(glmm_working_start(problem, beta), expected, rtol=1e-9)


def test_scalar_terms_keep_the_scale_search_start():
    """Random intercepts only: None (the scale search along lme4's start finds them)."""
    problem = _problem("Reaction ~ Days + (1 | Subject)", "gamma", "log")
    assert glmm_working_start(problem, np.array([5.5, 0.03])) is None


def test_no_start_where_the_working_model_is_not_finite():
    """A beta whose means overflow: no start (None), not an error."""
    problem = _problem("Reaction ~ Days + (Days | Subject)", "gamma", "log")
    assert glmm_working_start(problem, np.array([800.0, 0.0])) is None


def test_sleepstudy_gamma_fit_takes_fewer_evaluations_and_agrees_with_lme4():
    """sleepstudy's Gamma-log fit with ``(Days | Subject)``: at most 27 Laplace evaluations
    (34 from lme4's identity start; measured 25) and lme4's log-likelihood (the tight
    reference) within 1e-8 relative."""
    (case,) = [c for c in family_cases() if c.name == "sleepstudy_gamma_log"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    assert fit.n_evaluations <= 27
    reference = case.reference["tight"]["logLik"]
    assert abs(fit.loglik - reference) <= 1e-8 * abs(reference)
