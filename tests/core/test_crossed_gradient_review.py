"""An independent review of the crossed path's analytic gradient and of Newton steps from
the moment start (issue 10), on shapes and designs the first tests do not cover.

References, by section:

1. The gradient in the relative factors' entries (``LmmProblem.entry_gradient``, the
   crossed path forced with ``dense_objective = None``) against two independent references:

   * the dense path's analytic derivatives of the same model
     (:class:`mixedmodels.optim.profiled_derivatives.DenseDerivatives`: one ``(q + p)``
     bordered matrix, other formulas, other arithmetic).  Both are exact formulas in double
     precision; they differ by the rounding of ``O(q)``-term sums, 4e-15 of the largest
     entry measured on well-conditioned problems, so they must agree to
     :data:`ANALYTIC_RTOL` = 1e-11 of the largest entry;
   * central differences of ``problem.objective`` on the crossed path, step
     ``h = 1e-6 max(1, |theta_i|)``: truncation ``h^2 f''' / 6`` (~1e-12) plus the
     objective's rounding over ``h`` (~1e-14 |f| / 1e-6 ~ 1e-8 |g|), so
     :data:`FD_RTOL` = 1e-6 of the largest entry (observed at most 7e-9).

   Ill-conditioned problems (theta ~ 1e3, weights spread over 1e8) state their own
   tolerances, from the objective's own agreement between the engine's paths there.

2. Structures mapping theta nonlinearly (cs(), ar1()): the fit equals the one whose
   Newton steps start from BOBYQA's point; the polish differences the objective.
3. Newton from the moment start against BOBYQA's path (``_newton_from_start``
   monkeypatched to None) on simulated crossed designs: both end at the optimum to the
   polish's precision, so the objective agrees to 1e-10 relative and theta to 1e-6.
4. A Parquet fit against the in-memory fit (the issue's 1e-10 / 1e-8).
5. Robustness: failures raise NotPositiveDefiniteError and are caught; threads.

Two bugs found here have reproducers below (``..._zero_correlation_...``,
``..._after_reweight_...``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.optim.profiled_derivatives import DenseDerivatives
from mixedmodels.reterms.blocks import RandomBlock

ANALYTIC_RTOL = 1e-11
FD_RTOL = 1e-6


# --------------------------------------------------------------------- problems
def review_blocks(shape: str, rng: np.random.Generator, n: int = 300):
    """Random-effect terms of a crossed design: 30 subjects (the eliminated term), 12 items,
    5 sites, and 4 groups of 3 items (nested in the items)."""
    x = rng.normal(size=(n, 4))
    one = np.ones((n, 1))
    subj = rng.integers(0, 30, n)
    item = rng.integers(0, 12, n)
    site = rng.integers(0, 5, n)
    group = item // 3

    def z(p):
        return np.column_stack([one, x[:, : p - 1]])

    blocks = {
        # the eliminated term with p = 1 .. 4
        "first_p1": [RandomBlock(subj, 30, one), RandomBlock(item, 12, one)],
        "first_p2": [RandomBlock(subj, 30, z(2)), RandomBlock(item, 12, one)],
        "first_p3": [RandomBlock(subj, 30, z(3)), RandomBlock(item, 12, one)],
        "first_p4": [RandomBlock(subj, 30, z(4)), RandomBlock(item, 12, one)],
        # two rest terms; three rest terms with a slope term and a term nested in another
        "rest_two": [RandomBlock(subj, 30, z(2)), RandomBlock(item, 12, one),
                     RandomBlock(site, 5, one)],
        "rest_three": [RandomBlock(subj, 30, z(2)), RandomBlock(item, 12, z(2)),
                       RandomBlock(site, 5, one), RandomBlock(group, 4, one)],
        # (1 | s) + (0 + x | s) amalgamated with a rest slope; (1 + x + x2 || s)
        "amalgamated": [RandomBlock(subj, 30, one), RandomBlock(subj, 30, x[:, :1].copy()),
                        RandomBlock(item, 12, z(2))],
        "zerocorr": [RandomBlock(subj, 30, one), RandomBlock(subj, 30, x[:, :1].copy()),
                     RandomBlock(subj, 30, x[:, 1:2].copy()), RandomBlock(item, 12, one)],
    }[shape]
    return blocks, x


SHAPES = ["first_p1", "first_p2", "first_p3", "first_p4", "rest_two", "rest_three",
          "amalgamated", "zerocorr"]


def review_problems(
    shape: str,
    rng: np.random.Generator,
    n_fixed: int = 2,
    weights: np.ndarray | str | None = None,
    reml: bool = True,
) -> tuple[LmmProblem, LmmProblem]:
    """The same model twice: its objective forced onto the crossed path, and on the dense
    path (q <= 240) for the dense analytic derivatives."""
    blocks, x = review_blocks(shape, rng)
    n = x.shape[0]
    X = np.column_stack([np.ones(n), x[:, :3], rng.normal(size=(n, 4))])[:, :n_fixed]
    y = X.sum(axis=1) + rng.normal(size=30)[blocks[0].codes] + rng.normal(size=n)
    if isinstance(weights, str):
        weights = {
            "uniform": rng.uniform(0.5, 2.0, n),
            "tiny": 1e-8 * rng.uniform(0.5, 2.0, n),
            "huge": 1e8 * rng.uniform(0.5, 2.0, n),
            "spread": 10.0 ** rng.uniform(-4, 4, n),
        }[weights]
    crossed = LmmProblem(blocks, X, y, weights=weights, reml=reml)
    crossed.dense_objective = None
    assert crossed.has_entry_gradient()
    dense = LmmProblem(blocks, X, y, weights=weights, reml=reml)
    assert dense.dense_objective is not None
    return crossed, dense


def review_theta(problem: LmmProblem, rng: np.random.Generator, scale: float = 1.0):
    lower = problem.theta_lower_bounds()
    values = np.where(lower == 0, rng.uniform(0.2, 1.5, lower.size), rng.normal(0, 0.4, lower.size))
    return scale * values


def central_differences(problem: LmmProblem, theta: np.ndarray, rel: float = 1e-6):
    out = np.empty(theta.size)
    for i in range(theta.size):
        h = rel * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        out[i] = (problem.objective(up) - problem.objective(down)) / (2 * h)
    return out


def gradient_differences(crossed, dense, theta, fd_rel: float = 1e-6):
    """``(value, gradient, |g - dense| / max|dense|, |g - fd| / max|dense|)`` at theta
    (unstructured terms: the entries are theta)."""
    assert np.array_equal(crossed.lambda_entries(theta), theta)
    value, gradient = crossed.entry_gradient(theta)
    assert value == crossed.objective(theta)
    reference = DenseDerivatives(dense).at(theta, hessian=False)
    scale = np.abs(reference.gradient).max()
    to_dense = np.abs(gradient - reference.gradient).max() / scale
    fd = central_differences(crossed, theta, fd_rel)
    to_fd = np.abs(gradient - fd).max() / scale
    return value, gradient, reference, to_dense, to_fd


# --------------------------------------------------------------------- 1. the gradient
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_on_more_shapes(shape, reml):
    rng = np.random.default_rng(SHAPES.index(shape) + 17 * reml)
    crossed, dense = review_problems(shape, rng, reml=reml)
    theta = review_theta(crossed, rng)
    value, _, reference, to_dense, to_fd = gradient_differences(crossed, dense, theta)
    assert value == pytest.approx(reference.value, rel=1e-12)
    assert to_dense <= ANALYTIC_RTOL
    assert to_fd <= FD_RTOL


@pytest.mark.parametrize("n_fixed", [0, 1, 5])
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_with_no_one_or_five_fixed_effects(n_fixed, reml):
    """No fixed effect (the border is y alone), intercept only, and p_x = 5."""
    rng = np.random.default_rng(40 + n_fixed + 7 * reml)
    crossed, dense = review_problems("rest_three", rng, n_fixed=n_fixed, reml=reml)
    theta = review_theta(crossed, rng)
    _, _, _, to_dense, to_fd = gradient_differences(crossed, dense, theta)
    assert to_dense <= ANALYTIC_RTOL
    assert to_fd <= FD_RTOL


@pytest.mark.parametrize("weights", ["uniform", "spread"])
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_with_weights(weights, reml):
    """Prior weights, ordinary and spread over 8 orders of magnitude (1e-4 .. 1e4).
    Spread weights: the Gram's sums mix terms 1e8 apart; the crossed and dense paths'
    objectives agree to ~1e-12 relative only and their analytic gradients to 4e-9 of the
    largest entry (measured): 3e-8 asked; the differences use ``h = 1e-4`` (rounding
    ~1e-12 |f| / 1e-4 ~ 1e-8 |g|; 6e-9 measured)."""
    rng = np.random.default_rng(60 + len(weights) + reml)
    crossed, dense = review_problems("rest_three", rng, weights=weights, reml=reml)
    theta = review_theta(crossed, rng)
    spread = weights == "spread"
    value, _, reference, to_dense, to_fd = gradient_differences(
        crossed, dense, theta, fd_rel=1e-4 if spread else 1e-6
    )
    assert value == pytest.approx(reference.value, rel=1e-11 if spread else 1e-12)
    assert to_dense <= (3e-8 if spread else ANALYTIC_RTOL)
    assert to_fd <= FD_RTOL


@pytest.mark.parametrize("weights, c", [("tiny", 1e-8), ("huge", 1e8)])
def test_gradient_with_tiny_and_huge_weights_by_the_scaling_identity(weights, c):
    """Weights ``c w``: ``Lambda' Z' (cW) Z Lambda = (sqrt(c) Lambda)' Z'WZ (sqrt(c) Lambda)``
    and PWRSS scales by ``c``, so ``f_c(theta) = f_1(sqrt(c) theta) + const`` and
    ``g_c(theta) = sqrt(c) g_1(sqrt(c) theta)``.  Central differences of ``f_c`` are
    useless here (``|g|`` ~ 1e-5 against the objective's rounding over h), the identity and
    the dense path's derivatives are not."""
    rng = np.random.default_rng(80 + len(weights))
    crossed, dense = review_problems("rest_three", rng, weights=weights)
    theta = review_theta(crossed, rng) / np.sqrt(c)  # sqrt(c) theta ~ 1
    _, gradient = crossed.entry_gradient(theta)
    unit = LmmProblem(crossed.blocks, crossed.X, crossed.y, weights=crossed.weights / c)
    unit.dense_objective = None
    _, unit_gradient = unit.entry_gradient(np.sqrt(c) * theta)
    reference = np.sqrt(c) * unit_gradient
    scale = np.abs(reference).max()
    assert np.abs(gradient - reference).max() <= ANALYTIC_RTOL * scale
    dense_gradient = DenseDerivatives(dense).at(theta, hessian=False).gradient
    assert np.abs(gradient - dense_gradient).max() <= ANALYTIC_RTOL * scale


def test_gradient_near_zero_theta():
    """theta ~ 1e-4 (every variance nearly 0): against the dense path as above; the
    gradient is ~0.4 there, and central differences with ``h = 1e-6`` carry the
    objective's rounding over h (1e-16 |f| / h ~ 1e-7: 4e-7 of the gradient measured),
    so 1e-5 is asked of them."""
    rng = np.random.default_rng(91)
    crossed, dense = review_problems("rest_three", rng)
    theta = review_theta(crossed, rng, 1e-4)
    _, _, _, to_dense, to_fd = gradient_differences(crossed, dense, theta)
    assert to_dense <= ANALYTIC_RTOL
    assert to_fd <= 1e-5


def test_gradient_at_large_theta():
    """theta ~ 1e3: ``V = Lambda' D Lambda + I`` has a condition number ~1e8, and the
    crossed and dense paths' objectives agree to 1e-12 absolute (6e-13 relative) only,
    so central differences need ``h`` ~ 1 (1e-3 relative: rounding ~1e-12 / 1 plus the
    truncation ``h^2 f''' / 6``; 8e-7 of the largest entry measured: 1e-5 asked); the
    analytic gradients agree to 5e-10 of the largest entry: 1e-8 asked."""
    rng = np.random.default_rng(92)
    crossed, dense = review_problems("rest_three", rng)
    theta = review_theta(crossed, rng, 1e3)
    value, _, reference, to_dense, to_fd = gradient_differences(crossed, dense, theta, 1e-3)
    assert value == pytest.approx(reference.value, rel=1e-11)
    assert to_dense <= 1e-8
    assert to_fd <= 1e-5


@pytest.mark.parametrize("which", ["first", "rest"])
def test_gradient_with_a_singular_lambda(which):
    """A zero column in a relative factor (the eliminated term's or a rest slope term's):
    nothing may invert lambda.  The coordinates at 0 that are bounded there (diagonals)
    take one-sided differences into the admissible side (error ``h f'' / 2``: 1e-4 of the
    largest entry); the rest central ones."""
    rng = np.random.default_rng(93 if which == "first" else 94)
    crossed, dense = review_problems("first_p3" if which == "first" else "rest_three", rng)
    theta = review_theta(crossed, rng)
    # first_p3: lambda_0's columns 1 and 2 (theta 3, 4, 5); rest_three: the item slope
    # term's second column (theta 5)
    zero = [3, 4, 5] if which == "first" else [5]
    theta[zero] = 0.0
    if which == "rest":
        theta[4] = 0.0  # and its off-diagonal: lambda's column 0 is (a, 0), column 1 zero
    value, gradient = crossed.entry_gradient(theta)
    reference = DenseDerivatives(dense).at(theta, hessian=False)
    scale = np.abs(reference.gradient).max()
    assert np.abs(gradient - reference.gradient).max() <= ANALYTIC_RTOL * scale
    lower = crossed.theta_lower_bounds()
    fd = central_differences(crossed, theta)
    bounded = (lower == 0) & (theta == 0)
    h = 1e-6
    for i in np.flatnonzero(bounded):
        up = theta.copy()
        up[i] = h
        fd[i] = (crossed.objective(up) - value) / h
    assert np.abs(gradient - fd)[~bounded].max() <= FD_RTOL * scale
    assert np.abs(gradient - fd)[bounded].max() <= 1e-4 * scale


ORDER_CASES = ["scrambled", "amalgamated_apart", "unused_levels", "diag_first", "diag_rest"]


@pytest.mark.parametrize("case", ORDER_CASES)
def test_gradient_with_terms_out_of_engine_order_unused_levels_and_diagonal_terms(case):
    """Terms listed in another order than the engine's (largest first), amalgamated terms
    not adjacent in the formula, levels without rows (33 subjects, 30 used), and diag()
    terms (linear: the gradient in theta is ``J' g`` with ``J`` from unit steps, exact)
    eliminated first or in the rest.  References and tolerances as above."""
    from mixedmodels.reterms.structures import Diagonal

    rng = np.random.default_rng(5 + ORDER_CASES.index(case))
    n = 300
    x = rng.normal(size=(n, 3))
    one = np.ones((n, 1))
    subj, item, site = rng.integers(0, 30, n), rng.integers(0, 12, n), rng.integers(0, 5, n)

    def z(p):
        return np.column_stack([one, x[:, : p - 1]])

    blocks = {
        "scrambled": [RandomBlock(site, 5, one), RandomBlock(item // 3, 4, one),
                      RandomBlock(item, 12, z(2)), RandomBlock(subj, 30, z(3))],
        "amalgamated_apart": [RandomBlock(subj, 30, one), RandomBlock(item, 12, one),
                              RandomBlock(subj, 30, x[:, :2].copy())],
        "unused_levels": [RandomBlock(subj, 33, z(2)), RandomBlock(item, 14, one),
                          RandomBlock(site, 7, one)],
        "diag_first": [RandomBlock(subj, 30, z(3), Diagonal(3)), RandomBlock(item, 12, z(2))],
        "diag_rest": [RandomBlock(subj, 30, z(2)), RandomBlock(item, 12, z(3), Diagonal(3))],
    }[case]
    X = z(2)
    y = X.sum(axis=1) + rng.normal(size=30)[subj] + rng.normal(size=n)
    crossed = LmmProblem(blocks, X, y)
    crossed.dense_objective = None
    assert crossed.has_entry_gradient()
    dense = LmmProblem(blocks, X, y)
    theta = review_theta(crossed, rng)
    e = crossed.lambda_entries(theta)
    jac = np.column_stack(
        [crossed.lambda_entries(theta + unit) - e for unit in np.eye(theta.size)]
    )
    _, entries = crossed.entry_gradient(theta)
    gradient = jac.T @ entries
    reference = DenseDerivatives(dense).at(theta, hessian=False).gradient
    scale = np.abs(reference).max()
    assert np.abs(gradient - reference).max() <= ANALYTIC_RTOL * scale
    assert np.abs(gradient - central_differences(crossed, theta)).max() <= FD_RTOL * scale


def test_gradient_of_a_formula_built_problem():
    """``(1 | s) + (0 + x | s) + (x || i)`` through the formula layer (amalgamated and
    zerocorr terms built by the design code, not by hand)."""
    rng = np.random.default_rng(95)
    n = 400
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "s": rng.integers(0, 40, n).astype(str),
            "i": rng.integers(0, 10, n).astype(str),
        }
    )
    frame["y"] = 1 + frame.x + rng.normal(size=40)[frame.s.astype(int)] + rng.normal(size=n)
    fit = quiet_lmer("y ~ x + (1 | s) + (0 + x | s) + (x || i)", frame)
    dense = fit.problem
    assert dense.dense_objective is not None
    crossed = LmmProblem(dense.blocks, dense.X, dense.y, weights=dense.weights, reml=dense.reml)
    crossed.dense_objective = None
    theta = review_theta(crossed, rng)
    _, _, _, to_dense, to_fd = gradient_differences(crossed, dense, theta)
    assert to_dense <= ANALYTIC_RTOL
    assert to_fd <= FD_RTOL


