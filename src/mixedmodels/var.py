"""Variance functions for ``mm.lmer(..., weights=...)`` (nlme's ``varFunc`` classes).

>>> import mixedmodels as mm
>>> ortho = mm.datasets.load("Orthodont")
>>> fit = mm.lmer("distance ~ age * Sex + (1 | Subject)", ortho, weights=mm.var.Ident("Sex"))
"""

from mixedmodels.core.variance_functions import (
    FITTED,
    Combined,
    Exp,
    Fixed,
    Ident,
    Power,
    VarianceFunction,
)

__all__ = ["FITTED", "Combined", "Exp", "Fixed", "Ident", "Power", "VarianceFunction"]
