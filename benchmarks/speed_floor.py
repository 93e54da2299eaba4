"""Where the time of a residual-structure (issue 12) and a nonlinear (issue 16) fit goes,
against a tenth of nlme's time in the same run: the floor under the 10x goal.

usage: python benchmarks/speed_floor.py [--repeats 5] [--nlme-repeats 5]
                                         [--out benchmarks/results/speed_floor]

Each fit is the ordinary ``mm.lmer`` / ``mm.nlme`` call; its phases are timed by wrapping
the functions the call goes through (CPU time, ``time.process_time``, exclusive of the
phases nested inside), medians over ``repeats`` fits after a warm-up:

- residual structures (``mm.lmer(..., correlation=, weights=)``):
  (a) set-up: formula parse and design (``build_design``), the structure's layout and
  covariates, the whitening problem and the moment start; (b) one objective evaluation
  (``ResidualProblem.internal_objective`` at the optimum, nudged so that no cache answers;
  median of 200); (c) the optimization (``optimize_residual``): its evaluation count, the
  count times (b), and the whole phase (BOBYQA's own work and the solves at the optimum
  included); (d) the results object (``ResidualLmerFit``).
- nonlinear models (``mm.nlme``): (a) set-up: parse, design and the self-starting model's
  start; (b) one model linearization (values and gradient: ``NonlinearProblem.linearize``)
  and one LME-step objective (the linearized model's profiled deviance from its per-group
  cross products); (c) the alternation (``fit_lindstrom_bates``): linearizations and LME
  evaluations counted, with the time of each part (linearizations, LME steps less their
  linearizations, PNLS steps less theirs, the rest); (d) the results object (``NlmeFit``).

nlme's CPU time (``system.time`` user + system, median of ``--nlme-repeats``) is measured in
the same run by benchmarks/residual_worker.R and benchmarks/nlme_worker.R (default
control; nlme_worker.R also times its converged fits, not used here).  The table marks
every part that alone exceeds nlme / 10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


class PhaseClock:
    """Exclusive CPU time and call counts of wrapped functions (nested calls subtracted
    from their caller)."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def wrap(self, name: str, fun):
        clock = self

        def wrapped(*args, **kwargs):
            frame = [0.0]  # time of nested phases
            clock._stack.append(frame)
            t0 = time.process_time()
            try:
                return fun(*args, **kwargs)
            finally:
                elapsed = time.process_time() - t0
                clock._stack.pop()
                clock.totals[name] = clock.totals.get(name, 0.0) + elapsed - frame[0]
                clock.calls[name] = clock.calls.get(name, 0) + 1
                if clock._stack:
                    clock._stack[-1][0] += elapsed

        wrapped.__wrapped__ = fun
        return wrapped


@contextmanager
def patched(pairs):
    """Temporarily replace ``(owner, attribute, new)`` triples."""
    old = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in pairs]
    try:
        for owner, attr, new in pairs:
            setattr(owner, attr, new)
        yield
    finally:
        for owner, attr, value in old:
            setattr(owner, attr, value)


