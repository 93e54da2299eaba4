"""Simulation-based calibration of the Gibbs sampler (Talts, Betancourt, Simpson, Vehtari
and Gelman 2018).

Each replicate draws the parameters from proper priors, the data from the model, and runs
the sampler from an independent prior draw; the rank of the true value among ``L``
thinned posterior draws is uniform on ``0..L`` exactly when the sampler targets the
posterior.  Ranks are binned and compared with the uniform by Pearson's chi-square; each
parameter's test is at level 0.001 (a fixed seed makes the test deterministic; a wrong
conditional, a missing Jacobian or a prior used with the wrong scale shift the ranks far
beyond that).  The default suite runs a small version; the large one, which also covers
the binomial-logit (Polya-Gamma augmentation) and Poisson (Metropolis-Hastings steps)
models, is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mixedmodels.core.gibbs import GibbsSampler, ModelPriors
from mixedmodels.core.priors import LKJ, HalfNormal, HalfStudentT, InverseGamma, Normal, StudentT
from mixedmodels.core.terms import RandomBlock

LEVEL = 0.001


def _intercept_model():
    """``y = b0 + b1 x + u_g + e``: 8 groups of 5."""
    groups, per = 8, 5
    codes = np.repeat(np.arange(groups), per)
    x = np.tile(np.linspace(-1, 1, per), groups)
    X = np.column_stack([np.ones(groups * per), x])
    blocks = [RandomBlock(codes, groups, np.ones((groups * per, 1)))]
    priors = ModelPriors(
        fixef=[Normal(0, 2), StudentT(4, 0.5, 1)],
        sigma=HalfStudentT(3, 1),
        sd=[[HalfNormal(1)]],
        cor=[LKJ(1)],
    )
    return X, blocks, priors


def _slope_model():
    """``y = b0 + b1 x + u_g0 + u_g1 x + e`` with correlated ``(u_g0, u_g1)``: 10 groups of
    6."""
    groups, per = 10, 6
    codes = np.repeat(np.arange(groups), per)
    x = np.tile(np.linspace(-1, 1, per), groups)
    X = np.column_stack([np.ones(groups * per), x])
    z = np.column_stack([np.ones(groups * per), x])
    blocks = [RandomBlock(codes, groups, z)]
    priors = ModelPriors(
        fixef=[Normal(0, 2), Normal(1, 1)],
        sigma=InverseGamma(3, 2),
        sd=[[HalfNormal(1), HalfStudentT(3, 0.5)]],
        cor=[LKJ(2)],
    )
    return X, blocks, priors


def _logit_model():
    """``successes ~ Binomial(6, expit(b0 + b1 x + u_g))``: 8 groups of 5 (Polya-Gamma)."""
    X, blocks, _ = _intercept_model()
    priors = ModelPriors(
        fixef=[Normal(0, 1), Normal(0, 1)],
        sigma=HalfNormal(1),  # unused
        sd=[[HalfNormal(1)]],
        cor=[LKJ(1)],
    )
    return X, blocks, priors


TRIALS = 6


def _poisson_model():
    """``y ~ Poisson(exp(b0 + b1 x + u_g))``: 8 groups of 5 (Metropolis-Hastings steps)."""
    return _logit_model()


def _simulate(X, blocks, priors: ModelPriors, rng, logit: bool = False, poisson=False):
    """Parameters from the priors (sd/cor, sigma, beta, like ``parameter_row``) and data."""
    beta = np.array([pr.draw(rng) for pr in priors.fixef])
    glmm = logit or poisson
    sigma = 1.0 if glmm else priors.sigma.draw_sd(rng)
    y = X @ beta + (0 if glmm else sigma * rng.standard_normal(len(X)))
    truth, sds, cors = [], [], []
    for blk, sd_priors, cor_prior in zip(blocks, priors.sd, priors.cor, strict=True):
        sd = np.array([pr.draw_sd(rng) for pr in sd_priors])
        cor = cor_prior.draw(rng, blk.p) if blk.p > 1 else np.ones((1, 1))
        cov = cor * np.outer(sd, sd)
        b = rng.multivariate_normal(np.zeros(blk.p), cov, size=blk.n_levels)
        y += np.einsum("np,np->n", blk.z, b[blk.codes])
        for c in range(blk.p):
            for r in range(c, blk.p):
                truth.append(sd[r] if r == c else cor[r, c])
        sds.append(sd)
        cors.append(cor)
    if logit:
        y = rng.binomial(TRIALS, 1 / (1 + np.exp(-y))) / TRIALS
        return y, np.array([*truth, *beta]), sds, cors, sigma
    if poisson:
        y = rng.poisson(np.exp(np.minimum(y, 20))).astype(float)
        return y, np.array([*truth, *beta]), sds, cors, sigma
    return y, np.array([*truth, sigma, *beta]), sds, cors, sigma


def sbc_ranks(model, replicates: int, draws: int, thin: int, warmup: int, seed: int):
    """Ranks (replicates x parameters) of the true values among ``draws`` thinned draws."""
    X, blocks, priors = model()
    logit, poisson = model is _logit_model, model is _poisson_model
    trials = np.full(len(X), TRIALS) if logit else None
    family = "poisson" if poisson else ("binomial" if logit else "gaussian")
    rng = np.random.default_rng(seed)
    ranks = []
    for _ in range(replicates):
        y, truth, *_ = _simulate(X, blocks, priors, rng, logit, poisson)
        _, _, sds, cors, sigma = _simulate(X, blocks, priors, rng, logit, poisson)  # a start
        sampler = GibbsSampler(blocks, X, y, None, priors, trials=trials, family=family)
        state = sampler.initial_state(sds, cors, sigma)
        out = np.empty((draws * thin, sampler.n_params))
        sampler.run(state, rng, warmup, draws * thin, out, None)
        kept = out[thin - 1 :: thin]
        ranks.append((kept < truth).sum(axis=0))
    return np.array(ranks)


def uniformity_p_values(ranks: np.ndarray, draws: int, bins: int) -> np.ndarray:
    """Pearson chi-square p-value per parameter of the ranks (0..draws) in equal bins."""
    assert (draws + 1) % bins == 0
    width = (draws + 1) // bins
    counts = np.stack([np.bincount(r // width, minlength=bins) for r in ranks.T])
    return stats.chisquare(counts, axis=1).pvalue


@pytest.mark.parametrize("model", [_intercept_model, _slope_model])
def test_sbc_small(model):
    """60 replicates, 9 draws (thinned by 2, after 20 warm-up sweeps from an independent
    prior draw) each: ranks 0..9 in 5 bins of 12 expected."""
    ranks = sbc_ranks(model, replicates=60, draws=9, thin=2, warmup=20, seed=2018)
    p = uniformity_p_values(ranks, draws=9, bins=5)
    assert np.all(p > LEVEL), p


def test_sbc_small_poisson():
    """The Poisson model (joint Laplace step, term-by-term steps, centring and
    interweaving) at the small size: 60 replicates, 9 draws thinned by 2 after 20
    warm-up sweeps."""
    ranks = sbc_ranks(_poisson_model, replicates=60, draws=9, thin=2, warmup=20, seed=2020)
    p = uniformity_p_values(ranks, draws=9, bins=5)
    assert np.all(p > LEVEL), p


@pytest.mark.slow
@pytest.mark.parametrize("model", [_intercept_model, _slope_model, _logit_model, _poisson_model])
def test_sbc_large(model):
    """500 replicates, 99 draws (thinned by 3, after 50 warm-up sweeps) each: 20 bins of
    25 expected ranks."""
    ranks = sbc_ranks(model, replicates=500, draws=99, thin=3, warmup=50, seed=2019)
    p = uniformity_p_values(ranks, draws=99, bins=20)
    assert np.all(p > LEVEL), p
