"""Smooth terms of a fitted model: effective degrees of freedom, mgcv's approximate tests,
curves with pointwise bands.

The quantities are gamm4's: the smooths' coefficients (their fixed-effect columns and
random effects) are treated as penalized fixed effects, the other random effects are
integrated out, so with ``C = [X, Z_s]`` (all fixed columns and the smooths' random
columns), ``V = sigma^2 (W^-1 + Z_o Lambda_o Lambda_o' Z_o')`` and the penalty ``P =
diag(0, 1 / (sigma^2 theta_j^2))`` on the smooths' random coefficients:

* the Bayesian covariance of the coefficients ``Vp = (C' V^-1 C + P)^-1``;
* the effective degrees of freedom ``diag(Vp C' V^-1 C)``, summed per smooth;
* mgcv's Wood (2013) test of each smooth with a null space (``testStat``: a rank-``edf``
  pseudo-inverse of the smooth's covariance, fractional part mixed in, referred to a
  weighted sum of chi-squares, or to F with the residual degrees of freedom
  ``n - sum(edf)`` when the scale is estimated), and the random-effect test of fully
  penalized terms (``reTest``).

Sums of weighted chi-squares are evaluated by Imhof's inversion of the characteristic
function (mgcv uses Davies' algorithm with accuracy 2e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import stats

from mixedmodels.errors import ArgumentError
from mixedmodels.linalg.threads import single_threaded_blas

#: Up to this many rows the smooths' coefficient covariance and tests (products of an
#: ``n x (p + q_s)`` matrix, inverses of its square) run with one BLAS thread.
SINGLE_THREAD_ROWS = 50_000

# ------------------------------------------------------------------ weighted chi-squares


def prob_weighted_chisq_exceeds(q: float, weights, df=None) -> float:
    """``P(sum_j w_j X_j > q)`` with ``X_j ~ chi^2(df_j)`` independent (weights of either
    sign), by Imhof's (1961) inversion integral, evaluated by Simpson's rule on a
    logarithmic grid fine enough for the oscillation of ``sin(q u / 2)``, truncated where
    the remaining tail is below 1e-10."""
    w = np.asarray(weights, dtype=float)
    d = np.ones_like(w) if df is None else np.asarray(df, dtype=float)
    keep = w != 0
    w, d = w[keep], d[keep]
    if w.size == 0:
        return float(q < 0)
    if w.size == 1:  # one scaled chi-square
        if w[0] > 0:
            return float(stats.chi2.sf(q / w[0], d[0]))
        return float(stats.chi2.cdf(q / w[0], d[0]))
    total_df = float(d.sum())

    def log_envelope(u):
        return -0.25 * np.sum(d[:, None] * np.log1p((w[:, None] * u) ** 2), axis=0)

    # with g(u) = envelope(u) / u the tail beyond U is below envelope(U) / (total_df / 2)
    # without oscillation and g(U) / (|q| / 2) with it (integration by parts)
    lo = 1e-8 / float(np.max(np.abs(w)))
    upper = 1.0 / float(np.min(np.abs(w)))
    for _ in range(200):
        env = float(np.exp(log_envelope(np.array([upper]))[0]))
        bound = env * min(1 / max(total_df / 2, 1e-300), 2 / max(abs(q) * upper, 1e-300))
        if bound < 1e-11 or upper > 1e15:
            break
        upper *= 1.5
    periods = abs(q) * upper / (4 * np.pi)
    n = int(min(4_000_000, max(4000, 60 * periods))) // 2 * 2 + 1
    t = np.linspace(np.log(lo), np.log(upper), n)
    u = np.exp(t)
    phase = 0.5 * np.sum(d[:, None] * np.arctan(w[:, None] * u), axis=0) - 0.5 * q * u
    f = np.sin(phase) * np.exp(log_envelope(u))  # integrand * u (du = u dt)
    h = t[1] - t[0]
    integral = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    # the piece [0, lo]: the integrand tends to (sum w d - q) / 2
    integral += 0.5 * (float(np.sum(w * d)) - q) * lo
    return float(min(1.0, max(0.0, 0.5 + integral / np.pi)))


# --------------------------------------------------------------------------- test statistic


@dataclass(frozen=True)
class SmoothTest:
    statistic: float  # mgcv's d (before division by the reference df for F)
    alternative: float  # the other of the two statistics mgcv averages p-values over
    p_value: float
    rank: float


def wood_test(
    p: np.ndarray, X: np.ndarray, V: np.ndarray, rank: float, res_df: float
) -> SmoothTest:
    """mgcv's ``testStat(p, X, V, rank, type = 0, res.df)`` (Wood 2013, Biometrika)."""
    _, R = np.linalg.qr(X)
    Vr = R @ V @ R.T
    Vr = (Vr + Vr.T) / 2
    values, vectors = np.linalg.eigh(Vr)
    order = np.argsort(-values, kind="stable")
    values, vectors = values[order], vectors[:, order]
    signs = np.sign(vectors[0])
    signs[signs == 0] = 1
    vectors = vectors * signs
    k = max(0, int(np.floor(rank)))
    nu = abs(rank - k)
    k1 = k + 1 if nu > 0 else k
    r_est = int(np.sum(values > values[0] * np.finfo(float).eps ** 0.9))
    if r_est < k1:
        k1 = k = r_est
        nu = 0.0
        rank = float(r_est)
    vec = vectors[:, :k1].copy()
    if nu > 0 and k > 0:
        if k > 1:
            vec[:, : k - 1] = vec[:, : k - 1] / np.sqrt(values[: k - 1])
        b12 = np.sqrt(max(0.0, 0.5 * nu * (1 - nu)))
        B = np.array([[1.0, b12], [b12, nu]])
        ev = np.diag(values[k - 1 : k1] ** -0.5)
        B = ev @ B @ ev
        eb_values, eb_vectors = np.linalg.eigh(B)
        rB = eb_vectors @ np.diag(np.sqrt(eb_values)) @ eb_vectors.T
        vec1 = vec.copy()
        vec1[:, k - 1 : k1] = (rB @ np.diag([-1.0, 1.0]) @ vec[:, k - 1 : k1].T).T
        vec[:, k - 1 : k1] = (rB @ vec[:, k - 1 : k1].T).T
    else:
        if k == 0:
            vec = vectors[:, :k1] * np.sqrt(1 / values[0])
        else:
            vec = vectors[:, :k] / np.sqrt(values[:k])
        vec1 = vec
        if k == 1:
            rank = 1.0
    Rp = R @ p
    d = float(np.sum((vec.T @ Rp) ** 2))
    d1 = float(np.sum((vec1.T @ Rp) ** 2))
    rank1 = rank
    pval = 2.0
    if nu > 0:
        if k1 == 1:
            rank1 = 1.0
            val = np.array([1.0])
        else:
            val = np.ones(k1)
            rp = nu + 1
            val[k - 1] = (rp + np.sqrt(rp * (2 - rp))) / 2
            val[k1 - 1] = rp - val[k - 1]
        if res_df <= 0:
            pval = (prob_weighted_chisq_exceeds(d, val) + prob_weighted_chisq_exceeds(d1, val)) / 2
        else:
            k0 = max(1, round(res_df))
            df = np.r_[np.ones(val.size), k0]
            pval = (
                prob_weighted_chisq_exceeds(0.0, np.r_[val, -d / k0], df)
                + prob_weighted_chisq_exceeds(0.0, np.r_[val, -d1 / k0], df)
            ) / 2
    if pval > 1:
        if res_df <= 0:
            pval = (stats.chi2.sf(d, rank1) + stats.chi2.sf(d1, rank1)) / 2
        else:
            pval = (
                stats.f.sf(d / rank1, rank1, res_df) + stats.f.sf(d1 / rank1, rank1, res_df)
            ) / 2
    return SmoothTest(d, d1, float(min(1.0, pval)), float(rank))


