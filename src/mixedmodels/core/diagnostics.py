"""Convergence diagnostics of Markov chains as Vehtari, Gelman, Simpson, Carpenter and
Buerkner (2021, "Rank-normalization, folding, and localization: an improved R-hat")
define them.

Every function takes ``draws`` shaped ``(chains, iterations)``.  Chains are split in
half (the middle draw of an odd length dropped), so a trend within a chain shows as
disagreement between its halves.

* :func:`rhat`: the larger of the rank-normalized split R-hat of the draws (bulk) and of
  their distance from the median (folded: tails);
* :func:`ess_bulk`: effective sample size of the rank-normalized split chains;
* :func:`ess_tail`: the smaller effective sample size of the indicators of the 5% and 95%
  quantiles;
* :func:`ess_mean`, :func:`mcse_mean`: effective sample size of the raw split chains and
  the Monte Carlo standard error of the posterior mean, ``sd / sqrt(ess_mean)``;
* :func:`ess_quantile`, :func:`mcse_quantile`: effective sample size of the indicator
  ``I(x <= q_p)`` and the Monte Carlo standard error of the quantile ``q_p``.

Effective sample sizes use the multi-chain autocorrelation
``rho_t = 1 - (W - mean_m acov_m(t)) / var+`` summed by Geyer's initial monotone sequence.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _as_chains(draws) -> np.ndarray:
    a = np.asarray(draws, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError("draws must be shaped (chains, iterations)")
    return a


def split_chains(draws) -> np.ndarray:
    """Each chain's first and second halves as separate chains (middle draw dropped)."""
    a = _as_chains(draws)
    half = a.shape[1] // 2
    return np.concatenate([a[:, :half], a[:, a.shape[1] - half :]], axis=0)


def rank_normalize(draws) -> np.ndarray:
    """``Phi^-1((rank - 3/8) / (S + 1/4))`` of the pooled draws (average ranks for ties)."""
    a = _as_chains(draws)
    ranks = stats.rankdata(a, method="average").reshape(a.shape)
    return stats.norm.ppf((ranks - 0.375) / (a.size + 0.25))


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each row (FFT)."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, size, axis=1)
    return np.fft.irfft(f * np.conj(f), size, axis=1)[:, :n] / n


def ess(draws) -> float:
    """Effective sample size of chains as given (no splitting or normalization)."""
    a = _as_chains(draws)
    m, n = a.shape
    if n < 4 or not np.all(np.isfinite(a)):
        return math.nan
    if np.ptp(a) == 0:
        return math.nan
    acov = _autocovariance(a)
    within = acov[:, 0].mean() * n / (n - 1)
    var_plus = within * (n - 1) / n
    if m > 1:
        var_plus += a.mean(axis=1).var(ddof=1)
    rho = np.zeros(n)
    rho[0] = 1.0
    even, odd = 1.0, 1.0 - (within - acov[:, 1].mean()) / var_plus
    rho[1] = odd
    t = 1
    while t < n - 3 and even + odd > 0:
        even = 1.0 - (within - acov[:, t + 1].mean()) / var_plus
        odd = 1.0 - (within - acov[:, t + 2].mean()) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    last = t - 2
    if even > 0:
        rho[last + 1] = even
    t = 1  # initial monotone sequence: pairs may not increase
    while t <= last - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2
        t += 2
    total = m * n
    tau = -1.0 + 2.0 * rho[: last + 1].sum() + rho[last + 1]
    tau = max(tau, 1.0 / math.log10(total))
    return total / tau


def _rhat_plain(a: np.ndarray) -> float:
    m, n = a.shape
    within = a.var(axis=1, ddof=1).mean()
    between = n * a.mean(axis=1).var(ddof=1)
    if within == 0:
        return math.nan
    var_plus = (n - 1) / n * within + between / n
    return math.sqrt(var_plus / within)


