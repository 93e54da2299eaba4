"""Residual correlation structures within groups, nlme's ``correlation =`` argument.

>>> import mixedmodels as mm
>>> structure = mm.cor.AR1("Time", group="Mare")

Each is passed to :func:`mixedmodels.lmer` as ``correlation=``; the classes live in
:mod:`mixedmodels.core.residual`, this module names the public ones.
"""

from mixedmodels.core.residual import (
    AR1,
    ARMA,
    CAR1,
    CompoundSymmetry,
    CompSymm,
    ResidualCorrelation,
)

__all__ = ["AR1", "ARMA", "CAR1", "CompSymm", "CompoundSymmetry", "ResidualCorrelation"]
