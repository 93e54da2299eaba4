"""An out-of-core source with no rows is a DataError (a raw TypeError from ``reduce`` over
no chunks before), as an empty DataFrame is."""

from __future__ import annotations

import pytest

import mixedmodels as mm


def test_empty_parquet_file_is_a_data_error(tmp_path):
    path = tmp_path / "empty.parquet"
    sleep = mm.datasets.load("sleepstudy")
    sleep.iloc[:0].to_parquet(path)
    with pytest.raises(mm.DataError, match="no rows"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", str(path))
    # the same data in memory says the same
    with pytest.raises(mm.DataError, match="no rows"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", sleep.iloc[:0])
