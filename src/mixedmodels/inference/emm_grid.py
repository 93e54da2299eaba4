"""The reference grid of estimated marginal means, as R's emmeans builds it.

Every data column the fixed part (and its ``offset(...)`` terms) reads is a grid variable:

* a factor (categorical, text, logical column, or a numeric column the formula wraps in
  ``factor()``/``as.factor()``/``ordered()``) takes each of its levels present in the rows
  used by the fit;
* a numeric covariate with at most two distinct values is kept at those values (emmeans'
  ``cov.keep = "2"``); any other covariate is reduced to one value, its mean (``cov_reduce``);
* ``at`` overrides both: given values of a covariate, or a subset of a factor's levels;
* the model's offset is held at its mean (emmeans' ``.offset.`` for merMod).

The grid is every combination of these values, the first variable varying fastest.  Its
model-matrix rows come from the fit's own builder, so transformations (``I(x^2)``,
``poly``, ``scale``) and codings are those of the fit.  Each cell also carries ``.wgt.``:
the number of data rows (or the sum of prior weights) with its factor combination, used
by ``weights="proportional"`` and friends.  Marginal means average the rows over the
variables not asked for (:func:`average_grid`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla

from mixedmodels.design.evaluate import level_label
from mixedmodels.design.model import ModelDesign
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.errors import ArgumentError, DataError, NewLevelError
from mixedmodels.formula.expr import Call, Node, variables

_FACTOR_CALLS = frozenset({"factor", "as.factor", "ordered", "as.ordered"})
_WEIGHTS = ("equal", "proportional", "outer", "cells", "flat")
ESTIMABILITY_TOL = 1e-8  # emmeans' estble.tol
OFFSET = ".offset."


@dataclass
class GridVariable:
    """One variable of the reference grid.

    ``values`` are what the model-matrix builder is given (raw data values); ``labels``
    name them as R prints them; ``numeric`` says the summary shows numbers (covariates and
    numeric columns coerced by ``factor()``), not factor labels.
    """

    name: str
    values: list
    labels: list[str]
    numeric: bool
    counted: bool  # part of the .wgt. factor combination


@dataclass
class ReferenceGrid:
    """All cells of the grid: variables, model-matrix rows, weights and estimability."""

    variables: list[GridVariable]
    full: np.ndarray  # (cells, p_full) model-matrix rows, dropped columns included
    keep: np.ndarray  # the fit's kept (estimated) columns of ``full``
    basis: np.ndarray | None  # null basis of the full model matrix (None at full rank)
    weights: np.ndarray  # .wgt. of each cell
    offset: np.ndarray | None  # formula offset of each cell

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    @property
    def dims(self) -> list[int]:
        return [len(v.values) for v in self.variables]

    def variable(self, name: str) -> GridVariable:
        for v in self.variables:
            if v.name == name:
                return v
        raise ArgumentError(
            f"{name!r} is not a variable of the reference grid (its variables: "
            f"{', '.join(self.names) or 'none'})"
        )


# ---------------------------------------------------------------------------- variables
def _grid_columns(design: ModelDesign) -> tuple[list[str], set[str]]:
    """The data columns the fixed part and its offsets read, and those it makes factors."""
    texts = [design.formula.fixed, *design.formula.offsets]
    names: list[str] = []
    coerced: set[str] = set()
    for text in texts:
        names.extend(v for v in variables_of(text) if v not in names)
    for node in design.fixed_builder.structure.variables:
        coerced.update(_coerced_columns(node))
    return names, coerced


def _coerced_columns(node: Node) -> set[str]:
    """Columns read inside ``factor(...)``-like calls of a variable expression."""
    if isinstance(node, Call) and node.func in _FACTOR_CALLS:
        return set(variables(node))
    return set()


def _factor_levels(column: pd.Series) -> tuple[list, list[str]]:
    """Levels present, in R's order: a categorical's category order, sorted labels for
    text, FALSE before TRUE for logicals; as (raw values, labels)."""
    present = column.dropna()
    if isinstance(column.dtype, pd.CategoricalDtype):
        used = set(present.cat.codes.tolist())
        cats = [c for i, c in enumerate(column.cat.categories) if i in used]
        return cats, [level_label(c) for c in cats]
    uniques = pd.unique(present)
    by_label = sorted(((level_label(v), v) for v in uniques), key=lambda t: t[0])
    if pd.api.types.is_bool_dtype(column.dtype):
        by_label = sorted(((level_label(v), v) for v in uniques), key=lambda t: bool(t[1]))
    return [v for _, v in by_label], [lab for lab, _ in by_label]


def _is_numeric(column: pd.Series) -> bool:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return False
    return pd.api.types.is_numeric_dtype(dtype)


def _as_list(value) -> list:
    if isinstance(value, str) or np.ndim(value) == 0:
        return [value]
    return list(value)


def _grid_variable(
    name: str,
    column: pd.Series,
    coerced: bool,
    at: Mapping[str, object],
    cov_reduce: Callable[[np.ndarray], float],
) -> GridVariable:
    numeric = _is_numeric(column)
    if numeric and not coerced:
        x = column.to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if name in at:
            try:
                values = [float(v) for v in _as_list(at[name])]
            except (TypeError, ValueError):
                raise ArgumentError(
                    f"at[{name!r}] must be finite numbers ({name!r} is a numeric covariate), "
                    f"got {at[name]!r}"
                ) from None
            if not values or not np.all(np.isfinite(values)):
                raise ArgumentError(f"at[{name!r}] must be finite numbers, got {at[name]!r}")
            return GridVariable(name, values, [level_label(v) for v in values], True, False)
        unique = np.unique(x)
        if len(unique) <= 2:  # emmeans' cov.keep = "2"
            values = unique.tolist()
            return GridVariable(name, values, [level_label(v) for v in values], True, True)
        value = float(cov_reduce(x))
        if not np.isfinite(value):
            raise ArgumentError(f"cov_reduce gave {value} for covariate {name!r}")
        return GridVariable(name, [value], [level_label(value)], True, False)
    if numeric:  # factor(x) of a numeric column: its sorted distinct values
        x = column.to_numpy(dtype=float)
        values = np.unique(x[~np.isnan(x)]).tolist()
        labels = [level_label(v) for v in values]
    else:
        values, labels = _factor_levels(column)
    if name in at:
        wanted = [level_label(v) for v in _as_list(at[name])]
        unknown = [w for w in wanted if w not in labels]
        if unknown:
            raise NewLevelError(
                f"at[{name!r}] names level(s) {', '.join(map(repr, unknown))} that the fit "
                f"did not see (its levels: {', '.join(labels)})"
            )
        keep = [labels.index(w) for w in wanted]
        values, labels = [values[i] for i in keep], [labels[i] for i in keep]
    return GridVariable(name, values, labels, numeric, True)


# ------------------------------------------------------------------------------- cells
def _cell_index(dims: Sequence[int]) -> np.ndarray:
    """(cells, k) level indices, the first variable varying fastest (R's expand.grid)."""
    if not dims:
        return np.zeros((1, 0), dtype=np.int64)
    grids = np.meshgrid(*[np.arange(d) for d in dims], indexing="ij")
    return np.stack([g.ravel(order="F") for g in grids], axis=1)


def _cell_frame(
    variables: list[GridVariable], index: np.ndarray, data: pd.DataFrame
) -> pd.DataFrame:
    """The grid as data for the fit's model-matrix builder (column types as in the data)."""
    columns = {}
    for j, v in enumerate(variables):
        source = data[v.name]
        raw = [v.values[i] for i in index[:, j]]
        if isinstance(source.dtype, pd.CategoricalDtype):
            columns[v.name] = pd.Categorical(
                raw, categories=source.cat.categories, ordered=source.cat.ordered
            )
        elif v.numeric:
            columns[v.name] = np.asarray(raw, dtype=float)
        else:
            columns[v.name] = pd.Series(raw, dtype=source.dtype)
    return pd.DataFrame(columns, index=pd.RangeIndex(index.shape[0]))


def _cell_weights(
    variables: list[GridVariable],
    index: np.ndarray,
    data: pd.DataFrame,
    prior: np.ndarray | None,
) -> np.ndarray:
    """.wgt.: rows (or prior weights) of the data with each cell's counted variables."""
    counted = [j for j, v in enumerate(variables) if v.counted]
    if not counted:
        return np.ones(index.shape[0])
    n = len(data)
    codes = np.zeros((n, len(counted)), dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    for c, j in enumerate(counted):
        v = variables[j]
        column = data[v.name]
        if v.numeric:
            x = column.to_numpy(dtype=float)
            pos = pd.Index(v.values).get_indexer(x)
        else:
            labels = [level_label(x) if pd.notna(x) else None for x in column.tolist()]
            pos = pd.Index(v.labels).get_indexer(labels)
        ok &= pos >= 0
        codes[:, c] = pos
    dims = [len(variables[j].values) for j in counted]
    table = np.zeros(dims)
    w = np.ones(n) if prior is None else prior
    np.add.at(table, tuple(codes[ok].T), w[ok])
    return table[tuple(index[:, counted].T)]


def _null_basis(X: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis of the null space of the full model matrix (None at full rank)."""
    if X.shape[1] == 0:
        return None
    _, s, vt = sla.svd(X, full_matrices=True)
    tol = max(X.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)
    rank = int(np.sum(s > tol))
    if rank == X.shape[1]:
        return None
    return vt[rank:].T


def estimable(full_rows: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """emmeans' (estimability's) test: ``||N'l||^2 <= tol ||l||^2``."""
    if basis is None:
        return np.ones(full_rows.shape[0], dtype=bool)
    proj = np.sum((full_rows @ basis) ** 2, axis=1)
    return proj <= ESTIMABILITY_TOL * np.maximum(np.sum(full_rows**2, axis=1), 1e-300)


def reference_grid(
    design: ModelDesign,
    at: Mapping[str, object] | None = None,
    cov_reduce: Callable[[np.ndarray], float] | None = None,
    shift: tuple[str, float] | None = None,
) -> ReferenceGrid:
    """The reference grid of a fit's design.

    Parameters
    ----------
    design : ModelDesign
        ``fit.design``; its ``data`` are the rows the fit used.
    at : mapping, optional
        Values of covariates, or subsets of factor levels, by column name.
    cov_reduce : callable, optional
        Reduces a covariate with more than two values to one (default: the mean).
    shift : (name, h), optional
        Model-matrix rows at ``name + h`` instead of ``name`` (for slopes).
    """
    at = dict(at or {})
    data = design.data
    if data is None:
        raise DataError("the fit keeps no data, so no reference grid can be built")
    names, coerced = _grid_columns(design)
    unknown = [k for k in at if k not in names and k != OFFSET]
    if unknown:
        raise ArgumentError(
            f"at names {', '.join(map(repr, unknown))}, not a variable of the fixed part "
            f"(its variables: {', '.join(names) or 'none'})"
        )
    reduce = cov_reduce if cov_reduce is not None else np.mean
    grid_vars = [_grid_variable(n, data[n], n in coerced, at, reduce) for n in names]
    dims = [len(v.values) for v in grid_vars]
    index = _cell_index(dims)
    frame = _cell_frame(grid_vars, index, data)
    if shift is not None:
        frame[shift[0]] = frame[shift[0]] + shift[1]
    full = np.asarray(design.fixed_builder.build(frame), dtype=float)
    basis = _null_basis(design.fixed_builder.build(data)) if design.dropped_fixed else None
    return ReferenceGrid(
        variables=grid_vars,
        full=full,
        keep=np.asarray(design.fixed_keep),
        basis=basis,
        weights=_cell_weights(grid_vars, index, data, design.weights),
        offset=_grid_offset(design, at, reduce, index.shape[0]),
    )


def _grid_offset(design: ModelDesign, at, reduce, n_cells: int) -> np.ndarray | None:
    """emmeans for merMod: the model's offset (``offset(...)`` terms and the ``offset``
    argument together) is a covariate of its own, ``.offset.``, reduced to its mean;
    ``at={".offset.": value}`` sets it (``at`` on the offset's variables does not)."""
    off = design.offset
    if off is None or not np.any(off != 0):
        return None
    if OFFSET in at:
        value = float(np.asarray(at[OFFSET], dtype=float).ravel()[0])
    else:
        value = float(reduce(off))
    return np.full(n_cells, value)


# ---------------------------------------------------------------------------- averaging
@dataclass
class Averaged:
    """Marginal rows: one per combination of the requested variables (first fastest)."""

    names: list[str]
    index: np.ndarray  # (rows, len(names)) level indices
    full: np.ndarray  # averaged model-matrix rows, dropped columns included
    offset: np.ndarray | None
    averaged_over: list[str]


def _as_axes(values: np.ndarray, dims: list[int]) -> np.ndarray:
    """Cells (first variable fastest) x trailing shape -> array with one axis per variable."""
    k = len(dims)
    tail = values.shape[1:]
    arr = values.reshape(tuple(reversed(dims)) + tail)
    return arr.transpose(tuple(reversed(range(k))) + tuple(range(k, k + len(tail))))


def _averaging_weights(kind: str, wgt: np.ndarray, keep: list[int], avg: list[int]) -> np.ndarray:
    """Weights with the axes of ``wgt`` (one per grid variable), broadcast over ``keep``."""
    if kind == "equal":
        return np.ones_like(wgt)
    if kind == "proportional":
        return np.sum(wgt, axis=tuple(keep), keepdims=True) * np.ones_like(wgt)
    if kind == "outer":
        margin = np.sum(wgt, axis=tuple(keep), keepdims=True)
        total = margin.sum()
        out = np.ones_like(margin)
        for a in avg:
            others = tuple(i for i in range(wgt.ndim) if i != a)
            out = out * np.sum(margin, axis=others, keepdims=True) / total
        return out * np.ones_like(wgt)
    if kind == "cells":
        return wgt
    return (wgt > 0).astype(float)  # flat


def average_grid(
    grid: ReferenceGrid, facs: Sequence[str], weights: str | Sequence[float] = "equal"
) -> Averaged:
    """Average the grid's rows over every variable not in ``facs`` (emmeans' ``emmeans``).

    ``weights``: "equal" (each combination of the averaged variables alike, emmeans'
    default), "proportional" (their marginal frequencies in the data), "outer" (products
    of each one's marginal frequencies), "cells" (the cell frequencies within each
    combination), "flat" (equal over cells with data), or numbers, one per combination
    of the averaged variables (first varying fastest).
    """
    for name in facs:
        grid.variable(name)
    dims = grid.dims
    k = len(dims)
    keep = [grid.names.index(f) for f in facs]
    avg = [i for i in range(k) if i not in keep and dims[i] > 1]
    rest = [i for i in range(k) if i not in keep]  # averaged, including one-value axes
    wgt = _as_axes(grid.weights, dims)
    if np.all(np.abs(wgt) < 1e-12):
        wgt = wgt + 1
    if isinstance(weights, str):
        if weights not in _WEIGHTS:
            raise ArgumentError(f"weights must be one of {', '.join(_WEIGHTS)}; got {weights!r}")
        w = _averaging_weights(weights, wgt, keep, avg)
    else:
        numbers = np.asarray(weights, dtype=float).ravel()
        shape = [dims[i] for i in avg]
        if numbers.size != int(np.prod(shape)) or not np.all(np.isfinite(numbers)):
            raise ArgumentError(
                f"weights must be {int(np.prod(shape))} finite numbers, one per combination of "
                f"{', '.join(grid.names[i] for i in avg) or 'nothing'}; got {numbers.size}"
            )
        block = _as_axes(numbers[:, None], shape)[..., 0]
        full_shape = [dims[i] if i in avg else 1 for i in range(k)]
        w = np.broadcast_to(block.reshape(full_shape), dims).astype(float)
    order = keep + rest

    def reduce(values: np.ndarray) -> np.ndarray:
        arr = _as_axes(values, dims)
        ww = np.broadcast_to(w, dims).transpose(order)
        arr = arr.transpose(order + list(range(k, arr.ndim)))
        n_keep = len(keep)
        wsum = ww.sum(axis=tuple(range(n_keep, k)))
        extra = (None,) * (arr.ndim - k)
        num = np.sum(arr * ww[(...,) + extra], axis=tuple(range(n_keep, k)))
        out = num / wsum[(...,) + extra]
        # rows with the first requested variable fastest
        lead = tuple(reversed(range(n_keep))) + tuple(range(n_keep, out.ndim))
        return out.transpose(lead).reshape((-1,) + values.shape[1:])

    return Averaged(
        names=list(facs),
        index=_cell_index([dims[i] for i in keep]),
        full=reduce(grid.full),
        offset=None if grid.offset is None else reduce(grid.offset[:, None])[:, 0],
        averaged_over=[grid.names[i] for i in avg],
    )
