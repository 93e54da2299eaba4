"""Convergence diagnostics against closed forms and against ArviZ (an independent
implementation of the same definitions, Vehtari et al. 2021)."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core import diagnostics as dg


def ar1(rho: float, chains: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((chains, n)) * np.sqrt(1 - rho**2)
    x = np.empty((chains, n))
    x[:, 0] = rng.standard_normal(chains)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


def test_ess_of_an_ar1_chain_is_its_closed_form():
    """AR(1) with rho = 0.8: the integrated autocorrelation time is (1 + rho)/(1 - rho) = 9,
    so 4 x 20,000 draws hold 8,889 effective draws; the estimate's error at this length is
    about 3% (Geyer's truncation), checked within 10%."""
    x = ar1(0.8, 4, 20_000, 1)
    expected = x.size * (1 - 0.8) / (1 + 0.8)
    assert dg.ess_mean(x) == pytest.approx(expected, rel=0.1)
    assert dg.ess_bulk(x) == pytest.approx(expected, rel=0.1)  # a normal is its own rank-normal
    se = x.std() / np.sqrt(expected)
    assert dg.mcse_mean(x) == pytest.approx(se, rel=0.06)


def test_independent_draws():
    """iid draws: ESS ~ the number of draws (10%), tail ESS too, R-hat ~ 1 (0.005: its
    sampling sd with 8 split chains of 2,000 is ~0.001)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 4000))
    assert dg.ess_bulk(x) == pytest.approx(x.size, rel=0.1)
    assert dg.ess_tail(x) == pytest.approx(x.size, rel=0.15)
    assert abs(dg.rhat(x) - 1) < 0.005


def test_rhat_sees_a_shifted_chain_and_a_wider_chain():
    """A chain shifted by 1 sd (bulk) and a chain with twice the spread at the same centre
    (only the folded, tail R-hat sees it) both give R-hat well above 1.01."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1000))
    shifted = x.copy()
    shifted[0] += 1.0
    wider = x.copy()
    wider[0] *= 3.0
    assert dg.rhat(shifted) > 1.05
    assert dg.rhat(wider) > 1.05
    half = x.copy()
    half[:, 500:] += 1.0  # a trend within every chain: the split halves disagree
    assert dg.rhat(half) > 1.05


def test_constant_draws_are_nan():
    assert np.isnan(dg.rhat(np.ones((2, 100))))
    assert np.isnan(dg.ess_bulk(np.ones((2, 100))))


def test_equal_to_arviz():
    """Same numbers as ArviZ's rhat/ess/mcse (1e-10 relative: one algorithm, two codes)."""
    az = pytest.importorskip("arviz")
    x = ar1(0.7, 4, 1000, 4)
    x[1] += 0.1
    pairs = [
        (dg.rhat(x), az.rhat(x)),
        (dg.ess_bulk(x), az.ess(x, method="bulk")),
        (dg.ess_tail(x), az.ess(x, method="tail")),
        (dg.ess_mean(x), az.ess(x, method="mean")),
        (dg.mcse_mean(x), az.mcse(x, method="mean")),
    ]
    for ours, theirs in pairs:
        # with numba installed ArviZ returns some of these as 1-element arrays
        theirs = np.asarray(theirs).reshape(-1)
        assert theirs.size == 1
        assert ours == pytest.approx(float(theirs[0]), rel=1e-10)


@pytest.mark.parametrize("prob", [0.05, 0.5, 0.95])
def test_mcse_quantile_of_iid_normal_draws_is_its_closed_form(prob):
    """iid N(0, 1) draws: the quantile's asymptotic standard error is
    sqrt(p (1 - p) / S) / phi(z_p) (0.0089 at the median, 0.0149 at 5% and 95% for
    S = 4 x 5,000).  One estimate rests on an order-statistic interval of only ~60 ranks
    in the tails, so its own sd is ~14% (measured over 40 seeds: mean ratio 0.99-1.01);
    the mean ratio over 20 independent data sets (sd ~0.03) is checked within 10%, and
    each single estimate within 50% (> 3.5 sd)."""
    from scipy import stats

    z = stats.norm.ppf(prob)
    ratios = []
    for seed in range(20):
        x = np.random.default_rng(100 + seed).standard_normal((4, 5000))
        expected = np.sqrt(prob * (1 - prob) / x.size) / stats.norm.pdf(z)
        ratios.append(dg.mcse_quantile(x, prob) / expected)
        assert dg.ess_quantile(x, prob) == pytest.approx(x.size, rel=0.15)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.1)
    assert 0.5 < min(ratios) and max(ratios) < 1.5


@pytest.mark.parametrize("seed", [6, 7, 8])
@pytest.mark.parametrize("prob", [0.05, 0.5, 0.95])
def test_mcse_quantile_equals_arviz(seed, prob):
    """Same numbers as ArviZ's mcse(method="quantile") on AR(1) chains (rho = 0.6, 0.75,
    0.9; an odd chain length, so the split drops a middle draw) within 1e-10 relative:
    one algorithm, two codes."""
    az = pytest.importorskip("arviz")
    rho = {6: 0.6, 7: 0.75, 8: 0.9}[seed]
    x = ar1(rho, 4, 801, seed)
    x[2] += 0.2
    theirs = float(az.mcse(x, method="quantile", prob=prob))
    assert dg.mcse_quantile(x, prob) == pytest.approx(theirs, rel=1e-10)
    ess_az = float(az.ess(x, method="quantile", prob=prob))
    assert dg.ess_quantile(x, prob) == pytest.approx(ess_az, rel=1e-10)


def test_mcse_quantile_rejects_a_probability_outside_0_1():
    with pytest.raises(ValueError, match="prob"):
        dg.mcse_quantile(np.zeros((2, 10)), 1.0)
