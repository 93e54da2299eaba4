"""A transformed response in ``mm.nlme`` (``log(size) ~ log(...)``, as nlme fits it): read by
the formula evaluator ``mm.lmer`` uses for ``log(y) ~ ...`` (never Python's ``eval``), rows
where it is NaN or infinite dropped and counted.

The reference is an identity between two representations: the same model fitted to a
column computed beforehand with numpy (``logsize = np.log(size)``) on the rows where it is
finite.  Both fits run the same iterations on the same numbers, so the log-likelihoods agree
to rounding (1e-10 relative) and the estimates to 1e-8.  nlme's own numbers for this model are
checked in tests/results/test_nlme_agreement_more.py (case ``log_response``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design.nonlinear import build_nlme_design, parse_model
from mixedmodels.errors import ColumnNotFoundError, DataError, FormulaError, RowsDroppedWarning

DATA = Path(__file__).resolve().parents[1] / "reference" / "nlmecheck" / "data"
MODEL = "log(Asym/(1 + exp((xmid - age)/scal)))"
ARGS = dict(fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | g",
            start={"Asym": 150, "xmid": 600, "scal": 250})


def _data() -> pd.DataFrame:
    return pd.read_csv(DATA / "log_response.csv")


def test_parse_transformed_response():
    response, model = parse_model(f"log(size) ~ {MODEL}", ["Asym", "xmid", "scal"])
    assert response == "log(size)"
    assert model.parameters == ("Asym", "xmid", "scal")
    response, _ = parse_model("(y) ~ SSlogis(x, A, m, s)", ["A", "m", "s"])
    assert response == "y"


@pytest.mark.parametrize("model,message", [
    ("log(Asym * y) ~ SSlogis(x, Asym, m, s)", "uses the parameter 'Asym'"),
    ("frob(y) ~ SSlogis(x, A, m, s)", r"unknown function frob\(\)"),
    ("log(2) ~ SSlogis(x, A, m, s)", "reads no data column"),
])
def test_response_errors(model, message):
    with pytest.raises(FormulaError, match=message):
        parse_model(model, ["A", "m", "s"] if "Asym" not in model else ["Asym", "m", "s"])


def test_response_columns_checked():
    data = _data()
    with pytest.raises(ColumnNotFoundError, match="'height'"):
        build_nlme_design(f"log(height) ~ {MODEL}", data, ARGS["fixed"], ARGS["random"])
    data["label"] = "a"
    with pytest.raises(DataError, match="column 'label' of the response 'log\\(label\\)'"):
        build_nlme_design(f"log(label) ~ {MODEL}", data, ARGS["fixed"], ARGS["random"])


def test_log_response_equals_a_precomputed_column():
    data = _data()
    fit = mm.nlme(f"log(size) ~ {MODEL}", data, **ARGS)
    other = data.assign(logsize=np.log(data["size"]))
    ref = mm.nlme(f"logsize ~ {MODEL}", other, **ARGS)
    assert fit.design.response == "log(size)"
    np.testing.assert_array_equal(fit.design.y, np.log(data["size"].to_numpy()))
    assert fit.loglik == pytest.approx(ref.loglik, rel=1e-10)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-8)
    np.testing.assert_allclose(fit.std_errors, ref.std_errors, rtol=1e-8)
    assert "Model: log(size) ~ log(Asym/(1 + exp((xmid - age)/scal)))" in fit.summary()


def test_non_finite_transform_rows_dropped_and_counted():
    """log of 0 (-inf) and of a negative number (NaN) drop their rows as a missing size
    does; the warning counts each reason; the user's frame is unchanged."""
    data = _data()
    data.loc[[3, 17], "size"] = [0.0, -5.0]
    data.loc[40, "size"] = np.nan
    before = data.copy()
    with pytest.warns(RowsDroppedWarning, match=r"^3 row\(s\) dropped: 1 with missing values, "
                      r"2 where the response log\(size\) is not finite"):
        fit = mm.nlme(f"log(size) ~ {MODEL}", data, **ARGS)
    pd.testing.assert_frame_equal(data, before)
    kept = data.drop(index=[3, 17, 40]).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = mm.nlme(f"logsize ~ {MODEL}", kept.assign(logsize=np.log(kept["size"])), **ARGS)
    assert fit.n_obs == len(data) - 3 == ref.n_obs
    np.testing.assert_array_equal(fit.design.rows, np.setdiff1d(np.arange(len(data)),
                                                                [3, 17, 40]))
    assert fit.loglik == pytest.approx(ref.loglik, rel=1e-10)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-8)


def test_response_not_finite_anywhere():
    data = _data().assign(size=0.0)
    with pytest.raises(DataError, match="not finite on any row"):
        build_nlme_design(f"log(size) ~ {MODEL}", data, ARGS["fixed"], ARGS["random"])

