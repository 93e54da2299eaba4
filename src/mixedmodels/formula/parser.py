"""Split an lme4 formula into its response, fixed part and random-effect terms.

The formula is parsed into a syntax tree (:mod:`mixedmodels.formula.expr`), every call is
checked against the vocabulary (:mod:`mixedmodels.formula.functions`), and the tree is cut
into pieces: the response, the fixed-effect terms, ``offset(...)`` terms and the bar terms
``(expr | g)`` and ``(expr || g)`` with the grouping operators ``a/b`` (nesting: ``a`` and
``a:b``) and ``a:b`` (interaction of factors).  The pieces are kept as R's deparse of their
trees: canonical text that the design layer parses again, never Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mixedmodels.errors import FormulaError
from mixedmodels.formula.expr import (
    Binary,
    Call,
    Name,
    Node,
    Number,
    Paren,
    Unary,
    deparse,
    parse_expression,
    tokenize,
    walk,
)
from mixedmodels.formula.functions import SMOOTHS, check_calls


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effect term after expansion, such as ``(Days | Subject)``.

    Attributes
    ----------
    expr : str
        The left side of the bar, e.g. ``"Days"`` or ``"0 + Days"``.
    group_factors : tuple of str
        The grouping factor's components: ``("Subject",)`` or ``("a", "b")`` for ``a:b``.
    name : str, optional
        The grouping factor's name when it is not ``a:b:...`` (lme4 names the innermost
        factor of ``a/b/c`` ``c:(b:a)``).
    structure : str, optional
        The covariance structure the formula names (glmmTMB's and lme4 2.0's syntax:
        ``diag(x | g)``, ``cs``, ``homcs``, ``ar1``, ``toep``, ``us``); unstructured when
        None.
    """

    expr: str
    group_factors: tuple[str, ...]
    name: str | None = None
    structure: str | None = None  # a covariance structure's name: diag(x | g) -> "diag"

    @property
    def group_name(self) -> str:
        """Name of the grouping factor as lme4 prints it (``a:b`` for an interaction)."""
        return self.name or ":".join(self.group_factors)

    def __str__(self) -> str:
        if self.structure is not None:
            return f"{self.structure}({self.expr} | {self.group_name})"
        return f"({self.expr} | {self.group_name})"


@dataclass(frozen=True)
class ParsedFormula:
    """The pieces of an lme4 formula, each as R deparses it.

    Attributes
    ----------
    text : str
        The formula as given.
    response : str
        Left side of ``~``.
    fixed : str
        Right side without the bar and offset terms (``"1"`` when nothing is left).
    random : tuple of RandomTermSpec
        The random-effect terms, ``||`` and ``/`` expanded.
    offsets : tuple of str
        The expressions of ``offset(...)`` terms in the fixed part (added to the linear
        predictor with coefficient 1, as in R).
    """

    text: str
    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]
    offsets: tuple[str, ...] = ()
    smooths: tuple[str, ...] = ()

    @property
    def fixed_formula(self) -> str:
        """``response ~ fixed``."""
        return f"{self.response} ~ {self.fixed}"


def start_of(node: Node) -> int:
    """Position of the first character of ``node`` in the text it was parsed from."""
    while isinstance(node, Binary):
        node = node.left
    return node.pos


def _signed_pieces(node: Node, sign: int = 1) -> list[tuple[int, Node]]:
    """The top-level ``+``/``-`` chain of a right-hand side as (sign, piece)."""
    out: list[tuple[int, Node]] = []
    stack: list[tuple[int, Node]] = [(sign, node)]
    while stack:
        s, n = stack.pop()
        if isinstance(n, Binary) and n.op in ("+", "-"):
            stack.append((s if n.op == "+" else -s, n.right))
            stack.append((s, n.left))
        elif isinstance(n, Unary) and n.op in ("+", "-"):
            stack.append((s if n.op == "+" else -s, n.operand))
        else:
            out.append((s, n))
    return out


def _find_operator(node: Node, ops: tuple[str, ...]) -> Binary | None:
    """The first binary operator of ``ops`` anywhere in ``node``."""
    return next((n for n in walk(node) if isinstance(n, Binary) and n.op in ops), None)


