"""nlme's nested grouping levels read from the random formula: ``Asym ~ 1 | site/plot``
(outermost first), and the nested groups' codes and labels (``s1/p1``, as nlme labels
them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design.nonlinear import nested_codes, nested_codes_for, parse_random
from mixedmodels.errors import FormulaError


@pytest.mark.parametrize("text,diagonal", [
    ("Asym ~ 1 | site/plot", False),
    ("Asym ~ 1 | (site/plot)", False),
    ("pdDiag(Asym + xmid ~ 1) | site/plot", True),
])
def test_nested_levels(text, diagonal):
    spec = parse_random(text)
    assert spec.nesting == ("site", "plot") and spec.columns == ("site", "plot")
    assert spec.group == "plot" and spec.diagonal == diagonal
    assert spec.level_names == ["site", "plot %in% site"]


def test_three_levels_and_one():
    spec = parse_random("A ~ 1 | a/b/c")
    assert spec.columns == ("a", "b", "c")
    assert spec.level_names == ["a", "b %in% a", "c %in% b %in% a"]
    one = parse_random("A ~ 1 | g")
    assert one.nesting == () and one.columns == ("g",) and one.level_names == ["g"]


@pytest.mark.parametrize("text,message", [
    ("Asym ~ 1 | site/site", "named twice in the nesting"),
    ("Asym ~ 1 | site:plot", "grouping factor must be a column name or nested"),
])
def test_nesting_errors(text, message):
    with pytest.raises(FormulaError, match=message):
        parse_random(text)


def test_nested_codes_label_each_combination():
    """Plot labels repeat across sites (p1 in s1 and in s2 are different plots): the
    groups are the observed combinations, labelled site/plot; new rows are matched by
    those labels, an unseen combination or a missing value is -1."""
    data = pd.DataFrame({"site": ["s2", "s1", "s1", "s2", "s1"],
                         "plot": ["p1", "p1", "p2", "p1", "p1"]})
    codes, labels = nested_codes(data, ("site", "plot"))
    assert labels == ["s1/p1", "s1/p2", "s2/p1"]
    np.testing.assert_array_equal(codes, [2, 0, 1, 2, 0])
    new = pd.DataFrame({"site": ["s1", "s2", "s2", None], "plot": ["p2", "p2", "p1", "p1"]})
    np.testing.assert_array_equal(nested_codes_for(new, ("site", "plot"), labels),
                                  [1, -1, 2, -1])
