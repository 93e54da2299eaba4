"""Covariance structures of random-effect terms (the seam of core/structures.py).

References are identities: a structure's theta <-> lambda <-> reported parameters round
trips; its covariances lie in the span of its linear basis; a term with a structure gives
the same objective as the equivalent unstructured / split terms on every engine path
(dense, single block, blocked, crossed), and the same fit as lme4's ``||``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.api import lmer_problem, optimize_problem
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.structures import Diagonal, ScaledIdentity, Unstructured
from mixedmodels.core.terms import RandomBlock
from mixedmodels.errors import ArgumentError, MixedModelsError

STRUCTURES = [Unstructured(1), Unstructured(3), Diagonal(3), ScaledIdentity(1), ScaledIdentity(4)]


def _random_theta(structure, rng):
    theta = rng.uniform(0.2, 1.5, structure.n_theta)
    lower = structure.lower_bounds()
    free = ~np.isfinite(lower)
    theta[free] = rng.normal(0, 0.7, free.sum())
    return theta


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_theta_lambda_reported_round_trip(structure):
    rng = np.random.default_rng(1)
    for _ in range(5):
        theta = _random_theta(structure, rng)
        lam = structure.lambda_matrix(theta)
        assert lam.shape == (structure.p, structure.p)
        assert np.allclose(np.triu(lam, 1), 0.0)  # lower triangular
        # entries are the lower triangle by column
        rows, cols = np.triu_indices(structure.p)[::-1]
        assert np.allclose(structure.lambda_entries(theta), lam[rows, cols])
        assert np.allclose(structure.theta_from_lambda(lam), theta, rtol=1e-12, atol=1e-12)
        sigma = 1.7
        values = structure.reported_values(lam, sigma)
        assert values.size == len(structure.reported_names([f"c{i}" for i in range(structure.p)]))
        back = structure.theta_from_reported(values, sigma)
        # reported parameters determine Sigma, hence lambda up to column signs
        assert np.allclose(
            structure.lambda_matrix(back) @ structure.lambda_matrix(back).T,
            lam @ lam.T,
            rtol=1e-10,
            atol=1e-12,
        )
        lo, hi = structure.reported_bounds()
        assert np.all(values >= lo - 1e-12) and np.all(values <= hi + 1e-12)


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_covariances_lie_in_the_linear_basis(structure):
    rng = np.random.default_rng(2)
    basis = structure.covariance_basis()
    design = np.stack([g.ravel() for g in basis], axis=1)
    for _ in range(3):
        lam = structure.lambda_matrix(_random_theta(structure, rng))
        cov = (lam @ lam.T).ravel()
        coef, *_ = np.linalg.lstsq(design, cov, rcond=None)
        assert np.allclose(design @ coef, cov, atol=1e-12)


def test_sd_and_correlations_of_unstructured_terms():
    lam = np.array([[2.0, 0.0], [0.6, 0.8]])
    values = Unstructured(2).reported_values(lam, 1.0)
    cov = lam @ lam.T
    expected = [np.sqrt(cov[0, 0]), cov[1, 0] / np.sqrt(cov[0, 0] * cov[1, 1]), np.sqrt(cov[1, 1])]
    assert np.allclose(values, expected)
    assert Unstructured(2).reported_names(["(Intercept)", "x"]) == [
        "sd_(Intercept)",
        "cor_x.(Intercept)",
        "sd_x",
    ]


def test_a_block_refuses_a_structure_of_another_size():
    with pytest.raises(ValueError, match="3 coefficients"):
        RandomBlock(np.zeros(4, dtype=np.int64), 1, np.ones((4, 2)), Diagonal(3))


# ------------------------------------------------------------------ the engine paths
def _crossed_data(n_g1: int, n_g2: int, n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, n_g1, n)
    g2 = rng.integers(0, max(n_g2, 1), n)
    x = rng.normal(size=n)
    y = (
        1.0
        + 0.5 * x
        + rng.normal(0, 0.8, n_g1)[g1]
        + rng.normal(0, 0.4, n_g1)[g1] * x
        + rng.normal(0, 0.6, max(n_g2, 1))[g2]
        + rng.normal(0, 1.0, n)
    )
    return g1, g2, x, y


def _diagonal_vs_split(n_g1, n_g2, n, with_second_factor):
    """The objective of a Diagonal(2) term equals that of its two scalar terms."""
    g1, g2, x, y = _crossed_data(n_g1, n_g2, n)
    X = np.column_stack([np.ones(n), x])
    z = np.column_stack([np.ones(n), x])
    diag = [RandomBlock(g1, n_g1, z, Diagonal(2))]
    split = [RandomBlock(g1, n_g1, z[:, :1]), RandomBlock(g1, n_g1, z[:, 1:])]
    if with_second_factor:
        diag.append(RandomBlock(g2, n_g2, np.ones((n, 1))))
        split.append(RandomBlock(g2, n_g2, np.ones((n, 1))))
    a, b = LmmProblem(diag, X, y), LmmProblem(split, X, y)
    rng = np.random.default_rng(4)
    for _ in range(4):
        theta = rng.uniform(0.1, 1.5, a.n_theta)
        assert a.objective(theta) == pytest.approx(b.objective(theta), rel=1e-10)
    return a, b


def test_diagonal_term_on_the_dense_path():
    a, _ = _diagonal_vs_split(30, 0, 400, with_second_factor=False)
    assert a.dense_objective is not None


def test_diagonal_term_on_the_single_block_path():
    a, _ = _diagonal_vs_split(400, 0, 3000, with_second_factor=False)
    assert a.dense_objective is None and len(a.engine_blocks) == 1


def test_diagonal_term_crossed_with_another_factor():
    a, b = _diagonal_vs_split(400, 150, 6000, with_second_factor=True)
    assert a.dense_objective is None and a.crossed_objective() is not None
    # the split problem's solution at the same theta is the same model
    theta = np.array([0.8, 0.4, 0.6])
    sa, sb = a.solve(theta), b.solve(theta)
    assert np.allclose(sa.beta, sb.beta, rtol=1e-9)
    assert sa.sigma == pytest.approx(sb.sigma, rel=1e-10)


def test_scaled_identity_is_unstructured_with_equal_diagonal():
    g1, _, x, y = _crossed_data(40, 2, 500)
    z = np.column_stack([np.ones(x.size), x])
    X = np.ones((x.size, 1))
    a = LmmProblem([RandomBlock(g1, 40, z, ScaledIdentity(2))], X, y)
    b = LmmProblem([RandomBlock(g1, 40, z)], X, y)
    for t in (0.3, 1.1):
        assert a.objective(np.array([t])) == pytest.approx(
            b.objective(np.array([t, 0.0, t])), rel=1e-12
        )


# ------------------------------------------------------------------ through the API
def test_diagonal_structure_fits_as_lme4s_double_bar():
    """``(Days | Subject)`` with a Diagonal structure is lme4's ``(Days || Subject)``: the
    same REML criterion at the optimum (the split model's) and the same sd's."""
    sleepstudy = mm.datasets.load("sleepstudy")
    design, _ = lmer_problem("Reaction ~ Days + (Days | Subject)", sleepstudy)
    design = replace(design, terms=[replace(design.terms[0], structure=Diagonal(2))])
    problem = LmmProblem([t.block for t in design.terms], design.X, design.y)
    result = optimize_problem(problem)
    split = mm.lmer("Reaction ~ Days + (Days || Subject)", sleepstudy)
    assert result.fun == pytest.approx(split.objective, rel=1e-8)
    assert np.allclose(np.sort(result.x), np.sort(split.theta), rtol=1e-4)


def test_structured_terms_in_reports():
    from mixedmodels.results.parameters import parameter_names

    names = parameter_names(["Subject"], [["(Intercept)", "Days"]], ["(Intercept)"], [Diagonal(2)])
    assert names == ["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma", "(Intercept)"]
    names = parameter_names(["g"], [["s1", "s2", "s3"]], [], [ScaledIdentity(3, label="s(x)")])
    assert names == ["sd_s(x)|g", "sigma"]


def test_kenward_roger_refuses_a_nonlinear_structure():
    from mixedmodels.inference.kenward_roger import _entry_selectors

    class Nonlinear(Diagonal):
        def covariance_basis(self):
            return None

    with pytest.raises(MixedModelsError, match="Kenward-Roger"):
        _entry_selectors(Nonlinear(2))


def test_the_sampler_refuses_structured_terms():
    from mixedmodels.core.gibbs import GibbsSampler

    n = 50
    block = RandomBlock(np.arange(n) % 5, 5, np.ones((n, 2)), Diagonal(2))
    with pytest.raises(ArgumentError, match="unstructured"):
        GibbsSampler([block], np.ones((n, 1)), np.zeros(n), None, None)
