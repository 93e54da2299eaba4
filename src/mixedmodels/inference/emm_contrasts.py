"""Contrast families of estimated marginal means (emmeans' ``*.emmc`` functions).

Each family turns the labels of the means in one ``by`` group into a coefficient matrix
(one column per contrast), the contrast names, the default p-value adjustment, the
estimate type ("pairs" lets Tukey's method apply) and the family size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixedmodels.errors import ArgumentError

_POLY_NAMES = ["linear", "quadratic", "cubic", "quartic"] + [f"degree {d}" for d in range(5, 21)]


@dataclass
class ContrastFamily:
    """Coefficients (levels x contrasts) with their names and defaults."""

    coef: np.ndarray
    names: list[str]
    adjust: str = "none"
    est_type: str | None = None  # "pairs"; None: "contrast" or "prediction" by the sums
    fam_size: int | None = None


def _pairwise(levels: Sequence[str], **_) -> ContrastFamily:
    k = len(levels)
    cols, names = [], []
    for i in range(k - 1):
        for j in range(i + 1, k):
            c = np.zeros(k)
            c[i], c[j] = 1.0, -1.0
            cols.append(c)
            names.append(f"{levels[i]} - {levels[j]}")
    return ContrastFamily(_stack(cols, k), names, "tukey", "pairs", k)


def _revpairwise(levels: Sequence[str], **_) -> ContrastFamily:
    k = len(levels)
    cols, names = [], []
    for i in range(1, k):
        for j in range(i):
            c = np.zeros(k)
            c[i], c[j] = 1.0, -1.0
            cols.append(c)
            names.append(f"{levels[i]} - {levels[j]}")
    return ContrastFamily(_stack(cols, k), names, "tukey", "pairs", k)


def _reference_index(levels: Sequence[str], ref: int | str) -> int:
    if isinstance(ref, str):
        if ref not in levels:
            raise ArgumentError(f"ref {ref!r} is not one of the levels {', '.join(levels)}")
        return list(levels).index(ref)
    if not 0 <= int(ref) < len(levels):
        raise ArgumentError(f"ref must be a level or a position 0..{len(levels) - 1}, got {ref!r}")
    return int(ref)


def _trt_vs_ctrl(levels: Sequence[str], ref: int | str = 0, reverse: bool = False, **_):
    k = len(levels)
    r = _reference_index(levels, ref)
    cols, names = [], []
    for i in range(k):
        if i == r:
            continue
        c = np.zeros(k)
        c[i], c[r] = 1.0, -1.0
        if reverse:
            c = -c
            names.append(f"{levels[r]} - {levels[i]}")
        else:
            names.append(f"{levels[i]} - {levels[r]}")
        cols.append(c)
    return ContrastFamily(_stack(cols, k), names, "dunnettx")


def _consec(levels: Sequence[str], reverse: bool = False, **_) -> ContrastFamily:
    k = len(levels)
    cols, names = [], []
    for i in range(k - 1):
        c = np.zeros(k)
        sign = -1.0 if reverse else 1.0
        c[i], c[i + 1] = -sign, sign
        cols.append(c)
        names.append(
            f"{levels[i]} - {levels[i + 1]}" if reverse else f"{levels[i + 1]} - {levels[i]}"
        )
    return ContrastFamily(_stack(cols, k), names, "sidak")  # emmeans: mvt (not available)


def _eff(levels: Sequence[str], **_) -> ContrastFamily:
    k = len(levels)
    cols = []
    for i in range(k):
        c = np.full(k, -1.0 / k)
        c[i] += 1.0
        cols.append(c)
    return ContrastFamily(_stack(cols, k), [f"{lev} effect" for lev in levels], "fdr")


def orthogonal_polynomials(k: int, degree: int) -> np.ndarray:
    """R's ``poly(1:k, degree)`` up to scale: column ``d`` is ``x^d`` minus its projection
    on the lower powers (so its leading coefficient is positive)."""
    x = np.arange(1, k + 1, dtype=float)
    x -= x.mean()
    basis = [np.ones(k)]
    out = []
    for d in range(1, degree + 1):
        v = x**d
        for b in basis:
            v = v - (v @ b) / (b @ b) * b
        basis.append(v)
        out.append(v)
    return np.column_stack(out)


def _poly(levels: Sequence[str], max_degree: int | None = None, **_) -> ContrastFamily:
    """Integer-scaled orthogonal polynomial contrasts, scaled as emmeans' ``poly.emmc``."""
    k = len(levels)
    if k < 2:
        raise ArgumentError("polynomial contrasts need at least two levels")
    degree = min(6, k - 1) if max_degree is None else min(int(max_degree), k - 1, 20)
    P = orthogonal_polynomials(k, degree)
    P = P / np.sqrt(np.sum(P**2, axis=0))
    for j in range(P.shape[1]):
        con = P[:, j]
        con = con / np.min(con[con > 0.01])
        z = np.max(np.abs(con - np.round(con)))
        while z > 0.05:
            con = con / z
            z = np.max(np.abs(con - np.round(con)))
        P[:, j] = np.round(con)
    return ContrastFamily(P, _POLY_NAMES[: P.shape[1]], "none")


