"""``A_s' T A_s`` per level against numpy's dense products, by both computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixedmodels.errors import ArgumentError
from mixedmodels.linalg import gather
from mixedmodels.linalg.fillin import numba_available
from mixedmodels.linalg.gather import LevelQuadraticForms


def random_levels(rng, q: int, n_levels: int, p: int, most: int) -> sp.csc_matrix:
    """Levels with 0 .. most rows each (one pattern for the p columns of a level)."""
    rows, cols, values = [], [], []
    for s in range(n_levels):
        k = int(rng.integers(0, most + 1))
        pattern = np.sort(rng.choice(q, k, replace=False))
        for c in range(p):
            rows.extend(pattern)
            cols.extend([s * p + c] * k)
            values.extend(rng.normal(size=k))
    return sp.csc_matrix((values, (rows, cols)), shape=(q, n_levels * p))


def dense_reference(a: sp.csc_matrix, t: np.ndarray, p: int) -> np.ndarray:
    dense = a.toarray()
    return np.stack(
        [dense[:, s * p : (s + 1) * p].T @ t @ dense[:, s * p : (s + 1) * p]
         for s in range(a.shape[1] // p)],
        axis=2,
    )


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("compiled", [True, False])
def test_quadratic_forms_equal_dense_products(p, compiled, monkeypatch):
    if compiled and not numba_available():
        pytest.skip("needs numba")
    if not compiled:
        monkeypatch.setattr(gather, "_gather_kernels", lambda: None)
        monkeypatch.setattr(gather, "FALLBACK_CHUNK_BYTES", 8 * 50 * p * 7)  # 7 levels a chunk
    rng = np.random.default_rng(p)
    q = 50
    a = random_levels(rng, q, 40, p, 12)
    t = rng.normal(size=(q, q))
    t = t + t.T
    forms = LevelQuadraticForms(a, p)
    assert (forms._kernels is not None) == compiled
    reference = dense_reference(a, t, p)
    # sums of at most 12 x 12 products of O(1) values: rounding ~1e-14
    np.testing.assert_allclose(forms(t), reference, rtol=0, atol=1e-12)
    # a CSR A gives the same
    np.testing.assert_allclose(LevelQuadraticForms(a.tocsr(), p)(t), reference, atol=1e-12)


def test_rows_spread_over_threads_and_blocks_give_the_same_forms(monkeypatch):
    """Groups of ~20 levels and two row ranges: the same sums as one range, to rounding."""
    if not numba_available():
        pytest.skip("needs numba")
    rng = np.random.default_rng(9)
    q, p = 300, 2
    a = random_levels(rng, q, 200, p, 60)
    t = rng.normal(size=(q, q))
    t = t + t.T
    reference = dense_reference(a, t, p)
    monkeypatch.setattr(gather, "scatter_threads", lambda products: 2)
    monkeypatch.setattr(gather, "GATHER_GROUP_BYTES", 20 * 30 * 8)  # ~20 levels a group
    forms = LevelQuadraticForms(a, p)
    assert forms._edges.size == 3 and forms._groups.size > 8
    np.testing.assert_allclose(forms(t), reference, rtol=0, atol=1e-11)


def test_bad_arguments_are_refused():
    a = sp.csc_matrix(np.ones((3, 4)))
    with pytest.raises(ArgumentError, match="columns per level"):
        LevelQuadraticForms(a, 3)
    forms = LevelQuadraticForms(a, 2)
    with pytest.raises(ArgumentError, match="T must be 3 x 3"):
        forms(np.eye(4))


def test_calls_from_several_threads_take_turns():
    """Four Python threads at once (numba's workqueue pool would abort the process on
    concurrent parallel launches): every result equals the single-thread one."""
    if not numba_available():
        pytest.skip("needs numba")
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    q, p = 120, 2
    a = random_levels(rng, q, 300, p, 40)
    ts = [rng.normal(size=(q, q)) for _ in range(4)]
    ts = [t + t.T for t in ts]
    forms = LevelQuadraticForms(a, p)
    expected = [forms(t) for t in ts]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(forms, ts))
    for e, f in zip(expected, found, strict=True):
        np.testing.assert_array_equal(f, e)


def test_groups_by_bytes_cover_every_level_once():
    indptr = np.array([0, 5, 10, 10, 10, 40, 70, 72, 74])  # p = 2: 4 levels of 5, 0, 15, 1
    for size in (1, 60, 200, 10**6):
        edges = gather.level_groups_by_bytes(indptr, 2, size)
        assert edges[0] == 0 and edges[-1] == 4 and (np.diff(edges) >= 1).all()
    assert gather.level_groups_by_bytes(indptr, 2, 10**6).tolist() == [0, 4]
    assert gather.level_groups_by_bytes(indptr, 2, 1).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("duplicates", [False, True])
def test_follow_values_reads_a_csr_sources_new_values(compiled, duplicates, monkeypatch):
    """``follow_values``: new values written into a CSR ``A`` in place (a GLMM's reweight)
    reach the kernel's CSC copy, through the conversion order or (duplicate entries, no
    one-to-one order) a new conversion; without it the first values are kept."""
    if compiled and not numba_available():
        pytest.skip("needs numba")
    if not compiled:
        monkeypatch.setattr(gather, "_gather_kernels", lambda: None)
    rng = np.random.default_rng(11)
    q, p = 40, 2
    a = random_levels(rng, q, 30, p, 10)
    source = a.tocsr()
    if duplicates:  # every stored entry split in two halves, stored twice in its row
        counts = np.diff(source.indptr)
        rows_of = np.repeat(np.arange(q), counts)
        order = np.argsort(np.concatenate([rows_of, rows_of]), kind="stable")
        source = sp.csr_matrix(
            (np.concatenate([source.data, source.data])[order] / 2,
             np.concatenate([source.indices, source.indices])[order],
             np.concatenate([[0], np.cumsum(2 * counts)])),
            shape=a.shape,
        )
        assert source.nnz == 2 * a.nnz
    t = rng.normal(size=(q, q))
    t = t + t.T
    following = LevelQuadraticForms(source, p, follow_values=True)
    fixed = LevelQuadraticForms(source, p)
    assert (following._order is None) == duplicates
    first = dense_reference(a, t, p)
    np.testing.assert_allclose(following(t), first, rtol=0, atol=1e-12)
    source.data *= rng.uniform(0.5, 2.0, source.nnz)  # new values, same structure
    changed = dense_reference(source.tocsc(), t, p)
    assert np.abs(changed - first).max() > 0.1
    np.testing.assert_allclose(following(t), changed, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fixed(t), first, rtol=0, atol=1e-12)
