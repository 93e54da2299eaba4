"""Assemble the whole numeric design of a mixed model from formula text and data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from mixedmodels.core.terms import RandomBlock
from mixedmodels.design.grouping import check_grouping, group_codes, level_labels
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.design.rank import independent_columns
from mixedmodels.design.response import glm_response
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.errors import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
    RankDeficiencyWarning,
)
from mixedmodels.formula import ParsedFormula, RandomTermSpec, parse_formula


@dataclass
class RandomTerm:
    """One random-effect term with its names and numbers.

    Attributes
    ----------
    spec : RandomTermSpec
    column_names : list of str
        Names of the term's coefficients, e.g. ``["(Intercept)", "Days"]``.
    level_index : pandas Index
        The grouping factor's levels (labels as strings: :attr:`levels`).
    codes : ndarray of int
    z : ndarray (n, p)
    builder : MatrixBuilder
        Re-encodes new data the way ``z`` was built.
    """

    spec: RandomTermSpec
    column_names: list[str]
    level_index: pd.Index
    codes: np.ndarray
    z: np.ndarray
    builder: MatrixBuilder

    @property
    def group_name(self) -> str:
        return self.spec.group_name

    @property
    def block(self) -> RandomBlock:
        return RandomBlock(self.codes, self.n_levels, self.z)

    @property
    def n_levels(self) -> int:
        return len(self.level_index)

    @cached_property
    def levels(self) -> list[str]:
        """Level labels as strings."""
        return level_labels(self.level_index)


@dataclass
class ModelDesign:
    """Numeric model ready for the engine, plus what is needed to describe and predict."""

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    fixed_names: list[str]
    dropped_fixed: list[str]
    fixed_builder: MatrixBuilder
    fixed_keep: np.ndarray
    terms: list[RandomTerm]
    weights: np.ndarray | None
    offset: np.ndarray | None
    n_dropped: int
    row_index: pd.Index
    data: pd.DataFrame | None = None  # the rows used (a reference, not a copy, when none dropped)
    trials: np.ndarray | None = None  # binomial cbind(successes, failures): their totals

    @property
    def n(self) -> int:
        return self.y.shape[0]

    def with_response(self, y: np.ndarray) -> ModelDesign:
        """The same design with another response (refits, bootstrap)."""
        return replace(self, y=np.asarray(y, dtype=float))

    def fixed_matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for new data, with the same encoding and dropped columns."""
        return self.fixed_builder.build(data)[:, self.fixed_keep]


def _required_variables(parsed: ParsedFormula) -> list[str]:
    """Every data column the formula reads, in order of appearance."""
    names: list[str] = []

    def add(found: list[str]) -> None:
        names.extend(v for v in found if v not in names)

    add(variables_of(parsed.response))
    add(variables_of(parsed.fixed))
    for expr in parsed.offsets:
        add(variables_of(expr))
    for term in parsed.random:
        add(variables_of(term.expr))
        add(list(term.group_factors))
    return names


_CONTRASTS = ("treatment", "sum", "helmert", "poly")


def _checked_contrasts(contrasts: dict[str, str] | None, data: pd.DataFrame) -> dict[str, str]:
    """``{"f": "contr.sum"}`` (R's ``contrasts = list(f = "contr.sum")``) as
    ``{"f": "sum"}``, with clear errors for unknown columns or codings."""
    out: dict[str, str] = {}
    for column, kind in (contrasts or {}).items():
        if column not in data.columns:
            raise ColumnNotFoundError(f"contrasts name column {column!r}, which is not in the data")
        key = str(kind).removeprefix("contr.")
        if key not in _CONTRASTS:
            raise ArgumentError(
                f"contrasts for {column!r} must be one of contr.treatment, contr.sum, "
                f"contr.helmert, contr.poly; got {kind!r}"
            )
        out[column] = key
    return out


def formula_offset(parsed: ParsedFormula, data: pd.DataFrame) -> np.ndarray | None:
    """The sum of the formula's ``offset(...)`` terms for ``data`` (None without any)."""
    if not parsed.offsets:
        return None
    total = np.zeros(len(data))
    for expr in parsed.offsets:
        total += response_vector(data, expr, what="offset")
    return total


