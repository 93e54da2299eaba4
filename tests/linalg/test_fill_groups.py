"""Counting levels with identical blocks, exactly up to a bound (fillin.count_level_groups)."""

from __future__ import annotations

import numpy as np

from mixedmodels.linalg.fillin import count_level_groups, level_groups


def blocks_of(kinds: np.ndarray) -> np.ndarray:
    """(2, 2, l) blocks, level s's block determined by kinds[s]."""
    base = np.array([[2.0, 0.5], [0.5, 1.0]])
    return base[:, :, None] * (1.0 + kinds[None, None, :])


def test_few_groups_are_counted_exactly_even_past_the_prefix():
    kinds = np.zeros(1000)
    kinds[-1] = 1.0  # a second kind of block only at the very end
    d = blocks_of(kinds)
    assert count_level_groups(d, most=3) == level_groups(d)[1] == 2


def test_many_groups_give_a_count_above_the_bound():
    d = blocks_of(np.arange(5000.0))  # every level differs
    assert level_groups(d)[1] == 5000
    found = count_level_groups(d, most=10)
    assert 10 < found <= 5000
    assert count_level_groups(d, most=10_000) == 5000
