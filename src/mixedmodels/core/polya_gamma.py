"""Polya-Gamma draws, ``PG(b, c)`` for integer ``b``, by Devroye's exact method as given by
Polson, Scott and Windle (2013, JASA, section 4 and Algorithm 1).

``PG(1, c) = J*(1, |c|/2) / 4``, where ``J*(1, z)`` is drawn by accept-reject from a
proposal that is exponential right of ``t = 0.64`` and inverse Gaussian left of it,
accepting through the alternating series of its density (each partial sum bounds it);
``PG(b, c)`` is the sum of ``b`` independent ``PG(1, c)``.  With ``omega ~ PG(n, eta)`` a
binomial-logit likelihood becomes Gaussian in ``eta``: ``kappa / omega ~ N(eta, 1/omega)``,
``kappa = y - n/2`` (the augmentation that makes the logit mixed model's Gibbs sampler
exact).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

_T = 0.64


def _coefficients(n: int, x: np.ndarray) -> np.ndarray:
    """``a_n(x)``, the n-th term of the alternating series of the ``J*(1, 0)`` density."""
    k = n + 0.5
    right = math.pi * k * np.exp(-k * k * math.pi * math.pi * x / 2)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        left = math.pi * k * (2 / (math.pi * x)) ** 1.5 * np.exp(-2 * k * k / x)
    return np.where(x > _T, right, left)


def _inverse_gaussian_cdf(x: float, mu: np.ndarray) -> np.ndarray:
    """CDF of ``IG(mu, 1)`` at ``x`` (``mu = inf``: the Levy distribution)."""
    r = math.sqrt(1 / x)
    finite = np.isfinite(mu)
    m = np.where(finite, mu, 1.0)
    a = special.ndtr(r * (x / m - 1))
    b = special.ndtr(-r * (x / m + 1))
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.where(b > 0, np.exp(2 / m) * b, 0.0)
    return np.where(finite, a + tail, special.erfc(1 / math.sqrt(2 * x)))


def _truncated_inverse_gaussian(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """``IG(1/z, 1)`` restricted to ``(0, t)``, elementwise."""
    out = np.empty(z.size)
    with np.errstate(divide="ignore"):
        mu = np.where(z > 0, 1 / np.where(z > 0, z, 1.0), np.inf)
    small = np.flatnonzero(mu > _T)  # proposal: the Levy part truncated, then exp(-z^2 x/2)
    while small.size:
        e1 = rng.standard_exponential(small.size)
        e2 = rng.standard_exponential(small.size)
        x = _T / (1 + _T * e1) ** 2
        ok = (e1 * e1 <= 2 * e2 / _T) & (
            rng.uniform(size=small.size) <= np.exp(-0.5 * z[small] ** 2 * x)
        )
        out[small[ok]] = x[ok]
        small = small[~ok]
    large = np.flatnonzero(mu <= _T)  # the inverse Gaussian itself, kept below t
    while large.size:
        m = mu[large]
        y = rng.standard_normal(large.size) ** 2
        x = m + 0.5 * m * m * y - 0.5 * m * np.sqrt(4 * m * y + (m * y) ** 2)
        flip = rng.uniform(size=large.size) > m / (m + x)
        x = np.where(flip, m * m / x, x)
        ok = x < _T
        out[large[ok]] = x[ok]
        large = large[~ok]
    return out


def _j_star(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """Independent draws of ``J*(1, z_i)``, ``z_i >= 0``."""
    k = math.pi * math.pi / 8 + z * z / 2
    p = math.pi / (2 * k) * np.exp(-k * _T)
    with np.errstate(divide="ignore"):
        mu = np.where(z > 0, 1 / np.where(z > 0, z, 1.0), np.inf)
    q = 2 * np.exp(-z) * _inverse_gaussian_cdf(_T, mu)
    right = p / (p + q)
    out = np.empty(z.size)
    pending = np.arange(z.size)
    while pending.size:
        zz = z[pending]
        x = np.where(
            rng.uniform(size=pending.size) < right[pending],
            _T + rng.standard_exponential(pending.size) / k[pending],
            _truncated_inverse_gaussian(rng, zz),
        )
        s = _coefficients(0, x)
        y = rng.uniform(size=pending.size) * s
        accepted = np.zeros(pending.size, dtype=bool)
        open_ = np.ones(pending.size, dtype=bool)
        n = 0
        while open_.any():
            n += 1
            if n % 2 == 1:
                s = s - _coefficients(n, x)
                hit = open_ & (y <= s)
                accepted |= hit
                open_ &= ~hit
            else:
                s = s + _coefficients(n, x)
                open_ &= ~(y > s)
        out[pending[accepted]] = x[accepted]
        pending = pending[~accepted]
    return out


def polya_gamma(rng: np.random.Generator, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Independent ``PG(b_i, c_i)`` draws (``b_i`` non-negative integers)."""
    b = np.asarray(b, dtype=np.int64).ravel()
    c = np.abs(np.asarray(c, dtype=float)).ravel() / 2
    b = np.broadcast_to(b, c.shape)
    owner = np.repeat(np.arange(c.size), b)
    draws = _j_star(rng, c[owner])
    return np.bincount(owner, weights=draws, minlength=c.size) / 4


def polya_gamma_mean(b, c) -> np.ndarray:
    """``E PG(b, c) = b tanh(c/2) / (2c)`` (``b/4`` at ``c = 0``)."""
    c = np.abs(np.asarray(c, dtype=float))
    safe = np.where(c < 1e-8, 1.0, c)
    return np.where(c < 1e-8, np.asarray(b) / 4, np.asarray(b) * np.tanh(safe / 2) / (2 * safe))
