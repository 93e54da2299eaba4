"""The checks at the data boundary: what a column or vector must be before it is used.

One place decides what counts as missing (NA of every pandas dtype), what is numeric, and
what may never reach the numeric engine (infinite values, magnitudes whose squares
overflow).  Each check raises a :class:`~mixedmodels.errors.DataError` that names the
column or argument and counts the rows, or returns a mask for rows to drop and count.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mixedmodels.errors import ColumnNotFoundError, DataError, NonIntegerResponseWarning

#: Largest magnitude a response, predictor, weight or offset value may have: the engine
#: squares and sums them, and 1e100 squared is far from overflowing while no measurement
#: comes near it.
MAX_MAGNITUDE = 1e100
#: Smallest largest-magnitude a nonzero column may have: squares of smaller numbers
#: underflow to zero in the cross products.
MIN_MAGNITUDE = 1e-100


def as_pandas(data: object, what: str = "data") -> pd.DataFrame:
    """``data`` as a pandas DataFrame: itself, or a polars DataFrame, a pyarrow Table or any
    other eager dataframe that narwhals (the dataframe-agnostic layer) knows, converted once
    (categorical and enum columns keep their level order, as unordered factors).

    Raises
    ------
    DataError
        For anything that is not a dataframe (a dict, an array, a lazy frame).
    """
    if isinstance(data, pd.DataFrame):
        return data
    try:
        import narwhals as nw

        frame = nw.from_native(data, eager_only=True)
    except (ImportError, TypeError):
        frame = None
    if frame is None:
        raise DataError(
            f"{what} must be a pandas DataFrame (or a polars DataFrame, a pyarrow Table), "
            f"got {type(data).__name__}"
        )
    out = frame.to_pandas()
    # a polars Enum or Categorical is a factor with that level order, not R's ordered factor
    for name, dtype in frame.schema.items():
        if isinstance(dtype, nw.Enum | nw.Categorical) and out[name].cat.ordered:
            out[name] = out[name].cat.as_unordered()
    return out


def check_frame(data: object, what: str = "data") -> pd.DataFrame:
    """``data`` as a pandas DataFrame (:func:`as_pandas`) with uniquely named columns.

    Raises
    ------
    DataError
        For anything else (a dict, an array), or duplicated column names (naming them).
    """
    data = as_pandas(data, what)
    if data.columns.is_unique:  # cached by pandas: no pass over the names
        return data
    duplicated = data.columns[data.columns.duplicated()]
    if len(duplicated):
        names = ", ".join(repr(c) for c in dict.fromkeys(duplicated))
        raise DataError(f"{what} has duplicated column names: {names}; rename them")
    return data


def missing_mask(column: pd.Series) -> np.ndarray:
    """True where a value is missing, for every pandas dtype: numpy NaN, ``pd.NA`` in the
    nullable ``boolean``, ``Int64``, ``Float64`` and ``string`` dtypes, ``None`` in object
    columns, NaT, an unknown category."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return column.array.codes < 0  # the codes themselves: no Series built
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iub":
            return np.zeros(len(column), dtype=bool)
        if dtype.kind == "f":
            return np.isnan(column.to_numpy())
    mask = np.array(column.array.isna(), dtype=bool)  # (Series.isna's 20 us: a Series)
    if is_numeric(column):  # a nullable float may hold NaN besides NA
        mask |= np.isnan(numeric_values(column))
    return mask


