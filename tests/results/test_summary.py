"""The printed summary against lme4's own print-out (reference/summary_*.txt, made by
reference/make_summary_reference.R), line by line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mixedmodels as mm
from mixedmodels.results.rformat import format_r
from mixedmodels.results.summary import abbreviate

REF = Path(__file__).parent.parent / "reference"


NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")


def lme4_lines(name: str) -> list[str]:
    return (REF / name).read_text().rstrip("\n").split("\n")


def assert_same_print(ours: str, theirs: str) -> None:
    """Same layout and text; numbers may differ by one unit in their last printed digit
    (the optimizers stop at slightly different theta, as lme4 versions do)."""
    assert NUMBER.sub("#", ours) == NUMBER.sub("#", theirs)
    a, b = NUMBER.findall(ours), NUMBER.findall(theirs)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y), (x, y)
        unit = 10.0 ** -(len(y.split(".")[1]) if "." in y else 0)
        assert abs(float(x) - float(y)) <= unit * 1.0001, (x, y)


@pytest.mark.parametrize(
    "dataset, formula, reml, reference",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True, "summary_sleepstudy_reml.txt"),
        (
            "Penicillin",
            "diameter ~ 1 + (1 | plate) + (1 | sample)",
            False,
            "summary_penicillin_ml.txt",
        ),
    ],
)
def test_summary_matches_lme4_print(dataset, formula, reml, reference):
    fit = mm.lmer(formula, mm.datasets.load(dataset), reml=reml, data_name=dataset)
    ours = [line.rstrip() for line in fit.summary(ddf="none").split("\n")]
    theirs = [line.rstrip() for line in lme4_lines(reference)]
    assert len(ours) == len(theirs)
    for mine, lme4 in zip(ours, theirs, strict=True):
        assert_same_print(mine, lme4)


def test_default_summary_is_lmertest_layout_with_satterthwaite():
    fit = mm.lmer(
        "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"), data_name="sleepstudy"
    )
    ours = [line.rstrip() for line in str(fit).split("\n")]
    theirs = [line.rstrip() for line in lme4_lines("summary_sleepstudy_lmertest.txt")]
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        assert_same_print(mine, other)


def test_format_r_uses_common_decimals_like_r():
    # R: format(c(612.100158, 35.0717144509388, 654.940008259961), digits = 4)
    assert format_r([612.100158, 35.0717144509388, 654.940008259961], 4) == [
        "612.10",
        " 35.07",
        "654.94",
    ]


def test_abbreviate_like_r():
    assert abbreviate("(Intercept)") == "(Intr)"
    assert abbreviate("Days") == "Days"


def test_glmer_summary_matches_lme4_print():
    """lme4's print of the same fit with PIRLS converged (its Control: line left out)."""
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        mm.datasets.load("cbpp"),
        "binomial",
        data_name="cbpp",
    )
    ours = [line.rstrip() for line in fit.summary().split("\n")]
    theirs = [
        line.rstrip()
        for line in lme4_lines("summary_cbpp_glmer.txt")
        if not line.startswith("Control:")
    ]
    assert len(ours) == len(theirs)
    for mine, lme4 in zip(ours, theirs, strict=True):
        assert_same_print(mine, lme4)
