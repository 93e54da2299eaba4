"""One catalogue of (data set, formula) cases with lme4 reference fits, shared by tests and
benchmarks.

Reference JSON files come from lme4 1.1-31 (+ lmerTest): ``reference/*.json`` are copies of
the shared catalogue (made by ``reference/make_reference.R``), ``reference/project/*.json``
are the project's own cases (``reference/make_project_reference.R cases_project.R``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import mixedmodels as mm

REFERENCE_DIR = Path(__file__).parent / "reference"


@dataclass(frozen=True)
class Case:
    name: str
    reference: dict

    @property
    def formula(self) -> str:
        return self.reference["formula"]

    @property
    def reml(self) -> bool:
        return bool(self.reference["REML"])

    def data(self) -> pd.DataFrame:
        """The data as R saw it (cells set to NA where the case says so)."""
        frame = mm.datasets.load(self.reference["data"])
        for row, column in self.reference.get("na") or []:
            frame.loc[int(row) - 1, column] = np.nan
        return frame

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        expr = self.reference.get("weights")
        if not expr:
            return None
        return frame.eval(expr).to_numpy(dtype=float)

    def fit(self) -> mm.LmerFit:
        frame = self.data()
        family = self.reference.get("family", "gaussian")
        if family != "gaussian":
            return mm.glmer(
                self.formula,
                frame,
                family,
                link=self.reference.get("link"),
                weights=self.weights(frame),
                n_agq=int(self.reference.get("nAGQ", 1)),
            )
        return mm.lmer(
            self.formula,
            frame,
            reml=self.reml,
            weights=self.weights(frame),
            contrasts=self.reference.get("contrasts"),
        )


def _load(path: Path) -> Case:
    return Case(path.stem, json.loads(path.read_text()))


def gaussian_cases() -> list[Case]:
    """Every Gaussian reference case (shared catalogue and the project's own)."""
    paths = sorted(REFERENCE_DIR.glob("*.json")) + sorted(
        (REFERENCE_DIR / "project").glob("*.json")
    )
    cases = [_load(p) for p in paths]
    return [c for c in cases if c.reference.get("family", "gaussian") == "gaussian"]


def glmm_cases() -> list[Case]:
    """GLMM reference cases: the shared catalogue's and the project's (reference/glmm/,
    made by make_project_reference.R from cases_glmm.R, with lme4's default fit and one with
    PIRLS converged tightly under ``tight``)."""
    paths = sorted(REFERENCE_DIR.glob("*.json")) + sorted((REFERENCE_DIR / "glmm").glob("*.json"))
    cases = [_load(p) for p in paths]
    return [c for c in cases if c.reference.get("family", "gaussian") != "gaussian"]


def case(name: str) -> Case:
    """A case by name."""
    for c in gaussian_cases():
        if c.name == name:
            return c
    raise KeyError(name)


def fit_cache():
    """A function fitting each case once per test module (warnings silenced), keyed by name;
    every test of a case then reads the same fit."""
    import warnings

    fits: dict[str, object] = {}

    def fitted(case):
        if case.name not in fits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[case.name] = case.fit()
        return fits[case.name]

    return fitted
