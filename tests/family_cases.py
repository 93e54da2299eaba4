"""The GLMM-family reference cases (tests/reference/families/*.json, made by
``make_families_reference.R`` from ``cases_families.R``): lme4's glmer and glmer.nb, and
glmmTMB, with the data as R saw them.  Shared by the tests and benchmarks/glmm_families.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import mixedmodels as mm

FAMILY_DIR = Path(__file__).parent / "reference" / "families"
DATA_DIR = FAMILY_DIR / "data"

#: R's family names -> ours
R_FAMILIES = {
    "Gamma": "gamma",
    "inverse.gaussian": "inverse_gaussian",
    "gaussian": "gaussian",
    "poisson": "poisson",
    "nbinom1": "nbinom1",
    "nbinom2": "nbinom2",
    "beta_family": "beta",
    "tweedie": "tweedie",
}


def load_data(name: str) -> pd.DataFrame:
    """A bundled data set, or a CSV of ``reference/families/data`` with the factor levels of
    its ``schema.json`` (the simulated sets: ``g`` as a factor)."""
    path = DATA_DIR / f"{name}.csv"
    if not path.exists():
        return mm.datasets.load(name)
    frame = pd.read_csv(path)
    schema = json.loads((DATA_DIR / "schema.json").read_text()).get(name, {"factors": {}})
    for column, spec in schema["factors"].items():
        frame[column] = pd.Categorical(
            frame[column].astype(str), categories=spec["levels"], ordered=spec["ordered"]
        )
    if "g" in frame.columns and name.endswith("_sim"):
        frame["g"] = frame["g"].astype("category")
    return frame


@dataclass(frozen=True)
class FamilyCase:
    name: str
    reference: dict

    @property
    def engine(self) -> str:
        return self.reference["engine"]

    @property
    def formula(self) -> str:
        return self.reference["formula"]

    def data(self) -> pd.DataFrame:
        return load_data(self.reference["data"])

    def fit(self, frame: pd.DataFrame | None = None):
        """The fit as R made it; on ``frame`` (the case's data, :meth:`data`) where given,
        so that a benchmark times the fit alone, as its R worker does."""
        frame = self.data() if frame is None else frame
        ref = self.reference
        if self.engine == "glmer":
            return mm.glmer(self.formula, frame, R_FAMILIES[ref["family"]], link=ref["link"])
        if self.engine == "glmer.nb":
            return mm.glmer_nb(self.formula, frame)
        return mm.glmer(self.formula, frame, R_FAMILIES[ref["family"]], zi=ref.get("zi"))


def family_cases(engine: str | None = None) -> list[FamilyCase]:
    """Every case (or those of one engine: "glmer", "glmer.nb", "glmmTMB")."""
    cases = [
        FamilyCase(p.stem, json.loads(p.read_text())) for p in sorted(FAMILY_DIR.glob("*.json"))
    ]
    return [c for c in cases if engine is None or c.engine == engine]