# --------------------------------------------------------------------- 2. nonlinear maps
def structured_frame(seed: int, n_subjects: int = 300, per: int = 10, rho: float = 0.0):
    """``y ~ x + (x | s) + (1 | i)`` data, subject intercepts and slopes correlated
    ``rho``, a two-level factor ``f`` for ``ar1(0 + f | s)``; 300 subjects x 2 + 40 items
    is over the dense path's 240 random effects (the crossed path)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per
    subj = np.repeat(np.arange(n_subjects), per)
    item = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    cov = [[1.0, rho * 0.8], [rho * 0.8, 0.64]]
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_subjects)
    y = 1 + 0.5 * x + b[subj, 0] + b[subj, 1] * x + 0.7 * rng.normal(size=40)[item]
    f = rng.random(n) < 0.5
    # independent subject effects per level of f (an ar1 correlation near 0)
    u = rng.normal(size=(n_subjects, 2))[subj, f.astype(int)]
    return pd.DataFrame(
        {
            "y": y + rng.normal(size=n),
            "u": 1 + 0.5 * x + u + 0.7 * rng.normal(size=40)[item] + rng.normal(size=n),
            "x": x,
            "f": np.where(f, "a", "b"),
            "s": subj.astype(str),
            "i": item.astype(str),
        }
    )


def quiet_lmer(*args, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(*args, **kwargs)


def without_newton_from_start(monkeypatch, *args, **kwargs):
    from mixedmodels.optim import lmm as optim_lmm

    with monkeypatch.context() as patched:
        patched.setattr(optim_lmm, "_newton_from_start", lambda *a: None)
        return quiet_lmer(*args, **kwargs)


NONLINEAR = [
    ("y ~ x + cs(x | s) + (1 | i)", "finite-difference"),
    ("y ~ x + ar1(0 + f | s) + (1 | i)", "finite-difference"),
    ("u ~ x + ar1(0 + f | s) + (1 | i)", "finite-difference"),
    ("y ~ x + (x | s) + cs(x | i)", "finite-difference"),
    ("y ~ x + diag(x | s) + (1 | i)", "analytic-gradient"),  # diag(): linear
]


@pytest.mark.parametrize("formula, kind", NONLINEAR)
def test_structured_terms_fit_the_same_with_and_without_newton_from_the_start(
    monkeypatch, formula, kind
):
    """cs() and ar1() map theta to lambda nonlinearly: the polish differences the
    objective (its note says so) and the fit equals the one whose Newton steps start from
    BOBYQA's point (objective 1e-10 relative, theta 1e-6: both ends are the optimum to the
    polish's precision); diag() is linear and takes the analytic gradient."""
    frame = structured_frame(3, rho=0.6)
    fit = quiet_lmer(formula, frame)
    assert fit.problem.has_entry_gradient()
    reference = without_newton_from_start(monkeypatch, formula, frame)
    assert kind in fit.optimizer_message
    assert "from the moment start" not in reference.optimizer_message
    assert fit.objective == pytest.approx(reference.objective, rel=1e-10)
    np.testing.assert_allclose(fit.theta, reference.theta, rtol=0, atol=1e-6)


