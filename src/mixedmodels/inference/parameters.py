"""The reported parameters of a linear mixed model in lme4's ``confint`` order and names.

For each random-effect term, walking its ``lambda`` column by column: ``sd_<name>|<group>``
on the diagonal and ``cor_<row>.<col>|<group>`` below it; then ``sigma``; then the fixed
effects.  ``sd`` and ``cor`` come from ``Sigma_k = sigma^2 lambda_k lambda_k'``.
"""

from __future__ import annotations

import numpy as np

from mixedmodels.core.terms import lower_triangle_indices


def parameter_names(
    group_labels: list[str], column_names: list[list[str]], fixed_names: list[str]
) -> list[str]:
    names = []
    for group, cols in zip(group_labels, column_names, strict=True):
        rows, cidx = lower_triangle_indices(len(cols))
        for r, c in zip(rows, cidx, strict=True):
            if r == c:
                names.append(f"sd_{cols[r]}|{group}")
            else:
                names.append(f"cor_{cols[r]}.{cols[c]}|{group}")
    return names + ["sigma"] + list(fixed_names)


def parameter_values(lambdas: list[np.ndarray], sigma: float, beta: np.ndarray) -> np.ndarray:
    """sd/cor of each term (column-wise lower triangle), sigma, beta."""
    out = []
    for lam in lambdas:
        cov = sigma**2 * (lam @ lam.T)
        sd = np.sqrt(np.diagonal(cov))
        rows, cols = lower_triangle_indices(lam.shape[0])
        for r, c in zip(rows, cols, strict=True):
            if r == c:
                out.append(sd[r])
            else:
                denom = sd[r] * sd[c]
                out.append(cov[r, c] / denom if denom > 0 else np.nan)
    return np.concatenate([np.asarray(out, dtype=float), [sigma], beta])
