"""Finite-difference derivatives against closed forms."""

from __future__ import annotations

import numpy as np

from mixedmodels.optim.derivatives import hessian_and_gradient, hessian_by_pairs


def _f(x: np.ndarray) -> float:
    return float(np.exp(x[0]) * np.sin(x[1]) + x[0] * x[2] ** 2 + 0.5 * x[1] ** 2)


def _exact_hessian(x: np.ndarray) -> np.ndarray:
    e, s, c = np.exp(x[0]), np.sin(x[1]), np.cos(x[1])
    return np.array(
        [
            [e * s, e * c, 2 * x[2]],
            [e * c, -e * s + 1.0, 0.0],
            [2 * x[2], 0.0, 2 * x[0]],
        ]
    )


def test_pairwise_hessian_matches_the_closed_form():
    """O(h^2) error: with h = 1e-3 (times max(|x|, 0.1)) within 1e-5 absolute here."""
    x = np.array([0.3, -0.7, 1.2])
    steps = 1e-3 * np.maximum(np.abs(x), 0.1)
    np.testing.assert_allclose(hessian_by_pairs(_f, x, steps), _exact_hessian(x), atol=1e-5)


def test_pairwise_and_extrapolated_hessians_agree():
    x = np.array([-0.2, 0.4, 0.9])
    steps = 1e-3 * np.maximum(np.abs(x), 0.1)
    extrapolated, _ = hessian_and_gradient(_f, x, steps)
    np.testing.assert_allclose(hessian_by_pairs(_f, x, steps), extrapolated, atol=1e-5)


def _full_gradient(x: np.ndarray) -> np.ndarray:
    e, s, c = np.exp(x[0]), np.sin(x[1]), np.cos(x[1])
    return np.array([e * s + x[2] ** 2, e * c + x[1], 2 * x[0] * x[2]])


def _gradient_of_last(x: np.ndarray, k: int) -> np.ndarray:
    return _full_gradient(x)[k:]


def test_hessian_from_a_partial_gradient_matches_the_closed_form():
    """The columns of the coordinates with a gradient by central differences of it, the
    rest by values: O(h^2) as the pairs, within 1e-5 absolute here, with 1 + 2n + k(k - 1)
    evaluations (here n = 3, k = 1: 7, against 13 by values alone)."""
    from mixedmodels.optim.derivatives import hessian_by_gradient

    x = np.array([0.3, -0.7, 1.2])
    steps = 1e-3 * np.maximum(np.abs(x), 0.1)
    for k in (0, 1, 2, 3):
        calls = [0]

        def both(z, k=k, calls=calls):
            calls[0] += 1
            return _f(z), _gradient_of_last(z, k)

        def value(z, calls=calls):
            calls[0] += 1
            return _f(z)

        hess, grad = hessian_by_gradient(both, value, x, steps, k, _f(x))
        np.testing.assert_allclose(hess, _exact_hessian(x), atol=1e-5)
        np.testing.assert_allclose(grad, _full_gradient(x)[:k], atol=1e-6)
        np.testing.assert_array_equal(hess, hess.T)
        assert calls[0] == 2 * x.size + k * (k - 1)


def test_hessian_from_a_gradient_with_costly_trailing_entries_matches_the_closed_form():
    """hessian_by_partial_gradient: full gradients only along the first k and the last
    n - k - m coordinates, the first m entries of it along the middle ones; the Hessian
    within 1e-5 of the closed form (O(h^2), as by values), equal to hessian_by_gradient's
    where every gradient is full (m = n - k), and full gradients asked for exactly
    2 (n - m) times."""
    from mixedmodels.optim.derivatives import hessian_by_gradient, hessian_by_partial_gradient

    x = np.array([0.3, -0.7, 1.2])
    steps = 1e-3 * np.maximum(np.abs(x), 0.1)
    for k in (0, 1, 2):
        for m in range(0, x.size - k + 1):
            asked = {True: 0, False: 0}

            def partial(z, full, k=k, m=m, asked=asked):
                asked[full] += 1
                g = _gradient_of_last(z, k)
                return _f(z), g if full else g[:m]

            hess, grad = hessian_by_partial_gradient(partial, _f, x, steps, k, m, _f(x))
            np.testing.assert_allclose(hess, _exact_hessian(x), atol=1e-5)
            np.testing.assert_allclose(grad, _full_gradient(x)[:k], atol=1e-6)
            np.testing.assert_array_equal(hess, hess.T)
            assert asked[True] == 2 * (x.size - m)
            if m == x.size - k:
                whole, _ = hessian_by_gradient(
                    lambda z, k=k: (_f(z), _gradient_of_last(z, k)), _f, x, steps, k, _f(x)
                )
                np.testing.assert_array_equal(hess, whole)
