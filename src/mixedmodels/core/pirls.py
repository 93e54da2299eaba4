"""Penalized iteratively reweighted least squares (PIRLS) and the Laplace approximation for
generalized linear mixed models.

Model: ``eta = offset + X beta + Z Lambda(theta) u``, ``u ~ N(0, I)``, ``y_i | u`` from the
family with mean ``mu_i = g^-1(eta_i)`` and prior weight ``w_i``.  For a given ``theta``
(and ``beta``), PIRLS finds the conditional mode ``u~`` minimizing the penalized deviance
``sum_i d_i(y_i, mu_i) + ||u||^2`` by Fisher scoring with step halving; the Laplace
approximation of the deviance is then

.. math::

    -2 \\log L(\\theta, \\beta) \\approx \\sum_i d_i(y_i, \\tilde\\mu_i) + \\|\\tilde u\\|^2
        + \\log |\\Lambda' Z' W Z \\Lambda + I|

(up to the constant ``-2 sum log p(y_i | y_i)``), with ``W`` the GLM weights
``w_i (d mu / d eta)^2 / V(mu)`` at the mode.  This is lme4's objective for ``nAGQ = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mixedmodels.core.families import Family
from mixedmodels.core.terms import RandomBlock

MAX_ITERATIONS = 60
MAX_HALVINGS = 12
TOLERANCE = 1e-12


class PirlsError(ArithmeticError):
    """PIRLS could not decrease the penalized deviance (the point is unusable)."""


@dataclass(frozen=True)
class ConditionalMode:
    """The result of PIRLS at one parameter value.

    Attributes
    ----------
    beta : ndarray (p,)
    u : ndarray (q,)
        Spherical random effects at the mode.
    eta, mu : ndarray (n,)
        Linear predictor and mean.
    deviance : float
        ``sum_i d_i(y_i, mu_i)``.
    log_det : float
        ``log |Lambda' Z' W Z Lambda + I|``.
    cholesky : ndarray (q, q)
        Lower Cholesky factor ``L`` of that matrix.
    unscaled_fixed_cov : ndarray (p, p)
        ``(R_X' R_X)^-1`` of the weighted system (the conditional covariance of beta).
    """

    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    deviance: float
    log_det: float
    cholesky: np.ndarray
    unscaled_fixed_cov: np.ndarray

    @property
    def laplace(self) -> float:
        """The Laplace deviance ``sum d_i + ||u||^2 + log|L|^2``."""
        return self.deviance + float(self.u @ self.u) + self.log_det


class GlmmProblem:
    """A GLMM's data, and its Laplace deviance as a function of ``theta`` and ``beta``.

    Parameters
    ----------
    blocks : list of RandomBlock
        The random-effect terms (their order is the order of ``theta``).
    X : ndarray (n, p)
    y : ndarray (n,)
        The response (a proportion for the binomial with trials as ``prior_weights``).
    prior_weights : ndarray (n,) or None
    offset : ndarray (n,) or None
    family : Family
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        X: np.ndarray,
        y: np.ndarray,
        prior_weights: np.ndarray | None,
        offset: np.ndarray | None,
        family: Family,
    ):
        self.blocks = blocks
        self.X = np.asarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.n = self.y.shape[0]
        self.prior_weights = (
            np.ones(self.n) if prior_weights is None else np.asarray(prior_weights, float)
        )
        self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, float)
        self.family = family
        self.Z = _sparse_z(blocks, self.n)
        self.Zt = self.Z.T.tocsr()
        self.q = self.Z.shape[1]
        self._theta_sizes = [b.n_theta for b in blocks]
        self._pairs = _row_pairs(self.Z)

    @property
    def n_theta(self) -> int:
        return int(sum(self._theta_sizes))

    @property
    def n_fixed(self) -> int:
        return self.X.shape[1]

    def theta_lower_bounds(self) -> np.ndarray:
        return np.concatenate([b.theta_lower_bounds() for b in self.blocks])

    def theta_start(self) -> np.ndarray:
        return np.concatenate([b.theta_start() for b in self.blocks])

    def relative_factor(self, theta: np.ndarray) -> sp.csr_matrix:
        """``Lambda(theta)``: block diagonal, ``I_l (x) lambda_k`` per term."""
        parts, start = [], 0
        for block, size in zip(self.blocks, self._theta_sizes, strict=True):
            lam = block.lambda_matrix(np.asarray(theta[start : start + size]))
            parts.append(sp.kron(sp.identity(block.n_levels, format="csr"), sp.csr_matrix(lam)))
            start += size
        return sp.block_diag(parts, format="csr")

    # ------------------------------------------------------------------ PIRLS
    def glm_start(self) -> np.ndarray:
        """beta of the GLM without random effects (IRLS from R's ``mustart``)."""
        fam, link = self.family, self.family.link
        mu = fam.start_mu(self.y, self.prior_weights)
        eta = link(mu)
        beta = np.zeros(self.n_fixed)
        last = np.inf
        for _ in range(100):
            d = link.mu_eta(eta)
            w = self.prior_weights * d**2 / fam.variance(mu)
            z = eta - self.offset + (self.y - mu) / d
            sw = np.sqrt(w)
            beta, *_ = np.linalg.lstsq(self.X * sw[:, None], z * sw, rcond=None)
            eta = self.offset + self.X @ beta
            mu = link.inverse(eta)
            dev = float(np.sum(fam.unit_deviance(self.y, mu, self.prior_weights)))
            if abs(last - dev) < 1e-10 * (abs(dev) + 0.1):
                break
            last = dev
        return beta

    def mode(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        u_start: np.ndarray | None = None,
        *,
        update_beta: bool = False,
    ) -> ConditionalMode:
        """PIRLS at ``theta``: the conditional mode of ``u`` given ``beta`` (and, with
        ``update_beta``, ``beta`` jointly: lme4's ``nAGQ = 0`` stage).

        Raises
        ------
        PirlsError
            When no step decreases the penalized deviance from the start.
        """
        fam, link = self.family, self.family.link
        lam = self.relative_factor(theta)
        lam_t = lam.T.tocsr()
        lambdas = self._lambdas(theta)
        p = self.n_fixed
        beta = np.asarray(beta, dtype=float).copy()
        u = np.zeros(self.q) if u_start is None else np.asarray(u_start, dtype=float).copy()

        def state(beta_: np.ndarray, u_: np.ndarray):
            eta_ = self.offset + self.X @ beta_ + self.Z @ (lam @ u_)
            mu_ = link.inverse(eta_)
            dev_ = float(np.sum(fam.unit_deviance(self.y, mu_, self.prior_weights)))
            return eta_, mu_, dev_, dev_ + float(u_ @ u_)

        eta, mu, dev, pdev = state(beta, u)
        if not np.isfinite(pdev):
            raise PirlsError("penalized deviance is not finite at the start")
        for _ in range(MAX_ITERATIONS):
            d = link.mu_eta(eta)
            weights = self.prior_weights * d**2 / fam.variance(mu)
            M = self._penalized_gram(lambdas, weights)
            if update_beta:
                work = eta - self.offset + (self.y - mu) / d
                wz = weights * work
                cross = lam_t @ (self.Zt @ (self.X * weights[:, None]))
                lhs = np.block([[M, cross], [cross.T, self.X.T @ (self.X * weights[:, None])]])
                rhs = np.concatenate([lam_t @ (self.Zt @ wz), self.X.T @ wz])
            else:
                work = eta - self.offset - self.X @ beta + (self.y - mu) / d
                lhs, rhs = M, lam_t @ (self.Zt @ (weights * work))
            solution = _solve_spd(lhs, rhs)
            if solution is None:
                raise PirlsError("the weighted system is not positive definite")
            new_u = solution[: self.q]
            new_beta = solution[self.q :] if update_beta else beta
            step = 1.0
            for _ in range(MAX_HALVINGS):
                try_beta = beta + step * (new_beta - beta)
                try_u = u + step * (new_u - u)
                t_eta, t_mu, t_dev, t_pdev = state(try_beta, try_u)
                if np.isfinite(t_pdev) and t_pdev <= pdev + 1e-12 * abs(pdev):
                    break
                step /= 2
            else:
                break  # no decrease: the current point is the mode to working precision
            change = pdev - t_pdev
            beta, u, eta, mu, dev, pdev = try_beta, try_u, t_eta, t_mu, t_dev, t_pdev
            if change < TOLERANCE * (abs(pdev) + 1.0):
                break
        weights = self._glm_weights(eta, mu)
        M = self._penalized_gram(lambdas, weights)
        chol = _cholesky(M)
        if chol is None:
            raise PirlsError("Lambda' Z' W Z Lambda + I is not positive definite")
        log_det = 2.0 * float(np.sum(np.log(np.diagonal(chol))))
        if p:
            cross = lam_t @ (self.Zt @ (self.X * weights[:, None]))
            solved = sla.solve_triangular(chol, cross, lower=True)
            schur = self.X.T @ (self.X * weights[:, None]) - solved.T @ solved
            unscaled = _spd_inverse(schur)
        else:
            unscaled = np.zeros((0, 0))
        return ConditionalMode(beta, u, eta, mu, dev, log_det, chol, unscaled)

    def laplace_deviance(self, theta: np.ndarray, beta: np.ndarray, u_start=None) -> float:
        """Laplace approximation of ``-2 log L`` (up to a constant) at ``(theta, beta)``."""
        return self.mode(theta, beta, u_start).laplace

    def _glm_weights(self, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        d = self.family.link.mu_eta(eta)
        return self.prior_weights * d**2 / self.family.variance(mu)

    def _penalized_gram(self, lambdas: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
        """``Lambda' Z' W Z Lambda + I`` (dense): ``Z' W Z`` summed from the precomputed
        pairs of nonzeros in each row of ``Z``, then each block pair of terms scaled by
        their ``lambda``s (``Lambda = I (x) lambda`` per term)."""
        rows, flat, values = self._pairs
        gram = np.bincount(flat, weights=weights[rows] * values, minlength=self.q * self.q)
        M = gram.reshape(self.q, self.q)
        starts = np.cumsum([0] + [b.size for b in self.blocks])
        for a, (block_a, lam_a) in enumerate(zip(self.blocks, lambdas, strict=True)):
            for b, (block_b, lam_b) in enumerate(zip(self.blocks, lambdas, strict=True)):
                sa = slice(starts[a], starts[a + 1])
                sb = slice(starts[b], starts[b + 1])
                if block_a.p == 1 and block_b.p == 1:
                    M[sa, sb] *= lam_a[0, 0] * lam_b[0, 0]
                    continue
                part = M[sa, sb].reshape(block_a.n_levels, block_a.p, block_b.n_levels, block_b.p)
                part = np.einsum("ij,xiyk,kl->xjyl", lam_a, part, lam_b, optimize=True)
                M[sa, sb] = part.reshape(block_a.size, block_b.size)
        M[np.diag_indices_from(M)] += 1.0
        return M

    def _lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        out, start = [], 0
        for block, size in zip(self.blocks, self._theta_sizes, strict=True):
            out.append(block.lambda_matrix(np.asarray(theta[start : start + size])))
            start += size
        return out


def _row_pairs(Z: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row of ``Z`` and every pair of its nonzeros ``(a, b)``: the row, the flat
    index ``a q + b`` and the product of the two values (so ``Z'WZ`` is one bincount)."""
    Z = Z.tocsr()
    Z.sort_indices()
    q = Z.shape[1]
    counts = np.diff(Z.indptr)
    per_row = int(counts.max()) if counts.size else 0
    if per_row == 0 or np.any(counts != per_row):
        coo = Z.tocoo()
        rows_out, flat_out, vals_out = [], [], []
        for r in range(Z.shape[0]):
            cols = Z.indices[Z.indptr[r] : Z.indptr[r + 1]]
            vals = Z.data[Z.indptr[r] : Z.indptr[r + 1]]
            a, b = np.meshgrid(np.arange(cols.size), np.arange(cols.size), indexing="ij")
            rows_out.append(np.full(a.size, r))
            flat_out.append(cols[a.ravel()] * q + cols[b.ravel()])
            vals_out.append(vals[a.ravel()] * vals[b.ravel()])
        del coo
        return np.concatenate(rows_out), np.concatenate(flat_out), np.concatenate(vals_out)
    cols = Z.indices.reshape(-1, per_row)
    vals = Z.data.reshape(-1, per_row)
    a, b = np.meshgrid(np.arange(per_row), np.arange(per_row), indexing="ij")
    a, b = a.ravel(), b.ravel()
    rows = np.repeat(np.arange(Z.shape[0]), a.size)
    flat = (cols[:, a] * q + cols[:, b]).ravel()
    values = (vals[:, a] * vals[:, b]).ravel()
    return rows, flat, values


def _sparse_z(blocks: list[RandomBlock], n: int) -> sp.csr_matrix:
    """``Z`` (n x q), terms side by side, each level-major."""
    rows, cols, vals = [], [], []
    start = 0
    idx = np.arange(n)
    for block in blocks:
        for j in range(block.p):
            rows.append(idx)
            cols.append(start + block.codes * block.p + j)
            vals.append(block.z[:, j])
        start += block.size
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, start)
    )


def _cholesky(M: np.ndarray) -> np.ndarray | None:
    try:
        return sla.cholesky(M, lower=True)
    except np.linalg.LinAlgError:
        return None


def _solve_spd(A: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    try:
        return sla.cho_solve(sla.cho_factor(A, lower=True), b)
    except np.linalg.LinAlgError:
        return None


def _spd_inverse(A: np.ndarray) -> np.ndarray:
    try:
        c = sla.cho_factor(A, lower=True)
        return sla.cho_solve(c, np.eye(A.shape[0]))
    except np.linalg.LinAlgError:
        return np.linalg.pinv(A)
