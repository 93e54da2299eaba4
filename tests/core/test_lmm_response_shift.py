"""core.lmm.response_shift: scipy.linalg.solve(assume_a="pos")'s numbers bit for bit
(the shifted response, and so every fit's path, depends on the last bit)."""

import warnings

import numpy as np
import pytest
import scipy.linalg as sla

from mixedmodels.core.lmm import response_shift


def _reference(xtx, xty):
    """The shift as it was computed before: scipy's solver, zeros where it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sla.LinAlgWarning)
        try:
            shift = sla.solve(xtx, xty, assume_a="pos", check_finite=False)
        except (sla.LinAlgError, ValueError):
            return np.zeros(xty.shape[0])
    return shift if np.all(np.isfinite(shift)) else np.zeros(xty.shape[0])


@pytest.mark.parametrize("p", range(1, 9))
def test_shift_is_scipys_solution_bit_for_bit(p):
    rng = np.random.default_rng(p)
    for _ in range(200):
        # an intercept and columns of very different scales (ill-conditioned grams too)
        X = rng.standard_normal((40, p)) * 10.0 ** rng.uniform(-4, 4, p)
        X[:, 0] = 1.0
        xtx = X.T @ X
        xty = X.T @ (rng.standard_normal(40) * 10.0 ** rng.uniform(-3, 3))
        np.testing.assert_array_equal(response_shift(xtx, xty), _reference(xtx, xty))


def test_unusable_grams_give_zeros():
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])
    with_nan = np.array([[np.nan, 0.0], [0.0, 1.0]])
    for xtx in (singular, indefinite, with_nan):
        np.testing.assert_array_equal(response_shift(xtx, np.ones(2)), np.zeros(2))
    np.testing.assert_array_equal(response_shift(np.zeros((1, 1)), np.ones(1)), np.zeros(1))
    np.testing.assert_array_equal(response_shift(np.array([[np.inf]]), np.ones(1)), [0.0])
    assert response_shift(np.zeros((0, 0)), np.zeros(0)).shape == (0,)
