"""Profile-likelihood confidence intervals, as lme4's ``confint(method = "profile")``.

As lme4 does, profiles use the ML deviance (a REML fit is refitted by ML first).  Variance
parameters are profiled on the standard deviation / correlation scale together with sigma:
for a value ``x`` of one of them the deviance

.. math::

    d(sd, cor, \\sigma) = \\log|L_Z|^2 + PWRSS / \\sigma^2
                         + n \\log(2 \\pi \\sigma^2) - \\sum \\log w_i

(beta profiled out) is minimised over the others, giving
``zeta(x) = sign(x - x_hat) sqrt(d_min(x) - d_hat)``.  A fixed effect ``beta_j`` is held at
``x`` by moving its column into an offset and optimising the profiled ML deviance over
theta.  The interval ends solve ``zeta(x) = -+ z_{(1+level)/2}`` (Brent's method), or
stop at the parameter's bound (sd 0, correlation -+1) when the profile never gets there.
lme4 interpolates zeta with splines instead of solving; the two agree to about 1e-4.
"""

from __future__ import annotations

import math
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import singledispatch

import numpy as np
import pandas as pd
from scipy import optimize, stats

from mixedmodels.arguments import check_int, check_level
from mixedmodels.core.pirls import PirlsError
from mixedmodels.core.structures import CovarianceStructure
from mixedmodels.design.validate import degenerate_glm_response
from mixedmodels.errors import ArgumentError, DataError
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim import minimize_bounded
from mixedmodels.optim.derivatives import hessian_by_pairs
from mixedmodels.progress import ProgressBar
from mixedmodels.results.fit import LmerFit
from mixedmodels.results.glmer_fit import GlmerFit
from mixedmodels.results.parameters import parameter_values

LOG_2PI = math.log(2 * math.pi)
BIG = 1e100


