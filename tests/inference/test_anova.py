"""Likelihood-ratio tables against lme4's anova(m8, m9) and F tests against lmerTest's
anova(m) (references in tests/reference/inference, made by make_summary_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm

REF = Path(__file__).parent.parent / "reference" / "inference"


def load(name):
    return json.loads((REF / name).read_text())


def test_likelihood_ratio_table_matches_lme4():
    df = mm.datasets.load("sleepstudy")
    m8 = mm.lmer("Reaction ~ Days + (1|Subject)", df)
    m9 = mm.lmer("Reaction ~ Days + (Days|Subject)", df)
    with pytest.warns(UserWarning, match="refitting model"):
        table = mm.anova(m9, m8, names=["m9", "m8"])  # sorted by npar as lme4 does
    ref = load("anova_lrt_sleepstudy.json")
    assert list(table.index) == ["m8", "m9"]
    assert list(table.npar) == ref["npar"]
    for col, key in [
        ("AIC", "AIC"),
        ("BIC", "BIC"),
        ("logLik", "logLik"),
        ("deviance", "deviance"),
    ]:
        np.testing.assert_allclose(table[col], ref[key], rtol=1e-7)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], rel=1e-5)
    assert table["Df"].iloc[1] == 2
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"][1], rel=1e-4)
    assert "ML" in table.attrs["note"]


def test_different_data_is_an_error():
    df = mm.datasets.load("sleepstudy")
    a = mm.lmer("Reaction ~ Days + (1|Subject)", df)
    b = mm.lmer("Reaction ~ Days + (1|Subject)", df.iloc[:170])
    with pytest.raises(mm.DataError, match="same data"):
        mm.anova(a, b)


def test_non_nested_models_warn():
    df = mm.datasets.load("sleepstudy").assign(D2=lambda d: d.Days**2)
    a = mm.lmer("Reaction ~ Days + (1|Subject)", df, reml=False)
    b = mm.lmer("Reaction ~ D2 + (1|Subject) + (0 + Days|Subject)", df, reml=False)
    with pytest.warns(mm.MixedModelsWarning, match="nested"):
        mm.anova(a, b)


@pytest.mark.parametrize(
    "data, formula, ref",
    [
        ("ergoStool", "effort ~ Type + (1|Subject)", "anova_type3_ergostool.json"),
        ("Orthodont", "distance ~ age + Sex + (1|Subject)", "anova_type3_orthodont.json"),
        (
            "Orthodont",
            "distance ~ age * Sex + (1|Subject)",
            "anova_type3_orthodont_interaction.json",
        ),
        (
            "cake",
            "angle ~ recipe * temp + (1|recipe:replicate)",
            "anova_type3_cake_interaction.json",
        ),
        (  # a factor made in the formula and R functions: re-coded like a factor column
            "Arabidopsis",
            "log(1 + total.fruits) ~ factor(nutrient) * amd + sin(rack) + (1|popu)",
            "anova_type3_arabidopsis_factor_call.json",
        ),
    ],
)
def test_f_tests_match_lmertest(data, formula, ref):
    """F within 1e-6, NumDF exact, DenDF and p within 1e-3 relative (lmerTest's tolerance
    for Satterthwaite quantities)."""
    table = mm.anova(mm.lmer(formula, mm.datasets.load(data)))
    r = load(ref)
    assert list(table.index) == r["terms"]
    np.testing.assert_allclose(table["F value"], r["F"], rtol=1e-5)
    np.testing.assert_array_equal(table["NumDF"], r["NumDF"])
    np.testing.assert_allclose(table["DenDF"], r["DenDF"], rtol=1e-3)
    np.testing.assert_allclose(table["Pr(>F)"], r["p"], rtol=1e-3)


def test_glmer_likelihood_ratio_table_matches_lme4():
    """glmer fits compared by their Laplace log-likelihoods; lme4 with PIRLS converged
    (1e-7: two optimizers on the same function; p-value 1e-5 as it is ~1e-65)."""
    df = mm.datasets.load("grouseticks")
    g1 = mm.glmer("TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", df, "poisson")
    g2 = mm.glmer("TICKS ~ YEAR + cHEIGHT + (1|BROOD) + (1|LOCATION)", df, "poisson")
    table = mm.anova(g1, g2)
    ref = load("anova_lrt_glmer_grouseticks.json")
    assert list(table.npar) == ref["npar"]
    for col in ["AIC", "BIC", "logLik", "deviance"]:
        np.testing.assert_allclose(table[col], ref[col], rtol=1e-7)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], rel=1e-5)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"][1], rel=1e-4)
    with pytest.raises(mm.ArgumentError, match="glmer"):
        mm.anova(g1)
