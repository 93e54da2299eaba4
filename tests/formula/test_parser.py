"""lme4's formula language: bar terms, expansions and located errors."""

import pytest

from mixedmodels.errors import FormulaError, MixedModelsError
from mixedmodels.formula import parse_formula


def groups(text):
    return [(t.expr, t.group_name) for t in parse_formula(text).random]


def test_fixed_and_random_parts():
    f = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert f.response == "Reaction"
    assert f.fixed == "Days"
    assert groups("Reaction ~ Days + (Days | Subject)") == [("Days", "Subject")]


def test_double_bar_expands_to_uncorrelated_terms():
    assert groups("y ~ x + (x || g)") == [("1", "g"), ("0 + x", "g")]
    assert groups("y ~ (0 + x + z || g)") == [("0 + x", "g"), ("0 + z", "g")]


def test_nesting_expands_as_lme4():
    """Names as lme4 1.1-31 gives them (ngrps of the arabidopsis_nested_three reference)."""
    assert groups("y ~ (1 | a/b)") == [("1", "b:a"), ("1", "a")]
    assert groups("y ~ (1 | a/b/c)") == [("1", "c:(b:a)"), ("1", "b:a"), ("1", "a")]
    assert groups("y ~ (1 | a:b)") == [("1", "a:b")]


def test_pieces_are_r_deparse_of_the_tree():
    f = parse_formula("y ~ I(x**2) + log( z ) + (1|g)")
    assert f.fixed == "I(x^2) + log(z)"


def test_no_fixed_terms_means_intercept():
    assert parse_formula("y ~ (1|g)").fixed == "1"
    assert parse_formula("y ~ 0 + (1|g)").fixed == "0"


@pytest.mark.parametrize(
    "text, position, words",
    [
        ("y ~ x + (1|", 8, "unclosed"),
        ("y ~ x + (1|g))", 13, "unmatched"),
        ("y ~ x + (|g)", 8, "empty left side"),
        ("y ~ x + (1|)", 11, "empty grouping"),
        ("y ~ x + 1|g", 9, "parentheses"),
        ("y ~ x + (1|g+h)", 11, "column name"),
    ],
)
def test_errors_name_the_fault_and_its_position(text, position, words):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    assert info.value.position == position
    assert words in str(info.value)
    assert isinstance(info.value, MixedModelsError)


def test_missing_tilde():
    with pytest.raises(FormulaError, match="'~'"):
        parse_formula("y x + (1|g)")
