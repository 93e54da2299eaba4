"""Joint optimization of theta and the residual parameters (correlation, variance).

The objective of :class:`~mixedmodels.core.residual_problem.ResidualProblem` is minimized
over ``(theta, u_cor, u_var)`` at once with BOBYQA (theta bounded as in lme4, the
residual parameters on their unconstrained scales).  Jointly is faster than profiling
theta inside an outer search over the residual parameters: on Ovary with AR(1) errors
the joint search takes 35 evaluations, while each outer step of the nested search needs
its own inner optimization (measured in ``benchmarks/residual_structures.py``).

A variance function of the fitted values (nlme's ``varPower()``) makes the fit a fixed
point, as in nlme: the covariate is held at the fitted values of the previous fit, the
parameters re-estimated, and this repeated until they stop changing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from mixedmodels.core.lmm import LmmProblem, Solution
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.errors import ConvergenceError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim.bobyqa import OptimizeResult, minimize_bounded

FIXED_POINT_TOLERANCE = 1e-9  # relative change of every parameter between outer steps
# largest change of a fitted value between outer steps, relative to the largest fitted
# value (BodyWeight varPower: 6.6e-8 after the third step, whose estimates differ from
# the fourth's by 1e-5 relative, 1% of the agreement tolerances; 1e-8 cost a fourth search
# of 25-50 evaluations)
FITTED_TOLERANCE = 1e-7
# BOBYQA could stop on a flat stretch: up to this many restarts from there (with fresh,
# smaller steps) when a variance function has parameters.  With theta's steps scaled to
# its start and theta measured relative to the multipliers' scale
# (:meth:`ResidualProblem.to_internal`) no reference case needs one any more: a restart
# gained less than 1e-9 on every one of them (BodyWeight varExp REML: standard errors
# 3.4e-6 relative from nlme's without it, 4.3e-6 with) and cost 17-46 evaluations
MAX_RESTARTS_WITH_VARIANCE = 0
RESTART_GAIN = 1e-9
MAX_FIXED_POINT_ITERATIONS = 200
# the searches of a fitted-value covariate stop at objective changes from FIRST_FTOL (the
# first: the covariate moves after it, so its optimum is only a start) down to FINAL_FTOL
# (BodyWeight varPower REML / ML: 304 / 341 evaluations with every search to 1e-10 and a
# polish with a restart, 102 / 130 so; estimates within 6% of the agreement tolerances)
FIRST_FTOL = 1e-4
FINAL_FTOL = 1e-10


@dataclass(frozen=True)
class ResidualOptimum:
    """The optimum: parameters, the whitened problem's solution there and ``log|V|``; the
    whitened :class:`LmmProblem` itself is built on first use (:attr:`problem`: the fit
    needs only the solution, which :meth:`ResidualProblem.solution_at` forms without it
    for one random-effect term)."""

    result: OptimizeResult
    solution: Solution
    log_det: float
    outer_iterations: int
    rp: ResidualProblem = field(repr=False)
    _built: list = field(default_factory=list, repr=False, compare=False)

    @property
    def problem(self) -> LmmProblem:
        """The whitened problem at the optimum's residual parameters."""
        if not self._built:
            _, u_cor, u_var = self.rp.split(self.result.x)
            self._built.append(self.rp.problem_at(u_cor, u_var)[0])
        return self._built[0]

    @property
    def objective(self) -> float:
        return self.solution.objective + self.log_det


#: below this many rows times parameters the evaluations' matrices are small enough that
#: a second BLAS thread costs more in hand-offs than it computes
SINGLE_THREAD_SIZE = 5_000_000


def residual_blas(rp: ResidualProblem) -> AbstractContextManager:
    """One BLAS thread for the fit's (and its inference's) evaluations of a small problem.

    Measured on the rescheck cases with two OpenBLAS threads on 2 loaded cores: the
    Satterthwaite df of ``slope_ar1`` took 0.54 s CPU against 0.03 s with one thread
    (65 small triangular solves at 20 ms each)."""
    return single_threaded_blas(rp.n * rp.n_params < SINGLE_THREAD_SIZE)


def solve_residual(rp: ResidualProblem, params: np.ndarray) -> tuple[LmmProblem, Solution, float]:
    """The whitened problem, its solution and ``log|V|`` at ``params``."""
    theta, u_cor, u_var = rp.split(params)
    problem, log_det = rp.problem_at(u_cor, u_var)
    return problem, problem.solve(theta), log_det


def optimum_at(
    rp: ResidualProblem, result: OptimizeResult, outer_iterations: int
) -> ResidualOptimum:
    """The :class:`ResidualOptimum` at ``result.x`` (its solution by
    :meth:`ResidualProblem.solution_at`)."""
    _, u_cor, u_var = rp.split(result.x)
    solution = rp.solution_at(result.x)
    log_det = rp.whitening_log_det(u_cor, u_var)
    return ResidualOptimum(result, solution, log_det, outer_iterations, rp)


