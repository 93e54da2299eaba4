"""PIRLS's block-diagonal steps (core/pirls_dense.py: ``BlockDiagonalSystem``) for a model
whose random effects are one term of one or two columns, against the normal equations
written out with dense numpy matrices (``Z`` column by column from the codes, ``Lambda`` a
dense block-diagonal matrix, ``numpy.linalg.solve``), and the modes they give against the
dense solver's (``Family.dense_steps``).

Tolerances: ``I + Lambda' Z' W Z Lambda`` has eigenvalues of at least 1 and, with the
weights in [0.2, 2] and ``lambda`` below 1.2, condition numbers below 1e3, so two solves
of it agree to 1e-11 relative (a few hundred ulps of slack over the rounding of either);
log-determinants to 1e-12 relative.  Two PIRLS runs to the same mode (the same fixed point
by different rounding, converged to 1e-10 in ``u``) agree to 1e-9 in ``u`` and 1e-12
relative in the Laplace deviance."""

import numpy as np
import pytest

from mixedmodels.core.families import Gamma, LogLink
from mixedmodels.core.pirls import GlmmProblem
from mixedmodels.core.pirls_dense import BlockDiagonalSystem, DenseWeightedSystem, ZRows
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.blocks import NotPositiveDefiniteError


def _term(p: int, rng: np.random.Generator, n: int = 150, levels: int = 11):
    codes = rng.integers(0, levels, n)
    codes[:levels] = np.arange(levels)  # every level has a row
    z = np.column_stack([np.ones(n), rng.normal(size=n)])[:, :p]
    return RandomBlock(codes, levels, z)


def _dense(block: RandomBlock, lam: np.ndarray) -> np.ndarray:
    n = block.codes.size
    z = np.zeros((n, block.size))
    for j in range(block.p):
        z[np.arange(n), block.codes * block.p + j] = block.z[:, j]
    return z @ np.kron(np.eye(block.n_levels), lam)


def _setup(p: int, seed: int):
    rng = np.random.default_rng(seed)
    block = _term(p, rng)
    n = block.codes.size
    lam = np.tril(rng.uniform(0.3, 1.2, (p, p)))
    rows = ZRows([block])
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    system = BlockDiagonalSystem(rows, X)
    scaled = rows.scaled([lam])
    system.set_rows(scaled)
    zl = _dense(block, lam)
    w = rng.uniform(0.2, 2.0, n)
    return rng, rows, scaled, system, zl, X, w


@pytest.mark.parametrize("p", [1, 2])
def test_block_solve_and_log_det_are_the_dense_systems(p):
    rng, rows, scaled, system, zl, _, w = _setup(p, 4)
    q = zl.shape[1]
    m = zl.T @ (w[:, None] * zl) + np.eye(q)
    rhs = rng.normal(size=q)
    np.testing.assert_allclose(system.solve(w, rhs), np.linalg.solve(m, rhs), rtol=1e-11)
    sign, ref = np.linalg.slogdet(m)
    assert sign == 1.0
    assert system.log_det(w) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("p", [1, 2])
def test_block_step_equals_the_dense_solvers_increment(p):
    """The step from ``u`` with working residuals ``r`` (right-hand side minus the
    gradient ``u - Lambda' Z' W r``) is the dense solver's increment-form step."""
    rng, rows, scaled, system, _, X, w = _setup(p, 5)
    dense = DenseWeightedSystem(rows, X)
    dense.set_rows(scaled)
    r = rng.normal(size=w.size)
    u = rng.normal(size=rows.q)
    du_dense, _, _ = dense.step(w, r, False, current=u)
    gradient = u - scaled.transpose_times(w * r)
    np.testing.assert_allclose(-system.solve(w, gradient), du_dense, rtol=1e-11)


