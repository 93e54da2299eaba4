"""The crossed path's fill kernels on a subjects x items structure: CPU per evaluation.

Each of ``--levels`` subjects meets ``--per-level`` distinct items out of ``--items`` (the
``(x | subject) + (1 | item)`` structure of ``benchmarks/scale.py``, p = 2).  For each
kernel the median over ``--repeats`` evaluations of ``lower_fill`` is reported, with the
cost per product ``(i, j <= i)``.  The map kernel is timed only where its storage fits.

    python benchmarks/fill_kernels.py --levels 10000,100000 --out benchmarks/results/fill_kernels

``--ab`` times the scatter kernel against the one it replaced (``previous_scatter_lower``
below: one thread's rows of ``F`` walked in 1 MB blocks of rows, each block visiting the
levels of a group of 1,024), in one process, alternating old and new, ``--repeats``
rounds, with 1 and 2 threads; CPU time (all threads of the process) and wall time per
product, with the load average of every round:

    python benchmarks/fill_kernels.py --ab --levels 100000 --repeats 6 \
        --out benchmarks/results/fill_kernels_ab2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def previous_scatter_lower(
    indptr, indices, data, p, r, scale, range_edges, block_rows, group_levels, out
):  # pragma: no cover - compiled
    """The scatter kernel before the row-bucketed layout (commit 7062a2d's
    ``scatter_kernels.scatter_lower``), compiled on first use, for the A/B only."""
    return _previous_kernel()(
        indptr, indices, data, p, r, scale, range_edges, block_rows, group_levels, out
    )


_PREVIOUS = []


def _previous_kernel():  # noqa: PLR0915 - the old loop nest, verbatim
    if _PREVIOUS:
        return _PREVIOUS[0]
    from numba import njit, prange

    from mixedmodels.linalg.scatter_kernels import _first_at_or_after

    @njit(parallel=True, cache=True, boundscheck=False, nogil=True)
    def kernel(indptr, indices, data, p, r, scale, range_edges, block_rows, group_levels, out):
        n_levels = (indptr.size - 1) // p
        n_ranges = range_edges.size - 1
        n_groups = (n_levels + group_levels - 1) // group_levels
        most = 0
        for g in range(n_groups):
            g0 = g * group_levels
            g1 = min(n_levels, g0 + group_levels)
            size = 0
            for s in range(g0, g1):
                size += indptr[s * p + 1] - indptr[s * p]
            most = max(most, size)
        for part in prange(n_ranges):
            lo = range_edges[part]
            hi = range_edges[part + 1]
            if lo >= hi:
                continue
            w = np.empty((most, p))
            start = np.empty(group_levels + 1, dtype=np.int64)
            cursor = np.empty(group_levels, dtype=np.int64)
            for g in range(n_groups):
                g0 = g * group_levels
                g1 = min(n_levels, g0 + group_levels)
                at = 0
                for s in range(g0, g1):
                    first = indptr[s * p]
                    k = indptr[s * p + 1] - first
                    start[s - g0] = at
                    for u in range(k):
                        for c in range(p):
                            acc = 0.0
                            for a in range(p):
                                acc += data[indptr[s * p + a] + u] * r[a, c, s]
                            w[at + u, c] = acc
                    at += k
                    cursor[s - g0] = _first_at_or_after(indices, first, first + k, lo) - first
                start[g1 - g0] = at
                block_lo = lo
                while block_lo < hi:
                    block_hi = min(block_lo + block_rows, hi)
                    for s in range(g0, g1):
                        first = indptr[s * p]
                        k = indptr[s * p + 1] - first
                        t0 = cursor[s - g0]
                        if t0 >= k or indices[first + t0] >= block_hi:
                            continue
                        t1 = t0
                        while t1 < k and indices[first + t1] < block_hi:
                            t1 += 1
                        cursor[s - g0] = t1
                        base = start[s - g0]
                        if p == 1:
                            for t in range(t0, t1):
                                row = out[indices[first + t]]
                                wt = w[base + t, 0] * scale
                                for u in range(t + 1):
                                    row[indices[first + u]] += wt * w[base + u, 0]
                        elif p == 2:
                            for t in range(t0, t1):
                                row = out[indices[first + t]]
                                w0 = w[base + t, 0] * scale
                                w1 = w[base + t, 1] * scale
                                for u in range(t + 1):
                                    row[indices[first + u]] += (
                                        w0 * w[base + u, 0] + w1 * w[base + u, 1]
                                    )
                        else:
                            for t in range(t0, t1):
                                row = out[indices[first + t]]
                                for u in range(t + 1):
                                    acc = 0.0
                                    for c in range(p):
                                        acc += w[base + t, c] * w[base + u, c]
                                    row[indices[first + u]] += scale * acc
                    block_lo = block_hi

    _PREVIOUS.append(kernel)
    return kernel


def _versions() -> dict:
    import numba

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def ab(levels: list[int], per_level: int, n_items: int, p: int, rounds: int) -> dict:
    """Old and new scatter kernels on the same ``A`` and ``r``, alternating, ``rounds``
    rounds of (old 1 thread, new 1 thread, old 2 threads, new 2 threads)."""
    out = {"rows": []}
    for n_levels in levels:
        pan = panels(n_levels, per_level, n_items, p)
        products = pan.n_triples()
        a = pan.to_csr().tocsc()  # one A for both thread counts (read in place)
        a.sort_indices()
        del pan
        r = np.random.default_rng(2).normal(size=(p, p, n_levels))
        runs = {}
        for threads in (1, 2):
            original = fillin.scatter_threads
            fillin.scatter_threads = lambda products, t=threads: t
            try:
                fill = fillin.ScatterFill(a, p)
            finally:
                fillin.scatter_threads = original
            q = fill.n_rows
            block_rows = max(8, 2**20 // (8 * max(q, 1)))  # the old SCATTER_BLOCK_BYTES

            def old(fill=fill, block_rows=block_rows, q=q, r=r):
                result = np.zeros((q, q))
                previous_scatter_lower(
                    fill._indptr, fill._indices, fill.a.data, p, r, 1.0, fill._edges,
                    block_rows, 1024, result,
                )  # fmt: skip
                return result

            runs[f"old_{threads}"] = old
            runs[f"new_{threads}"] = lambda fill=fill, r=r: fill.lower_fill(r)
        first_old, first_new = runs["old_1"](), runs["new_1"]()
        same = {
            "bitwise": bool(np.array_equal(first_old, first_new)),
            "max_abs_difference": float(np.abs(first_old - first_new).max()),
            "threads_bitwise": bool(np.array_equal(first_new, runs["new_2"]())),
        }
        runs["old_2"]()
        times = {name: [] for name in runs}
        loads = []
        for _ in range(rounds):
            for name, run in runs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                run()
                t1, c1 = time.perf_counter(), time.process_time()
                times[name].append({"wall": t1 - t0, "cpu": c1 - c0})
            loads.append(os.getloadavg()[0])
        row = {"levels": n_levels, "products": products, "same": same, "loads": loads}
        for name, values in times.items():
            wall = np.array([v["wall"] for v in values]) / products * 1e9
            cpu = np.array([v["cpu"] for v in values]) / products * 1e9
            row[name] = {
                "wall_ns_min": float(wall.min()),
                "wall_ns_median": float(np.median(wall)),
                "cpu_ns_min": float(cpu.min()),
                "cpu_ns_median": float(np.median(cpu)),
                "raw": values,
            }
        out["rows"].append(row)
        print({k: v for k, v in row.items() if k not in runs}, flush=True)
    return out


def ab_markdown(result: dict, command: str, versions: dict) -> str:
    lines = [
        f"Command: `{command}`; versions: {versions}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "2 cores (AMD EPYC, 32 KB L1d and 512 KB L2 per core, 32 MB L3) shared with other",
        "engineers' jobs: old and new alternate in one process; CPU time is the process's",
        "(all threads), wall time by perf_counter; ns per product (i, j <= i).",
        "",
        "| levels | products | threads | old wall ns (min / median) | new wall ns (min / median) "
        "| old CPU ns (median) | new CPU ns (median) | speed-up (median wall) | load (min-max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        loads = f"{min(row['loads']):.2f}-{max(row['loads']):.2f}"
        for threads in (1, 2):
            o, n = row[f"old_{threads}"], row[f"new_{threads}"]
            lines.append(
                f"| {row['levels']:,} | {row['products']:,} | {threads} | "
                f"{o['wall_ns_min']:.2f} / {o['wall_ns_median']:.2f} | "
                f"{n['wall_ns_min']:.2f} / {n['wall_ns_median']:.2f} | "
                f"{o['cpu_ns_median']:.2f} | {n['cpu_ns_median']:.2f} | "
                f"{o['wall_ns_median'] / n['wall_ns_median']:.2f}x | {loads} |"
            )
    lines.append("")
    for row in result["rows"]:
        same = row["same"]
        lines.append(
            f"{row['levels']:,} levels: old and new F bitwise equal: {same['bitwise']} "
            f"(max |difference| {same['max_abs_difference']:.3g}); new with 1 and 2 threads "
            f"bitwise equal: {same['threads_bitwise']}."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10000,100000")
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--p", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--ab", action="store_true", help="old against new scatter kernel")
    args = parser.parse_args(argv)
    if args.ab:
        command = "python benchmarks/fill_kernels.py " + " ".join(argv or sys.argv[1:])
        versions = _versions()
        levels = [int(x) for x in args.levels.split(",")]
        result = ab(levels, args.per_level, args.items, args.p, args.repeats)
        import numba

        versions["threading layer"] = numba.threading_layer()
        result.update(command=command, versions=versions)
        text = ab_markdown(result, command, versions)
        print(text)
        if args.out:
            Path(args.out + ".md").write_text(text)
            Path(args.out + ".json").write_text(json.dumps(result, indent=1))
        return 0
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
