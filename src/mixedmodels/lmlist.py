"""Separate least-squares fits per group (lme4's ``lmList``), to set beside the shrunken
mixed-model estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixedmodels.design.grouping import group_codes, level_labels
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.errors import FormulaError
from mixedmodels.formula.parser import _find_bar


def lmlist(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """Coefficients of ``y ~ x`` fitted separately within each level of ``g``.

    Parameters
    ----------
    formula : str
        ``"y ~ x | g"`` as in lme4's lmList.
    data : DataFrame

    Returns
    -------
    DataFrame indexed by the levels of ``g`` with one column per coefficient; NaN where a
    group has too few rows to estimate a coefficient.
    """
    found = _find_bar(formula)
    if found is None:
        raise FormulaError("lmlist needs a formula of the form 'y ~ x | g'", formula)
    bar, width = found
    model, group = formula[:bar], formula[bar + width :].strip()
    if "~" not in model:
        raise FormulaError("lmlist needs a '~' before the '|'", formula)
    lhs, rhs = model.split("~", 1)
    frame = data.dropna(subset=[c for c in data.columns if c in formula])
    codes, levels = group_codes(frame, tuple(group.split(":")))
    builder = MatrixBuilder(rhs.strip())
    X = builder.build(frame)
    y = response_vector(frame, lhs.strip())
    out = np.full((len(levels), X.shape[1]), np.nan)
    for i in range(len(levels)):
        rows = codes == i
        if rows.sum() >= X.shape[1]:
            coef, _, rank, _ = np.linalg.lstsq(X[rows], y[rows], rcond=None)
            if rank == X.shape[1]:
                out[i] = coef
    return pd.DataFrame(
        out, index=pd.Index(level_labels(levels), name=group), columns=builder.column_names
    )
