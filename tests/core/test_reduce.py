"""The Gram added up chunk by chunk (:func:`chunk_gram`, :class:`GramSum`) equals the Gram of
all rows at once (:func:`build_gram`): an identity, since every block is a sum over rows.
Checked for every chunking (one row per chunk included), rows grouped by level or shuffled
(levels and level pairs spanning chunks), weights, terms with several columns on both sides,
a term of one column of ones and a one-level term."""

from __future__ import annotations

import mmap
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from mixedmodels.core import reduce
from mixedmodels.core.gram import build_gram
from mixedmodels.core.reduce import GramSum, chunk_gram
from mixedmodels.core.terms import RandomBlock

# Sums of a few hundred O(1) products in another order: rounding differences of ~1e-13.
RTOL, ATOL = 1e-12, 1e-12


def _data(n: int, seed: int, grouped: bool):
    rng = np.random.default_rng(seed)
    a = np.sort(rng.integers(0, 40, n)) if grouped else rng.integers(0, 40, n)
    b = rng.integers(0, 9, n)
    x = rng.normal(size=n)
    blocks = [
        RandomBlock(a, 40, np.column_stack([np.ones(n), x])),  # (x | a)
        RandomBlock(b, 9, np.column_stack([np.ones(n), rng.normal(size=n)])),  # (u | b)
        RandomBlock(rng.integers(0, 5, n), 5, np.ones((n, 1))),  # (1 | c)
        RandomBlock(np.zeros(n, dtype=np.int64), 1, rng.normal(size=(n, 1))),  # one level
    ]
    X = np.column_stack([np.ones(n), x])
    y = rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    return blocks, X, y, w


def _rows(blocks, rows):
    return [RandomBlock(b.codes[rows], b.n_levels, b.z[rows]) for b in blocks]


