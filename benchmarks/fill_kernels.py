"""The crossed path's fill kernels on a subjects x items structure: CPU per evaluation.

Each of ``--levels`` subjects meets ``--per-level`` distinct items out of ``--items`` (the
``(x | subject) + (1 | item)`` structure of ``benchmarks/scale.py``, p = 2).  For each
kernel the median over ``--repeats`` evaluations of ``lower_fill`` is reported, with the
cost per product ``(i, j <= i)``.  The map kernel is timed only where its storage fits.

    python benchmarks/fill_kernels.py --levels 10000,100000 --out benchmarks/results/fill_kernels
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixedmodels.linalg import fillin


def panels(n_levels: int, per_level: int, n_items: int, p: int, seed: int = 1) -> fillin.Panels:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, n_items, (n_levels, per_level)), axis=1).ravel()
    level = np.repeat(np.arange(n_levels), per_level)
    keep = np.ones(rows.size, dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (level[1:] != level[:-1])
    rows, level = rows[keep], level[keep]
    starts = np.zeros(n_levels + 1, dtype=np.int64)
    np.cumsum(np.bincount(level, minlength=n_levels), out=starts[1:])
    return fillin.Panels(n_items, starts, rows.astype(np.int64), rng.normal(size=(rows.size, p)))


def _median_wall(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _cold_load() -> dict:
    """Seconds to import and run the scatter kernel in a fresh process, with an empty
    numba cache (compile) and then with the cache it wrote (load)."""
    code = (
        "import time; t=time.perf_counter(); import numpy as np; "
        "from benchmarks.fill_kernels import panels; from mixedmodels.linalg import fillin; "
        "f=fillin.ScatterFill.from_panels(panels(50, 5, 20, 2)); f.lower_fill(np.ones((2,2,50))); "
        "print(time.perf_counter()-t)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("compile", "load"):
            run = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            out[label] = float(run.stdout.strip())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10000,100000")
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--p", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for n_levels in (int(x) for x in args.levels.split(",")):
        pan = panels(n_levels, args.per_level, args.items, args.p)
        products = pan.n_triples()
        r = np.random.default_rng(2).normal(size=(args.p, args.p, n_levels))
        row = {"levels": n_levels, "entries": int(pan.rows.size), "products": products}
        for threads in (1, 2):
            original = fillin.scatter_threads
            fillin.scatter_threads = lambda products, t=threads: t
            try:
                fill = fillin.ScatterFill.from_panels(pan)
            finally:
                fillin.scatter_threads = original
            fill.lower_fill(r)
            row[f"scatter_{threads}"] = _median_wall(
                lambda f=fill, r=r: f.lower_fill(r), args.repeats
            )
        if products * args.p <= fillin.MAX_STORED_ENTRIES:
            fill = fillin.MapFill(pan)
            fill.lower_fill(r)
            row["map"] = _median_wall(lambda f=fill, r=r: f.lower_fill(r), args.repeats)
        rows.append(row)
        print(row, flush=True)
    cold = _cold_load()
    load_after = os.getloadavg()[0]
    command = "python benchmarks/fill_kernels.py " + " ".join(argv or sys.argv[1:])
    lines = [
        f"Command: `{command}`; load average {load_before:.2f} -> {load_after:.2f} (2 cores).",
        "",
        f"Fresh process, empty numba cache: {cold['compile']:.2f} s to import and run the "
        f"scatter kernel once (compile); with the cache it wrote: {cold['load']:.2f} s.",
        "",
        "| levels | products | kernel | s per evaluation (median) | ns per product |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        for key, label in (("scatter_1", "scatter, 1 thread"), ("scatter_2", "scatter, 2 threads"),
                           ("map", "map")):
            if key in row:
                lines.append(
                    f"| {row['levels']:,} | {row['products']:,} | {label} | {row[key]:.4f} | "
                    f"{row[key] / row['products'] * 1e9:.2f} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out + ".md").write_text(text)
        Path(args.out + ".json").write_text(json.dumps({"rows": rows, "cold": cold}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
