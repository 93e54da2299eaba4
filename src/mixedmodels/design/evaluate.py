"""The interpreter of formula expressions: a syntax tree and a DataFrame in, values out.

It knows the column references, numbers, R's arithmetic, comparison and logical operators,
and the functions of :data:`mixedmodels.formula.functions.SIGNATURES`, nothing else: no
Python is evaluated, so a formula is safe to accept from an untrusted source.

Values are one of four kinds: :class:`Numeric` (float, NaN for missing), :class:`Logical`
(0/1 as float, NaN for missing), :class:`Factor` (integer codes into labelled levels, -1 for
missing) and :class:`Matrix` (several numeric columns, such as ``poly(x, 2)``).  Transforms
that learn from the data (``poly``, ``scale``, ``center``) keep what they learned in a
``state`` dict, so that new data are transformed as the fitted data were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mixedmodels.design.contrasts import CODINGS, orthogonal_polynomials, polynomials_from
from mixedmodels.errors import ColumnNotFoundError, DataError, FormulaError
from mixedmodels.formula.expr import (
    CONSTANTS,
    Binary,
    Call,
    Name,
    Node,
    Number,
    Paren,
    String,
    Unary,
    deparse,
    r_number,
)
from mixedmodels.formula.functions import SIGNATURES, bind_arguments, check_call


@dataclass
class Numeric:
    """Numbers: shape ``(n,)`` or a scalar (shape ``()``)."""

    values: np.ndarray


@dataclass
class Logical:
    """R's logical: 0.0/1.0, NaN for NA; shape ``(n,)`` or ``()``."""

    values: np.ndarray


@dataclass
class Factor:
    """Codes into ``levels`` (-1 for missing); ``coding`` set by ``C()``."""

    codes: np.ndarray
    levels: list[str]
    ordered: bool = False
    coding: str | None = None
    from_numbers: bool = False  # levels are numbers (they sort as numbers)


@dataclass
class Matrix:
    """Several numeric columns, named ``<expression><suffix>``."""

    values: np.ndarray
    suffixes: list[str] = field(default_factory=list)


Value = Numeric | Logical | Factor | Matrix


class ColumnTable:
    """The columns of one DataFrame, each read from pandas once.

    Building a model reads a column several times (its missing values, the response, the
    fixed-effect matrix, each random-effect term, the grouping codes); every pandas column
    access builds a new Series (tens of microseconds), so the table keeps each Series, and
    each column's formula value (:func:`column_value`), the first time it is asked for.
    Where a DataFrame is only read by ``len``, ``columns``, ``index`` and ``table[name]``
    (the interpreter, the model-matrix builders, the grouping codes) a table stands in for
    it.  The values are shared: nothing that reads them may write into them.

    Parameters
    ----------
    frame : DataFrame
        Not copied and never modified.
    columns : dict, optional
        Columns of ``frame`` read already (name -> its Series, each a single column).
    """

    __slots__ = ("frame", "_series", "_values", "_rows")

    def __init__(self, frame: pd.DataFrame,
                 columns: Mapping[object, pd.Series] | None = None) -> None:
        self.frame = frame
        self._series: dict[object, pd.Series] = dict(columns) if columns else {}
        self._values: dict[object, Value] = {}
        self._rows: int | None = None

    def __len__(self) -> int:
        """The frame's rows (counted once: pandas' ``len`` costs ~1 us, asked a dozen
        times a build)."""
        if self._rows is None:
            self._rows = len(self.frame)
        return self._rows

    @property
    def columns(self) -> pd.Index:
        return self.frame.columns

    def __contains__(self, name: object) -> bool:
        """Whether the frame has a column ``name`` (those read already without asking
        pandas)."""
        return name in self._series or name in self.frame.columns

    @property
    def index(self) -> pd.Index:
        return self.frame.index

    def __getitem__(self, name: object) -> pd.Series:
        """The column ``name`` (a :class:`DataError` when several columns have that name)."""
        column = self._series.get(name)
        if column is None:
            column = self.frame[name]
            if isinstance(column, pd.DataFrame):
                raise DataError(f"the data have more than one column named {name!r}")
            self._series[name] = column
        return column

    def value(self, name: str) -> Value:
        """The column ``name`` as a formula value (:func:`column_value`), converted once."""
        value = self._values.get(name)
        if value is None:
            value = column_value(self[name], name)
            self._values[name] = value
        return value


