"""Model matrices through formulaic, with a stored spec so new data is encoded alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from mixedmodels.design.naming import r_column_name
from mixedmodels.design.rsyntax import (
    R_CONTEXT,
    R_CONTEXT_SUM_CODED,
    is_raw_poly,
    r_deparse,
    to_python_syntax,
)
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
    contrasts: dict[str, str] = field(default_factory=dict)  # column -> sum/helmert/poly/...
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
            mat = self._spec.get_model_matrix(data, context=R_CONTEXT)  # type: ignore[union-attr]
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
        text, ordered = self._formulaic_text(data, sum_coding=False)
        mat = self._model_matrix(text, data, R_CONTEXT)
        self._spec = mat.model_spec
        numbered = {
            c: (kind, _factor_levels(data[c]))
            for c, kind in self._explicit(self.rhs).items()
            if kind in ("sum", "helmert")
        }
        self.column_names, self.term_columns = _r_names(mat, ordered, (), numbered)
        return np.asarray(mat, dtype=float)

    def _explicit(self, text: str) -> dict[str, str]:
        """The ``contrasts`` given for columns this right-hand side uses bare."""
        return {c: k for c, k in self.contrasts.items() if _bare_name(c).search(text)}

    def sum_coded(self, data: pd.DataFrame) -> tuple[np.ndarray, dict[str, list[int]]]:
        """The model matrix with every unordered factor in sum-to-zero contrasts (R's
        ``contr.sum``; ordered factors keep ``contr.poly``), and each term's columns.

        Type III hypotheses are the terms' coefficients under this coding.
        """
        text, ordered = self._formulaic_text(data, sum_coding=True)
        mat = self._model_matrix(text, data, R_CONTEXT_SUM_CODED)
        unordered = tuple(_unordered_factors(self.rhs, data))
        _, terms = _r_names(mat, ordered, tuple(unordered) + tuple(self.contrasts))
        return np.asarray(mat, dtype=float), terms

    def _formulaic_text(self, data: pd.DataFrame, *, sum_coding: bool) -> tuple[str, list[str]]:
        """The right-hand side in formulaic's syntax, factor codings made explicit."""
        text = self.rhs.strip()
        explicit = {} if sum_coding else self._explicit(text)
        ordered = [c for c in _ordered_factors(text, data) if c not in explicit]
        logical = [c for c in _logical_columns(text, data) if c not in explicit]
        unordered = [c for c in _unordered_factors(text, data) if c not in logical]
        text = to_python_syntax(text, data.columns)
        for name, kind in explicit.items():  # the caller's contrasts (R's contrasts = list())
            text = _wrap_column(text, name, f"contr.{kind}")
        for name in ordered:  # R codes ordered factors with polynomial contrasts
            text = _wrap_column(text, name, "contr.poly")
        for name in logical:  # R codes logicals as factors with levels FALSE, TRUE
            text = _wrap_column(text, name, None)
        if sum_coding:
            for name in unordered:
                text = _wrap_column(text, name, "contr.sum")
        renamed = ordered + [c for c, k in explicit.items() if k in ("poly", "treatment")]
        return text, renamed

    def _model_matrix(self, text: str, data: pd.DataFrame, context: dict):
        try:
            return formulaic.model_matrix(text, data, na_action="ignore", context=context)
        except Exception as exc:
            raise _wrap_formulaic_error(exc, self.rhs) from exc


def _r_names(
    mat,
    ordered: list[str],
    unordered: tuple[str, ...],
    numbered: dict[str, tuple[str, list[str]]] | None = None,
) -> tuple[list[str], dict[str, list[int]]]:
    """R's names of a formulaic matrix's columns and terms (``C(x, contr.poly)`` and
    ``C(x, contr.sum)`` shown as ``x``; columns of ``numbered`` factors, coded by sum or
    Helmert contrasts, numbered ``x1, x2, ...`` as R numbers them)."""
    spelled = _r_spelling(mat.model_spec)
    numbering = [
        _numbering(factor, kind, levels) for factor, (kind, levels) in (numbered or {}).items()
    ]

    def r_name(name: str) -> str:
        for pattern, replace in numbering:
            name = pattern.sub(replace, name)
        name = _poly_name(r_column_name(spelled(name)), ordered)
        name = _LOGICAL_CALL.sub(lambda m: m.group(1).strip("`"), name)
        for factor in unordered:
            name = name.replace(f"C({_quoted(factor)}, contr.sum)", factor)
        return name

    columns = [r_name(c) for c in mat.columns]
    terms = {
        ("(Intercept)" if str(t) == "1" else r_name(str(t))): list(idx)
        for t, idx in mat.model_spec.term_indices.items()
    }
    return columns, terms


def _factor_levels(column: pd.Series) -> list[str]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories]
    return sorted(str(v) for v in column.dropna().unique())


