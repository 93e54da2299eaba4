"""The factors of ``M = I + A' W A`` that ``LaplaceGradient`` uses (optim/laplace_gradient.py:
diagonal for one scalar term, block diagonal for one vector-valued term, the coupling block
by its non-zeros for crossed terms, the dense one otherwise) against ``M^-1`` formed densely
from ``Z`` and ``Lambda`` with ``numpy.linalg.inv``: the same matrix by an independent
route.

Compared: each row's ``M^-1 a_i`` at its own columns (the eliminated term's and the rest's),
the leverages ``a_i' M^-1 a_i`` and ``A M^-1 A' c`` with ``M^-1 A' c``, for positive
weights (the Laplace weights) and for weights of mixed sign that keep ``M`` positive
definite (observed information off the mode), with and without the inverse formed.  ``M``
is well conditioned here (its eigenvalues lie in [1, ~1e3]), so both routes agree to
rounding: 1e-9 relative to each quantity's largest entry.  A ``M`` that is not positive
definite raises ``LinAlgError`` as the dense Cholesky factorization does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.optim.laplace_gradient import (
    LaplaceGradient,
    _BlockFactor,
    _CoupledFactor,
    _DiagonalFactor,
    _Factor,
)

CASES = {
    # one scalar term: every column eliminated
    "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    # one vector-valued term: block diagonal
    "sleepstudy": ("sleepstudy", "y ~ Days + (Days | Subject)", "binomial"),
    # crossed scalar terms: BROOD eliminated, LOCATION dense (BROOD nested in it)
    "grouseticks": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
        "poisson",
    ),
    # an observation-level term eliminated, two terms in the rest
    "grouseticks_index": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
    ),
    # a scalar term eliminated and a vector-valued one in the rest
    "sleepstudy_crossed": (
        "sleepstudy",
        "y ~ Days + (1 | Subject) + (Days | Group)",
        "binomial",
    ),
}

KINDS = {
    "cbpp": _DiagonalFactor,
    "sleepstudy": _BlockFactor,
    "grouseticks": _CoupledFactor,
    "grouseticks_index": _CoupledFactor,
    "sleepstudy_crossed": _CoupledFactor,
}

_PROBLEMS: dict[str, object] = {}


def _problem(name: str):
    if name not in _PROBLEMS:
        data, formula, family = CASES[name]
        frame = mm.datasets.load(data)
        if data == "sleepstudy":
            frame = frame.assign(
                y=(frame["Reaction"] > 300).astype(float),
                Group=(frame["Subject"].astype(str).str[-1]),
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = mm.glmer(formula, frame, family)
        _PROBLEMS[name] = (fit.problem, np.asarray(fit.theta, float))
    return _PROBLEMS[name]


def _dense(gradient: LaplaceGradient, theta: np.ndarray, w: np.ndarray):
    """``A`` (n, q) with the columns in the factor's order (the eliminated term's, then the
    rest's) and ``M^-1`` formed densely."""
    problem = gradient.problem
    lambdas = problem.lambdas(theta)
    z = problem.Z.toarray()
    parts, start = [], 0
    for block, lam in zip(problem.blocks, lambdas, strict=True):
        zt = z[:, start : start + block.size]
        parts.append(zt @ np.kron(np.eye(block.n_levels), lam))
        start += block.size
    order = [gradient.eliminated] if gradient.eliminated is not None else []
    order += [i for i in range(len(parts)) if i != gradient.eliminated]
    a = np.concatenate([parts[i] for i in order], axis=1)
    m = np.eye(a.shape[1]) + a.T @ (w[:, None] * a)
    return a, np.linalg.inv(m)


def _close(actual, expected):
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9 * scale)


