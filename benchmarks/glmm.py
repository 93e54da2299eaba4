"""glmer (Laplace) timings: mixedmodels, lme4 and mixedlm side by side in one run (issue 8).

usage: python benchmarks/glmm.py [--cases cbpp,grouseticks,...] [--tools ...] [--rounds 3]
                                 [--out benchmarks/results/glmm]
       python benchmarks/glmm.py --render benchmarks/results/glmm.json
       python benchmarks/glmm.py --families [--rounds 3] [--repeats 3] [--out ...]
           (issue 14's families against lme4 and glmmTMB: benchmarks/glmm_families.py)

Cases (``glmer`` defaults: Laplace, lme4's two stages):

- ``cbpp``: ``cbind(incidence, size - incidence) ~ period + (1 | herd)``, binomial
- ``grouseticks``: ``TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)``, poisson
- ``grouseticks_index``: the same with the observation-level term ``(1 | INDEX)`` (q = 584)
- ``grouseticks_height``: ``grouseticks_index`` with the uncentred ``HEIGHT``
- ``verbagg``: ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``, binomial
- ``binary100k``: simulated, 100,000 binary rows, ``y ~ x + (1 | subj) + (1 | item)``,
  2,000 subjects x 200 items (each subject sees 50 distinct items), fixed seed

Each (tool, case) runs in a fresh process per round; in it the data are loaded (not timed),
small cases are fitted once untimed (warm-up) and then ``repeats`` times.  Rounds
interleave the tools so that the machine's noise falls on all of them.  Reported: the
median time per fit over all rounds, its ratio to mixedmodels, the CPU time (user + system,
all threads), the log-likelihood each reached, optimizer evaluations (ours: Laplace and
nAGQ = 0 evaluations including the Hessian's), and peak memory (VmHWM of the worker
process, with its resident size before the first fit).  The machine's load average is
recorded around each run: it is a shared 2-core machine and timings mean little when busy.
"""

from __future__ import annotations

import argparse
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

CASES = {
    "cbpp": {
        "data": "cbpp",
        "formula": "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "family": "binomial",
        "repeats": 5,
    },
    "grouseticks": {
        "data": "grouseticks",
        "formula": "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
        "family": "poisson",
        "repeats": 3,
    },
    "grouseticks_index": {
        "data": "grouseticks",
        "formula": "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "family": "poisson",
        "repeats": 2,
    },
    "grouseticks_height": {
        "data": "grouseticks",
        "formula": "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "family": "poisson",
        "repeats": 2,
    },
    "verbagg": {
        "data": "VerbAgg",
        "formula": "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "family": "binomial",
        "repeats": 1,
    },
    "binary100k": {
        "data": "simulated",
        "formula": "y ~ x + (1 | subj) + (1 | item)",
        "family": "binomial",
        "repeats": 1,
        "large": True,
    },
}


