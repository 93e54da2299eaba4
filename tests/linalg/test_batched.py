"""Batched small-matrix kernels (level-last layout) against numpy's per-matrix routines."""

import numpy as np
import pytest
import scipy.linalg as sla

from mixedmodels.linalg import batched


def stack(p, rng, n=7):
    g = rng.normal(size=(n, p, p))
    return g @ g.transpose(0, 2, 1) + np.eye(p)  # (l, p, p)


@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_cholesky_solve_inverse_congruence(p):
    rng = np.random.default_rng(p)
    a = stack(p, rng)
    low = batched.cholesky(batched.to_level_last(a))
    ref = np.linalg.cholesky(a)
    np.testing.assert_allclose(batched.to_level_first(low), ref, rtol=1e-12, atol=1e-14)
    assert batched.log_diagonal_sum(low) == pytest.approx(
        np.log(np.diagonal(ref, axis1=1, axis2=2)).sum()
    )
    b = rng.normal(size=(4, 7, p))
    x = batched.solve_right_lower_transposed(b, low)
    for i in range(7):
        expected = sla.solve_triangular(ref[i], b[:, i, :].T, lower=True).T
        np.testing.assert_allclose(x[:, i, :], expected, rtol=1e-10)
    inv = batched.to_level_first(batched.invert_lower(low))
    np.testing.assert_allclose(inv, np.linalg.inv(ref), rtol=1e-10, atol=1e-13)
    lam = np.tril(rng.normal(size=(p, p)))
    cong = batched.to_level_first(batched.congruence(lam, batched.to_level_last(a)))
    np.testing.assert_allclose(cong, lam.T @ a @ lam, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batched.right_multiply(b, lam), b @ lam, rtol=1e-12, atol=1e-12)


def test_cholesky_flags_indefinite_blocks_with_nan():
    a = batched.to_level_last(np.array([[[1.0, 2.0], [2.0, 1.0]]]))
    assert np.isnan(batched.cholesky(a)).any()
