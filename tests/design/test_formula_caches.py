"""What is cached per formula (its parse, its columns, the shapes of its calls) holds
nothing of the data: two builds with the same formula on changed values or dtypes see
the change (the references: the new columns themselves, and a build in which no cache
could have been filled, i.e. after clearing them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.design.model import _formula_columns
from mixedmodels.formula.functions import call_problem

FORMULA = "y ~ sin(2*pi*t) + x + (1 | g)"


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + np.repeat(2.0 * rng.normal(size=8), 5),
            "t": rng.uniform(size=n),
            "x": rng.integers(0, 3, size=n).astype(float),
            "g": np.repeat(list("abcdefgh"), 5),
        }
    )


def _fresh(formula: str, data: pd.DataFrame):
    _formula_columns.cache_clear()
    call_problem.cache_clear()
    return build_design(formula, data)


def test_changed_values_between_two_builds_are_seen():
    data = _frame(1)
    first = build_design(FORMULA, data)
    changed = data.copy()
    changed["t"] = changed["t"] + 0.25
    changed["y"] = 2.0 * changed["y"]
    second = build_design(FORMULA, changed)
    np.testing.assert_array_equal(second.y, changed["y"].to_numpy())
    np.testing.assert_array_equal(second.X[:, 1], np.sin(2 * np.pi * changed["t"].to_numpy()))
    assert not np.array_equal(first.X[:, 1], second.X[:, 1])
    reference = _fresh(FORMULA, changed)
    np.testing.assert_array_equal(second.X, reference.X)
    np.testing.assert_array_equal(second.y, reference.y)


def test_a_column_changing_dtype_between_two_builds_is_seen():
    data = _frame(2)
    numeric = build_design(FORMULA, data)
    assert numeric.fixed_names == ["(Intercept)", "sin(2 * pi * t)", "x"]
    factor = data.assign(x=pd.Categorical(data["x"].astype(int).astype(str)))
    coded = build_design(FORMULA, factor)
    assert coded.fixed_names == ["(Intercept)", "sin(2 * pi * t)", "x1", "x2"]
    codes = factor["x"].cat.codes.to_numpy()
    np.testing.assert_array_equal(coded.X[:, 2:], np.column_stack([codes == 1, codes == 2]))
    reference = _fresh(FORMULA, factor)
    np.testing.assert_array_equal(coded.X, reference.X)
    assert coded.fixed_names == reference.fixed_names


def test_fits_with_the_same_formula_follow_the_data():
    """Two residual-structure fits with one formula, the response changed in between: the
    second fit is the fit of the changed data (the same numbers as after clearing the
    caches)."""
    data = _frame(3)
    kwargs = {"correlation": mm.cor.AR1()}
    mm.lmer(FORMULA, data, **kwargs)
    changed = data.assign(y=data["y"] + np.linspace(0.0, 3.0, len(data)))
    second = mm.lmer(FORMULA, changed, **kwargs)
    _formula_columns.cache_clear()
    call_problem.cache_clear()
    reference = mm.lmer(FORMULA, changed, **kwargs)
    assert second.loglik == reference.loglik
    np.testing.assert_array_equal(np.asarray(second.fixef), np.asarray(reference.fixef))
