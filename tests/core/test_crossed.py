"""The crossed path (eliminate one factor, factor the rest densely) against numpy.

Reference: the whole bordered matrix

    [[Lambda' Z'WZ Lambda + I, Lambda' Z'W[X y]], [[X y]'WZ Lambda, [X y]'W[X y]]]

formed densely and factored by numpy's Cholesky.  Its diagonal gives ``log|L_Z|^2``,
``log|R_X|^2`` and PWRSS exactly as the engine reads them; the crossed path computes the
same factor by other sums, so they agree to rounding (1e-10 relative).  The objective is
also checked against the marginal-likelihood closed form of tests/core/test_lmm.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core import crossed as crossed_module
from mixedmodels.core.crossed import CrossedObjective, choose_order
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.fillin import numba_available
from tests.core.test_lmm import closed_form, dense_lambda, dense_z

SCATTER = pytest.param(
    "scatter", marks=pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
)

KERNELS = ["map", "grouped", "dense", SCATTER]


def crossed_problem(kind: str, rng: np.random.Generator, weighted: bool = False, n: int = 300):
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    subj = rng.integers(0, 30, n)
    item = rng.integers(0, 12, n)
    site = rng.integers(0, 5, n)
    one = np.ones((n, 1))
    x2 = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    blocks = {
        "slope_intercept": [RandomBlock(subj, 30, X.copy()), RandomBlock(item, 12, one)],
        "slope_slope": [RandomBlock(subj, 30, x2), RandomBlock(item, 12, X.copy())],
        "three": [
            RandomBlock(subj, 30, X.copy()),
            RandomBlock(item, 12, one),
            RandomBlock(site, 5, X.copy()),
        ],
        "zerocorr": [
            RandomBlock(subj, 30, one),
            RandomBlock(subj, 30, X[:, 1:].copy()),
            RandomBlock(item, 12, one),
            RandomBlock(item, 12, X[:, 1:].copy()),
        ],
        "scalar": [RandomBlock(subj, 30, one), RandomBlock(item, 12, one)],
        "small_first": [RandomBlock(item, 12, one), RandomBlock(subj, 30, X.copy())],
    }[kind]
    y = X @ [1.0, 0.5] + rng.normal(size=n)
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    return LmmProblem(blocks, X, y, weights=weights, reml=True)


def crossed_for(problem: LmmProblem, kernel: str | None) -> CrossedObjective:
    order = choose_order(problem.engine_blocks)
    return CrossedObjective(
        problem.engine_blocks,
        problem.order,
        problem.theta_offsets,
        problem.gram,
        problem.weights,
        problem.n_fixed,
        order,
        kind=kernel,
    )


def dense_pieces(problem: LmmProblem, theta: np.ndarray) -> tuple[float, float, float]:
    """(log|L_Z|^2, log|R_X|^2, PWRSS) from numpy's Cholesky of the bordered matrix."""
    Z = np.hstack([dense_z(b) for b in problem.blocks])
    lam = dense_lambda(problem, theta)
    w = np.ones(problem.n) if problem.weights is None else problem.weights
    zl = Z @ lam
    xy = np.column_stack([problem.X, problem.y])
    big = np.block(
        [
            [zl.T @ (w[:, None] * zl) + np.eye(zl.shape[1]), zl.T @ (w[:, None] * xy)],
            [xy.T @ (w[:, None] * zl), xy.T @ (w[:, None] * xy)],
        ]
    )
    low = np.linalg.cholesky(big)
    d = np.diagonal(low)
    q, p = zl.shape[1], problem.n_fixed
    return 2 * np.log(d[:q]).sum(), 2 * np.log(d[q : q + p]).sum(), d[-1] ** 2


def random_theta(problem: LmmProblem, rng: np.random.Generator) -> np.ndarray:
    lower = problem.theta_lower_bounds()
    return np.where(lower == 0, rng.uniform(0.2, 1.5, lower.size), rng.normal(0, 0.4, lower.size))


