"""What an R formula expression reads from the data (R's ``all.vars``)."""

from __future__ import annotations

from functools import lru_cache

from mixedmodels.formula.expr import parse_expression, variables


def variables_of(text: str) -> list[str]:
    """The data columns an R expression reads, in order of appearance (R's ``all.vars``).

    Called names (functions), keyword-argument names, R constants and contrast names are
    not variables; backtick-quoted names are.
    """
    return list(_variables_of(text))


@lru_cache(maxsize=4096)
def _variables_of(text: str) -> tuple[str, ...]:
    """:func:`variables_of`, once per text (a design build asks for each term's several
    times; the answer depends on the text alone)."""
    return tuple(variables(parse_expression(text)))