def as_table(data: pd.DataFrame | ColumnTable) -> ColumnTable:
    """``data`` as a :class:`ColumnTable` (itself when it is one)."""
    return data if isinstance(data, ColumnTable) else ColumnTable(data)


def level_label(value: object) -> str:
    """A level as R labels it: numbers as R prints them (``2``, not ``2.0``)."""
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | np.integer | np.floating):
        return r_number(float(value))
    return str(value)


def column_value(column: pd.Series, name: str) -> Value:
    """A data column as a value: categorical -> factor (its level order), bool -> logical,
    numbers -> numeric, text -> factor with sorted levels; every pandas NA as missing."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":  # no NA but NaN: no na_value pass
        return Numeric(column.to_numpy(dtype=float))
    if isinstance(dtype, pd.CategoricalDtype):
        codes = column.array.codes.astype(np.int64)  # no Series built
        levels = [level_label(c) for c in dtype.categories]
        return Factor(codes, levels, ordered=bool(dtype.ordered))
    if pd.api.types.is_bool_dtype(dtype):
        return Logical(column.to_numpy(dtype=float, na_value=np.nan))
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return Numeric(column.to_numpy(dtype=float, na_value=np.nan))
    if isinstance(dtype, pd.StringDtype):
        values = column.tolist()
        if set(map(type, values)) == {str}:  # (no missing value)
            # the factorization below by a dict: pandas' factorize of a pyarrow string
            # column and its wrappers cost 4 times as much (65 vs 15 us on CO2's Type)
            levels = sorted(set(values))
            where = {label: i for i, label in enumerate(levels)}
            return Factor(np.array([where[v] for v in values], dtype=np.int64), levels)
    if pd.api.types.is_string_dtype(dtype) or dtype.kind == "O":
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        kinds = {type(v) for v in uniques}
        if kinds and kinds <= {bool, np.bool_}:
            return Logical(column.astype("boolean").to_numpy(dtype=float, na_value=np.nan))
        if kinds and all(issubclass(k, int | float | np.integer | np.floating) for k in kinds):
            return Numeric(column.to_numpy(dtype=float, na_value=np.nan))
        labels = [level_label(v) for v in uniques]
        levels = sorted(set(labels))
        # a dict, not pd.Index(levels).get_indexer: on pandas' string dtype the Index and
        # its hash engine cost ~130 us for CO2's two levels (the whole column's factorize: 30)
        where = {label: i for i, label in enumerate(levels)}
        position = np.array([where[label] for label in labels], dtype=np.int64)
        return Factor(np.where(codes >= 0, position[np.maximum(codes, 0)], -1), levels)
    raise DataError(f"column {name!r} has dtype {dtype}, which a formula cannot use")


class Described:
    """The text of an error's subject (``"sin() in 'sin(2 * pi * Time)'"``), formed only
    when an error is worded: deparsing every node of every evaluation cost a fifth of
    evaluating ``sin(2*pi*Time)`` (Ovary's fixed part).  Formats as the text."""

    __slots__ = ("_make", "_text")

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._make()
        return self._text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def as_float(value: Value, what: str | Described) -> np.ndarray:
    """Numbers of a numeric or logical value; a clear error for factors and matrices."""
    if isinstance(value, Numeric | Logical):
        return value.values
    if isinstance(value, Factor):
        raise DataError(f"{what} needs numbers, but it got a factor (use as.numeric())")
    raise DataError(f"{what} needs one numeric column, but it got {value.values.shape[1]}")


def _scalar(value: Value, what: str | Described) -> float:
    numbers = as_float(value, what)
    if numbers.ndim != 0 and numbers.size != 1:
        raise DataError(f"{what} must be a single number")
    return float(numbers.reshape(-1)[0])


_ELEMENTWISE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "exp": np.exp,
    "expm1": np.expm1,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "floor": np.floor,
    "ceiling": np.ceil,
    "trunc": np.trunc,
    "sign": np.sign,
}

_AGGREGATE: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda x: float(np.mean(x)),
    "median": lambda x: float(np.median(x)),
    "sd": lambda x: float(np.std(x, ddof=1)) if x.size > 1 else float("nan"),
    "var": lambda x: float(np.var(x, ddof=1)) if x.size > 1 else float("nan"),
    "min": lambda x: float(np.min(x)),
    "max": lambda x: float(np.max(x)),
    "sum": lambda x: float(np.sum(x)),
    "length": lambda x: float(x.size),
}

_ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "^": np.power,
    "%%": np.mod,
    "%/%": np.floor_divide,
}

_COMPARISON: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
}


