"""R's ``summary(lm(...))`` print layout."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.results.summary import DIGITS, fixed_effects_table, quantile_rows

if TYPE_CHECKING:
    from mixedmodels.results.lm_fit import LmFit

EPS = np.finfo(float).eps


def format_pvalues(p: np.ndarray, digits: int) -> list[str]:
    """R's ``format.pval``: ``< 2e-16`` below machine epsilon, else ``digits`` significant."""
    out = []
    for v in p:
        if v < EPS:
            out.append("< 2e-16")
        else:
            out.append(_signif(v, digits))
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def _signif(v: float, digits: int) -> str:
    """R's ``format(signif(v, digits))`` for one number (fixed or scientific)."""
    if v == 0:
        return "0"
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
