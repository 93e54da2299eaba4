"""The Lindstrom-Bates alternation for nested grouping levels (``random = "Asym ~ 1 |
Block/Plot"``): the PNLS step over every level's random effects and the covariance step
over each level's relative factor, as :func:`mixedmodels.optim.nonlinear.fit_lindstrom_bates`
does for one level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mixedmodels.core.nonlinear import (
    MultilevelLinearization,
    MultilevelProblem,
    multilevel_deviance,
    multilevel_gram,
    multilevel_ml_gradient,
    multilevel_pls,
)
from mixedmodels.errors import ConvergenceError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim.bounded_newton import newton_gradient
from mixedmodels.optim.nonlinear import (
    PNLS_EARLY,
    NlmeEstimate,
    SecantAcceleration,
    alternation_change,
    bobyqa_fallback,
    pnls_step_size,
    raise_non_finite_rows,
    singular_step_error,
)


@dataclass
class MultilevelEstimate(NlmeEstimate):
    """The alternation's result for nested levels: ``b`` is the innermost level's random
    effects, ``b_levels`` every level's (outermost first)."""

    b_levels: list = field(default_factory=list)


def fit_multilevel(
    problem: MultilevelProblem,
    beta0: np.ndarray,
    *,
    tolerance: float = 1e-8,
    max_iter: int = 100,
) -> MultilevelEstimate:
    """nlme's Lindstrom-Bates alternation with nested grouping levels (``site/plot``): the
    LME step maximizes the likelihood of the linearized model over every level's relative
    covariance factor (BOBYQA and Newton polish on the profiled deviance), the PNLS step
    minimizes ``||y - f(beta, b)||^2 + ||u||^2`` over ``beta`` and all levels' ``u`` by
    Gauss-Newton with step halving; stops as :func:`fit_lindstrom_bates`.  REML as there:
    the alternation on ML, the restricted criterion at the fixed point.

    Raises
    ------
    ConvergenceError
        A singular system, or a model that is not finite at the estimates reached.
    """
    # the dense systems are small (tens of random effects): one BLAS thread (two cost
    # 4 ms per PLS solve of 192 rows and 60 random effects, one 0.1 ms)
    small = problem.n_random <= 2000
    try:
        with np.errstate(all="ignore"), single_threaded_blas(small):
            return _fit_multilevel(problem, np.asarray(beta0, dtype=float), tolerance,
                                   max_iter)
    except np.linalg.LinAlgError as error:
        raise singular_step_error(error) from error


def _check_finite_levels(lin: MultilevelLinearization) -> None:
    raise_non_finite_rows((("values", lin.f), ("gradient", lin.x),
                           *(("gradient", z) for z in lin.z)), len(lin.f))


def _multilevel_objective(problem, beta, u, lams) -> float:
    f = problem.fitted(beta, problem.b_of(u, lams))
    r = problem.y - f
    value = float(r @ r + u @ u)
    return value if np.isfinite(value) else np.inf


def _lin_objective(problem, lin, u) -> float:
    r = problem.y - lin.f
    value = float(r @ r + u @ u)
    return value if np.isfinite(value) else np.inf


def _multilevel_theta_step(problem: MultilevelProblem, lin, theta, warm, cache):
    """The ML relative covariance factors of the nested linearized model: Newton steps
    with the analytic gradient (:func:`~mixedmodels.core.nonlinear.multilevel_ml_gradient`),
    BOBYQA when they do not reach an optimum (as :func:`_theta_step`)."""
    lower = problem.theta_lower()
    x0 = np.maximum(np.asarray(theta, dtype=float), lower)
    g0 = multilevel_gram(problem, lin)
    positions = problem.theta_positions()

    def dev_grad(x):
        return multilevel_ml_gradient(problem, g0, problem.lambdas(x), positions)

    def safe(x):
        try:
            sol = multilevel_pls(problem, g0, problem.lambdas(x))
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError("not positive definite") from None
        value = multilevel_deviance(sol, problem.n, problem.p, False)
        if not np.isfinite(value):
            raise NotPositiveDefiniteError("not finite")
        return value

    count = 0
    if not warm:
        best_value, best_x = np.inf, x0
        for scale in (0.25, 1.0, 4.0, 16.0):
            try:
                value = safe(scale * x0)
            except NotPositiveDefiniteError:
                continue
            count += 1
            if value < best_value:
                best_value, best_x = value, scale * x0
        x0 = best_x
    x, n_newton, ok = newton_gradient(dev_grad, x0, lower, cache=cache)
    count += n_newton
    if not ok:
        x, n_fallback = bobyqa_fallback(safe, x0, lower)
        count += n_fallback
    return x, count


