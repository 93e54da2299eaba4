"""Dunn & Smyth's series for the Tweedie density at a small dispersion: the window of terms
grows like ``sqrt(y^(2-p) / phi)`` per row and ``tweedie_log_series`` builds the windows of
all rows at once (``np.repeat(rows, counts)``) before the fix.  A constant response drives
phi towards 0 during the fit: ``mm.glmer("pos ~ x + (1 | g)", d, "tweedie")`` with ``d.pos``
constant (200 rows) asked NumPy for 42.5 GiB (MemoryError).  Now rows are summed in chunks of
a bounded number of terms (the same values, bit for bit: each row's sum is unchanged)."""

from __future__ import annotations

import numpy as np
from scipy import special

from mixedmodels.core import families
from mixedmodels.core.families import tweedie_log_series

LIMIT = 50_000_000  # entries one call may repeat into (400 MB of float64)


def _log_w_reference(y: float, phi: float, power: float) -> float:
    """``log sum_j W_j`` over 40 sd either side of the peak, summed with logsumexp."""
    alpha = (2.0 - power) / (1.0 - power)
    log_z = (
        -alpha * np.log(y) + alpha * np.log(power - 1.0) - (1.0 - alpha) * np.log(phi)
        - np.log(2.0 - power)
    )
    peak = y ** (2.0 - power) / (phi * (2.0 - power))
    sd = np.sqrt(peak / (1.0 - alpha))
    j = np.arange(max(1.0, np.floor(peak - 40 * sd)), np.ceil(peak + 40 * sd) + 1)
    terms = j * log_z - special.gammaln(1.0 + j) - special.gammaln(-alpha * j)
    return float(special.logsumexp(terms))


def test_small_dispersion_series_is_bounded_in_memory(monkeypatch):
    real_repeat = np.repeat

    def bounded_repeat(a, repeats, *args, **kwargs):
        total = int(np.sum(repeats)) if np.ndim(repeats) else int(repeats) * np.size(a)
        assert total <= LIMIT, f"np.repeat of {total:.3g} entries"
        return real_repeat(a, repeats, *args, **kwargs)

    monkeypatch.setattr(families.np, "repeat", bounded_repeat)
    y, phi, power = 5.0, 1e-9, 1.5
    got = tweedie_log_series(np.full(200, y), phi, power)
    # the sum of ~4e6 terms around j0 = 4.5e9: logsumexp's rounding is ~1e-13 relative
    np.testing.assert_allclose(got, _log_w_reference(y, phi, power), rtol=1e-10)
