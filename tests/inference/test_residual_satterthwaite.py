"""Satterthwaite df of fits with structured residuals, the structure's parameters included.

Two independent references:

- a dense computation in this file: the marginal covariance ``Sigma`` written out by hand
  from the natural parameters (random-intercept sd, sigma, Phi or Rho, the variance
  function's parameters), the REML criterion / deviance as ``log|Sigma| (+ log|X'Sigma^-1
  X|) + r'Sigma^-1 r``, its Hessian and the gradient of ``l' (X'Sigma^-1 X)^-1 l`` by
  central differences.  The df are invariant to the parametrization, so the natural scale
  used here checks the package's unconstrained one.  Tolerance 1e-4 relative: the
  central differences here (steps 1e-4 relative, error ~1e-7) and the package's
  extrapolated differences are both far more accurate; the optimum's own accuracy (the
  gradient ~1e-6 there) moves the df by less than 1e-5.
- lmerTest (``tests/reference/residual/make_satterthwaite_reference.R``): with Rho >= 0,
  compound symmetry within the inner groups plus ``(1 | outer)`` is the nested model
  ``(1 | outer) + (1 | outer:inner)``, whose lmerTest df the residual fit must reproduce
  (1e-4 relative, as the issue asks).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla

import mixedmodels as mm

REFERENCE = Path(__file__).parent.parent / "reference" / "residual"
LOG_2PI = np.log(2 * np.pi)


def _simulated(seed: int = 7, groups: int = 14, times: int = 6) -> pd.DataFrame:
    """Random intercepts, AR(1) errors and a larger error sd in arm "b"."""
    rng = np.random.default_rng(seed)
    rows = []
    phi = 0.5
    for g in range(groups):
        b = rng.normal(0, 1.2)
        e = rng.normal(0, 1) / np.sqrt(1 - phi**2)
        for t in range(times):
            arm = "b" if (g + t) % 2 else "a"
            x = rng.normal()
            e = phi * e + rng.normal() if t else e
            scale = 1.8 if arm == "b" else 1.0
            y = 2.0 + 0.7 * x + 0.5 * (arm == "b") + b + scale * e
            rows.append((f"g{g:02d}", t, arm, x, y))
    return pd.DataFrame(rows, columns=["g", "t", "arm", "x", "y"]).assign(
        g=lambda d: pd.Categorical(d["g"]), arm=lambda d: pd.Categorical(d["arm"])
    )


def _dense_df(deviance, nat: np.ndarray, X: np.ndarray, sigma_of, rel_step=1e-4) -> np.ndarray:
    """Satterthwaite df of each coefficient from a dense deviance of the natural parameters
    (central differences only)."""
    k = nat.size
    h = rel_step * np.maximum(np.abs(nat), 0.1)
    hess = np.zeros((k, k))
    f0 = deviance(nat)
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        hess[i, i] = (deviance(nat + e) - 2 * f0 + deviance(nat - e)) / h[i] ** 2
        for j in range(i):
            f = np.zeros(k)
            f[j] = h[j]
            hess[i, j] = hess[j, i] = (
                deviance(nat + e + f)
                - deviance(nat + e - f)
                - deviance(nat - e + f)
                + deviance(nat - e - f)
            ) / (4 * h[i] * h[j])
    A = 2 * np.linalg.inv(hess)

    def vcov(v):
        s = sigma_of(v)
        return np.linalg.inv(X.T @ np.linalg.solve(s, X))

    C = vcov(nat)
    out = []
    for j in range(X.shape[1]):
        grad = np.zeros(k)
        for i in range(k):
            e = np.zeros(k)
            e[i] = h[i]
            grad[i] = (vcov(nat + e)[j, j] - vcov(nat - e)[j, j]) / (2 * h[i])
        out.append(2 * C[j, j] ** 2 / (grad @ A @ grad))
    return np.array(out)


def _deviance_function(sigma_of, X, y, reml: bool):
    n, p = X.shape

    def deviance(v: np.ndarray) -> float:
        s = sigma_of(v)
        c = sla.cho_factor(s, lower=True)
        xs = sla.cho_solve(c, X)
        xsx = X.T @ xs
        beta = np.linalg.solve(xsx, xs.T @ y)
        r = y - X @ beta
        out = 2 * np.log(np.diagonal(c[0])).sum() + r @ sla.cho_solve(c, r)
        if reml:
            out += np.linalg.slogdet(xsx)[1] + (n - p) * LOG_2PI
        else:
            out += n * LOG_2PI
        return float(out)

    return deviance


def _fit(formula, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, **kwargs)


def test_ar1_with_varident_agrees_with_a_dense_reml_computation():
    d = _simulated()
    fit = _fit("y ~ x + arm + (1 | g)", d, correlation=mm.cor.AR1(), weights=mm.var.Ident("arm"))
    X = fit.X
    y = fit.design.y
    groups = d["g"].cat.codes.to_numpy()
    same = groups[:, None] == groups[None, :]
    lag = np.abs(d["t"].to_numpy()[:, None] - d["t"].to_numpy()[None, :])
    is_b = (d["arm"] == "b").to_numpy()

    def sigma_of(v):
        sd_b, sigma, phi, delta = v
        s = sigma * np.where(is_b, delta, 1.0)
        return same * (sd_b**2 + np.outer(s, s) * phi**lag)

    nat = np.array(
        [
            fit.varcorr.query("grp == 'g'")["sdcor"].iloc[0],
            fit.sigma,
            fit.correlation_parameters["Phi"],
            fit.variance_parameters["b"],
        ]
    )
    deviance = _deviance_function(sigma_of, X, y, reml=True)
    assert deviance(nat) == pytest.approx(fit.objective, rel=1e-10)  # the same model
    expected = _dense_df(deviance, nat, X, sigma_of)
    table = fit.fixef_table()
    np.testing.assert_allclose(table["df"].to_numpy(), expected, rtol=1e-4)
    # the structure's uncertainty matters here: treating Phi and delta as known gives
    # clearly larger df for the between-group intercept
    known = mm.lmer("y ~ x + arm + (1 | g)", d).fixef_table()["df"]
    assert abs(table["df"].iloc[0] - known.iloc[0]) > 1.0


def test_compound_symmetry_with_varexp_agrees_with_a_dense_ml_computation():
    d = _simulated(seed=11, groups=12, times=5).assign(
        cell=lambda f: pd.Categorical(f["t"] % 2),
        gc=lambda f: f["g"].astype(str) + "_" + f["cell"].astype(str),
    )
    fit = _fit(
        "y ~ x + (1 | g)",
        d,
        reml=False,
        correlation=mm.cor.CompSymm(group="g/cell"),
        weights=mm.var.Exp("x"),
    )
    X = fit.X
    y = fit.design.y
    g = d["g"].cat.codes.to_numpy()
    cell = d["gc"].to_numpy()
    same_g = g[:, None] == g[None, :]
    same_cell = cell[:, None] == cell[None, :]
    x = d["x"].to_numpy()

    def sigma_of(v):
        sd_b, sigma, rho, t = v
        s = sigma * np.exp(t * x)
        r = np.where(same_cell, rho, 0.0)
        np.fill_diagonal(r, 1.0)
        return same_g * sd_b**2 + np.outer(s, s) * r

    nat = np.array(
        [
            fit.varcorr.query("grp == 'g'")["sdcor"].iloc[0],
            fit.sigma,
            fit.correlation_parameters["Rho"],
            fit.variance_parameters["expon"],
        ]
    )
    deviance = _deviance_function(sigma_of, X, y, reml=False)
    assert deviance(nat) == pytest.approx(fit.objective, rel=1e-10)
    expected = _dense_df(deviance, nat, X, sigma_of)
    np.testing.assert_allclose(fit.fixef_table()["df"].to_numpy(), expected, rtol=1e-4)


CS_CASES = {
    "machines": ("Machines", "score ~ Machine + (1 | Worker)", "Worker/Machine"),
    "cake": ("cake", "angle ~ recipe + temp + (1 | replicate)", "replicate/recipe"),
}


@pytest.mark.parametrize("case", sorted(CS_CASES))
def test_compound_symmetry_df_equal_lmertest_of_the_nested_model(case):
    ref = json.loads((REFERENCE / "satterthwaite_cs_nested.json").read_text())[case]
    data, formula, group = CS_CASES[case]
    fit = _fit(formula, mm.datasets.load(data), correlation=mm.cor.CompSymm(group=group))
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-8)
    assert fit.correlation_parameters["Rho"] > 0
    table = fit.fixef_table()
    assert list(table.index) == ref["fixef_names"]
    np.testing.assert_allclose(table["std_error"], ref["se"], rtol=1e-5)
    np.testing.assert_allclose(table["df"], ref["df_satterthwaite"], rtol=1e-4)
    # lmerTest's type III F tests: the multi-df denominator df as well
    anova = mm.anova(fit)
    np.testing.assert_allclose(anova["DenDF"], ref["anova_dendf"], rtol=1e-4)
    np.testing.assert_allclose(anova["F value"], ref["anova_F"], rtol=1e-5)


def test_emmeans_satterthwaite_df_counts_the_structure_parameters():
    """Reproducer: emmeans' Satterthwaite df used the plain lmer problem (structure treated
    as known).  The pairwise contrast b - a is the ``arm[T.b]`` coefficient, so its df must
    equal the fixed-effect table's (an identity between two representations), which the
    dense computation above checks against finite differences."""
    d = _simulated()
    fit = _fit("y ~ x + arm + (1 | g)", d, correlation=mm.cor.AR1(), weights=mm.var.Ident("arm"))
    pairs = mm.emmeans(fit, "arm", lmer_df="satterthwaite").pairs()
    table = fit.fixef_table()
    assert pairs["df"].iloc[0] == pytest.approx(table["df"].iloc[2], rel=1e-8)
    estimate = abs(table["estimate"].iloc[2])
    assert abs(pairs["estimate"].iloc[0]) == pytest.approx(estimate, rel=1e-10)
