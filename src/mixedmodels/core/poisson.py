"""Exact updates of the coefficients of a Poisson (log link) mixed model given the
variances, for the Gibbs sweep of :mod:`mixedmodels.core.gibbs`.

With ``eta = offset + X beta + sum_k Z_k b_k`` and ``b_kl = T_k u_kl``, ``u_kl ~ N(0, I)``:

1. ``beta | b``: an independence Metropolis-Hastings step whose proposal is a Student-t
   (4 df) with the Laplace approximation's centre and scale, ``beta*`` and ``H^-1`` at the
   conditional mode (Newton from a fixed point, so the proposal depends only on what is
   conditioned on);
2. for each term, every level's ``u_kl | beta, other terms`` at once: the levels are
   conditionally independent, so each gets its own Student-t Laplace proposal
   (``p_k``-dimensional, vectorized Newton from 0) and its own accept/reject;
3. for each term with an intercept column: the fixed effects whose columns are constant
   within its levels (the intercept and level-level covariates, e.g. a year for broods
   nested in years) given the centred effects ``c_l = b_l + e_1 x_l' beta_W`` (a normal
   draw, as a regression of ``c`` on ``x_l``; the likelihood does not change), which moves
   those coefficients and all the level effects together (hierarchical centring);
4. (in the Gibbs sweep) the variances as in the Gaussian model, then each term's standard
   deviations given the standardized effects by slice sampling of the exact Poisson
   likelihood (interweaving).

Every step leaves the posterior exactly invariant; acceptance rates are kept.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.terms import RandomBlock

NEWTON_STEPS = 30
#: degrees of freedom of the Student-t proposals: their polynomial tails dominate the
#: posterior's (at most exponential) ones, so an independence proposal cannot get stuck
PROPOSAL_DF = 4.0


def _log_lik(counts: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Per-observation ``y eta - exp(eta)`` (``-inf`` past ``eta = 700``)."""
    with np.errstate(over="ignore"):
        return counts * eta - np.exp(eta)


