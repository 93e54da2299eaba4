"""Nonlinear mixed models with variance functions checked against nlme (the R side of each
case is in make_nlme_varfunc.R under the same name): name -> data set and the Python
keyword arguments (the variance function is built fresh for each fit)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import mixedmodels as mm

HERE = Path(__file__).parent
REFERENCE = HERE / "nlme_varfunc.json"
DATA = HERE.parent / "nlme" / "data"

SOYBEAN = dict(data="Soybean", model="weight ~ SSlogis(Time, Asym, xmid, scal)",
               fixed="Asym + xmid + scal ~ Variety",
               random="pdDiag(Asym + xmid + scal ~ 1) | Plot", start="soybean_variety_start")
CO2 = dict(data="CO2", model="uptake ~ SSasympOff(conc, Asym, lrc, c0)",
           fixed="Asym + lrc + c0 ~ 1", random="Asym ~ 1 | Plant")
LOBLOLLY = dict(data="Loblolly", model="height ~ SSasymp(age, Asym, R0, lrc)",
                fixed="Asym + R0 + lrc ~ 1", random="Asym ~ 1 | Seed",
                start={"Asym": 103, "R0": -8.5, "lrc": -3.3})
ORANGE = dict(data="Orange", model="circumference ~ SSlogis(age, Asym, xmid, scal)",
              fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree")
THEOPH = dict(data="Theoph", model="conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
              fixed="lKe + lKa + lCl ~ 1", random="pdDiag(lKa + lCl ~ 1) | Subject")

CASES: dict[str, dict] = {}
for _method in ("ML", "REML"):
    _tag = _method.lower()
    CASES[f"soybean_varpower_{_tag}"] = dict(SOYBEAN, method=_method,
                                             weights=lambda: mm.var.Power())
    CASES[f"co2_varident_{_tag}"] = dict(CO2, method=_method,
                                         weights=lambda: mm.var.Ident("Type"))
    CASES[f"loblolly_varexp_{_tag}"] = dict(LOBLOLLY, method=_method,
                                            weights=lambda: mm.var.Exp("age"))
    CASES[f"orange_varcomb_{_tag}"] = dict(
        ORANGE, method=_method,
        weights=lambda: mm.var.Combined(mm.var.Ident("Tree"), mm.var.Power()))
CASES["theoph_varexp_fitted_ml"] = dict(THEOPH, weights=lambda: mm.var.Exp())
CASES["loblolly_varfixed_ml"] = dict(LOBLOLLY, weights=lambda: mm.var.Fixed("age"))


def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"{name}.csv")


def arguments(name: str, ref: dict) -> tuple[pd.DataFrame, dict]:
    """The data and ``mm.nlme``'s keyword arguments of a case."""
    case = dict(CASES[name])
    data = load(case.pop("data"))
    case["weights"] = case["weights"]()
    if isinstance(case.get("start"), str):
        case["start"] = ref[case["start"]]
    return data, case
