"""Lindstrom-Bates alternation for nonlinear mixed models, as nlme's ``nlme()`` runs it.

Each iteration has two steps:

1. **LME step.**  Linearize the model at the current ``(beta, b)``: ``X = df/dbeta``,
   ``Z = df/db``, working response ``w = y - f + X beta + Z b``.  Maximize the linear
   mixed model's log-likelihood of ``w`` over the relative covariance factor and the
   parameters of a variance function (:class:`~mixedmodels.core.nonlinear.RowVariance`:
   any of ``mm.var``'s; a fitted-value covariate is the fitted values at the
   linearization point), ``beta`` and ``sigma`` profiled out.
2. **PNLS step.**  With that covariance fixed, minimize the penalized nonlinear least
   squares ``||s (y - f(beta, Lambda u))||^2 + ||u||^2`` over ``beta`` and ``u`` by
   Gauss-Newton with step halving (each Gauss-Newton step is the penalized least squares
   solution of the linearized model).

REML as nlme computes it: nlme's PNLS step re-estimates the random effects' relative
covariance by maximum likelihood at each Gauss-Newton iteration (whatever the method) and
its final linear mixed model keeps that factor, so an nlme REML fit has the fixed effects
and the relative covariance factor of the ML fit; only sigma (``PWRSS / (n - p)``), the
fixed effects' covariance and the log-likelihood (the restricted one) differ.  This module
reproduces that: the alternation runs on ML, the wrap-up evaluates the REML criterion.
With a variance function nlme's REML LME step maximizes the restricted likelihood over the
covariance and the variance parameters jointly and keeps the latter (the PNLS step then
replaces the former by its ML estimate given them), so the variance parameters, and
through them the fixed effects, differ from the ML fit's; the LME step here does the same
(:func:`_lme_step`).

The alternation stops when the relative changes of the fixed effects and of the covariance
parameters between iterations fall below ``tolerance``, or when an LME step stays where it
started after a PNLS step that reached its minimum (the fixed point itself).  Where its last
two changes shrink along one direction it extrapolates the covariance parameters
(:class:`SecantAcceleration`).  nlme uses the same two steps;
it stops at ``tolerance = 1e-5`` with at most 7 Gauss-Newton iterations per PNLS step
(``pnlsTol = 0.001``), so its estimates sit within about that tolerance of the fixed
point that this loop reaches more tightly.  The log-likelihood reported is the linear
mixed model's at the fixed point, as nlme reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mixedmodels.core.nonlinear import (
    Gram,
    KernelDevianceGradient,
    Linearization,
    NonlinearProblem,
    PlsSolution,
    cholesky_groups,
    deviance,
    gauss_newton_step,
    gram,
    ml_deviance_gradient_function,
    ml_deviance_gradient_weighted,
    pls,
    pls_kernels,
    pls_point,
    reml_deviance_gradient_weighted,
    step_size,
    theta_pairs,
)
from mixedmodels.core.nonlinear_modes import search_modes
from mixedmodels.errors import ConvergenceError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.bobyqa import minimize_bounded
from mixedmodels.optim.bounded_newton import _eigh, newton_gradient, newton_polish


@dataclass
class NlmeEstimate:
    """Result of the alternation."""

    beta: np.ndarray
    b: np.ndarray  # (m, q), response units
    theta: np.ndarray
    delta: np.ndarray | None  # the variance function's parameters (the seam's scale)
    sigma: float
    vcov: np.ndarray  # sigma^2 (X'V^-1X)^-1 of the linearized model
    loglik: float
    fitted: np.ndarray  # group-level fitted values
    weights: np.ndarray  # s_j
    iterations: int
    converged: bool
    message: str
    pnls_iterations: list[int] = field(default_factory=list)
    evaluations: int = 0


def _lme_step(
    problem: NonlinearProblem, beta, b, theta, delta, reml, warm=False, lin=None, cache=None,
    keep: dict | None = None,
):
    """Optimize the covariance (and the variance function's parameters) of the model
    linearized at ``(beta, b)`` (``lin``, when the caller has it).

    A fitted-value covariate of the variance function is the fitted values at the
    linearization point (nlme updates it at the start of each alternation).  With
    ``reml`` and a variance function, the variance parameters are nlme's: those of the
    joint maximum of the restricted likelihood; the relative covariance factor is then the
    maximum-likelihood one given them (nlme's PNLS step re-estimates it by ML and keeps
    it).  Returns ``(theta, delta, lin, evaluations)``; without a variance function
    ``keep["gram"]`` (when ``keep`` is given) receives the cross-products of ``lin``
    (unweighted: the same values as with weights 1).
    """
    if lin is None:
        lin = problem.linearize(beta, b)
    _check_finite(lin)
    if problem.n_variance == 0:
        s = problem.row_weights(lin.f, None)
        g = gram(problem, lin, s)
        if keep is not None and s is None:
            keep["gram"] = g
        theta, count = _theta_step(problem, g, theta, warm, cache)
        return theta, None, lin, count
    at = problem.variance.at(lin.f)
    x0, probes = _variance_start(problem, lin, at, theta, delta, warm, reml)
    if reml:
        x, count = _joint_step(problem, lin, at, x0, cache, reml=True)
        delta = x[problem.n_theta:]
        g = gram(problem, lin, at.weights(delta))
        theta, n_theta = _theta_step(problem, g, x[: problem.n_theta], True, None)
        return theta, delta, lin, probes + count + n_theta
    x, count = _joint_step(problem, lin, at, x0, cache)
    return x[: problem.n_theta], x[problem.n_theta:], lin, probes + count


def _theta_step(problem: NonlinearProblem, g0: Gram, theta, warm, cache, settled=False):
    """The ML relative covariance factor of the linearized model with fixed row weights
    (in ``g0``): Newton steps with the analytic gradient, from the last estimate or, on a
    cold start, from the best of a few scalings and the moment estimate; BOBYQA when they
    do not reach an optimum.

    ``settled``: ``theta`` is already where Newton's method (with its probes of the
    bounds) stopped on this linearized model; a cold start then returns it unchanged when
    no other start is better (Newton from it would only reach it again)."""
    nt = problem.n_theta
    lower = problem.theta_lower()
    x0 = np.maximum(np.asarray(theta, dtype=float), lower)
    dev_grad = ml_deviance_gradient_function(g0, problem, problem.n)

    def safe(x):
        try:
            return deviance(pls(g0, problem.lambda_of(x), False), problem.n, problem.p, False)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError("not positive definite") from None

    count = 0
    if not warm:  # a cold start: scale the start first (random effects on the scale of
        # a curve's parameters are often several residual sds: theta = 1 is far off),
        candidates = [scale * x0 for scale in (0.25, 1.0, 4.0, 16.0)]
        # and the moment estimate (CO2's three correlated effects: 59 -> 32 evaluations
        # in the first step)
        moment = moment_theta(problem, g0)
        if moment is not None:
            candidates.append(np.maximum(moment, lower))
        best_value, best_x, best_k = np.inf, x0, -1
        if isinstance(dev_grad, KernelDevianceGradient):
            # (the candidates' deviances in one compiled call: the same values but for
            # the log's last bit, compared only with each other)
            values, defined = dev_grad.deviances(np.array(candidates))
            for k, (value, ok) in enumerate(zip(values.tolist(), defined.tolist(),
                                                strict=True)):
                if ok:
                    count += 1
                    if value < best_value:
                        best_value, best_x, best_k = value, candidates[k], k
        else:
            for k, candidate in enumerate(candidates):
                try:
                    value = safe(candidate)
                except NotPositiveDefiniteError:
                    continue
                count += 1
                if value < best_value:
                    best_value, best_x, best_k = value, candidate, k
        if settled and best_k == 1:  # (candidates[1] is theta itself)
            return x0[:nt], count
        x0 = best_x
    x, n_newton, ok = newton_gradient(dev_grad, x0, lower, cache=cache)
    count += n_newton
    if not ok:
        x, n_fallback = bobyqa_fallback(safe, x0, lower)
        count += n_fallback
    return x[:nt], count



def bobyqa_fallback(safe, x0, lower):
    """BOBYQA from ``x0`` (steps of a fifth of each coordinate, at least 0.05) to tight
    tolerances, then :func:`~mixedmodels.optim.bounded_newton.newton_polish`: the covariance
    step where Newton's method with the analytic gradient did not converge.  Returns the
    point and the evaluations used."""
    step = np.maximum(0.2 * np.abs(x0), 0.05)
    res = minimize_bounded(safe, x0, lower, ftol_abs=1e-12, xtol_abs=1e-10, initial_step=step)
    x, n_polish, _ = newton_polish(safe, res.x, lower)
    return x, res.n_evaluations + n_polish


def _variance_start(problem, lin, at, theta, delta, warm, reml):
    """``(theta, delta)`` to start the joint step from, and the evaluations spent: the
    last estimates, or on a cold start the best (by the step's criterion) of theta's
    scalings combined with the variance function's start and its moment estimate from the
    residuals at the start (Soybean with varPower: the first step takes 34 evaluations,
    115 from theta = 1 and delta = 0)."""
    nt = problem.n_theta
    lower = _joint_lower(problem)
    variance = problem.variance
    start = variance.start() if delta is None else np.asarray(delta, dtype=float)
    x0 = np.maximum(np.append(theta, start), lower)
    if warm:
        return x0, 0
    _check_variance_domain(at, x0[nt:])
    deltas = [x0[nt:]]
    moment = variance.residual_start(problem.y - lin.f, lin.f)
    if moment.shape == x0[nt:].shape and np.all(np.isfinite(moment)):
        deltas.append(moment)
    best_value, best_x = np.inf, x0
    probes = 0
    for d in deltas:
        for scale in (0.25, 1.0, 4.0, 16.0):
            candidate = np.append(scale * x0[:nt], d)
            value = _joint_objective(problem, lin, at, candidate, reml)
            probes += 1
            if value < best_value:
                best_value, best_x = value, candidate
    if not np.isfinite(best_value):
        raise ConvergenceError(
            "the variance function's standard deviations are not finite and positive at "
            "the start (e.g. a power of fitted values that are 0): choose another variance "
            "function or covariate"
        )
    return best_x, probes


def _check_variance_domain(at, delta: np.ndarray) -> None:
    """The variance function must be defined around its start: a power of fitted values
    that are 0 (Theoph's concentrations at time 0) is 1 at power 0 and 0 or infinite at
    any other, where the search could not move and would report power 0."""
    for k in range(delta.size):
        for h in (-0.01, 0.01):
            trial = delta.copy()
            trial[k] += h
            bad = at.n_outside(trial)
            if bad:
                raise ConvergenceError(
                    f"the variance function {at.owner.function!r} has standard deviations "
                    f"that are not finite and positive in {bad} row(s) near its start "
                    "(e.g. a power of fitted values or of a covariate that are 0); choose "
                    "another variance function or covariate"
                )


def _joint_lower(problem: NonlinearProblem) -> np.ndarray:
    return np.append(problem.theta_lower(), np.full(problem.n_variance, -np.inf))


def _joint_objective(problem, lin, at, x, reml) -> float:
    """The (restricted) deviance of the linearized model at ``(theta, delta)``; inf
    outside the domain."""
    nt = problem.n_theta
    try:
        g = gram(problem, lin, at.weights(x[nt:]))
        return deviance(
            pls(g, problem.lambda_of(x[:nt]), False), problem.n, problem.p, reml, g.log_weights
        )
    except np.linalg.LinAlgError:
        return np.inf


REML_STOP = 1e-13


def _joint_step(problem, lin, at, x0, cache, reml=False):
    """ML (or REML) over ``(theta, delta)``: Newton steps with the analytic gradient
    (:func:`~mixedmodels.core.nonlinear.ml_deviance_gradient_weighted`,
    :func:`~mixedmodels.core.nonlinear.reml_deviance_gradient_weighted`), BOBYQA when
    they do not reach an optimum."""
    nt = problem.n_theta
    pairs = theta_pairs(problem.q, problem.diagonal)
    lower = _joint_lower(problem)
    criterion = reml_deviance_gradient_weighted if reml else ml_deviance_gradient_weighted

    # the weights and cross-products of the last delta: the forward differences of the
    # Hessian in theta's coordinates keep delta (Soybean varPower: 3 of each 4)
    last: dict = {}

    def dev_grad(x):
        delta = x[nt:]
        key = delta.tobytes()
        if last.get("key") != key:
            s = at.weights(delta)
            last.update(key=key, s=s, g=gram(problem, lin, s))
        return criterion(
            problem, lin, problem.lambda_of(x[:nt]), last["s"], at.jacobian(delta), pairs,
            last["g"],
        )

    # REML: the variance parameters' curvature can be large (varExp of ages up to 25: 1e4),
    # where a predicted gain of 1e-10 leaves them 1e-5 (relative) off and the alternation's
    # changes do not settle (Loblolly varExp REML: 49 alternations, 16 with 1e-13; the ML
    # cases converge as fast with 1e-10)
    x, count, ok = newton_gradient(dev_grad, x0, lower, cache=cache,
                                   stop=REML_STOP if reml else 1e-10)
    if not ok:
        x, n_fallback = bobyqa_fallback(_raising(problem, lin, at, reml), x0, lower)
        count += n_fallback
    return x, count


def _raising(problem, lin, at, reml):
    """The joint objective raising :class:`NotPositiveDefiniteError` outside the domain
    (as BOBYQA and :func:`newton_polish` expect)."""

    def safe(x):
        value = _joint_objective(problem, lin, at, x, reml)
        if not np.isfinite(value):
            raise NotPositiveDefiniteError("not positive definite")
        return value

    return safe


def _power_slope(v: np.ndarray, r: np.ndarray) -> float | None:
    """The slope of ``log|r|`` on ``log|v|``: a start for a power variance function's
    exponent (``E log|r| = log sigma + delta log|v| + const``), within [-3, 3].  The fits
    now start from the seam's ``Power.residual_start`` (the same slope, within [-5, 5]);
    this one stays for callers of the module."""
    with np.errstate(all="ignore"):
        x, y = np.log(np.abs(v)), np.log(np.abs(r))
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return None
    xc = x[ok] - x[ok].mean()
    sxx = float(xc @ xc)
    if not sxx > 0:
        return None
    return float(np.clip(float(xc @ y[ok]) / sxx, -3.0, 3.0))


try:  # numpy's LAPACK gufuncs behind np.linalg
    from numpy.linalg import _umath_linalg
except ImportError:  # pragma: no cover - a numpy without it
    _umath_linalg = None
if _umath_linalg is not None:
    _solve1, _solve = _umath_linalg.solve1, _umath_linalg.solve
    _inv, _eigvalsh = _umath_linalg.inv, _umath_linalg.eigvalsh_lo
    _cholesky = _umath_linalg.cholesky_lo
    _svd_values = _umath_linalg.svd  # (np.linalg.svd without the vectors)
else:  # pragma: no cover
    _solve1 = _solve = _inv = _eigvalsh = _cholesky = _svd_values = None


_SIGNATURES = {1: "d->d", 2: "dd->d"}


def _lapack(gufunc, fallback, *args):
    """``fallback(*args)`` (np.linalg's ``solve``, ``inv`` or ``eigvalsh``) by the LAPACK
    gufunc it calls on float64 arguments (``gufunc``: the same call, the same values,
    without the wrapper's checks and casts, ~6 us a call): the gufunc's answer where it is
    finite, else the wrapper's own (which raises :class:`numpy.linalg.LinAlgError` where
    LAPACK failed, or gives the same non-finite values).  A failure signals numpy's
    ``invalid``: the caller's ``np.errstate`` says whether that warns (the fits ignore
    it)."""
    if gufunc is not None and all(a.dtype == np.float64 for a in args):
        out = gufunc(*args, signature=_SIGNATURES[len(args)])
        if all(map(math.isfinite, out.ravel().tolist())):
            return out
    return fallback(*args)


def moment_theta(problem: NonlinearProblem, g: Gram) -> np.ndarray | None:
    """Moment estimate of theta from the linearized model's cross products: per group the
    least-squares random effects ``b_i = (Z_i'Z_i)^-1 Z_i'(w - X beta)`` around the pooled
    fit, their covariance less the sampling part ``sigma^2 mean (Z_i'Z_i)^-1``, relative to
    ``sigma^2``; eigenvalues floored so the factor exists.  None when a group cannot
    determine its effects (fewer rows than random effects) or nothing is finite.  Only a
    start: the LME step's optimum does not depend on it."""
    q, m = problem.q, problem.n_groups
    p = g.mtm.shape[0] - 1
    if m < 2 or q == 0:
        return None
    dof = problem.n - p - m * q  # the residuals within groups, after each group's fit
    if dof < 1:
        return None
    if q == 1:
        return _moment_theta_scalar(g, m, p, dof)
    try:
        # (numpy's LAPACK gufuncs behind np.linalg's solve, eigvalsh and inv: the same
        # calls, the same values, without the wrappers' checks: 130 -> 75 us on Orange)
        beta = _lapack(_solve1, np.linalg.solve, g.mtm[:p, :p], g.mtm[:p, p])
        rss = float(g.mtm[p, p] - g.mtm[p, :p] @ beta)
        zz = g.by_group()[0]  # (m, q, q)
        zr = g.ztm[:, :, p] - g.ztm[:, :, :p] @ beta  # (q, m)
        if float(_min(_lapack(_eigvalsh, np.linalg.eigvalsh, zz)[:, 0])) <= 1e-10 * max(
                float(_max(np.abs(zz), axis=None)), 1e-300):
            return None
        b = _lapack(_solve, np.linalg.solve, zz, zr.T[:, :, None])[:, :, 0]  # (m, q)
        # sigma^2 from what the groups' own fits leave (the pooled residuals hold the
        # random effects too)
        sigma2 = (rss - float(_sum(zr.T * b, axis=None))) / dof
        # (np.mean's sum and division by the count without its wrapper: the same bits)
        sampling = sigma2 * (_sum(_lapack(_inv, np.linalg.inv, zz), axis=0) / m)
    except np.linalg.LinAlgError:
        return None
    centred = b - _sum(b, axis=0) / m
    d = centred.T @ centred / (m - 1) - sampling
    if not (sigma2 > 0 and all(map(math.isfinite, d.ravel().tolist()))):
        return None
    d = d / sigma2
    if problem.diagonal:
        floor = 1e-4 * max(float(np.max(np.diag(d))), 1e-8)
        return np.sqrt(np.maximum(np.diag(d), floor))
    values, vectors = _eigh((d + d.T) / 2)
    floor = 1e-4 * max(float(values.max()), 1e-8)
    d = (vectors * np.maximum(values, floor)) @ vectors.T
    return problem.theta_of(_lapack(_cholesky, np.linalg.cholesky, d))


def _moment_theta_scalar(g: Gram, m: int, p: int, dof: int) -> np.ndarray | None:
    """:func:`moment_theta` for one random effect: its 1 x 1 systems by divisions
    (LAPACK's eigenvalue, solution, inverse and Cholesky factor of a 1 x 1 matrix are its
    entry, a quotient, a reciprocal and a square root) and the same reductions over the
    groups, so the same bits in a third of the time (87 -> 30 us on Orange)."""
    try:
        beta = _lapack(_solve1, np.linalg.solve, g.mtm[:p, :p], g.mtm[:p, p])
    except np.linalg.LinAlgError:
        return None
    rss = float(g.mtm[p, p] - g.mtm[p, :p] @ beta)
    zz = g.ztz[0, 0]  # (m,)
    # (the ufuncs' reductions for np.min, max, sum, mean and isfinite's: the same sums)
    if float(_min(zz)) <= 1e-10 * max(float(_max(np.abs(zz))), 1e-300):
        return None
    zr = g.ztm[0, :, p] - g.ztm[:, :, :p] @ beta  # (1, m)
    b = zr.T / zz[:, None]  # (m, 1)
    sigma2 = (rss - float(_sum(zr.T * b, axis=None))) / dof
    sampling = sigma2 * (_sum(1.0 / zz[:, None, None], axis=0) / m)
    centred = b - _sum(b, axis=0) / m
    d = float((centred.T @ centred / (m - 1) - sampling)[0, 0])
    if not (sigma2 > 0 and math.isfinite(d)):
        return None
    d = d / sigma2
    return np.array([math.sqrt(max(d, 1e-4 * max(d, 1e-8)))])


PNLS_EARLY = 3
#: A full Gauss-Newton step whose predicted decrease of the penalized objective is below
#: ``PNLS_PROMISE`` (relative) and which raises the objective by at most ``PNLS_FLAT``
#: (relative: the objective's rounding, ~1e-14 on Loblolly's 84 rows) is taken as it is.
PNLS_PROMISE = 1e-11
PNLS_FLAT = 1e-13
# an early PNLS step goes on past PNLS_EARLY Gauss-Newton steps, up to nlme's pnlsMaxIter
# (7), while its last step still lowered the objective by more than PNLS_EXTEND (relative):
# far from the fixed point three steps can leave PNLS far from its minimum, and the next LME
# step, linearized there, then shrinks a random effect's variance to 0 from which the
# alternation does not return (ChickWeight's logistic from nlme's start Asym = 937: after
# three steps the objective was still falling by half per step; the next LME step set
# sd(Asym) = 0 and Asym ran off to 6e5, "converged")
PNLS_MAX = 7
PNLS_EXTEND = 1e-2


def _lin_objective(problem, lin, u, s, rss: float | None = None) -> float:
    """The penalized objective ``||s (y - f)||^2 + ||u||^2`` at the linearization ``lin``
    (``s`` None: weights 1; ``s * r`` is then ``r``, to the bit); ``rss``: its first term
    (:func:`_weighted_rss`), when the caller has it."""
    if rss is None:
        rss = _weighted_rss(problem, lin, s)
    value = rss + float(_sum(u * u, axis=None))
    return value if math.isfinite(value) else np.inf


def _weighted_rss(problem, lin, s) -> float:
    """``||s (y - f)||^2`` at the linearization ``lin`` (``s`` None: weights 1; ``y - f``
    the linearization's own where it has it)."""
    r = problem.y - lin.f if lin.r is None else lin.r
    if s is not None:
        r = s * r
    return float(r @ r)


#: The relative margin by which :func:`_start_is_better` asks the start to beat the
#: current estimates (the rounding it must cover is ~1e-14).
START_MARGIN = 1e-10


def _start_is_better(problem, start_obj: float, rss: float, b: np.ndarray, lam: np.ndarray
                     ) -> bool:
    """Whether ``start_obj <= _lin_objective(..., _u_of(b, lam), ..., rss)`` holds for sure,
    without LAPACK's least squares: with a diagonal relative factor ``_u_of`` is ``b /
    diag(Lambda)`` to a few units in the last place (dgelsd on a diagonal matrix: scalings
    and reciprocals), so ``||u||^2`` by ``b * (1 / d)`` is within 1e-13 (relative) of its
    value, and a start below the objective with ``||u||^2`` lowered by
    :data:`START_MARGIN` is below the objective itself (the rounding of ``rss + x`` is
    monotone in ``x``).  A diagonal entry 0 (a relative sd on its bound) is lstsq's rank
    cut: its ``u`` is 0.  False (undecided: the caller computes the objective) otherwise,
    and where a diagonal entry is positive but within 1e-14 of the largest (near lstsq's
    rank cut, ``q`` eps relative) or below 1e-150, or the largest is not below 1e150
    (LAPACK's scalings)."""
    if not (lam.shape[0] > 1 and math.isfinite(start_obj)):
        return False
    if not problem.diagonal:
        return _start_is_better_general(start_obj, rss, b, lam)
    d = lam.diagonal().tolist()
    high = max(d)
    if not 0.0 < high < 1e150:
        return False
    floor = max(1e-14 * high, 1e-150)
    if not all(v == 0.0 or v > floor for v in d):
        return False
    u = b * np.array([0.0 if v == 0.0 else 1.0 / v for v in d])
    uu = float(_sum(u * u, axis=None))
    return math.isfinite(uu) and start_obj <= rss + uu * (1.0 - START_MARGIN)


def pnls_step_size(
    dbeta: np.ndarray, du: np.ndarray, beta: np.ndarray, u: np.ndarray
) -> float:
    """A PNLS step's size: the largest change of a fixed effect relative to it (floored at
    1e-5) and of the random effects relative to their largest (floored at 1e-8)
    (:func:`~mixedmodels.core.nonlinear.step_size`)."""
    return step_size(dbeta, du, beta, u)


_max = np.maximum.reduce
_sum = np.add.reduce
_min = np.minimum.reduce


def _pnls(problem: NonlinearProblem, beta, u, lam, s, max_iter=7, tol=1e-15, reweight=None,
          lin=None, obj=None, quiet=False):
    """Penalized nonlinear least squares for a fixed relative factor; Gauss-Newton with
    step halving from ``(beta, u)``.  Each trial point is linearized at once (values and
    gradient in one pass), so an accepted step's linearization serves the next step and,
    at the end, the next LME step.

    ``reweight`` (fitted values -> row weights), when given, renews the weights of a
    fitted-value variance covariate after each accepted step: the alternation's fixed
    point (PNLS optimal at the weights of its own fitted values) is then approached
    inside one PNLS step instead of one alternation per reweighting.  ``lin``: the
    linearization at the start, when the caller has it, and ``obj`` the objective there
    (:func:`_lin_objective`).  ``quiet``: the caller ignores numpy's floating-point
    errors (:meth:`~mixedmodels.core.nonlinear.NonlinearProblem.linearize`)."""
    if lin is None:
        lin = problem.linearize(beta, u @ lam.T, quiet)
    if obj is None:
        obj = _lin_objective(problem, lin, u, s)
    it = 0
    done = False
    relative = np.inf  # the last accepted step's decrease of the objective, relative to it
    while it < max_iter or (it < PNLS_MAX and relative > PNLS_EXTEND):
        it += 1
        # the Gauss-Newton solution, the step to it, the full step's point and the step's
        # sizes from here and from there, in one call
        sol_pwrss, dbeta, du, nb, nu, size, size_next = gauss_newton_step(
            problem, lin, s, lam, beta, u)
        if size < 1e-10:
            # the Gauss-Newton step itself is below the stopping size: at the minimum
            # (halving it down to 1e-10, where rounding hides any decrease, cost 30 model
            # calls: CO2 with Type * Treatment 13 -> 29 linearizations)
            done = True
            break
        # the linearized model promises (almost) nothing: a full step that leaves the
        # objective as it is to its rounding is taken (halving it cannot show a decrease:
        # each halving cost a model call, Loblolly's last two PNLS steps 12 linearizations
        # each), and PNLS stops there (the change is not positive)
        flat = obj - sol_pwrss < PNLS_PROMISE * obj
        factor = 1.0
        while True:
            if factor != 1.0:  # (the full step's point came with the step)
                nb, nu = beta + factor * dbeta, u + factor * du
            trial = problem.linearize(nb, nu @ lam.T, quiet)
            new = _lin_objective(problem, trial, nu, s)
            if new <= obj or factor < 1e-10 or (
                flat and factor == 1.0 and new - obj <= PNLS_FLAT * obj
            ):
                break
            factor /= 2
        if factor < 1e-10:
            done = True  # no decrease along the Gauss-Newton direction: at the minimum
            break
        change = obj - new
        relative = change / max(new, 1e-300)
        beta, u, obj, lin = nb, nu, new, trial
        if reweight is not None:
            s = reweight(lin.f)
            obj = _lin_objective(problem, lin, u, s)
        if factor != 1.0:  # (the full step's size from its point came with the step)
            size_next = pnls_step_size(factor * dbeta, factor * du, beta, u)
        if size_next < 1e-10 or change <= tol * (obj + 1e-300):
            done = True
            break
    return beta, u, it, done, lin


def relative_change(old: np.ndarray, new: np.ndarray, floor: float) -> float:
    """``max |old - new| / max(|new|, floor)``: the alternation's convergence measure (0
    for empty vectors)."""
    if old.size == 0:
        return 0.0
    scale = np.maximum(np.abs(new), floor)
    return float(_max(np.abs(old - new) / scale))


def alternation_change(old: np.ndarray, new: np.ndarray, p: int) -> float:
    """An alternation's change of its parameters ``(beta, theta, ...)``: the larger
    :func:`relative_change` of the ``p`` fixed effects (near 0 measured against 1e-5) and
    of the rest (relative sds in units of sigma and variance parameters, near 0 against
    0.01), as nlme's convergence test."""
    # (a handful of entries: Python's floats, the same IEEE differences, quotients and
    # maxima as numpy's and a quarter of the time; NaN wherever numpy's maxima would pass
    # it on: an entry NaN, or inf - inf, inf / inf)
    largest = 0.0
    for k, (a, b) in enumerate(zip(old.tolist(), new.tolist(), strict=True)):
        floor = 1e-5 if k < p else 1e-2
        scale = abs(b)
        value = abs(a - b) / (scale if scale >= floor else floor)
        if value != value:
            return math.nan
        if value > largest:
            largest = value
    return largest


def singular_step_error(error: np.linalg.LinAlgError) -> ConvergenceError:
    """The package's error for a linear-algebra failure inside an alternation (a model
    whose derivatives in the fixed effects are degenerate at the estimates reached, e.g.
    a logistic curve fitted to a falling response)."""
    return ConvergenceError(
        f"the nonlinear mixed model could not be fitted: {error} at the estimates reached "
        "(the model's derivatives in the fixed effects are degenerate there; check that the "
        "model suits the data and the starting values)"
    )


def fit_lindstrom_bates(
    problem: NonlinearProblem,
    beta0: np.ndarray,
    *,
    theta0: np.ndarray | None = None,
    delta0: np.ndarray | None = None,
    b0: np.ndarray | None = None,
    tolerance: float = 1e-8,
    max_iter: int = 100,
) -> NlmeEstimate:
    """Alternate LME and PNLS steps until the estimates stop moving.

    ``delta0`` starts the variance function's parameters (its own start by default).

    Raises
    ------
    ConvergenceError
        When a step meets a singular system (never a raw :class:`numpy.linalg.LinAlgError`).
    """
    try:
        # numpy's overflow / invalid-value warnings of estimates far out (exp(-k t) at
        # k = -50) are not for the user: non-finite values are caught (_check_finite) and
        # reported as the ConvergenceError that says what to do
        with np.errstate(all="ignore"):
            estimate = _fit_lindstrom_bates(
                problem,
                beta0,
                theta0=theta0,
                delta0=delta0,
                b0=b0,
                tolerance=tolerance,
                max_iter=max_iter,
            )
            for _ in range(MODE_RESTARTS):
                other = _other_basin(problem, estimate, tolerance, max_iter)
                if other is None:
                    other = _off_boundary(problem, estimate, tolerance, max_iter)
                if other is None:
                    break
                estimate = other
            return estimate
    except np.linalg.LinAlgError as error:
        raise singular_step_error(error) from error


MODE_RESTARTS = 2
MODE_APART = 1e-3
MODE_PROBE = 6


def _other_basin(problem: NonlinearProblem, estimate: NlmeEstimate, tolerance, max_iter):
    """A fixed point with a higher log-likelihood where some groups' random effects sit in
    another local minimum of their penalized least squares, or None.

    A group with few rows can have two local minima of ``||y_i - f_i||^2 + ||u_i||^2``
    (ChickWeight's chick 18, two weights falling 39 -> 35 under a rising logistic: random
    (Asym, xmid) = (68, 3.6) or (-149, -4.2)), and the alternation then has one fixed point
    per minimum; which one it reaches depends on its path.  nlme starts every group's
    effects at 0 and follows them; this fit reached the other one from the self-start
    (logLik -2217.524 against nlme's -2216.986, Asym 280.65 against 285.06).  At a
    converged fixed point each group's conditional mode is searched from ``u_i = 0`` (and
    from ``-u_i`` in groups of at most ``q`` rows; fixed effects and covariance held);
    groups that reach a different mode (more than ``MODE_APART`` apart in units of their
    sd) are moved there, the alternation runs again from that state, and its fixed point
    is kept when it converges with a higher log-likelihood (the criterion the fit
    reports).  With one mode per group (all the reference cases) this costs a short
    conditional-mode search (two with groups of at most ``q`` rows); none where the model
    is affine in the parameters with random effects (``problem.random_affine``: each
    group's objective is then a strictly convex quadratic with one minimum; Orange's,
    Loblolly's and CO2's random ``Asym``: 0.3 ms of a 3.5 ms fit).
    """
    if not estimate.converged or problem.q == 0 or problem.random_affine:
        return None
    lam = problem.lambda_of(estimate.theta)
    u_fit = _u_of(estimate.b, lam)
    s = None if problem.variance is None else estimate.weights
    # the search starts from 0 and, for the groups with no more rows than random effects
    # (whose own rows can be fitted exactly along a whole curve of effects, where the
    # penalty leaves several minima), from the fitted modes' mirror image -u (ChickWeight
    # with varPower: from 0 chick 18, two rows, returns to (-175, -6) under the weights of
    # that fit, from -u it reaches (83, 4.7), and the fixed point there is 0.14 higher in
    # logLik).  A few quasi-Newton steps first: where every group is then within
    # MODE_APART of its fitted mode it is in that mode's basin (the 11 reference cases from
    # 0: after 3-6 steps, where the search to its end took 8-12 model evaluations; the
    # search stops at the first step that is so); otherwise the search goes on
    few = np.bincount(problem.groups, minlength=problem.n_groups) <= problem.q
    starts = [np.zeros_like(u_fit)]
    if few.any():
        starts.append(np.where(few[:, None], -u_fit, u_fit))
    best = None
    for start in starts:
        u_start = start
        for steps in (MODE_PROBE, 100):
            # (with a finite PWRSS the modes are finite: some group is more than
            # MODE_APART from its fitted mode exactly where the largest distance is)
            u_start, pwrss, distance = _probe_modes(problem, estimate.beta, lam, u_start,
                                                    steps, s, u_fit, MODE_APART)
            elsewhere = math.isfinite(pwrss) and distance > MODE_APART
            if not elsewhere:
                break
        if not elsewhere:
            continue
        apart = np.max(np.abs(u_start - u_fit), axis=1) > MODE_APART
        u_alt = np.where(apart[:, None], u_start, u_fit)
        try:
            other = _fit_lindstrom_bates(
                problem, estimate.beta, theta0=estimate.theta, delta0=estimate.delta,
                b0=u_alt @ lam.T, tolerance=tolerance, max_iter=max_iter,
            )
        except (ConvergenceError, np.linalg.LinAlgError):
            continue
        if other.converged and other.loglik > (estimate if best is None else best).loglik:
            best = other
    if best is None:
        return None
    best.iterations += estimate.iterations
    best.evaluations += estimate.evaluations
    best.pnls_iterations = estimate.pnls_iterations + best.pnls_iterations
    return best


def _probe_modes(problem: NonlinearProblem, beta, lam, u, max_iter, weights, near, within
                 ) -> tuple[np.ndarray, float, float]:
    """The second-basin check's search: ``conditional_modes(problem, beta, lam, u,
    max_iter, weights, near, within)``'s modes and penalized residual sum of squares, and
    the modes' largest distance from ``near`` (``max |modes - near|``).

    First by one compiled call, the model included
    (:func:`mixedmodels.core.nonlinear_modes.search_modes`: numba's ``exp``, so equal to
    rounding), whose answer is kept where every group ends within ``within`` of ``near``
    or nothing is finite: the check then stops, and the modes themselves are not used.
    Otherwise (a group elsewhere: its modes start another alternation, which must not
    depend on numba's rounding; or no compiled call) :func:`conditional_modes` searches,
    as it did alone (theoph_diag's check 265 -> 40 us)."""
    found = search_modes(problem, beta, lam, u, max_iter, weights, near, within)
    if found is not None and not (math.isfinite(found[1]) and found[2] > within):
        return found
    modes, _, pwrss = conditional_modes(problem, beta, lam, u, max_iter=max_iter,
                                        weights=weights, near=near, within=within)
    return modes, pwrss, float(_max(np.abs(modes - near), axis=None, initial=0.0))


BOUNDARY = 1e-4


def _off_boundary(problem: NonlinearProblem, estimate: NlmeEstimate, tolerance, max_iter):
    """A fixed point with a higher log-likelihood away from a relative sd at 0, or None.

    The LME steps after the first start from the last theta (Newton steps), and a
    diagonal entry of the relative factor on its bound 0 can stay there at a point that
    is no optimum of the linearized model: with a general factor and ``Lambda_11 = 0``
    the entries below it can rotate freely, and leaving the bound along one coordinate
    (the probe of :func:`newton_gradient`) raises the deviance where a joint move lowers
    it.  DNase's ``SSfpl`` with random ``A + B ~ 1 | Run`` from A = 0.5, B = 1, xmid = 0,
    scal = 0.5 converged with theta = (0, 3.04, 0.001) and logLik 354.13; the cold LME
    step (:func:`_theta_step` from the scalings of theta and the moment estimate) at the
    same linearization lowers the deviance from -708.26 to -764.41, and the alternation
    from there reaches 382.214 (nlme: 382.215).  So at a converged fixed point with an
    entry within ``BOUNDARY`` of its bound the cold step is taken at the final
    linearization; when it lowers the ML deviance by more than 1e-6 the alternation runs
    again from its theta and is kept when it converges with a higher log-likelihood.
    Without a variance function only (its joint step is not checked).
    """
    if not estimate.converged or problem.variance is not None:
        return None
    # (as Python floats: the same IEEE comparisons as numpy's, 2 us where numpy's
    # elementwise calls took 10)
    if not any(math.isfinite(low) and t <= low + BOUNDARY for t, low in zip(
            estimate.theta.tolist(), problem.theta_lower().tolist(), strict=True)):
        return None
    g = gram(problem, problem.linearize(estimate.beta, estimate.b))

    def ml_deviance(theta):
        return deviance(pls(g, problem.lambda_of(theta), False), problem.n, problem.p, False)

    try:
        # (the estimate is where the last LME step's Newton steps stopped, at this
        # linearization or, when the alternation stopped on its change, at one within the
        # tolerance of it: only a better start can lead elsewhere; Soybean with three
        # diagonal effects, sd(scal) = 0: 9 evaluations fewer)
        cold, _ = _theta_step(problem, g, estimate.theta, False, None, settled=True)
        if np.array_equal(cold, estimate.theta) or not (
            ml_deviance(cold) < ml_deviance(estimate.theta) - 1e-6
        ):
            return None
        other = _fit_lindstrom_bates(
            problem, estimate.beta, theta0=cold, delta0=None, b0=estimate.b,
            tolerance=tolerance, max_iter=max_iter,
        )
    except (ConvergenceError, np.linalg.LinAlgError):
        return None
    if not (other.converged and other.loglik > estimate.loglik):
        return None
    other.iterations += estimate.iterations
    other.evaluations += estimate.evaluations
    other.pnls_iterations = estimate.pnls_iterations + other.pnls_iterations
    return other


class SecantAcceleration:
    """Extrapolation of the alternation's covariance parameters from its last two
    alternations.

    The alternation is a fixed-point iteration ``x -> G(x)`` on ``x = (theta, delta)``
    (the PNLS step at ``x``, then the LME step at its linearization) that converges
    linearly: each alternation shrinks the change by a steady factor (0.07-0.11 on Orange
    with two effects, Theoph, CO2).  From the residuals ``f_k = G(x_k) - x_k`` of the last
    two alternations the next point is the secant (Anderson, one difference) step

    ``gamma = f_k'(f_k - f_k-1) / |f_k - f_k-1|^2``,
    ``x_k+1 = G(x_k) - gamma (G(x_k) - G(x_k-1))``,

    in the scaled coordinates of :func:`alternation_change` (``|x|`` floored at 0.01).
    Along one direction with ``f_k = r f_k-1`` it is Aitken's extrapolation
    ``G(x_k) + r / (1 - r) f_k``, which lands on the fixed point of a linear map.  It is
    taken only where that model holds: ``f_k`` within ``ALIGNED`` (cosine) of the secant's
    direction, a rate ``r = gamma / (gamma - 1)`` within (-0.5, 0.5), a residual between
    ``ACCELERATE_ABOVE`` (below it the LME step's own accuracy, ~1e-5, dominates the
    residual) and ``ACCELERATE_BELOW`` (far from the fixed point the map is not linear),
    no parameter past its lower bound and none within ``BOUNDARY`` of it in the last two
    alternations unless it stayed on it (where the LME step's active set changes, the map
    is not smooth; ChickWeight from Asym = 937 with the early PNLS steps capped: an
    extrapolation as a relative sd left 0 ended in a singular system); otherwise
    ``x_k+1 = G(x_k)``.
    """

    ALIGNED = 0.99
    ACCELERATE_ABOVE = 1e-4
    ACCELERATE_BELOW = 0.1

    def __init__(self, lower: np.ndarray):
        self.lower = np.asarray(lower, dtype=float)
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        self.extrapolated = False

    def next(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The point for the next PNLS step after the LME step gave ``g = G(x)``."""
        last, self.last = self.last, (x, g)
        self.extrapolated = False
        if last is None:
            return g
        if not self.ACCELERATE_ABOVE <= _residual_size(x, g) <= self.ACCELERATE_BELOW:
            return g
        # (a handful of entries: Python's comparisons of the same floats)
        columns = zip(last[0].tolist(), last[1].tolist(), x.tolist(), g.tolist(),
                      self.lower.tolist(), strict=True)
        for *points, lower in columns:
            near = lower + BOUNDARY
            if any(v < near for v in points) and not all(v == lower for v in points):
                return g  # a parameter at (or about to leave, or reach) its bound
        scale = 1.0 / np.maximum(np.abs(g), 1e-2)
        f = (g - x) * scale
        d_f = f - (last[1] - last[0]) * scale
        dd, fd = float(d_f @ d_f), float(f @ d_f)
        if not (dd > 0 and abs(fd) > self.ALIGNED * math.sqrt(dd * float(f @ f))):
            return g
        gamma = fd / dd
        if not -0.5 < gamma / (gamma - 1.0) < 0.5:  # (gamma = 1 only where d_f = f_k-1 = 0)
            return g
        trial = g - gamma * (g - last[1])
        if not (np.isfinite(trial).all() and (trial >= self.lower).all()):
            return g
        self.extrapolated = True
        return trial


def _residual_size(x: np.ndarray, g: np.ndarray) -> float:
    """``max |g - x| / max(|g|, 0.01)`` (:class:`SecantAcceleration`'s residual size) by
    Python's floats (a handful of entries: the same IEEE operations as numpy's); NaN
    where an entry is not finite (numpy's gives NaN or inf there: outside any range)."""
    size = 0.0
    for a, b in zip(x.tolist(), g.tolist(), strict=True):
        if not (math.isfinite(a) and math.isfinite(b)):
            return math.nan
        scale = abs(b)
        value = abs((b - a) * (1.0 / (scale if scale >= 1e-2 else 1e-2)))
        if value > size:
            size = value
    return size


def _start_is_better_general(start_obj: float, rss: float, b: np.ndarray, lam: np.ndarray
                             ) -> bool:
    """:func:`_start_is_better` with a general 2 x 2 factor ``[[a, 0], [c, d]]``
    (``a, d > 0``): ``u`` by forward substitution, whose error, like lstsq's, is within
    a few ``cond(Lambda) eps`` of ``u`` (relative, group by group), so ``||u||^2`` is
    within ``1e3 cond eps`` of lstsq's (``cond`` in closed form: ``sigma_max^2 =
    (s + sqrt(s^2 - 4 a^2 d^2)) / 2``, ``s = a^2 + c^2 + d^2``, ``sigma_max sigma_min =
    a d``); undecided (False) for a larger ``q``, an entry on its bound, or ``cond``
    above 1e8."""
    if lam.shape != (2, 2):
        return False
    (a, _), (c, d) = lam.tolist()
    if not (0.0 < a < 1e150 and 0.0 < d < 1e150 and abs(c) < 1e150):
        return False
    s = a * a + c * c + d * d
    det = a * d
    top = (s + math.sqrt(max(s * s - 4.0 * det * det, 0.0))) / 2.0
    cond = top / det
    if not cond < 1e8:
        return False
    u0 = b[:, 0] / a
    u1 = (b[:, 1] - c * u0) / d
    uu = float(u0 @ u0) + float(u1 @ u1)
    margin = START_MARGIN + 1e3 * cond * _EPS
    return math.isfinite(uu) and start_obj <= rss + uu * (1.0 - margin)


_EPS = float(np.finfo(float).eps)


def _fit_lindstrom_bates(
    problem: NonlinearProblem,
    beta0: np.ndarray,
    *,
    theta0: np.ndarray | None,
    delta0: np.ndarray | None,
    b0: np.ndarray | None,
    tolerance: float,
    max_iter: int,
) -> NlmeEstimate:
    beta = np.asarray(beta0, dtype=float).copy()
    b = np.zeros((problem.n_groups, problem.q)) if b0 is None else b0.copy()
    theta = np.ones(problem.n_theta) if theta0 is None else theta0.copy()
    if theta0 is None and not problem.diagonal:
        theta = problem.theta_of(np.eye(problem.q))
    delta = None
    if problem.variance is not None:
        delta = problem.variance.start() if delta0 is None else np.atleast_1d(
            np.asarray(delta0, dtype=float)).copy()
    converged = False
    pnls_counts = []
    evaluations = 0
    it = 0
    change = np.inf
    pnls_done = False
    last_lin = None
    hessian_cache: dict = {}
    kept: dict = {}
    accelerate = SecantAcceleration(_joint_lower(problem))
    message = "maximum number of iterations reached"
    new = _parameters(beta, theta, delta)
    while it < max_iter:
        it += 1
        old = new  # (the parameters at the end of the last alternation, or the start)
        theta, delta_new, lin, n_eval = _lme_step(
            problem, beta, b, theta, delta, problem.reml, warm=it > 1, lin=last_lin,
            cache=hessian_cache, keep=kept,
        )
        evaluations += n_eval
        if delta_new is not None:
            delta = delta_new
        reached = _parameters(_EMPTY, theta, delta)
        # (np.array_equal of a handful of floats by Python's ==: the same comparisons)
        if pnls_done and old[beta.size:].tolist() == reached.tolist():
            # the LME step stays where it started and the last PNLS step reached its
            # minimum: the alternation is at its fixed point (another PNLS step from there
            # would only continue the last one's Gauss-Newton tail, by 1e-10-1e-8)
            converged = True
            message = "converged"
            break
        if it > 1:  # (the first LME step's linearization is the start's, not a PNLS's)
            x = accelerate.next(old[beta.size:], reached)
            theta = x[: problem.n_theta]
            if delta is not None:
                delta = x[problem.n_theta:]
        lam = problem.lambda_of(theta)
        # the weights stay those of the LME step's fitted values through the PNLS step
        # (None without a variance function: weights 1, whose products are exact)
        s = problem.row_weights(lin.f, delta)
        # (without a variance function the LME step's cross-products of ``lin`` are those
        # with weights 1)
        g = kept.pop("gram", None) if s is None else None
        # start PNLS at the LME step's solution of the linearized model
        beta_start, u_start = pls_point(gram(problem, lin, s) if g is None else g, lam)
        # ... unless the current estimates are the better start: the linearized model's
        # solution can jump far (a variance near 0: the expression model of
        # tests/reference/nlmecheck from k = 1 went to k = -8.85, where exp(-k t) ~ 1e46
        # overflowed the cross-products); PNLS then starts where it is
        # (the start's linearization and objective serve PNLS's first step)
        start_lin = problem.linearize(beta_start, u_start @ lam.T, True)
        start_obj = _lin_objective(problem, start_lin, u_start, s)
        # (the model's values at the current estimates are the last PNLS step's, or in
        # the first alternation the LME step's linearization's)
        rss = _weighted_rss(problem, lin if last_lin is None else last_lin, s)
        if not _start_is_better(problem, start_obj, rss, b, lam):
            u_here = _u_of(b, lam)
            if not start_obj <= _lin_objective(problem, None, u_here, s, rss):
                beta_start, u_start, start_lin, start_obj = beta, u_here, None, None
        # far from the fixed point the covariance still moves: a few Gauss-Newton steps
        # per alternation do (nlme allows 7 with a loose tolerance); near it, to the end
        cap = PNLS_EARLY if change > 1e-3 else 50
        reweight = None
        if cap > PNLS_EARLY and problem.variance is not None and problem.variance.uses_fitted:
            # near the fixed point the weights follow the fitted values inside PNLS (where
            # they change by less than the estimates do): Soybean varPower 15 -> 10
            # alternations, the same fixed point
            def reweight(f, delta=delta):
                return problem.row_weights(f, delta)
        beta, u, n_pnls, pnls_done, last_lin = _pnls(
            problem, beta_start, u_start, lam, s, max_iter=cap, reweight=reweight,
            lin=start_lin, obj=start_obj, quiet=True,
        )
        pnls_counts.append(n_pnls)
        b = u @ lam.T
        new = _parameters(beta, theta, delta)
        change = alternation_change(old, new, beta.size)
        if change <= tolerance and pnls_done and not accelerate.extrapolated:
            converged = True
            message = "converged"
            break
    if not np.all(np.isfinite(beta)):
        raise ConvergenceError("the nonlinear mixed model's estimates are not finite")
    return _wrap_up(
        problem, beta, b, theta, delta, it, converged, message, pnls_counts, evaluations,
        lin=last_lin,
    )


_EMPTY = np.empty(0)


def _parameters(beta, theta, delta) -> np.ndarray:
    """The alternation's parameters whose changes decide convergence."""
    # (a tuple of arrays: without the conversion of an empty list)
    return np.concatenate((beta, theta) if delta is None else (beta, theta, delta))


def _check_finite(lin) -> None:
    """Nothing non-finite reaches the optimizer: a model or gradient that is not finite at
    the current estimates is an error naming how many rows."""
    module = pls_kernels()
    if module is not None:  # (one compiled pass: 2.9 -> 1 us)
        if module.all_finite(lin.f.reshape(-1), lin.x.reshape(-1), lin.z.reshape(-1)):
            return
    # (a finite sum: every entry finite; only then is each array searched for the rows)
    elif math.isfinite(float(_sum(lin.f, axis=None)) + float(_sum(lin.x, axis=None))
                       + float(_sum(lin.z, axis=None))):
        return
    raise_non_finite_rows((("values", lin.f), ("gradient", lin.x), ("gradient", lin.z)),
                          len(lin.f))


def raise_non_finite_rows(arrays, n: int) -> None:
    """Raise :class:`ConvergenceError` naming the first of ``(what, array)`` (each with
    ``n`` rows) that has a non-finite entry, how many rows and the first row; nothing
    when all are finite.  The one check of the one-level and the nested alternation."""
    for what, values in arrays:
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(n, -1).any(axis=1))
            raise ConvergenceError(
                f"the model's {what} are not finite at the current estimates in "
                f"{rows.size} row(s) (first: row {int(rows[0])}); check the starting values "
                "and the model's domain (log of negatives, division by zero)"
            )


def _u_of(b: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``u`` with ``b = u Lambda'``: ``np.linalg.lstsq(lam, b.T, rcond=None)[0].T`` (the
    minimum-norm solution where ``Lambda`` is singular).  By numpy's LAPACK gufunc behind
    ``lstsq`` with lstsq's own ``rcond`` where the arguments are float64 and not empty
    (the same call, the same bits, without the wrapper's checks and casts: 12 -> 5 us);
    numpy's ``lstsq`` itself otherwise and where the gufunc's answer is not finite (so a
    LAPACK failure raises there, as before)."""
    q = lam.shape[0]
    if q == 1 and lam.shape == (1, 1) and lam.dtype == np.float64 and b.dtype == np.float64:
        # one random effect: LAPACK's dgelsd solves the 1 x 1 system as ``b * (1 / d)``
        # (its QR and bidiagonal reflectors of one entry are identities and dlalsd scales
        # the right-hand side by dlascl's ``1 / d``) where ``d`` and ``b`` need none of its
        # scalings: the same bits without the call (10 -> 2.5 us)
        d = float(lam[0, 0])
        top = float(_max(np.abs(b), axis=None, initial=0.0))
        if _SAFE < abs(d) < 1 / _SAFE and (top == 0.0 or _SAFE < top < 1 / _SAFE):
            return b * (1.0 / d)
    if (_umath_linalg is not None and q and b.shape[0] and lam.ndim == 2
            and lam.shape[1] == q and lam.dtype == np.float64 and b.dtype == np.float64):
        x = _umath_linalg.lstsq(lam, b.T, _LSTSQ_RCOND * q, signature="ddd->ddid")[0]
        if all(map(math.isfinite, x.ravel().tolist())):
            return x.T
    return np.linalg.lstsq(lam, b.T, rcond=None)[0].T


_LSTSQ_RCOND = float(np.finfo(float).eps)  # (lstsq's default: eps max(M, N), M = N = q)
_SAFE = 1e-280  # (well inside LAPACK's unscaled range, [1e-292, 1e292])


COLLINEAR = 1e12
#: Where the bound on the condition number decides alone (:func:`_collinear_fixed_effects`).
COLLINEAR_BOUND = 1e-4 * COLLINEAR


def _collinear_fixed_effects(vcov: np.ndarray, precision: np.ndarray | None = None,
                             scale: float = 1.0) -> str | None:
    """Why a fixed point is no estimate, or None: the fixed effects' correlation matrix has
    a condition number above ``COLLINEAR`` (the model's derivatives in the fixed effects
    are collinear to within rounding there, so the relative changes that stop the
    alternation say nothing).  A logistic whose midpoint ran far past the data is an
    exponential ``Asym exp((t - xmid) / scal)`` that only fixes ``Asym exp(-xmid / scal)``:
    ChickWeight from Asym = 937 stopped at Asym = 6e5, xmid = 408 with SEs of 1e17 and a
    condition number of 5e15 (the reference cases: 3.5 to 48).

    With ``precision / scale``, ``vcov``'s inverse (to rounding: ``vcov`` is ``scale
    inv(precision)``), a bound decides first without the singular values: the correlation
    matrix ``C`` (unit diagonal, ``p x p``) has ``lambda_max <= trace C = p`` and
    ``lambda_min >= 1 / trace C^-1``, and ``C^-1 = D V^-1 D`` (``D`` the standard
    errors), so ``cond C <= p sum_k V_kk (V^-1)_kk``.  Where that bound is at most
    ``COLLINEAR_BOUND`` (1e-4 of ``COLLINEAR``: room for the rounding of ``inv``, whose
    relative error is of the order of the scaled condition number times 1e-16) the answer
    is None, the exact condition number's answer; otherwise that number decides and is
    reported (3 us where the singular values cost 13 us a fit).
    """
    if precision is not None and vcov.shape[0] >= 2:
        # (diagonals as Python floats: a finite, positive sum and bound decide)
        v = vcov.diagonal().tolist()
        a = precision.diagonal().tolist()
        if all(map(math.isfinite, vcov.ravel().tolist())) and min(v) > 0 and scale > 0:
            bound = len(v) * math.fsum(x * y for x, y in zip(v, a, strict=True)) / scale
            if 0 < bound <= COLLINEAR_BOUND:
                return None
    sd = np.sqrt(np.diag(vcov))
    if vcov.shape[0] < 2 or not np.all(np.isfinite(vcov)) or not np.all(sd > 0):
        return None if np.all(np.isfinite(vcov)) else "the fixed effects' covariance is not finite"
    corr = vcov / np.outer(sd, sd)
    # (np.linalg.cond's ``s[0] / s[-1]`` of the singular values by its LAPACK gufunc, the
    # same values; np.linalg.cond itself where they are not finite and positive)
    values = None if _svd_values is None else _svd_values(corr, signature="d->d").tolist()
    if values and all(map(math.isfinite, values)) and values[-1] > 0:
        condition = values[0] / values[-1]
    else:
        condition = float(np.linalg.cond(corr))
    if condition <= COLLINEAR:
        return None
    return (
        f"the fixed effects are not determined at the estimates reached (the condition number "
        f"of their correlation matrix is {condition:.1e}: the model's derivatives in them are "
        "collinear there, e.g. a curve's midpoint far outside the data); try other starting "
        "values"
    )


_NO_INDEX = np.zeros(0, dtype=np.int64)


def _final_solution(problem: NonlinearProblem, lin: Linearization, s: np.ndarray | None,
                    lam: np.ndarray) -> PlsSolution:
    """``pls(gram(problem, lin, s), lam, modes=False)``: the linear mixed model's solution
    at the last linearization without the modes (the wrap-up needs its PWRSS, log
    determinants and reduced system).  When numba loads, the two kernels in one call
    (``gram_pls``: ``gram_groups`` then ``pls_groups``, the kernels :func:`gram` and
    :func:`pls` call, with the same arguments: the same bits; 12 -> 5 us)."""
    module = pls_kernels()
    if module is None:
        return pls(gram(problem, lin, s), lam, False)
    z, x = lin.z, lin.x
    q = z.shape[1]
    k = x.shape[1] + 1
    p = k - 1
    m = problem.n_groups
    beta, reduced, rx = np.empty(p), np.empty((k, k)), np.empty((p, p))
    status, logdet_l, pwrss = module.gram_pls(
        z, x, lin.w, _EMPTY if s is None else s, s is not None, problem._groups64,
        np.ascontiguousarray(lam, dtype=float), np.empty((m, q, q)), np.empty((m, q, k)),
        np.empty((q, q, m)), np.empty((q, m, k)), np.empty((k, k)), False, False, _NO_INDEX,
        _NO_INDEX, 0, beta, np.empty((0, q)), reduced, rx, _EMPTY, np.empty((m, q, q)),
    )
    if status:
        raise np.linalg.LinAlgError("not positive definite")
    return PlsSolution(beta, None, max(pwrss, 0.0), logdet_l, rx, reduced[:p, :p].copy())


def _wrap_up(problem, beta, b, theta, delta, it, converged, message, pnls_counts, evaluations,
             lin=None):
    """nlme's final step: the linear mixed model at the last linearization (``lin``, the
    last PNLS step's at ``(beta, b)``, when the caller has it)."""
    if lin is None:
        lin = problem.linearize(beta, b)
    s = problem.row_weights(lin.f, delta)
    sol = _final_solution(problem, lin, s, problem.lambda_of(theta))
    n = problem.y.size
    log_weights = 0.0 if s is None else float(np.log(s).sum())  # (as gram's)
    s = np.ones(n) if s is None else s
    p = problem.column_parameter.size  # (problem.p: the fixed designs' columns)
    dev = deviance(sol, n, p, problem.reml, log_weights)
    sigma2 = sol.pwrss / (n - p if problem.reml else n)
    vcov = sigma2 * _lapack(_inv, np.linalg.inv, sol.xtx_reduced)
    collinear = _collinear_fixed_effects(vcov, sol.xtx_reduced, sigma2)
    if converged and collinear is not None:
        converged, message = False, collinear
    return NlmeEstimate(
        beta=beta,
        b=b,
        theta=theta,
        delta=delta,
        sigma=float(np.sqrt(sigma2)),
        vcov=vcov,
        loglik=-dev / 2,
        fitted=lin.f,
        weights=s,
        iterations=it,
        converged=converged,
        message=message,
        pnls_iterations=pnls_counts,
        evaluations=evaluations,
    )


# ------------------------------------------------------------------------ Laplace


def conditional_modes(problem: NonlinearProblem, beta, lam, u, max_iter: int = 100,
                      weights=None, near: np.ndarray | None = None, within: float = 0.0):
    """The random effects' conditional modes for fixed ``beta`` and relative factor:
    ``min_u g_i(u_i) = ||y_i - f_i(beta, Lambda u_i)||^2 + ||u_i||^2`` for every group ``i``
    (the groups are independent; one vectorized step serves all); with row ``weights``
    ``s`` (a variance function's, held fixed as in a PNLS step) ``||s_i (y_i - f_i)||^2``.

    The first step is Gauss-Newton's (``H_i = I + Lambda' Z_i'Z_i Lambda``, half the
    Gauss-Newton Hessian of ``g_i``); later ones are quasi-Newton: each group's ``H_i`` is
    updated by BFGS from the change of its gradient ``u_i - Lambda' Z_i' r_i``, so the
    convergence is superlinear where Gauss-Newton's is linear (large residuals: Theoph
    with a random ``lKa`` stopped after 50 Gauss-Newton steps 6e-4 short of the minimum in
    ``sum g_i``, and the Laplace fit 0.017 short in logLik).  Each group halves its own
    step until ``g_i`` does not increase; a group whose step is below ``1e-10 max|u|``
    stays where it is, and the iteration stops when every step is (at most ``max_iter``).

    With ``near``, the iteration also stops after the first step that brings every group
    within ``within`` (in every coordinate) of ``near``'s row (the second-basin check's
    question answered: 2-3 of its 6 steps fewer on CO2, Soybean, Orange with two effects).

    Returns ``u``, the linearization there and the penalized residual sum of squares.

    With ``near`` (the second-basin check: the search only has to tell basins apart) the
    groups' algebra runs in compiled kernels when numba loads (:func:`_compiled_modes`:
    the same steps, equal to rounding) and its answer is kept when every group ends within
    ``within`` of ``near`` (or nothing is finite): the check then stops there.  When a
    group ends elsewhere, numpy's search from the same start gives the modes (they start
    another alternation, which must not depend on rounding: ChickWeight with varPower's
    second basin moved 4e-9 in logLik from the compiled modes).  The check itself first
    asks :func:`_probe_modes` (the whole search in one compiled call) and calls this only
    where that finds a group elsewhere or is not available.
    """
    if near is not None:
        module = pls_kernels()
        if module is not None:
            found = _compiled_modes(module, problem, beta, lam, u, max_iter, weights, near,
                                    within)
            if not (math.isfinite(found[2]) and _max(
                    np.abs(found[0] - near), axis=None, initial=0.0) > within):
                return found
    y, groups, e = problem.y, problem.groups, problem.indicator
    m, q = u.shape
    eye = np.eye(q)

    def evaluate(at: np.ndarray):
        lin = problem.linearize(beta, at @ lam.T)
        r = y - lin.f if weights is None else weights * (y - lin.f)
        rss = np.bincount(groups, r * r, minlength=m) + np.einsum("mq,mq->m", at, at)
        rss = np.where(np.isfinite(rss), rss, np.inf)
        z = lin.z if weights is None else lin.z * weights[:, None]
        zr = np.asarray(e @ (z * r[:, None]))  # (m, q): Z_i' r_i
        return lin, rss, at - zr @ lam

    def gauss_newton(lin) -> np.ndarray:
        z = lin.z if weights is None else lin.z * weights[:, None]
        ztz = np.asarray(e @ (z[:, :, None] * z[:, None, :]).reshape(-1, q * q))
        return eye + lam.T @ ztz.reshape(m, q, q) @ lam

    lin, g, grad = evaluate(u)
    if not np.all(np.isfinite(g)):
        return u, lin, np.inf
    hess = gauss_newton(lin)
    for _ in range(max_iter):
        step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        size = _max(np.abs(step), axis=1)
        small = size < 1e-10 * max(_max(np.abs(u), axis=None, initial=0.0), 1e-8)
        if small.all():
            break
        step[small] = 0.0
        factor = np.ones(m)
        while True:
            trial = u + factor[:, None] * step
            t_lin, t_g, t_grad = evaluate(trial)
            # near the minimum the decrease a step promises is below the rounding of g_i
            # (1e-16 relative): there the step is taken as it is
            promise = np.abs(np.einsum("mq,mq->m", grad, step)) * factor
            worse = ~((t_g <= g) | (promise < 1e-11 * g))
            if not worse.any() or factor[worse].max() < 1e-10:
                break
            factor[worse] /= 2
        moved = ~worse
        if worse.any():  # a group that could not decrease stays: back to the old point
            trial = np.where(moved[:, None], trial, u)
            t_lin, t_g, t_grad = evaluate(trial)
        s = trial - u
        change = t_grad - grad
        curvature = np.einsum("mq,mq->m", s, change)
        hs = np.einsum("mij,mj->mi", hess, s)
        bending = np.einsum("mq,mq->m", s, hs)
        update = moved & (curvature > 1e-12 * np.maximum(np.abs(bending), 1e-300)) & (bending > 0)
        if update.any():
            c = np.where(update, curvature, 1.0)[:, None, None]
            b = np.where(update, bending, 1.0)[:, None, None]
            delta = (
                change[:, :, None] * change[:, None, :] / c - hs[:, :, None] * hs[:, None, :] / b
            )
            hess = hess + np.where(update[:, None, None], delta, 0.0)
        u, lin, g, grad = trial, t_lin, t_g, t_grad
        # no stop on a small gain in sum g_i: that is second order in the modes' error,
        # while the Laplace criterion's log|A| is first order in it (Theoph: modes 1.7e-8
        # apart moved the deviance by 1e-8)
        if _max(np.abs(s), axis=None, initial=0.0) < 1e-10 * max(
                _max(np.abs(u), axis=None, initial=0.0), 1e-8):
            break
        if near is not None and _max(np.abs(u - near), axis=None, initial=0.0) <= within:
            break
    return u, lin, float(g.sum())


_NO_BLOCKS = np.zeros((0, 0, 0))


def _compiled_modes(module, problem: NonlinearProblem, beta, lam, u, max_iter, weights, near,
                    within):
    """:func:`conditional_modes` with each group's objective, gradient, quasi-Newton step,
    step halving and BFGS update by the kernels of
    :mod:`mixedmodels.core.nonlinear_kernels` (``mode_*``: the same formulas one group
    after the other, so the same steps to rounding); the model by the problem's
    linearization."""
    y, groups = problem._y_kernel, problem._groups64
    m, q = u.shape
    lam = np.ascontiguousarray(lam, dtype=float)
    s = _EMPTY if weights is None else np.ascontiguousarray(weights, dtype=float)
    weighted = weights is not None

    def evaluate(at: np.ndarray, ztz: np.ndarray = _NO_BLOCKS):
        lin = problem.linearize(beta, at @ lam.T)
        g, grad = np.empty(m), np.empty((m, q))
        module.mode_terms(y, lin.f, np.ascontiguousarray(lin.z), s, weighted, groups, at,
                          lam, g, grad, ztz)
        return lin, g, grad

    u = np.ascontiguousarray(u, dtype=float)
    ztz = np.empty((m, q, q))
    lin, g, grad = evaluate(u, ztz)
    if not all(map(math.isfinite, g.tolist())):
        return u, lin, np.inf
    hess = np.empty((m, q, q))
    module.mode_hessian(ztz, lam, hess)
    step = np.empty((m, q))
    worse = np.zeros(m, dtype=np.bool_)
    for _ in range(max_iter):
        status = module.mode_step(hess, grad, u, step)
        if status < 0:
            raise np.linalg.LinAlgError("Singular matrix")
        if status:
            break
        factor = np.ones(m)
        while True:
            trial = u + factor[:, None] * step
            t_lin, t_g, t_grad = evaluate(trial)
            if module.mode_worse(grad, step, factor, g, t_g, worse):
                break
        if worse.any():  # a group that could not decrease stays: back to the old point
            moved = ~worse
            trial = np.where(moved[:, None], trial, u)
            t_lin, t_g, t_grad = evaluate(trial)
        else:
            moved = np.ones(m, dtype=np.bool_)
        taken = trial - u
        module.mode_bfgs(hess, taken, t_grad - grad, moved)
        u, lin, g, grad = trial, t_lin, t_g, t_grad
        if _max(np.abs(taken), axis=None, initial=0.0) < 1e-10 * max(
                _max(np.abs(u), axis=None, initial=0.0), 1e-8):
            break
        if _max(np.abs(u - near), axis=None, initial=0.0) <= within:
            break
    return u, lin, float(g.sum())


_EMPTY = np.zeros(0)


def fit_laplace(problem: NonlinearProblem, start: NlmeEstimate) -> NlmeEstimate:
    """:func:`_fit_laplace`, a singular system reported as a :class:`ConvergenceError`."""
    try:
        with np.errstate(all="ignore"):  # as fit_lindstrom_bates
            return _fit_laplace(problem, start)
    except np.linalg.LinAlgError as error:
        raise singular_step_error(error) from error


def _fit_laplace(problem: NonlinearProblem, start: NlmeEstimate) -> NlmeEstimate:
    """Maximize the Laplace approximation of the marginal likelihood over the covariance
    parameters and the fixed effects jointly (lme4's ``nlmer``), from the Lindstrom-Bates
    estimates.

    ``-2 log L = log|Lambda'Z'Z Lambda + I| + n (1 + log(2 pi PWRSS / n))`` with ``Z`` the
    model's derivative in the random effects at their conditional modes for the given fixed
    effects and ``PWRSS`` the penalized residual sum of squares there (sigma profiled).
    """
    nt = problem.n_theta
    lam0 = problem.lambda_of(start.theta)
    state = {"u": _u_of(start.b, lam0)}

    def objective(x):
        theta, beta = x[:nt], x[nt:]
        lam = problem.lambda_of(theta)
        u, lin, pwrss = conditional_modes(problem, beta, lam, state["u"])
        if not np.isfinite(pwrss):
            return np.inf
        state["u"] = u
        _, logdet = cholesky_groups(
            gram(problem, Linearization(lin.f, lin.x[:, :0], lin.z, problem.y - lin.f)), lam
        )
        n = problem.n
        return 2 * logdet + n * (1 + np.log(2 * np.pi * pwrss / n))

    def safe(x):
        try:
            return objective(x)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError("not positive definite") from None

    x0 = np.concatenate([start.theta, start.beta])
    lower = np.concatenate([problem.theta_lower(), np.full(start.beta.size, -np.inf)])
    scale = np.concatenate(
        [np.maximum(0.1 * np.abs(start.theta), 0.02), np.maximum(0.02 * np.abs(start.beta), 1e-3)]
    )
    res = minimize_bounded(safe, x0, lower, ftol_abs=1e-10, xtol_abs=1e-10, initial_step=scale)
    x, _, _ = newton_polish(safe, res.x, lower)
    theta, beta = x[:nt], x[nt:]
    lam = problem.lambda_of(theta)
    u, lin, pwrss = conditional_modes(problem, beta, lam, state["u"])
    b = u @ lam.T
    dev = safe(x)
    sigma2 = pwrss / problem.n
    sol = pls(gram(problem, lin), lam)
    vcov = sigma2 * np.linalg.inv(sol.xtx_reduced)
    return NlmeEstimate(
        beta=beta,
        b=b,
        theta=theta,
        delta=None,
        sigma=float(np.sqrt(sigma2)),
        vcov=vcov,
        loglik=-dev / 2,
        fitted=lin.f,
        weights=np.ones(problem.n),
        iterations=start.iterations,
        converged=start.converged and res.converged,
        message=res.message,
        pnls_iterations=start.pnls_iterations,
        evaluations=start.evaluations + res.n_evaluations,
    )
