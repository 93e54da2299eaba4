"""Group-level predictions of an nlme fit for a group it never saw: a NewLevelError that
counts the rows and shows the level as the data holds it (it showed ``np.int64(99)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

ORANGE = Path(__file__).parents[1] / "reference" / "nlme" / "data" / "Orange.csv"


def test_unseen_group_is_named_plainly():
    orange = pd.read_csv(ORANGE)
    fit = mm.nlme(
        "circumference ~ SSlogis(age, Asym, xmid, scal)",
        orange,
        fixed="Asym + xmid + scal ~ 1",
        random="Asym ~ 1 | Tree",
    )
    new = orange.iloc[:3].assign(Tree=[99, 99, 1])
    with pytest.raises(mm.errors.NewLevelError) as caught:
        fit.predict(new, level=1)
    message = str(caught.value)
    assert "2 row(s)" in message and "'99'" in message and "'Tree'" in message
    assert "np.int64" not in message
    # the population curve needs no group: equal to the fixed-effects curve at these ages
    asym, xmid, scal = (fit.fixef[k] for k in ("Asym", "xmid", "scal"))
    expected = asym / (1 + np.exp((xmid - new.age.to_numpy()) / scal))
    np.testing.assert_allclose(fit.predict(new, level=0), expected, rtol=1e-12)
