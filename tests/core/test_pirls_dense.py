"""The lean dense solver of PIRLS's weighted steps (core/pirls_dense.py) against the
normal equations written out with dense numpy matrices: ``Z`` built column by column from
the terms' codes, ``Lambda`` as a dense block-diagonal matrix, ``M = Lambda' Z' W Z Lambda +
I`` and the bordered system solved by ``numpy.linalg.solve``.  Tolerances: the systems are
well conditioned (condition numbers below 1e4), so the two solves agree to 1e-9 relative;
log-determinants to 1e-10 relative."""

import numpy as np
import pytest

from mixedmodels.core.pirls_dense import DenseWeightedSystem, ZRows
from mixedmodels.core.structures import Unstructured
from mixedmodels.core.terms import RandomBlock


def _blocks(kind: str, rng: np.random.Generator, n: int = 120):
    """Terms of several shapes: scalar crossed, a slope term, a one-level (dense) term,
    an observation-level term."""
    g1 = rng.integers(0, 9, n)
    g2 = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    blocks = {
        "scalar": RandomBlock(g1, 9, np.ones((n, 1))),
        "crossed": RandomBlock(g2, 5, np.ones((n, 1))),
        "slope": RandomBlock(g2, 5, np.column_stack([np.ones(n), x])),
        "one_level": RandomBlock(np.zeros(n, dtype=int), 1, rng.normal(size=(n, 3))),
        "observation": RandomBlock(np.arange(n), n, np.ones((n, 1))),
    }
    chosen = {
        "one_scalar": ["scalar"],
        "crossed": ["scalar", "crossed"],
        "slopes": ["slope", "scalar"],
        "smooth": ["one_level", "scalar"],
        "observation": ["observation", "scalar", "crossed"],
    }[kind]
    return [blocks[c] for c in chosen]


def _dense_z(blocks, n):
    cols = []
    for b in blocks:
        zk = np.zeros((n, b.size))
        for j in range(b.p):
            zk[np.arange(n), b.codes * b.p + j] = b.z[:, j]
        cols.append(zk)
    return np.hstack(cols)


def _dense_lambda(blocks, lambdas):
    return np.block(
        [
            [
                np.kron(np.eye(b.n_levels), lam) if i == j else np.zeros((b.size, c.size))
                for j, c in enumerate(blocks)
            ]
            for i, (b, lam) in enumerate(zip(blocks, lambdas, strict=True))
        ]
    )


def _lambdas(blocks, rng):
    out = []
    for b in blocks:
        lam = np.tril(rng.uniform(0.3, 1.2, (b.p, b.p)))
        out.append(lam)
    return out


CASES = [
    ("one_scalar", None),
    ("crossed", None),
    ("slopes", None),
    ("smooth", None),
    ("crossed", 0),  # eliminate the first scalar term (several rows per level)
    ("slopes", 1),
    ("observation", 0),  # an observation-level term: absorbed into the weights
]


@pytest.mark.parametrize(("kind", "eliminate"), CASES)
@pytest.mark.parametrize("update_beta", [False, True])
def test_step_solves_the_normal_equations(kind, eliminate, update_beta):
    rng = np.random.default_rng(3)
    n = 120
    blocks = _blocks(kind, rng, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    lambdas = _lambdas(blocks, rng)
    rows = ZRows(blocks)
    system = DenseWeightedSystem(rows, X, eliminate=eliminate)
    system.set_rows(rows.scaled(lambdas))
    w = rng.uniform(0.2, 2.0, n)
    z = rng.normal(size=n)
    u, beta, log_det = system.step(w, z, update_beta)

    zl = _dense_z(blocks, n) @ _dense_lambda(blocks, lambdas)
    q = zl.shape[1]
    m = zl.T @ (w[:, None] * zl) + np.eye(q)
    if update_beta:
        c = np.hstack([zl, X])
        a = c.T @ (w[:, None] * c)
        a[:q, :q] += np.eye(q)
        ref = np.linalg.solve(a, c.T @ (w * z))
        np.testing.assert_allclose(u, ref[:q], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(beta, ref[q:], rtol=1e-9, atol=1e-11)
    else:
        assert beta is None
        np.testing.assert_allclose(u, np.linalg.solve(m, zl.T @ (w * z)), rtol=1e-9, atol=1e-11)
    sign, ref_log_det = np.linalg.slogdet(m)
    assert sign == 1.0
    assert log_det == pytest.approx(ref_log_det, rel=1e-10)
    assert system.log_det(w) == pytest.approx(ref_log_det, rel=1e-10)

    # (R_X' R_X)^-1: the inverse of X' W X - X' W Z Lambda M^-1 Lambda' Z' W X
    schur = X.T @ (w[:, None] * X) - (X.T @ (w[:, None] * zl)) @ np.linalg.solve(
        m, zl.T @ (w[:, None] * X)
    )
    np.testing.assert_allclose(
        system.fixed_covariance(w), np.linalg.inv(schur), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["crossed", "slopes", "smooth", "observation"])
def test_scaled_rows_are_z_lambda(kind):
    rng = np.random.default_rng(5)
    n = 120
    blocks = _blocks(kind, rng, n)
    lambdas = _lambdas(blocks, rng)
    scaled = ZRows(blocks).scaled(lambdas)
    zl = _dense_z(blocks, n) @ _dense_lambda(blocks, lambdas)
    u = rng.normal(size=zl.shape[1])
    s = rng.normal(size=n)
    np.testing.assert_allclose(scaled.times(u), zl @ u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scaled.transpose_times(s), zl.T @ s, rtol=1e-12, atol=1e-12)


def test_non_positive_definite_weights_raise():
    """Negative weights that break the system raise the solver's error (PIRLS then floors
    them), never return a garbage step."""
    from mixedmodels.linalg.blocks import NotPositiveDefiniteError

    rng = np.random.default_rng(1)
    n = 40
    blocks = [RandomBlock(rng.integers(0, 4, n), 4, np.ones((n, 1)), Unstructured(1))]
    rows = ZRows(blocks)
    system = DenseWeightedSystem(rows, np.ones((n, 1)))
    system.set_rows(rows.scaled([np.array([[3.0]])]))
    with pytest.raises(NotPositiveDefiniteError):
        system.step(np.full(n, -1.0), rng.normal(size=n), True)


def test_only_a_scalar_term_is_eliminated():
    rng = np.random.default_rng(2)
    blocks = _blocks("slopes", rng)
    with pytest.raises(ValueError, match="scalar term"):
        DenseWeightedSystem(ZRows(blocks), np.ones((120, 1)), eliminate=0)
