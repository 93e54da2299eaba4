"""Fits of data beyond memory: Parquet chunk by chunk, a Dask LocalCluster, and in memory.

Writes a simulated Parquet dataset of ``y ~ x + (x | subject) + (1 | item)`` (subjects of
``--rows-per-subject`` rows, ``--items`` crossed items, factors dictionary-encoded), then
times the fit from Parquet, from a Dask DataFrame on a LocalCluster of worker processes,
and in memory where it fits.  Reports wall time, rows per second and the whole-process peak
memory (worker processes included, sampled every 0.1 s).

Also reported: objective evaluations, the CPU time of one evaluation at the optimum (the
part that grows with subjects: the crossed fill), the CPU time of the fitting process and
the load average around each run.  Results go to ``--out`` (.json and .md, with the command).

usage: python benchmarks/scale.py --rows 1e6,3e6 [--items 2000] [--workers 2]
                                  [--kinds parquet,dask,memory] [--out benchmarks/results/scale]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

TRUE_FIXEF = {"(Intercept)": 2.0, "x": 0.5}
TRUE_SD = {"subject (Intercept)": 1.0, "subject x": 0.5, "item (Intercept)": 0.7, "residual": 1.0}


def write_dataset(folder: Path, n_rows: int, per_subject: int, n_items: int, seed: int = 1):
    """The simulated data in Parquet files of at most 2,000,000 rows each (true values:
    ``TRUE_FIXEF``, ``TRUE_SD``; the subject intercepts and slopes independent)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_subjects = n_rows // per_subject
    b0 = rng.normal(0, TRUE_SD["subject (Intercept)"], n_subjects)
    b1 = rng.normal(0, TRUE_SD["subject x"], n_subjects)
    c0 = rng.normal(0, TRUE_SD["item (Intercept)"], n_items)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = 2_000_000 // per_subject * per_subject
    for k, start in enumerate(range(0, n_subjects * per_subject, per_file)):
        rows = np.arange(start, min(start + per_file, n_subjects * per_subject))
        subject = rows // per_subject
        item = rng.integers(0, n_items, rows.size)
        x = rng.normal(size=rows.size)
        y = (
            TRUE_FIXEF["(Intercept)"] + TRUE_FIXEF["x"] * x + b0[subject] + b1[subject] * x
            + c0[item] + rng.normal(0, TRUE_SD["residual"], rows.size)
        )
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


def _count_calls(owner, name: str, tally: dict) -> None:
    """Wrap ``owner.name`` to count its calls, their wall seconds and the first call's
    start (the fit's set-up ends there): instrumentation of this process only."""
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        start = time.perf_counter()
        tally.setdefault("first", start)
        try:
            return original(*args, **kwargs)
        finally:
            tally["calls"] = tally.get("calls", 0) + 1
            tally["seconds"] = tally.get("seconds", 0.0) + time.perf_counter() - start

    setattr(owner, name, counted)


def _run(kind: str, folder: str, workers: int, queue) -> None:
    import mixedmodels as mm
    from mixedmodels.linalg import fillin, gather

    formula = "y ~ x + (x | subject) + (1 | item)"
    warnings.simplefilter("ignore")
    fills: dict = {}
    gathers: dict = {}
    for fill_class in (fillin.ScatterFill, fillin.MapFill, fillin.GroupedFill, fillin.DenseFill):
        _count_calls(fill_class, "lower_fill", fills)
    _count_calls(gather.LevelQuadraticForms, "__call__", gathers)
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
        fit = mm.lmer(formula, frame)
    elapsed = time.perf_counter() - t0
    work = {
        "fills": fills.get("calls", 0), "fill_s": fills.get("seconds", 0.0),
        "gathers": gathers.get("calls", 0), "gather_s": gathers.get("seconds", 0.0),
        "setup_s": fills.get("first", t0 + elapsed) - t0,
    }
    evaluation = []
    for k in range(3):  # points next to the optimum: the objective keeps its last factor
        c0 = time.process_time()
        fit.problem.objective(np.asarray(fit.theta) * (1.0 + 1e-7 * (k + 1)))
        evaluation.append(time.process_time() - c0)
    cpu = time.process_time()
    structure = "; ".join(fit.problem.describe_structure().splitlines()[1:])
    queue.put(
        (elapsed, fit.objective, list(fit.fixef), list(fit.theta), fit.nobs,
         fit.n_evaluations, sorted(evaluation)[1], cpu, structure, recovery(fit), work)
    )


