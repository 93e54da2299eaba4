"""Model matrices as R's ``model.matrix`` builds them, from our own syntax tree.

A right-hand side is parsed (:mod:`mixedmodels.formula.expr`), expanded into R's terms
(:mod:`mixedmodels.formula.terms`), its variables evaluated by the interpreter
(:mod:`mixedmodels.design.evaluate`), and the columns assembled:

* a numeric variable is one column, a matrix variable (``poly(x, 2)``) several;
* a factor (categorical, text, logical) is coded by contrasts or by indicators of all its
  levels, decided per term as R decides (``TermCode``, *Statistical Models in S* p. 38):
  factor ``f`` in term ``T`` gets contrasts when ``T`` without ``f`` is empty or contained
  in an earlier term, indicators otherwise; without an intercept the first factor of the
  first term that has one gets indicators;
* the columns of a term are the products of its variables' columns, the first variable
  varying fastest, named ``a1:b2`` as R names them.

The first build fixes the encoding (factor levels, what transforms learned); later builds
encode new data alike, and a level the fit never saw is a :class:`NewLevelError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mixedmodels.design.contrasts import CODINGS, coding_matrix
from mixedmodels.design.evaluate import (
    ColumnTable,
    Factor,
    Interpreter,
    Logical,
    Matrix,
    Numeric,
    Value,
    as_float,
    level_label,
)
from mixedmodels.errors import ArgumentError, DataError, NewLevelError
from mixedmodels.formula.expr import Name, parse_expression
from mixedmodels.formula.functions import check_calls
from mixedmodels.formula.terms import TermStructure, terms_of_text


@dataclass
class _VariableCoding:
    """What the first build learned about one variable."""

    kind: str  # "numeric", "matrix" or "factor"
    levels: list[str] = field(default_factory=list)
    ordered: bool = False
    coding: str | None = None  # from C() or the contrasts argument
    suffixes: list[str] = field(default_factory=list)


def _logical_factor(values: np.ndarray) -> Factor:
    """R's factor of a logical: levels FALSE, TRUE (those present)."""
    present = ~np.isnan(values)
    labels = np.where(values == 1.0, "TRUE", "FALSE")
    levels = sorted(set(labels[present].tolist()))
    codes = np.full(values.shape, -1, dtype=np.int64)
    codes[present] = pd.Index(levels).get_indexer(labels[present])
    return Factor(codes, levels)


def _as_factor_labels(value: Value) -> tuple[np.ndarray, list[str]]:
    """Codes and level labels of a value used where the fit had a factor."""
    if isinstance(value, Factor):
        return value.codes, value.levels
    if isinstance(value, Logical):
        factor = _logical_factor(np.atleast_1d(value.values))
        return factor.codes, factor.levels
    numbers = np.atleast_1d(as_float(value, "a factor"))
    present = ~np.isnan(numbers)
    unique = np.unique(numbers[present])
    codes = np.full(len(numbers), -1, dtype=np.int64)
    codes[present] = np.searchsorted(unique, numbers[present])
    return codes, [level_label(float(u)) for u in unique]


def _empty_like(value: Value) -> Value:
    if isinstance(value, Factor):
        return Factor(np.zeros(0, dtype=np.int64), value.levels, value.ordered, value.coding)
    if isinstance(value, Matrix):
        return Matrix(np.zeros((0, value.values.shape[1])), value.suffixes)
    return Numeric(np.zeros(0))


def _rows(values: np.ndarray, n: int) -> np.ndarray:
    """``values`` with one entry per row: itself when it has them (``np.broadcast_to``
    costs ~4 us even then), else broadcast (a constant such as ``I(2)``)."""
    return values if values.shape == (n,) else np.broadcast_to(values, (n,))