@pytest.mark.parametrize("formula", [NONLINEAR[0][0], NONLINEAR[2][0], "y ~ x + cs(x | s)"])
def test_polish_from_a_zero_correlation_differences_the_objective(formula):
    """Bug found in review: at a correlation parameter of exactly 0 (lme4's start for
    cs()/ar1()), unit steps make the theta -> lambda map look linear (``e = J theta``
    holds), so the polish took analytic gradients through a wrong Jacobian (the
    correlation's column a secant to 1; the standard deviations' columns those of
    correlation 0) and stopped where it started, "not converged".  Now the map's
    Jacobian must be the same at a second point: differences are taken, and the polish
    from there reaches the fit's optimum (objective 1e-10, theta 1e-6 as above; the data
    have optimal correlations near 0, where Newton steps from 0 converge).  The third
    formula is on the dense path (q = 60), which had the same defect."""
    from mixedmodels.optim.polish import polish

    frame = structured_frame(4, n_subjects=300 if "(1 | i)" in formula else 30)
    fit = quiet_lmer(formula, frame)
    problem = fit.problem
    assert (problem.dense_objective is None) == ("(1 | i)" in formula)
    start = fit.theta.copy()
    rho = 1 if "ar1" in formula else 2
    start[rho] = 0.0
    theta, value, outcome = polish(problem, start, problem.objective(start))
    assert "finite-difference" in outcome.note
    assert outcome.converged
    assert value == pytest.approx(fit.objective, rel=1e-10)
    np.testing.assert_allclose(theta, fit.theta, rtol=0, atol=1e-6)


