"""lme4's printed summary of a glmer fit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.results.lm_summary import format_pvalues, significance_stars
from mixedmodels.results.smooth import smooth_summary_lines
from mixedmodels.results.summary import (
    DIGITS,
    aligned_rows,
    correlation_table,
    fixed_effects_table,
    quantile_rows,
    random_effects_table,
)

if TYPE_CHECKING:
    from mixedmodels.results.glmer_fit import GlmerFit


def glmer_summary_text(fit: GlmerFit) -> str:
    """``summary(glmer(...))`` as lme4 1.1-31 prints it."""
    if fit.n_agq > 1:
        method = f"(Adaptive\n  Gauss-Hermite Quadrature, nAGQ = {fit.n_agq}) [glmerMod]"
    else:
        method = "(Laplace\n  Approximation) [glmerMod]"
    out = [
        "Generalized linear mixed model fit by maximum likelihood " + method,
        f" Family: {fit.family}",
        f"Formula: {fit.formula}",
    ]
    if fit.data_name:
        out.append(f"   Data: {fit.data_name}")
    if fit.n_dropped:
        out.append(f"   Rows dropped for missing values: {fit.n_dropped}")
    out.append("")
    vals = [fit.aic, fit.bic, fit.loglik, -2 * fit.loglik]
    txt = [f"{v:.1f}" for v in vals] + [str(fit.nobs - fit.n_parameters)]
    out.extend(aligned_rows(["AIC", "BIC", "logLik", "deviance", "df.resid"], txt, 8))
    out.append("")
    out.append("Scaled residuals: ")
    out.extend(quantile_rows(fit.residuals("pearson")))
    out.append("")
    out.append("Random effects:")
    out.append(random_effects_table(fit, residual=False))
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    out.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    out.append("")
    out.append("Fixed effects:")
    table = fit.fixef_table()
    names = list(table.index)
    est, se = table.estimate.to_numpy(), table.std_error.to_numpy()
    text = fixed_effects_table(names, est, se).replace("t value", "z value")
    lines = text.split("\n")
    p_txt = format_pvalues(table.p_value.to_numpy(), max(1, min(5, DIGITS - 1)))
    p_head = "Pr(>|z|)"
    pw = max(len(p_head), *(len(t) for t in p_txt))
    lines[0] += " " + p_head.rjust(pw) + "    "
    for i, star in enumerate(significance_stars(table.p_value.to_numpy())):
        lines[i + 1] += " " + p_txt[i].rjust(pw) + " " + star.ljust(3)
    out.extend(lines)
    out += ["---", "Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"]
    if 1 < len(names) <= 12:
        corr = fit.vcov.to_numpy() / np.outer(se, se)
        out += ["", "Correlation of Fixed Effects:", correlation_table(names, corr)]
    out.extend(smooth_summary_lines(fit))
    if fit.is_singular:
        out.append("boundary (singular) fit: see help('isSingular')")
    if not fit.converged:
        out.append(f"optimizer did not converge: {fit.optimizer_message}")
    return "\n".join(out)
