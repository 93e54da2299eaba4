"""Parsing of lme4-style model formulas into syntax trees (data, never code)."""

from mixedmodels.formula.expr import deparse, parse_expression, variables
from mixedmodels.formula.parser import ParsedFormula, RandomTermSpec, parse_formula

__all__ = [
    "ParsedFormula",
    "RandomTermSpec",
    "deparse",
    "parse_expression",
    "parse_formula",
    "variables",
]
