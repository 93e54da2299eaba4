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


def nesting_partial(inner: RandomBlock, outer: RandomBlock) -> np.ndarray:
    """For each level of ``inner``: the level of ``outer`` its rows have in this chunk, -1
    when it has no rows here, -2 when they have several."""
    first = np.full(inner.n_levels, -1, dtype=np.int64)
    first[inner.codes] = outer.codes
    clash = np.zeros(inner.n_levels, dtype=bool)
    clash[inner.codes[first[inner.codes] != outer.codes]] = True
    first[clash] = -2
    return first


def merge_nesting(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two chunks' :func:`nesting_partial` results, combined."""
    out = np.where(a == -1, b, a)
    out[(a >= 0) & (b >= 0) & (a != b)] = -2
    out[(a == -2) | (b == -2)] = -2
    return out


def is_nested_by(partial: np.ndarray) -> bool:
    """Every level of the inner term occurs with a single level of the outer term."""
    return bool(np.all(partial != -2))
