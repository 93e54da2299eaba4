"""The per-level algebra of a structured-residual model with one random-effect term.

With one term whose levels hold whole correlation groups, the whitened cross products
reduce level by level: for level ``l``, the ``p x p`` block ``A_l = Z_l' V_l^-1 Z_l``, its
border ``B_l = Z_l' V_l^-1 [X y]`` (the level's *head*: the first ``p`` rows of its
``(p + m) x (p + m)`` cross product), and the summed ``[X y]' V^-1 [X y]``.  With
``Lambda`` the term's relative factor,

.. math::

    L_l L_l' = \\Lambda' A_l \\Lambda + I, \\qquad
    S = [X y]'V^{-1}[X y] - \\sum_l C_l' C_l, \\quad C_l = L_l^{-1} \\Lambda' B_l,

so ``log|L|^2 = sum_l log|L_l|^2`` and the Schur complement ``S`` gives ``R_X`` and PWRSS
(:func:`head_pieces`), the fixed effects and the conditional modes (:func:`head_solution`),
without forming the whitened rows.
:class:`~mixedmodels.core.residual_problem.ResidualProblem` uses these for its objective and
its solution.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.residual import LinearPlan

#: what a kernel's status means (:mod:`mixedmodels.core.residual_kernels`): the numpy
#: code's LinAlgError messages
KERNEL_FAILURES = {
    1: "not positive definite",
    2: "cross products are not finite",
    3: "not positive definite",
    4: "ARMA correlation is not positive definite",
    5: "variance function outside its range",
}
#: the kernels' status of a variance function outside its range (the optimizer is told
#: infinity there, as when the multipliers themselves are out of range)
OUT_OF_RANGE = 5


def single_term_pieces(
    lam: np.ndarray, grams: np.ndarray, n_fixed: int
) -> tuple[float, float, float]:
    """``(log|L_Z|^2, log|R_X|^2, PWRSS)`` of a model with one random-effect term from
    per-level cross products ``grams`` of ``[z X y]`` (l, k, k): per level
    ``L_l L_l' = lam' Z_l'Z_l lam + I`` and ``C_l = L_l^-1 lam' Z_l'[X y]``, then
    ``R R' = [X y]'[X y] - sum_l C_l'C_l`` (the engine's blocked factor, batched)."""
    p = lam.shape[0]
    return head_pieces(lam, grams[:, :p, :], grams[:, p:, p:].sum(axis=0), n_fixed)


def head_pieces(
    lam: np.ndarray, head: np.ndarray, xyxy: np.ndarray, n_fixed: int
) -> tuple[float, float, float]:
    """:func:`single_term_pieces` from the parts of the per-level cross products it reads:
    ``head`` the first ``p`` rows of each level's (l, p, k), ``xyxy`` the sum over levels
    of the rest, ``[X y]'[X y]`` (k - p, k - p)."""
    ld_z, s = _schur(lam, head, xyxy)
    if not math.isfinite(s.sum()):  # (a sum: one call; overflow also refuses)
        raise np.linalg.LinAlgError("cross products are not finite")
    r, info = sla.lapack.dpotrf(s, lower=1, clean=1)
    m = s.shape[0]
    if info != 0 and info != m:
        raise np.linalg.LinAlgError("not positive definite")
    diag = r.diagonal()
    pwrss = float(diag[-1] ** 2) if info == 0 else 0.0
    ld_x = 2.0 * float(np.log(diag[:n_fixed]).sum())
    return ld_z, ld_x, pwrss


