"""The shortcuts of the residual-structure objective against the general computations.

* Terms of up to ``SMALL_TERM`` coefficients are factored entry by entry over the levels;
  the reference is the batched LAPACK path (``SMALL_TERM = 0``) on random cross products.
  Tolerance 1e-11 relative: the same arithmetic in another order.
* The variance function's multipliers are kept between calls: after ``with_fitted`` the
  objective must be that of a problem built afresh with the new covariate (exact).
* The residual starts of the variance functions are moment estimates: on simulated
  residuals with a known power / exponent / sd ratio they recover it within 5 standard
  errors (n = 20,000; the errors below are well under those bounds).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core import residual_heads as rpm
from mixedmodels.core.residual import make_layout
from mixedmodels.core.residual_heads import single_term_pieces
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.core.variance_functions import FITTED, Exp, Fixed, Ident, Power

RNG = np.random.default_rng(16)


@pytest.mark.parametrize("p", [2, 3, 4])
def test_small_terms_match_the_lapack_path(p, monkeypatch):
    for _ in range(10):
        n_levels, k = int(RNG.integers(1, 25)), p + int(RNG.integers(2, 6))
        rows = RNG.standard_normal((n_levels, 9, k))
        grams = np.einsum("lia,lib->lab", rows, rows)
        lam = np.tril(RNG.standard_normal((p, p)))
        fast = single_term_pieces(lam, grams, k - p - 1)
        monkeypatch.setattr(rpm, "SMALL_TERM", 0)
        slow = single_term_pieces(lam, grams, k - p - 1)
        monkeypatch.setattr(rpm, "SMALL_TERM", 4)
        np.testing.assert_allclose(fast, slow, rtol=1e-11, atol=1e-11)


def test_small_term_not_positive_definite_is_an_error():
    grams = np.zeros((3, 4, 4))
    grams[:, 2:, 2:] = np.eye(2)
    lam = np.array([[np.nan, 0.0], [0.0, 1.0]])
    with pytest.raises(np.linalg.LinAlgError):
        single_term_pieces(lam, grams, 1)


def _problem(variance):
    codes = np.repeat(np.arange(8), 6)
    n = codes.size
    t = np.tile(np.arange(6, dtype=float), 8) + 1.0
    X = np.column_stack([np.ones(n), t])
    y = 10 + 2 * t + np.random.default_rng(1).standard_normal(n) * t  # same in every call
    layout = make_layout(codes, None, codes)
    blocks = [RandomBlock(codes, 8, np.column_stack([np.ones(n), t]))]
    return ResidualProblem(blocks, X, y, layout, None, variance, {"t": t}, True), X, y


def test_kept_multipliers_follow_the_fitted_values():
    rp, X, y = _problem(Power())
    params = np.array([0.7, 0.1, 0.4, 0.6])
    first = RNG.uniform(5, 20, rp.n)
    second = RNG.uniform(5, 20, rp.n)
    rp.with_fitted(first)
    rp.objective(params)
    rp.with_fitted(second)
    fresh, _, _ = _problem(Power())
    fresh.with_fitted(second)
    assert rp.objective(params) == fresh.objective(params)
    assert not rp.residual_sd(params[3:]).flags.writeable


def test_power_start_recovers_the_power():
    v = RNG.uniform(1, 100, 20_000)
    r = v**0.7 * RNG.standard_normal(v.size)
    # slope of log|r| on log v: standard error about 1.1 / (sd(log v) sqrt(n)) = 0.01
    assert Power("v").residual_start(r, {"v": v})[0] == pytest.approx(0.7, abs=0.05)
    assert Power().residual_start(r, {FITTED: v})[0] == pytest.approx(0.7, abs=0.05)


def test_exp_start_recovers_the_exponent_within_a_safe_range():
    v = RNG.uniform(0, 10, 20_000)
    r = np.exp(0.2 * v) * RNG.standard_normal(v.size)
    assert Exp("v").residual_start(r, {"v": v})[0] == pytest.approx(0.2, abs=0.02)
    # a wild estimate is clipped so that the multipliers stay within e^-5 .. e^5
    wild = Exp("v").residual_start(np.exp(50 * v), {"v": v})[0]
    assert wild == pytest.approx(5.0 / 10.0, rel=1e-3)


def test_ident_start_recovers_the_sd_ratios():
    labels = np.where(RNG.uniform(size=20_000) < 0.5, "a", "b")
    ident = Ident("s")
    ident.bind({"s": labels}, np.arange(labels.size))
    sd = np.where(labels == ident.levels[0], 1.0, 3.0)
    r = sd * RNG.standard_normal(labels.size)
    start = ident.residual_start(r, {})
    # log(3): the sd ratio's standard error is about 1%
    assert start[0] == pytest.approx(np.log(3.0), abs=0.05)


def test_starts_fall_back_without_information():
    assert Power("v").residual_start(np.ones(2), {"v": np.ones(2)})[0] == 0.0
    assert Fixed("v").residual_start(np.ones(5), {"v": np.ones(5)}).size == 0
    v = np.full(50, 3.0)  # no spread of the covariate: no slope
    assert Power("v").residual_start(RNG.standard_normal(50), {"v": v})[0] == 0.0


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("orders", [(1, 1), (2, 0), (0, 2)])
def test_leading_block_plan_matches_whitening(orders, nested):
    """ARMA with groups of unequal sizes (every pattern a leading part of the longest):
    the per-level cross products from the padded plan equal those of the whitened rows
    summed per level, and ``log|R|`` is the same (1e-12 relative: the same factor, the
    products summed in another order)."""
    from mixedmodels.core.residual import ARMA, LeadingBlockPlan

    sizes = RNG.integers(3, 12, 14)
    group = np.repeat(np.arange(sizes.size), sizes)
    # nested: two correlation groups per level of the term; otherwise one
    level = group // 2 if nested else group
    layout = make_layout(group, None, level)
    starts = np.flatnonzero(np.r_[True, np.diff(level[layout.order]) != 0])
    M = RNG.standard_normal((group.size, 5))[layout.order]
    arma = ARMA(p=orders[0], q=orders[1])
    u = RNG.uniform(-1.0, 1.0, sum(orders))
    plan = arma.cross_product_plan(layout, M, starts)
    assert isinstance(plan, LeadingBlockPlan)
    grams, log_det = plan.grams(u)
    white, log_det_ref = arma.whiten(u, layout, M)
    lev = np.repeat(np.arange(starts.size), np.diff(np.append(starts, M.shape[0])))
    ref = np.zeros((starts.size, 5, 5))
    np.add.at(ref, lev, white[:, :, None] * white[:, None, :])
    np.testing.assert_allclose(grams, ref, rtol=1e-12, atol=1e-12)
    assert log_det == pytest.approx(log_det_ref, rel=1e-12)
    # and directly against the dense correlation matrix of one group
    g = int(np.argmax(sizes))
    rows = slice(layout.starts[g], layout.starts[g] + layout.sizes[g])
    R = arma.matrix(u, np.arange(layout.sizes[g]))
    dense = M[rows].T @ np.linalg.solve(R, M[rows])
    np.testing.assert_allclose(white[rows].T @ white[rows], dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variance", [None, Power("t")])
def test_fitted_values_from_level_grams_match_the_engine(variance):
    """``ResidualProblem.fitted_at`` (batched from per-level cross products) against the
    whitened :class:`LmmProblem`'s solution, ``X beta + Z b``: 1e-9 relative (the same
    estimates through two factorizations)."""
    from mixedmodels.core.residual import AR1

    codes = np.repeat(np.arange(8), 6)
    n = codes.size
    t = np.tile(np.arange(6, dtype=float), 8) + 1.0
    X = np.column_stack([np.ones(n), t])
    y = 10 + 2 * t + RNG.standard_normal(8)[codes] * t + RNG.standard_normal(n) * t
    layout = make_layout(codes, None, codes)
    blocks = [RandomBlock(codes, 8, np.column_stack([np.ones(n), t]))]
    rp = ResidualProblem(blocks, X, y, layout, AR1(), variance, {"t": t}, True)
    params = np.array([0.7, 0.1, 0.4, 0.3] + ([0.6] if variance is not None else []))
    theta, u_cor, u_var = rp.split(params)
    problem, _ = rp.problem_at(u_cor, u_var)
    solution = problem.solve(theta)
    reference = rp.X @ solution.beta + rp.random_contribution(solution.b)
    np.testing.assert_allclose(rp.fitted_at(params), reference, rtol=1e-9)


@pytest.mark.parametrize("k", [3, 8])
def test_per_level_products_paths_agree(k, monkeypatch):
    """The per-level sums of outer products: the batched path (sorted levels, in chunks;
    a chunk of 7 rows so that levels straddle chunk boundaries) and the symmetric path
    against ``np.add.at`` of the outer products (1e-12 relative: the same sums in
    another order); a level with no rows gets zeros."""
    from mixedmodels.core import residual as res

    level = np.sort(RNG.integers(0, 9, 60))
    level = level[level != 4]  # level 4 has no rows
    left = RNG.standard_normal((level.size, k))
    right = RNG.standard_normal((level.size, k))
    for a, b in ((left, right), (left, left)):
        ref = np.zeros((9, k, k))
        np.add.at(ref, level, a[:, :, None] * b[:, None, :])
        monkeypatch.setattr(res, "PRODUCT_CHUNK", 7)
        got = res._per_level_products(level, 9, a, b)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
        shuffled = RNG.permutation(level.size)  # unsorted levels: the bincount path
        got = res._per_level_products(level[shuffled], 9, a[shuffled], b[shuffled])
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
