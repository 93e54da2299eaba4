"""polars DataFrames and pyarrow Tables are accepted wherever a pandas DataFrame is (through
narwhals): the fits are the pandas fits, level orders kept."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import DataError

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")


def _quiet(fitter, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter(*args, **kwargs)


@pytest.mark.parametrize("convert", [pl.from_pandas, pa.Table.from_pandas], ids=["polars", "arrow"])
def test_other_frames_give_the_pandas_fit(convert):
    ss = mm.datasets.load("sleepstudy")
    expected = _quiet(mm.lmer, "Reaction ~ Days + (Days|Subject)", ss)
    got = _quiet(mm.lmer, "Reaction ~ Days + (Days|Subject)", convert(ss))
    assert got.objective == expected.objective
    np.testing.assert_array_equal(got.fixef, expected.fixef)
    assert list(got.ranef["Subject"].index) == list(expected.ranef["Subject"].index)
    rows = ss.iloc[[0, 40, 99]]
    np.testing.assert_array_equal(got.predict(convert(rows)), expected.predict(rows))


def test_enum_level_order_sets_the_reference_level():
    """A polars Enum's order is the factor's order: its first category is the reference
    (here 'hi', so the column is named 'glo'), as for a pandas categorical."""
    ss = mm.datasets.load("sleepstudy")
    g = np.where(ss.Days > 4, "hi", "lo")
    frame = ss.assign(g=pd.Categorical(g, categories=["hi", "lo"]))
    polar = pl.from_pandas(ss).with_columns(g=pl.Series(g, dtype=pl.Enum(["hi", "lo"])))
    expected = _quiet(mm.lmer, "Reaction ~ g + (1|Subject)", frame)
    got = _quiet(mm.lmer, "Reaction ~ g + (1|Subject)", polar)
    assert list(got.fixef.index) == ["(Intercept)", "glo"] == list(expected.fixef.index)
    np.testing.assert_allclose(got.fixef, expected.fixef, rtol=1e-12)


def test_glmer_and_lm_take_polars():
    cbpp = mm.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    expected = _quiet(mm.glmer, formula, cbpp, "binomial")
    got = _quiet(mm.glmer, formula, pl.from_pandas(cbpp), "binomial")
    np.testing.assert_allclose(got.fixef, expected.fixef, rtol=1e-10)
    ss = mm.datasets.load("sleepstudy")
    np.testing.assert_allclose(
        mm.lm("Reaction ~ Days", pl.from_pandas(ss)).coef, mm.lm("Reaction ~ Days", ss).coef
    )


def test_a_lazy_frame_or_a_dict_is_a_data_error():
    ss = mm.datasets.load("sleepstudy")
    with pytest.raises(DataError, match="pandas DataFrame"):
        mm.lmer("Reaction ~ Days + (1|Subject)", pl.from_pandas(ss).lazy())
    with pytest.raises(DataError, match="pandas DataFrame"):
        mm.lmer("Reaction ~ Days + (1|Subject)", {"Reaction": [1.0]})
