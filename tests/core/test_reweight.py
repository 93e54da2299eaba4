"""The reweightable LMM (a GLMM's scoring steps): a problem built once and reweighted must
be the problem built from the rows with the new weights and response.

Reference: a fresh ``LmmProblem(blocks, X, y, weights)`` (an independent construction: its
Gram comes from ``build_gram``'s bincounts and COO conversions, its paths build their
structure from it).  Both compute the same sums in different orders, so they agree to
rounding: 1e-10 relative on the objective and 1e-8 on the solution (whose conditioning
amplifies rounding by at most ~1e2 in these designs) is far below any modelling effect
yet fails on any wrong or stale entry (those move the values at 1e-2 or more).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixedmodels.core.crossed import CrossedObjective, choose_order
from mixedmodels.core.gram import GramPlan, add_grams, build_gram
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.fillin import numba_available

SCATTER = pytest.param(
    "scatter", marks=pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
)

OBJECTIVE_RTOL = 1e-10
SOLUTION_RTOL = 1e-8


def _block(codes, n_levels, z=None):
    codes = np.asarray(codes)
    z = np.ones((codes.size, 1)) if z is None else np.asarray(z, dtype=float)
    return RandomBlock(codes=codes, n_levels=n_levels, z=z)


def _crossed(n=3000, l1=400, l2=60, slopes=False, seed=1):
    """Two crossed factors (optionally a random slope on the first), partly unbalanced."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, l1, n)
    g2 = rng.integers(0, l2, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    z1 = np.column_stack([np.ones(n), x]) if slopes else None
    blocks = [_block(g1, l1, z1), _block(g2, l2)]
    return blocks, X, rng


def _dense_case(seed=2):
    rng = np.random.default_rng(seed)
    n = 400
    g = rng.integers(0, 30, n)
    h = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    blocks = [_block(g, 30, np.column_stack([np.ones(n), x])), _block(h, 12)]
    return blocks, X, rng


def _single_case(seed=3):
    rng = np.random.default_rng(seed)
    n = 2000
    g = rng.integers(0, 300, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    return [_block(g, 300, np.column_stack([np.ones(n), x]))], X, rng


def _amalgamated_case(seed=4):
    """Two terms on one grouping factor (amalgamated as the eliminated factor: its panels
    come from the rows) crossed with another factor."""
    blocks, X, rng = _crossed(n=2500, l1=300, l2=40, seed=seed)
    g1 = blocks[0].codes
    x = X[:, 1]
    extra = _block(g1, 300, x[:, None])
    return [blocks[0], extra, blocks[1]], X, rng


def _blocked_case(seed=5):
    """A rest term with more than 1,000 levels nested in the eliminated factor: the crossed
    path declines, the blocked engine runs."""
    rng = np.random.default_rng(seed)
    outer = np.repeat(np.arange(1000), 6)
    inner = np.repeat(np.arange(2000), 3)  # two levels within each outer level
    n = outer.size
    x, x2 = rng.normal(size=(2, n))
    X = np.column_stack([np.ones(n), x])
    z = np.column_stack([np.ones(n), x, x2])
    blocks = [_block(outer, 1000, z), _block(inner, 2000)]
    return blocks, X, rng


CASES = {
    "dense": (_dense_case, np.array([0.8, 0.2, 0.5, 0.6])),
    "single": (_single_case, np.array([0.9, -0.1, 0.4])),
    "crossed": (lambda: _crossed(), np.array([0.7, 0.4])),
    "crossed_slopes": (lambda: _crossed(slopes=True), np.array([0.7, 0.1, 0.3, 0.4])),
    "amalgamated": (_amalgamated_case, np.array([0.7, 0.3, 0.5])),
    "blocked": (_blocked_case, np.array([0.6, 0.1, 0.05, 0.3, -0.1, 0.4, 0.5])),
}
PATHS = {
    "dense": "dense",
    "single": "one term",
    "crossed": "crossed",
    "crossed_slopes": "crossed",
    "amalgamated": "crossed",
    "blocked": "blocked",
}


def _weights_and_response(rng, n):
    w = rng.uniform(0.05, 3.0, n)
    y = rng.normal(size=n) + 5.0
    return w, y


def _reweighted(blocks, X, rng, theta):
    """A reweightable problem built with one set of weights, evaluated (so every path's
    structure exists), then reweighted twice."""
    n = X.shape[0]
    w0, y0 = _weights_and_response(rng, n)
    problem = LmmProblem(blocks, X, y0, w0, reml=False, reweightable=True)
    problem.objective(theta)
    problem.solve(theta)
    w1, y1 = _weights_and_response(rng, n)
    problem.reweight(w1, y1)
    problem.objective(theta)
    w2, y2 = _weights_and_response(rng, n)
    problem.reweight(w2, y2)
    return problem, w2, y2


@pytest.mark.parametrize("name", list(CASES))
def test_reweighted_problem_equals_a_fresh_one(name):
    make, theta = CASES[name]
    blocks, X, rng = make()
    problem, w, y = _reweighted(blocks, X, rng, theta)
    fresh = LmmProblem(blocks, X, y, w, reml=False)
    assert PATHS[name] in problem.describe_structure().splitlines()[1]
    assert problem.objective(theta) == pytest.approx(fresh.objective(theta), rel=OBJECTIVE_RTOL)
    ours, ref = problem.solve(theta), fresh.solve(theta)
    np.testing.assert_allclose(ours.beta, ref.beta, rtol=SOLUTION_RTOL)
    for a, b in zip(ours.u, ref.u, strict=True):
        np.testing.assert_allclose(a, b, rtol=SOLUTION_RTOL, atol=SOLUTION_RTOL * np.abs(b).max())
    np.testing.assert_allclose(ours.vcov_unscaled, ref.vcov_unscaled, rtol=SOLUTION_RTOL)
    assert ours.log_det_random == pytest.approx(ref.log_det_random, rel=OBJECTIVE_RTOL)


@pytest.mark.parametrize("name", list(CASES))
def test_conditional_modes_at_a_given_beta(name):
    """``solve(theta, beta)``'s ``u`` is the mode of the model with ``X beta`` moved into
    the response and no fixed effects (a fresh problem with an empty X)."""
    make, theta = CASES[name]
    blocks, X, rng = make()
    problem, w, y = _reweighted(blocks, X, rng, theta)
    beta = np.linspace(-0.5, 0.7, X.shape[1])
    ours = problem.solve(theta, beta)
    ref = LmmProblem(blocks, np.zeros((X.shape[0], 0)), y - X @ beta, w, reml=False).solve(theta)
    np.testing.assert_array_equal(ours.beta, beta)
    for a, b in zip(ours.u, ref.u, strict=True):
        np.testing.assert_allclose(a, b, rtol=SOLUTION_RTOL, atol=SOLUTION_RTOL * np.abs(b).max())
    assert ours.log_det_random == pytest.approx(ref.log_det_random, rel=OBJECTIVE_RTOL)


@pytest.mark.parametrize("kind", ["map", "dense", SCATTER])
def test_refreshed_fill_kernels_equal_fresh_ones(kind):
    """Each reweightable kernel, refreshed with new weights, equals the same kernel built
    from the rows with them."""
    blocks, X, rng = _crossed(slopes=True)
    theta = np.array([0.7, 0.1, 0.3, 0.4])
    n = X.shape[0]
    base = LmmProblem(blocks, X, rng.normal(size=n), reml=False)  # engine order, offsets
    order = choose_order(base.engine_blocks)
    plan = GramPlan(base.engine_blocks, X)
    w0, y0 = _weights_and_response(rng, n)
    args = (base.engine_blocks, base.order, base.theta_offsets)
    ours = CrossedObjective(
        *args, plan.gram(w0, y0), w0, X.shape[1], order, kind=kind, reweightable=True
    )
    w1, y1 = _weights_and_response(rng, n)
    gram = plan.gram(w1, y1)
    ours.refresh(gram, w1)
    fresh_gram = build_gram(base.engine_blocks, X, y1, w1)
    ref = CrossedObjective(*args, fresh_gram, w1, X.shape[1], order, kind=kind)
    assert ours.fill.kind == ref.fill.kind == kind
    for a, b in zip(ours.pieces(theta), ref.pieces(theta), strict=True):
        assert a == pytest.approx(b, rel=OBJECTIVE_RTOL)


def test_plan_gram_equals_build_gram():
    blocks, X, rng = _crossed(slopes=True)
    n = X.shape[0]
    w, y = _weights_and_response(rng, n)
    plan = GramPlan(blocks, X)
    ours = plan.gram(w, y)
    ours = plan.gram(*_weights_and_response(rng, n), out=ours)  # refill in place, then back
    ours = plan.gram(w, y, out=ours)
    ref = build_gram(blocks, X, y, w)
    _assert_grams_close(ours, ref)


def test_gram_of_stacked_rows_is_the_sum():
    """``Gram(a) + Gram(b) == Gram(a + b)`` for a split of the rows (same terms)."""
    blocks, X, rng = _crossed(slopes=True)
    n = X.shape[0]
    w, y = _weights_and_response(rng, n)
    cut = n // 3

    def part(sl):
        sub = [RandomBlock(b.codes[sl], b.n_levels, b.z[sl]) for b in blocks]
        return build_gram(sub, X[sl], y[sl], w[sl])

    total = add_grams(part(slice(0, cut)), part(slice(cut, n)))
    _assert_grams_close(total, build_gram(blocks, X, y, w))


def test_reweight_refuses_a_problem_built_without_a_plan():
    blocks, X, rng = _dense_case()
    problem = LmmProblem(blocks, X, rng.normal(size=X.shape[0]))
    with pytest.raises(ValueError, match="reweightable"):
        problem.reweight(np.ones(X.shape[0]), np.zeros(X.shape[0]))


def _assert_grams_close(a, b):
    for x, y in zip(a.diagonal, b.diagonal, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12 * np.abs(y).max())
    assert a.off_diagonal.keys() == b.off_diagonal.keys()
    for key in b.off_diagonal:
        diff = sp.csr_matrix(a.off_diagonal[key] - b.off_diagonal[key])
        scale = np.abs(b.off_diagonal[key].data).max()
        assert (np.abs(diff.data).max() if diff.nnz else 0.0) <= 1e-12 * scale
    for x, y in zip(a.xy_random, b.xy_random, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12 * np.abs(y).max())
    np.testing.assert_allclose(a.xy_xy, b.xy_xy, rtol=1e-12)
