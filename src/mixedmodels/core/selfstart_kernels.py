"""Compiled steps of the self-starting models' Levenberg-Marquardt fit
(:func:`mixedmodels.core.selfstart.least_squares_fit`), numba.

Imported only through :func:`mixedmodels.core.selfstart.selfstart_kernels` (numba is
optional).  Only IEEE operations (``+ - * /``, ``abs``, comparisons) run here, each as
its own operation (no fused multiply-add: numba leaves contraction off), so the results
are the bits of the Python code they replace; the BLAS products, LAPACK's solve and the
model stay numpy's calls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def damped(jtj, mu):  # pragma: no cover - compiled
    """``jtj + mu diag(max(diag(jtj), 1e-300))``: a copy with the diagonal's sums (NaN
    kept, as Python's ``max(nan, 1e-300)`` keeps it)."""
    out = jtj.copy()
    for i in range(jtj.shape[0]):
        d = jtj[i, i]
        scale = 1e-300 if d < 1e-300 else d  # (Python's max(d, 1e-300), NaN kept)
        out[i, i] = d + mu * scale
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def trial_step(p, step):  # pragma: no cover - compiled
    """``p + step``, whether all of it is finite, and the relative step ``max |step| /
    max(|p|, 1e-8)`` (NaN when a ratio is NaN)."""
    k = p.size
    trial = np.empty(k)
    finite = True
    relative = 0.0
    any_nan = False
    for i in range(k):
        value = p[i] + step[i]
        trial[i] = value
        if not math.isfinite(value):
            finite = False
        floor = abs(p[i])
        if floor < 1e-8:  # (Python's max(|p_i|, 1e-8))
            floor = 1e-8
        ratio = abs(step[i]) / floor
        if math.isnan(ratio):
            any_nan = True
        elif i == 0 or ratio > relative:
            relative = ratio
    if any_nan:
        relative = math.nan
    return trial, finite, relative
