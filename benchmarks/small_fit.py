"""The fixed cost of a small fit (issue 8: "sleepstudy no slower than mixedlm"), with the
package before and after a change and mixedlm interleaved in one run.

usage: python benchmarks/small_fit.py [--sources after=src,before=/path/to/old/src]
                                      [--rounds 5] [--repeats 100] [--one-thread-peer]
                                      [--case sleepstudy|cbpp] [--out PATH]

(``before`` as used for the _s7 results: ``mkdir /tmp/base && git archive 5b0d5cf src | tar
-x -C /tmp/base``, then ``--sources after=src,before=/tmp/base/src``.)

Each round runs every (tool, source) in a fresh process, in turn, so that the machine's
noise (a shared 2-core machine) falls on all of them: the data are loaded (not timed), five
fits warm up, then ``repeats`` fits of ``Reaction ~ Days + (Days | Subject)`` are timed one
by one, wall clock and process CPU time.  Reported: per tool the median over all rounds'
fits and the median of the rounds' medians, the ratios to mixedlm (time and CPU time) and
the REML criterion each reached; the load average (1 min) around every process.  A source is
a directory holding the ``mixedmodels`` package, put first on ``PYTHONPATH`` for its runs.
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
FORMULA = "Reaction ~ Days + (Days | Subject)"
#: ``--case cbpp``: the binomial GLMM of issue 8's GLMM goal (mixedlm fails on cbind)
GLMM_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def work(tool: str, repeats: int, case: str = "sleepstudy") -> dict:
    import mixedmodels as mm

    if case == "cbpp":
        df = mm.datasets.load("cbpp")

        def fit():
            return -2.0 * mm.glmer(GLMM_FORMULA, df, "binomial").loglik

    elif tool == "mixedlm":
        import mixedlm

        df = mm.datasets.load("sleepstudy")

        def fit():
            return float(mixedlm.lmer(FORMULA, df).REMLcrit())

    else:
        df = mm.datasets.load("sleepstudy")

        def fit():
            return mm.lmer(FORMULA, df).objective

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(5):
            fit()
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            objective = fit()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
    return {"times": wall, "cpu": cpu, "objective": objective, "package": mm.__file__}


ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(
    tool: str, source: str | None, repeats: int, extra_env: dict | None = None, case: str = ""
) -> dict:
    env = dict(os.environ) | (extra_env or {})
    if source is not None:
        env["PYTHONPATH"] = str(Path(source).resolve())
    cmd = [sys.executable, __file__, "--worker", tool, "--repeats", str(repeats)]
    cmd += ["--case", case or "sleepstudy"]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = [load, os.getloadavg()[0]]
    return result


def versions() -> dict[str, str]:
    import numpy
    import scipy

    out = {"python": platform.python_version(), "numpy": numpy.__version__}
    out["scipy"] = scipy.__version__
    try:
        from importlib.metadata import version

        out["mixedlm"] = version("mixedlm")
        out["pandas"] = version("pandas")
    except Exception:  # a missing peer is reported by its run
        pass
    return out


def summarize(runs: list[dict]) -> dict:
    wall = [t for r in runs for t in r["times"]]
    cpu = [t for r in runs for t in r["cpu"]]
    return {
        "median": statistics.median(wall),
        "cpu_median": statistics.median(cpu),
        "round_medians": [statistics.median(r["times"]) for r in runs],
        "round_cpu_medians": [statistics.median(r["cpu"]) for r in runs],
        "objective": runs[-1]["objective"],
        "load": [min(r["load"][0] for r in runs), max(r["load"][1] for r in runs)],
        "package": runs[-1]["package"],
    }


def render(results: dict) -> str:
    peer_name = "mixedlm (1 thread)" if "mixedlm (1 thread)" in results["tools"] else "mixedlm"
    lines = [
        f"Command: `{results['command']}`; load average (1 min) {results['load'][0]:.2f} at "
        f"the start, {results['load'][1]:.2f} at the end (a 2-core machine shared with other "
        f"engineers' jobs).  Versions: {results['versions']}.",
        "",
        f"Formula: `{results['formula']}`.  Ratios are to "
        f"{peer_name if peer_name in results['tools'] else 'the first row'}.",
        "",
        "| tool | median time per fit | CPU per fit | time / reference | CPU / reference "
        "| round medians (ms) | criterion (REML; cbpp: -2 logLik) | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    peer = results["tools"].get(peer_name) or next(iter(results["tools"].values()))
    for name, s in results["tools"].items():
        ratio = f"{s['median'] / peer['median']:.2f}" if peer else "-"
        cpu_ratio = f"{s['cpu_median'] / peer['cpu_median']:.2f}" if peer else "-"
        rounds = ", ".join(f"{t * 1e3:.2f}" for t in s["round_medians"])
        lines.append(
            f"| {name} | {s['median'] * 1e3:.2f} ms | {s['cpu_median'] * 1e3:.2f} ms | {ratio} "
            f"| {cpu_ratio} | {rounds} | {s['objective']:.6f} "
            f"| {s['load'][0]:.1f} -> {s['load'][1]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", default="after=src")
    parser.add_argument(
        "--case",
        default="sleepstudy",
        choices=["sleepstudy", "cbpp"],
        help="cbpp: the binomial glmer, ours only (criterion: -2 logLik)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--no-mixedlm", action="store_true")
    parser.add_argument(
        "--one-thread-peer",
        action="store_true",
        help="also run mixedlm with one BLAS/OpenMP thread (on a loaded machine its default "
        "threads wait for each other: 25-70 ms CPU a fit instead of ~5)",
    )
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(work(args.worker, args.repeats, args.case)))
        return
    sources = dict(item.split("=", 1) for item in args.sources.split(","))
    jobs = [
        (f"mixedmodels ({label})", "mixedmodels", path, None) for label, path in sources.items()
    ]
    if not args.no_mixedlm and args.case == "sleepstudy":
        jobs.append(("mixedlm", "mixedlm", next(iter(sources.values())), None))
    if args.one_thread_peer and args.case == "sleepstudy":
        jobs.append(("mixedlm (1 thread)", "mixedlm", next(iter(sources.values())), ONE_THREAD))
    start_load = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name, *_ in jobs}
    for round_index in range(args.rounds):
        for name, tool, path, extra_env in jobs:
            r = run(tool, path, args.repeats, extra_env, args.case)
            runs[name].append(r)
            print(
                f"round {round_index + 1} {name:28s} median "
                f"{statistics.median(r['times']) * 1e3:7.3f} ms  cpu "
                f"{statistics.median(r['cpu']) * 1e3:7.3f} ms  load {r['load'][0]:.2f}",
                flush=True,
            )
    results = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}"] + sys.argv[1:]),
        "load": [start_load, os.getloadavg()[0]],
        "versions": versions(),
        "formula": GLMM_FORMULA if args.case == "cbpp" else FORMULA,
        "tools": {name: summarize(r) for name, r in runs.items()},
        "runs": runs,
    }
    text = render(results)
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=1))
        Path(args.out + ".md").write_text(text)


if __name__ == "__main__":
    main()
