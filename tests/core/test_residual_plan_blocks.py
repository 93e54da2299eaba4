"""BidiagonalPlan's basis (core/residual.py): with BATCHED_PRODUCTS columns or more the
per-gap sums A_d, B_d and C_d + C_d' come from one batched sum over [m_i m_{i-1}]; they
equal, bit for bit, the three sums formed separately with ``_per_level_products`` (the
same products in the same order), on rows with several gaps and unequal levels.  (The
numpy code's arithmetic: the compiled basis, which numba gives, is held to it in
test_residual_kernels.)"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core import residual as residual_module
from mixedmodels.core.residual import (
    AR1,
    BATCHED_PRODUCTS,
    BidiagonalPlan,
    _level_of_rows,
    _per_level_products,
    make_layout,
)


@pytest.mark.parametrize("k", [BATCHED_PRODUCTS, BATCHED_PRODUCTS + 3, 2])
def test_basis_blocks_are_the_separate_sums(k, monkeypatch):
    monkeypatch.setattr(residual_module, "USE_KERNELS", False)
    rng = np.random.default_rng(11)
    sizes = rng.integers(2, 9, size=12)
    groups = np.repeat(np.arange(sizes.size), sizes)
    time = np.concatenate([np.cumsum(rng.integers(1, 4, size=s)) for s in sizes]).astype(float)
    layout = make_layout(groups, time, groups)
    n = groups.size
    M = rng.normal(size=(n, k)) * 10.0 ** rng.integers(-3, 4, size=k)
    level_starts = layout.starts[np.flatnonzero(np.arange(layout.n_groups) % 3 == 0)]
    plan = BidiagonalPlan(layout, M, level_starts, AR1())
    level = _level_of_rows(level_starts, n)
    gaps = layout.gaps()
    later = np.flatnonzero(~layout.first)
    assert plan.gaps.size > 1
    for j, d in enumerate(plan.gaps):
        rows = later[gaps[later] == d]
        cur, prev, lev = M[rows], M[rows - 1], level[rows]
        n_levels = level_starts.size
        np.testing.assert_array_equal(
            plan.basis[1 + 3 * j], _per_level_products(lev, n_levels, cur, cur)
        )
        np.testing.assert_array_equal(
            plan.basis[2 + 3 * j], _per_level_products(lev, n_levels, prev, prev)
        )
        c = _per_level_products(lev, n_levels, cur, prev)
        np.testing.assert_array_equal(plan.basis[3 + 3 * j], c + c.transpose(0, 2, 1))
