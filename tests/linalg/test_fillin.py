"""Fill-in kernels against the dense product they stand for.

For a random sparse ``A`` (``n x l p``) and per-level ``r_s`` (``p x p``), every kernel's
lower triangle must equal that of ``A blockdiag(r_s r_s') A'`` formed with numpy; the
kernels reorder and regroup the same sums, so they agree to rounding (1e-12 relative to
the largest entry).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.linalg import fillin
from mixedmodels.linalg.fillin import numba_available

SCATTER = pytest.param(
    "scatter", marks=pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
)


def random_rows(rng, n_rows, n_levels, q, p, c, weighted):
    codes = rng.integers(0, n_levels, n_rows)
    z0 = np.column_stack([np.ones(n_rows)] + [rng.normal(size=n_rows) for _ in range(p - 1)])
    index = rng.integers(0, q, (n_rows, c))
    values = rng.normal(size=(n_rows, c))
    weights = rng.uniform(0.5, 2.0, n_rows) if weighted else None
    return codes, z0, index, values, weights


def dense_a(codes, n_levels, z0, index, values, q, weights):
    p = z0.shape[1]
    a = np.zeros((q, n_levels * p))
    w = np.ones(codes.size) if weights is None else weights
    for row in range(codes.size):
        for col in range(index.shape[1]):
            for k in range(p):
                a[index[row, col], codes[row] * p + k] += w[row] * values[row, col] * z0[row, k]
    return a


def random_factors(rng, p, n_levels):
    r = np.tril(rng.normal(size=(n_levels, p, p)))
    return np.ascontiguousarray(r.transpose(1, 2, 0))  # (p, p, l)


def expected_lower(a, r):
    p, _, n_levels = r.shape
    m = np.zeros((n_levels * p, n_levels * p))
    for s in range(n_levels):
        rs = r[:, :, s]
        m[s * p : (s + 1) * p, s * p : (s + 1) * p] = rs @ rs.T
    return np.tril(a @ m @ a.T)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_panels_are_the_cross_product(p, weighted):
    rng = np.random.default_rng(p + 10 * weighted)
    codes, z0, index, values, weights = random_rows(rng, 200, 15, 9, p, 2, weighted)
    panels = fillin.panels_from_rows(codes, 15, z0, index, values, 9, weights)
    np.testing.assert_allclose(
        panels.to_csr().toarray(),
        dense_a(codes, 15, z0, index, values, 9, weights),
        rtol=1e-12,
        atol=1e-12,
    )
    k = panels.counts()
    assert panels.n_triples() == int((k * (k + 1) // 2).sum())


@pytest.mark.parametrize("p", [1, 2, 3])
def test_panels_from_the_sparse_cross_product_equal_those_from_rows(p):
    rng = np.random.default_rng(70 + p)
    codes, z0, index, values, weights = random_rows(rng, 200, 15, 9, p, 1, True)
    from_rows = fillin.panels_from_rows(codes, 15, z0, index, values, 9, weights)
    from_csc = fillin.panels_from_sparse(from_rows.to_csr().tocsc(), p)
    np.testing.assert_array_equal(from_csc.starts, from_rows.starts)
    np.testing.assert_array_equal(from_csc.rows, from_rows.rows)
    np.testing.assert_allclose(from_csc.values, from_rows.values, rtol=1e-15)
    if p > 1:  # a level whose columns have different row patterns: not in panel layout
        a = from_rows.to_csr().tolil()
        a[int(from_rows.rows[0]), 1] = 0.0
        assert fillin.panels_from_sparse(a.tocsr().tocsc(), p) is None


@pytest.mark.parametrize("kind", ["map", "grouped", "dense", SCATTER])
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_each_kernel_equals_the_dense_product(kind, p, weighted):
    rng = np.random.default_rng(100 * p + 7 * weighted + len(kind))
    n_levels, q = 23, 11
    codes, z0, index, values, weights = random_rows(rng, 150, n_levels, q, p, 2, weighted)
    codes[:5] = n_levels - 1  # one level with many rows, and (most likely) some empty
    panels = fillin.panels_from_rows(codes, n_levels, z0, index, values, q, weights)
    a = dense_a(codes, n_levels, z0, index, values, q, weights)
    diagonal = rng.normal(size=(p, p, n_levels))
    diagonal[:, :, ::3] = diagonal[:, :, :1]  # some identical blocks: groups of levels
    fill, choice = fillin.make_fill(panels, diagonal, kind)
    assert fill.kind == kind
    r = random_factors(rng, p, n_levels)
    group_ids, _ = fillin.level_groups(diagonal)
    # levels in one group share M_s (that is what grouping relies on)
    r = r[:, :, np.unique(group_ids, return_index=True)[1][group_ids]]
    got = np.tril(fill.lower_fill(r))
    want = expected_lower(a, r)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("build", ["dense", "sparse"])
@pytest.mark.parametrize("p", [1, 2])
def test_grouped_columns_built_either_way_agree(build, p):
    rng = np.random.default_rng(40 + p)
    n_levels, q = 31, 9
    codes, z0, index, values, weights = random_rows(rng, 240, n_levels, q, p, 2, True)
    panels = fillin.panels_from_rows(codes, n_levels, z0, index, values, q, weights)
    a = dense_a(codes, n_levels, z0, index, values, q, weights)
    groups = np.arange(n_levels) % 4
    fill = fillin.GroupedFill(panels, groups, 4, build=build)
    r = random_factors(rng, p, 4)[:, :, groups]
    want = expected_lower(a, r)
    got = np.tril(fill.lower_fill(r))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_map_built_in_bands_of_one_row_is_the_same(monkeypatch):
    """The build sorts bands of rows (several rows per band here: 13 rows, 16-bit keys);
    one row per band must give the identical map."""
    rng = np.random.default_rng(91)
    codes, z0, index, values, weights = random_rows(rng, 300, 20, 13, 2, 2, True)
    panels = fillin.panels_from_rows(codes, 20, z0, index, values, 13, weights)
    whole = fillin.MapFill(panels).map
    monkeypatch.setattr(fillin, "BAND_KEYS", 1)
    chunked = fillin.MapFill(panels).map
    assert (whole != chunked).nnz == 0
    np.testing.assert_array_equal(whole.indptr, chunked.indptr)


def test_level_groups_find_identical_blocks():
    d = np.zeros((2, 2, 5))
    d[:, :, 0] = d[:, :, 3] = [[2.0, 1.0], [1.0, 3.0]]
    d[:, :, 1] = d[:, :, 4] = [[1.0, 0.0], [0.0, 1.0]]
    d[:, :, 2] = [[1.0, 0.0], [0.0, 1.0 + 1e-15]]
    ids, n = fillin.level_groups(d)
    assert n == 3
    assert ids[0] == ids[3] and ids[1] == ids[4]
    assert len({ids[0], ids[1], ids[2]}) == 3


def test_choice_follows_the_cost_model():
    rng = np.random.default_rng(3)
    # many levels, few rows of A, every level alike: grouped is cheapest
    codes = np.repeat(np.arange(400), 5)
    index = np.tile(np.arange(5), 400)[:, None]
    panels = fillin.panels_from_rows(
        codes, 400, np.ones((2000, 1)), index, np.ones((2000, 1)), 5, None
    )
    diagonal = np.full((1, 1, 400), 5.0)
    _, choice = fillin.make_fill(panels, diagonal)
    assert choice.kind == "grouped"
    assert choice.estimates["grouped"] == min(choice.estimates.values())
    # every level different and A sparse: the map is cheapest
    codes = np.repeat(np.arange(300), 4)
    index = rng.integers(0, 3000, (1200, 1))
    z0 = np.column_stack([np.ones(1200), rng.normal(size=1200)])
    panels = fillin.panels_from_rows(codes, 300, z0, index, np.ones((1200, 1)), 3000, None)
    diagonal = rng.normal(size=(2, 2, 300))
    _, choice = fillin.make_fill(panels, diagonal)
    assert choice.kind == "map"
    # the map holds p values per product (F = B A', linear in B = A blockdiag(M_s))
    assert choice.stored["map"] == panels.n_triples() * 2


def crossed_cells(rng, n_subjects, n_items, p):
    """Rows of a subjects x items design with missing cells (about a third), repeated
    cells (1-3 rows) and unequal subject sizes; ``z0``: intercept and ``p - 1`` slopes."""
    subj, item = [], []
    for s in range(n_subjects):
        seen = rng.choice(n_items, size=int(rng.integers(1, n_items)), replace=False)
        for i in seen:
            reps = int(rng.integers(1, 4))
            subj += [s] * reps
            item += [int(i)] * reps
    subj, item = np.array(subj), np.array(item)
    z0 = np.column_stack([np.ones(subj.size)] + [rng.normal(size=subj.size)] * (p - 1))
    z0[:, 1:] += rng.normal(size=(subj.size, p - 1))
    return subj, item, z0


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("band_products", [1, 40, 65_536])
def test_map_equals_the_dense_schur_complement_of_a_crossed_design(monkeypatch, p, band_products):
    """``D - A M A'`` from the map kernel (bands of one product up to one band) against
    numpy on the dense ``Z``: unbalanced subjects, missing and repeated cells, weights."""
    monkeypatch.setattr(fillin, "BAND_PRODUCTS", band_products)
    rng = np.random.default_rng(300 + 10 * p + band_products % 7)
    n_subjects, n_items = 17, 29
    subj, item, z0 = crossed_cells(rng, n_subjects, n_items, p)
    w = rng.uniform(0.5, 2.0, subj.size)
    panels = fillin.panels_from_rows(
        subj, n_subjects, z0, item[:, None], np.ones((subj.size, 1)), n_items, w
    )
    fill = fillin.MapFill(panels)
    r = random_factors(rng, p, n_subjects)
    z_first, z_rest = dense_crossed_design(subj, item, z0, n_subjects, n_items)
    a_dense = z_rest.T @ (w[:, None] * z_first)
    d_rest = z_rest.T @ (w[:, None] * z_rest)
    want = np.tril(d_rest - a_dense @ block_diagonal(r) @ a_dense.T)
    got = np.tril(d_rest - fill.lower_fill(r))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    scaled = np.tril(fill.lower_fill(r, scale=-2.5))
    np.testing.assert_allclose(
        scaled, -2.5 * np.tril(d_rest - want), atol=1e-11 * np.abs(want).max()
    )


@pytest.mark.parametrize("p", [1, 2, 3])
def test_refreshed_map_equals_the_dense_schur_complement_of_new_weights(p):
    """A map built with keep_pairs on one set of weights and refreshed with another's panel
    values equals ``D - A M A'`` formed densely with the new weights (same closed form and
    tolerance as above)."""
    rng = np.random.default_rng(500 + p)
    n_subjects, n_items = 13, 21
    subj, item, z0 = crossed_cells(rng, n_subjects, n_items, p)
    ones = np.ones((subj.size, 1))
    w0, w1 = rng.uniform(0.5, 2.0, (2, subj.size))
    built = fillin.panels_from_rows(subj, n_subjects, z0, item[:, None], ones, n_items, w0)
    new = fillin.panels_from_rows(subj, n_subjects, z0, item[:, None], ones, n_items, w1)
    fill = fillin.MapFill(built, keep_pairs=True)
    fill.refresh(new.values)
    r = random_factors(rng, p, n_subjects)
    z_first, z_rest = dense_crossed_design(subj, item, z0, n_subjects, n_items)
    a_dense = z_rest.T @ (w1[:, None] * z_first)
    want = np.tril(a_dense @ block_diagonal(r) @ a_dense.T)
    got = np.tril(fill.lower_fill(r))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    with pytest.raises(ValueError, match="keep_pairs"):
        fillin.MapFill(built).refresh(new.values)


def dense_crossed_design(subj, item, z0, n_subjects, n_items):
    """Dense ``Z_0`` (subjects, ``p`` columns each) and ``Z_R`` (items) of a crossed
    design's rows."""
    p = z0.shape[1]
    z_first = np.zeros((subj.size, n_subjects * p))
    for a in range(p):
        z_first[np.arange(subj.size), subj * p + a] = z0[:, a]
    z_rest = np.zeros((subj.size, n_items))
    z_rest[np.arange(subj.size), item] = 1.0
    return z_first, z_rest


