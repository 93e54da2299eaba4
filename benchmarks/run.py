"""Side-by-side benchmark of mixedmodels and its peers, each (tool, case) in a fresh process.

usage: python benchmarks/run.py [--cases sleepstudy,insteval,large] [--tools ...] [--out FILE]

Peers run when installed: mixedlm and statsmodels (Python), lme4 via Rscript.  Reports the
median time per fit, ratios to mixedmodels, the REML criterion each reached (the answers
must agree) and the whole-process peak memory.  statsmodels is skipped for crossed effects
(it has none) and for the 1,000,000-row case (hours; users report 41 minutes for 125,000
groups).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import markdown  # noqa: E402
from cases import CASES, load_case  # noqa: E402
from peers import available  # noqa: E402

SKIP = {("statsmodels", "insteval"), ("statsmodels", "large")}


def run_python(tool: str, name: str, repeats: int, warmup: int) -> dict:
    cmd = [sys.executable, str(HERE / "worker.py"), tool, name, str(repeats), str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_lme4(name: str, repeats: int, warmup: int, tmp: Path) -> dict:
    case = CASES[name]
    csv = tmp / f"{name}.csv"
    if not csv.exists():
        load_case(name).to_csv(csv, index=False)
    cmd = [
        "Rscript",
        str(HERE / "worker.R"),
        str(csv),
        case["formula"],
        ",".join(case["factors"]),
        str(repeats),
        str(warmup),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--tools", default="mixedmodels,mixedlm,statsmodels,lme4")
    parser.add_argument("--repeats", type=int, help="override each case's repeat count")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="fresh-process rounds per Python tool, interleaved with the peers (the machine "
        "is noisy: interleaving keeps a slow spell from landing on one tool only)",
    )
    parser.add_argument("--out", help="write the raw results as JSON here")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if available(t)]
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            case = CASES[name]
            repeats = args.repeats or case["repeats"]
            results[name] = {}
            slow = {"lme4", "statsmodels"}
            for round_index in range(args.rounds):
                for tool in tools:
                    if (tool, name) in SKIP or (tool in slow and round_index > 0):
                        continue
                    if tool == "lme4":
                        reps = repeats if name == "sleepstudy" else min(repeats, 3)
                        r = run_lme4(name, reps, case["warmup"], Path(tmp))
                    else:
                        r = run_python(tool, name, repeats, case["warmup"])
                    if tool in results[name]:
                        old = results[name][tool]
                        old["times"] += r["times"]
                        old["peak_mb"] = max(old["peak_mb"], r["peak_mb"])
                    else:
                        results[name][tool] = r
                    print(
                        f"{name:11s} {tool:12s} round {round_index + 1} median "
                        f"{statistics.median(r['times']) * 1e3:10.2f} ms  "
                        f"peak {r['peak_mb']:7.0f} MB  objective {r['objective']:.6f}",
                        flush=True,
                    )
            for r in results[name].values():
                r["median"] = statistics.median(r["times"])
    print()
    markdown.header(
        [
            "case",
            "tool",
            "median time per fit",
            "time / mixedmodels",
            "peak memory (MB)",
            "REML criterion",
        ]
    )
    for name, by_tool in results.items():
        ours = by_tool.get("mixedmodels", {}).get("median")
        for tool, r in by_tool.items():
            ratio = f"{r['median'] / ours:.2f}" if ours else "-"
            t = r["median"]
            shown = f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"
            cells = [name, tool, shown, ratio, f"{r['peak_mb']:.0f}", f"{r['objective']:.4f}"]
            markdown.row(cells)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
