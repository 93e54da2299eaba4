"""Variance components in lme4's ``as.data.frame(VarCorr(m))`` shape."""

from __future__ import annotations

import numpy as np
import pandas as pd


def unique_group_labels(names: list[str]) -> list[str]:
    """R's ``make.unique``: the second ``Subject`` becomes ``Subject.1``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}.{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out


def term_covariances(lambdas: list[np.ndarray], sigma: float) -> list[np.ndarray]:
    """``sigma^2 lambda lambda'`` for each term."""
    return [sigma**2 * (lam @ lam.T) for lam in lambdas]


def varcorr_frame(
    group_labels: list[str],
    column_names: list[list[str]],
    covariances: list[np.ndarray],
    sigma: float | None,
) -> pd.DataFrame:
    """One row per variance, then per covariance (lower triangle by column), residual last."""
    rows = []
    for grp, names, cov in zip(group_labels, column_names, covariances, strict=True):
        sd = np.sqrt(np.diagonal(cov))
        for i, name in enumerate(names):
            rows.append((grp, name, None, cov[i, i], sd[i]))
        p = len(names)
        for j in range(p):
            for i in range(j + 1, p):
                denom = sd[i] * sd[j]
                corr = cov[i, j] / denom if denom > 0 else np.nan
                rows.append((grp, names[j], names[i], cov[i, j], corr))
    if sigma is not None:
        rows.append(("Residual", None, None, sigma**2, sigma))
    frame = pd.DataFrame(
        {
            "grp": pd.Series([r[0] for r in rows], dtype=object),
            "var1": pd.Series([r[1] for r in rows], dtype=object),
            "var2": pd.Series([r[2] for r in rows], dtype=object),
            "vcov": np.array([r[3] for r in rows], dtype=float),
            "sdcor": np.array([r[4] for r in rows], dtype=float),
        }
    )
    return frame
