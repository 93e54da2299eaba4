"""The covariance matrix of a vector random-effect term given its effects: slice sampling.

With ``l`` levels of effects ``b_i ~ N(0, Sigma)`` and ``S = sum_i b_i b_i'``, the full
conditional of ``Sigma = D R D`` (``D`` the standard deviations, ``R = L_R L_R'`` the
correlations) is

.. math::

    p(\\Sigma \\mid b) \\propto |\\Sigma|^{-l/2}
        \\exp(-\\operatorname{tr}(\\Sigma^{-1} S) / 2) \\prod_j p(d_j) \\; p_{LKJ}(R),

not a standard distribution for half-t/half-normal standard deviations and an LKJ prior.
Each sweep updates the unconstrained coordinates (``log d_j`` and ``atanh`` of the
canonical partial correlations, whose LKJ prior is a product of symmetric betas) one at a
time by Neal's (2003) slice sampler with stepping out and shrinkage, which leaves the
conditional exactly invariant.  Only the ``p x p`` matrix ``S`` enters, so the cost does not
grow with the number of levels.
"""

from __future__ import annotations

import math

import numpy as np

from mixedmodels.core.priors import LKJ, ScalePrior, cholesky_from_cpc, cpc_from_cholesky
from mixedmodels.core.slice import slice_step


