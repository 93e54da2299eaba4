"""Smooth terms: our fits against gamm4 (lme4 underneath) in the same run.

Each round times our fit plus its edf and coefficient covariance (what gamm4 returns: the
``gam`` object's edf and Vp), median of ``repeats`` after a warm-up, then gamm4 in a fresh R
process on the same rows (same repeats); rounds are interleaved to spread the machine's
noise over both.  Wall and CPU seconds are both recorded (CPU: ``time.process_time`` here,
R's user + system time there); on the shared machine the load inflates wall times, so the
CPU ratio is the steadier comparison.  Cases: the seven agreement cases of
tests/test_smooth_agreement.py, a 100,000-row ``y ~ s(x) + (1 | g)`` (1,000 groups)
against gamm4, and a 1,000,000-row one (10,000 groups) timed for us only (gamm4 needs
minutes there; ``--gamm4-large`` runs it).

usage: python benchmarks/smooths.py [--rounds 3] [--out benchmarks/results/smooths]
"""

from __future__ import annotations

import argparse
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

import numpy as np
import pandas as pd

import mixedmodels as mm

HERE = Path(__file__).parent
REF = json.loads((HERE.parent / "tests/reference/smooths/gamm4_cases.json").read_text())


def simulated(n: int, groups: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    g = rng.integers(0, groups, n)
    y = np.sin(2 * np.pi * x) + rng.normal(0, 0.5, groups)[g] + rng.normal(0, 0.3, n)
    return pd.DataFrame({"x": x, "g": [f"g{i}" for i in g], "y": y})


def cases() -> dict[str, dict]:
    out = {}
    for name, case in REF["cases"].items():
        out[name] = {
            "data": pd.DataFrame(case["data"]),
            "rhs": case["formula"].split("~", 1)[1].strip(),
            "random": case["random"],
            "family": case["family"],
            "repeats": 5 if case["family"] == "gaussian" else 2,
        }
    out["gaussian_tp_100k"] = {
        "data": simulated(100_000, 1_000),
        "rhs": "s(x)",
        "random": "~(1 | g)",
        "family": "gaussian",
        "repeats": 1,
    }
    out["gaussian_tp_1M"] = {
        "data": simulated(1_000_000, 10_000),
        "rhs": "s(x)",
        "random": "~(1 | g)",
        "family": "gaussian",
        "repeats": 1,
        "ours_only": True,
    }
    return out


def formula(case: dict) -> str:
    random = case["random"]
    return f"y ~ {case['rhs']}" + (f" + {random.lstrip('~').strip()}" if random else "")


def ours(case: dict) -> tuple[float, float, float, float]:
    """(median wall seconds, criterion, total edf, median CPU seconds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times, cpu = [], []
        warmup = int(case["repeats"] > 1)
        for i in range(case["repeats"] + warmup):
            t0, c0 = time.perf_counter(), time.process_time()
            fit = mm.gamm(formula(case), case["data"], case["family"])
            edf = float(fit._smooths.coefficients.edf.sum())
            if i >= warmup:  # the first is the warm-up (when there are repeats)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    crit = fit.objective if case["family"] == "gaussian" else -2 * fit.loglik
    return statistics.median(times), float(crit), edf, statistics.median(cpu)


def gamm4(case: dict, csv: Path) -> tuple[float, float, float, float] | None:
    """(median wall seconds, criterion, total edf, median CPU seconds), None without R."""
    if shutil.which("Rscript") is None:
        return None
    rhs = case["rhs"]
    args = [
        "Rscript",
        str(HERE / "smooths_worker.R"),
        str(csv),
        f"y ~ {rhs}",
        case["random"] or "NULL",
        case["family"],
        str(case["repeats"]),
        str(int(case["repeats"] > 1)),  # warm-up fits
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    times = np.atleast_1d(result["times"])  # one repeat comes back as a scalar
    cpu = np.atleast_1d(result["cpu"])
    return float(np.median(times)), result["criterion"], result["edf"], float(np.median(cpu))


def versions() -> dict:
    r = subprocess.run(
        [
            "Rscript",
            "-e",
            'cat(R.version.string, as.character(packageVersion("gamm4")),'
            ' as.character(packageVersion("mgcv")), as.character(packageVersion("lme4")),'
            ' sep = "|")',
        ],
        capture_output=True,
        text=True,
    ).stdout.split("|")
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mixedmodels": mm.__version__,
        "R": r[0] if r else None,
        "gamm4": r[1] if len(r) > 1 else None,
        "mgcv": r[2] if len(r) > 2 else None,
        "lme4": r[3] if len(r) > 3 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "smooths"))
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--gamm4-large", action="store_true")
    args = parser.parse_args()
    all_cases = cases()
    names = args.only or list(all_cases)
    load_before = os.getloadavg()
    results: dict[str, dict[str, list]] = {n: {"ours": [], "gamm4": []} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        csvs = {}
        for name in names:
            csvs[name] = Path(tmp) / f"{name}.csv"
            all_cases[name]["data"].to_csv(csvs[name], index=False)
        for _ in range(args.rounds):
            for name in names:
                case = all_cases[name]
                results[name]["ours"].append(ours(case))
                print(f"{name}: ours {results[name]['ours'][-1]}", file=sys.stderr, flush=True)
                if case.get("ours_only") and not args.gamm4_large:
                    continue
                theirs = gamm4(case, csvs[name])
                if theirs is not None:
                    results[name]["gamm4"].append(theirs)
                    print(f"{name}: gamm4 {theirs}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    rows = []
    for name in names:
        res = results[name]
        t_ours = statistics.median(r[0] for r in res["ours"])
        c_ours = statistics.median(r[3] for r in res["ours"])
        row = {
            "case": name,
            "n": len(all_cases[name]["data"]),
            "formula": formula(all_cases[name]),
            "family": all_cases[name]["family"],
            "ours_s": t_ours,
            "ours_cpu_s": c_ours,
            "ours_criterion": res["ours"][-1][1],
            "ours_edf": res["ours"][-1][2],
        }
        if res["gamm4"]:
            t_theirs = statistics.median(r[0] for r in res["gamm4"])
            c_theirs = statistics.median(r[3] for r in res["gamm4"])
            row.update(
                gamm4_s=t_theirs,
                gamm4_cpu_s=c_theirs,
                cpu_ratio=c_theirs / c_ours,
                gamm4_criterion=res["gamm4"][-1][1],
                gamm4_edf=res["gamm4"][-1][2],
                ratio=t_theirs / t_ours,
            )
        rows.append(row)
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "rounds": args.rounds,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpus": os.cpu_count(),
        "versions": versions(),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Smooth terms: ours vs gamm4",
        "",
        f"Command: `{report['command']}`  ",
        f"Load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
        f"on {report['cpus']} CPUs; medians over {args.rounds} round(s) of each case's "
        "repeats (ours: fit + edf and coefficient covariance; gamm4: its whole call); CPU: "
        "process time (ours), user + system (R).  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        "| case | n | ours (s) | gamm4 (s) | gamm4 / ours | ours CPU (s) | gamm4 CPU (s) "
        "| CPU gamm4 / ours | criterion ours | criterion gamm4 | edf ours | edf gamm4 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['n']:,} | {r['ours_s']:.3f} | "
            + (f"{r['gamm4_s']:.3f} | {r['ratio']:.1f}x | " if "gamm4_s" in r else "- | - | ")
            + f"{r['ours_cpu_s']:.3f} | "
            + (
                f"{r['gamm4_cpu_s']:.3f} | {r['cpu_ratio']:.1f}x | "
                if "gamm4_s" in r
                else "- | - | "
            )
            + f"{r['ours_criterion']:.6f} | "
            + (f"{r['gamm4_criterion']:.6f} | " if "gamm4_s" in r else "- | ")
            + f"{r['ours_edf']:.3f} | "
            + (f"{r['gamm4_edf']:.3f} |" if "gamm4_s" in r else "- |")
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