def head_solution(
    lam: np.ndarray, head: np.ndarray, xyxy: np.ndarray, n_fixed: int
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``(log|L_Z|^2, R, beta, u)`` of a model with one random-effect term from the parts
    of its per-level cross products that :func:`head_pieces` reads: ``R`` the lower
    Cholesky factor of the ``[X y]`` Schur complement (formed as :func:`head_pieces` forms
    it), ``beta`` from ``R_X' beta = R_y``, and per level (l, p) the modes ``u_l = L_l'^-1
    (C_l,y - C_l,X beta)`` with ``L_l L_l' = lam' Z_l'Z_l lam + I`` and ``C_l = L_l^-1
    lam' Z_l'[X y]``.

    Raises
    ------
    numpy.linalg.LinAlgError
        When the Schur complement is not positive definite or not finite.
    """
    p = lam.shape[0]
    zz, zxy = head[:, :, :p], head[:, :, p:]
    ld_z, s = _schur(lam, head, xyxy)
    if p > 1:
        a = lam.T @ zz @ lam
        a[:, np.arange(p), np.arange(p)] += 1.0
        low = np.linalg.cholesky(a)
        c = np.linalg.solve(low, lam.T @ zxy)  # (l, p, k - p)
    if not np.isfinite(s).all():
        raise np.linalg.LinAlgError("cross products are not finite")
    r, info = sla.lapack.dpotrf(s, lower=1, clean=1)
    m = s.shape[0]
    if info == m:  # an exact fit: only the response's pivot failed (PWRSS 0, as pieces)
        r[-1, -1] = 0.0
    elif info != 0:
        raise np.linalg.LinAlgError("not positive definite")
    lxx, ly = r[:n_fixed, :n_fixed], r[-1, :n_fixed]
    beta = sla.solve_triangular(lxx, ly, lower=True, trans=1) if n_fixed else np.zeros(0)
    if p == 1:
        lam0 = float(lam[0, 0])
        d = 1.0 + lam0 * lam0 * zz[:, 0, 0]
        u = (lam0 * (zxy[:, 0, -1] - zxy[:, 0, :n_fixed] @ beta) / d)[:, None]
    else:
        rhs = c[:, :, n_fixed] - c[:, :, :n_fixed] @ beta  # (l, p)
        u = np.linalg.solve(np.swapaxes(low, 1, 2), rhs[:, :, None])[:, :, 0]
    return ld_z, r, beta, u


def _schur(lam: np.ndarray, head: np.ndarray, xyxy: np.ndarray) -> tuple[float, np.ndarray]:
    """``(log|L_Z|^2, [X y]'[X y] - sum_l C_l'C_l)`` from the first ``p`` rows of each
    level's cross products ``head`` (l, p, k) and ``xyxy`` (:func:`head_pieces`).

    ``sum_l C_l'C_l = sum_l r_l' A_l^-1 r_l`` with ``A_l = lam' Z_l'Z_l lam + I`` and
    ``r_l = lam' Z_l'[X y]``: for ``p = 1`` elementwise over levels, for ``p = 2`` through
    the closed-form inverse of each ``2 x 2`` ``A_l`` (``|A_l| >= 1``), up to
    :data:`SMALL_TERM` entry by entry (:func:`_small_term_reduction`), beyond with batched
    LAPACK calls."""
    p = lam.shape[0]
    if p == 1:  # scalar term: everything is elementwise over levels
        lam2 = float(lam[0, 0]) ** 2
        d = 1.0 + lam2 * head[:, 0, 0]
        zxy = head[:, 0, 1:]
        return float(np.log(d).sum()), xyxy - (zxy.T * (lam2 / d)) @ zxy
    if p == 2 and SMALL_TERM >= 2:
        m = head.shape[2] - 2
        left = lam.T @ head  # (l, 2, k): lam' Z_l'[Z X y]
        r = left[:, :, 2:]
        a = left[:, :, :2] @ lam
        a11, a21, a22 = a[:, 0, 0] + 1.0, a[:, 1, 0], a[:, 1, 1] + 1.0
        det = a11 * a22 - a21 * a21
        inverse = np.empty_like(a)
        inverse[:, 0, 0] = a22
        inverse[:, 0, 1] = -a21
        inverse[:, 1, 0] = -a21
        inverse[:, 1, 1] = a11
        inverse /= det[:, None, None]
        q = inverse @ r
        return float(np.log(det).sum()), xyxy - r.reshape(-1, m).T @ q.reshape(-1, m)
    if p <= SMALL_TERM:
        return _small_term_reduction(lam, head, xyxy)
    zz = head[:, :, :p]
    zxy = head[:, :, p:]
    lam_t = lam.T
    d = lam_t @ zz @ lam
    d[:, np.arange(p), np.arange(p)] += 1.0
    low = np.linalg.cholesky(d)
    c = np.linalg.solve(low, lam_t @ zxy)
    ld_z = 2.0 * float(np.log(np.diagonal(low, axis1=1, axis2=2)).sum())
    return ld_z, xyxy - np.einsum("lpa,lpb->ab", c, c)


class LinearHeads:
    """A :class:`~mixedmodels.core.residual.LinearPlan`'s basis reduced to what the
    single-term objective reads (:meth:`ResidualProblem.level_heads`): the first ``p``
    rows of each level's basis matrices, (terms, l p k), and the basis summed over levels
    in the rest, (terms, (k - p)^2).  An evaluation is then the plan's weights and two
    matrix-vector products, whatever the number of rows."""

    def __init__(self, plan: LinearPlan, p: int):
        self.plan = plan
        basis = plan.basis
        t, n_levels, k, _ = basis.shape
        self.shape = (n_levels, p, k)
        self.tail_shape = (k - p, k - p)
        self.head = np.ascontiguousarray(basis[:, :, :p, :]).reshape(t, -1)
        self.tail = basis[:, :, p:, p:].sum(axis=1).reshape(t, -1)

    def at(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """``(head (l, p, k), [X y]'[X y] (k - p, k - p), log|R|)`` at ``u``."""
        w, log_det = self.plan.weights(u)
        return (
            (w @ self.head).reshape(self.shape),
            (w @ self.tail).reshape(self.tail_shape),
            log_det,
        )


def single_term_coefficients(
    lam: np.ndarray, grams: np.ndarray, n_fixed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(beta, b)`` of a model with one random-effect term from the per-level cross
    products ``grams`` of ``[z X y]`` (l, k, k): with ``L_l L_l' = lam' Z_l'Z_l lam + I``
    and ``C_l = L_l^-1 lam' Z_l'[X y]``, ``beta`` solves ``([X y]'[X y] - sum_l
    C_l'C_l)`` bordered, ``u_l = L_l'^-1 (C_l,y - C_l,X beta)`` and ``b_l = lam u_l``
    (l, p) (the engine's solution, batched over levels)."""
    p = lam.shape[0]
    zz = grams[:, :p, :p]
    zxy = grams[:, :p, p:]
    a = lam.T @ zz @ lam
    a[:, np.arange(p), np.arange(p)] += 1.0
    low = np.linalg.cholesky(a)
    c = np.linalg.solve(low, lam.T @ zxy)  # (l, p, n_fixed + 1)
    s = grams[:, p:, p:].sum(axis=0) - np.einsum("lpa,lpb->ab", c, c)
    beta = np.linalg.solve(s[:n_fixed, :n_fixed], s[:n_fixed, n_fixed])
    rhs = c[:, :, n_fixed] - c[:, :, :n_fixed] @ beta  # (l, p)
    u = np.linalg.solve(np.swapaxes(low, 1, 2), rhs[:, :, None])[:, :, 0]
    return beta, u @ lam.T


#: Terms with at most this many coefficients are factored entry by entry, each entry an
#: array over the levels (a few vectorized operations instead of batched LAPACK calls,
#: whose set-up dominates for 2 x 2 blocks: BodyWeight's (Time | Rat), 16 levels, 4x faster).
SMALL_TERM = 4


def _small_term_reduction(
    lam: np.ndarray, head: np.ndarray, xyxy: np.ndarray
) -> tuple[float, np.ndarray]:
    """``(log|L_Z|^2, [X y]'[X y] - sum_l C_l'C_l)`` for a term of ``p <= SMALL_TERM``
    coefficients: per level the Cholesky factor of ``lam' Z_l'Z_l lam + I`` and the forward
    substitution for ``C_l``, entry by entry over all levels at once (the same arithmetic
    as LAPACK's unblocked factorization)."""
    p = lam.shape[0]
    n_levels, k = head.shape[0], head.shape[2]
    # lam' Z_l'Z_l lam for all levels as one 2-D product: entry (i, j) is
    # sum_ab (Z'Z)_ab lam_ai lam_bj, the Kronecker product's column (i, j)
    kron = (lam[:, None, :, None] * lam[None, :, None, :]).reshape(p * p, p * p)
    d = (head[:, :, :p].reshape(n_levels, p * p) @ kron).T  # (p * p, l)
    r = lam.T @ head[:, :, p:].transpose(1, 0, 2).reshape(p, -1)  # (p, l * (k - p))
    r = r.reshape(p, n_levels, k - p)
    low: list[list] = [[None] * p for _ in range(p)]
    c: list = [None] * p
    ld_z = 0.0
    s = xyxy.copy()
    for j in range(p):
        djj = d[j * p + j] + 1.0
        for m in range(j):
            djj = djj - low[j][m] * low[j][m]
        if not djj.min() > 0.0:
            raise np.linalg.LinAlgError("not positive definite")
        ljj = np.sqrt(djj)
        low[j][j] = ljj
        ld_z += float(np.log(djj).sum())
        for i in range(j + 1, p):
            v = d[i * p + j]
            for m in range(j):
                v = v - low[i][m] * low[j][m]
            low[i][j] = v / ljj
        cj = r[j]
        for m in range(j):
            cj = cj - low[j][m][:, None] * c[m]
        cj = cj / ljj[:, None]
        c[j] = cj
        s -= cj.T @ cj
    return ld_z, s