def _bar_term(node: Node) -> Binary | None:
    """The bar of a piece written ``(expr | g)`` (or ``((expr | g))``)."""
    while isinstance(node, Paren):
        if isinstance(node.inner, Binary) and node.inner.op in ("|", "||"):
            return node.inner
        node = node.inner
    return None


def _grouping_names(node: Node, formula: str) -> list[str]:
    """``a:b:c`` -> ``["a", "b", "c"]``; anything but names joined by ``:`` is an error."""
    if isinstance(node, Binary) and node.op == ":":
        return _grouping_names(node.left, formula) + _grouping_names(node.right, formula)
    if isinstance(node, Paren):
        return _grouping_names(node.inner, formula)
    if isinstance(node, Name):
        return [node.id]
    raise FormulaError(
        f"grouping factor {deparse(node)!r} must be a column name (or a:b, a/b)",
        formula,
        start_of(node),
    )


def _nesting_levels(node: Node) -> list[Node]:
    """``a/b/c`` -> ``[a, b, c]``."""
    if isinstance(node, Binary) and node.op == "/":
        return _nesting_levels(node.left) + _nesting_levels(node.right)
    return [node]


def _expand_grouping(node: Node, formula: str) -> list[tuple[tuple[str, ...], str | None]]:
    """Grouping factors of one bar term, as lme4 expands them, with lme4's names.

    ``a:b`` -> ``[((a, b), None)]``; ``a/b`` -> ``[((b, a), None), ((a,), None)]`` (lme4
    writes the nested factor ``b:a``); ``a/b/c`` -> ``[((c, b, a), "c:(b:a)"), ((b, a),
    None), ((a,), None)]``.
    """
    levels = [tuple(_grouping_names(piece, formula)) for piece in _nesting_levels(node)]
    factors: list[tuple[tuple[str, ...], str | None]] = []
    prefix: tuple[str, ...] = ()
    name = ""
    for parts in levels:
        prefix = parts + prefix
        own = ":".join(parts)
        name = own if not name else f"{own}:({name})" if ":" in name else f"{own}:{name}"
        factors.append((prefix, None if name == ":".join(prefix) else name))
    return list(reversed(factors))


def _is_number(node: Node, value: float) -> bool:
    return isinstance(node, Number) and node.value == value


def _uncorrelated_pieces(expr: Node) -> list[str]:
    """``x + z`` under ``||`` -> ``["1", "0 + x", "0 + z"]`` (lme4's expansion)."""
    has_intercept = True
    pieces: list[str] = []
    for sign, piece in _signed_pieces(expr):
        if _is_number(piece, 0) or (sign < 0 and _is_number(piece, 1)):
            has_intercept = False
        elif _is_number(piece, 1):
            continue
        else:
            pieces.append(f"0 + {deparse(piece)}")
    return (["1"] if has_intercept else []) + pieces


#: Covariance structures a random-effect term may be wrapped in (glmmTMB's names); the
#: design maps each to its class (:data:`mixedmodels.core.structures.STRUCTURES`).
COVARIANCE_STRUCTURES = ("us", "diag", "cs", "homcs", "ar1", "toep")


def _structured_bar(call: Call, formula: str) -> Node:
    """The ``(x | g)`` inside ``diag(x | g)``, checked, as a parenthesized node."""
    if len(call.args) != 1 or call.keywords:
        raise FormulaError(
            f"{call.func}() takes one random-effect term, like {call.func}(x | g)",
            formula,
            call.pos,
        )
    inner = call.args[0]
    while isinstance(inner, Paren):
        inner = inner.inner
    if not (isinstance(inner, Binary) and inner.op in ("|", "||")):
        raise FormulaError(
            f"{call.func}() takes a random-effect term, like {call.func}(x | g)",
            formula,
            call.pos,
        )
    return Paren(inner, call.pos)


def _check_tildes(text: str) -> None:
    tildes = [t for t in tokenize(text) if t.kind == "op" and t.text == "~"]
    if not tildes:
        raise FormulaError("formula needs exactly one '~' between response and predictors", text)
    if len(tildes) > 1:
        raise FormulaError(
            "formula needs exactly one '~' between response and predictors", text, tildes[1].pos
        )


def _find_bar(text: str) -> tuple[int, int] | None:
    """Position and width (1 or 2) of the first top-level ``|`` or ``||`` in ``text``."""
    depth = 0
    for token in tokenize(text):
        if token.kind != "op":
            continue
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif token.text in ("|", "||") and depth == 0:
            return token.pos, len(token.text)
    return None


