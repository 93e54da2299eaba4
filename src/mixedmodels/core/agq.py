r"""Adaptive Gauss-Hermite quadrature of a nonlinear mixed model with one scalar random
effect per group.

Model (:mod:`mixedmodels.core.nonlinear`): ``y_j = f(phi_j) + e_j``, ``e_j ~ N(0, sigma^2)``,
the random parameter of group ``i`` shifted by ``b_i = lambda u_i``, ``u_i ~ N(0, sigma^2)``.
With the group's penalized residual sum of squares

.. math::

    g_i(u) = \sum_{j \in i} (y_j - f_j(\beta, \lambda u))^2 + u^2

its marginal likelihood is

.. math::

    L_i = (2 \pi \sigma^2)^{-(n_i + 1)/2} \int e^{-g_i(u) / (2 \sigma^2)} \, du .

Centred at the conditional mode ``u~_i`` (the minimum of ``g_i``) and scaled by the
curvature the Laplace approximation uses, ``a_i = 1 + lambda^2 z_i'z_i`` (``z = df/db`` at
the mode: ``g_i`` is ``a_i (u - u~_i)^2`` to second order in the Gauss-Newton sense),
``u = u~_i + sigma z / sqrt(a_i)`` turns the integral into an expectation over a standard
normal ``z``, which ``k`` Gauss-Hermite nodes ``z_k`` (weights ``w_k``, summing to one)
evaluate:

.. math::

    -2 \log L_i \approx n_i \log(2 \pi \sigma^2) + \log a_i + g_i(\tilde u_i) / \sigma^2
        - 2 \log \sum_k w_k \exp\Big(-\frac{g_i(\tilde u_i + \sigma z_k / \sqrt{a_i})
        - g_i(\tilde u_i)}{2 \sigma^2} + \frac{z_k^2}{2}\Big).

One node (``z = 0``, ``w = 1``) leaves the Laplace approximation; a ``g_i`` quadratic in
``u`` (a model linear in its random effect) makes every ``k`` exact.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from mixedmodels.core.nonlinear import NonlinearProblem

#: ``values(phi, k)``: a model's values at ``k`` stacked copies of the rows.
StackedValues = Callable[[np.ndarray, int], np.ndarray]

#: Most nodes accepted (lme4's glmer caps nAGQ at 25 as well).
MAX_NODES = 25


@lru_cache(maxsize=MAX_NODES)
def normal_rule(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal density: numpy's
    ``hermegauss`` (weight ``exp(-z^2/2)``) with the weights divided by ``sqrt(2 pi)`` so
    they sum to one, as glmer's quadrature in :mod:`mixedmodels.core.pirls` uses them.

    Parameters
    ----------
    k : int
        Number of nodes, 1 to :data:`MAX_NODES`.

    Returns
    -------
    nodes, weights : ndarray (k,)
        Read-only arrays (cached).
    """
    if not 1 <= k <= MAX_NODES:
        raise ValueError(f"the number of nodes must be from 1 to {MAX_NODES}, got {k}")
    nodes, weights = np.polynomial.hermite_e.hermegauss(k)
    weights = weights / np.sqrt(2 * np.pi)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def group_sums(problem: NonlinearProblem, values: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (n,) over each group's rows, (m,)."""
    return np.bincount(problem.groups, values, minlength=problem.n_groups)


def penalized_rss(
    problem: NonlinearProblem, beta: np.ndarray, lam: float, u: np.ndarray
) -> np.ndarray:
    """``g_i(u_i)`` of every group at the scalar effects ``u`` (m,): the group's residual sum
    of squares at ``b = lam u`` plus ``u_i^2``; ``inf`` where the model is not finite."""
    f = problem.fitted(beta, (lam * u)[:, None])
    r2 = (problem.y - f) ** 2
    return group_sums(problem, np.where(np.isfinite(r2), r2, np.inf)) + u * u


def node_penalized_rss(
    problem: NonlinearProblem,
    beta: np.ndarray,
    lam: float,
    points: np.ndarray,
    values: StackedValues | None = None,
) -> np.ndarray:
    """:func:`penalized_rss` at several points at once: ``points`` (K, m) -> (K, m).  With
    ``values`` (the model's values at K stacked copies of the rows, one call) instead of K
    calls of the model and its gradient."""
    if values is None:
        return np.array([penalized_rss(problem, beta, lam, u) for u in points])
    k, m = points.shape
    phi = np.tile(problem.phi(beta, np.zeros((m, 1))), (k, 1))
    column = problem.random_index[0]
    phi[:, column] += (lam * points[:, problem.groups]).reshape(-1)
    r2 = (np.tile(problem.y, k) - values(phi, k)) ** 2
    r2 = np.where(np.isfinite(r2), r2, np.inf)
    codes = (problem.groups[None, :] + m * np.arange(k)[:, None]).reshape(-1)
    sums = np.bincount(codes, r2, minlength=k * m).reshape(k, m)
    return sums + points * points


def agq_deviance(
    problem: NonlinearProblem,
    beta: np.ndarray,
    lam: float,
    sigma: float,
    mode: np.ndarray,
    z_at_mode: np.ndarray,
    f_at_mode: np.ndarray,
    n_nodes: int,
    values: StackedValues | None = None,
) -> float:
    """``-2 log L`` by adaptive Gauss-Hermite quadrature with ``n_nodes`` nodes (formula in
    the module docstring).

    Parameters
    ----------
    problem : NonlinearProblem
        One random parameter (``problem.q == 1``).
    beta : ndarray (p,)
        Fixed effects.
    lam : float
        Relative factor (random-effect sd / sigma).
    sigma : float
        Residual standard deviation, positive.
    mode : ndarray (m,)
        Conditional modes ``u~_i`` of ``g_i`` at ``(beta, lam)``.
    z_at_mode, f_at_mode : ndarray (n,)
        The model's derivative in the random parameter and its values at the modes.
    n_nodes : int
    values : callable, optional
        ``values(phi, k)``: the model's values at ``phi`` (k n, P), k stacked copies of the
        rows (their covariates repeated); all nodes in one call.  Without it, one call of
        ``problem.model`` per node.

    Returns
    -------
    float
        ``inf`` when the model is not finite at the mode.  A node where it is not finite
        contributes nothing to its group's sum (an integrand of 0 there); a group to which
        no node contributes makes the deviance ``inf``.
    """
    nodes, weights = normal_rule(n_nodes)
    s2 = sigma * sigma
    r2 = (problem.y - f_at_mode) ** 2
    if not np.all(np.isfinite(r2)):
        return np.inf
    g0 = group_sums(problem, r2) + mode * mode
    curvature = 1.0 + lam * lam * group_sums(problem, z_at_mode * z_at_mode)
    scale = sigma / np.sqrt(curvature)
    # log sum_k w_k exp(e_k) per group, e_k = -(g(node) - g0) / (2 sigma^2) + z_k^2 / 2,
    # accumulated stably (the node at 0, when k is odd, has e = 0 exactly)
    exponents = np.zeros((nodes.size, problem.n_groups))
    off = nodes != 0.0
    if off.any():
        g = node_penalized_rss(
            problem, beta, lam, mode + nodes[off, None] * scale, values
        )
        exponents[off] = -(g - g0) / (2 * s2) + 0.5 * (nodes[off] ** 2)[:, None]
    exponents += np.log(weights)[:, None]
    top = np.max(exponents, axis=0)
    if not np.all(np.isfinite(top)):
        return np.inf
    log_sum = top + np.log(np.exp(exponents - top).sum(axis=0))
    n = problem.n
    return float(
        n * np.log(2 * np.pi * s2)
        + np.log(curvature).sum()
        + g0.sum() / s2
        - 2 * log_sum.sum()
    )
