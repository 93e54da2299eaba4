"""Checks of the chunked design that the in-memory design makes too: the same model is
refused, or fitted, either way (reproducers of the scatter review's findings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import DataError, FormulaError


def _frame(n: int, groups: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(0, 1.0, groups), rng.normal(0, 0.5, groups)
    y = 1.0 + 0.5 * x + b0[g] + b1[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def test_as_many_random_effects_as_rows_is_refused_out_of_core_as_in_memory():
    data = _frame(40, 20)  # (x | g): 20 levels x 2 columns = 40 effects for 40 rows
    with pytest.raises(DataError) as in_memory:
        mm.lmer("y ~ x + (x | g)", data)
    with pytest.raises(DataError) as chunked:
        mm.lmer("y ~ x + (x | g)", mm.FrameSource(data, 7))
    assert str(chunked.value) == str(in_memory.value)
    assert "number of observations (40) <= number of random effects (40)" in str(chunked.value)
    # one row more and both fit, to the same estimates
    more = _frame(60, 20)
    np.testing.assert_allclose(
        mm.lmer("y ~ x + (x | g)", mm.FrameSource(more, 7)).theta,
        mm.lmer("y ~ x + (x | g)", more).theta,
        atol=1e-8,
    )


@pytest.mark.parametrize("structure", ["cs", "diag", "ar1", "toep", "homcs"])
def test_a_structured_term_is_refused_out_of_core_not_fitted_as_another_model(structure):
    data = _frame(400, 20)
    term = f"{structure}(x | g)" if structure != "ar1" else "ar1(0 + factor(x > 0) | g)"
    with pytest.raises(FormulaError, match="covariance structures are fitted in memory only"):
        mm.lmer(f"y ~ x + {term}", mm.FrameSource(data, 100))


def test_explicit_us_is_the_unstructured_term_out_of_core():
    data = _frame(400, 20)
    np.testing.assert_allclose(
        mm.lmer("y ~ x + us(x | g)", mm.FrameSource(data, 100)).theta,
        mm.lmer("y ~ x + (x | g)", data).theta,
        atol=1e-8,
    )