# ------------------------------------------------------------------------ the fit's pieces


def _term_lambdas(design, theta: np.ndarray) -> list[np.ndarray]:
    out, start = [], 0
    for term in design.terms:
        block = term.block
        out.append(block.lambda_matrix(theta[start : start + block.n_theta]))
        start += block.n_theta
    return out


def _term_z(term, lam: np.ndarray | None = None) -> sp.csr_matrix:
    """The term's ``Z`` (level-major columns), or ``Z (I (x) lambda)`` with ``lam``, built
    row by row (each row holds ``p`` entries: ``z_r`` or ``z_r lambda``)."""
    n, p = term.z.shape
    values = term.z if lam is None else term.z @ lam
    indptr = np.arange(0, n * p + 1, p)
    indices = (term.codes[:, None] * p + np.arange(p)[None, :]).ravel()
    return sp.csr_matrix(
        (np.ascontiguousarray(values).ravel(), indices, indptr), shape=(n, term.n_levels * p)
    )


def _dense_term_z(term) -> np.ndarray:
    return term.z if term.n_levels == 1 else _term_z(term).toarray()


@dataclass
class _Coefficients:
    """The smooth model as penalized regression (gamm4's ``gam`` object)."""

    coef: np.ndarray  # [beta, smooth random coefficients]
    Vp: np.ndarray  # Bayesian covariance
    xvx: np.ndarray  # C' V^-1 C
    edf: np.ndarray  # per coefficient
    n_fixed: int
    smooth_columns: dict[int, np.ndarray]  # term index -> columns of coef
    scale: float
    scale_estimated: bool


def smooth_coefficients(fit) -> _Coefficients:
    """gamm4's reparametrized coefficient vector, its covariance and edf (see the module
    docstring)."""
    with single_threaded_blas(fit.design.n <= SINGLE_THREAD_ROWS):
        return _smooth_coefficients(fit)


