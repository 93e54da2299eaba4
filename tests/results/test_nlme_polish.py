"""Agreement polish of ``mm.nlme`` found by the nlmecheck review (issue 16): the random
effects' names as nlme gives them, predictions on new rows with missing values, and numpy's
overflow warnings far from the optimum.

References: nlme's numbers written by tests/reference/nlmecheck/make_nlmecheck.R (the
case ``interaction``: ``Asym ~ trt * x`` with ``Asym ~ 1 | g``; nlme's ``predict(level = 0:1)``
on three new rows); predictions compared at 1e-5 relative, the tolerance of
test_nlme_agreement_more.py's ``test_predict_new_rows`` (measured there: 4.4e-7 at most).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ColumnNotFoundError, ConvergenceError, MixedModelsWarning

HERE = Path(__file__).resolve().parents[1] / "reference" / "nlmecheck"
REF = json.loads((HERE / "nlmecheck_reference.json").read_text())["cases"]


def _fit(name: str, **extra) -> mm.NlmeFit:
    kwargs = dict(REF[name]["py"]) | extra
    kwargs.pop("n_dropped", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.errors.RowsDroppedWarning)
        return mm.nlme(data=pd.read_csv(HERE / "data" / f"{name}.csv"), **kwargs)


@pytest.fixture(scope="module")
def interaction() -> mm.NlmeFit:
    return _fit("interaction")


# ------------------------------------------------------------------- names


def test_random_effect_named_as_nlme(interaction):
    """A parameter with covariates: nlme names its random effect ``Asym.(Intercept)`` in
    ranef, VarCorr and the summary's StdDev line; the parameter itself stays ``Asym``."""
    ref = REF["interaction"]["converged"]
    assert interaction.random_parameters == ["Asym"]
    assert interaction.random_names == ref["re_names"] == ["Asym.(Intercept)"]
    assert list(interaction.ranef.columns) == list(ref["ranef"])
    assert list(interaction.varcorr.index) == ["Asym.(Intercept)", "Residual"]
    ours = interaction.summary().splitlines()
    theirs = ref["summary_text"].splitlines()
    header = theirs.index(" Formula: Asym ~ 1 | g")
    assert ours[ours.index(" Formula: Asym ~ 1 | g") + 1].split() == theirs[header + 1].split()


def test_parameter_without_covariates_keeps_its_name():
    fit = _fit("three_diag")
    assert fit.random_names == REF["three_diag"]["converged"]["re_names"] == fit.random_parameters


# ------------------------------------------------------- predict with missing values


def test_predict_missing_covariate_is_nan_with_a_warning(interaction):
    """nlme's na.fail raises on a missing covariate; we predict those rows as NaN (as
    mm.lmer's predict) and say how many, in which columns, at which positions; the other
    rows are nlme's predictions."""
    ref = REF["interaction"]["predict"]
    new = pd.DataFrame(ref["newdata"])
    extra = pd.DataFrame({"age": [np.nan, 300.0, 500.0], "x": [0.1, np.nan, 0.2],
                          "trt": ["a", "b", None], "g": ["g02", "g03", "g04"]})
    both = pd.concat([new, extra], ignore_index=True)
    before = both.copy()
    for level, key in ((0, "level0"), (1, "level1")):
        with pytest.warns(MixedModelsWarning, match=r"^3 row\(s\) of newdata have missing "
                          r"values \('age': 1, 'trt': 1, 'x': 1; positions 3, 4, 5\): "
                          "predicted as NaN"):
            got = interaction.predict(both, level=level)
        np.testing.assert_allclose(got[:3], ref[key], rtol=1e-5)
        assert np.isnan(got[3:]).all()
    pd.testing.assert_frame_equal(both, before)


def test_predict_missing_group_only_matters_at_level_one(interaction):
    ref = REF["interaction"]["predict"]
    new = pd.DataFrame(ref["newdata"])
    new.loc[1, "g"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(interaction.predict(new, level=0), ref["level0"], rtol=1e-5)
    with pytest.warns(MixedModelsWarning, match=r"'g': 1; positions 1\)"):
        got = interaction.predict(new, level=1)
    np.testing.assert_allclose(got[[0, 2]], np.asarray(ref["level1"])[[0, 2]], rtol=1e-5)
    assert np.isnan(got[1])


def test_predict_all_rows_missing_and_missing_column(interaction):
    new = pd.DataFrame({"age": [np.nan, np.nan], "x": [0.0, 1.0], "trt": ["a", "b"],
                        "g": ["g01", "g02"]})
    with pytest.warns(MixedModelsWarning, match="^2 row"):
        assert np.isnan(interaction.predict(new, level=1)).all()
    with pytest.raises(ColumnNotFoundError, match="column 'x' is not in newdata"):
        interaction.predict(new.drop(columns="x"), level=0)


# ------------------------------------------------------- overflow far from the optimum


@pytest.mark.parametrize("k", [-50.0, -100.0])
def test_overflow_gives_the_error_without_numpy_warnings(k):
    """From k = -50 (exp(-k t) ~ 1e260 at t = 12) the model overflows: the user gets the
    ConvergenceError naming the non-finite rows, and no numpy RuntimeWarning before it
    (they reached the user from the cross-products before)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConvergenceError, match="not finite at the current estimates"):
            _fit("expression_covariate", start=[1.0, 1.0, k])
