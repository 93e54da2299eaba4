"""Before/after CPU time of the residual-structure fits of residual_structures.py: two
source trees timed in alternating processes on the same machine in the same run.

usage: python benchmarks/residual_before_after.py BEFORE_SRC AFTER_SRC [--rounds 3]
                                                  [--fits 30] [case ...]

For each case (default: all of residual_structures.py's nlme cases) and criterion, each
round runs one process with ``PYTHONPATH=BEFORE_SRC`` and then one with AFTER_SRC; a
process times ``--fits`` complete ``mm.lmer`` calls after a warm-up call (median
``time.process_time``, ``OMP_NUM_THREADS=1``).  Printed: the median over rounds of each
side's medians, the evaluations and the logLik of each side's last fit.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.alternating import alternate, before_after_arguments  # noqa: E402

HERE = Path(__file__).parent

CHILD = """
import json, statistics, sys, time, warnings
sys.path.insert(0, {here!r})
import mixedmodels as mm
from residual_structures import cases
warnings.simplefilter("ignore")
data, formula, kwargs = cases(mm)[{case!r}]
frame = mm.datasets.load(data)
fit = mm.lmer(formula, frame, reml={reml}, **kwargs())
times = []
for _ in range({fits}):
    t = time.process_time()
    fit = mm.lmer(formula, frame, reml={reml}, **kwargs())
    times.append(time.process_time() - t)
print(json.dumps({{"ms": 1000 * statistics.median(times), "evaluations": fit.n_evaluations,
                  "logLik": fit.loglik}}))
"""


def main() -> None:
    args = before_after_arguments()
    sys.path.insert(0, str(HERE))
    from residual_structures import cases

    import mixedmodels as mm

    names = args.cases or list(cases(mm))
    print("| case | before CPU ms | after CPU ms | speed-up | evaluations | logLik change |")
    print("|---|---|---|---|---|---|")
    for case in names:
        for reml in (True, False):
            code = CHILD.format(here=str(HERE), case=case, reml=reml, fits=args.fits)
            b, a, lb, la = alternate(args.before, args.after, code, args.rounds)
            print(
                f"| {case}_{'reml' if reml else 'ml'} | {b:.2f} | {a:.2f} | {b / a:.2f}x | "
                f"{lb['evaluations']} -> {la['evaluations']} | "
                f"{la['logLik'] - lb['logLik']:+.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
