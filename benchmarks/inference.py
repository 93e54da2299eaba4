"""Inference timings: Satterthwaite df against the fit itself (InstEval), the parametric
bootstrap (1,000 sleepstudy replicates, 1 and 2 processes), and how Kenward-Roger scales
(ours: q x q algebra; pbkrtest: n x n matrices) on simulated random-intercept data.

usage: python benchmarks/inference.py [--kr-groups 500,1000,2000,4000] [--pbkrtest]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mixedmodels as mm
from mixedmodels.simulate import simulate_mixed

sys.path.insert(0, str(Path(__file__).parent))
import markdown  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def satterthwaite_insteval() -> None:
    df = mm.datasets.load("InstEval")
    formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
    fits = []
    t_fit = median_time(lambda: fits.append(mm.lmer(formula, df)), 3)
    fit = fits[-1]

    def satterthwaite():
        fit.__dict__.pop("_variance_info", None)  # recompute every time
        fit.fixef_table("satterthwaite")

    t_df = median_time(satterthwaite, 3)
    markdown.row(
        [
            "InstEval Satterthwaite df",
            f"{t_df:.2f} s",
            f"fit {t_fit:.2f} s",
            f"ratio {t_df / t_fit:.2f}",
        ]
    )


def bootstrap_sleepstudy() -> None:
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    for jobs in (1, 2):
        t = median_time(lambda j=jobs: fit.bootstrap(1000, seed=1, n_jobs=j, progress=False), 3)
        markdown.row(
            [f"bootstrap 1,000 sleepstudy replicates, n_jobs={jobs}", f"{t:.2f} s", "", ""]
        )


KR_WORKER = """
import json, sys, time, warnings
import pandas as pd, mixedmodels as mm
warnings.simplefilter("ignore")
df = pd.read_csv(sys.argv[1]); df["cluster"] = df["cluster"].astype("category")
fit = mm.lmer("y ~ x + (1 | cluster)", df)
t0 = time.perf_counter(); fit.fixef_table("kenward-roger"); t = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": t, "peak_mb": int(hwm) / 1024}))
"""

KR_R = """
suppressMessages({library(lme4); library(pbkrtest)})
a <- commandArgs(trailingOnly = TRUE); d <- read.csv(a[1]); d$cluster <- factor(d$cluster)
m <- lmer(y ~ x + (1 | cluster), d)
t0 <- proc.time()[["elapsed"]]
s <- summary(lmerTest::as_lmerModLmerTest(m), ddf = "Kenward-Roger")
t <- proc.time()[["elapsed"]] - t0
st <- readLines("/proc/self/status")
hwm <- as.numeric(gsub("[^0-9]", "", st[grepl("^VmHWM", st)])) / 1024
cat(sprintf('{"seconds": %.3f, "peak_mb": %.1f}\\n', t, hwm))
"""


def kenward_roger_scaling(groups: list[int], with_pbkrtest: bool, timeout: float) -> None:
    markdown.header(
        [
            "clusters",
            "rows",
            "ours: KR time",
            "ours: peak MB",
            "pbkrtest: KR time",
            "pbkrtest: peak MB",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        for g in groups:
            df = simulate_mixed(g, 10, seed=g)
            csv = Path(tmp) / f"kr_{g}.csv"
            df.to_csv(csv, index=False)
            ours = json.loads(
                subprocess.run(
                    [sys.executable, "-c", KR_WORKER, str(csv)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            peer = "-", "-"
            if with_pbkrtest and shutil.which("Rscript"):
                script = Path(tmp) / "kr.R"
                script.write_text(KR_R)
                try:
                    out = subprocess.run(
                        ["Rscript", str(script), str(csv)],
                        capture_output=True,
                        text=True,
                        timeout=timeout,
                    )
                    if out.returncode == 0:
                        r = json.loads(out.stdout.strip().splitlines()[-1])
                        peer = f"{r['seconds']:.2f} s", f"{r['peak_mb']:.0f}"
                    else:
                        peer = "failed", out.stderr.strip().splitlines()[-1][:60]
                except subprocess.TimeoutExpired:
                    peer = f"> {timeout:.0f} s (stopped)", "-"
            markdown.row([g, 10 * g, f"{ours['seconds']:.2f} s", f"{ours['peak_mb']:.0f}", *peer])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kr-groups", default="500,1000,2000,4000")
    parser.add_argument("--pbkrtest", action="store_true", help="run pbkrtest side by side")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    markdown.header(["inference task", "time", "", ""])
    satterthwaite_insteval()
    bootstrap_sleepstudy()
    print()
    groups = [int(g) for g in args.kr_groups.split(",")]
    kenward_roger_scaling(groups, args.pbkrtest, args.timeout)


if __name__ == "__main__":
    main()
