"""Fill-in of a dense block by the elimination of a block-diagonal term.

Eliminating a term with ``l`` levels (a ``p x p`` block each) from the symmetric matrix
``[[D0, A'], [A, D]]`` leaves ``D - F`` with

.. math::

    F = A \\, \\mathrm{blockdiag}(M_1, \\dots, M_l) \\, A' = \\sum_s A_s M_s A_s',
    \\qquad M_s = r_s r_s'

where ``A_s`` is the panel of ``A``'s ``p`` columns of level ``s``: it has ``k_s`` nonzero
rows (the rows of the other terms that level ``s`` meets).  Only the small matrices
``M_s`` change with theta; everything about ``A`` is fixed, so each kernel here does its
symbolic work once and each evaluation is one dense or one precomputed sparse product:

:class:`MapFill`
    ``F = B A'`` with ``B = A blockdiag(M_s)`` (formed per evaluation, ``O(nnz(A) p)``):
    ``F``'s lower triangle is linear in ``B``, ``vec(F) = P vec(B)`` with
    ``P[(i, j), (e, b)] = A[j, sb]`` for the panel entry ``e`` of row ``i`` and level ``s``.
    ``P`` is stored once as a CSR matrix (one row per lower-triangle position,
    ``sum_s k_s (k_s + 1) / 2 * p`` entries); an evaluation is one sparse matrix-vector
    product, streaming ``P`` once.
:class:`GroupedFill`
    Levels with identical ``Z_s' W Z_s`` (balanced designs, unweighted intercepts with equal
    counts) have identical ``M_s``; ``P``'s columns summed within such groups form a dense
    matrix with a few columns; an evaluation is one BLAS ``gemv``.
:class:`DenseFill`
    ``F = W W'`` with ``W = A blockdiag(r_s)`` held densely: a batched ``p x p`` product and
    one BLAS ``syrk`` per chunk of levels.  Best when ``A`` has few rows and many levels.
:class:`ScatterFill`
    Every product ``W_si W_sj'`` added where it lands, by a compiled loop over the panels
    (:mod:`mixedmodels.linalg.scatter_kernels`, numba): nothing stored beyond ``A``
    itself, so it is the kernel of problems whose map would not fit in memory.  Offered
    when numba is installed (the ``parquet``, ``dask`` and ``fast`` extras).

:func:`choose_fill` picks the cheapest by an operation-count model (and a memory cap).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg.blas as blas
import scipy.sparse as sp

from mixedmodels.errors import ArgumentError, MixedModelsError
from mixedmodels.linalg.optional_kernels import OptionalKernels

# rough costs (seconds per unit) on the project's 2-core machine, used only to rank kernels
SPARSE_ENTRY = 1.0e-9  # one entry of a CSR matrix-vector product
DENSE_ENTRY = 0.6e-9  # one entry of a dense matrix-vector product
BLAS_MULTIPLY_ADD = 0.04e-9  # one multiply-add inside syrk/gemm
MAP_BUILD_PER_TRIPLE = 50e-9  # generating, sorting, filling one triple (slopes: 1.25 s / 25M)
MAP_VALUE_PER_ENTRY = 3e-9  # forming one panel entry's row of B = A blockdiag(M_s), per p^2
SPGEMM_PER_PRODUCT = 10e-9  # one scalar product inside scipy's sparse matrix product
EXPECTED_EVALUATIONS = 100  # build costs are spread over this many evaluations
MAX_STORED_ENTRIES = 150_000_000  # ~1.2 GB of float64: the cap on any kernel's storage
DENSE_CHUNK_ENTRIES = 4_000_000  # DenseFill works on W in column chunks of this many entries
CHUNK_ENTRIES = 1_000_000  # MapFill's refresh works in chunks of this many products
BAND_KEYS = 2**16  # MapFill's build sorts bands of rows whose targets fit a 16-bit key
BAND_PRODUCTS = 65_536  # ... and about this many products (temporaries of ~0.5 MB each)
MAP_REFRESH_PER_ENTRY = 2.0e-9  # refilling one map entry: a gather of a panel value
DENSE_REFRESH_PER_ENTRY = 5.0e-9  # scattering one panel value into the dense A
EXPECTED_STEPS = 1000  # a GLMM fit's scoring steps, over which a reweightable build is spread
# ScatterFill, measured on the project's 2-core machine (benchmarks/fill_kernels.py --ab):
# one product (i, j) of one level with p = 2 costs ~1.45 ns on one thread (the kernel
# before the row-bucketed layout: 3.4-3.5), other p in ScatterFill.cost_per_product; the
# first build in a process loads (or, the first time ever, compiles) the kernels.  See
# benchmarks/results/fill_kernels_ab2.md
SCATTER_PER_PRODUCT = 1.45e-9
SCATTER_LOAD = 1.5  # seconds: importing numba, loading the cached kernels (1.8 s measured)
# levels are taken in groups of consecutive levels, about g entries of W (8 p + 4 bytes
# an entry with their rows of F).  Each row of F, once in the first-level cache, then gets
# ~8 g k / q^2 products per cache line from the group (levels of k entries in q rows):
# ScatterFill.group_bytes aims at SCATTER_PRODUCTS_PER_LINE, within SCATTER_MIN_BLOCK_BYTES
# .. SCATTER_MAX_BLOCK_BYTES (a group must also stay in the shared 32 MB L3).  Measured
# (benchmarks/results/fill_kernels_ab2.md; CPU ns per product, one thread, one process):
# q = 2,000, k = 100: 1.57 / 1.43 / 1.49 with 1, 2 and 4 MB (two threads: 1.62 / 1.57 /
# 1.64 / 1.96 with 1, 2, 4, 8 MB); q = 500: 1.24 / 1.30 / 1.39 / 1.45 with 0.25, 0.5, 1,
# 2 MB; q = 10,000: 10.1 / 10.1 / 6.9 / 7.2 with 2, 4, 8, 16 MB.
# SCATTER_BLOCK_BYTES, when set, fixes the bytes of a group instead (tests use it)
SCATTER_PRODUCTS_PER_LINE = 20
SCATTER_MIN_BLOCK_BYTES = 2**18
SCATTER_MAX_BLOCK_BYTES = 2**23
SCATTER_BLOCK_BYTES: int | None = None
SCATTER_MIN_PRODUCTS_PER_THREAD = 2_000_000  # below this, one thread (start-up costs more)


@functools.lru_cache(maxsize=32)
def lower_pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(a, b)``, ``a >= b``, of a ``p x p`` lower triangle (row-major;
    cached, read-only)."""
    a, b = np.tril_indices(p)
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def outer_lower(r: np.ndarray) -> np.ndarray:
    """Lower-triangle entries of ``M_s = r_s r_s'`` per level, shape ``(p (p + 1) / 2, l)``.

    ``r`` is level-last, ``(p, p, l)``.
    """
    a, b = lower_pairs(r.shape[0])
    return np.einsum("ecl,ecl->el", r[a], r[b])


