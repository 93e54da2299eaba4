"""The default start of a linear mixed model fitted from chunks, from its cross products.

:func:`mixedmodels.optim.start.moment_start` computes moment estimates from the rows: OLS
residuals ``r``, group means of ``r`` fitted by backfitting, per-level regressions.  Every
quantity it reads is a sum over rows, so the same estimates follow from the Gram of
``[Z X y]`` and a few sums made in the same passes (:class:`StartSums`): ``Z_k' r`` is
``[X y]' Z_k`` applied to ``(-beta, 1)``, a backfitting sweep subtracts ``Z_k' Z_m c_m``
instead of ``Z_m c_m`` from row residuals, and ``e' e`` is the quadratic form of the
fitted effects.  A fit from chunks then starts where the in-memory fit starts (to
rounding) and follows the same path of the optimizer.

The branches, their order and their fallbacks are those of :func:`moment_start`; each
function below names the function it mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mixedmodels.core.gram import Gram
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.optim.start import (
    DEFAULT_STEP,
    full_rank_level_inverses,
    level_regression_lambda,
    scalar_terms_start,
    single_vector_start,
    vector_terms_start,
)


@dataclass
class StartSums:
    """What the moment start needs beyond the problem's Gram (terms in public order).

    Attributes
    ----------
    counts : list of ndarray
        Rows per level of each term (unweighted).
    intercept : list of bool
        The term is a random intercept: one column, 1 on every row.
    same_factor : ndarray (K, K) of bool
        Terms ``i`` and ``j`` have identical level codes on every row.
    nested : ndarray (K, K) of bool
        Every level of term ``i`` occurs with a single level of term ``j``.
    weighted : Gram
        The Gram of ``[Z R y]`` in engine order with the fit's weights, where ``R`` is
        ``X`` (a column of ones when the model has no fixed effects: then ``r`` is ``y``
        minus its mean) and ``y`` the shifted response.
    unweighted : Gram
        The same without weights (the same object for an unweighted fit): backfitted
        group means and ``r' r`` are unweighted in :func:`moment_start`.
    """

    counts: list[np.ndarray]
    intercept: list[bool]
    same_factor: np.ndarray
    nested: np.ndarray
    weighted: Gram
    unweighted: Gram


class _Cross:
    """Cross products of one Gram addressed by public term indices."""

    def __init__(self, problem: LmmProblem, gram: Gram, c: np.ndarray):
        self.engine = {pub: e for e, pub in enumerate(problem.order)}
        self.gram = gram
        self.c = c  # r = [R y] c

    def zr(self, k: int) -> np.ndarray:
        """``Z_k' W r``, level-major (l * p,)."""
        return self.c @ self.gram.xy_random[self.engine[k]]

    def rr(self) -> float:
        """``r' W r``."""
        return float(self.c @ self.gram.xy_xy @ self.c)

    def zz(self, j: int, k: int) -> sp.csr_matrix:
        """``Z_j' W Z_k`` for two different terms."""
        ej, ek = self.engine[j], self.engine[k]
        if ej > ek:
            return self.gram.off_diagonal[ej, ek]
        return self.gram.off_diagonal[ek, ej].T.tocsr()

    def diagonal(self, k: int) -> np.ndarray:
        """``Z_k' W Z_k`` per level, (p, p, l)."""
        return self.gram.diagonal[self.engine[k]]

    def quadratic(self, coefs: dict[int, np.ndarray]) -> float:
        """``e' W e`` for ``e = r - sum_k Z_k c_k`` (``c_k`` level-major vectors)."""
        total = self.rr()
        for k, ck in coefs.items():
            total -= 2.0 * float(ck @ self.zr(k))
            d = self.diagonal(k)
            per = ck.reshape(d.shape[2], d.shape[0])
            total += float(np.einsum("la,abl,lb->", per, d, per))
            for m, cm in coefs.items():
                if m != k:
                    total += float(ck @ (self.zz(k, m) @ cm))
        return total


def _residual_coefficients(problem: LmmProblem, sums: StartSums) -> tuple[np.ndarray, np.ndarray]:
    """``beta`` and ``c`` with ``r = [R y] c`` (moment_start's OLS residuals)."""
    p = problem.n_fixed
    if p:
        beta = np.linalg.solve(problem.gram.xy_xy[:p, :p], problem.gram.xy_xy[:p, -1])
        return beta, np.append(-beta, 1.0)
    ones = sums.unweighted.xy_xy
    return np.zeros(0), np.array([-ones[0, 1] / ones[0, 0], 1.0])  # y - mean(y)


