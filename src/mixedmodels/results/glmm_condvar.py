"""The random effects' variances as glmmTMB reports them for its families: the conditional
variance plus the estimates' own uncertainty (TMB's ``sdreport``, ``diag.cov.random``).

With ``phi = (theta, beta, psi)`` the parameters of the Laplace deviance, ``V = 2 H^-1``
their covariance and ``b(phi) = Lambda(theta) u~(phi)`` the conditional modes,

.. math::

    \\operatorname{Var}(b - \\hat b) \\approx \\Lambda H_{uu}^{-1} \\Lambda'
        + J V J', \\qquad J = \\partial \\hat b / \\partial \\phi

(Kass & Steffey's first-order correction, which TMB computes from the joint Hessian; lme4's
``condVar`` is the first term alone).  ``J`` is taken here by central differences of the
modes (PIRLS warm-started at the estimate's), ``2 (k + p + n_psi)`` modes.
"""

from __future__ import annotations

import numpy as np

from mixedmodels.core.pirls import GlmmProblem, PirlsError

#: relative step of the modes' central differences (at least this absolute)
MODE_STEP = 1e-4


def modes_by_level(problem: GlmmProblem, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
    """``b = Lambda u`` per term, shape (levels, p)."""
    out, start = [], 0
    for block, lam in zip(problem.blocks, problem.lambdas(theta), strict=True):
        size = block.n_levels * lam.shape[0]
        out.append(u[start : start + size].reshape(block.n_levels, lam.shape[0]) @ lam.T)
        start += size
    return out


def parameter_uncertainty(
    problem: GlmmProblem,
    theta: np.ndarray,
    beta: np.ndarray,
    u: np.ndarray,
    covariance: np.ndarray,
) -> list[np.ndarray] | None:
    """``J V J'`` per term and level, shape (levels, p, p): the part of glmmTMB's
    random-effect variances that the estimates' uncertainty adds (``covariance``: ``V``
    in ``(theta, beta, psi)``; rows of a flat parameter, NaN there, add nothing: its
    modes do not move).  None where a moved point has no mode."""
    family = problem.family
    psi = family.extra_values
    phi = np.concatenate([theta, beta, psi])
    k, p = theta.size, beta.size
    columns = []
    for i in range(phi.size):
        h = MODE_STEP * max(abs(float(phi[i])), 1e-2)
        ends = []
        for sign in (1.0, -1.0):
            moved = phi.copy()
            moved[i] += sign * h
            at = problem.with_family(family.with_extra(moved[k + p :])) if psi.size else problem
            try:
                mode = at.mode(moved[:k], moved[k : k + p], u)
            except PirlsError:
                return None
            ends.append(modes_by_level(problem, moved[:k], mode.u))
        columns.append([(a - b) / (2.0 * h) for a, b in zip(*ends, strict=True)])
    cov = np.where(np.isfinite(covariance), covariance, 0.0)
    out = []
    for t in range(len(problem.blocks)):
        jac = np.stack([col[t] for col in columns], axis=-1)  # (levels, p_t, n_phi)
        out.append(np.einsum("lai,ij,lbj->lab", jac, cov, jac))
    return out
