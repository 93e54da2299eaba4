"""The benchmark catalogue: the core issue's three cases."""

from __future__ import annotations

import pandas as pd
from simulate_large import simulate_large

import mixedmodels as mm

CASES = {
    "sleepstudy": {
        "data": "sleepstudy",
        "formula": "Reaction ~ Days + (Days | Subject)",
        "statsmodels": {"fixed": "Reaction ~ Days", "groups": "Subject", "re": "~Days"},
        "factors": ["Subject"],
        "repeats": 50,
        "warmup": 5,
    },
    "insteval": {
        "data": "InstEval",
        "formula": "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        "factors": ["s", "d", "dept", "service"],
        "repeats": 3,
        "warmup": 1,
    },
    "large": {
        "data": None,
        "formula": "y ~ x + (x | g)",
        "statsmodels": {"fixed": "y ~ x", "groups": "g", "re": "~x"},
        "factors": ["g"],
        "repeats": 3,
        "warmup": 1,
    },
}


def load_case(name: str) -> pd.DataFrame:
    case = CASES[name]
    if case["data"] is None:
        return simulate_large()
    return mm.datasets.load(case["data"])
