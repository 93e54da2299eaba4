"""The tutorial's printed results ("Thinking About Mixed Models", M. Clark 2016).

References are lme4 1.1-31's own print-outs made by reference/make_summary_reference.R.
Summaries must agree in layout and in every number up to one unit of the last printed
digit.  The tables of random effects and per-subject coefficients are printed by R with 7
decimals, finer than any optimizer's stopping point (lme4 versions differ there too), so
they are compared at 1e-4 relative (1e-4 absolute for values near 0).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from tests.results.test_summary import assert_same_print

REF = Path(__file__).parent / "reference"


def r_table(name: str) -> dict[str, list[float]]:
    rows = {}
    for line in (REF / name).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(r"\d+", parts[0]):
            rows[parts[0]] = [float(parts[1]), float(parts[2])]
    return rows


@pytest.fixture(scope="module")
def sleep_fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


def test_seedsim_summary_as_printed():
    fit = mm.lmer("y ~ x + (1 | clus)", mm.datasets.load("seedsim"), data_name="seedsim")
    ours = fit.summary(ddf="none").split("\n")  # the tutorial shows lme4's layout
    theirs = (REF / "summary_seedsim_reml.txt").read_text().rstrip("\n").split("\n")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert_same_print(a.rstrip(), b.rstrip())
    assert fit.nobs == 250 and fit.ngroups == {"clus": 50}


def test_random_effects_table_of_18_subjects(sleep_fit):
    ref = r_table("ranef_sleepstudy_print.txt")
    assert len(ref) == 18
    ours = sleep_fit.ranef["Subject"]
    for subject, values in ref.items():
        np.testing.assert_allclose(ours.loc[subject].to_numpy(), values, rtol=1e-4, atol=1e-4)


def test_subject_trajectories(sleep_fit):
    ref = r_table("coef_sleepstudy_print.txt")
    ours = sleep_fit.coef["Subject"]
    for subject, values in ref.items():
        np.testing.assert_allclose(ours.loc[subject].to_numpy(), values, rtol=1e-4)
