"""Residual correlation structures for ``mm.lmer(..., correlation=...)`` (nlme's
``corStruct`` classes).

>>> import mixedmodels as mm
>>> ovary = mm.datasets.load("Ovary")
>>> fit = mm.lmer("follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)", ovary,
...               correlation=mm.cor.AR1())
"""

from mixedmodels.core.residual import AR1, ARMA, CAR1, CompoundSymmetry, ResidualCorrelation

CompSymm = CompoundSymmetry  # nlme's corCompSymm

__all__ = ["AR1", "ARMA", "CAR1", "CompSymm", "CompoundSymmetry", "ResidualCorrelation"]
