"""The terms of a right-hand side, as R's ``terms.formula`` expands them.

``a + b``, ``a:b`` (interaction), ``a*b`` (``a + b + a:b``), ``a/b`` (``a + a:b``),
``b %in% a`` (``b:a``), ``(a + b + c)^2`` (all interactions up to order 2), ``- b``
(remove), ``0``/``- 1`` (no intercept), ``1`` (intercept), parentheses.  Every other
expression (``x``, ``log(x)``, ``I(x^2)``, ``x > 3``) is a *variable*.  Terms are ordered by
their number of variables, then by first appearance, as R orders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mixedmodels.errors import FormulaError
from mixedmodels.formula.expr import (
    Binary,
    Name,
    Node,
    Number,
    Paren,
    Unary,
    deparse,
    parse_expression,
)
from mixedmodels.formula.functions import check_calls

_FORMULA_OPERATORS = {"+", "-", "*", "/", ":", "^", "%in%"}


@dataclass(frozen=True)
class TermStructure:
    """The expanded right-hand side.

    Attributes
    ----------
    intercept : bool
    variables : tuple of Node
        The distinct variable expressions, in order of first appearance.
    keys : tuple of str
        R's deparse of each variable (its name in column names and term labels).
    terms : tuple of tuple of int
        Each term as sorted indices into ``variables``.
    """

    intercept: bool
    variables: tuple[Node, ...]
    keys: tuple[str, ...]
    terms: tuple[tuple[int, ...], ...]

    def label(self, term: tuple[int, ...]) -> str:
        """R's term label: the variables' names joined by ``:``."""
        return ":".join(self.keys[i] for i in term)


@dataclass
class _Expansion:
    terms: list[frozenset[int]]
    intercept: bool | None = None  # None: not mentioned


def _unique(terms: list[frozenset[int]]) -> list[frozenset[int]]:
    out: list[frozenset[int]] = []
    for t in terms:
        if t not in out:
            out.append(t)
    return out


class _Expander:
    def __init__(self, formula: str | None):
        self.formula = formula
        self.keys: list[str] = []
        self.nodes: list[Node] = []

    def error(self, message: str, node: Node) -> FormulaError:
        pos = node.pos if self.formula is not None else None
        return FormulaError(message, self.formula, pos)

    def variable(self, node: Node) -> int:
        key = deparse(node)
        if key not in self.keys:
            self.keys.append(key)
            self.nodes.append(node)
        return self.keys.index(key)

    def expand(self, node: Node) -> _Expansion:
        if isinstance(node, Paren):
            return self.expand(node.inner)
        if isinstance(node, Number):
            if node.value in (0.0, 1.0):
                return _Expansion([], node.value == 1.0)
            raise self.error(f"the number {deparse(node)} is not a term (only 0 and 1 are)", node)
        if isinstance(node, Name) and node.id == "." and not node.quoted:
            raise self.error("'.' (all other columns) is not supported; name the columns", node)
        if isinstance(node, Unary) and node.op in ("+", "-"):
            inner = self.expand(node.operand)
            return inner if node.op == "+" else self.subtract(_Expansion([]), inner)
        if isinstance(node, Binary) and node.op in _FORMULA_OPERATORS:
            return self.binary(node)
        return _Expansion([frozenset({self.variable(node)})])

    def binary(self, node: Binary) -> _Expansion:
        if node.op == "^":
            return self.power(node)
        if node.op in ("+", "-"):
            return self.chain(node)
        left = self.expand(node.left)
        right = self.expand(node.right)
        if node.op in (":", "%in%"):
            return _Expansion(self.product(left, right, node), None)
        if node.op == "*":
            both = left.terms + right.terms + self.product(left, right, node)
            intercept = right.intercept if right.intercept is not None else left.intercept
            return _Expansion(_unique(both), intercept)
        # a/b = a + (all variables of a):b
        outer = frozenset().union(*left.terms) if left.terms else frozenset()
        nested = [outer | t for t in right.terms] if outer else right.terms
        return _Expansion(_unique(left.terms + nested), left.intercept)

    def chain(self, node: Binary) -> _Expansion:
        """``a + b - c + ...`` left to right, without recursion along the chain."""
        rest: list[Binary] = []
        while isinstance(node, Binary) and node.op in ("+", "-"):
            rest.append(node)
            node = node.left
        result = self.expand(node)
        terms = list(result.terms)
        seen = set(terms)
        intercept = result.intercept
        for link in reversed(rest):
            right = self.expand(link.right)
            if link.op == "+":
                for t in right.terms:
                    if t not in seen:
                        terms.append(t)
                        seen.add(t)
                if right.intercept is not None:
                    intercept = right.intercept
            else:
                removed = set(right.terms)
                terms = [t for t in terms if t not in removed]
                seen -= removed
                if right.intercept is not None:
                    intercept = not right.intercept
        return _Expansion(terms, intercept)

    def subtract(self, left: _Expansion, right: _Expansion) -> _Expansion:
        intercept = left.intercept
        if right.intercept is not None:
            intercept = not right.intercept
        return _Expansion([t for t in left.terms if t not in right.terms], intercept)

    def product(self, left: _Expansion, right: _Expansion, node: Binary) -> list[frozenset[int]]:
        if not left.terms or not right.terms:
            raise self.error(f"{node.op!r} needs variables on both sides", node)
        return _unique([a | b for a in left.terms for b in right.terms])

    def power(self, node: Binary) -> _Expansion:
        base = self.expand(node.left)
        exponent = node.right.inner if isinstance(node.right, Paren) else node.right
        if not (
            isinstance(exponent, Number)
            and exponent.value >= 1
            and float(exponent.value).is_integer()
        ):
            raise self.error(
                "the power of a formula term must be a whole number >= 1 "
                "(for arithmetic write I(x^2))",
                node,
            )
        terms = list(base.terms)
        for _ in range(int(exponent.value) - 1):
            terms = _unique(terms + [a | b for a in terms for b in base.terms])
        return _Expansion(terms, base.intercept)


def expand_terms(node: Node, formula: str | None = None) -> TermStructure:
    """Expand a right-hand side into R's terms.

    Parameters
    ----------
    node : Node
        The parsed right-hand side.
    formula : str, optional
        The text ``node`` was parsed from (errors then show the position).
    """
    expander = _Expander(formula)
    try:
        result = expander.expand(node)
    except RecursionError:
        raise FormulaError("the formula is too deeply nested to expand", formula) from None
    ordered = sorted(_unique(result.terms), key=len)  # stable: by order, then appearance
    return TermStructure(
        intercept=result.intercept if result.intercept is not None else True,
        variables=tuple(expander.nodes),
        keys=tuple(expander.keys),
        terms=tuple(tuple(sorted(t)) for t in ordered),
    )


def terms_of_text(rhs: str) -> TermStructure:
    """The expanded terms of a right-hand side given as text, its calls checked against
    the vocabulary.  Kept by text (the result is immutable): a fit and its predictions
    expand the same right-hand sides many times.  Errors are raised anew every time."""
    if not isinstance(rhs, str):
        parse_expression(rhs)  # the located FormulaError for a non-string
    return _terms_of_text(rhs)


@lru_cache(maxsize=1024)
def _terms_of_text(rhs: str) -> TermStructure:
    node = parse_expression(rhs)
    check_calls(node, rhs)
    return expand_terms(node, rhs)
