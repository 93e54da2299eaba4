"""R's expression language of model formulas as data: tokens, a syntax tree, R's deparse.

A formula is parsed here into a tree of a few node types (names, numbers, strings, calls,
unary and binary operators, parentheses) and never handed to Python: there is no attribute
access, no indexing, no lambda, no name that starts with an underscore.  What a tree may
call is checked against :mod:`mixedmodels.formula.functions`; what it means is decided by
the interpreter of the design layer.

Operator precedence follows R (``?Syntax``), high to low::

    ^ (right to left)   unary - +   :   %any%   * /   binary + -
    < > <= >= == !=     !           & &&        | ||  ~

``**`` is read as ``^``, as R reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from mixedmodels.errors import FormulaError

# ------------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Name:
    """A variable (data column) or constant; ``quoted`` for a backtick-quoted name."""

    id: str
    pos: int
    quoted: bool = False


@dataclass(frozen=True)
class Number:
    """A numeric literal, with the text it was written as."""

    value: float
    pos: int


@dataclass(frozen=True)
class String:
    """A string literal."""

    value: str
    pos: int


@dataclass(frozen=True)
class Call:
    """``func(args..., name = value...)``."""

    func: str
    args: tuple[Node, ...]
    keywords: tuple[tuple[str, Node], ...]
    pos: int


@dataclass(frozen=True)
class Unary:
    """``-x``, ``+x``, ``!x``."""

    op: str
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    """``left op right``; ``pos`` is the operator's position."""

    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class Paren:
    """``(inner)``, kept as R keeps it (it matters to deparse and to formula terms)."""

    inner: Node
    pos: int


Node = Name | Number | String | Call | Unary | Binary | Paren

# ------------------------------------------------------------------------------ tokens

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
  | (?P<name>(?:[^\W\d_]|\.(?!\d))[\w.]*)
  | (?P<quoted>`[^`]*`)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>%[^%\s]*%|\*\*|\|\||&&|==|!=|<=|>=|[~+\-*/^:|&!<>(),=])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "name", "quoted", "string", "op", "end"
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``; anything outside R's formula language is a located error."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            what = {
                "$": "'$' (element access) is not part of the formula language",
                "@": "'@' (slot access) is not part of the formula language",
                "[": "'[' (indexing) is not part of the formula language",
                "]": "']' (indexing) is not part of the formula language",
                "_": "names may not start with '_' (quote a column name with backticks)",
                ";": "';' is not part of the formula language",
                "{": "'{' is not part of the formula language",
                "}": "'}' is not part of the formula language",
                '"': "unterminated string",
                "'": "unterminated string",
                "`": "unterminated backtick quote",
            }.get(ch, f"unexpected character {ch!r}")
            if ch == "_":
                word = re.match(r"[\w.]+", text[pos:])
                what = f"name {word.group()!r}: {what}" if word else what
            raise FormulaError(what, text, pos)
        kind = m.lastgroup or ""
        if kind != "space":
            value = m.group()
            if kind == "op" and value == "**":
                value = "^"
            if kind == "quoted" and value == "``":
                raise FormulaError("empty backtick-quoted name", text, pos)
            if kind == "name" and value == ".":
                raise FormulaError(
                    "'.' (R's 'every other column') is not supported: name the columns "
                    "(a column called '.' is written `.`)",
                    text,
                    pos,
                )
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ------------------------------------------------------------------------------ parser

# binding power of binary operators (left, right); right < left for right associativity
_BINARY_POWER: dict[str, tuple[int, int]] = {
    "~": (30, 31),
    "|": (50, 51),
    "||": (50, 51),
    "&": (60, 61),
    "&&": (60, 61),
    "==": (80, 81),
    "!=": (80, 81),
    "<": (80, 81),
    ">": (80, 81),
    "<=": (80, 81),
    ">=": (80, 81),
    "+": (90, 91),
    "-": (90, 91),
    "*": (100, 101),
    "/": (100, 101),
    "%": (110, 111),  # every %op%
    ":": (120, 121),
    "^": (141, 140),
}
_UNARY_POWER = {"-": 130, "+": 130, "!": 70, "~": 30}

_SPECIAL_OPERATORS = {"%in%", "%%", "%/%"}


def _power(token: Token) -> tuple[int, int] | None:
    if token.kind != "op":
        return None
    if token.text.startswith("%"):
        return _BINARY_POWER["%"]
    return _BINARY_POWER.get(token.text)