def fitted_sorted(rp: ResidualProblem, solution: Solution) -> np.ndarray:
    """Conditional fitted values ``X beta + Z b`` in the problem's sorted order."""
    return rp.X @ solution.beta + rp.random_contribution(solution.b)


def initial_steps(rp: ResidualProblem, theta_step: np.ndarray | None) -> np.ndarray:
    """First steps: theta's (0.25 where not given), the structures' own."""
    steps = [np.full(rp.n_theta, 0.25) if theta_step is None else np.asarray(theta_step)]
    if rp.correlation is not None:
        steps.append(rp.correlation.initial_step())
    if rp.variance is not None:
        steps.append(rp.variance.initial_step(rp.values))
    return np.concatenate(steps)


def optimize_residual(
    rp: ResidualProblem, x0: np.ndarray, *, theta_step: np.ndarray | None = None
) -> ResidualOptimum:
    """Minimize ``rp.objective`` from ``x0``.

    When the variance function uses the fitted values, the covariate ``f`` is iterated
    to its fixed point ``f = F(f)`` (``F``: the fitted values of the optimum with the
    covariate held at ``f``), as nlme does; Anderson mixing of the last few iterates
    replaces nlme's plain repetition (the same fixed point in fewer refits: BodyWeight
    with ``varPower()`` needs 26 plain iterations to reach 1e-9).
    """
    uses_fitted = rp.variance is not None and rp.variance.uses_fitted
    x = np.asarray(x0, dtype=float).copy()
    lower = rp.lower_bounds()
    with residual_blas(rp):
        if rp.n_var and not uses_fitted:
            x = variance_start(rp, x)
        if not uses_fitted:
            result = _minimize(rp, x, lower, initial_steps(rp, theta_step))
            return optimum_at(rp, result, 1)
        rp.with_fitted(np.ones(rp.n))  # any covariate: at u_var = 0 the model is homoscedastic
        f = rp.fitted_at(x)
        rp.with_fitted(f)
        x = variance_start(rp, x, f)
        steps = None
        total, outer = 0, 0
        history_f: list[np.ndarray] = []
        history_g: list[np.ndarray] = []
        converged, message = (
            False,
            "the fitted-value variance covariate did not reach a fixed point",
        )
        prev_size, ftol = 1.0, FIRST_FTOL
        while outer < MAX_FIXED_POINT_ITERATIONS:
            rp.with_fitted(f)
            if steps is None:
                steps = initial_steps(rp, theta_step)
            # each search as accurate as the covariate it holds: the objective's tolerance
            # the square of the covariate's last change (parameters then move by about
            # that change), and at least 100 times smaller than the last search's, so
            # that FINAL_FTOL is reached within three steps whatever the noise
            ftol = min(ftol / 100.0, max(FINAL_FTOL, prev_size**2)) if outer else FIRST_FTOL
            result = _minimize(rp, x, lower, steps, restarts=0, ftol_abs=ftol)
            total += result.n_evaluations
            outer += 1
            if not np.isfinite(result.fun):
                raise _diverged(outer)
            change = np.abs(result.x - x) / np.maximum(np.abs(result.x), 1e-3)
            x = result.x
            g = rp.fitted_at(x)
            residual = g - f
            size = float(np.max(np.abs(residual))) / max(float(np.max(np.abs(g))), 1e-300)
            # (only after a search to the final accuracy)
            prev_size = size
            if (
                outer > 1
                and ftol <= FINAL_FTOL
                and (
                    size < FITTED_TOLERANCE
                    or float(change.max(initial=0.0)) < FIXED_POINT_TOLERANCE
                )
            ):
                # the fixed point's covariate found; x is the optimum for it (searched to
                # FINAL_FTOL: a second search from there only repeated it, 46 evaluations
                # on BodyWeight)
                converged, message = result.converged, result.message
                break
            history_f.append(residual)
            history_g.append(g)
            f = _anderson(history_f[-4:], history_g[-4:])
            steps = np.maximum(0.005 * np.abs(rp.to_internal(x)), 1e-4)
        result = OptimizeResult(x, result.fun, total, converged, message)
        return optimum_at(rp, result, outer)


def _diverged(outer: int) -> ConvergenceError:
    """The error of a fitted-value fixed point whose search found no point where the
    model can be factored (its iterates ran off: a structure that the random effects
    already describe, such as compound symmetry within a random intercept's groups)."""
    return ConvergenceError(
        f"the search for the variance function's fitted-value fixed point diverged (refit "
        f"{outer} found no parameters where the model's covariance is positive definite); "
        "is the correlation structure identifiable beside the random effects (compound "
        "symmetry within the groups of a random intercept is not)?  A variance covariate "
        "other than the fitted values may be"
    )


