"""CPU cost of one Laplace evaluation (a PIRLS solve to the conditional mode) per GLMM case.

usage: python benchmarks/glmm_evaluation_cost.py [--cases cbpp,grouseticks,...] [--repeats 5]
                                                 [--out benchmarks/results/glmm_evaluation_cost]
       python benchmarks/glmm_evaluation_cost.py --compare before1.json,before2.json
                                                 after1.json,after2.json [--note ...] [--out ...]

For each case, in this process: one untimed warm-up fit, then ``repeats`` fits; for each fit
the CPU time of the whole fit (``time.process_time``: user + system of this process, all
threads) and, by wrapping :meth:`GlmmProblem.mode`, the number of PIRLS solves, the CPU time
spent inside them and the number of scoring steps (solves of the weighted system, the
solve for ``log |L|^2`` at the mode included).  Reported: medians over the fits of the CPU
per fit, the CPU per PIRLS solve (mode time / solves), the solves and steps per fit, and the
log-likelihood (it must not move when the evaluation gets cheaper).  The load average is
recorded before and after: the machine is shared, so compare CPU times, not wall times.
No peers run here: the per-fit ratios to lme4 come from benchmarks/glmm.py.  Each family
case of issue 14 (``FAMILY_CASES``) also runs as ``<case>:poisson``, a Poisson fit of the same
formula and rows (the response rescaled to mean-10 counts), and both tables give the ratio of
a case's CPU per evaluation to its twin's (the issue's target: within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import mixedmodels as mm  # noqa: E402
from mixedmodels.core import pirls  # noqa: E402


def _smooth_case():
    """The Poisson ``cr`` smooth of benchmarks/smooths.py (tests/reference/smooths)."""
    ref = json.loads((ROOT / "tests" / "reference" / "smooths" / "gamm4_cases.json").read_text())
    for case in ref["cases"].values():
        if case["family"] == "poisson" and "cr" in case["formula"]:
            data = pd.DataFrame(case["data"])
            rhs = case["formula"].split("~", 1)[1].strip()
            random = case["random"].lstrip("~").strip() if case["random"] else ""
            formula = f"y ~ {rhs}" + (f" + {random}" if random else "")
            return lambda: mm.gamm(formula, data, "poisson")
    raise LookupError("no Poisson cr case in the smooth reference")


def _glmer_case(data: str, formula: str, family: str):
    frame = mm.datasets.load(data)
    return lambda: mm.glmer(formula, frame, family)


def _binary100k():
    from glmm import simulate_binary

    frame = simulate_binary()
    return lambda: mm.glmer("y ~ x + (1 | subj) + (1 | item)", frame, "binomial")


def _family_case(name: str):
    from tests.family_cases import family_cases

    case = next(c for c in family_cases() if c.name == name)
    return case.fit


def _poisson_twin(name: str):
    """A Poisson fit of the same size as family case ``name``: its formula and rows, the
    response rescaled to mean 10 and rounded to counts (the same ``n``, ``X`` and ``Z``: the
    reference cost that issue 14's families are held to, within 1.5x per evaluation)."""
    from tests.family_cases import family_cases

    case = next(c for c in family_cases() if c.name == name)
    frame = case.data().copy()
    response = case.formula.split("~", 1)[0].strip()
    y = frame[response].to_numpy(dtype=float)
    frame[response] = np.round(10.0 * y / float(np.mean(y)))
    return lambda: mm.glmer(case.formula, frame, "poisson")


#: issue 14's family cases (tests/family_cases.py) whose per-evaluation cost is measured;
#: each also runs as a Poisson twin (``<case>:poisson``) unless its response is an
#: expression
FAMILY_CASES = (
    "gamma_sim_log",
    "sleepstudy_gamma_log",
    "sleepstudy_gamma_inverse",
    "orthodont_gaussian_log",
    "sleepstudy_invgauss_log",
    "grouseticks_glmer_nb",
    "salamanders_glmer_nb",
    "salamanders_nbinom2",
    "salamanders_nbinom1",
    "owls_nbinom1",
    "salamanders_zip",
    "salamanders_zinb2",
    "owls_zinb1",
    "beta_sim_logit",
    "tweedie_sim",
)


CASES = {
    "cbpp": lambda: _glmer_case(
        "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"
    ),
    "grouseticks": lambda: _glmer_case(
        "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", "poisson"
    ),
    "grouseticks_index": lambda: _glmer_case(
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
    ),
    "verbagg": lambda: _glmer_case(
        "VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial"
    ),
    "poisson_cr_smooth": _smooth_case,
    "binary100k": _binary100k,
}
for _name in FAMILY_CASES:
    CASES[_name] = lambda _n=_name: _family_case(_n)
    CASES[f"{_name}:poisson"] = lambda _n=_name: _poisson_twin(_n)


class _ModeMeter:
    """Counts and times :meth:`GlmmProblem.mode` (outermost calls only) and the scoring
    steps' solves inside it."""

    def __init__(self) -> None:
        self.calls = 0
        self.cpu = 0.0
        self.solves = 0
        self._depth = 0

    def install(self) -> None:
        original_mode = pirls.GlmmProblem.mode
        meter = self

        def mode(self_, *args, **kwargs):
            meter._depth += 1
            c0 = time.process_time()
            try:
                return original_mode(self_, *args, **kwargs)
            finally:
                meter._depth -= 1
                if meter._depth == 0:
                    meter.cpu += time.process_time() - c0
                    meter.calls += 1

        pirls.GlmmProblem.mode = mode
        for name in _SOLVER_METHODS:
            owner, attr = name
            original = getattr(owner, attr)

            def counted(*args, _original=original, **kwargs):
                meter.solves += 1
                return _original(*args, **kwargs)

            setattr(owner, attr, counted)

    def reset(self) -> None:
        self.calls, self.cpu, self.solves = 0, 0.0, 0


def _solver_methods() -> list[tuple[type, str]]:
    """The weighted-system solves of a scoring step and of the log-determinant at the mode
    (whichever solver classes the PIRLS module has)."""
    out = []
    for obj in vars(pirls).values():
        if isinstance(obj, type) and obj.__module__ == pirls.__name__:
            for attr in ("step", "at_mode"):
                if attr in vars(obj):
                    out.append((obj, attr))
    return out


_SOLVER_METHODS = _solver_methods()


def measure(name: str, repeats: int, meter: _ModeMeter) -> dict:
    fit_once = CASES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_once()  # warm-up (imports, caches)
        rows = []
        fit = None
        for _ in range(repeats):
            meter.reset()
            c0 = time.process_time()
            fit = fit_once()
            cpu = time.process_time() - c0
            rows.append((cpu, meter.calls, meter.cpu, meter.solves))
    cpu_fit = statistics.median(r[0] for r in rows)
    per_eval = statistics.median(r[2] / max(r[1], 1) for r in rows)
    return {
        "cpu_per_fit_ms": 1e3 * cpu_fit,
        "cpu_per_evaluation_ms": 1e3 * per_eval,
        "evaluations": int(statistics.median(r[1] for r in rows)),
        "solves": int(statistics.median(r[3] for r in rows)),
        "share_in_pirls": statistics.median(r[2] / r[0] for r in rows),
        "loglik": float(fit.loglik),
        "cpu_per_fit_all_ms": [1e3 * r[0] for r in rows],
    }


def render(result: dict) -> str:
    lines = [
        f"Command: `{result['command']}`; {result['date']}; load average before "
        f"{result['load_before']}, after {result['load_after']} on {os.cpu_count()} cores; "
        f"{result['versions']}",
        "",
        "CPU times (time.process_time of this process), medians over the timed fits. An "
        "evaluation is one outermost `GlmmProblem.mode` call (PIRLS to the mode and the "
        "Laplace deviance); solves are the weighted-system solves inside them (scoring "
        "steps plus the one for log|L| at the mode).",
        "",
        "| case | CPU per fit (ms) | evaluations | solves | CPU per evaluation (ms) | "
        "per evaluation / Poisson twin's | share of fit in PIRLS | logLik |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cases = result["cases"]
    for name, r in cases.items():
        twin = cases.get(f"{name}:poisson")
        ratio = (
            f"{r['cpu_per_evaluation_ms'] / twin['cpu_per_evaluation_ms']:.2f}" if twin else "-"
        )
        lines.append(
            f"| {name} | {r['cpu_per_fit_ms']:.1f} | {r['evaluations']} | {r['solves']} | "
            f"{r['cpu_per_evaluation_ms']:.3f} | {ratio} | {r['share_in_pirls']:.2f} | "
            f"{r['loglik']:.6f} |"
        )
    return "\n".join(lines) + "\n"


def render_comparison(before: list[dict], after: list[dict], note: str) -> str:
    """A markdown table of two sets of runs (e.g. the code before and after a change, run
    alternately in the same period): medians over the runs, and the ratio before / after."""

    def med(runs: list[dict], case: str, key: str) -> float:
        return statistics.median(r["cases"][case][key] for r in runs if case in r["cases"])

    loads = [r["load_before"][0] for r in before + after] + [
        r["load_after"][0] for r in before + after
    ]
    lines = [
        note,
        "",
        f"Runs: {len(before)} before, {len(after)} after, alternating; 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores (CPU times inflate "
        "under load: compare the columns of one table, not tables of different runs).",
        "",
        "| case | CPU per evaluation before (ms) | after (ms) | before / after | CPU per fit "
        "before (ms) | after (ms) | before / after | solves per evaluation before | after | "
        "logLik before | after | per evaluation / Poisson twin's, before | after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in after[0]["cases"]:
        e0 = med(before, case, "cpu_per_evaluation_ms")
        e1 = med(after, case, "cpu_per_evaluation_ms")
        twin = f"{case}:poisson"
        if twin in after[0]["cases"]:
            t0 = f"{e0 / med(before, twin, 'cpu_per_evaluation_ms'):.2f}"
            t1 = f"{e1 / med(after, twin, 'cpu_per_evaluation_ms'):.2f}"
        else:
            t0 = t1 = "-"
        f0, f1 = med(before, case, "cpu_per_fit_ms"), med(after, case, "cpu_per_fit_ms")
        s0 = med(before, case, "solves") / med(before, case, "evaluations")
        s1 = med(after, case, "solves") / med(after, case, "evaluations")
        lines.append(
            f"| {case} | {e0:.3f} | {e1:.3f} | {e0 / e1:.2f}x | {f0:.1f} | {f1:.1f} | "
            f"{f0 / f1:.2f}x | {s0:.2f} | {s1:.2f} | {med(before, case, 'loglik'):.6f} | "
            f"{med(after, case, 'loglik'):.6f} | {t0} | {t1} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(c for c in CASES if c != "binary100k"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("BEFORE", "AFTER"),
        help="comma-separated JSON results of two codes: render their comparison and exit",
    )
    parser.add_argument("--note", default="", help="a first line for --compare's table")
    args = parser.parse_args()
    if args.compare:
        before, after = (
            [json.loads(Path(f).read_text()) for f in group.split(",")] for group in args.compare
        )
        text = render_comparison(before, after, args.note)
        if args.out:
            Path(args.out + ".md").write_text(text)
        print(text)
        return
    meter = _ModeMeter()
    meter.install()
    load_before = os.getloadavg()
    out = {}
    for name in args.cases.split(","):
        out[name] = measure(name, args.repeats, meter)
        r = out[name]
        print(
            f"{name}: {r['cpu_per_fit_ms']:.1f} ms/fit, {r['evaluations']} evaluations, "
            f"{r['solves']} solves, {r['cpu_per_evaluation_ms']:.3f} ms/evaluation, "
            f"logLik {r['loglik']:.6f}",
            flush=True,
        )
    result = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "mixedmodels": getattr(mm, "__version__", "?"),
        },
        "cases": out,
    }
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(result, indent=2))
        Path(args.out + ".md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
