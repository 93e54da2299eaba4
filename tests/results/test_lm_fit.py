"""mm.lm against R's lm print-out (reference/summary_lm_sleepstudy.txt) and closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from tests.results.test_summary import assert_same_print

REF = Path(__file__).parent.parent / "reference"


@pytest.fixture(scope="module")
def fit():
    return mm.lm("Reaction ~ Days", mm.datasets.load("sleepstudy"), data_name="sleepstudy")


def test_summary_matches_r(fit):
    ours = fit.summary().rstrip("\n").split("\n")
    theirs = (REF / "summary_lm_sleepstudy.txt").read_text().rstrip("\n").split("\n")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert_same_print(a.rstrip(), b.rstrip())


def test_loglik_at_given_parameters_is_the_normal_density(fit):
    df = mm.datasets.load("sleepstudy")
    beta, sigma = np.array([250.0, 10.0]), 50.0
    r = df.Reaction - beta[0] - beta[1] * df.Days
    expected = float(np.sum(-0.5 * np.log(2 * np.pi * sigma**2) - r**2 / (2 * sigma**2)))
    assert fit.loglik_at(beta, sigma) == pytest.approx(expected, rel=1e-12)
    assert fit.loglik >= fit.loglik_at(beta, sigma)


def test_lm_rejects_random_terms():
    with pytest.raises(mm.FormulaError):
        mm.lm("Reaction ~ Days + (1|Subject)", mm.datasets.load("sleepstudy"))


def test_lmlist_equals_per_group_least_squares():
    df = mm.datasets.load("sleepstudy")
    table = mm.lmlist("Reaction ~ Days | Subject", df)
    sub = df[df.Subject == "308"]
    slope, intercept = np.polyfit(sub.Days, sub.Reaction, 1)
    assert table.loc["308", "(Intercept)"] == pytest.approx(intercept)
    assert table.loc["308", "Days"] == pytest.approx(slope)
    assert table.shape == (18, 2)


def test_sum_contrasts_give_deviations_from_the_mean_of_cell_means():
    """Closed form for a one-way layout under contr.sum: intercept = mean of the level
    means, coefficient k = level k's mean minus that (levels 1..K-1)."""
    import mixedmodels as mm

    df = mm.datasets.load("ergoStool")
    fit = mm.lm("effort ~ Type", df, contrasts={"Type": "contr.sum"})
    means = df.groupby("Type", observed=True)["effort"].mean().to_numpy()
    grand = means.mean()
    assert list(fit.fixef.index) == ["(Intercept)", "Type1", "Type2", "Type3"]
    np.testing.assert_allclose(fit.fixef.to_numpy(), [grand, *(means[:3] - grand)], rtol=1e-10)
