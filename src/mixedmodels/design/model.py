"""Assemble the whole numeric design of a mixed model from formula text and data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import ClassVar

import numpy as np
import pandas as pd

from mixedmodels.design.evaluate import ColumnTable
from mixedmodels.design.grouping import (
    check_grouping,
    codes_for_levels,
    group_codes,
    label_table,
    level_labels,
)
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.design.rank import dropped_columns, independent_columns
from mixedmodels.design.response import glm_response
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.design.smooths import (
    RandomPart,
    SmoothFunction,
    SmoothSpec,
    build_smooth,
    parse_smooth,
)
from mixedmodels.design.validate import (
    check_frame,
    check_hashable_cells,
    check_model_column,
    checked_nan_rows,
    is_numeric,
    missing_mask,
    needs_plain,
    plain_columns,
    vector_argument,
    warn_non_integer,
)
from mixedmodels.errors import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
)
from mixedmodels.formula import ParsedFormula, RandomTermSpec, parse_formula
from mixedmodels.formula.expr import calls, parse_expression, variables
from mixedmodels.reterms.blocks import RandomBlock
from mixedmodels.reterms.structures import STRUCTURES, CovarianceStructure


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
    structure : CovarianceStructure, optional
        The term's covariance structure; unstructured when None.
    """

    spec: RandomTermSpec
    column_names: list[str]
    level_index: pd.Index
    codes: np.ndarray
    z: np.ndarray
    builder: MatrixBuilder
    structure: CovarianceStructure | None = None  # unstructured unless the formula says

    #: Smooth terms' random parts belong to the mean function: predictions always
    #: include them (also the population-level ones).
    always_included: ClassVar[bool] = False

    @property
    def group_name(self) -> str:
        return self.spec.group_name

    def codes_for(self, data: pd.DataFrame) -> np.ndarray:
        """Level of each row of new data (-1 for levels the fit did not see)."""
        return codes_for_levels(data, self.spec.group_factors, self.levels)

    @property
    def block(self) -> RandomBlock:
        return RandomBlock(self.codes, self.n_levels, self.z, self.structure)

    @property
    def n_levels(self) -> int:
        return len(self.level_index)

    @cached_property
    def levels(self) -> list[str]:
        """Level labels as strings."""
        return level_labels(self.level_index)


class _PartBuilder:
    """The columns of a smooth's random part at new data (a :class:`MatrixBuilder`'s
    interface: ``build`` and ``column_names``)."""

    def __init__(self, part: RandomPart):
        self.part = part
        self.column_names = [f"{part.name}.{j + 1}" for j in range(part.z.shape[1])]

    def build(self, data: pd.DataFrame) -> np.ndarray:
        return self.part.evaluate(data)


@dataclass
class SmoothRandomTerm(RandomTerm):
    """A random part of a smooth term (its range space, or one penalty of it)."""

    part: RandomPart | None = None
    always_included: ClassVar[bool] = True

    def codes_for(self, data: pd.DataFrame) -> np.ndarray:
        return self.part.codes_for(data)


@dataclass
class SmoothLayout:
    """Where a smooth function's coefficients are: its fixed-effect columns in ``X`` and
    its random parts in the design's terms (indices after lme4's ordering)."""

    function: SmoothFunction
    fixed_index: list[int]
    term_index: list[int]

    @property
    def label(self) -> str:
        return self.function.label


