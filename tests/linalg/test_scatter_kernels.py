"""The scatter fill kernel (row-bucketed groups of levels) against the dense product.

Reference: ``F = sum_s A_s M_s A_s'`` with ``M_s = r_s r_s'``, formed with numpy from the
dense ``A`` (``q x l p``) and the block-diagonal ``blockdiag(M_s)``; the kernel's lower
triangle must equal numpy's to 1e-12 relative to the largest entry (each entry is a sum
of at most ``l`` products of ``p``-term dot products, summed in another order: the
rounding differences are a few ulps of the largest entry, ~1e-15; 1e-12 leaves room and
still catches any product added twice, dropped or put in the wrong place).

The kernel adds each entry's products in the order of the levels, so its result is
bitwise the same for any split of the rows among threads and any size of the groups of
levels: checked with ``np.array_equal``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixedmodels.errors import ArgumentError
from mixedmodels.linalg import fillin

pytestmark = pytest.mark.skipif(not fillin.numba_available(), reason="needs numba (fast extra)")

RTOL = 1e-12


def random_a(rng, n_rows, n_levels, p, used_rows=None):
    """A canonical CSC ``A`` whose ``p`` columns of a level share one row pattern: levels
    with no entry, one entry, a few, and all of ``used_rows`` (default: every row), so
    rows outside ``used_rows`` are never touched."""
    used = np.arange(n_rows) if used_rows is None else np.asarray(used_rows)
    sizes = rng.integers(0, used.size + 1, n_levels)
    sizes[0], sizes[1 % n_levels], sizes[2 % n_levels] = 0, 1, used.size  # empty, single, full
    indptr, indices = [0], []
    for k in sizes:
        rows = np.sort(rng.choice(used, size=k, replace=False))
        for _ in range(p):
            indices.extend(rows)
            indptr.append(indptr[-1] + k)
    indices = np.asarray(indices, dtype=np.int32)
    data = rng.normal(size=indices.size)
    return sp.csc_matrix(
        (data, indices, np.asarray(indptr, dtype=np.int32)), shape=(n_rows, n_levels * p)
    )


def random_factors(rng, p, n_levels):
    return np.ascontiguousarray(np.tril(rng.normal(size=(n_levels, p, p))).transpose(1, 2, 0))


def expected_lower(a, r):
    p, _, n_levels = r.shape
    m = np.zeros((n_levels * p, n_levels * p))
    for s in range(n_levels):
        m[s * p : (s + 1) * p, s * p : (s + 1) * p] = r[:, :, s] @ r[:, :, s].T
    dense = a.toarray()
    return np.tril(dense @ m @ dense.T)


def kernel(monkeypatch, a, p, threads, block_bytes):
    monkeypatch.setattr(fillin, "scatter_threads", lambda products: threads)
    monkeypatch.setattr(fillin, "SCATTER_BLOCK_BYTES", block_bytes)
    return fillin.ScatterFill(a, p)


@pytest.mark.parametrize("p", [1, 2, 3, 4])  # 1-3 written out, 4 the general loop
def test_equals_numpy_for_any_threads_and_groups_bitwise_alike(monkeypatch, p):
    rng = np.random.default_rng(40 + p)
    n_rows, n_levels = 37, 60
    used = np.sort(rng.choice(n_rows, size=30, replace=False))  # 7 rows never touched
    a = random_a(rng, n_rows, n_levels, p, used)
    r = random_factors(rng, p, n_levels)
    want = expected_lower(a, r)
    results = []
    # one level per group (8 bytes), a few (300), the default's size (None: group_bytes,
    # here its floor, all levels), all in one group (2**22)
    for threads in (1, 2, 3):
        for block_bytes in (8, 300, None, 2**22):
            fill = kernel(monkeypatch, a, p, threads, block_bytes)
            assert fill.threads == threads
            if block_bytes == 8:  # one level with entries per group (empty ones join)
                counts = np.diff(a.indptr[::p])
                filled = np.add.reduceat(counts > 0, fill._groups[:-1])
                assert filled.max() == 1 and fill._groups.size > n_levels / 2
            got = fill.lower_fill(r, scale=-0.75)
            np.testing.assert_allclose(got, -0.75 * want, rtol=0, atol=RTOL * np.abs(want).max())
            assert not np.any(np.triu(got, 1))  # the upper triangle is left zero
            results.append(got)
    untouched = np.setdiff1d(np.arange(n_rows), used)
    assert not np.any(results[0][untouched]) and not np.any(results[0][:, untouched])
    for got in results[1:]:
        assert np.array_equal(got, results[0])


def test_threads_without_rows_or_without_products_add_nothing(monkeypatch):
    """Rows split unevenly by hand: empty ranges and a range of rows no level meets."""
    rng = np.random.default_rng(7)
    p, n_rows, n_levels = 2, 25, 40
    a = random_a(rng, n_rows, n_levels, p, used_rows=np.arange(12))  # rows 12.. untouched
    r = random_factors(rng, p, n_levels)
    want = expected_lower(a, r)
    fill = kernel(monkeypatch, a, p, 1, 200)
    kernels = fillin.scatter_kernels()
    for edges in ([0, 0, 5, 5, 12, 25], [0, 12, 25, 25], [0, 25]):
        out = np.zeros((n_rows, n_rows))
        kernels.scatter_lower(
            fill._indptr, fill._indices, a.data, p, r, 1.0,
            np.asarray(edges, dtype=np.int64), fill._groups, out,
        )  # fmt: skip
        np.testing.assert_allclose(out, want, rtol=0, atol=RTOL * np.abs(want).max())
        assert np.array_equal(out, fill.lower_fill(r))


def test_level_blocks_cover_the_levels_in_groups_of_about_the_bytes_asked():
    counts = np.array([0, 3, 5, 0, 1, 10, 2, 2, 0], dtype=np.int64)
    # entries before each level: 0 0 3 8 8 9 19 21 23.  12 bytes an entry and 48 bytes a
    # group: 4 entries, level s in group floor(before_s / 4) = 0 0 0 2 2 2 4 5 5
    assert fillin.ScatterFill.level_blocks(counts, 12, 48).tolist() == [0, 3, 6, 7, 9]
    # one entry a group: a new group wherever an entry precedes (empty levels join)
    assert fillin.ScatterFill.level_blocks(counts, 12, 1).tolist() == [0, 2, 3, 5, 6, 7, 8, 9]
    assert fillin.ScatterFill.level_blocks(counts, 12, 2**30).tolist() == [0, 9]
    assert fillin.ScatterFill.level_blocks(np.zeros(0, dtype=np.int64), 12, 48).tolist() == [0, 0]


def test_refuses_more_rows_than_it_can_index():
    """Rows of F, and positions within a group (fewer than 2**30 + rows), are held as
    uint32 in the kernel."""
    a = sp.csc_matrix((2**31, 2))
    with pytest.raises(ArgumentError, match="fewer than 2\\*\\*31 rows"):
        fillin.ScatterFill(a, 2)
    huge = np.full(3, 2**31)  # a window of at most 2**30 entries: one level per group
    assert fillin.ScatterFill.level_blocks(huge, 1, 2**40).tolist() == [0, 1, 2, 3]


def test_group_bytes_aim_at_products_per_line_of_f_within_the_bounds(monkeypatch):
    """``g = P q^2 / (8 k)`` entries of ``8 p + 4`` bytes, ``k = sum k^2 / sum k``."""
    monkeypatch.setattr(fillin, "SCATTER_PRODUCTS_PER_LINE", 20)
    monkeypatch.setattr(fillin, "SCATTER_MIN_BLOCK_BYTES", 2**18)
    monkeypatch.setattr(fillin, "SCATTER_MAX_BLOCK_BYTES", 2**23)
    group_bytes = fillin.ScatterFill.group_bytes
    # 2,000 rows, levels of 100 entries: 100,000 entries of 20 bytes
    assert group_bytes(2000, np.full(50, 100), 2) == 2_000_000
    # levels of 1 and 3 entries: k = (1 + 9) / 4 = 2.5; 20 * 300^2 / 20 = 90,000 entries
    # of 12 bytes (p = 1)
    assert group_bytes(300, np.array([1, 3, 0]), 1) == 1_080_000
    assert group_bytes(500, np.full(50, 100), 2) == 2**18  # 125,000 bytes: the floor
    assert group_bytes(10_000, np.full(50, 100), 2) == 2**23  # 50 MB: the cap
    assert group_bytes(10, np.zeros(3, dtype=np.int64), 2) == 2**18  # no entries
