"""Bundled data: every set loads with the schema's rows and R's factor levels."""

import json
from importlib import resources

import pandas as pd
import pytest

import mixedmodels as mm

SCHEMA = json.loads(
    resources.files("mixedmodels.datasets").joinpath("data/schema.json").read_text()
)


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_loads_with_factor_dtypes(name):
    frame = mm.datasets.load(name)
    assert len(frame) == SCHEMA[name]["rows"]
    for column, spec in SCHEMA[name]["factors"].items():
        assert isinstance(frame[column].dtype, pd.CategoricalDtype)
        assert list(frame[column].cat.categories) == spec["levels"]
        assert frame[column].cat.ordered == bool(spec["ordered"])
        assert frame[column].notna().all() or name in {"grouseticks"}


def test_unknown_name_lists_available():
    with pytest.raises(mm.DataError, match="sleepstudy"):
        mm.datasets.load("nope")
