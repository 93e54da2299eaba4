"""Fits of data beyond memory: Parquet chunk by chunk, a Dask LocalCluster, and in memory.

Writes a simulated Parquet dataset of ``y ~ x + (x | subject) + (1 | item)`` (subjects of
``--rows-per-subject`` rows, ``--items`` crossed items, factors dictionary-encoded), then
times the fit from Parquet, from a Dask DataFrame on a LocalCluster of worker processes,
and in memory where it fits.  Reports wall time, rows per second and the whole-process peak
memory (worker processes included, sampled every 0.1 s).

usage: python benchmarks/scale.py --rows 1e6,3e6 [--items 2000] [--workers 2] [--no-memory]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def write_dataset(folder: Path, n_rows: int, per_subject: int, n_items: int, seed: int = 1):
    """The simulated data in Parquet files of at most 2,000,000 rows each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_subjects = n_rows // per_subject
    b0 = rng.normal(0, 1.0, n_subjects)
    b1 = rng.normal(0, 0.5, n_subjects)
    c0 = rng.normal(0, 0.7, n_items)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = 2_000_000 // per_subject * per_subject
    for k, start in enumerate(range(0, n_subjects * per_subject, per_file)):
        rows = np.arange(start, min(start + per_file, n_subjects * per_subject))
        subject = rows // per_subject
        item = rng.integers(0, n_items, rows.size)
        x = rng.normal(size=rows.size)
        y = 2.0 + 0.5 * x + b0[subject] + b1[subject] * x + c0[item] + rng.normal(size=rows.size)
        table = pa.table(
            {
                "y": y,
                "x": x,
                "subject": pa.DictionaryArray.from_arrays(
                    pa.array(subject, pa.int32()), pa.array([f"s{i}" for i in range(n_subjects)])
                ),
                "item": pa.DictionaryArray.from_arrays(
                    pa.array(item, pa.int32()), pa.array([f"i{i}" for i in range(n_items)])
                ),
            }
        )
        pq.write_table(table, folder / f"part{k:04d}.parquet", row_group_size=1_000_000)


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and its children."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as fh:
                pids.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return total


def _run(kind: str, folder: str, workers: int, queue) -> None:
    import mixedmodels as mm

    formula = "y ~ x + (x | subject) + (1 | item)"
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if kind == "parquet":
        fit = mm.lmer(formula, folder)
    elif kind == "dask":
        import dask.dataframe as dd
        import distributed

        with distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None
        ) as cluster, distributed.Client(cluster):
            fit = mm.lmer(formula, dd.read_parquet(folder))
    else:
        import pandas as pd

        frame = pd.read_parquet(folder)
        t0 = time.perf_counter()  # the fit alone, data already in memory
        fit = mm.lmer(formula, frame, start="lme4")
    elapsed = time.perf_counter() - t0
    queue.put((elapsed, fit.objective, list(fit.fixef), list(fit.theta), fit.nobs))


def measure(kind: str, folder: str, workers: int) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=_run, args=(kind, folder, workers, queue))
    proc.start()
    peak = 0
    result = None
    while result is None:
        peak = max(peak, _tree_rss(proc.pid))
        try:
            result = queue.get(timeout=0.1)
        except Exception:  # queue.Empty: still running
            if not proc.is_alive():
                raise RuntimeError(f"the {kind} fit failed") from None
    proc.join()
    elapsed, objective, fixef, theta, nobs = result
    return {"kind": kind, "time": elapsed, "peak_mb": peak / 2**20, "objective": objective,
            "fixef": fixef, "theta": theta, "rows": nobs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e6")
    parser.add_argument("--rows-per-subject", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default="parquet,dask,memory")
    parser.add_argument("--memory-limit-rows", type=float, default=2e7)
    args = parser.parse_args(argv)
    print("| rows | source | time (s) | rows / s | peak memory (MB) | objective |")
    print("|---|---|---|---|---|---|")
    for text in args.rows.split(","):
        n = int(float(text))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "data"
            write_dataset(folder, n, args.rows_per_subject, args.items)
            for kind in args.kinds.split(","):
                if kind == "memory" and n > args.memory_limit_rows:
                    continue
                r = measure(kind, str(folder), args.workers)
                print(f"| {r['rows']:,} | {kind} | {r['time']:.1f} | {r['rows'] / r['time']:,.0f} "
                      f"| {r['peak_mb']:.0f} | {r['objective']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