def _smooth_random_terms(functions: list[SmoothFunction]) -> list[RandomTerm]:
    if not functions:  # (no import statement to run: a few microseconds of every fit)
        return []
    from mixedmodels.reterms.structures import ScaledIdentity

    terms: list[RandomTerm] = []
    for function in functions:
        for part in function.parts:
            builder = _PartBuilder(part)
            spec = RandomTermSpec(part.name, part.group_factors or (part.name,), part.name)
            structure = ScaledIdentity(part.z.shape[1]) if part.scaled_identity else None
            terms.append(
                SmoothRandomTerm(
                    spec, builder.column_names, part.levels, part.codes, part.z, builder,
                    structure, part=part,
                )
            )
    return terms


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
    dropped_by: dict[str, int] = field(default_factory=dict)  # rows dropped, per column
    # used columns without rows; factor levels (both computed on first access)
    prototypes: Mapping[str, pd.Series] = field(default_factory=dict)
    model_levels: Mapping[str, dict[str, object]] = field(default_factory=dict)
    smooths: list[SmoothLayout] = field(default_factory=list)  # s(...), t2(...) terms
    # the offset= argument: the column it named (read from new rows by predict), or True
    # when it was given as values (they describe the fitted rows only)
    offset_column: str | None = None
    offset_values_given: bool = False

    @property
    def n(self) -> int:
        return self.y.shape[0]

    def with_response(self, y: np.ndarray) -> ModelDesign:
        """The same design with another response (refits, bootstrap)."""
        return replace(self, y=np.asarray(y, dtype=float))

    def fixed_matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for new data, with the same encoding and dropped columns (smooth terms'
        fixed-effect columns evaluated with the fitted bases)."""
        full = self.fixed_builder.build(data)
        if self.smooths:
            full = np.hstack([full] + [s.function.evaluate_fixed(data) for s in self.smooths])
        return full[:, self.fixed_keep]


def smooth_specs(parsed: ParsedFormula) -> list[SmoothSpec]:
    """The formula's smooth terms, read (and checked) as data."""
    return [parse_smooth(text, parsed.text) for text in parsed.smooths]


def required_variables(parsed: ParsedFormula) -> list[str]:
    """Every data column the formula reads, in order of appearance."""
    names: list[str] = []

    def add(found: list[str]) -> None:
        names.extend(v for v in found if v not in names)

    add(variables_of(parsed.response))
    add(variables_of(parsed.fixed))
    for expr in parsed.offsets:
        add(variables_of(expr))
    for spec in smooth_specs(parsed):
        add(spec.variables)
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


def formula_offset(
    parsed: ParsedFormula, data: pd.DataFrame | ColumnTable
) -> np.ndarray | None:
    """The sum of the formula's ``offset(...)`` terms for ``data`` (None without any)."""
    if not parsed.offsets:
        return None
    total = np.zeros(len(data))
    for expr in parsed.offsets:
        total += response_vector(data, expr, what="offset")
    return total


def lme4_term_permutation(n_levels: list[int]) -> list[int]:
    """lme4 sorts terms by number of levels, decreasing, only when they are not already:
    the order of the terms' indices."""
    if any(b > a for a, b in zip(n_levels, n_levels[1:], strict=False)):
        order = sorted(range(len(n_levels)), key=lambda i: n_levels[i])  # stable ascending
        return list(reversed(order))
    return list(range(len(n_levels)))


def lme4_term_order(terms: list[RandomTerm]) -> list[RandomTerm]:
    """``terms`` in lme4's order (:func:`lme4_term_permutation`)."""
    return [terms[i] for i in lme4_term_permutation([t.n_levels for t in terms])]


def _check_columns(needed: Sequence[str], data: pd.DataFrame, formula: str) -> None:
    for name in needed:
        if name not in data.columns:
            pos = formula.find(name)
            columns = ", ".join(map(str, data.columns))
            raise ColumnNotFoundError(
                f"column {name!r} is not in the data (columns: {columns})",
                formula,
                pos if pos >= 0 else None,
            )


