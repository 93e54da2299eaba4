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

from mixedmodels.errors import ArgumentError
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


# What the optimizer is told at a point where the objective is not finite, until a finite
# value is known (then twice the worst finite value seen): large enough to repel, small
# enough that BOBYQA's quadratic model arithmetic stays far from overflow.
_UNKNOWN_PENALTY = 1e100
_PENALTY_CAP = 1e150


def _finite_bounds(values, n: int, name: str, fill: float) -> np.ndarray:
    """Bounds as an array of ``n`` (``fill`` for None), refusing NaN."""
    if values is None:
        out = np.full(n, fill)
    else:
        out = np.asarray(values, dtype=float)
        out = out.copy() if out.shape == (n,) else np.broadcast_to(out, (n,)).copy()
    if np.isnan(out).any():
        raise ArgumentError(f"the optimizer's {name} bounds hold NaN: {out}")
    return out


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
    pure: bool = False,
) -> OptimizeResult:
    """Minimize ``fun`` over ``lower <= x <= upper`` with BOBYQA.

    Nothing non-finite reaches NLopt: a start with NaN or infinite values is refused (NLopt
    corrupts memory on them), a start outside the bounds is moved onto them, and a point
    where ``fun`` raises :class:`NotPositiveDefiniteError` or returns a non-finite value
    is given a large finite value instead (twice the worst finite value seen, capped),
    which keeps the quadratic model usable.  Should NLopt ever propose a non-finite point
    the search stops there and reports the best point found, not converged.

    Parameters
    ----------
    fun : callable
        Objective of a 1-d array.
    x0 : ndarray
        Start.
    lower, upper : ndarray
        Bounds (``-inf`` / ``inf`` or None for none).
    ftol_abs, xtol_abs : float
        Absolute tolerances on the objective and on the parameters (lme4's defaults).
    max_evaluations : int
    initial_step : float or ndarray, optional
        Initial step per parameter (finite, positive); NLopt's heuristic when None.
    pure : bool
        ``fun`` is a function of ``x`` alone (no warm starts or caches that its value or
        later calls depend on): the point NLopt returns is then not evaluated again when
        it is the best point seen (its value is known), which saves one evaluation.

    Raises
    ------
    ArgumentError
        A start or initial step that is not finite, NaN bounds.
    """
    x0 = np.asarray(x0, dtype=float).ravel()
    n = x0.size
    if not np.isfinite(x0).all():
        bad = np.flatnonzero(~np.isfinite(x0))
        raise ArgumentError(
            f"the optimizer's start must be finite; x0[{int(bad[0])}] = {x0[bad[0]]} "
            f"({bad.size} non-finite value(s))"
        )
    lo = _finite_bounds(lower, n, "lower", -np.inf)
    hi = _finite_bounds(upper, n, "upper", np.inf)
    x0 = np.clip(x0, lo, hi)
    if initial_step is not None:
        step = np.asarray(initial_step, dtype=float)
        step = step.copy() if step.shape == (n,) else np.broadcast_to(step, (n,)).copy()
        if not (np.isfinite(step).all() and (step > 0).all()):
            raise ArgumentError(f"the optimizer's initial step must be finite and > 0: {step}")
    worst = [-math.inf]
    count = [0]
    best = [math.inf, x0.copy()]
    proposed_nonfinite = [False]

    def evaluate(x: np.ndarray) -> float:
        try:
            value = float(fun(x))
        except NotPositiveDefiniteError:
            return math.inf
        return value if math.isfinite(value) else math.inf

    def wrapped(x: np.ndarray, grad: np.ndarray) -> float:
        # (per call: Python floats are checked in a fifth of np.isfinite(x).all()'s time,
        # and evaluate() is written out; the search costs microseconds per evaluation)
        if not all(map(math.isfinite, x.tolist())):
            proposed_nonfinite[0] = True
            raise nlopt.ForcedStop
        count[0] += 1
        try:
            value = float(fun(x))
        except NotPositiveDefiniteError:
            value = math.inf
        if not math.isfinite(value):
            if worst[0] == -math.inf:
                return _UNKNOWN_PENALTY
            return min(2.0 * abs(worst[0]) + 1.0, _PENALTY_CAP)
        if value > worst[0]:
            worst[0] = value
        if value < best[0]:
            best[0] = value
            best[1] = x.copy()
        return value

    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(wrapped)
    opt.set_lower_bounds(lo)
    opt.set_upper_bounds(hi)
    opt.set_ftol_abs(ftol_abs)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(max_evaluations)
    if initial_step is not None:
        opt.set_initial_step(step)
    try:
        x = opt.optimize(x0)
        code = opt.last_optimize_result()
        converged = code in (nlopt.SUCCESS, nlopt.FTOL_REACHED, nlopt.XTOL_REACHED)
        message = _MESSAGES.get(code, f"nlopt code {code}")
    except (nlopt.RoundoffLimited, nlopt.ForcedStop, ValueError, RuntimeError) as exc:
        x = best[1]
        converged = isinstance(exc, nlopt.RoundoffLimited)
        message = f"nlopt stopped: {type(exc).__name__}"
        if proposed_nonfinite[0]:
            message = "nlopt stopped: it proposed a non-finite point"
    if not np.isfinite(x).all():
        x = best[1]
    elif best[0] < math.inf and not (pure and np.array_equal(x, best[1])):
        if best[0] < evaluate(x):  # NLopt's point is not the best seen
            x = best[1]
    return OptimizeResult(
        x=np.asarray(x, dtype=float),
        fun=float(best[0]),
        n_evaluations=count[0],
        converged=converged,
        message=message,
    )
