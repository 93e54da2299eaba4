"""The design of a model whose rows come in chunks: one encoding fixed for every chunk.

Pass 1 (:func:`survey` on every chunk, :func:`merge_surveys` to add them up) finds what
the in-memory design learns from all rows at once: the number of rows and of complete rows,
the levels of every factor that occur in complete rows (fixed-effect factors, grouping
factors and their interactions) in the order the in-memory design gives them.  From it
:class:`ChunkedDesign` fixes the encoding; :meth:`ChunkedDesign.encode` then turns any chunk
into ``y``, ``X``, the random-effect terms with the global level codes, weights and offset,
exactly the rows the in-memory design would have for those rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mixedmodels.design.evaluate import Factor, Interpreter, Logical, Matrix, Numeric, Value
from mixedmodels.design.grouping import check_grouping
from mixedmodels.design.matrices import MatrixBuilder, _logical_factor, response_vector
from mixedmodels.design.model import (
    ModelDesign,
    RandomTerm,
    lme4_term_order,
    model_variables,
    required_variables,
)
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.design.validate import (
    check_hashable_cells,
    check_model_column,
    missing_mask,
    plain_columns,
)
from mixedmodels.errors import ColumnNotFoundError, DataError, FormulaError
from mixedmodels.formula import ParsedFormula, parse_formula
from mixedmodels.formula.expr import calls, deparse, parse_expression
from mixedmodels.reterms.blocks import RandomBlock


def _missing_values(value: Value, n: int) -> np.ndarray:
    """Rows where a variable's value is missing (NaN from a transform, a missing level)."""
    if isinstance(value, Factor):
        return np.broadcast_to(np.asarray(value.codes) < 0, (n,))
    values = np.asarray(value.values, dtype=float)
    if values.ndim == 2:
        return np.isnan(values).any(axis=1)
    return np.broadcast_to(np.isnan(values), (n,))


@dataclass
class _FactorSurvey:
    """Levels of one factor seen so far."""

    given: list[str] | None  # a categorical's full level list, when every chunk agrees
    present: set[str] = field(default_factory=set)
    ordered: bool = False
    coding: str | None = None
    numeric: bool = False  # levels made from numbers sort as numbers

    def merge(self, other: _FactorSurvey) -> _FactorSurvey:
        given = self.given if self.given == other.given else None
        return _FactorSurvey(
            given,
            self.present | other.present,
            self.ordered or other.ordered,
            self.coding or other.coding,
            self.numeric and other.numeric,
        )

    def levels(self) -> list[str]:
        if self.given is not None:
            return [lv for lv in self.given if lv in self.present]
        if self.numeric:
            return sorted(self.present, key=float)
        return sorted(self.present)


@dataclass
class _GroupSurvey:
    """Values of one grouping column seen so far: for a categorical, its categories and
    which of them occur (``present``); otherwise the distinct raw values, kept as pieces
    (``values``) made unique together when they grow (:meth:`merge` stays linear)."""

    categories: pd.Index | None
    present: np.ndarray | None = None  # bool per category
    values: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def of(cls, column: pd.Series) -> _GroupSurvey:
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = column.cat.categories
            codes = column.cat.codes.to_numpy()
            if codes.size and codes.min() < 0:  # missing values (none in usable rows)
                codes = codes[codes >= 0]
            present = np.bincount(codes, minlength=len(categories)) > 0
            return cls(categories, present)
        return cls(None, None, [np.unique(column.to_numpy())])

    def _raw(self) -> list[np.ndarray]:
        if self.categories is None:
            return self.values
        return [np.asarray(self.categories)[self.present]]

    def merge(self, other: _GroupSurvey) -> _GroupSurvey:
        if (
            self.categories is not None
            and other.categories is not None
            and (self.categories is other.categories or self.categories.equals(other.categories))
        ):
            return _GroupSurvey(self.categories, self.present | other.present)
        values = self._raw() + other._raw()
        if len(values) > 16:  # pieces made unique together now and then
            values = [np.unique(np.concatenate(values))]
        return _GroupSurvey(None, None, values)

    def levels(self) -> pd.Index:
        if self.categories is not None:
            return self.categories[self.present]
        return pd.Index(np.unique(np.concatenate(self.values)))


