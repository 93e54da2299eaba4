"""GLMM-family fits against lme4 (glmer, glmer.nb) and glmmTMB, in the same run.

The cases are the agreement tests' (tests/reference/families): for each, our fit (median of
``repeats`` wall-clock times after a warm-up, in this process) and, in one R process started
right after, lme4 (the lme4 cases) and glmmTMB (every case; Gamma, inverse Gaussian and
gaussian cases with glmmTMB's own fit of that family, glmer.nb cases as nbinom2) timed the
same way.  Rounds are interleaved.  Reports medians over rounds, ratios peer / ours and the
log-likelihoods (glmmTMB's differ from lme4's where lme4's Laplace deviance is not the
model's likelihood: the dispersion families).

usage: python benchmarks/glmm_families.py [--rounds 3] [--repeats 3] [--data-dir ../shared/data]
       [--out benchmarks/results/glmm_families]
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

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
import mixedmodels as mm  # noqa: E402
from tests.family_cases import DATA_DIR, family_cases  # noqa: E402

CASES = [
    "sleepstudy_gamma_log",
    "gamma_sim_log",
    "sleepstudy_invgauss_log",
    "orthodont_gaussian_log",
    "grouseticks_glmer_nb",
    "salamanders_glmer_nb",
    "salamanders_nbinom2",
    "owls_nbinom1",
    "beta_sim_logit",
    "salamanders_zip",
    "owls_zinb1",
]


def ours(case, repeats: int) -> tuple[float, float, float]:
    """Median wall time, median CPU time (this process, all threads) and the logLik: the
    fit alone, the data read once before (as the R worker reads its CSV once)."""
    frame = case.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit(frame)  # warm-up
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fit = case.fit(frame)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return statistics.median(times), fit.loglik, statistics.median(cpu)


def peers(cases, data_dir: str, repeats: int) -> dict[str, dict]:
    if shutil.which("Rscript") is None:
        return {}
    spec = [
        {k: c.reference.get(k) for k in ("engine", "data", "formula", "family", "link", "zi")}
        | {"name": c.name}
        for c in cases
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    worker = Path(__file__).parent / "glmm_families_worker.R"
    out = subprocess.run(
        ["Rscript", str(worker), data_dir, str(DATA_DIR), fh.name, str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(fh.name)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["name"]: r for r in rows}


def _as_list(value) -> list[float]:
    """R's toJSON writes a single time as a number, not a list."""
    return value if isinstance(value, list) else [value]


def versions() -> dict[str, str]:
    r = subprocess.run(
        [
            "Rscript",
            "-e",
            'cat(R.version.string, "| lme4", as.character(packageVersion("lme4")),'
            ' "| glmmTMB", as.character(packageVersion("glmmTMB")))',
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {"python": platform.python_version(), "mixedmodels": mm.__version__, "R": r}


def main(command_prefix: str | None = None) -> None:
    """The benchmark; ``command_prefix`` names the script that ran it where another one
    (``benchmarks/glmm.py --families``) did."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "glmm_families"))
    args = parser.parse_args()
    cases = [c for c in family_cases() if c.name in CASES]
    load_before = os.getloadavg()
    raw: dict[str, dict[str, list]] = {
        c.name: {"ours": [], "lme4": [], "glmmTMB": []} for c in cases
    }
    # each case's peers are timed right after ours (one R process per case and round): this
    # machine's speed drifts by up to 2x over minutes, so each round's ratio compares fits
    # made seconds apart, and the ratios reported are the medians of the rounds' ratios
    for _ in range(args.rounds):
        for case in cases:
            raw[case.name]["ours"].append(ours(case, args.repeats))
            for name, row in peers([case], args.data_dir, args.repeats).items():
                for peer in ("lme4", "glmmTMB"):
                    if row.get(peer):
                        raw[name][peer].append(
                            (
                                statistics.median(_as_list(row[peer]["times"])),
                                row[peer]["loglik"],
                                statistics.median(_as_list(row[peer]["cpu"])),
                            )
                        )
    load_after = os.getloadavg()
    table = []
    for case in cases:
        res = raw[case.name]
        entry = {"case": case.name, "engine": case.engine}
        for who in ("ours", "lme4", "glmmTMB"):
            if res[who]:
                entry[f"{who}_s"] = statistics.median(r[0] for r in res[who])
                entry[f"{who}_cpu_s"] = statistics.median(r[2] for r in res[who])
                entry[f"{who}_loglik"] = res[who][-1][1]
        for peer in ("lme4", "glmmTMB"):
            if f"{peer}_s" in entry and len(res[peer]) == len(res["ours"]):
                # the median of the rounds' ratios (each round's fits made seconds apart)
                entry[f"{peer}_over_ours"] = statistics.median(
                    p[0] / o[0] for p, o in zip(res[peer], res["ours"], strict=True)
                )
                entry[f"{peer}_over_ours_cpu"] = statistics.median(
                    p[2] / o[2] for p, o in zip(res[peer], res["ours"], strict=True)
                )
                entry[f"{peer}_over_ours_cpu_rounds"] = [
                    p[2] / o[2] for p, o in zip(res[peer], res["ours"], strict=True)
                ]
        table.append(entry)
    meta = {
        "command": " ".join(
            [Path(sys.executable).name, command_prefix or sys.argv[0], *sys.argv[1:]]
        ),
        "rounds": args.rounds,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": load_after,
        "cpus": os.cpu_count(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "cases": table}, indent=1))
    lines = [
        f"Command: `{meta['command']}`; {meta['date']}; load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f} on {meta['cpus']} cores; "
        f"{meta['versions']}",
        "",
        "Wall times (s, median) and, in brackets, CPU times (s, user + system of the fitting "
        "process, the fairer measure on a loaded machine); ratios peer / ours by wall and "
        "[by CPU]: each case's peers are timed right after ours in every round, and a ratio is "
        "the median of the rounds' ratios. Goals (issue 14): lme4 / ours >= 3, glmmTMB / ours "
        ">= 5.",
        "",
        "| case | ours (s) | lme4 (s) | lme4 / ours | glmmTMB (s) | glmmTMB / ours "
        "| logLik ours | logLik lme4 | logLik glmmTMB |",
        "|---" * 9 + "|",
    ]

    def cell(entry, key, fmt):
        return fmt.format(entry[key]) if key in entry else "-"

    def both(entry, key, fmt):
        """The wall value and the CPU one in brackets."""
        if key not in entry:
            return "-"
        cpu_key = key.replace("_s", "_cpu_s") if key.endswith("_s") else key + "_cpu"
        return f"{fmt.format(entry[key])} [{fmt.format(entry[cpu_key])}]"

    for e in table:
        lines.append(
            "| "
            + " | ".join(
                [
                    e["case"],
                    both(e, "ours_s", "{:.3f}"),
                    both(e, "lme4_s", "{:.3f}"),
                    both(e, "lme4_over_ours", "{:.2f}x"),
                    both(e, "glmmTMB_s", "{:.3f}"),
                    both(e, "glmmTMB_over_ours", "{:.2f}x"),
                    cell(e, "ours_loglik", "{:.4f}"),
                    cell(e, "lme4_loglik", "{:.4f}"),
                    cell(e, "glmmTMB_loglik", "{:.4f}"),
                ]
            )
            + " |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.out + ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
