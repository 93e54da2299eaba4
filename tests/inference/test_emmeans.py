"""Estimated marginal means, contrasts and trends against R's emmeans 1.8.4 (references:
tests/reference/inference/make_emmeans_reference.R -> emmeans_reference.json).

Every query of the reference (a case = data set + formula; a query = specs, by, at,
weights, df method, scale, contrast method, adjustment) is run here with the same
arguments and every column of R's ``summary(..., infer = c(TRUE, TRUE))`` compared:

* lmer cases at lme4's theta (``start=theta, optimize=False``); glmer cases at our
  estimates, which the R script gave to lme4's reference grid (see its header), so both
  programs compute from the same beta and vcov;
* estimates, SEs and (unadjusted or Tukey/Sidak/Bonferroni) interval ends within 1e-6
  relative; df within 1e-3 relative (measured: KR within 1e-9, Satterthwaite within
  2e-6: both differentiate the deviance numerically); p-values within 1e-3 relative
  (above 1e-300);
* two interval kinds are approximate in R itself: dunnettx's quantile is a root found
  by ``uniroot(tol = 5e-4)`` and mvt's by mvtnorm's randomised ``qmvt``, so their ends
  are compared within 1e-3 SE; mvt p-values are randomised in R (Genz-Bretz with
  abseps 1e-3) and compared within 1e-3 absolute.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

REFERENCE = Path(__file__).parents[1] / "reference" / "inference"
REF = json.loads((REFERENCE / "emmeans_reference.json").read_text())
GLMER_INPUTS = json.loads((REFERENCE / "emmeans_glmer_inputs.json").read_text())
CASES = {c["name"]: c for c in REF["cases"]}
QUERIES = [(c["name"], q["label"]) for c in REF["cases"] for q in c["queries"]]

_fits: dict[str, object] = {}


def _fit(case: dict):
    name = case["name"]
    if name not in _fits:
        data = mm.datasets.load(case["dataset"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if case["family"] is None:
                _fits[name] = mm.lmer(
                    case["formula"],
                    data,
                    reml=case["reml"],
                    start=np.atleast_1d(np.array(case["theta"], dtype=float)),
                    optimize=False,
                )
            else:
                _fits[name] = mm.glmer(case["formula"], data, case["family"])
    return _fits[name]


def _listify(value):
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def _run(case: dict, q: dict) -> pd.DataFrame:
    fit = _fit(case)
    at = {k: _listify(v) for k, v in (q["at"] or {}).items()} or None
    common = dict(at=at, weights=q["weights"], lmer_df=q["df"], level=q["level"])
    if case["family"] is not None:
        common.pop("lmer_df")
    specs = _listify(q["specs"])
    if q["kind"] in ("emtrends", "emtrends_contrast"):
        table = mm.emtrends(fit, specs, q["var"], by=_listify(q["by"]), **common)
    else:
        table = mm.emmeans(fit, specs, by=_listify(q["by"]), type=q["type"], **common)
    if q["kind"] in ("contrast", "emtrends_contrast"):
        method = q["method"]
        if isinstance(method, dict):
            method = {k: _listify(v) for k, v in method.items()}
        table = table.contrast(method, adjust=q["adjust"], infer=(True, True))
    else:
        table = table.summary(infer=(True, True), adjust=q["adjust"])
    return table


def _column(values) -> np.ndarray:
    values = values if isinstance(values, list) else [values]
    return np.array([np.inf if v is None else v for v in values], dtype=float)


@pytest.mark.parametrize(("case_name", "label"), QUERIES, ids=[f"{c}-{q}" for c, q in QUERIES])
def test_matches_emmeans(case_name, label):
    case = CASES[case_name]
    q = next(x for x in case["queries"] if x["label"] == label)
    if case["family"] is not None:
        _check_glmer_inputs(case_name, _fit(case))
    ours = _run(case, q)
    ref = q["result"]
    assert list(ours.columns) == list(ref), (list(ours.columns), list(ref))
    assert ours.attrs["adjust"] == q["adjust_used"]
    se = _column(ref["SE"])
    for col, values in ref.items():
        mine = ours[col]
        if isinstance(values, str) or (isinstance(values, list) and isinstance(values[0], str)):
            assert [str(v) for v in mine] == _listify(values), col
            continue
        expected = _column(values)
        got = mine.to_numpy(dtype=float)
        if col == "df":
            np.testing.assert_allclose(got, expected, rtol=1e-3, err_msg=col)
        elif col == "p.value":
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-11, err_msg=col)
        elif col in ("lower.CL", "upper.CL", "asymp.LCL", "asymp.UCL") and (
            q["adjust_used"] == "dunnettx"
        ):
            excess = np.abs(got - expected) - 1e-3 * (se + np.abs(expected))
            assert np.all(excess <= 0), (col, got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12, err_msg=col)


def _check_glmer_inputs(name: str, fit) -> None:
    """The R reference used these estimates; if our glmer moved, rerun both scripts."""
    inputs = GLMER_INPUTS[name]
    np.testing.assert_allclose(
        fit.fixef.to_numpy(),
        inputs["beta"],
        rtol=1e-7,
        err_msg="glmer estimates changed: rerun make_emmeans_glmer_inputs.py and the R script",
    )
    np.testing.assert_allclose(fit.vcov.to_numpy(), inputs["vcov"], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("case_name", "label"), QUERIES, ids=[f"{c}-{q}" for c, q in QUERIES])
def test_default_columns_are_emmeans(case_name, label):
    """Without infer=, means show intervals and contrasts show tests, as in emmeans."""
    case = CASES[case_name]
    q = next(x for x in case["queries"] if x["label"] == label)
    fit = _fit(case)
    at = {k: _listify(v) for k, v in (q["at"] or {}).items()} or None
    kw = dict(at=at, weights=q["weights"])
    if case["family"] is None:
        kw["lmer_df"] = q["df"]
    if q["kind"] in ("emtrends", "emtrends_contrast"):
        table = mm.emtrends(fit, _listify(q["specs"]), q["var"], by=_listify(q["by"]), **kw)
    else:
        table = mm.emmeans(fit, _listify(q["specs"]), by=_listify(q["by"]), type=q["type"], **kw)
    if q["kind"] in ("contrast", "emtrends_contrast"):
        method = q["method"]
        if isinstance(method, dict):
            method = {k: _listify(v) for k, v in method.items()}
        table = table.contrast(method, adjust=q["adjust"])
    assert list(table.columns) == q["default_columns"]