def simulate_binary(n_subjects: int = 2_000, n_items: int = 200, per: int = 50, seed: int = 8):
    """``y ~ Bernoulli(logit^-1(-0.5 + 0.8 x + b_subj + c_item))``, subject sd 1, item sd
    0.5; every subject sees ``per`` distinct items drawn at random, one row each."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), per)
    item = np.argsort(rng.random((n_subjects, n_items)), axis=1)[:, :per].ravel()
    x = rng.normal(size=subj.size)
    eta = -0.5 + 0.8 * x + rng.normal(size=n_subjects)[subj] + 0.5 * rng.normal(size=n_items)[item]
    y = (rng.random(subj.size) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "subj": pd.Categorical([f"s{i}" for i in subj]),
            "item": pd.Categorical([f"i{i}" for i in item]),
        }
    )


def load(name: str):
    data = CASES[name]["data"]
    if data == "simulated":
        return simulate_binary()
    import mixedmodels as mm

    return mm.datasets.load(data)


def peak_mb() -> float:
    return _status_mb("VmHWM")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fit_once, repeats: int, warm_up: bool):
    times, cpu, fit = [], [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if warm_up:
            fit_once()
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), cpu_seconds()
            fit = fit_once()
            times.append(time.perf_counter() - t0)
            cpu.append(cpu_seconds() - c0)
    return times, cpu, fit


# ----------------------------------------------------------------- workers (fresh process)
def work_mixedmodels(name: str, repeats: int) -> dict:
    import mixedmodels as mm

    case = CASES[name]
    df = load(name)
    rss = rss_mb()
    times, cpu, fit = _timed(
        lambda: mm.glmer(case["formula"], df, case["family"]), repeats, not case.get("large")
    )
    return {
        "times": times,
        "cpu": cpu,
        "loglik": float(fit.loglik),
        "evaluations": int(fit.n_evaluations),
        "structure": fit.problem.describe_solver(),
        "rss_before_mb": rss,
        "peak_mb": peak_mb(),
    }


def work_mixedlm(name: str, repeats: int) -> dict:
    import mixedlm
    from mixedlm.families import Binomial, Poisson

    case = CASES[name]
    df = load(name)
    family = {"binomial": Binomial, "poisson": Poisson}[case["family"]]()
    rss = rss_mb()
    try:
        times, cpu, m = _timed(
            lambda: mixedlm.glmer(case["formula"], df, family=family),
            repeats,
            not case.get("large"),
        )
    except Exception as exc:  # a peer failing on a case is a result
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    ll = m.logLik()
    return {
        "times": times,
        "cpu": cpu,
        "loglik": float(getattr(ll, "value", ll)),
        "evaluations": None,
        "rss_before_mb": rss,
        "peak_mb": peak_mb(),
    }


LME4_WORKER = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
facs <- strsplit(args[3], ",")[[1]]
for (f in facs) d[[f]] <- factor(d[[f]])
form <- as.formula(args[2]); fam <- get(args[4])
repeats <- as.integer(args[5]); warmup <- as.integer(args[6])
for (i in seq_len(warmup)) m <- glmer(form, d, family = fam)
times <- numeric(repeats); cpu <- numeric(repeats)
for (i in seq_len(repeats)) {
  t0 <- proc.time(); m <- glmer(form, d, family = fam); dt <- proc.time() - t0
  times[i] <- dt[["elapsed"]]; cpu[i] <- dt[["user.self"]] + dt[["sys.self"]]
}
status <- readLines("/proc/self/status")
hwm <- as.numeric(gsub("[^0-9]", "", status[grepl("^VmHWM", status)])) / 1024
fmt <- '{"times": [%s], "cpu": [%s], "loglik": %.10f, "evaluations": %d, "peak_mb": %.1f}\n'
cat(sprintf(fmt, paste(times, collapse = ","), paste(cpu, collapse = ","),
            as.numeric(logLik(m)), sum(m@optinfo$feval), hwm))
"""


def run_lme4(name: str, repeats: int, tmp: Path) -> dict:
    case = CASES[name]
    csv = tmp / f"{name}.csv"
    frame = load(name)
    factors = [c for c in frame.columns if str(frame[c].dtype) == "category"]
    if not csv.exists():
        frame.to_csv(csv, index=False)
    del frame
    script = tmp / "worker.R"
    script.write_text(LME4_WORKER)
    cmd = ["Rscript", str(script), str(csv), case["formula"], ",".join(factors)]
    cmd += [case["family"], str(repeats), "0" if case.get("large") else "1"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_python(tool: str, name: str, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, "--cases", name, "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1e3:.0f} ms" if t < 1 else f"{t:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--tools", default="mixedmodels,lme4,mixedlm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    parser.add_argument("--render", help="print the markdown of a saved <out>.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text())), end="")
        return
    if args.worker:
        work = {"mixedmodels": work_mixedmodels, "mixedlm": work_mixedlm}[args.worker]
        print(json.dumps(work(args.cases, args.repeats)))
        return
    tools = [t for t in args.tools.split(",") if available(t)]
    names = args.cases.split(",")
    results: dict = {"load_before": os.getloadavg(), "cases": {n: {} for n in names}}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name in names:
                for tool in tools:
                    repeats = CASES[name]["repeats"]
                    load_before = os.getloadavg()[0]
                    if tool == "lme4":
                        r = run_lme4(name, repeats, Path(tmp))
                    else:
                        r = run_python(tool, name, repeats)
                    r["load"] = [load_before, os.getloadavg()[0]]
                    runs = results["cases"][name].setdefault(tool, [])
                    runs.append(r)
                    if "error" in r:
                        print(f"{name:18s} {tool:12s} error: {r['error']}", flush=True)
                        continue
                    t, c = statistics.median(r["times"]), statistics.median(r["cpu"])
                    print(
                        f"{name:18s} {tool:12s} median {fmt_time(t):>8s}  cpu {fmt_time(c):>8s}  "
                        f"logLik {r['loglik']:.4f}  peak {r['peak_mb']:.0f} MB  "
                        f"load {r['load'][0]:.1f} -> {r['load'][1]:.1f}",
                        flush=True,
                    )
    results["load_after"] = os.getloadavg()
    results["command"] = " ".join(["python benchmarks/glmm.py"] + sys.argv[1:])
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

    import mixedmodels

    out = {"numpy": numpy.__version__, "scipy": scipy.__version__}
    out["mixedmodels"] = getattr(mixedmodels, "__version__", "?")
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