def _smooth_coefficients(fit) -> _Coefficients:
    design = fit.design
    theta = np.asarray(fit.theta, dtype=float)
    lambdas = _term_lambdas(design, theta)
    beta = np.asarray(fit.fixef, dtype=float)
    modes = fit._modes
    if not fit.has_residual_variance:  # a GLMM: its working weights at the mode
        w = np.asarray(fit._solution.mode.weights, dtype=float)
        scale, estimated = 1.0, False
    else:
        w = np.ones(design.n) if design.weights is None else np.asarray(design.weights, float)
        scale, estimated = float(fit.sigma) ** 2, True
    smooth_idx = [i for i, t in enumerate(design.terms) if t.always_included]
    other_idx = [i for i, t in enumerate(design.terms) if not t.always_included]
    blocks = [design.X]
    coefs = [beta]
    relative = [np.ones(beta.size)]  # variance / sigma^2 of each random coefficient
    random = [np.zeros(beta.size, dtype=bool)]
    columns: dict[int, np.ndarray] = {}
    position = beta.size
    for i in smooth_idx:
        term = design.terms[i]
        Z = _dense_term_z(term)
        blocks.append(Z)
        coefs.append(np.asarray(modes[i]).ravel())
        lam = lambdas[i]
        relative.append(np.tile(np.sum(lam * lam, axis=1), term.n_levels))
        random.append(np.ones(Z.shape[1], dtype=bool))
        columns[i] = np.arange(position, position + Z.shape[1])
        position += Z.shape[1]
    C = np.hstack(blocks)
    coef = np.concatenate(coefs)
    is_random = np.concatenate(random)
    M = _marginal_cross_products(design, C, w, lambdas, other_idx)  # C' (V / sigma^2)^-1 C
    # Vp = sigma^2 (M + diag(1 / relative))^-1 on the random coefficients, written with
    # D = sqrt(relative) so that a zero variance (theta = 0) needs no infinite penalty
    D = np.where(is_random, np.sqrt(np.concatenate(relative)), 1.0)
    H = D[:, None] * M * D[None, :] + np.diag(is_random.astype(float))
    Vp = scale * D[:, None] * np.linalg.inv(H) * D[None, :]
    xvx = M / scale
    edf = np.einsum("ij,ji->i", Vp, xvx)
    return _Coefficients(coef, Vp, xvx, edf, beta.size, columns, scale, estimated)


#: Up to this many random effects in the terms integrated out, ``C' V^-1 C`` is computed
#: with dense matrices (LAPACK's Cholesky); beyond, with a sparse LU.
DENSE_OTHER_EFFECTS = 500


def _marginal_cross_products(
    design, C: np.ndarray, w: np.ndarray, lambdas: list[np.ndarray], other_idx: list[int]
) -> np.ndarray:
    """``C' (V / sigma^2)^-1 C`` with ``V / sigma^2 = W^-1 + Z_o Lambda_o Lambda_o' Z_o'``:
    the other (not smooth) random effects integrated out at their ``lambdas``, by
    Woodbury: ``C'WC - (Z_o Lambda_o)'WC (Lambda_o' Z_o' W Z_o Lambda_o + I)^-1 ...``."""
    WC = C * w[:, None]
    M = C.T @ WC  # C' W C
    if other_idx:
        ZL = sp.hstack([_term_z(design.terms[i], lambdas[i]) for i in other_idx], format="csr")
        cross = np.asarray(ZL.T @ WC)
        if ZL.shape[1] <= DENSE_OTHER_EFFECTS:
            dense = ZL.toarray()
            inner = dense.T @ (dense * w[:, None])
            inner[np.diag_indices_from(inner)] += 1.0
            solved = sla.cho_solve(sla.cho_factor(inner, lower=True), cross)
        else:
            inner = (ZL.T @ sp.diags(w) @ ZL + sp.identity(ZL.shape[1])).tocsc()
            solved = sp.linalg.splu(inner).solve(cross)
        M = M - cross.T @ solved
    return (M + M.T) / 2


# ------------------------------------------------------------------ a start for REML

#: Schall (1991) iterations for the start, and the relative change of every smoothing
#: variance at which they stop.
START_ITERATIONS = 50
START_TOLERANCE = 1e-3
#: The start of a smooth's theta is kept within these (a variance Schall drives to 0 gets
#: the lower one: BOBYQA's first steps, 0.1 |theta|, then reach 0).
START_BOUNDS = (0.01, 1e3)
#: Non-smooth terms (``(1 | g)``) join the iteration while all blocks together have at
#: most this many coefficients (the system is dense).
START_MAX_COLUMNS = 400
#: Beyond this many rows no start is computed: it passes over the rows (``C' V^-1 C``),
#: while the engine's evaluations, on cross products, do not depend on ``n`` (1,000,000
#: rows of ``s(x) + (1 | g)``: the start took 0.85 s CPU and saved 0.2 s of BOBYQA).
START_MAX_ROWS = 50_000