def _stack(cols: list[np.ndarray], k: int) -> np.ndarray:
    return np.column_stack(cols) if cols else np.zeros((k, 0))


CONTRAST_METHODS: dict[str, Callable[..., ContrastFamily]] = {
    "pairwise": _pairwise,
    "tukey": _pairwise,
    "revpairwise": _revpairwise,
    "trt.vs.ctrl": _trt_vs_ctrl,
    "trt_vs_ctrl": _trt_vs_ctrl,
    "dunnett": _trt_vs_ctrl,
    "consec": _consec,
    "eff": _eff,
    "poly": _poly,
}


def custom_family(method, k: int) -> ContrastFamily:
    """A mapping name -> coefficients, or a DataFrame with one column per contrast."""
    try:
        if isinstance(method, pd.DataFrame):
            items = [(str(c), method[c].to_numpy(dtype=float)) for c in method.columns]
        elif isinstance(method, Mapping):
            items = [(str(n), np.asarray(v, dtype=float).ravel()) for n, v in method.items()]
        else:
            items = None
    except (TypeError, ValueError):
        raise ArgumentError(
            f"custom contrasts must be numbers, {k} per contrast (one per mean in a by "
            f"group); got {method!r}"
        ) from None
    if items is None:
        raise ArgumentError(
            "method must be one of "
            f"{', '.join(sorted(CONTRAST_METHODS))}, a mapping name -> coefficients or a "
            f"DataFrame of coefficients; got {type(method).__name__}"
        )
    if not items:
        raise ArgumentError("custom contrasts: no contrast given")
    for name, v in items:
        if v.size != k or not np.all(np.isfinite(v)):
            raise ArgumentError(
                f"custom contrast {name!r} needs {k} finite coefficients (one per mean in a "
                f"by group), got {v.size}"
            )
    return ContrastFamily(np.column_stack([v for _, v in items]), [n for n, _ in items], "none")


def contrast_family(method, levels: Sequence[str], **options) -> ContrastFamily:
    """The family named ``method`` (or custom coefficients) for these levels."""
    if isinstance(method, str):
        if method not in CONTRAST_METHODS:
            raise ArgumentError(
                f"unknown contrast method {method!r}; use one of "
                f"{', '.join(sorted(CONTRAST_METHODS))} or give coefficients"
            )
        return CONTRAST_METHODS[method](levels, **options)
    return custom_family(method, len(levels))


_PARENS = ("-", "+", "/", "*")


def level_names(columns: Sequence[Sequence[str]]) -> list[str]:
    """emmeans' labels of the means in a contrast: the variables' labels joined by a
    space, in parentheses when one holds ``- + / *``."""
    joined = [" ".join(parts) for parts in zip(*columns, strict=True)]
    return [f"({s})" if any(ch in s for ch in _PARENS) else s for s in joined]


def is_true_contrast(coef: np.ndarray) -> bool:
    """emmeans' test that every column sums to zero (relative to its largest entry)."""
    sums = np.sum(coef, axis=0) / (1e-6 + np.max(np.abs(coef), axis=0))
    return bool(np.all(np.abs(sums) < 1e-6))
