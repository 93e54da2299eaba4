"""The large simulation-based calibration of the Gibbs sampler, with its chi-square results.

usage: python benchmarks/bayes_sbc.py MODEL [MODEL ...] [--out FILE.json]
       [--replicates N --draws L --bins B]

MODEL is one of intercept, slope, logit, poisson (the models of
``tests/core/test_gibbs_sbc.py``).  Runs exactly what ``test_sbc_large`` runs (500
replicates, 99 draws thinned by 3 after 50 warm-up sweeps, seed 2019; 20 bins of 25
expected ranks) and prints, per parameter, Pearson's chi-square statistic (19 degrees of
freedom), its p-value and whether it passes the test's level (0.001); the CPU time and
load average are recorded with the results.  ``--replicates``, ``--draws`` and ``--bins``
run a smaller version (``(L + 1) / B`` ranks per bin; thinning, warm-up and seed as above).
Run it with one BLAS thread (``OPENBLAS_NUM_THREADS=1``): the sampler's small LAPACK calls
get slower, not faster, from more threads on a shared machine.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.core import test_gibbs_sbc as sbc  # noqa: E402

MODELS = {
    "intercept": sbc._intercept_model,
    "slope": sbc._slope_model,
    "logit": sbc._logit_model,
    "poisson": sbc._poisson_model,
}
REPLICATES, DRAWS, THIN, WARMUP, SEED, BINS = 500, 99, 3, 50, 2019, 20


def run(name: str, replicates: int = REPLICATES, draws: int = DRAWS, bins: int = BINS) -> dict:
    model = MODELS[name]
    load = os.getloadavg()
    cpu = time.process_time()
    wall = time.perf_counter()
    ranks = sbc.sbc_ranks(model, replicates, draws, THIN, WARMUP, SEED)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    width = (draws + 1) // bins
    counts = np.stack([np.bincount(r // width, minlength=bins) for r in ranks.T])
    chi2, p = stats.chisquare(counts, axis=1)
    result = {
        "model": name,
        "replicates": replicates,
        "draws": draws,
        "thin": THIN,
        "warmup": WARMUP,
        "seed": SEED,
        "bins": bins,
        "level": sbc.LEVEL,
        "chi2": [float(x) for x in chi2],
        "p": [float(x) for x in p],
        "passed": bool(np.all(p > sbc.LEVEL)),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "load_before": list(load),
        "load_after": list(os.getloadavg()),
    }
    print(
        f"{name}: chi2 ({bins - 1} df) {np.round(chi2, 1).tolist()}, p {np.round(p, 3).tolist()}, "
        f"{'pass' if result['passed'] else 'FAIL'} at {sbc.LEVEL}; {cpu:.0f} s CPU, "
        f"{wall:.0f} s wall, load {load[0]:.1f}",
        flush=True,
    )
    return result


def main() -> None:
    args = sys.argv[1:]
    out = None
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i : i + 2]
    sizes = {}
    for option in ("--replicates", "--draws", "--bins"):
        if option in args:
            i = args.index(option)
            sizes[option[2:]] = int(args[i + 1])
            del args[i : i + 2]
    results = [run(name, **sizes) for name in args]
    if out:
        Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
