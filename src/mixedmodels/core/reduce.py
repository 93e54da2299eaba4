"""Cross products of rows that come in chunks: partial Grams, added.

Every block of ``[Z X y]' W [Z X y]`` is a sum over rows, so the Gram of all rows is the sum
of the Grams of any partition of them (:func:`add_grams`); the row-level work of a chunk is
:func:`partial_gram`.
"""

from __future__ import annotations

import numpy as np

from mixedmodels.core.gram import Gram, build_gram
from mixedmodels.core.terms import RandomBlock


def partial_gram(
    blocks: list[RandomBlock],
    X: np.ndarray,
    y_work: np.ndarray,
    weights: np.ndarray | None,
) -> Gram:
    """The Gram of one chunk's rows (``blocks`` in the engine's order)."""
    return build_gram(blocks, X, y_work, weights)


def add_grams(a: Gram, b: Gram) -> Gram:
    """The Gram of the rows of ``a`` and ``b`` together."""
    return Gram(
        [x + y for x, y in zip(a.diagonal, b.diagonal, strict=True)],
        {key: (a.off_diagonal[key] + b.off_diagonal[key]).tocsr() for key in a.off_diagonal},
        [x + y for x, y in zip(a.xy_random, b.xy_random, strict=True)],
        a.xy_xy + b.xy_xy,
    )


def cross_products(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """``[X y]' W [X y]`` of one chunk (the least-squares shift of the response needs only
    this)."""
    xy = np.column_stack([X, y])
    wxy = xy if weights is None else xy * weights[:, None]
    return xy.T @ wxy