def _present(column: pd.Series) -> np.ndarray:
    """Non-missing mask of a column (numpy fast paths for floats and categoricals)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy() >= 0
    if column.dtype.kind in "iub":
        return np.ones(len(column), dtype=bool)
    if column.dtype.kind == "f":
        return ~np.isnan(column.to_numpy())
    return column.notna().to_numpy()


def _vector_argument(value, data: pd.DataFrame, what: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise ColumnNotFoundError(f"{what} column {value!r} is not in the data")
        return data[value].to_numpy(dtype=float)
    arr = np.asarray(value, dtype=float)
    if arr.shape != (len(data),):
        raise DataError(f"{what} must have one value per row ({len(data)}), got shape {arr.shape}")
    return arr


def _lme4_term_order(terms: list[RandomTerm]) -> list[RandomTerm]:
    """lme4 sorts terms by number of levels, decreasing, only when they are not already."""
    nl = [t.n_levels for t in terms]
    if any(b > a for a, b in zip(nl, nl[1:], strict=False)):
        order = sorted(range(len(nl)), key=lambda i: nl[i])  # stable ascending
        return [terms[i] for i in reversed(order)]
    return terms


def build_design(
    formula: str,
    data: pd.DataFrame,
    *,
    weights=None,
    offset=None,
    require_random: bool = True,
    glm_family: str | None = None,
    contrasts: dict[str, str] | None = None,
) -> ModelDesign:
    """Parse ``formula`` against ``data`` and build y, X and the random-effect terms.

    Rows with a missing value in any used column (or in weights/offset) are dropped and
    counted; ``data`` itself is never modified.  With ``glm_family`` ("binomial",
    "poisson") the response is read as that family reads it (``cbind(s, f)``, factors).
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("data has no rows")
    parsed = parse_formula(formula)
    if require_random and not parsed.random:
        raise FormulaError(
            "formula has no random-effect term such as (1 | g); use mm.lm for a linear model",
            formula,
        )
    needed = _required_variables(parsed)
    for name in needed:
        if name not in data.columns:
            pos = formula.find(name)
            columns = ", ".join(map(str, data.columns))
            raise ColumnNotFoundError(
                f"column {name!r} is not in the data (columns: {columns})",
                formula,
                pos if pos >= 0 else None,
            )
    w = _vector_argument(weights, data, "weights")
    off = _vector_argument(offset, data, "offset")
    complete = np.ones(len(data), dtype=bool)
    for name in needed:
        complete &= _present(data[name])
    for vec in (w, off):
        if vec is not None:
            complete &= ~np.isnan(vec)
    n_dropped = int((~complete).sum())
    used = data  # builders read only the needed columns; no copy unless rows go
    if n_dropped:
        used = data.loc[complete, needed]
        w = None if w is None else w[complete]
        off = None if off is None else off[complete]
    if len(used) == 0:
        raise DataError(f"no complete rows: all {len(data)} rows have a missing value")
    if w is not None and np.any(w <= 0):
        raise DataError("weights must be positive")

    trials = None
    if glm_family is None:
        y = response_vector(used, parsed.response)
    else:
        y, trials = glm_response(used, parsed.response, glm_family)
    in_formula = formula_offset(parsed, used)
    if in_formula is not None:
        off = in_formula if off is None else off + in_formula
    fixed_builder = MatrixBuilder(parsed.fixed, contrasts=_checked_contrasts(contrasts, data))
    X_full = fixed_builder.build(used)
    keep = independent_columns(X_full) if X_full.shape[1] else np.arange(0)
    names = fixed_builder.column_names
    dropped = [names[i] for i in range(len(names)) if i not in set(keep.tolist())]
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=3,
        )
    X = np.asfortranarray(X_full[:, keep])  # columns contiguous: the gram reads them one by one

    terms: list[RandomTerm] = []
    for spec in parsed.random:
        codes, levels = group_codes(used, spec.group_factors)
        # a GLMM's response carries its own variance, so observation-level random effects
        # are identifiable there (lme4's glmerControl ignores these checks)
        check_grouping(spec.group_name, len(levels), len(used), per_row_ok=glm_family is not None)
        builder = MatrixBuilder(spec.expr)
        z = builder.build(used)
        if z.shape[1] == 0:
            raise FormulaError(f"random-effect term {spec} has no columns", formula)
        too_many = len(levels) * z.shape[1] >= len(used) and z.shape[1] > 1
        if too_many and glm_family is None:
            raise DataError(
                f"number of observations ({len(used)}) <= number of random effects "
                f"({len(levels) * z.shape[1]}) for term {spec}; its variances are "
                "unidentifiable"
            )
        terms.append(RandomTerm(spec, builder.column_names, levels, codes, z, builder))
    terms = _lme4_term_order(terms)
    return ModelDesign(
        formula=parsed,
        y=y,
        X=X,
        fixed_names=[names[i] for i in keep],
        dropped_fixed=dropped,
        fixed_builder=fixed_builder,
        fixed_keep=keep,
        terms=terms,
        weights=w,
        offset=off,
        n_dropped=n_dropped,
        row_index=used.index,
        data=used,
        trials=trials,
    )
