"""Random-effect terms as numbers (lme4's ``reTrms``): a term's rows of ``Z`` and its
covariance structure.  Built by the design layer, consumed by the engine; knows nothing of
formulas or data frames."""

from mixedmodels.reterms.blocks import RandomBlock
from mixedmodels.reterms.structures import (
    CovarianceStructure,
    Diagonal,
    ScaledIdentity,
    Unstructured,
    lower_triangle_indices,
)

__all__ = [
    "CovarianceStructure",
    "Diagonal",
    "RandomBlock",
    "ScaledIdentity",
    "Unstructured",
    "lower_triangle_indices",
]
