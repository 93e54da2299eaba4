"""Profiles of every parameter of a fit with structured residuals (lme4's ``profile`` and
``confint(method = "profile")`` extended to nlme's correlation and variance parameters).

As lme4 does, the profiles use the ML deviance (a REML fit is refitted by ML first).  The
variance parameters are ``w = (sd/cor of each term as reported, sigma, u_cor, u_var)``
(the structure's parameters on nlme's unconstrained scale); for a value of one of them
the deviance with sigma explicit
(:func:`~mixedmodels.optim.residual_profile.explicit_deviance`) is minimized over the
others, and ``zeta = sign(x - x_hat) sqrt(d_min(x) - d_hat)``.  A fixed effect is held by
moving its column into the offset
(:func:`~mixedmodels.optim.residual_profile.with_fixed_value`) and the whole residual
problem re-optimized.  Ends solve ``|zeta| = z_{(1 + level) / 2}`` or stop at a bound
(sd 0, correlation -+1) as in :mod:`mixedmodels.inference.profile`.

The structure's parameters are profiled on their unconstrained scale;
:meth:`ResidualLmerFit.confint` transforms the ends to the natural scale (as nlme's
``intervals``), while :meth:`ResidualLmerFit.profile` traces zeta on the unconstrained
scale for them.
"""

from __future__ import annotations

import math

import numpy as np

from mixedmodels.inference.profile import _Profile, _profiles, _VarianceLayout
from mixedmodels.optim import minimize_bounded
from mixedmodels.optim.residual import residual_blas
from mixedmodels.optim.residual_profile import explicit_deviance, with_fixed_value
from mixedmodels.results.residual_fit import ResidualLmerFit


def _zeta_from(base: float, centre: float):
    """``(x, d) -> sign(x - centre) sqrt(d - base)``."""

    def signed(x: float, dev: float) -> float:
        return math.copysign(math.sqrt(max(dev - base, 0.0)), x - centre)

    return signed


def residual_profiles(fit: ResidualLmerFit) -> list[_Profile]:
    """One :class:`_Profile` per parameter of ``fit.parameter_names``, ML deviance."""
    with residual_blas(fit.residual_problem):
        return _residual_profiles(fit)


def _residual_profiles(fit: ResidualLmerFit) -> list[_Profile]:
    ml = fit.refit_ml()
    rp = ml.residual_problem
    x_hat = ml.optimum_parameters
    n_theta = rp.n_theta
    structures = [b.structure for b in rp.blocks]
    layout = _VarianceLayout(structures)
    reported = ml.parameters.to_numpy()
    n_reported = len(ml.parameter_names) - rp.n_fixed - rp.n_cor - rp.n_var  # sd/cor + sigma
    k_struct = rp.n_cor + rp.n_var
    w_hat = np.concatenate([reported[:n_reported], x_hat[n_theta:]])
    low_v, up_v = layout.bounds()
    lower = np.concatenate([low_v, np.full(k_struct, -np.inf)])
    upper = np.concatenate([up_v, np.full(k_struct, np.inf)])
    base = ml.objective

    def deviance_w(w: np.ndarray) -> float:
        theta = layout.theta(w[:n_reported])
        sigma = w[n_reported - 1]
        if theta is None or not sigma > 0:
            return 1e100
        return explicit_deviance(rp, np.concatenate([theta, w[n_reported:]]), sigma)

    names = ml.parameter_names
    structure_names = names[len(names) - k_struct :] if k_struct else []
    variance_names = names[:n_reported] + structure_names
    se_u = np.sqrt(np.abs(np.diagonal(ml.structure_vcov))) if k_struct else np.zeros(0)
    out: list[_Profile] = []
    for w in range(w_hat.size):
        others = [i for i in range(w_hat.size) if i != w]
        state = {"start": w_hat[others].copy()}
        signed = _zeta_from(base, w_hat[w])

        def zeta(x: float, w=w, others=others, state=state, signed=signed) -> float:
            def inner(z: np.ndarray) -> float:
                v = w_hat.copy()
                v[w] = x
                v[others] = z
                return deviance_w(v)

            start = np.clip(state["start"], lower[others], upper[others])
            res = minimize_bounded(
                inner,
                start,
                lower[others],
                upper=upper[others],
                initial_step=np.maximum(0.05 * np.abs(start), 1e-3),
                ftol_abs=1e-10,
                xtol_abs=1e-10,
            )
            state["start"] = res.x
            return signed(x, res.fun)

        def reset(state=state, others=others) -> None:
            state["start"] = w_hat[others].copy()

        if w < n_reported:
            scale = abs(w_hat[w]) if w_hat[w] != 0 else 0.1
            step = 0.2 * scale if lower[w] == 0 else 0.2
        else:
            se = se_u[w - n_reported]
            step = float(se) if np.isfinite(se) and se > 0 else 0.5
        out.append(_Profile(variance_names[w], zeta, w_hat[w], step, lower[w], upper[w], reset))

    beta_hat = ml.fixef.to_numpy()
    se_beta = np.sqrt(np.diagonal(ml.vcov.to_numpy()))
    fixed_names = list(ml.fixef.index)
    for j in range(rp.n_fixed):
        state = {"x": x_hat.copy()}
        signed = _zeta_from(base, beta_hat[j])

        def zeta_beta(x: float, j=j, state=state, signed=signed) -> float:
            # the residual problem without beta_j, warm-started at the last optimum (its
            # fitted-value covariate, if any, held at the fit's fixed point)
            sub = with_fixed_value(rp, j, x)
            start = np.clip(state["x"], sub.lower_bounds(), sub.upper_bounds())
            res = minimize_bounded(
                sub.objective,
                start,
                sub.lower_bounds(),
                upper=sub.upper_bounds(),
                initial_step=np.maximum(0.05 * np.abs(start), 1e-3),
                ftol_abs=1e-10,
                xtol_abs=1e-10,
            )
            state["x"] = res.x
            return signed(x, res.fun)

        def reset_beta(state=state) -> None:
            state["x"] = x_hat.copy()

        out.append(
            _Profile(
                fixed_names[j], zeta_beta, beta_hat[j], se_beta[j], -np.inf, np.inf, reset_beta
            )
        )
    order = {name: i for i, name in enumerate(names)}
    return sorted(out, key=lambda p: order[p.name])


_profiles.register(ResidualLmerFit, residual_profiles)
