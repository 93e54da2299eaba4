"""The Gibbs sampler's speed, memory and effective samples per second.

usage: python benchmarks/bayes_sampler.py [sleepstudy|dyestuff|insteval ...]
           [--draws 1000] [--warmup 500] [--chains 4] [--n-jobs 2]

For each case: the REML fit, then ``fit.sample_posterior(draws, warmup, chains=...)`` with
the default (brms-like) priors, timed from the call to the returned object (set-up of the
Henderson system included).  Reports wall time, time per sweep and chain, bulk ESS per
second for sigma and every sd, the CPU time of all processes (on a shared machine the
wall time depends on the load; CPU time / cores is the wall time of an idle machine), the
worst R-hat, and peak resident memory of this process
and of the largest chain process (``ru_maxrss``; the chain processes are forked and share
the parent's pages, so the two overlap).  Writes a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import mixedmodels as mm

CASES = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    "dyestuff": ("Yield ~ 1 + (1 | Batch)", "Dyestuff"),
    "dyestuff2": ("Yield ~ 1 + (1 | Batch)", "Dyestuff2"),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    "insteval": ("y ~ service + (1 | s) + (1 | d) + (1 | dept)", "InstEval"),
}


def run(case: str, draws: int, warmup: int, chains: int, n_jobs: int) -> dict:
    formula, name = CASES[case]
    data = mm.datasets.load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        start = time.perf_counter()
        fit = mm.lmer(formula, data)
        fit_time = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = time.process_time()
    start = time.perf_counter()
    post = fit.sample_posterior(draws, warmup, chains=chains, seed=1, n_jobs=n_jobs, progress=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) + (
        time.process_time() - cpu_before
    )
    table = post.summary()
    scales = [n for n in table.index if n.startswith("sd_") or n == "sigma"]
    ess = table.loc[scales, "ess_bulk"]
    return {
        "case": case,
        "fit_s": fit_time,
        "sample_s": elapsed,
        "ms_per_sweep": 1000 * elapsed * min(n_jobs, chains) / (chains * (draws + warmup)),
        "cpu_s": cpu,
        "cpu_ms_per_sweep": 1000 * cpu / (chains * (draws + warmup)),
        "min_ess_per_s": float(ess.min() / elapsed),
        "ess_per_s": {k: round(float(v / elapsed), 1) for k, v in ess.items()},
        "ess": {k: round(float(v)) for k, v in ess.items()},
        "max_rhat": float(table["r_hat"].max()),
        "peak_mb_parent": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_mb_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=["sleepstudy", "dyestuff"])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    print(
        "| case | REML fit (s) | sampling wall (s) | sampling CPU (s) | CPU ms per sweep | "
        "bulk ESS (sigma, sds) | bulk ESS/s of wall time | max R-hat | "
        "peak MB (parent / chain process) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        r = run(case, args.draws, args.warmup, args.chains, args.n_jobs)
        ess = ", ".join(f"{k}: {v}" for k, v in r["ess_per_s"].items())
        counts = ", ".join(f"{k}: {v}" for k, v in r["ess"].items())
        print(
            f"| {case} | {r['fit_s']:.2f} | {r['sample_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {r['cpu_ms_per_sweep']:.2f} "
            f"| {counts} | {ess} | {r['max_rhat']:.3f} | {r['peak_mb_parent']:.0f} / "
            f"{r['peak_mb_child']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
