"""How far the reported estimates of chunked fits are from the in-memory fit's (issue 10),
next to how far the in-memory fit moves when its rows are merely reversed.

For every Gaussian reference case of tests/test_large.py: the in-memory fit, the same rows
reversed, and chunked fits (``mm.FrameSource``) with chunks of a seventh of the rows and of
all rows.  Per pair: the largest difference in theta (relative to max(1, |theta|)), in fixef
(relative to max(1, |b|)), in sigma and in the objective (relative), whether theta is
identified there (tests/test_large.py's ``_identified``) and what the Newton polish did
(the fit's optimizer message).  A summary line counts the pairs within 1e-8 (theta, fixef,
sigma) and 1e-10 (objective).

usage: python benchmarks/large_exactness.py [--out benchmarks/results/large_exactness]
(writes <out>.txt with the table and <out>.json with every number)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))

import mixedmodels as mm  # noqa: E402
from tests.test_large import (  # noqa: E402
    CASES,
    REFUSED,
    _frame_and_arguments,
    _identified,
    case,
)


def differences(fit, memory) -> dict[str, float]:
    """Largest differences of the reported estimates (the tests' scales)."""
    theta_scale = np.maximum(1.0, np.abs(memory.theta))
    b, b0 = fit.fixef.to_numpy(), memory.fixef.to_numpy()
    return {
        "theta": float(np.max(np.abs(fit.theta - memory.theta) / theta_scale, initial=0)),
        "fixef": float(np.max(np.abs(b - b0) / np.maximum(1.0, np.abs(b0)), initial=0)),
        "sigma": abs(fit.sigma - memory.sigma) / memory.sigma,
        "objective": abs(fit.objective - memory.objective) / abs(memory.objective),
    }


def summary(rows: list[dict], label: str) -> str:
    ok = [
        r for r in rows
        if (r["theta"] <= 1e-8 or not r["identified"]) and r["fixef"] <= 1e-8
        and r["sigma"] <= 1e-8 and r["objective"] <= 1e-10
    ]
    theta = np.array([r["theta"] for r in rows if r["identified"]])
    return (
        f"{label}: {len(ok)} of {len(rows)} within 1e-8 (theta where identified, fixef, "
        f"sigma) and 1e-10 (objective); theta identified in {theta.size}: median "
        f"{np.median(theta):.1e}, max {theta.max():.1e}; fixef max "
        f"{max(r['fixef'] for r in rows):.1e}, sigma max {max(r['sigma'] for r in rows):.1e}, "
        f"objective max {max(r['objective'] for r in rows):.1e}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="write <out>.txt and <out>.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    lines = [
        f"Command: python benchmarks/large_exactness.py {' '.join(sys.argv[1:])}; load "
        f"average {os.getloadavg()[0]:.1f} at the start (the numbers do not depend on load); "
        f"Python {platform.python_version()}, numpy {np.__version__}.",
        "",
        f"{'case':40s} {'rows':>5s} {'theta':>8s} {'fixef':>8s} {'sigma':>8s} {'obj':>8s} "
        "id  polish",
    ]
    chunked, reversed_rows = [], []
    for name in CASES:
        if name in REFUSED:
            continue
        c = case(name)
        frame, arguments = _frame_and_arguments(c)
        memory = mm.lmer(c.formula, frame, **arguments)
        identified = _identified(memory.problem, memory.theta)
        flipped = mm.lmer(c.formula, frame.iloc[::-1], **arguments)
        pairs = [("reversed", flipped, reversed_rows)]
        for rows in (max(13, len(frame) // 7), len(frame)):
            fit = mm.lmer(c.formula, mm.FrameSource(frame, rows), **arguments)
            pairs.append((str(rows), fit, chunked))
        for label, fit, into in pairs:
            d = differences(fit, memory) | {"case": name, "rows": label,
                                            "identified": identified}
            d["polish"] = fit.optimizer_message
            into.append(d)
            line = (
                f"{name:40s} {label:>5s} {d['theta']:8.1e} {d['fixef']:8.1e} "
                f"{d['sigma']:8.1e} {d['objective']:8.1e} {'y' if identified else 'n':2s}  "
                f"{fit.optimizer_message.split('; ', 1)[-1]}"
            )
            lines.append(line)
            print(line, flush=True)
    lines += ["", summary(chunked, "chunked fits"), summary(reversed_rows, "rows reversed")]
    print("\n".join(lines[-2:]))
    if args.out:
        Path(args.out + ".txt").write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(
            json.dumps({"chunked": chunked, "reversed_rows": reversed_rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
