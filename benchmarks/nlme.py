"""Nonlinear mixed models: ``mm.nlme`` against ``nlme::nlme`` in the same run.

The cases are those of tests/reference/nlme/cases.py (Orange logistic growth, Theoph
first-order absorption, Soybean with Variety and varPower, Loblolly, CO2).  Each round times
ours (median of ``repeats`` after a warm-up, starting values included) and then nlme in a
fresh R process (benchmarks/nlme_worker.R, same repeats, getInitial() included); rounds are
interleaved to spread the machine's noise over both.  A repeat times ``batch`` fits back to
back and divides by ``batch``, on both sides: R's ``system.time`` counts whole milliseconds,
and nlme's small fits take 10-20 of them (one batch of 1 rounds them by up to 5-10%).
Reports medians over rounds, the ratio nlme / ours and both log-likelihoods (nlme stops
at its default tolerance, ours at the fixed point, so they differ in the 6th-7th digit).
Wall and CPU time are both recorded: the machine is shared, and CPU time is the steadier
measure under load (R's ``system.time`` user + system on its side).

usage: python benchmarks/nlme.py [--rounds 3] [--repeats 5] [--batch 10]
[--out benchmarks/results/nlme] [--numpy]
Writes <out>.json and <out>.md (default benchmarks/results/nlme.json and nlme.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import mixedmodels as mm
from mixedmodels.core import nonlinear

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from tests.reference.nlme.cases import CASES, arguments, reference  # noqa: E402

DATA = ROOT / "tests" / "reference" / "nlme" / "data"
RESULTS = Path(__file__).parent / "results"


def ours(name: str, repeats: int, ref: dict, batch: int = 1) -> tuple[float, float, float]:
    """Median wall time, median CPU time (each per fit, over repeats of ``batch`` fits),
    log-likelihood."""
    data, kwargs = arguments(name, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.nlme(data=data, **kwargs)  # warm-up
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(batch):
                fit = mm.nlme(data=data, **kwargs)
            times.append((time.perf_counter() - t0) / batch)
            cpu.append((time.process_time() - c0) / batch)
    return statistics.median(times), statistics.median(cpu), fit.loglik


def first_fit() -> float:
    """CPU seconds of the first fit (orange_ml) in a fresh process: the compiled kernels'
    import (numba's, from its cache) and the program binding included, which the warm
    repeats do not see."""
    code = (
        "import sys, time, warnings; sys.path.insert(0, sys.argv[1]); "
        "import mixedmodels as mm; from mixedmodels.core import nonlinear; "
        "from tests.reference.nlme.cases import arguments; "
        "nonlinear.USE_KERNELS = sys.argv[2] == '1'; "
        "data, kw = arguments('orange_ml'); warnings.simplefilter('ignore'); "
        "t = time.process_time(); mm.nlme(data=data, **kw); print(time.process_time() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT),
                          "1" if nonlinear.USE_KERNELS else "0"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def theirs(repeats: int, batch: int = 1) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(
        ["Rscript", str(Path(__file__).parent / "nlme_worker.R"), str(DATA), str(repeats),
         str(batch)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def r_version() -> str:
    out = subprocess.run(["Rscript", "-e", 'cat(R.version.string, "nlme",'
                          ' as.character(packageVersion("nlme")))'],
                         capture_output=True, text=True)
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10,
                        help="fits timed together per repeat (both sides)")
    parser.add_argument("--out", default=str(RESULTS / "nlme"))
    parser.add_argument("--numpy", action="store_true",
                        help="without the compiled kernels (core/nonlinear_kernels.py)")
    args = parser.parse_args()
    if args.numpy:
        nonlinear.USE_KERNELS = False
    kernels = ("numba " + importlib.metadata.version("numba")
               if nonlinear.pls_kernels() is not None else "numpy only")
    first = first_fit()
    out = Path(args.out)
    ref = reference()
    load_before = os.getloadavg()
    res: dict[str, dict[str, list]] = {k: {"ours": [], "nlme": []} for k in CASES}
    for _ in range(args.rounds):
        for name in CASES:
            res[name]["ours"].append(ours(name, args.repeats, ref, args.batch))
        r = theirs(args.repeats, args.batch)
        if r is not None:
            for name in CASES:
                res[name]["nlme"].append((statistics.median(r[name]["times"]),
                                          statistics.median(r[name]["cpu"]),
                                          r[name]["loglik"],
                                          statistics.median(r[name]["converged"]["cpu"]),
                                          r[name]["converged"]["loglik"]))
    rows = []
    for name, v in res.items():
        t_ours = statistics.median(x[0] for x in v["ours"])
        c_ours = statistics.median(x[1] for x in v["ours"])
        row = {"case": name, "ours_s": t_ours, "ours_cpu_s": c_ours,
               "loglik_ours": v["ours"][-1][2]}
        if v["nlme"]:
            t_nlme = statistics.median(x[0] for x in v["nlme"])
            c_nlme = statistics.median(x[1] for x in v["nlme"])
            c_conv = statistics.median(x[3] for x in v["nlme"])
            row.update(nlme_s=t_nlme, nlme_cpu_s=c_nlme, ratio=t_nlme / t_ours,
                       ratio_cpu=c_nlme / c_ours, loglik_nlme=v["nlme"][-1][2],
                       nlme_converged_cpu_s=c_conv, ratio_converged_cpu=c_conv / c_ours,
                       loglik_nlme_converged=v["nlme"][-1][4])
        rows.append(row)
    meta = {
        "command": "python benchmarks/nlme.py " + " ".join(sys.argv[1:]),
        "rounds": args.rounds, "repeats": args.repeats, "batch": args.batch,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "python": platform.python_version(), "numpy": np.__version__,
        "mixedmodels": mm.__version__, "R": r_version() if shutil.which("Rscript") else None,
        "cpu_count": os.cpu_count(), "kernels": kernels, "first_fit_cpu_s": first,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# Nonlinear mixed models: mm.nlme vs nlme::nlme",
        "",
        f"Command: `{meta['command']}`; {meta['date']}; load average before "
        f"{load_before[0]:.2f}, after {meta['load_average_after'][0]:.2f} "
        f"({meta['cpu_count']} cores, shared); Python {meta['python']}, numpy "
        f"{meta['numpy']}; {meta['R']}.  Medians of {args.repeats} repeats x "
        f"{args.rounds} rounds, each repeat {args.batch} fits back to back (time per fit),"
        " starting values included on both sides.",
        "",
        f"Least squares and cross-products: {kernels} (core/nonlinear_kernels.py; "
        "`--numpy` times the numpy code).  The first fit in a fresh process (orange_ml, "
        f"the kernels' import included): {1e3 * first:.0f} ms CPU; the table's times are "
        "warm fits.",
        "",
        "nlme converged: the same fit with tolerance = 1e-9, pnlsTol = 1e-8 (the fixed point"
        " that mm.nlme reaches, and the reference of the agreement tests).",
        "",
        "| case | ours wall (ms) | nlme wall (ms) | nlme / ours | ours CPU (ms) | nlme CPU (ms)"
        " | nlme / ours (CPU) | nlme converged CPU (ms) | ratio | logLik ours | logLik nlme"
        " | logLik nlme converged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "nlme_s" in row:
            lines.append(f"| {row['case']} | {1e3 * row['ours_s']:.1f} | "
                         f"{1e3 * row['nlme_s']:.1f} | {row['ratio']:.2f}x | "
                         f"{1e3 * row['ours_cpu_s']:.1f} | {1e3 * row['nlme_cpu_s']:.1f} | "
                         f"{row['ratio_cpu']:.2f}x | {1e3 * row['nlme_converged_cpu_s']:.1f} | "
                         f"{row['ratio_converged_cpu']:.2f}x | "
                         f"{row['loglik_ours']:.6f} | {row['loglik_nlme']:.6f} | "
                         f"{row['loglik_nlme_converged']:.6f} |")
        else:
            lines.append(f"| {row['case']} | {1e3 * row['ours_s']:.1f} | - | - | "
                         f"{1e3 * row['ours_cpu_s']:.1f} | - | - | - | - | "
                         f"{row['loglik_ours']:.6f} | - | - |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
