"""The correlation structures' starts from residuals (``residual_start``).

Moment estimates on simulated residuals with a known correlation, n = 40,000 rows in
groups of 20: the lag-1 correlation of an AR(1) series (``Phi = 0.6``) and the
within-group correlation of exchangeable rows (``Rho = 0.3``) have standard errors
below 0.01 here, so they must recover the truth within 0.03 (> 3 standard errors;
deterministic seeds).  Without usable rows the default start is returned, and the start
is clipped into the structure's range.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from mixedmodels.core.residual import AR1, ARMA, CAR1, CompoundSymmetry, make_layout

N_GROUPS, SIZE = 2000, 20


def _layout(time=None):
    codes = np.repeat(np.arange(N_GROUPS), SIZE)
    return make_layout(codes, time, codes)


def _ar1_series(phi, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((N_GROUPS, SIZE))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / np.sqrt(1 - phi**2)  # stationary first rows
    x[:, 1:] = lfilter([1.0], [1.0, -phi], e[:, 1:], axis=1, zi=phi * x[:, :1])[0]
    return x.ravel()


def test_ar1_start_is_the_lag_one_correlation():
    layout = _layout()
    r = _ar1_series(0.6, 1)
    phi = AR1().natural(AR1().residual_start(r, layout))[0]
    assert phi == pytest.approx(0.6, abs=0.03)
    arma = ARMA(1, 1)
    assert arma.natural(arma.residual_start(r, layout)) == pytest.approx([phi, 0.0], abs=1e-12)


def test_ar1_start_uses_only_rows_one_time_unit_apart():
    """With every other time missing no pair is one unit apart: the default start."""
    t = np.tile(np.arange(SIZE) * 2.0, N_GROUPS)
    layout = _layout(t)
    r = _ar1_series(0.6, 2)
    assert np.array_equal(AR1("t").residual_start(r, layout), AR1("t").start(layout))


def test_ar1_start_is_clipped_and_continuous_time_keeps_its_default():
    layout = _layout()
    r = np.repeat(np.arange(N_GROUPS, dtype=float), SIZE)  # constant within groups
    assert AR1().natural(AR1().residual_start(r, layout))[0] == pytest.approx(0.9)
    assert np.array_equal(AR1().residual_start(np.zeros(r.size), layout), AR1().start(layout))
    t = np.tile(np.arange(SIZE, dtype=float), N_GROUPS)
    car = CAR1("t")
    assert np.array_equal(car.residual_start(r, _layout(t)), car.start(_layout(t)))


def test_compound_symmetry_start_is_the_within_group_correlation():
    rng = np.random.default_rng(3)
    rho = 0.3
    r = (
        np.sqrt(rho) * np.repeat(rng.standard_normal(N_GROUPS), SIZE)
        + np.sqrt(1 - rho) * rng.standard_normal(N_GROUPS * SIZE)
    )
    layout = _layout()
    cs = CompoundSymmetry()
    assert cs.natural(cs.residual_start(r, layout))[0] == pytest.approx(rho, abs=0.03)
    assert np.array_equal(cs.residual_start(np.zeros(r.size), layout), cs.start(layout))
