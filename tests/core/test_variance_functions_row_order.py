"""Residual variance functions do not depend on the order of the rows.

``Ident`` bound its stratum codes in the data's row order while the residual problem works
in rows sorted by group, so on data not already sorted by group every row got another
row's multiplier (a shuffled sleepstudy with ``Ident("phase")``: logLik -893.23 against
nlme's -884.38; the nlme agreement is in tests/test_robust_agreement.py,
case sleep_varident_shuffled).  Identity checked here: the fit of shuffled rows equals the
fit of sorted rows, and so do its per-row quantities once aligned by the index."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm

STRUCTURES = {
    "ident": lambda: dict(weights=mm.var.Ident("phase")),
    "ident_reference": lambda: dict(weights=mm.var.Ident("phase", reference="late")),
    "combined": lambda: dict(weights=mm.var.Combined(mm.var.Ident("phase"), mm.var.Power("t"))),
    "ident_ar1": lambda: dict(weights=mm.var.Ident("phase"), correlation=mm.cor.AR1("Days")),
}


def _late_over_early(fit) -> float:
    params = fit.variance_parameters
    return float(params["late"]) if "late" in params.index else 1.0 / float(params["early"])


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_shuffled_rows_give_the_same_fit(name):
    sleep = mm.datasets.load("sleepstudy")
    data = sleep.assign(phase=np.where(sleep.Days > 4, "late", "early"), t=sleep.Days + 1.0)
    shuffled = data.sample(frac=1.0, random_state=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        a = mm.lmer("Reaction ~ Days + (1 | Subject)", data, **STRUCTURES[name]())
        b = mm.lmer("Reaction ~ Days + (1 | Subject)", shuffled, **STRUCTURES[name]())
    # both searches stop at ftol 1e-10 on a criterion of ~1770: parameters agree to ~1e-6,
    # normalized residuals (of size 1) to ~1e-6 absolute
    assert b.loglik == pytest.approx(a.loglik, rel=1e-9)
    np.testing.assert_allclose(b.fixef, a.fixef, rtol=1e-6)
    # the reference stratum is nlme's "first met in the rows ordered by group", which the
    # shuffle may change: compare the ratio late / early (and the other parameters)
    assert _late_over_early(b) == pytest.approx(_late_over_early(a), rel=1e-5)
    others = [k for k in a.variance_parameters.index if k not in ("late", "early")]
    np.testing.assert_allclose(
        b.variance_parameters[others], a.variance_parameters[others], rtol=1e-5, atol=1e-7
    )
    order = shuffled.index.to_numpy()
    np.testing.assert_allclose(b.fitted, np.asarray(a.fitted)[order], rtol=1e-6)
    np.testing.assert_allclose(
        b.normalized_residuals, np.asarray(a.normalized_residuals)[order], rtol=1e-5, atol=1e-5
    )
