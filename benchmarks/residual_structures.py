"""Residual correlation structures and variance functions (issue 12): mixedmodels against
nlme::lme in the same run, and a simulated 1,000,000-row AR(1) model.

usage: python benchmarks/residual_structures.py [--repeats 5] [--big-repeats 3] [--no-big]
                                                [--out benchmarks/results/residual_structures]

Small cases: nlme's classic examples (Ovary AR(1) and ARMA(1,1), BodyWeight varPower and
CAR(1), Orthodont varIdent, Pastes compound symmetry, sleepstudy AR(1)), REML and ML.
Ours: median wall time of ``repeats`` complete ``mm.lmer`` calls (design included) in
this process, and CPU time; nlme: median ``system.time(lme(...))`` elapsed of ``repeats``
fits in one Rscript process (residual_worker.R).  Both log-likelihoods are recorded (they
must agree).  For AR(1) cases the joint search (theta and Phi together, what mm.lmer does)
is also compared with a nested one (theta profiled by an inner BOBYQA at each Phi).

Big case: ``y ~ x + (1 | g)`` with AR(1) errors, 10,000 groups x 100 times (simulated,
Phi = 0.6, seed 1), fitted in a fresh process: wall time per fit (median of
``big_repeats``), evaluations and the process's peak resident memory (VmHWM, data
included).  The load average is recorded before and after: timings on a shared 2-core
machine are only indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent
DATADIR = Path(os.environ.get("MM_SHARED_DATA", ROOT.parent / "shared" / "data"))

OVARY = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
BODYWEIGHT = "weight ~ Time * Diet + (Time | Rat)"


def cases(mm):
    return {
        "ovary_ar1": ("Ovary", OVARY, lambda: {"correlation": mm.cor.AR1()}),
        "ovary_arma11": ("Ovary", OVARY, lambda: {"correlation": mm.cor.ARMA(p=1, q=1)}),
        "bodyweight_varpower": ("BodyWeight", BODYWEIGHT, lambda: {"weights": mm.var.Power()}),
        "bodyweight_car1": ("BodyWeight", BODYWEIGHT, lambda: {"correlation": mm.cor.CAR1("Time")}),
        "orthodont_varident": (
            "Orthodont",
            "distance ~ age * Sex + (1 | Subject)",
            lambda: {"weights": mm.var.Ident("Sex")},
        ),
        "pastes_cs": (
            "Pastes",
            "strength ~ 1 + (1 | batch)",
            lambda: {"correlation": mm.cor.CompSymm(group="batch/cask")},
        ),
        "sleepstudy_ar1": (
            "sleepstudy",
            "Reaction ~ Days + (1 | Subject)",
            lambda: {"correlation": mm.cor.AR1()},
        ),
    }


STRUCTURE_CASES = {
    "sleepstudy_diag": ("sleepstudy", "Reaction ~ Days + diag(Days | Subject)"),
    "machines_us": ("Machines", "score ~ Machine + us(0 + Machine | Worker)"),
    "machines_cs": ("Machines", "score ~ Machine + cs(0 + Machine | Worker)"),
    "machines_ar1": ("Machines", "score ~ Machine + ar1(0 + Machine | Worker)"),
    "machines_toep": ("Machines", "score ~ Machine + toep(0 + Machine | Worker)"),
}


def load_average() -> float:
    return os.getloadavg()[0]


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _time_fits(mm, cases: dict, repeats: int) -> dict:
    """Median wall and CPU time of each ``(data, formula, kwargs)`` case, REML and ML."""
    out = {}
    for name, (data, formula, kwargs) in cases.items():
        frame = mm.datasets.load(data)
        for method in ("reml", "ml"):
            walls, cpus = [], []
            for _ in range(repeats + 1):  # the first call warms imports and caches
                c0, t0 = cpu_seconds(), time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = mm.lmer(formula, frame, reml=method == "reml", **kwargs)
                walls.append(time.perf_counter() - t0)
                cpus.append(cpu_seconds() - c0)
            out[f"{name}_{method}"] = {
                "seconds": statistics.median(walls[1:]),
                "cpu_seconds": statistics.median(cpus[1:]),
                "logLik": fit.loglik,
                "evaluations": fit.n_evaluations,
            }
    return out


def time_ours(repeats: int) -> dict:
    import mixedmodels as mm

    cases_ = {n: (d, f, k()) for n, (d, f, k) in cases(mm).items()}
    return _time_fits(mm, cases_, repeats)


def time_ours_structures(repeats: int) -> dict:
    import mixedmodels as mm

    cases_ = {n: (d, f, {}) for n, (d, f) in STRUCTURE_CASES.items()}
    return _time_fits(mm, cases_, repeats)


def time_r(worker: str, repeats: int) -> dict:
    cmd = ["Rscript", str(HERE / worker), str(DATADIR), str(repeats)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = {}
    for line in run.stdout.splitlines():
        if line.strip().startswith("{"):
            row = json.loads(line)
            out[row["case"]] = row
    return out


def nested_fit(rp, x0):
    """theta profiled inside an outer BOBYQA over the structure's parameters."""
    from mixedmodels.optim.bobyqa import minimize_bounded

    n_theta = rp.n_theta
    lower = rp.theta_lower_bounds()
    count = [0]
    theta = [x0[:n_theta].copy()]

    def outer(u):
        res = minimize_bounded(
            lambda th: rp.objective(np.concatenate([th, u])), theta[0], lower, ftol_abs=1e-10
        )
        count[0] += res.n_evaluations
        theta[0] = res.x
        return res.fun

    res = minimize_bounded(
        outer, x0[n_theta:], np.full(x0.size - n_theta, -np.inf), ftol_abs=1e-10, initial_step=0.5
    )
    return res.fun, count[0]


