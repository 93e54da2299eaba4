"""The engine's view of a random-effect term (defined in :mod:`mixedmodels.reterms`)."""

from mixedmodels.reterms.blocks import RandomBlock
from mixedmodels.reterms.structures import lower_triangle_indices

__all__ = ["RandomBlock", "lower_triangle_indices"]
