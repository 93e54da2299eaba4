"""``mm.lmer(..., correlation=..., weights=mm.var...)``: parse, design, whiten, optimize.

Called by :func:`mixedmodels.api.lmer` when a correlation structure or a variance
function is given.  Also turns the column names held by the structures into arrays
aligned with the design's rows: the correlation groups and times (a
:class:`~mixedmodels.core.residual.GroupLayout`) and the variance covariates.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import pandas as pd

from mixedmodels.arguments import check_bool
from mixedmodels.core.residual import (
    CompoundSymmetry,
    GroupLayout,
    ResidualCorrelation,
    make_layout,
)
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.variance_functions import FITTED, VarianceFunction
from mixedmodels.design import build_design
from mixedmodels.design.evaluate import ColumnTable
from mixedmodels.design.grouping import group_codes_only
from mixedmodels.design.model import ModelDesign
from mixedmodels.design.validate import as_pandas, missing_mask
from mixedmodels.errors import (
    ArgumentError,
    ColumnNotFoundError,
    ConvergenceWarning,
    DataError,
    RowsDroppedWarning,
    SingularFitWarning,
)
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.residual import (
    ResidualOptimum,
    correlation_start,
    optimize_residual,
    residual_blas,
)
from mixedmodels.optim.start import moment_start
from mixedmodels.results.random_effects import is_singular
from mixedmodels.results.residual_fit import ResidualLmerFit


def group_factors(group: str | tuple | list | None) -> tuple[str, ...] | None:
    """``"a"``, ``"a:b"``, ``"a/b"`` (the innermost, ``a:b``) or a list of columns as the
    columns whose combination defines a group."""
    if group is None:
        return None
    if isinstance(group, str):
        parts = [p.strip() for p in group.replace("/", ":").split(":")]
    elif isinstance(group, tuple | list) and all(isinstance(g, str) for g in group):
        parts = list(group)
    else:
        raise ArgumentError(f"group must be a column name or a list of them, not {group!r}")
    if not parts or any(not p for p in parts):
        raise ArgumentError(f"group {group!r} names no column")
    return tuple(parts)


def extra_columns(
    correlation: ResidualCorrelation | None, variance: VarianceFunction | None
) -> list[str]:
    """Columns read by the structures that the formula may not mention."""
    names: list[str] = []
    if correlation is not None:
        names.extend(group_factors(correlation.group) or ())
        if correlation.time is not None:
            names.append(correlation.time)
    if variance is not None:
        names.extend(c for c in variance.columns() if c != FITTED)
    return list(dict.fromkeys(names))


def check_columns(data: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        if name not in data.columns:
            raise ColumnNotFoundError(
                f"column {name!r} (read by the correlation structure or variance function) "
                "is not in the data"
            )


def _numeric(data: pd.DataFrame | ColumnTable, name: str, what: str) -> np.ndarray:
    column = data[name]
    dtype = column.dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise DataError(f"{what}: column {name!r} must be numeric, not {column.dtype}")
    values = column.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{what}: column {name!r} has non-finite values")
    return values


def structure_frame(design: ModelDesign, data: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The design's rows with the columns the structures read.

    When rows were dropped for missing values, ``design.data`` holds only the formula's
    columns; the others are taken from ``data`` (whose index must be unique) by row
    label.
    """
    absent = [c for c in columns if c not in design.data.columns]
    if not absent:
        return design.data
    rows = data.loc[design.row_index, absent]
    return design.data.assign(**{c: rows[c].to_numpy() for c in absent})


