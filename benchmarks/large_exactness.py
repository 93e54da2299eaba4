"""How far the reported estimates of chunked fits are from the in-memory fit's (issue 10),
next to how far the in-memory fit moves when its rows are merely reversed.

For every Gaussian reference case of tests/test_large.py: the in-memory fit, the same rows
reversed, and chunked fits (``mm.FrameSource``) with chunks of a seventh of the rows and of
all rows; prints the largest difference in theta (relative to max(1, |theta|)).

usage: python benchmarks/large_exactness.py > benchmarks/results/large_exactness.txt
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))

import mixedmodels as mm  # noqa: E402
from tests.test_large import CASES, REFUSED, _frame_and_arguments, case  # noqa: E402


def main() -> int:
    warnings.simplefilter("ignore")
    chunked, reversed_rows = [], []
    for name in CASES:
        if name in REFUSED:
            continue
        c = case(name)
        frame, arguments = _frame_and_arguments(c)
        memory = mm.lmer(c.formula, frame, **arguments)
        flipped = mm.lmer(c.formula, frame.iloc[::-1], **arguments)
        reversed_rows.append(float(np.max(np.abs(flipped.theta - memory.theta), initial=0)))
        for rows in (max(13, len(frame) // 7), len(frame)):
            fit = mm.lmer(c.formula, mm.FrameSource(frame, rows), **arguments)
            scale = np.maximum(1.0, np.abs(memory.theta))
            chunked.append(float(np.max(np.abs(fit.theta - memory.theta) / scale, initial=0)))
            print(f"{name:40s} {rows:5d} theta {chunked[-1]:.1e} "
                  f"reversed-rows {reversed_rows[-1]:.1e}", flush=True)
    d, r = np.array(chunked), np.array(reversed_rows)
    print(f"chunked fits: {(d <= 1e-8).sum()} of {d.size} within 1e-8, median {np.median(d):.1e}, "
          f"max {d.max():.1e}; in memory, rows reversed: {(r <= 1e-8).sum()} of {r.size} "
          f"within 1e-8, max {r.max():.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
