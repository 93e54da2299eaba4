"""Kenward-Roger adjusted covariance and denominator df (as pbkrtest), without n x n
matrices.

With ``Sigma = sigma^2 I + Z Psi Z'`` linear in the variance parameters
``s = (psi_k,ab ..., sigma^2)``, ``G_i = dSigma/ds_i`` is ``Z E_i Z'`` (``E_i`` selects one
entry of one ``Psi_k`` on every level) or ``I``.  Everything KR needs reduces, through
Woodbury (``Sigma^-1 = (I - Z K Z') / sigma^2``, ``K = Lambda (Lambda'Z'Z Lambda + I)^-1
Lambda'``), to ``q x q`` and ``n x p`` products:

- ``Phi = (X'Sigma^-1 X)^-1``; ``P_i = -X'Sigma^-1 G_i Sigma^-1 X``;
  ``Q_ij = X'Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X``;
- REML information ``I_ij = tr(Sigma^-1 G_i Sigma^-1 G_j) - 2 tr(Phi Q_ij)
  + tr(Phi P_i Phi P_j)`` and ``W = 2 I^-1`` (covariance of the variance parameters);
- ``Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi``;
- for a contrast matrix ``L`` (q rows) with ``Theta = L'(L Phi L')^-1 L``:
  ``A1 = sum W_ij tr(Theta Phi P_i Phi) tr(Theta Phi P_j Phi)``,
  ``A2 = sum W_ij tr(Theta Phi P_i Phi Theta Phi P_j Phi)`` and Kenward and Roger's (1997)
  moment matching give the scale ``lambda`` and denominator df ``m``.

Memory is ``O(q^2)`` (q random effects) plus ``O(n p)``; it stops where a dense ``q x q``
matrix does.  With a single random-effect term every ``q x q`` matrix is block diagonal and
the same algebra runs level by level (``O(l p^3)``), so it scales to any number of levels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from mixedmodels.core.structures import CovarianceStructure
from mixedmodels.errors import MixedModelsError
from mixedmodels.results.residual_fit import ResidualLmerFit


def _entry_selectors(structure: CovarianceStructure) -> list[np.ndarray]:
    """``dPsi / dpsi_j`` for the linear parametrization ``Psi = sum_j psi_j G_j`` of a
    term's covariance (for an unstructured term, each lower-triangle entry by column)."""
    basis = structure.covariance_basis()
    if basis is None:
        raise MixedModelsError(
            f"Kenward-Roger needs covariances linear in their parameters; a {structure!r} "
            "term is not: use Satterthwaite's df (ddf='satterthwaite')"
        )
    return basis


def _selectors(fit) -> list[sp.csr_matrix]:
    """``E_i`` for each entry (lower triangle, by column) of each term's covariance."""
    out = []
    start = 0
    sizes = [t.block.size for t in fit.design.terms]
    q = sum(sizes)
    for t, size in zip(fit.design.terms, sizes, strict=True):
        for e in _entry_selectors(t.block.structure):
            block = sp.kron(sp.identity(t.n_levels), sp.csr_matrix(e))
            full = sp.block_diag(
                [sp.csr_matrix((start, start)), block, sp.csr_matrix((q - start - size,) * 2)]
            )
            out.append(full.tocsr())
        start += size
    return out


def _assemble(phi, P, Q, traces) -> dict:
    """W and Phi_A from the P_i, Q_ij and trace terms (shared by both routes)."""
    r = len(P)
    info = np.zeros((r, r))
    for i in range(r):
        for j in range(r):
            info[i, j] = (
                traces[i, j] - 2 * np.sum(phi * Q[i][j].T) + np.sum((phi @ P[i]) * (phi @ P[j]).T)
            )
    W = 2 * np.linalg.inv(info)
    U = np.zeros_like(phi)
    for i in range(r):
        for j in range(r):
            U += W[i, j] * (Q[i][j] - P[i] @ phi @ P[j])
    return {"phi": phi, "phi_a": phi + 2 * phi @ U @ phi, "W": W, "P": P}