def recovery(fit) -> dict:
    """Each true value's distance from its estimate in standard errors: Wald SEs for the
    fixed effects; for a standard deviation the large-sample SE ``sd / sqrt(2 L)`` of
    ``L`` observed effects (``L`` levels; residuals: rows minus random and fixed effects),
    which ignores shrinkage and the other parameters' uncertainty."""
    out = {}
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    for name, est, s in zip(fit.fixef.index, fit.fixef.to_numpy(), se, strict=True):
        out[name] = (float(est), float(abs(est - TRUE_FIXEF[name]) / s))
    vc = fit.varcorr
    levels = {"subject": fit.ngroups["subject"], "item": fit.ngroups["item"]}
    for _, row in vc[vc["var2"].isna()].iterrows():
        name = "residual" if row["grp"] == "Residual" else f"{row['grp']} {row['var1']}"
        count = fit.nobs - 2 * levels["subject"] - levels["item"] - 2 if name == "residual" \
            else levels[row["grp"]]
        sd = float(row["sdcor"])
        out[name] = (sd, float(abs(sd - TRUE_SD[name]) / (sd / np.sqrt(2 * count))))
    return out


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
    elapsed, objective, fixef, theta, nobs, evaluations, per_evaluation, cpu, path, rec, work = (
        result
    )
    return {"kind": kind, "time": elapsed, "peak_mb": peak / 2**20, "objective": objective,
            "fixef": fixef, "theta": theta, "rows": nobs, "evaluations": evaluations,
            "cpu_per_evaluation": per_evaluation, "cpu_fit_process": cpu, "path": path,
            "recovery": rec, "work": work}


def _versions() -> dict:
    import numpy
    import pyarrow
    import scipy

    versions = {"numpy": numpy.__version__, "scipy": scipy.__version__,
                "pyarrow": pyarrow.__version__}
    try:
        import dask

        versions["dask"] = dask.__version__
    except ImportError:
        pass
    return versions


def _markdown(runs: list[dict], command: str, versions: dict) -> str:
    lines = [
        f"Command: `{command}`; versions: {versions}.  2-core machine shared with other "
        "jobs: each row shows the load average (1 min) before and after its run.",
        "",
        "| rows | source | time (s) | rows / s | peak memory (MB) | evaluations "
        "| CPU per evaluation (s) | CPU of the fitting process (s) | objective | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['rows']:,} | {r['kind']} | {r['time']:.1f} | {r['rows'] / r['time']:,.0f} "
            f"| {r['peak_mb']:.0f} | {r['evaluations']} | {r['cpu_per_evaluation']:.3f} "
            f"| {r['cpu_fit_process']:.1f} | {r['objective']:.4f} "
            f"| {r['load'][0]:.1f} -> {r['load'][1]:.1f} |"
        )
    lines += [
        "",
        "Estimates and the true values' distance from them in standard errors (fixed "
        "effects: Wald; sds: the large-sample sd / sqrt(2 L) of L effects):",
        "",
        "| rows | source | " + " | ".join(TRUE_FIXEF) + " | " + " | ".join(TRUE_SD) + " |",
        "|---|---|" + "---|" * (len(TRUE_FIXEF) + len(TRUE_SD)),
    ]
    for r in runs:
        rec = r["recovery"]
        cells = [f"{rec[k][0]:.4f} ({rec[k][1]:.1f})" for k in (*TRUE_FIXEF, *TRUE_SD)]
        lines.append(f"| {r['rows']:,} | {r['kind']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Where the wall time went: the set-up (the passes over the data and the reduced "
        "problem, up to the first fill), the fills of the dense block and the quadratic "
        "forms of the analytic gradient (count and seconds, all calls of the fit):",
        "",
        "| rows | source | set-up (s) | fills | fill time (s) | gradient forms | form time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        w = r.get("work")
        if w:
            lines.append(
                f"| {r['rows']:,} | {r['kind']} | {w['setup_s']:.1f} | {w['fills']} "
                f"| {w['fill_s']:.1f} | {w['gathers']} | {w['gather_s']:.1f} |"
            )
    lines += ["", "Evaluation paths:", ""]
    lines += sorted({f"- {r['kind']}: {r['path']}" for r in runs})
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e6")
    parser.add_argument("--rows-per-subject", type=int, default=100)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default="parquet,dask,memory")
    parser.add_argument("--memory-limit-rows", type=float, default=2e7)
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--data", default=None,
                        help="keep the datasets in DATA/<rows> and reuse them when present")
    args = parser.parse_args(argv)
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    versions = _versions()
    runs: list[dict] = []
    print("| rows | source | time (s) | rows / s | peak memory (MB) | evaluations "
          "| CPU per evaluation (s) | objective |")
    print("|---|---|---|---|---|---|---|---|")
    for text in args.rows.split(","):
        n = int(float(text))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.data) / str(n) if args.data else Path(tmp) / "data"
            if not folder.exists():
                write_dataset(folder, n, args.rows_per_subject, args.items)
            for kind in args.kinds.split(","):
                if kind == "memory" and n > args.memory_limit_rows:
                    continue
                before = os.getloadavg()[0]
                r = measure(kind, str(folder), args.workers)
                r["load"] = (before, os.getloadavg()[0])
                runs.append(r)
                print(f"| {r['rows']:,} | {kind} | {r['time']:.1f} | {r['rows'] / r['time']:,.0f} "
                      f"| {r['peak_mb']:.0f} | {r['evaluations']} "
                      f"| {r['cpu_per_evaluation']:.3f} | {r['objective']:.4f} | {r['work']}",
                      flush=True)
                if args.out:
                    out = Path(args.out)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    payload = {"command": command, "versions": versions, "runs": runs}
                    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
                    out.with_suffix(".md").write_text(_markdown(runs, command, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
