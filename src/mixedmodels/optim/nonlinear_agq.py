"""Adaptive Gauss-Hermite quadrature (AGQ) fits of a nonlinear mixed model with one scalar
random effect (``mm.nlme(..., method="Laplace", n_agq=k)``).

lme4's ``nlmer`` refuses ``nAGQ > 1``; this module maximizes the quadrature approximation
of :func:`mixedmodels.core.agq.agq_deviance` instead.  Each evaluation finds the groups'
conditional modes for the fixed effects and relative factor (:func:`scalar_modes`: the
minimum the Laplace fit's Gauss-Newton iteration finds, by secant steps), then adds ``k - 1``
model evaluations, one per node off the mode.

Unlike the Laplace criterion, the quadrature's deviance cannot be profiled over sigma in
closed form (sigma scales the nodes' spread), so ``(beta, theta, log sigma)`` are estimated
jointly, BOBYQA from the Laplace estimates followed by Newton steps.  With one node the
criterion is the Laplace approximation at any sigma, whose optimum in sigma is the profiled
``PWRSS / n``: the fit is then the Laplace fit (:func:`fit_agq` is not called for ``k = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixedmodels.core.agq import StackedValues, agq_deviance, group_sums
from mixedmodels.core.nonlinear import NonlinearProblem, gram, pls
from mixedmodels.errors import ConvergenceError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.bobyqa import minimize_bounded
from mixedmodels.optim.derivatives import hessian_and_gradient
from mixedmodels.optim.nonlinear import NlmeEstimate, newton_polish


@dataclass
class AgqDeviance:
    """``-2 log L`` by AGQ as a function of ``(beta, theta, sigma)``.

    The conditional modes of the last evaluation start the next one's Gauss-Newton
    iteration (``u``); :meth:`at` also returns the modes and the linearization there.

    Attributes
    ----------
    problem : NonlinearProblem
        One random parameter.
    n_agq : int
        Nodes, 1 to 25.
    u : ndarray (m, 1)
        Current modes (warm start).
    values : callable, optional
        The model's values at stacked copies of the rows
        (:func:`mixedmodels.core.agq.agq_deviance`): every node in one model call.
    """

    problem: NonlinearProblem
    n_agq: int
    u: np.ndarray
    values: StackedValues | None = None

    def at(self, beta: np.ndarray, theta: np.ndarray, sigma: float):
        """The deviance, the modes ``u`` (m, 1) and the linearization at them."""
        problem = self.problem
        lam = problem.lambda_of(np.asarray(theta, dtype=float))
        if not (np.isfinite(sigma) and sigma > 0 and np.all(np.isfinite(beta))
                and np.all(np.isfinite(lam))):
            return np.inf, self.u, None
        u, lin, pwrss = scalar_modes(problem, np.asarray(beta, dtype=float), lam[0, 0], self.u)
        if not (np.isfinite(pwrss) and np.all(np.isfinite(u))):
            return np.inf, self.u, None
        self.u = u
        value = agq_deviance(
            problem, beta, float(lam[0, 0]), float(sigma), u[:, 0], lin.z[:, 0], lin.f,
            self.n_agq, self.values,
        )
        return value, u, lin

    def __call__(self, beta: np.ndarray, theta: np.ndarray, sigma: float) -> float:
        return self.at(beta, theta, sigma)[0]


def scalar_modes(
    problem: NonlinearProblem,
    beta: np.ndarray,
    lam: float,
    u: np.ndarray,
    max_iter: int = 100,
    tolerance: float = 1e-10,
):
    """The conditional modes ``u~_i = argmin g_i(u)`` of one scalar random effect per group
    (``g_i`` the group's penalized residual sum of squares, :mod:`mixedmodels.core.agq`),
    all groups at once.

    The same minimum as :func:`mixedmodels.optim.nonlinear.conditional_modes`, reached
    faster: the first step is Gauss-Newton's, later ones use the secant curvature
    ``(g'(u_new) - g'(u_old)) / (u_new - u_old)`` (Gauss-Newton's where that is not
    positive), so the convergence is superlinear where Gauss-Newton's is linear (large
    residuals: Theoph with a random ``lKa`` needed 50 Gauss-Newton steps per evaluation,
    this about 8).  Each group halves its own step until ``g_i`` does not increase.

    Parameters
    ----------
    problem : NonlinearProblem
        One random parameter.
    beta : ndarray (p,)
    lam : float
        Relative factor.
    u : ndarray (m,) or (m, 1)
        Start.
    max_iter : int
    tolerance : float
        Stop when every step is below ``tolerance * max(max |u|, 1e-8)``.

    Returns
    -------
    u : ndarray (m, 1)
    lin : Linearization
        At the modes.
    pwrss : float
        ``sum_i g_i(u~_i)``; ``inf`` when the model is not finite at the start.
    """
    y = problem.y
    u = np.asarray(u, dtype=float).reshape(-1).copy()

    def evaluate(at: np.ndarray):
        lin = problem.linearize(beta, (lam * at)[:, None])
        r = y - lin.f
        z = lin.z[:, 0]
        g = group_sums(problem, r * r) + at * at
        g = np.where(np.isfinite(g), g, np.inf)
        half_gradient = at - lam * group_sums(problem, z * r)
        gauss_newton = 1.0 + lam * lam * group_sums(problem, z * z)
        return lin, g, half_gradient, gauss_newton

    lin, g, grad, gn = evaluate(u)
    if not np.all(np.isfinite(g)):
        return u[:, None], lin, np.inf
    curvature = gn
    for _ in range(max_iter):
        step = -grad / curvature
        # a group whose step is below the tolerance is at its minimum and stays (halving
        # its step, where rounding hides any decrease, would cost 30 model calls)
        small = np.abs(step) < tolerance * max(np.max(np.abs(u), initial=0.0), 1e-8)
        if small.all():
            break
        step[small] = 0.0
        factor = np.ones_like(u)
        while True:
            trial = u + factor * step
            t_lin, t_g, t_grad, t_gn = evaluate(trial)
            # near the minimum the decrease a step promises is below the rounding of
            # g (1e-16 relative): there the secant step is taken as it is
            worse = ~((t_g <= g) | (np.abs(grad * factor * step) < 1e-11 * g))
            if not worse.any() or factor[worse].max() < 1e-10:
                break
            factor[worse] /= 2
        moved = ~worse
        du = np.where(moved, factor * step, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            secant = (t_grad - grad) / du
        if worse.any():  # a group that could not decrease stays: back to the old point
            trial = np.where(moved, trial, u)
            t_lin, t_g, t_grad, t_gn = evaluate(trial)
        curvature = np.where(np.isfinite(secant) & (secant > 0), secant, t_gn)
        u, lin, g, grad = trial, t_lin, t_g, t_grad
        if np.max(np.abs(du), initial=0.0) < tolerance * max(
            np.max(np.abs(u), initial=0.0), 1e-8
        ):
            break
    return u[:, None], lin, float(g.sum())


def _split(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``x = (beta, theta, log sigma)`` -> ``(beta, theta, sigma)``."""
    return x[:p], x[p:-1], float(np.exp(x[-1]))


