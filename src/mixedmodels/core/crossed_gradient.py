"""The gradient of the profiled objective on the crossed path, in the relative factors.

The objective (:meth:`mixedmodels.core.lmm.LmmProblem.objective_from_pieces`) is

.. math::

    f = \\log|V| + [\\text{REML}] \\log|H| + \\nu \\log \\text{PWRSS} + c, \\qquad
    V = \\Lambda' Z'WZ \\Lambda + I, \\quad H = X'WX - B' V^{-1} B, \\quad
    B = \\Lambda' Z'W X,

with ``nu = n - p`` (REML) or ``n`` (ML).  Every term of its derivative in the entries
of the relative factors is a trace ``tr(d lambda_k X_k)`` with a small ``p_k x p_k``
matrix ``X_k`` per term, made of three parts.

*The random-effect determinant.*  With the eliminated term's levels first
(:mod:`mixedmodels.core.crossed`: ``V_s = lambda_0' D_s lambda_0 + I``,
``N_s = V_s^{-1}``, ``M_s = lambda_0 N_s lambda_0'``, the rest's
``S = Lambda_R' K Lambda_R + I`` with ``K = D_R - sum_s A_s M_s A_s'``),
``log|V| = sum_s log|V_s| + log|S|`` and

.. math::

    X_0 = 2 \\sum_s N_s \\lambda_0' \\left(D_s - Q_s (I - M_s D_s)\\right), \\qquad
    Q_s = A_s' T A_s, \\quad T = \\Lambda_R S^{-1} \\Lambda_R',

    X_k = 2 \\sum_{\\text{levels } j \\text{ of } k} \\left(S^{-1} \\Lambda_R' K\\right)_{jj}.

``Q_s`` reads ``T`` at the pairs of rows the fill writes
(:class:`mixedmodels.linalg.gather.LevelQuadraticForms`): the one step as costly as a fill.

*PWRSS and* ``log|H|``.  With ``C = V^{-1} \\Lambda' Z'W [X y]`` and
``E = Z'W[X y] - Z'WZ \\Lambda C`` (``q x m``; ``Lambda' E = C``), ``w = (-beta, 1)``:
PWRSS is a minimum over ``u`` and ``beta``, so its derivative is the partial one,
``d PWRSS = -2 (E w)' d\\Lambda (C w)``, and ``dH = -(E_X' d\\Lambda C_X + C_X' d\\Lambda' E_X)``.
Both are ``-2 sum_j tr(d lambda C_j Omega E_j')`` over the levels ``j`` of a term, with

.. math::

    \\Omega = \\frac{\\nu}{\\text{PWRSS}} w w' + [\\text{REML}]
    \\begin{pmatrix} H^{-1} & 0 \\\\ 0 & 0 \\end{pmatrix}.

``C`` is the factor's back substitution with ``m`` right-hand sides, ``E`` two products
with ``A``: nothing here grows with the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.crossed import SINGLE_THREAD_REST, CrossedFactor, CrossedObjective
from mixedmodels.linalg import batched
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.reterms.structures import lower_triangle_indices

# levels of the eliminated term whose per-level arrays are formed at once
LEVEL_CHUNK = 65_536


@dataclass(frozen=True)
class LambdaGradient:
    """The objective's derivative in each term's relative factor.

    Attributes
    ----------
    factor : CrossedFactor
        The factor at theta (its pieces give the objective's value).
    blocks : list of (int, ndarray)
        ``(engine index, G_k)``: ``df = sum_k sum_{i >= j} G_k[i, j] d lambda_k[i, j]``
        over the lower triangles.
    """

    factor: CrossedFactor
    blocks: list[tuple[int, np.ndarray]]

    def entries(self, k: int) -> np.ndarray:
        """The derivatives in term ``k``'s lower-triangle entries, column by column."""
        for index, g in self.blocks:
            if index == k:
                rows, cols = lower_triangle_indices(g.shape[0])
                return g[rows, cols]
        raise KeyError(k)


def _symmetric_from_lower(low: np.ndarray) -> np.ndarray:
    out = np.tril(low)
    out += np.tril(low, -1).T
    return out


def _rest_scale(objective: CrossedObjective, mat: np.ndarray, lams, left: bool) -> np.ndarray:
    """``Lambda_R mat`` (left) or ``mat Lambda_R'`` of a C-contiguous ``(Q, c)`` / ``(c, Q)``
    array, in place."""
    transposed = [lam.T for lam in lams]
    if left:
        return objective._scale_rows(mat, transposed)
    return objective._scale_columns(mat, transposed)


def lambda_gradient(
    objective: CrossedObjective, theta: np.ndarray, reml: bool, n: int
) -> LambdaGradient:
    """The derivatives of the profiled objective (REML criterion or deviance, ``n``
    observations) in the entries of every term's relative factor at ``theta``.

    Raises
    ------
    NotPositiveDefiniteError
        When the model cannot be factored at ``theta``, or PWRSS is 0 (an exact fit: the
        objective is not differentiable there).
    """
    with single_threaded_blas(objective.q_rest <= SINGLE_THREAD_REST):
        return _lambda_gradient(objective, np.asarray(theta, dtype=float), reml, n)


def _lambda_gradient(
    objective: CrossedObjective, theta: np.ndarray, reml: bool, n: int
) -> LambdaGradient:
    f = objective.factor(theta, keep_schur=True)
    pwrss = f.pwrss
    if not pwrss > 0.0:
        raise NotPositiveDefiniteError
    lams = f.lams
    n_fixed = objective.n_fixed
    # S^-1 and T = Lambda_R S^-1 Lambda_R'
    s_inv, info = sla.lapack.dpotri(f.upper_rest, lower=0)
    if info != 0:
        raise NotPositiveDefiniteError
    s_inv = _symmetric_from_lower(s_inv.T)
    t = _rest_scale(objective, _rest_scale(objective, s_inv.copy(), lams, left=False), lams, True)
    q_s = objective.level_quadratic_forms(t)
    del t
    # the rest's determinant part: 2 sum over levels of (S^-1 Lambda_R' K)_jj
    lk = objective._scale_rows(_symmetric_from_lower(f.rest_schur), lams)  # Lambda_R' K
    x_rest = []
    q = objective.q_rest
    for i, lam in enumerate(lams):
        lo, hi = objective.rest_offsets[i], objective.rest_offsets[i + 1]
        pk = lam.shape[0]
        rows = s_inv[lo:hi].reshape(-1, pk, q)  # (levels, a, j): views, nothing copied
        cols = lk[:, lo:hi].reshape(q, -1, pk)  # (j, levels, b)
        x_rest.append(2.0 * np.einsum("laj,jlb->ab", rows, cols))
    del s_inv, lk
    # the border: Omega weighs the m columns of C and E
    lxx = f.xy_xy[:n_fixed, :n_fixed]
    beta = (
        sla.solve_triangular(lxx, f.xy_xy[-1, :n_fixed], lower=True, trans=1)
        if n_fixed
        else np.zeros(0)
    )
    w = np.append(-beta, 1.0)
    dof = n - n_fixed if reml else n
    omega = (dof / pwrss) * np.outer(w, w)
    if reml and n_fixed:
        omega[:n_fixed, :n_fixed] += sla.cho_solve((lxx, True), np.eye(n_fixed))
    x0, c_rest, e_rest = _first_term_and_border(objective, f, q_s, omega)
    m = c_rest.shape[1]
    for i, lam in enumerate(lams):
        lo, hi = objective.rest_offsets[i], objective.rest_offsets[i + 1]
        pk = lam.shape[0]
        ck = c_rest[lo:hi].reshape(-1, pk, m)
        ek = e_rest[lo:hi].reshape(-1, pk, m)
        x_rest[i] = x_rest[i] - 2.0 * np.einsum("lam,mn,lbn->ab", ck, omega, ek)
    # d f = tr(d lambda X) = sum_ij d lambda_ij X_ji
    blocks = []
    at = 0
    for k, pk in zip(objective.order.first, objective.first_p, strict=True):
        blocks.append((k, x0[at : at + pk, at : at + pk].T.copy()))
        at += pk
    for k, xk in zip(objective.order.rest, x_rest, strict=True):
        blocks.append((k, xk.T.copy()))
    return LambdaGradient(f, blocks)


def _first_term_and_border(
    objective: CrossedObjective, f: CrossedFactor, q_s: np.ndarray, omega: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X_0`` (the eliminated term's matrix, all three parts) and the rest's ``C_R``,
    ``E_R`` (``(Q, m)``).

    ``C = V^-1 Lambda' Z'W[X y]`` is the crossed solve's back substitution with the ``m``
    unit vectors for ``w``; ``E = Z'W[X y] - Z'WZ Lambda C``.  The per-level arrays are
    formed :data:`LEVEL_CHUNK` levels at a time (a 1M-level problem would otherwise hold a
    dozen ``(p, l, m)`` temporaries at once)."""
    lam0, lams = f.lam0, f.lams
    p, n_levels = objective.p, objective.n_levels
    xz0, d0 = objective.xz0, objective.d0  # (m, p, l), (p, p, l)
    m = xz0.shape[0]
    c_rest, info = sla.lapack.dtrtrs(f.upper_rest, f.c_rest, lower=0)
    if info != 0:
        raise NotPositiveDefiniteError
    b_rest = np.empty_like(c_rest)  # Lambda_R C_R
    for i, lam in enumerate(lams):
        lo, hi = objective.rest_offsets[i], objective.rest_offsets[i + 1]
        pk = lam.shape[0]
        block = c_rest[lo:hi].reshape(-1, pk, m)
        b_rest[lo:hi] = np.einsum("ab,lbm->lam", lam, block).reshape(hi - lo, m)
    at_b = np.asarray(objective.a.T @ b_rest).reshape(n_levels, p, m)  # (A' Lambda_R C_R)_s
    level_major = np.empty((n_levels, p, m))  # lambda_0 C_s, for A (lambda_0 C_0)
    x0 = np.zeros((p, p))
    for lo in range(0, n_levels, LEVEL_CHUNK):
        hi = min(n_levels, lo + LEVEL_CHUNK)
        inv = batched.invert_lower(np.ascontiguousarray(f.low[:, :, lo:hi]))  # L_s^-1
        d = d0[:, :, lo:hi]
        n_s = np.einsum("kil,kjl->ijl", inv, inv)  # V_s^-1
        r = np.einsum("ik,jkl->ijl", lam0, inv)  # lambda_0 L_s^-T
        m_s = np.einsum("ikl,jkl->ijl", r, r)  # lambda_0 V_s^-1 lambda_0'
        q = q_s[:, :, lo:hi]
        # log|V|: 2 sum_s N_s lambda_0' (D_s - Q_s + Q_s M_s D_s)
        # (three-operand einsums are contracted pairwise by hand: numpy's loop over all
        # indices at once took 65 ms per 100k levels)
        qm = np.einsum("ijl,jkl->ikl", q, m_s)
        y = d - q + np.einsum("ikl,kml->iml", qm, d)
        ly = np.einsum("kj,kml->jml", lam0, y)  # lambda_0' Y_s
        x0 += 2.0 * np.einsum("ijl,jml->im", n_s, ly)
        # C_s = V_s^-1 lambda_0' g_s and E_s = g_s - D_s lambda_0 C_s
        g = xz0[:, :, lo:hi].transpose(1, 2, 0) - at_b[lo:hi].transpose(1, 0, 2)  # (p, l, m)
        c0 = np.einsum("ijl,jlm->ilm", n_s, np.einsum("kj,klm->jlm", lam0, g))
        b0 = np.einsum("ij,jlm->ilm", lam0, c0)
        e0 = g - np.einsum("ijl,jlm->ilm", d, b0)
        x0 -= 2.0 * np.tensordot(np.einsum("alm,mn->aln", c0, omega), e0, axes=([1, 2], [1, 2]))
        level_major[lo:hi] = b0.transpose(1, 0, 2)
    e_rest = (
        objective.xz_rest.T
        - np.asarray(objective.a @ level_major.reshape(n_levels * p, m))
        - objective.d_rest @ b_rest
    )
    return x0, c_rest, e_rest
