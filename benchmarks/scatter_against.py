"""The fill kernel (linalg/scatter_kernels.py ``scatter_lower``): this tree's against the
one of an earlier commit, alternating in one process.

The data are ``benchmarks/fill_kernels.py``'s: ``--levels`` levels each meeting
``--per-level`` distinct rows out of ``--items``, p = 2.  The earlier module is read from
``git show REV:src/mixedmodels/linalg/scatter_kernels.py`` and compiled here; both get the
same row ranges (``--threads``) and groups of levels.  Reported: wall and CPU per product
``(i, j <= i)``, min and median over ``--rounds`` rounds, with the load average, and
whether the two F are bitwise equal.

    python benchmarks/scatter_against.py --against f6187ef --levels 100000 --rounds 9
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
from mixedmodels.linalg import scatter_kernels as current
from mixedmodels.linalg.gather import GATHER_GROUP_BYTES, level_groups_by_bytes


def _earlier_kernels(rev: str):
    return earlier_module(
        rev, "src/mixedmodels/linalg/scatter_kernels.py", "earlier_scatter_kernels"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="f6187ef")
    parser.add_argument("--levels", type=int, default=100_000)
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    earlier = _earlier_kernels(args.against)
    pan = panels(args.levels, args.per_level, args.items, 2)
    a = fillin.ScatterFill.from_panels(pan).a
    q = args.items
    work = current.products_per_row(a.indptr, a.indices, 2, q)
    edges = fillin.balanced_edges(work, args.threads)
    groups = level_groups_by_bytes(a.indptr, 2, GATHER_GROUP_BYTES)
    r = np.random.default_rng(0).normal(size=(2, 2, args.levels))
    products = pan.n_triples()

    def run(module):
        out = np.zeros((q, q))
        module.scatter_lower(a.indptr, a.indices, a.data, 2, r, 1.0, edges, groups, out)
        return out

    same = bool(np.array_equal(run(earlier), run(current)))
    times = {"earlier": [], "now": []}
    loads = []
    for _ in range(args.rounds):
        for name, module in (("earlier", earlier), ("now", current)):
            w0, c0 = time.perf_counter(), time.process_time()
            run(module)
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
        loads.append(os.getloadavg()[0])
    lines = [
        f"Command: `python benchmarks/scatter_against.py {' '.join(argv or sys.argv[1:])}`; "
        f"{args.levels:,} levels x {args.per_level} rows into {q:,} rows, p = 2, "
        f"{products:,} products, threads {edges.size - 1}; load average per round "
        f"{', '.join(f'{x:.1f}' for x in loads)}; the two F bitwise equal: {same}.",
        "",
        "| kernel | wall ns / product (min / median) | CPU ns / product (min / median) |",
        "|---|---|---|",
    ]
    for name, label in (("earlier", args.against), ("now", "this tree")):
        wall = np.array([w for w, _ in times[name]]) / products * 1e9
        cpu = np.array([c for _, c in times[name]]) / products * 1e9
        lines.append(
            f"| {label} | {wall.min():.2f} / {np.median(wall):.2f} | "
            f"{cpu.min():.2f} / {np.median(cpu):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
