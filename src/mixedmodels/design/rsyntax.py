"""What an R formula expression reads from the data (R's ``all.vars``)."""

from __future__ import annotations

from mixedmodels.formula.expr import parse_expression, variables


def variables_of(text: str) -> list[str]:
    """The data columns an R expression reads, in order of appearance (R's ``all.vars``).

    Called names (functions), keyword-argument names, R constants and contrast names are
    not variables; backtick-quoted names are.
    """
    return variables(parse_expression(text))
