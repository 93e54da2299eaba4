"""Split an lme4 formula into its response, fixed part and random-effect terms.

The fixed part is handed to formulaic later; this module only understands the bar terms
``(expr | g)`` and ``(expr || g)`` and the grouping operators ``a/b`` (nesting, meaning
``a`` and ``a:b``) and ``a:b`` (interaction of factors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mixedmodels.errors import FormulaError

_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_.]")
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


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
    """

    expr: str
    group_factors: tuple[str, ...]
    name: str | None = None

    @property
    def group_name(self) -> str:
        """Name of the grouping factor as lme4 prints it (``a:b`` for an interaction)."""
        return self.name or ":".join(self.group_factors)

    def __str__(self) -> str:
        return f"({self.expr} | {self.group_name})"


@dataclass(frozen=True)
class ParsedFormula:
    """The pieces of an lme4 formula.

    Attributes
    ----------
    text : str
        The formula as given.
    response : str
        Left side of ``~``.
    fixed : str
        Right side without the bar terms, in formulaic syntax (``^`` inside function calls
        turned into ``**`` as R means a power there).
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

    @property
    def fixed_formula(self) -> str:
        """``response ~ fixed`` for formulaic."""
        return f"{self.response} ~ {self.fixed}"


def _check_parentheses(text: str) -> None:
    depth = 0
    opened: list[int] = []
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
            opened.append(i)
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError("unmatched closing parenthesis", text, i)
            opened.pop()
    if depth > 0:
        raise FormulaError("unclosed parenthesis", text, opened[-1])


def _split_top_level(text: str, sep: str, start: int = 0) -> list[tuple[str, int]]:
    """Split ``text`` on ``sep`` outside parentheses; return (piece, offset) pairs."""
    pieces: list[tuple[str, int]] = []
    depth = 0
    last = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            pieces.append((text[last:i], start + last))
            i += len(sep)
            last = i
            continue
        i += 1
    pieces.append((text[last:], start + last))
    return pieces


def _find_bar(text: str) -> tuple[int, int] | None:
    """Position and width (1 or 2) of the top-level ``|`` or ``||`` in ``text``."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            width = 2 if text[i + 1 : i + 2] == "|" else 1
            return i, width
    return None


def _powers_in_calls(text: str) -> str:
    """Turn R's ``^`` into ``**`` inside function calls such as ``I(x^2)``.

    Outside calls ``^`` keeps formula meaning (interaction expansion), as in R.
    """
    out: list[str] = []
    stack: list[bool] = []  # True for a function-call parenthesis
    for i, ch in enumerate(text):
        if ch == "(":
            j = i - 1
            while j >= 0 and text[j] == " ":
                j -= 1
            stack.append(j >= 0 and bool(_IDENTIFIER_CHAR.match(text[j])))
        elif ch == ")" and stack:
            stack.pop()
        if ch == "^" and any(stack):
            out.append("**")
        else:
            out.append(ch)
    return "".join(out)


def _expand_grouping(
    text: str, formula: str, offset: int
) -> list[tuple[tuple[str, ...], str | None]]:
    """Grouping factors of one bar term, as lme4 expands them, with lme4's names.

    ``a:b`` -> ``[((a, b), None)]``; ``a/b`` -> ``[((b, a), None), ((a,), None)]`` (lme4
    writes the nested factor ``b:a``); ``a/b/c`` -> ``[((c, b, a), "c:(b:a)"), ((b, a),
    None), ((a,), None)]``.
    """
    stripped = text.strip()
    if not stripped:
        raise FormulaError("empty grouping factor after '|'", formula, offset)
    nested = [(p.strip(), o) for p, o in _split_top_level(stripped, "/", offset)]
    levels: list[tuple[str, ...]] = []
    for piece, pos in nested:
        parts = tuple(q.strip() for q in piece.split(":"))
        for part in parts:
            if not _NAME.match(part):
                where = formula.find(part, pos) if part else pos
                raise FormulaError(
                    f"grouping factor {part!r} must be a column name (or a:b, a/b)",
                    formula,
                    max(where, 0),
                )
        levels.append(tuple(p.strip("`") for p in parts))
    factors: list[tuple[tuple[str, ...], str | None]] = []
    prefix: tuple[str, ...] = ()
    name = ""
    for parts in levels:
        prefix = parts + prefix
        own = ":".join(parts)
        name = own if not name else f"{own}:({name})" if ":" in name else f"{own}:{name}"
        factors.append((prefix, None if name == ":".join(prefix) else name))
    return list(reversed(factors))