@dataclass
class _Built:
    """The numeric pieces of a design for a set of rows, before rank and grouping checks."""

    y: np.ndarray
    trials: np.ndarray | None
    offset: np.ndarray | None  # the formula's offset(...) terms
    fixed_builder: MatrixBuilder
    X_full: np.ndarray
    random: list[tuple[RandomTermSpec, MatrixBuilder, np.ndarray]]
    smooths: list[SmoothFunction] = field(default_factory=list)

    @property
    def column_names(self) -> list[str]:
        """Names of ``X_full``'s columns: the parametric ones, then the smooths'."""
        names = list(self.fixed_builder.column_names)
        for function in self.smooths:
            names += function.fixed_names
        return names

    def pieces(self, response: str) -> list[tuple[str, list[str], np.ndarray]]:
        """(what, column names, values) of every built piece, for the finiteness checks."""
        out = [("the response", [response], self.y)]
        if self.trials is not None:
            out.append(("the binomial trials of", [response], self.trials))
        if self.offset is not None:
            out.append(("the offset", ["offset(...)"], self.offset))
        out.append(("fixed-effect column", self.column_names, self.X_full))
        for function in self.smooths:
            for part in function.parts:
                names = [f"{part.name}.{j + 1}" for j in range(part.z.shape[1])]
                out.append(("smooth random-effect column", names, part.z))
        for spec, builder, z in self.random:
            names = [f"{c} | {spec.group_name}" for c in builder.column_names]
            out.append(("random-effect column", names, z))
        return out


def _absorbs_residual(structure: CovarianceStructure) -> bool:
    """Whether ``Sigma(theta) + c I`` stays in the structure's family near a generic theta
    (the residual variance is then confounded with the term when each level has a row per
    column): the Jacobian of ``(theta, c) -> vech(Lambda Lambda' + c I)`` has rank below
    ``n_theta + 1``.  Central differences at a fixed theta inside the bounds."""
    k, p = structure.n_theta, structure.p
    u = 0.35 + 0.3 * ((np.arange(k) * 0.6180339887) % 1.0)
    lo, hi = structure.lower_bounds(), structure.upper_bounds()
    theta = np.where(np.isfinite(lo), lo, 0.0) + u
    both = np.isfinite(lo) & np.isfinite(hi)
    theta[both] = lo[both] + (hi[both] - lo[both]) * u[both]
    theta[~np.isfinite(lo) & np.isfinite(hi)] = (hi - u)[~np.isfinite(lo) & np.isfinite(hi)]
    rows, cols = np.tril_indices(p)

    def vech(t: np.ndarray) -> np.ndarray:
        lam = structure.lambda_matrix(t)
        return (lam @ lam.T)[rows, cols]

    h = 1e-6
    columns = []
    for j in range(k):
        step = np.zeros(k)
        step[j] = h
        columns.append((vech(theta + step) - vech(theta - step)) / (2 * h))
    columns.append((rows == cols).astype(float))  # d/dc of c I
    sv = np.linalg.svd(np.column_stack(columns), compute_uv=False)
    return int(np.sum(sv > 1e-6 * sv[0])) < k + 1


def _build_pieces(
    parsed: ParsedFormula,
    used: ColumnTable,
    glm_family: str | None,
    contrasts: dict[str, str],
    max_columns: int | None = None,
) -> _Built:
    if glm_family is None:
        y, trials = response_vector(used, parsed.response), None
    else:
        y, trials = glm_response(used, parsed.response, glm_family)
    fixed_builder = MatrixBuilder(parsed.fixed, contrasts=contrasts)
    X_full = fixed_builder.build(used, max_columns)  # counted before it is built
    random = []
    for spec in parsed.random:
        builder = MatrixBuilder(spec.expr)
        random.append((spec, builder, builder.build(used)))
    smooths = [f for spec in smooth_specs(parsed) for f in build_smooth(spec, used.frame)]
    if smooths:
        X_full = np.hstack([X_full] + [f.fixed for f in smooths])
    return _Built(
        y, trials, formula_offset(parsed, used), fixed_builder, X_full, random, smooths
    )


def _factor_wrapped(text: str) -> set[str]:
    """Variables that ``text`` turns into factors: ``factor(x)``, ``as.factor(x)``,
    ``ordered(x)``, ``C(x, ...)``."""
    wrapping = ("factor", "as.factor", "ordered", "C")
    return {
        name
        for call in calls(parse_expression(text))
        if call.func in wrapping
        for name in variables(call)
    }


