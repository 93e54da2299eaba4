"""Fitting a linear mixed model: the bounded search over theta, its start, the boundary check
and the solution at the optimum (lme4's ``optimizeLmer`` and ``mkMerMod``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.errors import ArgumentError, ConvergenceError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim.bobyqa import OptimizeResult, minimize_bounded
from mixedmodels.optim.polish import polish
from mixedmodels.optim.start import DEFAULT_STEP, moment_start

BOUNDARY_TOLERANCE = 1e-5  # lme4's lmerControl(boundary.tol = 1e-5)
MAX_RELATIVE_SD = 1e8  # the largest start theta accepted
# BOBYQA's (ftol_abs, xtol_abs).  lme4's ftol_abs = 1e-8 can stop BOBYQA on one short step
# while a flat objective still slopes (seen: 1.4e-6 above lme4's optimum, theta 2e-4 off).
# BOBYQA ends near the optimum and the Newton polish at it: small models stop BOBYQA at
# COARSE (its last evaluations cost more than the polish's analytic steps from further
# away), large ones at COARSE_LARGE (InstEval: 18 evaluations instead of 34, 9e-5 from the
# optimum; the polish's stencil, one fine gradient and one value, 16 evaluations, converge
# from there);
# BOBYQA resumes at FINE_SMALL / FINE_LARGE when the polish does not converge
COARSE = (1e-3, 1e-3)
COARSE_LARGE = (1e-3, 1e-4)
FINE_SMALL = (1e-10, 1e-8)
FINE_LARGE = (1e-8, 1e-8)


def solve_at(problem: LmmProblem, theta: np.ndarray):
    """The solution at the optimizer's theta, or a :class:`ConvergenceError` saying why
    there is none (instead of the engine's bare exception)."""
    try:
        return problem.solve(theta)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError) as exc:
        raise ConvergenceError(
            "the model cannot be evaluated at the optimizer's estimate (theta = "
            f"{np.array2string(np.asarray(theta), precision=4)}): a matrix lost positive "
            "definiteness; the fixed effects may be (nearly) collinear or the data "
            "degenerate"
        ) from exc


def optimize_problem(
    problem: LmmProblem,
    start: np.ndarray | str | None = None,
    default_start: Callable[[LmmProblem], tuple[np.ndarray, np.ndarray]] = moment_start,
) -> OptimizeResult:
    """Minimize the objective over theta, then try the boundary.

    By default scalar random intercepts start at moment estimates and a single vector term
    at per-level regressions (:func:`mixedmodels.optim.start.moment_start`), other terms at
    lme4's identity; ``start="lme4"`` uses lme4's start throughout; an array is a previous
    optimum to search near.  ``default_start`` computes the default start and its initial
    step (a problem without rows, fitted from chunks, computes the same moment estimates
    from its cross products: :mod:`mixedmodels.optim.reduced_start`).

    As lme4's ``check.boundary``: parameters bounded at 0 that end within 1e-5 of it are set
    to exactly 0 when that does not raise the objective.  Then Newton steps on the free
    coordinates (:func:`mixedmodels.optim.polish.polish`) take BOBYQA's point to the
    optimum; the result's message says what they did, its evaluations include theirs.
    BOBYQA stops at coarse tolerances (:data:`COARSE`, :data:`COARSE_LARGE` without the
    dense path) and resumes at fine ones (:data:`FINE_SMALL`, :data:`FINE_LARGE`) only
    when the Newton steps do not converge from there.
    """
    with single_threaded_blas(problem.dense_objective is not None):
        return _optimize(problem, start, default_start)


def checked_start(problem: LmmProblem, start) -> np.ndarray:
    """``start`` as a theta vector the problem accepts, or an :class:`ArgumentError`.

    ``"lme4"`` is lme4's start (1 on the diagonals of each relative factor, 0 off them).
    """
    if isinstance(start, str):
        if start != "lme4":
            raise ArgumentError(f'start must be None, "lme4" or an array, not {start!r}')
        return problem.theta_start()
    try:
        theta = np.asarray(start, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f'start must be None, "lme4" or an array of numbers, not {start!r}'
        ) from exc
    if theta.size != problem.n_theta:
        raise ArgumentError(
            f"start has {theta.size} value(s); this model has {problem.n_theta} theta "
            "parameter(s) (lme4's order: per term, the lower triangle of its relative "
            "covariance factor by columns)"
        )
    lower, upper = problem.theta_lower_bounds(), problem.theta_upper_bounds()
    bad = ~np.isfinite(theta) | (theta < lower) | (theta > upper)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ArgumentError(
            f"start[{i}] = {float(theta[i])} is not allowed: theta must be finite and within "
            f"its bounds [{lower[i]:g}, {upper[i]:g}] (diagonal elements of a relative "
            "covariance factor are >= 0)"
        )
    if np.any(np.abs(theta) > MAX_RELATIVE_SD):
        i = int(np.argmax(np.abs(theta)))
        raise ArgumentError(
            f"start[{i}] = {float(theta[i]):g} is not allowed: theta holds standard deviations "
            f"relative to the residual's, and beyond {MAX_RELATIVE_SD:g} the objective overflows"
        )
    return theta


