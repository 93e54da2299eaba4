"""The nonlinear mixed models checked against nlme (tests) and timed against it
(benchmarks/nlme.py): name -> data set, nlme's arguments, Python keyword arguments.

The R side of each case is in make_nlme_reference.R under the same name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
REFERENCE = HERE / "nlme_reference.json"

CASES: dict[str, dict] = {
    "orange_ml": dict(data="Orange", model="circumference ~ SSlogis(age, Asym, xmid, scal)",
                      fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree"),
    "orange_reml": dict(data="Orange", model="circumference ~ SSlogis(age, Asym, xmid, scal)",
                        fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree",
                        method="REML"),
    "orange_expression": dict(data="Orange",
                              model="circumference ~ Asym/(1 + exp((xmid - age)/scal))",
                              fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree",
                              start={"Asym": 170, "xmid": 700, "scal": 350}),
    "orange_two_diag": dict(data="Orange",
                            model="circumference ~ SSlogis(age, Asym, xmid, scal)",
                            fixed="Asym + xmid + scal ~ 1",
                            random="pdDiag(Asym + xmid ~ 1) | Tree"),
    "theoph": dict(data="Theoph", model="conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
                   fixed="lKe + lKa + lCl ~ 1", random="lKa + lCl ~ 1 | Subject"),
    "theoph_diag": dict(data="Theoph", model="conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
                        fixed="lKe + lKa + lCl ~ 1", random="pdDiag(lKa + lCl ~ 1) | Subject"),
    "soybean_diag": dict(data="Soybean", model="weight ~ SSlogis(Time, Asym, xmid, scal)",
                         fixed="Asym + xmid + scal ~ 1",
                         random="pdDiag(Asym + xmid + scal ~ 1) | Plot"),
    "soybean_variety_varpower": dict(
        data="Soybean", model="weight ~ SSlogis(Time, Asym, xmid, scal)",
        fixed="Asym + xmid + scal ~ Variety", random="pdDiag(Asym + xmid + scal ~ 1) | Plot",
        weights="varPower", start="soybean_variety_start"),
    "loblolly": dict(data="Loblolly", model="height ~ SSasymp(age, Asym, R0, lrc)",
                     fixed="Asym + R0 + lrc ~ 1", random="Asym ~ 1 | Seed",
                     start={"Asym": 103, "R0": -8.5, "lrc": -3.3}),
    "co2": dict(data="CO2", model="uptake ~ SSasympOff(conc, Asym, lrc, c0)",
                fixed="Asym + lrc + c0 ~ 1", random="Asym + lrc ~ 1 | Plant"),
    "co2_type_treatment": dict(
        data="CO2", model="uptake ~ SSasympOff(conc, Asym, lrc, c0)",
        fixed=["Asym ~ Type * Treatment", "lrc + c0 ~ 1"], random="Asym ~ 1 | Plant",
        start="co2_type_treatment_start"),
}


def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def arguments(name: str, ref: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Data and keyword arguments of ``mm.nlme`` for a case."""
    case = dict(CASES[name])
    data = load(case.pop("data"))
    if case.get("start") == "co2_type_treatment_start":  # the pooled fit's start, as in R
        s = (ref or reference())["initial_co2"]
        case["start"] = [s[0], 0.0, 0.0, 0.0, s[1], s[2]]
    elif isinstance(case.get("start"), str):
        case["start"] = (ref or reference())["cases"][case["start"]]
    return data, case
