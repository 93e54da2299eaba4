"""R's ``binomial()$aic`` with a cbind response (core/families.py ``Binomial.aic``):
``-2 sum (wt / m) dbinom(round(m y), round(m), mu, log = TRUE)`` with ``wt`` the prior
weights times the trials and ``m`` the trials when some exceed 1.  So prior weights ``w``
weight ``log dbinom(k, n)`` (lme4 agrees: tests/test_robust_agreement.py, case
cbpp_cbind_prior_weights); without them it is the plain ``dbinom(k, n)`` sum, as before.
The reference is scipy's binomial log-pmf summed directly (float64 sums of 50 terms:
1e-12 relative)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mixedmodels.core.families import Binomial


def _data():
    rng = np.random.default_rng(5)
    n = rng.integers(1, 12, 50).astype(float)
    k = rng.binomial(n.astype(int), 0.3).astype(float)
    mu = rng.uniform(0.1, 0.9, 50)
    w = rng.integers(1, 4, 50).astype(float)
    return k, n, mu, w


def test_prior_weights_multiply_the_log_density():
    k, n, mu, w = _data()
    got = Binomial().aic(k / n, mu, w * n, 0.0, trials=n)
    expected = -2.0 * np.sum(w * stats.binom.logpmf(k, n, mu))
    assert got == pytest.approx(expected, rel=1e-12)


def test_without_prior_weights_the_trials_are_the_weights():
    k, n, mu, _ = _data()
    family = Binomial()
    expected = -2.0 * np.sum(stats.binom.logpmf(k, n, mu))
    assert family.aic(k / n, mu, n, 0.0, trials=n) == pytest.approx(expected, rel=1e-12)
    assert family.aic(k / n, mu, n, 0.0) == pytest.approx(expected, rel=1e-12)


def test_binary_trials_use_the_weights():
    """All trials 0 or 1: R's ``m`` is the weights (``dbinom(round(w y), round(w))``)."""
    k, _, mu, w = _data()
    y = (k > 0).astype(float)
    got = Binomial().aic(y, mu, w, 0.0, trials=np.ones_like(y))
    expected = -2.0 * np.sum(stats.binom.logpmf(np.round(w * y), w, mu))
    assert got == pytest.approx(expected, rel=1e-12)
