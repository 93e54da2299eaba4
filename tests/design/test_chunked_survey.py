"""Pass 1's levels of a grouping column, merged over chunks, are the in-memory design's:
a categorical's categories in their order (those that occur) when every chunk has the same
categories, else the sorted distinct values (as in memory for plain columns)."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pandas as pd

from mixedmodels.design.chunked import _GroupSurvey


def _levels(chunks):
    return list(reduce(_GroupSurvey.merge, [_GroupSurvey.of(c) for c in chunks]).levels())


def test_shared_categories_keep_their_order():
    column = pd.Series(pd.Categorical(["c", "a", "c", "d"], categories=["d", "c", "b", "a"]))
    chunks = [column.iloc[i : i + 1] for i in range(4)]  # slices share the categories
    assert _levels(chunks) == ["d", "c", "a"]  # "b" never occurs


def test_different_categories_give_the_sorted_values():
    first = pd.Series(pd.Categorical(["c", "a"], categories=["c", "a"]))
    second = pd.Series(pd.Categorical(["b", "a"], categories=["b", "a"]))
    assert _levels([first, second]) == ["a", "b", "c"]


def test_plain_values_over_many_chunks_are_sorted_and_distinct():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 50, 2000)
    chunks = [pd.Series(values[i : i + 37]) for i in range(0, values.size, 37)]  # 55 chunks
    assert _levels(chunks) == sorted(set(values.tolist()))