def _penalized_blocks(design, n_theta: list[int], lambda_of) -> tuple[list[int], list[int]]:
    """The terms the start's iteration estimates (every smooth term, and the other terms
    whose relative factor is one theta times the identity while all of them have at most
    :data:`START_MAX_COLUMNS` coefficients) and the terms integrated out; ``([], [])``
    when a smooth term has a factor of another form."""
    terms = design.terms
    one_theta = [
        n_theta[i] == 1 and np.array_equal(lambda_of(i), np.eye(terms[i].z.shape[1]))
        for i in range(len(terms))
    ]
    chosen = [i for i, t in enumerate(terms) if t.always_included]
    if not all(one_theta[i] for i in chosen):
        return [], []
    extra = [i for i, t in enumerate(terms) if one_theta[i] and not t.always_included]
    size = sum(terms[i].n_levels * terms[i].z.shape[1] for i in chosen + extra)
    if size <= START_MAX_COLUMNS:
        chosen = sorted(chosen + extra)
    return chosen, [i for i in range(len(terms)) if i not in chosen]


def smooth_start(design, problem) -> np.ndarray | None:
    """A starting theta for a linear mixed model with smooth terms near its REML
    estimate, or None when the model has no smooth terms, more than
    :data:`START_MAX_ROWS` rows, or the start cannot be made.

    Every term whose relative factor is one theta times the identity (a smooth's random
    parts, scalar random intercepts such as ``(1 | g)``) is a penalized block of
    coefficients with relative variance ``rho_j = theta_j^2``; the other terms, and the
    non-smooth ones when there are more than :data:`START_MAX_COLUMNS` such coefficients,
    are integrated out where :func:`~mixedmodels.optim.start.moment_start` puts them.
    The variances follow Schall's (1991) fixed point, the Fellner-Schall update of Wood
    and Fasiolo (2017) for a penalty that is the identity: with ``c`` the penalized
    least-squares coefficients of ``C = [X, Z_1, ...]``, ``edf_j`` the effective degrees
    of freedom of block ``j`` and ``sigma^2 = |y - C c|^2_V / (n - sum edf)``,

    .. math::

        \\rho_j \\leftarrow \\frac{|c_j|^2 / \\sigma^2}{\\mathrm{edf}_j}

    (each step solves the ``(p + q)``-square system; ``C' V^-1 [C, y]`` is computed once).
    A smooth's variance is far from lme4's start of 1 (30 to 50 in the agreement cases),
    which otherwise costs BOBYQA a hundred or more evaluations to cross.
    """
    from mixedmodels.optim.start import moment_start

    if not design.smooths or not design.X.shape[1] < design.n <= START_MAX_ROWS:
        return None
    blocks = problem.blocks  # public (design) order, as theta
    chosen, others = _penalized_blocks(
        design, [b.n_theta for b in blocks], lambda i: blocks[i].lambda_matrix(np.ones(1))
    )
    if not chosen:
        return None
    try:
        theta, _ = moment_start(problem)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        theta = problem.theta_start()
    theta = np.array(theta, dtype=float)
    if not np.all(np.isfinite(theta)):
        theta = problem.theta_start()
    offsets = problem.theta_offsets
    rho = np.array([theta[offsets[i]] ** 2 for i in chosen])
    rho = _guarded(_lmm_schall, design, theta, chosen, others, rho)
    if rho is None:
        return None
    for i, value in zip(chosen, rho, strict=True):
        theta[offsets[i]] = float(np.clip(np.sqrt(value), *START_BOUNDS))
    return theta


def _guarded(iterate, design, *args) -> np.ndarray | None:
    """``iterate(design, *args)`` with one BLAS thread for small data and numerical
    trouble (a singular system, overflow) meaning no start rather than an error."""
    with single_threaded_blas(design.n <= SINGLE_THREAD_ROWS), np.errstate(all="ignore"):
        try:
            rho = iterate(design, *args)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, RuntimeError):
            return None
    if rho is None or not np.all(np.isfinite(rho)):
        return None
    return rho


def _lmm_schall(design, theta, chosen, others, rho) -> np.ndarray | None:
    w = np.ones(design.n) if design.weights is None else np.asarray(design.weights, float)
    y = design.y if design.offset is None else design.y - design.offset
    C = _start_columns(design, chosen)
    lambdas = _term_lambdas(design, theta)
    A = _marginal_cross_products(design, np.hstack([C, y[:, None]]), w, lambdas, others)
    group = _start_groups(design, chosen)
    for _ in range(START_ITERATIONS):
        step = _schall_step(A[:-1, :-1], A[:-1, -1], A[-1, -1], group, rho, design.n)
        if step is None:
            return None
        new, _ = step
        done = np.all(np.abs(np.log(new / rho)) < START_TOLERANCE)
        rho = new
        if done:
            break
    return rho


