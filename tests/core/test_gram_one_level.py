"""Z_j' W Z_k with a one-level block (a smooth's random part) equals the general sparse
construction (an identity between two computations; tolerance: rounding)."""

import numpy as np
import scipy.sparse as sp

from mixedmodels.core import gram
from mixedmodels.reterms.blocks import RandomBlock


def _general(bj, bk, w):
    rows, cols, vals = [], [], []
    for a in range(bj.p):
        for b in range(bk.p):
            rows.append(bj.codes * bj.p + a)
            cols.append(bk.codes * bk.p + b)
            vals.append(bj.z[:, a] * bk.z[:, b] * w)
    shape = (bj.size, bk.size)
    coo = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape)
    return coo.toarray()


def test_one_level_cross_products_match_the_general_construction():
    rng = np.random.default_rng(0)
    n = 500
    grouped = RandomBlock(rng.integers(0, 7, n), 7, rng.normal(size=(n, 2)))
    single = RandomBlock(np.zeros(n, dtype=np.int64), 1, rng.normal(size=(n, 3)))
    w = rng.uniform(1, 2, n)
    for bj, bk in ((grouped, single), (single, grouped)):
        fast = gram._cross_random(bj, bk, w).toarray()
        assert np.abs(fast - _general(bj, bk, w)).max() < 1e-12


def test_one_level_grouped_sums_are_the_cross_product():
    rng = np.random.default_rng(1)
    n = 300
    left, right, w = rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), rng.uniform(1, 2, n)
    codes = np.zeros(n, dtype=np.int64)
    fast = gram.grouped_cross_products(codes, 1, left, right, w)
    slow = np.array([[np.sum(w * left[:, a] * right[:, b]) for b in range(4)] for a in range(3)])
    assert fast.shape == (3, 4, 1) and np.abs(fast[:, :, 0] - slow).max() < 1e-12
    listed = gram.grouped_cross_products(codes, 1, list(left.T), right, None)
    assert np.abs(listed[:, :, 0] - left.T @ right).max() < 1e-12
