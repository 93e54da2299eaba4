"""Starting values for crossed designs with random slopes.

Backfitting is block coordinate descent on the least-squares problem ``r ~ Z_1 c_1 + ...``
with per-level coefficients; run to convergence its residual is the projection of ``r`` off
the columns of ``[Z_1 .. Z_k]`` (numpy's lstsq is the reference, 1e-8).  The moment start
is used only for crossed factors: a nested design keeps the identity start.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.optim.start import (
    _backfit_regressions,
    _crossed_with_slopes,
    moment_start,
)
from tests.core.test_lmm import dense_z


def crossed(rng: np.random.Generator, n: int = 600) -> tuple[list[RandomBlock], np.ndarray]:
    x = rng.normal(size=n)
    subj = rng.integers(0, 25, n)
    item = rng.integers(0, 15, n)
    z = np.column_stack([np.ones(n), x])
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], 25)
    c = rng.normal(scale=0.8, size=15)
    y = 2 + x + np.sum(z * b[subj], 1) + c[item] + rng.normal(size=n)
    blocks = [RandomBlock(subj, 25, z), RandomBlock(item, 15, np.ones((n, 1)))]
    return blocks, y


def test_backfitting_converges_to_the_joint_least_squares_fit():
    rng = np.random.default_rng(1)
    blocks, y = crossed(rng)
    r = y - y.mean()
    coefs, _, masks, sigma2 = _backfit_regressions(blocks, r, None, sweeps=400)
    fitted = sum(np.einsum("np,np->n", b.z, c[b.codes]) for b, c in zip(blocks, coefs, strict=True))
    Z = np.hstack([dense_z(b) for b in blocks])
    projection = Z @ np.linalg.lstsq(Z, r, rcond=None)[0]
    np.testing.assert_allclose(fitted, projection, atol=1e-8)
    rank = np.linalg.matrix_rank(Z)
    # sigma^2 uses n - sum l p (one more than the rank: the shared intercept direction)
    assert sum(int(m.sum()) * b.p for b, m in zip(blocks, masks, strict=True)) == rank + 1
    resid = r - projection
    assert sigma2 == pytest.approx(resid @ resid / (r.size - rank - 1), rel=1e-8)


def test_moment_start_used_for_crossed_slopes_only():
    rng = np.random.default_rng(2)
    blocks, y = crossed(rng)
    X = np.ones((y.size, 1))
    problem = LmmProblem(blocks, X, y)
    assert _crossed_with_slopes(problem.blocks)
    theta, step = moment_start(problem)
    assert not np.allclose(theta, problem.theta_start())
    assert np.all(theta[[0, 2, 3]] > 0)  # diagonals of lambda
    # nested: every level of the inner factor within one outer level
    outer = blocks[0].codes // 5
    nested = [blocks[0], RandomBlock(outer, 5, np.ones((y.size, 1)))]
    assert not _crossed_with_slopes(nested)
    theta, _ = moment_start(LmmProblem(nested, X, y))
    np.testing.assert_array_equal(theta[:3], [1.0, 0.0, 1.0])  # lme4's start kept
    # intercepts only: the ANOVA start, as before
    intercepts = [RandomBlock(blocks[0].codes, 25, np.ones((y.size, 1))), blocks[1]]
    assert not _crossed_with_slopes(intercepts)


@pytest.mark.parametrize("n_subjects, n_items", [(25, 15), (2000, 800)])
def test_crossed_step_is_the_relative_standard_error_of_a_standard_deviation(n_subjects, n_items):
    """Each crossed term's initial step is ``max|diag lambda|`` times a tenth (Powell's
    RHOBEG advice) of ``1 / sqrt(2 l)`` (the relative standard error of a standard
    deviation estimated from ``l`` levels, the expected change), itself at most 0.1, and
    never below 0.05 (at the cap) scaled alike."""
    rng = np.random.default_rng(12)
    n = 4 * n_subjects
    x = rng.normal(size=n)
    subj = np.repeat(np.arange(n_subjects), 4)
    item = rng.integers(0, n_items, n)
    z = np.column_stack([np.ones(n), x])
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], n_subjects)
    y = 2 + x + np.sum(z * b[subj], 1) + rng.normal(scale=0.8, size=n_items)[item]
    y = y + rng.normal(size=n)
    blocks = [RandomBlock(subj, n_subjects, z), RandomBlock(item, n_items, np.ones((n, 1)))]
    problem = LmmProblem(blocks, np.ones((n, 1)), y)
    theta, step = moment_start(problem)
    for sl, levels, diagonal in [(slice(0, 3), n_subjects, [0, 2]), (slice(3, 4), n_items, [3])]:
        relative = 0.1 * min(0.1, 1.0 / np.sqrt(2.0 * levels))
        size = np.abs(theta[diagonal]).max()
        np.testing.assert_allclose(step[sl], max(relative * size, 0.5 * relative), rtol=1e-12)
    if n_subjects > 50:
        assert step[0] < 0.1 * np.abs(theta[[0, 2]]).max()  # smaller than the old fixed 0.1


@pytest.mark.parametrize("formula", ["(Days | Subject)", "(1 | Subject)"])
@pytest.mark.parametrize("noise", [0.0, 1e-13])
def test_a_response_the_fixed_effects_reproduce_informs_no_start(formula, noise):
    """A response that X reproduces up to rounding (a constant one; a GLMM's working
    response where every mean overflowed): its residuals' per-level moments are rounding
    noise, which one BLAS build made exactly 0 (lme4's start) and another 1e-13 (a start of
    [1e-3, 2e-20, 1e-3] with a tiny step).  Now lme4's start and step on both."""
    import mixedmodels as mm
    from mixedmodels.design.model import build_design
    from mixedmodels.optim.start import DEFAULT_STEP

    data = mm.datasets.load("sleepstudy")
    rng = np.random.default_rng(3)
    data = data.assign(Reaction=250.0 + 10.0 * data.Days + noise * rng.normal(size=len(data)))
    design = build_design(f"Reaction ~ Days + {formula}", data)
    problem = LmmProblem([t.block for t in design.terms], design.X, design.y, reml=False)
    theta, step = moment_start(problem)
    np.testing.assert_array_equal(theta, problem.theta_start())
    np.testing.assert_array_equal(step, np.full(theta.size, DEFAULT_STEP))


@pytest.mark.parametrize("shape", [(2, 3), (2, 18), (3, 40), (5, 7), (4, 1000)])
def test_row_covariance_is_numpys_cov_bit_for_bit(shape):
    """row_covariance takes np.cov's steps without its argument handling: the same bits
    (the per-level-regression start feeds it to the search, whose path they set), on C- and
    Fortran-ordered inputs and on the transposed view the start passes."""
    from mixedmodels.optim.start import row_covariance

    rng = np.random.default_rng(sum(shape))
    m = rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3, size=(shape[0], 1)) + 5.0
    for view in (m, np.asfortranarray(m), np.ascontiguousarray(m.T).T):
        assert row_covariance(view).tobytes() == np.cov(view).tobytes()


def test_mean_and_variance_are_numpys_bit_for_bit():
    """scalar_terms_start's _mean and _variance: np.mean and np.var's numbers exactly
    (the start, and so the fit's path, depends on the last bit)."""
    from mixedmodels.optim.start import _mean, _variance

    rng = np.random.default_rng(12)
    for n in [*range(1, 200), 1000, 4099]:
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-5, 5) + rng.uniform(-1e3, 1e3)
        assert _variance(x) == float(np.var(x))
        assert _mean(x) == float(np.mean(x))