def _joined(pieces: list[tuple[int, Node]]) -> str:
    out = ""
    for sign, node in pieces:
        text = deparse(node)
        if not out:
            out = text if sign > 0 else f"-{text}"
        else:
            out += f" + {text}" if sign > 0 else f" - {text}"
    return out


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 model formula.

    Parameters
    ----------
    text : str
        A formula such as ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        For text outside the formula language (an unknown function, attribute access,
        indexing, ...), a missing ``~``, unbalanced parentheses, an empty side of a bar, or
        a grouping factor that is not a column name; the message shows where.
    """
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, got {type(text).__name__}")
    if not text.strip():
        raise FormulaError("formula is empty")
    return _parse_formula_text(text)


@lru_cache(maxsize=512)
def _parse_formula_text(text: str) -> ParsedFormula:
    """:func:`parse_formula` of a non-empty string, kept (a :class:`ParsedFormula` is
    immutable; only successful parses are kept)."""
    tokenize(text)  # characters outside the language first
    from mixedmodels.formula.expr import _check_parentheses

    _check_parentheses(text)
    _check_tildes(text)
    tree = parse_expression(text)
    if isinstance(tree, Unary) and tree.op == "~":
        raise FormulaError("formula has no response on the left of '~'", text, 0)
    if not (isinstance(tree, Binary) and tree.op == "~"):
        bad = _find_operator(tree, ("~",))
        raise FormulaError("'~' must separate the response from the predictors", text,
                           bad.pos if bad else 0)
    lhs, rhs = tree.left, tree.right
    bar = _find_operator(lhs, ("|", "||"))
    if bar is not None:
        raise FormulaError("a '|' cannot appear in the response", text, bar.pos)
    check_calls(lhs, text, placed_ok=frozenset({"cbind"}))

    fixed: list[tuple[int, Node]] = []
    offsets: list[str] = []
    smooths: list[str] = []
    random: list[RandomTermSpec] = []
    for sign, piece in _signed_pieces(rhs):
        structure = None
        if isinstance(piece, Call) and piece.func in COVARIANCE_STRUCTURES:
            structure, piece = piece.func, _structured_bar(piece, text)
        bar = _bar_term(piece)
        if bar is not None:
            if sign < 0:
                raise FormulaError("a random-effect term cannot be subtracted", text,
                                   start_of(piece))
            check_calls(bar.left, text)
            nested = _find_operator(bar.left, ("|", "||"))
            if nested is not None:
                raise FormulaError("a random-effect term has one '|'", text, nested.pos)
            groups = _expand_grouping(bar.right, text)
            if structure is not None and bar.op == "||":
                raise FormulaError(
                    f"{structure}() takes a term with one '|': the structure says how the "
                    "coefficients are correlated",
                    text,
                    bar.pos,
                )
            exprs = _uncorrelated_pieces(bar.left) if bar.op == "||" else [deparse(bar.left)]
            for group, name in groups:
                for expr in exprs:
                    random.append(RandomTermSpec(expr, group, name, structure))
            continue
        stray = _find_operator(piece, ("|", "||"))
        if stray is not None:
            raise FormulaError(
                "a random-effect term must be written in parentheses, like (1 | g), and "
                "added with '+'",
                text,
                stray.pos,
            )
        if isinstance(piece, Call) and piece.func == "offset":
            check_calls(piece, text, placed_ok=frozenset({"offset"}))
            if sign < 0:
                raise FormulaError("an offset cannot be subtracted", text, piece.pos)
            offsets.append(deparse(piece.args[0] if piece.args else piece.keywords[0][1]))
            continue
        if isinstance(piece, Call) and piece.func in SMOOTHS:
            check_calls(piece, text, placed_ok=frozenset({piece.func}))
            if sign < 0:
                raise FormulaError("a smooth term cannot be subtracted", text, piece.pos)
            smooth = deparse(piece)
            if smooth not in smooths:
                smooths.append(smooth)
            continue
        check_calls(piece, text)
        fixed.append((sign, piece))
    return ParsedFormula(
        text=text,
        response=deparse(lhs),
        fixed=_joined(fixed) or "1",
        random=tuple(random),
        offsets=tuple(offsets),
        smooths=tuple(smooths),
    )
