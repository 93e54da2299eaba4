"""Set-up shortcuts of the residual fit (results/residual_lmer.py, core/variance_functions.py).

* ``_labels`` of a categorical column is the array ``Series.to_numpy`` gives (element by
  element, exactly: the same labels), for string, integer and pyarrow-string categories;
  with a missing value it falls back to ``to_numpy`` itself.
* ``Ident.bind``'s levels and codes are those of the per-row definition (levels in order
  of first appearance in the sorted rows, each row the index of its label), computed
  here independently with a dict, on shuffled rows and a given reference level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.results.residual_lmer import _labels


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(pd.Categorical(["b", "a", "b", "c"], categories=["c", "b", "a"])),
        pd.Series(pd.Categorical([3, 1, 3, 2])),
        pd.Series(["x", "y", "x"], dtype="string[pyarrow]").astype("category"),
        pd.Series(pd.Categorical(["a", None, "b"])),
        pd.Series([1.5, 2.5]),
    ],
)
def test_labels_are_to_numpys(column):
    got, want = _labels(column), column.to_numpy()
    assert got.shape == want.shape
    assert [str(v) for v in got] == [str(v) for v in want]
    assert np.asarray(got).astype(str).tolist() == np.asarray(want).astype(str).tolist()


def _reference_bind(labels, order, reference=None):
    sorted_labels = [str(v) for v in np.asarray(labels)[order]]
    seen = list(dict.fromkeys(sorted_labels))
    if reference is not None:
        seen.remove(reference)
        seen.insert(0, reference)
    lookup = {v: i for i, v in enumerate(seen)}
    return seen, [lookup[v] for v in sorted_labels]


@pytest.mark.parametrize("reference", [None, "M", "2"])
def test_ident_bind_levels_and_codes(reference):
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array(["F", "M", "2", "10"], dtype=object), size=57)
    order = rng.permutation(labels.size)
    ident = mm.var.Ident("s", reference=reference)
    ident.bind({"s": labels}, order)
    seen, codes = _reference_bind(labels, order, reference)
    assert ident.levels == seen
    assert ident.strata().tolist() == codes
    numeric = rng.integers(0, 3, size=20)
    ident = mm.var.Ident("s")
    ident.bind({"s": numeric}, np.arange(20))
    seen, codes = _reference_bind(numeric, np.arange(20))
    assert ident.levels == seen and ident.strata().tolist() == codes