def rhat(draws) -> float:
    """Rank-normalized split R-hat, the larger of its bulk and folded (tail) versions."""
    a = _as_chains(draws)
    if a.shape[1] < 4 or not np.all(np.isfinite(a)) or np.ptp(a) == 0:
        return math.nan
    split = split_chains(a)
    bulk = _rhat_plain(rank_normalize(split))
    folded = np.abs(split - np.median(split))
    tail = _rhat_plain(rank_normalize(folded))
    return max(bulk, tail)


def ess_bulk(draws) -> float:
    """Bulk effective sample size (rank-normalized split chains)."""
    a = _as_chains(draws)
    if a.shape[1] < 4 or not np.all(np.isfinite(a)) or np.ptp(a) == 0:
        return math.nan
    return ess(rank_normalize(split_chains(a)))


def ess_tail(draws, prob: float = 0.05) -> float:
    """Tail effective sample size: the smaller ESS of ``I(x <= q_prob)`` and
    ``I(x <= q_(1 - prob))``."""
    a = _as_chains(draws)
    if a.shape[1] < 4 or not np.all(np.isfinite(a)) or np.ptp(a) == 0:
        return math.nan
    split = split_chains(a)
    out = []
    for q in (prob, 1 - prob):
        indicator = (split <= np.quantile(split, q)).astype(float)
        out.append(ess(indicator))
    return min(out)


def ess_mean(draws) -> float:
    """Effective sample size for the mean (raw split chains)."""
    return ess(split_chains(draws))


def mcse_mean(draws) -> float:
    """Monte Carlo standard error of the posterior mean, ``sd / sqrt(ess_mean)``."""
    a = _as_chains(draws)
    e = ess_mean(a)
    return float(a.std(ddof=1) / math.sqrt(e)) if e == e else math.nan


def ess_quantile(draws, prob: float) -> float:
    """Effective sample size for the quantile ``q_prob``: the ESS of the split chains'
    indicator ``I(x <= q_prob)``, ``q_prob`` the pooled draws' quantile (type 7, linear
    interpolation)."""
    a = _as_chains(draws)
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie strictly between 0 and 1, got {prob!r}")
    if a.shape[1] < 4 or not np.all(np.isfinite(a)) or np.ptp(a) == 0:
        return math.nan
    indicator = (a <= np.quantile(a, prob)).astype(float)
    return ess(split_chains(indicator))


def mcse_quantile(draws, prob: float) -> float:
    """Monte Carlo standard error of the posterior quantile ``q_prob``.

    Vehtari et al. (2021, section 4.3), as ArviZ's ``mcse(method="quantile")`` and the R
    package posterior compute it: with ``S`` the pooled draws' count and
    ``N = ess_quantile(draws, prob)``, the probability that the true quantile lies below
    the draw of rank ``k`` is approximately ``Beta(N p + 1, N (1 - p) + 1)``; its
    15.87% and 84.13% points ``a`` and ``b`` (a central 68% interval, +/- one standard
    normal sd) map back through the sorted draws ``x_(1) <= ... <= x_(S)`` to

        ``th1 = x_(floor(max(a S - 1, 0)))``, ``th2 = x_(ceil(min(b S - 1, S - 1)))``

    (0-based ranks), and ``MCSE(q_prob) = (th2 - th1) / 2``.  For independent draws from
    a density ``f`` this tends to the asymptotic standard error
    ``sqrt(p (1 - p) / S) / f(q_p)``.

    Parameters
    ----------
    draws : array_like, shape (chains, iterations) or (iterations,)
        The draws of one scalar quantity.
    prob : float
        The quantile's probability, strictly between 0 and 1.

    Returns
    -------
    float
        The standard error, NaN for fewer than 4 draws per chain, non-finite or
        constant draws.
    """
    a = _as_chains(draws)
    n_eff = ess_quantile(a, prob)
    if n_eff != n_eff:
        return math.nan
    lo, hi = stats.beta.ppf([0.1586553, 0.8413447], n_eff * prob + 1, n_eff * (1 - prob) + 1)
    ordered = np.sort(a, axis=None)
    size = ordered.size
    th1 = ordered[int(math.floor(max(lo * size - 1, 0)))]
    th2 = ordered[int(math.ceil(min(hi * size - 1, size - 1)))]
    return float((th2 - th1) / 2)