@dataclass
class Survey:
    """What pass 1 found in some chunks (added with :func:`merge_surveys`)."""

    n_rows: int
    n_complete: int
    fixed: dict[int, _FactorSurvey | str]  # variable index -> factor survey, "numeric", "k"
    term_variables: list[dict[int, _FactorSurvey | str]]
    groups: dict[str, _GroupSurvey]
    combinations: dict[tuple[str, ...], pd.DataFrame]


def _variable_survey(value: Value) -> _FactorSurvey | str:
    if isinstance(value, Logical):
        value = _logical_factor(np.atleast_1d(value.values))
    if isinstance(value, Factor):
        codes = np.atleast_1d(value.codes)
        present = {value.levels[i] for i in np.unique(codes[codes >= 0])}
        return _FactorSurvey(
            list(value.levels), present, value.ordered, value.coding, value.from_numbers
        )
    if isinstance(value, Matrix):
        return f"matrix:{value.values.shape[1]}:{','.join(value.suffixes)}"
    return "numeric"


def _merge_variable(a: _FactorSurvey | str, b: _FactorSurvey | str) -> _FactorSurvey | str:
    if isinstance(a, _FactorSurvey) and isinstance(b, _FactorSurvey):
        return a.merge(b)
    if a != b:
        raise DataError("a variable is a factor in some chunks and numeric in others")
    return a


def merge_surveys(a: Survey, b: Survey) -> Survey:
    """Pass-1 results of two sets of chunks, added."""
    combinations = dict(a.combinations)
    for key, frame in b.combinations.items():
        joined = pd.concat([combinations[key], frame]) if key in combinations else frame
        combinations[key] = joined.drop_duplicates(ignore_index=True)
    return Survey(
        a.n_rows + b.n_rows,
        a.n_complete + b.n_complete,
        {k: _merge_variable(a.fixed[k], b.fixed[k]) for k in a.fixed},
        [
            {k: _merge_variable(x[k], y[k]) for k in x}
            for x, y in zip(a.term_variables, b.term_variables, strict=True)
        ],
        {k: a.groups[k].merge(b.groups[k]) for k in a.groups},
        combinations,
    )


def _primed_values(survey: dict[int, _FactorSurvey | str]) -> list[Value]:
    values: list[Value] = []
    for k in sorted(survey):
        item = survey[k]
        if isinstance(item, _FactorSurvey):
            levels = item.levels()
            codes = np.arange(len(levels), dtype=np.int64)
            values.append(Factor(codes, levels, item.ordered, item.coding))
        elif item.startswith("matrix:"):
            _, width, suffixes = item.split(":", 2)
            values.append(Matrix(np.zeros((0, int(width))), suffixes.split(",")))
        else:
            values.append(Numeric(np.zeros(0)))
    return values


#: Calls that reduce a column over the rows the interpreter sees (design.evaluate's
#: aggregates): on a chunk they would see that chunk only.
ROW_AGGREGATES = frozenset({"mean", "median", "sd", "var", "min", "max", "sum", "length"})


def _refuse_aggregates(parsed: ParsedFormula) -> None:
    """A :class:`DataError` naming the first call such as ``mean(age)`` in the model: it
    would be computed per chunk, not over all rows as in memory."""
    texts = [parsed.response, parsed.fixed, *parsed.offsets]
    texts += [spec.expr for spec in parsed.random]
    for text in texts:
        for call in calls(parse_expression(text)):
            if call.func in ROW_AGGREGATES:
                raise DataError(
                    f"{deparse(call)!r} in {text!r}: {call.func}() reduces a column over "
                    "all rows, which data in chunks never holds at once; compute the "
                    "column beforehand (e.g. a centred column of its own)"
                )


def _refuse_structures(parsed: ParsedFormula) -> None:
    """A :class:`FormulaError` for a structured covariance term (``cs(x | g)``, ``ar1``,
    ...): the reduced problem's terms are unstructured, and fitting the term as ``(x | g)``
    would be another model.  ``us(...)`` is the unstructured default and is kept."""
    for spec in parsed.random:
        if spec.structure not in (None, "us"):
            hint = f"; (... || {spec.group_name}) gives independent columns" if (
                spec.structure == "diag"
            ) else ""
            raise FormulaError(
                f"random-effect term {spec}: covariance structures are fitted in memory "
                f"only, not from data in chunks{hint}",
                parsed.text,
            )