def _single_term_pieces(fit) -> dict:
    """The same quantities for one random-effect term, where every ``q x q`` matrix is
    block diagonal: per-level ``p x p`` blocks, ``O(l p^3)`` time and ``O(l p^2)`` memory."""
    term = fit.design.terms[0]
    blk = term.block
    codes, z, n_levels, p = blk.codes, blk.z, blk.n_levels, blk.p
    X = fit.X
    n, k = X.shape
    s2 = fit.sigma**2
    lam = fit.problem.lambdas(fit.theta)[0]

    def per_level(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        out = np.zeros((n_levels, left.shape[1], right.shape[1]))
        np.add.at(out, codes, np.einsum("na,nb->nab", left, right))
        return out

    A = per_level(z, z)  # (l, p, p)
    Zx = per_level(z, X)  # (l, p, k)
    C = np.einsum("ab,lbc,cd->lad", lam.T, A, lam) + np.eye(p)
    K = lam @ np.linalg.inv(C) @ lam.T  # (l, p, p)
    KA = K @ A
    AKA = A @ KA
    M = (A - AKA) / s2
    B = (Zx - A @ K @ Zx) / s2  # (l, p, k)
    xsx = (X.T @ X - np.einsum("lak,lab,lbm->km", Zx, K, Zx)) / s2
    phi = np.linalg.inv(xsx)

    def sigma_inv(v: np.ndarray) -> np.ndarray:
        zv = per_level(z, v)  # Z'v per level, (l, p, m)
        return (v - np.einsum("na,nam->nm", z, (K @ zv)[codes])) / s2

    SX = sigma_inv(X)
    S2X = sigma_inv(SX)
    Cz = per_level(z, S2X)  # Z' Sigma^-2 X per level
    N = (A - 2 * AKA + AKA @ KA) / s2**2
    tr_sigma2 = (n - 2 * np.einsum("lii->", KA) + np.einsum("lij,lji->", KA, KA)) / s2**2
    selectors = _entry_selectors(blk.structure)
    r = len(selectors) + 1
    EB = [e @ B for e in selectors]  # (l, p, k)
    EM = [e @ M for e in selectors]  # (l, p, p)
    P = [-np.einsum("lak,lam->km", B, eb) for eb in EB] + [-(SX.T @ SX)]
    Q = [[None] * r for _ in range(r)]
    traces = np.zeros((r, r))
    for i in range(r - 1):
        for j in range(r - 1):
            Q[i][j] = np.einsum("lak,lab,lbm->km", EB[i], M, EB[j])
            traces[i, j] = np.einsum("lab,lba->", EM[i], EM[j])
        Q[i][r - 1] = np.einsum("lak,lam->km", EB[i], Cz)
        Q[r - 1][i] = Q[i][r - 1].T
        traces[i, r - 1] = traces[r - 1, i] = np.einsum("ab,lba->", selectors[i], N)
    Q[r - 1][r - 1] = SX.T @ S2X
    traces[r - 1, r - 1] = tr_sigma2
    return _assemble(phi, P, Q, traces)


def kenward_roger_pieces(fit) -> dict:
    """Phi, Phi_A, W, P_i (for the df formulas) at the fitted parameters (for a fit with
    ``correlation=`` or a variance function, with the structure's parameters among the
    variance parameters: :mod:`mixedmodels.inference.residual_kenward_roger`)."""
    if isinstance(fit, ResidualLmerFit):
        from mixedmodels.inference.residual_kenward_roger import residual_kenward_roger_pieces

        return residual_kenward_roger_pieces(
            fit.residual_problem, fit.optimum_parameters, fit.sigma
        )
    if fit.design.weights is not None:
        raise MixedModelsError("Kenward-Roger is not implemented for weighted models")
    if len(fit.design.terms) == 1:
        return _single_term_pieces(fit)
    return _general_pieces(fit)


def _general_pieces(fit) -> dict:
    """Any random-effect structure, through dense ``q x q`` matrices."""
    X = fit.X
    n, p = X.shape
    Z = fit.Z.tocsr()
    lam = fit.Lambda.toarray()
    s2 = fit.sigma**2
    A = (Z.T @ Z).toarray()
    q = A.shape[0]
    C = lam.T @ A @ lam + np.eye(q)
    K = lam @ np.linalg.solve(C, lam.T)
    Zx = np.asarray(Z.T @ X)
    M = (A - A @ K @ A) / s2  # Z' Sigma^-1 Z
    B = (Zx - A @ K @ Zx) / s2  # Z' Sigma^-1 X
    xsx = (X.T @ X - Zx.T @ K @ Zx) / s2
    phi = np.linalg.inv(xsx)

    def sigma_inv(v: np.ndarray) -> np.ndarray:
        return (v - Z @ (K @ (Z.T @ v))) / s2

    SX = sigma_inv(X)  # Sigma^-1 X, (n, p)
    S2X = sigma_inv(SX)  # Sigma^-2 X
    Cz = np.asarray(Z.T @ S2X)  # Z' Sigma^-2 X
    KA = K @ A
    N = (A - 2 * A @ KA + A @ KA @ KA) / s2**2  # Z' Sigma^-2 Z
    tr_sigma2 = (n - 2 * np.trace(KA) + np.sum(KA * KA.T)) / s2**2
    x_s2_x = SX.T @ SX
    x_s3_x = SX.T @ S2X

    selectors = _selectors(fit)
    r = len(selectors) + 1
    EM = [E @ M for E in selectors]
    EB = [np.asarray(E @ B) for E in selectors]
    P = [-(B.T @ eb) for eb in EB] + [-x_s2_x]
    Q = [[None] * r for _ in range(r)]
    traces = np.zeros((r, r))
    for i in range(r - 1):
        for j in range(r - 1):
            Q[i][j] = EB[i].T @ M @ EB[j]  # B' E_i M E_j B
            traces[i, j] = np.sum(EM[i] * EM[j].T)
        Q[i][r - 1] = EB[i].T @ Cz
        Q[r - 1][i] = Cz.T @ EB[i]
        traces[i, r - 1] = traces[r - 1, i] = float(selectors[i].multiply(N).sum())
    Q[r - 1][r - 1] = x_s3_x
    traces[r - 1, r - 1] = tr_sigma2
    return _assemble(phi, P, Q, traces)


def kr_test(pieces: dict, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, float, float]:
    """Scaled F statistic, numerator df, denominator df and p for ``L beta = 0``."""
    L = np.atleast_2d(L)
    q = L.shape[0]
    phi, phi_a, W, P = pieces["phi"], pieces["phi_a"], pieces["W"], pieces["P"]
    theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
    tpp = [theta @ phi @ Pi @ phi for Pi in P]
    r = len(P)
    a1 = sum(W[i, j] * np.trace(tpp[i]) * np.trace(tpp[j]) for i in range(r) for j in range(r))
    a2 = sum(W[i, j] * np.sum(tpp[i] * tpp[j].T) for i in range(r) for j in range(r))
    b = (a1 + 6 * a2) / (2 * q)
    g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
    denom = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
    e_star = 1 / (1 - a2 / q)
    v_star = (2 / q) * (1 + c1 * b) / ((1 - c2 * b) ** 2 * (1 - c3 * b))
    rho = v_star / (2 * e_star**2)
    m = 4 + (q + 2) / (q * rho - 1)
    lam = m / (e_star * (m - 2))
    est = L @ beta
    f = float(est @ np.linalg.solve(L @ phi_a @ L.T, est)) / q
    f_scaled = lam * f
    return f_scaled, float(q), float(m), float(stats.f.sf(f_scaled, q, m))


def kenward_roger_table(fit) -> pd.DataFrame:
    """Estimates with KR-adjusted standard errors, df, t and p-values."""
    pieces = kenward_roger_pieces(fit)
    beta = fit.fixef.to_numpy()
    se = np.sqrt(np.diagonal(pieces["phi_a"]))
    dfs, pvals = [], []
    for j in range(len(beta)):
        L = np.zeros((1, len(beta)))
        L[0, j] = 1.0
        _, _, m, _ = kr_test(pieces, L, beta)
        dfs.append(m)
        t = beta[j] / se[j]
        pvals.append(2 * stats.t.sf(abs(t), m) if math.isfinite(m) else math.nan)
    return pd.DataFrame(
        {"estimate": beta, "std_error": se, "df": dfs, "t_value": beta / se, "p_value": pvals},
        index=fit.fixef.index,
    )


def linear_combination_df(pieces: dict, ell: np.ndarray) -> float:
    """Kenward-Roger denominator df of one linear combination ``l' beta`` (pbkrtest's
    ``Lb_ddf`` with a one-row L, as emmeans uses it); its variance is ``l' Phi_A l``."""
    ell = np.asarray(ell, dtype=float).reshape(1, -1)
    _, _, m, _ = kr_test(pieces, ell, np.zeros(ell.shape[1]))
    return m
