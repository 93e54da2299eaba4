"""Reproducers from the robustness review for design/: each was a strict xfail (fixed on
branch ``xfix``); the docstrings say what was wrong and what is asserted now."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm


def _binary_frame() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=g.size)
    yes = rng.uniform(size=g.size) < 1 / (1 + np.exp(-(0.2 + 0.8 * x + rng.normal(0, 0.7, 20)[g])))
    return pd.DataFrame({"x": x, "g": g.astype(str), "outcome": np.where(yes, "yes", "no")})


def test_unused_category_of_a_factor_response_changes_nothing():
    """R: the first level of a factor response is failure, all others success, after
    ``model.frame(drop.unused.levels = TRUE)``.  An unused category in front must therefore
    give the fit of the plain factor (also checked against lme4 in
    tests/test_robust_agreement.py, case sim_factor_response_unused_level).  Fix: drop unused
    categories (``remove_unused_categories``) of a categorical response before choosing the
    failure level."""
    data = _binary_frame()
    plain = data.assign(outcome=pd.Categorical(data.outcome, categories=["no", "yes"]))
    padded = data.assign(outcome=pd.Categorical(data.outcome, categories=["zz", "no", "yes"]))
    expected = mm.glmer("outcome ~ x + (1 | g)", plain, "binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        got = mm.glmer("outcome ~ x + (1 | g)", padded, "binomial")
    assert got.loglik == pytest.approx(expected.loglik, rel=1e-10)
    np.testing.assert_allclose(got.fixef, expected.fixef, rtol=1e-8)


def test_poly_degree_is_checked_before_anything_is_built():
    """``poly(Days, 1e10)`` allocated a list of 1e10 names (hung, then out of memory) before
    the check "'degree' must be less than the number of distinct values".  Here degree 1e6
    (the same path, 60 MB of names today) must be refused with at most 5 MB allocated.  Fix:
    move ``suffixes = [...]`` after the distinct-values check, and apply the check (R's
    "'degree' must be less than number of unique points") to ``raw = TRUE`` too."""
    sleep = mm.datasets.load("sleepstudy")
    tracemalloc.start()
    try:
        with pytest.raises(mm.DataError, match="degree"):
            mm.lmer("Reaction ~ poly(Days, 1e6) + (1 | Subject)", sleep)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


@pytest.mark.parametrize("cell", [[1, 2], {"a": 1}])
def test_column_of_unhashable_cells_is_a_data_error(cell):
    """A predictor or grouping column whose cells are lists or dicts (e.g. JSON read into a
    frame) raised ``TypeError: unhashable type: 'list'`` from pandas.  Fix: in
    ``column_value``, an object column whose cells are not all str/bytes/numbers/None is a
    DataError naming the column and the type of its first bad cell."""
    sleep = mm.datasets.load("sleepstudy")
    with pytest.raises(mm.DataError, match="'d'"):
        mm.lmer("Reaction ~ Days + (1 | d)", sleep.assign(d=[cell] * len(sleep)))


def test_too_many_fixed_columns_are_refused_before_they_are_built():
    """``y ~ a*b*c*d*e*f`` of six 20-level factors asks for 20^6 columns: a raw MemoryError
    (or the OOM killer) before the existing check "more fixed-effect columns than
    observations" is reached.  Here five 10-level factors and 100 rows (1e5 columns): the
    DataError must come with at most 20 MB allocated: each term's columns are counted from
    its factors' level counts (the product of (levels - 1) or levels, as the codings give
    them) before the matrix is assembled, and the same DataError names the widest term."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame({c: rng.integers(0, 10, 100).astype(str) for c in "abcde"})
    data["y"] = rng.normal(size=100)
    data["g"] = rng.integers(0, 10, 100).astype(str)
    tracemalloc.start()
    try:
        # 1 + 5*9 + 10*9^2 + 10*9^3 + 5*9^4 + 9^5 = 10^5 columns, the widest term 9^5
        with pytest.raises(
            mm.DataError,
            match=r"more fixed-effect columns than observations: the fixed part has 100000 "
            r"column\(s\) for 100 observation\(s\) \(term 'a:b:c:d:e': 59049\)",
        ):
            mm.lmer("y ~ a*b*c*d*e + (1 | g)", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_raw_poly_degree_is_checked_on_the_fitted_rows_only():
    """``raw = TRUE``: the same check on the fitted rows (sleepstudy's Days has 10 distinct
    values), none on new rows, where the degree is the fit's: a prediction for one row
    (one distinct value, below the degree) equals the fitted value of that row (1e-10)."""
    sleep = mm.datasets.load("sleepstudy")
    with pytest.raises(mm.DataError, match=r"'degree' \(10\) must be less than"):
        mm.lmer("Reaction ~ poly(Days, 10, raw = TRUE) + (1 | Subject)", sleep)
    fit = mm.lmer("Reaction ~ poly(Days, 3, raw = TRUE) + (1 | Subject)", sleep)
    one = sleep.iloc[[17]]
    np.testing.assert_allclose(fit.predict(one), fit.fitted[17:18], rtol=1e-10)
