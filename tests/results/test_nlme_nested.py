"""Nested grouping levels in ``mm.nlme`` (``random="Asym ~ 1 | site/plot"``, nlme's
multilevel model) against ``nlme::nlme`` (nlme 3.1-162): reference values, data and each
case's Python arguments made by tests/reference/nlmelevels/make_nlmelevels.R, fitted with
nlme's tight control (the Lindstrom-Bates fixed point, which mm.nlme computes).  The case of
tests/reference/nlmecheck (``nested_groups``, ML) is checked in
test_nlme_agreement_more.py; here: REML on its data, two random effects at each level
(pdDiag and general), a covariate on the asymptote and three levels (region/site/plot).

Tolerances: the issue's (logLik 1e-6 relative, fixed effects 1e-4, SEs, sds, sigma and
correlations 1e-3); measured largest gaps over the five cases: logLik 5.3e-10, fixed effects
1.2e-9, SEs 7.1e-7, sds 2.1e-6.  Conditional modes, fitted values and predictions at every
level: 1e-5 relative (measured 1.1e-7).  nlme warns "step halving factor reduced below
minimum in PNLS step" on these fits (its tight pnlsTol is below what rounding lets PNLS
gain); its REML fixed effects equal its ML ones (nested_groups) to 4e-10, so it stops at the
fixed point.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError, NewLevelError

HERE = Path(__file__).resolve().parents[1] / "reference" / "nlmelevels"
REF = json.loads((HERE / "nlmelevels_reference.json").read_text())["cases"]
CHECK = Path(__file__).resolve().parents[1] / "reference" / "nlmecheck"


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


@pytest.fixture(scope="module")
def fits() -> dict:
    return {name: mm.nlme(data=load(name), **case["py"]) for name, case in REF.items()}


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("name", list(REF))
def test_estimates(fits, name):
    fit, ref = fits[name], REF[name]
    assert isinstance(fit, mm.NestedNlmeFit) and fit.converged
    assert fit.n_obs == ref["nobs"]
    assert list(fit.n_groups_levels.values()) == ref["ngroups"]
    assert fit.n_groups == ref["ngroups"][-1]
    assert abs(fit.loglik - ref["logLik"]) <= 1e-6 * abs(ref["logLik"])
    assert list(fit.fixef.index) == ref["fixef_names"]
    assert _rel(fit.fixef, ref["fixef"]) < 1e-4
    assert _rel(fit.std_errors, ref["se"]) < 1e-3
    assert _rel(fit.sigma, ref["sigma"]) < 1e-3
    assert fit.n_params == ref["df"]
    np.testing.assert_allclose([fit.aic, fit.bic], [ref["AIC"], ref["BIC"]], rtol=1e-6)
    table = fit.coef_table()
    np.testing.assert_array_equal(table["DF"].to_numpy(), ref["tTable"]["df"])
    np.testing.assert_allclose(table["Std.Error"], ref["tTable"]["se"], rtol=1e-3)
    covs = list(fit.random_covariances.values())
    assert len(covs) == len(ref["levels"])
    for cov, level in zip(covs, ref["levels"], strict=True):
        assert list(cov.index) == level["names"]
        c = cov.to_numpy()
        sd = np.sqrt(np.diag(c))
        np.testing.assert_allclose(sd, level["sd"], rtol=1e-3)
        if level["cor"] and not fit.design.random.diagonal:
            cor = (c / np.outer(sd, sd))[np.tril_indices(len(sd), -1)]
            np.testing.assert_allclose(cor, level["cor"], atol=1e-3)
    vc = fit.varcorr
    np.testing.assert_allclose(vc["StdDev"].to_numpy()[:-1],
                               np.concatenate([lv["sd"] for lv in ref["levels"]]), rtol=1e-3)


@pytest.mark.parametrize("name", list(REF))
def test_ranef_coef_fitted_predict(fits, name):
    """Every level's conditional modes (matched by nlme's group labels, ``s1`` and
    ``s1/p1``), the innermost groups' coef, fitted values at every level (0 to 2, or 3)
    and nlme's predict(level = 0:Q) on new rows."""
    fit, ref = fits[name], REF[name]
    sigma = ref["sigma"]
    for (level, ours), theirs in zip(fit.ranef_levels.items(), ref["levels"], strict=True):
        assert list(ours.columns) == theirs["names"]
        got = ours.loc[theirs["groups"]].to_numpy()
        for j, values in enumerate(theirs["ranef"].values()):
            scale = max(np.max(np.abs(values)), sigma)
            assert np.max(np.abs(got[:, j] - values)) < 1e-5 * scale, level
    coef = fit.coef().loc[ref["coef_groups"]]
    for col, values in ref["coef"].items():
        if col in coef.columns:  # nlme's Asym.(Intercept), Asym.x: through the design below
            np.testing.assert_allclose(coef[col], values, rtol=1e-5)
    for k, values in enumerate(ref["fitted"]):
        np.testing.assert_allclose(fit.fitted(k), values, rtol=1e-5)
    np.testing.assert_allclose(fit.fitted(), ref["fitted"][-1], rtol=1e-5)
    new = pd.DataFrame(ref["newdata"])
    for k, values in enumerate(ref["predict"]):
        np.testing.assert_allclose(fit.predict(new, level=k), values, rtol=1e-5)


