"""lme4's check 'number of observations <= number of random effects' (design/model.py)
for structured terms.  With one row per level and column (Orthodont: one measurement per
subject and age), ``Var(y_i) = Sigma + sigma^2 I``; the residual is confounded with the term
exactly when ``Sigma + c I`` stays in the structure's family.  That is the case for
unstructured, diagonal and homogeneous compound-symmetry covariances (their diagonal is
free or shares one free parameter with nothing else), so the check stays; it is not for
AR(1) over 3+ columns (the off-diagonal lags fix the variance and phi) or glmmTMB's
heterogeneous cs (the off-diagonals fix each s_i^2 rho), which glmmTMB fits (agreement in
tests/test_robust_agreement.py, cases orthodont_ar1_glmmtmb, orthodont_cs_glmmtmb)."""

from __future__ import annotations

import pytest

import mixedmodels as mm
from mixedmodels.design.model import _absorbs_residual
from mixedmodels.reterms.structures import STRUCTURES
from tests.test_robust_agreement import load


@pytest.mark.parametrize(
    ("name", "p", "expected"),
    [
        ("us", 4, True), ("diag", 4, True), ("homcs", 4, True),  # Sigma + cI in the family
        ("ar1", 2, True), ("cs", 2, True),  # two columns: one off-diagonal, free
        ("ar1", 4, False), ("cs", 4, False), ("ar1", 3, False),
    ],
)
def test_residual_absorbed_by_the_closed_form_families(name, p, expected):
    assert _absorbs_residual(STRUCTURES[name](p)) is expected


@pytest.mark.parametrize("structure", ["us", "diag", "homcs"])
def test_check_stays_where_the_residual_is_confounded(structure):
    _, data = load("orthodont_ar1_glmmtmb")
    formula = f"distance ~ age + Sex + {structure}(0 + agef | Subject)"
    with pytest.raises(mm.DataError, match="number of observations"):
        mm.lmer(formula, data, reml=False)
