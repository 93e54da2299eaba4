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
from mixedmodels.optim import minimize_bounded
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


def _glmm_profiles(fit: GlmerFit) -> list[_Profile]:
    """Profiles of a glmer fit over its Laplace (or quadrature) deviance: variance
    parameters on the sd/cor scale (no sigma) and fixed effects, each with every other
    parameter re-optimized (PIRLS warm-started from the last mode)."""
    problem = fit.problem
    base = fit._solution.objective
    layout = _VarianceLayout([b.structure for b in problem.blocks])
    beta_hat = fit.fixef.to_numpy()
    structures = [b.structure for b in problem.blocks]
    values = parameter_values(problem.lambdas(fit.theta), 1.0, beta_hat, structures)
    nvp = values.size - problem.n_fixed - 1  # no sigma
    v_hat = values[:nvp]
    lower_b, upper_b = (b[:nvp] for b in layout.bounds())
    warm = {"u": fit._solution.mode.u}

    def deviance(v: np.ndarray, beta: np.ndarray) -> float:
        theta = layout.theta(np.append(v, 1.0))
        if theta is None:
            return BIG
        try:
            if fit.n_agq > 1:
                value, mode = problem.quadrature_deviance(theta, beta, fit.n_agq, warm["u"])
            else:
                mode = problem.mode(theta, beta, warm["u"])
                value = mode.laplace
        except PirlsError:
            return BIG
        warm["u"] = mode.u
        return value

    full_hat = np.concatenate([v_hat, beta_hat])
    lower_all = np.concatenate([lower_b, np.full(beta_hat.size, -np.inf)])
    upper_all = np.concatenate([upper_b, np.full(beta_hat.size, np.inf)])
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    scales = np.concatenate([np.maximum(0.1 * np.abs(v_hat), 1e-2), np.maximum(0.2 * se, 1e-4)])
    names = fit.parameter_names
    out = []
    for w in range(full_hat.size):
        others = [i for i in range(full_hat.size) if i != w]
        state = {"start": full_hat[others].copy()}

        def zeta(x: float, w=w, others=others, state=state) -> float:
            def inner(u: np.ndarray) -> float:
                full = full_hat.copy()
                full[w] = x
                full[others] = u
                return deviance(full[:nvp], full[nvp:])

            start = np.clip(state["start"], lower_all[others], upper_all[others])
            res = minimize_bounded(
                inner,
                start,
                lower_all[others],
                upper=upper_all[others],
                initial_step=scales[others],
                ftol_abs=1e-10,
                xtol_abs=1e-9,
            )
            state["start"] = res.x
            return math.copysign(math.sqrt(max(res.fun - base, 0.0)), x - full_hat[w])

        def reset(state=state, others=others) -> None:
            state["start"] = full_hat[others].copy()
            warm["u"] = fit._solution.mode.u

        if w < nvp:
            scale = abs(v_hat[w]) if v_hat[w] != 0 else 0.1
            step = 0.2 * scale if lower_b[w] == 0 else 0.2
        else:
            step = se[w - nvp]
        out.append(_Profile(names[w], zeta, full_hat[w], step, lower_all[w], upper_all[w], reset))
    return out


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
    if not (math.isfinite(fit.objective) and math.isfinite(sigma) and sigma > 0):
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
    for prof in _profiles(fit):
        lo = _bracket_and_solve(prof.zeta, prof.estimate, -z, prof.step, prof.lower)
        prof.reset()
        hi = _bracket_and_solve(prof.zeta, prof.estimate, z, prof.step, prof.upper)
        rows[prof.name] = (lo, hi)
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
    for prof in _profiles(fit):
        lo = _bracket_and_solve(prof.zeta, prof.estimate, -z, prof.step, prof.lower)
        prof.reset()
        hi = _bracket_and_solve(prof.zeta, prof.estimate, z, prof.step, prof.upper)
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
        frames.append(
            pd.DataFrame(
                {
                    "parameter": prof.name,
                    "value": np.asarray(values)[order],
                    "zeta": np.asarray(zetas)[order],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