def residual_layout(
    design: ModelDesign, correlation: ResidualCorrelation | None, data: pd.DataFrame | ColumnTable
) -> tuple[GroupLayout, str]:
    """Correlation groups and times for the design's rows, and the group's label.

    Without a structure (a variance function alone) or without ``group``, the groups are
    the levels of the random-effect term with the most levels (nlme's innermost
    grouping).  With one term, rows are ordered by its levels first.  ``data``: the
    design's rows with the structures' columns (:func:`structure_frame`).
    """
    terms = design.terms
    if not terms:
        raise ArgumentError("correlation= and variance functions need a random-effect term")
    outer = terms[0].codes if len(terms) == 1 else None
    factors = group_factors(correlation.group) if correlation is not None else None
    if factors is None:
        inner = max(terms, key=lambda t: t.n_levels)
        codes, label = inner.codes, inner.group_name
    else:
        codes = group_codes_only(data, factors)
        label = ":".join(factors)
    time = None
    if correlation is not None and correlation.time is not None:
        time = _numeric(data, correlation.time, correlation.label)
    layout = make_layout(np.asarray(codes), time, outer)
    if correlation is not None:
        correlation.check_layout(layout, correlation.time)
    return layout, label


def variance_values(
    data: pd.DataFrame | ColumnTable, variance: VarianceFunction | None, layout: GroupLayout
) -> dict[str, np.ndarray]:
    """The variance function's covariates (design row order, ``data`` the design's rows
    with the structures' columns), the function bound to them."""
    if variance is None:
        return {}
    values: dict[str, np.ndarray] = {}
    for name in variance.columns():
        if name == FITTED:
            continue
        dtype = data[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):  # a factor (no pandas dtype probes)
            numeric = False
        else:
            numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(
                dtype
            )
        if numeric:
            values[name] = _numeric(data, name, variance.label)
        else:
            values[name] = _labels(data[name])
    variance.bind(values, layout.order)
    return {k: v for k, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.number)}


def _labels(column: pd.Series) -> np.ndarray:
    """A column's values as an array; a categorical one (no missing value) as its
    categories indexed by its codes, the array ``Categorical.to_numpy`` forms, without
    materialising (pyarrow-backed) labels row by row (0.2 ms of Orthodont's fit)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        factor = column.array  # the Categorical itself: no accessor, no Series of codes
        codes = factor.codes
        if codes.size and codes.min() >= 0:
            return np.asarray(factor.categories)[codes]
    return column.to_numpy()


def check_structures(correlation: object, variance: object) -> None:
    """The two arguments are structures of the right kinds (or None)."""
    if correlation is not None and not isinstance(correlation, ResidualCorrelation):
        raise ArgumentError(
            "correlation must be a structure such as mm.cor.AR1(), mm.cor.CAR1('time'), "
            f"mm.cor.CompSymm(), mm.cor.ARMA(p=1, q=1); got {type(correlation).__name__}"
        )
    if variance is not None and not isinstance(variance, VarianceFunction):
        raise ArgumentError(
            "a variance function must be mm.var.Ident, Power, Exp, Fixed or Combined; got "
            f"{type(variance).__name__}"
        )


def _drop_incomplete(table: ColumnTable, columns: list[str]) -> pd.DataFrame:
    """The table's frame without the rows with a missing value in a column only the
    structures read, with a count (the user's frame is not modified)."""
    data = table.frame
    if not columns:
        return data
    missing = np.zeros(len(data), dtype=bool)
    for name in columns:  # column by column: no sub-frame (1 ms on these small data)
        missing |= missing_mask(table[name])
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} row(s) with missing values in "
            f"{', '.join(columns)} (read by the residual structure) dropped",
            RowsDroppedWarning,
            stacklevel=4,
        )
        return data.loc[~missing]
    return data


def _theta_start(rp: ResidualProblem) -> tuple[np.ndarray, np.ndarray | None]:
    """Moment estimates of theta ignoring the structure (lme4's start if unusable)."""
    template = rp.moment_problem  # (one scalar term: without building the LmmProblem)
    try:
        x0, step = moment_start(template)
    except (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError):
        return template.theta_start(), None
    if not (np.isfinite(x0).all() and np.isfinite(step).all() and (step > 0).all()):
        return template.theta_start(), None
    # the structure moves theta away from the moment estimates: steps of a fifth of each
    # (BodyWeight with CAR(1): 120 evaluations, against 256 with the moment start's own
    # small steps for vector terms)
    return x0, 0.2 * np.maximum(np.abs(x0), 0.1)