def _median_cpu(fun, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fun()
        times.append(time.process_time() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------- residual structures
def residual_floor(repeats: int) -> dict:
    from residual_structures import cases

    import mixedmodels as mm
    import mixedmodels.results.residual_lmer as rl
    from mixedmodels.core.residual_problem import ResidualProblem

    clock = PhaseClock()
    wraps = [
        (rl, "build_design", clock.wrap("design", rl.build_design)),
        (rl, "residual_layout", clock.wrap("setup", rl.residual_layout)),
        (rl, "variance_values", clock.wrap("setup", rl.variance_values)),
        (rl, "ResidualProblem", clock.wrap("setup", rl.ResidualProblem)),
        (rl, "_theta_start", clock.wrap("setup", rl._theta_start)),
        (rl, "optimize_residual", clock.wrap("optimize", rl.optimize_residual)),
        (rl, "ResidualLmerFit", clock.wrap("results", rl.ResidualLmerFit)),
    ]
    out = {}
    for name, (data, formula, kwargs) in cases(mm).items():
        frame = mm.datasets.load(data)
        for method in ("reml", "ml"):
            runs = []
            with warnings.catch_warnings(), patched(wraps):
                warnings.simplefilter("ignore")
                for i in range(repeats + 1):
                    clock.reset()
                    t0 = time.process_time()
                    fit = mm.lmer(formula, frame, reml=method == "reml", **kwargs())
                    total = time.process_time() - t0
                    if i:
                        runs.append({"total": total, **clock.totals})
            rp: ResidualProblem = fit.residual_problem
            z = rp.to_internal(fit.optimum_parameters)
            nudges = [z * (1 + 1e-9 * (k % 2 + 1)) for k in range(2)]
            counter = [0]

            def one(rp=rp, nudges=nudges, counter=counter):
                counter[0] += 1
                rp.internal_objective(nudges[counter[0] % 2])

            evaluation = _median_cpu(one, 200)
            row = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
            row["design_setup"] = row.get("design", 0.0) + row.get("setup", 0.0)
            row["other"] = row["total"] - sum(
                row.get(k, 0.0) for k in ("design", "setup", "optimize", "results")
            )
            row["evaluation"] = evaluation
            row["evaluations"] = int(fit.n_evaluations)
            row["evaluations_cpu"] = evaluation * fit.n_evaluations
            row["logLik"] = float(fit.loglik)
            out[f"{name}_{method}"] = row
    return out


# --------------------------------------------------------------------- nonlinear models
def nlme_floor(repeats: int) -> dict:
    import mixedmodels as mm
    import mixedmodels.api as api
    import mixedmodels.design.nonlinear as dn
    import mixedmodels.optim.nonlinear as on
    import mixedmodels.results.nlme_fit as nf
    from mixedmodels.core import nonlinear as cn
    from tests.reference.nlme.cases import CASES, arguments, reference

    ref = reference()
    clock = PhaseClock()
    wraps = [
        (dn, "build_nlme_design", clock.wrap("design", dn.build_nlme_design)),
        (api, "_nlme_start", clock.wrap("start", api._nlme_start)),
        (on, "fit_lindstrom_bates", clock.wrap("alternation", on.fit_lindstrom_bates)),
        (on, "_lme_step", clock.wrap("lme_step", on._lme_step)),
        (on, "_pnls", clock.wrap("pnls", on._pnls)),
        (cn.NonlinearProblem, "linearize",
         clock.wrap("linearize", cn.NonlinearProblem.linearize)),
        (nf, "NlmeFit", clock.wrap("results", nf.NlmeFit)),
    ]
    out = {}
    for name in CASES:
        data, kwargs = arguments(name, ref)
        runs = []
        with warnings.catch_warnings(), patched(wraps):
            warnings.simplefilter("ignore")
            for i in range(repeats + 1):
                clock.reset()
                t0 = time.process_time()
                fit = mm.nlme(data=data, **kwargs)
                total = time.process_time() - t0
                if i:
                    runs.append({"total": total, **clock.totals,
                                 "linearizations": clock.calls.get("linearize", 0)})
        row = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
        row["design_setup"] = row.get("design", 0.0) + row.get("start", 0.0)
        row["other"] = row["total"] - sum(
            row.get(k, 0.0)
            for k in ("design", "start", "alternation", "lme_step", "pnls", "linearize",
                      "results")
        )
        # one linearization and one LME objective at the estimates
        problem, est = fit.problem, fit.estimate
        row["one_linearization"] = _median_cpu(
            lambda problem=problem, est=est: problem.linearize(est.beta, est.b), 200)
        lin = problem.linearize(est.beta, est.b)
        s = est.weights if problem.power_variance else None
        lam = problem.lambda_of(est.theta)

        def lme_eval(problem=problem, lin=lin, s=s, lam=lam):
            g = cn.gram(problem, lin, s)
            cn.deviance(cn.pls(g, lam, False), problem.n, problem.p, False, g.log_weights)

        row["one_lme_evaluation"] = _median_cpu(lme_eval, 200)
        g0 = cn.gram(problem, lin, s)
        row["one_lme_evaluation_gram_done"] = _median_cpu(
            lambda g0=g0, lam=lam, problem=problem: cn.deviance(
                cn.pls(g0, lam, False), problem.n, problem.p, False, g0.log_weights), 200)
        row["lme_evaluations"] = int(est.evaluations)
        row["logLik"] = float(fit.loglik)
        out[name] = row
    return out


# --------------------------------------------------------------------- peers
def nlme_lme_cpu(repeats: int) -> dict:
    datadir = Path(os.environ.get("MM_SHARED_DATA", ROOT.parent / "shared" / "data"))
    run = subprocess.run(["Rscript", str(HERE / "residual_worker.R"), str(datadir),
                          str(repeats)], capture_output=True, text=True, check=True)
    out = {}
    for line in run.stdout.splitlines():
        if line.strip().startswith("{"):
            row = json.loads(line)
            out[row["case"]] = row["cpu_seconds"]
    return out


def nlme_nlme_cpu(repeats: int) -> dict:
    data = ROOT / "tests" / "reference" / "nlme" / "data"
    run = subprocess.run(["Rscript", str(HERE / "nlme_worker.R"), str(data), str(repeats)],
                         capture_output=True, text=True, check=True)
    r = json.loads(run.stdout.strip().splitlines()[-1])
    return {k: statistics.median(v["cpu"]) for k, v in r.items()}


# --------------------------------------------------------------------- report
def _ms(x) -> str:
    return "-" if x is None else f"{1e3 * x:.2f}"


def _mark(x, limit) -> str:
    if x is None or limit is None:
        return _ms(x)
    return f"**{1e3 * x:.2f}**" if x > limit else _ms(x)


def render(result: dict) -> str:
    lines = [
        "# Speed floor: where a fit's CPU time goes, against nlme / 10",
        "",
        f"Command: `{result['command']}`; {result['date']}; load average before "
        f"{result['load_before']:.2f}, after {result['load_after']:.2f} (2 cores, shared); "
        f"Python {result['python']}, numpy {result['numpy']}.",
        "",
        "CPU milliseconds per fit (medians); **bold**: the part alone exceeds nlme / 10 "
        "(the budget of the 10x goal).",
        "",
        "## Residual structures (issue 12): `mm.lmer(..., correlation=, weights=)` vs "
        "`nlme::lme`",
        "",
        "| case | nlme | nlme / 10 | ours total | (a) design | (a) structure set-up | "
        "(b) one evaluation | evaluations | (c) evaluations x (b) | (c) optimize phase | "
        "(d) results | other | ratio now |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, r in result["residual"].items():
        peer = result["nlme_lme"].get(case)
        budget = peer / 10 if peer else None
        lines.append(
            f"| {case} | {_ms(peer)} | {_ms(budget)} | {_ms(r['total'])} | "
            f"{_mark(r.get('design'), budget)} | {_mark(r.get('setup'), budget)} | "
            f"{_ms(r['evaluation'])} | {r['evaluations']} | "
            f"{_mark(r['evaluations_cpu'], budget)} | {_mark(r.get('optimize'), budget)} | "
            f"{_mark(r.get('results'), budget)} | {_ms(r['other'])} | "
            f"{(peer / r['total']) if peer else float('nan'):.1f}x |"
        )
    lines += [
        "",
        "## Nonlinear models (issue 16): `mm.nlme` vs `nlme::nlme`",
        "",
        "| case | nlme | nlme / 10 | ours total | (a) design | (a) start | "
        "(b) one linearization | (b) one LME evaluation | linearizations | LME evaluations | "
        "(c) linearizing | (c) LME steps | (c) PNLS steps | (c) alternation rest | "
        "(d) results | ratio now |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, r in result["nonlinear"].items():
        peer = result["nlme_nlme"].get(case)
        budget = peer / 10 if peer else None
        lines.append(
            f"| {case} | {_ms(peer)} | {_ms(budget)} | {_ms(r['total'])} | "
            f"{_mark(r.get('design'), budget)} | {_mark(r.get('start'), budget)} | "
            f"{_ms(r.get('one_linearization'))} | {_ms(r.get('one_lme_evaluation'))} | "
            f"{r['linearizations']:.0f} | {r['lme_evaluations']} | "
            f"{_mark(r.get('linearize'), budget)} | {_mark(r.get('lme_step'), budget)} | "
            f"{_mark(r.get('pnls'), budget)} | {_mark(r.get('alternation'), budget)} | "
            f"{_mark(r.get('results'), budget)} | "
            f"{(peer / r['total']) if peer else float('nan'):.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nlme-repeats", type=int, default=5)
    parser.add_argument("--no-r", action="store_true", help="skip the R peers")
    parser.add_argument("--out", default=str(HERE / "results" / "speed_floor"))
    args = parser.parse_args()
    import mixedmodels  # noqa: F401

    result = {
        "command": "python benchmarks/speed_floor.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": os.getloadavg()[0],
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    result["residual"] = residual_floor(args.repeats)
    result["nonlinear"] = nlme_floor(args.repeats)
    result["nlme_lme"] = {} if args.no_r else nlme_lme_cpu(args.nlme_repeats)
    result["nlme_nlme"] = {} if args.no_r else nlme_nlme_cpu(args.nlme_repeats)
    result["load_after"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = render(result)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
