"""Numerical derivatives with Richardson extrapolation (as R's numDeriv does).

Central differences at steps ``h`` and ``h/2`` combined as ``(4 D(h/2) - D(h)) / 3`` cancel
the ``h^2`` error term, leaving ``O(h^4)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def step_sizes(x: np.ndarray, relative: float = 3e-3, floor: float = 0.1) -> np.ndarray:
    """Per-coordinate steps ``relative * max(|x|, floor)``.

    The objective carries rounding noise of about 1e-12 relative; with Richardson
    extrapolation removing the ``h^2`` term, steps of 3e-3 (relative, at least 3e-4)
    balance truncation against that noise.  On sleepstudy, whose Satterthwaite df is 17
    exactly, they give 17.000002; steps of 1e-4 give 16.87.
    """
    return relative * np.maximum(np.abs(x), floor)


def hessian_and_gradient(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    steps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hessian and gradient of a scalar function by extrapolated central differences."""
    scales = (1.0, 0.5)

    def combine(est: list[float]) -> float:  # h and h/2 estimates, h^2 error removed
        return (4 * est[1] - est[0]) / 3

    x = np.asarray(x, dtype=float)
    k = x.size
    h = step_sizes(x) if steps is None else steps
    f0 = f(x)

    def at(delta: np.ndarray) -> float:
        return f(x + delta)

    grad = np.zeros(k)
    hess = np.zeros((k, k))
    for i in range(k):
        est_g, est_h = [], []
        for scale in scales:
            e = np.zeros(k)
            e[i] = h[i] * scale
            fp, fm = at(e), at(-e)
            est_g.append((fp - fm) / (2 * e[i]))
            est_h.append((fp - 2 * f0 + fm) / e[i] ** 2)
        grad[i] = combine(est_g)
        hess[i, i] = combine(est_h)
    for i in range(k):
        for j in range(i):
            est = []
            for scale in scales:
                ei = np.zeros(k)
                ej = np.zeros(k)
                ei[i] = h[i] * scale
                ej[j] = h[j] * scale
                val = (at(ei + ej) - at(ei - ej) - at(-ei + ej) + at(-ei - ej)) / (
                    4 * ei[i] * ej[j]
                )
                est.append(val)
            hess[i, j] = hess[j, i] = combine(est)
    return hess, grad


def jacobian(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, steps: np.ndarray | None = None
) -> list[np.ndarray]:
    """Derivatives of an array-valued function with respect to each coordinate."""
    x = np.asarray(x, dtype=float)
    h = step_sizes(x) if steps is None else steps
    out = []
    for i in range(x.size):
        est = []
        for scale in (1.0, 0.5):
            e = np.zeros(x.size)
            e[i] = h[i] * scale
            est.append((f(x + e) - f(x - e)) / (2 * e[i]))
        out.append((4 * est[1] - est[0]) / 3)
    return out


def hessian_by_pairs(
    f: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray
) -> np.ndarray:
    """Hessian by central differences with two evaluations per pair of coordinates:

    .. math::

        H_{ij} \\approx \\frac{f(x + e_i + e_j) - f(x + e_i) - f(x + e_j) + 2 f(x)
            - f(x - e_i) - f(x - e_j) + f(x - e_i - e_j)}{2 h_i h_j}

    (error ``O(h^2)``, as the four-point formula), ``1 + 2k + k(k-1)`` evaluations in all
    instead of ``1 + 2k + 2k(k-1)``.
    """
    x = np.asarray(x, dtype=float)
    k = x.size
    f0 = f(x)
    plus, minus = np.zeros(k), np.zeros(k)
    for i in range(k):
        e = np.zeros(k)
        e[i] = steps[i]
        plus[i], minus[i] = f(x + e), f(x - e)
    hess = np.zeros((k, k))
    _fill_value_block(hess, f, x, steps, plus, minus, f0)
    return hess


def _fill_value_block(
    hess: np.ndarray,
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    steps: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    f0: float,
) -> None:
    """Write ``hess[:k, :k]`` (``k = plus.size``) from values: the diagonal from
    ``f(x +- e_i)`` (``plus``, ``minus``) and ``f0 = f(x)``, each pair ``i > j`` from
    ``f(x + e_i + e_j) + f(x - e_i - e_j)`` (the formula of :func:`hessian_by_pairs`)."""
    k, n = plus.size, x.size
    for i in range(k):
        hess[i, i] = (plus[i] - 2 * f0 + minus[i]) / steps[i] ** 2
        for j in range(i):
            e = np.zeros(n)
            e[i], e[j] = steps[i], steps[j]
            both = f(x + e) + f(x - e)
            cross = both - plus[i] - plus[j] - minus[i] - minus[j] + 2 * f0
            hess[i, j] = hess[j, i] = cross / (2 * steps[i] * steps[j])


