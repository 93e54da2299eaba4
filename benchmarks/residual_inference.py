"""Inference on fits with residual structures (issue 12): Satterthwaite and Kenward-Roger
df and profile intervals that count the correlation / variance parameters.

usage: python benchmarks/residual_inference.py [--repeats 3]
                                               [--out benchmarks/results/residual_inference]

For each case the fit is made once, then each inference step is timed ``repeats`` times
on a fresh copy of the fit (the steps cache their pieces on the fit): the Satterthwaite
table, the Kenward-Roger table and all profile intervals (``confint("profile")``, ML
refit included).  Medians of CPU and wall seconds.  Peers: for the compound-symmetry
cases, whose fits equal lmer's nested model ``(1 | outer) + (1 | outer:inner)``,
lmerTest's ``summary(m, ddf = "Satterthwaite")`` and ``summary(m, ddf = "Kenward-Roger")``
(pbkrtest) in one Rscript process of the same run (medians of ``repeats``, elapsed; the
lmer fit excluded).  The load average is recorded: on a shared 2-core machine the times
are only indicative, CPU seconds the fairer number.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
DATA = ROOT / "src" / "mixedmodels" / "datasets" / "data"

R_WORKER = r"""
suppressMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
datadir <- args[1]; repeats <- as.integer(args[2])
source(file.path(args[3], "load_data.R"))
cases <- list(
  machines = list(data = "Machines", f = score ~ Machine + (1 | Worker) + (1 | Worker:Machine)),
  cake = list(data = "cake", f = angle ~ recipe + temp + (1 | replicate) + (1 | replicate:recipe)))
for (name in names(cases)) {
  d <- load_csv(cases[[name]]$data)
  m <- lmer(cases[[name]]$f, data = d)
  s <- sapply(1:repeats, function(i) system.time(summary(m, ddf = "Satterthwaite"))[["elapsed"]])
  k <- sapply(1:repeats, function(i) system.time(summary(m, ddf = "Kenward-Roger"))[["elapsed"]])
  cat(toJSON(list(case = name, satterthwaite = median(s), kenward_roger = median(k),
                  lmerTest = as.character(packageVersion("lmerTest")),
                  pbkrtest = as.character(packageVersion("pbkrtest"))), auto_unbox = TRUE), "\n")
}
"""


def cases(mm) -> dict:
    ovary = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
    return {
        "ovary_ar1": ("Ovary", ovary, {"correlation": mm.cor.AR1()}),
        "bodyweight_car1_varpower_time": (
            "BodyWeight",
            "weight ~ Time * Diet + (Time | Rat)",
            {"correlation": mm.cor.CAR1("Time"), "weights": mm.var.Power("Time")},
        ),
        "orthodont_varident": (
            "Orthodont",
            "distance ~ age * Sex + (1 | Subject)",
            {"weights": mm.var.Ident("Sex")},
        ),
        "machines": (
            "Machines",
            "score ~ Machine + (1 | Worker)",
            {"correlation": mm.cor.CompSymm(group="Worker/Machine")},
        ),
        "cake": (
            "cake",
            "angle ~ recipe + temp + (1 | replicate)",
            {"correlation": mm.cor.CompSymm(group="replicate/recipe")},
        ),
    }


def _time(step, fit, repeats: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeats):
        fresh = copy.copy(fit)  # shallow: the cached pieces live in the fit's __dict__
        fresh.__dict__ = {k: v for k, v in fit.__dict__.items() if not k.startswith("_ml")}
        for key in ("_variance_info",):
            fresh.__dict__.pop(key, None)
        c0, w0 = time.process_time(), time.perf_counter()
        step(fresh)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def time_ours(repeats: int) -> dict:
    import mixedmodels as mm

    out = {}
    steps = {
        "satterthwaite": lambda f: f.fixef_table(),
        "kenward_roger": lambda f: f.fixef_table("kenward-roger"),
        "profile": lambda f: f.confint("profile"),
    }
    for name, (data, formula, kwargs) in cases(mm).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = mm.lmer(formula, mm.datasets.load(data), **kwargs)
            row = {}
            for step, fn in steps.items():
                cpu, wall = _time(fn, fit, repeats)
                row[f"{step}_cpu"], row[f"{step}_wall"] = cpu, wall
        out[name] = row
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    return out


def time_r(repeats: int) -> dict:
    if shutil.which("Rscript") is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in DATA.glob("*.csv.gz"):
            with gzip.open(src) as fin, open(Path(tmp) / src.name[:-3], "wb") as fout:
                shutil.copyfileobj(fin, fout)
        shutil.copy(DATA / "schema.json", tmp)
        worker = Path(tmp) / "worker.R"
        worker.write_text(f"datadir <- commandArgs(trailingOnly = TRUE)[1]\n{R_WORKER}")
        cmd = ["Rscript", str(worker), tmp, str(repeats), str(ROOT / "tests" / "reference")]
        run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stderr[-2000:], file=sys.stderr)
        return {}
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {r["case"]: r for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "residual_inference"))
    args = parser.parse_args()
    import numpy as np

    import mixedmodels as mm

    load_before = os.getloadavg()[0]
    ours = time_ours(args.repeats)
    peers = time_r(args.repeats)
    load_after = os.getloadavg()[0]
    result = {
        "command": "python benchmarks/residual_inference.py " + " ".join(sys.argv[1:]),
        "load_average": [load_before, load_after],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "mixedmodels": getattr(mm, "__version__", "dev"),
            **{k: v for r in peers.values() for k, v in r.items() if k in ("lmerTest", "pbkrtest")},
        },
        "repeats": args.repeats,
        "ours": ours,
        "peers": peers,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Inference with residual structures: Satterthwaite, Kenward-Roger, profiles",
        "",
        f"Command: `{result['command']}`; load average {load_before:.1f} before, "
        f"{load_after:.1f} after (2 shared cores); medians of {args.repeats} repeats.",
        "",
        "| case | Satterthwaite CPU s (wall) | KR CPU s (wall) | all profile intervals CPU s "
        "(wall) | lmerTest Satterthwaite s | pbkrtest KR s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in ours.items():
        peer = peers.get(name, {})
        cells = [
            name,
            f"{row['satterthwaite_cpu']:.3f} ({row['satterthwaite_wall']:.3f})",
            f"{row['kenward_roger_cpu']:.3f} ({row['kenward_roger_wall']:.3f})",
            f"{row['profile_cpu']:.2f} ({row['profile_wall']:.2f})",
            f"{peer['satterthwaite']:.3f}" if peer else "-",
            f"{peer['kenward_roger']:.3f}" if peer else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Peers run lmer's nested model `(1 | outer) + (1 | outer:inner)`, whose marginal "
        "covariance is the compound-symmetry fit's (the df agree: "
        "tests/inference/test_residual_satterthwaite.py).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