def dense_matrix_budget() -> float:
    """Bytes a dense model matrix may take: half of the machine's physical memory
    (``os.sysconf``; 8 GiB where the system does not say)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        total = 16 * 2**30
    return 0.5 * float(total)


@dataclass
class MatrixBuilder:
    """Builds the model matrix of one right-hand side, now and later for new data.

    Parameters
    ----------
    rhs : str
        The right-hand side in R's formula language (``"Days * f + I(Days^2)"``).
    contrasts : dict, optional
        Coding of columns used bare: ``{"f": "sum"}`` (treatment, sum, helmert, poly).
    """

    rhs: str
    contrasts: dict[str, str] = field(default_factory=dict)
    column_names: list[str] = field(default_factory=list)
    term_columns: dict[str, list[int]] = field(default_factory=dict)
    _structure: TermStructure | None = None
    _codings: list[_VariableCoding] = field(default_factory=list)
    _term_codes: list[list[str | None]] = field(default_factory=list)
    _state: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        normalized = {}
        for column, kind in (self.contrasts or {}).items():
            key = str(kind).removeprefix("contr.")
            if key not in CODINGS:
                raise ArgumentError(
                    f"contrasts for {column!r} must be one of "
                    + ", ".join(f"contr.{c}" for c in CODINGS)
                    + f"; got {kind!r}"
                )
            normalized[column] = key
        self.contrasts = normalized

    # --------------------------------------------------------------- public
    def build(
        self, data: pd.DataFrame | ColumnTable, max_columns: int | None = None
    ) -> np.ndarray:
        """The ``(n, p)`` matrix for ``data`` (a DataFrame, or the :class:`ColumnTable` of
        one); the first call fixes the encoding.  With ``max_columns``, more columns are a
        DataError raised before any is built."""
        values = self._values(data)
        if not self._codings:
            self._learn(values)
        self._check_column_count(max_columns, len(data))
        columns, names, terms = self._assemble(values, len(data), sum_coding=False)
        if not self.column_names:
            self.column_names, self.term_columns = names, terms
        return columns

    def sum_coded(self, data: pd.DataFrame) -> tuple[np.ndarray, dict[str, list[int]]]:
        """The model matrix with every unordered factor in sum-to-zero contrasts (R's
        ``contr.sum``; ordered factors keep ``contr.poly``), and each term's columns.

        Type III hypotheses are the terms' coefficients under this coding.
        """
        values = self._values(data)
        if not self._codings:
            self._learn(values)
        columns, _, terms = self._assemble(values, len(data), sum_coding=True)
        return columns, terms

    @property
    def structure(self) -> TermStructure:
        """The expanded terms of the right-hand side."""
        if self._structure is None:
            self._structure = terms_of_text(self.rhs)
        return self._structure

    def prime(self, values: list[Value]) -> None:
        """Fix the encoding from values that stand for all rows (factor levels that occur
        somewhere), when the rows come in chunks; :meth:`build` then encodes each chunk."""
        if self._state:
            raise DataError(
                f"{self.rhs!r}: poly(), scale() and center() learn from all rows at once; "
                "with data in chunks compute the column beforehand"
            )
        self._learn(values)
        self.column_names, self.term_columns = [], {}
        empty = [_empty_like(v) for v in values]
        _, self.column_names, self.term_columns = self._assemble(empty, 0, sum_coding=False)

    # -------------------------------------------------------------- private
    def _values(self, data: pd.DataFrame | ColumnTable) -> list[Value]:
        interpreter = Interpreter(data, self._state, self.rhs, learning=not self._codings)
        return [interpreter.evaluate(v) for v in self.structure.variables]

    def _learn(self, values: list[Value]) -> None:
        structure = self.structure
        codings: list[_VariableCoding] = []
        for node, key, value in zip(structure.variables, structure.keys, values, strict=True):
            if isinstance(value, Logical):
                value = _logical_factor(np.atleast_1d(value.values))
            if isinstance(value, Factor):
                explicit = value.coding
                if explicit is None and isinstance(node, Name):
                    explicit = self.contrasts.get(node.id)
                used = np.unique(np.atleast_1d(value.codes)[np.atleast_1d(value.codes) >= 0])
                levels = [value.levels[i] for i in used]  # unused levels dropped, as lme4
                codings.append(_VariableCoding("factor", levels, value.ordered, explicit))
            elif isinstance(value, Matrix):
                codings.append(_VariableCoding("matrix", suffixes=list(value.suffixes)))
            else:
                codings.append(_VariableCoding("numeric"))
            if codings[-1].kind == "factor" and not codings[-1].levels:
                raise DataError(f"factor {key!r} has no levels among the rows used")
        self._codings = codings
        self._term_codes = self._r_term_codes()

    def _r_term_codes(self) -> list[list[str | None]]:
        """Per term and variable: "contrasts", "indicator", or None (not a factor)."""
        structure = self.structure
        codes: list[list[str | None]] = []
        seen: list[frozenset[int]] = []
        for term in structure.terms:
            row: list[str | None] = []
            for v in term:
                if self._codings[v].kind != "factor":
                    row.append(None)
                    continue
                rest = frozenset(term) - {v}
                by_contrasts = not rest or any(rest <= t for t in seen)
                row.append("contrasts" if by_contrasts else "indicator")
            codes.append(row)
            seen.append(frozenset(term))
        if not structure.intercept:
            for row in codes:
                first = next((i for i, c in enumerate(row) if c is not None), None)
                if first is not None:
                    row[first] = "indicator"
                    break
        return codes

    def _variable_block(
        self, index: int, value: Value, n: int, code: str | None, sum_coding: bool
    ) -> tuple[np.ndarray, list[str]]:
        coding = self._codings[index]
        key = self.structure.keys[index]
        if coding.kind == "numeric":
            if isinstance(value, Factor | Matrix):
                raise DataError(f"variable {key!r} was numeric in the fit but is not now")
            return _rows(value.values, n).astype(float, copy=False)[:, None], [key]
        if coding.kind == "matrix":
            if not isinstance(value, Matrix) or value.values.shape[1] != len(coding.suffixes):
                raise DataError(f"variable {key!r} does not have the columns it had in the fit")
            return value.values, [key + s for s in coding.suffixes]
        codes = self._fitted_codes(index, value, n)
        if code == "indicator":
            kind = "indicator"
        elif coding.ordered:
            kind = "poly"
        elif sum_coding:
            kind = "sum"
        else:
            kind = coding.coding or "treatment"
        if kind != "indicator" and len(coding.levels) < 2:
            raise DataError(
                f"factor {key!r} has a single level ({coding.levels[0]!r}) among the rows "
                "used; contrasts need at least two levels"
            )
        matrix, suffixes = coding_matrix(kind, coding.levels)
        padded = np.vstack([matrix, np.full((1, matrix.shape[1]), np.nan)])
        return padded[codes], [key + s for s in suffixes]

    def _fitted_codes(self, index: int, value: Value, n: int) -> np.ndarray:
        """Codes into the fitted levels (-1 for missing); new levels are an error."""
        coding = self._codings[index]
        key = self.structure.keys[index]
        codes, levels = _as_factor_labels(value)
        codes = _rows(codes, n)
        if levels == coding.levels:
            return codes
        mapping = pd.Index(coding.levels).get_indexer(levels)
        used = np.unique(codes[codes >= 0])
        new = [levels[i] for i in used if mapping[i] < 0]
        if new:
            shown = ", ".join(repr(x) for x in new[:5]) + (" ..." if len(new) > 5 else "")
            raise NewLevelError(
                f"factor {key!r} has new level(s) {shown} that the fit did not see "
                f"(its levels: {', '.join(coding.levels[:10])}"
                f"{' ...' if len(coding.levels) > 10 else ''})"
            )
        return np.where(codes >= 0, mapping[np.maximum(codes, 0)], -1)

    def _check_column_count(self, max_columns: int | None, n: int) -> None:
        """Count the columns from the codings (numbers: 1, matrices: theirs, factors:
        levels - 1, or levels where coded by indicators) and refuse more than
        ``max_columns`` (None: no limit), or a matrix larger than half of this machine's
        memory (:func:`dense_matrix_budget`: it would be killed by the system, not fail),
        naming the widest term."""
        structure = self.structure
        total = int(structure.intercept)
        widest_term, widest_count = None, 0
        for term, codes in zip(structure.terms, self._term_codes, strict=True):
            count = 1
            for v, code in zip(term, codes, strict=True):
                coding = self._codings[v]
                if coding.kind == "numeric":
                    continue
                if coding.kind == "matrix":
                    count *= len(coding.suffixes)
                else:
                    count *= len(coding.levels) - (code != "indicator")
            total += count
            if count > widest_count:
                widest_term, widest_count = term, count
        if max_columns is not None and total > max_columns:
            widest = structure.label(widest_term) if widest_term is not None else ""
            raise DataError(
                f"more fixed-effect columns than observations: the fixed part has {total} "
                f"column(s) for {n} observation(s) (term {widest!r}: {widest_count}); a mixed "
                "model needs more observations than fixed effects"
            )
        size = 8.0 * n * total
        if size > dense_matrix_budget():
            widest = structure.label(widest_term) if widest_term is not None else ""
            raise DataError(
                f"the fixed-effect matrix would take {size / 2**30:.3g} GiB ({n} rows x "
                f"{total} columns; term {widest!r}: {widest_count} columns), more than half "
                "of this machine's memory; a factor with this many levels may belong in a "
                "random-effect term"
            )

    def _assemble(
        self, values: list[Value], n: int, *, sum_coding: bool
    ) -> tuple[np.ndarray, list[str], dict[str, list[int]]]:
        """Columns, names and term columns (inf times 0 gives NaN silently: the caller's
        checks report the infinite column)."""
        with np.errstate(all="ignore"):
            return self._assemble_columns(values, n, sum_coding=sum_coding)

    def _assemble_columns(
        self, values: list[Value], n: int, *, sum_coding: bool
    ) -> tuple[np.ndarray, list[str], dict[str, list[int]]]:
        structure = self.structure
        blocks: list[np.ndarray] = []
        names: list[str] = []
        terms: dict[str, list[int]] = {}
        if structure.intercept:
            names.append("(Intercept)")
            terms["(Intercept)"] = [0]
        for term, codes in zip(structure.terms, self._term_codes, strict=True):
            columns: np.ndarray | None = None
            labels: list[str] = []
            for v, code in zip(term, codes, strict=True):
                block, block_names = self._variable_block(v, values[v], n, code, sum_coding)
                if columns is None:
                    columns, labels = block, block_names
                    continue
                # earlier variables vary fastest, as in R
                width = columns.shape[1] * block.shape[1]
                columns = (columns[:, None, :] * block[:, :, None]).reshape(n, width)
                labels = [f"{a}:{b}" for b in block_names for a in labels]
            start = len(names)
            blocks.append(columns)
            names.extend(labels)
            terms[structure.label(term)] = list(range(start, len(names)))
        # written column by column into the Fortran-ordered result (no stacked copy)
        matrix = np.empty((n, len(names)), order="F")
        start = 0
        if structure.intercept:
            matrix[:, 0] = 1.0
            start = 1
        for block in blocks:
            matrix[:, start : start + block.shape[1]] = block
            start += block.shape[1]
        return matrix, names, terms


def response_vector(
    data: pd.DataFrame | ColumnTable, response: str, what: str = "response"
) -> np.ndarray:
    """The response (or another one-column expression) as float, with a clear error for
    anything that is not numbers."""
    node = parse_expression(response)
    check_calls(node, response)
    value = Interpreter(data, {}, response).evaluate(node)
    if isinstance(value, Factor | Matrix):
        name = response.strip()
        if name in data.columns:
            raise DataError(
                f"{what} {name!r} must be numeric, but its dtype is {data[name].dtype}"
            )
        kind = "a factor" if isinstance(value, Factor) else "several columns"
        raise DataError(f"{what} {name!r} must be one numeric column, but it is {kind}")
    return _rows(np.asarray(value.values, dtype=float), len(data)).copy()


__all__ = ["MatrixBuilder", "Numeric", "response_vector"]
