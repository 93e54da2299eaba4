"""Two source trees timed in alternating processes on the same machine in the same run
(residual_before_after.py, nlme_before_after.py).

A round runs one child process with ``PYTHONPATH=BEFORE_SRC`` and then one with AFTER_SRC
(``OMP_NUM_THREADS=1``), so both see the same load; a child prints one JSON line with at
least ``ms``, its median CPU time per fit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def run_child(src: str, code: str) -> dict:
    """Run ``code`` in a fresh interpreter importing the package from ``src``; its last
    line of output, read as JSON."""
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(before: str, after: str, code: str, rounds: int) -> tuple[float, float, dict, dict]:
    """``rounds`` alternating runs of ``code`` from both trees: the median over rounds of
    each side's ``ms``, and each side's last result."""
    sides: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(rounds):
        for side, src in (("before", before), ("after", after)):
            sides[side].append(run_child(src, code))
    b = statistics.median(r["ms"] for r in sides["before"])
    a = statistics.median(r["ms"] for r in sides["after"])
    return b, a, sides["before"][-1], sides["after"][-1]


def before_after_arguments() -> argparse.Namespace:
    """The command line both before/after scripts take: ``BEFORE_SRC AFTER_SRC [case ...]
    [--rounds 3] [--fits 30]`` (the cases may follow the options)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("cases", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fits", type=int, default=30)
    return parser.parse_intermixed_args()
