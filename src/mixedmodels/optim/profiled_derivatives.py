"""The profiled objective's gradient and Hessian in theta, analytic, for small models.

On the dense path (:mod:`mixedmodels.core.dense`, ``q <= 240`` random effects) the whole
bordered system is one ``(q + p) x (q + p)`` matrix.  With ``T = diag(Lambda, I_p)``,
``G = [Z X]'W[Z X]``, ``h = [Z X]'W y`` and ``D = diag(I_q, 0)``,

.. math::

    M = T' G T + D, \\quad PWRSS = y'Wy - h'T M^{-1} T'h,

    f_{REML} = \\log|M| + (n - p) \\log PWRSS + c, \\quad
    f_{ML} = \\log|A| + n \\log PWRSS + c

(``A = M[:q, :q]``; ``log|M| = log|L_Z|^2 + log|R_X|^2``).  ``Lambda`` is linear in the
engine's lambda entries ``e``; with ``F_l = dT / de_l`` (one unit per level of the term),
``s = M^{-1} T'h`` and ``v = G T s - h``:

.. math::

    \\partial_l \\log|S| = 2 \\operatorname{tr}(S^{-1} T'G F_l), \\quad
    \\partial_l PWRSS = 2 (F_l s)' v,

    \\partial_{lm} \\log|S| = 2 \\operatorname{tr}(S^{-1} F_l' G F_m)
        - \\operatorname{tr}(S^{-1} \\partial_l S \\, S^{-1} \\partial_m S),

    \\partial_{lm} PWRSS = 2 (F_l s)' G (F_m s) - 2 a_l' M^{-1} a_m, \\quad
    a_l = F_l' v + T'G F_l s

(``S`` is ``M`` or ``A``).  Theta maps to the entries through the terms' structures; when
that map is linear (lme4's unstructured factors, diagonal and scaled-identity terms) the
chain rule needs its Jacobian only, which is read from one evaluation per coordinate.
Correlation structures map theta nonlinearly: :func:`dense_derivatives` returns None for
them and the caller differences the objective instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.linalg.blocks import NotPositiveDefiniteError

# a map theta -> entries is taken as linear (homogeneous) when e(theta) = J theta to this
# relative precision (exact arithmetic on 0/1 Jacobians gives 1e-16)
LINEAR_RTOL = 1e-12


@dataclass(frozen=True)
class ProfiledDerivatives:
    """The profiled objective at theta, its gradient and (optionally) Hessian in theta."""

    value: float
    gradient: np.ndarray
    hessian: np.ndarray | None


_POTRF = sla.lapack.dpotrf
_POTRI = sla.lapack.dpotri
_POTRS = sla.lapack.dpotrs
_TRTRS = sla.lapack.dtrtrs


def _jacobian_at(problem: LmmProblem, theta: np.ndarray) -> np.ndarray | None:
    """Unit-step differences of the theta-to-entries map at ``theta`` when ``e = J theta``
    holds there, else None (also when the map fails or is not finite at the shifted
    points: a correlation parameter beyond 1)."""
    entries = problem.lambda_entries
    k = theta.size
    jac = np.empty((int(problem.entry_offsets[-1]), k))
    try:
        with np.errstate(all="ignore"):
            e = np.asarray(entries(theta), dtype=float)
            for i in range(k):
                step = np.zeros(k)
                step[i] = 1.0
                jac[:, i] = entries(theta + step) - e
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    if not (np.isfinite(jac).all() and np.isfinite(e).all()):
        return None
    scale = max(1.0, float(np.max(np.abs(e), initial=0.0)))
    if not np.max(np.abs(jac @ theta - e), initial=0.0) <= LINEAR_RTOL * scale:
        return None
    return jac


def linear_entries_jacobian(problem: LmmProblem, theta: np.ndarray) -> np.ndarray | None:
    """``d e / d theta`` of the problem's theta-to-entries map when it is linear and
    homogeneous (``e = J theta``), else None.

    Unit-step differences are exact for such a map, and it has one Jacobian everywhere:
    they are taken at ``theta`` and at a second point (every coordinate moved by 0.1 to 0.2
    inside its bounds) and must agree.  One point is not enough: ``cs()`` or ``ar1()`` with
    the correlation at exactly 0 map the standard deviations linearly there (``e = J
    theta`` holds) while the correlation's column is a secant, and the standard
    deviations' columns change as soon as the correlation does (the polish from such a
    point took wrong analytic derivatives)."""
    theta = np.asarray(theta, dtype=float)
    jac = _jacobian_at(problem, theta)
    if jac is None:
        return None
    lower, upper = problem.theta_lower_bounds(), problem.theta_upper_bounds()
    shift = 0.1 + 0.1 * np.arange(theta.size) / max(1, theta.size)
    other = np.clip(np.where(theta + shift <= upper, theta + shift, theta - shift), lower, upper)
    second = _jacobian_at(problem, other)
    if second is None:
        return None
    scale = max(1.0, float(np.max(np.abs(jac), initial=0.0)))
    if not np.max(np.abs(second - jac), initial=0.0) <= LINEAR_RTOL * scale:
        return None
    return jac


class DenseDerivatives:
    """Analytic derivatives of a dense-path problem's profiled objective.

    Everything that does not depend on theta (the bordered Gram, the positions of the
    entries and the index arrays into it) is laid out once here; the Jacobian of a linear
    theta-to-entries map is constant and kept after the first call.

    Parameters
    ----------
    problem : LmmProblem
        A problem whose :attr:`~mixedmodels.core.lmm.LmmProblem.dense_objective` is set.
    """

    def __init__(self, problem: LmmProblem) -> None:
        dense = problem.dense_objective
        if dense is None:
            raise ValueError("analytic derivatives need the dense path (q <= 240)")
        self.problem = problem
        q, p = dense.q, problem.n_fixed
        self.q, self.p = q, p
        zax, axx = dense.zax, dense.axx
        size = q + p
        g = np.empty((size, size))
        g[:q, :q] = dense.azz
        g[:q, q:] = zax[:, :p]
        g[q:, :q] = zax[:, :p].T
        g[q:, q:] = axx[:p, :p]
        self.g = g
        self.h = np.concatenate([zax[:, p], axx[:p, p]])
        self.yy = float(axx[p, p])
        rows, cols = np.asarray(dense.rows), np.asarray(dense.cols)
        self.rows, self.cols = rows, cols
        self.entry = np.asarray(dense.theta_index)  # each position's lambda entry
        self.n_entries = int(problem.entry_offsets[-1])
        n_pos = rows.size
        # positions x entries indicator: sums over an entry's positions
        self.indicator = np.zeros((n_pos, self.n_entries))
        self.indicator[np.arange(n_pos), self.entry] = 1.0
        # bins of (row, entry) and (column, entry): F_l s and F_l' v for every l at once
        self.row_bins = rows * self.n_entries + self.entry
        self.col_bins = cols * self.n_entries + self.entry
        self.size = size
        self.g_rows = g[rows[:, None], rows[None, :]]  # G[r_j, r_i]
        self.n_s = size if problem.reml else q  # log|M| (REML) or log|A| (ML)
        self.cols_pairs = (cols[:, None] * self.n_s + cols[None, :]).ravel()
        self.flat_lambda = rows * q + cols
        self.leading = np.arange(q) * (size + 1)  # flat positions of M's first q diagonals
        self.dof = problem.n - p if problem.reml else problem.n
        self._jacobian: np.ndarray | None = None

    def entries_jacobian(self, theta: np.ndarray) -> np.ndarray | None:
        """:func:`linear_entries_jacobian`, kept once found (it is constant)."""
        if self._jacobian is None:
            self._jacobian = linear_entries_jacobian(self.problem, theta)
        return self._jacobian

    def at(self, theta: np.ndarray, hessian: bool = True) -> ProfiledDerivatives | None:
        """Value, gradient and (with ``hessian``) Hessian in theta; None when theta maps
        to the entries nonlinearly.

        Raises
        ------
        NotPositiveDefiniteError
            When the bordered system cannot be factored at ``theta``.
        """
        theta = np.asarray(theta, dtype=float)
        jac = self.entries_jacobian(theta)
        if jac is None:
            return None
        value, grad_e, hess_e = self._entry_derivatives(
            self.problem.lambda_entries(theta), hessian
        )
        grad = jac.T @ grad_e
        hess = None if hess_e is None else jac.T @ hess_e @ jac
        return ProfiledDerivatives(value, grad, hess)

    def value(self, theta: np.ndarray) -> float:
        """The objective at ``theta`` by this class's arithmetic (the engine's to 1e-14)."""
        return self._entry_derivatives(
            self.problem.lambda_entries(np.asarray(theta, dtype=float)), False, False
        )[0]

    def _entry_derivatives(
        self, e: np.ndarray, hessian: bool, gradient: bool = True
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        q, n_s = self.q, self.n_s
        g, rows, cols, ind = self.g, self.rows, self.cols, self.indicator
        lam = np.zeros(q * q)
        lam[self.flat_lambda] = e[self.entry]
        lam = lam.reshape(q, q)
        gt = g.copy()  # G T
        gt[:, :q] = g[:, :q] @ lam
        bt = gt.T  # T'G
        m = gt.copy()  # M = T'G T + D
        m[:q, :] = lam.T @ gt[:q, :]
        m[:q, q:] = m[q:, :q].T
        m.reshape(-1)[self.leading] += 1.0
        b = self.h.copy()
        b[:q] = lam.T @ self.h[:q]
        low, info = _POTRF(m, lower=1, clean=1)
        if info != 0:
            raise NotPositiveDefiniteError
        c, info = _TRTRS(low, b, lower=1)
        pwrss = self.yy - float(c @ c)
        if not pwrss > 0:
            raise NotPositiveDefiniteError
        log_det = 2.0 * float(np.log(np.diagonal(low)[:n_s]).sum())
        value = self.problem.objective_from_pieces(log_det, 0.0, pwrss)
        if not gradient:
            return value, None, None
        s, info = _TRTRS(low, c, lower=1, trans=1)
        s_inv, info = _POTRI(low[:n_s, :n_s], lower=1)  # S^-1's lower triangle, 0 above
        s_inv = s_inv + s_inv.T  # (C-ordered: LAPACK returns Fortran order)
        s_inv.reshape(-1)[:: n_s + 1] /= 2.0
        n_mat = s_inv @ bt[:n_s, :n_s]  # S^-1 T'G
        grad_logdet = 2.0 * (n_mat[cols, rows] @ ind)
        v = gt @ s - self.h
        grad_pwrss = 2.0 * ((s[cols] * v[rows]) @ ind)
        grad = grad_logdet + self.dof * grad_pwrss / pwrss
        if not hessian:
            return value, grad, None
        k = self.n_entries
        # d^2 log|S| = 2 tr(S^-1 F_l' G F_m) - tr(P_l P_m), P_l = S^-1 dS_l = A_l + B_l,
        # A_l = sum_i x_i y_i' and B_l = sum_i N_(r_i) e_(c_i)' over the entry's positions i
        # (x_i = S^-1[:, c_i], y_i = T'G[:n_s, r_i], N = S^-1 T'G): with C = Y'X,
        # D = Y'N[:, r], E = N[c, r] and S_c = S^-1[c, c] the trace over positions (i, j) is
        # C o C' + D o S_c + (D o S_c)' + E o E'
        s_cols = s_inv.reshape(-1)[self.cols_pairs].reshape(rows.size, rows.size)
        x_pos, y_pos = s_inv[:, cols], bt[:n_s, rows]
        c_pos = y_pos.T @ x_pos
        d_pos = (y_pos.T @ n_mat[:, rows]) * s_cols
        e_pos = n_mat[cols][:, rows]
        both = 2.0 * s_cols * self.g_rows - c_pos * c_pos.T - d_pos - d_pos.T - e_pos * e_pos.T
        hess_logdet = ind.T @ both @ ind
        # d^2 PWRSS = 2 U'GU - 2 a'M^-1 a, U[:, l] = F_l s, a = F'v + T'G U
        shape, length = (self.size, k), self.size * k
        u = np.bincount(self.row_bins, s[cols], length).reshape(shape)
        w = np.bincount(self.col_bins, v[rows], length).reshape(shape)
        a = w + bt @ u
        ma, info = _POTRS(low, a, lower=1)
        hess_pwrss = 2.0 * (u.T @ g @ u - a.T @ ma)
        hess = (
            hess_logdet
            + self.dof * (hess_pwrss / pwrss - np.outer(grad_pwrss, grad_pwrss) / pwrss**2)
        )
        return value, grad, (hess + hess.T) / 2.0
