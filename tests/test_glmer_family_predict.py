"""Predictions of zero-inflated fits on new data against glmmTMB 1.1.5's ``predict``
(reference/families/predict, made by make_zi_predict_reference.R): every 23rd row of the
data, the last two with a site (nest) level the fit did not see, each of glmmTMB's types,
with the random effects (``allow.new.levels = TRUE``: 0 for the unseen level) and without
(``re.form = NA``).

Tolerance: 1e-3 relative, as the fitted values of these cases in test_glmer_families.py
(the estimates agree with glmmTMB's to 1e-4 relative or 1e-4 standard errors, and a
prediction sums several of them); ``"link"`` and ``"zlink"`` (which cross 0) within 1e-3
absolute.  salamanders_zinb2 has no zero inflation: its zero-inflation intercept drifts
along a flat likelihood (ours -10.3, glmmTMB's -16.4), so there ``pi`` is compared as
below 1e-4 in both and ``"zlink"`` not at all.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError, ColumnNotFoundError, NewLevelError
from tests.catalogue import fit_cache
from tests.family_cases import FAMILY_DIR, family_cases

PREDICT_DIR = FAMILY_DIR / "predict"
CASES = [c for c in family_cases("glmmTMB") if (PREDICT_DIR / f"{c.name}.json").exists()]
IDS = [c.name for c in CASES]
fitted = fit_cache()


def reference(case):
    return json.loads((PREDICT_DIR / f"{case.name}.json").read_text())


def new_rows(case, ref) -> pd.DataFrame:
    frame = case.data().iloc[ref["rows"]].copy()
    group = frame[ref["group"]].astype(str).to_numpy()
    group[-2:] = ref["new_level"]
    frame[ref["group"]] = group
    return frame


def test_there_are_zero_inflated_cases_of_each_base_family():
    assert {c.reference["family"] for c in CASES} == {"poisson", "nbinom2", "nbinom1"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("population", [False, True], ids=["conditional_on_re", "re_form_na"])
def test_predictions_on_new_rows_match_glmmtmb(case, population):
    fit = fitted(case)
    ref = reference(case)
    rows = new_rows(case, ref)
    drifting = case.name == "salamanders_zinb2"
    for kind in ("link", "response", "conditional", "zprob", "zlink"):
        ours = fit.predict(
            rows, type=kind, include_random=not population, allow_new_levels=True
        )
        theirs = np.asarray(ref[kind + ("_population" if population else "")])
        assert ours.shape == theirs.shape
        if drifting and kind in ("zprob", "zlink"):
            if kind == "zprob":
                assert np.all(ours < 1e-4) and np.all(theirs < 1e-4)
            continue
        if kind in ("link", "zlink"):
            np.testing.assert_allclose(ours, theirs, atol=1e-3)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-3)


def test_identities_between_the_prediction_types():
    """On the fitted rows: response = (1 - zprob) conditional, conditional = exp(link),
    zprob = expit(zlink); and the fitted rows given as new data predict the same values
    (to rounding: 1e-10)."""
    case = next(c for c in CASES if c.name == "salamanders_zip")
    fit = fitted(case)
    link, cond = fit.predict(type="link"), fit.predict(type="conditional")
    zprob, zlink = fit.predict(type="zprob"), fit.predict(type="zlink")
    np.testing.assert_allclose(cond, np.exp(link), rtol=1e-12)
    np.testing.assert_allclose(zprob, 1 / (1 + np.exp(-zlink)), rtol=1e-12)
    np.testing.assert_allclose(fit.predict(type="response"), (1 - zprob) * cond, rtol=1e-12)
    np.testing.assert_allclose(fit.predict(type="response"), fit.fitted, rtol=1e-12)
    again = fit.predict(case.data(), type="response")
    np.testing.assert_allclose(again, fit.fitted, rtol=1e-10)


def test_new_rows_are_checked_and_incomplete_rows_are_nan():
    case = next(c for c in CASES if c.name == "salamanders_zip")
    fit = fitted(case)
    rows = case.data().head(4).copy()
    with pytest.raises(ColumnNotFoundError, match="'mined'"):
        fit.predict(rows.drop(columns="mined"), type="zprob")
    bad = rows.assign(mined=["yes", "no", "perhaps", "no"])
    with pytest.raises(NewLevelError, match="perhaps"):
        fit.predict(bad, type="response")
    mined = rows["mined"].astype(object).to_numpy().copy()
    mined[1] = None
    holes = rows.assign(mined=mined)
    out = fit.predict(holes, type="response")
    assert np.isnan(out[1]) and np.all(np.isfinite(out[[0, 2, 3]]))
    np.testing.assert_allclose(out[[0, 2, 3]], fit.fitted[[0, 2, 3]], rtol=1e-10)
    assert rows.equals(case.data().head(4))  # the user's frame is not modified


def test_zero_inflation_types_need_a_zero_inflated_fit():
    plain = fitted(next(c for c in family_cases("glmmTMB") if c.name == "salamanders_nbinom2"))
    with pytest.raises(ArgumentError, match="zero-inflated"):
        plain.predict(type="zprob")
    np.testing.assert_allclose(
        plain.predict(type="conditional"), plain.predict(type="response"), rtol=1e-15
    )
    assert mm.glmer  # the public entry point these fits come from