def joint_vs_nested(repeats: int) -> dict:
    import mixedmodels as mm
    from mixedmodels.linalg.threads import single_threaded_blas

    out = {}
    for name in ("ovary_ar1", "bodyweight_car1", "sleepstudy_ar1"):
        data, formula, kwargs = cases(mm)[name]
        fit = mm.lmer(formula, mm.datasets.load(data), **kwargs())
        rp = fit._rp
        x0 = np.concatenate([np.ones(rp.n_theta) * 0.5, np.zeros(rp.n_cor)])
        if rp.n_theta == 3:
            x0[1] = 0.0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with single_threaded_blas(True):
                value, evaluations = nested_fit(rp, x0)
            times.append(time.perf_counter() - t0)
        out[name] = {
            "joint_objective": fit.objective,
            "joint_evaluations": fit.n_evaluations,
            "nested_objective": value,
            "nested_evaluations": evaluations,
            "nested_seconds": statistics.median(times),
        }
    return out


def big_case(repeats: int) -> dict:
    """Runs in a fresh process (``--big-child``) so its peak memory is its own."""
    import pandas as pd
    from scipy.signal import lfilter

    import mixedmodels as mm

    rng = np.random.default_rng(1)
    groups, times, phi = 10_000, 100, 0.6
    g = np.repeat(np.arange(groups), times)
    x = rng.standard_normal(g.size)
    e = rng.standard_normal((groups, times))
    e[:, 0] /= np.sqrt(1 - phi**2)
    e = lfilter([1.0], [1.0, -phi], e, axis=1).ravel() * np.sqrt(1 - phi**2)
    y = 1 + 0.5 * x + rng.standard_normal(groups)[g] + e
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        fit = mm.lmer("y ~ x + (1 | g)", df, correlation=mm.cor.AR1())
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return {
        "rows": int(g.size),
        "seconds": statistics.median(walls),
        "all_seconds": walls,
        "cpu_seconds": statistics.median(cpus),
        "evaluations": fit.n_evaluations,
        "peak_mb": peak_mb(),
        "phi": float(fit.correlation_parameters["Phi"]),
        "fixef": fit.fixef.to_dict(),
        "sigma": fit.sigma,
        "objective": fit.objective,
    }


def _row(case: str, ours: dict, peer: dict) -> str:
    nan = float("nan")
    wall = peer.get("seconds", nan) / ours["seconds"]
    cpu = peer.get("cpu_seconds", nan) / ours["cpu_seconds"]
    return (
        f"| {case} | {ours['seconds']:.4f} | {ours['cpu_seconds']:.4f} | "
        f"{peer.get('seconds', nan):.3f} | {peer.get('cpu_seconds', nan):.3f} | {wall:.1f}x | "
        f"{cpu:.1f}x | {ours['evaluations']} | {ours['logLik']:.6f} | "
        f"{peer.get('logLik', nan):.6f} |"
    )


