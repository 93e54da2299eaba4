"""Structured random-effect covariances (cs, homcs, ar1, toep, diag, us) written in the
formula as glmmTMB writes them, against glmmTMB and against identities.

References: ``tests/reference/structures/*.json`` made by
``tests/reference/structures/make_structures_reference.R`` (glmmTMB 1.1.5, REML and ML).
Tolerances: log-likelihood 1e-6 relative; fixed effects 1e-4 of the largest; standard
errors and random-effect standard deviations 1e-3 relative (glmmTMB's optimum is found
by nlminb on a Laplace-free but differently parametrized objective; its own convergence
limits the agreement of second-order quantities to about 1e-4).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core.structures import (
    AR1,
    STRUCTURES,
    CompoundSymmetry,
    HomogeneousCompoundSymmetry,
    Toeplitz,
    Unstructured,
    partial_from_toeplitz,
    psd_cholesky,
    toeplitz_from_partial,
)
from mixedmodels.errors import FormulaError
from mixedmodels.formula.parser import COVARIANCE_STRUCTURES, parse_formula

REFERENCE = Path(__file__).parent.parent / "reference" / "structures"
RNG = np.random.default_rng(7)


def _case_names() -> list[str]:
    return sorted(p.stem for p in REFERENCE.glob("*.json"))


@pytest.mark.parametrize("name", _case_names())
def test_agrees_with_glmmtmb(name):
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    data = mm.datasets.load(ref["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer(ref["formula"], data, reml=ref["REML"])
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.n_parameters == ref["df"]
    scale = np.max(np.abs(ref["fixef"]))
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref["fixef"], atol=1e-4 * scale)
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    np.testing.assert_allclose(se, ref["se"], rtol=1e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    cov = fit.ranef_cov()
    term = next(iter(cov.values())).to_numpy()
    np.testing.assert_allclose(np.sqrt(np.diagonal(term)), ref["re_sd"], rtol=1e-3)
    np.testing.assert_allclose(term, np.asarray(ref["re_cov"]), atol=2e-3 * np.max(term))


def test_formula_names_the_structures_the_design_knows():
    assert set(COVARIANCE_STRUCTURES) == set(STRUCTURES)
    parsed = parse_formula("y ~ x + ar1(0 + f | g) + (1 | h)")
    assert [t.structure for t in parsed.random] == ["ar1", None]
    assert str(parsed.random[0]) == "ar1(0 + f | g)"
    with pytest.raises(FormulaError, match="one '\\|'"):
        parse_formula("y ~ cs(x || g)")
    with pytest.raises(FormulaError, match="takes a random-effect term"):
        parse_formula("y ~ diag(x)")
    with pytest.raises(FormulaError, match="takes one random-effect term"):
        parse_formula("y ~ diag(x | g, 2)")


@pytest.mark.parametrize(
    "structure",
    [CompoundSymmetry(4), HomogeneousCompoundSymmetry(3), AR1(5), Toeplitz(4)],
)
def test_lambda_and_reported_parameters_round_trip(structure):
    lo, hi = structure.lower_bounds(), structure.upper_bounds()
    for _ in range(5):
        theta = np.where(
            np.isfinite(hi),
            RNG.uniform(np.maximum(lo, -0.9), np.minimum(hi, 0.9)),
            RNG.uniform(0.2, 3.0, lo.size),
        )
        lam = structure.lambda_matrix(theta)
        assert np.allclose(np.triu(lam, 1), 0.0)
        np.testing.assert_allclose(lam @ lam.T, structure.relative_covariance(theta), atol=1e-12)
        reported = structure.reported_values(lam, 1.7)
        back = structure.theta_from_reported(reported, 1.7)
        np.testing.assert_allclose(back, theta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(structure.theta_from_lambda(lam), theta, rtol=1e-9, atol=1e-9)


def test_correlation_matrices():
    np.testing.assert_allclose(
        AR1(3).relative_covariance(np.array([2.0, 0.5])),
        4.0 * np.array([[1, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 1]]),
    )
    cs = CompoundSymmetry(3).relative_covariance(np.array([1.0, 2.0, 3.0, 0.4]))
    np.testing.assert_allclose(cs, np.outer([1, 2, 3], [1, 2, 3]) * (0.6 * np.eye(3) + 0.4))
    # Toeplitz through partial autocorrelations: AR(1)'s are (phi, 0, 0)
    np.testing.assert_allclose(toeplitz_from_partial(np.array([0.6, 0, 0])), 0.6 ** np.arange(4))
    acf = toeplitz_from_partial(np.array([0.5, -0.3, 0.2]))
    np.testing.assert_allclose(partial_from_toeplitz(acf), [0.5, -0.3, 0.2], rtol=1e-12)
    assert partial_from_toeplitz(np.array([1.0, 0.9, -0.9])) is None  # not positive definite
    # the boundary: rho = 1 is rank one, and its factor still reproduces the matrix
    a = np.ones((3, 3)) * 4.0
    low = psd_cholesky(a)
    np.testing.assert_allclose(low @ low.T, a, atol=1e-12)


def test_two_coefficient_structures_reduce_to_known_models():
    sleep = mm.datasets.load("sleepstudy")
    # with two coefficients cs and toep are unstructured: the same fit as (Days | Subject)
    us = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    for name in ("cs", "toep", "us"):
        fit = mm.lmer(f"Reaction ~ Days + {name}(Days | Subject)", sleep)
        assert fit.loglik == pytest.approx(us.loglik, rel=1e-9)
    # diag is lme4's (Days || Subject)
    split = mm.lmer("Reaction ~ Days + (Days || Subject)", sleep)
    diag = mm.lmer("Reaction ~ Days + diag(Days | Subject)", sleep)
    assert diag.loglik == pytest.approx(split.loglik, rel=1e-9)
    assert isinstance(us.design.terms[0].block.structure, Unstructured)