@dataclass
class EncodedChunk:
    """One chunk's rows as the engine takes them (complete rows only)."""

    y: np.ndarray
    X: np.ndarray
    blocks: list[RandomBlock]
    weights: np.ndarray | None
    offset: np.ndarray | None
    index: pd.Index | None = None  # the rows' labels in the chunk


class ChunkedDesign:
    """The fixed encoding of a model for data that come in chunks.

    Parameters
    ----------
    formula : str
    columns : list of str
        The columns of the data (to check the formula against).
    weights, offset : str, optional
        Names of numeric columns (arrays cannot travel with chunks).
    contrasts : dict, optional
    """

    def __init__(
        self,
        formula: str,
        columns: list[str],
        *,
        weights: str | None = None,
        offset: str | None = None,
        contrasts: dict[str, str] | None = None,
    ):
        self.parsed: ParsedFormula = parse_formula(formula)
        if not self.parsed.random:
            raise FormulaError("formula has no random-effect term such as (1 | g)", formula)
        for name, what in ((weights, "weights"), (offset, "offset")):
            if name is not None and not isinstance(name, str):
                raise DataError(f"with data in chunks, {what} must name a column")
        self.weights_column = weights
        self.offset_column = offset
        _refuse_aggregates(self.parsed)
        _refuse_structures(self.parsed)
        self.needed = self._needed(columns)
        self.modelled = list(
            dict.fromkeys(
                variables_of(self.parsed.response)
                + model_variables(self.parsed, include_random=True, grouping=False)
            )
        )
        self.fixed_builder = MatrixBuilder(self.parsed.fixed, contrasts=dict(contrasts or {}))
        self.term_builders = [MatrixBuilder(spec.expr) for spec in self.parsed.random]
        self.group_columns = list(
            dict.fromkeys(f for spec in self.parsed.random for f in spec.group_factors)
        )
        self.levels: list[pd.Index] = []
        self._factor_levels: dict[str, pd.Index] = {}
        # column -> (categories, levels, level code of each category): the last chunk's
        self._category_codes: dict[str, tuple[pd.Index, pd.Index, np.ndarray]] = {}
        self._combination_codes: list[np.ndarray | None] = []
        self._same_as_fixed: list[bool] = [False] * len(self.term_builders)
        self.n_rows = 0
        self.n_dropped = 0

    def _needed(self, columns: list[str]) -> list[str]:
        parsed = self.parsed
        names = required_variables(parsed)
        for extra in (self.weights_column, self.offset_column):
            if extra is not None and extra not in names:
                names.append(extra)
        for name in names:
            if name not in columns:
                raise ColumnNotFoundError(
                    f"column {name!r} is not in the data (columns: {', '.join(columns)})",
                    parsed.text,
                )
        return names

    # ------------------------------------------------------------------ pass 1
    def usable_rows(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """The rows the in-memory design would keep: no missing value in any column the
        model reads, and no NaN made by a transform (R's ``na.omit`` of the model frame),
        nullable columns as plain numpy columns."""
        for name in self.modelled:
            check_model_column(chunk[name], name)
        for name in self.needed:
            check_hashable_cells(chunk[name], name)
        complete = np.ones(len(chunk), dtype=bool)
        for name in self.needed:
            complete &= ~missing_mask(chunk[name])
        # every row complete (the usual chunk): the columns as they are, no row copied
        kept = chunk[self.needed] if complete.all() else chunk.loc[complete, self.needed]
        rows = plain_columns(kept, self.needed)
        n = len(rows)
        if n == 0:
            return rows
        nan = np.isnan(response_vector(rows, self.parsed.response))
        for expr in self.parsed.offsets:
            nan |= np.isnan(response_vector(rows, expr, what="offset"))
        for builder in (self.fixed_builder, *self.term_builders):
            interpreter = Interpreter(rows, {}, builder.rhs)
            for node in builder.structure.variables:
                nan |= _missing_values(interpreter.evaluate(node), n)
        for extra in (self.weights_column, self.offset_column):
            if extra is not None:
                nan |= np.isnan(rows[extra].to_numpy(dtype=float))
        return rows.loc[~nan] if nan.any() else rows

    def survey(self, chunk: pd.DataFrame) -> Survey:
        """Pass 1 on one chunk."""
        rows = self.usable_rows(chunk)
        fixed = self._survey_variables(self.fixed_builder, rows)
        terms = [self._survey_variables(b, rows) for b in self.term_builders]
        groups = {name: _GroupSurvey.of(rows[name]) for name in self.group_columns}
        combinations = {
            spec.group_factors: rows[list(spec.group_factors)].drop_duplicates(ignore_index=True)
            for spec in self.parsed.random
            if len(spec.group_factors) > 1
        }
        return Survey(len(chunk), len(rows), fixed, terms, groups, combinations)

    @staticmethod
    def _survey_variables(builder: MatrixBuilder, rows: pd.DataFrame) -> dict:
        state: dict[str, object] = {}
        interpreter = Interpreter(rows, state, builder.rhs)
        out = {
            i: _variable_survey(interpreter.evaluate(node))
            for i, node in enumerate(builder.structure.variables)
        }
        if state:
            raise DataError(
                f"{builder.rhs!r}: poly(), scale() and center() learn from all rows at once; "
                "with data in chunks compute the column beforehand"
            )
        return out

    def fix(self, survey: Survey) -> None:
        """Fix the encoding from the whole of pass 1."""
        self.n_rows = survey.n_rows
        self.n_dropped = survey.n_rows - survey.n_complete
        if survey.n_complete == 0:
            raise DataError(f"no complete rows: all {survey.n_rows} rows have a missing value")
        self.fixed_builder.prime(_primed_values(survey.fixed))
        for builder, variables in zip(self.term_builders, survey.term_variables, strict=True):
            builder.prime(_primed_values(variables))
        self._factor_levels = {name: survey.groups[name].levels() for name in self.group_columns}
        self.levels, self._combination_codes = [], []
        for spec in self.parsed.random:
            if len(spec.group_factors) == 1:
                levels = self._factor_levels[spec.group_factors[0]]
                self.levels.append(levels)
                self._combination_codes.append(None)
                continue
            frame = survey.combinations[spec.group_factors]
            combined = self._combined_codes(frame, spec.group_factors)
            unique = np.unique(combined)
            self._combination_codes.append(unique)
            self.levels.append(pd.Index(self._combination_labels(unique, spec.group_factors)))
        # a term whose columns are the fixed effects' (``y ~ x + (x | g)``): the same
        # expression, variables and coding, hence the same matrix of every chunk
        self._same_as_fixed = [
            not self.fixed_builder.contrasts
            and builder.rhs == self.fixed_builder.rhs
            and builder.column_names == self.fixed_builder.column_names
            and terms == survey.fixed
            for builder, terms in zip(self.term_builders, survey.term_variables, strict=True)
        ]
        for spec, builder, levels in zip(
            self.parsed.random, self.term_builders, self.levels, strict=True
        ):
            check_grouping(spec.group_name, len(levels), survey.n_complete)
            if not builder.column_names:
                raise FormulaError(f"random-effect term {spec} has no columns", self.parsed.text)
            n_effects = len(levels) * len(builder.column_names)
            if len(builder.column_names) > 1 and n_effects >= survey.n_complete:
                raise DataError(  # the in-memory design's check (lme4's), same message
                    f"number of observations ({survey.n_complete}) <= number of random "
                    f"effects ({n_effects}) for term {spec}; its variances are unidentifiable"
                )

    def _combined_codes(self, frame: pd.DataFrame, factors: tuple[str, ...]) -> np.ndarray:
        combined = np.zeros(len(frame), dtype=np.int64)
        for name in factors:
            levels = self._factor_levels[name]
            combined = combined * len(levels) + self._level_codes(frame[name], levels)
        return combined

    def _level_codes(self, column: pd.Series, levels: pd.Index) -> np.ndarray:
        """The position in ``levels`` of every value of ``column`` (-1 when absent).

        A categorical column is looked up through its categories: each category once (and
        once for all chunks that share the categories object, as Parquet batches of one
        dictionary do), then its rows by their codes."""
        if not isinstance(column.dtype, pd.CategoricalDtype):
            return levels.get_indexer(column.to_numpy())
        categories = column.cat.categories
        cached = self._category_codes.get(column.name)
        if cached is None or cached[0] is not categories or cached[1] is not levels:
            lookup = np.append(levels.get_indexer(categories), -1)  # code -1: missing
            cached = (categories, levels, lookup)
            self._category_codes[column.name] = cached
        return cached[2][np.asarray(column.cat.codes)]

    def _combination_labels(self, unique: np.ndarray, factors: tuple[str, ...]) -> list[str]:
        labels = []
        for value in unique:
            pieces = []
            for name in reversed(factors):
                levels = self._factor_levels[name]
                pieces.append(str(levels[value % len(levels)]))
                value //= len(levels)
            labels.append(":".join(reversed(pieces)))
        return labels

    # ------------------------------------------------------------------ later passes
    def encode(self, chunk: pd.DataFrame) -> EncodedChunk:
        """A chunk's complete rows, encoded as every other chunk is."""
        rows = self.usable_rows(chunk)
        y = response_vector(rows, self.parsed.response)
        X = self.fixed_builder.build(rows)
        blocks = []
        for spec, builder, levels, combos, same in zip(
            self.parsed.random, self.term_builders, self.levels, self._combination_codes,
            self._same_as_fixed, strict=True,
        ):
            if combos is None:
                codes = self._level_codes(rows[spec.group_factors[0]], levels)
            else:
                codes = np.searchsorted(combos, self._combined_codes(rows, spec.group_factors))
            z = X if same else builder.build(rows)
            blocks.append(RandomBlock(codes.astype(np.int64), len(levels), z))
        weights = None
        if self.weights_column is not None:
            weights = rows[self.weights_column].to_numpy(dtype=float)
        offset = None
        if self.offset_column is not None:
            offset = rows[self.offset_column].to_numpy(dtype=float)
        for expr in self.parsed.offsets:
            extra = response_vector(rows, expr, what="offset")
            offset = extra if offset is None else offset + extra
        return EncodedChunk(y, X, blocks, weights, offset, rows.index)


@dataclass
class ReducedDesign(ModelDesign):
    """The design of a model fitted from chunks: names, levels and encodings, no rows.

    ``encoder`` encodes any chunk as the fit did (its random terms in formula order;
    ``permutation[j]`` is the formula position of public term ``j``) and ``source`` is
    where the rows are, for row-level outputs computed by a further pass.
    """

    n_used: int = 0
    encoder: ChunkedDesign | None = None
    permutation: list[int] = field(default_factory=list)
    source: object = None

    @property
    def n(self) -> int:
        return self.n_used


def reduced_design(
    design: ChunkedDesign,
    keep: np.ndarray,
    prototypes: dict[str, pd.Series],
    permutation: list[int] | None = None,
    source: object = None,
) -> ReducedDesign:
    """The row-free design of a chunked model, terms in lme4's order."""
    names = design.fixed_builder.column_names
    kept = set(keep.tolist())
    terms = [
        RandomTerm(
            spec,
            builder.column_names,
            levels,
            np.zeros(0, dtype=np.int64),
            np.zeros((0, len(builder.column_names))),
            builder,
        )
        for spec, builder, levels in zip(
            design.parsed.random, design.term_builders, design.levels, strict=True
        )
    ]
    return ReducedDesign(
        formula=design.parsed,
        y=np.zeros(0),
        X=np.zeros((0, len(keep))),
        fixed_names=[names[i] for i in keep],
        dropped_fixed=[names[i] for i in range(len(names)) if i not in kept],
        fixed_builder=design.fixed_builder,
        fixed_keep=keep,
        terms=lme4_term_order(terms),
        weights=None,
        offset=None,
        n_dropped=design.n_dropped,
        row_index=pd.RangeIndex(0),
        data=None,
        prototypes=prototypes,
        n_used=design.n_rows - design.n_dropped,
        encoder=design,
        permutation=list(range(len(terms))) if permutation is None else list(permutation),
        source=source,
    )
