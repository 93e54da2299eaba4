"""R's ``summary(lm(...))`` print layout."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.results.rformat import format_r_auto
from mixedmodels.results.summary import DIGITS, fixed_effects_table, quantile_rows

if TYPE_CHECKING:
    from mixedmodels.results.lm_fit import LmFit

EPS = np.finfo(float).eps


def format_pvalues(p: np.ndarray, digits: int) -> list[str]:
    """R's ``format.pval`` (R 4.2): p-values with exponent >= -3 (or -4 when ``digits >
    1``) formatted together, the smaller ones together (fixed or scientific, whichever is
    narrower), and those below machine epsilon as ``< 2e-16`` (``<2e-16`` when the others
    are at most 6 characters wide)."""
    p = np.asarray(p, dtype=float)
    out = [""] * len(p)
    tiny = p < EPS
    expo = np.floor(np.log10(np.where(p > 0, p, 1e-50)))
    fixp = ~tiny & ((expo >= -3) | ((expo == -4) & (digits > 1)))
    rest = ~tiny & ~fixp
    for mask in (fixp, rest):
        idx = np.flatnonzero(mask)
        if idx.size:
            for i, text in zip(idx, format_r_auto(p[idx], digits), strict=True):
                out[i] = text
    if tiny.any():
        others = [out[i] for i in np.flatnonzero(~tiny)]
        sep = "" if others and max(len(t) for t in others) <= 6 else " "
        for i in np.flatnonzero(tiny):
            out[i] = f"<{sep}2e-16"
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def _signif(v: float, digits: int) -> str:
    """R's ``format(signif(v, digits))`` for one number (fixed or scientific)."""
    if v == 0:
        return "0"
    if not math.isfinite(v):  # as R prints them
        return "NaN" if math.isnan(v) else ("Inf" if v > 0 else "-Inf")
    exponent = math.floor(math.log10(abs(v)))
    if exponent < -4 or exponent >= 15:
        mant = f"{v:.{digits - 1}e}"
        base, exp = mant.split("e")
        base = base.rstrip("0").rstrip(".")
        return f"{base}e{int(exp):+03d}"
    dec = max(0, digits - 1 - exponent)
    return f"{v:.{dec}f}".rstrip("0").rstrip(".") if dec else f"{v:.0f}"


def significance_stars(p: np.ndarray) -> list[str]:
    cuts = [(0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")]
    return [next((s for c, s in cuts if v <= c), " ") for v in p]


def lm_summary_text(fit: LmFit) -> str:
    table = fit.coef_table()
    out = ["", "Call:", f"lm(formula = {fit.formula}, data = {fit.data_name or 'data'})", ""]
    out.append("Residuals:")
    out.extend(quantile_rows(fit.residuals))
    out.append("")
    out.append("Coefficients:")
    pv = table.p_value.to_numpy()
    stars = significance_stars(pv)
    p_txt = format_pvalues(pv, max(1, min(5, DIGITS - 1)))
    text = fixed_effects_table(
        list(table.index),
        table.estimate.to_numpy(),
        table.std_error.to_numpy(),
        extra=[("Pr(>|t|)", p_txt)],
    )
    lines = text.split("\n")
    lines[0] += "    "
    for i, s in enumerate(stars):
        lines[i + 1] += " " + s.ljust(3)
    out.extend(lines)
    out.append("---")
    out.append("Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1")
    out.append("")
    out.append(
        f"Residual standard error: {_signif(fit.sigma, DIGITS)} on {fit.df_residual} "
        "degrees of freedom"
    )
    f, d1, d2, fp = fit.f_statistic
    out.append(
        f"Multiple R-squared:  {_signif(fit.r_squared, DIGITS)},\tAdjusted R-squared:  "
        f"{_signif(fit.adj_r_squared, DIGITS)} "
    )
    out.append(
        f"F-statistic: {_signif(f, DIGITS)} on {d1} and {d2} DF,  p-value: "
        f"{format_pvalues(np.array([fp]), DIGITS)[0].strip()}"
    )
    out.append("")
    return "\n".join(out)
