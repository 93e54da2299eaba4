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
from mixedmodels.errors import ArgumentError, NewLevelError

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


# ------------------------------------------------------------------ identities and errors
@pytest.fixture(scope="module")
def cake_fit():
    return _fit(CASES["cake_factor_by_factor"])


def test_pairwise_contrasts_are_differences_of_the_means(cake_fit):
    """A contrast's estimate is the difference of the means, its SE that of l1 - l2 under
    the same covariance (an identity, independent of R)."""
    means = mm.emmeans(cake_fit, "recipe", lmer_df="asymptotic")
    pairs = means.pairs(adjust="none")
    est = means["emmean"].to_numpy()
    np.testing.assert_allclose(
        pairs["estimate"], [est[0] - est[1], est[0] - est[2], est[1] - est[2]]
    )
    assert list(pairs["contrast"].astype(str)) == ["A - B", "A - C", "B - C"]
    # with unadjusted asymptotic tests, p = 2 Phi(-|z|)
    from scipy import stats

    np.testing.assert_allclose(pairs["p.value"], 2 * stats.norm.sf(np.abs(pairs["z.ratio"])))


def test_mean_of_a_cell_is_the_model_prediction(cake_fit):
    """A cell of the full grid is X beta at that cell (predict with include_random=False)."""
    cells = mm.emmeans(cake_fit, ["recipe", "temp"], lmer_df="asymptotic")
    frame = pd.DataFrame({"recipe": cells["recipe"].astype(str), "temp": cells["temp"].astype(int)})
    frame["recipe"] = pd.Categorical(frame["recipe"], categories=["A", "B", "C"])
    pred = cake_fit.predict(frame, include_random=False)
    np.testing.assert_allclose(cells["emmean"], pred, rtol=1e-12)


def test_mvt_is_refused_with_a_reason(cake_fit):
    with pytest.raises(ArgumentError, match="mvt"):
        mm.emmeans(cake_fit, "recipe").pairs(adjust="mvt")


def test_bad_arguments_name_the_problem(cake_fit):
    with pytest.raises(ArgumentError, match="'recipes' is not a variable"):
        mm.emmeans(cake_fit, "recipes")
    with pytest.raises(NewLevelError, match="'D'"):
        mm.emmeans(cake_fit, "recipe", at={"recipe": ["A", "D"]})
    with pytest.raises(ArgumentError, match="weights must be one of"):
        mm.emmeans(cake_fit, "recipe", weights="heavy")
    with pytest.raises(ArgumentError, match="lmer_df"):
        mm.emmeans(cake_fit, "recipe", lmer_df="containment")
    with pytest.raises(ArgumentError, match="unknown contrast method"):
        mm.emmeans(cake_fit, "recipe").contrast("allpairs")
    with pytest.raises(ArgumentError, match="needs 3 finite coefficients"):
        mm.emmeans(cake_fit, "recipe").contrast({"x": [1, -1]})
    with pytest.raises(ArgumentError, match="numeric covariate"):
        mm.emtrends(cake_fit, "recipe", "recipe")


def test_a_missing_cell_makes_its_means_non_estimable():
    """Without recipe C at 175 degrees the cell and recipe C's marginal mean (which
    averages over that cell) are not estimable (NaN, emmeans' NA); the others are."""
    data = mm.datasets.load("cake")
    data = data[~((data.recipe == "C") & (data.temp == 175))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer("angle ~ recipe * factor(temp) + (1 | recipe:replicate)", data)
    cells = mm.emmeans(fit, ["recipe", "temp"], lmer_df="asymptotic")
    missing = (cells["recipe"].astype(str) == "C") & (cells["temp"] == 175)
    assert cells.loc[missing, "emmean"].isna().all()
    assert cells.loc[~missing, "emmean"].notna().all()
    means = mm.emmeans(fit, "recipe", lmer_df="asymptotic")
    assert means["emmean"].isna().tolist() == [False, False, True]
    pairs = means.pairs()
    assert pairs["estimate"].isna().tolist() == [False, True, True]


def test_user_data_is_not_modified(cake_fit):
    data = cake_fit.design.data
    before = data.copy()
    mm.emmeans(cake_fit, "temp | recipe", at={"temp": [175, 225]}).pairs()
    pd.testing.assert_frame_equal(data, before)


def test_derived_frames_are_plain_dataframes(cake_fit):
    table = mm.emmeans(cake_fit, "recipe")
    assert isinstance(table, pd.DataFrame)
    assert type(table.head(2)) is pd.DataFrame
    assert type(table[["recipe", "emmean"]]) is pd.DataFrame


def test_plot_shows_the_estimates_and_intervals(cake_fit):
    pytest.importorskip("matplotlib")
    from mixedmodels import plots

    table = mm.emmeans(cake_fit, "temp | recipe")
    fig = plots.plot_emmeans(table)
    ax = fig.axes[0]
    containers = ax.containers
    assert len(containers) == 3  # one per recipe
    for container, recipe in zip(containers, ["A", "B", "C"], strict=True):
        rows = table[table["recipe"].astype(str) == recipe]
        _, y = container.lines[0].get_data()
        np.testing.assert_allclose(y, rows["emmean"], rtol=1e-12)
        segments = container.lines[2][0].get_segments()
        np.testing.assert_allclose([s[0][1] for s in segments], rows["lower.CL"], rtol=1e-12)
        np.testing.assert_allclose([s[1][1] for s in segments], rows["upper.CL"], rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "175",
        "185",
        "195",
        "205",
        "215",
        "225",
    ]
