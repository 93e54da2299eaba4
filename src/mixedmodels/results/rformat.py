"""Number formatting that follows R's ``format(x, digits=)``, for lme4-identical layouts."""

from __future__ import annotations

import math

import numpy as np


def _decimals_needed(value: float, digits: int) -> int:
    if value == 0 or not math.isfinite(value):
        return 0
    exponent = math.floor(math.log10(abs(value)))
    dec = max(0, digits - 1 - exponent)
    text = f"{value:.{dec}f}"
    if "." not in text:
        return 0
    return len(text.split(".")[1].rstrip("0"))


def format_r(values, digits: int) -> list[str]:
    """Format numbers with a common number of decimals, as R's ``format(x, digits)``.

    Each value needs the decimals that show it to ``digits`` significant digits (trailing
    zeros dropped); all values get the largest of those; strings are right-aligned.
    """
    vals = [float(v) for v in np.atleast_1d(values)]
    dec = min(15, max((_decimals_needed(v, digits) for v in vals), default=0))
    texts = [
        f"{v:.{dec}f}" if math.isfinite(v) else ("NA" if math.isnan(v) else str(v)) for v in vals
    ]
    width = max((len(t) for t in texts), default=0)
    return [t.rjust(width) for t in texts]


def zapsmall(values: np.ndarray, digits: int) -> np.ndarray:
    """R's (4.2) ``zapsmall``: round to ``digits - log10(max |x|)`` decimals.

    R passes the fractional digit count to ``round``, which takes the nearest integer.
    """
    mx = float(np.max(np.abs(values))) if len(values) else 0.0
    if mx <= 0:
        return np.round(values, digits)
    return np.round(values, max(0, math.floor(digits - math.log10(mx) + 0.5)))


def _significant_needed(value: float, digits: int) -> int:
    """Significant digits (at most ``digits``) that show ``value`` rounded to ``digits``."""
    if value == 0 or not math.isfinite(value):
        return 1
    mantissa = f"{abs(value):.{digits - 1}e}".split("e")[0].replace(".", "").rstrip("0")
    return max(1, len(mantissa))


def format_r_auto(values, digits: int) -> list[str]:
    """R's ``format(x, digits)`` choosing fixed or scientific notation for the whole vector:
    fixed unless it is wider than scientific (R's ``scipen = 0``)."""
    vals = [float(v) for v in np.atleast_1d(values)]
    fixed = format_r(vals, digits)
    mant = max(_significant_needed(v, digits) for v in vals)
    sci = []
    for v in vals:
        if not math.isfinite(v):  # as R prints them
            sci.append("NaN" if math.isnan(v) else ("Inf" if v > 0 else "-Inf"))
            continue
        base, exp = f"{v:.{mant - 1}e}".split("e")
        sci.append(f"{base}e{int(exp):+03d}")
    fixed_w = max(len(t.strip()) for t in fixed)
    sci_w = max(len(t) for t in sci)
    return [t.strip() for t in fixed] if fixed_w <= sci_w else sci
