"""Crossed designs with random slopes (issue 17): mixedmodels, lme4 and mixedlm side by side.

usage: python benchmarks/crossed.py [--cases slopes,kb07,scalar] [--tools ...] [--repeats 3]
                                    [--scale 1.0] [--out benchmarks/results/crossed]
       python benchmarks/crossed.py --render benchmarks/results/crossed.json

Cases (simulated, fixed seeds: benchmarks/simulate_crossed.py):

- ``slopes``: ``y ~ x + (x | subj) + (1 | item)``, 500,000 rows, 5,000 subjects x 2,000 items
- ``kb07``: kb07's shape, maximal ``(1 + a + b + c | subj) + (1 + a + b + c | item)``
- ``scalar``: ``y ~ 1 + (1 | g1) + (1 | g2)``, 2,000,000 rows, 20,000 x 500 levels

Each (tool, case) runs in a fresh process: the data are simulated (not timed), then the fit
is timed ``repeats`` times (lme4 and mixedlm: once for the large cases).  Reported: median
time per fit, its ratio to mixedmodels, the CPU time (user + system, all threads) per fit
and its ratio, objective evaluations, time per evaluation (ours:
the median of 5 evaluations near the optimum; peers: fit time / evaluations), the REML
criterion each reached (the answers must agree) and peak memory.  ``--scale`` shrinks the
row and level counts of ``slopes`` and ``scalar`` for development runs.  The machine's load
average is recorded before and after each run: the timings mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from peers import available  # noqa: E402
from simulate_crossed import simulate_kb07, simulate_scalar, simulate_slopes  # noqa: E402

CASES = {
    "slopes": {
        "formula": "y ~ x + (x | subj) + (1 | item)",
        "factors": ["subj", "item"],
        "large": True,
    },
    "kb07": {
        "formula": "rt ~ a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)",
        "factors": ["subj", "item"],
        "large": False,
    },
    "scalar": {
        "formula": "y ~ 1 + (1 | g1) + (1 | g2)",
        "factors": ["g1", "g2"],
        "large": True,
    },
}


def load(name: str, scale: float):
    if name == "slopes":
        return simulate_slopes(int(500_000 * scale), max(int(5_000 * scale), 10), 2_000)
    if name == "kb07":
        return simulate_kb07()
    return simulate_scalar(int(2_000_000 * scale), max(int(20_000 * scale), 10), 500)


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (load-independent, unlike
    wall time, on a machine others share)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------- workers (fresh process)
def work_mixedmodels(name: str, repeats: int, scale: float) -> dict:
    import numpy as np

    import mixedmodels as mm
    from mixedmodels.api import lmer_problem

    df = load(name, scale)
    formula = CASES[name]["formula"]
    times, cpu = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            # the previous fit (and its fill structure) is released first: the peak memory
            # is that of one fit, not of two fits alive at once
            fit = None
            gc.collect()
            t0, c0 = time.perf_counter(), cpu_seconds()
            fit = mm.lmer(formula, df)
            times.append(time.perf_counter() - t0)
            cpu.append(cpu_seconds() - c0)
        theta, objective, evaluations = fit.theta, float(fit.objective), int(fit.n_evaluations)
        fit = None
        gc.collect()
        _, problem = lmer_problem(formula, df)
        t0 = time.perf_counter()
        problem.objective(theta)  # first evaluation: builds the structure
        setup = time.perf_counter() - t0
        per_eval = []
        for k in range(1, 6):  # each at a new theta (the last factor is kept)
            t0 = time.perf_counter()
            problem.objective(theta * (1.0 + 1e-3 * k))
            per_eval.append(time.perf_counter() - t0)
    return {
        "times": times,
        "cpu": cpu,
        "objective": objective,
        "evaluations": evaluations,
        "time_per_evaluation": float(np.median(per_eval)),
        "first_evaluation": setup,
        "structure": problem.describe_structure(),
        "peak_mb": peak_mb(),
    }


def work_mixedlm(name: str, repeats: int, scale: float) -> dict:
    import mixedlm

    df = load(name, scale)
    times, cpu, m = [], [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), cpu_seconds()
            m = mixedlm.lmer(CASES[name]["formula"], df)
            times.append(time.perf_counter() - t0)
            cpu.append(cpu_seconds() - c0)
    evals = int(getattr(m, "function_evals", 0) or 0)
    return {
        "times": times,
        "cpu": cpu,
        "objective": float(m.REMLcrit()),
        "evaluations": evals,
        "time_per_evaluation": statistics.median(times) / evals if evals else None,
        "peak_mb": peak_mb(),
    }


LME4_WORKER = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
form <- as.formula(args[2]); repeats <- as.integer(args[4])
times <- numeric(repeats); cpu <- numeric(repeats)
for (i in seq_len(repeats)) {
  t0 <- proc.time(); m <- lmer(form, d); dt <- proc.time() - t0
  times[i] <- dt[["elapsed"]]; cpu[i] <- dt[["user.self"]] + dt[["sys.self"]]
}
status <- readLines("/proc/self/status")
hwm <- as.numeric(gsub("[^0-9]", "", status[grepl("^VmHWM", status)])) / 1024
fmt <- '{"times": [%s], "cpu": [%s], "objective": %.10f, "evaluations": %d, "peak_mb": %.1f}\n'
cat(sprintf(fmt, paste(times, collapse = ","), paste(cpu, collapse = ","), REMLcrit(m),
            m@optinfo$feval, hwm))
"""


