"""The response of a generalized linear mixed model, as R's glm families read it.

binomial: ``cbind(successes, failures)`` (proportion, with the totals as trials), a 0/1 or
logical column, a factor (its first level is failure, every other level success, as in R), or
a proportion with the trials given as weights.  poisson: non-negative counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixedmodels.design.evaluate import ColumnTable
from mixedmodels.design.matrices import response_vector
from mixedmodels.errors import DataError, FormulaError
from mixedmodels.formula.expr import Call, deparse, parse_expression
from mixedmodels.formula.functions import bind_arguments, check_call


def _cbind_arguments(text: str) -> tuple[str, str] | None:
    """``cbind(a, b)`` -> ``("a", "b")`` (R's deparse of each); None for anything else."""
    node = parse_expression(text)
    if not (isinstance(node, Call) and node.func == "cbind"):
        return None
    check_call(node, text)
    bound = bind_arguments(node)
    return deparse(bound["successes"]), deparse(bound["failures"])


def glm_response(
    data: pd.DataFrame | ColumnTable, text: str, family: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(y, trials)`` for the response expression ``text``.

    ``trials`` is None unless the response is ``cbind(successes, failures)``; ``y`` is then
    the proportion of successes (0 where there are no trials).
    """
    pair = _cbind_arguments(text)
    if pair is not None:
        if family != "binomial":
            raise FormulaError(f"cbind() responses are for the binomial family, not {family}", text)
        successes = response_vector(data, pair[0], what="successes")
        failures = response_vector(data, pair[1], what="failures")
        if np.any(successes < 0) or np.any(failures < 0):
            raise DataError(f"negative counts in the response {text!r}")
        trials = successes + failures
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(trials > 0, successes / np.where(trials > 0, trials, 1), 0.0)
        return y, trials
    name = text.strip()
    if family == "binomial" and name in data.columns:
        column = data[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            # model.frame drops unused levels first: the first *used* level is failure
            codes = column.cat.remove_unused_categories().cat.codes.to_numpy()
            return (codes > 0).astype(float), None
        if pd.api.types.is_bool_dtype(column):
            return column.to_numpy(dtype=float), None
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            levels = sorted(column.dropna().unique())
            return (column != levels[0]).to_numpy(dtype=float), None
    return response_vector(data, text), None
