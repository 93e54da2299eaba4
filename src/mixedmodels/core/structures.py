"""Covariance structures of random-effect terms (defined in
:mod:`mixedmodels.reterms.structures`; re-exported for the engine's modules)."""

from mixedmodels.reterms.structures import (
    CovarianceStructure,
    Diagonal,
    ScaledIdentity,
    Unstructured,
    covariance_to_reported,
    lower_triangle_indices,
)

__all__ = [
    "CovarianceStructure",
    "Diagonal",
    "ScaledIdentity",
    "Unstructured",
    "covariance_to_reported",
    "lower_triangle_indices",
]
