"""Laplace evaluations, PIRLS scoring steps and CPU per GLMM fit, by stage.

Counts what one default fit spends in lme4's first stage (nAGQ = 0, BOBYQA over theta with
PIRLS over (beta, u)), the second (BOBYQA over (theta, beta)), the Hessian for ``vcov``
and the rest (start, boundary checks, the final mode), on the GLMM cases of
benchmarks/glmm.py (without the 100,000-row one), the Poisson smooth of
benchmarks/smooths.py and the family cases of benchmarks/glmm_families.py (lme4's and
glmmTMB's).
Each case is fitted once untimed (warm-up) and ``--repeats`` times; CPU is
``time.process_time`` (this process); counts are those of the last fit.

Printed per phase: modes (PIRLS runs = Laplace evaluations) / scoring-step solves [/ g
analytic gradients] / CPU; the phases are stage1, stage2 (BOBYQA), newton (Newton's
stage 2 with its Hessians, where the family has one), hessian (vcov) and other.

usage: python benchmarks/glmm_counts.py [--cases cbpp,...] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mixedmodels as mm  # noqa: E402
from mixedmodels.core import lmm as core_lmm  # noqa: E402
from mixedmodels.core import pirls  # noqa: E402
from mixedmodels.optim import glmm as optim_glmm  # noqa: E402

COUNTS: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
PHASE = ["other"]


def _instrument() -> None:
    mode = pirls.GlmmProblem.mode
    solve = core_lmm.LmmProblem.solve
    minimize = optim_glmm.minimize_bounded
    hessian = optim_glmm.hessian_by_pairs
    by_gradient = getattr(optim_glmm, "hessian_by_gradient", None)
    gradient_class = getattr(optim_glmm, "BetaGradient", None)

    def counted_mode(self, *args, **kwargs):
        COUNTS[PHASE[0]]["modes"] += 1
        return mode(self, *args, **kwargs)

    def counted_solve(self, *args, **kwargs):
        COUNTS[PHASE[0]]["solves"] += 1
        return solve(self, *args, **kwargs)

    def phased(name, fun):
        def run(*args, **kwargs):
            before, PHASE[0] = PHASE[0], name
            c0 = time.process_time()
            try:
                return fun(*args, **kwargs)
            finally:
                COUNTS[name]["cpu"] += time.process_time() - c0
                PHASE[0] = before

        return run

    stage = [0]

    def staged_minimize(*args, **kwargs):
        if PHASE[0] in ("extras", "newton"):
            return minimize(*args, **kwargs)  # the family's parameters at fixed eta
        stage[0] += 1
        return phased(f"stage{min(stage[0], 2)}", minimize)(*args, **kwargs)

    # Newton's stage 2 (optim/glmm._newton_stage), the family's parameters fitted at
    # fixed means (_conditional_extras: no PIRLS) and the first stage's scale search where
    # Newton follows (_scale_search), where the fit has them
    for name, phase in (
        ("_newton_stage", "newton"),
        ("_conditional_extras", "extras"),
        ("_scale_search", "stage1"),
    ):
        if hasattr(optim_glmm, name):
            setattr(optim_glmm, name, phased(phase, getattr(optim_glmm, name)))
    full_class = getattr(optim_glmm, "LaplaceGradient", None)
    if full_class is not None:
        full = full_class.__call__

        def counted_full(self, *args, **kwargs):
            COUNTS[PHASE[0]]["gradients"] += 1
            return full(self, *args, **kwargs)

        full_class.__call__ = counted_full

    pirls.GlmmProblem.mode = counted_mode
    core_lmm.LmmProblem.solve = counted_solve
    optim_glmm.minimize_bounded = staged_minimize
    optim_glmm.hessian_by_pairs = phased("hessian", hessian)
    if by_gradient is not None:
        optim_glmm.hessian_by_gradient = phased("hessian", by_gradient)

        gradient = gradient_class.__call__

        def counted_gradient(self, *args, **kwargs):
            COUNTS[PHASE[0]]["gradients"] += 1
            return gradient(self, *args, **kwargs)

        gradient_class.__call__ = counted_gradient
    real_fit = optim_glmm._fit_glmm

    def fit(*args, **kwargs):
        stage[0] = 0
        return real_fit(*args, **kwargs)

    optim_glmm._fit_glmm = fit


def _glmm_case(name: str):
    import glmm as bench

    case = bench.CASES[name]
    df = bench.load(name)
    return lambda: mm.glmer(case["formula"], df, case["family"])


def _smooth_case(name: str):
    import smooths as bench

    case = bench.cases()[name]
    return lambda: mm.gamm(bench.formula(case), case["data"], case["family"])


def _family_case(name: str):
    from tests.family_cases import family_cases

    (case,) = [c for c in family_cases() if c.name == name]
    return case.fit


CASES = {
    "cbpp": lambda: _glmm_case("cbpp"),
    "grouseticks": lambda: _glmm_case("grouseticks"),
    "grouseticks_index": lambda: _glmm_case("grouseticks_index"),
    "grouseticks_height": lambda: _glmm_case("grouseticks_height"),
    "verbagg": lambda: _glmm_case("verbagg"),
    "poisson_cr": lambda: _smooth_case("poisson_cr"),
    "binomial_tp": lambda: _smooth_case("binomial_tp"),
}
#: every GLMM-family reference case (tests/family_cases.py: lme4's and glmmTMB's)
FAMILY_CASES = [
    "beta_sim_logit",
    "gamma_sim_log",
    "grouseticks_glmer_nb",
    "orthodont_gaussian_log",
    "owls_nbinom1",
    "owls_zinb1",
    "salamanders_glmer_nb",
    "salamanders_nbinom2",
    "salamanders_zip",
    "sleepstudy_gamma_log",
    "sleepstudy_invgauss_log",
]
CASES.update({name: (lambda name=name: _family_case(name)) for name in FAMILY_CASES})


def measure(name: str, repeats: int) -> dict:
    fit_once = CASES[name]()
    cpu = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_once()
        for _ in range(repeats):
            COUNTS.clear()
            c0 = time.process_time()
            fit = fit_once()
            cpu.append(time.process_time() - c0)
    phases = {k: dict(v) for k, v in COUNTS.items()}
    loglik = float(fit.loglik)
    return {
        "case": name,
        "cpu_s": statistics.median(cpu),
        "loglik": loglik,
        "modes": int(sum(v.get("modes", 0) for v in phases.values())),
        "solves": int(sum(v.get("solves", 0) for v in phases.values())),
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    _instrument()
    rows = []
    load = [os.getloadavg()[0]]
    for name in args.cases.split(","):
        row = measure(name, args.repeats)
        rows.append(row)
        ph = row["phases"]
        parts = " ".join(
            f"{k}={int(v.get('modes', 0))}/{int(v.get('solves', 0))}"
            + (f"/g{int(v['gradients'])}" if v.get("gradients") else "")
            + (f"/{1e3 * v['cpu']:.0f}ms" if "cpu" in v else "")
            for k, v in sorted(ph.items())
        )
        print(
            f"{name:26s} cpu {1e3 * row['cpu_s']:7.1f} ms  modes {row['modes']:4d}  "
            f"solves {row['solves']:5d}  loglik {row['loglik']:.6f}  [{parts}]",
            flush=True,
        )
    load.append(os.getloadavg()[0])
    print(f"load average (1 min): {load[0]:.2f} -> {load[1]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