def _weights(problem, theta, mixed: bool) -> np.ndarray:
    """Laplace-like weights (positive, of varied size) or weights of mixed sign whose ``M``
    stays positive definite (a few rows at -0.02)."""
    rng = np.random.default_rng(5)
    w = rng.uniform(0.2, 3.0, problem.n)
    if mixed:
        w[rng.choice(problem.n, size=max(1, problem.n // 20), replace=False)] = -0.02
    return w


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mixed", [False, True])
def test_factor_rows_and_solutions_equal_the_dense_inverse(name, mixed):
    problem, theta = _problem(name)
    gradient = LaplaceGradient(problem)
    w = _weights(problem, theta, mixed)
    a1, a2 = gradient._values(theta)
    a, m_inv = _dense(gradient, theta, w)
    assert np.linalg.eigvalsh(np.linalg.inv(m_inv)).min() > 0.5  # positive definite
    factor = gradient._laplace_factor(a1, a2, w)
    assert type(factor) is KINDS[name]
    t1, t2, lev = factor.rows()
    x = a @ m_inv  # row i: (M^-1 a_i)'
    q1 = gradient.q1
    codes = problem.blocks[gradient.eliminated].codes if q1 else None
    rows = np.arange(problem.n)
    if q1:
        _close(t1, x[rows, codes])
    _close(t2, x[rows[:, None], q1 + gradient.cols2])
    _close(lev, np.einsum("ij,ij->i", x, a))
    c = np.random.default_rng(7).normal(size=problem.n)
    rhs = a.T @ c
    for solver in (factor, gradient._laplace_factor(a1, a2, w, inverse=False)):
        v, v1, v2 = solver.solve(c)
        _close(v, a @ (m_inv @ rhs))
        _close(np.concatenate([v1, v2]), m_inv @ rhs)


@pytest.mark.parametrize("name", ["grouseticks", "grouseticks_index"])
def test_coupled_factor_equals_the_dense_coupling_block(name):
    """The coupling block by its non-zeros against :class:`_Factor`'s dense (grouseticks)
    or sparse (grouseticks_index: q1 q2 > 20,000) one, with ``S^-1`` formed or ``S`` only
    factored, the same weights: every output within 1e-10 of the largest entry."""
    problem, theta = _problem(name)
    gradient = LaplaceGradient(problem)
    w = _weights(problem, theta, True)
    a1, a2 = gradient._values(theta)
    coupled = gradient._laplace_factor(a1, a2, w)
    dense = _Factor(gradient._indices, a1, a2, w)
    for got, want in zip(coupled.rows(), dense.rows(), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.max(np.abs(want)))
    c = np.linspace(-1.0, 1.0, problem.n)
    # the dense factor solved by its Cholesky factor too (no S^-1: the observed weights')
    factored = _Factor(gradient._indices, a1, a2, w, inverse=False)
    assert factored.s_inv is None
    for solved in (dense.solve(c), factored.solve(c)):
        for got, want in zip(coupled.solve(c), solved, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.max(np.abs(want)))


@pytest.mark.parametrize("name, value", [("sleepstudy", -50.0), ("grouseticks", -0.2)])
def test_factor_of_an_indefinite_matrix_raises(name, value):
    """Weights ``value`` in the rows of one level of the last term make ``M`` indefinite
    (the eliminated block's ``D`` staying positive: at least 0.4 on grouseticks): the
    factor raises LinAlgError, whether or not the inverse is formed, where the dense
    factorization of the same Schur complement does."""
    problem, theta = _problem(name)
    gradient = LaplaceGradient(problem)
    a1, a2 = gradient._values(theta)
    w = np.ones(problem.n)
    w[problem.blocks[-1].codes == 0] = value
    _, m_inv = _dense(gradient, theta, w)
    assert np.linalg.eigvalsh(np.linalg.inv(m_inv)).min() < 0
    if gradient.q1:
        codes = problem.blocks[gradient.eliminated].codes
        assert (1.0 + np.bincount(codes, w * a1**2)).min() > 0.4
        with pytest.raises(np.linalg.LinAlgError):
            _Factor(gradient._indices, a1, a2, w)
    for inverse in (True, False):
        with pytest.raises(np.linalg.LinAlgError):
            gradient._laplace_factor(a1, a2, w, inverse)
