"""New data for prediction, checked as carefully as the data of the fit.

The columns a prediction reads must be there; a column that was numeric when the model
was fitted must hold numbers; a factor's values must be among the levels the fit saw (a
fixed effect cannot be predicted for a level it never estimated: lme4's "factor has new
levels" error), and are matched by their labels, so an integer column at fit time and a
float one in new data (or text "308") mean the same levels when the values are equal.
Rows with a missing value in a column the prediction reads are predicted as NaN, as
lme4's ``predict`` does with ``na.action = na.pass``.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from mixedmodels.design.grouping import value_labels
from mixedmodels.design.model import ModelDesign, model_variables
from mixedmodels.design.validate import (
    check_frame,
    describe_dtype,
    is_numeric,
    missing_mask,
    numeric_values,
    plain_columns,
)
from mixedmodels.errors import ColumnNotFoundError, DataError, NewLevelError


def prepare_newdata(
    design: ModelDesign, newdata: object, *, include_random: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``newdata`` to predict, in the fit's encoding, and where they are.

    Returns
    -------
    rows : DataFrame
        The complete rows of ``newdata`` (a new frame with the columns the prediction
        reads, converted to what the fit saw).
    complete : ndarray of bool
        Which rows of ``newdata`` these are; the others are predicted as NaN.

    Raises
    ------
    DataError
        ``newdata`` not a DataFrame, duplicated column names, text in a numeric column.
    ColumnNotFoundError
        A column the prediction needs (naming it).
    NewLevelError
        A level of a factor in the fixed part (or a random-effect term's left side) that
        the fit did not see.
    """
    frame = check_frame(newdata, "newdata")
    names = model_variables(design.formula, include_random=include_random)
    if design.offset_column is not None and design.offset_column not in names:
        names = [*names, design.offset_column]  # offset="column": read from the new rows
    modelled = set(model_variables(design.formula, include_random=include_random, grouping=False))
    absent = [name for name in names if name not in frame.columns]
    if absent:
        raise ColumnNotFoundError(
            f"newdata lacks column(s) {', '.join(repr(a) for a in absent)}, which the model "
            f"uses (newdata's columns: {', '.join(map(str, frame.columns))})"
        )
    complete = np.ones(len(frame), dtype=bool)
    for name in names:
        complete &= ~missing_mask(frame[name])
    rows = frame.loc[complete, names]
    converted = {}
    for name in names:
        column = rows[name]
        levels = design.model_levels.get(name)
        prototype = design.prototypes.get(name)
        if levels is not None:
            converted[name] = _as_fitted_factor(name, column, prototype, levels)
        elif name in modelled and prototype is not None and is_numeric(prototype):
            converted[name] = _as_numbers(name, column)
    if converted:
        rows = rows.copy()
        for name, values in converted.items():
            rows[name] = values
    return plain_columns(rows, names), complete


def _as_numbers(name: str, column: pd.Series) -> np.ndarray:
    """A column that was numeric in the fit, as float; text or logicals are an error
    (R's "variable 'x' was fitted with type numeric but type character was supplied")."""
    if is_numeric(column):
        return numeric_values(column)
    if column.dtype == object and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in column
    ):
        return column.to_numpy(dtype=float)
    example = next(
        (v for v in column if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_))),
        None,
    )
    shown = f" (e.g. {example!r})" if example is not None else ""
    raise DataError(
        f"column {name!r} was numeric when the model was fitted, but newdata's is "
        f"{describe_dtype(column)}{shown}"
    )


def _as_fitted_factor(
    name: str, column: pd.Series, prototype: pd.Series | None, levels: dict[str, object]
) -> pd.Series:
    """A factor's new values as the values the fit saw, matched by label."""
    labels = value_labels(column)
    known = pd.Index(list(levels))
    position = known.get_indexer(labels)
    if (position < 0).any():
        new = sorted({str(v) for v in labels[position < 0]})
        fitted = sorted(levels)
        raise NewLevelError(
            f"factor {name!r} has new level(s) in newdata: {', '.join(new[:10])}"
            f"{' ...' if len(new) > 10 else ''} (the model was fitted with "
            f"{', '.join(fitted[:10])}{' ...' if len(fitted) > 10 else ''}); a fixed effect "
            "cannot be predicted for a level it was not estimated for"
        )
    values = np.empty(len(known), dtype=object)
    values[:] = list(levels.values())
    mapped = pd.Series(values[position], index=column.index)
    if prototype is None:
        return mapped
    if isinstance(prototype.dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical(mapped, dtype=prototype.dtype), index=column.index)
    return mapped.astype(prototype.dtype)
