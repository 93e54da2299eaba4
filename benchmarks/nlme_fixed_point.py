"""How far ``mm.nlme``'s estimates are from the Lindstrom-Bates fixed point: each reference
case of tests/reference/nlme/cases.py fitted with the defaults and again far tighter (every
LME step's Newton iterations to a predicted gain of 1e-18 with fresh Hessians, the
alternation to a change of 1e-11, no secant extrapolation); printed: the largest relative
differences of the log-likelihood, fixed effects, their SEs, theta (floored at 0.01),
sigma and the variance parameters, and both alternation counts.

The defaults stop each LME step at a predicted gain of 1e-10 in the deviance, which leaves
theta up to ~1e-5 (relative) from the optimum of its linearized model; the distances
printed here are of that order.

usage: python benchmarks/nlme_fixed_point.py [case ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mixedmodels as mm  # noqa: E402
import mixedmodels.optim.nonlinear as onl  # noqa: E402
from tests.reference.nlme.cases import CASES, arguments, reference  # noqa: E402


def _relative(a, b, floor=1e-300) -> float:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def _summary(fit) -> dict:
    e = fit.estimate
    return dict(loglik=float(fit.loglik), beta=e.beta, se=np.sqrt(np.diag(e.vcov)),
                theta=e.theta, sigma=e.sigma,
                delta=np.zeros(0) if e.delta is None else np.atleast_1d(e.delta),
                iterations=e.iterations)


def tight_fit(data, kw):
    original = onl.newton_gradient

    def newton(fun, x, lower, iterations=30, cache=None, stop=1e-10):
        return original(fun, x, lower, iterations=60, cache=None, stop=1e-18)

    aligned = onl.SecantAcceleration.ALIGNED
    onl.newton_gradient = newton
    onl.SecantAcceleration.ALIGNED = np.inf
    try:
        return mm.nlme(data=data, **kw, tolerance=1e-11, max_iter=200)
    finally:
        onl.newton_gradient = original
        onl.SecantAcceleration.ALIGNED = aligned


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    ref = reference()
    print("| case | alternations (defaults / tight) | logLik | fixef | SE | theta | sigma "
          "| variance |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases or list(CASES):
        data, kw = arguments(case, ref)
        ours, tight = _summary(mm.nlme(data=data, **kw)), _summary(tight_fit(data, kw))
        cells = [_relative(ours[k], tight[k], 1e-2 if k == "theta" else 1e-300)
                 for k in ("loglik", "beta", "se", "theta", "sigma", "delta")]
        print(f"| {case} | {ours['iterations']} / {tight['iterations']} | "
              + " | ".join(f"{c:.1e}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