def hessian_by_gradient(
    value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]],
    value: Callable[[np.ndarray], float],
    x: np.ndarray,
    steps: np.ndarray,
    k: int,
    f0: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Hessian of ``f`` from its gradient in the coordinates ``x[k:]`` and values, and the
    gradient in ``x[:k]`` by central differences of the same values:

    - every row's entries in the columns ``k:`` by central differences of that gradient
      along the row's coordinate (``2n`` gradients), the block
      ``[k:, k:]`` symmetrized;
    - the block ``[:k, :k]`` by :func:`hessian_by_pairs` from the values at the same
      points ``x +- e_i`` and ``k (k - 1)`` more.

    ``value_and_gradient(z)`` returns ``(f(z), d f / d z[k:])``; ``value(z)`` returns
    ``f(z)`` (used at the pair points, where no gradient is needed); ``f0 = f(x)``.  All
    differences are central (error ``O(h^2)``); ``1 + 2n + k (k - 1)`` points in all,
    against ``1 + 2n + n (n - 1)`` by values alone.

    Returns
    -------
    hess : ndarray (n, n)
    gradient : ndarray (k,)
        ``(f(x + e_i) - f(x - e_i)) / (2 h_i)``, error ``O(h^2)``.
    """
    # the partial-gradient form with every gradient taken whole (m = n - k): the same
    # points, differences and symmetrisation
    n = np.asarray(x).size
    return hessian_by_partial_gradient(
        lambda z, full: value_and_gradient(z), value, x, steps, k, n - k, f0
    )


def hessian_by_partial_gradient(
    value_and_gradient: Callable[[np.ndarray, bool], tuple[float, np.ndarray]],
    value: Callable[[np.ndarray], float],
    x: np.ndarray,
    steps: np.ndarray,
    k: int,
    m: int,
    f0: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hessian_by_gradient` where the gradient's trailing entries cost more than its
    first ``m``: ``value_and_gradient(z, full)`` returns ``f(z)`` and ``d f / d z[k:]``
    (``full``) or only ``d f / d z[k : k + m]``.  Full gradients are taken at the points
    along the first ``k`` and the last ``n - k - m`` coordinates, partial ones along the
    ``m`` between; the block of rows ``k : k + m`` and columns ``k + m :`` is the transpose
    of the one differenced along the last coordinates.  The same central differences
    otherwise (with ``m = n - k`` the same Hessian as :func:`hessian_by_gradient`).

    Returns
    -------
    hess : ndarray (n, n)
    gradient : ndarray (k,)
        ``(f(x + e_i) - f(x - e_i)) / (2 h_i)``, error ``O(h^2)``.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    mid = k + m
    plus, minus = np.zeros(k), np.zeros(k)
    hess = np.zeros((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = steps[i]
        full = not (k <= i < mid)
        fp, gp = value_and_gradient(x + e, full)
        fm, gm = value_and_gradient(x - e, full)
        diff = (np.asarray(gp) - np.asarray(gm)) / (2 * steps[i])
        if full:
            hess[i, k:] = diff
        else:
            hess[i, k:mid] = diff
        if i < k:
            plus[i], minus[i] = fp, fm
    hess[k:mid, mid:] = hess[mid:, k:mid].T
    lower = hess[k:, k:]
    hess[k:, k:] = (lower + lower.T) / 2
    hess[k:, :k] = hess[:k, k:].T
    _fill_value_block(hess, value, x, steps, plus, minus, f0)
    return hess, (plus - minus) / (2 * np.asarray(steps[:k], dtype=float))


def hessian_by_forward_gradient(
    value_and_gradient: Callable[[np.ndarray, bool], tuple[float, np.ndarray]],
    x: np.ndarray,
    steps: np.ndarray,
    m: int,
    gradient: np.ndarray,
) -> np.ndarray:
    """The Hessian of ``f`` by forward differences of its gradient from ``gradient`` (``f``'s
    gradient at ``x``): ``n`` gradients instead of central differences' ``2 n``, an error
    ``O(h)`` instead of ``O(h^2)`` (take steps ~30 times shorter).  ``value_and_gradient(z,
    full)`` returns ``f(z)`` and its gradient, in all ``n`` coordinates with ``full``, else in
    the first ``m`` (the trailing entries cost more): full gradients along the last ``n -
    m`` coordinates, partial ones along the first ``m``; the block of rows ``:m`` and
    columns ``m:`` is the transpose of the one differenced along the last coordinates.
    The result is symmetrized.
    """
    x = np.asarray(x, dtype=float)
    gradient = np.asarray(gradient, dtype=float)
    n = x.size
    hess = np.zeros((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = steps[i]
        full = i >= m
        _, moved = value_and_gradient(x + e, full)
        moved = np.asarray(moved, dtype=float)
        if full:
            hess[i] = (moved - gradient) / steps[i]
        else:
            hess[i, :m] = (moved[:m] - gradient[:m]) / steps[i]
    hess[:m, m:] = hess[m:, :m].T
    return (hess + hess.T) / 2
