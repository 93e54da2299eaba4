"""Starting values for theta.

lme4 starts every ``lambda`` at the identity.  For scalar random intercepts we start
instead at one-way ANOVA (method of moments) estimates, which puts the search in the
right region at the cost of a few bincounts; a single vector term starts at per-level
regressions, and models with crossed (not nested) grouping factors and some term other
than an intercept (crossed random slopes) at per-level regressions fitted jointly by
backfitting.
For a factor with ``l`` levels of sizes ``n_g`` and OLS residuals ``r``:

.. math::

    \\hat\\tau^2 = \\frac{MSB - MSW}{n_0}, \\quad
    n_0 = \\frac{n - \\sum n_g^2 / n}{l - 1}, \\quad
    \\theta_{start} = \\hat\\tau / \\hat\\sigma

with ``sigma^2`` estimated by the smallest within-group mean square over the factors.
"""

from __future__ import annotations

import math

import numpy as np

from mixedmodels.core.crossed import factor_groups
from mixedmodels.core.gram import grouped_cross_products, is_nested
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.pirls import GlmmProblem
from mixedmodels.linalg import batched
from mixedmodels.linalg.blocks import NotPositiveDefiniteError

MIN_START = 0.05
MAX_START = 10.0
DEFAULT_STEP = 0.25
# residuals whose range is below this fraction of the response's largest value are rounding
RESIDUAL_ROUNDING = 1e-10
INFORMED_STEP = 0.1
VECTOR_STEP = 0.01  # per-level regressions land close to the optimum: search a small region
CROSSED_VECTOR_STEP = 0.1  # backfitted regressions of crossed terms: less close
# ... but their error shrinks with the levels: the expected change of a term's theta is
# 1 / sqrt(2 l) (relative), the relative standard error of a standard deviation estimated
# from l per-level coefficients, capped at CROSSED_VECTOR_STEP; the initial step is a tenth
# of it (Powell's advice for BOBYQA: RHOBEG about one tenth of the greatest expected change
# of a variable).  Measured on the crossed-slopes benchmark (5,000 x 2,000 levels): 42
# evaluations with 0.1, 28 with 1 / sqrt(l), 24 with 1 / sqrt(2 l), 19 with a tenth of it
# (REML criterion 1.6e-15 relative above the 24-evaluation one: rounding; theta 4e-7 off);
# at 1/20 and 1/5 of its size (25,000 and 100,000 rows) 35 -> 29 and 29 -> 25; kb07
# (56 x 32 levels, ten theta): 185, 185, 196 and 211
CROSSED_STEP_FRACTION = 0.1


def _backfit_effects(blocks, r: np.ndarray, sweeps: int = 3) -> tuple[list[np.ndarray], float]:
    """Group-mean effects of several factors fitted jointly by backfitting, and sigma^2."""
    e = r.copy()
    effects = [np.zeros(b.n_levels) for b in blocks]
    counts = [np.maximum(np.bincount(b.codes, minlength=b.n_levels), 1) for b in blocks]
    for _ in range(sweeps):
        for k, b in enumerate(blocks):
            e += effects[k][b.codes]
            effects[k] = np.bincount(b.codes, weights=e, minlength=b.n_levels) / counts[k]
            e -= effects[k][b.codes]
    dof = max(r.size - sum(b.n_levels for b in blocks), 1)
    return effects, float(e @ e) / dof


