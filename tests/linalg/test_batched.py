"""Batched small-matrix kernels against numpy's per-matrix routines."""

import numpy as np
import pytest
import scipy.linalg as sla

from mixedmodels.linalg import batched


@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_cholesky_solve_and_inverse(p):
    rng = np.random.default_rng(p)
    g = rng.normal(size=(7, p, p))
    a = g @ g.transpose(0, 2, 1) + np.eye(p)
    low = batched.cholesky(a)
    np.testing.assert_allclose(low, np.linalg.cholesky(a), rtol=1e-12, atol=1e-14)
    b = rng.normal(size=(4, 7, p))
    x = batched.solve_right_lower_transposed(b, low)
    for i in range(7):
        np.testing.assert_allclose(
            x[:, i, :], sla.solve_triangular(low[i], b[:, i, :].T, lower=True).T, rtol=1e-10
        )
    np.testing.assert_allclose(
        batched.invert_lower(low), np.linalg.inv(low), rtol=1e-10, atol=1e-13
    )


def test_cholesky_flags_indefinite_blocks_with_nan():
    a = np.array([[[1.0, 2.0], [2.0, 1.0]]])
    assert np.isnan(batched.cholesky(a)).any()
