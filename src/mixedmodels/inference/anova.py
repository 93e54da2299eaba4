"""Model comparison (lme4's ``anova(m1, m2)``) and F tests of fixed-effect terms
(lmerTest's ``anova(m)``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels.errors import DataError, MixedModelsError, MixedModelsWarning


def likelihood_ratio_table(fits: list, names: list[str]) -> pd.DataFrame:
    """lme4's likelihood-ratio table for ML fits sorted by number of parameters.

    Columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``; the test in row
    ``i`` compares model ``i`` with model ``i - 1``:
    ``Chisq = deviance_{i-1} - deviance_i`` on ``npar_i - npar_{i-1}`` df.
    """
    order = sorted(range(len(fits)), key=lambda i: fits[i].n_parameters)
    rows = []
    previous = None
    for i in order:
        f = fits[i]
        dev = -2.0 * f.loglik
        row = {
            "npar": f.n_parameters,
            "AIC": f.aic,
            "BIC": f.bic,
            "logLik": f.loglik,
            "deviance": dev,
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
        }
        if previous is not None:
            chisq = max(previous["deviance"] - dev, 0.0)
            df = f.n_parameters - previous["npar"]
            row["Chisq"] = chisq
            row["Df"] = df
            row["Pr(>Chisq)"] = float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan
        rows.append(row)
        previous = row
    table = pd.DataFrame(rows, index=[names[i] for i in order])
    table["Df"] = table["Df"].astype("Int64")
    return table


def check_same_data(fits: list) -> None:
    """Models compared by likelihood must be fitted to the same response rows."""
    first = fits[0].design
    for f in fits[1:]:
        d = f.design
        if d.n != first.n or not np.array_equal(d.y, first.y):
            raise DataError(
                "models were not all fitted to the same data "
                f"({first.n} vs {d.n} observations or different responses); "
                "a likelihood-ratio test needs the same rows"
            )


def check_nested(fits: list, names: list[str]) -> None:
    """Warn when a smaller model's fixed effects or grouping factors are not in the next."""
    order = sorted(range(len(fits)), key=lambda i: fits[i].n_parameters)
    for a, b in zip(order, order[1:], strict=False):
        fa, fb = fits[a], fits[b]
        fixed_ok = set(fa.fixef.index) <= set(fb.fixef.index)
        groups_ok = set(fa.ngroups) <= set(fb.ngroups)
        if not (fixed_ok and groups_ok):
            warnings.warn(
                f"model {names[a]!r} does not look nested in {names[b]!r}; the "
                "likelihood-ratio test assumes nesting",
                MixedModelsWarning,
                stacklevel=3,
            )


def _sum_coded_map(fit) -> tuple[np.ndarray, dict[str, list[int]]] | None:
    """``A`` with ``beta_sum = A beta`` (unordered factors, including ``factor(x)`` in the
    formula, re-coded to sum-to-zero contrasts; numeric covariates unchanged) and the
    sum-coded columns of each term; None when the formula cannot be re-coded."""
    design = fit.design
    if design.data is None:
        return None
    try:
        xs, terms = design.fixed_builder.sum_coded(design.data)
    except MixedModelsError:
        return None
    coef, *_ = np.linalg.lstsq(xs, design.X, rcond=None)  # X = Xs A
    return coef, terms


def type3_table(fit) -> pd.DataFrame:
    """F tests of each fixed-effect term with Satterthwaite denominator df (lmerTest's
    type III ``anova(m)``).

    Type III hypotheses do not depend on the coding: factors are re-coded to sum-to-zero
    contrasts (numeric covariates kept as they are), ``beta_sum = A beta``, and the test of
    term ``T`` is ``L beta = 0`` with ``L`` the rows of ``A`` for ``T``'s sum-coded
    columns.  Columns ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)`` as lmerTest's.
    """
    from mixedmodels.inference.satterthwaite import f_test

    design = fit.design
    beta = fit.fixef.to_numpy()
    info = fit._variance_info
    rows, index = [], []
    mapped = _sum_coded_map(fit)
    if mapped is None:
        warnings.warn(
            "could not re-code the factors for type III hypotheses; testing each term's own "
            "coefficients under the fitted coding",
            MixedModelsWarning,
            stacklevel=3,
        )
        keep = list(design.fixed_keep)
        position = {orig: new for new, orig in enumerate(keep)}
        coef = np.eye(len(beta))
        terms = {
            t: [position[c] for c in cols if c in position]
            for t, cols in design.fixed_builder.term_columns.items()
        }
    else:
        coef, terms = mapped
    for term, idx in terms.items():
        if term == "(Intercept)" or not idx:
            continue
        L = coef[idx]
        L = L[np.linalg.norm(L, axis=1) > 1e-12]
        if L.shape[0] == 0:
            continue
        f, num, den = f_test(info, beta, L)
        mean_sq = f * fit.sigma**2
        rows.append(
            {
                "Sum Sq": mean_sq * num,
                "Mean Sq": mean_sq,
                "NumDF": num,
                "DenDF": den,
                "F value": f,
                "Pr(>F)": float(stats.f.sf(f, num, den)) if math.isfinite(den) else np.nan,
            }
        )
        index.append(term)
    return pd.DataFrame(rows, index=index)


def _contained_terms(terms: list[str]) -> set[str]:
    parts = {t: set(t.split(":")) for t in terms}
    return {t for t in terms for u in terms if t != u and parts[t] < parts[u]}
