"""Where a crossed fit's CPU time goes (issue 17): set-up against evaluations.

usage: python benchmarks/crossed_profile.py [--cases slopes] [--scale 1.0]
                                            [--out benchmarks/results/crossed_profile]

One fit per case, as ``mixedmodels.lmer`` makes it, split into phases timed with
``time.process_time`` (CPU time of this process: the machine is shared, wall time is not
comparable between runs):

- ``problem``: formula, model matrices and stored cross products (``lmer_problem``)
- ``structure``: the crossed path's symbolic work (elimination order, panels, fill kernel)
- ``evaluations``: the optimizer's objective evaluations (count, total, median)
- ``optimizer and start``: the rest of ``optimize_problem`` (moment start, BOBYQA)
- ``solution``: beta and the conditional modes at the optimum

plus the kernel's debug view and the page faults and peak memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from crossed import CASES, load, peak_mb  # noqa: E402

from mixedmodels.api import lmer_problem  # noqa: E402
from mixedmodels.optim.lmm import optimize_problem, solve_at  # noqa: E402


def profile(name: str, scale: float) -> dict:
    df = load(name, scale)
    clock = time.process_time
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = clock()
    _, problem = lmer_problem(CASES[name]["formula"], df)
    t_problem = clock() - t0
    t0 = clock()
    problem.crossed_objective()
    t_structure = clock() - t0
    inner = problem.objective
    times: list[float] = []

    def timed(theta):
        c = clock()
        value = inner(theta)
        times.append(clock() - c)
        return value

    problem.objective = timed
    t0 = clock()
    result = optimize_problem(problem)
    t_optimize = clock() - t0
    t0 = clock()
    solve_at(problem, result.x)
    t_solution = clock() - t0
    total = t_problem + t_structure + t_optimize + t_solution
    return {
        "problem": t_problem,
        "structure": t_structure,
        "evaluations": len(times),
        "evaluation_total": sum(times),
        "evaluation_median": statistics.median(times),
        "optimizer_and_start": t_optimize - sum(times),
        "solution": t_solution,
        "total": total,
        "objective": float(result.fun),
        "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
        "peak_mb": peak_mb(),
        "structure_view": problem.describe_structure(),
    }


def render(results: dict) -> str:
    lines = [
        f"Command: `{results['command']}`; load average (1 min) {results['load'][0]:.1f} at "
        f"the start, {results['load'][1]:.1f} at the end (2-core machine shared with others). "
        "CPU time (time.process_time) of one fit, by phase.",
        "",
        "| case | problem | structure | evaluations | per evaluation (median) | "
        "optimizer + start | solution | total | REML criterion | page faults | "
        "peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["cases"].items():
        lines.append(
            f"| {name} | {r['problem']:.2f} s | {r['structure']:.2f} s | "
            f"{r['evaluations']} in {r['evaluation_total']:.2f} s | "
            f"{r['evaluation_median'] * 1e3:.1f} ms | {r['optimizer_and_start']:.2f} s | "
            f"{r['solution']:.2f} s | {r['total']:.2f} s | {r['objective']:.4f} | "
            f"{r['page_faults']:,} | {r['peak_mb']:.0f} |"
        )
    for name, r in results["cases"].items():
        lines += ["", f"{name}:", "", "```", r["structure_view"], "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="slopes")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    args = parser.parse_args()
    results: dict = {"cases": {}}
    before = os.getloadavg()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.cases.split(","):
            results["cases"][name] = profile(name, args.scale)
    results["load"] = [before, os.getloadavg()[0]]
    results["command"] = " ".join(["python benchmarks/crossed_profile.py"] + sys.argv[1:])
    text = render(results)
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=2))
        Path(args.out + ".md").write_text(text)


if __name__ == "__main__":
    main()