def _multilevel_pnls(problem: MultilevelProblem, beta, u, lams, max_iter):
    """Gauss-Newton with step halving on ``||y - f||^2 + ||u||^2`` (as :func:`_pnls`)."""
    lin = problem.linearize(beta, problem.b_of(u, lams))
    obj = _multilevel_objective(problem, beta, u, lams)
    it = 0
    done = False
    while it < max_iter:
        it += 1
        _check_finite_levels(lin)
        sol = multilevel_pls(problem, multilevel_gram(problem, lin), lams)
        dbeta, du = sol.beta - beta, sol.u - u
        if pnls_step_size(dbeta, du, beta, u) < 1e-10:
            done = True
            break
        factor = 1.0
        while True:
            nb, nu = beta + factor * dbeta, u + factor * du
            new = _multilevel_objective(problem, nb, nu, lams)
            if new <= obj or factor < 1e-10:
                break
            factor /= 2
        if factor < 1e-10:
            done = True
            break
        change = obj - new
        beta, u, obj = nb, nu, new
        lin = problem.linearize(beta, problem.b_of(u, lams))
        if pnls_step_size(factor * dbeta, factor * du, beta, u) < 1e-10 or change <= 1e-15 * (
            obj + 1e-300
        ):
            done = True
            break
    return beta, u, it, done, lin


def _fit_multilevel(problem: MultilevelProblem, beta0, tolerance, max_iter):
    beta = beta0.copy()
    bs = [np.zeros((lv.n_groups, lv.q)) for lv in problem.levels]
    theta = np.concatenate([lv.theta_of(np.eye(lv.q)) for lv in problem.levels])
    converged = False
    pnls_counts = []
    evaluations = 0
    it = 0
    change = np.inf
    lin = None
    hessian_cache: dict = {}
    accelerate = SecantAcceleration(problem.theta_lower())
    pnls_done = False
    message = "maximum number of iterations reached"
    while it < max_iter:
        it += 1
        old = np.concatenate([beta, theta])
        if lin is None:
            lin = problem.linearize(beta, bs)
        _check_finite_levels(lin)
        reached, n_eval = _multilevel_theta_step(problem, lin, theta, warm=it > 1,
                                                 cache=hessian_cache)
        evaluations += n_eval
        if pnls_done and np.array_equal(reached, theta):
            # at the fixed point, as in fit_lindstrom_bates
            converged = True
            message = "converged"
            break
        theta = reached if it == 1 else accelerate.next(theta, reached)
        lams = problem.lambdas(theta)
        sol = multilevel_pls(problem, multilevel_gram(problem, lin), lams)
        beta_start, u_start = sol.beta, sol.u
        u_here = problem.u_of(bs, lams)
        # (the model's values at (beta, bs) are lin's)
        if not _multilevel_objective(problem, beta_start, u_start, lams) <= (
            _lin_objective(problem, lin, u_here)
        ):
            beta_start, u_start = beta, u_here
        cap = PNLS_EARLY if change > 1e-3 else 50
        beta, u, n_pnls, pnls_done, lin = _multilevel_pnls(problem, beta_start, u_start, lams,
                                                           cap)
        pnls_counts.append(n_pnls)
        bs = problem.b_of(u, lams)
        new = np.concatenate([beta, theta])
        change = alternation_change(old, new, beta.size)
        if change <= tolerance and pnls_done and not accelerate.extrapolated:
            converged = True
            message = "converged"
            break
    if not np.all(np.isfinite(beta)):
        raise ConvergenceError("the nonlinear mixed model's estimates are not finite")
    # (the last PNLS step's linearization is at (beta, bs))
    lams = problem.lambdas(theta)
    sol = multilevel_pls(problem, multilevel_gram(problem, lin), lams)
    dev = multilevel_deviance(sol, problem.n, problem.p, problem.reml)
    dof = problem.n - problem.p if problem.reml else problem.n
    sigma2 = sol.pwrss / dof
    return MultilevelEstimate(
        beta=beta, b=bs[-1], theta=theta, delta=None, sigma=float(np.sqrt(sigma2)),
        vcov=sigma2 * np.linalg.inv(sol.xtx_reduced), loglik=-dev / 2, fitted=lin.f,
        weights=np.ones(problem.n), iterations=it, converged=converged, message=message,
        pnls_iterations=pnls_counts, evaluations=evaluations, b_levels=bs,
    )
