"""R's expression language inside model formulas, carried over to formulaic.

R formulas call R functions (``sin(2*pi*t)``, ``sqrt(x)``, ``factor(days)``,
``poly(x, 2, raw = TRUE)``) and name columns as R allows (``total.fruits``).  formulaic
evaluates Python, so this module

* rewrites the text: column names that are not Python identifiers are quoted with
  backticks, and R's dotted functions (``as.factor``) get Python names;
* supplies the functions and constants (:data:`R_CONTEXT`) formulaic evaluates them with;
* finds the data columns an expression reads (R's ``all.vars``);
* spells formulaic's column names as R deparses the expressions (``x/2``, ``I(x^2)``,
  ``poly(x, 2, raw = TRUE)1``), so fixed-effect names match lme4's.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
from formulaic.transforms import TRANSFORMS

# R's dotted function names and their Python spelling in the rewritten text.
_DOTTED_FUNCTIONS = {"as.factor": "as_factor", "as.numeric": "as_numeric"}
_PYTHON_TO_R_NAME = {v: k for k, v in _DOTTED_FUNCTIONS.items()}

_R_NAME = re.compile(r"(?<![\w.`])([A-Za-z.][A-Za-z0-9._]*)")
_QUOTED = re.compile(r"`([^`]+)`")
_STRING = re.compile(r"\"[^\"]*\"|'[^']*'")
_NUMBER_START = re.compile(r"\.\d")


def _r_number_label(value: float) -> str:
    """A number as R's ``as.character`` writes it (``2``, ``0.5``, ``1e-05``)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"


def _r_factor(values, contrasts=None) -> object:
    """R's ``factor(x)``: levels sorted (numerically for numbers), unused levels dropped."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if isinstance(series.dtype, pd.CategoricalDtype):
        categorical = series.cat.remove_unused_categories()
    elif pd.api.types.is_bool_dtype(series):
        labels = series.map({True: "TRUE", False: "FALSE"})
        present = sorted(labels.dropna().unique())
        categorical = labels.astype(pd.CategoricalDtype(present))
    elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers = series.to_numpy(dtype=float)
        present = ~np.isnan(numbers)
        unique = np.unique(numbers[present])
        labels = [_r_number_label(v) for v in unique]
        codes = np.full(len(numbers), -1, dtype=np.int64)
        codes[present] = np.searchsorted(unique, numbers[present])
        categorical = pd.Series(
            pd.Categorical.from_codes(codes, categories=labels), index=series.index
        )
    else:
        text = series.astype("string")
        categorical = text.astype(pd.CategoricalDtype(sorted(text.dropna().unique())))
    return TRANSFORMS["C"](categorical, contrasts)


def _r_sum_coded_factor(values) -> object:
    """``factor(x)`` with sum-to-zero contrasts (for type III hypotheses)."""
    return _r_factor(values, TRANSFORMS["contr"].sum())


def _r_log(x, base: float = math.e):
    """R's ``log(x, base = exp(1))``."""
    out = np.log(x)
    return out if base == math.e else out / np.log(base)


def _r_numeric(x):
    """R's ``as.numeric``: numbers as floats, factors by their codes (1-based)."""
    series = x if isinstance(x, pd.Series) else pd.Series(np.asarray(x))
    if isinstance(series.dtype, pd.CategoricalDtype):
        return (series.cat.codes + 1).where(series.cat.codes >= 0).astype(float)
    return series.astype(float)


#: Names an R formula may use, as formulaic evaluates them.
R_CONTEXT: dict[str, object] = {
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
    "log": _r_log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "floor": np.floor,
    "ceiling": np.ceil,
    "trunc": np.trunc,
    "sign": np.sign,
    "mean": np.mean,
    "median": np.median,
    "sd": lambda x: float(np.std(x, ddof=1)),
    "var": lambda x: float(np.var(x, ddof=1)),
    "min": np.min,
    "max": np.max,
    "sum": np.sum,
    "length": len,
    "pi": math.pi,
    "TRUE": True,
    "FALSE": False,
    "factor": _r_factor,
    "as_factor": _r_factor,
    "as_numeric": _r_numeric,
    "r_logical": _r_factor,  # a boolean column: a factor with levels FALSE, TRUE
}

