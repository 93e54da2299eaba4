"""Nakagawa's variance decomposition of a GLMM (what ``icc`` and ``r2_nakagawa`` divide).

Nakagawa, Johnson & Schielzeth (2017, J. R. Soc. Interface 14: 20170213) put a GLMM on the
latent (link) scale: ``v_f = var(X beta)``, ``v_r`` the random effects' variance averaged
over the rows, and an observation-level variance ``v_e = v_dist + v_disp``: the family's
distribution-specific variance on the link scale plus any observation-level random effects
(a term with one level per row).  The distribution-specific variance is the family's, as the
R package performance 0.10.2 (insight 0.19.0's ``get_variance``) defines it:

================================  ============================================
binomial                          logit ``pi^2 / 3``, probit ``1``, cloglog ``pi^2 / 6``
poisson                           log ``log(1 + 1/mu)``, sqrt ``1/4``
negative binomial (lme4, NB2)     log ``log(1 + V(mu)/mu^2) = log(1 + 1/mu + 1/k)``
nbinom1                           log ``log(1 + (1 + phi)/mu)``
beta (glmmTMB)                    logit ``log(1 + V(mu)/mu^2)``, ``V = mu(1-mu)/(1+phi)``
Gamma                             inverse, identity, log ``sigma^2`` (lme4's ``sigma``)
================================  ============================================

where ``mu = exp(b_0)`` with ``b_0`` the intercept of the null model: the same random terms,
offset, weights and family with an intercept as the only fixed effect (insight's
``null_model``; lme4's negative binomial keeps its size ``k`` there, glmmTMB's families
re-estimate their own parameters).  Other families and links have no definition there and
are an :class:`ArgumentError` here (performance returns NA with a warning).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import singledispatch

import numpy as np

from mixedmodels.core.families import (
    Beta,
    Binomial,
    Family,
    Gamma,
    LogLink,
    NBinom1,
    NBinom2,
    NegativeBinomial,
    Poisson,
    PoissonLikelihood,
    SqrtLink,
)
from mixedmodels.core.pirls import GlmmProblem
from mixedmodels.errors import ArgumentError

#: binomial's latent-scale variance per link (the standard logistic, normal, Gumbel)
BINOMIAL_LINK_VARIANCE = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}

NullMean = Callable[[], float]


def _undefined(family: Family) -> ArgumentError:
    return ArgumentError(
        f"the distribution-specific variance of icc() and r2_nakagawa() is not defined for "
        f"the {family.name} family with the {family.link.name} link (performance's "
        "definitions cover binomial logit/probit/cloglog, poisson log/sqrt, negative "
        "binomial and nbinom1 log, beta logit and Gamma inverse/identity/log)"
    )


@singledispatch
def distribution_variance(family: Family, sigma: float, null_mean: NullMean) -> float:
    """The family's distribution-specific variance on the link scale.

    Parameters
    ----------
    family : Family
        The fitted family (carrying its estimated parameters: ``k``, ``phi``).
    sigma : float
        The fit's ``sigma`` (lme4's for Gamma).
    null_mean : callable
        ``() -> mu``, ``exp`` of the null model's intercept; called only by the families
        whose variance depends on the mean.

    Raises
    ------
    ArgumentError
        For a family or link without a definition.
    """
    raise _undefined(family)


@distribution_variance.register
def _binomial(family: Binomial, sigma: float, null_mean: NullMean) -> float:
    value = BINOMIAL_LINK_VARIANCE.get(family.link.name)
    if value is None:
        raise _undefined(family)
    return value


def _lognormal(family: Family, null_mean: NullMean) -> float:
    """``log(1 + V(mu) / mu^2)`` at the null model's ``mu`` (the log-normal
    approximation of Nakagawa et al.'s eq. 5.8 with the family's variance function)."""
    mu = null_mean()
    return float(np.log1p(family.variance(np.array([mu]))[0] / mu**2))


@distribution_variance.register(Poisson)
@distribution_variance.register(PoissonLikelihood)
def _poisson(family: Family, sigma: float, null_mean: NullMean) -> float:
    if isinstance(family.link, SqrtLink):
        return 0.25
    if not isinstance(family.link, LogLink):
        raise _undefined(family)
    return _lognormal(family, null_mean)


@distribution_variance.register(NegativeBinomial)
@distribution_variance.register(NBinom2)
@distribution_variance.register(NBinom1)
def _negative_binomial(family: Family, sigma: float, null_mean: NullMean) -> float:
    if not isinstance(family.link, LogLink):
        raise _undefined(family)
    return _lognormal(family, null_mean)


@distribution_variance.register
def _beta(family: Beta, sigma: float, null_mean: NullMean) -> float:
    # performance 0.10.2 takes mu = exp(b_0) here as for the log-link families
    return _lognormal(family, null_mean)


@distribution_variance.register
def _gamma(family: Gamma, sigma: float, null_mean: NullMean) -> float:
    return sigma**2


class _HeldSizeNegativeBinomial(NegativeBinomial):
    """lme4's negative binomial with its size ``k`` held (MASS's ``negative.binomial(theta =
    k)`` as a plain glmer family): what insight's null model of a glmer.nb fit refits."""

    extra_names = ()

    @property
    def extra_values(self) -> np.ndarray:
        return np.empty(0)

    def with_extra(self, values: np.ndarray) -> Family:
        return self


@singledispatch
def null_family(family: Family) -> Family:
    """The family the null model is fitted with: the fit's (its own parameters estimated
    again from their start); lme4's negative binomial with the fit's size held."""
    return family


@null_family.register
def _held_size(family: NegativeBinomial) -> Family:
    return _HeldSizeNegativeBinomial(family.link, family.k)


def null_intercept(problem: GlmmProblem, n_agq: int = 1) -> float:
    """The intercept of the null model of ``problem``: its random terms, offset, prior
    weights and family, with an intercept as the only fixed effect (insight's
    ``null_model``), fitted as the model was (Laplace or ``n_agq`` nodes)."""
    from mixedmodels.optim.glmm import fit_glmm

    null = GlmmProblem(
        problem.blocks,
        np.ones((problem.n, 1)),
        problem.y,
        problem.prior_weights,
        problem.offset,
        null_family(problem.family),
    )
    return float(fit_glmm(null, n_agq).beta[0])


def observation_level(n_levels: list[int], nobs: int) -> list[bool]:
    """Which terms are observation-level random effects (one level per row): their variance
    is the model's overdispersion, part of ``v_e`` (insight's ``var.dispersion``)."""
    return [n == nobs for n in n_levels]
