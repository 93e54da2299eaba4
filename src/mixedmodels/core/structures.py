"""Covariance structures of random-effect terms (defined in
:mod:`mixedmodels.reterms.structures`; re-exported for the engine's modules)."""

from mixedmodels.reterms.structures import (
    AR1,
    STRUCTURES,
    CompoundSymmetry,
    CovarianceStructure,
    Diagonal,
    HomogeneousCompoundSymmetry,
    ScaledIdentity,
    Toeplitz,
    Unstructured,
    covariance_to_reported,
    lower_triangle_indices,
    partial_from_toeplitz,
    psd_cholesky,
    toeplitz_from_partial,
)

__all__ = [
    "AR1",
    "STRUCTURES",
    "CompoundSymmetry",
    "HomogeneousCompoundSymmetry",
    "Toeplitz",
    "partial_from_toeplitz",
    "psd_cholesky",
    "toeplitz_from_partial",
    "CovarianceStructure",
    "Diagonal",
    "ScaledIdentity",
    "Unstructured",
    "covariance_to_reported",
    "lower_triangle_indices",
]
