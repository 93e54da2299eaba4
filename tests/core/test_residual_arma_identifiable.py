"""ARMA(p, q) needs a group spanning at least p + q lags: the autocorrelations the data can
show stop at the longest span, so more parameters are not determined (ARMA(50, 0) on Ovary,
whose mares span at most 30 lags, ran BOBYQA in 50 flat dimensions for many minutes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

FORMULA = "y ~ x + (1 | g)"


def _data(per_group: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), per_group)
    e = np.zeros(g.size)
    for i in range(g.size):  # AR(1) errors within groups
        e[i] = rng.normal() + (0.5 * e[i - 1] if i % per_group else 0.0)
    x = rng.normal(size=g.size)
    return pd.DataFrame({"y": 1 + x + rng.normal(size=12)[g] + e, "x": x, "g": g.astype(str)})


def test_more_parameters_than_lags_is_a_data_error():
    ovary = mm.datasets.load("Ovary")
    longest = int(ovary.groupby("Mare", observed=True).size().max()) - 1
    formula = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
    with pytest.raises(mm.DataError, match=rf"ARMA\(50,0\).*spans {longest} lag"):
        mm.lmer(formula, ovary, correlation=mm.cor.ARMA(50, 0))


def test_the_bound_is_p_plus_q_against_the_longest_span():
    data = _data(per_group=3)  # each group spans 2 lags
    with pytest.raises(mm.DataError, match=r"use p \+ q <= 2"):
        mm.lmer(FORMULA, data, correlation=mm.cor.ARMA(2, 1))
    # exactly as many lags as parameters: fitted; ARMA(1, 1) has an AR(1) special case
    # (Theta1 = 0) that cannot be better than the ARMA(1, 1) optimum
    arma = mm.lmer(FORMULA, data, correlation=mm.cor.ARMA(1, 1))
    ar1 = mm.lmer(FORMULA, data, correlation=mm.cor.AR1())
    assert np.isfinite(arma.loglik)
    assert arma.loglik >= ar1.loglik - 1e-6
