"""Model matrices through formulaic, with a stored spec so new data is encoded alike."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from mixedmodels.design.naming import r_column_name
from mixedmodels.errors import DataError, FormulaError

_SIMPLE = re.compile(r"^\s*(?:(0|1)\s*\+\s*)?([A-Za-z_][A-Za-z0-9_.]*)\s*$")


def _wrap_formulaic_error(exc: Exception, text: str) -> FormulaError:
    return FormulaError(f"cannot build model matrix for {text!r}: {exc}", text)


@dataclass
class MatrixBuilder:
    """Builds the model matrix of one right-hand side, now and later for new data.

    ``"1"``, ``"x"``, ``"0 + x"`` and ``"1 + x"`` with numeric ``x`` skip formulaic (it costs
    milliseconds per call); everything else goes through it and keeps its ModelSpec.
    """

    rhs: str
    column_names: list[str] = field(default_factory=list)
    term_columns: dict[str, list[int]] = field(default_factory=dict)
    _spec: object | None = None
    _simple: tuple[bool, str | None] | None = None

    def build(self, data: pd.DataFrame) -> np.ndarray:
        """The (n, p) matrix for ``data``; the first call fixes the encoding."""
        if self._spec is None and self._simple is None:
            return self._first_build(data)
        if self._simple is not None:
            intercept, name = self._simple
            return self._simple_matrix(data, intercept, name)
        try:
            mat = self._spec.get_model_matrix(data)  # type: ignore[union-attr]
        except Exception as exc:  # formulaic raises many types
            raise _wrap_formulaic_error(exc, self.rhs) from exc
        return np.asarray(mat, dtype=float)

    @staticmethod
    def _simple_matrix(data: pd.DataFrame, intercept: bool, name: str | None) -> np.ndarray:
        out = np.empty((len(data), int(intercept) + int(name is not None)), order="F")
        if intercept:
            out[:, 0] = 1.0
        if name is not None:
            out[:, -1] = data[name].to_numpy(dtype=float)
        return out

    def _first_build(self, data: pd.DataFrame) -> np.ndarray:
        text = self.rhs.strip()
        if text in ("1", "+1"):
            self._simple = (True, None)
            self.column_names = ["(Intercept)"]
            self.term_columns = {"(Intercept)": [0]}
            return self._simple_matrix(data, True, None)
        match = _SIMPLE.match(text)
        if (
            match
            and match.group(2) in data.columns
            and pd.api.types.is_numeric_dtype(data[match.group(2)])
            and not pd.api.types.is_bool_dtype(data[match.group(2)])
        ):
            intercept = match.group(1) != "0"
            self._simple = (intercept, match.group(2))
            self.column_names = (["(Intercept)"] if intercept else []) + [match.group(2)]
            self.term_columns = {name: [i] for i, name in enumerate(self.column_names)}
            return self._simple_matrix(data, intercept, match.group(2))
        try:
            mat = formulaic.model_matrix(text, data, na_action="ignore")
        except Exception as exc:
            raise _wrap_formulaic_error(exc, text) from exc
        self._spec = mat.model_spec
        self.column_names = [r_column_name(c) for c in mat.columns]
        self.term_columns = {
            ("(Intercept)" if str(t) == "1" else r_column_name(str(t))): list(idx)
            for t, idx in mat.model_spec.term_indices.items()
        }
        return np.asarray(mat, dtype=float)


def response_vector(data: pd.DataFrame, response: str) -> np.ndarray:
    """The response as float, with a clear error for non-numeric columns."""
    name = response.strip()
    if name in data.columns:
        col = data[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"response {name!r} must be numeric, but its dtype is {col.dtype}")
        return col.to_numpy(dtype=float)
    try:
        mat = formulaic.model_matrix(f"{name} ~ 1", data, na_action="ignore").lhs
    except Exception as exc:
        raise _wrap_formulaic_error(exc, name) from exc
    if mat.shape[1] != 1:
        raise DataError(f"response {name!r} must be a single numeric column")
    return np.asarray(mat, dtype=float)[:, 0]