def _with_missing(result: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    out = np.asarray(result, dtype=float)
    missing = np.zeros(np.broadcast(*inputs).shape, dtype=bool)
    for x in inputs:
        missing = missing | np.isnan(x)
    return np.where(missing, np.nan, out)


class Interpreter:
    """Evaluate formula expressions on one DataFrame.

    Parameters
    ----------
    data : DataFrame or ColumnTable
    state : dict
        What data-dependent transforms learned; filled when empty keys are met (a fit),
        read when present (new data).
    text : str, optional
        The text the trees were parsed from, for located errors.
    learning : bool
        The rows are the fit's (a model matrix's first build): checks that hold for the
        fitted rows only (a raw polynomial's degree below the distinct values) apply.
    """

    def __init__(
        self,
        data: pd.DataFrame | ColumnTable,
        state: dict[str, object],
        text: str | None = None,
        learning: bool = False,
    ):
        self.table = as_table(data)
        self.state = state
        self.text = text
        self.learning = learning

    # ----------------------------------------------------------------- helpers
    def _error(self, message: str, node: Node) -> FormulaError:
        return FormulaError(message, self.text, node.pos if self.text is not None else None)

    def evaluate(self, node: Node) -> Value:
        """The value of ``node``."""
        with np.errstate(all="ignore"):
            try:
                return self._evaluate(node)
            except RecursionError:
                raise FormulaError(
                    f"the expression {deparse(node)[:60]!r}... is too deeply nested",
                    self.text,
                ) from None

    def _evaluate(self, node: Node) -> Value:
        if isinstance(node, Name):
            return self._name(node)
        if isinstance(node, Number):
            return Numeric(np.asarray(node.value))
        if isinstance(node, String):  # a one-level constant factor, as R's "a" in x == "a"
            return Factor(np.asarray(0, dtype=np.int64), [node.value])
        if isinstance(node, Paren):
            return self._evaluate(node.inner)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    def _name(self, node: Name) -> Value:
        if node.id in self.table:
            return self.table.value(node.id)
        if not node.quoted and node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            if isinstance(value, bool):
                return Logical(np.asarray(float(value)))
            return Numeric(np.asarray(float(value)))
        raise ColumnNotFoundError(
            f"column {node.id!r} is not in the data", self.text,
            node.pos if self.text is not None else None,
        )

    def _unary(self, node: Unary) -> Value:
        operand = self._evaluate(node.operand)
        what = Described(lambda: f"'{node.op}' in {deparse(node)!r}")
        if node.op == "!":
            x = as_float(operand, what)
            return Logical(_with_missing(x == 0, x))
        if node.op == "~":
            raise self._error("'~' cannot appear inside an expression", node)
        x = as_float(operand, what)
        return Numeric(-x if node.op == "-" else x + 0.0)

    def _binary(self, node: Binary) -> Value:
        if node.op in ("~", "|", "||", "&&", ":", "%in%"):
            raise self._error(
                f"'{node.op}' cannot be used inside a function call or an arithmetic "
                "expression",
                node,
            )
        left = self._evaluate(node.left)
        right = self._evaluate(node.right)
        what = Described(lambda: f"'{node.op}' in {deparse(node)!r}")
        if node.op in _COMPARISON and (isinstance(left, Factor) or isinstance(right, Factor)):
            return self._factor_comparison(node, left, right)
        x, y = as_float(left, what), as_float(right, what)
        if node.op in _ARITHMETIC:
            return Numeric(np.asarray(_ARITHMETIC[node.op](x, y), dtype=float))
        if node.op in _COMPARISON:
            return Logical(_with_missing(_COMPARISON[node.op](x, y), x, y))
        if node.op == "&":
            return Logical(_with_missing((x != 0) & (y != 0), x, y))
        return Logical(_with_missing((x != 0) | (y != 0), x, y))  # "|" inside a call

    def _factor_comparison(self, node: Binary, left: Value, right: Value) -> Value:
        if node.op not in ("==", "!="):
            raise DataError(f"'{node.op}' is not meaningful for factors in {deparse(node)!r}")

        def labels(value: Value, side: Node) -> np.ndarray:
            if isinstance(value, Factor):
                return np.array(value.levels + [None], dtype=object)[value.codes]
            numbers = as_float(value, f"'{node.op}' in {deparse(node)!r}")
            return np.vectorize(level_label, otypes=[object])(numbers)

        a = labels(left, node.left)
        b = labels(right, node.right)
        equal = np.asarray(a == b, dtype=float)
        missing = np.asarray(pd.isna(a), dtype=bool) | np.asarray(pd.isna(b), dtype=bool)
        result = equal if node.op == "==" else 1.0 - equal
        return Logical(np.where(missing, np.nan, result))

    # ------------------------------------------------------------------ calls
    def _argument(self, call: Call, name: str) -> Node | None:
        return bind_arguments(call).get(name)

    def _call(self, call: Call) -> Value:
        check_call(call, self.text)
        name = call.func
        x_node = bind_arguments(call).get(SIGNATURES[name].params[0])
        what = Described(lambda: f"{name}() in {deparse(call)!r}")
        if name in _ELEMENTWISE:
            x = as_float(self._evaluate(x_node), what)
            return Numeric(_ELEMENTWISE[name](x).astype(float))
        if name in _AGGREGATE:
            x = as_float(self._evaluate(x_node), what)
            return Numeric(np.asarray(_AGGREGATE[name](np.atleast_1d(x))))
        handler = _SPECIAL.get(name)
        if handler is None:
            raise self._error(f"{name}() may only be used as a term of its own", call)
        return handler(self, call, x_node, what)

    def _keyword_number(self, call: Call, name: str, default: float) -> float:
        node = self._argument(call, name)
        if node is None:
            return default
        return _scalar(self._evaluate(node), f"argument {name!r} of {call.func}()")

    def _log(self, call: Call, x_node: Node, what: Described) -> Value:
        x = as_float(self._evaluate(x_node), what)
        base = self._keyword_number(call, "base", np.e)
        out = np.log(x)
        return Numeric(out if base == np.e else out / np.log(base))

    def _round(self, call: Call, x_node: Node, what: Described) -> Value:
        x = as_float(self._evaluate(x_node), what)
        digits = int(self._keyword_number(call, "digits", 0))
        return Numeric(np.round(x, digits))

    def _pminmax(self, call: Call, x_node: Node, what: Described) -> Value:
        x = as_float(self._evaluate(x_node), what)
        y = as_float(self._evaluate(self._argument(call, "y")), what)
        return Numeric((np.minimum if call.func == "pmin" else np.maximum)(x, y))

    def _identity(self, call: Call, x_node: Node, what: Described) -> Value:
        return self._evaluate(x_node)

    def _factor(self, call: Call, x_node: Node, what: Described) -> Value:
        value = self._evaluate(x_node)
        ordered = call.func == "ordered"
        if isinstance(value, Factor):
            used = np.unique(value.codes[value.codes >= 0])
            remap = np.full(len(value.levels) + 1, -1, dtype=np.int64)
            remap[used] = np.arange(len(used))
            codes = np.where(value.codes >= 0, remap[value.codes], -1)
            levels = [value.levels[i] for i in used]
            return Factor(codes, levels, ordered or value.ordered, value.coding)
        if isinstance(value, Matrix):
            raise DataError(f"{what} needs one column")
        x = np.broadcast_to(value.values, (len(self.table),))
        present = ~np.isnan(x)
        unique = np.unique(x[present])
        codes = np.full(len(x), -1, dtype=np.int64)
        codes[present] = np.searchsorted(unique, x[present])
        if isinstance(value, Logical):
            labels = ["TRUE" if u else "FALSE" for u in unique]
        else:
            labels = [level_label(float(u)) for u in unique]
        return Factor(codes, labels, ordered, from_numbers=not isinstance(value, Logical))

    def _as_numeric(self, call: Call, x_node: Node, what: Described) -> Value:
        value = self._evaluate(x_node)
        if isinstance(value, Factor):
            return Numeric(np.where(value.codes >= 0, value.codes + 1.0, np.nan))
        x = as_float(value, what)
        if call.func == "as.integer":
            x = np.trunc(x)
        if call.func == "as.logical":
            return Logical(_with_missing(x != 0, x))
        return Numeric(np.asarray(x, dtype=float))

    def _poly(self, call: Call, x_node: Node, what: Described) -> Value:
        x = as_float(self._evaluate(x_node), what)
        degree = self._keyword_number(call, "degree", 1.0)
        raw_node = self._argument(call, "raw")
        raw = bool(_scalar(self._evaluate(raw_node), "raw")) if raw_node is not None else False
        if not (degree >= 1 and float(degree).is_integer()):
            raise DataError(f"{what}: 'degree' must be a whole number >= 1, got {degree:g}")
        degree = int(degree)
        x = np.broadcast_to(x, (len(self.table),)).astype(float)
        key = f"poly:{deparse(call)}"
        if (self.learning if raw else key not in self.state):
            # checked before anything of size `degree` is built (raw = TRUE too, on the
            # fitted rows: its powers of x beyond the distinct values are collinear)
            distinct = np.unique(x[~np.isnan(x)]).size
            if degree >= distinct:
                raise DataError(
                    f"{what}: 'degree' ({degree}) must be less than the number of distinct "
                    f"values ({distinct})"
                )
        suffixes = [str(j + 1) for j in range(degree)]
        if raw:
            return Matrix(np.column_stack([x ** (j + 1) for j in range(degree)]), suffixes)
        if key not in self.state:
            columns, alpha, norm2 = orthogonal_polynomials(x, degree)
            self.state[key] = (alpha, norm2)
            return Matrix(columns, suffixes)
        alpha, norm2 = self.state[key]  # type: ignore[misc]
        return Matrix(polynomials_from(x, alpha, norm2), suffixes)

    def _scale(self, call: Call, x_node: Node, what: Described) -> Value:
        """R's ``scale(x, center, scale)`` (``center()``: the centring alone), with the
        centre and scale learned from the fitted data."""
        x = np.broadcast_to(as_float(self._evaluate(x_node), what), (len(self.table),))
        key = f"scale:{deparse(call)}"
        if key not in self.state:
            center = self._centre_argument(call, "center", x, default=True)
            shifted = x - center
            if call.func == "center":
                scale = 1.0
            else:
                scale = self._scale_argument(call, shifted, what)
            self.state[key] = (center, scale)
        center, scale = self.state[key]  # type: ignore[misc]
        return Numeric((x - center) / scale)

    def _centre_argument(self, call: Call, name: str, x: np.ndarray, default: bool) -> float:
        node = self._argument(call, name)
        value = self._evaluate(node) if node is not None else Logical(np.asarray(float(default)))
        if isinstance(value, Logical):
            return float(np.mean(x)) if _scalar(value, name) else 0.0
        return _scalar(value, f"argument {name!r} of {call.func}()")

    def _scale_argument(self, call: Call, shifted: np.ndarray, what: Described) -> float:
        node = self._argument(call, "scale")
        value = self._evaluate(node) if node is not None else Logical(np.asarray(1.0))
        if isinstance(value, Logical):
            if not _scalar(value, "scale"):
                return 1.0
            root_mean_square = np.sqrt(np.sum(shifted**2) / max(len(shifted) - 1, 1))
            if not root_mean_square > 0:
                raise DataError(f"{what}: the variable is constant, so it cannot be scaled")
            return float(root_mean_square)
        return _scalar(value, f"argument 'scale' of {call.func}()")

    def _contrast(self, call: Call, x_node: Node, what: Described) -> Value:
        value = self._evaluate(x_node)
        if not isinstance(value, Factor):
            value = self._factor(Call("factor", (x_node,), (), call.pos), x_node, what)
        node = self._argument(call, "contr")
        if isinstance(node, Name) and not node.quoted:
            kind = node.id
        elif isinstance(node, String):
            kind = node.value
        else:
            raise self._error("C() takes a coding such as contr.sum", call)
        kind = kind.removeprefix("contr.")
        if kind not in CODINGS:
            raise self._error(
                f"unknown coding {kind!r} in C(); use one of "
                + ", ".join(f"contr.{c}" for c in CODINGS),
                call,
            )
        return Factor(value.codes, value.levels, value.ordered, kind)


_SPECIAL: dict[str, Callable[[Interpreter, Call, Node, Described], Value]] = {
    "log": Interpreter._log,
    "round": Interpreter._round,
    "pmin": Interpreter._pminmax,
    "pmax": Interpreter._pminmax,
    "I": Interpreter._identity,
    "factor": Interpreter._factor,
    "as.factor": Interpreter._factor,
    "ordered": Interpreter._factor,
    "as.numeric": Interpreter._as_numeric,
    "as.double": Interpreter._as_numeric,
    "as.integer": Interpreter._as_numeric,
    "as.logical": Interpreter._as_numeric,
    "poly": Interpreter._poly,
    "scale": Interpreter._scale,
    "center": Interpreter._scale,
    "C": Interpreter._contrast,
}

#: Functions the interpreter evaluates (the rest of SIGNATURES are placed terms).
IMPLEMENTED = frozenset(_ELEMENTWISE) | frozenset(_AGGREGATE) | frozenset(_SPECIAL)
