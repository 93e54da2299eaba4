"""build_design's ``table=`` (a ColumnTable of the data a caller has read already): the
design is the one built without it, array for array (exact: the same reads); a table of
another frame is not used (its columns are not the data's)."""

from __future__ import annotations

import numpy as np

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.design.evaluate import ColumnTable

FORMULA = "distance ~ age * Sex + (1 | Subject)"


def _same(a, b):
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.fixed_names == b.fixed_names
    assert len(a.terms) == len(b.terms)
    for s, t in zip(a.terms, b.terms, strict=True):
        np.testing.assert_array_equal(s.codes, t.codes)
        np.testing.assert_array_equal(s.block.z, t.block.z)


def test_a_shared_table_gives_the_same_design():
    data = mm.datasets.load("Orthodont")
    table = ColumnTable(data)
    table["Sex"]  # read before, as lmer_residual reads the structures' columns
    _same(build_design(FORMULA, data, table=table), build_design(FORMULA, data))


def test_a_table_of_another_frame_is_not_used():
    data = mm.datasets.load("Orthodont")
    other = data.assign(distance=-data["distance"])
    got = build_design(FORMULA, data, table=ColumnTable(other))
    _same(got, build_design(FORMULA, data))
    np.testing.assert_array_equal(got.y, data["distance"].to_numpy())
