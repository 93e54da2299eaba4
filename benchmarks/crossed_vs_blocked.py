"""The crossed path against the previous engine on the crossed-slopes cases (issue 17).

usage: python benchmarks/crossed_vs_blocked.py [--cases slopes,kb07,scalar] [--scale 1.0]

"before" is the blocked engine (scipy.sparse products per evaluation) with the previous
start (identity for vector terms of multi-term models); "after" is the default: the crossed
path and the backfitted per-level regression start.  Prints, per case: time, evaluations,
the REML criterion reached and its relative difference (the estimates must not change:
equal to 1e-8 relative, or lower).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from crossed import CASES, load  # noqa: E402

import mixedmodels.optim.start as start  # noqa: E402
from mixedmodels.api import lmer_problem, optimize_problem  # noqa: E402


def fit(name: str, df, before: bool):
    original = start._crossed_vector_start
    if before:
        start._crossed_vector_start = lambda *args: None
    try:
        t0 = time.perf_counter()
        _, problem = lmer_problem(CASES[name]["formula"], df)
        if before:
            problem._crossed = None  # the blocked engine
        result = optimize_problem(problem)
        return time.perf_counter() - t0, result
    finally:
        start._crossed_vector_start = original


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="slopes,kb07,scalar")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| case | engine | time | evaluations | REML criterion | (after - before) / before |")
    print("|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        df = load(name, args.scale)
        t_before, before = fit(name, df, True)
        t_after, after = fit(name, df, False)
        rel = (after.fun - before.fun) / abs(before.fun)
        print(f"| {name} | before | {t_before:.2f} s | {before.n_evaluations} | {before.fun!r} | |")
        print(
            f"| {name} | after | {t_after:.2f} s | {after.n_evaluations} | {after.fun!r} | "
            f"{rel:.2e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