@dataclass(frozen=True)
class PanelShape:
    """What the kernels' cost model needs of ``A``: its rows, columns per level and the
    nonzero rows ``k_s`` of each level's panel."""

    n_rows: int
    p: int
    counts: np.ndarray

    @classmethod
    def of_csc(cls, a: sp.csc_matrix, p: int) -> PanelShape:
        """The shape of ``A`` held as CSC (``q x l p``, the rows of a level's first column
        counted)."""
        return cls(a.shape[0], p, np.asarray(a.indptr[1::p] - a.indptr[:-1:p], dtype=np.int64))

    @property
    def n_levels(self) -> int:
        return int(self.counts.size)

    @property
    def n_entries(self) -> int:
        return int(self.counts.sum())

    def n_triples(self) -> int:
        """``sum_s k_s (k_s + 1) / 2``: lower-triangle products of the fill."""
        k = self.counts
        return int((k * (k + 1) // 2).sum())


@dataclass(frozen=True)
class Panels:
    """The nonzero structure of ``A`` (``n_rows x l p``) grouped by level.

    Level ``s`` has entries ``starts[s]:starts[s + 1]``; entry ``t`` is row ``rows[t]`` of
    ``A`` with the ``p`` values ``values[t]`` (its columns ``s p .. s p + p - 1``; explicit
    zeros kept).  Rows are sorted within a level.
    """

    n_rows: int
    starts: np.ndarray
    rows: np.ndarray
    values: np.ndarray

    @property
    def p(self) -> int:
        return self.values.shape[1]

    @property
    def n_levels(self) -> int:
        return self.starts.size - 1

    def counts(self) -> np.ndarray:
        """``k_s``: nonzero rows of each level's panel."""
        return np.diff(self.starts)

    def n_triples(self) -> int:
        """``sum_s k_s (k_s + 1) / 2``: lower-triangle products of the fill."""
        return self.shape.n_triples()

    @property
    def shape(self) -> PanelShape:
        return PanelShape(self.n_rows, self.p, self.counts())

    def to_csr(self) -> sp.csr_matrix:
        """``A`` as a CSR matrix ``(n_rows, l p)``."""
        level = np.repeat(np.arange(self.n_levels), self.counts())
        cols = (level[:, None] * self.p + np.arange(self.p)).ravel()
        rows = np.repeat(self.rows, self.p)
        return sp.csr_matrix(
            (self.values.ravel(), (rows, cols)), shape=(self.n_rows, self.n_levels * self.p)
        )


def panels_from_rows(
    first_codes: np.ndarray,
    n_levels: int,
    first_z: np.ndarray,
    rest_index: np.ndarray,
    rest_z: np.ndarray,
    n_rows: int,
    weights: np.ndarray | None,
    return_inverse: bool = False,
) -> Panels | tuple[Panels, np.ndarray]:
    """:class:`Panels` of ``A = Z_R' W Z_0`` from the rows, in one pass (once per model).

    Parameters
    ----------
    first_codes : ndarray (n,)
        Level of the eliminated term for each row.
    first_z : ndarray (n, p)
        The eliminated term's model matrix.
    rest_index : ndarray (n, c)
        For each row, the ``c`` rows of ``A`` it touches (one per column of the other terms).
    rest_z : ndarray (n, c)
        The matching values of the other terms' model matrices.
    return_inverse : bool
        Also return, for every row and column of ``rest_index`` (raveled row-major), its
        panel entry: new weights then give the values by bincounts (see
        :func:`panel_values_from_rows`).
    """
    n, c = rest_index.shape
    p = first_z.shape[1]
    keys = (first_codes.astype(np.int64)[:, None] * n_rows + rest_index).ravel()
    unique, inverse = np.unique(keys, return_inverse=True)
    values = np.empty((unique.size, p))
    for a in range(p):
        za = first_z[:, a] if weights is None else first_z[:, a] * weights
        contrib = (za[:, None] * rest_z).ravel()
        values[:, a] = np.bincount(inverse, weights=contrib, minlength=unique.size)
    level = unique // n_rows
    starts = np.zeros(n_levels + 1, dtype=np.int64)
    np.cumsum(np.bincount(level, minlength=n_levels), out=starts[1:])
    panels = Panels(n_rows=n_rows, starts=starts, rows=unique % n_rows, values=values)
    return (panels, inverse.ravel()) if return_inverse else panels


def panel_values_from_rows(
    inverse: np.ndarray,
    n_entries: int,
    first_z: np.ndarray,
    rest_z: np.ndarray,
    weights: np.ndarray | None,
) -> np.ndarray:
    """Panel values ``(n_entries, p)`` for new weights, from the entry of every product
    (``inverse`` of :func:`panels_from_rows`)."""
    values = np.empty((n_entries, first_z.shape[1]))
    for a in range(first_z.shape[1]):
        za = first_z[:, a] if weights is None else first_z[:, a] * weights
        contrib = (za[:, None] * rest_z).ravel()
        values[:, a] = np.bincount(inverse, weights=contrib, minlength=n_entries)
    return values


def panels_from_sparse(a: sp.csc_matrix, p: int) -> Panels | None:
    """:class:`Panels` from ``A`` as a CSC matrix (``n_rows x l p``, level-major columns),
    when the ``p`` columns of every level share one row pattern (always for ``p = 1``);
    None otherwise."""
    a = a.tocsc()
    a.sum_duplicates()  # canonical: sorted row indices, no duplicates
    n_rows, n_cols = a.shape
    n_levels = n_cols // p
    counts = np.diff(a.indptr).reshape(n_levels, p)
    if np.any(counts != counts[:, :1]):
        return None
    if p == 1:
        starts = a.indptr.astype(np.int64)
        return Panels(n_rows, starts, a.indices.astype(np.int64), a.data[:, None].copy())
    k = counts[:, 0]
    starts = np.zeros(n_levels + 1, dtype=np.int64)
    np.cumsum(k, out=starts[1:])
    level = np.repeat(np.arange(n_levels), k)
    local = np.arange(level.size) - starts[level]
    # entry t of level s sits at indptr[s p + c] + (t - starts[s]) in column (s, c)
    positions = a.indptr[:-1].reshape(n_levels, p)[level] + local[:, None]
    rows = a.indices[positions]
    if np.any(rows != rows[:, :1]):
        return None
    return Panels(n_rows, starts, rows[:, 0].astype(np.int64), a.data[positions])


def _bands(row_offsets: np.ndarray, max_rows: int, max_products: int) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[i0, i1)`` of at most ``max_rows`` rows each, closed as
    soon as they hold ``max_products`` products (``row_offsets``: cumulative products at
    each row's start, ``n_rows + 1`` values)."""
    out, i0, n_rows = [], 0, row_offsets.size - 1
    while i0 < n_rows:
        limit = np.searchsorted(row_offsets, row_offsets[i0] + max_products, "right") - 1
        i1 = min(i0 + max_rows, n_rows, max(int(limit), i0 + 1))
        out.append((i0, i1))
        i0 = i1
    return out


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """Large numpy arrays allocated inside are not marked for transparent huge pages.

    numpy asks the kernel for huge pages on every allocation of 4 MB or more; with the
    kernel's default ``defrag=madvise`` each huge-page fault may compact memory first.
    Measured on the project's 2-core machine, first touching 600 MB took 1.4 s of system
    time with huge pages and 0.33 s without; the map's ~1 GB is written once and then
    streamed in order, which needs no huge pages.  A no-op where numpy lacks the switch.
    """
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 / numpy 1
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    previous = switch(False)
    try:
        yield
    finally:
        switch(previous)


class MapFill:
    """``vec(lower(F)) = P b``: one precomputed CSR matrix, one product per evaluation.

    With ``B = A blockdiag(M_s)`` (the panels' values times their level's ``M_s``, formed
    per evaluation in ``O(entries p^2)``), ``F = B A'``: for the panel entries ``e`` (level
    ``s``, row ``i``) and ``f`` (level ``s``, row ``j <= i``)

    .. math::

        F_{ij} = \\sum_s \\sum_b B_{e b} A_{f b},

    linear in ``B`` with the fixed coefficients ``A_{f b}``.  ``P``'s rows are the
    ``n_rows**2`` positions of the dense result (row-major; only lower-triangle rows hold
    entries), its columns ``(b, entry e)`` (``B`` stored column by column) with the
    entries numbered in row order (the entries of one row of ``A`` adjacent: a row of ``F``
    reads a few kB of ``B``).  ``P`` holds ``p`` entries per product (not the
    ``p (p + 1) / 2`` of a map linear in ``M_s``), and its values are panel values (no
    products to form at build).

    The build takes the rows ``i`` of ``A`` in bands of a few rows: a band's products
    (every entry of row ``i`` with the entries of its level at rows ``j <= i``) are
    generated where they are adjacent in memory, then put in target order by one stable
    radix sort of a 16-bit key ``(i - band start) n_rows + j`` that stays in cache; bands
    follow each other in target order, so nothing is sorted or scattered across the map.
    """

    kind = "map"

    def __init__(self, panels: Panels, keep_pairs: bool = False):
        self.n_rows = q = panels.n_rows
        self.p = p = panels.p
        n_levels = panels.n_levels
        n_entries = int(panels.rows.size)
        index_dtype = np.int32 if n_entries * p < 2**31 else np.int64
        level_of = np.repeat(np.arange(n_levels, dtype=index_dtype), panels.counts())
        level_start = panels.starts[:-1].astype(index_dtype)[level_of]
        rows = panels.rows.astype(index_dtype)
        # entries in the order of their row i (then level); entry e pairs with the
        # entries level_start[e] .. e of its level (rows j <= i: sorted within a level)
        self._by_row = by_row = np.argsort(rows, kind="stable").astype(index_dtype)
        # intp: np.take converts other index types to it, a copy per call
        self._level_by_row = level_of[by_row].astype(np.intp)
        self._values_t = np.ascontiguousarray(np.take(panels.values, by_row, axis=0).T)
        self._kept_buffers: tuple[np.ndarray, np.ndarray] | None = None  # see _buffers
        n_pairs = (np.arange(n_entries, dtype=np.int64) - level_start + 1)[by_row]
        offsets = np.zeros(n_entries + 1, dtype=np.int64)
        np.cumsum(n_pairs, out=offsets[1:])
        n_triples = int(offsets[-1])
        row_start = np.searchsorted(rows[by_row], np.arange(q + 1))  # in by_row
        band = max(1, min(BAND_KEYS, 2**16) // max(q, 1))  # rows per band: 16-bit keys
        bands = _bands(offsets[row_start], band, BAND_PRODUCTS)
        key_dtype = np.uint16 if q <= 2**16 else np.int64
        with small_pages():  # also the bands' temporaries (see small_pages)
            data = np.empty((n_triples, p))
            cols = np.empty((n_triples, p), dtype=index_dtype)
            row_counts = np.zeros(q * q + 1, dtype=np.int64)
            # with keep_pairs, the partner entry f of every product is kept: new panel
            # values (a GLMM's new weights) then refill the map by one gather
            self._second = np.empty(n_triples, dtype=index_dtype) if keep_pairs else None
            row_key = rows.astype(key_dtype)
            # one workspace for every band, and np.take(out=) with mode="clip" (indices are
            # valid by construction; the default mode="raise" buffers its output): fresh
            # temporaries per band were returned to the system and faulted in again
            most = max(
                (int(offsets[row_start[i1]] - offsets[row_start[i0]]) for i0, i1 in bands),
                default=0,
            )
            iota = np.arange(most, dtype=index_dtype)
            segment = np.empty(most, dtype=index_dtype)
            second = np.empty(most, dtype=index_dtype)
            spare = np.empty(most, dtype=index_dtype)
            key = np.empty(most, dtype=key_dtype)
            key_sorted = np.empty(most, dtype=key_dtype)
            new_target = np.empty(most, dtype=bool)
            for i0, i1 in bands:
                t0, t1 = int(row_start[i0]), int(row_start[i1])
                o0, o1 = int(offsets[t0]), int(offsets[t1])
                n = o1 - o0
                if n == 0:
                    continue
                entry = by_row[t0:t1]
                # generation order: entry e with level_start[e], ..., e (adjacent in memory);
                # segment[k]: which of the band's entries product k belongs to
                seg = segment[:n]
                seg[:] = 0
                seg[offsets[t0 + 1 : t1] - o0] = 1
                np.cumsum(seg, out=seg)
                shift = (offsets[t0:t1] - o0 - level_start[entry]).astype(index_dtype)
                np.subtract(
                    iota[:n], np.take(shift, seg, out=spare[:n], mode="clip"), out=second[:n]
                )
                sec = second[:n]
                np.take(((rows[entry] - i0) * q).astype(key_dtype), seg, out=key[:n], mode="clip")
                key[:n] += np.take(row_key, sec, out=key_sorted[:n], mode="clip")
                order = np.argsort(key[:n], kind="stable")  # radix: target order in the band
                partner = np.take(sec, order, out=spare[:n], mode="clip")
                np.take(panels.values, partner, axis=0, out=data[o0:o1], mode="clip")
                if keep_pairs:
                    self._second[o0:o1] = partner
                # column of (b, e): b n_entries + e's position in row order (t0 + its
                # segment)
                first = np.take(seg, order, out=spare[:n], mode="clip")
                first += t0
                for b in range(p):  # column by column: a broadcast over p is ~10x slower
                    np.add(first, b * n_entries, out=cols[o0:o1, b])
                # runs of one target: one row of P each (row i0 q + key + 1 of the counts)
                ks = np.take(key[:n], order, out=key_sorted[:n], mode="clip")
                flag = new_target[:n]
                flag[0] = True
                np.not_equal(ks[1:], ks[:-1], out=flag[1:])
                starts = np.flatnonzero(flag)
                row_counts[i0 * q + ks[starts].astype(np.int64) + 1] = np.diff(starts, append=n)
        indptr = np.cumsum(row_counts, out=row_counts)
        indptr *= p
        self.map = sp.csr_matrix(
            (data.reshape(-1), cols.reshape(-1), indptr), shape=(q * q, n_entries * p)
        )

    @property
    def stored_entries(self) -> int:
        return int(self.map.nnz)

    def refresh(self, values: np.ndarray) -> None:
        """New panel values (same structure): the map's entries gathered again from the
        stored partner entries (built with ``keep_pairs``)."""
        if self._second is None:
            raise ValueError("this map was built without its pairs (keep_pairs=False)")
        data = self.map.data.reshape(-1, self.p)
        for e0 in range(0, self._second.size, CHUNK_ENTRIES):
            e1 = min(e0 + CHUNK_ENTRIES, self._second.size)
            # np.take: far faster than fancy indexing of 2-d arrays
            np.take(values, self._second[e0:e1], axis=0, out=data[e0:e1], mode="clip")
        self._values_t = np.ascontiguousarray(np.take(values, self._by_row, axis=0).T)

    def lower_fill(self, r: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Dense C-ordered ``(n, n)`` matrix whose lower triangle is ``scale F``'s (upper:
        zero)."""
        p = self.p
        m = np.einsum("acl,bcl->abl", r, r)  # M_s, (p, p, l)
        if scale != 1.0:
            m *= scale
        level = self._level_by_row
        values = self._values_t  # (p, entries)
        b, scratch = self._buffers(values.shape)  # B', row c: column c of B
        for c in range(p):
            np.take(m[0, c], level, out=b[c], mode="clip")  # "raise" buffers the output
            np.multiply(values[0], b[c], out=b[c])
            for a in range(1, p):
                np.take(m[a, c], level, out=scratch, mode="clip")
                np.multiply(values[a], scratch, out=scratch)
                b[c] += scratch
        return (self.map @ b.reshape(-1)).reshape(self.n_rows, self.n_rows)

    def _buffers(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``B'`` and one row of scratch, allocated on the first evaluation and reused (an
        evaluation allocates nothing proportional to the number of panel entries)."""
        kept = self._kept_buffers
        if kept is None or kept[0].shape != shape:
            kept = (np.empty(shape), np.empty(shape[1]))
            self._kept_buffers = kept
        return kept


class GroupedFill:
    """Levels with identical ``M_s`` summed once: ``lower(F) = P_g m_g`` with a dense
    ``P_g`` of one column per (group, lower pair).

    ``P_g``'s columns, ``lower(sum_{s in g} A_sa A_sb' (+ A_sb A_sa'))``, are built once
    either by BLAS on dense column chunks of ``A`` or by sparse products, whichever the
    operation count favours.
    """

    kind = "grouped"

    def __init__(self, panels: Panels, groups: np.ndarray, n_groups: int, build: str | None = None):
        self.n_rows = q = panels.n_rows
        self.p = p = panels.p
        a_idx, b_idx = lower_pairs(p)
        n_ab = a_idx.size
        self.representative = np.zeros(n_groups, dtype=np.int64)
        self.representative[groups[::-1]] = np.arange(groups.size)[::-1]
        self.tril = np.tril_indices(q)
        columns = np.empty((n_groups * n_ab, self.tril[0].size))
        dense_cost = q * q * panels.n_levels * p * p * BLAS_MULTIPLY_ADD
        sparse_cost = panels.n_triples() * p * p * SPGEMM_PER_PRODUCT
        build = build or ("dense" if dense_cost <= sparse_cost else "sparse")
        csc = panels.to_csr().tocsc() if build == "sparse" else None
        for g in range(n_groups):
            levels = np.flatnonzero(groups == g)
            if csc is None:
                full = self._dense_sums(panels, levels)  # (p, p, q, q)
            else:
                full = self._sparse_sums(csc, p, levels)
            for e, (a, b) in enumerate(zip(a_idx, b_idx, strict=True)):
                block = full[a, b] + full[b, a] if a != b else full[a, a]
                columns[g * n_ab + e] = block[self.tril]
        self.columns = columns

    @staticmethod
    def _dense_sums(panels: Panels, levels: np.ndarray) -> np.ndarray:
        """``sum_s A_sa A_sb'`` for all (a, b), by gemm on dense chunks of levels."""
        q, p = panels.n_rows, panels.p
        out = np.zeros((p, p, q, q))
        counts = panels.counts()
        chunk = max(1, DENSE_CHUNK_ENTRIES // max(q * p, 1))
        for lo in range(0, levels.size, chunk):
            part = levels[lo : lo + chunk]
            k = counts[part]
            local = np.repeat(np.arange(part.size), k)
            entry = np.repeat(panels.starts[part], k) + (
                np.arange(local.size) - np.repeat(np.cumsum(k) - k, k)
            )
            dense = np.zeros((p, q, part.size))
            for a in range(p):
                dense[a, panels.rows[entry], local] = panels.values[entry, a]
            for a in range(p):
                for b in range(a + 1):
                    out[a, b] += dense[a] @ dense[b].T
        for a in range(p):
            for b in range(a):
                out[b, a] = out[a, b].T
        return out

    @staticmethod
    def _sparse_sums(csc: sp.csc_matrix, p: int, levels: np.ndarray) -> np.ndarray:
        """``sum_s A_sa A_sb'`` for all (a, b), by sparse products (``csc`` is ``A``)."""
        q = csc.shape[0]
        out = np.zeros((p, p, q, q))
        for a in range(p):
            for b in range(p):
                out[a, b] = (csc[:, levels * p + a] @ csc[:, levels * p + b].T).toarray()
        return out

    @property
    def stored_entries(self) -> int:
        return int(self.columns.size)

    def lower_fill(self, r: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """As :meth:`MapFill.lower_fill`."""
        m = outer_lower(r[:, :, self.representative])  # (n_ab, G)
        if scale != 1.0:
            m *= scale
        out = np.zeros((self.n_rows, self.n_rows))
        out[self.tril] = m.T.ravel() @ self.columns
        return out


class DenseFill:
    """``F = W W'`` with ``W = A blockdiag(r_s)``; ``A`` stored densely, ``syrk`` per chunk.

    ``A`` is held level-major and transposed, ``(l, p, n_rows)`` C-ordered: a chunk of
    ``W'`` is then one batched ``p x p`` product, and ``W`` (its transpose) is already in
    the Fortran order BLAS takes, without a copy.
    """

    kind = "dense"

    def __init__(self, panels: Panels):
        self.n_rows = q = panels.n_rows
        self.p = p = panels.p
        n_levels = panels.n_levels
        dense = np.zeros((n_levels, p, q))
        level = np.repeat(np.arange(n_levels), panels.counts())
        # flat position of every panel value (entry t, column a) in the dense array
        self._flat = (
            (level[:, None] * p + np.arange(p)) * q + panels.rows.astype(np.int64)[:, None]
        ).ravel()
        dense.reshape(-1)[self._flat] = panels.values.ravel()
        self.dense = dense
        self.chunk = max(1, DENSE_CHUNK_ENTRIES // max(q * p, 1))

    @property
    def stored_entries(self) -> int:
        return int(self.dense.size)

    def refresh(self, values: np.ndarray) -> None:
        """New panel values (same structure) written into the dense ``A``."""
        self.dense.reshape(-1)[self._flat] = values.ravel()

    def lower_fill(self, r: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """As :meth:`MapFill.lower_fill`: ``syrk`` fills the upper triangle of a Fortran
        array, whose transpose is the C-ordered lower triangle (no copy)."""
        n_levels, p, q = self.dense.shape
        out = np.zeros((q, q), order="F")
        if p > 1:
            rl = np.ascontiguousarray(r.transpose(2, 1, 0))  # (l, p, p): r_s'
        for lo in range(0, n_levels, self.chunk):
            hi = min(lo + self.chunk, n_levels)
            if p == 1:
                wt = self.dense[lo:hi, 0, :] * r[0, 0, lo:hi, None]
            else:
                wt = np.matmul(rl[lo:hi], self.dense[lo:hi]).reshape((hi - lo) * p, q)
            out = blas.dsyrk(scale, wt.T, beta=1.0, c=out, lower=0, overwrite_c=1)
        return out.T


_SCATTER_LOCK = threading.Lock()  # see ScatterFill.lower_fill
# the compiled fill kernels (and the gather kernels, which need the same numba)
SCATTER_KERNELS = OptionalKernels(
    "mixedmodels.linalg.scatter_kernels",
    "the compiled scatter fill kernel",
    "using the other fill kernels",
)


def numba_available() -> bool:
    """True when numba is installed and the compiled kernels have not failed to load
    (the compiled :class:`ScatterFill` is then offered).  Cheap: numba itself is imported
    only when a :class:`ScatterFill` is built (:func:`scatter_kernels`)."""
    return SCATTER_KERNELS.available()


def scatter_kernels():
    """The module of compiled kernels (:mod:`mixedmodels.linalg.scatter_kernels`), or
    None when numba is missing or fails to load (reported once: the kernel is an optional
    accelerator, so the scatter kernel is no longer offered and the fit continues with the
    other kernels; :class:`~mixedmodels.linalg.optional_kernels.OptionalKernels`)."""
    return SCATTER_KERNELS.load() if numba_available() else None


def scatter_threads(products: int) -> int:
    """Threads for a scatter of ``products`` products: one per
    ``SCATTER_MIN_PRODUCTS_PER_THREAD`` products, at most the cores this process may use
    (or ``NUMBA_NUM_THREADS`` when set to a positive integer; numba itself ignores other
    values), at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cores or 1
    text = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        limit = int(text)
    return max(1, min(limit, products // SCATTER_MIN_PRODUCTS_PER_THREAD))


def balanced_edges(work: np.ndarray, parts: int) -> np.ndarray:
    """``parts + 1`` row edges splitting ``work`` (per row) into contiguous ranges of about
    equal sums."""
    total = np.concatenate([[0], np.cumsum(work)])
    targets = total[-1] * np.arange(1, parts) / parts
    inner = np.searchsorted(total, targets, side="left")
    return np.concatenate([[0], inner, [work.size]]).astype(np.int64)


class ScatterFill:
    """``F = sum_s W_s W_s'`` with ``W_s = A_s r_s``, each product added where it lands.

    ``A`` is kept as a CSC matrix (``q x l p``) whose ``p`` columns of a level share one
    row pattern, read in place (the Gram's own block when it has that layout, so a problem
    of 100M rows holds ``A`` once).  Nothing is precomputed but the work per row of ``F``
    (to balance threads) and the groups of levels (:meth:`level_blocks`, :meth:`group_bytes`
    of ``W`` each): an evaluation forms a group's ``W_s`` rows into
    a buffer and adds the ``k_s (k_s + 1) / 2`` products of each level to the rows of ``F``
    they belong to, row by row.  See :mod:`mixedmodels.linalg.scatter_kernels` for the loop,
    its cache blocking and the order of the sums (levels in order: the result is bitwise
    the same for any number of threads and any group size).
    """

    kind = "scatter"

    def __init__(self, a: sp.csc_matrix, p: int):
        kernels = scatter_kernels()  # numba: imported only here
        if kernels is None:
            raise MixedModelsError(
                "the scatter fill kernel needs numba (pip install 'mixedmodels[fast]')"
                + (
                    f"; it failed to load: {SCATTER_KERNELS.failure}"
                    if SCATTER_KERNELS.failure
                    else ""
                )
            )
        self._kernels = kernels
        self._check(a, p)
        self.n_rows = q = a.shape[0]
        self.p = p
        self.a = a
        self._indptr = np.ascontiguousarray(a.indptr)
        self._indices = np.ascontiguousarray(a.indices)
        work = kernels.products_per_row(self._indptr, self._indices, p, q)
        self.threads = scatter_threads(int(work.sum()))
        self._edges = balanced_edges(work, self.threads)
        counts = self._indptr[1::p] - self._indptr[:-1:p]  # entries per level
        block_bytes = SCATTER_BLOCK_BYTES or self.group_bytes(q, counts, p)
        self._groups = self.level_blocks(counts, 8 * p + 4, block_bytes)
        self._positions: np.ndarray | None = None  # panel entry -> position in a.data
        # the structure checked above: A is read in place (the Gram's own block), so a
        # later change of its arrays by their owner is refused, not read out of bounds
        self._checked = (a.indptr, a.indices, a.data.size)

    def _check(self, a: sp.csc_matrix, p: int) -> None:
        """Everything the compiled loops index without bounds checks (an index out of range
        there would read or write outside the arrays, not raise): ``a`` is a CSC matrix of
        float64 values, ``l p`` columns, sorted and unique rows in range, and the ``p``
        columns of every level share one row pattern.  ``O(nnz)``, once per kernel."""
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
            raise ArgumentError(f"the scatter kernel's p must be a positive integer, not {p!r}")
        if not (sp.isspmatrix_csc(a) or isinstance(a, sp.csc_array)):
            raise ArgumentError(
                f"the scatter kernel reads A as a CSC matrix, not {type(a).__name__}"
            )
        n_rows, n_cols = a.shape
        if n_rows >= 2**31:  # rows of F, and positions in a group (< 2**31 + 2**30), as uint32
            raise ArgumentError(f"the scatter kernel takes fewer than 2**31 rows, not {n_rows}")
        if n_cols % p or a.indptr.size != n_cols + 1:
            raise ArgumentError(
                f"A has {n_cols} columns and {a.indptr.size} column pointers: not "
                f"{p} columns per level"
            )
        if a.data.dtype != np.float64 or a.data.size != a.indices.size:
            raise ArgumentError(
                f"A's values must be float64, one per row index (got {a.data.dtype}, "
                f"{a.data.size} values for {a.indices.size} row indices)"
            )
        code = self._kernels.structure_error(a.indptr, a.indices, n_rows, p)
        if code:
            raise ArgumentError(
                f"A cannot be read by the scatter kernel: {self._kernels.STRUCTURE_ERRORS[code]}"
            )

    @staticmethod
    def level_blocks(counts: np.ndarray, entry_bytes: int, block_bytes: int) -> np.ndarray:
        """Edges of groups of consecutive levels: level ``s`` joins the group
        ``floor(e_s / m)``, ``e_s`` the entries before it and ``m = block_bytes // entry_bytes``
        (at least 1, at most 2**30), so a group holds about ``block_bytes`` of entries (one
        level more than that at most: fewer than ``2**30 + max(counts)`` entries) and every
        group has a level.  ``counts`` are the entries per level."""
        per = min(2**30, max(1, int(block_bytes) // max(1, int(entry_bytes))))
        before = np.cumsum(counts, dtype=np.int64) - counts
        block = before // per
        inner = np.flatnonzero(block[1:] != block[:-1]) + 1
        return np.concatenate([[0], inner, [counts.size]]).astype(np.int64)

    @staticmethod
    def group_bytes(n_rows: int, counts: np.ndarray, p: int) -> int:
        """Bytes of ``W`` (and rows) per group of levels: ``g = SCATTER_PRODUCTS_PER_LINE
        q^2 / (8 k)`` entries (``k = sum k_s^2 / sum k_s``, the levels' size seen by an
        entry), so a row of ``F`` receives about that many products per cache line from a
        group; ``8 p + 4`` bytes an entry, clipped to ``SCATTER_MIN_BLOCK_BYTES ..
        SCATTER_MAX_BLOCK_BYTES``."""
        counts = np.asarray(counts, dtype=np.float64)
        total = counts.sum()
        k = (counts @ counts) / total if total else 1.0
        entries = SCATTER_PRODUCTS_PER_LINE * float(n_rows) ** 2 / (8.0 * max(k, 1.0))
        wanted = entries * (8 * p + 4)
        return int(min(SCATTER_MAX_BLOCK_BYTES, max(SCATTER_MIN_BLOCK_BYTES, wanted)))

    @staticmethod
    def cost_per_product(p: int) -> float:
        """Seconds per product ``(i, j <= i)`` of one level on one thread (the cost model
        of :func:`estimate_fill`): ``SCATTER_PER_PRODUCT`` (measured with p = 2) times
        ``max(p, 2) / 2`` for the written-out loops of p <= 3 and ``p (p + 1) / 6`` for the
        general loop (measured, 20k levels, one thread: 1.2, 1.45, 2.25, 4.45 and 7.1 ns
        for p = 1 .. 5; benchmarks/results/fill_kernels_ab2.md)."""
        factor = max(p, 2) / 2 if p <= 3 else p * (p + 1) / 6
        return factor * SCATTER_PER_PRODUCT

    @classmethod
    def from_panels(cls, panels: Panels) -> ScatterFill:
        """The kernel of ``panels`` (their CSC form, built here)."""
        a = panels.to_csr().tocsc()
        a.sort_indices()
        return cls(a, panels.p)

    @staticmethod
    def accepts(a: sp.csc_matrix, p: int) -> bool:
        """True when ``a`` is canonical CSC of float64 values with one row pattern per
        level (compiled check, no temporaries the size of ``a``); False too when the
        kernels cannot be loaded."""
        kernels = scatter_kernels()
        if kernels is None or not (sp.isspmatrix_csc(a) or isinstance(a, sp.csc_array)):
            return False
        if a.shape[1] % p or a.indptr.size != a.shape[1] + 1:
            return False
        if a.data.dtype != np.float64 or a.data.size != a.indices.size:
            return False
        return kernels.structure_error(a.indptr, a.indices, a.shape[0], p) == 0

    @property
    def stored_entries(self) -> int:
        return 0

    def refresh(self, values: np.ndarray) -> None:
        """New panel values ``(entries, p)`` (same structure, level-major, rows sorted
        within a level) written into ``A``."""
        n_entries = self.a.indices.size // self.p
        if np.shape(values) != (n_entries, self.p):
            raise ArgumentError(
                f"new panel values must have shape ({n_entries}, {self.p}), "
                f"not {np.shape(values)}"
            )
        if self._positions is None:
            indptr = self._indptr
            counts = indptr[1 :: self.p] - indptr[: -1 : self.p]  # rows per level
            level = np.repeat(np.arange(counts.size), counts)
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            offset = np.arange(level.size) - start[level]
            self._positions = indptr[:-1].reshape(-1, self.p)[level] + offset[:, None]
        self.a.data[self._positions] = values

    def lower_fill(self, r: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """As :meth:`MapFill.lower_fill`.  Calls from several Python threads take turns:
        numba's default thread pool (workqueue) aborts the process when two threads
        launch parallel kernels at once.  ``r`` must be ``(p, p, l)``: the kernel reads
        ``r[:, :, s]`` for every level without bounds checks."""
        n_levels = (self._indptr.size - 1) // self.p
        if np.shape(r) != (self.p, self.p, n_levels):
            raise ArgumentError(
                f"r must have shape ({self.p}, {self.p}, {n_levels}) (p x p per level), "
                f"not {np.shape(r)}"
            )
        indptr, indices, size = self._checked
        a = self.a
        if a.indptr is not indptr or a.indices is not indices or a.data.size != size:
            raise ArgumentError(
                "A's structure changed after the scatter kernel checked it (its arrays were "
                "replaced, e.g. by sum_duplicates): build the kernel again"
            )
        if a.data.dtype != np.float64:
            raise ArgumentError(f"A's values must be float64, not {a.data.dtype}")
        out = np.zeros((self.n_rows, self.n_rows))
        with _SCATTER_LOCK:
            self._kernels.scatter_lower(
                self._indptr,
                self._indices,
                self.a.data,
                self.p,
                np.ascontiguousarray(r, dtype=np.float64),
                float(scale),
                self._edges,
                self._groups,
                out,
            )
        return out


Fill = MapFill | GroupedFill | DenseFill | ScatterFill
FILL_KINDS = ("map", "grouped", "dense", "scatter")


@dataclass(frozen=True)
class FillChoice:
    """The kernel chosen, the cost estimates (seconds per evaluation) and the storage of
    each, and the kinds left out for storage over the cap (``over_cap``: their estimates
    and storage may come from a lower bound on the grouped kernel's groups, see
    :func:`count_level_groups`, so they are not shown as numbers)."""

    kind: str
    estimates: dict[str, float]
    stored: dict[str, int]
    over_cap: frozenset[str] = frozenset()

    def describe(self) -> str:
        """``"estimates per evaluation: ...; stored entries: ..."``, kinds over the cap
        named as such."""
        shown = [k for k in self.estimates if k not in self.over_cap]
        text = "estimates per evaluation: " + ", ".join(
            f"{k} {self.estimates[k] * 1e3:.1f} ms" for k in shown
        )
        text += "; stored entries: " + ", ".join(f"{k} {self.stored[k]:,}" for k in shown)
        if self.over_cap:
            text += f"; over the storage cap: {', '.join(sorted(self.over_cap))}"
        return text


def level_groups(diagonal: np.ndarray) -> tuple[np.ndarray, int]:
    """Group levels with bit-identical ``p x p`` blocks ``(p, p, l)``: ids and count."""
    p, _, n_levels = diagonal.shape
    flat = np.ascontiguousarray(diagonal.reshape(p * p, n_levels).T)
    _, ids = np.unique(flat, axis=0, return_inverse=True)
    ids = ids.ravel()
    return ids.astype(np.int64), int(ids.max()) + 1 if ids.size else 0


def count_level_groups(diagonal: np.ndarray, most: int) -> int:
    """The number of distinct ``p x p`` blocks of ``diagonal`` (``(p, p, l)``) when it is
    at most ``most``, else a number above ``most`` (found on the first levels: with a
    continuous covariate every level's block differs, and the whole count, a sort of all
    ``l`` blocks, took 2.3 s at 1M levels for an answer only compared with ``most``)."""
    n_levels = diagonal.shape[2]
    prefix = min(n_levels, 4 * (most + 1))
    _, seen = level_groups(diagonal[:, :, :prefix])
    if seen > most or prefix == n_levels:
        return seen
    return level_groups(diagonal)[1]


def estimate_fill(shape: PanelShape, n_groups: int, reweightable: bool = False) -> FillChoice:
    """Cost (seconds per evaluation, build spread over EXPECTED_EVALUATIONS) and storage
    of each kernel; kinds whose storage exceeds the cap are left out.

    With ``reweightable`` (a GLMM's problem, whose panel values change at every scoring
    step) the grouped kernel is left out (its groups depend on the weights), each kernel's
    per-step refresh is added and the build is spread over EXPECTED_STEPS.
    """
    q, p, n_levels = shape.n_rows, shape.p, shape.n_levels
    n_ab = p * (p + 1) // 2
    triples = shape.n_triples()
    lower = q * (q + 1) // 2
    entries = shape.n_entries
    stored = {
        "map": triples * p,
        "grouped": n_groups * n_ab * lower,
        "dense": q * n_levels * p,
    }
    estimates = {
        "map": triples * p * SPARSE_ENTRY
        + entries * p * p * MAP_VALUE_PER_ENTRY
        + triples * MAP_BUILD_PER_TRIPLE / EXPECTED_EVALUATIONS,
        "grouped": stored["grouped"] * DENSE_ENTRY
        + min(
            triples * p * p * SPGEMM_PER_PRODUCT,
            q * q * n_levels * p * p * BLAS_MULTIPLY_ADD,
        )
        / EXPECTED_EVALUATIONS,
        "dense": lower * n_levels * p * BLAS_MULTIPLY_ADD + q * n_levels * p * p * 2e-9,
    }
    scatter = numba_available()
    if scatter:
        stored["scatter"] = 0
        scatter_work = triples * ScatterFill.cost_per_product(p) / scatter_threads(triples)
        estimates["scatter"] = scatter_work + SCATTER_LOAD / EXPECTED_EVALUATIONS
    if reweightable:
        estimates = {
            "map": triples * p * (SPARSE_ENTRY + MAP_REFRESH_PER_ENTRY)
            + entries * p * p * MAP_VALUE_PER_ENTRY
            + triples * MAP_BUILD_PER_TRIPLE / EXPECTED_STEPS,
            "dense": estimates["dense"] + entries * p * DENSE_REFRESH_PER_ENTRY,
        }
        if scatter:
            estimates["scatter"] = scatter_work + SCATTER_LOAD / EXPECTED_STEPS
    allowed = {k: v for k, v in estimates.items() if stored[k] <= MAX_STORED_ENTRIES}
    kind = min(allowed, key=allowed.get) if allowed else "none"
    over_cap = frozenset(k for k in estimates if k not in allowed)
    return FillChoice(kind=kind, estimates=estimates, stored=stored, over_cap=over_cap)


def make_fill(
    panels: Panels, diagonal: np.ndarray, kind: str | None = None, reweightable: bool = False
) -> tuple[Fill | None, FillChoice]:
    """The cheapest kernel for ``panels`` (or the one named by ``kind``).

    ``diagonal`` is the eliminated term's ``Z_s' W Z_s`` (p, p, l): levels whose blocks are
    identical share ``M_s``.  With ``reweightable`` the kernel has a ``refresh(values)``
    for new panel values (see :func:`estimate_fill`).  Returns ``(None, choice)`` when
    every kernel would exceed the storage cap.
    """
    if kind is not None and kind not in FILL_KINDS:
        raise ArgumentError(f"unknown fill kernel {kind!r}; one of {', '.join(FILL_KINDS)}")
    if reweightable:
        groups, n_groups = np.zeros(panels.n_levels, dtype=np.int64), panels.n_levels
    else:
        groups, n_groups = level_groups(diagonal)
    choice = estimate_fill(panels.shape, n_groups, reweightable)
    kind = kind or choice.kind
    if reweightable and kind == "grouped":
        raise ArgumentError("the grouped fill kernel cannot be reweighted")
    if kind == "scatter" and scatter_kernels() is None:
        # asked for without numba, or numba failed to load just now (warned): the
        # cheapest of the other kernels
        choice = estimate_fill(panels.shape, n_groups, reweightable)
        kind = choice.kind
    if kind == "map":
        return MapFill(panels, keep_pairs=reweightable), choice
    if kind == "grouped":
        return GroupedFill(panels, groups, n_groups), choice
    if kind == "dense":
        return DenseFill(panels), choice
    if kind == "scatter":
        return ScatterFill.from_panels(panels), choice
    return None, choice


def scatter_in_place(
    a: sp.csc_matrix, p: int, diagonal: np.ndarray, kind: str | None = None
) -> tuple[ScatterFill, FillChoice] | None:
    """The scatter kernel reading ``A`` (canonical CSC, ``q x l p``) where it is, when it
    is the cheapest kernel (or ``kind="scatter"``) and numba is installed; None otherwise
    (then build :class:`Panels` and call :func:`make_fill`).  For a large problem this
    keeps ``A`` in memory once: the other kernels need its panels, a copy."""
    if kind not in (None, "scatter") or not numba_available():
        return None
    if scatter_kernels() is None:  # numba is installed but failed to load (warned)
        return None
    shape = PanelShape.of_csc(a, p)
    # the grouped kernel stores n_ab x lower entries per group: beyond `most` groups it is
    # over the storage cap, and the exact count no longer matters
    most = MAX_STORED_ENTRIES // (p * (p + 1) // 2 * (a.shape[0] * (a.shape[0] + 1) // 2) or 1)
    choice = estimate_fill(shape, count_level_groups(diagonal, most))
    if (kind or choice.kind) != "scatter":
        return None
    try:  # the kernel checks A's structure once (O(nnz), compiled)
        return ScatterFill(a, p), choice
    except ArgumentError:  # e.g. columns of a level with different rows: build panels
        return None
