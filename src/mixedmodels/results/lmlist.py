"""Separate least-squares fits per group (lme4's ``lmList``), to set beside the shrunken
mixed-model estimates."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mixedmodels.design.grouping import group_codes, level_labels
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.design.validate import (
    check_finite_columns,
    check_frame,
    missing_mask,
    nan_cells,
    plain_columns,
)
from mixedmodels.errors import (
    ColumnNotFoundError,
    DataError,
    FormulaError,
    RowsDroppedWarning,
)
from mixedmodels.formula.parser import _find_bar


def lmlist(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """Coefficients of ``y ~ x`` fitted separately within each level of ``g``.

    Rows with a missing value in a column the formula reads are dropped (and counted in a
    :class:`~mixedmodels.errors.RowsDroppedWarning`), as lme4's ``lmList`` does with
    ``na.omit``; other columns do not matter.

    Parameters
    ----------
    formula : str
        ``"y ~ x | g"`` as in lme4's lmList.
    data : DataFrame
        Never modified.

    Returns
    -------
    DataFrame indexed by the levels of ``g`` with one column per coefficient; NaN where a
    group has too few rows to estimate a coefficient.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string 'y ~ x | g', got {type(formula).__name__}")
    data = check_frame(data)
    found = _find_bar(formula)
    if found is None:
        raise FormulaError("lmlist needs a formula of the form 'y ~ x | g'", formula)
    bar, width = found
    model, group = formula[:bar], formula[bar + width :].strip()
    if "~" not in model:
        raise FormulaError("lmlist needs a '~' before the '|'", formula)
    lhs, rhs = model.split("~", 1)
    factors = tuple(part.strip() for part in group.split(":"))
    used: list[str] = []
    for name in [*variables_of(lhs), *variables_of(rhs), *factors]:
        if name not in used:
            used.append(name)
    for name in used:
        if name not in data.columns:
            pos = formula.find(name)
            raise ColumnNotFoundError(
                f"column {name!r} is not in the data", formula, pos if pos >= 0 else None
            )
    complete = np.ones(len(data), dtype=bool)
    for name in used:
        complete &= ~missing_mask(data[name])
    if not complete.any():
        raise DataError(f"no complete rows: all {len(data)} rows have a missing value")
    frame = plain_columns(data.loc[complete, used], used)
    codes, levels = group_codes(frame, factors)
    builder = MatrixBuilder(rhs.strip())
    X = builder.build(frame)
    y = response_vector(frame, lhs.strip())
    check_finite_columns(y, [lhs.strip()], "the response", frame.index)
    check_finite_columns(X, builder.column_names, "column", frame.index)
    counts: dict[str, int] = {}
    usable = ~(nan_cells(y, [lhs.strip()], counts) | nan_cells(X, builder.column_names, counts))
    n_dropped = int((~complete).sum() + (~usable).sum())
    if n_dropped:
        warnings.warn(
            f"{n_dropped} row(s) with missing values dropped", RowsDroppedWarning, stacklevel=2
        )
    out = np.full((len(levels), X.shape[1]), np.nan)
    for i in range(len(levels)):
        rows = (codes == i) & usable
        if rows.sum() >= X.shape[1]:
            coef, _, rank, _ = np.linalg.lstsq(X[rows], y[rows], rcond=None)
            if rank == X.shape[1]:
                out[i] = coef
    return pd.DataFrame(
        out, index=pd.Index(level_labels(levels), name=group), columns=builder.column_names
    )
