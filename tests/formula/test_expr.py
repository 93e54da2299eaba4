"""The formula language as data: tokens, R's precedence, R's deparse, and everything that is
not R's formula language (Python in particular) refused with its position."""

from __future__ import annotations

import pytest

from mixedmodels.design.evaluate import IMPLEMENTED
from mixedmodels.errors import FormulaError, MixedModelsError
from mixedmodels.formula import parse_formula
from mixedmodels.formula.expr import (
    Binary,
    Call,
    Name,
    Number,
    Unary,
    deparse,
    parse_expression,
    r_number,
    variables,
)
from mixedmodels.formula.functions import PLACED, SIGNATURES


@pytest.mark.parametrize(
    "text, tree",
    [
        # R: -2^2 is -(2^2); 2^3^2 is 2^(3^2); -1:3 is (-1):3; a + b * c; !x == y is !(x == y)
        ("-2^2", Unary("-", Binary("^", Number(2, 1), Number(2, 3), 2), 0)),
        ("2^3^2", Binary("^", Number(2, 0), Binary("^", Number(3, 2), Number(2, 4), 3), 1)),
        ("-1:3", Binary(":", Unary("-", Number(1, 1), 0), Number(3, 3), 2)),
        ("a + b * c", Binary("+", Name("a", 0), Binary("*", Name("b", 4), Name("c", 8), 6), 2)),
        ("!x == y", Unary("!", Binary("==", Name("x", 1), Name("y", 6), 3), 0)),
        ("a:b^2", Binary(":", Name("a", 0), Binary("^", Name("b", 2), Number(2, 4), 3), 1)),
        ("x ** 2", Binary("^", Name("x", 0), Number(2, 5), 2)),
        ("log(x, base = 2)", Call("log", (Name("x", 4),), (("base", Number(2, 14)),), 0)),
        ("`my var` + total.fruits",
         Binary("+", Name("my var", 0, True), Name("total.fruits", 11), 9)),
    ],
)
def test_precedence_follows_r(text, tree):
    assert parse_expression(text) == tree


@pytest.mark.parametrize(
    "value, text",
    # R 4.2: as.character / deparse of these numbers
    [(2.0, "2"), (0.5, "0.5"), (1e-4, "1e-04"), (1e5, "1e+05"), (10000.0, "10000"),
     (123456.0, "123456"), (0.1 + 0.2, "0.3"), (1 / 3, "0.333333333333333"),
     (-2.5, "-2.5"), (1e15, "1e+15"), (2.5e-7, "2.5e-07")],
)
def test_numbers_print_as_r_prints_them(value, text):
    assert r_number(value) == text


def test_deparse_round_trips():
    for text in ["I((x - 1)^2)", "log(1 + total.fruits, base = 10)", "a:b + c %in% d",
                 "x%%2 - x%/%3", "-x + !y", "f(a)" if False else "poly(x, 2, raw = TRUE)"]:
        assert deparse(parse_expression(text)) == text
        assert parse_expression(deparse(parse_expression(text))) == parse_expression(text)


def test_variables_are_r_all_vars():
    node = parse_expression("log(x + pi) * C(f, contr.sum) + poly(z, degree = k) + `a b`")
    assert variables(node) == ["x", "f", "z", "k", "a b"]


def test_the_interpreter_implements_exactly_the_vocabulary():
    """Every name a formula may call is evaluated, and nothing else is (offset() and
    cbind() are placed terms, handled where they may stand)."""
    assert set(SIGNATURES) == IMPLEMENTED | set(PLACED)


INJECTIONS = [
    ("y ~ x + I(__import__('os').system('touch HIT'))", "names may not start with '_'", 10),
    ("y ~ log(__import__('os').system('touch HIT'))", "names may not start with '_'", 8),
    ("I(__import__('os').system('touch HIT')) ~ x", "names may not start with '_'", 2),
    ("y ~ x + (I(os.system('touch HIT'))|g)", "unknown function os.system()", 11),
    ("y ~ offset(eval('1'))", "unknown function eval()", 11),
    ("y ~ ().__class__.__base__.__subclasses__()", "empty parentheses", 4),
    ("y ~ exec('1')", "unknown function exec()", 4),
    ("y ~ open('HIT', 'w')", "unknown function open()", 4),
    ("y ~ getattr(x, 'real')", "unknown function getattr()", 4),
    ("y ~ x[0]", "'[' (indexing)", 5),
    ("y ~ x$a", "'$' (element access)", 5),
    ("y ~ x@a", "'@' (slot access)", 5),
    ("y ~ {x}", "'{'", 4),
    ("y ~ x; import os", "';'", 5),
    ("y ~ (lambda: 1)()", "unexpected '('", 15),
    ("y ~ `log`(x)", "cannot be called", 4),
    ("y ~ np.log(x)", "unknown function np.log()", 4),
    ("y ~ f'{x}'", "unexpected", 5),
    ("y ~ x %o% z", "unknown operator %o%", 6),
]


@pytest.mark.parametrize("formula, words, position", INJECTIONS, ids=[f for f, _, _ in INJECTIONS])
def test_python_in_a_formula_is_a_located_error(formula, words, position, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    assert isinstance(info.value, MixedModelsError)
    assert words in str(info.value)
    assert info.value.position == position
    assert not (tmp_path / "HIT").exists()


@pytest.mark.parametrize(
    "formula, words",
    [
        ("y ~ log(x, foo = 2)", "no argument 'foo'"),
        ("y ~ log(x, 2, 3)", "at most 2"),
        ("y ~ pmin(x)", "needs argument 'y'"),
        ("y ~ log(x, x = 2)", "twice"),
        ("y ~ offset(x) * z", "may only be used as a term"),
        ("y ~ x + cbind(a, b)", "may only be used as the response"),
        ("y ~ x + (1 | g) ~ z", "exactly one '~'"),
        ("~ x", "no response"),
        ("y ~ ", "right-hand side"),
        ("y ~ x + -(1 | g)", "cannot be subtracted"),
        ("y ~ x * (1 | g)", "in parentheses"),
        ("y ~ (1 | g | h)", "one '|'"),
        ("y ~ log(x,)", "empty argument"),
        ("y ~ 'unterminated", "unterminated string"),
    ],
)
def test_misuse_is_a_formula_error(formula, words):
    with pytest.raises(FormulaError, match=None) as info:
        parse_formula(formula)
    assert words in str(info.value)


def test_a_dotted_name_is_one_column_name_never_attribute_access():
    """R names may hold dots and underscores: ``x.__class__`` is a column name (and an
    unknown column is an error when the data are read), never Python's attribute."""
    parsed = parse_formula("y ~ x.__class__ + (1 | g)")
    assert parsed.fixed == "x.__class__"
    assert variables(parse_expression(parsed.fixed)) == ["x.__class__"]


def test_non_string_formula():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(42)  # type: ignore[arg-type]
