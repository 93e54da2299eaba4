"""BOBYQA (Powell's bounded quadratic-model method) through NLopt, as lme4's default.

NLopt's C implementation keeps the per-evaluation overhead to microseconds and, in our
measurements (benchmarks/optimizers.py), needs fewer objective evaluations than scipy's
bounded derivative-free methods on the catalogue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import nlopt
import numpy as np

from mixedmodels.linalg.blocks import NotPositiveDefiniteError


@dataclass(frozen=True)
class OptimizeResult:
    """Outcome of one optimization.

    Attributes
    ----------
    x : ndarray
        The best point found.
    fun : float
        Objective at ``x``.
    n_evaluations : int
    converged : bool
        True when the optimizer met a tolerance (not an evaluation limit or failure).
    message : str
    """

    x: np.ndarray
    fun: float
    n_evaluations: int
    converged: bool
    message: str


_MESSAGES = {
    nlopt.SUCCESS: "success",
    nlopt.STOPVAL_REACHED: "stopval reached",
    nlopt.FTOL_REACHED: "ftol reached",
    nlopt.XTOL_REACHED: "xtol reached",
    nlopt.MAXEVAL_REACHED: "maximum number of evaluations reached",
    nlopt.MAXTIME_REACHED: "maximum time reached",
}


def minimize_bounded(
    fun: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    upper: np.ndarray | None = None,
    ftol_abs: float = 1e-8,
    xtol_abs: float = 1e-8,
    max_evaluations: int = 100_000,
    initial_step: float | np.ndarray | None = None,
) -> OptimizeResult:
    """Minimize ``fun`` over ``x >= lower`` with BOBYQA.

    A point where ``fun`` raises :class:`NotPositiveDefiniteError` or returns a non-finite
    value is given a large finite value (twice the worst seen) instead, which keeps the
    quadratic model usable.

    Parameters
    ----------
    fun : callable
        Objective of a 1-d array.
    x0 : ndarray
        Start, inside the bounds.
    lower, upper : ndarray
        Bounds (``-inf`` / ``inf`` or None for none).
    ftol_abs, xtol_abs : float
        Absolute tolerances on the objective and on the parameters (lme4's defaults).
    max_evaluations : int
    initial_step : float or ndarray, optional
        Initial step per parameter; NLopt's heuristic when None.
    """
    x0 = np.asarray(x0, dtype=float)
    n = x0.size
    worst = [0.0]
    count = [0]
    best = [math.inf, x0.copy()]

    def wrapped(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        try:
            value = float(fun(x))
        except NotPositiveDefiniteError:
            value = math.inf
        if not math.isfinite(value):
            return 2.0 * abs(worst[0]) + 1.0
        worst[0] = max(worst[0], value)
        if value < best[0]:
            best[0] = value
            best[1] = x.copy()
        return value

    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(wrapped)
    opt.set_lower_bounds(np.asarray(lower, dtype=float))
    if upper is not None:
        opt.set_upper_bounds(np.asarray(upper, dtype=float))
    opt.set_ftol_abs(ftol_abs)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(max_evaluations)
    if initial_step is not None:
        opt.set_initial_step(initial_step)
    try:
        x = opt.optimize(x0)
        code = opt.last_optimize_result()
        converged = code in (nlopt.SUCCESS, nlopt.FTOL_REACHED, nlopt.XTOL_REACHED)
        message = _MESSAGES.get(code, f"nlopt code {code}")
    except (nlopt.RoundoffLimited, ValueError, RuntimeError) as exc:
        x = best[1]
        converged = isinstance(exc, nlopt.RoundoffLimited)
        message = f"nlopt stopped: {type(exc).__name__}"
    if best[0] < math.inf and best[0] < float(fun(x)):
        x = best[1]
    return OptimizeResult(
        x=np.asarray(x, dtype=float),
        fun=float(best[0]),
        n_evaluations=count[0],
        converged=converged,
        message=message,
    )