def summarize(runs: list[dict]) -> dict | None:
    """Median over every timed fit of every round; the last round's other values."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return None
    return {
        "median": statistics.median(t for r in ok for t in r["times"]),
        "cpu": statistics.median(t for r in ok for t in r["cpu"]),
        "loglik": ok[-1]["loglik"],
        "evaluations": ok[-1].get("evaluations"),
        "peak_mb": max(r["peak_mb"] for r in ok),
        "rss_before_mb": ok[-1].get("rss_before_mb"),
        "load": [min(r["load"][0] for r in ok), max(r["load"][1] for r in ok)],
        "fits": sum(len(r["times"]) for r in ok),
    }


def render(results: dict) -> str:
    """Markdown: how the run was made, the table, and our structure per case."""
    before, after = results["load_before"][0], results["load_after"][0]
    lines = [
        f"Command: `{results.get('command', 'python benchmarks/glmm.py')}`; load average "
        f"(1 min) {before:.1f} at the start, {after:.1f} at the end (2-core machine shared "
        "with other engineers' jobs: the timings are under load; each row shows the range of "
        f"the load around its runs).  Versions: {results.get('versions', {})}.",
        "",
        "| case | tool | median time per fit | time / mixedmodels | CPU per fit | "
        "logLik | evaluations | peak memory (MB) | fits | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_tool in results["cases"].items():
        ours = summarize(by_tool.get("mixedmodels", []))
        for tool, runs in by_tool.items():
            s = summarize(runs)
            if s is None:
                err = runs[-1].get("error", "failed")
                lines.append(f"| {name} | {tool} | fails: {err} | | | | | | | |")
                continue
            ratio = f"{s['median'] / ours['median']:.2f}" if ours else "-"
            peak = f"{s['peak_mb']:.0f}"
            if s.get("rss_before_mb"):
                peak += f" (before the fit {s['rss_before_mb']:.0f})"
            lines.append(
                f"| {name} | {tool} | {fmt_time(s['median'])} | {ratio} | {fmt_time(s['cpu'])} "
                f"| {s['loglik']:.4f} | {s['evaluations'] if s['evaluations'] else '-'} | "
                f"{peak} | {s['fits']} | {s['load'][0]:.1f} -> {s['load'][1]:.1f} |"
            )
    for name, by_tool in results["cases"].items():
        runs = [r for r in by_tool.get("mixedmodels", []) if "error" not in r]
        if runs and runs[-1].get("structure"):
            lines += ["", f"{name}, mixedmodels' scoring-step structure:", "", "```"]
            lines += [runs[-1]["structure"], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--families" in sys.argv:
        # the GLMM families (Gamma, inverse Gaussian, negative binomial, beta, zero
        # inflation, ...) are timed by their own script, whose cases are the agreement tests'
        sys.argv.remove("--families")
        sys.path.insert(0, str(Path(__file__).parent))
        import glmm_families

        glmm_families.main(command_prefix="benchmarks/glmm.py --families")
    else:
        main()