def test_block_step_with_beta_is_the_bordered_systems_solution():
    """With beta updated (one column per level): the Schur complement's solution equals
    the bordered system ``[A B; B' X'WX]`` solved whole."""
    rng, rows, scaled, system, zl, X, w = _setup(1, 6)
    r = rng.normal(size=w.size)
    u = rng.normal(size=rows.q)
    s = w * r
    gradient = u - scaled.transpose_times(s)
    du, dbeta = system.solve_with_beta(w, gradient, X.T @ s)
    c = np.hstack([zl, X])
    a = c.T @ (w[:, None] * c)
    q = zl.shape[1]
    a[:q, :q] += np.eye(q)
    ref = np.linalg.solve(a, np.concatenate([-gradient, X.T @ s]))
    np.testing.assert_allclose(du, ref[:q], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dbeta, ref[q:], rtol=1e-11, atol=1e-13)
    dense = DenseWeightedSystem(rows, X)
    dense.set_rows(scaled)
    du_dense, dbeta_dense, _ = dense.step(w, r, True, current=u)
    np.testing.assert_allclose(du, du_dense, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dbeta, dbeta_dense, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("p", [1, 2])
def test_an_indefinite_block_is_not_positive_definite(p):
    """Negative (Newton) weights that make one level's block indefinite raise, as the
    dense factorization does."""
    rng, rows, scaled, system, _, X, w = _setup(p, 7)
    w = w.copy()
    w[system._codes == 3] = -50.0
    with pytest.raises(NotPositiveDefiniteError):
        system.solve(w, np.ones(rows.q))
    with pytest.raises(NotPositiveDefiniteError):
        system.log_det(w)
    dense = DenseWeightedSystem(rows, X)
    dense.set_rows(scaled)
    with pytest.raises(NotPositiveDefiniteError):
        dense.log_det(w)


def test_more_than_one_term_or_wide_blocks_are_refused():
    rng = np.random.default_rng(8)
    two = ZRows([_term(1, rng), _term(1, rng)])
    with pytest.raises(ValueError, match="one term"):
        BlockDiagonalSystem(two, np.ones((150, 1)))
    block = _term(2, rng)
    wide = RandomBlock(block.codes, block.n_levels, np.column_stack([block.z, block.z[:, 1]]))
    with pytest.raises(ValueError, match="one or two columns"):
        BlockDiagonalSystem(ZRows([wide]), np.ones((150, 1)))


class _DenseGamma(Gamma):
    """The Gamma family whose PIRLS keeps the dense steps (the reference run)."""

    dense_steps = True


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("update_beta", [False, True])
def test_modes_by_blocks_equal_the_dense_solvers(p, update_beta):
    """A Gamma (log link) GLMM's conditional mode and Laplace deviance by the block steps
    equal those of the same problem with the dense steps; the solver view names the
    blocks."""
    rng = np.random.default_rng(10 + p)
    block = _term(p, rng, n=200, levels=15)
    n = block.codes.size
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    b = rng.normal(scale=0.4, size=block.size)
    eta = 1.0 + 0.3 * X[:, 1] + np.einsum("ij,ij->i", block.z, b.reshape(-1, p)[block.codes])
    y = rng.gamma(4.0, np.exp(eta) / 4.0)
    theta = np.array([0.5, -0.1, 0.2])[: block.n_theta]
    beta = np.array([1.1, 0.25])
    problem = GlmmProblem([block], X, y, None, None, Gamma(LogLink()))
    fast = problem.mode(theta, beta, update_beta=update_beta)
    assert "block-diagonal PIRLS steps" in problem.describe_solver()
    reference = GlmmProblem([block], X, y, None, None, _DenseGamma(LogLink()))
    slow = reference.mode(theta, beta, update_beta=update_beta)
    assert "block-diagonal" not in reference.describe_solver()
    np.testing.assert_allclose(fast.u, slow.u, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.beta, slow.beta, rtol=0, atol=1e-9)
    assert fast.laplace == pytest.approx(slow.laplace, rel=1e-12)
    assert fast.log_det == pytest.approx(slow.log_det, rel=1e-12)
    np.testing.assert_allclose(fast.unscaled_fixed_cov, slow.unscaled_fixed_cov, rtol=1e-9)
