"""lme4's printed summary layout, built from a fit's public attributes."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.results.rformat import format_r, zapsmall
from mixedmodels.results.smooth import smooth_summary_lines
from mixedmodels.reterms.structures import ScaledIdentity

if TYPE_CHECKING:
    from mixedmodels.results.fit import LmerFit

DIGITS = 4  # lme4 prints summaries with max(3, getOption("digits") - 3)


def aligned_rows(heads: list[str], values: list[str], min_width: int = 0) -> list[str]:
    """A header row over a value row, every cell right-aligned to one width (R's print of a
    named vector)."""
    w = max(min_width, *(len(t) for t in list(values) + list(heads)))
    return [" ".join(h.rjust(w) for h in heads) + " ", " ".join(t.rjust(w) for t in values) + " "]


def quantile_rows(values: np.ndarray) -> list[str]:
    """Min, quartiles and max as lme4 and lm print residuals (zapsmall, then format)."""
    q = np.quantile(values, [0, 0.25, 0.5, 0.75, 1.0])
    return aligned_rows(
        ["Min", "1Q", "Median", "3Q", "Max"], format_r(zapsmall(q, DIGITS + 1), DIGITS)
    )


def abbreviate(name: str, minlength: int = 6) -> str:
    """R's ``abbreviate``: drop lower-case vowels, then lower-case letters, from the right."""
    chars = list(name)
    for pattern in ("[aeiou]", "[a-z]"):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if re.fullmatch(pattern, chars[i]):
                del chars[i]
            i -= 1
    return "".join(chars)