def block_diagonal(r):
    p, _, n_levels = r.shape
    m = np.zeros((n_levels * p, n_levels * p))
    for s in range(n_levels):
        m[s * p : (s + 1) * p, s * p : (s + 1) * p] = r[:, :, s] @ r[:, :, s].T
    return m


def test_small_pages_turns_numpy_huge_pages_off_inside_and_restores_them():
    switch = np._core.multiarray._set_madvise_hugepage
    original = switch(True)
    try:
        with fillin.small_pages():
            assert switch(False) is False  # off inside (the call returns the old value)
        assert switch(True) is True  # restored on the way out
        with pytest.raises(RuntimeError), fillin.small_pages():
            raise RuntimeError
        assert switch(True) is True  # restored after an exception too
    finally:
        switch(original)


def test_map_evaluation_allocates_nothing_proportional_to_the_entries():
    """Issue 17: no allocation proportional to n inside the objective.  After the first
    evaluation, ``MapFill.lower_fill`` allocates its ``(n_rows, n_rows)`` result and the
    levels' ``M_s`` (``p^2`` per level) but not ``B`` (``p`` per panel entry): measured
    with tracemalloc on a design whose ``B`` (640 kB) is 25x the rest; the result still
    equals the dense Schur complement (tolerance as above)."""
    import tracemalloc

    rng = np.random.default_rng(77)
    n_subjects, n_items, p = 2000, 20, 2
    subj = np.repeat(np.arange(n_subjects), n_items)
    item = np.tile(np.arange(n_items), n_subjects)
    z0 = np.column_stack([np.ones(subj.size), rng.normal(size=subj.size)])
    ones = np.ones((subj.size, 1))
    panels = fillin.panels_from_rows(subj, n_subjects, z0, item[:, None], ones, n_items, None)
    fill = fillin.MapFill(panels)
    fill.lower_fill(random_factors(rng, p, n_subjects))  # the first evaluation
    r = random_factors(rng, p, n_subjects)
    entries_bytes = panels.rows.size * p * 8
    tracemalloc.start()
    got = fill.lower_fill(r)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < entries_bytes / 4
    a_dense = np.zeros((n_items, n_subjects * p))
    for a in range(p):
        np.add.at(a_dense, (item, subj * p + a), z0[:, a])
    want = np.tril(a_dense @ block_diagonal(r) @ a_dense.T)
    np.testing.assert_allclose(np.tril(got), want, rtol=0, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("ranges", [1, 2, 5])
@pytest.mark.parametrize("block_bytes", [8, 200, 2**22])
def test_scatter_in_any_rows_per_thread_and_block_equals_the_dense_schur_complement(
    monkeypatch, p, ranges, block_bytes
):
    """The scatter kernel's result does not depend on how the rows of ``F`` are split
    among threads nor on how many levels form their ``W`` together (one, a few, all): the
    same closed form and tolerance as the map's test above, with weights and scale."""
    monkeypatch.setattr(fillin, "SCATTER_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(fillin, "scatter_threads", lambda products: ranges)
    rng = np.random.default_rng(700 + 10 * p + ranges)
    n_subjects, n_items = 19, 31
    subj, item, z0 = crossed_cells(rng, n_subjects, n_items, p)
    w = rng.uniform(0.5, 2.0, subj.size)
    panels = fillin.panels_from_rows(
        subj, n_subjects, z0, item[:, None], np.ones((subj.size, 1)), n_items, w
    )
    fill = fillin.ScatterFill.from_panels(panels)
    assert fill.threads == ranges and fill._edges.size == ranges + 1
    r = random_factors(rng, p, n_subjects)
    z_first, z_rest = dense_crossed_design(subj, item, z0, n_subjects, n_items)
    a_dense = z_rest.T @ (w[:, None] * z_first)
    want = np.tril(a_dense @ block_diagonal(r) @ a_dense.T)
    np.testing.assert_allclose(
        np.tril(fill.lower_fill(r)), want, rtol=0, atol=1e-12 * np.abs(want).max()
    )
    got = fill.lower_fill(r, scale=-2.5)
    np.testing.assert_allclose(got, -2.5 * want, rtol=0, atol=1e-11 * np.abs(want).max())
    assert not np.any(np.triu(got, 1))  # the upper triangle is left zero
    # new weights: refreshed panel values give the new product
    w1 = rng.uniform(0.5, 2.0, subj.size)
    new = fillin.panels_from_rows(
        subj, n_subjects, z0, item[:, None], np.ones((subj.size, 1)), n_items, w1
    )
    fill.refresh(new.values)
    a1 = z_rest.T @ (w1[:, None] * z_first)
    want1 = np.tril(a1 @ block_diagonal(r) @ a1.T)
    np.testing.assert_allclose(
        np.tril(fill.lower_fill(r)), want1, rtol=0, atol=1e-12 * np.abs(want1).max()
    )


def test_balanced_edges_split_the_work_evenly():
    work = np.array([5, 0, 0, 5, 10, 0, 0, 0, 10, 10], dtype=np.int64)
    edges = fillin.balanced_edges(work, 4)
    assert edges[0] == 0 and edges[-1] == work.size
    assert np.all(np.diff(edges) >= 0)
    sums = [work[a:b].sum() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert sum(sums) == work.sum()
    assert max(sums) <= 10  # 40 / 4, reachable here because rows split at 10s


def test_scatter_is_chosen_when_the_map_would_exceed_the_storage_cap(monkeypatch):
    """With numba, a problem whose map is over the cap gets the scatter kernel; without
    it, the cheapest stored kernel (as before)."""
    rng = np.random.default_rng(11)
    codes = np.repeat(np.arange(300), 4)
    index = rng.integers(0, 3000, (1200, 1))
    z0 = np.column_stack([np.ones(1200), rng.normal(size=1200)])
    panels = fillin.panels_from_rows(codes, 300, z0, index, np.ones((1200, 1)), 3000, None)
    diagonal = rng.normal(size=(2, 2, 300))
    monkeypatch.setattr(fillin, "MAX_STORED_ENTRIES", 10)
    _, choice = fillin.make_fill(panels, diagonal)
    assert choice.kind == "scatter" and choice.stored["scatter"] == 0
    monkeypatch.setattr(fillin, "numba_available", lambda: False)
    monkeypatch.setattr(fillin, "MAX_STORED_ENTRIES", 10**9)
    _, choice = fillin.make_fill(panels, diagonal)
    assert "scatter" not in choice.estimates and choice.kind == "map"


def test_scatter_called_from_several_threads_at_once_gives_each_its_product():
    """Python threads calling the parallel kernel together (numba's workqueue pool would
    abort the process) each get their own correct result."""
    import concurrent.futures

    rng = np.random.default_rng(12)
    n_subjects, n_items, p = 40, 25, 2
    subj, item, z0 = crossed_cells(rng, n_subjects, n_items, p)
    panels = fillin.panels_from_rows(
        subj, n_subjects, z0, item[:, None], np.ones((subj.size, 1)), n_items, None
    )
    fill = fillin.ScatterFill.from_panels(panels)
    a_dense = panels.to_csr().toarray()
    factors = [random_factors(rng, p, n_subjects) for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fill.lower_fill, factors))
    for r, got in zip(factors, results, strict=True):
        want = np.tril(a_dense @ block_diagonal(r) @ a_dense.T)
        np.testing.assert_allclose(np.tril(got), want, rtol=0, atol=1e-12 * np.abs(want).max())


# A by hand: 4 rows, 2 levels x p = 2; level 0 meets rows 0 and 2, level 1 rows 1 and 3
HAND_INDPTR = np.array([0, 2, 4, 6, 8])
HAND_INDICES = np.array([0, 2, 0, 2, 1, 3, 1, 3])


def _hand_a(indices=HAND_INDICES, indptr=HAND_INDPTR, dtype=np.float64):
    """The hand-built ``A`` with some arrays replaced (scipy's constructor checks neither
    row ranges, sorting nor monotone pointers)."""
    import scipy.sparse as sp

    a = sp.csc_matrix((np.arange(1.0, 9.0), HAND_INDICES.copy(), HAND_INDPTR.copy()), (4, 4))
    a.data = a.data.astype(dtype)
    a.indices = np.array(indices, dtype=a.indices.dtype)
    a.indptr = np.array(indptr, dtype=a.indptr.dtype)
    return a


@pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
@pytest.mark.parametrize(
    "indices, indptr, message",
    [
        ([0, 2, 0, 2, 1, 3, 1, 9], HAND_INDPTR, "outside 0 .. rows - 1"),
        ([-1, 2, 0, 2, 1, 3, 1, 3], HAND_INDPTR, "outside 0 .. rows - 1"),
        ([2, 0, 2, 0, 1, 3, 1, 3], HAND_INDPTR, "not strictly increasing"),
        ([0, 0, 0, 0, 1, 3, 1, 3], HAND_INDPTR, "not strictly increasing"),
        ([0, 2, 0, 3, 1, 3, 1, 3], HAND_INDPTR, "do not share one row pattern"),
        (HAND_INDICES, [0, 2, 4, 6, 11], "point past"),
        (HAND_INDICES, [0, 5, 4, 6, 8], "decrease"),
        (HAND_INDICES, [1, 2, 4, 6, 8], "do not start at 0"),
    ],
)
def test_scatter_refuses_every_structure_it_would_index_out_of_bounds(indices, indptr, message):
    """The compiled loops do not check bounds: a row index out of range, an unsorted or
    duplicated column, columns of one level with different rows (the kernel reads the
    first column's count in every column), bad pointers would read or write outside the
    arrays (before this review ``ScatterFill`` took such an ``A``).  Each is refused
    when the kernel is built, with an ArgumentError naming the problem, and ``accepts``
    says False."""
    from mixedmodels.errors import ArgumentError

    good = _hand_a()
    assert fillin.ScatterFill.accepts(good, 2)
    bad = _hand_a(indices, indptr)
    with pytest.raises(ArgumentError, match=message):
        fillin.ScatterFill(bad, 2)
    assert not fillin.ScatterFill.accepts(bad, 2)


@pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
def test_scatter_refuses_arguments_that_do_not_match_a():
    """p, the value type, the format, r's shape (the kernel reads ``r[:, :, s]`` for every
    level) and new values' shape are checked: ArgumentError, and the kernel still gives
    the dense product afterwards (tolerance as above)."""
    from mixedmodels.errors import ArgumentError

    a = _hand_a()
    fill = fillin.ScatterFill(a, 2)
    with pytest.raises(ArgumentError, match="not 3 columns per level"):
        fillin.ScatterFill(a, 3)
    for p in (0, -1, 1.5, True):
        with pytest.raises(ArgumentError, match="positive integer"):
            fillin.ScatterFill(a, p)
    with pytest.raises(ArgumentError, match="float64"):
        fillin.ScatterFill(_hand_a(dtype=np.float32), 2)
    with pytest.raises(ArgumentError, match="CSC"):
        fillin.ScatterFill(a.tocsr(), 2)
    rng = np.random.default_rng(14)
    for r in (random_factors(rng, 2, 1), random_factors(rng, 3, 2), np.ones((2, 2))):
        with pytest.raises(ArgumentError, match=r"\(2, 2, 2\)"):
            fill.lower_fill(r)
    with pytest.raises(ArgumentError, match=r"\(4, 2\)"):
        fill.refresh(np.ones((5, 2)))
    r = random_factors(rng, 2, 2)
    want = np.tril(a.toarray() @ block_diagonal(r) @ a.toarray().T)
    np.testing.assert_allclose(fill.lower_fill(r), want, rtol=0, atol=1e-12 * np.abs(want).max())
    assert fillin.ScatterFill(fillin.ScatterFill(_hand_a(), 1).a, 1).p == 1  # 4 levels of 1


@pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
def test_scatter_refuses_an_a_whose_arrays_were_replaced_after_the_check():
    """A is read in place (the Gram's own block): when its owner replaces its arrays after
    the kernel checked them (``sum_duplicates`` assigns shorter ones), the kernel raises
    instead of reading the old pointers into the new, shorter values."""
    from mixedmodels.errors import ArgumentError

    rng = np.random.default_rng(16)
    r = random_factors(rng, 2, 2)
    a = _hand_a()
    fill = fillin.ScatterFill(a, 2)
    a.indices, a.data = a.indices[:-2].copy(), a.data[:-2].copy()
    with pytest.raises(ArgumentError, match="structure changed"):
        fill.lower_fill(r)
    b = _hand_a()
    fill = fillin.ScatterFill(b, 2)
    b.data = b.data.astype(np.float32)
    with pytest.raises(ArgumentError, match="float64"):
        fill.lower_fill(r)
    c = _hand_a()
    fill = fillin.ScatterFill(c, 2)
    c.data = 2.0 * c.data  # new values of the same structure are read, as refresh does
    want = np.tril(c.toarray() @ block_diagonal(r) @ c.toarray().T)
    np.testing.assert_allclose(fill.lower_fill(r), want, rtol=0, atol=1e-12 * np.abs(want).max())


def _break_numba_import(monkeypatch):
    """Make importing the compiled kernels fail as a numba that does not match numpy
    does (an ImportError at ``import numba``)."""
    import sys

    import mixedmodels.linalg as linalg_package

    monkeypatch.setattr(fillin.SCATTER_KERNELS, "failure", None)
    monkeypatch.setattr(fillin.SCATTER_KERNELS, "_module", None)
    monkeypatch.delattr(linalg_package, "scatter_kernels", raising=False)
    monkeypatch.setitem(sys.modules, "mixedmodels.linalg.scatter_kernels", None)


@pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")
def test_a_numba_that_fails_to_load_falls_back_to_the_other_kernels(monkeypatch):
    """numba installed but failing at import (e.g. ``Numba needs NumPy 2.2 or less``) made
    every fit that chose the scatter kernel die with an ImportError.  Now: one
    MixedModelsWarning, the kernel asked for or chosen is replaced by the cheapest other
    one (its product equals the dense one, tolerance as above), and scatter is no longer
    offered."""
    from mixedmodels.errors import MixedModelsError, MixedModelsWarning

    _break_numba_import(monkeypatch)
    rng = np.random.default_rng(15)
    subj, item, z0 = crossed_cells(rng, 30, 20, 2)
    panels = fillin.panels_from_rows(
        subj, 30, z0, item[:, None], np.ones((subj.size, 1)), 20, None
    )
    diagonal = rng.normal(size=(2, 2, 30))
    with pytest.warns(MixedModelsWarning, match="numba failed to load"):
        fill, choice = fillin.make_fill(panels, diagonal, kind="scatter")
    assert fill.kind != "scatter" and "scatter" not in choice.estimates
    assert not fillin.numba_available()
    assert fillin.scatter_in_place(panels.to_csr().tocsc(), 2, diagonal) is None
    with pytest.raises(MixedModelsError, match="needs numba"):
        fillin.ScatterFill.from_panels(panels)
    r = random_factors(rng, 2, 30)
    a = panels.to_csr().toarray()
    want = np.tril(a @ block_diagonal(r) @ a.T)
    np.testing.assert_allclose(
        np.tril(fill.lower_fill(r)), want, rtol=0, atol=1e-12 * np.abs(want).max()
    )


def test_scatter_threads_ignore_a_numba_num_threads_that_is_not_a_positive_integer(
    monkeypatch,
):
    """numba ignores an unparsable NUMBA_NUM_THREADS (with a warning); the thread count
    took int() of it and raised ValueError.  A valid value still caps the threads."""
    many = 50 * fillin.SCATTER_MIN_PRODUCTS_PER_THREAD
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    default = fillin.scatter_threads(many)
    for text in ("abc", "", "0", "-2", "1.5"):
        monkeypatch.setenv("NUMBA_NUM_THREADS", text)
        assert fillin.scatter_threads(many) == default
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert fillin.scatter_threads(many) == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "7")
    assert fillin.scatter_threads(many) == 7


def test_an_unknown_kernel_name_is_an_argument_error(monkeypatch):
    """A misspelt kind returned no kernel (the caller then fell back silently as if every
    kernel were over the storage cap); now an ArgumentError lists the kernels.  Asking for
    the scatter kernel without numba gives the cheapest other one (its product equals the
    dense one, tolerance as above)."""
    from mixedmodels.errors import ArgumentError

    rng = np.random.default_rng(17)
    subj, item, z0 = crossed_cells(rng, 12, 9, 2)
    panels = fillin.panels_from_rows(subj, 12, z0, item[:, None], np.ones((subj.size, 1)), 9, None)
    diagonal = rng.normal(size=(2, 2, 12))
    with pytest.raises(ArgumentError, match="unknown fill kernel 'scater'.*scatter"):
        fillin.make_fill(panels, diagonal, kind="scater")
    monkeypatch.setattr(fillin, "numba_available", lambda: False)
    fill, choice = fillin.make_fill(panels, diagonal, kind="scatter")
    assert fill.kind == choice.kind != "scatter"
    r = random_factors(rng, 2, 12)
    a = panels.to_csr().toarray()
    want = np.tril(a @ block_diagonal(r) @ a.T)
    np.testing.assert_allclose(
        np.tril(fill.lower_fill(r)), want, rtol=0, atol=1e-12 * np.abs(want).max()
    )


def test_scatter_kernels_ask_numba_for_a_fork_safe_thread_pool():
    """Importing the kernels (when the user chose no layer) sets numba's layer to
    "forksafe": GNU OpenMP's pool would kill a child forked after a fit."""
    import os
    import subprocess
    import sys

    code = (
        "import numba; from mixedmodels.linalg import scatter_kernels; "
        "print(numba.config.THREADING_LAYER)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "forksafe"
    env["NUMBA_THREADING_LAYER"] = "workqueue"  # the user's choice is kept
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "workqueue"


def test_kernels_over_the_storage_cap_are_named_not_estimated(monkeypatch):
    """The grouped kernel's estimate came from a lower bound on its groups when it was over
    the cap (count_level_groups stops counting there), so the summary printed too low a
    cost; kinds over the cap are now named as such, the others keep their numbers."""
    rng = np.random.default_rng(21)
    subj, item, z0 = crossed_cells(rng, 30, 20, 2)
    panels = fillin.panels_from_rows(
        subj, 30, z0, item[:, None], np.ones((subj.size, 1)), 20, None
    )
    free = fillin.estimate_fill(panels.shape, 30)
    assert free.over_cap == frozenset()
    assert "grouped" in free.describe() and "over the storage cap" not in free.describe()
    cap = free.stored["dense"]  # grouped (30 groups x 3 x 210) and map are larger
    assert free.stored["grouped"] > cap and free.stored["map"] > cap
    monkeypatch.setattr(fillin, "MAX_STORED_ENTRIES", cap)
    capped = fillin.estimate_fill(panels.shape, 30)
    assert {"grouped", "map"} <= capped.over_cap and capped.kind not in capped.over_cap
    text = capped.describe()
    assert text.endswith("over the storage cap: " + ", ".join(sorted(capped.over_cap)))
    assert "grouped " not in text.split("; over")[0]
    dense_ms = f"dense {free.estimates['dense'] * 1e3:.1f} ms"
    assert dense_ms in text
