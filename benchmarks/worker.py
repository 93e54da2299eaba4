"""One (tool, case) timing in a fresh process: data loaded first (not timed), then
``repeats`` fits timed one by one; prints JSON with the times, the REML criterion reached
(to check the answer) and the whole-process peak resident memory."""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cases import CASES, load_case  # noqa: E402


def fit_mixedmodels(case, df):
    import mixedmodels as mm

    fit = mm.lmer(case["formula"], df)
    return fit.objective


def fit_mixedlm(case, df):
    import mixedlm

    m = mixedlm.lmer(case["formula"], df)
    return float(m.REMLcrit())


def fit_statsmodels(case, df):
    import statsmodels.formula.api as smf

    sm = case.get("statsmodels")
    if sm is None:
        raise NotImplementedError("statsmodels MixedLM has no crossed random effects")
    model = smf.mixedlm(sm["fixed"], df, groups=df[sm["groups"]], re_formula=sm.get("re"))
    res = model.fit(reml=True)
    return float(-2 * res.llf)


def peak_resident_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it starts afresh at
    exec, so a large parent does not leak into the figure)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


TOOLS = {"mixedmodels": fit_mixedmodels, "mixedlm": fit_mixedlm, "statsmodels": fit_statsmodels}


def main() -> None:
    tool, name, repeats, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    case = CASES[name]
    df = load_case(name)
    fit = TOOLS[tool]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(warmup):
            fit(case, df)
        times = []
        objective = None
        for _ in range(repeats):
            start = time.perf_counter()
            objective = fit(case, df)
            times.append(time.perf_counter() - start)
    peak_mb = peak_resident_mb()
    print(json.dumps({"times": times, "objective": objective, "peak_mb": peak_mb}))


if __name__ == "__main__":
    main()