def fit_agq(
    problem: NonlinearProblem,
    start: NlmeEstimate,
    n_agq: int,
    values: StackedValues | None = None,
) -> NlmeEstimate:
    """Maximize the AGQ likelihood with ``n_agq`` nodes over ``(beta, theta, log sigma)``
    jointly (sigma is not profiled out: the quadrature's nodes depend on it), starting from
    the Laplace fit ``start``.

    Standard errors: ``vcov`` is the fixed effects' block of ``2 H^-1``, with ``H`` the
    Hessian of the AGQ deviance over ``(beta, theta, sigma)`` at the optimum by central
    differences with Richardson extrapolation
    (:func:`mixedmodels.optim.derivatives.hessian_and_gradient`): the inverse observed
    information, the uncertainty of the covariance parameters included (as glmer's
    ``vcov(use.hessian = TRUE)``).  When ``theta`` is on its bound (0) or ``H`` is not
    positive definite there, the Hessian over ``(beta, sigma)`` with ``theta`` held is used.

    Parameters
    ----------
    problem : NonlinearProblem
        One random parameter (``problem.n_theta == 1``), no variance function.
    start : NlmeEstimate
        The Laplace fit.
    n_agq : int
        Nodes, 2 to 25.
    values : callable, optional
        ``values(phi, k)``, the model's values at ``k`` stacked copies of the rows: all
        nodes of an evaluation in one model call (the fit is the same without it, slower).

    Returns
    -------
    NlmeEstimate
        ``b`` holds the conditional modes at the estimates (response units), ``loglik``
        ``-deviance / 2``.

    Raises
    ------
    ConvergenceError
        When the quadrature is not finite at the Laplace estimates, or a linear system
        is singular.
    """
    try:
        return _fit_agq(problem, start, n_agq, values)
    except np.linalg.LinAlgError as error:
        raise ConvergenceError(
            f"the adaptive Gauss-Hermite fit could not be completed: {error}"
        ) from error