class PoissonCoefficients:
    """The coefficient updates (steps 1-3 above) of one model."""

    def __init__(self, blocks: list[RandomBlock], X: np.ndarray, counts, offset):
        self.blocks = blocks
        self.X = X
        self.counts = np.asarray(counts, dtype=float)
        self.offset = offset
        self.n, self.p = X.shape
        self.centring = {}  # term -> (columns of X constant within its levels, their values)
        for k, blk in enumerate(blocks):
            if not np.all(blk.z[:, 0] == 1.0):
                continue
            first = np.full(blk.n_levels, -1)
            first[blk.codes[::-1]] = np.arange(self.n)[::-1]  # a row of each level
            level_x = X[first]
            constant = [j for j in range(self.p) if np.all(X[:, j] == level_x[blk.codes, j])]
            if constant and np.all(first >= 0):
                self.centring[k] = (constant, level_x[:, constant])
        self.tries = np.zeros(len(blocks) + 1)
        self.accepts = np.zeros(len(blocks) + 1)

    # ------------------------------------------------------------------ beta
    def _update_beta(self, beta, eta_rest, precision, mean, reference, rng) -> np.ndarray:
        X, y = self.X, self.counts

        def gradient_hessian(bt):
            mu = np.exp(np.minimum(eta_rest + X @ bt, 700.0))
            g = X.T @ (y - mu) - precision * (bt - mean)
            h = X.T @ (X * mu[:, None]) + np.diag(precision)
            return g, h

        mode = reference.copy()
        try:
            for _ in range(NEWTON_STEPS):
                g, h = gradient_hessian(mode)
                step = sla.solve(h, g, assume_a="pos")
                big = float(np.abs(step).max())
                mode = mode + (step * (5 / big) if big > 5 else step)  # damped
                if big < 1e-10:
                    break
            _, h = gradient_hessian(mode)
            low = np.linalg.cholesky(h)
        except (np.linalg.LinAlgError, ValueError):
            return beta  # no proposal here: the identity, a valid (lazy) step
        if not np.all(np.isfinite(low)):
            return beta
        z = rng.standard_normal(self.p) / math.sqrt(rng.chisquare(PROPOSAL_DF) / PROPOSAL_DF)
        proposal = mode + sla.solve_triangular(low, z, lower=True, trans=1)

        def log_target(bt):
            d = bt - mean
            return float(_log_lik(y, eta_rest + X @ bt).sum() - 0.5 * (precision * d) @ d)

        def log_q(bt):  # multivariate t, up to a constant
            v = low.T @ (bt - mode)
            return -0.5 * (PROPOSAL_DF + self.p) * math.log1p(float(v @ v) / PROPOSAL_DF)

        log_ratio = log_target(proposal) - log_target(beta) + log_q(beta) - log_q(proposal)
        self.tries[-1] += 1
        if math.log(rng.uniform()) < log_ratio:
            self.accepts[-1] += 1
            return proposal
        return beta

    # ------------------------------------------------------------------ one term
    def _update_term(self, k: int, u: np.ndarray, factor: np.ndarray, eta_rest, rng):
        """All levels of term ``k`` (u-scale, (l, p)) given ``eta_rest`` (the rest of eta)."""
        blk = self.blocks[k]
        n_levels, p = blk.n_levels, blk.p
        zt = blk.z @ factor  # rows z_i' T: eta_i = eta_rest_i + zt_i . u_l
        codes, y = blk.codes, self.counts

        def level_sums(values: np.ndarray) -> np.ndarray:
            return np.bincount(codes, weights=values, minlength=n_levels)

        def log_target(uu):
            eta = eta_rest + np.einsum("np,np->n", zt, uu[codes])
            return level_sums(_log_lik(y, eta)) - 0.5 * np.einsum("lp,lp->l", uu, uu)

        def gradient_hessian(uu):
            mu = np.exp(np.minimum(eta_rest + np.einsum("np,np->n", zt, uu[codes]), 700.0))
            resid = y - mu
            g = np.stack([level_sums(resid * zt[:, a]) for a in range(p)], axis=1) - uu
            h = np.empty((n_levels, p, p))
            for a in range(p):
                for c in range(a, p):
                    h[:, a, c] = h[:, c, a] = level_sums(mu * zt[:, a] * zt[:, c])
            h += np.eye(p)
            return g, h

        mode = np.zeros((n_levels, p))
        for _ in range(NEWTON_STEPS):
            if p == 1:  # scalar Newton, level by level at once
                z1 = zt[:, 0]
                mu = np.exp(np.minimum(eta_rest + z1 * mode[codes, 0], 700.0))
                g1 = level_sums((y - mu) * z1) - mode[:, 0]
                step = (g1 / (level_sums(mu * z1 * z1) + 1.0))[:, None]
            else:
                g, h = gradient_hessian(mode)
                step = np.linalg.solve(h, g[..., None])[..., 0]
            big = np.abs(step).max(axis=1, keepdims=True)
            step = np.where(big > 5, step * (5 / np.maximum(big, 1e-300)), step)  # damped
            mode = mode + step
            if float(np.abs(step).max()) < 1e-10:
                break
        _, h = gradient_hessian(mode)
        try:
            low = np.linalg.cholesky(h)  # (l, p, p)
        except np.linalg.LinAlgError:
            return u
        z = rng.standard_normal((n_levels, p))
        z /= np.sqrt(rng.chisquare(PROPOSAL_DF, size=n_levels) / PROPOSAL_DF)[:, None]
        # u' = mode + L^-T z, level by level (multivariate t)
        offset = np.linalg.solve(np.swapaxes(low, 1, 2), z[..., None])[..., 0]
        proposal = mode + offset

        def log_q(uu):  # multivariate t, up to a constant
            v = np.einsum("lba,lb->la", low, uu - mode)  # L' (u - mode)
            return -0.5 * (PROPOSAL_DF + p) * np.log1p(np.einsum("la,la->l", v, v) / PROPOSAL_DF)

        log_ratio = log_target(proposal) - log_target(u) + log_q(u) - log_q(proposal)
        accept = np.log(rng.uniform(size=n_levels)) < log_ratio
        self.tries[k] += n_levels
        self.accepts[k] += int(accept.sum())
        return np.where(accept[:, None], proposal, u)

    # ------------------------------------------------------------------ sweep part
    def update(self, beta, b, factors, precision, mean, reference, rng):
        """Steps 1-3; returns new ``(beta, b)``."""
        b = [bk.copy() for bk in b]
        contributions = [
            np.einsum("np,np->n", blk.z, bk[blk.codes])
            for blk, bk in zip(self.blocks, b, strict=True)
        ]
        random_part = np.sum(contributions, axis=0)
        beta = self._update_beta(beta, self.offset + random_part, precision, mean, reference, rng)
        fixed = self.offset + self.X @ beta
        for k, blk in enumerate(self.blocks):
            factor = factors[k]
            eta_rest = fixed + random_part - contributions[k]
            u = sla.solve_triangular(factor, b[k].T, lower=True).T
            u = self._update_term(k, u, factor, eta_rest, rng)
            b[k] = u @ factor.T
            new = np.einsum("np,np->n", blk.z, b[k][blk.codes])
            random_part += new - contributions[k]
            contributions[k] = new
        for k, (columns, level_x) in self.centring.items():
            beta, b[k] = self._centre(
                beta, b[k], factors[k], columns, level_x, precision, mean, rng
            )
        return beta, b

    def _centre(self, beta, bk, factor, columns, level_x, precision, mean, rng):
        """``beta_W`` given ``c_l = b_l + e_1 x_l' beta_W`` (step 3): with
        ``b_l ~ N(0, Sigma)`` and ``s = (Sigma^-1)_11``, a normal with precision
        ``s X_W'X_W + P_W`` and mean from ``X_W' (C Sigma^-1 e_1) + P_W m_W``."""
        c = bk.copy()
        c[:, 0] += level_x @ beta[columns]
        inv = sla.solve_triangular(factor, np.eye(len(factor)), lower=True)
        sigma_inv = inv.T @ inv
        prec_w = np.diag(precision[columns])
        a = sigma_inv[0, 0] * level_x.T @ level_x + prec_w
        rhs = level_x.T @ (c @ sigma_inv[:, 0]) + prec_w @ mean[columns]
        low = np.linalg.cholesky(a)
        centre = sla.cho_solve((low, True), rhs)
        new = centre + sla.solve_triangular(
            low, rng.standard_normal(len(columns)), lower=True, trans=1
        )
        beta = beta.copy()
        beta[columns] = new
        c[:, 0] -= level_x @ new
        return beta, c
