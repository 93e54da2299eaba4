"""The gradient's quadratic forms ``A_s' T A_s`` (linalg/gather_kernels.py): this tree's
kernel against the one of an earlier commit, alternating in one process.

The data are ``benchmarks/fill_kernels.py``'s: ``--levels`` levels each meeting
``--per-level`` distinct rows out of ``--items``, p = 2.  The earlier kernel is read from
``git show REV:src/mixedmodels/linalg/gather_kernels.py`` and compiled here; both get the
same row ranges (threads).  Reported: wall and CPU per product (pair ``u <= t``), min and
median over ``--rounds`` rounds, with the load average.

    python benchmarks/gather_kernels.py --against 76e0489 --levels 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.earlier_module import earlier_module
from benchmarks.fill_kernels import panels
from mixedmodels.linalg import fillin
from mixedmodels.linalg.gather import LevelQuadraticForms


def _earlier_kernel(rev: str):
    return earlier_module(
        rev, "src/mixedmodels/linalg/gather_kernels.py", "earlier_gather_kernels"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="76e0489")
    parser.add_argument("--levels", type=int, default=100_000)
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    earlier = _earlier_kernel(args.against)
    pan = panels(args.levels, args.per_level, args.items, 2)
    a = fillin.ScatterFill.from_panels(pan).a
    now = LevelQuadraticForms(a, 2)
    t = np.random.default_rng(0).normal(size=(args.items, args.items))
    t = t + t.T
    products = pan.n_triples()

    blocked = earlier.quadratic_forms.py_func.__code__.co_argcount == 9

    def run_earlier():
        parts = np.zeros((now._edges.size - 1, 2, 2, args.levels))
        if blocked:  # 76e0489: blocks of 65 rows of T, 1,024 levels at a time
            earlier.quadratic_forms(
                a.indptr, a.indices, a.data, 2, t, now._edges, 65, 1024, parts
            )
        else:  # buckets of rows (c00f9e3 on): the same groups as now
            earlier.quadratic_forms(
                a.indptr, a.indices, a.data, 2, t, now._edges, now._groups, parts
            )
        return parts.sum(axis=0)

    difference = np.abs(now(t) - run_earlier()).max() / np.abs(run_earlier()).max()
    times = {"earlier": [], "now": []}
    loads = []
    for _ in range(args.rounds):
        for name, run in (("earlier", run_earlier), ("now", lambda: now(t))):
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
        loads.append(os.getloadavg()[0])
    lines = [
        f"Command: `python benchmarks/gather_kernels.py {' '.join(argv or sys.argv[1:])}`; "
        f"{args.levels:,} levels x {args.per_level} rows into {args.items:,} rows, p = 2, "
        f"{products:,} products, threads {now._edges.size - 1}; load average per round "
        f"{', '.join(f'{x:.1f}' for x in loads)}; largest relative difference of the forms "
        f"{difference:.1e}.",
        "",
        "| kernel | wall ns / product (min / median) | CPU ns / product (median) |",
        "|---|---|---|",
    ]
    earlier_label = "row blocks" if blocked else "row buckets"
    for name, label in (("earlier", f"{earlier_label} ({args.against})"), ("now", "this tree")):
        wall = np.array([w for w, _ in times[name]]) / products * 1e9
        cpu = np.array([c for _, c in times[name]]) / products * 1e9
        lines.append(
            f"| {label} | {wall.min():.2f} / {np.median(wall):.2f} | {np.median(cpu):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