def _factor_groups(sums: StartSums) -> list[list[int]]:
    """crossed.factor_groups from the pass's comparisons of level codes."""
    groups: list[list[int]] = []
    for k in range(len(sums.counts)):
        for g in groups:
            if sums.same_factor[g[0], k]:
                g.append(k)
                break
        else:
            groups.append([k])
    return groups


def _crossed_with_slopes(problem: LmmProblem, sums: StartSums) -> bool:
    """start._crossed_with_slopes."""
    if all(sums.intercept):
        return False
    factors = _factor_groups(sums)
    if len(factors) < 2:
        return False
    for i, fi in enumerate(factors):
        for fj in factors[:i]:
            a, b = fi[0], fj[0]
            if sums.nested[a, b] or sums.nested[b, a]:
                return False
    return True


def _backfit_regressions(problem: LmmProblem, cross: _Cross, sweeps: int = 3):
    """start._backfit_regressions: sweeps on ``Z_k' W e``, ``e' W e`` as a quadratic form."""
    blocks = problem.blocks
    coefs, inverses, masks = [], [], []
    for k, b in enumerate(blocks):
        level_inverses = full_rank_level_inverses(cross.diagonal(k))
        if level_inverses is None:
            return None
        inverses.append(level_inverses[0])
        coefs.append(np.zeros((b.n_levels, b.p)))
        masks.append(level_inverses[1])
    zr0 = [cross.zr(k) for k in range(len(blocks))]
    for _ in range(sweeps):
        for k, (b, coef, zz_inv, ok) in enumerate(zip(blocks, coefs, inverses, masks, strict=True)):
            zr = zr0[k].copy()
            for m in range(len(blocks)):
                if m != k:
                    zr -= cross.zz(k, m) @ coefs[m].ravel()
            zr = zr.reshape(b.n_levels, b.p).T
            coef[:] = np.einsum("ijl,jl->li", zz_inv, zr)
            coef[~ok] = 0.0
    dof = problem.n - sum(int(ok.sum()) * b.p for b, ok in zip(blocks, masks, strict=True))
    if dof <= 0:
        return None
    sigma2 = cross.quadratic({k: c.ravel() for k, c in enumerate(coefs)}) / dof
    return coefs, inverses, masks, sigma2


def _backfit_effects(
    scalar: list[int], sums: StartSums, cross: _Cross, sweeps: int = 3
) -> tuple[list[np.ndarray], float]:
    """start._backfit_effects (unweighted group means of the residuals)."""
    effects = {k: np.zeros(sums.counts[k].size) for k in scalar}
    zr = {k: cross.zr(k) for k in scalar}
    for _ in range(sweeps):
        for k in scalar:
            total = zr[k].copy()
            for m in scalar:
                if m != k:
                    total -= cross.zz(k, m) @ effects[m]
            effects[k] = total / np.maximum(sums.counts[k], 1)
    n = int(sums.counts[scalar[0]].sum())
    dof = max(n - sum(sums.counts[k].size for k in scalar), 1)
    return [effects[k] for k in scalar], cross.quadratic(effects) / dof


def reduced_moment_start(problem: LmmProblem, sums: StartSums) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mixedmodels.optim.start.moment_start` of the problem whose rows gave
    ``problem.gram`` and ``sums``, computed from them.

    Returns
    -------
    theta0, step : ndarray
    """
    theta = problem.theta_start()
    step = np.full(theta.size, DEFAULT_STEP)
    beta, c = _residual_coefficients(problem, sums)
    weighted = _Cross(problem, sums.weighted, c)
    unweighted = _Cross(problem, sums.unweighted, c)
    blocks = problem.blocks
    if len(blocks) == 1 and blocks[0].p > 1:
        found = level_regression_lambda(problem, beta, weighted.rr(), sums.counts[0])
        return single_vector_start(problem, found)
    if _crossed_with_slopes(problem, sums):
        found = vector_terms_start(problem, _backfit_regressions(problem, weighted))
        if found is not None:
            return found
    scalar = [i for i, b in enumerate(blocks) if b.p == 1 and sums.intercept[i]]
    if not scalar:
        return theta, step
    effects, sigma2 = _backfit_effects(scalar, sums, unweighted)
    return scalar_terms_start(problem, scalar, effects, [sums.counts[i] for i in scalar], sigma2)
