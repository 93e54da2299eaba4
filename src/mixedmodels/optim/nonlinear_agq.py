"""Adaptive Gauss-Hermite quadrature (AGQ) fits of a nonlinear mixed model with one scalar
random effect (``mm.nlme(..., method="Laplace", n_agq=k)``).

lme4's ``nlmer`` refuses ``nAGQ > 1``; this module maximizes the quadrature approximation
of :func:`mixedmodels.core.agq.agq_deviance` instead.  Each evaluation finds the groups'
conditional modes for the fixed effects and relative factor (the Laplace fit's
:func:`~mixedmodels.optim.nonlinear.conditional_modes`, whose quasi-Newton steps are secant
steps for one scalar effect), then adds ``k - 1`` model evaluations, one per node off the
mode.

Unlike the Laplace criterion, the quadrature's deviance cannot be profiled over sigma in
closed form (sigma scales the nodes' spread), so ``(beta, theta, log sigma)`` are estimated
jointly, BOBYQA from the Laplace estimates followed by Newton steps.  With one node the
criterion is the Laplace approximation at any sigma, whose optimum in sigma is the profiled
``PWRSS / n``: the fit is then the Laplace fit (:func:`fit_agq` is not called for ``k = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixedmodels.core.agq import StackedValues, agq_deviance
from mixedmodels.core.nonlinear import NonlinearProblem, gram, pls
from mixedmodels.errors import ConvergenceError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.bobyqa import minimize_bounded
from mixedmodels.optim.bounded_newton import newton_polish
from mixedmodels.optim.derivatives import hessian_and_gradient
from mixedmodels.optim.nonlinear import NlmeEstimate, conditional_modes


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
        u, lin, pwrss = conditional_modes(problem, np.asarray(beta, dtype=float), lam, self.u)
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
        # overflow far out is reported by the non-finite checks, not by numpy's warnings
        with np.errstate(all="ignore"):
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
