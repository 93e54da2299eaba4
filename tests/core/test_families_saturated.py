"""``Family.saturated_extra``: a zero-inflation coefficient of a factor level whose rows'
probabilities are all below the threshold gets an alternative where the largest of them is
1e-2 (closed form: ``expit(max over its rows of x_i' gamma) = 1e-2``), one alternative per
such coefficient, nothing else moved; intercepts, continuous columns and levels with a
probability above the threshold get none."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from mixedmodels.core.families import NBinom2, PoissonLikelihood, ZeroInflated

TARGET = special.logit(1e-2)


def factor_design() -> np.ndarray:
    """Intercept, levels b and c of a three-level factor (10 rows each), a covariate."""
    level = np.repeat([0, 1, 2], 10)
    x = np.linspace(0.0, 1.0, 30)
    return np.column_stack([np.ones(30), level == 1, level == 2, x]).astype(float)


def test_a_saturated_level_is_moved_into_its_informative_range():
    X = factor_design()
    family = ZeroInflated(NBinom2(), X, ["(Intercept)", "b", "c", "x"])
    # log phi, then gamma: level b at eta -14 .. -13 (saturated), c at -1 .. 0 (not)
    values = np.array([0.3, -1.0, -13.0, 0.5, -0.5])
    (moved,) = family.saturated_extra(values)
    changed = np.flatnonzero(moved != values)
    assert changed.tolist() == [2]  # only b's coefficient
    eta = X @ moved[1:]
    b_rows = X[:, 1] == 1
    # |eta| ~ 5: rounding ~1e-15 absolute
    assert eta[b_rows].max() == pytest.approx(TARGET, abs=1e-12)
    np.testing.assert_allclose(eta[~b_rows], (X @ values[1:])[~b_rows], rtol=0, atol=0)


def test_nothing_to_try_where_no_level_is_saturated_or_only_the_intercept_is_low():
    X = factor_design()
    family = ZeroInflated(PoissonLikelihood(), X, ["(Intercept)", "b", "c", "x"])
    assert family.saturated_extra(np.array([-1.0, 0.5, -0.5, 0.2])) == []
    # every probability tiny through the intercept: vanished_extra's case, not this one;
    # the factor levels are saturated too, so each gets its alternative
    low = np.array([-30.0, 0.0, 0.0, 0.0])
    found = family.saturated_extra(low)
    assert len(found) == 2 and all(np.flatnonzero(f != low).tolist() in ([1], [2]) for f in found)
    # a continuous column (x) is never moved
    assert all(f[3] == 0.0 for f in found)


def test_families_without_zero_inflation_have_nothing_to_try():
    assert PoissonLikelihood().saturated_extra(np.zeros(0)) == []
