"""The residual fit's start (results/residual_lmer.py).

* The correlation parameters start from the residuals for one random-effect term and
  the search ends at the optimum of a search from the structure's default start
  (objective within 1e-7 absolute, the optimizer's tolerance scale; Ovary AR(1) and
  Pastes compound symmetry, both criteria), in fewer evaluations.
* A singular end from the residuals' start is checked by a search from the default
  start (forced here): the fit keeps the better optimum and counts both searches.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.results import residual_lmer

CASES = {
    "ovary_ar1": (
        "Ovary",
        "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)",
        lambda: mm.cor.AR1(),
    ),
    "pastes_cs": (
        "Pastes",
        "strength ~ 1 + (1 | batch)",
        lambda: mm.cor.CompSymm(group="batch/cask"),
    ),
}


def _fit(case, reml):
    data, formula, correlation = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, mm.datasets.load(data), reml=reml, correlation=correlation())


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_residual_start_reaches_the_default_starts_optimum(case, reml, monkeypatch):
    fast = _fit(case, reml)
    monkeypatch.setattr(residual_lmer, "correlation_start", lambda rp, x: x)
    default = _fit(case, reml)
    assert fast.objective == pytest.approx(default.objective, abs=1e-7)
    assert fast.n_evaluations < default.n_evaluations


def test_a_singular_end_is_checked_from_the_default_start(monkeypatch):
    plain = _fit("ovary_ar1", True)
    monkeypatch.setattr(residual_lmer, "correlation_start", lambda rp, x: x)
    default = _fit("ovary_ar1", True)
    monkeypatch.undo()
    monkeypatch.setattr(residual_lmer, "is_singular", lambda theta, lower: True)
    checked = _fit("ovary_ar1", True)
    assert checked.n_evaluations == plain.n_evaluations + default.n_evaluations
    assert checked.objective == min(plain.objective, default.objective)
    assert np.isfinite(checked.loglik)
