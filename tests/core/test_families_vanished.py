"""``Family.vanished_extra``: where every zero-inflation probability is below the
threshold, the coefficients moved so that the largest probability is 1e-8 (closed form:
``expit(max_i x_i' gamma) = 1e-8``) and the other entries left alone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from mixedmodels.core.families import NBinom2, PoissonLikelihood, ZeroInflated

TARGET = special.logit(1e-8)


def design(n: int = 50, intercept: bool = True) -> np.ndarray:
    x = np.linspace(-1.0, 2.0, n)
    return np.column_stack([np.ones(n), x]) if intercept else np.column_stack([x + 3.0, x**2])


def test_an_intercept_is_shifted_and_the_slopes_kept():
    family = ZeroInflated(NBinom2(), design(), ["(Intercept)", "x"])
    values = np.array([np.log(2.0), -11.0, 0.5])  # log phi, then gamma: probabilities <= 6e-5
    moved, held = family.vanished_extra(values)
    assert held.tolist() == [False, True, True]
    assert moved[0] == values[0] and moved[2] == values[2]
    eta = design() @ moved[1:]
    # the largest linear predictor is logit(1e-8) to rounding (|eta| ~ 18: 1e-13 absolute)
    assert eta.max() == pytest.approx(TARGET, abs=1e-12)
    np.testing.assert_allclose(eta - design() @ values[1:], TARGET - (-11.0 + 0.5 * 2.0))


def test_without_an_intercept_the_coefficients_are_scaled():
    family = ZeroInflated(PoissonLikelihood(), design(intercept=False), ["a", "b"])
    values = np.array([-5.0, -0.3])  # eta = -5 (x + 3) - 0.3 x^2: -10.3 ... -26.2
    assert special.expit(design(intercept=False) @ values).max() < 1e-4
    moved, held = family.vanished_extra(values)
    assert held.all()
    eta = design(intercept=False) @ moved
    assert eta.max() == pytest.approx(TARGET, abs=1e-12)
    # a common factor: the direction of gamma is kept
    np.testing.assert_allclose(moved / values, moved[0] / values[0], rtol=1e-14)


def test_the_size_to_move_to_is_an_argument_and_either_way():
    family = ZeroInflated(NBinom2(), design(), ["(Intercept)", "x"])
    values = np.array([0.0, -25.0, 0.0])  # probabilities 1.4e-11: moved up to 1e-6
    moved, _ = family.vanished_extra(values, to=1e-6)
    assert special.expit(design() @ moved[1:]).max() == pytest.approx(1e-6, rel=1e-12)


def test_nothing_moves_where_zero_inflation_has_not_vanished():
    family = ZeroInflated(NBinom2(), design(), ["(Intercept)", "x"])
    # the largest probability expit(-8 + 2 * 0.4) = 7.5e-4 reaches the threshold 1e-4
    assert family.vanished_extra(np.array([0.0, -8.0, 0.4])) is None
    # ... and not the threshold 1e-2
    assert family.vanished_extra(np.array([0.0, -8.0, 0.4]), below=1e-2) is not None
    # a family without zero inflation has nothing to vanish
    assert NBinom2().vanished_extra(np.array([0.3])) is None
