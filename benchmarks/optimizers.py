"""Why NLopt's BOBYQA: objective evaluations and time to lme4's optimum, per optimizer.

usage: python benchmarks/optimizers.py

For each catalogue case the same objective (mixedmodels' profiled REML criterion) is
minimized from the same start by NLopt BOBYQA and by scipy's bounded derivative-free and
finite-difference methods; the table shows evaluations, how far above lme4's optimum each
stopped, and the median time of 5 runs.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).parent.parent))

import mixedmodels as mm  # noqa: E402
from mixedmodels.optim import minimize_bounded  # noqa: E402
from mixedmodels.optim.start import DEFAULT_STEP, moment_start  # noqa: E402

REF = Path(__file__).parent.parent / "tests" / "reference"
CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days|Subject)", "sleepstudy_slopes_reml"),
    ("Penicillin", "diameter ~ 1 + (1|plate) + (1|sample)", "penicillin_crossed_reml"),
    ("Dyestuff", "Yield ~ 1 + (1|Batch)", "dyestuff_reml"),
    ("InstEval", "y ~ service + (1|s) + (1|d) + (1|dept)", "insteval_crossed_reml"),
]


def run_nlopt(problem, x0, step, lower):
    r = minimize_bounded(problem.objective, x0, lower, initial_step=step)
    return r.fun, r.n_evaluations


def run_scipy(method):
    def run(problem, x0, step, lower):
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        count = [0]

        def f(x):
            count[0] += 1
            return problem.objective(x)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = optimize.minimize(f, x0, method=method, bounds=bounds)
        return float(r.fun), count[0]

    return run


OPTIMIZERS = {
    "nlopt BOBYQA": run_nlopt,
    "scipy Powell": run_scipy("Powell"),
    "scipy Nelder-Mead": run_scipy("Nelder-Mead"),
    "scipy L-BFGS-B (numerical gradient)": run_scipy("L-BFGS-B"),
    "scipy COBYQA": run_scipy("COBYQA"),
}


def main() -> None:
    print("| case | optimizer | evaluations | objective - lme4 | median time |")
    print("|---|---|---|---|---|")
    for data, formula, ref_name in CASES:
        ref = json.loads((REF / f"{ref_name}.json").read_text())["objective"]
        _, problem = mm.lmer_problem(formula, mm.datasets.load(data))
        x0, step = moment_start(problem)
        step = step if (step != DEFAULT_STEP).any() else None
        lower = problem.theta_lower_bounds()
        for name, run in OPTIMIZERS.items():
            times = []
            for _ in range(1 if data == "InstEval" else 5):
                t0 = time.perf_counter()
                fun, evals = run(problem, x0.copy(), step, lower)
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            print(f"| {data} | {name} | {evals} | {fun - ref:.2e} | {t * 1e3:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
