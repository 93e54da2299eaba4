"""Likelihood-ratio tests between nested families: Poisson inside the negative binomial
(the size k -> infinity), Salamanders ``count ~ spp + mined + (1|site)``, against lme4
1.1-31's ``anova(glmer(poisson), glmer.nb)`` and glmmTMB 1.1.5's ``anova(poisson,
nbinom2)`` (reference/families/anova, made by make_anova_reference.R).

Tolerances: log-likelihoods, AIC and BIC within 1e-6 relative (the families' agreement
tolerance); the statistic, a difference of two log-likelihoods of ~900, within 2e-3
absolute (1e-6 relative of each; measured 1e-6); the p value within 1e-3 relative (it
moves by Chisq's error times its log-derivative, ~0.5: 1e-3 relative for 2e-3); one
degree of freedom (as R counts it, without the boundary correction k = infinity would
call for).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import mixedmodels as mm
from tests.family_cases import FAMILY_DIR, load_data

REFERENCE = json.loads((FAMILY_DIR / "anova" / "salamanders_poisson_nb.json").read_text())
FORMULA = "count ~ spp + mined + (1|site)"


@pytest.fixture(scope="module")
def fits():
    data = load_data("Salamanders")
    return {
        "poisson": mm.glmer(FORMULA, data, "poisson"),
        "glmer_nb": mm.glmer_nb(FORMULA, data),
        "nbinom2": mm.glmer(FORMULA, data, "nbinom2"),
    }


@pytest.mark.parametrize(
    "engine, larger", [("lme4", "glmer_nb"), ("glmmTMB", "nbinom2")], ids=["lme4", "glmmTMB"]
)
def test_poisson_against_negative_binomial_matches_r(fits, engine, larger):
    ref = REFERENCE[engine]
    table = mm.anova(fits["poisson"], fits[larger])
    assert list(table["npar"]) == ref["npar"]
    np.testing.assert_allclose(table["logLik"], ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(table["AIC"], ref["AIC"], rtol=1e-6)
    np.testing.assert_allclose(table["BIC"], ref["BIC"], rtol=1e-6)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"], abs=2e-3)
    assert int(table["Df"].iloc[1]) == ref["Df"] == 1
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"], rel=1e-3)