class CovarianceState:
    """Standard deviations and partial correlations of one vector term.

    Parameters
    ----------
    sd_priors : list of ScalePrior
        One per coefficient of the term.
    cor_prior : LKJ
    n_levels : int
    sd, cpc : start values (``cpc`` strict lower triangle)
    """

    def __init__(
        self,
        sd_priors: list[ScalePrior],
        cor_prior: LKJ,
        n_levels: int,
        sd: np.ndarray,
        cpc: np.ndarray,
    ):
        self.p = len(sd_priors)
        self.sd_priors = sd_priors
        self.cor_prior = cor_prior
        self.n_levels = n_levels
        self.sd = np.array(sd, dtype=float)
        self.cpc = np.array(cpc, dtype=float)
        self.pairs = [(i, j) for j in range(self.p) for i in range(j + 1, self.p)]
        # LKJ density of the one partial correlation of a 2 x 2 term, with the Jacobian
        # of tanh: (1 - z^2)^(b - 1) (1 - z^2)
        self._cpc_exponent = cor_prior.cpc_shape(self.p, 0) if self.p == 2 else 0.0
        # slice widths: about 2.5 posterior sds of each coordinate when the data dominate
        self.width_sd = 2.5 / math.sqrt(2 * max(n_levels, 1)) + 0.1
        self.width_cpc = 2.5 / math.sqrt(max(n_levels, 1)) + 0.1

    @classmethod
    def from_covariance(cls, sd_priors, cor_prior, n_levels, cov: np.ndarray):
        sd = np.sqrt(np.diagonal(cov))
        corr = cov / np.outer(sd, sd)
        low = np.linalg.cholesky(corr)
        return cls(sd_priors, cor_prior, n_levels, sd, cpc_from_cholesky(low))

    def factor(self) -> np.ndarray:
        """``T`` with ``T T' = Sigma`` (lower triangular)."""
        return self.sd[:, None] * cholesky_from_cpc(self.cpc)

    def correlation(self) -> np.ndarray:
        low = cholesky_from_cpc(self.cpc)
        return low @ low.T

    # ------------------------------------------------------------------ target
    def _log_target(self, sd: np.ndarray, cpc: np.ndarray, scatter: np.ndarray) -> float:
        """Log conditional density in the unconstrained coordinates (with Jacobians)."""
        p = self.p
        if p == 2:
            return self._log_target_2(float(sd[0]), float(sd[1]), float(cpc[1, 0]), scatter)
        low = _cholesky_rows(sd, cpc, p)
        log_det = 0.0
        for i in range(p):
            if not low[i][i] > 0:
                return -math.inf
            log_det += math.log(low[i][i])
        inv = _invert_lower(low, p)
        quad = 0.0  # tr(Sigma^-1 S) = sum_k (row k of L^-1) S (row k of L^-1)'
        for k in range(p):
            row = inv[k]
            for i in range(k + 1):
                ri = row[i]
                if ri == 0.0:
                    continue
                acc = 0.0
                for j in range(k + 1):
                    acc += scatter[i][j] * row[j]
                quad += ri * acc
        out = -self.n_levels * log_det - 0.5 * quad
        for j in range(self.p):
            out += self.sd_priors[j].log_density_sd(sd[j]) + math.log(sd[j])
        for i, j in self.pairs:
            z = cpc[i, j]
            out += self.cor_prior.log_density_cpc(z, self.p, j) + math.log1p(-z * z)
        return out

    def _log_target_2(self, s1: float, s2: float, z: float, scatter) -> float:
        """The 2 x 2 case in closed form: ``|Sigma| = s1^2 s2^2 (1 - z^2)`` and
        ``tr(Sigma^-1 S) = (S11/s1^2 - 2 z S12/(s1 s2) + S22/s2^2) / (1 - z^2)``."""
        one_minus = 1.0 - z * z
        if not (s1 > 0 and s2 > 0 and one_minus > 0):
            return -math.inf
        quad = (
            scatter[0][0] / (s1 * s1)
            - 2 * z * scatter[0][1] / (s1 * s2)
            + scatter[1][1] / (s2 * s2)
        ) / one_minus
        log_s1, log_s2, log_w2 = math.log(s1), math.log(s2), math.log(one_minus)
        out = -self.n_levels * (log_s1 + log_s2 + 0.5 * log_w2) - 0.5 * quad
        out += self.sd_priors[0].log_density_sd(s1) + log_s1
        out += self.sd_priors[1].log_density_sd(s2) + log_s2
        return out + self._cpc_exponent * log_w2

    def update(self, rng: np.random.Generator, scatter: np.ndarray) -> None:
        """One slice-sampling pass over every coordinate, given ``S = sum b_i b_i'``."""
        scatter = scatter.tolist()
        sd, cpc = self.sd.copy(), self.cpc.copy()
        current = self._log_target(sd, cpc, scatter)
        for j in range(self.p):

            def f(x, j=j):
                sd[j] = math.exp(x)
                return self._log_target(sd, cpc, scatter)

            x, current = slice_step(rng, f, math.log(sd[j]), current, self.width_sd)
            sd[j] = math.exp(x)
        for i, j in self.pairs:

            def g(x, i=i, j=j):
                cpc[i, j] = math.tanh(x)
                return self._log_target(sd, cpc, scatter)

            x, current = slice_step(rng, g, math.atanh(cpc[i, j]), current, self.width_cpc)
            cpc[i, j] = math.tanh(x)
        self.sd, self.cpc = sd, cpc


def _cholesky_rows(sd: np.ndarray, cpc: np.ndarray, p: int) -> list[list[float]]:
    """``diag(sd) L_R`` as nested lists (scalar arithmetic: p is small)."""
    low = [[0.0] * p for _ in range(p)]
    for i in range(p):
        rest = 1.0
        s = float(sd[i])
        for j in range(i):
            v = float(cpc[i, j]) * math.sqrt(rest)
            low[i][j] = s * v
            rest -= v * v
        low[i][i] = s * math.sqrt(rest) if rest > 0 else 0.0
    return low


def _invert_lower(low: list[list[float]], p: int) -> list[list[float]]:
    inv = [[0.0] * p for _ in range(p)]
    for j in range(p):
        inv[j][j] = 1.0 / low[j][j]
        for i in range(j + 1, p):
            acc = 0.0
            for k in range(j, i):
                acc -= low[i][k] * inv[k][j]
            inv[i][j] = acc / low[i][i]
    return inv