#: :data:`R_CONTEXT` with ``factor()`` in sum-to-zero contrasts.
R_CONTEXT_SUM_CODED: dict[str, object] = {
    **R_CONTEXT,
    "factor": _r_sum_coded_factor,
    "as_factor": _r_sum_coded_factor,
    "r_logical": _r_sum_coded_factor,
}

# Names that are not data columns even when they are not called: constants, contrasts.
_NOT_COLUMNS = {"pi", "TRUE", "FALSE", "T", "F", "NULL", "NA", "Inf", "NaN"}


def _outside_strings(text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` outside string literals and backtick quotes."""
    spans, last = [], 0
    for m in re.finditer(r"\"[^\"]*\"|'[^']*'|`[^`]*`", text):
        spans.append((last, m.start()))
        last = m.end()
    spans.append((last, len(text)))
    return spans


def to_python_syntax(text: str, columns: Iterable[object]) -> str:
    """Rewrite an R formula expression for formulaic.

    Column names that are not Python identifiers (``total.fruits``) are quoted with
    backticks; ``as.factor(`` and ``as.numeric(`` become their Python names.
    """
    names = {str(c) for c in columns}
    out: list[str] = []
    last = 0
    for start, end in _outside_strings(text):
        out.append(text[last:start])
        piece = text[start:end]

        def rewrite(m: re.Match, piece: str = piece) -> str:
            token = m.group(1)
            if _NUMBER_START.match(token) or not ("." in token or token in names):
                return token
            called = piece[m.end() :].lstrip().startswith("(")
            if called and token in _DOTTED_FUNCTIONS:
                return _DOTTED_FUNCTIONS[token]
            if token in names and not token.isidentifier() and not called:
                return f"`{token}`"
            return token

        out.append(_R_NAME.sub(rewrite, piece))
        last = end
    out.append(text[last:])
    return "".join(out)


def variables_of(text: str) -> list[str]:
    """The variables an R expression reads, in order of appearance (R's ``all.vars``).

    Called names (functions), keyword-argument names, R constants and contrast names are
    not variables; backtick-quoted names are.
    """
    found: list[str] = []

    def add(name: str) -> None:
        if name not in found:
            found.append(name)

    for m in re.finditer(r"`([^`]+)`|" + _R_NAME.pattern, text):
        if any(s <= m.start() < e for s, e in _string_spans(text)):
            continue
        if m.group(1) is not None:
            add(m.group(1))
            continue
        token = m.group(2)
        rest = text[m.end() :].lstrip()
        if (
            _NUMBER_START.match(token)
            or token in _NOT_COLUMNS
            or token.startswith("contr.")
            or rest.startswith("(")
            or (rest.startswith("=") and not rest.startswith("=="))
            or _preceded_by_dot_access(text, m.start())
        ):
            continue
        add(token)
    return found


def _string_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _STRING.finditer(text)]


def _preceded_by_dot_access(text: str, start: int) -> bool:
    """``np.log``: a name right after ``np.`` (Python attribute access) is not a column."""
    return text[:start].endswith("np.")


# ---------------------------------------------------------------------------- names
# R's operator precedence, high to low (?Syntax), and deparse spacing.
_BINARY = {
    ast.Pow: ("^", 14, ""),
    ast.Mod: ("%%", 11, ""),
    ast.FloorDiv: ("%/%", 11, ""),
    ast.Mult: ("*", 10, " "),
    ast.Div: ("/", 10, ""),
    ast.Add: ("+", 9, " "),
    ast.Sub: ("-", 9, " "),
}
_COMPARE = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_UNARY_PRECEDENCE = 13
_COMPARE_PRECEDENCE = 8
_ATOM = 100


def _is_syntactic(name: str) -> bool:
    return re.fullmatch(r"(?:[A-Za-z]|\.(?!\d))[A-Za-z0-9._]*|\.", name) is not None


class _Deparser:
    """Python expression tree -> R's deparse text."""

    def __init__(self, quoted: dict[str, str]):
        self.quoted = quoted

    def text(self, node: ast.AST) -> tuple[str, int]:
        """(text, precedence) of ``node``."""
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            symbol, prec, space = _BINARY[type(node.op)]
            right_assoc = isinstance(node.op, ast.Pow)
            left = self.wrapped(node.left, prec, strict=right_assoc)
            right = self.wrapped(node.right, prec, strict=not right_assoc)
            return f"{left}{space}{symbol}{space}{right}", prec
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return sign + self.wrapped(node.operand, _UNARY_PRECEDENCE, strict=False), (
                _UNARY_PRECEDENCE
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return "!" + self.wrapped(node.operand, _COMPARE_PRECEDENCE - 1, strict=False), 7
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            left = self.wrapped(node.left, _COMPARE_PRECEDENCE, strict=True)
            right = self.wrapped(node.comparators[0], _COMPARE_PRECEDENCE, strict=True)
            return f"{left} {_COMPARE[type(node.ops[0])]} {right}", _COMPARE_PRECEDENCE
        if isinstance(node, ast.Call):
            func = self.function_name(node.func)
            args = [self.text(a)[0] for a in node.args]
            args += [f"{k.arg} = {self.text(k.value)[0]}" for k in node.keywords if k.arg]
            return f"{func}({', '.join(args)})", _ATOM
        if isinstance(node, ast.Name):
            name = self.quoted.get(node.id, _PYTHON_TO_R_NAME.get(node.id, node.id))
            return (name if _is_syntactic(name) else f"`{name}`"), _ATOM
        if isinstance(node, ast.Constant):
            return _r_constant(node.value), _ATOM
        return ast.unparse(node), _ATOM

    def function_name(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return _PYTHON_TO_R_NAME.get(node.id, node.id)
        return ast.unparse(node)

    def wrapped(self, node: ast.AST, parent: int, *, strict: bool) -> str:
        text, prec = self.text(node)
        if prec < parent or (strict and prec == parent):
            return f"({text})"
        return text


def _r_constant(value: object) -> str:
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _r_number_label(value)
    return repr(value)


def r_deparse(code: str) -> str:
    """A formulaic factor expression as R's ``deparse`` writes it.

    ``2 * pi * x`` -> ``2 * pi * x``; ``x / 2`` -> ``x/2``; ``I(x ** 2)`` -> ``I(x^2)``;
    ``poly(x, 2, raw=TRUE)`` -> ``poly(x, 2, raw = TRUE)``; ``log(1 + `total.fruits`)`` ->
    ``log(1 + total.fruits)``.  Text that is not a Python expression is returned as is.
    """
    quoted: dict[str, str] = {}

    def placeholder(m: re.Match) -> str:
        key = f"__quoted{len(quoted)}__"
        quoted[key] = m.group(1)
        return key

    try:
        tree = ast.parse(_QUOTED.sub(placeholder, code), mode="eval").body
    except SyntaxError:
        return code
    return _Deparser(quoted).text(tree)[0]


def is_raw_poly(code: str) -> bool:
    """True for ``poly(..., raw=TRUE)``: formulaic numbers its columns from 0, R from 1."""
    try:
        tree = ast.parse(_QUOTED.sub("x", code), mode="eval").body
    except SyntaxError:
        return False
    return (
        isinstance(tree, ast.Call)
        and isinstance(tree.func, ast.Name)
        and tree.func.id == "poly"
        and any(
            k.arg == "raw"
            and (
                (isinstance(k.value, ast.Constant) and k.value.value is True)
                or (isinstance(k.value, ast.Name) and k.value.id in ("TRUE", "True", "T"))
            )
            for k in tree.keywords
        )
    )
