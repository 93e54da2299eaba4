"""Agreement with lme4 / glmmTMB on cases that no other test uses: bundled data sets
rearranged (rows shuffled, factors recoded, response and predictors rescaled, weights) and
fresh simulated sets.  References and the data they were fitted to come from
``tests/reference/robust/make_robust_reference.R`` (lme4 1.1-31, glmmTMB 1.1.5).

Tolerances are the project's agreement tolerances for fits run to convergence: the
log-likelihood within 1e-6 relative (both programs stop at ftol ~1e-10 of an objective of
size 1e2-1e3), fixed effects within 1e-4 of the largest |beta| (or of their standard error),
standard errors within 2e-3 relative (lme4 differences its deviance for GLMM SEs; Gaussian
SEs are closed form and agree to 1e-5), theta within 1e-3 relative to its largest entry.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

HERE = Path(__file__).parent / "reference" / "robust"
CASES = sorted(p.stem for p in HERE.glob("*.json"))

# fits known to be wrong, each a strict xfail with its reason (so a fix turns it into a
# failure to be removed); the robustness review's entries were fixed on branch `xfix`
KNOWN: dict[str, str] = {}


def load(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((HERE / f"{name}.json").read_text())
    data = pd.read_csv(HERE / "data" / f"{name}.csv")
    for column, levels in (ref.get("factors") or {}).items():
        data[column] = pd.Categorical(data[column].astype(str), categories=levels)
    return ref, data


def fit_case(ref: dict, data: pd.DataFrame):
    weights = ref.get("weights")
    family = ref["family"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        extra = {}
        if ref.get("variance"):
            ((kind, column),) = ref["variance"].items()
            weights = getattr(mm.var, kind)(column)
        if ref.get("correlation"):
            ((kind, column),) = ref["correlation"].items()
            extra["correlation"] = getattr(mm.cor, kind)(column)
        if family == "gaussian":
            return mm.lmer(
                ref["formula"],
                data,
                reml=bool(ref["REML"]),
                weights=weights,
                contrasts=ref.get("contrasts"),
                **extra,
            )
        if family == "negative_binomial":
            return mm.glmer_nb(ref["formula"], data)
        if ref.get("zi"):
            extra["zi"] = ref["zi"]
        return mm.glmer(
            ref["formula"],
            data,
            family,
            link=ref.get("link"),
            weights=weights,
            n_agq=int(ref.get("nAGQ", 1)),
            **extra,
        )


def check(ref: dict, fit) -> None:
    assert abs(fit.loglik - ref["logLik"]) <= 1e-6 * abs(ref["logLik"])
    names = list(ref["fixef"])
    ours = fit.fixef[names].to_numpy()
    theirs = np.array([ref["fixef"][n] for n in names])
    se = np.asarray(ref["se"], dtype=float)
    scale = np.maximum(np.max(np.abs(theirs)), 0.0)
    np.testing.assert_array_less(np.abs(ours - theirs), np.maximum(1e-4 * scale, 1e-3 * se))
    our_se = np.sqrt(np.diag(fit.vcov.loc[names, names].to_numpy()))
    # where lme4's own finite differences are noisy (prior weights), the reference SEs are
    # from a Richardson-extrapolated wide-step Hessian of lme4's deviance function
    # from a Richardson-extrapolated wide-step Hessian of lme4's deviance function; for
    # glmmTMB's Gaussian fits (whose SEs invert the Hessian in all parameters) they are
    # lme4's (X'V^-1 X)^-1 at glmmTMB's estimates
    expected_se = ref.get("se_richardson") or ref.get("se_conditional") or se
    np.testing.assert_allclose(our_se, expected_se, rtol=2e-3)
    # lmerTest / pbkrtest differentiate the deviance numerically (numDeriv): their df carry
    # ~1e-5 relative error (Penicillin's Satterthwaite df: 9e-5); 1e-3 relative is the bound
    for ddf, key in (("satterthwaite", "df_satterthwaite"), ("kenward-roger", "df_kenward_roger")):
        if ref.get(key) is not None:
            df = fit.fixef_table(ddf)["df"].to_numpy()
            np.testing.assert_allclose(df, np.atleast_1d(ref[key]), rtol=1e-3)
    if ref.get("anova"):  # type III F tests (Satterthwaite): lmerTest's F within 1e-5,
        # DenDF as the df above (mm.anova has no Kenward-Roger table; pbkrtest's is stored)
        table = ref["anova"]
        ours = mm.anova(fit).loc[table["terms"]]
        np.testing.assert_allclose(ours["F value"], table["F"], rtol=1e-5)
        np.testing.assert_allclose(ours["DenDF"], table["DenDF"], rtol=1e-3)
    if ref.get("profile"):  # lme4 stops its profile at 1e-3-ish in zeta: ends within 1e-3
        # of the interval's width
        prof = ref["profile"]
        ours = fit.confint("profile").loc[prof["rows"]]
        width = np.asarray(prof["upper"]) - np.asarray(prof["lower"])
        np.testing.assert_array_less(np.abs(ours["lower"] - prof["lower"]), 1e-3 * width)
        np.testing.assert_array_less(np.abs(ours["upper"] - prof["upper"]), 1e-3 * width)
    if ref.get("k") is not None:  # glmer.nb's size
        assert fit.family.k == pytest.approx(ref["k"], rel=1e-4)
    if ref["engine"] == "glmmTMB" and ref["family"] != "poisson":  # the family's dispersion
        sigma = fit.sigma if ref["family"] == "gaussian" else fit.extra_parameters["sigma"]
        assert sigma == pytest.approx(ref["sigma"], rel=1e-3)
    if ref.get("correlation_parameters"):
        expected = pd.Series(ref["correlation_parameters"], dtype=float)
        got = np.asarray(fit.correlation_parameters, dtype=float)
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-4)
    if ref.get("variance_parameters"):
        expected = pd.Series(ref["variance_parameters"], dtype=float)
        got = fit.variance_parameters[expected.index]
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-5)
    if ref.get("theta") is not None:
        theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
        tol = 1e-3 * max(float(np.max(np.abs(theta))), 1e-8)
        np.testing.assert_array_less(np.abs(np.asarray(fit.theta) - theta), tol + 1e-12)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN[n]))
        if n in KNOWN
        else n
        for n in CASES
    ],
)
def test_agrees_with_r(name):
    ref, data = load(name)
    check(ref, fit_case(ref, data))
