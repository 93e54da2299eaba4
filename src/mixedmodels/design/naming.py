"""Column names in R's style (lme4 users compare against them)."""

from __future__ import annotations

import re

_TREATMENT = re.compile(r"\[T\.([^\]]*)\]")
_BRACKET = re.compile(r"\[([^\]]*)\]")


def r_column_name(name: str) -> str:
    """formulaic's ``Intercept``, ``a[T.x]``, ``poly(x, 2)[1]``, ``I(x ** 2)`` in R's
    spelling: ``(Intercept)``, ``ax``, ``poly(x, 2)1``, ``I(x^2)``."""
    if name == "Intercept":
        return "(Intercept)"
    out = _TREATMENT.sub(r"\1", name)
    out = _BRACKET.sub(r"\1", out)
    return out.replace(" ** ", "^").replace("**", "^")