def correlation_start(rp: ResidualProblem, x: np.ndarray) -> np.ndarray:
    """``x`` with the correlation parameters started from the conditional residuals of
    the fit at ``x`` (the structures' default starts: independent rows for AR(1),
    ARMA and compound symmetry) by :meth:`ResidualCorrelation.residual_start`, for one
    random-effect term; ``x`` with several, without a correlation structure, with a
    variance function of the fitted values or when the residuals cannot be formed.  (A
    search from there that ends singular is repeated from ``x`` by
    :func:`mixedmodels.results.residual_lmer.lmer_residual`.)"""
    if rp.correlation is None or rp.n_cor == 0 or not rp.single_term:
        # (several terms: nested a/b with AR(1) errors, the b term's theta went to its
        # bound from there and stayed, a log-likelihood 9.8 below nlme's)
        return x
    if rp.variance is not None and rp.variance.uses_fitted:
        # the multipliers read the fitted values, which the search's fixed point sets
        # (before it they do not exist: Ovary's ARMA(0,1) with varPower() raised KeyError)
        return x
    theta, u_cor, u_var = rp.split(x)
    try:
        with residual_blas(rp):
            residuals = rp.y - rp.fitted_at(x)
        start = rp.correlation.residual_start(residuals, rp.layout)
    except (np.linalg.LinAlgError, FloatingPointError):
        return x
    if not (start.shape == u_cor.shape and np.all(np.isfinite(start))):
        return x
    return np.concatenate([theta, start, u_var])


def variance_start(
    rp: ResidualProblem, x: np.ndarray, fitted: np.ndarray | None = None
) -> np.ndarray:
    """``x`` with the variance function's parameters started from the residuals of the
    fit without it (:meth:`VarianceFunction.residual_start`), when they start at 0 (the
    homoscedastic model); ``fitted``: that fit's conditional fitted values (sorted), when
    known.  BodyWeight's ``varPower()``: the power starts near 0.5, where from 0 the first
    search spends about 160 evaluations getting there."""
    theta, u_cor, u_var = rp.split(x)
    if u_var.size == 0 or np.any(u_var != 0.0):
        return x
    try:
        if fitted is None:
            fitted = rp.fitted_at(x)
        residuals = rp.y - fitted
    except (np.linalg.LinAlgError, FloatingPointError):
        return x
    start = rp.variance.residual_start(residuals, rp.values)
    # theta is relative to sigma, which the multipliers rescale: keep it where it was in
    # the optimizer's coordinates (:meth:`ResidualProblem.to_internal`)
    internal = rp.to_internal(x)
    try:
        return rp.from_internal(np.concatenate([internal[: theta.size], u_cor, start]))
    except np.linalg.LinAlgError:
        return x


def _minimize(
    rp: ResidualProblem,
    x: np.ndarray,
    lower: np.ndarray,
    steps,
    restarts: int | None = None,
    ftol_abs: float = 1e-10,
) -> OptimizeResult:
    """BOBYQA in the problem's internal coordinates (:meth:`ResidualProblem.to_internal`),
    the result in the natural ones; by default with :data:`MAX_RESTARTS_WITH_VARIANCE`
    restarts when a variance function has parameters."""
    z = np.clip(rp.to_internal(x), lower, rp.upper_bounds())
    total = 0
    if restarts is None:
        restarts = MAX_RESTARTS_WITH_VARIANCE if rp.n_var else 0
    for attempt in range(restarts + 1):
        result = minimize_bounded(
            rp.internal_objective,
            z,
            lower,
            upper=rp.upper_bounds(),
            ftol_abs=ftol_abs,
            xtol_abs=1e-10,
            initial_step=steps,
            pure=True,  # a function of the point alone (its caches are keyed by it)
        )
        total += result.n_evaluations
        gain = (rp.internal_objective(z) - result.fun) if attempt else np.inf
        z = result.x
        if gain < RESTART_GAIN:
            break
        # BOBYQA stops on a flat stretch (BodyWeight's random slope): restart from
        # there with fresh, smaller steps until a restart gains nothing
        steps = np.maximum(0.05 * np.abs(z), 1e-3)
    return OptimizeResult(rp.from_internal(z), result.fun, total, result.converged, result.message)


def _anderson(residuals: list[np.ndarray], images: list[np.ndarray]) -> np.ndarray:
    """Anderson mixing: the combination of the last images ``G(f_i)`` whose residuals
    ``G(f_i) - f_i`` combine to the smallest norm (plain iteration with one)."""
    if len(residuals) == 1:
        return images[-1]
    d_r = np.column_stack([residuals[i + 1] - residuals[i] for i in range(len(residuals) - 1)])
    d_g = np.column_stack([images[i + 1] - images[i] for i in range(len(images) - 1)])
    gamma, *_ = np.linalg.lstsq(d_r, residuals[-1], rcond=None)
    return images[-1] - d_g @ gamma
