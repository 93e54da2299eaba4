"""The passes over the chunks alone: ``mixedmodels.large.fit_chunks`` on a Parquet dataset
of ``benchmarks/scale.py`` (``y ~ x + (x | subject) + (1 | item)``), timed by CPU time and
wall time, with the process's peak resident memory (``getrusage``), in a fresh process per
size and run.  The optimizer is not run.

usage: python benchmarks/scale_passes.py /tmp/large/d1M [/tmp/large/d3M ...] [--runs 3]
                                         [--profile] [--out benchmarks/results/scale_passes]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FORMULA = "y ~ x + (x | subject) + (1 | item)"


def _one(folder: str, profile: bool) -> dict:
    """Run in the child: the passes and the reduced problem, measured."""
    import resource
    import warnings

    import pyarrow.dataset as ds

    import mixedmodels.large as large
    from mixedmodels.design.sources import ParquetSource
    from mixedmodels.large import fit_chunks

    # the passes end where the reduced problem starts: time and peak memory there
    split: dict[str, float] = {}
    build = large.reduced_problem

    def timed_build(*args, **kwargs):
        split["cpu"], split["wall"] = time.process_time(), time.perf_counter()
        split["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return build(*args, **kwargs)

    large.reduced_problem = timed_build
    # each pass's CPU time and the process's peak memory at its end
    per_pass: list[dict] = []
    passes = large._passes

    def timed_passes(source, progress):
        run = passes(source, progress)

        def each(function, columns, label):
            c = time.process_time()
            yield from run(function, columns, label)
            per_pass.append(
                {
                    "pass": label,
                    "cpu_s": time.process_time() - c,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                }
            )

        return each

    large._passes = timed_passes

    warnings.simplefilter("ignore")
    rows = ds.dataset(folder, format="parquet").count_rows()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    load = os.getloadavg()[0]
    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
    c0, t0 = time.process_time(), time.perf_counter()
    design, problem, start = fit_chunks(FORMULA, ParquetSource(folder), progress=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    if profile:
        pr.disable()
        order = os.environ.get("SORT", "cumulative")  # or tottime
        pstats.Stats(pr, stream=sys.stderr).sort_stats(order).print_stats(45)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    off = problem.gram.off_diagonal[1, 0]
    return {
        "rows": rows,
        "cpu_s": cpu,
        "wall_s": wall,
        "passes_cpu_s": split["cpu"] - c0,
        "passes_wall_s": split["wall"] - t0,
        "passes_peak_rss_mb": split["peak"] / 1024,
        "peak_rss_mb": peak / 1024,
        "rss_before_mb": rss0 / 1024,
        "load_1min": load,
        "per_pass": per_pass,
        "off_diagonal": f"{type(off).__name__} {off.shape} nnz={off.nnz} "
        f"indices={off.indices.dtype} indptr={off.indptr.dtype}",
        "kernel": problem._crossed.fill.kind if problem._crossed is not None else "none",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="*")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(args.folders[0], args.profile)))
        return
    results = []
    for folder in args.folders:
        runs = []
        for _ in range(args.runs):
            cmd = [sys.executable, __file__, folder, "--child"]
            cmd += ["--profile"] if args.profile else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            if args.profile:
                sys.stderr.write(out.stderr)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
        runs.sort(key=lambda r: r["cpu_s"])
        median = dict(runs[len(runs) // 2])
        median["folder"] = folder
        median["runs"] = len(runs)
        median["cpu_all"] = [r["cpu_s"] for r in runs]
        median["wall_all"] = sorted(r["wall_s"] for r in runs)
        median["peak_all"] = [r["peak_rss_mb"] for r in runs]
        results.append(median)
    lines = [
        "| rows | passes CPU s | passes wall s | passes rows/s (CPU) | passes peak RSS MB "
        "| all CPU s | all wall s | all peak RSS MB | load | off_diagonal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['passes_cpu_s']:.1f} | {r['passes_wall_s']:.1f} | "
            f"{r['rows'] / r['passes_cpu_s']:,.0f} | {r['passes_peak_rss_mb']:.0f} | "
            f"{r['cpu_s']:.1f} | {r['wall_s']:.1f} | {max(r['peak_all']):.0f} | "
            f"{r['load_1min']:.2f} | "
            f"{r['off_diagonal']} |"
        )
    print("\n".join(lines))
    if args.out:
        import numpy
        import pandas
        import pyarrow

        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        meta = {
            "command": " ".join(sys.argv),
            "commit": commit,
            "python": sys.version.split()[0],
            "numpy": numpy.__version__,
            "pandas": pandas.__version__,
            "pyarrow": pyarrow.__version__,
            "load_after": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
        payload = {"meta": meta, "results": results}
        Path(args.out + ".json").write_text(json.dumps(payload, indent=1))
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
