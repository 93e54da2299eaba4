"""emmeans of lmer fits with a transformed response (``log(y) ~ ...``, log10, log1p, sqrt)
against R's emmeans 1.8.4 (reference: tests/reference/inference/make_emmeans_transformed.R
-> emmeans_transformed.json).

emmeans reads the transformation from the formula: ``type="response"`` back-transforms the
means and interval ends, gives delta-method SEs (``|d inverse / d eta| SE``), keeps the
tests on the transformed scale (with a ``null`` column where the back-transformed 0 is not
0), reports pairwise contrasts of log, log2 and log10 means as ratios (``A / B``) and leaves
sqrt contrasts on the sqrt scale.  The queries run exactly as tests/inference/
test_emmeans.py runs its own, compared column by column with the same tolerances (1e-6
relative for estimates, SEs and interval ends; df and p 1e-3), at lme4's theta.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError
from mixedmodels.inference.emmeans import response_transform
from tests.inference.test_emmeans import _column, _fit, _listify, _run

REF = json.loads(
    (Path(__file__).parents[1] / "reference" / "inference" / "emmeans_transformed.json")
    .read_text()
)
CASES = {c["name"]: c for c in REF["cases"]}
QUERIES = [(c["name"], q["label"]) for c in REF["cases"] for q in c["queries"]]


@pytest.mark.parametrize(("case_name", "label"), QUERIES, ids=[f"{c}-{q}" for c, q in QUERIES])
def test_matches_emmeans(case_name, label):
    case = CASES[case_name]
    q = next(x for x in case["queries"] if x["label"] == label)
    fit = _fit(case)
    assert response_transform(fit.design.formula.response).name == case["tran"]
    ours = _run(case, q)
    ref = q["result"]
    assert list(ours.columns) == list(ref), (list(ours.columns), list(ref))
    assert ours.attrs["adjust"] == q["adjust_used"]
    for col, values in ref.items():
        if isinstance(values, str) or (isinstance(values, list) and isinstance(values[0], str)):
            assert [str(v) for v in ours[col]] == _listify(values), col
            continue
        expected = _column(values)
        got = ours[col].to_numpy(dtype=float)
        if col == "df":
            np.testing.assert_allclose(got, expected, rtol=1e-3, err_msg=col)
        elif col == "p.value":
            # R's asymptotic p of z = 69 underflows to 0; ours is 0 or below 1e-300 too
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-11, err_msg=col)
        elif col in ("lower.CL", "upper.CL") and q["adjust_used"] == "dunnettx":
            # R's dunnettx quantile is a uniroot(tol = 5e-4) root (see test_emmeans.py)
            se = _column(ref["SE"])
            assert np.all(np.abs(got - expected) <= 1e-3 * (se + np.abs(expected))), col
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12, err_msg=col)


@pytest.mark.parametrize(("case_name", "label"), QUERIES, ids=[f"{c}-{q}" for c, q in QUERIES])
def test_default_columns_are_emmeans(case_name, label):
    case = CASES[case_name]
    q = next(x for x in case["queries"] if x["label"] == label)
    table = mm.emmeans(_fit(case), _listify(q["specs"]), by=_listify(q["by"]), type=q["type"],
                       lmer_df=q["df"])
    if q["kind"] == "contrast":
        table = table.contrast(q["method"], adjust=q["adjust"])
    assert list(table.columns) == q["default_columns"]


def test_response_scale_is_the_delta_method_of_the_link_scale():
    """An identity, independent of R: on type="response" each mean is exp(emmean) and its
    SE exp(emmean) * SE (d exp / d eta = exp); the t ratios are the link scale's."""
    fit = _fit(CASES["cake_log_response"])
    link = mm.emmeans(fit, "recipe", infer=(True, True))
    resp = mm.emmeans(fit, "recipe", type="response", infer=(True, True))
    np.testing.assert_allclose(resp["response"], np.exp(link["emmean"]), rtol=1e-14)
    np.testing.assert_allclose(resp["SE"], np.exp(link["emmean"]) * link["SE"], rtol=1e-14)
    np.testing.assert_allclose(resp["lower.CL"], np.exp(link["lower.CL"]), rtol=1e-14)
    np.testing.assert_allclose(resp["t.ratio"], link["t.ratio"], rtol=1e-14)


def test_only_a_recognised_transformation_goes_to_the_response_scale():
    sleep = mm.datasets.load("sleepstudy")
    fit = mm.lmer("log(Reaction + 1) ~ Days + (1 | Subject)", sleep)
    with pytest.raises(ArgumentError, match=r"log\(Reaction \+ 1\)"):
        mm.emmeans(fit, "1", type="response")
    assert mm.emmeans(fit, "1").columns[1] == "emmean"  # the link scale still works
    assert response_transform("exp(y)") is None
    assert response_transform("I(log(y))") is None
    assert response_transform("log(`my y`)").name == "log"