MAX_DEPTH = 200  # nesting of parentheses, calls and operators a formula may have


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, message: str, pos: int) -> FormulaError:
        return FormulaError(message, self.text, pos)

    def expect(self, text: str) -> Token:
        token = self.take()
        if token.kind != "op" or token.text != text:
            found = "the end of the formula" if token.kind == "end" else repr(token.text)
            raise self.error(f"expected {text!r}, found {found}", token.pos)
        return token

    def expression(self, min_power: int = 0) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"the formula is nested more than {MAX_DEPTH} levels deep", self.peek().pos
            )
        try:
            return self._expression(min_power)
        finally:
            self.depth -= 1

    def _expression(self, min_power: int) -> Node:
        left = self.prefix()
        while True:
            token = self.peek()
            power = _power(token)
            if power is None or power[0] <= min_power:
                break
            self.take()
            if token.text.startswith("%") and token.text not in _SPECIAL_OPERATORS:
                raise self.error(f"unknown operator {token.text}", token.pos)
            right = self.operand_after(token, power[1])
            left = Binary(token.text, left, right, token.pos)
        return left

    def operand_after(self, operator: Token, power: int) -> Node:
        nxt = self.peek()
        if nxt.kind == "end" or (nxt.kind == "op" and nxt.text in (")", ",")):
            if operator.text in ("|", "||") and nxt.text == ")":
                raise self.error("empty grouping factor after '|'", nxt.pos)
            where = "at the end of the formula" if nxt.kind == "end" else f"before {nxt.text!r}"
            raise self.error(f"{operator.text!r} needs a right-hand side {where}", nxt.pos)
        return self.expression(power)

    def prefix(self) -> Node:
        token = self.take()
        if token.kind == "number":
            if self.peek().kind == "op" and self.peek().text == "(":
                raise self.error(f"the number {token.text} cannot be called", token.pos)
            return Number(float(token.text.rstrip("L")), token.pos)
        if token.kind == "string":
            body = token.text[1:-1]
            return String(re.sub(r"\\(.)", r"\1", body), token.pos)
        if token.kind == "quoted":
            if self.peek().text == "(" and self.peek().kind == "op":
                raise self.error("a backtick-quoted name cannot be called", token.pos)
            return Name(token.text[1:-1], token.pos, quoted=True)
        if token.kind == "name":
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text == "(":
                return self.call(token)
            return Name(token.text, token.pos)
        if token.kind == "op" and token.text == "(":
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text == ")":
                raise self.error("empty parentheses", token.pos)
            if nxt.kind == "op" and nxt.text in ("|", "||"):
                raise self.error("empty left side of '|' in a random-effect term", token.pos)
            inner = self.expression()
            self.expect(")")
            return Paren(inner, token.pos)
        if token.kind == "op" and token.text in _UNARY_POWER:
            operand = self.operand_after(token, _UNARY_POWER[token.text])
            return Unary(token.text, operand, token.pos)
        if token.kind == "end":
            raise self.error("the formula ends where an expression is expected", token.pos)
        raise self.error(f"unexpected {token.text!r}", token.pos)

    def call(self, name: Token) -> Call:
        self.expect("(")
        args: list[Node] = []
        keywords: list[tuple[str, Node]] = []
        if self.peek().text == ")" and self.peek().kind == "op":
            self.take()
            return Call(name.text, (), (), name.pos)
        while True:
            token = self.peek()
            after = self.tokens[self.i + 1]
            if token.kind in ("name", "quoted") and after.kind == "op" and after.text == "=":
                self.take()
                self.take()
                keyword = token.text.strip("`")
                if any(k == keyword for k, _ in keywords):
                    raise self.error(f"argument {keyword!r} given twice", token.pos)
                keywords.append((keyword, self.argument()))
            else:
                if keywords:
                    raise self.error("positional argument after a named one", token.pos)
                args.append(self.argument())
            sep = self.take()
            if sep.kind == "op" and sep.text == ")":
                return Call(name.text, tuple(args), tuple(keywords), name.pos)
            if not (sep.kind == "op" and sep.text == ","):
                found = "the end of the formula" if sep.kind == "end" else repr(sep.text)
                raise self.error(f"expected ',' or ')' in the call of {name.text}(), "
                                 f"found {found}", sep.pos)

    def argument(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text in (",", ")"):
            raise self.error("empty argument", token.pos)
        return self.expression()


def _check_parentheses(text: str) -> None:
    """Unbalanced parentheses, located (outside strings and backtick quotes)."""
    opened: list[int] = []
    for token in tokenize(text):
        if token.kind != "op":
            continue
        if token.text == "(":
            opened.append(token.pos)
        elif token.text == ")":
            if not opened:
                raise FormulaError("unmatched closing parenthesis", text, token.pos)
            opened.pop()
    if opened:
        raise FormulaError("unclosed parenthesis", text, opened[-1])


def parse_expression(text: str) -> Node:
    """Parse ``text`` (a formula or one expression of it) into a syntax tree.

    Raises
    ------
    FormulaError
        For anything outside the language, with the position of the fault.
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
    if not text.strip():
        raise FormulaError("empty formula")
    return _parse_text(text)


#: Parsed trees are immutable (frozen nodes), so a text parsed once is not parsed again:
#: a model fit parses the same pieces (response, fixed part, each term) several times.
#: Only successful parses are kept (an error is raised anew every time).
PARSE_CACHE_SIZE = 2048


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_text(text: str) -> Node:
    _check_parentheses(text)
    parser = _Parser(text)
    node = parser.expression()
    token = parser.peek()
    if token.kind != "end":
        raise parser.error(f"unexpected {token.text!r}", token.pos)
    return node


# ----------------------------------------------------------------------------- deparse

_TIGHT = {"/", "^", ":", "%%", "%/%"}  # R deparses these without spaces


def _is_syntactic(name: str) -> bool:
    """A name the tokenizer reads back as this name (so deparse need not quote it); a lone
    '.' is R's "every other column", refused unquoted, so it is quoted."""
    return name != "." and re.fullmatch(r"(?:[^\W\d_]|\.(?!\d))[\w.]*", name) is not None


@lru_cache(maxsize=4096)
def r_number(value: float) -> str:
    """A number as R's ``deparse`` and ``as.character`` write it (15 significant digits,
    fixed or scientific notation, whichever is shorter: ``2``, ``0.5``, ``1e-04``,
    ``1e+05``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    digits = f"{value:.15g}"
    mantissa, _, exponent = f"{float(digits):.14e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    scientific = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    fixed = f"{float(digits):.{max(0, 14 - exp)}f}" if exp < 15 else None
    if fixed is not None and "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    if fixed is None or len(fixed) > len(scientific):
        return scientific
    return fixed


def deparse(node: Node) -> str:
    """R's ``deparse`` of a tree: ``x/2``, ``I(x^2)``, ``2 * pi * t``, ``log(x, base = 2)``,
    ``a:b``, ```odd name```."""
    tail: list[str] = []
    while isinstance(node, Binary):  # a left-deep chain (x1 + x2 + ...) without recursion
        space = "" if node.op in _TIGHT else " "
        tail.append(f"{space}{node.op}{space}{deparse(node.right)}")
        node = node.left
    return _deparse_leaf(node) + "".join(reversed(tail))


def _deparse_leaf(node: Node) -> str:
    if isinstance(node, Name):
        return node.id if _is_syntactic(node.id) else f"`{node.id}`"
    if isinstance(node, Number):
        return r_number(node.value)
    if isinstance(node, String):
        return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    assert isinstance(node, Call)
    args = [deparse(a) for a in node.args]
    args += [f"{k} = {deparse(v)}" for k, v in node.keywords]
    return f"{node.func}({', '.join(args)})"


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children, left to right (no recursion, so
    a formula of thousands of terms is walked like a short one)."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, Binary):
            stack.append(current.right)
            stack.append(current.left)
        elif isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Paren):
            stack.append(current.inner)
        elif isinstance(current, Call):
            children = list(current.args) + [v for _, v in current.keywords]
            stack.extend(reversed(children))


# --------------------------------------------------------------------------- variables

#: Names that are constants, not data columns, when the data have no such column.
CONSTANTS = {"pi": 3.141592653589793, "TRUE": True, "FALSE": False, "T": True, "F": False}


def variables(node: Node) -> list[str]:
    """The data columns an expression reads, in order of appearance (R's ``all.vars``):
    called names, argument names, constants and contrast names (``contr.sum``) excluded."""
    found: list[str] = []
    for n in walk(node):
        if isinstance(n, Name):
            constant = not n.quoted and (n.id in CONSTANTS or n.id.startswith("contr."))
            if not constant and n.id not in found:
                found.append(n.id)
    return found


def calls(node: Node) -> list[Call]:
    """Every call in the tree, outermost first."""
    return [n for n in walk(node) if isinstance(n, Call)]
