"""The compiled kernels of the chunk sums (:mod:`mixedmodels.core.reduce_kernels`) against
the numpy code they replace and against dense products ``Z_j' W Z_k`` (the independent
reference): rows in (level of k, level of j) order (no sort), grouped by the level of k
only, shuffled (two counting sorts); weights; several columns on both sides."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core import reduce
from mixedmodels.core.terms import RandomBlock

pytest.importorskip("numba")

# the dense reference sums the same products in another order (BLAS): a few hundred O(1)
# products per entry, rounding of ~1e-14; kernel vs numpy: the same products, the pairs'
# sums in another association (numpy's reduceat sums pairwise) -> 1e-15
DENSE_RTOL, DENSE_ATOL = 1e-12, 1e-12
NUMPY_RTOL, NUMPY_ATOL = 1e-14, 1e-14


def _blocks(n: int, seed: int, layout: str, pj: int, pk: int):
    rng = np.random.default_rng(seed)
    k = rng.integers(5, 60, n)  # levels 5..59 of 80: the piece starts at the first seen
    j = rng.integers(0, 12, n)
    if layout == "pairs":  # in (k, j) order: no sort
        order = np.lexsort((j, k))
        k, j = k[order], j[order]
    elif layout == "grouped":  # a level of k's rows together, j shuffled within
        order = np.argsort(k, kind="stable")
        k, j = k[order], j[order]
    zk = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(pk - 1)])
    zj = np.column_stack([rng.normal(size=n) for _ in range(pj)])
    return RandomBlock(j, 12, zj), RandomBlock(k, 80, zk), rng.uniform(0.5, 2.0, n)


def _dense(codes, n_levels, z):
    n, p = z.shape
    out = np.zeros((n, n_levels * p))
    for c in range(p):
        out[np.arange(n), codes * p + c] = z[:, c]
    return out


def _piece(bj, bk, w, compiled, monkeypatch):
    monkeypatch.setattr(reduce, "USE_KERNELS", compiled)
    return reduce._cross_piece(bj, bk, w)


@pytest.mark.parametrize("layout", ["pairs", "grouped", "shuffled"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 3)])
def test_cross_piece_is_the_dense_product(layout, weighted, shape, monkeypatch):
    bj, bk, w = _blocks(400, 11, layout, *shape)
    w = w if weighted else None
    piece = _piece(bj, bk, w, True, monkeypatch)
    numpy_piece = _piece(bj, bk, w, False, monkeypatch)
    # the same stored pattern as the numpy code (explicit zeros kept), values to rounding
    assert piece.first == numpy_piece.first
    np.testing.assert_array_equal(piece.indptr, numpy_piece.indptr)
    np.testing.assert_array_equal(piece.indices, numpy_piece.indices)
    np.testing.assert_allclose(piece.data, numpy_piece.data, rtol=NUMPY_RTOL, atol=NUMPY_ATOL)
    # and the dense product over the piece's columns
    Zj, Zk = _dense(bj.codes, bj.n_levels, bj.z), _dense(bk.codes, bk.n_levels, bk.z)
    full = Zj.T @ (Zk if w is None else Zk * w[:, None])
    ncol = piece.indptr.size - 1
    ours = np.zeros((bj.size, ncol))
    for c in range(ncol):
        rows = slice(piece.indptr[c], piece.indptr[c + 1])
        assert np.all(np.diff(piece.indices[rows]) > 0)  # canonical: sorted, no duplicates
        ours[piece.indices[rows], c] = piece.data[rows]
    np.testing.assert_allclose(
        ours, full[:, piece.first : piece.first + ncol], rtol=DENSE_RTOL, atol=DENSE_ATOL
    )
    assert not full[:, : piece.first].any() and not full[:, piece.first + ncol :].any()


def test_shuffled_rows_give_the_grouped_rows_piece(monkeypatch):
    # the counting sorts keep the rows' order within a pair: shuffling the chunk's rows
    # changes only the order of each pair's additions
    bj, bk, _ = _blocks(500, 4, "grouped", 1, 2)
    order = np.random.default_rng(0).permutation(500)
    shuffled_j = RandomBlock(bj.codes[order], bj.n_levels, bj.z[order])
    shuffled_k = RandomBlock(bk.codes[order], bk.n_levels, bk.z[order])
    a = _piece(bj, bk, None, True, monkeypatch)
    b = _piece(shuffled_j, shuffled_k, None, True, monkeypatch)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, rtol=NUMPY_RTOL, atol=NUMPY_ATOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_level_sums_are_the_numpy_sums_bit_for_bit(weighted, monkeypatch):
    # the same products ((a b) w, ones multiplying exactly) added in row order, as bincount
    bj, bk, w = _blocks(300, 8, "shuffled", 2, 3)
    w = w if weighted else None
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(300), bk.z[:, 1], rng.normal(size=300)])
    y = rng.normal(size=300)
    sums = {}
    for compiled in (True, False):
        monkeypatch.setattr(reduce, "USE_KERNELS", compiled)
        sums[compiled] = reduce.chunk_gram([bk, bj], np.asfortranarray(X), y, w)
    for a, b in zip(sums[True].terms, sums[False].terms, strict=True):
        assert a.first == b.first
        np.testing.assert_array_equal(a.diagonal, b.diagonal)
        np.testing.assert_array_equal(a.xy_random, b.xy_random)
