"""The data columns a residual correlation structure or variance function reads.

Turns the column names held by :class:`~mixedmodels.core.residual.ResidualCorrelation`
and :class:`~mixedmodels.core.variance_functions.VarianceFunction` into arrays aligned
with the design's rows: the correlation groups and times (a
:class:`~mixedmodels.core.residual.GroupLayout`) and the variance covariates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixedmodels.core.residual import GroupLayout, ResidualCorrelation, make_layout
from mixedmodels.core.variance_functions import FITTED, VarianceFunction
from mixedmodels.design.grouping import group_codes
from mixedmodels.design.model import ModelDesign
from mixedmodels.errors import ArgumentError, ColumnNotFoundError, DataError


def group_factors(group: str | tuple | list | None) -> tuple[str, ...] | None:
    """``"a"``, ``"a:b"``, ``"a/b"`` (the innermost, ``a:b``) or a list of columns as the
    columns whose combination defines a group."""
    if group is None:
        return None
    if isinstance(group, str):
        parts = [p.strip() for p in group.replace("/", ":").split(":")]
    elif isinstance(group, tuple | list) and all(isinstance(g, str) for g in group):
        parts = list(group)
    else:
        raise ArgumentError(f"group must be a column name or a list of them, not {group!r}")
    if not parts or any(not p for p in parts):
        raise ArgumentError(f"group {group!r} names no column")
    return tuple(parts)


def extra_columns(
    correlation: ResidualCorrelation | None, variance: VarianceFunction | None
) -> list[str]:
    """Columns read by the structures that the formula may not mention."""
    names: list[str] = []
    if correlation is not None:
        names.extend(group_factors(correlation.group) or ())
        if correlation.time is not None:
            names.append(correlation.time)
    if variance is not None:
        names.extend(c for c in variance.columns() if c != FITTED)
    return list(dict.fromkeys(names))


def check_columns(data: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        if name not in data.columns:
            raise ColumnNotFoundError(
                f"column {name!r} (read by the correlation structure or variance function) "
                "is not in the data"
            )


def _numeric(data: pd.DataFrame, name: str, what: str) -> np.ndarray:
    column = data[name]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(f"{what}: column {name!r} must be numeric, not {column.dtype}")
    values = column.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{what}: column {name!r} has non-finite values")
    return values


def residual_layout(
    design: ModelDesign, correlation: ResidualCorrelation | None
) -> tuple[GroupLayout, str]:
    """Correlation groups and times for the design's rows, and the group's label.

    Without a structure (a variance function alone) or without ``group``, the groups are
    the levels of the random-effect term with the most levels (nlme's innermost
    grouping).  With one term, rows are ordered by its levels first.
    """
    data = design.data
    terms = design.terms
    if not terms:
        raise ArgumentError("correlation= and variance functions need a random-effect term")
    outer = terms[0].codes if len(terms) == 1 else None
    factors = group_factors(correlation.group) if correlation is not None else None
    if factors is None:
        inner = max(terms, key=lambda t: t.n_levels)
        codes, label = inner.codes, inner.group_name
    else:
        codes, _ = group_codes(data, factors)
        label = ":".join(factors)
    time = None
    if correlation is not None and correlation.time is not None:
        time = _numeric(data, correlation.time, correlation.label)
    layout = make_layout(np.asarray(codes), time, outer)
    if correlation is not None:
        correlation.check_layout(layout, correlation.time)
    return layout, label


def variance_values(
    design: ModelDesign, variance: VarianceFunction | None, layout: GroupLayout
) -> dict[str, np.ndarray]:
    """The variance function's covariates (design row order), the function bound to them."""
    if variance is None:
        return {}
    data = design.data
    values: dict[str, np.ndarray] = {}
    for name in variance.columns():
        if name == FITTED:
            continue
        column = data[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        values[name] = _numeric(data, name, variance.label) if numeric else column.to_numpy()
    variance.bind(values, layout.order)
    return {k: v for k, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.number)}