def _default_start(
    problem: LmmProblem, default_start: Callable = moment_start
) -> tuple[np.ndarray, np.ndarray | None]:
    """Moment estimates (:func:`moment_start`) when they are usable, lme4's start when
    they are not finite (degenerate data)."""
    try:
        x0, step = default_start(problem)
    except (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError):
        return problem.theta_start(), None
    if not (np.isfinite(x0).all() and np.isfinite(step).all() and (step > 0).all()):
        return problem.theta_start(), None
    informed = step != DEFAULT_STEP
    return x0, (step if informed.any() else None)


def _optimize(
    problem: LmmProblem, start: np.ndarray | str | None, default_start: Callable = moment_start
) -> OptimizeResult:
    lower = problem.theta_lower_bounds()
    if isinstance(start, str):
        x0, initial_step = checked_start(problem, start), None
    elif start is None:
        x0, initial_step = _default_start(problem, default_start)
    else:  # a previous optimum (refits, bootstrap): search near it
        x0 = checked_start(problem, start)
        initial_step = np.maximum(0.1 * np.abs(x0), 0.02)
    upper = problem.theta_upper_bounds()
    x0 = np.clip(x0, lower, upper)
    attempted = 0  # evaluations of Newton steps from the start that were not taken
    if start is None and initial_step is not None and problem.has_entry_gradient():
        before = problem.n_evaluations
        newton = _newton_from_start(problem, x0, lower)
        if newton is not None:
            return newton
        attempted = problem.n_evaluations - before
    dense = problem.dense_objective is not None
    tolerances = COARSE if dense else COARSE_LARGE
    result, theta, best = _search(problem, x0, lower, upper, initial_step, tolerances)
    theta, best, polished = polish(problem, theta, best)
    evaluations = attempted + result.n_evaluations + polished.evaluations
    message = f"{result.message}; {polished.note}"
    if (not polished.converged or polished.ridge) and np.isfinite(best):
        fine = FINE_SMALL if dense else FINE_LARGE
        if polished.ridge:
            # the steps do not move along a ridge: where theta ends on it is the search's
            # choice, lme4's the one its search makes from the start at fine tolerances
            result, theta, best = _search(problem, x0, lower, upper, initial_step, fine)
        else:  # no Newton convergence from the coarse point: BOBYQA on, finer
            step = np.maximum(0.1 * np.abs(theta), 0.02)
            result, theta, best = _search(problem, theta, lower, upper, step, fine)
        theta, best, polished = polish(problem, theta, best)
        evaluations += result.n_evaluations + polished.evaluations
        again = "restarted (a ridge)" if "ridge:" in message else "resumed"
        message = f"{message}; BOBYQA {again}: {result.message}; {polished.note}"
    return OptimizeResult(theta, best, evaluations, result.converged, message)


def _newton_from_start(
    problem: LmmProblem, x0: np.ndarray, lower: np.ndarray
) -> OptimizeResult | None:
    """Newton steps straight from the moment start, for problems with an analytic gradient
    (the crossed path), or None when they do not end at an interior optimum.

    On large data the moment estimates are close to the optimum (10M rows: within 2e-5
    relative), where Newton steps converge at once: a Hessian (``k`` gradients) and two or
    three steps, against BOBYQA's ``2k + 1`` evaluations to build its first model before
    the same steps.  The result is taken only when the iteration converged, no direction
    was left unidentified (a ridge) and no coordinate bounded at 0 ended within lme4's
    boundary tolerance of it (Newton steps approach a boundary optimum without reaching
    it: 3e-15 seen; lme4's boundary check is BOBYQA's path); otherwise the usual search
    starts from ``x0``.
    """
    try:
        value = problem.objective(x0)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError):
        return None
    if not np.isfinite(value):
        return None
    theta, best, outcome = polish(problem, x0, value)
    near_bound = (lower == 0) & (theta < BOUNDARY_TOLERANCE)
    if not (outcome.converged and not outcome.ridge and outcome.steps and not near_bound.any()):
        return None
    return OptimizeResult(
        theta, best, 1 + outcome.evaluations, True, f"from the moment start: {outcome.note}"
    )


def _search(
    problem: LmmProblem,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    initial_step: np.ndarray | None,
    tolerances: tuple[float, float],
) -> tuple[OptimizeResult, np.ndarray, float]:
    """BOBYQA at ``(ftol_abs, xtol_abs)``, then lme4's boundary check."""
    ftol, xtol = tolerances
    result = minimize_bounded(  # the profiled objective is a function of theta alone
        problem.objective, x0, lower, upper=upper, initial_step=initial_step, ftol_abs=ftol,
        xtol_abs=xtol, pure=True,
    )
    theta = result.x.copy()
    best = result.fun
    near = (lower == 0) & (theta < BOUNDARY_TOLERANCE) & (theta != 0)
    if near.any():
        trial = theta.copy()
        trial[near] = 0.0
        value = problem.objective(trial)
        if value <= best:
            theta, best = trial, value
    return result, theta, best