# --------------------------------------------------------------------- 3. Newton vs BOBYQA
def simulated_design(design: str, seed: int) -> LmmProblem:
    """Crossed designs over the dense path's 240 random effects (the crossed path):
    ``y ~ x + (x | subject) + (1 | item)`` unless said otherwise; a ``_ml`` suffix fits
    by ML."""
    rng = np.random.default_rng(seed)
    reml = not design.endswith("_ml")
    d = design.removesuffix("_ml")
    sd, corr, item_sd = (1.0, 0.5), 0.3, 0.7
    slopes, item_slope, site, weights = True, False, False, None
    per, ns, ni = 10, 300, 40
    if d == "balanced":  # every subject meets every item once, intercepts only
        ns, ni, slopes = 250, 10, False
        subj, item = np.repeat(np.arange(ns), ni), np.tile(np.arange(ni), ns)
    else:
        if d == "unbalanced":  # 1 + Poisson(6) rows per subject
            ni = 50
            subj = np.repeat(np.arange(ns), rng.poisson(6, ns) + 1)
        elif d == "small_groups":  # 3 rows per subject
            ns, ni, per = 500, 30, 3
        elif d == "large_groups":  # 200 rows per subject, 300 items (eliminated first)
            ns, ni, per = 30, 300, 200
        elif d == "near_boundary":  # item sd 0.03 (relative ~0.07): interior, near 0
            item_sd = 0.03
        elif d in ("corr_plus", "corr_minus"):
            corr = 0.99 if d == "corr_plus" else -0.99
        elif d == "three_weighted":  # (x | s) + (x | i) + (1 | site), prior weights
            item_slope, site = True, True
        if d != "unbalanced":
            subj = np.repeat(np.arange(ns), per)
        item = rng.integers(0, ni, subj.size)
    n = subj.size
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    off = corr * sd[0] * sd[1]
    b = rng.multivariate_normal([0, 0], [[sd[0] ** 2, off], [off, sd[1] ** 2]], size=ns)
    y = 2 + 0.5 * x + b[subj, 0] + (b[subj, 1] * x if slopes else 0)
    y = y + item_sd * rng.normal(size=ni)[item]
    blocks = [RandomBlock(subj, ns, X.copy() if slopes else np.ones((n, 1)))]
    if item_slope:
        y = y + (0.3 * rng.normal(size=ni))[item] * x
        blocks.append(RandomBlock(item, ni, X.copy()))
    else:
        blocks.append(RandomBlock(item, ni, np.ones((n, 1))))
    if site:
        st = rng.integers(0, 6, n)
        y = y + 0.5 * rng.normal(size=6)[st]
        blocks.append(RandomBlock(st, 6, np.ones((n, 1))))
        weights = rng.uniform(0.5, 2.0, n)
    noise = rng.normal(size=n) / (1.0 if weights is None else np.sqrt(weights))
    return LmmProblem(blocks, X, y + noise, weights=weights, reml=reml)