KINDS = ["slope_intercept", "slope_slope", "three", "zerocorr", "scalar", "small_first"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("weighted", [False, True])
def test_pieces_equal_a_dense_factorization(kind, kernel, weighted):
    rng = np.random.default_rng(len(kind) * 31 + len(kernel) + weighted)
    problem = crossed_problem(kind, rng, weighted)
    crossed = crossed_for(problem, kernel)
    assert crossed.fill.kind == kernel
    for _ in range(3):
        theta = random_theta(problem, rng)
        got = crossed.pieces(theta)
        want = dense_pieces(problem, theta)
        np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("kind", ["slope_intercept", "three", "zerocorr"])
def test_objective_equals_the_closed_form(kind):
    rng = np.random.default_rng(5)
    problem = crossed_problem(kind, rng, n=160)
    crossed = crossed_for(problem, None)
    theta = random_theta(problem, rng)
    value = problem.objective_from_pieces(*crossed.pieces(theta))
    assert value == pytest.approx(closed_form(problem, theta, reml=True), rel=1e-10)


def test_boundary_theta_and_exact_zero_components():
    """theta on the boundary (a zero diagonal of lambda) is an ordinary point."""
    rng = np.random.default_rng(11)
    problem = crossed_problem("slope_intercept", rng)
    crossed = crossed_for(problem, "map")
    theta = np.array([0.8, 0.3, 0.0, 0.0])
    np.testing.assert_allclose(crossed.pieces(theta), dense_pieces(problem, theta), rtol=1e-10)


def test_order_amalgamates_one_factor_and_eliminates_the_largest():
    rng = np.random.default_rng(2)
    problem = crossed_problem("zerocorr", rng)
    order = choose_order(problem.engine_blocks)
    first = [problem.engine_blocks[k] for k in order.first]
    assert len(first) == 2 and all(b.n_levels == 30 for b in first)
    problem = crossed_problem("small_first", rng)
    order = choose_order(problem.engine_blocks)
    assert [problem.engine_blocks[k].n_levels for k in order.first] == [30]
    single = LmmProblem([problem.blocks[1]], problem.X, problem.y)
    assert choose_order(single.engine_blocks) is None


def large_problem(rng: np.random.Generator, reml: bool = True) -> LmmProblem:
    """Over the dense path's 240 random effects, so LmmProblem.objective goes crossed."""
    n = 2400
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    subj = np.repeat(np.arange(200), 12)
    item = rng.integers(0, 60, n)
    y = 1 + 0.5 * x + rng.normal(size=200)[subj] + rng.normal(size=60)[item] + rng.normal(size=n)
    blocks = [RandomBlock(subj, 200, X.copy()), RandomBlock(item, 60, np.ones((n, 1)))]
    return LmmProblem(blocks, X, y, reml=reml)


@pytest.mark.parametrize("reml", [True, False])
def test_problem_objective_uses_the_crossed_path_and_equals_the_blocked_engine(reml):
    rng = np.random.default_rng(8)
    problem = large_problem(rng, reml)
    assert problem.crossed_objective() is not None
    for _ in range(3):
        theta = random_theta(problem, rng)
        blocked = problem.objective_from_factor(problem.factorize(theta))
        assert problem.objective(theta) == pytest.approx(blocked, rel=1e-10)
    text = problem.describe_structure()
    assert "path: crossed" in text
    assert "eliminated first: term(s) [0] (200 levels x 2)" in text
    assert "dense rest: term(s) [1] (60 columns)" in text


def test_new_response_and_fixed_value_reuse_the_structure():
    rng = np.random.default_rng(9)
    problem = large_problem(rng)
    theta = random_theta(problem, rng)
    problem.objective(theta)
    y2 = problem.y + rng.normal(size=problem.n)
    other = problem.with_response(y2)
    assert other.crossed_objective().fill is problem.crossed_objective().fill
    fresh = LmmProblem(problem.blocks, problem.X, y2)
    fresh._crossed = None  # the blocked engine
    assert other.objective(theta) == pytest.approx(fresh.objective(theta), rel=1e-10)
    held = problem.with_fixed_value(1, 0.3)
    reference = LmmProblem(problem.blocks, problem.X[:, :1], problem.y - 0.3 * problem.X[:, 1])
    reference._crossed = None
    assert held.objective(theta) == pytest.approx(reference.objective(theta), rel=1e-10)


@pytest.mark.parametrize("kind", ["slope_intercept", "three", "zerocorr", "small_first"])
def test_solution_equals_the_dense_penalized_least_squares(kind):
    """beta and u solve [Lambda'Z'WZ Lambda + I, Lambda'Z'WX; X'WZ Lambda, X'WX] [u; beta]
    = [Lambda'Z'Wy; X'Wy] (numpy), b = Lambda u, and the blocked engine agrees."""
    rng = np.random.default_rng(21)
    problem = crossed_problem(kind, rng, weighted=True)
    problem._crossed = crossed_for(problem, None)
    theta = random_theta(problem, rng)
    sol = problem.solve(theta)
    Z = np.hstack([dense_z(b) for b in problem.blocks])
    lam = dense_lambda(problem, theta)
    w = problem.weights
    zl, X, y = Z @ lam, problem.X, problem.y
    lhs = np.block(
        [
            [zl.T @ (w[:, None] * zl) + np.eye(zl.shape[1]), zl.T @ (w[:, None] * X)],
            [X.T @ (w[:, None] * zl), X.T @ (w[:, None] * X)],
        ]
    )
    dense = np.linalg.solve(lhs, np.concatenate([zl.T @ (w * y), X.T @ (w * y)]))
    q = zl.shape[1]
    np.testing.assert_allclose(sol.beta, dense[q:], rtol=1e-9)
    np.testing.assert_allclose(np.concatenate([u.ravel() for u in sol.u]), dense[:q], atol=1e-9)
    np.testing.assert_allclose(
        np.concatenate([b.ravel() for b in sol.b]), lam @ dense[:q], atol=1e-9
    )
    blocked = LmmProblem(problem.blocks, X, y, weights=w, reml=True)
    blocked._crossed = None
    ref = blocked.solve(theta)
    assert sol.objective == pytest.approx(ref.objective, rel=1e-10)
    assert sol.sigma == pytest.approx(ref.sigma, rel=1e-10)
    assert sol.pwrss == pytest.approx(ref.pwrss, rel=1e-10)
    np.testing.assert_allclose(sol.vcov_unscaled, ref.vcov_unscaled, rtol=1e-9)


def test_the_kept_last_factor_is_the_factor_of_that_theta_and_response():
    """The factor kept for the last theta (the optimizer's final check and the solution ask
    again) equals the dense factorization at that theta, is read-only, is replaced at a new
    theta, and is not carried into a copy with a new response (whose pieces are the dense
    ones of the new response)."""
    rng = np.random.default_rng(23)
    problem = crossed_problem("slope_intercept", rng)
    crossed = crossed_for(problem, "map")
    theta = np.array([0.8, 0.2, 0.5, 0.6])
    first = crossed.factor(theta)
    assert crossed.factor(theta.copy()) is first
    assert not first.xy_xy.flags.writeable and not first.upper_rest.flags.writeable
    ld, rx = first.log_det_random, first.xy_xy
    want = dense_pieces(problem, theta)
    got = (ld, first.log_det_fixed(problem.n_fixed), first.pwrss)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    other_theta = theta * 1.1
    assert crossed.factor(other_theta) is not first
    y2 = problem.y + rng.normal(size=problem.n)
    other = problem.with_response(y2)
    fresh = crossed.with_response(other.gram, other.n_fixed)
    f2 = fresh.factor(other_theta)
    want2 = dense_pieces(other, other_theta)
    np.testing.assert_allclose(
        (f2.log_det_random, f2.log_det_fixed(other.n_fixed), f2.pwrss), want2, rtol=1e-10
    )
    assert crossed.factor(other_theta).pwrss != pytest.approx(f2.pwrss, rel=1e-6)
    np.testing.assert_array_equal(rx, crossed.factor(theta).xy_xy)


def count_fills(monkeypatch, crossed: CrossedObjective) -> list:
    """A list that gets one entry per call of the objective's fill kernel."""
    calls: list = []
    original = crossed.fill.lower_fill

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(crossed.fill, "lower_fill", counted)
    return calls


@pytest.mark.parametrize("kernel", ["map", SCATTER])
def test_kept_fills_give_the_dense_factorization_and_skip_rest_only_steps(monkeypatch, kernel):
    """With fills kept (one scalar rest term), points that differ only in the rest's theta
    reuse the fill: the pieces still equal the dense factorization's (same tolerance as
    above), and the kernel runs once per distinct ``lambda_0``."""
    monkeypatch.setattr(crossed_module, "FILL_CACHE_PRODUCTS", 0)
    rng = np.random.default_rng(41)
    problem = crossed_problem("slope_intercept", rng)
    crossed = crossed_for(problem, kernel)
    assert crossed._fill_cache is not None
    calls = count_fills(monkeypatch, crossed)
    base = random_theta(problem, rng)
    firsts = [base[:3], random_theta(problem, rng)[:3]]
    for first in firsts:
        for rest in (0.3, 0.9, 1.7):
            theta = np.concatenate([first, [rest]])
            np.testing.assert_allclose(
                crossed.pieces(theta), dense_pieces(problem, theta), rtol=1e-10
            )
    assert len(calls) == len(firsts)
    # more distinct lambda_0 than the cache holds: the oldest is computed again
    for _ in range(crossed_module.FILL_CACHE):
        crossed.pieces(np.concatenate([random_theta(problem, rng)[:3], [0.5]]))
    calls.clear()
    crossed.pieces(np.concatenate([firsts[0], [0.4]]))
    assert len(calls) == 1


@pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
def test_scatter_reads_a_csc_block_of_the_gram_in_place():
    """A Gram whose ``Z_R' W Z_0`` is held as canonical CSC (as the chunked passes build
    it) gives the scatter kernel that very matrix: no copy of A, and the same pieces as
    the dense factorization (tolerance as above)."""
    from dataclasses import replace as replace_field

    rng = np.random.default_rng(17)
    problem = crossed_problem("slope_intercept", rng, weighted=True)
    gram = problem.gram
    block = gram.off_diagonal[1, 0].tocsc()
    block.sort_indices()
    held = replace_field(gram, off_diagonal={(1, 0): block})
    order = choose_order(problem.engine_blocks)
    crossed = CrossedObjective(
        problem.engine_blocks, problem.order, problem.theta_offsets, held,
        problem.weights, problem.n_fixed, order, kind="scatter",
    )
    assert crossed.a is block and crossed.fill.a is block
    for _ in range(2):
        theta = random_theta(problem, rng)
        np.testing.assert_allclose(
            crossed.pieces(theta), dense_pieces(problem, theta), rtol=1e-10
        )


@pytest.mark.parametrize("kernel", ["map", SCATTER])
def test_kept_fills_are_capped_in_bytes(monkeypatch, kernel):
    """Four fills of the largest dense rest (8,000 columns) were 2 GB kept on top of the
    factorization; now only as many as fit in FILL_CACHE_BYTES are kept (none when one does
    not fit), the oldest dropped first, and the pieces equal the dense factorization
    (tolerance as above)."""
    monkeypatch.setattr(crossed_module, "FILL_CACHE_PRODUCTS", 0)
    rng = np.random.default_rng(43)
    problem = crossed_problem("slope_intercept", rng)
    q = 12  # the rest: 12 items
    monkeypatch.setattr(crossed_module, "FILL_CACHE_BYTES", 8 * q * q - 1)
    assert crossed_for(problem, kernel)._fill_cache is None
    monkeypatch.setattr(crossed_module, "FILL_CACHE_BYTES", 2 * 8 * q * q)
    crossed = crossed_for(problem, kernel)
    assert crossed.q_rest == q and crossed._fills_kept == 2
    calls = count_fills(monkeypatch, crossed)
    firsts = [random_theta(problem, rng)[:3] for _ in range(3)]
    for first in firsts:
        theta = np.concatenate([first, [0.7]])
        np.testing.assert_allclose(crossed.pieces(theta), dense_pieces(problem, theta), rtol=1e-10)
    assert len(crossed._fill_cache) == 2 and len(calls) == 3
    crossed.pieces(np.concatenate([firsts[2], [0.3]]))  # kept
    assert len(calls) == 3
    theta = np.concatenate([firsts[0], [0.3]])  # dropped: computed again
    np.testing.assert_allclose(crossed.pieces(theta), dense_pieces(problem, theta), rtol=1e-10)
    assert len(calls) == 4