@dataclass
class _VarianceLayout:
    """Positions of each term's reported parameters (sd/cor, as its covariance structure
    reports them) in the variance-parameter vector, then sigma."""

    structures: list[CovarianceStructure]

    def theta(self, v: np.ndarray) -> np.ndarray | None:
        """theta from (reported parameters per term, sigma); None when inadmissible."""
        sigma = v[-1]
        out, pos = [], 0
        for structure in self.structures:
            k = len(structure.reported_bounds()[0])
            found = structure.theta_from_reported(v[pos : pos + k], sigma)
            if found is None:
                return None
            out.append(found)
            pos += k
        return np.concatenate(out) if out else np.zeros(0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        pairs = [s.reported_bounds() for s in self.structures]
        lower = [p[0] for p in pairs] + [np.zeros(1)]
        upper = [p[1] for p in pairs] + [np.full(1, np.inf)]
        return np.concatenate(lower), np.concatenate(upper)


def _ml_deviance_at(problem, theta: np.ndarray, sigma: float) -> float:
    """ML deviance with sigma given and beta profiled out."""
    try:
        ld_z, _, pwrss = problem.pieces(theta)
    except NotPositiveDefiniteError:
        return BIG
    n = problem.n
    return ld_z - problem.log_weights + pwrss / sigma**2 + n * (LOG_2PI + 2 * math.log(sigma))


def _bracket_and_solve(zeta, x_hat: float, target: float, step: float, bound: float) -> float:
    """The x on the side of ``target``'s sign where ``zeta(x) = target``; ``bound`` if the
    profile never reaches it before the bound."""
    direction = 1.0 if target > 0 else -1.0
    prev_x = x_hat
    for _ in range(60):
        x = prev_x + direction * step
        if (direction > 0 and x >= bound) or (direction < 0 and x <= bound):
            x = bound
        z = zeta(x)
        if math.isnan(z):
            return math.nan
        if (z - target) * direction >= 0:
            try:
                return optimize.brentq(
                    lambda t: zeta(t) - target, prev_x, x, xtol=1e-10, rtol=1e-10
                )
            except ValueError:  # zeta not monotone here: no reliable end
                return math.nan
        if x == bound:
            return bound
        prev_x = x
        step *= 1.6
    return math.nan


def _secant_end(zeta, x_hat: float, target: float, step: float, bound: float) -> float:
    """The x where ``zeta(x) = target`` by secant steps from ``(x_hat, 0)`` and ``x_hat +
    target step``, to ``|zeta - target| < 1e-7``; ``bound`` if zeta there has not reached
    ``target``; NaN where zeta does not increase along the steps or they turn back past
    the estimate (the caller then brackets)."""
    direction = 1.0 if target > 0 else -1.0

    def clamp(x: float) -> tuple[float, bool]:
        if (direction > 0 and x >= bound) or (direction < 0 and x <= bound):
            return bound, True
        return x, False

    x0, z0 = x_hat, 0.0
    x1, at_bound = clamp(x_hat + target * step)
    for _ in range(25):
        z1 = zeta(x1)
        if math.isnan(z1) or (z1 - z0) * (x1 - x0) <= 0:  # zeta must increase with x
            return math.nan
        if abs(z1 - target) < 1e-7:
            return x1
        if at_bound and (z1 - target) * direction < 0:
            return bound
        x2 = x1 + (target - z1) * (x1 - x0) / (z1 - z0)
        if (x2 - x_hat) * direction <= 0:
            return math.nan
        x0, z0 = x1, z1
        x1, at_bound = clamp(x2)
    return math.nan


def _solve_end(prof, target: float) -> float:
    """One end of ``prof``'s interval (``zeta = target``), on the profiled scale."""
    if prof.secant:
        x = _secant_end(
            prof.zeta, prof.estimate, target, prof.step, prof.upper if target > 0 else prof.lower
        )
        if not math.isnan(x):
            return x
        prof.reset()
    bound = prof.upper if target > 0 else prof.lower
    return _bracket_and_solve(prof.zeta, prof.estimate, target, prof.step, bound)


@dataclass
class _Profile:
    """One parameter's zeta function with what is needed to search along it."""

    name: str
    zeta: object
    estimate: float
    step: float
    lower: float
    upper: float
    reset: object  # restarts the warm start at the optimum
    #: maps the profiled scale to the reported one (a dispersion's exp); None: identity
    report: object = None
    #: solve for the ends by secant steps (zeta is nearly linear), bracketing only where
    #: they fail; False: bracket and Brent's method
    secant: bool = False

    def reported(self, x: float) -> float:
        return x if self.report is None or math.isnan(x) else self.report(x)


def _glmm_profiles(fit: GlmerFit) -> list[_Profile]:
    """Profiles of a glmer fit over its Laplace (or quadrature) deviance: variance
    parameters on the sd/cor scale (no sigma), fixed effects and, for families whose own
    parameters are estimated jointly (glmmTMB's: a dispersion, zero-inflation
    coefficients), those parameters on their unbounded scale (a dispersion's interval is
    reported exponentiated, as glmmTMB's ``confint``), each with every other parameter
    re-optimized (PIRLS warm-started from the last mode).  lme4's ``glmer.nb`` fit is
    profiled as lme4 profiles it, its size held at the estimate, and its size ``k`` gets a
    row of its own (not in lme4's ``confint``) from the profile of the same deviance
    (which holds R's ``aic``, so it is comparable across ``k``)."""
    problem = fit.problem
    family = problem.family
    base = fit._solution.objective
    layout = _VarianceLayout([b.structure for b in problem.blocks])
    beta_hat = fit.fixef.to_numpy()
    structures = [b.structure for b in problem.blocks]
    values = parameter_values(problem.lambdas(fit.theta), 1.0, beta_hat, structures)
    nvp = values.size - problem.n_fixed - 1  # no sigma
    nfx = beta_hat.size
    v_hat = values[:nvp]
    joint = _joint_extras(fit)
    psi_hat = family.extra_values
    lower_b, upper_b = (b[:nvp] for b in layout.bounds())
    warm = {"u": fit._solution.mode.u}

    def deviance(v: np.ndarray, beta: np.ndarray, psi: np.ndarray) -> float:
        theta = layout.theta(np.append(v, 1.0))
        if theta is None:
            return BIG
        at = problem.with_family(family.with_extra(psi)) if psi.size else problem
        try:
            if fit.n_agq > 1:
                value, mode = at.quadrature_deviance(theta, beta, fit.n_agq, warm["u"])
            else:
                mode = at.mode(theta, beta, warm["u"])
                value = mode.laplace
        except PirlsError:
            return BIG
        if not math.isfinite(value):
            return BIG
        warm["u"] = mode.u
        return value

    full_hat = np.concatenate([v_hat, beta_hat, psi_hat])
    lower_all = np.concatenate([lower_b, np.full(nfx + psi_hat.size, -np.inf)])
    upper_all = np.concatenate([upper_b, np.full(nfx + psi_hat.size, np.inf)])
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    se_psi = _extra_standard_errors(fit, psi_hat.size)
    scales = np.concatenate(
        [
            np.maximum(0.1 * np.abs(v_hat), 1e-2),
            np.maximum(0.2 * se, 1e-4),
            np.maximum(0.2 * se_psi, 1e-3),
        ]
    )
    names = [n for n in fit.parameter_names if n != "sigma"][: nvp + nfx]
    transforms: list = [None] * (nvp + nfx)
    if psi_hat.size:
        reported = {index: (name, on_log) for name, _, index, on_log in family.reported_extra()}
        for j, own in enumerate(family.extra_names):
            # lme4's glmer.nb reports none: its log size is profiled as "k"
            unreported = (own.removeprefix("log_"), own.startswith("log_"))
            name, on_log = reported.get(j, unreported)
            names.append(name)
            if callable(on_log):  # reported through the family's own map
                transforms.append(on_log)
            else:
                transforms.append(math.exp if on_log else None)

    def deviance_full(full: np.ndarray) -> float:
        return deviance(full[:nvp], full[nvp : nvp + nfx], full[nvp + nfx :])

    curvature = _ProfileCurvature(deviance_full, full_hat, scales, lower_all, upper_all)
    # lme4's dispersion families: the deviance's theta is relative to sigma, which is not
    # one of its parameters (its plug-in estimate follows the mode): an sd is profiled on
    # theta's scale and reported as varcorr reports it, times the sigma of the fit at the
    # reported point (the other parameters re-optimized there; the path's own sd)
    scaled_sd = family.has_dispersion and not psi_hat.size
    warm["u"] = fit._solution.mode.u
    out = []
    for w in range(full_hat.size):
        if joint or w >= nvp + nfx:
            others = [i for i in range(full_hat.size) if i != w]
        else:  # lme4's glmer.nb: the size held at its estimate
            others = [i for i in range(nvp + nfx) if i != w]
        path = curvature.path(w, others)
        # the last point's optimum of the other parameters, and every point's (an sd's
        # reported value at x reads it instead of optimizing again)
        state: dict = {"last": None, "optima": {full_hat[w]: full_hat[others]}}

        def zeta(x: float, w=w, others=others, path=path, state=state) -> float:
            def inner(z: np.ndarray) -> float:
                full = full_hat.copy()
                full[w] = x
                full[others] = start + spread * z
                return deviance_full(full)

            # the start: the optimum of the deviance's quadratic approximation at the
            # estimate given x, corrected by how far the last point's optimum was from its
            # own prediction (the path bends away from the straight line slowly)
            start = path.predict(x)
            if state["last"] is not None:
                last_x, last_opt = state["last"]
                start = start + (last_opt - path.predict(last_x))
            start = np.clip(start, lower_all[others], upper_all[others])
            spread = path.spread
            res = minimize_bounded(
                inner,
                np.zeros(len(others)),
                (lower_all[others] - start) / spread,
                upper=(upper_all[others] - start) / spread,
                initial_step=0.1,
                ftol_abs=1e-8,
                xtol_abs=1e-5,
            )
            state["last"] = (x, start + spread * res.x)
            state["optima"][x] = state["last"][1]
            return math.copysign(math.sqrt(max(res.fun - base, 0.0)), x - full_hat[w])

        def reset(state=state) -> None:
            state["last"] = None
            warm["u"] = fit._solution.mode.u

        report = transforms[w]
        if scaled_sd and w < nvp and lower_b[w] == 0:

            def report(x: float, w=w, others=others, zeta=zeta, state=state) -> float:
                if x not in state["optima"]:
                    zeta(x)  # the other parameters at x, re-optimized
                full = full_hat.copy()
                full[w] = x
                full[others] = state["optima"][x]
                return x * _sigma_at(problem, layout, full[:nvp], full[nvp:], warm["u"])

        if w < nvp:
            scale = abs(v_hat[w]) if v_hat[w] != 0 else 0.1
            step = 0.2 * scale if lower_b[w] == 0 else 0.2
        elif w < nvp + nfx:
            step = se[w - nvp]
        else:
            step = se_psi[w - nvp - nfx]
        out.append(
            _Profile(
                names[w],
                zeta,
                full_hat[w],
                step,
                lower_all[w],
                upper_all[w],
                reset,
                report,
                secant=True,
            )
        )
    return out


def _sigma_at(problem, layout: _VarianceLayout, v: np.ndarray, beta, u0) -> float:
    """lme4's ``sigma()`` (the family's Pearson estimate at the conditional modes) of the
    model at relative sd/cor ``v`` and fixed effects ``beta``."""
    theta = layout.theta(np.append(v, 1.0))
    if theta is None:
        return math.nan
    try:
        mode = problem.mode(theta, beta, u0)
    except PirlsError:
        return math.nan
    return problem.family.fit_sigma(problem.y, mode.mu, mode.u, problem.prior_weights)


class _ProfileCurvature:
    """The Hessian of the deviance at the estimate in the profiled coordinates (central
    differences, steps of ``scales``), for where each profile's other parameters start:
    ``argmin`` of the quadratic approximation given the focal value, and their conditional
    standard deviations (the inner search's units).  Falls back to the estimate and
    ``scales`` where the Hessian is not positive definite (an sd at 0)."""

    def __init__(self, deviance, full_hat, scales, lower, upper):
        self.full_hat = full_hat
        self.scales = scales
        self.hess = None
        inside = np.all(full_hat - scales * 1e-2 > lower) and np.all(
            full_hat + scales * 1e-2 < upper
        )
        if inside and full_hat.size > 1:
            hess = hessian_by_pairs(deviance, full_hat, 1e-2 * scales)
            if np.all(np.isfinite(hess)):
                try:
                    np.linalg.cholesky(hess)
                    self.hess = hess
                except np.linalg.LinAlgError:
                    pass

    def path(self, w: int, others: list[int]) -> _ConditionalPath:
        if self.hess is None:
            return _ConditionalPath(
                self.full_hat[others], np.zeros(len(others)), self.full_hat[w], self.scales[others]
            )
        h_oo = self.hess[np.ix_(others, others)]
        slope = -np.linalg.solve(h_oo, self.hess[others, w])
        sd = np.sqrt(2.0 * np.diagonal(np.linalg.inv(h_oo)))
        return _ConditionalPath(self.full_hat[others], slope, self.full_hat[w], sd)


@dataclass
class _ConditionalPath:
    """The others' optimum along one profile, to first order: ``hat + slope (x - x_hat)``;
    ``spread`` their conditional standard deviations."""

    hat: np.ndarray
    slope: np.ndarray
    x_hat: float
    spread: np.ndarray

    def predict(self, x: float) -> np.ndarray:
        return self.hat + self.slope * (x - self.x_hat)


def _joint_extras(fit: GlmerFit) -> bool:
    """Whether the family's own parameters vary in the other parameters' profiles
    (glmmTMB's families, which estimate them jointly) rather than being held at their
    estimates (lme4's ``glmer.nb``, whose profiles hold the size fixed; the size's own
    profile re-optimizes the others, as refitting ``glmer`` with
    ``negative.binomial(k)`` at each ``k`` does)."""
    family = fit.family
    return bool(family.extra_names) and family.joint_vcov


def _extra_standard_errors(fit: GlmerFit, count: int) -> np.ndarray:
    """Wald standard errors of the family's own parameters on their unbounded scale (the
    first steps of their profiles); 0.3 where the Hessian gave none."""
    cov = fit._solution.vcov_extra
    if count == 0:
        return np.zeros(0)
    if cov is None:
        return np.full(count, 0.3)
    diag = np.diagonal(cov)[-count:]
    return np.where(np.isfinite(diag) & (diag > 0), np.sqrt(np.abs(diag)), 0.3)


def _lmm_profiles(fit: LmerFit) -> list[_Profile]:
    """Profiles of an lmer fit over its ML deviance (a REML fit is refitted by ML, as
    lme4 profiles)."""
    ml = fit.refit_ml()
    problem = ml.problem
    base = ml.objective
    layout = _VarianceLayout([b.structure for b in problem.blocks])
    structures = [b.structure for b in problem.blocks]
    values = parameter_values(problem.lambdas(ml.theta), ml.sigma, ml.fixef.to_numpy(), structures)
    nvp = values.size - problem.n_fixed
    v_hat = values[:nvp]
    lower_b, upper_b = layout.bounds()
    names = ml.parameter_names
    out = []

    def deviance_v(v: np.ndarray) -> float:
        theta = layout.theta(v)
        if theta is None or v[-1] <= 0:
            return BIG
        return _ml_deviance_at(problem, theta, v[-1])

    for w in range(nvp):
        others = [i for i in range(nvp) if i != w]
        state = {"start": v_hat[others].copy()}

        def zeta(x: float, w=w, others=others, state=state) -> float:
            def inner(u: np.ndarray) -> float:
                v = v_hat.copy()
                v[w] = x
                v[others] = u
                return deviance_v(v)

            if others:
                start = np.clip(state["start"], lower_b[others], upper_b[others])
                res = minimize_bounded(
                    inner,
                    start,
                    lower_b[others],
                    upper=upper_b[others],
                    initial_step=np.maximum(0.05 * np.abs(start), 1e-3),
                    ftol_abs=1e-10,
                    xtol_abs=1e-10,
                )
                state["start"] = res.x
                dev = res.fun
            else:
                dev = inner(np.zeros(0))
            return math.copysign(math.sqrt(max(dev - base, 0.0)), x - v_hat[w])

        def reset(state=state, others=others) -> None:
            state["start"] = v_hat[others].copy()

        scale = abs(v_hat[w]) if v_hat[w] != 0 else 0.1
        step = 0.2 * scale if lower_b[w] == 0 else 0.2
        out.append(_Profile(names[w], zeta, v_hat[w], step, lower_b[w], upper_b[w], reset))

    se = np.sqrt(np.diagonal(ml.vcov.to_numpy()))
    beta_hat = ml.fixef.to_numpy()
    for j in range(problem.n_fixed):
        state = {"theta": ml.theta.copy()}

        def zeta_beta(x: float, j=j, state=state) -> float:
            sub = problem.with_fixed_value(j, x)
            res = minimize_bounded(
                sub.objective,
                state["theta"],
                sub.theta_lower_bounds(),
                upper=sub.theta_upper_bounds(),
                initial_step=np.maximum(0.05 * np.abs(state["theta"]), 1e-3),
                ftol_abs=1e-10,
                xtol_abs=1e-10,
            )
            state["theta"] = res.x
            return math.copysign(math.sqrt(max(res.fun - base, 0.0)), x - beta_hat[j])

        def reset_beta(state=state) -> None:
            state["theta"] = ml.theta.copy()

        out.append(
            _Profile(names[nvp + j], zeta_beta, beta_hat[j], se[j], -np.inf, np.inf, reset_beta)
        )
    return out


@singledispatch
def _profiles(fit) -> list[_Profile]:
    raise ArgumentError(f"profiles are available for lmer and glmer fits, not {type(fit).__name__}")


_profiles.register(LmerFit, _lmm_profiles)
_profiles.register(GlmerFit, _glmm_profiles)


@singledispatch
def _blas(fit) -> AbstractContextManager:
    """The BLAS threads for a fit's profile evaluations: its fit's own rule."""
    return nullcontext()


@_blas.register
def _lmm_blas(fit: LmerFit) -> AbstractContextManager:
    return fit.problem.blas_context()


@_blas.register
def _glmm_blas(fit: GlmerFit) -> AbstractContextManager:
    return single_threaded_blas()  # as optim/glmm.py's fit


@singledispatch
def _check_profilable(fit) -> None:
    """A :class:`DataError` for fits without a likelihood surface to profile."""
    raise ArgumentError(f"profiles are available for lmer and glmer fits, not {type(fit).__name__}")


@_check_profilable.register
def _check_glmm_profilable(fit: GlmerFit) -> None:
    value = degenerate_glm_response(fit.design.y, fit.family.variance)
    if value is not None:
        raise DataError(
            f"cannot profile this fit: the response is {value:g} in every row, so the "
            "fixed effects diverge (complete separation) and the likelihood has no "
            "maximum to profile"
        )


@_check_profilable.register
def _check_lmm_profilable(fit: LmerFit) -> None:
    sigma = fit.sigma
    finite = math.isfinite(fit.objective) and math.isfinite(sigma) and sigma > 0
    if not finite or (fit.rows_available and fit.residual_vanishes()):
        raise DataError(
            f"cannot profile this fit: its objective is {fit.objective:g} and its residual "
            f"standard deviation {sigma:g}; the response is fitted exactly (is it "
            "constant?), so the likelihood has no maximum to profile"
        )


def profile_confint(fit, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals for sd/cor, sigma and fixed effects (lme4's names and order).

    Raises
    ------
    DataError
        For a degenerate fit (a response fitted exactly, such as a constant one).
    """
    level = check_level(level)
    _check_profilable(fit)
    z = stats.norm.ppf(0.5 + level / 2)
    rows = {}
    profiles = _profiles(fit)
    # one step per parameter (its two ends): a glmmTMB fit with zero inflation takes
    # about a minute; Ctrl-C stops it between evaluations (KeyboardInterrupt)
    with _blas(fit), ProgressBar(len(profiles), "profile") as bar:
        for prof in profiles:
            lo = _solve_end(prof, -z)
            prof.reset()
            hi = _solve_end(prof, z)
            rows[prof.name] = (prof.reported(lo), prof.reported(hi))
            bar.update()
    if any(math.isnan(a) or math.isnan(b) for a, b in rows.values()):
        warnings.warn("some profile intervals could not be found", RuntimeWarning, stacklevel=2)
    return pd.DataFrame(rows, index=["lower", "upper"]).T


def profile_traces(fit, level: float = 0.99, points: int = 12) -> pd.DataFrame:
    """zeta against each parameter on a grid spanning its ``level`` profile interval.

    Returns a long DataFrame with columns ``parameter``, ``value``, ``zeta`` (lme4's
    ``profile()``); plot zeta against value per parameter.
    """
    level = check_level(level)
    points = check_int(points, "points", minimum=1)
    _check_profilable(fit)
    z = stats.norm.ppf(0.5 + level / 2)
    frames = []
    profiles = _profiles(fit)
    with _blas(fit), ProgressBar(len(profiles), "profile") as bar:
        for prof in profiles:
            frames.append(_trace(prof, z, points))
            bar.update()
    return pd.concat(frames, ignore_index=True)


def _trace(prof: _Profile, z: float, points: int) -> pd.DataFrame:
    """One parameter's zeta on ``points`` values either side of its estimate, out to its
    ``zeta = +-z`` ends."""
    lo = _solve_end(prof, -z)
    prof.reset()
    hi = _solve_end(prof, z)
    prof.reset()
    grid_lo = np.linspace(prof.estimate, lo, points + 1)[1:]
    values, zetas = [prof.estimate], [0.0]
    for x in grid_lo:
        values.append(x)
        zetas.append(prof.zeta(x))
    prof.reset()
    for x in np.linspace(prof.estimate, hi, points + 1)[1:]:
        values.append(x)
        zetas.append(prof.zeta(x))
    order = np.argsort(values)
    return pd.DataFrame(
        {
            "parameter": prof.name,
            "value": np.asarray([prof.reported(v) for v in values])[order],
            "zeta": np.asarray(zetas)[order],
        }
    )
