"""Before/after CPU time of mm.nlme on the reference cases of tests/reference/nlme/cases.py:
two source trees timed in alternating processes on the same machine in the same run.

usage: python benchmarks/nlme_before_after.py BEFORE_SRC AFTER_SRC [--rounds 3]
                                               [--fits 30] [case ...]

Each round runs one process with ``PYTHONPATH=BEFORE_SRC`` and then one with AFTER_SRC
(alternating, so both see the same load); a process times ``--fits`` complete ``mm.nlme``
calls after a warm-up call (median ``time.process_time``, ``OMP_NUM_THREADS=1``).
Printed: the median over rounds of each side's medians, the alternations and the logLik
change of each side's last fit, and whether the estimates (fixed effects, theta, random
effects) are bitwise identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.alternating import alternate, before_after_arguments  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import hashlib, json, statistics, sys, time, warnings
import numpy as np
sys.path.insert(1, {root!r})
import mixedmodels as mm
from tests.reference.nlme.cases import arguments, reference
warnings.simplefilter("ignore")
data, kw = arguments({case!r}, reference())
fit = mm.nlme(data=data, **kw)
times = []
for _ in range({fits}):
    t = time.process_time()
    fit = mm.nlme(data=data, **kw)
    times.append(time.process_time() - t)
e = fit.estimate
digest = hashlib.md5(np.concatenate([e.beta, e.theta, e.b.ravel()]).tobytes()).hexdigest()
print(json.dumps({{"ms": 1000 * statistics.median(times), "iterations": e.iterations,
                  "logLik": float(fit.loglik), "digest": digest}}))
"""


def main() -> None:
    args = before_after_arguments()
    sys.path.insert(0, str(ROOT))
    from tests.reference.nlme.cases import CASES

    names = args.cases or list(CASES)
    print("| case | before CPU ms | after CPU ms | speed-up | alternations | logLik change "
          "| estimates |")
    print("|---|---|---|---|---|---|---|")
    for case in names:
        code = CHILD.format(root=str(ROOT), case=case, fits=args.fits)
        b, a, lb, la = alternate(args.before, args.after, code, args.rounds)
        same = "bitwise" if lb["digest"] == la["digest"] else "differ"
        print(
            f"| {case} | {b:.2f} | {a:.2f} | {b / a:.2f}x | "
            f"{lb['iterations']} -> {la['iterations']} | "
            f"{la['logLik'] - lb['logLik']:+.1e} | {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
