"""The Bayesian view of a linear mixed model: a Gibbs sampler with conditionally conjugate
priors.

Model: ``y = X beta + Z b + e``, ``e ~ N(0, sigma^2 W^-1)``, ``b_k`` (level by level)
``~ N(0, Sigma_k)``.  Priors: ``beta`` flat, ``p(sigma^2) ~ 1/sigma^2``, and for each term
Huang and Wand's (2013) scaled inverse-Wishart with auxiliary variables

.. math::

    \\Sigma_k \\mid a \\sim IW(\\nu + p - 1, 2 \\nu \\operatorname{diag}(1/a)), \\quad
    a_j \\sim IG(1/2, 1/A_j^2),

which gives each standard deviation a half-t(nu, A_j) prior and, with ``nu = 2``, every
correlation a uniform one.  Every full conditional is standard:

* ``(beta, b) | sigma^2, Sigma`` is normal with precision
  ``Q = C'WC / sigma^2 + blockdiag(0, I (x) Sigma_k^-1)`` (``C = [X Z]``) and mean
  ``Q^-1 C'Wy / sigma^2`` (Henderson's mixed-model equations);
* ``sigma^2 | rest ~ IG(n/2, r'Wr/2)``;
* ``Sigma_k | b_k, a ~ IW(nu + p - 1 + l, 2 nu diag(1/a) + sum_i b_i b_i')``;
* ``a_j | Sigma_k ~ IG((nu + p)/2, 1/A_j^2 + nu (Sigma_k^-1)_jj)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy import stats

from mixedmodels.core.terms import RandomBlock


@dataclass(frozen=True)
class GibbsProblem:
    """The data of the sampler: cross products of ``C = [X Z]`` computed once.

    Attributes
    ----------
    blocks : list of RandomBlock
    ctc : ndarray (p + q, p + q)
        ``C'WC``.
    cty : ndarray (p + q,)
        ``C'Wy``.
    yty : float
        ``y'Wy``.
    n, p : int
    """

    blocks: list[RandomBlock]
    ctc: np.ndarray
    cty: np.ndarray
    yty: float
    n: int
    p: int

    @classmethod
    def from_arrays(cls, X, Z, y, weights, blocks) -> GibbsProblem:
        """``Z`` may be sparse; ``weights`` None for ones."""
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
        C = np.hstack([np.asarray(X, dtype=float), Z.toarray() if hasattr(Z, "toarray") else Z])
        Cw = C * w[:, None]
        return cls(list(blocks), C.T @ Cw, Cw.T @ y, float(y @ (w * y)), len(y), X.shape[1])

    def conditional_mean(self, sigma2: float, covariances: list[np.ndarray]) -> np.ndarray:
        """Mean of ``(beta, b) | sigma^2, Sigma`` (the mixed-model equations' solution)."""
        Q = self._precision(sigma2, covariances)
        return sla.cho_solve(sla.cho_factor(Q, lower=True), self.cty / sigma2)

    def _precision(self, sigma2: float, covariances: list[np.ndarray]) -> np.ndarray:
        Q = self.ctc / sigma2
        start = self.p
        for block, cov in zip(self.blocks, covariances, strict=True):
            inv = np.linalg.inv(cov)
            for level in range(block.n_levels):
                s = start + level * block.p
                Q[s : s + block.p, s : s + block.p] += inv
            start += block.size
        return Q


@dataclass(frozen=True)
class GibbsSettings:
    """``nu`` and the half-t scales ``A`` (one array per term) of the covariance prior."""

    nu: float
    scales: list[np.ndarray]


def _inverse_gamma(rng: np.random.Generator, shape: float, rate: np.ndarray | float):
    return rate / rng.gamma(shape, 1.0, size=np.shape(rate))


def draw_coefficients(
    problem: GibbsProblem,
    sigma2: float,
    covariances: list[np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """One draw of ``(beta, b) | sigma^2, Sigma``: ``mean + L^-T z`` with ``Q = L L'``."""
    L = sla.cholesky(problem._precision(sigma2, covariances), lower=True)
    mean = sla.cho_solve((L, True), problem.cty / sigma2)
    noise = rng.standard_normal(problem.ctc.shape[0])
    return mean + sla.solve_triangular(L, noise, lower=True, trans=1)


def run_gibbs(
    problem: GibbsProblem,
    settings: GibbsSettings,
    start_sigma2: float,
    start_covariances: list[np.ndarray],
    n_iterations: int,
    rng: np.random.Generator,
    on_draw: Callable[[np.ndarray, float, list[np.ndarray]], None],
) -> None:
    """Run the sampler, calling ``on_draw(coef, sigma2, covariances)`` after each sweep
    (``coef`` = ``(beta, b)``); a KeyboardInterrupt from it stops the chain cleanly."""
    sigma2 = float(start_sigma2)
    covs = [np.array(c, dtype=float) for c in start_covariances]
    aux = [np.ones(b.p) for b in problem.blocks]
    for _ in range(n_iterations):
        coef = draw_coefficients(problem, sigma2, covs, rng)
        rss = problem.yty - 2 * coef @ problem.cty + coef @ problem.ctc @ coef
        sigma2 = float(_inverse_gamma(rng, problem.n / 2, max(rss, 1e-300) / 2))
        start = problem.p
        for k, block in enumerate(problem.blocks):
            b = coef[start : start + block.size].reshape(block.n_levels, block.p)
            start += block.size
            nu, A = settings.nu, settings.scales[k]
            scale = 2 * nu * np.diag(1 / aux[k]) + b.T @ b
            df = nu + block.p - 1 + block.n_levels
            if block.p == 1:
                covs[k] = np.array([[float(_inverse_gamma(rng, df / 2, scale[0, 0] / 2))]])
            else:
                covs[k] = np.atleast_2d(stats.invwishart(df, scale).rvs(random_state=rng))
            inv_diag = np.diagonal(np.linalg.inv(covs[k]))
            aux[k] = _inverse_gamma(rng, (nu + block.p) / 2, 1 / A**2 + nu * inv_diag)
        on_draw(coef, sigma2, covs)
