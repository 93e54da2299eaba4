"""Profile intervals of every parameter of a fit with structured residuals.

Reference: a dense computation in this file.  The ML deviance is written out from the
natural parameters (random-intercept sd, sigma, Phi, the varIdent ratio) with ``Sigma``
built by hand, and at each end of each profile interval it is minimized by scipy over the
other parameters (a fixed effect held by moving its column into the offset): the rise
over the minimum must be the chi-square quantile ``qchisq(0.95, 1) = 3.8415`` (lme4's
definition of the ends).  Tolerance 2e-3 absolute on the rise: the package solves for the
ends to 1e-10 with inner minimizations to 1e-10, scipy's Nelder-Mead here reaches the
minimum to ~1e-8, so 2e-3 only leaves room for the ends' own error (an end off by
delta moves the rise by ~ 2 z delta / se, below 1e-5 here).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
from scipy import optimize

import mixedmodels as mm

CUT = 3.841458820694124  # qchisq(0.95, 1)
LOG_2PI = np.log(2 * np.pi)


def _simulated(seed: int = 7, groups: int = 14, times: int = 6) -> pd.DataFrame:
    """Random intercepts, AR(1) errors and a larger error sd in arm "b"."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        b = rng.normal(0, 1.2)
        e = rng.normal(0, 1) / np.sqrt(1 - 0.5**2)
        for t in range(times):
            arm = "b" if (g + t) % 2 else "a"
            x = rng.normal()
            e = 0.5 * e + rng.normal() if t else e
            y = 2.0 + 0.7 * x + b + (1.8 if arm == "b" else 1.0) * e
            rows.append((f"g{g:02d}", t, arm, x, y))
    frame = pd.DataFrame(rows, columns=["g", "t", "arm", "x", "y"])
    return frame.assign(g=pd.Categorical(frame["g"]), arm=pd.Categorical(frame["arm"]))


@pytest.fixture(scope="module")
def case():
    d = _simulated()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer(
            "y ~ x + (1 | g)",
            d,
            reml=False,
            correlation=mm.cor.AR1(),
            weights=mm.var.Ident("arm"),
        )
    groups = d["g"].cat.codes.to_numpy()
    same = groups[:, None] == groups[None, :]
    lag = np.abs(d["t"].to_numpy()[:, None] - d["t"].to_numpy()[None, :])
    is_b = (d["arm"] == "b").to_numpy()

    def sigma_of(v):
        sd_b, sigma, phi, delta = v
        s = sigma * np.where(is_b, delta, 1.0)
        return same * (sd_b**2 + np.outer(s, s) * phi**lag)

    X, y = fit.X, fit.design.y

    def deviance(v, fixed=None):
        """ML deviance at natural parameters ``v``; ``fixed = (j, value)`` holds beta_j."""
        if v[0] < 0 or v[1] <= 0 or v[3] <= 0 or not -1 < v[2] < 1:
            return 1e10
        Xf, yf = X, y
        if fixed is not None:
            j, value = fixed
            Xf, yf = np.delete(X, j, axis=1), y - value * X[:, j]
        c = sla.cho_factor(sigma_of(v), lower=True)
        xs = sla.cho_solve(c, Xf)
        beta = np.linalg.solve(Xf.T @ xs, xs.T @ yf)
        r = yf - Xf @ beta
        return float(
            2 * np.log(np.diagonal(c[0])).sum() + r @ sla.cho_solve(c, r) + y.size * LOG_2PI
        )

    nat = np.array(
        [
            fit.varcorr.query("grp == 'g'")["sdcor"].iloc[0],
            fit.sigma,
            fit.correlation_parameters["Phi"],
            fit.variance_parameters["b"],
        ]
    )
    return fit, deviance, nat, fit.confint("profile")


def _minimum(f, start):
    res = optimize.minimize(
        f, start, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20000}
    )
    return res.fun


def test_dense_deviance_is_the_fits(case):
    fit, deviance, nat, _ = case
    assert deviance(nat) == pytest.approx(fit.objective, rel=1e-10)


def test_profile_ends_are_where_the_dense_deviance_rises_by_the_chi2_quantile(case):
    fit, deviance, nat, ci = case
    names = ["sd_(Intercept)|g", "sigma", "Phi", "b"]
    assert list(ci.index) == fit.parameter_names
    best = deviance(nat)
    for k, name in enumerate(names):
        assert ci.loc[name, "lower"] < fit.parameters[name] < ci.loc[name, "upper"]
        others = [i for i in range(4) if i != k]
        for end in ("lower", "upper"):

            def held(z, k=k, end=end, others=others, name=name):
                v = nat.copy()
                v[k] = ci.loc[name, end]
                v[others] = z
                return deviance(v)

            rise = _minimum(held, nat[others]) - best
            assert rise == pytest.approx(CUT, abs=2e-3), (name, end)
    for j, name in enumerate(fit.fixef.index):
        for end in ("lower", "upper"):
            rise = (
                _minimum(lambda v, j=j, e=end, n=name: deviance(v, (j, ci.loc[n, e])), nat) - best
            )
            assert rise == pytest.approx(CUT, abs=2e-3), (name, end)


def test_wald_and_profile_intervals_of_the_structure_are_close(case):
    # with 84 rows the likelihood of Phi and the ratio is near quadratic on nlme's
    # unconstrained scale: profile and Wald ends within 10% of the interval's width
    fit, _, _, prof = case
    wald = fit.confint("wald")
    for name in ("Phi", "b"):
        width = wald.loc[name, "upper"] - wald.loc[name, "lower"]
        np.testing.assert_allclose(prof.loc[name], wald.loc[name], atol=0.1 * width)


def test_profile_traces_cross_zero_at_the_estimates(case):
    fit, _, _, _ = case
    traces = fit.profile(level=0.95, points=2)
    assert set(traces["parameter"]) == set(fit.parameter_names)
    at_zero = traces[traces["zeta"] == 0.0].set_index("parameter")["value"]
    ests = fit.parameters
    for name in ("sd_(Intercept)|g", "sigma", "x"):
        assert at_zero[name] == pytest.approx(ests[name], rel=1e-10)
    # the ends of the traces are the 95% profile ends: |zeta| = 1.96 there
    ends = traces.groupby("parameter")["zeta"].agg(["min", "max"])
    np.testing.assert_allclose(ends["min"], -1.959963984540054, atol=1e-6)
    np.testing.assert_allclose(ends["max"], 1.959963984540054, atol=1e-6)
