"""Variance functions in ``mm.nlme``: CPU per fit of this tree against a base commit.

Soybean with Variety and ``varPower()`` (tests/reference/nlme/cases.py) was fitted by a
special-cased power branch before variance functions went through the seam
(``mm.var``); this times the same fit with both sources in alternating fresh processes
(``rounds`` pairs, each the median CPU time of ``repeats`` fits after a warm-up), so the
machine's noise falls on both.  It also times this tree on the ten cases of
tests/reference/nlme_varfunc/cases.py (medians of ``repeats``).  CPU time
(``time.process_time``) is the measure: the machine is shared; the load average is
recorded.

usage: python benchmarks/nlme_varfunc.py [--base 9e1f4b9] [--rounds 6] [--repeats 10]
       [--out benchmarks/results/nlme_varfunc]
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"

WORKER = """
import json, statistics, sys, time, warnings
sys.path.insert(0, {root!r})
import mixedmodels as mm
from tests.reference.{module}.cases import CASES, arguments, reference
ref = reference()
out = {{}}
for name in {names!r}:
    data, kwargs = arguments(name, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.nlme(data=data, **kwargs)
        cpu = []
        for _ in range({repeats}):
            c0 = time.process_time()
            fit = mm.nlme(data=data, **kwargs)
            cpu.append(time.process_time() - c0)
    out[name] = {{"cpu_ms": 1000 * statistics.median(cpu), "loglik": fit.loglik,
                  "iterations": fit.estimate.iterations}}
print(json.dumps(out))
"""


def run_worker(src: Path, module: str, names: list[str], repeats: int) -> dict:
    code = WORKER.format(root=str(ROOT), module=module, names=names, repeats=repeats)
    env = dict(os.environ, PYTHONPATH=str(src))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def export_base(commit: str, into: Path) -> Path:
    """The base commit's src/ (git archive) under ``into``."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="9e1f4b9")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=str(RESULTS / "nlme_varfunc"))
    args = parser.parse_args()
    soybean = ["soybean_variety_varpower"]
    load_before = os.getloadavg()
    base_ms, ours_ms, logliks = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        base_src = export_base(args.base, Path(tmp))
        for _ in range(args.rounds):
            b = run_worker(base_src, "nlme", soybean, args.repeats)[soybean[0]]
            o = run_worker(ROOT / "src", "nlme", soybean, args.repeats)[soybean[0]]
            base_ms.append(b["cpu_ms"])
            ours_ms.append(o["cpu_ms"])
            logliks = {"base": b["loglik"], "ours": o["loglik"],
                       "base_iterations": b["iterations"], "ours_iterations": o["iterations"]}
    sys.path.insert(0, str(ROOT))
    from tests.reference.nlme_varfunc.cases import CASES

    cases = run_worker(ROOT / "src", "nlme_varfunc", list(CASES), args.repeats)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result = {
        "command": "python benchmarks/nlme_varfunc.py " + " ".join(sys.argv[1:]),
        "base": args.base, "commit": commit, "rounds": args.rounds, "repeats": args.repeats,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "python": platform.python_version(),
        "soybean_varpower_cpu_ms": {"base": base_ms, "ours": ours_ms,
                                    "base_median": statistics.median(base_ms),
                                    "ours_median": statistics.median(ours_ms)},
        "soybean_varpower_fit": logliks,
        "cases": cases,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    ratio = statistics.median(ours_ms) / statistics.median(base_ms)
    lines = [
        "# Variance functions in mm.nlme: CPU per fit", "",
        f"`{result['command']}` (this tree {commit} against {args.base}; load average "
        f"{load_before[0]:.1f} before, {result['load_average']['after'][0]:.1f} after).", "",
        "Soybean with Variety and varPower (ML), medians of "
        f"{args.repeats} fits per process, processes alternating:", "",
        "| round | base ms | this tree ms |", "|---|---|---|",
    ]
    lines += [f"| {i + 1} | {b:.1f} | {o:.1f} |" for i, (b, o) in
              enumerate(zip(base_ms, ours_ms, strict=True))]
    lines += [f"| median | {statistics.median(base_ms):.1f} | {statistics.median(ours_ms):.1f} "
              f"({ratio:.2f}x the base) |", "",
              f"logLik base {logliks['base']:.10f} ({logliks['base_iterations']} alternations), "
              f"this tree {logliks['ours']:.10f} ({logliks['ours_iterations']}).", "",
              "The variance-function cases (this tree, median CPU ms):", "",
              "| case | CPU ms | alternations | logLik |", "|---|---|---|---|"]
    lines += [f"| {name} | {c['cpu_ms']:.1f} | {c['iterations']} | {c['loglik']:.6f} |"
              for name, c in cases.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