def _fit_agq(
    problem: NonlinearProblem, start: NlmeEstimate, n_agq: int, values: StackedValues | None
) -> NlmeEstimate:
    p = problem.p
    lam0 = problem.lambda_of(start.theta)
    u0 = start.b / lam0[0, 0] if lam0[0, 0] > 1e-12 else np.zeros_like(start.b)
    dev = AgqDeviance(problem, n_agq, u0, values)

    def objective(x: np.ndarray) -> float:
        beta, theta, sigma = _split(x, p)
        try:
            value = dev(beta, theta, sigma)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError("not positive definite") from None
        return value if np.isfinite(value) else np.inf

    x0 = np.concatenate([start.beta, start.theta, [np.log(start.sigma)]])
    if not np.isfinite(objective(x0)):
        raise ConvergenceError(
            f"the adaptive Gauss-Hermite deviance (n_agq = {n_agq}) is not finite at the "
            "Laplace estimates (the model is not finite at some quadrature node)"
        )
    lower = np.concatenate([np.full(p, -np.inf), problem.theta_lower(), [-np.inf]])
    scale = np.concatenate([
        np.maximum(0.02 * np.abs(start.beta), 1e-3),
        np.maximum(0.1 * np.abs(start.theta), 0.02),
        [0.05],
    ])
    res = minimize_bounded(
        objective, x0, lower, ftol_abs=1e-10, xtol_abs=1e-10, initial_step=scale
    )
    x, n_polish, polished = newton_polish(objective, res.x, lower)
    beta, theta, sigma = _split(x, p)
    value, u, lin = dev.at(beta, theta, sigma)
    if lin is None:
        raise ConvergenceError("the adaptive Gauss-Hermite deviance is not finite at its optimum")
    lam = problem.lambda_of(theta)
    vcov = _fixed_vcov(dev, beta, theta, sigma, u)
    return NlmeEstimate(
        beta=beta,
        b=u @ lam.T,
        theta=theta,
        delta=None,
        sigma=sigma,
        vcov=vcov,
        loglik=-value / 2,
        fitted=lin.f,
        weights=np.ones(problem.n),
        iterations=start.iterations,
        converged=start.converged and (res.converged or polished),
        message=res.message,
        pnls_iterations=start.pnls_iterations,
        evaluations=start.evaluations + res.n_evaluations + n_polish,
    )


def _fixed_vcov(
    dev: AgqDeviance, beta: np.ndarray, theta: np.ndarray, sigma: float, u: np.ndarray
) -> np.ndarray:
    """The fixed effects' block of ``2 H^-1`` (``H``: Hessian of the AGQ deviance over
    ``(beta, theta, sigma)``); over ``(beta, sigma)`` with theta held when theta is on its
    bound or the full ``H`` is not positive definite; the Laplace fit's
    ``sigma^2 (X'V^-1 X)^-1`` of the linearized model if neither is."""
    p = beta.size
    x = np.concatenate([beta, theta, [sigma]])
    free = np.ones(x.size, dtype=bool)
    lower = dev.problem.theta_lower()
    if np.any(theta <= lower + 1e-8):
        free[p:p + theta.size] = False
    for attempt in range(2):
        idx = np.flatnonzero(free)

        def f(z: np.ndarray, idx: np.ndarray = idx) -> float:
            full = x.copy()
            full[idx] = z
            dev.u = u.copy()  # every point from the same modes: no path dependence
            return dev(full[:p], full[p:-1], full[-1])

        hess, _ = hessian_and_gradient(f, x[idx])
        dev.u = u.copy()
        if np.all(np.isfinite(hess)):
            try:
                inv = np.linalg.inv(hess)
                if np.all(np.linalg.eigvalsh(hess) > 0):
                    return 2 * inv[:p, :p]
            except np.linalg.LinAlgError:
                pass
        if attempt == 0 and free[p]:
            free[p:p + theta.size] = False
        else:
            break
    lam = dev.problem.lambda_of(theta)
    lin = dev.problem.linearize(beta, u @ lam.T)
    sol = pls(gram(dev.problem, lin), lam)
    return sigma**2 * np.linalg.inv(sol.xtx_reduced)
