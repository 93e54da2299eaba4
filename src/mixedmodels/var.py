"""Variance functions, nlme's ``weights =`` argument: a residual variance per level of a
factor, or one that varies with a covariate or the fitted values.

>>> import mixedmodels as mm
>>> function = mm.var.Power()  # sd proportional to |fitted|^delta

Each is passed to :func:`mixedmodels.lmer` or :func:`mixedmodels.nlme` as ``weights=``;
the classes live in :mod:`mixedmodels.core.variance_functions`, this module names the
public ones.
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
