"""What the Newton polish after BOBYQA costs (issue 10's exactness): CPU time per fit of
catalogue cases with the package before and after the change, in alternating processes.

usage: python benchmarks/polish_cost.py --sources after=src,before=/tmp/base/src
           [--cases sleepstudy_slopes_reml,...] [--rounds 5] [--repeats 60]
           [--large insteval_crossed_reml --large-repeats 3] [--out PATH]

(``before``: ``mkdir /tmp/base && git archive <main's commit> src | tar -x -C /tmp/base``.)

As benchmarks/small_fit.py: each round runs every (case, source) in a fresh process, in
turn, so the machine's noise (2 shared cores) falls on all of them; the data are loaded and
five fits warm up (not timed), then ``repeats`` fits are timed one by one by process CPU
time (and wall clock).  Reported per case: the median CPU per fit of each source over all
rounds' fits, the ratio after / before, the objective evaluations and the criterion each
reached, the load average around the run.  The large case is fitted ``large-repeats``
times per round after one warm-up fit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent
SMALL = [
    "sleepstudy_slopes_reml",
    "penicillin_crossed_reml",
    "pastes_nested_reml",
    "machines_slash_reml",
    "orthodont_factor_interaction_ml",
]


def work(name: str, repeats: int, warmup: int) -> dict:
    sys.path.insert(0, str(HERE.parent))
    import mixedmodels as mm
    from tests.test_large import _frame_and_arguments, case

    c = case(name)
    frame, arguments = _frame_and_arguments(c)

    def fit():
        return mm.lmer(c.formula, frame, **arguments)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(warmup):
            fit()
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            result = fit()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
    return {
        "times": wall,
        "cpu": cpu,
        "objective": result.objective,
        "n_evaluations": result.n_evaluations,
        "message": result.optimizer_message,
        "package": mm.__file__,
    }


def run(name: str, source: str, repeats: int, warmup: int) -> dict:
    env = dict(os.environ) | {"PYTHONPATH": str(Path(source).resolve())}
    cmd = [sys.executable, __file__, "--worker", name, "--repeats", str(repeats)]
    cmd += ["--warmup", str(warmup)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = [load, os.getloadavg()[0]]
    return result


def render(results: dict) -> str:
    labels = list(results["sources"])
    first, second = labels[0], labels[-1]
    lines = [
        f"Command: `{results['command']}`; load average (1 min) {results['load'][0]:.2f} at "
        f"the start, {results['load'][1]:.2f} at the end (a 2-core machine shared with other "
        f"engineers' jobs).  Versions: {results['versions']}.",
        "",
        f"| case | CPU per fit ({first}) | CPU per fit ({second}) | {first} / {second} "
        f"| evaluations ({first}, {second}) | criterion ({first}) | criterion ({second}) "
        "| load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_source in results["cases"].items():
        a, b = by_source[first], by_source[second]
        lines.append(
            f"| {name} | {a['cpu_median'] * 1e3:.2f} ms | {b['cpu_median'] * 1e3:.2f} ms "
            f"| {a['cpu_median'] / b['cpu_median']:.3f} | {a['n_evaluations']}, "
            f"{b['n_evaluations']} | {a['objective']:.10f} | {b['objective']:.10f} "
            f"| {min(a['load'][0], b['load'][0]):.1f} -> {max(a['load'][1], b['load'][1]):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", default="after=src")
    parser.add_argument("--cases", default=",".join(SMALL))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--large", default="", help="a large case, e.g. insteval_crossed_reml")
    parser.add_argument("--large-repeats", type=int, default=3)
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(work(args.worker, args.repeats, args.warmup)))
        return
    sources = dict(item.split("=", 1) for item in args.sources.split(","))
    jobs = [(name, args.repeats, args.warmup) for name in args.cases.split(",") if name]
    if args.large:
        jobs.append((args.large, args.large_repeats, 1))
    start_load = os.getloadavg()[0]
    runs: dict[str, dict[str, list[dict]]] = {
        name: {label: [] for label in sources} for name, *_ in jobs
    }
    for round_index in range(args.rounds):
        for name, repeats, warmup in jobs:
            for label, path in sources.items():
                r = run(name, path, repeats, warmup)
                runs[name][label].append(r)
                print(
                    f"round {round_index + 1} {name:36s} {label:8s} cpu "
                    f"{statistics.median(r['cpu']) * 1e3:9.3f} ms  evaluations "
                    f"{r['n_evaluations']}  load {r['load'][0]:.2f}",
                    flush=True,
                )
    import numpy

    results = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}"] + sys.argv[1:]),
        "load": [start_load, os.getloadavg()[0]],
        "versions": {"python": platform.python_version(), "numpy": numpy.__version__},
        "sources": sources,
        "cases": {
            name: {
                label: {
                    "cpu_median": statistics.median(t for r in rs for t in r["cpu"]),
                    "median": statistics.median(t for r in rs for t in r["times"]),
                    "round_cpu_medians": [statistics.median(r["cpu"]) for r in rs],
                    "objective": rs[-1]["objective"],
                    "n_evaluations": rs[-1]["n_evaluations"],
                    "message": rs[-1]["message"],
                    "load": [min(r["load"][0] for r in rs), max(r["load"][1] for r in rs)],
                }
                for label, rs in by_source.items()
            }
            for name, by_source in runs.items()
        },
        "runs": runs,
    }
    text = render(results)
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=1))
        Path(args.out + ".md").write_text(text)


if __name__ == "__main__":
    main()
