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
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.blocks import NotPositiveDefiniteError

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
    weighted_problem : LmmProblem
        The penalized weighted least-squares problem at the mode's GLM weights (its
        factorization gives ``L``; its conditional covariances with ``sigma = 1`` are
        ``Var(b | y)``).
    unscaled_fixed_cov : ndarray (p, p)
        ``(R_X' R_X)^-1`` of the weighted system (the conditional covariance of beta).
    """

    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    deviance: float
    log_det: float
    weighted_problem: LmmProblem
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
        theta = np.asarray(theta, dtype=float)
        lam = self.relative_factor(theta)
        beta = np.asarray(beta, dtype=float).copy()
        u = np.zeros(self.q) if u_start is None else np.asarray(u_start, dtype=float).copy()
        no_fixed = np.zeros((self.n, 0))

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
            # one scoring step = penalized weighted least squares on the working response,
            # solved by the LMM engine's blocked Cholesky
            if update_beta:
                work = eta - self.offset + (self.y - mu) / d
                pwls = LmmProblem(self.blocks, self.X, work, weights, reml=False)
            else:
                work = eta - self.offset - self.X @ beta + (self.y - mu) / d
                pwls = LmmProblem(self.blocks, no_fixed, work, weights, reml=False)
            try:
                solution = pwls.solve(theta)
            except NotPositiveDefiniteError as exc:
                raise PirlsError("the weighted system is not positive definite") from exc
            new_u = np.concatenate([part.ravel() for part in solution.u])
            new_beta = solution.beta if update_beta else beta
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
        at_mode = LmmProblem(self.blocks, self.X, self.y, weights, reml=False)
        try:
            factor = at_mode.factorize(theta)
        except NotPositiveDefiniteError as exc:
            raise PirlsError("Lambda' Z' W Z Lambda + I is not positive definite") from exc
        p = self.n_fixed
        if p:
            lxx = factor.xy_xy[:p, :p]
            rinv = sla.solve_triangular(lxx, np.eye(p), lower=True)
            unscaled = rinv.T @ rinv
        else:
            unscaled = np.zeros((0, 0))
        return ConditionalMode(beta, u, eta, mu, dev, factor.log_det_random(), at_mode, unscaled)

    def laplace_deviance(self, theta: np.ndarray, beta: np.ndarray, u_start=None) -> float:
        """Laplace approximation of ``-2 log L`` (up to a constant) at ``(theta, beta)``."""
        return self.mode(theta, beta, u_start).laplace

    def _glm_weights(self, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        d = self.family.link.mu_eta(eta)
        return self.prior_weights * d**2 / self.family.variance(mu)


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
