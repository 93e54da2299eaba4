"""Fitting a GLMM by the Laplace approximation, in lme4's two stages.

1. ``nAGQ = 0`` stage: BOBYQA over ``theta``; at each ``theta`` PIRLS updates ``beta`` and
   ``u`` together, from the previous point's solution.
2. Laplace stage: BOBYQA over ``(theta, beta)`` from the first stage's optimum; at each point
   PIRLS finds the mode of ``u`` from the previous point's mode (converged to a relative
   change of 1e-12, the value does not depend on that start beyond rounding); BOBYQA stops
   at a deviance change of 1e-9 or a parameter change of 1e-8 (estimates then agree with
   lme4 run with converged PIRLS to ~1e-5).

   For binomial and Poisson fits (whose Laplace deviance has an analytic gradient in beta,
   optim/laplace_gradient.py) the stage starts from a Newton step in beta off the first
   stage's optimum, with initial steps of the size of the distance left.

   For the families searched in scaled coordinates (lme4's dispersion families and
   glmer.nb, glmmTMB's families) the stage is quasi-Newton instead (:func:`_newton_stage`):
   the exact gradient of the Laplace deviance in ``(theta, beta, psi)``
   (:class:`~mixedmodels.optim.laplace_gradient.LaplaceGradient`, ``psi`` the family's own
   parameters), a block-diagonal start Hessian, BFGS updates and an exact Hessian (forward
   differences of the gradient) to confirm convergence, which is also vcov's.  The
   family's own parameters start where they fit the GLM's and the first stage's means best
   (:func:`_conditional_extras`), and the first stage only finds theta's scale along its
   start's direction (:func:`_scale_search`; BOBYQA's first stage where that has no
   minimum).  Failed quasi-Newton steps are shortened before an exact Hessian is taken,
   and exact Hessians are forward differences of the exact gradient.  BOBYQA takes over
   where Newton does not converge (theta near its bound, zero inflation vanishing).
   Laplace evaluations per fit (modes, stage 1 and vcov included;
   benchmarks/results/glmm_counts_famcount.md, glmm_counts_famstage.md):
   salamanders_zip 542 -> 59 -> 30, owls_zinb1 222 -> 44 -> 25, sleepstudy_gamma_log
   178 -> 94 -> 37, gamma_sim_log 59 -> 30 -> 17.

Zero inflation that vanishes (every probability below 1e-2 at stage 2's best point, checked
every 50 evaluations): stage 2 stops, the probabilities are moved to 1e-8 and held and the
other parameters re-optimized; that point is kept where the deviance falls towards it (the
score for zero inflation points outwards), else stage 2 goes on from where it stopped
(salamanders_zinb2: 307-383 evaluations instead of 921-2,164, the estimates no longer
depending on the order of the rows).

``vcov(beta)`` comes from the Hessian of the Laplace deviance in ``(theta, beta)``
(``2 H^-1``, lme4's ``use.hessian = TRUE``), computed by central differences with PIRLS
converged to 1e-12: lme4 1.1-31 differences a function whose PIRLS stops at a
relative change of 1e-7, which biases its Hessian upwards (cbpp: standard errors 0.5-1.3%
smaller than the Hessian of the same function evaluated tightly, which ours equal).  For
binomial and Poisson fits its beta columns come from differences of the analytic gradient
(``1 + 2(k + p) + k(k - 1)`` modes instead of ``1 + 2(k + p) + (k + p)(k + p - 1)``; the
same Hessian to ~1e-6); for the other families every column comes from differences of
the exact gradient: forward ones (``k + p + n_psi`` modes), the last Hessian of the Newton
stage, or central ones (``1 + 2(k + p + n_psi)``) where BOBYQA finished.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mixedmodels.core.families import Family
from mixedmodels.core.pirls import ConditionalMode, GlmmProblem, PirlsError
from mixedmodels.errors import ConvergenceWarning
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim.bobyqa import OptimizeResult, minimize_bounded
from mixedmodels.optim.derivatives import (
    hessian_by_forward_gradient,
    hessian_by_gradient,
    hessian_by_pairs,
)
from mixedmodels.optim.laplace_gradient import (
    BetaGradient,
    LaplaceGradient,
    has_deviance_gradient,
)
from mixedmodels.optim.start import glmm_working_start

BOUNDARY_TOLERANCE = 1e-5
#: zero inflation vanished: at the end of stage 2 every probability below this
VANISHED_BELOW = 1e-4
#: the largest zero-inflation probability where it has vanished (glmmTMB stops near it:
#: salamanders_zinb2's intercept -16.4, probability 7.5e-8)
VANISHED_PROBABILITY = 1e-8
#: after Newton converged, a zero-inflation coefficient whose rows' probabilities are all
#: below this is tried again from where the largest is 1e-2 (Family.saturated_extra)
SATURATED_BELOW = 1e-5
#: stage 2 stops to test the limit once every probability at its best point is below this
WATCH_BELOW = 1e-2
#: Newton's stage 2: at most this many exact Hessians before BOBYQA takes over
NEWTON_ITERATIONS = 6
#: and at most this many quasi-Newton (BFGS) steps between two exact Hessians
QUASI_STEPS = 15
#: a quasi-Newton step that fails is shortened at most this many times before the exact
#: Hessian is taken (far from the optimum a shorter step costs one mode, an exact Hessian
#: ``2 (k + p + n_psi)``)
QUASI_BACKTRACKS = 3
#: Newton's exact Hessians by forward differences of the gradient, at this fraction of
#: the vcov's central steps (1e-3 of theta's scale, 1e-2 standard errors): ``k + p +
#: n_psi`` modes and gradients instead of twice that.  Standard errors against
#: Richardson-extrapolated central differences on the 11 family benchmark cases: at most
#: 3.6e-5 relative (sleepstudy_gamma_log; the central differences they replace: 2.9e-5);
#: a fraction of 0.03 left 2.3e-4 (owls_zinb1) and salamanders_zip's printed
#: zero-inflation SE 1e-4 off glmmTMB's, one of 0.001 drowned sleepstudy_gamma_log's in
#: rounding (7.7e-4)
FORWARD_STEP = 0.003
#: Newton's stage 2 has converged where the Newton decrement ``g' H^-1 g`` (twice the
#: decrease the quadratic model predicts) is below this; the last Newton step from there
#: (exact Hessian) is then taken.  1e-8 took one more mode and gradient per fit on 17 of
#: the 20 family reference cases, with the same log-likelihoods (to 1e-11) and fixed
#: effects (to 1e-9 relative); 1e-5 moved owls/salamanders' SEs 1.5e-4 relative (the
#: Hessian taken further from the optimum)
NEWTON_DECREMENT = 1e-6


@dataclass(frozen=True)
class GlmmSolution:
    """The optimum of a GLMM fit.

    Attributes
    ----------
    theta, beta : ndarray
    mode : ConditionalMode
        PIRLS at the optimum (``u``, ``mu``, the GLM weights, ...).
    objective : float
        The minimized approximate deviance (Laplace or quadrature), up to the constant
        ``-2 sum log p(y_i | y_i)``.
    vcov_beta : ndarray (p, p)
    n_evaluations : int
    problem : GlmmProblem
        The problem at the optimum (its family carries the estimates of the family's own
        parameters: dispersion, zero-inflation coefficients).
    vcov_extra : ndarray or None
        ``2 H^-1`` for the family's own parameters (on their unbounded scale) where the
        family estimates them jointly with beta (glmmTMB's families); None otherwise.
    vcov_all : ndarray or None
        ``2 H^-1`` in ``(theta, beta, psi)`` for those families (what glmmTMB's sdreport
        propagates into the random effects' variances); None otherwise or where theta is
        on its boundary.
    converged : bool
    message : str
    """

    theta: np.ndarray
    beta: np.ndarray
    mode: ConditionalMode
    vcov_beta: np.ndarray
    objective: float
    n_evaluations: int
    converged: bool
    message: str
    problem: GlmmProblem | None = None
    vcov_extra: np.ndarray | None = None
    vcov_all: np.ndarray | None = None


def _safe(fun):
    def wrapped(x: np.ndarray) -> float:
        try:
            value = fun(x)
        except PirlsError:
            return np.inf
        return value if np.isfinite(value) else np.inf

    return wrapped


def fit_glmm(problem: GlmmProblem, n_agq: int = 1, start_theta=None) -> GlmmSolution:
    """Fit ``problem`` by the Laplace approximation (``n_agq = 1``), adaptive Gauss-Hermite
    quadrature (``n_agq > 1``, one scalar random-effect term) in the second stage, or stop
    after the first stage (``n_agq = 0``, lme4's fast approximation).

    A family with parameters of its own (``extra_names``: a negative binomial's size, a
    beta's precision, zero-inflation coefficients) keeps them at the family's start in the
    first stage and estimates them with theta and beta in the second (the optimum of
    lme4's outer loop over the negative binomial's ``log k``, and glmmTMB's joint fit).

    Runs with one BLAS thread: the scoring steps are many small BLAS/LAPACK calls, and a
    3 x 3 triangular solve handed to a second OpenBLAS thread took 16 ms on the shared
    2-core machine, 4 us with one.
    """
    with single_threaded_blas():
        return _fit_glmm(problem, n_agq, start_theta)


def _fit_glmm(problem: GlmmProblem, n_agq: int, start_theta) -> GlmmSolution:
    k = problem.n_theta
    lower = problem.theta_lower_bounds()
    beta0 = problem.glm_start()
    theta0 = problem.theta_start() if start_theta is None else np.asarray(start_theta, float)
    family = problem.family
    n_extra = len(family.extra_names)
    if n_extra:
        eta0 = problem.offset + problem.X @ beta0
        mu0 = family.link.inverse(eta0)
        problem = problem.with_family(
            family.with_extra(family.extra_start(problem.y, mu0, problem.prior_weights))
        )
        if n_agq == 1 and family.scaled_search:
            # where Newton follows: the family's parameters that fit the GLM's means best
            problem = problem.with_family(
                family.with_extra(_conditional_extras(problem, eta0))
            )
    psi0 = problem.family.extra_values

    start = {"beta": beta0, "u": None}
    p = problem.n_fixed
    joint_modes = _ModePredictor()

    joint_seen = _RecentModes()

    def joint(th: np.ndarray) -> float:
        # PIRLS over (beta, u) from the last point's solution or the prediction from the
        # last points, whichever is better: converged to 1e-12, the value does not depend
        # on the start beyond rounding (so a point evaluated again is not recomputed)
        known = joint_seen.get(th)
        if known is not None:
            return known.laplace
        guess = joint_modes.predict(th)
        mode = problem.mode(
            th,
            start["beta"],
            start["u"],
            update_beta=True,
            guess=None if guess is None else (guess[:p], guess[p:]),
        )
        start.update(beta=mode.beta, u=mode.u)
        joint_modes.add(th, np.concatenate([mode.beta, mode.u]))
        joint_seen.add(th, mode)
        return mode.laplace

    # the first stage only starts the second unless it is the fit (n_agq = 0): to a change
    # of 1e-6 in the deviance its optimum is as good a start (the second stage's optimum,
    # the estimates, do not move), with fewer joint PIRLS runs
    # the families searched in scaled coordinates (lme4's dispersion families and negative
    # binomial, glmmTMB's): stage 2 by a quasi-Newton method with the exact gradient in
    # (theta, beta, psi), which needs only a start from the first stage
    full_gradient = None
    if n_agq == 1 and family.scaled_search:
        full_gradient = LaplaceGradient(problem)
        if not full_gradient.usable():
            full_gradient = None
    # the new families start their own scale: to 1e-10, or 1e-8 where Newton's stage 2
    # follows (1e-6 stopped dyestuff_invgauss_identity's at theta 2.5 of 36851, the
    # deviance flat there to 1e-6, and Newton's stage could not get there)
    precise = n_agq == 0 or family.scaled_search
    tolerance = {"ftol_abs": 1e-10} if precise else {"ftol_abs": 1e-6, "xtol_abs": 1e-5}
    if full_gradient is not None:
        tolerance = {"ftol_abs": 1e-8}
    stage1 = None
    if full_gradient is not None:
        # Newton's stage 2 takes theta with the rest: the first stage only puts theta on
        # its scale (a 1-D search along theta0's direction)
        shape = glmm_working_start(problem, beta0) if start_theta is None else None
        stage1 = _scale_search(_safe(joint), theta0 if shape is None else shape)
    if stage1 is None:
        stage1 = minimize_bounded(_safe(joint), theta0, lower, **tolerance)
    theta = _snap_to_boundary(joint, stage1.x, lower)
    first = joint_seen.get(theta)
    if first is None:
        first = problem.mode(theta, start["beta"], start["u"], update_beta=True)
    evaluations = stage1.n_evaluations
    converged, message = stage1.converged, stage1.message
    if n_agq == 0:
        return GlmmSolution(
            theta,
            first.beta,
            first,
            first.unscaled_fixed_cov,
            first.laplace,
            evaluations,
            converged,
            message,
            problem,
        )

    u0 = first.u
    warm = {"u": u0}
    beta_gradient = None
    if n_agq == 1 and has_deviance_gradient(family) and not n_extra:
        beta_gradient = BetaGradient(problem)
        if not beta_gradient.usable():
            beta_gradient = None
    modes = _ModePredictor()

    def at(x: np.ndarray) -> GlmmProblem:
        if not n_extra:
            return problem
        return problem.with_family(family.with_extra(x[k + p :]))

    laplace_seen = _RecentModes()

    def laplace(x: np.ndarray) -> float:
        # PIRLS from the last mode found: it converges to 1e-12, so the value does not
        # depend on the start beyond rounding, and nearby points need fewer steps
        if n_agq > 1:
            value, mode = problem.quadrature_deviance(x[:k], x[k:], n_agq, warm["u"])
        else:
            mode = laplace_seen.get(x)
            if mode is not None:
                return mode.laplace
            guess = modes.predict(x)
            mode = at(x).mode(
                x[:k], x[k : k + p], warm["u"], guess=None if guess is None else (None, guess)
            )
            value = mode.laplace
            modes.add(x, mode.u)
            laplace_seen.add(x, mode)
        warm["u"] = mode.u
        return value

    if full_gradient is not None and n_extra:
        # Newton starts from the family's parameters that fit the first stage's means best
        psi0 = _conditional_extras(problem, first.eta)
    x0 = np.concatenate([theta, first.beta, psi0])
    bounds = np.concatenate([lower, np.full(p + n_extra, -np.inf)])
    if family.scaled_search:
        # theta relative to its first-stage value, the fixed effects in units of their
        # first-stage standard errors (the dispersion estimated by Pearson's statistic where
        # the family has one): BOBYQA's steps and tolerances then mean the same for a logit
        # slope of 1 and an inverse-link one of 1e-4, a logit sd of 1 and an inverse-link
        # one of 1e-3
        scale = np.concatenate([_theta_scale(theta), _beta_scale(problem, first), np.ones(n_extra)])
        shift = np.concatenate([np.zeros(k), first.beta, np.zeros(n_extra)])
        step = np.concatenate(
            [np.where(theta != 0, 0.1, 0.05), np.full(p, 0.5), np.full(n_extra, 0.3)]
        )

        def to_x(z: np.ndarray) -> np.ndarray:
            return shift + scale * z

        z0 = (x0 - shift) / scale
        ftol = 1e-10
    else:
        # beta in whitened coordinates: beta = beta_1 + T z with T T' the first stage's
        # conditional covariance of beta, so that BOBYQA's spherical trust region fits the
        # objective's shape (an uncentred predictor correlates intercept and slope at
        # -0.99: grouseticks with HEIGHT took 590 evaluations in (theta, beta), 161 centred)
        whiten = _whitening(first.unscaled_fixed_cov)
        scale = np.ones(x0.size)  # the Hessian for vcov is taken in the natural coordinates

        def to_x(z: np.ndarray) -> np.ndarray:
            return np.concatenate([z[:k], first.beta + whiten @ z[k : k + p], z[k + p :]])

        z0 = np.concatenate([theta, np.zeros(p), psi0])
        if beta_gradient is not None:
            # a Newton step in beta from the first stage's optimum, with the analytic
            # gradient and the conditional Hessian 2 R_X'R_X: the Laplace stage then starts
            # within ~0.03 standard errors of its optimum (0.17 from the first stage's
            # beta on cbpp)
            try:
                g = beta_gradient(theta, first)
                zb = np.linalg.solve(whiten, -0.5 * first.unscaled_fixed_cov @ g)
            except np.linalg.LinAlgError:
                zb = np.zeros(p)
            if np.all(np.isfinite(zb)) and np.max(np.abs(zb), initial=0.0) < 3.0:
                z0[k : k + p] = zb
            # steps of the size of the remaining distance (measured <= 0.014 in theta,
            # <= 0.03 standard errors in beta on the GLMM benchmarks)
            step = np.concatenate([np.maximum(0.03 * np.abs(theta), 0.02), np.full(p, 0.1)])
        else:
            step = np.concatenate(
                [np.maximum(0.1 * np.abs(theta), 0.05), np.full(p, 0.5), np.full(n_extra, 0.3)]
            )
        ftol = 1e-9

    objective = _safe(lambda z: laplace(to_x(z)))

    def near_modes(centre: np.ndarray, centre_mode: ConditionalMode):
        """PIRLS near ``centre``: from its mode, or from the mode predicted by the points
        evaluated already (x + e_i + e_j from x + e_i and x + e_j: second order)."""
        near = _ModePredictor()
        near.add(centre, centre_mode.u)

        def mode_near(z: np.ndarray) -> ConditionalMode:
            guess = near.predict(z)
            found = at(z).mode(
                z[:k], z[k : k + p], centre_mode.u, guess=None if guess is None else (None, guess)
            )
            near.add(z, found.u)
            return found

        return mode_near

    # the Hessian's steps (the vcov's): 1e-3 of theta's scale, 1e-2 of beta's (standard
    # errors) and 1e-2 in the family's own parameters
    hessian_steps = np.concatenate([1e-3 * scale[:k], 1e-2 * scale[k:]])
    newton = None
    if full_gradient is not None:
        # the exact Hessian after quasi-Newton steps is taken where the last gradient was
        last_gradient = _LastGradient(
            lambda x: _gradient_at(x, laplace_seen.get(x), at, full_gradient, k)
        )
        def newton_from(x0: np.ndarray) -> _NewtonResult:
            return _newton_stage(
                _safe(laplace),
                lambda x, f0: _hessian_and_gradient(
                    x,
                    f0,
                    laplace_seen.get(x),
                    near_modes,
                    at,
                    full_gradient,
                    hessian_steps,
                    k,
                    last_gradient.get(x),
                ),
                last_gradient,
                x0,
                bounds,
                hessian_steps,
                k,
                lambda x: n_extra > 0
                and family.vanished_extra(x[k + p :], WATCH_BELOW) is not None,
                lambda x, f0: _start_hessian(
                    x, f0, laplace_seen.get(x), near_modes, at, full_gradient, hessian_steps, k
                ),
            )

        newton = newton_from(to_x(z0))
        evaluations += newton.n_evaluations
        if newton.converged and n_extra:
            # a zero-inflation coefficient that drove its rows' probabilities to ~0 sits
            # where the deviance is flat in it: Newton from its informative range too
            # (salamanders_zinb2_zi_spp_mined: sppDF -16.1 here, -7.58 at the optimum,
            # 4.9e-4 lower in deviance; which one stage 1 led to depended on the BLAS)
            for extra in family.saturated_extra(newton.x[k + p :], SATURATED_BELOW):
                trial_x = newton.x.copy()
                trial_x[k + p :] = extra
                other = newton_from(trial_x)
                evaluations += other.n_evaluations
                if other.converged and other.fun < newton.fun:
                    newton = other
        if not newton.converged:
            z0 = (newton.x - shift) / scale  # BOBYQA from Newton's best point

    def search(start: np.ndarray, watch: bool):
        """Stage 2's BOBYQA from ``start``; with ``watch`` stopped where the family's zero
        inflation has vanished at the best point (``(result, True)`` then)."""
        if not watch:
            return minimize_bounded(
                objective, start, bounds, initial_step=step, ftol_abs=ftol, xtol_abs=1e-8
            ), False
        watcher = _VanishingWatch(
            objective, lambda z: family.vanished_extra(to_x(z)[k + p :], WATCH_BELOW)
        )
        try:
            return minimize_bounded(
                watcher, start, bounds, initial_step=step, ftol_abs=ftol, xtol_abs=1e-8
            ), False
        except _VanishedError:
            return watcher.result(), True

    if newton is not None and newton.converged:
        stage2 = OptimizeResult(
            (newton.x - shift) / scale, newton.fun, newton.n_evaluations, True, newton.message
        )
        stopped = False
    else:
        stage2, stopped = search(z0, n_extra > 0 and n_agq == 1)
        evaluations += stage2.n_evaluations
    polished = None
    if n_extra and n_agq == 1 and not (newton is not None and newton.converged):
        below = WATCH_BELOW if stopped else VANISHED_BELOW
        polished = _polish_vanished(objective, family, stage2, bounds, scale, to_x, k + p, below)
        if polished is not None:
            evaluations += polished[0].n_evaluations + 1
        if stopped and (polished is None or not polished[1]):
            # not the limit after all: stage 2 on to its end from where it stopped
            stage2, _ = search(stage2.x, False)
            evaluations += stage2.n_evaluations
            polished = _polish_vanished(
                objective, family, stage2, bounds, scale, to_x, k + p, VANISHED_BELOW
            )
            if polished is not None:
                evaluations += polished[0].n_evaluations + 1
        if polished is not None and not polished[0].fun <= stage2.fun:
            polished = None
    if polished is None and not (newton is not None and newton.converged):
        held = _near_boundary(to_x(stage2.x)[:k], lower, [b.n_theta for b in problem.blocks])
        if held.size:
            boundary = _boundary_search(objective, stage2, bounds, held, step, ftol)
            evaluations += boundary.n_evaluations
            if boundary.fun <= stage2.fun:
                stage2 = boundary
    converged = converged and stage2.converged
    message = stage2.message
    x = newton.x.copy() if newton is not None and newton.converged else to_x(stage2.x)
    if polished is not None:
        converged = converged and polished[0].converged
        message = polished[0].message
        x = to_x(polished[0].x)
    x[:k] = _snap_to_boundary(lambda th: laplace(np.concatenate([th, x[k:]])), x[:k], lower)
    final = at(x)
    mode = laplace_seen.get(x) if n_agq == 1 else None
    if mode is None:
        mode = final.mode(x[:k], x[k : k + p], u0)

    mode_near_optimum = near_modes(x, mode)

    def laplace_near_optimum(z: np.ndarray) -> float:
        if n_agq > 1:
            return problem.quadrature_deviance(z[:k], z[k:], n_agq, mode.u)[0]
        return mode_near_optimum(z).laplace

    def laplace_and_gradient(z: np.ndarray) -> tuple[float, np.ndarray]:
        # the Laplace deviance and its gradient in beta at (theta, beta) = z (the family's
        # own parameters, where it has them, held at their estimates)
        if beta_gradient is not None:
            found = mode_near_optimum(z)
            return found.laplace, beta_gradient(z[:k], found)
        found = mode_near_optimum(np.concatenate([z, x[k + p :]]))
        return found.laplace, full_gradient(z[:k], found, final.family, False)[:p]

    def laplace_and_full_gradient(z: np.ndarray) -> tuple[float, np.ndarray]:
        # the Laplace deviance and its gradient in (beta, psi) at z
        found = mode_near_optimum(z)
        return found.laplace, full_gradient(z[:k], found, at(z).family)

    vcov_extra = None
    # Newton's last Hessian, where it converged at this point's neighbour (its step below
    # a decrement of 1e-8: ~1e-4 standard errors), is the vcov's Hessian
    reuse = None
    if newton is not None and newton.converged and n_agq == 1:
        reuse = newton.hessian

    whole: list = []
    if n_extra and family.joint_vcov:
        # glmmTMB: the fixed effects' covariance from the Hessian in all parameters
        steps = scale.copy()
        vanished = family.vanished_extra(x[k + p :], VANISHED_BELOW)
        if vanished is not None:
            # differences of 1 in vanished zero-inflation coefficients (of 0.01 they drowned
            # in rounding: at probabilities of 1e-8 the curvature is ~1e-5, and the Hessian
            # of salamanders_zinb2 came out indefinite on its rows reversed); the deviance
            # is ~exp in them there, so the curvature comes out 9% high, and beta's block
            # of the inverse moves by O(1e-8)
            steps[k + p :][vanished[1]] = 100.0
        vcov_all = _hessian_vcov(
            _safe(laplace_near_optimum),
            x,
            k,
            mode,
            steps,
            True,
            full=True,
            gradient=(
                laplace_and_full_gradient
                if full_gradient is not None and vanished is None
                else None
            ),
            hessian=reuse,
            whole=whole,
        )
        vcov, vcov_extra = vcov_all[:p, :p], vcov_all[p:, p:]
    else:
        # lme4 (glmer.nb too): the Hessian in theta and beta, the family's parameters held
        # at their estimates
        def conditional(z: np.ndarray) -> float:
            return laplace_near_optimum(np.concatenate([z, x[k + p :]]))

        gradient = None
        if beta_gradient is not None or full_gradient is not None:
            gradient = laplace_and_gradient
        vcov = _hessian_vcov(
            _safe(conditional),
            x[: k + p],
            k,
            mode,
            scale[: k + p],
            family.scaled_search,
            gradient=gradient,
            hessian=None if reuse is None else reuse[: k + p, : k + p],
        )
    return GlmmSolution(
        x[:k],
        x[k : k + p],
        mode,
        vcov,
        mode.laplace if n_agq == 1 else laplace_near_optimum(x),
        evaluations,
        converged,
        message,
        final,
        vcov_extra,
        whole[0] if whole else None,
    )


#: the first stage's scale search (where Newton's stage 2 follows): factors of this out
SCALE_STEP = 10.0
#: and at most this far either way (beyond: theta going to 0 or infinity, BOBYQA's stage)
SCALE_RANGE = 1e6


def _scale_search(
    objective: Callable[[np.ndarray], float], theta0: np.ndarray
) -> OptimizeResult | None:
    """The first stage where Newton's stage 2 follows: ``objective(s theta0)`` (the joint
    PIRLS deviance) over the scale ``s`` alone: factors of :data:`SCALE_STEP` out from
    ``s = 1`` while the deviance falls, then one parabola in ``log s`` through the lowest
    point and its neighbours; the lowest point seen.  Newton's stage then starts with
    theta on its scale, which it could not find from far away (Dyestuff's Gamma and
    inverse Gaussian fits with identity links: theta ~ 4e4 from a start of 1), and takes
    theta's shape and last digits with beta's.  None (BOBYQA's first stage then) where
    the deviance is not finite at the start or falls over :data:`SCALE_RANGE` either way.
    """
    theta0 = np.asarray(theta0, dtype=float)
    if not np.any(theta0 != 0):
        return None
    seen: dict[float, float] = {}

    def f(t: float) -> float:
        if t not in seen:
            seen[t] = objective(np.exp(t) * theta0)
        return seen[t]

    step, limit = np.log(SCALE_STEP), np.log(SCALE_RANGE)
    if not np.isfinite(f(0.0)):
        return None
    if f(step) < f(0.0):
        direction = 1.0
    elif f(-step) < f(0.0):
        direction = -1.0
    else:
        direction = 0.0
    centre = direction * step
    while direction and f(centre + direction * step) < f(centre):
        centre += direction * step
        if abs(centre) > limit:
            return None
    a, b, c = centre - step, centre, centre + step
    fa, fb, fc = f(a), f(b), f(c)
    # the vertex of the parabola through the three (equally spaced) points
    curvature = fa - 2.0 * fb + fc
    if curvature > 0 and np.isfinite(curvature):
        vertex = b + 0.5 * step * (fa - fc) / curvature
        f(float(np.clip(vertex, a, c)))
    best = min(seen, key=seen.get)
    return OptimizeResult(
        np.exp(best) * theta0, seen[best], len(seen), True, "theta's scale found"
    )


def _conditional_extras(problem: GlmmProblem, eta: np.ndarray) -> np.ndarray:
    """The family's own parameters minimizing its data term (``-2 sum log p(y | mu, psi)``)
    at the linear predictor ``eta`` (no PIRLS: the family's functions at fixed means; BOBYQA to
    a change of 1e-8, within 10 of the family's values): a start for Newton's stage 2 from
    the first stage, which holds them at the family's moment start (salamanders_zip: the
    zero inflation at probability 0.12 and its slope at 0).  The family's values where
    that does not lower the data term."""
    family = problem.family
    psi0 = family.extra_values
    y, weights = problem.y, problem.prior_weights

    def term(psi: np.ndarray) -> float:
        kernel = family.with_extra(psi).kernel(y, weights)
        with np.errstate(all="ignore"):
            mu = kernel.inverse(eta)
            value = kernel.objective_term(mu, kernel.deviance(eta, mu))
        return value if np.isfinite(value) else np.inf

    start = term(psi0)
    if not np.isfinite(start):
        return psi0
    found = minimize_bounded(
        term, psi0, psi0 - 10.0, upper=psi0 + 10.0, initial_step=0.5, ftol_abs=1e-8
    )
    return np.asarray(found.x, dtype=float) if found.fun < start else psi0


@dataclass(frozen=True)
class _NewtonResult:
    """Newton's stage 2: its best point ``x`` (natural coordinates) and deviance, the
    Hessian at the last point it was taken (where converged: the step from there was below
    :data:`NEWTON_DECREMENT`), the Laplace evaluations (modes) spent."""

    x: np.ndarray
    fun: float
    hessian: np.ndarray | None
    n_evaluations: int
    converged: bool
    message: str


def _hessian_and_gradient(
    x: np.ndarray,
    f0: float,
    centre_mode: ConditionalMode | None,
    near_modes: Callable,
    at: Callable[[np.ndarray], GlmmProblem],
    gradient: LaplaceGradient,
    steps: np.ndarray,
    k: int,
    known_gradient: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The Hessian and gradient of the Laplace deviance at ``x = (theta, beta, psi)``: the
    gradient exact (:class:`LaplaceGradient`; ``known_gradient`` where it was computed at
    ``x`` already, from the same mode), the Hessian by its forward differences at
    :data:`FORWARD_STEP` of ``steps`` (:func:`hessian_by_forward_gradient`: the part in
    ``psi``, most of a gradient's cost, only along ``psi``; ``n`` modes besides ``x``'s).
    ``f0`` (the deviance at ``x``) is not needed.  Returns them and the modes computed.

    Raises
    ------
    PirlsError, numpy.linalg.LinAlgError
        Where a point near ``x`` has no usable mode.
    """
    count = [0]
    mode = centre_mode
    if mode is None:
        mode = at(x).mode(x[:k], x[k : x.size - len(at(x).family.extra_names)], None)
        count[0] += 1
    mode_near = near_modes(x, mode)

    def value_and_gradient(z: np.ndarray, full: bool) -> tuple[float, np.ndarray]:
        count[0] += 1
        found = mode_near(z)
        return found.laplace, gradient(z[:k], found, at(z).family, full, theta_part=True)

    p = x.size - k - len(at(x).family.extra_names)
    if known_gradient is not None:
        grad = known_gradient
    else:
        grad = gradient(x[:k], mode, at(x).family, theta_part=True)
    hess = hessian_by_forward_gradient(
        value_and_gradient, x, FORWARD_STEP * steps, k + p, grad
    )
    return hess, grad, count[0]


def _gradient_at(
    x: np.ndarray,
    centre_mode: ConditionalMode | None,
    at: Callable[[np.ndarray], GlmmProblem],
    gradient: LaplaceGradient,
    k: int,
) -> tuple[np.ndarray, int]:
    """The exact gradient of the Laplace deviance at ``x = (theta, beta, psi)`` from the
    mode there (``centre_mode``, computed when None).  Returns it and the modes computed."""
    count = 0
    mode = centre_mode
    if mode is None:
        mode = at(x).mode(x[:k], x[k : x.size - len(at(x).family.extra_names)], None)
        count += 1
    return gradient(x[:k], mode, at(x).family, theta_part=True), count


class _LastGradient:
    """``gradient_at(x)`` (a gradient and the modes computed), the last point's gradient
    kept: the exact Hessian Newton's stage takes after quasi-Newton steps is at the point
    whose gradient the last step computed (:func:`_hessian_and_gradient` reuses it: one
    gradient less, the same numbers)."""

    def __init__(self, gradient_at: Callable[[np.ndarray], tuple[np.ndarray, int]]) -> None:
        self.gradient_at = gradient_at
        self.last: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        grad, used = self.gradient_at(x)
        self.last = (np.array(x, dtype=float), grad)
        return grad, used

    def get(self, x: np.ndarray) -> np.ndarray | None:
        """The gradient at ``x`` when it was the last point, else None."""
        if self.last is None or not np.array_equal(self.last[0], x):
            return None
        return self.last[1]


def _start_hessian(
    x: np.ndarray,
    f0: float,
    centre_mode: ConditionalMode | None,
    near_modes: Callable,
    at: Callable[[np.ndarray], GlmmProblem],
    gradient: LaplaceGradient,
    steps: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """A block-diagonal approximation of the Hessian of the Laplace deviance at ``x``,
    with the exact gradient, for Newton's first step: theta's diagonal by one-sided
    second differences of values with the gradient (``k`` modes at the Hessian's steps),
    beta's block ``2 kappa R_X'R_X`` (the conditional information of beta at the mode,
    ``kappa = dT / dD``), the family's parameters' by second differences of the data
    term at the mode's linear predictor (no PIRLS).  Returns them and the modes computed.

    Raises
    ------
    PirlsError, numpy.linalg.LinAlgError
        Where a point near ``x`` has no usable mode.
    """
    problem = at(x)
    family = problem.family
    n_extra = len(family.extra_names)
    p = x.size - k - n_extra
    count = 0
    mode = centre_mode
    if mode is None:
        mode = problem.mode(x[:k], x[k : k + p], None)
        count += 1
    mode_near = near_modes(x, mode)
    hess = np.zeros((x.size, x.size))
    grad = np.empty(x.size)
    grad[:] = gradient(x[:k], mode, family, theta_part=True)
    for i in range(k):
        # one-sided, with the exact gradient: f(x + h) - f(x) - h g = h^2 H / 2 + O(h^3)
        # (k modes where central second differences took 2 k; a start needs no more)
        e = np.zeros(x.size)
        e[i] = steps[i]
        fp = mode_near(x + e).laplace
        hess[i, i] = 2.0 * (fp - f0 - steps[i] * grad[i]) / steps[i] ** 2
    count += k
    kappa = gradient.kappa(mode, family)
    hess[k : k + p, k : k + p] = 2.0 * kappa * np.linalg.inv(mode.unscaled_fixed_cov)
    if n_extra:
        y, weights, eta = problem.y, problem.prior_weights, mode.eta

        def term(psi: np.ndarray) -> float:
            kernel = family.with_extra(psi).kernel(y, weights)
            with np.errstate(all="ignore"):
                mu = kernel.inverse(eta)
                return kernel.objective_term(mu, kernel.deviance(eta, mu))

        psi = x[k + p :]
        hess[k + p :, k + p :] = hessian_by_pairs(term, psi, steps[k + p :])
    return hess, grad, count


def _newton_stage(
    value: Callable[[np.ndarray], float],
    hessian_at: Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray, int]],
    gradient_at: Callable[[np.ndarray], tuple[np.ndarray, int]],
    x0: np.ndarray,
    lower: np.ndarray,
    steps: np.ndarray,
    k: int,
    vanished: Callable[[np.ndarray], bool],
    start_hessian: Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray, int]]
    | None = None,
) -> _NewtonResult:
    """Stage 2 by a quasi-Newton method with exact Hessians where it matters.

    At the start ``start_hessian(x, f(x))`` (an approximate Hessian and the gradient;
    without it the exact ones, ``hessian_at(x, f(x))``); then steps ``-H^-1 g`` (``H``'s
    eigenvalues floored at 1e-6 of the largest in the coordinates ``x / steps`` where it is
    not positive definite, the floored matrix kept; at most 1e3 Hessian steps, 10 standard
    errors; theta kept within 0.9 of its distance to its bound), halved until the deviance
    falls by 1e-4 of the predicted amount (an updated ``H`` whose full step fails is
    replaced by the exact one instead), each followed by the gradient there
    (``gradient_at(x)``) and a BFGS update of ``H``.  Where the decrement ``g' H^-1 g`` of
    an updated ``H`` falls below :data:`NEWTON_DECREMENT`, or after :data:`QUASI_STEPS`
    updated steps, the exact Hessian is taken; converged where the decrement with the
    exact Hessian is below :data:`NEWTON_DECREMENT` (that Hessian returned for vcov; the
    last step, ~1e-4 standard errors, taken when it does not raise the deviance).  Not
    converged (BOBYQA goes on from the best point) after :data:`NEWTON_ITERATIONS` exact
    Hessians, where a step fails, where theta comes within two Hessian steps of its bound
    (the Hessian is not defined there) or where ``vanished(x)`` (zero inflation vanishing:
    the deviance's minimum is at infinity)."""
    x = np.array(x0, dtype=float)
    count = 1
    f = value(x)

    def result(converged: bool, message: str, hess=None) -> _NewtonResult:
        return _NewtonResult(x, f, hess, count, converged, message)

    if not np.isfinite(f):
        return result(False, "Newton: the start has no finite deviance")
    exact_hessians = 0
    hess = grad = None
    fresh = False
    quasi = 0
    if start_hessian is not None:
        try:
            hess, grad, used = start_hessian(x, f)
            count += used
        except (PirlsError, np.linalg.LinAlgError):
            hess = grad = None
        if hess is not None and not (np.all(np.isfinite(hess)) and np.all(np.isfinite(grad))):
            hess = grad = None
    while True:
        if np.any(x[:k] - 2.0 * steps[:k] <= lower[:k]) or vanished(x):
            return result(False, "Newton: theta near its bound or the zero inflation vanishing")
        if hess is None:
            if exact_hessians == NEWTON_ITERATIONS:
                return result(False, "Newton: iteration limit")
            try:
                hess, grad, used = hessian_at(x, f)
            except (PirlsError, np.linalg.LinAlgError):
                return result(False, "Newton: no mode near the point")
            count += used
            exact_hessians += 1
            fresh, quasi = True, 0
            if not (np.all(np.isfinite(hess)) and np.all(np.isfinite(grad))):
                return result(False, "Newton: the Hessian is not finite")
        hs = hess * steps[:, None] * steps[None, :]
        gs = grad * steps
        try:
            low = np.linalg.cholesky(hs)
            ds = -np.linalg.solve(low.T, np.linalg.solve(low, gs))
            definite = True
        except np.linalg.LinAlgError:
            values, vectors = np.linalg.eigh(hs)
            floor = 1e-6 * float(np.max(np.abs(values), initial=0.0))
            if not floor > 0:
                return result(False, "Newton: the Hessian is zero")
            fixed = np.maximum(np.abs(values), floor)
            ds = -vectors @ ((vectors.T @ gs) / fixed)
            definite = False
            # the updates start from the positive definite one the step was made with
            hess = (vectors * fixed) @ vectors.T / steps[:, None] / steps[None, :]
        decrement = -float(gs @ ds)
        if fresh and definite and decrement < NEWTON_DECREMENT:
            trial = x + ds * steps
            if np.all(trial[:k] >= lower[:k]):
                count += 1
                f_trial = value(trial)
                if f_trial <= f:
                    x, f = trial, f_trial
            return result(True, "converged: Newton decrement below tolerance", hess)
        if not fresh and (decrement < NEWTON_DECREMENT or quasi >= QUASI_STEPS):
            hess = None  # near the optimum (or slow): the exact Hessian again
            continue
        # at most 1e3 Hessian steps (10 standard errors in beta, theta doubled)
        t = min(1.0, 1e3 / max(float(np.max(np.abs(ds))), 1e-300))
        d = ds * steps
        falling = (d[:k] < 0) & np.isfinite(lower[:k])
        if falling.any():
            room = 0.9 * (x[:k][falling] - lower[:k][falling]) / -d[:k][falling]
            t = min(t, float(room.min()))
        slope = float(grad @ d)
        if not slope < 0:
            if fresh:
                return result(False, "Newton: not a descent direction")
            hess = None
            continue
        full = t
        for _ in range(12 if fresh else QUASI_BACKTRACKS):
            trial = x + t * d
            count += 1
            f_trial = value(trial)
            if f_trial <= f + 1e-4 * t * slope:
                break
            # the minimum of the parabola through f, the slope and f_trial, within
            # [0.1, 0.5] of the step (halving where the deviance is not finite there)
            rise = f_trial - f - slope * t
            shorter = -slope * t * t / (2.0 * rise) if np.isfinite(rise) and rise > 0 else t / 2
            t = min(max(shorter, 0.1 * t), 0.5 * t)
        else:
            full = -1.0
        if full < 0:
            if fresh:
                return result(False, "Newton: the line search failed")
            hess = None
            continue
        try:
            new_grad, used = gradient_at(trial)
        except (PirlsError, np.linalg.LinAlgError):
            return result(False, "Newton: no mode near the point")
        count += used
        if not np.all(np.isfinite(new_grad)):
            return result(False, "Newton: the gradient is not finite")
        # BFGS update of H (skipped where the curvature along the step is not positive)
        step, change = trial - x, new_grad - grad
        curvature = float(step @ change)
        hess_step = hess @ step
        bending = float(step @ hess_step)
        if curvature > 1e-12 * max(abs(bending), 1e-300) and bending > 0:
            hess = (
                hess
                - np.outer(hess_step, hess_step) / bending
                + np.outer(change, change) / curvature
            )
        x, f, grad = trial, f_trial, new_grad
        fresh = False
        quasi += 1


class _VanishedError(Exception):
    """Raised by :class:`_VanishingWatch` to stop stage 2's search."""


class _VanishingWatch:
    """Stage 2's objective, watched: every ``every`` evaluations, where the family's zero
    inflation has vanished at the best point so far (``vanished(z)`` not None) the search
    is stopped (:class:`_VanishedError`), its best point kept.  BOBYQA alone then spends 900 to
    2,200 evaluations drifting along the flat zero-inflation direction (salamanders_zinb2;
    the model without zero inflation takes 176)."""

    def __init__(
        self,
        objective: Callable[[np.ndarray], float],
        vanished: Callable[[np.ndarray], object],
        every: int = 50,
    ) -> None:
        self.objective = objective
        self.vanished = vanished
        self.every = every
        self.count = 0
        self.best = (np.inf, None)

    def __call__(self, z: np.ndarray) -> float:
        value = self.objective(z)
        self.count += 1
        if value < self.best[0]:
            self.best = (value, np.array(z, dtype=float))
        if (
            self.count % self.every == 0
            and self.best[1] is not None
            and self.vanished(self.best[1]) is not None
        ):
            raise _VanishedError
        return value

    def result(self) -> OptimizeResult:
        return OptimizeResult(
            self.best[1], self.best[0], self.count, True, "stopped: the zero inflation vanished"
        )


def _polish_vanished(
    objective: Callable[[np.ndarray], float],
    family: Family,
    stage2: OptimizeResult,
    bounds: np.ndarray,
    scale: np.ndarray,
    to_x: Callable[[np.ndarray], np.ndarray],
    n_free: int,
    below: float,
) -> tuple[OptimizeResult, bool] | None:
    """Stage 2's end where the family's zero inflation has (nearly) vanished (every
    probability below ``below``: the deviance may fall towards a limit as its coefficients
    go to ``-inf``; BOBYQA alone drifted for 900-2,200 evaluations on salamanders_zinb2 and
    stopped anywhere between -9.5 and -11.9 depending on the rows' order, the other
    estimates moving with it): the coefficients moved to where the largest probability is
    1e-8 (glmmTMB stops near there) and held, the other parameters re-optimized by BOBYQA
    from stage 2's values.  Returns that search's result (``x`` in stage 2's coordinates,
    the held entries included) and whether it is the limit: its deviance not above stage
    2's, and the deviance at probabilities 100 times larger (the other parameters kept)
    higher (the score for zero inflation points outwards); None when nothing has vanished.
    One evaluation besides the search's.

    Parameters
    ----------
    objective : callable
        The Laplace deviance in stage 2's coordinates ``z``.
    family : Family
    stage2 : OptimizeResult
        Stage 2's search (its optimum in the coordinates ``z``).
    bounds : ndarray
        The lower bounds of ``z``.
    scale : ndarray
        Stage 2's coordinate scales (``x = shift + scale z`` for the family's parameters,
        their shift 0).
    to_x : callable
        ``z`` to the natural parameters.
    n_free : int
        ``k + p``: the entries of ``z`` before the family's parameters.
    below : float
        The largest probability that counts as vanished.
    """
    vanished = family.vanished_extra(to_x(stage2.x)[n_free:], below, VANISHED_PROBABILITY)
    if vanished is None:
        return None
    moved, held = vanished
    start = np.array(stage2.x, dtype=float)
    start[n_free:] = moved / scale[n_free:]
    free = np.concatenate([np.ones(n_free, dtype=bool), ~held])

    def embed(w: np.ndarray) -> np.ndarray:
        out = start.copy()
        out[free] = w
        return out

    # steps of 0.1 (theta relative, beta in standard errors; from where stage 2 stopped,
    # the probabilities at 1e-2 to 1e-4, the optimum is ~0.1 standard errors away), and a
    # tolerance of 1e-12 in the deviance: 1e-10 (stage 2's) left the fixed effects up to
    # 1.2e-4 standard errors from the fit without zero inflation, depending on the rows'
    # order; 1e-12 leaves 4e-6
    search = minimize_bounded(
        lambda w: objective(embed(w)),
        start[free],
        bounds[free],
        initial_step=0.1,
        ftol_abs=1e-12,
        xtol_abs=1e-8,
    )
    x = embed(search.x)
    # the deviance is linear in the probabilities where they are small: its slope's sign
    # (the score test for zero inflation) from the probabilities 100 times larger
    larger = family.vanished_extra(to_x(x)[n_free:], 1.0, 100.0 * VANISHED_PROBABILITY)
    back = x.copy()
    if larger is not None:
        back[n_free:] = larger[0] / scale[n_free:]
    return OptimizeResult(x, search.fun, search.n_evaluations, search.converged, search.message), (
        search.fun <= stage2.fun and larger is not None and objective(back) > search.fun
    )


class _RecentModes:
    """The modes found at the last few points and at the lowest deviance, by exact point:
    BOBYQA evaluates its final point again, and the stages' ends ask for the mode at the
    optimum found; PIRLS from another start gives the same mode to rounding."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.recent: dict[bytes, ConditionalMode] = {}
        self.best: tuple[bytes, ConditionalMode] | None = None

    def add(self, x: np.ndarray, mode: ConditionalMode) -> None:
        key = np.asarray(x, dtype=float).tobytes()
        self.recent[key] = mode
        if len(self.recent) > self.size:
            del self.recent[next(iter(self.recent))]
        if self.best is None or mode.laplace < self.best[1].laplace:
            self.best = (key, mode)

    def get(self, x: np.ndarray) -> ConditionalMode | None:
        key = np.asarray(x, dtype=float).tobytes()
        if self.best is not None and self.best[0] == key:
            return self.best[1]
        return self.recent.get(key)


class _ModePredictor:
    """The conditional mode at a new parameter value predicted from the modes found at
    the last ones: the affine interpolation through the last ``d + 1`` points (``d`` the
    number of parameters), restricted to the directions they span (least squares with a
    cut-off).  Its error is second order in the distance to those points, where starting
    from the last mode alone leaves a first-order one: late in the optimization, and at the
    Hessian's points, PIRLS then needs one scoring step instead of two or three."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []
        self.modes: list[np.ndarray] = []

    def add(self, x: np.ndarray, mode: np.ndarray) -> None:
        self.points.append(np.array(x, dtype=float))
        self.modes.append(np.array(mode, dtype=float))
        keep = self.points[-1].size + 1
        if len(self.points) > keep:
            del self.points[:-keep]
            del self.modes[:-keep]

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        """The predicted mode at ``x`` (None before two points are known, or when the
        least-squares problem has no finite solution)."""
        if len(self.points) < 2:
            return None
        last_x, last_u = self.points[-1], self.modes[-1]
        dx = np.array(self.points[:-1])  # (m, d)
        dx -= last_x
        du = np.array(self.modes[:-1])  # (m, q)
        du -= last_u
        coef = self._least_squares(dx.T, np.asarray(x, dtype=float) - last_x)
        guess = last_u + coef @ du
        return guess if np.isfinite(guess).all() else None

    try:  # the gufunc behind np.linalg.lstsq (a private module: the public function without)
        from numpy.linalg._umath_linalg import lstsq as _gelsd
    except ImportError:  # pragma: no cover - every numpy since 1.14 has it
        _gelsd = None

    @classmethod
    def _least_squares(cls, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``np.linalg.lstsq(a, b, rcond=1e-8)[0]`` for a vector ``b`` by the same LAPACK
        call (numpy's ``gelsd`` gufunc, so the same numbers) without the wrapper's checks
        and conversions (11-18 us -> 4-12 us on these small systems); NaN where the SVD
        does not converge (lstsq raises)."""
        if cls._gelsd is None:  # pragma: no cover
            try:
                return np.linalg.lstsq(a, b, rcond=1e-8)[0]
            except np.linalg.LinAlgError:
                return np.full(a.shape[1], np.nan)
        with np.errstate(all="ignore"):
            x = cls._gelsd(a, b[:, None], 1e-8, signature="ddd->ddid")[0]
        return x[:, 0]


def _whitening(cov: np.ndarray) -> np.ndarray:
    """``T`` with ``T T' = cov`` (lower Cholesky factor), or the diagonal of standard
    deviations when ``cov`` is not positive definite; standard deviations below 1e-4 are
    raised to it (as the former per-coordinate steps were)."""
    p = cov.shape[0]
    if p == 0:
        return np.zeros((0, 0))
    sd = np.sqrt(np.maximum(np.diagonal(cov), 0.0))
    floor = np.maximum(sd, 1e-4) / np.where(sd > 0, sd, 1.0)
    try:
        low = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return np.diag(np.maximum(sd, 1e-4))
    if not np.all(np.isfinite(low)):
        return np.diag(np.maximum(sd, 1e-4))
    return low * floor[:, None]


def _beta_scale(problem: GlmmProblem, first: ConditionalMode) -> np.ndarray:
    """Standard errors of beta from the first stage's conditional system (times the
    Pearson dispersion for families with one), floored at 1e-8."""
    var = np.diagonal(first.unscaled_fixed_cov).copy()
    if problem.family.has_dispersion:
        fam = problem.family
        pearson = problem.prior_weights * (problem.y - first.mu) ** 2 / fam.variance(first.mu)
        var *= float(np.sum(pearson)) / problem.n
    return np.sqrt(np.maximum(var, 1e-16))


def _theta_scale(theta: np.ndarray) -> np.ndarray:
    """``|theta_i|``; elements at 0 take the largest ``|theta|`` (1 when all are 0)."""
    size = np.abs(theta)
    fill = float(size.max()) if size.size and size.max() > 0 else 1.0
    return np.where(size > 0, size, fill)


#: a diagonal theta below this fraction of its term's largest is tried at 0 (the other
#: parameters re-optimized) after stage 2's BOBYQA
NEAR_BOUNDARY = 1e-2


def _near_boundary(theta: np.ndarray, lower: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Indices of the diagonal theta elements (bounded at 0) that are positive but below
    :data:`NEAR_BOUNDARY` times their term's largest ``|theta|``."""
    out = []
    start = 0
    for n in sizes:
        part = np.abs(theta[start : start + n])
        top = float(part.max()) if n else 0.0
        for i in range(start, start + n):
            if lower[i] == 0 and 0 < theta[i] < NEAR_BOUNDARY * top:
                out.append(i)
        start += n
    return np.asarray(out, dtype=int)


def _boundary_search(
    objective: Callable[[np.ndarray], float],
    found: OptimizeResult,
    bounds: np.ndarray,
    held: np.ndarray,
    step: np.ndarray,
    ftol: float,
) -> OptimizeResult:
    """Stage 2 again from its optimum (coordinates ``z``) with the diagonal theta entries
    ``held`` at their bound of 0 (BOBYQA over the rest): lme4's check.boundary with the
    other parameters re-optimized.  BOBYQA's stopping rule can leave a singular fit's
    theta at 2.9e-4 of a term whose other diagonal is 0.36 (a glmer.nb ``(x | g)`` with
    correlation -1, lme4 at 0 and 5.8e-7 higher in logLik), beyond lme4's 1e-5 snap."""
    start = np.array(found.x, dtype=float)
    start[held] = 0.0
    free = np.ones(start.size, dtype=bool)
    free[held] = False

    def reduced(z: np.ndarray) -> float:
        full = start.copy()
        full[free] = z
        return objective(full)

    result = minimize_bounded(
        reduced,
        start[free],
        bounds[free],
        initial_step=np.asarray(step, dtype=float)[free],
        ftol_abs=ftol,
        xtol_abs=1e-8,
    )
    full = start.copy()
    full[free] = result.x
    return OptimizeResult(
        full, result.fun, result.n_evaluations, result.converged, result.message
    )


def _snap_to_boundary(objective, theta: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """lme4's check.boundary: diagonal elements within 1e-5 of 0 become 0 when that does not
    raise the objective."""
    near = (lower == 0) & (theta < BOUNDARY_TOLERANCE) & (theta != 0)
    if not near.any():
        return theta
    trial = theta.copy()
    trial[near] = 0.0
    try:
        better = objective(trial) <= objective(theta)
    except PirlsError:
        better = False
    return trial if better else theta


def _hessian_vcov(
    laplace,
    x: np.ndarray,
    k: int,
    mode: ConditionalMode,
    scale: np.ndarray,
    scaled: bool = False,
    *,
    full: bool = False,
    gradient=None,
    hessian: np.ndarray | None = None,
    whole: list | None = None,
) -> np.ndarray:
    """``2 H^-1`` restricted to beta (with ``full``: to beta and the family's parameters
    after it), over the parameters not on a bound of 0; the conditional ``(R_X'R_X)^-1``
    (and NaN for the family's parameters) when every theta is on its bound or ``H`` is
    not positive definite.  ``whole`` (a list) receives ``2 H^-1`` in every parameter, theta's
    included, where it exists."""

    def fallback() -> np.ndarray:
        cond = mode.unscaled_fixed_cov
        if not full:
            return cond
        out = np.full((x.size - k, x.size - k), np.nan)
        out[: cond.shape[0], : cond.shape[0]] = cond
        return out

    at_zero = x[:k] == 0
    if at_zero.all() and k:
        return fallback()
    if at_zero.any():
        # a diagonal theta on its bound: the deviance is even in it there (Lambda Lambda'
        # holds its square), so its cross derivatives vanish and the others' covariance
        # is that of the Hessian over the free parameters (lme4's differences across the
        # bound give the same); the bound's rows of ``whole`` are NaN
        free = np.concatenate([~at_zero, np.ones(x.size - k, dtype=bool)])

        def embed(z: np.ndarray) -> np.ndarray:
            point = x.copy()
            point[free] = z
            return point

        part: list = []
        out = _hessian_vcov(
            lambda z: laplace(embed(z)),
            x[free],
            int(np.count_nonzero(~at_zero)),
            mode,
            scale[free],
            scaled,
            full=full,
            gradient=None if gradient is None else (lambda z: gradient(embed(z))),
            whole=part,
        )
        if whole is not None and part:
            cov = np.full((x.size, x.size), np.nan)
            cov[np.ix_(free, free)] = part[0]
            whole.append(cov)
        return out
    # central differences, two evaluations per pair: with steps of 1e-3 their O(h^2) error
    # is ~1e-6 relative (Richardson-extrapolated standard errors agree to 1e-6 on the
    # catalogue); for families searched in scaled coordinates, whose coefficients range
    # from 1e-4 (inverse links) to 1e3 (identity), steps of 1e-3 relative (theta) and 1e-2
    # standard errors (beta) instead
    if scaled:
        steps = np.concatenate([1e-3 * scale[:k], 1e-2 * scale[k:]])
    else:
        steps = 1e-3 * np.maximum(np.abs(x), 0.1)
    hess = hessian
    if hess is None and gradient is not None:
        # the beta columns from differences of the analytic gradient in beta (2 (k + p)
        # modes and gradients), the theta block by values: 1 + 2(k + p) + k(k - 1) modes
        # instead of 1 + 2(k + p) + (k + p)(k + p - 1)
        try:
            hess = hessian_by_gradient(gradient, laplace, x, steps, k, mode.laplace)[0]
        except (PirlsError, np.linalg.LinAlgError):
            hess = None
        if hess is not None and not np.all(np.isfinite(hess)):
            hess = None
    if hess is None:
        hess = hessian_by_pairs(laplace, x, steps)
    # with ``full``, the family's own parameters (after theta and beta) may be flat
    flat_ok = np.arange(x.size) >= k + mode.beta.size if full else None
    cov = covariance_from_hessian(hess, flat_ok, steps)
    if whole is not None and cov is not None:
        whole.append(cov)
    return _restricted(cov, k, fallback(), stacklevel=4)


#: a family parameter whose curvature (in units of its Hessian step) is below this fraction
#: of the largest is flat: its row and column are left out of the inverse
FLAT_CURVATURE = 1e-8


def _vcov_from_hessian(
    hess: np.ndarray,
    k: int,
    fallback: np.ndarray,
    stacklevel: int = 3,
    droppable: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> np.ndarray:
    """``2 H^-1`` without its first ``k`` rows and columns (theta's)
    (:func:`covariance_from_hessian`), or ``fallback`` with a warning when ``H`` is not
    positive definite."""
    return _restricted(
        covariance_from_hessian(hess, droppable, steps), k, fallback, stacklevel + 1
    )


def _restricted(
    cov: np.ndarray | None, k: int, fallback: np.ndarray, stacklevel: int
) -> np.ndarray:
    """``cov`` without its first ``k`` rows and columns, or ``fallback`` with a warning
    where there is no covariance (``H`` not positive definite)."""
    if cov is None:
        warnings.warn(
            "the Hessian of the Laplace deviance is not positive definite; vcov(beta) is "
            "taken from the conditional fixed-effects system instead",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
        return fallback
    return cov[k:, k:]  # beta (and with ``full`` the family's own parameters after it)


def covariance_from_hessian(
    hess: np.ndarray, droppable: np.ndarray | None = None, steps: np.ndarray | None = None
) -> np.ndarray | None:
    """``2 H^-1`` (the covariance of every parameter of the Laplace deviance ``H`` is the
    Hessian of), or None where ``H`` is not positive definite.

    Where it is not and some of the ``droppable`` coordinates (the family's own
    parameters) are flat (curvature ``H_ii h_i^2`` below :data:`FLAT_CURVATURE` of the
    largest, ``h`` the Hessian's ``steps``: a zero-inflation coefficient run off to -41
    where every probability it governs has vanished), the inverse is taken without them
    and their rows and columns are NaN: the rest's covariance is the limit of the full
    inverse (their couplings vanish with their curvature; glmmTMB, which stops such a
    coefficient at -20, reports its SE as 1787 and the same SEs for the rest)."""
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        if droppable is None or steps is None:
            return None
        curvature = np.abs(np.diagonal(hess)) * steps**2
        flat = droppable & (curvature <= FLAT_CURVATURE * float(curvature.max()))
        keep = ~flat
        if not flat.any():
            return None
        try:
            np.linalg.cholesky(hess[np.ix_(keep, keep)])
        except np.linalg.LinAlgError:
            return None
        cov = np.full(hess.shape, np.nan)
        cov[np.ix_(keep, keep)] = 2.0 * np.linalg.inv(hess[np.ix_(keep, keep)])
        return cov
    return 2.0 * np.linalg.inv(hess)
