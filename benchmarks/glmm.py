"""glmer timings against lme4's glmer (Laplace), side by side in one run.

Each round times our fit (median of ``repeats`` after a warm-up) and then lme4 in a fresh R
process (same repeats); rounds are interleaved to spread the machine's noise over both.
Reports medians over rounds, the ratio lme4 / ours and both log-likelihoods.

usage: python benchmarks/glmm.py [--rounds 3] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mixedmodels as mm

sys.path.insert(0, str(Path(__file__).parent))
import markdown  # noqa: E402

CASES = {
    "cbpp, herd intercepts, binomial": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
        5,
    ),
    "grouseticks crossed, poisson": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
        "poisson",
        3,
    ),
    "VerbAgg crossed, binary (n = 7,584)": (
        "VerbAgg",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "binomial",
        2,
    ),
}


def ours(data: str, formula: str, family: str, repeats: int) -> tuple[float, float]:
    df = mm.datasets.load(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer(formula, df, family)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fit = mm.glmer(formula, df, family)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), fit.loglik


def lme4(data_dir: str, data: str, formula: str, family: str, repeats: int):
    if shutil.which("Rscript") is None:
        return None
    worker = Path(__file__).parent / "glmm_worker.R"
    out = subprocess.run(
        ["Rscript", str(worker), data_dir, data, formula, family, str(repeats), "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return statistics.median(result["times"]), result["loglik"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--data-dir", default=str(Path(__file__).parent.parent.parent / "shared" / "data")
    )
    args = parser.parse_args()
    results: dict[str, dict[str, list]] = {k: {"ours": [], "lme4": []} for k in CASES}
    for _ in range(args.rounds):
        for name, (data, formula, family, repeats) in CASES.items():
            results[name]["ours"].append(ours(data, formula, family, repeats))
            theirs = lme4(args.data_dir, data, formula, family, repeats)
            if theirs is not None:
                results[name]["lme4"].append(theirs)
    markdown.row(["case", "ours (s)", "lme4 (s)", "lme4 / ours", "logLik ours", "logLik lme4"])
    markdown.row(["---"] * 6)
    for name, res in results.items():
        t_ours = statistics.median(r[0] for r in res["ours"])
        ll_ours = res["ours"][-1][1]
        if res["lme4"]:
            t_lme4 = statistics.median(r[0] for r in res["lme4"])
            ll_lme4 = res["lme4"][-1][1]
            cells = [f"{t_lme4:.3f}", f"{t_lme4 / t_ours:.2f}x", f"{ll_lme4:.4f}"]
        else:
            cells = ["-", "-", "-"]
        markdown.row([name, f"{t_ours:.3f}", cells[0], cells[1], f"{ll_ours:.4f}", cells[2]])


if __name__ == "__main__":
    main()