def run_lme4(name: str, repeats: int, scale: float, tmp: Path) -> dict:
    csv = tmp / f"{name}.csv"
    load(name, scale).to_csv(csv, index=False)
    script = tmp / "worker.R"
    script.write_text(LME4_WORKER)
    case = CASES[name]
    cmd = ["Rscript", str(script), str(csv), case["formula"], ",".join(case["factors"])]
    out = subprocess.run(cmd + [str(repeats)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    evals = result["evaluations"]
    result["time_per_evaluation"] = statistics.median(result["times"]) / evals if evals else None
    return result


def run_python(tool: str, name: str, repeats: int, scale: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, "--cases", name]
    cmd += ["--repeats", str(repeats), "--scale", str(scale)]
    env = dict(os.environ)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="slopes,kb07,scalar")
    parser.add_argument("--tools", default="mixedmodels,lme4,mixedlm")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    parser.add_argument("--render", help="print the markdown of a saved <out>.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text())), end="")
        return
    if args.worker:
        work = {"mixedmodels": work_mixedmodels, "mixedlm": work_mixedlm}[args.worker]
        print(json.dumps(work(args.cases, args.repeats, args.scale)))
        return
    tools = [t for t in args.tools.split(",") if available(t)]
    results: dict = {"scale": args.scale, "load_before": os.getloadavg(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            results["cases"][name] = {}
            for tool in tools:
                peer_repeats = 1 if CASES[name]["large"] else args.repeats
                load_before = os.getloadavg()[0]
                if tool == "lme4":
                    r = run_lme4(name, peer_repeats, args.scale, Path(tmp))
                elif tool == "mixedlm":
                    r = run_python(tool, name, peer_repeats, args.scale)
                else:
                    r = run_python(tool, name, args.repeats, args.scale)
                r["median"] = statistics.median(r["times"])
                r["cpu_median"] = statistics.median(r["cpu"])
                r["load"] = [load_before, os.getloadavg()[0]]
                results["cases"][name][tool] = r
                print(
                    f"{name:7s} {tool:12s} median {fmt_time(r['median']):>10s}  "
                    f"cpu {fmt_time(r['cpu_median']):>10s}  "
                    f"evaluations {r['evaluations']:5d}  per evaluation "
                    f"{fmt_time(r['time_per_evaluation']):>9s}  objective {r['objective']:.6f}  "
                    f"load {r['load'][0]:.1f} -> {r['load'][1]:.1f}",
                    flush=True,
                )
    results["load_after"] = os.getloadavg()
    results["command"] = " ".join(["python benchmarks/crossed.py"] + sys.argv[1:])
    results["versions"] = versions(tools)
    text = render(results)
    print()
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=2))
        Path(args.out + ".md").write_text(text)


def versions(tools: list[str]) -> dict[str, str]:
    import numpy
    import scipy

    out = {"numpy": numpy.__version__, "scipy": scipy.__version__}
    if "mixedlm" in tools:
        import mixedlm

        out["mixedlm"] = mixedlm.__version__
    if "lme4" in tools:
        probe = subprocess.run(
            ["Rscript", "-e", 'cat(format(packageVersion("lme4")), R.version$version.string)'],
            capture_output=True,
            text=True,
        )
        out["lme4"] = probe.stdout.strip()
    return out


def render(results: dict) -> str:
    """Markdown: how the run was made, the table, and our structure per case."""
    before, after = results["load_before"][0], results["load_after"][0]
    lines = [
        f"Command: `{results.get('command', 'python benchmarks/crossed.py')}`; "
        f"load average (1 min) {before:.1f} at the start, {after:.1f} at the end "
        "(2-core machine shared with others; each row shows the load around it).  "
        f"Versions: {results.get('versions', {})}.",
        "",
        "| case | tool | median time per fit | time / mixedmodels | CPU time per fit | "
        "CPU / mixedmodels | evaluations | time per evaluation | REML criterion | "
        "peak memory (MB) | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_tool in results["cases"].items():
        ours = by_tool.get("mixedmodels", {}).get("median")
        ours_cpu = by_tool.get("mixedmodels", {}).get("cpu_median")
        for tool, r in by_tool.items():
            ratio = f"{r['median'] / ours:.2f}" if ours else "-"
            cpu_ratio = f"{r['cpu_median'] / ours_cpu:.2f}" if ours_cpu else "-"
            lines.append(
                f"| {name} | {tool} | {fmt_time(r['median'])} | {ratio} | "
                f"{fmt_time(r['cpu_median'])} | {cpu_ratio} | {r['evaluations']} | "
                f"{fmt_time(r['time_per_evaluation'])} | {r['objective']:.4f} | "
                f"{r['peak_mb']:.0f} | {r['load'][0]:.1f} -> {r['load'][1]:.1f} |"
            )
    for name, by_tool in results["cases"].items():
        if "mixedmodels" in by_tool:
            ours = by_tool["mixedmodels"]
            lines += ["", f"{name}, mixedmodels' structure:", "", "```"]
            lines += [ours["structure"], "```"]
            if "first_evaluation" in ours:
                lines += [
                    "",
                    f"First evaluation of a new problem (builds this structure): "
                    f"{fmt_time(ours['first_evaluation'])} wall; later evaluations "
                    f"{fmt_time(ours['time_per_evaluation'])}.",
                ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
