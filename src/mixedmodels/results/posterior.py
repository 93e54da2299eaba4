"""Posterior draws of a linear mixed model (the Bayesian view), with lme4-style names."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixedmodels.arguments import check_bool, check_int, check_level, random_generator
from mixedmodels.core.gibbs import GibbsProblem, GibbsSettings, run_gibbs
from mixedmodels.errors import ArgumentError, MixedModelsWarning
from mixedmodels.inference.progress import ProgressBar

MAX_DENSE_EFFECTS = 3000  # the sampler factorizes a dense (p + q) x (p + q) precision


@dataclass(frozen=True)
class Posterior:
    """Draws from the posterior: one row per kept draw, one column per parameter (the
    names of ``fit.confint``: ``sd_<term>|<group>``, ``cor_<a>.<b>|<group>``, ``sigma``,
    the fixed effects)."""

    draws: pd.DataFrame

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior mean, sd, median and the equal-tailed ``level`` interval."""
        alpha = (1 - check_level(level)) / 2
        d = self.draws
        return pd.DataFrame(
            {
                "mean": d.mean(),
                "sd": d.std(ddof=1),
                "median": d.median(),
                "lower": d.quantile(alpha),
                "upper": d.quantile(1 - alpha),
            }
        )


def _parameter_row(beta, sigma2, covs) -> list[float]:
    out: list[float] = []
    for cov in covs:
        sd = np.sqrt(np.diagonal(cov))
        p = cov.shape[0]
        for c in range(p):
            for r in range(c, p):
                out.append(sd[r] if r == c else cov[r, c] / (sd[r] * sd[c]))
    return out + [float(np.sqrt(sigma2))] + list(beta)


def sample_posterior(
    fit,
    draws: int = 2000,
    warmup: int = 500,
    seed=None,
    nu: float = 2.0,
    scales: list[np.ndarray] | None = None,
    progress: bool = True,
) -> Posterior:
    """Gibbs sampling from the posterior of a fitted linear mixed model (see
    :mod:`mixedmodels.core.gibbs` for the priors), started at the REML/ML estimates.

    ``scales`` are the half-t scales of each term's standard deviations; by default 10 x
    sd(y) divided by the root mean square of the term's column (weakly informative on the
    data's scale).  Ctrl-C keeps the draws made so far.
    """
    draws = check_int(draws, "draws", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=0)
    progress = check_bool(progress, "progress")
    rng = random_generator(seed)
    if isinstance(nu, (bool, np.bool_)) or not (isinstance(nu, (int, float)) and nu > 0):
        raise ArgumentError(f"nu (the half-t degrees of freedom) must be a number > 0, got {nu!r}")
    design = fit.design
    q = sum(t.block.size for t in design.terms)
    if q + design.X.shape[1] > MAX_DENSE_EFFECTS:
        raise ArgumentError(
            f"the Gibbs sampler works with dense matrices; {q} random effects is more than "
            f"it takes ({MAX_DENSE_EFFECTS})"
        )
    y = design.y if design.offset is None else design.y - design.offset
    blocks = [t.block for t in design.terms]
    problem = GibbsProblem.from_arrays(design.X, fit.Z, y, design.weights, blocks)
    if scales is None:
        spread = float(np.std(y)) or 1.0
        scales = [10 * spread / np.sqrt(np.mean(b.z**2, axis=0)) for b in blocks]
    settings = GibbsSettings(nu, [np.asarray(s, dtype=float) for s in scales])
    start_covs = [info[2] for info in fit._term_info()]
    names = fit.parameter_names
    kept: list[list[float]] = []
    p = design.X.shape[1]
    with ProgressBar(warmup + draws, "posterior", enabled=progress) as bar:
        count = {"n": 0}

        def on_draw(coef, sigma2, covs):
            count["n"] += 1
            if count["n"] > warmup:
                kept.append(_parameter_row(coef[:p], sigma2, covs))
            bar.update()

        try:
            run_gibbs(problem, settings, fit.sigma**2, start_covs, warmup + draws, rng, on_draw)
        except KeyboardInterrupt:
            warnings.warn(
                f"interrupted: kept {len(kept)} of {draws} draws",
                MixedModelsWarning,
                stacklevel=2,
            )
    return Posterior(pd.DataFrame(kept, columns=names))