def test_summary_blocks(fits):
    """nlme's summary of a nested fit: a random-effects block per level (the residual sd
    on the innermost's line) and the group counts per level."""
    text = fits["nested_reml"].summary()
    assert " Formula: Asym ~ 1 | site" in text
    assert " Formula: Asym ~ 1 | plot %in% site" in text
    lines = text.splitlines()
    i = lines.index("Number of Groups: ")
    assert lines[i + 1].split() == ["site", "plot", "%in%", "site"]
    assert lines[i + 2].split() == ["4", "20"]
    site = lines[lines.index(" Formula: Asym ~ 1 | site") + 2].split()
    assert site[0] == "StdDev:" and float(site[1]) == pytest.approx(
        REF["nested_reml"]["levels"][0]["sd"][0], rel=5e-7)


def test_reml_keeps_ml_fixed_effects(fits):
    """nlme's REML with nested levels, as with one: the ML fit's fixed effects (the
    nlmecheck case nested_groups is the ML fit of the same data)."""
    ml = mm.nlme(data=pd.read_csv(CHECK / "data" / "nested_groups.csv"),
                 **{**REF["nested_reml"]["py"], "method": "ML"})
    np.testing.assert_allclose(fits["nested_reml"].fixef, ml.fixef, rtol=1e-7)
    n, p = ml.n_obs, len(ml.fixef)
    np.testing.assert_allclose(fits["nested_reml"].sigma**2 * (n - p), ml.sigma**2 * n,
                               rtol=1e-6)


def test_one_level_on_the_inner_groups_is_the_nested_model_without_sites(fits):
    """The one-level model on the site/plot labels is the nested model with the site
    variance at 0: the same groups, a lower likelihood (the site sd is 5.7 here), and
    anova's likelihood ratio is twice the difference with one parameter more."""
    nested = fits["nested_covariate"]
    data = load("nested_covariate")
    data["sp"] = data["site"] + "/" + data["plot"]
    one = mm.nlme(data=data, **{**REF["nested_covariate"]["py"], "random": "Asym ~ 1 | sp"})
    assert one.loglik < nested.loglik - 0.25  # measured: 0.507 lower
    assert list(one.ranef.index) == list(nested.ranef.index)
    table = one.anova(nested)
    assert table["L.Ratio"].iloc[1] == pytest.approx(2 * (nested.loglik - one.loglik))
    assert table["df"].iloc[1] - table["df"].iloc[0] == 1


def test_simulate_covariances(fits):
    """Simulated responses of a model linear in its random parameter (SSlogis in Asym):
    each row's variance is ``(sd_site^2 + sd_plot^2) g_j^2 + sigma^2`` and two rows of one
    site but different plots covary by ``sd_site^2 g_j g_k`` (g = dSSlogis/dAsym), exactly;
    4,000 draws estimate a variance to 2.2% (one sd), so 10% is 4.5 sds."""
    fit = fits["nested_reml"]
    sims = fit.simulate(4000, seed=11)
    sd1, sd2 = (np.sqrt(c.to_numpy()[0, 0]) for c in fit.random_covariances.values())
    age = fit.design.covariates["input"]
    xmid, scal = fit.fixef["xmid"], fit.fixef["scal"]
    g = 1 / (1 + np.exp((xmid - age) / scal))
    var = np.var(sims, axis=1)
    want = (sd1**2 + sd2**2) * g**2 + fit.sigma**2
    np.testing.assert_allclose(var, want, rtol=0.10)
    data = load("nested_reml")
    j = np.flatnonzero((data["site"] == "s2") & (data["plot"] == "p1") & (data["age"] == 1500))
    k = np.flatnonzero((data["site"] == "s2") & (data["plot"] == "p3") & (data["age"] == 1500))
    cov = np.cov(sims[j[0]], sims[k[0]])[0, 1]
    assert cov == pytest.approx(sd1**2 * g[j[0]] * g[k[0]], rel=0.15)


def test_errors(fits):
    fit = fits["nested_reml"]
    new = pd.DataFrame({"age": [500.0], "site": ["s1"], "plot": ["p9"]})
    with pytest.raises(NewLevelError, match="plot %in% site"):
        fit.predict(new, level=2)
    assert np.isfinite(fit.predict(new, level=1)).all()
    with pytest.raises(ArgumentError, match="level must be 0"):
        fit.fitted(3)
    data = load("nested_reml")
    with pytest.raises(ArgumentError, match="'Laplace' is not available with nested"):
        mm.nlme(data=data, **{**REF["nested_reml"]["py"], "method": "Laplace"})
    with pytest.raises(ArgumentError, match="variance functions"):
        mm.nlme(data=data, weights=mm.var.Power(), **REF["nested_reml"]["py"])
