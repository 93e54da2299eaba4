"""Stage 2's end where the zero inflation has vanished (optim/glmm.py, ``_polish_vanished``).

salamanders_zinb2 (glmmTMB's ``count ~ spp + mined + (1|site)``, nbinom2, ``zi = ~1``) has
no zero inflation: its deviance decreases towards a limit as the zero-inflation intercept
goes to ``-inf`` (glmmTMB stops at -16.4).  BOBYQA alone stopped anywhere between -9.5 and
-11.9 depending on the order of the rows, and the fixed effects moved with it: on the rows
reversed they were 1.17 tolerances from glmmTMB's.  The estimates must not depend on the
order of the rows.  Stage 2 now stops once every probability at its best point is below
1e-2, moves them to 1e-8 and re-optimizes the rest; it goes on from where it stopped when
the deviance does not fall towards that limit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
import mixedmodels.optim.glmm as glmm
from tests.family_cases import family_cases

CASE = next(c for c in family_cases("glmmTMB") if c.name == "salamanders_zinb2")
PLAIN = next(c for c in family_cases("glmmTMB") if c.name == "salamanders_nbinom2")


def reordered(order: str) -> tuple[object, np.ndarray]:
    """The fit on the rows reversed or shuffled, and the permutation of the rows."""
    frame = CASE.data()
    rows = (
        np.arange(len(frame))[::-1]
        if order == "reversed"
        else np.random.default_rng(1).permutation(len(frame))
    )
    data = frame.iloc[rows].reset_index(drop=True)
    return mm.glmer(CASE.formula, data, "nbinom2", zi=CASE.reference["zi"]), rows


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_any_order_of_the_rows_matches_glmmtmb(order):
    """The tolerances of tests/test_glmer_families.py::test_glmmtmb_families_match_glmmtmb
    (log-likelihood 1e-6 relative, fixed effects 1e-4 relative or standard errors, sd 1e-4,
    standard errors 2e-3, sigma 1e-3, fitted values 1e-3, the zero-inflation probability
    below 1e-4 as glmmTMB's is)."""
    fit, rows = reordered(order)
    ref = CASE.reference
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    se = np.sqrt(np.diag(fit.vcov))
    ref_fixef = np.asarray(ref["fixef"])
    allowed = 1e-4 * np.maximum(np.abs(ref_fixef), se)
    assert np.all(np.abs(fit.fixef.to_numpy() - ref_fixef) <= allowed)
    np.testing.assert_allclose(fit.theta, ref["sd"], rtol=1e-4)
    np.testing.assert_allclose(se, ref["se"], rtol=2e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    zi = fit.extra_parameters["zi_(Intercept)"]
    assert 1.0 / (1.0 + np.exp(-zi)) < 1e-4
    assert 1.0 / (1.0 + np.exp(-ref["zi_fixef"][0])) < 1e-4
    np.testing.assert_allclose(fit.fitted, np.asarray(ref["fitted"])[rows], rtol=1e-3)


def test_the_estimates_are_those_of_the_model_without_zero_inflation():
    """Its limit: the same model without zero inflation (salamanders_nbinom2, fitted by us on
    the rows as given).  With the probabilities at 1e-8 the zero counts' log-likelihood
    moves by ~1e-8 / f(0) each (measured -8e-9 in all, below the limit as it must be):
    log-likelihood within 1e-6 absolute, fixed effects within 1e-4 standard errors
    (measured 4e-6: both fits' optimizer precision), the sd within 1e-4 relative (measured
    2e-6)."""
    fit, _ = reordered("reversed")
    plain = PLAIN.fit()
    assert PLAIN.formula == CASE.formula
    assert fit.loglik == pytest.approx(plain.loglik, abs=1e-6)
    assert fit.loglik <= plain.loglik + 1e-8
    se = np.sqrt(np.diag(fit.vcov))
    assert np.all(np.abs(fit.fixef.to_numpy() - plain.fixef.to_numpy()) <= 1e-4 * se)
    np.testing.assert_allclose(fit.theta, plain.theta, rtol=1e-4)
    np.testing.assert_allclose(fit.sigma, plain.sigma, rtol=1e-4)


def small_zero_inflation() -> pd.DataFrame:
    """Poisson counts (60 groups, 3,000 rows) with structural zeros of probability 0.004:
    the zero-inflation estimate is inside (-5.96, probability 2.6e-3), below the point
    where stage 2 stops to try the limit."""
    rng = np.random.default_rng(1)
    n, groups = 3000, 60
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    b = rng.normal(scale=0.5, size=groups)
    y = rng.poisson(np.exp(0.8 + 0.3 * x + b[g]))
    y[rng.random(n) < 0.004] = 0
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})


def test_zero_inflation_that_has_not_vanished_is_fitted_as_without_the_stop(monkeypatch):
    """Where stage 2's best point passes below 1e-2 on its way to an optimum inside, the
    limit is tried and refused (the deviance at probabilities 100 times larger is lower:
    the score for zero inflation points inwards) and stage 2 goes on: the same estimates
    as stage 2 run without stopping (log-likelihood 1e-6 absolute, fixed effects 1e-4
    standard errors, the zero-inflation intercept 1e-3 absolute; measured agreement
    <= 1e-6 in all)."""
    data = small_zero_inflation()
    fit = mm.glmer("y ~ x + (1|g)", data, "poisson", zi="~1")
    with monkeypatch.context() as m:
        m.setattr(glmm, "WATCH_BELOW", 0.0)  # never stop: probabilities are not below 0
        plain = mm.glmer("y ~ x + (1|g)", data, "poisson", zi="~1")
    assert -7.0 < plain.extra_parameters["zi_(Intercept)"] < -5.0
    assert fit.loglik == pytest.approx(plain.loglik, abs=1e-6)
    se = np.sqrt(np.diag(plain.vcov))
    assert np.all(np.abs(fit.fixef.to_numpy() - plain.fixef.to_numpy()) <= 1e-4 * se)
    zi = fit.extra_parameters["zi_(Intercept)"]
    assert zi == pytest.approx(plain.extra_parameters["zi_(Intercept)"], abs=1e-3)
