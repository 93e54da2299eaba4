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
    if fit.zi_formula is not None:  # glmmTMB's line
        out.append(f"Zero inflation:            {fit.zi_formula}")
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
    out.extend(quantile_rows(fit.scaled_residuals))
    out.append("")
    out.append("Random effects:")
    out.append(random_effects_table(fit, residual=fit.has_residual_variance))
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    out.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    extra = fit.extra_parameters
    if "sigma" in extra.index:  # glmmTMB's line, 3 significant digits
        out += ["", f"Dispersion parameter for {fit.family.name} family (): {extra['sigma']:.3g} "]
    out.append("")
    out.append("Fixed effects:")
    table = fit.fixef_table()
    names = list(table.index)
    est, se = table.estimate.to_numpy(), table.std_error.to_numpy()
    text = fixed_effects_table(names, est, se)
    if not fit.family.has_dispersion:  # lme4 heads the column "t value" where it has a scale
        text = text.replace("t value", "z value")
    lines = text.split("\n")
    p_txt = format_pvalues(table.p_value.to_numpy(), max(1, min(5, DIGITS - 1)))
    p_head = "Pr(>|z|)"
    pw = max(len(p_head), *(len(t) for t in p_txt))
    lines[0] += " " + p_head.rjust(pw) + "    "
    for i, star in enumerate(significance_stars(table.p_value.to_numpy())):
        lines[i + 1] += " " + p_txt[i].rjust(pw) + " " + star.ljust(3)
    out.extend(lines)
    out += ["---", "Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"]
    zi = _zero_inflation_lines(fit)
    if zi:
        out += ["", "Zero-inflation model:"] + zi
    if 1 < len(names) <= 12:
        corr = fit.vcov.to_numpy() / np.outer(se, se)
        out += ["", "Correlation of Fixed Effects:", correlation_table(names, corr)]
    out.extend(smooth_summary_lines(fit))
    if fit.is_singular:
        out.append("boundary (singular) fit: see help('isSingular')")
    if not fit.converged:
        out.append(f"optimizer did not converge: {fit.optimizer_message}")
    return "\n".join(out)


def _zero_inflation_lines(fit: GlmerFit) -> list[str]:
    """glmmTMB's zero-inflation table (estimates, Wald standard errors, z and p)."""
    from scipy import stats

    rows = [r for r in fit.family.reported_extra() if r[0].startswith("zi_")]
    cov = fit._solution.vcov_extra
    if not rows or cov is None:
        return []
    names = [r[0][3:] for r in rows]
    est = np.array([r[1] for r in rows])
    se = np.sqrt(np.array([cov[r[2], r[2]] for r in rows]))
    lines = fixed_effects_table(names, est, se).split("\n")
    p = 2.0 * stats.norm.sf(np.abs(est / se))
    p_txt = format_pvalues(p, max(1, min(5, DIGITS - 1)))
    pw = max(len("Pr(>|z|)"), *(len(t) for t in p_txt))
    lines[0] = lines[0].replace("t value", "z value") + " " + "Pr(>|z|)".rjust(pw) + "    "
    for i, star in enumerate(significance_stars(p)):
        lines[i + 1] += " " + p_txt[i].rjust(pw) + " " + star.ljust(3)
    return lines
