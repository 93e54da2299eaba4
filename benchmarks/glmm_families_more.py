"""The review's GLMM-family cases (tests/reference/famcheck: vector terms, crossed and
nested factors, weights, offsets, zero inflation with covariates, ...) against lme4 or
glmmTMB's default fit, in the same run: for each case and round our fit (median CPU of
``repeats`` after a warm-up, the data read once) and right after it one R process timing the
peer the same way.  Reports the median over rounds of each round's ratio peer / ours.

usage: python benchmarks/glmm_families_more.py [--rounds 2] [--repeats 3] [--out PREFIX]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from tests.family_cases import DATA_DIR  # noqa: E402
from tests.test_family_agreement_more import (  # noqa: E402
    DATA_DIR as FAMCHECK_DATA,
)
from tests.test_family_agreement_more import (  # noqa: E402
    REFERENCES,
    fit_reference,
    load_data,
)


def ours(ref: dict, repeats: int) -> tuple[float, float]:
    """Median CPU per fit (the data read once before) and the logLik."""
    data = load_data(ref["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_reference(ref, data)
        cpu = []
        for _ in range(repeats):
            c0 = time.process_time()
            result = fit_reference(ref, data)
            cpu.append(time.process_time() - c0)
    return statistics.median(cpu), result.loglik


def peer(ref: dict, data_dir: str, repeats: int) -> dict:
    spec = [{k: ref.get(k) for k in ("name", "engine", "data", "formula", "family", "link",
                                    "zi", "weights")}]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    worker = Path(__file__).parent / "glmm_families_more_worker.R"
    out = subprocess.run(
        ["Rscript", str(worker), data_dir, str(DATA_DIR), str(FAMCHECK_DATA), fh.name,
         str(repeats)],
        capture_output=True, text=True, check=True,
    )
    os.unlink(fh.name)
    row = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))
    cpu = row["peer"]["cpu"]
    return {"cpu": statistics.median(cpu if isinstance(cpu, list) else [cpu]),
            "loglik": row["peer"]["loglik"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    default_out = ROOT / "benchmarks" / "results" / "glmm_families_more"
    parser.add_argument("--out", default=str(default_out))
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for name, ref in REFERENCES.items():
        rounds = []
        for _ in range(args.rounds):
            o_cpu, o_ll = ours(ref, args.repeats)
            p = peer(ref, args.data_dir, args.repeats)
            rounds.append((o_cpu, p["cpu"], o_ll, p["loglik"]))
        goal = 5.0 if ref["engine"] == "glmmTMB" else 3.0
        ratio = statistics.median(r[1] / r[0] for r in rounds)
        rows.append({
            "case": name, "peer": "glmmTMB" if ref["engine"] == "glmmTMB" else "lme4",
            "ours_cpu_s": statistics.median(r[0] for r in rounds),
            "peer_cpu_s": statistics.median(r[1] for r in rounds),
            "ratio": ratio, "ratios": [r[1] / r[0] for r in rounds], "goal": goal,
            "loglik_ours": rounds[-1][2], "loglik_peer": rounds[-1][3],
        })
        print(f"{name:36s} ours {1000 * rows[-1]['ours_cpu_s']:7.1f} ms  "
              f"{rows[-1]['peer']} {1000 * rows[-1]['peer_cpu_s']:7.1f} ms  "
              f"{ratio:6.2f}x (goal {goal:g})", flush=True)
    meta = {
        "command": " ".join(["python", "benchmarks/glmm_families_more.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": load_before, "load_after": os.getloadavg(),
    }
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "cases": rows}, indent=1))
    lines = [
        f"Command: `{meta['command']}`; {meta['date']}; load average before "
        f"{load_before[0]:.2f}, after {meta['load_after'][0]:.2f}.",
        "",
        "CPU per fit (medians); ratio peer / ours as the median of the rounds' ratios "
        "(rounds in brackets). Goals (issue 14): lme4 / ours >= 3, glmmTMB / ours >= 5.",
        "",
        "| case | peer | ours | peer's | ratio | logLik ours | logLik peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rounds = ", ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"| {r['case']} | {r['peer']} | {1000 * r['ours_cpu_s']:.1f} ms | "
            f"{1000 * r['peer_cpu_s']:.1f} ms | {r['ratio']:.2f}x ({rounds}) | "
            f"{r['loglik_ours']:.4f} | {r['loglik_peer']:.4f} |"
        )
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
