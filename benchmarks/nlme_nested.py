"""Nested grouping levels in ``mm.nlme`` (``random="Asym ~ 1 | site/plot"``) against
``nlme::nlme`` in the same run: CPU per fit (medians over the repeats, after a warm-up) and
the log-likelihoods.

Cases: the nlmecheck case ``nested_groups`` (4 sites x 5 plots x 7 ages, ML) and the four of
tests/reference/nlmelevels (REML on the same data; 6 sites x 4 plots x 8 ages with two
random effects per level, pdDiag and general; a site-level covariate on the asymptote).
nlme runs with its defaults and with the tight control of the reference (tolerance 1e-9,
pnlsTol 1e-8, msMaxIter 500, maxIter 500, pnlsMaxIter 50: the fixed point mm.nlme
computes); both start from the pooled getInitial() values, timed with the fit.  R's time is
``system.time`` user + system.

usage: python benchmarks/nlme_nested.py [--repeats 5] [--out benchmarks/results/nlme_nested]
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

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
LEVELS = ROOT / "tests" / "reference" / "nlmelevels"
CHECK = ROOT / "tests" / "reference" / "nlmecheck"


def cases() -> dict[str, tuple[Path, dict]]:
    """Case -> (data file, mm.nlme keyword arguments), from the reference JSONs."""
    check = json.loads((CHECK / "nlmecheck_reference.json").read_text())["cases"]
    levels = json.loads((LEVELS / "nlmelevels_reference.json").read_text())["cases"]
    out = {"nested_groups": (CHECK / "data" / "nested_groups.csv", check["nested_groups"]["py"])}
    for name, case in levels.items():
        out[name] = (LEVELS / "data" / f"{name}.csv", case["py"])
    return out


def ours(path: Path, kwargs: dict, repeats: int) -> dict:
    data = pd.read_csv(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.nlme(data=data, **kwargs)  # warm-up
        cpu = []
        for _ in range(repeats):
            c0 = time.process_time()
            fit = mm.nlme(data=data, **kwargs)
            cpu.append(time.process_time() - c0)
    return {"cpu": statistics.median(cpu), "logLik": fit.loglik,
            "iterations": fit.estimate.iterations}


R_SCRIPT = r"""
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
check <- args[1]; levels <- args[2]; repeats <- as.integer(args[3])
tight <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500, maxIter = 500,
                     pnlsMaxIter = 50, returnObject = TRUE)
d1 <- read.csv(file.path(check, "data", "nested_groups.csv"))
d2 <- read.csv(file.path(levels, "data", "nested_diag2.csv"))
d3 <- read.csv(file.path(levels, "data", "nested_covariate.csv"))
m <- size ~ SSlogis(age, Asym, xmid, scal)
cases <- list(
  nested_groups = quote(nlme(m, data = d1, fixed = Asym + xmid + scal ~ 1,
    random = Asym ~ 1 | site/plot, start = getInitial(m, data = d1))),
  nested_reml = quote(nlme(m, data = d1, fixed = Asym + xmid + scal ~ 1,
    random = Asym ~ 1 | site/plot, start = getInitial(m, data = d1), method = "REML")),
  nested_diag2 = quote(nlme(m, data = d2, fixed = Asym + xmid + scal ~ 1,
    random = list(site = pdDiag(Asym + xmid ~ 1), plot = pdDiag(Asym + xmid ~ 1)),
    start = getInitial(m, data = d2))),
  nested_general2 = quote(nlme(m, data = d2, fixed = Asym + xmid + scal ~ 1,
    random = Asym + xmid ~ 1 | site/plot, start = getInitial(m, data = d2))),
  nested_covariate = quote(nlme(m, data = d3, fixed = list(Asym ~ x, xmid + scal ~ 1),
    random = Asym ~ 1 | site/plot,
    start = {s <- getInitial(m, data = d3); c(s[1], 0, s[2], s[3])})))
timed <- function(call) {
  fit <- suppressWarnings(eval(call))
  cpu <- replicate(repeats, {s <- system.time(fit <- suppressWarnings(eval(call)));
                             s[["user.self"]] + s[["sys.self"]]})
  list(cpu = median(cpu), logLik = as.numeric(logLik(fit)))
}
out <- list()
for (name in names(cases)) {
  tight_call <- cases[[name]]
  tight_call$control <- quote(tight)
  out[[name]] <- list(default = timed(cases[[name]]), tight = timed(tight_call))
}
out$version <- paste(R.version.string, "nlme", as.character(packageVersion("nlme")))
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
"""


def nlme_peer(repeats: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(["Rscript", "-e", R_SCRIPT, str(CHECK), str(LEVELS), str(repeats)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    peer = result.get("nlme") or {}
    lines = [
        "# nlme with nested grouping levels (site/plot)",
        "",
        f"Command: `{result['command']}`  ",
        f"Load average before / after: {result['load_before']} / {result['load_after']}  ",
        f"Versions: {result['versions']}; {peer.get('version', 'nlme not run')}",
        "",
        "| case | mm.nlme CPU s | nlme default CPU s | nlme tight CPU s | ratio (tight) | "
        "ratio (default) | logLik mm.nlme | logLik nlme tight |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if "error" in peer:
        lines.insert(5, f"nlme failed: {peer['error']}  ")
    for case, r in result["cases"].items():
        p = peer.get(case)
        if p:
            d, t = p["default"], p["tight"]
            lines.append(
                f"| {case} | {r['cpu']:.4f} | {d['cpu']:.4f} | {t['cpu']:.4f} | "
                f"{t['cpu'] / r['cpu']:.2f}x | {d['cpu'] / r['cpu']:.2f}x | "
                f"{r['logLik']:.6f} | {t['logLik']:.6f} |")
        else:
            lines.append(f"| {case} | {r['cpu']:.4f} | | | | | {r['logLik']:.6f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "nlme_nested"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    ours_cases = {name: ours(path, kwargs, args.repeats)
                  for name, (path, kwargs) in cases().items()}
    peer = nlme_peer(args.repeats)
    result = {
        "command": "python benchmarks/nlme_nested.py " + " ".join(sys.argv[1:]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "mixedmodels": mm.__version__},
        "cases": ours_cases,
        "nlme": peer,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