def _better(first: ResidualOptimum, second: ResidualOptimum) -> ResidualOptimum:
    """The optimum with the lower objective, counting both searches' evaluations."""
    best = second if second.objective < first.objective else first
    total = first.result.n_evaluations + second.result.n_evaluations
    return dataclasses.replace(best, result=dataclasses.replace(best.result, n_evaluations=total))


def lmer_residual(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool,
    correlation: ResidualCorrelation | None,
    variance: VarianceFunction | None,
    offset=None,
    contrasts=None,
    data_name: str | None = None,
) -> ResidualLmerFit:
    """Fit a linear mixed model with structured residual covariance (see
    :func:`mixedmodels.api.lmer`)."""
    check_structures(correlation, variance)
    # the fit binds its own copies to the data (levels, bounds): a structure object the
    # user passes to several fits is never shared between them
    correlation, variance = copy.deepcopy(correlation), copy.deepcopy(variance)
    reml = check_bool(reml, "reml")
    try:
        data = as_pandas(data)
    except DataError as exc:
        raise DataError(
            "correlation= and variance functions need the data in memory as a DataFrame "
            f"(pandas, polars or a pyarrow Table), not {type(data).__name__}"
        ) from exc
    columns = extra_columns(correlation, variance)
    check_columns(data, columns)
    table = ColumnTable(data)  # each column read from pandas once (~20 us a read)
    data = _drop_incomplete(table, columns)
    if columns and not data.index.is_unique:
        # the structures' columns are matched to the design's rows by label
        data = data.reset_index(drop=True)
    if data is not table.frame:
        table = ColumnTable(data)
    design = build_design(formula, data, offset=offset, contrasts=contrasts, table=table)
    if design.n_dropped:
        warnings.warn(
            f"{design.n_dropped} row(s) with missing values dropped",
            RowsDroppedWarning,
            stacklevel=3,
        )
    frame = structure_frame(design, data, columns)
    source = table if frame is data else ColumnTable(frame)
    layout, label = residual_layout(design, correlation, source)
    values = variance_values(source, variance, layout)
    y = design.y if design.offset is None else design.y - design.offset
    blocks = [t.block for t in design.terms]
    rp = ResidualProblem(blocks, design.X, y, layout, correlation, variance, values, reml, label)
    if isinstance(correlation, CompoundSymmetry):
        correlation.bind_size(layout.max_size)
    # one BLAS-thread context for the whole search (threadpoolctl's set-and-restore costs
    # ~0.2 ms; the start's and the search's own contexts nest in it for free)
    with residual_blas(rp):
        u0 = [correlation.start(layout)] if correlation is not None else []
        u0 += [variance.start()] if variance is not None else []
        theta0, theta_step = _theta_start(rp)
        x_default = np.concatenate([theta0, *u0])
        x0 = correlation_start(rp, x_default)
        optimum = optimize_residual(rp, x0, theta_step=theta_step)
        if not np.array_equal(x0, x_default) and is_singular(
            optimum.solution.theta, rp.theta_lower_bounds()
        ):
            # a singular end from the residuals' start is checked against the search from
            # the structure's own start (theta = 0 is a stationary point of the profiled
            # objective: a search that reaches it can stay), in a problem of its own (a
            # fitted-value covariate is the search's)
            again = optimize_residual(rp.with_response(rp.y), x_default, theta_step=theta_step)
            optimum = _better(optimum, again)
            rp = optimum.rp
    fit = ResidualLmerFit(design, rp, optimum, data_name)
    if not optimum.result.converged:
        warnings.warn(f"optimizer: {optimum.result.message}", ConvergenceWarning, stacklevel=3)
    if fit.is_singular:
        warnings.warn("boundary (singular) fit", SingularFitWarning, stacklevel=3)
    return fit