def render(result: dict) -> str:
    lines = [
        "# Residual correlation structures and variance functions (issue 12)",
        "",
        f"Command: `{result['command']}`  ",
        f"Load average before / after: {result['load_before']:.2f} / {result['load_after']:.2f}"
        f" (2 cores, shared)  ",
        f"Versions: {result['versions']}",
        "",
        "## nlme's examples: whole `mm.lmer` call vs `nlme::lme`",
        "",
        "| case | ours (s) | ours CPU (s) | nlme (s) | nlme CPU (s) | nlme / ours | "
        "CPU ratio | evaluations | logLik ours | logLik nlme |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, ours in result["ours"].items():
        peer = result["nlme"].get(case, {})
        lines.append(_row(case, ours, peer))
    if result.get("ours_structures"):
        lines += [
            "",
            "## Structured random-effect covariances: whole `mm.lmer` call vs `glmmTMB`",
            "",
            "| case | ours (s) | ours CPU (s) | glmmTMB (s) | glmmTMB CPU (s) | glmmTMB / ours "
            "| CPU ratio | evaluations | logLik ours | logLik glmmTMB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for case, ours in result["ours_structures"].items():
            lines.append(_row(case, ours, result["glmmTMB"].get(case, {})))
    if result.get("joint_vs_nested"):
        lines += [
            "",
            "## Joint search over (theta, Phi) vs theta profiled inside Phi",
            "",
            "| case | joint evaluations | nested evaluations | objective joint | "
            "objective nested |",
            "|---|---|---|---|---|",
        ]
        for case, r in result["joint_vs_nested"].items():
            lines.append(
                f"| {case} | {r['joint_evaluations']} | {r['nested_evaluations']} | "
                f"{r['joint_objective']:.8f} | {r['nested_objective']:.8f} |"
            )
    big = result.get("big")
    if big:
        lines += [
            "",
            "## 1,000,000 rows: `y ~ x + (1 | g)`, AR(1) errors, 10,000 groups x 100 times",
            "",
            f"Wall time per fit (median of {len(big['all_seconds'])}): {big['seconds']:.2f} s "
            f"(all: {', '.join(f'{s:.2f}' for s in big['all_seconds'])}); CPU "
            f"{big['cpu_seconds']:.2f} s; {big['evaluations']} evaluations; peak resident "
            f"memory of the process (data included) {big['peak_mb']:.0f} MB.  Estimates: "
            f"Phi = {big['phi']:.4f} (true 0.6), fixed effects {big['fixef']}, sigma "
            f"{big['sigma']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big-repeats", type=int, default=3)
    parser.add_argument("--no-big", action="store_true")
    parser.add_argument("--big-child", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "residual_structures"))
    args = parser.parse_args()
    if args.big_child:
        print(json.dumps(big_case(args.big_repeats)))
        return
    import mixedmodels

    result = {
        "command": "python benchmarks/residual_structures.py " + " ".join(sys.argv[1:]),
        "load_before": load_average(),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "mixedmodels": mixedmodels.__version__,
        },
    }
    result["ours"] = time_ours(args.repeats)
    result["joint_vs_nested"] = joint_vs_nested(args.repeats)
    result["nlme"] = time_r("residual_worker.R", args.repeats)
    result["ours_structures"] = time_ours_structures(args.repeats)
    result["glmmTMB"] = time_r("structures_worker.R", args.repeats)
    if result["glmmTMB"]:
        result["versions"]["glmmTMB"] = next(iter(result["glmmTMB"].values()))["glmmTMB"]
    if result["nlme"]:
        result["versions"]["nlme"] = next(iter(result["nlme"].values()))["nlme"]
    if not args.no_big:
        run = subprocess.run(
            [sys.executable, __file__, "--big-child", "--big-repeats", str(args.big_repeats)],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ,
        )
        result["big"] = json.loads(run.stdout.strip().splitlines()[-1])
    result["load_after"] = load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = render(result)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