def _summed(blocks, X, y, w, chunk_rows):
    total = GramSum(blocks, X.shape[1])
    for start in range(0, X.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        part = chunk_gram(_rows(blocks, rows), X[rows], y[rows], None if w is None else w[rows])
        total.add(part)
    return total.gram()


@pytest.mark.parametrize("chunk_rows", [1, 7, 50, 1000])
@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("compiled", [True, False])  # numba kernels; the numpy code
def test_gram_summed_over_chunks_is_the_gram_of_all_rows(
    chunk_rows, grouped, weighted, compiled, monkeypatch
):
    monkeypatch.setattr(reduce, "USE_KERNELS", compiled)
    if compiled and reduce.reduce_kernels() is None:
        pytest.skip("numba is not available")
    blocks, X, y, w = _data(300, 3, grouped)
    w = w if weighted else None
    whole = build_gram(blocks, X, y, w)
    ours = _summed(blocks, X, y, w, chunk_rows)
    for a, b in zip(ours.diagonal, whole.diagonal, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    for a, b in zip(ours.xy_random, whole.xy_random, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours.xy_xy, whole.xy_xy, rtol=RTOL, atol=ATOL)
    assert ours.off_diagonal.keys() == whole.off_diagonal.keys()
    for key, mat in ours.off_diagonal.items():
        ref = whole.off_diagonal[key].tocsc()
        ref.sum_duplicates()
        ref.sort_indices()
        assert isinstance(mat, sp.csc_matrix)  # the layout the crossed fill reads in place
        assert mat.has_canonical_format
        assert mat.indices.dtype == np.int32 and mat.indptr.dtype == np.int32
        # the same stored pattern (explicit zeros included) and the same values
        np.testing.assert_array_equal(mat.indptr, ref.indptr)
        np.testing.assert_array_equal(mat.indices, ref.indices)
        np.testing.assert_allclose(mat.data, ref.data, rtol=RTOL, atol=ATOL)


def test_a_level_pair_spanning_chunks_is_added_once():
    # level pair (0, 0) in both chunks, and level 1 of the first term only in the second
    a = np.array([0, 0, 1, 0])
    b = np.array([0, 1, 0, 0])
    z = np.array([[1.0], [2.0], [3.0], [4.0]])
    blocks = [RandomBlock(a, 2, z), RandomBlock(b, 2, np.ones((4, 1)))]
    X, y = np.ones((4, 1)), np.arange(4.0)
    ours = _summed(blocks, X, y, None, 2)
    # Z_b' Z_a by hand: b=0 rows 0, 2, 3 (a = 0, 1, 0; z = 1, 3, 4); b=1 row 1 (a = 0, z = 2)
    np.testing.assert_array_equal(ours.off_diagonal[1, 0].toarray(), [[5.0, 3.0], [2.0, 0.0]])
    assert ours.off_diagonal[1, 0].nnz == 3


def test_an_empty_chunk_adds_nothing():
    blocks, X, y, w = _data(50, 5, True)
    total = GramSum(blocks, X.shape[1])
    empty = slice(0, 0)
    total.add(chunk_gram(_rows(blocks, empty), X[empty], y[empty], None))
    total.add(chunk_gram(blocks, X, y, None))
    ours, whole = total.gram(), build_gram(blocks, X, y, None)
    np.testing.assert_allclose(ours.diagonal[0], whole.diagonal[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        ours.off_diagonal[1, 0].toarray(), whole.off_diagonal[1, 0].toarray(), rtol=RTOL
    )


def _mapped(array: np.ndarray) -> bool:
    """``array`` lives in an anonymous memory map (the sum's regions)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


@pytest.mark.parametrize("grouped", [True, False])
def test_large_pieces_and_pieces_from_elsewhere(grouped):
    # pieces are copied into memory maps of their own; a piece made in another process (a
    # Dask worker: pickled) too; chunks in the order of the column levels (grouped; a level
    # spanning two chunks is added where the last chunk left it) leave the maps as the
    # block's arrays, shuffled rows are merged; the sum is the same
    rng = np.random.default_rng(7)
    n = 300_000
    codes = rng.integers(0, 3000, n)
    blocks = [
        RandomBlock(
            np.sort(codes) if grouped else codes,
            3000,
            np.column_stack([np.ones(n), rng.normal(size=n)]),
        ),
        RandomBlock(rng.integers(0, 500, n), 500, np.ones((n, 1))),
    ]
    X, y = np.ones((n, 1)), rng.normal(size=n)
    whole = build_gram(blocks, X, y, None)
    total = GramSum(blocks, 1)
    for start in range(0, n, 100_000):
        rows = slice(start, start + 100_000)
        part = chunk_gram(_rows(blocks, rows), X[rows], y[rows], None)
        total.add(pickle.loads(pickle.dumps(part)))
    in_order = total.pieces[1, 0].in_order
    ours = total.gram()
    block = ours.off_diagonal[1, 0]
    # grouped by a sorted level: levels span the chunks' boundaries here
    if grouped:
        assert np.isin(blocks[0].codes[99_999], blocks[0].codes[100_000:200_000])
    assert in_order == grouped
    assert _mapped(block.data) == in_order and _mapped(block.indices) == in_order
    ref = whole.off_diagonal[1, 0].tocsc()  # the chunked block is CSC
    ref.sum_duplicates()
    assert block.has_canonical_format
    np.testing.assert_array_equal(block.indptr, ref.indptr)
    np.testing.assert_array_equal(block.indices, ref.indices)
    np.testing.assert_allclose(block.data, ref.data, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours.xy_random[0], whole.xy_random[0], rtol=RTOL, atol=ATOL)


def test_chunks_in_level_order_leave_the_pieces_in_place():
    # 100 rows per level of the first term, chunks of whole levels: no level spans chunks,
    # the block is the appended pieces themselves (no merge), and equals the whole Gram
    rng = np.random.default_rng(3)
    n = 60_000
    blocks = [
        RandomBlock(np.repeat(np.arange(600), 100), 600,
                    np.column_stack([np.ones(n), rng.normal(size=n)])),
        RandomBlock(rng.integers(0, 200, n), 200, np.ones((n, 1))),
    ]
    X, y = np.ones((n, 1)), rng.normal(size=n)
    total = GramSum(blocks, 1)
    for start in range(0, n, 10_000):
        rows = slice(start, start + 10_000)
        total.add(chunk_gram(_rows(blocks, rows), X[rows], y[rows], None))
    assert total.pieces[1, 0].in_order
    block = total.gram().off_diagonal[1, 0]
    assert _mapped(block.data) and _mapped(block.indices)
    ref = build_gram(blocks, X, y, None).off_diagonal[1, 0].tocsc()
    ref.sum_duplicates()
    np.testing.assert_array_equal(block.indptr, ref.indptr)
    np.testing.assert_array_equal(block.indices, ref.indices)
    np.testing.assert_allclose(block.data, ref.data, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("grouped", [True, False])
def test_nesting_and_counts_over_chunks_are_those_of_all_rows(grouped):
    # chunk partials over the levels their rows touch (reduce.Ranged), merged in place:
    # inner b nested in outer a when every level of b has one level of a in all rows
    # (the reference: the pairs of all rows at once), counts are bincounts of all rows
    from mixedmodels.core.reduce import is_nested_by, level_counts, merge_nesting, nesting_partial

    rng = np.random.default_rng(2)
    n = 400
    outer = rng.integers(0, 20, n)
    for inner_codes, nested in ((outer * 3 + rng.integers(0, 3, n), True),
                                (rng.integers(0, 60, n), False)):
        order = np.argsort(inner_codes, kind="stable") if grouped else np.arange(n)
        a = RandomBlock(outer[order], 20, np.ones((n, 1)))
        b = RandomBlock(inner_codes[order], 60, np.ones((n, 1)))
        total = np.full(60, -1, dtype=np.int64)
        counts = np.zeros(60, dtype=np.int64)
        for start in range(0, n, 37):
            rows = slice(start, start + 37)
            part_b = RandomBlock(b.codes[rows], 60, b.z[rows])
            part_a = RandomBlock(a.codes[rows], 20, a.z[rows])
            merge_nesting(total, nesting_partial(part_b, part_a))
            c = level_counts(part_b)
            counts[c.first : c.first + c.values.size] += c.values
        pairs = np.unique(np.column_stack([b.codes, a.codes]), axis=0)
        assert is_nested_by(total) == nested == (np.unique(pairs[:, 0]).size == len(pairs))
        np.testing.assert_array_equal(counts, np.bincount(b.codes, minlength=60))
        seen = np.unique(b.codes)
        assert np.all(total[np.setdiff1d(np.arange(60), seen)] == -1)
        if nested:
            np.testing.assert_array_equal(total[pairs[:, 0]], pairs[:, 1])