def _left_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [" " + " ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    for r in rows:
        lines.append(" " + " ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def _compact_scaled_identities(fit, terms):
    """A term whose coefficients share one variance (a smooth's penalized part) as one
    row: ``<p> coef.`` with the common variance."""
    out = []
    for (label, cols, cov), term in zip(terms, fit.design.terms, strict=True):
        if isinstance(term.structure, ScaledIdentity) and len(cols) > 1:
            out.append((label, [f"{len(cols)} coef."], cov[:1, :1]))
        else:
            out.append((label, cols, cov))
    return out


def random_effects_table(fit: LmerFit, residual: bool = True) -> str:
    """The 'Random effects' block (Groups, Name, Variance, Std.Dev., Corr); the Residual
    row only when ``residual`` (families without a scale parameter have none)."""
    terms = _compact_scaled_identities(fit, fit._term_info())
    names, groups, sds = [], [], []
    corr_blocks = []
    for label, cols, cov in terms:
        sd = np.sqrt(np.diagonal(cov))
        for i, c in enumerate(cols):
            groups.append(label if i == 0 else "")
            names.append(c)
            sds.append(sd[i])
        with np.errstate(invalid="ignore", divide="ignore"):
            corr_blocks.append(cov / np.outer(sd, sd))
    if residual:
        groups.append("Residual")
        names.append("")
        sds.append(fit.sigma)
    sds_arr = np.array(sds)
    var_txt = format_r(sds_arr**2, DIGITS)
    sd_txt = format_r(sds_arr, DIGITS)
    max_p = max(len(cols) for _, cols, _ in terms)
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    n_corr = max_p - 1
    if n_corr:
        header += ["Corr"] + [""] * (n_corr - 1)
    corr_cells = [[""] * n_corr for _ in range(len(names))]
    r = 0
    for (_, cols, _), corr in zip(terms, corr_blocks, strict=True):
        for i in range(len(cols)):
            for j in range(min(i, n_corr)):
                v = corr[i, j]
                corr_cells[r][j] = "NaN" if math.isnan(v) else f"{v:.2f}"
            r += 1
    for j in range(n_corr):  # R formats the correlation matrix to a common width
        width = max(len(row[j]) for row in corr_cells)
        for row in corr_cells:
            if row[j]:
                row[j] = row[j].rjust(width)
    n_terms = len(names) - int(residual)
    rows = [[groups[r], names[r], var_txt[r], sd_txt[r]] + corr_cells[r] for r in range(n_terms)]
    if residual:
        r = len(names) - 1
        rows.append([groups[r], names[r], var_txt[r], sd_txt[r]] + [""] * n_corr)
    return _left_table(header, rows)


def fixed_effects_table(
    names: list[str],
    est: np.ndarray,
    se: np.ndarray,
    extra: list[tuple[str, list[str]]] | None = None,
    order: list[str] | None = None,
) -> str:
    """R's ``printCoefmat`` layout for estimate, standard error and t value."""
    both = np.concatenate([est, se])
    nonzero = np.abs(both[(both != 0) & np.isfinite(both)])
    digmin = 1 + math.floor(math.log10(nonzero.min())) if nonzero.size else 1
    dec = max(1, DIGITS - digmin)
    joint = format_r(np.round(both, dec), DIGITS)  # R formats estimates and SEs together
    est_txt, se_txt = joint[: len(est)], joint[len(est) :]
    width = max(len(est_txt[0]), len(se_txt[0]))
    tval = est / se
    t_txt = format_r(np.round(tval, max(1, min(5, DIGITS - 1))), DIGITS)
    columns = [("Estimate", est_txt), ("Std. Error", se_txt), ("t value", t_txt)]
    if extra:
        columns += extra
    if order:
        by_name = dict(columns)
        columns = [(h, by_name[h]) for h in order] + [c for c in columns if c[0] not in order]
    name_w = max(len(n) for n in names)
    header = " " * name_w + "".join(" " + h.rjust(max(len(h), width)) for h, _ in columns)
    lines = [header]
    for i, n in enumerate(names):
        line = n.ljust(name_w)
        for h, col in columns:
            line += " " + col[i].rjust(max(len(h), width))
        lines.append(line)
    return "\n".join(lines)


def correlation_table(names: list[str], corr: np.ndarray) -> str:
    """Lower triangle of the fixed-effects correlation, columns abbreviated.

    As R prints it: numbers formatted to one common width, then the character matrix
    printed left-aligned under abbreviated column names.
    """
    p = len(names)
    abbrev = [abbreviate(n) for n in names[:-1]]
    values = [f"{corr[i, j]:.3f}" for i in range(p) for j in range(i)]
    width = max(len(v) for v in values)
    cells = [
        [f"{corr[i, j]:.3f}".rjust(width) if j < i else "" for j in range(p - 1)] for i in range(p)
    ]
    widths = [max(len(abbrev[j]), width) for j in range(p - 1)]
    name_w = max(len(n) for n in names[1:])
    lines = [" " * name_w + "".join(" " + a.ljust(w) for a, w in zip(abbrev, widths, strict=True))]
    for i in range(1, p):
        lines.append(
            names[i].ljust(name_w)
            + "".join(" " + c.ljust(w) for c, w in zip(cells[i], widths, strict=True)).rstrip()
        )
    return "\n".join(lines)


def _tested_fixed_effects(fit: LmerFit, ddf: str) -> list[str]:
    """Fixed-effects table with df, t and p-values plus significance codes (lmerTest)."""
    from mixedmodels.results.lm_summary import format_pvalues, significance_stars

    table = fit.fixef_table(ddf)
    est, se = table.estimate.to_numpy(), table.std_error.to_numpy()
    both = np.concatenate([est, se])
    nonzero = np.abs(both[(both != 0) & np.isfinite(both)])
    digmin = 1 + math.floor(math.log10(nonzero.min())) if nonzero.size else 1
    dec = max(1, DIGITS - digmin)
    df_txt = [f"{v:.{dec}f}" for v in table.df.to_numpy()]
    width = max(len(t) for t in df_txt)
    p_txt = format_pvalues(table.p_value.to_numpy(), max(1, min(5, DIGITS - 1)))
    text = fixed_effects_table(
        list(table.index),
        est,
        se,
        extra=[("df", [t.rjust(width) for t in df_txt])],
        order=["Estimate", "Std. Error", "df", "t value"],
    )
    lines = text.split("\n")
    p_head = "Pr(>|t|)"
    pw = max(len(p_head), *(len(t) for t in p_txt))
    lines[0] += " " + p_head.rjust(pw) + "    "
    for i, star in enumerate(significance_stars(table.p_value.to_numpy())):
        lines[i + 1] += " " + p_txt[i].rjust(pw) + " " + star.ljust(3)
    lines += ["---", "Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"]
    return lines


def summary_text(fit: LmerFit, ddf: str = "satterthwaite") -> str:
    """The whole summary: lmerTest's layout with df and p-values (``ddf`` Satterthwaite or
    Kenward-Roger), or lme4's plain layout for ``ddf="none"``."""
    out = []
    key = ddf.lower().replace("_", "-")
    if key == "none":
        crit = "REML " if fit.reml else "maximum likelihood  "
        out.append(f"Linear mixed model fit by {crit}['lmerMod']")
    else:
        crit = "REML" if fit.reml else "maximum likelihood "
        method = "Satterthwaite's" if key == "satterthwaite" else "Kenward-Roger's"
        out.append(f"Linear mixed model fit by {crit}. t-tests use {method} method [")
        out.append("lmerModLmerTest]")
    out.append(f"Formula: {fit.formula}")
    if fit.data_name:
        out.append(f"   Data: {fit.data_name}")
    if fit.n_dropped:
        out.append(f"   Rows dropped for missing values: {fit.n_dropped}")
    out.append("")
    if fit.reml:
        out.append(f"REML criterion at convergence: {fit.objective:.1f}")
    else:
        vals = [fit.aic, fit.bic, fit.loglik, -2 * fit.loglik]
        txt = [f"{v:.1f}" for v in vals] + [str(fit.nobs - fit.n_parameters)]
        out.extend(aligned_rows(["AIC", "BIC", "logLik", "deviance", "df.resid"], txt, 8))
    out.append("")
    if fit.rows_available:
        out.append("Scaled residuals: ")
        out.extend(quantile_rows(fit.scaled_residuals))
        out.append("")
    out.append("Random effects:")
    out.append(random_effects_table(fit))
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    out.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    out.append("")
    out.append("Fixed effects:")
    names = list(fit.fixef.index)
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    if names and key == "none":
        out.append(fixed_effects_table(names, fit.fixef.to_numpy(), se))
    elif names:
        out.extend(_tested_fixed_effects(fit, key))
    if names:
        if 1 < len(names) <= 12:
            v = fit.vcov.to_numpy()
            corr = v / np.outer(se, se)
            out.append("")
            out.append("Correlation of Fixed Effects:")
            out.append(correlation_table(names, corr))
    out.extend(smooth_summary_lines(fit))
    if fit.dropped_fixed:
        out.append(
            f"fit warnings:\nfixed-effect model matrix is rank deficient so dropping "
            f"{len(fit.dropped_fixed)} column(s): {', '.join(fit.dropped_fixed)}"
        )
    if fit.is_singular:
        out.append("boundary (singular) fit: see help('isSingular')")
    if not fit.converged:
        out.append(f"optimizer did not converge: {fit.optimizer_message}")
    return "\n".join(out)