def _uncorrelated_pieces(expr: str) -> list[str]:
    """``x + z`` under ``||`` -> ``["1", "0 + x", "0 + z"]`` (lme4's expansion)."""
    terms = [t.strip() for t, _ in _split_top_level(expr, "+")]
    has_intercept = True
    pieces: list[str] = []
    for term in terms:
        if term in ("0", "-1") or term.endswith("- 1") or term.endswith("-1"):
            has_intercept = False
            term = term.rsplit("-", 1)[0].strip() if "-" in term else ""
        if term in ("", "1"):
            continue
        pieces.append(f"0 + {term}")
    return (["1"] if has_intercept else []) + pieces


def _is_call(body: str, name: str) -> bool:
    """True when ``body`` is one whole call ``name(...)``."""
    head = body[: len(name)]
    rest = body[len(name) :].lstrip()
    if head != name or not rest.startswith("(") or not body.endswith(")"):
        return False
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i == len(rest) - 1
    return False


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
        For a missing ``~``, unbalanced parentheses, an empty side of a bar, or a grouping
        factor that is not a column name; the message shows where.
    """
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, got {type(text).__name__}")
    _check_parentheses(text)
    sides = _split_top_level(text, "~")
    if len(sides) != 2:
        pos = sides[2][1] - 1 if len(sides) > 2 else None
        msg = "formula needs exactly one '~' between response and predictors"
        raise FormulaError(msg, text, pos) if pos is not None else FormulaError(msg, text)
    (lhs, _), (rhs, rhs_start) = sides
    if not lhs.strip():
        raise FormulaError("formula has no response on the left of '~'", text, 0)
    if not rhs.strip():
        raise FormulaError("formula has nothing on the right of '~'", text, len(text))

    fixed_parts: list[str] = []
    offsets: list[str] = []
    random: list[RandomTermSpec] = []
    for piece, pos in _split_top_level(rhs, "+", rhs_start):
        body = piece.strip()
        lead = pos + (len(piece) - len(piece.lstrip()))
        if body.startswith("(") and body.endswith(")") and _find_bar(body[1:-1]) is not None:
            inner = body[1:-1]
            bar, width = _find_bar(inner)
            expr = inner[:bar].strip()
            group_text = inner[bar + width :]
            if not expr:
                raise FormulaError("empty left side of '|' in a random-effect term", text, lead)
            groups = _expand_grouping(group_text, text, lead + 1 + bar + width)
            exprs = _uncorrelated_pieces(expr) if width == 2 else [expr]
            for group, name in groups:
                for e in exprs:
                    random.append(RandomTermSpec(_powers_in_calls(e), group, name))
        elif "|" in body:
            raise FormulaError(
                "a random-effect term must be written in parentheses, like (1 | g)",
                text,
                lead + body.index("|"),
            )
        elif _is_call(body, "offset"):
            inner = body[body.index("(") + 1 : -1].strip()
            if not inner:
                raise FormulaError("offset() needs an expression", text, lead)
            offsets.append(_powers_in_calls(inner))
        else:
            fixed_parts.append(body)
    fixed = " + ".join(p for p in fixed_parts if p) or "1"
    # "y ~ 0 + (1|g)" leaves "0": no intercept, which formulaic understands.
    return ParsedFormula(
        text=text,
        response=_powers_in_calls(lhs.strip()),
        fixed=_powers_in_calls(fixed),
        random=tuple(random),
        offsets=tuple(offsets),
    )
