"""Kenward-Roger adjusted covariance and df for fits with structured residuals.

The marginal covariance is ``Sigma = sum_k Z_k Psi_k Z_k' + sigma^2 V(u)`` with ``V`` the
residual structure.  Its parameters are ``s = (psi, sigma^2, u)``: the entries of each
``Psi_k`` in the linear parametrization pbkrtest uses (``G = Z E Z'``), ``sigma^2`` (``G =
V(u)``) and the structure's unconstrained parameters (``G = sigma^2 dV/du``, by
extrapolated central differences).  ``Sigma`` is block diagonal over the rows that share
no level of any random-effect term (correlation groups are nested in every term), so
``Phi``, ``P_i``, ``Q_ij`` and the traces of
:mod:`mixedmodels.inference.kenward_roger` are sums over those blocks, each dense.

As pbkrtest, the second derivatives of ``Sigma`` (Kenward and Roger's ``R_ij``) are not
used.  With them left out, ``Phi_A``, ``W``'s quadratic forms and the df are unchanged by
any smooth reparametrization of ``s`` (``P_i``, ``Q_ij`` transform with the Jacobian and
``W`` with its inverse), so the results equal pbkrtest's for a model whose ``Sigma`` is
also linear in other parameters (compound symmetry within nested groups is ``(1 | outer)
+ (1 | outer:inner)``), and do not depend on nlme's choice of unconstrained scale.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.errors import ArgumentError
from mixedmodels.inference.kenward_roger import _assemble, _entry_selectors
from mixedmodels.optim.derivatives import jacobian, step_sizes
from mixedmodels.optim.residual import residual_blas

MAX_BLOCK = 2000  # rows of the largest independent block: r dense (n_g x n_g) matrices


def _independent_blocks(rp: ResidualProblem) -> list[np.ndarray]:
    """Sorted-row indices of the sets of rows linked by a level of some term."""
    n = rp.n
    rows, cols, offset = [], [], n
    for block in rp.sorted_blocks:
        rows.append(np.arange(n))
        cols.append(offset + block.codes)
        offset += block.n_levels
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = sp.coo_matrix((np.ones(r.size), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    row_labels = labels[:n]
    order = np.argsort(row_labels, kind="stable")
    cuts = np.flatnonzero(np.diff(row_labels[order])) + 1
    return np.split(order, cuts)


class _BlockCovariance:
    """``Sigma`` of one independent block and its derivatives in ``s``."""

    def __init__(self, rp: ResidualProblem, rows: np.ndarray):
        self.rp = rp
        self.rows = rows
        groups = rp.layout.group[rows]
        self.groups = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        self.times = [rp.layout.time[rows[pos]] for pos in self.groups]

    def residual(self, u_cor: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """``V = S R S`` on the block's rows (``sd``: the variance function's multipliers
        of all sorted rows)."""
        m = self.rows.size
        out = np.zeros((m, m))
        corr = self.rp.correlation
        for pos, t in zip(self.groups, self.times, strict=True):
            out[np.ix_(pos, pos)] = np.eye(pos.size) if corr is None else corr.matrix(u_cor, t)
        s = sd[self.rows]
        return s[:, None] * out * s[None, :]

    def random_derivatives(self) -> list[np.ndarray]:
        """``Z E_j Z'`` on the block for each covariance entry of each term."""
        out = []
        for block in self.rp.sorted_blocks:
            codes = block.codes[self.rows]
            same = codes[:, None] == codes[None, :]
            z = block.z[self.rows]
            for e in _entry_selectors(block.structure):
                out.append(same * (z @ e @ z.T))
        return out

    def random_part(self, lambdas: list[np.ndarray], s2: float) -> np.ndarray:
        """``sum_k Z_k Psi_k Z_k'`` on the block."""
        m = self.rows.size
        out = np.zeros((m, m))
        for block, lam in zip(self.rp.sorted_blocks, lambdas, strict=True):
            codes = block.codes[self.rows]
            zl = block.z[self.rows] @ lam
            out += (codes[:, None] == codes[None, :]) * (zl @ zl.T)
        return s2 * out


def residual_kenward_roger_pieces(rp: ResidualProblem, x: np.ndarray, sigma: float) -> dict:
    """``Phi``, ``Phi_A``, ``W`` and the ``P_i`` at the optimum ``x = (theta, u_cor,
    u_var)`` (see :func:`mixedmodels.inference.kenward_roger.kr_test`).

    Raises
    ------
    ArgumentError
        When an independent block has more than :data:`MAX_BLOCK` rows (use
        Satterthwaite's df), or a term's covariance is not linear in its parameters.
    """
    with residual_blas(rp):
        return _kenward_roger_pieces(rp, x, sigma)


def _kenward_roger_pieces(rp: ResidualProblem, x: np.ndarray, sigma: float) -> dict:
    theta, u_cor, u_var = rp.split(np.asarray(x, dtype=float))
    blocks = _independent_blocks(rp)
    largest = max(b.size for b in blocks)
    if largest > MAX_BLOCK:
        raise ArgumentError(
            f"Kenward-Roger df with correlation= or variance functions need dense "
            f"matrices of the rows that share a random-effect level; the largest such set "
            f"has {largest} rows (at most {MAX_BLOCK}): use ddf='satterthwaite'"
        )
    s2 = sigma**2
    lambdas, k = [], 0
    for block in rp.sorted_blocks:
        lambdas.append(block.lambda_matrix(theta[k : k + block.n_theta]))
        k += block.n_theta
    u = np.concatenate([u_cor, u_var])
    steps = step_sizes(u)

    sds: dict[bytes, np.ndarray] = {}

    def sd_at(w: np.ndarray) -> np.ndarray:  # the multipliers of all rows, once per point
        key = w.tobytes()
        if key not in sds:
            sds[key] = rp.residual_sd(w[rp.n_cor :])
        return sds[key]

    covs = [_BlockCovariance(rp, rows) for rows in blocks]
    sd0 = rp.residual_sd(u_var)
    p = rp.n_fixed
    xsx = np.zeros((p, p))
    P: list[np.ndarray] | None = None
    Q: list[list[np.ndarray]] | None = None
    traces = None
    for cov in covs:
        V = cov.residual(u_cor, sd0)
        sigma_g = cov.random_part(lambdas, s2) + s2 * V
        G = cov.random_derivatives() + [V]
        if u.size:
            dv = jacobian(lambda w, c=cov: c.residual(w[: rp.n_cor], sd_at(w)), u, steps)
            G += [s2 * d for d in dv]
        factor = sla.cho_factor(sigma_g, lower=True)
        X = rp.X[cov.rows]
        SX = sla.cho_solve(factor, X)
        SG = [sla.cho_solve(factor, g) for g in G]
        A = [g @ SX for g in G]  # G_i Sigma^-1 X
        SA = [sla.cho_solve(factor, a) for a in A]
        r = len(G)
        if P is None:
            P = [np.zeros((p, p)) for _ in range(r)]
            Q = [[np.zeros((p, p)) for _ in range(r)] for _ in range(r)]
            traces = np.zeros((r, r))
        xsx += X.T @ SX
        for i in range(r):
            P[i] -= SX.T @ A[i]
            for j in range(r):
                Q[i][j] += A[i].T @ SA[j]
                traces[i, j] += np.sum(SG[i] * SG[j].T)
    phi = np.linalg.inv(xsx)
    return _assemble(phi, P, Q, traces)