def plain_columns(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``frame`` with its nullable columns among ``names`` (``boolean``, ``Int64``,
    ``Float64``, ``string``; no missing values left in them) as plain numpy columns, which
    every builder reads alike; ``frame`` itself when there are none."""
    converted = {}
    for name in names:
        values = plain_values(frame[name])
        if values is not None:
            converted[name] = values
    if not converted:
        return frame
    out = frame.loc[:, list(dict.fromkeys(names))].copy()
    for name, values in converted.items():
        out[name] = values
    return out


def plain_values(column: pd.Series) -> np.ndarray | None:
    """A nullable column (``boolean``, ``Int64``, ``Float64``, ``string``) as a plain numpy
    array (:func:`plain_columns`); None for a column that needs no conversion."""
    dtype = column.dtype
    if not needs_plain(dtype):
        return None
    if pd.api.types.is_bool_dtype(dtype):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return column.to_numpy(dtype=float, na_value=np.nan)
    return column.to_numpy(dtype=object, na_value=None)


def needs_plain(dtype: object) -> bool:
    """Whether :func:`plain_values` converts a column of ``dtype`` (a nullable one)."""
    if isinstance(dtype, (np.dtype, pd.CategoricalDtype)):
        return False
    return (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_integer_dtype(dtype)
        or pd.api.types.is_float_dtype(dtype)
        or (isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA)
    )


def is_numeric(column: pd.Series) -> bool:
    """Real numbers (numpy or nullable), not logicals, complex numbers or factors."""
    if isinstance(column.dtype, np.dtype):  # (pandas' dtype tests cost 15 us)
        return column.dtype.kind in "iuf"
    return (
        pd.api.types.is_numeric_dtype(column.dtype)
        and not pd.api.types.is_bool_dtype(column.dtype)
        and not pd.api.types.is_complex_dtype(column.dtype)
        and not isinstance(column.dtype, pd.CategoricalDtype)
    )


def check_model_column(column: pd.Series, name: str) -> None:
    """A :class:`DataError` for a column that cannot enter a model matrix or response:
    complex numbers, dates, times, durations, periods, intervals (each is fine as a
    grouping factor)."""
    dtype = column.dtype
    if pd.api.types.is_complex_dtype(dtype):
        raise DataError(f"column {name!r} holds complex numbers; a model needs real numbers")
    if dtype.kind in "mM" or isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype)):
        raise DataError(
            f"column {name!r} holds dates, times or durations ({dtype}); convert it to "
            "numbers (such as days since a start) or to a factor"
        )


def check_hashable_cells(column: pd.Series, name: str) -> None:
    """A :class:`DataError` naming ``column`` when its cells are lists, dicts or sets (such
    as JSON read into a frame): they can be neither numbers nor factor levels."""
    if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) not in _PLAIN_CELLS:
        try:
            pd.unique(column)
        except TypeError:
            raise DataError(
                f"column {name!r} holds {_unhashable_kind(column)} cells; a model needs "
                "numbers, text or missing values"
            ) from None


# object columns of these kinds (pandas.api.types.infer_dtype) hold hashable cells only
_PLAIN_CELLS = frozenset(
    {"string", "bytes", "integer", "floating", "mixed-integer-float", "boolean", "empty"}
)


def _unhashable_kind(column: pd.Series) -> str:
    """The type name of the first cell of ``column`` that cannot be hashed."""
    for value in column:
        try:
            hash(value)
        except TypeError:
            return type(value).__name__
    return "unhashable"


def numeric_values(column: pd.Series) -> np.ndarray:
    """A numeric column as float, missing values (of any kind) as NaN."""
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy(dtype=float)
    return column.to_numpy(dtype=float, na_value=np.nan)


def describe_dtype(column: pd.Series) -> str:
    """What a column holds, in words for an error message."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return "a factor (categorical)"
    if pd.api.types.is_bool_dtype(column.dtype):
        return "logical (boolean)"
    if pd.api.types.is_complex_dtype(column.dtype):
        return "complex numbers"
    if pd.api.types.is_string_dtype(column.dtype) or column.dtype == object:
        return "text"
    return f"of dtype {column.dtype}"


def _example_values(values: np.ndarray, rows: np.ndarray, index: pd.Index | None) -> str:
    """``rows 3, 17 (+2 more)`` for an error message."""
    where = np.flatnonzero(rows)
    labels = [str(index[i]) if index is not None else str(i) for i in where[:3]]
    more = f" (+{where.size - 3} more)" if where.size > 3 else ""
    shown = ", ".join(f"{lab} ({values[i]:g})" for lab, i in zip(labels, where[:3], strict=False))
    return f"{where.size} row(s): {shown}{more}"


def vector_argument(
    value: object, data: pd.DataFrame, what: str, *, positive: bool = False
) -> np.ndarray | None:
    """``weights`` or ``offset`` as one float per row (NaN where missing, to be dropped).

    A string names a numeric column of ``data``; anything else must be numbers, one per
    row.  Infinite values are an error (R's "NA/NaN/Inf in 'weights'"), and with
    ``positive`` so are zero and negative ones.

    Raises
    ------
    ColumnNotFoundError
        A name that is not a column.
    DataError
        A factor, logical or text column or array; the wrong length; infinite values.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise ColumnNotFoundError(f"{what} column {value!r} is not in the data")
        column = data[value]
        if not is_numeric(column):
            raise DataError(
                f"{what} column {value!r} must be numeric, but it is {describe_dtype(column)}"
            )
        values = numeric_values(column)
        label = f"{what} column {value!r}"
    else:
        series = value if isinstance(value, pd.Series) else _as_series(value, what)
        if series.ndim != 1 or len(series) != len(data):
            shape = getattr(value, "shape", (len(series),))
            raise DataError(
                f"{what} must have one value per row ({len(data)}), got shape {tuple(shape)}"
            )
        if not is_numeric(series):
            raise DataError(f"{what} must be numeric, but it is {describe_dtype(series)}")
        values = numeric_values(series)
        label = what
    infinite = np.isinf(values)
    if infinite.any():
        raise DataError(
            f"non-finite values (Inf or -Inf) in {label}: "
            + _example_values(values, infinite, data.index)
        )
    check_magnitude(values, label)
    if positive:
        bad = values <= 0
        if bad.any():
            raise DataError(
                f"{what} must be positive: {label} has zero or negative values in "
                + _example_values(values, bad, data.index)
            )
    return values


def _as_series(value: object, what: str) -> pd.Series:
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged input and the like
        raise DataError(f"{what} must be one number per row: {exc}") from exc
    if array.ndim != 1:
        raise DataError(f"{what} must be one number per row, got shape {array.shape}")
    if array.dtype == object:  # None and numbers: let pandas decide what they are
        return pd.Series(list(array)).infer_objects()
    return pd.Series(array)


def check_magnitude(values: np.ndarray, label: str) -> None:
    """A :class:`DataError` when finite values are too large for the engine's arithmetic."""
    finite = np.isfinite(values)
    if not finite.any():
        return
    largest = float(np.max(np.abs(values[finite])))
    if largest > MAX_MAGNITUDE:
        raise DataError(
            f"{label} has values as large as {largest:.3g} in magnitude; beyond "
            f"{MAX_MAGNITUDE:g} the computations overflow: rescale it"
        )


def nan_cells(matrix: np.ndarray, names: Sequence[str], counts: dict[str, int]) -> np.ndarray:
    """Rows of a built vector or matrix holding NaN (a transform's NaN, such as ``log`` of
    a negative number); each column's count is added to ``counts`` under its name."""
    values = matrix.reshape(matrix.shape[0], -1)
    nan = np.isnan(values)
    for j in np.flatnonzero(nan.any(axis=0)):
        label = f"{_column_name(names, int(j))} (NaN produced)"
        counts[label] = counts.get(label, 0) + int(nan[:, j].sum())
    return nan.any(axis=1)


def checked_nan_rows(
    matrix: np.ndarray,
    names: Sequence[str],
    what: str,
    index: pd.Index | None,
    counts: dict[str, int],
) -> np.ndarray:
    """:func:`check_finite_columns` and then :func:`nan_cells` of a built vector or matrix,
    with one pass over the values when they are all finite and of a usable magnitude (the
    usual case): the columns' largest magnitudes decide, and only when one is not finite
    or out of range are the two checks run to name the column and count its rows."""
    values = matrix.reshape(matrix.shape[0], -1)
    if values.size:
        largest = np.abs(values).max(axis=0)  # NaN and inf propagate (without a warning)
        # (the columns' extremes first: the common case in two comparisons of floats)
        top, bottom = float(largest.max()), float(largest.min())
        if top <= MAX_MAGNITUDE and bottom >= MIN_MAGNITUDE:
            return np.zeros(values.shape[0], dtype=bool)
        usable = (largest <= MAX_MAGNITUDE) & ((largest == 0) | (largest >= MIN_MAGNITUDE))
        if usable.all():
            return np.zeros(values.shape[0], dtype=bool)
    check_finite_columns(matrix, names, what, index)
    return nan_cells(matrix, names, counts)


def check_finite_columns(
    matrix: np.ndarray, names: Sequence[str], what: str, index: pd.Index | None = None
) -> None:
    """A :class:`DataError` naming the first column of ``matrix`` with infinite values
    (from the data or from a transform such as ``log(0)``) and counting its rows; also one
    for values too large for the engine."""
    if matrix.size == 0:
        return
    values = matrix.reshape(matrix.shape[0], -1)
    bad_columns = np.flatnonzero(np.isinf(values).any(axis=0))
    if bad_columns.size:
        j = int(bad_columns[0])
        name = _column_name(names, j)
        rows = np.isinf(values[:, j])
        others = ""
        if bad_columns.size > 1:
            rest = [_column_name(names, k) for k in bad_columns[1:4]]
            others = f"; also in {', '.join(repr(r) for r in rest)}"
        raise DataError(
            f"non-finite values (Inf or -Inf) in {what} {name!r}: "
            f"{_example_values(values[:, j], rows, index)}{others}"
        )
    with np.errstate(invalid="ignore"):
        huge = np.flatnonzero((np.abs(values) > MAX_MAGNITUDE).any(axis=0))
    if huge.size:
        j = int(huge[0])
        check_magnitude(values[:, j], f"{what} {_column_name(names, j)!r}")
    with np.errstate(invalid="ignore"):
        largest = np.nanmax(np.abs(values), axis=0, initial=0.0) if values.size else []
    for j, top in enumerate(largest):
        if 0 < top < MIN_MAGNITUDE:
            raise DataError(
                f"{what} {_column_name(names, j)!r} has values no larger than {top:.3g} in "
                f"magnitude; below {MIN_MAGNITUDE:g} their squares underflow: rescale it"
            )


def _column_name(names: Sequence[str], j: int) -> str:
    return str(names[j]) if j < len(names) else f"column {j + 1}"


#: families whose response is a count (R's dpois / dnbinom warn on non-integer x)
COUNT_FAMILIES = frozenset({"poisson", "poisson_tmb", "negative_binomial", "nbinom1", "nbinom2"})


def warn_non_integer(
    family: str, y: np.ndarray, trials: np.ndarray | None, weights: np.ndarray | None, text: str
) -> None:
    """R's warnings for counts that are not whole numbers.

    poisson and negative binomial: ``y`` not within ``1e-7 max(1, |y|)`` of an integer (R's
    ``dpois`` / ``dnbinom`` "non-integer x"); binomial: successes ``y * trials * weights``
    more than 1e-3 from an integer (R's ``binomial()$initialize``: "non-integer
    #successes in a binomial glm!").
    """
    if family in COUNT_FAMILIES:
        off = np.abs(y - np.round(y)) > 1e-7 * np.maximum(1.0, np.abs(y))
        if off.any():
            i = int(np.flatnonzero(off)[0])
            warnings.warn(
                f"non-integer counts in the {family} response {text!r}: {int(off.sum())} "
                f"value(s), e.g. {y[i]:g} (R: non-integer x = {y[i]:f})",
                NonIntegerResponseWarning,
                stacklevel=4,
            )
    elif family == "binomial":
        m = np.ones_like(y)
        if trials is not None:
            m = m * trials
        if weights is not None:
            m = m * weights
        successes = m * y
        off = np.abs(successes - np.round(successes)) > 1e-3
        if off.any():
            i = int(np.flatnonzero(off)[0])
            warnings.warn(
                f"non-integer numbers of successes in the binomial response {text!r}: "
                f"{int(off.sum())} row(s), e.g. {successes[i]:g} (R: non-integer "
                "#successes in a binomial glm!)",
                NonIntegerResponseWarning,
                stacklevel=4,
            )


def new_response(value: object, n: int, name: str = "y") -> np.ndarray:
    """A replacement response for a refit: ``n`` finite numbers, as float.

    Raises
    ------
    DataError
        Text, the wrong length, or missing / infinite values (named by position).
    """
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"new response {name!r} must be numbers: {exc}") from exc
    if array.shape != (n,):
        raise DataError(f"new response {name!r} must have {n} values, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        where = ", ".join(str(i) for i in np.flatnonzero(bad)[:5])
        raise DataError(
            f"new response {name!r} has {int(bad.sum())} missing or non-finite value(s) at "
            f"position(s) {where}{' ...' if bad.sum() > 5 else ''}; a refit keeps the fitted "
            "rows, so every value is needed"
        )
    return array


def degenerate_glm_response(y: np.ndarray, variance) -> float | None:
    """The value of a response that is the same in every row at a point where the family's
    ``variance`` vanishes (all 0 for poisson, all 0 or all 1 for binomial): its fixed
    effects diverge (complete separation).  None for any other response."""
    if y.size == 0 or np.ptp(y) != 0:
        return None
    value = float(y[0])
    vanishes = float(np.asarray(variance(np.array([value])))[0]) <= 1e-12  # clipped at eps
    return value if vanishes else None