def _model_levels(parsed: ParsedFormula, used: pd.DataFrame) -> dict[str, dict[str, object]]:
    """For each factor read by the fixed part or a random-effect term's left side: its
    levels' labels -> the values as the fit saw them (what new data is checked against)."""
    wrapped = _factor_wrapped(parsed.fixed)
    for spec in parsed.random:
        wrapped |= _factor_wrapped(spec.expr)
    for smooth in smooth_specs(parsed):  # a smooth's factors: by = f, fs and re groups
        wrapped |= {smooth.by} if smooth.by else set()
        if smooth.bs in ("re", "fs"):
            wrapped |= {name for name in smooth.covariates if not is_numeric(used[name])}
    out: dict[str, dict[str, object]] = {}
    for name in model_variables(parsed, include_random=True, grouping=False):
        column = used[name]
        if not is_numeric(column) or name in wrapped:
            out[name] = label_table(column)
    return out


def model_variables(
    parsed: ParsedFormula, *, include_random: bool, grouping: bool = True
) -> list[str]:
    """The columns a prediction reads: the fixed part and offsets, and with
    ``include_random`` the random-effect terms (their grouping factors with ``grouping``)."""
    names: list[str] = []

    def add(found) -> None:
        names.extend(v for v in found if v not in names)

    add(variables_of(parsed.fixed))
    for expr in parsed.offsets:
        add(variables_of(expr))
    for spec in smooth_specs(parsed):  # smooths are part of the mean
        add(spec.variables)
    if include_random:
        for term in parsed.random:
            add(variables_of(term.expr))
            if grouping:
                add(list(term.group_factors))
    return names


@lru_cache(maxsize=256)
def _formula_columns(parsed: ParsedFormula) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns a formula reads (:func:`required_variables`) and, once each, those
    entering the response or a model matrix: they depend on the (immutable) parsed
    formula alone, so each formula's are found once (tuples: nothing can change them)."""
    needed = required_variables(parsed)
    modelled = variables_of(parsed.response) + model_variables(
        parsed, include_random=True, grouping=False
    )
    return tuple(needed), tuple(dict.fromkeys(modelled))


