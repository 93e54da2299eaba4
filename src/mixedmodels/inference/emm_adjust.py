"""Multiplicity adjustments of p-values and confidence levels, as emmeans applies them.

A *family* is one ``by`` group.  ``fam_size`` is the number of means compared (Tukey's
k), ``n_contr`` the number of estimates in the family.  emmeans' rules are kept:

* one estimate per family: no adjustment;
* Tukey only for one set of pairwise comparisons (otherwise Sidak);
* p-value methods of R's ``p.adjust`` (holm, hochberg, bonferroni, BH/fdr, BY) and mvt
  are applied per family; for intervals every ``p.adjust`` method but none is Bonferroni;
* ``dunnettx`` is emmeans' approximation of Dunnett's distribution, a mixture of Tukey's
  and Sidak's;
* ``mvt`` (emmeans' multivariate-t adjustment) is not offered: the correlation of a
  family of contrasts is singular (pairwise differences of k means have rank k - 1) and
  scipy's multivariate t integration does not handle singular scales (measured: 0.735
  for a probability of 0.837, and 2 s a call); an ArgumentError says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

from mixedmodels.errors import ArgumentError

P_ADJUST = ("holm", "hochberg", "bonferroni", "BH", "fdr", "BY", "none")
SPECIAL = ("sidak", "tukey", "dunnettx")
METHODS = SPECIAL + P_ADJUST


@dataclass(frozen=True)
class Family:
    """How the rows of a table form families."""

    fam_size: int
    n_contr: int
    est_type: str  # "prediction", "contrast" or "pairs"
    by_rows: list[np.ndarray]


def check_adjust(adjust: str) -> str:
    key = {"fdr": "fdr", "bh": "BH", "by": "BY"}.get(adjust.lower(), adjust.lower())
    if key == "mvt":
        raise ArgumentError(
            "adjust='mvt' is not available: it needs multivariate-t probabilities for the "
            "singular correlation of a contrast family, which scipy does not compute "
            "reliably; use 'tukey' (pairwise), 'dunnettx' (vs control), 'sidak' or 'holm'"
        )
    if key not in METHODS:
        raise ArgumentError(f"adjust must be one of {', '.join(METHODS)}; got {adjust!r}")
    return key


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall (rounds to ``digits`` significant digits of the largest value)."""
    finite = x[np.isfinite(x)]
    mx = float(np.max(np.abs(finite))) if finite.size else 0.0
    if mx <= 0:
        return x
    return np.round(x, max(0, digits - math.ceil(math.log10(mx))))


def _ptukey_upper(q: np.ndarray, k: float, df: np.ndarray) -> np.ndarray:
    return np.array(
        [stats.studentized_range.sf(qq, k, d) for qq, d in zip(q, df, strict=True)], dtype=float
    )


def _pdunnx(x: np.ndarray, k: int, df: np.ndarray) -> np.ndarray:
    twt = (k - 1) / k
    tuk = np.array(
        [
            stats.studentized_range.cdf(math.sqrt(2) * xx, (1 + math.sqrt(1 + 8 * k)) / 2, d)
            for xx, d in zip(x, df, strict=True)
        ]
    )
    sid = _pf1(x**2, df) ** k
    return twt * tuk + (1 - twt) * sid


def _pf1(x: np.ndarray, df) -> np.ndarray:
    """R's ``pf(x, 1, df)``, with ``df = Inf`` as the chi-square limit."""
    df = np.broadcast_to(np.asarray(df, dtype=float), np.shape(x))
    finite = np.isfinite(df)
    return np.where(finite, stats.f.cdf(x, 1, np.where(finite, df, 1.0)), stats.chi2.cdf(x, 1))


def _p_adjust(p: np.ndarray, method: str) -> np.ndarray:
    """R's p.adjust with n = len(p)."""
    n = p.size
    if method == "none" or n == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, n * p)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    i = np.arange(1, n + 1)
    if method == "holm":
        adj = np.minimum(1.0, np.maximum.accumulate((n - i + 1) * ps))
    elif method == "hochberg":
        adj = np.minimum(1.0, np.minimum.accumulate(((n - i + 1) * ps)[::-1])[::-1])
    elif method in ("BH", "fdr"):
        adj = np.minimum(1.0, np.minimum.accumulate((n / i * ps)[::-1])[::-1])
    else:  # BY
        q = float(np.sum(1.0 / i))
        adj = np.minimum(1.0, np.minimum.accumulate((q * n / i * ps)[::-1])[::-1])
    out = np.empty(n)
    out[order] = adj
    return out


