"""One crossed fit's CPU time in this process, for comparing two source trees in one run.

usage: PYTHONPATH=<tree>/src python benchmarks/crossed_fit_cpu.py [--case slopes] [--scale 1.0]

Prints which tree was imported, the fit's CPU time (``time.process_time``), wall time,
evaluations, REML criterion and the load average at the start.  Alternating two trees
(e.g. a ``git archive`` of an older commit and the worktree) on a shared machine gives a
before/after ratio under the same load, which separate benchmark runs do not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from crossed import CASES, load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="slopes")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    import mixedmodels as mm

    df = load(args.case, args.scale)
    before = os.getloadavg()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, w = time.process_time(), time.perf_counter()
        fit = mm.lmer(CASES[args.case]["formula"], df)
        cpu, wall = time.process_time() - c, time.perf_counter() - w
    print(
        f"{Path(mm.__file__).parents[2]}  cpu {cpu:.2f} s  wall {wall:.2f} s  evaluations "
        f"{fit.n_evaluations}  REML criterion {float(fit.objective):.10f}  load {before:.1f}"
    )


if __name__ == "__main__":
    main()
