"""Parsing of lme4-style model formulas."""

from mixedmodels.formula.parser import ParsedFormula, RandomTermSpec, parse_formula

__all__ = ["ParsedFormula", "RandomTermSpec", "parse_formula"]