def glmm_smooth_start(design, problem) -> np.ndarray | None:
    """A starting theta for a GLMM with smooth terms (a family without a dispersion or
    parameters of its own: binomial, Poisson): :func:`smooth_start`'s iteration on the
    working response and weights of penalized quasi-likelihood, the linear predictor
    updated from the penalized fit after each step (PQL's variances are biased for
    binary data, but much nearer the Laplace estimates than lme4's start of 1).  None
    when the start cannot be made.
    """
    family = problem.family
    if not design.smooths or family.has_dispersion or family.extra_names:
        return None
    if not design.X.shape[1] < design.n <= START_MAX_ROWS:
        return None
    blocks = problem.blocks
    chosen, others = _penalized_blocks(
        design, [b.n_theta for b in blocks], lambda i: blocks[i].lambda_matrix(np.ones(1))
    )
    if not chosen:
        return None
    theta = np.array(problem.theta_start(), dtype=float)
    offsets = np.concatenate([[0], np.cumsum([b.n_theta for b in blocks])]).astype(int)
    rho = _guarded(_pql_schall, design, problem, theta, chosen, others)
    if rho is None:
        return None
    for i, value in zip(chosen, rho, strict=True):
        theta[offsets[i]] = float(np.clip(np.sqrt(value), *START_BOUNDS))
    return theta


def _pql_schall(design, problem, theta, chosen, others) -> np.ndarray | None:
    family, link = problem.family, problem.family.link
    C = _start_columns(design, chosen)
    lambdas = _term_lambdas(design, theta)
    group = _start_groups(design, chosen)
    eta = problem.offset + problem.X @ problem.glm_start()
    rho = np.ones(len(chosen))
    for _ in range(START_ITERATIONS):
        mu = link.inverse(eta)
        w, resid = family.working(problem.y, eta, mu, problem.prior_weights)
        z = eta - problem.offset + resid
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(z))):
            return None
        A = _marginal_cross_products(design, np.hstack([C, z[:, None]]), w, lambdas, others)
        step = _schall_step(A[:-1, :-1], A[:-1, -1], A[-1, -1], group, rho, design.n, 1.0)
        if step is None:
            return None
        new, c = step
        eta = problem.offset + C @ c
        done = np.all(np.abs(np.log(new / rho)) < START_TOLERANCE)
        rho = new
        if done:
            break
    return rho


def _start_columns(design, chosen: list[int]) -> np.ndarray:
    """``[X, Z_j ...]`` of the fixed effects and the chosen terms (dense)."""
    return np.hstack([design.X, *[_dense_term_z(design.terms[i]) for i in chosen]])


def _start_groups(design, chosen: list[int]) -> np.ndarray:
    """The chosen term (0, 1, ...) of each random coefficient of :func:`_start_columns`."""
    sizes = [design.terms[i].n_levels * design.terms[i].z.shape[1] for i in chosen]
    return np.repeat(np.arange(len(chosen)), sizes)


