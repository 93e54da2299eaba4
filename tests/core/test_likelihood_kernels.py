"""The likelihood families' PIRLS kernels (core/families.py: ``LikelihoodFamily.kernel``,
glmmTMB's nbinom1/nbinom2, beta, Poisson and zero inflation) and the pieces that make an
evaluation cheap: the response terms computed once per fit and shared by the kernels of
other parameter values (``rebind``), ``log p`` and its derivatives computed once per linear
predictor, tweedie's series from tables, the zero-inflation probabilities on the distinct
rows of ``X_zi``.

References are independent of the code under test: scipy's densities (``nbinom``,
``beta``, ``poisson``), central differences of them, a plain-Python sum of the tweedie
series, and ``expit`` of ``X gamma`` row by row.
"""

import math

import numpy as np
import pytest
from scipy import special, stats

from mixedmodels.core.families import (
    Beta,
    NBinom1,
    NBinom2,
    PoissonLikelihood,
    ZeroInflated,
    _ZeroInflationDesign,
    tweedie_log_series,
)

RNG = np.random.default_rng(2026)
N = 60
X_ZI = np.column_stack([np.ones(N), np.repeat([0.0, 1.0], N // 2)])
GAMMA = np.array([-1.2, 0.8])


def _counts(n: int = N) -> np.ndarray:
    """Overdispersed counts with zeros, small and large values (17 and 60; whole counts:
    scipy's pmfs are 0 off the integers)."""
    y = RNG.negative_binomial(1.5, 0.15, n).astype(float)
    y[:6] = [0.0, 0.0, 1.0, 17.0, 3.0, 60.0]
    return y


def _scipy_logp(name: str, y: np.ndarray, eta: np.ndarray, value: float) -> np.ndarray:
    """log p(y | eta) by scipy (the zero-inflated ones as the mixture)."""
    if name == "beta":
        mu = special.expit(eta)
        return stats.beta.logpdf(y, mu * value, (1 - mu) * value)
    mu = np.exp(eta)
    base = name.removeprefix("zi_")
    if base == "poisson":
        logf = stats.poisson.logpmf(y, mu)
    elif base == "nbinom2":
        logf = stats.nbinom.logpmf(y, value, value / (value + mu))
    else:  # nbinom1: size mu / phi, probability 1 / (1 + phi)
        logf = stats.nbinom.logpmf(y, mu / value, 1.0 / (1.0 + value))
    if not name.startswith("zi_"):
        return logf
    pi = special.expit(X_ZI @ GAMMA)
    return np.where(y == 0, np.log(pi + (1 - pi) * np.exp(logf)), np.log1p(-pi) + logf)


def _family(name: str, value: float):
    base = {
        "poisson": PoissonLikelihood,
        "nbinom2": lambda: NBinom2(k=value),
        "nbinom1": lambda: NBinom1(phi=value),
        "beta": lambda: Beta(phi=value),
    }[name.removeprefix("zi_")]()
    if name.startswith("zi_"):
        return ZeroInflated(base, X_ZI, ["(Intercept)", "x"], GAMMA)
    return base


def _data(name: str):
    if name == "beta":
        y = RNG.beta(2.0, 5.0, N)
        eta = RNG.normal(-0.8, 1.0, N)
    else:
        y = _counts()
        eta = np.log(np.maximum(y, 0.5)) + RNG.normal(0, 0.4, N)
    return y, eta


NAMES = ["poisson", "nbinom2", "nbinom1", "beta", "zi_poisson", "zi_nbinom2", "zi_nbinom1"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_deviance_and_newton_weights_match_scipy(name, weighted):
    """The kernel's deviance is ``-2 sum w log p`` of scipy's densities (rtol 1e-12: the
    same density in other arrangements of gammaln and log terms, summed over 60 rows); its
    Newton weights ``h = -d2 log p`` and scores ``h r = d log p`` match central differences
    of scipy's ``log p`` (step 1e-4: truncation ~1e-9, rounding ~1e-16 |log p| / 1e-8 =
    1e-7; 2e-6 relative to the largest allowed), and the Laplace weights are ``h`` (no row
    floored here)."""
    value = 1.7
    family = _family(name, value)
    y, eta = _data(name)
    w = RNG.uniform(0.5, 2.0, N) if weighted else np.ones(N)
    kernel = family.kernel(y, w)
    mu = family.link.inverse(eta)
    expected = -2.0 * float(np.sum(w * _scipy_logp(name, y, eta, value)))
    assert kernel.deviance(eta, mu) == pytest.approx(expected, rel=1e-12, abs=0)
    step = 1e-4
    up = w * _scipy_logp(name, y, eta + step, value)
    mid = w * _scipy_logp(name, y, eta, value)
    down = w * _scipy_logp(name, y, eta - step, value)
    d1 = (up - down) / (2 * step)
    d2 = (up - 2 * mid + down) / step**2
    h, r = kernel.working(eta, mu)
    scale = float(np.max(np.abs(d2)))
    np.testing.assert_allclose(h, -d2, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(h * r, d1, rtol=0, atol=2e-6 * float(np.max(np.abs(d1))))
    np.testing.assert_array_equal(kernel.laplace_weights(eta, mu), h)


@pytest.mark.parametrize("name", ["nbinom1", "zi_nbinom2", "beta"])
def test_kernel_values_follow_the_linear_predictor(name):
    """The kernel keeps the last two ``eta``'s ``log p`` and derivatives: asked in any
    order at three linear predictors (and at an equal copy of one), every answer is that of
    a fresh kernel asked once (exact: the same operations)."""
    family = _family(name, 2.3)
    y, eta1 = _data(name)
    eta2 = eta1 + RNG.normal(0, 0.3, N)
    w = np.ones(N)

    def fresh(eta):
        k = family.kernel(y, w)
        dev = k.deviance(eta, None)
        h, r = family.kernel(y, w).working(eta, None)
        return dev, h, r, family.kernel(y, w).laplace_weights(eta, None)

    eta3 = eta1 - RNG.normal(0, 0.3, N)
    ref1, ref2, ref3 = fresh(eta1), fresh(eta2), fresh(eta3)
    kernel = family.kernel(y, w)
    order = ((eta1, ref1), (eta2, ref2), (eta1.copy(), ref1), (eta3, ref3), (eta2, ref2))
    for eta, ref in order + ((eta1, ref1), (eta3, ref3)):
        h, r = kernel.working(eta, None)
        assert kernel.deviance(eta, None) == ref[0]
        np.testing.assert_array_equal(h, ref[1])
        np.testing.assert_array_equal(r, ref[2])
        np.testing.assert_array_equal(kernel.laplace_weights(eta, None), ref[3])
    assert kernel.deviance(eta2, None) == ref2[0]
    assert kernel.deviance(eta1, None) == ref1[0]


@pytest.mark.parametrize("name", ["nbinom2", "zi_nbinom1", "beta"])
def test_rebind_shares_the_response_terms_and_gives_the_new_values(name):
    """A kernel rebound to the family at other parameter values keeps the response terms
    (the same objects) and gives scipy's deviance at the new values (rtol 1e-12); at the
    same values it keeps the parameter terms too."""
    family = _family(name, 1.7)
    y, eta = _data(name)
    w = np.ones(N)
    kernel = family.kernel(y, w)
    values = family.extra_values.copy()
    values[0] = np.log(4.2)
    other = family.with_extra(values)
    rebound = kernel.rebind(other)
    assert rebound.response is kernel.response
    assert rebound.terms is not kernel.terms
    expected = -2.0 * float(np.sum(_scipy_logp(name, y, eta, float(np.exp(values[0])))))
    assert rebound.deviance(eta, None) == pytest.approx(expected, rel=1e-12, abs=0)
    same = kernel.rebind(family.with_extra(family.extra_values))
    if name != "zi_nbinom1":  # NB1's phi = exp(log phi) may differ by an ulp: not shared
        assert same.terms is kernel.terms
    assert same.deviance(eta, None) == pytest.approx(kernel.deviance(eta, None), rel=1e-14)


def _series_by_hand(y: float, phi: float, power: float) -> float:
    """``log sum_j W_j`` of the tweedie series in plain Python over j = 1..J, J far past
    the terms' peak (math.lgamma per term, log-sum-exp)."""
    alpha = (2.0 - power) / (1.0 - power)
    log_z = (
        -alpha * math.log(y)
        + alpha * math.log(power - 1.0)
        - (1.0 - alpha) * math.log(phi)
        - math.log(2.0 - power)
    )
    peak = max(1.0, y ** (2.0 - power) / (phi * (2.0 - power)))
    top = int(peak + 60.0 * math.sqrt(peak) + 200.0)
    terms = [j * log_z - math.lgamma(1.0 + j) - math.lgamma(-alpha * j) for j in range(1, top)]
    m = max(terms)
    return m + math.log(math.fsum(math.exp(t - m) for t in terms))


@pytest.mark.parametrize(("phi", "power"), [(0.3, 1.05), (1.0, 1.5), (4.0, 1.9)])
def test_tweedie_series_tables_match_a_plain_sum(phi, power):
    """The series from tables of log j! and log Gamma(-j alpha) (and, for a row whose peak
    makes the table longer than the terms, from gammaln per term) against a plain-Python
    sum (rtol 1e-13: the largest term's log is exact to ~1e-15, the sums of exponentials to
    a few ulp)."""
    y = np.array([0.01, 0.4, 1.0, 3.3, 12.0, 250.0])
    got = tweedie_log_series(y, phi, power)
    expected = [_series_by_hand(float(v), phi, power) for v in y]
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    # one row alone: its peak's table may exceed its terms (the per-term branch)
    single = tweedie_log_series(y[-1:], phi, power)
    np.testing.assert_allclose(single, expected[-1:], rtol=1e-13)


@pytest.mark.parametrize("distinct", [2, 60])
def test_zero_inflation_probabilities_on_distinct_rows(distinct):
    """pi, log pi and log(1 - pi) from ``X_zi``'s distinct rows (a two-level factor) or all
    rows (a continuous covariate) against expit and logs of ``X gamma`` row by row (rtol
    1e-15: the same one or two products per row)."""
    x = np.repeat([0.0, 1.0], N // 2) if distinct == 2 else RNG.normal(size=N)
    X = np.column_stack([np.ones(N), x])
    design = _ZeroInflationDesign(X)
    assert (design.rows is None) == (distinct == N)
    assert design.intercept == 0
    gamma = np.array([-0.7, 1.9])
    pi, log_pi, log_1pi = design.probabilities(gamma)
    eta = np.array([row[0] * gamma[0] + row[1] * gamma[1] for row in X])
    np.testing.assert_allclose(pi, 1 / (1 + np.exp(-eta)), rtol=1e-15)
    np.testing.assert_allclose(log_pi, -np.log1p(np.exp(-eta)), rtol=1e-15)
    np.testing.assert_allclose(log_1pi, -np.log1p(np.exp(eta)), rtol=1e-15)
    assert _ZeroInflationDesign(X[:, 1:]).intercept is None


@pytest.mark.parametrize("distinct", [2, 60])
def test_zero_inflated_poisson_kernel_mean_memo_and_lazy_probabilities(distinct):
    """The zero-inflated Poisson kernel's mean (taken from ``log p``'s intermediates) is
    the log link's inverse to the bit; the family's ``pi`` (spread from the distinct rows
    when asked for) equals :meth:`_ZeroInflationDesign.probabilities`' bit for bit; and
    ``log_derivatives`` with its response terms kept (a second call on the same ``y``, and
    a value made by ``with_extra`` sharing the memo) equals scipy's zero-inflated Poisson
    log density (rtol 1e-12: logs of sums of two probabilities) at every call."""
    x = np.repeat([0.0, 1.0], N // 2) if distinct == 2 else RNG.normal(size=N)
    X = np.column_stack([np.ones(N), x])
    y = _counts()
    eta = RNG.normal(1.0, 0.8, N)
    fam = ZeroInflated(PoissonLikelihood(), X, ["(Intercept)", "x"], GAMMA)
    kernel = fam.kernel(y, np.ones(N))
    mean = kernel.inverse(eta)
    assert np.array_equal(mean, fam.link.inverse(eta))
    assert np.array_equal(fam.pi, _ZeroInflationDesign(X).probabilities(GAMMA)[0])
    for gamma in (GAMMA, GAMMA, GAMMA + [0.3, -0.5]):
        value = fam.with_extra(np.asarray(gamma))
        pi = special.expit(X @ gamma)
        f = stats.poisson.pmf(y, np.exp(eta))
        expected = np.log(np.where(y == 0, pi, 0.0) + (1 - pi) * f)
        logp = value.log_derivatives(y, eta, np.ones(N), False)[0]
        np.testing.assert_allclose(logp, expected, rtol=1e-12)
        assert value._design.response_memo[0] is y


def test_log_derivatives_with_unit_weights_skip_the_product_bitwise():
    """``LikelihoodFamily.log_derivatives`` with unit prior weights (decided once per
    weights array) returns exactly ``1 x`` of the weighted call's terms; other weights are
    multiplied in, also after a unit call on the same response."""
    from mixedmodels.core.families import NBinom1

    rng = np.random.default_rng(31)
    y = rng.poisson(3.0, 80).astype(float)
    eta = rng.normal(1.0, 0.5, 80)
    family = NBinom1(phi=0.7)
    ones = np.ones(80)
    unit = family.log_derivatives(y, eta, ones)
    again = family.log_derivatives(y, eta, ones)
    logp, state = family.value_terms(y, eta, family.terms_of(y))
    d1, d2 = family.derivative_terms(y, eta, family.terms_of(y), state)
    for got, second, ref in zip(unit, again, (logp, d1, d2), strict=True):
        np.testing.assert_array_equal(got, 1.0 * ref)
        np.testing.assert_array_equal(second, 1.0 * ref)
    w = rng.uniform(0.5, 2.0, 80)
    weighted = family.log_derivatives(y, eta, w)
    for got, ref in zip(weighted, (logp, d1, d2), strict=True):
        np.testing.assert_array_equal(got, w * ref)
    assert family.log_derivatives(y, eta, ones, derivatives=False)[1] is None
