"""The blocked engine against closed forms built from dense matrices.

For theta, with V = I + Z Lambda Lambda' Z' (relative marginal covariance, unit weights),
GLS beta and r = y - X beta:
  ML deviance  = n log(2 pi r'V^-1 r / n) + log|V| + n
  REML crit    = (n-p) log(2 pi r'V^-1 r / (n-p)) + log|V| + log|X'V^-1 X| + (n-p)
The engine never forms V; agreement to 1e-9 relative checks every block type.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock


def dense_z(block: RandomBlock) -> np.ndarray:
    n = block.codes.size
    z = np.zeros((n, block.size))
    for a in range(block.p):
        z[np.arange(n), block.codes * block.p + a] = block.z[:, a]
    return z


def dense_lambda(problem: LmmProblem, theta: np.ndarray) -> np.ndarray:
    lams = problem.lambdas(theta)
    return sp.block_diag(
        [np.kron(np.eye(b.n_levels), lam) for b, lam in zip(problem.blocks, lams, strict=True)]
    ).toarray()


def closed_form(problem: LmmProblem, theta: np.ndarray, reml: bool) -> float:
    Z = np.hstack([dense_z(b) for b in problem.blocks])
    Lam = dense_lambda(problem, theta)
    X, y = problem.X, problem.y
    n, p = X.shape
    V = np.eye(n) + Z @ Lam @ Lam.T @ Z.T
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    q = r @ Vi @ r
    logdet_v = np.linalg.slogdet(V)[1]
    if reml:
        return (
            (n - p) * np.log(2 * np.pi * q / (n - p))
            + logdet_v
            + np.linalg.slogdet(X.T @ Vi @ X)[1]
            + (n - p)
        )
    return n * np.log(2 * np.pi * q / n) + logdet_v + n


def random_problem(kind: str, rng: np.random.Generator, reml: bool) -> LmmProblem:
    n = 120
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    a = rng.integers(0, 12, n)
    b = rng.integers(0, 5, n)
    if kind == "slopes":
        blocks = [RandomBlock(a, 12, X.copy())]
    elif kind == "crossed":
        blocks = [RandomBlock(a, 12, np.ones((n, 1))), RandomBlock(b, 5, np.ones((n, 1)))]
    elif kind == "crossed_slopes":
        blocks = [RandomBlock(a, 12, X.copy()), RandomBlock(b, 5, np.ones((n, 1)))]
    elif kind == "nested":
        inner = a * 5 + b
        codes = np.unique(inner, return_inverse=True)[1]
        blocks = [
            RandomBlock(codes, codes.max() + 1, np.ones((n, 1))),
            RandomBlock(a, 12, np.ones((n, 1))),
        ]
    elif kind == "three_crossed":
        c = rng.integers(0, 7, n)
        blocks = [
            RandomBlock(a, 12, np.ones((n, 1))),
            RandomBlock(b, 5, X.copy()),
            RandomBlock(c, 7, np.ones((n, 1))),
        ]
    else:
        raise ValueError(kind)
    y = X @ [1.0, 0.5] + rng.normal(size=n)
    return LmmProblem(blocks, X, y, reml=reml)


KINDS = ["slopes", "crossed", "crossed_slopes", "nested", "three_crossed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reml", [True, False])
def test_objective_equals_dense_closed_form(kind, reml):
    rng = np.random.default_rng(abs(hash(kind)) % 1000)
    problem = random_problem(kind, rng, reml)
    for _ in range(3):
        theta = problem.theta_start() + rng.uniform(0.1, 1.0, problem.n_theta)
        assert problem.objective(theta) == pytest.approx(
            closed_form(problem, theta, reml), rel=1e-9
        )


@pytest.mark.parametrize("kind", KINDS)
def test_nested_blocks_stay_block_diagonal_only_when_nested(kind):
    problem = random_problem(kind, np.random.default_rng(0), True)
    expected = {
        "slopes": [False],
        "crossed": [False, True],
        "crossed_slopes": [False, True],
        "nested": [False, False],
        "three_crossed": [False, True, True],
    }[kind]
    assert problem.dense == expected


@pytest.mark.parametrize("kind", KINDS)
def test_solution_and_conditional_covariance_equal_dense_formulas(kind):
    rng = np.random.default_rng(7)
    problem = random_problem(kind, rng, True)
    theta = problem.theta_start() + 0.3
    sol = problem.solve(theta)
    Z = np.hstack([dense_z(b) for b in problem.blocks])
    Lam = dense_lambda(problem, theta)
    X, y = problem.X, problem.y
    # penalized least squares: [Lam'Z'Z Lam + I, Lam'Z'X; X'Z Lam, X'X] [u; beta] = [.. y]
    ZL = Z @ Lam
    A = np.block([[ZL.T @ ZL + np.eye(ZL.shape[1]), ZL.T @ X], [X.T @ ZL, X.T @ X]])
    rhs = np.concatenate([ZL.T @ y, X.T @ y])
    sol_dense = np.linalg.solve(A, rhs)
    q = ZL.shape[1]
    np.testing.assert_allclose(sol.beta, sol_dense[q:], rtol=1e-9)
    np.testing.assert_allclose(
        np.concatenate([u.ravel() for u in sol.u]), sol_dense[:q], rtol=1e-8, atol=1e-10
    )
    # conditional covariance of b: sigma^2 Lam (Lam'Z'Z Lam + I)^-1 Lam'
    cov = sol.sigma**2 * Lam @ np.linalg.inv(ZL.T @ ZL + np.eye(q)) @ Lam.T
    blocks = problem.conditional_covariances(theta, sol.sigma)
    start = 0
    for b, c in zip(problem.blocks, blocks, strict=True):
        for level in range(b.n_levels):
            sl = slice(start + level * b.p, start + (level + 1) * b.p)
            np.testing.assert_allclose(c[level], cov[sl, sl], rtol=1e-8, atol=1e-12)
        start += b.size


def test_with_response_equals_fresh_problem():
    rng = np.random.default_rng(3)
    problem = random_problem("crossed_slopes", rng, True)
    y2 = rng.normal(size=problem.n)
    fresh = LmmProblem(problem.blocks, problem.X, y2, reml=True)
    theta = problem.theta_start() + 0.2
    assert problem.with_response(y2).objective(theta) == pytest.approx(
        fresh.objective(theta), rel=1e-12
    )


def test_weights_enter_as_in_lme4():
    """Weighted objective = unweighted objective of the sqrt(w)-scaled model - sum log w."""
    rng = np.random.default_rng(5)
    n = 60
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    codes = rng.integers(0, 6, n)
    w = rng.uniform(0.5, 2.0, n)
    y = rng.normal(size=n)
    weighted = LmmProblem([RandomBlock(codes, 6, np.ones((n, 1)))], X, y, weights=w, reml=False)
    theta = np.array([0.7])
    Z = dense_z(RandomBlock(codes, 6, np.ones((n, 1))))
    V = np.diag(1 / w) + 0.49 * Z @ Z.T
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    expected = n * np.log(2 * np.pi * (r @ Vi @ r) / n) + np.linalg.slogdet(V)[1] + n
    assert weighted.objective(theta) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("reml", [True, False])
def test_single_term_fast_path_equals_closed_form(reml):
    """q = 150 levels x 2 > the dense threshold: objective() takes the single-term path."""
    rng = np.random.default_rng(21)
    n, levels = 900, 150
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    codes = rng.integers(0, levels, n)
    codes[:levels] = np.arange(levels)
    y = X @ [1.0, 0.5] + rng.normal(size=n)
    problem = LmmProblem([RandomBlock(codes, levels, X.copy())], X, y, reml=reml)
    assert problem.dense_objective is None
    theta = np.array([0.8, 0.3, 0.5])
    expected = closed_form(problem, theta, reml)
    assert problem.objective(theta) == pytest.approx(expected, rel=1e-9)
    blocked = problem.objective_from_factor(problem.factorize(theta))
    assert blocked == pytest.approx(expected, rel=1e-9)
    y2 = rng.normal(size=n)
    fresh = LmmProblem([RandomBlock(codes, levels, X.copy())], X, y2, reml=reml)
    assert problem.with_response(y2).objective(theta) == pytest.approx(
        fresh.objective(theta), rel=1e-12
    )


# ------------------------------------------------------------------ every path's [X y] factor
def _path_problems():
    """Problems on the dense, single-term and crossed paths (simulated, crossed factors)."""
    from mixedmodels.core.terms import RandomBlock

    rng = np.random.default_rng(11)
    n = 5000
    g1, g2 = rng.integers(0, 400, n), rng.integers(0, 120, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(0, 1, 400)[g1] + rng.normal(0, 0.5, 120)[g2] + rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    z = np.column_stack([np.ones(n), x])
    small = (g1 % 30).astype(np.int64)
    return {
        "dense": LmmProblem([RandomBlock(small, 30, z)], X, y),
        "single": LmmProblem([RandomBlock(g1, 400, z)], X, y),
        "crossed": LmmProblem(
            [RandomBlock(g1, 400, z), RandomBlock(g2, 120, np.ones((n, 1)))], X, y
        ),
    }


@pytest.mark.parametrize("path", ["dense", "single", "crossed"])
def test_each_paths_fixed_factor_equals_the_blocked_factorization(path):
    """``fixed_factor`` (what Satterthwaite's df and the profiles difference) gives the
    blocked engine's log-determinant, PWRSS and ``(R_X'R_X)^-1`` on every path."""
    from mixedmodels.core.dense import fixed_covariance

    problem = _path_problems()[path]
    if path == "crossed":
        assert problem.crossed_objective() is not None
    elif path == "dense":
        assert problem.dense_objective is not None
    theta = np.linspace(0.3, 0.9, problem.n_theta)
    theta[1] = 0.1  # an off-diagonal element of the vector term
    ld_z, r = problem.fixed_factor(theta)
    blocked = problem.factorize(theta)
    assert ld_z == pytest.approx(blocked.log_det_random(), rel=1e-10)
    assert problem.pieces(theta)[2] == pytest.approx(blocked.pwrss(), rel=1e-10)
    p = problem.n_fixed
    expected = np.linalg.inv(blocked.xy_xy[:p, :p] @ blocked.xy_xy[:p, :p].T)
    np.testing.assert_allclose(fixed_covariance(r, p), expected, rtol=1e-9)
