"""Our glmer estimates (beta, vcov) for make_emmeans_reference.R, which runs emmeans on
lme4's reference grid with these values, so that R and we work at the same estimates.

usage: PYTHONPATH=src python tests/reference/inference/make_emmeans_glmer_inputs.py OUTFILE
"""

from __future__ import annotations

import json
import sys

import mixedmodels as mm

CASES = {
    "cbpp_binomial": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
    ),
    "grouseticks_poisson": ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", "poisson"),
    "cbpp_poisson_offset": (
        "cbpp",
        "incidence ~ period + offset(log(size)) + (1 | herd)",
        "poisson",
    ),
}


def main(path: str) -> None:
    out = {}
    for name, (dataset, formula, family) in CASES.items():
        fit = mm.glmer(formula, mm.datasets.load(dataset), family)
        out[name] = {
            "formula": formula,
            "names": list(fit.fixef.index),
            "beta": fit.fixef.tolist(),
            "vcov": fit.vcov.to_numpy().tolist(),
        }
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