# (design, whether Newton from the moment start is taken): where it is not, the moment
# start's slope scale is 0.02-0.04 against an optimum of 0.09-0.47 and the Hessian there
# is not positive definite, so BOBYQA runs from the start as before
DESIGNS = [
    ("balanced", True),
    ("balanced_ml", True),
    ("unbalanced", False),
    ("unbalanced_ml", False),
    ("small_groups", False),
    ("large_groups_ml", True),
    ("near_boundary", True),
    ("near_boundary_ml", True),
    ("corr_plus", True),
    ("corr_minus_ml", False),
    ("three_weighted", True),
    ("three_weighted_ml", True),
]


@pytest.mark.parametrize("design, newton", DESIGNS)
def test_newton_from_the_start_and_bobyqa_reach_the_same_optimum(monkeypatch, design, newton):
    """Objective within 1e-10 relative, theta within 1e-6 (both paths end with Newton
    steps converged to a remaining step below 1e-8; measured over these 12 designs x 11
    seeds and 100 more fits with item sd 0.01 or a correlation of 1: at most 6e-16 and
    4e-9)."""
    from mixedmodels.optim import lmm as optim_lmm

    problem = simulated_design(design, 1)
    assert problem.has_entry_gradient()
    result = optim_lmm.optimize_problem(problem)
    with monkeypatch.context() as patched:
        patched.setattr(optim_lmm, "_newton_from_start", lambda *args: None)
        reference = optim_lmm.optimize_problem(problem)
    assert ("from the moment start" in result.message) == newton
    assert abs(result.fun - reference.fun) <= 1e-10 * abs(reference.fun)
    np.testing.assert_allclose(result.x, reference.x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("design", ["balanced_ml", "near_boundary", "three_weighted"])
@pytest.mark.parametrize("c", [1e-6, 1e6])
def test_newton_from_the_start_is_invariant_to_the_response_scale(design, c):
    """``y -> c y`` leaves the relative factors' optimum where it was and adds
    ``nu log c^2`` to the objective (PWRSS scales by ``c^2``): an identity between two
    fits, both by Newton from the moment start.  Theta 1e-10 and the objective 1e-13
    relative (measured: 3e-15 and 2e-15)."""
    from mixedmodels.optim import lmm as optim_lmm

    problem = simulated_design(design, 1)
    base = optim_lmm.optimize_problem(problem)
    scaled = LmmProblem(
        problem.blocks, problem.X, c * problem.y, weights=problem.weights, reml=problem.reml
    )
    result = optim_lmm.optimize_problem(scaled)
    for fit in (base, result):
        assert "from the moment start" in fit.message
    nu = problem.n - problem.n_fixed if problem.reml else problem.n
    np.testing.assert_allclose(result.x, base.x, rtol=0, atol=1e-10)
    assert result.fun - 2 * nu * np.log(c) == pytest.approx(base.fun, rel=1e-13)


@pytest.mark.parametrize("reml", [True, False])
def test_newton_from_the_start_gives_the_same_summary_intervals_and_ranef(monkeypatch, reml):
    """What users read: the summary text, Wald intervals and the conditional modes with
    their variances, equal between the two paths (numbers to 1e-7: theta agrees to 1e-8
    here; the printed summary to its digits)."""
    frame = structured_frame(5, rho=0.5)
    formula = "y ~ x + (x | s) + (1 | i)"
    fit = quiet_lmer(formula, frame, reml=reml)
    assert "from the moment start" in fit.optimizer_message
    reference = without_newton_from_start(monkeypatch, formula, frame, reml=reml)
    np.testing.assert_allclose(fit.theta, reference.theta, rtol=0, atol=1e-8)
    assert fit.summary() == reference.summary()
    wald, wald_ref = fit.confint(method="Wald"), reference.confint(method="Wald")
    assert list(wald.index) == list(wald_ref.index)
    np.testing.assert_allclose(wald.to_numpy(), wald_ref.to_numpy(), rtol=1e-7, atol=1e-7)
    assert fit.ranef.keys() == reference.ranef.keys()
    for name in fit.ranef:
        np.testing.assert_allclose(
            np.asarray(fit.ranef[name]), np.asarray(reference.ranef[name]), rtol=0, atol=1e-7
        )
    table, table_ref = fit.ranef_table(), reference.ranef_table()
    np.testing.assert_allclose(
        table["condsd"].to_numpy(), table_ref["condsd"].to_numpy(), rtol=1e-7
    )


# --------------------------------------------------------------------- 4. out of core
@pytest.mark.parametrize("reml", [True, False])
def test_a_parquet_fit_takes_the_gradient_path_and_equals_the_in_memory_fit(tmp_path, reml):
    """Three Parquet files read 700 rows at a time (pyarrow): the problem is the in-memory
    one up to summation order (tests/test_large.py: 1e-13), both take Newton steps from
    the same moment start with the analytic gradient, so objective 1e-10 relative and
    theta 1e-8 (the issue's goal)."""
    pytest.importorskip("pyarrow")
    frame = structured_frame(6, rho=0.4)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part{k}.parquet")
    formula = "y ~ x + (x | s) + (1 | i)"
    memory = quiet_lmer(formula, frame, reml=reml)
    chunked = quiet_lmer(formula, mm.ParquetSource(tmp_path, batch_rows=700), reml=reml)
    assert chunked.problem.has_entry_gradient()
    for fit in (memory, chunked):
        assert "from the moment start: analytic-gradient" in fit.optimizer_message
    assert chunked.objective == pytest.approx(memory.objective, rel=1e-10)
    np.testing.assert_allclose(chunked.theta, memory.theta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        chunked.fixef.to_numpy(), memory.fixef.to_numpy(), rtol=0, atol=1e-8
    )
    # the gradient of the chunked problem is the in-memory one's (the same function)
    _, g_chunked = chunked.problem.entry_gradient(memory.theta)
    _, g_memory = memory.problem.entry_gradient(memory.theta)
    _, g_start = memory.problem.entry_gradient(memory.problem.theta_start())
    assert np.abs(g_chunked - g_memory).max() <= 1e-9 * np.abs(g_start).max()


# --------------------------------------------------------------------- 5. robustness
def test_the_gradient_raises_where_the_factorization_fails():
    """Collinear fixed effects (the Schur complement of X is singular), an overflowing
    and a NaN theta: NotPositiveDefiniteError, as from the objective, nothing else."""
    import warnings

    from mixedmodels.linalg.blocks import NotPositiveDefiniteError

    problem = simulated_design("unbalanced", 1)
    collinear = LmmProblem(problem.blocks, np.column_stack([problem.X, problem.X[:, 1]]), problem.y)
    assert collinear.has_entry_gradient()
    theta = np.array([1.0, 0.2, 0.3, 0.5])
    with pytest.raises(NotPositiveDefiniteError):
        collinear.objective(theta)
    with pytest.raises(NotPositiveDefiniteError):
        collinear.entry_gradient(theta)
    for bad in ([1e200, 0.0, 1.0, 1.0], [np.nan, 0.0, 1.0, 1.0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the overflow itself
            with pytest.raises(NotPositiveDefiniteError):
                problem.objective(np.array(bad))
            with pytest.raises(NotPositiveDefiniteError):
                problem.entry_gradient(np.array(bad))


@pytest.mark.parametrize("fail_from", [0, 2])
def test_a_failing_gradient_is_caught_and_the_fit_returns(monkeypatch, fail_from):
    """The gradient raising NotPositiveDefiniteError from its first (or third) call on:
    the Newton steps are given up (the polish's note says so), BOBYQA's path runs on
    and returns BOBYQA's optimum at its fine tolerances (FINE_LARGE: ftol 1e-8 per step,
    which stopped 2.8e-7 = 3e-11 relative above the optimum here, theta 3e-5 away): the
    objective within 1e-10 relative of the Newton path's, theta within 1e-3."""
    from mixedmodels.linalg.blocks import NotPositiveDefiniteError
    from mixedmodels.optim import lmm as optim_lmm

    problem = simulated_design("three_weighted", 1)
    reference = optim_lmm.optimize_problem(problem)
    calls = []
    original = LmmProblem.entry_gradient

    def failing(self, theta):
        calls.append(1)
        if len(calls) > fail_from:
            raise NotPositiveDefiniteError
        return original(self, theta)

    monkeypatch.setattr(LmmProblem, "entry_gradient", failing)
    result = optim_lmm.optimize_problem(problem)
    assert len(calls) > fail_from
    assert "from the moment start" not in result.message
    assert "polish skipped" in result.message
    assert np.isfinite(result.fun)
    assert abs(result.fun - reference.fun) <= 1e-10 * abs(reference.fun)
    np.testing.assert_allclose(result.x, reference.x, rtol=0, atol=1e-3)


def test_an_exact_fit_does_not_crash():
    """y = 0: PWRSS is exactly 0 at every theta, the objective -inf; the gradient is not
    defined there and says so (NotPositiveDefiniteError), Newton from the start is not
    tried, and the fit returns with the constant-response warning and beta = 0."""
    from mixedmodels.linalg.blocks import NotPositiveDefiniteError

    problem = simulated_design("unbalanced", 1)
    exact = LmmProblem(problem.blocks, problem.X, np.zeros(problem.n))
    theta = np.array([1.0, 0.2, 0.3, 0.5])
    assert exact.pieces(theta)[2] == 0.0 and exact.objective(theta) == -np.inf
    with pytest.raises(NotPositiveDefiniteError):
        exact.entry_gradient(theta)
    frame = structured_frame(7).assign(y=0.0)
    with pytest.warns(UserWarning, match="the response is constant"):
        fit = mm.lmer("y ~ x + (x | s) + (1 | i)", frame)
    assert fit.problem.has_entry_gradient()
    assert "from the moment start" not in fit.optimizer_message
    np.testing.assert_array_equal(fit.fixef.to_numpy(), [0.0, 0.0])


def test_fits_in_four_threads_at_once_equal_the_serial_fits():
    """Four crossed fits (Newton from the start, numba kernels for the fill and the
    gradient's quadratic forms behind one lock) in four Python threads at once: no crash,
    and each equals its serial fit (the same arithmetic; BLAS's thread count, which the
    single-threaded sections set process-wide, may change its summation order: the
    objective 1e-12 relative, theta 1e-8, the gradient at lme4's start 1e-10 of its
    largest entry)."""
    from concurrent.futures import ThreadPoolExecutor

    from mixedmodels.optim import lmm as optim_lmm

    designs = ["balanced", "near_boundary", "corr_plus", "three_weighted"]

    def fit(design):
        problem = simulated_design(design, 2)
        result = optim_lmm.optimize_problem(problem)
        _, gradient = problem.entry_gradient(problem.theta_start())
        return result, gradient

    serial = [fit(d) for d in designs]
    assert sum("from the moment start" in r.message for r, _ in serial) >= 3
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(fit, designs))
        for (a, ga), (b, gb) in zip(threaded, serial, strict=True):
            assert a.fun == pytest.approx(b.fun, rel=1e-12)
            np.testing.assert_allclose(a.x, b.x, rtol=0, atol=1e-8)
            np.testing.assert_allclose(ga, gb, rtol=0, atol=1e-10 * np.abs(gb).max())


@pytest.mark.parametrize("shape", ["first_p2", "rest_three"])
@pytest.mark.parametrize("compiled", [True, False])
def test_gradient_after_reweight_is_the_new_weights_gradient(monkeypatch, shape, compiled):
    """Bug found in review: a reweightable problem (a GLMM's working problem) keeps its
    crossed ``A = Z_R'WZ_0`` as CSR and refills its values in place at ``reweight``, but
    the gradient's quadratic forms kept a CSC copy made at the first call: after a
    reweight the value was right and the gradient that of the old weights (0.5% and 4%
    off here).  Reference: a fresh problem with the new weights and response, the same
    arithmetic to rounding (1e-12 of the largest entry; 8e-16 measured), with the compiled
    kernel and the sparse fallback."""
    from mixedmodels.linalg import gather

    if not compiled:
        monkeypatch.setattr(gather, "_gather_kernels", lambda: None)
    rng = np.random.default_rng(3 + len(shape))
    blocks, x = review_blocks(shape, rng)
    n = x.shape[0]
    X = np.column_stack([np.ones(n), x[:, 0]])
    y = X.sum(axis=1) + rng.normal(size=n)
    problem = LmmProblem(blocks, X, y, weights=rng.uniform(0.5, 2, n), reweightable=True)
    problem.dense_objective = None
    theta = 0.7 * problem.theta_start()
    problem.entry_gradient(theta)  # the quadratic forms built with the first weights
    for _ in range(2):
        weights, response = rng.uniform(0.5, 2, n), y + rng.normal(size=n)
        problem.reweight(weights, response)
        value, gradient = problem.entry_gradient(theta)
        fresh = LmmProblem(blocks, X, response, weights=weights)
        fresh.dense_objective = None
        fresh_value, reference = fresh.entry_gradient(theta)
        assert value == pytest.approx(fresh_value, rel=1e-12)
        assert np.abs(gradient - reference).max() <= 1e-12 * np.abs(reference).max()


@pytest.mark.parametrize("design", ["unbalanced", "small_groups", "balanced", "three_weighted"])
def test_the_fit_counts_the_evaluations_of_newton_steps_not_taken(design):
    """Found in review: when the Newton steps from the moment start were not taken
    (unbalanced, small groups: the Hessian at the start is not positive definite), their
    value and gradients (6 evaluations here) were missing from the fit's count.
    Reference: the problem's own counter (every objective and gradient adds one)."""
    from mixedmodels.optim import lmm as optim_lmm

    problem = simulated_design(design, 1)
    before = problem.n_evaluations
    result = optim_lmm.optimize_problem(problem)
    newton = dict(DESIGNS)[design]
    assert ("from the moment start" in result.message) == newton
    assert result.n_evaluations == problem.n_evaluations - before