def _numbering(factor: str, kind: str, levels: list[str]):
    """Regex and replacement turning formulaic's ``C(x, contr.sum)[S.level]`` (or
    ``[H.level]``) into R's ``x1``: sum contrasts number the first k - 1 levels from 1,
    Helmert contrasts number levels 2..k from 1."""
    tag = "S" if kind == "sum" else "H"
    pattern = re.compile(re.escape(f"C({_quoted(factor)}, contr.{kind})") + rf"\[{tag}\.([^\]]*)\]")
    offset = 1 if kind == "sum" else 0

    def replace(m: re.Match) -> str:
        return f"{factor}{levels.index(m.group(1)) + offset}"

    return pattern, replace


def _quoted(name: str) -> str:
    return name if name.isidentifier() else f"`{name}`"


def _wrap_column(text: str, name: str, contrasts: str | None) -> str:
    """Every bare use of column ``name`` in ``text`` as ``C(name, contrasts)``, or as
    ``r_logical(name)`` when ``contrasts`` is None."""
    quoted = _quoted(name)
    wrapped = f"r_logical({quoted})" if contrasts is None else f"C({quoted}, {contrasts})"
    if name.isidentifier():
        return _bare_name(name).sub(wrapped, text)
    return text.replace(f"`{name}`", wrapped)


def _r_spelling(spec) -> Callable[[str], str]:
    """A function rewriting formulaic's column and term names with R's deparse of each
    evaluated expression (``I(x ** 2)`` -> ``I(x^2)``; raw ``poly`` columns from 1)."""
    codes = sorted(
        {
            str(f.expr)
            for term in spec.formula
            for f in term.factors
            if str(f.eval_method.value) == "python"
        },
        key=len,
        reverse=True,
    )
    replacements = []
    for code in codes:
        r_code = r_deparse(code)
        if is_raw_poly(code):
            pattern = re.compile(re.escape(code) + r"\[(\d+)\]")
            replacements.append((pattern, lambda m, r=r_code: f"{r}[{int(m.group(1)) + 1}]"))
        if r_code != code:
            replacements.append((re.compile(re.escape(code)), lambda m, r=r_code: r))

    def spelled(name: str) -> str:
        for pattern, repl in replacements:
            name = pattern.sub(repl, name)
        return name

    return spelled


def _bare_name(name: str) -> re.Pattern:
    """A column name standing alone in a formula (not part of another name or a call)."""
    return re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w.(])")


_LOGICAL_CALL = re.compile(r"r_logical\(([^()]*)\)")


def _logical_columns(text: str, data: pd.DataFrame) -> list[str]:
    """Boolean columns used bare in ``text`` (R codes a logical like a factor)."""
    return [
        str(c)
        for c in data.columns
        if pd.api.types.is_bool_dtype(data[c]) and _bare_name(str(c)).search(text)
    ]


def _unordered_factors(text: str, data: pd.DataFrame) -> list[str]:
    """Columns used bare in ``text`` that R treats as unordered factors (categorical,
    string, boolean)."""
    out = []
    for c in data.columns:
        col = data[c]
        ordered = isinstance(col.dtype, pd.CategoricalDtype) and col.cat.ordered
        factor_like = (
            isinstance(col.dtype, pd.CategoricalDtype)
            or col.dtype == object
            or pd.api.types.is_string_dtype(col)
            or pd.api.types.is_bool_dtype(col)
        )
        if factor_like and not ordered and _bare_name(str(c)).search(text):
            out.append(str(c))
    return out


def _ordered_factors(text: str, data: pd.DataFrame) -> list[str]:
    return [
        str(c)
        for c in data.columns
        if isinstance(data[c].dtype, pd.CategoricalDtype)
        and data[c].cat.ordered
        and _bare_name(str(c)).search(text)
    ]


def _poly_name(name: str, ordered: list[str]) -> str:
    """``C(x, contr.poly).L`` -> ``x.L``, ``C(x, contr.poly)^4`` -> ``x^4``,
    ``C(x, contr.treatment)b`` -> ``xb`` (R's names)."""
    for factor in ordered:
        for kind in ("poly", "treatment"):
            name = name.replace(f"C({_quoted(factor)}, contr.{kind})", factor)
    return name


def response_vector(data: pd.DataFrame, response: str, what: str = "response") -> np.ndarray:
    """The response (or another one-column expression) as float, with a clear error for
    non-numeric columns."""
    name = response.strip()
    if name in data.columns:
        col = data[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"{what} {name!r} must be numeric, but its dtype is {col.dtype}")
        return col.to_numpy(dtype=float)
    try:
        # one arithmetic expression: R's ^ is a power throughout
        expr = to_python_syntax(name, data.columns).replace("^", "**")
        mat = formulaic.model_matrix(
            f"I({expr}) ~ 1", data, na_action="ignore", context=R_CONTEXT
        ).lhs
    except Exception as exc:
        raise _wrap_formulaic_error(exc, name) from exc
    if mat.shape[1] != 1:
        raise DataError(f"{what} {name!r} must be a single numeric column")
    return np.asarray(mat, dtype=float)[:, 0]