def build_design(
    formula: str,
    data: pd.DataFrame,
    *,
    weights=None,
    offset=None,
    require_random: bool = True,
    glm_family: str | None = None,
    contrasts: dict[str, str] | None = None,
    table: ColumnTable | None = None,
) -> ModelDesign:
    """Parse ``formula`` against ``data`` and build y, X and the random-effect terms.

    Rows with a missing value (NA of any dtype) in any used column, in weights or offset,
    or with NaN in a built column (a transform such as ``log`` of a negative number, as R's
    ``na.omit`` of the model frame) are dropped and counted; ``data`` itself is never
    modified.  Infinite values anywhere in the design are an error naming the column.
    With ``glm_family`` ("binomial", "poisson") the response is read as that family reads
    it (``cbind(s, f)``, factors), and counts that are not whole numbers are warned about.

    ``table``: a :class:`ColumnTable` of ``data`` a caller has read columns of already
    (each pandas column access costs ~20 us); used only when it is ``data``'s.

    Raises
    ------
    ColumnNotFoundError
        A column the formula, ``weights`` or ``offset`` names is not in ``data``.
    DataError
        Bad data: not a DataFrame, duplicated column names, no complete rows, weights or
        offset that are not numbers, infinite values, a degenerate grouping factor, more
        fixed effects than observations.
    FormulaError
        A formula that cannot be parsed or built.
    """
    data = check_frame(data)
    if len(data) == 0:
        raise DataError("data has no rows")
    parsed = parse_formula(formula)
    if require_random and not parsed.random and not parsed.smooths:
        raise FormulaError(
            "formula has no random-effect term such as (1 | g); use mm.lm for a linear model",
            formula,
        )
    needed, modelled = _formula_columns(parsed)
    _check_columns(needed, data, formula)
    if table is None or table.frame is not data:
        table = ColumnTable(data)  # each used column read from pandas once
    for name in modelled:
        check_model_column(table[name], name)
    for name in needed:
        check_hashable_cells(table[name], name)
    w_all = vector_argument(weights, data, "weights", positive=True)
    off_all = vector_argument(offset, data, "offset")
    checked_contrasts = _checked_contrasts(contrasts, data)

    reasons: dict[str, int] = {}
    complete = np.ones(len(data), dtype=bool)
    for name in needed:
        gone = missing_mask(table[name])
        if gone.any():
            complete &= ~gone
            reasons[name] = int(gone.sum())
    for label, vec in (("weights", w_all), ("offset", off_all)):
        if vec is not None and np.isnan(vec).any():
            complete &= ~np.isnan(vec)
            reasons[label] = int(np.isnan(vec).sum())
    all_complete = bool(complete.all())
    # with every row complete and no nullable column to convert, the rows used are the
    # data themselves: their table (and grouping codes) serve the whole build
    as_given = all_complete and not any(needs_plain(table[name].dtype) for name in needed)
    groups: dict[tuple[str, ...], tuple[np.ndarray, pd.Index]] = {}

    if complete.any():  # lme4 checks the grouping factors before the fixed-effect matrix
        for spec in parsed.random:
            if as_given:  # the codes are needed anyway: one factorize for both
                if spec.group_factors not in groups:
                    groups[spec.group_factors] = group_codes(table, spec.group_factors)
                n_levels = len(groups[spec.group_factors][1])
            elif len(spec.group_factors) > 1:
                n_levels = len(data.loc[complete, list(spec.group_factors)].drop_duplicates())
            else:  # one column: no frame to cut (the same count)
                column = table[spec.group_factors[0]]
                n_levels = (column if all_complete else column[complete]).nunique()
            if n_levels < 2:
                check_grouping(spec.group_name, n_levels, int(complete.sum()))
    for _ in range(3):  # a stateful transform (scale) may give NaN anew on fewer rows
        if not complete.any():
            raise DataError(
                f"no complete rows: all {len(data)} rows have a missing value"
                + (f" ({_reason_text(reasons)})" if reasons else "")
            )
        if as_given and complete.all():
            used, used_table = data, table
        else:
            rows = data if complete.all() else data.loc[complete, list(needed)]
            used = plain_columns(rows, needed)
            used_table = ColumnTable(used)
        built = _build_pieces(
            parsed,
            used_table,
            glm_family,
            checked_contrasts,
            len(used) - 1 if require_random else None,
        )
        w = None if w_all is None else w_all[complete]
        off = None if off_all is None else off_all[complete]
        nan_rows = np.zeros(len(used), dtype=bool)
        for what, names, values in built.pieces(parsed.response):
            nan_rows |= checked_nan_rows(values, names, what, used.index, reasons)
        if not nan_rows.any():
            break
        complete[np.flatnonzero(complete)[nan_rows]] = False
    else:
        raise DataError("transforms in the formula keep producing NaN on the remaining rows")
    n_dropped = int((~complete).sum())

    y, trials, X_full = built.y, built.trials, built.X_full
    off = built.offset if off is None else (off if built.offset is None else off + built.offset)
    if glm_family is not None:
        warn_non_integer(glm_family, y, trials, w, parsed.response)
    fixed_builder = built.fixed_builder
    names = built.column_names
    if require_random and len(names) >= len(used):
        raise DataError(
            f"more fixed-effect columns than observations: the fixed part has {len(names)} "
            f"column(s) for {len(used)} observation(s); a mixed model needs more "
            "observations than fixed effects"
        )
    keep = independent_columns(X_full) if X_full.shape[1] else np.arange(0)
    dropped = dropped_columns(names, keep)
    if require_random and keep.size >= len(used):
        raise DataError(
            f"as many fixed effects as observations: {keep.size} independent fixed-effect "
            f"column(s) for {len(used)} observation(s) leave nothing to estimate the "
            "variances from"
        )
    X = np.asfortranarray(X_full[:, keep])  # columns contiguous: the gram reads them one by one

    terms: list[RandomTerm] = []
    for spec, builder, z in built.random:
        if used_table is table and spec.group_factors in groups:
            codes, levels = groups[spec.group_factors]
        else:
            codes, levels = group_codes(used_table, spec.group_factors)
        # a GLMM's response carries its own variance, so observation-level random effects
        # are identifiable there (lme4's glmerControl ignores these checks)
        check_grouping(spec.group_name, len(levels), len(used), per_row_ok=glm_family is not None)
        if z.shape[1] == 0:
            raise FormulaError(f"random-effect term {spec} has no columns", formula)
        structure = None
        if spec.structure is not None:  # diag(x | g), cs(...), ...: the formula's structure
            kind = STRUCTURES[spec.structure]
            if kind.min_columns is not None and z.shape[1] < kind.min_columns:
                raise FormulaError(
                    f"random-effect term {spec} has {z.shape[1]} column(s) "
                    f"({', '.join(builder.column_names)}); {spec.structure}() correlates "
                    f"{kind.needs}: write the time as a factor, e.g. "
                    f"{spec.structure}(0 + factor(time) | g)",
                    formula,
                )
            structure = kind(z.shape[1])
        too_many = len(levels) * z.shape[1] >= len(used) and z.shape[1] > 1
        # lme4's check is for unstructured terms, whose Sigma + c I absorbs the residual;
        # structures that cannot (ar1, glmmTMB's cs over 3+ columns) stay identifiable
        # with one row per level and column, as glmmTMB fits them
        if too_many and structure is not None and not _absorbs_residual(structure):
            too_many = False
        if too_many and glm_family is None:
            raise DataError(
                f"number of observations ({len(used)}) <= number of random effects "
                f"({len(levels) * z.shape[1]}) for term {spec}; its variances are "
                "unidentifiable"
            )
        terms.append(RandomTerm(spec, builder.column_names, levels, codes, z, builder, structure))
    smooth_terms = _smooth_random_terms(built.smooths)
    terms = lme4_term_order(terms + smooth_terms)
    kept_names = [names[i] for i in keep]
    layouts = []
    for function in built.smooths:
        own = [t for t in smooth_terms if any(t.part is p for p in function.parts)]
        layouts.append(
            SmoothLayout(
                function,
                [kept_names.index(n) for n in function.fixed_names if n in kept_names],
                [next(i for i, t in enumerate(terms) if t is term) for term in own],
            )
        )
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
        dropped_by=reasons,
        prototypes=LazyTable(_prototypes, data, tuple(needed)),
        model_levels=LazyTable(_model_levels, parsed, used),
        smooths=layouts,
        offset_column=offset if isinstance(offset, str) else None,
        offset_values_given=offset is not None and not isinstance(offset, str),
    )


class LazyTable(Mapping):
    """A read-only table computed by ``function(*args)`` on first access (what only
    predictions on new data read: the columns' prototypes, the factors' levels), so a fit
    does not pay for it.  Pickles, copies and compares as the plain dict it stands for."""

    def __init__(self, function, *args):
        self._function = function
        self._args = args
        self._table: dict | None = None

    def _resolved(self) -> dict:
        if self._table is None:
            self._table = self._function(*self._args)
            self._function, self._args = None, ()
        return self._table

    def __getitem__(self, key):
        return self._resolved()[key]

    def __iter__(self):
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())

    def __repr__(self) -> str:
        return repr(self._resolved())

    def __reduce__(self):
        return (dict, (dict(self._resolved()),))


def _prototypes(data: pd.DataFrame, names: tuple[str, ...]) -> dict[str, pd.Series]:
    """Each used column without rows (its dtype and categories, for new data)."""
    return {name: data[name].iloc[:0] for name in names}


def _reason_text(reasons: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in reasons.items())
