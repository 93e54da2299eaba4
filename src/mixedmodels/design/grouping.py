"""Grouping factors: integer codes and level labels, numbers treated as factors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixedmodels.errors import DataError


def _factor_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy(dtype=np.int64)
        categories = column.cat.categories
        used = np.bincount(codes, minlength=len(categories)) > 0
        if not used.all():  # drop unused levels, as lme4 does
            remap = np.cumsum(used) - 1
            codes = remap[codes]
            categories = categories[used]
        return codes, pd.Index(categories)
    codes, uniques = pd.factorize(column, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def group_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Codes (0..l-1) and levels of the grouping factor ``a`` or interaction ``a:b:...``.

    The levels come back as the column's own values (turning 100,000 of them into strings
    is left to :func:`level_labels`, when they are shown).

    Levels of a single factor keep a categorical column's order (unused levels dropped, as
    lme4 does) and sort otherwise; an interaction's levels are the observed combinations,
    ordered by their components, labelled ``"a_level:b_level"``.
    """
    parts = [_factor_codes(data[f]) for f in factors]
    if len(parts) == 1:
        return parts[0]
    combined = np.zeros(len(data), dtype=np.int64)
    for codes, labels in parts:
        combined = combined * len(labels) + codes
    uniq, codes = np.unique(combined, return_inverse=True)
    labels = []
    texts = [level_labels(levels_i) for _, levels_i in parts]
    for value in uniq:
        pieces = []
        for labels_i in reversed(texts):
            pieces.append(labels_i[value % len(labels_i)])
            value //= len(labels_i)
        labels.append(":".join(reversed(pieces)))
    return codes.astype(np.int64), pd.Index(labels)


def codes_for_levels(data: pd.DataFrame, factors: tuple[str, ...], levels: list[str]) -> np.ndarray:
    """Index of each row's grouping level in ``levels`` (-1 for levels not among them)."""
    if len(factors) == 1:
        labels = data[factors[0]].astype(str).to_numpy()
    else:
        labels = data[list(factors)].astype(str).agg(":".join, axis=1).to_numpy()
    return pd.Index(levels).get_indexer(labels)


def level_labels(levels: pd.Index) -> list[str]:
    """Levels as strings (how results and new data refer to them)."""
    return [str(v) for v in levels]


def check_grouping(name: str, n_levels: int, n_rows: int, per_row_ok: bool = False) -> None:
    """lme4's checks: more than one level, fewer levels than observations (the latter
    skipped with ``per_row_ok``, as glmer does)."""
    if n_levels < 2:
        raise DataError(
            f"grouping factor {name!r} has {n_levels} level; a random effect needs at "
            "least 2 levels"
        )
    if n_levels >= n_rows and not per_row_ok:
        raise DataError(
            f"grouping factor {name!r} has as many levels ({n_levels}) as observations "
            f"({n_rows}); its random effects would be confounded with the residual"
        )