def adjusted_p(
    t: np.ndarray, df: np.ndarray, adjust: str, family: Family
) -> tuple[np.ndarray, str]:
    """Two-sided p-values adjusted within each family, and the method used."""
    adjust = check_adjust(adjust)
    if family.n_contr == 1:
        adjust = "none"
    if adjust == "tukey" and family.est_type != "pairs":
        adjust = "sidak"
    df = np.where(np.isnan(df), np.inf, df)
    unadj = 2 * stats.t.sf(np.abs(t), df)
    ragged = adjust in P_ADJUST
    groups = family.by_rows if ragged else [np.arange(len(t))]
    p = np.full(len(t), np.nan)
    for rows in groups:
        if adjust in P_ADJUST:
            p[rows] = _p_adjust(unadj[rows], adjust)
        elif adjust == "sidak":
            p[rows] = 1 - (1 - unadj[rows]) ** family.n_contr
        elif adjust == "tukey":
            p[rows] = _ptukey_upper(
                math.sqrt(2) * np.abs(t[rows]), family.fam_size, _zapsmall(df[rows])
            )
        else:  # dunnettx
            p[rows] = 1 - _pdunnx(np.abs(t[rows]), family.n_contr, df[rows])
    return np.clip(p, 0.0, 1.0), adjust


def critical_values(
    level: float, df: np.ndarray, adjust: str, family: Family
) -> tuple[np.ndarray, str]:
    """Half-widths (in SEs) of two-sided intervals adjusted within each family."""
    adjust = check_adjust(adjust)
    if family.n_contr == 1:
        adjust = "none"
    if adjust not in SPECIAL and adjust != "none":
        adjust = "bonferroni"
    if adjust == "tukey" and family.est_type != "pairs":
        adjust = "sidak"
    df = np.where(np.isnan(df), np.inf, df)
    n = family.n_contr
    if adjust == "none":
        return stats.t.isf((1 - level) / 2, df), adjust
    if adjust == "sidak":
        return stats.t.isf((1 - level ** (1 / n)) / 2, df), adjust
    if adjust == "bonferroni":
        return stats.t.isf((1 - level) / n / 2, df), adjust
    if adjust == "tukey":
        k = family.fam_size
        return np.array([_qtukey(level, k, _df_key(d)) / math.sqrt(2) for d in df]), adjust
    return np.array([_qdunnx(level, n, _df_key(d)) for d in df]), adjust  # dunnettx


def _df_key(df: float) -> float:
    """df to 10 significant digits: rows whose df agree that far share a quantile (the
    quantile's change is below 1e-12 relative)."""
    return float(f"{df:.10g}") if math.isfinite(df) else math.inf


@lru_cache(maxsize=256)
def _qtukey(level: float, k: int, df: float) -> float:
    return float(stats.studentized_range.ppf(level, k, df))


@lru_cache(maxsize=256)
def _qdunnx(p: float, k: int, df: float) -> float:
    if k < 1.005:
        return float(stats.t.isf(0.5 * (1 - p), df))
    xtuk = _qtukey(p, (1 + math.sqrt(1 + 8 * k)) / 2, df) / math.sqrt(2)
    if math.isfinite(df):
        xsid = math.sqrt(stats.f.ppf(p ** (1 / k), 1, df))
    else:
        xsid = math.sqrt(stats.chi2.ppf(p ** (1 / k), 1))
    if abs(xtuk - xsid) < 5e-4:
        return float(xtuk)
    lo, hi = sorted((xtuk, xsid))
    return optimize.brentq(
        lambda x: float(_pdunnx(np.array([x]), k, np.array([df]))[0]) - p, lo, hi, xtol=1e-10
    )


def families(by_rows: Sequence[np.ndarray], fam_size: int, est_type: str) -> Family:
    sizes = {len(r) for r in by_rows}
    return Family(fam_size, max(sizes) if sizes else 0, est_type, [np.asarray(r) for r in by_rows])
