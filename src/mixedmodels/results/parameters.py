"""The reported parameters of a linear mixed model in lme4's ``confint`` order and names.

For each random-effect term, its covariance structure's reported parameters: for an
unstructured term, walking its ``lambda`` column by column, ``sd_<name>|<group>`` on the
diagonal and ``cor_<row>.<col>|<group>`` below it; then ``sigma``; then the fixed effects.
``sd`` and ``cor`` come from ``Sigma_k = sigma^2 lambda_k lambda_k'``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mixedmodels.core.structures import CovarianceStructure, Unstructured


def _structures(
    structures: Sequence[CovarianceStructure] | None, sizes: Sequence[int]
) -> list[CovarianceStructure]:
    if structures is None:
        return [Unstructured(p) for p in sizes]
    return list(structures)


def parameter_names(
    group_labels: list[str],
    column_names: list[list[str]],
    fixed_names: list[str],
    structures: Sequence[CovarianceStructure] | None = None,
) -> list[str]:
    """``sd_...|group`` / ``cor_...|group`` per term (as its structure names them),
    ``sigma``, then the fixed effects."""
    names = []
    found = _structures(structures, [len(c) for c in column_names])
    for group, cols, structure in zip(group_labels, column_names, found, strict=True):
        names.extend(f"{name}|{group}" for name in structure.reported_names(cols))
    return names + ["sigma"] + list(fixed_names)


def parameter_values(
    lambdas: list[np.ndarray],
    sigma: float,
    beta: np.ndarray,
    structures: Sequence[CovarianceStructure] | None = None,
) -> np.ndarray:
    """The reported variance parameters of each term, sigma, beta."""
    found = _structures(structures, [lam.shape[0] for lam in lambdas])
    out = [s.reported_values(lam, sigma) for s, lam in zip(found, lambdas, strict=True)]
    out.append(np.array([sigma]))
    out.append(np.asarray(beta, dtype=float))
    return np.concatenate(out)