def _schall_step(
    M: np.ndarray,
    r: np.ndarray,
    yy: float,
    group: np.ndarray,
    rho: np.ndarray,
    n: int,
    sigma2: float | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """One Schall update of the blocks' relative variances ``rho`` for the penalized
    least squares ``min |y - C c|^2_V + sum_j |c_j|^2 / rho_j`` given ``M = C' V^-1 C``,
    ``r = C' V^-1 y`` and ``yy = y' V^-1 y`` (the first ``q - group.size`` coefficients
    unpenalized); ``sigma2`` known, or estimated as ``|y - C c|^2_V / (n - sum edf)``.
    Returns the new ``rho`` and the coefficients ``c``, or None when the system is not
    positive definite.  Written with ``D = sqrt(rho)`` so that ``rho`` near 0 needs no
    large penalty."""
    q = M.shape[0]
    p = q - group.size
    low, high = START_BOUNDS[0] ** 2, START_BOUNDS[1] ** 2
    rho = np.clip(rho, low, high)
    D = np.ones(q)
    D[p:] = np.sqrt(rho)[group]
    scaled = D[:, None] * M * D[None, :]  # D M D
    H = scaled.copy()
    H[np.arange(p, q), np.arange(p, q)] += 1.0
    factor, info = sla.lapack.dpotrf(H, lower=1)
    if info != 0:
        return None
    # coefficients (M + P)^-1 r = D H^-1 D r; edf = diag((M + P)^-1 M) = diag(H^-1 D M D)
    solved, info = sla.lapack.dpotrs(factor, np.column_stack([D * r, scaled]), lower=1)
    if info != 0:
        return None
    c = D * solved[:, 0]
    edf = np.diagonal(solved[:, 1:]).copy()
    if sigma2 is None:
        rss = yy - 2 * c @ r + c @ M @ c
        dof = n - edf.sum()
        if not (rss > 0 and dof > 0):
            return None
        sigma2 = rss / dof
    k = int(group.max()) + 1 if group.size else 0
    edf_j = np.bincount(group, weights=edf[p:], minlength=k)
    size_j = np.bincount(group, weights=c[p:] ** 2, minlength=k) / sigma2
    return np.clip(size_j / np.maximum(edf_j, 1e-12), low, high), c


@dataclass(frozen=True)
class _SmoothIndex:
    label: str
    columns: np.ndarray  # positions in the coefficient vector
    random: bool  # fully penalized (no fixed part)
    null_space_dim: int


class SmoothResults:
    """What a fit's smooth terms say: edf, tests, curves (computed once per fit)."""

    def __init__(self, fit):
        if not fit.design.smooths:
            raise ArgumentError("the model has no smooth terms such as s(x)")
        self.fit = fit

    @cached_property
    def coefficients(self) -> _Coefficients:
        return smooth_coefficients(self.fit)

    @cached_property
    def smooths(self) -> list[_SmoothIndex]:
        c = self.coefficients
        out = []
        for layout in self.fit.design.smooths:
            cols = list(layout.fixed_index)
            for i in layout.term_index:
                cols += list(c.smooth_columns[i])
            out.append(
                _SmoothIndex(
                    layout.label,
                    np.array(sorted(cols), dtype=int),
                    layout.function.random,
                    layout.function.null_space_dim,
                )
            )
        return out

    def edf(self) -> pd.Series:
        """Effective degrees of freedom per smooth (gamm4's ``sum(edf[smooth])``)."""
        e = self.coefficients.edf
        return pd.Series({s.label: float(e[s.columns].sum()) for s in self.smooths}, name="edf")

    @cached_property
    def residual_df(self) -> float:
        return float(self.fit.nobs - self.coefficients.edf.sum())

    def table(self) -> pd.DataFrame:
        """mgcv's "Approximate significance of smooth terms": edf, Ref.df, F (Gaussian) or
        Chi.sq, p-value."""
        c = self.coefficients
        R = _square_root(c.xvx)
        rows = {}
        for s in self.smooths:
            edf = float(c.edf[s.columns].sum())
            if s.random:
                stat, pval, rank = self._random_effect_test(s, R)
                stat_alt = stat
            else:
                rdf = self.residual_df if c.scale_estimated else -1.0
                result = wood_test(
                    c.coef[s.columns],
                    R[:, s.columns],
                    c.Vp[np.ix_(s.columns, s.columns)],
                    min(len(s.columns), edf),
                    rdf,
                )
                stat, stat_alt, pval, rank = (
                    result.statistic,
                    result.alternative,
                    result.p_value,
                    result.rank,
                )
            if c.scale_estimated:
                rows[s.label] = (edf, rank, stat / rank, pval, stat_alt / rank)
            else:
                rows[s.label] = (edf, rank, stat, pval, stat_alt)
        name = "F" if c.scale_estimated else "Chi.sq"
        table = pd.DataFrame.from_dict(
            rows, orient="index", columns=["edf", "Ref.df", name, "p-value", "alternative"]
        )
        table.attrs["alternative"] = table.pop("alternative")
        return table

    def _random_effect_test(self, s: _SmoothIndex, R: np.ndarray) -> tuple[float, float, float]:
        """mgcv's ``reTest`` for a fully penalized term: the statistic ``b' Rm' Rm b /
        scale`` with ``Rm`` the factor of the term's unpenalized precision with the other
        smooths treated as random effects, referred to a weighted sum of chi-squares."""
        c = self.coefficients
        p = c.coef.size
        others = np.zeros(p, dtype=bool)
        for t in self.smooths:
            if t.random and t is not s:
                others[t.columns] = True
        pen = self._penalty()  # mgcv's sp * S in the fit's parametrization
        rind = others
        R1, R2 = R[:, ~rind], R[:, rind]
        S1 = np.diag(pen[~rind])
        if rind.any():
            s2 = pen[rind]
            inv = np.where(
                s2 > s2.max() * np.finfo(float).eps ** 0.8, 1 / np.where(s2 > 0, s2, 1), 0
            )
            S2h = np.sqrt(inv)[:, None] * R2.T
            L = np.linalg.cholesky(np.eye(p) + S2h.T @ S2h).T
        else:
            L = np.eye(p)
        LRB = np.vstack([L @ R1, np.diag(np.sqrt(np.diag(S1)))])
        mapped = np.flatnonzero(~rind)
        own = np.searchsorted(mapped, s.columns)
        rest = np.setdiff1d(np.arange(mapped.size), own)
        _, Rq = np.linalg.qr(LRB[:, np.r_[rest, own]])
        Rm = Rq[-own.size :, -own.size :]
        Ve = (L @ R @ c.Vp).T @ (L @ R @ c.Vp) / c.scale
        Ve = (Ve + Ve.T) / 2
        Vs = Ve[np.ix_(s.columns, s.columns)]
        values_v, vectors_v = np.linalg.eigh(Vs)
        B = vectors_v * np.sqrt(np.maximum(values_v, 0))
        d = Rm @ c.coef[s.columns]
        stat = float(d @ d) / c.scale
        ev = np.linalg.eigvalsh((Rm @ B).T @ (Rm @ B) / c.scale)
        ev = np.maximum(ev, 0)
        rank = float(np.sum(ev > ev.max() * np.finfo(float).eps ** 0.8))
        if c.scale_estimated:
            k = max(1, round(self.residual_df))
            pval = prob_weighted_chisq_exceeds(
                0.0, np.r_[ev, -stat / k], np.r_[np.ones(ev.size), k]
            )
        else:
            pval = prob_weighted_chisq_exceeds(stat, ev)
        return stat, pval, rank

    def _penalty(self) -> np.ndarray:
        """The diagonal penalty on the coefficients as mgcv's ``sp * S`` (``scale /
        variance`` per smooth random coefficient, 0 for fixed columns)."""
        c = self.coefficients
        design = self.fit.design
        lambdas = _term_lambdas(design, np.asarray(self.fit.theta, dtype=float))
        pen = np.zeros(c.coef.size)
        for i, cols in c.smooth_columns.items():
            lam = lambdas[i]
            rel = np.tile(np.sum(lam * lam, axis=1), design.terms[i].n_levels)
            pen[cols] = np.where(rel > 0, 1.0 / np.where(rel > 0, rel, 1.0), 1e10)
        return pen

    def fitted_terms(self) -> pd.DataFrame:
        """Each smooth's contribution at the fitted rows."""
        c = self.coefficients
        data = self.fit.design.data
        out = {}
        for layout in self.fit.design.smooths:
            Xs, cols = self._smooth_matrix(layout, data)
            out[layout.label] = Xs @ c.coef[cols]
        return pd.DataFrame(out, index=self.fit.design.row_index)

    # ------------------------------------------------------------------ curves
    def layout(self, name: str):
        """The smooth named ``name``: its label (``s(x)``, ``s(x):fa``) or covariate."""
        layouts = self.fit.design.smooths
        for layout in layouts:
            if layout.label == name:
                return [layout]
        chosen = [ly for ly in layouts if name in ly.function.spec.covariates]
        if not chosen:
            labels = ", ".join(ly.label for ly in layouts)
            raise ArgumentError(f"no smooth of {name!r} in the model (its smooths: {labels})")
        return chosen

    def curve(
        self,
        name: str,
        n: int = 100,
        level: float = 0.95,
        values: dict | None = None,
    ) -> pd.DataFrame:
        """The smooth's contribution on a grid of its covariate with pointwise bands."""
        chosen = self.layout(name)
        c = self.coefficients
        design = self.fit.design
        z = stats.norm.ppf(0.5 + level / 2)
        frames = []
        for layout in chosen:
            function = layout.function
            spec = function.spec
            covariate = next(
                v
                for v in spec.covariates
                if v not in ((function.group_levels is not None and _factor_of(layout)) or ())
            )
            data = design.data
            x_all = np.asarray(data[covariate], dtype=float)
            grid_x = np.linspace(x_all.min(), x_all.max(), n)
            groups = (
                [None] if function.group_levels is None else list(_labels(function.group_levels))
            )
            for group in groups:
                grid = _grid_frame(design, covariate, grid_x, layout, group, values)
                Xs, cols = self._smooth_matrix(layout, grid)
                fit_values = Xs @ c.coef[cols]
                se = np.sqrt(np.einsum("ij,jk,ik->i", Xs, c.Vp[np.ix_(cols, cols)], Xs))
                frame = pd.DataFrame(
                    {
                        "smooth": function.label,
                        covariate: grid_x,
                        "fit": fit_values,
                        "se": se,
                        "lower": fit_values - z * se,
                        "upper": fit_values + z * se,
                    }
                )
                if group is not None:
                    frame.insert(1, _factor_of(layout)[0], group)
                frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def _smooth_matrix(self, layout, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The smooth's columns at ``data`` (centred over the fitted rows for a smooth
        shown centred) and their positions in the coefficients."""
        X, cols = self._raw_smooth_matrix(layout, data)
        if layout.function.centred:
            X = X - self._column_means(layout.label)
        return X, cols

    @cached_property
    def _means(self) -> dict:
        return {}

    def _column_means(self, label: str) -> np.ndarray:
        if label not in self._means:
            layout = next(ly for ly in self.fit.design.smooths if ly.label == label)
            X, _ = self._raw_smooth_matrix(layout, self.fit.design.data)
            self._means[label] = X.mean(axis=0)
        return self._means[label]

    def _raw_smooth_matrix(self, layout, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        c = self.coefficients
        design = self.fit.design
        pieces, cols = [], []
        if layout.fixed_index:
            fixed = layout.function.evaluate_fixed(data)
            names = layout.function.fixed_names
            kept = [design.fixed_names.index(nm) for nm in names if nm in design.fixed_names]
            keep_local = [names.index(nm) for nm in names if nm in design.fixed_names]
            pieces.append(fixed[:, keep_local])
            cols += kept
        for i in layout.term_index:
            term = design.terms[i]
            codes = term.codes_for(data)
            zt = term.builder.build(data)
            full = np.zeros((len(data), term.n_levels * term.z.shape[1]))
            p = zt.shape[1]
            for j in range(p):
                ok = codes >= 0
                full[np.flatnonzero(ok), codes[ok] * p + j] = zt[ok, j]
            pieces.append(full)
            cols += list(c.smooth_columns[i])
        return np.hstack(pieces), np.array(cols, dtype=int)


def _labels(levels: pd.Index) -> list[str]:
    from mixedmodels.design.grouping import level_labels

    return level_labels(levels)


def _factor_of(layout) -> tuple[str, ...]:
    """An fs smooth's grouping column(s)."""
    parts = layout.function.parts
    return parts[0].group_factors if parts else ()


def _grid_frame(design, covariate, grid_x, layout, group, values) -> pd.DataFrame:
    """New data for a curve: the covariate on its grid, the ``by`` level or ``fs`` group,
    other columns at their first value (they do not enter the smooth)."""
    data = design.data
    names = list(layout.function.spec.variables)
    frame = pd.DataFrame({covariate: grid_x})
    for name in names:
        if name == covariate:
            continue
        if name == layout.function.spec.by:
            value = _original_value(data[name], layout.function.by_level)
        elif group is not None and name in _factor_of(layout):
            value = _original_value(data[name], group)
        elif values and name in values:
            value = values[name]
        else:
            value = data[name].iloc[0]
        frame[name] = [value] * len(grid_x)
        if isinstance(data[name].dtype, pd.CategoricalDtype):
            frame[name] = pd.Categorical(frame[name], dtype=data[name].dtype)
    return frame


def _original_value(column: pd.Series, label: str):
    from mixedmodels.design.grouping import value_labels

    labels = value_labels(column)
    idx = np.flatnonzero(labels == label)
    return column.iloc[int(idx[0])]


def _square_root(A: np.ndarray) -> np.ndarray:
    """A square ``R`` with ``R' R = A`` (symmetric positive semi-definite)."""
    values, vectors = sla.eigh((A + A.T) / 2)
    return (vectors * np.sqrt(np.maximum(values, 0))).T


def smooth_table_text(table: pd.DataFrame) -> str:
    """mgcv's printed table ``Approximate significance of smooth terms:``."""
    from mixedmodels.results.lm_summary import format_pvalues, significance_stars

    stat = table.columns[2]
    names = list(table.index)
    cols = [
        ("edf", [f"{v:.3f}" for v in table["edf"]]),
        ("Ref.df", [f"{v:.3f}" for v in table["Ref.df"]]),
        (stat, [f"{v:.3f}" for v in table[stat]]),
        ("p-value", format_pvalues(table["p-value"].to_numpy(), 3)),
    ]
    width = max(len(n) for n in names)
    head = " " * width + "".join(" " + h.rjust(max(len(h), *map(len, v))) for h, v in cols)
    lines = ["Approximate significance of smooth terms:", head]
    stars = significance_stars(table["p-value"].to_numpy())
    for i, name in enumerate(names):
        row = name.ljust(width)
        for h, values in cols:
            row += " " + values[i].rjust(max(len(h), *map(len, values)))
        lines.append(row + " " + stars[i])
    return "\n".join(lines)


class SmoothMethods:
    """Methods of a fit whose formula has smooth terms (``s(x)``, ``t2(x, z)``)."""

    @cached_property
    def _smooths(self) -> SmoothResults:
        return SmoothResults(self)

    def smooth(
        self, name: str, n: int = 100, level: float = 0.95, values: dict | None = None
    ) -> pd.DataFrame:
        """The fitted smooth of covariate (or label) ``name`` on a grid of ``n`` points
        over the data's range, with pointwise ``level`` bands from the Bayesian
        covariance of its coefficients (mgcv's ``plot.gam`` bands): columns ``smooth``,
        the covariate, ``fit``, ``se``, ``lower``, ``upper`` (and the group of an ``fs``
        smooth; one curve per ``by`` level).  ``values`` fixes the other covariate of a
        ``t2`` smooth (default: its first value).

        Raises
        ------
        ArgumentError
            No smooth of ``name``, or a model without smooth terms.
        """
        from mixedmodels.arguments import check_int, check_level

        n = check_int(n, "n", minimum=2)
        level = check_level(level)
        return self._smooths.curve(name, n=n, level=level, values=values)

    def smooth_table(self) -> pd.DataFrame:
        """mgcv's approximate significance of smooth terms: edf, Ref.df, F (Gaussian) or
        Chi.sq, p-value, one row per smooth.  ``attrs["alternative"]`` holds the other of
        the two statistics whose p-values mgcv averages (mgcv prints one of them, which
        depends on its basis' arbitrary signs)."""
        return self._smooths.table()

    @property
    def edf(self) -> pd.Series:
        """Effective degrees of freedom of each smooth (gamm4's)."""
        return self._smooths.edf()

    def smooth_terms(self) -> pd.DataFrame:
        """Each smooth's contribution to the linear predictor at the fitted rows (mgcv's
        ``predict(type = "terms")`` for the smooths)."""
        return self._smooths.fitted_terms()


def smooth_summary_lines(fit) -> list[str]:
    """The summary's smooth section (nothing for a model without smooth terms)."""
    if not fit.design.smooths:
        return []
    table = fit.smooth_table()
    lines = ["", smooth_table_text(table)]
    lines += ["---", "Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"]
    lines.append(
        "(smooths fitted as mixed-model terms, gamm4's way: a smooth's null space is in the "
        "fixed effects as <label>Fx<j>, its penalized part is a random effect whose "
        "variance is the smoothing parameter)"
    )
    return lines
