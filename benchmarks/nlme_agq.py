"""Adaptive Gauss-Hermite quadrature for nonlinear mixed models: ``mm.nlme(...,
method="Laplace", n_agq=k)`` for k = 1 (Laplace), 7 and 25, CPU per fit and the estimates.

Cases: nlme's Orange model (``Asym ~ 1 | Tree``: SSlogis is linear in Asym, so the Laplace
approximation is exact and every k gives the same fit), Orange with a random midpoint
(``xmid ~ 1 | Tree``), Theoph with a random absorption rate (``lKa ~ 1 | Subject``, where
the effect enters most nonlinearly) and a simulated logistic growth (12 groups of 4
observations, random midpoint sd 1.5 against a scale of 0.7, seed 7).  Also the one-node
criterion maximized jointly over (beta, theta, log sigma) (``fit_agq(..., 1)``): the
Laplace optimum, which the Laplace fit itself does not reach on Theoph.

No peer fits these (lme4 1.1-31's nlmer stops with "nAGQ > 1 not yet implemented for nlmer
models"); nlmer's Laplace fit of the same models is timed in the same run for scale
(R's ``system.time`` user + system, median of the repeats).

usage: python benchmarks/nlme_agq.py [--repeats 5] [--out benchmarks/results/nlme_agq]
Writes <out>.json and <out>.md.
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
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mixedmodels as mm
from mixedmodels.optim.nonlinear_agq import fit_agq

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from tests.reference.nlme.cases import load  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NODES = (1, 7, 25)


def simulated_logistic(seed: int = 7) -> pd.DataFrame:
    """12 groups x 4 times of a logistic curve with a random midpoint (sd 1.5)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(12):
        shift = rng.normal(0, 1.5)
        for t in (1.0, 3.0, 5.0, 7.0):
            mean = 10 / (1 + np.exp((4 + shift - t) / 0.7))
            rows.append((f"g{g:02d}", t, mean + rng.normal(0, 0.4)))
    return pd.DataFrame(rows, columns=["g", "t", "y"])


CASES = {
    "orange_asym": ("Orange", "circumference ~ SSlogis(age, Asym, xmid, scal)",
                    "Asym + xmid + scal ~ 1", "Asym ~ 1 | Tree"),
    "orange_xmid": ("Orange", "circumference ~ SSlogis(age, Asym, xmid, scal)",
                    "Asym + xmid + scal ~ 1", "xmid ~ 1 | Tree"),
    "theoph_lka": ("Theoph", "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
                   "lKe + lKa + lCl ~ 1", "lKa ~ 1 | Subject"),
    "simulated_logistic": ("simulated", "y ~ SSlogis(t, Asym, xmid, scal)",
                           "Asym + xmid + scal ~ 1", "xmid ~ 1 | g"),
}


def data_of(name: str) -> pd.DataFrame:
    return simulated_logistic() if name == "simulated" else load(name)


def summarise(fit) -> dict:
    return {"logLik": fit.loglik, "fixef": fit.fixef.to_dict(),
            "sd": float(fit.varcorr["StdDev"].iloc[0]), "sigma": fit.sigma,
            "se": fit.std_errors.to_dict()}


def ours(case: str, n_agq: int, repeats: int) -> dict:
    data_name, model, fixed, random = CASES[case]
    data = data_of(data_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.nlme(model, data, fixed, random, method="Laplace", n_agq=n_agq)  # warm-up
        cpu, wall = [], []
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            fit = mm.nlme(model, data, fixed, random, method="Laplace", n_agq=n_agq)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
    out = summarise(fit)
    out.update(cpu=statistics.median(cpu), wall=statistics.median(wall))
    if n_agq == 1:
        joint = fit_agq(fit.problem, fit.estimate, 1)
        out["laplace_joint_logLik"] = joint.loglik
    return out


R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE); here <- args[1]; repeats <- as.integer(args[2])
load <- function(n) read.csv(file.path(here, paste0(n, ".csv")), stringsAsFactors = TRUE)
Orange <- load("Orange"); Orange$Tree <- factor(Orange$Tree)
Theoph <- load("Theoph"); Theoph$Subject <- factor(Theoph$Subject)
time_it <- function(f) tryCatch({
  f(); t <- sapply(seq_len(repeats), function(i) { s <- system.time(f()); s[[1]] + s[[2]] })
  list(cpu = median(t), logLik = as.numeric(logLik(f())))
}, error = function(e) list(error = conditionMessage(e)))
so <- getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange)
st <- getInitial(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph)
out <- list(
  orange_asym = time_it(function() nlmer(
    circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree, Orange, start = so)),
  theoph_lka = time_it(function() nlmer(
    conc ~ SSfol(Dose, Time, lKe, lKa, lCl) ~ lKa | Subject, Theoph, start = st)),
  version = paste(R.version.string, "lme4", as.character(packageVersion("lme4"))))
cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
"""


def nlmer_laplace(repeats: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    data = ROOT / "tests" / "reference" / "nlme" / "data"
    out = subprocess.run(["Rscript", "-e", R_SCRIPT, str(data), str(repeats)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    lines = [
        "# nlme adaptive Gauss-Hermite quadrature",
        "",
        f"Command: `{result['command']}`  ",
        f"Load average before / after: {result['load_before']} / {result['load_after']}  ",
        f"Versions: {result['versions']}",
        "",
        "| case | n_agq | CPU s | logLik | fixed effects | random sd | sigma |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, by_k in result["cases"].items():
        for k, r in by_k.items():
            fixef = ", ".join(f"{v:.6g}" for v in r["fixef"].values())
            lines.append(f"| {case} | {k} | {r['cpu']:.3f} | {r['logLik']:.6f} | {fixef} | "
                         f"{r['sd']:.6g} | {r['sigma']:.6g} |")
        joint = by_k["1"].get("laplace_joint_logLik")
        if joint is not None:
            lines.append(f"| {case} | 1, jointly in sigma | | {joint:.6f} | | | |")
    peer = result.get("nlmer_laplace")
    if peer and "error" not in peer:
        lines += ["", f"nlmer (Laplace, {peer['version']}), same run: " + "; ".join(
            f"{c}: stops with \"{peer[c]['error'].strip()}\"" if "error" in peer[c]
            else f"{c} {peer[c]['cpu']:.3f} s CPU, logLik {peer[c]['logLik']:.6f}"
            for c in ("orange_asym", "theoph_lka"))]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "nlme_agq"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    cases = {case: {str(k): ours(case, k, args.repeats) for k in NODES} for case in CASES}
    peer = nlmer_laplace(args.repeats)
    result = {
        "command": "python benchmarks/nlme_agq.py " + " ".join(sys.argv[1:]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "mixedmodels": mm.__version__},
        "cases": cases,
        "nlmer_laplace": peer,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
