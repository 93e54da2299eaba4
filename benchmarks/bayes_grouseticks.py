"""Mixing of the Poisson sampler on grouseticks' partly confounded random intercepts.

usage: python benchmarks/bayes_grouseticks.py [FORMULA] [DRAWS]

4 chains x (500 warm-up + DRAWS) from ``fit.sample_posterior`` (default priors, seed 1,
2 processes); prints the CPU time of the chain processes and the summary's mean, sd,
MCSE, bulk/tail ESS and R-hat.  Default formula:
``TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|LOCATION)``.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings

import pandas as pd

import mixedmodels as mm


def main() -> None:
    formula = (
        sys.argv[1] if len(sys.argv) > 1 else "TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|LOCATION)"
    )
    draws = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    data = mm.datasets.load("grouseticks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        fit = mm.glmer(formula, data, "poisson")
    start = time.perf_counter()
    post = fit.sample_posterior(draws, 500, chains=4, seed=1, n_jobs=2, progress=False)
    wall = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"{formula}: wall {wall:.1f} s, chain processes' CPU "
        f"{children.ru_utime + children.ru_stime:.1f} s"
    )
    columns = ["mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    with pd.option_context("display.width", 200):
        print(post.summary()[columns].to_string())


if __name__ == "__main__":
    main()