def _per_level_regression_start(
    problem: LmmProblem, beta: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """lambda from per-level least squares of ``r`` on the term's columns.

    With per-level coefficients ``c_i = (Z_i'Z_i)^-1 Z_i' r_i``, the moment estimate of the
    random-effect covariance is ``cov(c) - sigma^2 mean((Z_i'Z_i)^-1)`` (eigenvalues floored
    to keep it positive definite); ``lambda = chol(Sigma / sigma^2)``.  None when too few
    levels have a full-rank ``Z_i``.
    """
    counts = np.bincount(problem.blocks[0].codes, minlength=problem.blocks[0].n_levels)
    # r'Wr, weighted like the grams Z'WZ and Z'Wr the within-level sum of squares subtracts
    rr = float(r @ r) if problem.weights is None else float(r @ (problem.weights * r))
    return level_regression_lambda(problem, beta, rr, counts)


def level_regression_lambda(
    problem: LmmProblem, beta: np.ndarray, rr: float, counts: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """:func:`_per_level_regression_start` from ``rr = r'Wr`` and the level counts (the
    in-memory start and the out-of-core one, :mod:`mixedmodels.optim.reduced_start`)."""
    block = problem.blocks[0]
    p, n_levels = block.p, block.n_levels
    gram = problem.gram.diagonal[0]  # Z_i'Z_i, (p, p, l): no pass over the rows
    zxy = problem.gram.xy_random[0]  # [X y]'Z, (m, l * p)
    zr = (zxy[-1] - beta @ zxy[:-1]).reshape(n_levels, p).T  # Z_i'(y - X beta), (p, l)
    low = batched.cholesky(gram)
    j = np.arange(p)
    diag, scale = low[j, j], np.sqrt(gram[j, j])  # (p, l): each level's diagonals
    ok = (np.isfinite(diag) & (diag > 1e-8 * np.maximum(scale, 1e-300))).all(axis=0)
    n_ok = int(ok.sum())
    if n_ok < max(2 * p, 3):
        return None
    # (copies even when every level is usable: their layout sets einsum's order of sums)
    low, zr, counts = low[:, :, ok], zr[:, ok], counts[ok]
    half = batched.solve_right_lower_transposed(zr.T[None], low)[0]  # L^-1 Z'r, (l, p)
    inv = batched.invert_lower(low)  # L^-1
    coef = np.einsum("jil,lj->li", inv, half)  # (Z'Z)^-1 Z'r = L^-T L^-1 Z'r
    ss_within = rr - float(np.sum(half * half))
    dof = int(counts.sum()) - p * n_ok
    if dof <= 0 or ss_within <= 0:
        return None
    sigma2 = ss_within / dof
    zz_inv = np.einsum("kil,kjl->ij", inv, inv) / n_ok  # mean of (Z_i'Z_i)^-1
    cov = row_covariance(coef.T) - sigma2 * zz_inv
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, 1e-3 * max(float(w.max()), sigma2 * 1e-3))
    lam = np.linalg.cholesky((v * w) @ v.T / sigma2)
    return lam, sigma2


def row_covariance(m: np.ndarray) -> np.ndarray:
    """``np.cov(m)`` of a ``(p, l)`` array with ``p >= 2`` rows and ``l >= 2`` columns (the
    covariance of the rows, divisor ``l - 1``), by numpy's own steps (a contiguous copy,
    its row means, the centred product by ``np.dot``, the divisor's reciprocal), so the
    same bits, without its argument handling (a third of a small start's time).

    .. math:: C = \frac{1}{l - 1} (M - \bar m 1') (M - \bar m 1')'
    """
    x = np.array(m, ndmin=2, dtype=np.result_type(m, np.float64))
    x -= x.mean(axis=1)[:, None]
    c = np.dot(x, x.T.conj())
    c *= np.true_divide(1, x.shape[1] - 1)
    return c


def full_rank_level_inverses(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-level ``(Z_i'WZ_i)^-1 = L^-T L^-1`` from the grams ``(p, p, l)``, and the mask of
    the levels whose Cholesky diagonal stays above 1e-8 of the column scale (the other
    levels get the identity); None when no level has full rank."""
    p = gram.shape[0]
    low = batched.cholesky(gram)
    scale = np.stack([np.sqrt(gram[j, j]) for j in range(p)])
    diag = np.stack([low[j, j] for j in range(p)])
    ok = np.all(np.isfinite(diag) & (diag > 1e-8 * np.maximum(scale, 1e-300)), axis=0)
    if not ok.any():
        return None
    low[:, :, ~ok] = np.eye(p)[:, :, None]
    inv = batched.invert_lower(low)
    return np.einsum("kil,kjl->ijl", inv, inv), ok


def _backfit_regressions(
    blocks, r: np.ndarray, weights: np.ndarray | None, sweeps: int = 3
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], float] | None:
    """Per-level least-squares coefficients of every term fitted jointly by backfitting.

    Each sweep regresses, level by level, the partial residual of a term (the residual
    plus that term's current fit) on the term's columns.  Returns the coefficients
    ``(l, p)`` per term, the per-level ``(Z_i'WZ_i)^-1`` ``(p, p, l)`` per term, the mask
    of the levels with a full-rank ``Z_i`` per term and ``sigma^2`` (residual
    sum of squares over ``n - sum l p``).  None when no level of some term has full rank.
    """
    e = r.copy()
    w = np.ones(r.size) if weights is None else weights
    coefs, inverses, masks = [], [], []
    for b in blocks:
        level_inverses = full_rank_level_inverses(
            grouped_cross_products(b.codes, b.n_levels, b.z, b.z, weights)
        )
        if level_inverses is None:
            return None
        inverses.append(level_inverses[0])
        coefs.append(np.zeros((b.n_levels, b.p)))
        masks.append(level_inverses[1])
    for _ in range(sweeps):
        for b, coef, zz_inv, ok in zip(blocks, coefs, inverses, masks, strict=True):
            e += np.einsum("np,np->n", b.z, coef[b.codes])
            zr = grouped_cross_products(b.codes, b.n_levels, [e], b.z, weights)[0]  # (p, l)
            coef[:] = np.einsum("ijl,jl->li", zz_inv, zr)
            coef[~ok] = 0.0
            e -= np.einsum("np,np->n", b.z, coef[b.codes])
    dof = r.size - sum(int(ok.sum()) * b.p for b, ok in zip(blocks, masks, strict=True))
    if dof <= 0:
        return None
    sigma2 = float(e @ (w * e)) / dof
    return coefs, inverses, masks, sigma2


def _crossed_vector_start(
    problem: LmmProblem, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Moment estimates for every term of a model with several terms and some vector
    terms: with per-level coefficients ``c_i`` from :func:`_backfit_regressions`,
    ``Sigma = cov(c) - sigma^2 mean((Z_i'WZ_i)^-1)`` (eigenvalues floored),
    ``lambda = chol(Sigma / sigma^2)``, as for a single vector term."""
    return vector_terms_start(problem, _backfit_regressions(problem.blocks, r, problem.weights))


def vector_terms_start(problem: LmmProblem, found) -> tuple[np.ndarray, np.ndarray] | None:
    """theta0 and step of :func:`_crossed_vector_start` from the backfitted regressions
    ``found = (coefs, inverses, masks, sigma2)`` (None: no start), whether they were
    computed from the rows or from cross products (:mod:`mixedmodels.optim.reduced_start`)."""
    if found is None:
        return None
    coefs, inverses, masks, sigma2 = found
    if not sigma2 > 0:
        return None
    blocks = problem.blocks
    theta = np.empty(problem.n_theta)
    step = np.empty(problem.n_theta)
    pos = 0
    for b, coef, zz_inv, ok in zip(blocks, coefs, inverses, masks, strict=True):
        if ok.sum() < max(2 * b.p, 3):
            return None
        cov = np.atleast_2d(np.cov(coef[ok].T)) - sigma2 * zz_inv[:, :, ok].mean(axis=2)
        val, vec = np.linalg.eigh(cov)
        val = np.maximum(val, 1e-3 * max(float(val.max()), sigma2 * 1e-3))
        lam = np.linalg.cholesky((vec * val) @ vec.T / sigma2)
        lam = np.clip(lam, -MAX_START, MAX_START)
        values = b.structure.theta_from_lambda(lam)
        theta[pos : pos + values.size] = values
        size = float(np.max(np.abs(np.diagonal(lam))))
        expected = min(CROSSED_VECTOR_STEP, 1.0 / np.sqrt(2.0 * ok.sum()))
        relative = CROSSED_STEP_FRACTION * expected
        floor = relative * (MIN_START / CROSSED_VECTOR_STEP)  # MIN_START at the cap
        step[pos : pos + values.size] = max(relative * size, floor)
        pos += values.size
    return theta, step


def _is_intercept(block) -> bool:
    """A random intercept: one column of ones."""
    return block.p == 1 and bool((block.z[:, 0] == 1.0).all())


def _crossed_with_slopes(blocks) -> bool:
    """True for terms on two or more grouping factors, none nested in another, with at
    least one term other than a random intercept.

    Backfitted per-level regressions estimate crossed factors well; for nested factors
    they cannot tell an outer level's effect from its inner levels' (MathAchieve's
    ``(SES|School) + (1|School:Sex)`` then starts near a worse local optimum), so nested
    designs keep the ANOVA / identity start.
    """
    if all(_is_intercept(b) for b in blocks):
        return False
    factors = factor_groups(blocks)
    if len(factors) < 2:
        return False
    for i, fi in enumerate(factors):
        for fj in factors[:i]:
            a, b = blocks[fi[0]], blocks[fj[0]]
            if is_nested(a, b) or is_nested(b, a):
                return False
    return True


def _lme4_start(problem: LmmProblem) -> tuple[np.ndarray, np.ndarray]:
    """lme4's start (identity lambda) and the default step."""
    theta = problem.theta_start()
    return theta, np.full(theta.size, DEFAULT_STEP)


def moment_start(problem: LmmProblem) -> tuple[np.ndarray, np.ndarray]:
    """Start and initial step: moment estimates for scalar intercept terms, per-level
    regressions for a single vector term, backfitted per-level regressions for every
    term of a model with crossed grouping factors and random slopes.

    Returns
    -------
    theta0, step : ndarray
        ``step`` is small (relative) where theta0 is informed and lme4-like elsewhere.
    """
    X, y = problem.X, problem.y_work  # the response the stored cross products describe
    if X.shape[1]:
        # normal equations from the stored cross products (no pass over the rows)
        p = X.shape[1]
        beta = np.linalg.solve(problem.gram.xy_xy[:p, :p], problem.gram.xy_xy[:p, -1])
        r = y - X @ beta
    else:
        beta = np.zeros(0)
        r = y - y.mean()
    scale = float(np.abs(problem.y).max(initial=0.0))  # y_work is a residual already
    spread = r.max() - r.min() if r.size else 0.0  # np.ptp's value without its dispatch
    if not spread > RESIDUAL_ROUNDING * max(scale, 1e-300):
        # the fixed effects reproduce the response (a constant one, or a GLMM's working
        # response where every mean overflowed): the residuals are rounding, whose
        # per-level moments depend on the BLAS build; nothing informs a start
        return _lme4_start(problem)
    if len(problem.blocks) == 1 and problem.blocks[0].p > 1:
        return single_vector_start(problem, _per_level_regression_start(problem, beta, r))
    scalar = [i for i, b in enumerate(problem.blocks) if _is_intercept(b)]
    # (every term an intercept: not crossed with slopes, _crossed_with_slopes' first test)
    if len(scalar) < len(problem.blocks) and _crossed_with_slopes(problem.blocks):
        found = _crossed_vector_start(problem, r)
        if found is not None:
            return found
    if not scalar:
        return _lme4_start(problem)
    blocks = [problem.blocks[i] for i in scalar]
    effects, sigma2 = _backfit_effects(blocks, r)
    counts = [np.bincount(b.codes, minlength=b.n_levels) for b in blocks]
    return scalar_terms_start(problem, scalar, effects, counts, sigma2)


def single_vector_start(
    problem: LmmProblem, found: tuple[np.ndarray, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """theta0 and step of a model with one vector term from its per-level regressions'
    ``(lambda, sigma^2)`` (None: lme4's start and step)."""
    if found is None:
        theta = problem.theta_start()
        return theta, np.full(theta.size, DEFAULT_STEP)
    lam = found[0]
    theta = problem.blocks[0].structure.theta_from_lambda(lam)
    size = float(np.max(np.abs(np.diagonal(lam))))
    return theta, np.full(theta.size, max(VECTOR_STEP * size, 1e-3))


def _mean(x: np.ndarray) -> float:
    """``np.mean`` of a non-empty 1-d float array, bit for bit (its sum, pairwise, over
    the count) without its dispatch (~5 us)."""
    return float(np.add.reduce(x) / x.size)


def _variance(x: np.ndarray) -> float:
    """``np.var`` of a non-empty 1-d float array, bit for bit (numpy's own steps: the
    mean, the squared deviations' sum over the count) without its dispatch (~10 us)."""
    d = x - np.add.reduce(x) / x.size
    return float(np.add.reduce(d * d) / x.size)


def scalar_terms_start(
    problem: LmmProblem,
    scalar: list[int],
    effects: list[np.ndarray],
    counts: list[np.ndarray],
    sigma2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """theta0 and step with the random-intercept terms ``scalar`` started at their moment
    estimates ``tau / sigma``, ``tau^2 = var(effects) - sigma^2 mean(1 / n_i)`` (clipped
    to [MIN_START, MAX_START]); the other terms at lme4's start."""
    theta = problem.theta_start()
    step = np.full(theta.size, DEFAULT_STEP)
    if not sigma2 > 0:
        return theta, step
    for i, eff, n_i in zip(scalar, effects, counts, strict=True):
        tau2 = _variance(eff) - sigma2 * _mean(1.0 / np.maximum(n_i, 1))
        # np.clip's value on a float, without its dispatch (NaN stays NaN)
        value = min(max(math.sqrt(max(tau2, 0.0) / sigma2), MIN_START), MAX_START)
        pos = problem.theta_offsets[i]
        theta[pos] = value
        step[pos] = max(INFORMED_STEP * value, MIN_START)
    return theta, step


def glmm_working_start(problem: GlmmProblem, beta: np.ndarray) -> np.ndarray | None:
    """theta's start for a GLMM with a vector-valued term: :func:`moment_start` of the
    linear mixed model of the working response at the GLM's ``beta`` (the first step of
    penalized quasi-likelihood),

    .. math::

        z = \\eta + s / W, \\qquad \\eta = o + X \\beta,

    with ``s`` the rows' scores ``d log p / d eta`` (on the deviance's scale) and ``W`` the
    expected-information weights.  Its shape is what matters: the caller's scale search
    sets the size.  lme4's identity start gives a slope in days and an intercept in
    milliseconds the same relative sd (sleepstudy's Gamma fit: 34 Laplace evaluations and
    21 gradients from it, 27 and 19 from this).  None where no term is vector-valued
    (the scale search alone finds a scalar term's start) or where the working model is
    not usable (non-finite or non-positive weights, no moment estimate).
    """
    if not any(b.p > 1 for b in problem.blocks):
        return None
    family = problem.family
    kernel = family.kernel(problem.y, problem.prior_weights)
    with np.errstate(all="ignore"):
        eta = problem.offset + problem.X @ beta
        mu = kernel.inverse(eta)
        h, r = kernel.working(eta, mu)
        weights = kernel.laplace_weights(eta, mu)
        z = eta - problem.offset + h * r / weights
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(weights)) and np.all(weights > 0)):
        return None
    try:
        lmm = LmmProblem(problem.blocks, problem.X, z, weights=weights, reml=False)
        theta, step = moment_start(lmm)
    except (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError, ValueError):
        return None
    if not (np.all(np.isfinite(theta)) and np.any(theta != 0)) or np.all(step == DEFAULT_STEP):
        return None  # nothing informed: lme4's start, as without this
    return theta
