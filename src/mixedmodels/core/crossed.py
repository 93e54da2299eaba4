"""Crossed random effects: eliminate one block-diagonal term, factor the rest densely.

With the random-effect columns split into the eliminated term ``0`` (``l`` levels, a
``p x p`` block each; terms on the same grouping factor are amalgamated into it, as
MixedModels.jl does) and the rest ``R`` (every other term, ``Q`` columns), the blocked
Cholesky factor of ``Lambda' Z'WZ Lambda + I`` bordered by ``[X y]`` is

.. math::

    L_0 L_0' = \\Lambda_0' D_0 \\Lambda_0 + I  \\quad \\text{(per level, batched)}

    L_R L_R' = \\Lambda_R' (D_R - A M A') \\Lambda_R + I, \\quad
    M = \\Lambda_0 (L_0 L_0')^{-1} \\Lambda_0' \\quad \\text{(one dense potrf)}

with ``D_0 = Z_0'WZ_0`` (block diagonal), ``D_R = Z_R'WZ_R`` and ``A = Z_R'WZ_0``.  The
fill ``A M A'`` is the only product that changes with theta; its symbolic structure (which
levels of term 0 touch which rows of the rest) is computed once, and an evaluation is one
of the kernels of :mod:`mixedmodels.linalg.fillin`.  The ``[X y]`` border needs only
``A``'s matrix-vector products:

.. math::

    C_0 C_0' = \\sum_s c_s M_s c_s', \\quad
    C_R = ([X y]'WZ_R - c M A') \\Lambda_R L_R^{-T}, \\quad
    R R' = [X y]'W[X y] - C_0 C_0' - C_R C_R'

(``c = [X y]'WZ_0``), so ``L_{R0}`` itself is never formed and nothing in an evaluation is
proportional to the number of rows.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mixedmodels.core.gram import Gram, grouped_cross_products, is_nested
from mixedmodels.core.terms import RandomBlock
from mixedmodels.errors import ArgumentError
from mixedmodels.linalg import batched
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.linalg.fillin import (
    Fill,
    FillChoice,
    Panels,
    PanelShape,
    make_fill,
    panel_values_from_rows,
    panels_from_rows,
    panels_from_sparse,
    scatter_in_place,
)
from mixedmodels.linalg.gather import LevelQuadraticForms
from mixedmodels.linalg.threads import single_threaded_blas

MAX_REST = 8000  # the dense rest block is Q x Q; beyond this the blocked engine is used
MAX_NESTED_REST = 1000  # a rest term nested in the eliminated factor would stay sparse there
# dense rest blocks up to this size are factored with one BLAS thread: measured on the
# project's shared 2-core machine (load average ~6), the 500,000-row slopes case (rest
# 2,000 columns) takes 0.15 s per evaluation with one thread and 0.28 s with two; idle,
# two threads save ~15% (the fill product is single-threaded either way)
SINGLE_THREAD_REST = 3000
# fills of at least this many products are kept (the last FILL_CACHE of them, or one per
# theta when there are more, q x q each)
# for steps that change only a scalar rest term's theta (see CrossedObjective._schur_rest)
FILL_CACHE_PRODUCTS = 10_000_000
FILL_CACHE = 4
# ... and no more of them than fit in this many bytes: at the largest dense rest
# (MAX_REST = 8,000 columns) one fill is 512 MB, four would be 2 GB
FILL_CACHE_BYTES = 2**29


def same_factor(a: RandomBlock, b: RandomBlock) -> bool:
    """True when two terms have the same grouping factor (identical level codes)."""
    return a.n_levels == b.n_levels and np.array_equal(a.codes, b.codes)


def factor_groups(blocks: list[RandomBlock]) -> list[list[int]]:
    """Indices of ``blocks`` grouped by grouping factor, in order of first appearance."""
    groups: list[list[int]] = []
    for k, blk in enumerate(blocks):
        for g in groups:
            if same_factor(blocks[g[0]], blk):
                g.append(k)
                break
        else:
            groups.append([k])
    return groups


@dataclass(frozen=True)
class EliminationOrder:
    """Which terms (engine indices) are eliminated first, and which form the dense rest.

    The eliminated factor is the one with the most random effects (``sum l p`` of its
    terms, MixedModels.jl's ``nranef`` order after amalgamation): it leaves the smallest
    dense block.
    """

    first: list[int]
    rest: list[int]


def choose_order(blocks: list[RandomBlock]) -> EliminationOrder | None:
    """The elimination order for ``blocks`` (engine order), or None when the crossed path
    does not apply (one factor only, a dense rest too large, or a rest term nested in the
    eliminated factor that the blocked engine keeps block diagonal)."""
    groups = factor_groups(blocks)
    if len(groups) < 2:
        return None
    sizes = [sum(blocks[k].size for k in g) for g in groups]
    first = groups[int(np.argmax(sizes))]
    rest = [k for k in range(len(blocks)) if k not in first]
    q_rest = sum(blocks[k].size for k in rest)
    if q_rest > MAX_REST:
        return None
    for k in rest:
        if blocks[k].size > MAX_NESTED_REST and is_nested(blocks[k], blocks[first[0]]):
            return None
    return EliminationOrder(first=first, rest=rest)


@dataclass(frozen=True)
class CrossedSummary:
    """Debug view of the crossed structure (engine and public term indices)."""

    first_public: list[int]
    rest_public: list[int]
    n_levels: int
    p: int
    rest_size: int
    panel_entries: int
    triples: int
    fill: FillChoice
    kernel: str

    def __str__(self) -> str:
        return (
            f"eliminated first: term(s) {self.first_public} ({self.n_levels} levels x "
            f"{self.p})\n"
            f"dense rest: term(s) {self.rest_public} ({self.rest_size} columns)\n"
            f"fill structure: {self.panel_entries:,} panel rows, {self.triples:,} products\n"
            f"fill kernel: {self.kernel} ({self.fill.describe()})"
        )


class CrossedObjective:
    """The profiled objective's pieces through the elimination of one term.

    Parameters
    ----------
    blocks : list of RandomBlock
        Terms in engine order (the order of ``gram``).
    public : list of int
        Public (theta) index of each engine block.
    theta_offsets : ndarray
        Start of each public term's theta slice.
    gram : Gram
        Cross products in engine order.
    weights : ndarray or None
    n_fixed : int
    order : EliminationOrder
    kind : str, optional
        Force a fill kernel ("map", "grouped", "dense"); by default the cheapest.
    reweightable : bool
        Keep what :meth:`refresh` needs to take new weights (a GLMM's scoring steps): where
        each cross product's values go, and a fill kernel that can be refilled.
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        public: list[int],
        theta_offsets: np.ndarray,
        gram: Gram,
        weights: np.ndarray | None,
        n_fixed: int,
        order: EliminationOrder,
        kind: str | None = None,
        reweightable: bool = False,
    ):
        self.order = order
        self.reweightable = reweightable
        self.n_fixed = n_fixed
        first = [blocks[k] for k in order.first]
        rest = [blocks[k] for k in order.rest]
        self.first_p = [b.p for b in first]
        self.p = p = sum(self.first_p)
        self.n_levels = n_levels = first[0].n_levels
        codes = first[0].codes
        z0 = first[0].z if len(first) == 1 else np.hstack([b.z for b in first])
        # theta layout: (offset, p) of each amalgamated term and of each rest term
        self.first_theta = [
            (int(theta_offsets[public[k]]), blocks[k].structure) for k in order.first
        ]
        self.rest_theta = [(int(theta_offsets[public[k]]), blocks[k].structure) for k in order.rest]
        self.rest_levels = [b.n_levels for b in rest]
        sizes = [b.size for b in rest]
        self.rest_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.q_rest = q = int(self.rest_offsets[-1])
        self.scalar_rest = all(b.p == 1 for b in rest)
        # one scalar rest term: D_R is diagonal and Lambda_R a multiple of I, so the scale
        # goes into the fill kernel and only the diagonal is added (no pass over Q x Q)
        self.diagonal_rest = len(rest) == 1 and rest[0].p == 1
        up_r, up_c = [], []
        for b, off in zip(rest, self.rest_offsets[:-1], strict=True):
            if b.p > 1:
                a, c = np.triu_indices(b.p, 1)
                base = off + np.arange(b.n_levels)[:, None] * b.p
                up_r.append((base + a).ravel())
                up_c.append((base + c).ravel())
        self._diagonal_upper = (
            np.concatenate(up_r) if up_r else np.zeros(0, int),
            np.concatenate(up_c) if up_c else np.zeros(0, int),
        )
        # D_0 per level and D_R dense (both fixed)
        if len(first) == 1:
            self.d0 = gram.diagonal[order.first[0]]
        else:
            self.d0 = grouped_cross_products(codes, n_levels, z0, z0, weights)
        self.d_rest = self._rest_gram(gram, order.rest, blocks)
        if reweightable:
            self._rest_positions = self._rest_gram_positions(gram, order.rest)
            self._amalgamated = (codes, z0) if len(first) > 1 else None
        # the structure of A = Z_R' W Z_0: from the stored cross products when they hold it
        # in the panel layout, else in one pass over the rows
        panels = None
        direct = None  # (ScatterFill reading the Gram's A in place, its FillChoice)
        a_csc = None  # A as canonical CSC, when it came from the Gram
        self._panel_source: tuple | None = None  # how refresh gets new panel values
        if len(first) == 1:
            f = order.first[0]
            keys = [((k, f), False) if k > f else ((f, k), True) for k in order.rest]
            parts = [gram.off_diagonal[key].T if t else gram.off_diagonal[key] for key, t in keys]
            if reweightable:
                # the same construction on values tagged 1, 2, ... tells where each
                # stored value lands in the panels
                tagged, at = [], 0
                for part in parts:
                    part = part.copy()
                    part.data = at + 1.0 + np.arange(part.data.size)
                    at += part.data.size
                    tagged.append(part)
                tags = panels_from_sparse(sp.vstack(tagged).tocsc(), p)
                if tags is not None:
                    source = tags.values.astype(np.int64) - 1
                    self._panel_source = ("gram", [key for key, _ in keys], source)
                    panels = replace(tags, values=self._gram_panel_values(gram))
            else:
                a_csc = parts[0].tocsc() if len(parts) == 1 else sp.vstack(parts).tocsc()
                a_csc.sum_duplicates()  # canonical (in place; a no-op when it already is)
                direct = scatter_in_place(a_csc, p, self.d0, kind)
                if direct is None:
                    panels = panels_from_sparse(a_csc, p)
        if direct is not None:
            # the Gram's A read in place: no panels, no second copy for the border
            self.fill, choice = direct
            self.a = self.fill.a
            shape = PanelShape.of_csc(self.a, p)
        else:
            if panels is None:
                panels = self._panels_of_rows(codes, z0, rest, weights, reweightable)
            if reweightable:
                n_values = panels.values.size
                tags = replace(
                    panels, values=1.0 + np.arange(n_values).reshape(panels.values.shape)
                )
                self.a = tags.to_csr()
                self._a_source = self.a.data.astype(np.int64) - 1
                self.a.data[:] = panels.values.ravel()[self._a_source]
            else:
                # (Q, l p) for the [X y] border: the Gram's own when it came from there
                self.a = a_csc if a_csc is not None else panels.to_csr()
            self.fill: Fill | None
            with single_threaded_blas(q <= SINGLE_THREAD_REST):
                self.fill, choice = make_fill(panels, self.d0, kind, reweightable=reweightable)
            shape = panels.shape
        # at least one per theta: the Newton polish differences the gradient in each
        # coordinate in turn, and the step in the rest's scale finds the fill of the base
        # point only if the other coordinates' steps have not pushed it out
        n_theta = sum(st.n_theta for _, st in self.first_theta + self.rest_theta)
        self._fills_kept = min(max(FILL_CACHE, n_theta), FILL_CACHE_BYTES // (8 * q * q))
        cache_fills = (
            self.diagonal_rest
            and not reweightable
            and self.fill is not None
            and shape.n_triples() >= FILL_CACHE_PRODUCTS
            and self._fills_kept >= 1
        )
        self._fill_cache: OrderedDict[bytes, np.ndarray] | None = (
            OrderedDict() if cache_fills else None
        )
        self.summary = CrossedSummary(
            first_public=[public[k] for k in order.first],
            rest_public=[public[k] for k in order.rest],
            n_levels=n_levels,
            p=p,
            rest_size=q,
            panel_entries=shape.n_entries,
            triples=shape.n_triples(),
            fill=choice,
            kernel=self.fill.kind if self.fill is not None else "none",
        )
        self._set_response(gram)

    # ----------------------------------------------------------------- setup
    def _panels_of_rows(
        self,
        codes: np.ndarray,
        z0: np.ndarray,
        rest: list[RandomBlock],
        weights: np.ndarray | None,
        reweightable: bool,
    ) -> Panels:
        """The panels of ``A = Z_R' W Z_0`` in one pass over the rows (when the Gram's
        blocks do not hold them in the panel layout); reweightable: also where each row's
        products go (:attr:`_panel_source`)."""
        index = np.empty((codes.size, sum(b.p for b in rest)), dtype=np.int64)
        values = np.empty(index.shape)
        col = 0
        for b, off in zip(rest, self.rest_offsets[:-1], strict=True):
            for c in range(b.p):
                index[:, col] = off + b.codes.astype(np.int64) * b.p + c
                values[:, col] = b.z[:, c]
                col += 1
        if not reweightable:
            return panels_from_rows(
                codes, self.n_levels, z0, index, values, self.q_rest, weights
            )
        panels, inverse = panels_from_rows(
            codes, self.n_levels, z0, index, values, self.q_rest, weights, return_inverse=True
        )
        self._panel_source = ("rows", inverse, z0, values)
        return panels

    def _rest_gram(self, gram: Gram, rest: list[int], blocks: list[RandomBlock]) -> np.ndarray:
        """``Z_R' W Z_R`` as a dense symmetric matrix (rest order)."""
        q = self.q_rest
        out = np.zeros((q, q))
        for i, k in enumerate(rest):
            sl = slice(self.rest_offsets[i], self.rest_offsets[i + 1])
            d = gram.diagonal[k]  # (p, p, l)
            b = blocks[k]
            idx = np.arange(b.n_levels) * b.p
            for a in range(b.p):
                for c in range(b.p):
                    out[sl, sl][idx + a, idx + c] = d[a, c]
            for j in range(i):
                kj = rest[j]
                hi, lo = max(k, kj), min(k, kj)
                block = gram.off_diagonal[hi, lo].toarray()  # Z_hi' W Z_lo
                if hi != k:
                    block = block.T
                slj = slice(self.rest_offsets[j], self.rest_offsets[j + 1])
                out[sl, slj] = block
                out[slj, sl] = block.T
        return out

    def _rest_gram_positions(self, gram: Gram, rest: list[int]) -> list:
        """Flat positions in :attr:`d_rest` of the rest terms' diagonal blocks' values
        (``(p, p, l)`` raveled) and of their off-diagonal blocks' CSR values (both
        triangles), in the order :meth:`refresh` reads them."""
        q = self.q_rest
        offset = {k: int(self.rest_offsets[i]) for i, k in enumerate(rest)}
        out: list = []
        for k in rest:
            d = gram.diagonal[k]
            p, _, n_levels = d.shape
            a, c, lev = np.meshgrid(np.arange(p), np.arange(p), np.arange(n_levels), indexing="ij")
            base = offset[k] + lev * p
            out.append(("diagonal", k, ((base + a) * q + base + c).ravel()))
        for i, k in enumerate(rest):
            for kj in rest[:i]:
                hi, lo = max(k, kj), min(k, kj)
                mat = gram.off_diagonal[hi, lo].tocsr()  # a block may be held as CSC
                rows = np.repeat(np.arange(mat.shape[0]), np.diff(mat.indptr)) + offset[hi]
                cols = mat.indices.astype(np.int64) + offset[lo]
                out.append(("off", (hi, lo), (rows * q + cols, cols * q + rows)))
        return out

    def _gram_panel_values(self, gram: Gram) -> np.ndarray:
        """Panel values ``(entries, p)`` from the Gram's off-diagonal blocks."""
        _, keys, source = self._panel_source
        stored = np.concatenate([gram.off_diagonal[key].data for key in keys])
        return stored[source]

    def refresh(self, gram: Gram, weights: np.ndarray | None) -> None:
        """New weights (and response): every numeric part is refilled from ``gram``
        (made by the same :class:`~mixedmodels.core.gram.GramPlan` as the one this
        objective was built from, so its patterns are the same) through the positions
        found at construction; the elimination order, panel structure and fill kernel's
        symbolic work are kept."""
        if not self.reweightable:
            raise ArgumentError("this crossed objective was not built reweightable")
        if self._amalgamated is None:
            self.d0 = gram.diagonal[self.order.first[0]]
        else:
            codes, z0 = self._amalgamated
            self.d0 = grouped_cross_products(codes, self.n_levels, z0, z0, weights)
        flat = self.d_rest.reshape(-1)
        for kind, key, pos in self._rest_positions:
            if kind == "diagonal":
                flat[pos] = gram.diagonal[key].ravel()
            else:
                data = gram.off_diagonal[key].tocsr().data  # CSR order (no-op for CSR)
                flat[pos[0]] = data
                flat[pos[1]] = data
        if self._panel_source[0] == "gram":
            values = self._gram_panel_values(gram)
        else:
            _, inverse, z0, rest_z = self._panel_source
            values = panel_values_from_rows(inverse, self.a.nnz // self.p, z0, rest_z, weights)
        self.a.data[:] = values.ravel()[self._a_source]
        if self.fill is not None:
            self.fill.refresh(values)
        self._set_response(gram)

    def _set_response(self, gram: Gram) -> None:
        """The response-dependent cross products: ``[X y]'WZ_0`` (m, p, l), ``[X y]'WZ_R``
        (m, Q) and ``[X y]'W[X y]``."""
        m = gram.xy_xy.shape[0]
        parts = [
            gram.xy_random[k].reshape(m, self.n_levels, pk)
            for k, pk in zip(self.order.first, self.first_p, strict=True)
        ]
        xz0 = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
        self.xz0 = np.ascontiguousarray(xz0.transpose(0, 2, 1))  # (m, p, l)
        rest = [gram.xy_random[k] for k in self.order.rest]
        self.xz_rest = np.hstack(rest) if rest else np.zeros((m, 0))
        self.xx = gram.xy_xy
        self._last: tuple[bytes, CrossedFactor] | None = None  # see _factor

    def with_response(self, gram: Gram, n_fixed: int) -> CrossedObjective:
        """A copy sharing the structure and fill kernel, with a new response's (or fixed
        part's) cross products."""
        new = object.__new__(CrossedObjective)
        new.__dict__.update(self.__dict__)
        new.n_fixed = n_fixed
        new._set_response(gram)
        return new

    # ----------------------------------------------------------------- evaluation
    def first_lambda(self, theta: np.ndarray) -> np.ndarray:
        """``lambda_0``: block diagonal over the amalgamated terms."""
        lam = np.zeros((self.p, self.p))
        at = 0
        for off, structure in self.first_theta:
            pk = structure.p
            lam[at : at + pk, at : at + pk] = structure.lambda_matrix(
                theta[off : off + structure.n_theta]
            )
            at += pk
        return lam

    def rest_lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """``lambda_k`` of each rest term."""
        return [
            structure.lambda_matrix(theta[off : off + structure.n_theta])
            for off, structure in self.rest_theta
        ]

    def _scale_columns(self, mat: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """``mat @ Lambda_R`` in place (mat: (r, Q), C-contiguous)."""
        n = mat.shape[0]
        for i, lam in enumerate(lams):
            lo, hi = self.rest_offsets[i], self.rest_offsets[i + 1]
            pk = lam.shape[0]
            if pk == 1:
                mat[:, lo:hi] *= lam[0, 0]
            else:
                mat[:, lo:hi] = (mat[:, lo:hi].reshape(n, -1, pk) @ lam).reshape(n, hi - lo)
        return mat

    @cached_property
    def level_quadratic_forms(self) -> LevelQuadraticForms:
        """The ``A_s' T A_s`` kernel of ``A`` (the gradient's), built at first use (its
        structure check is ``O(entries)``); a reweightable objective's kernel reads ``A``'s
        values again at every call, since :meth:`refresh` writes them in place."""
        return LevelQuadraticForms(self.a, self.p, follow_values=self.reweightable)

    def _scale_rows(self, mat: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """``Lambda_R' @ mat`` in place (mat: (Q, c), C-contiguous)."""
        n = mat.shape[1]
        for i, lam in enumerate(lams):
            lo, hi = self.rest_offsets[i], self.rest_offsets[i + 1]
            pk = lam.shape[0]
            if pk == 1:
                mat[lo:hi] *= lam[0, 0]
            else:
                mat[lo:hi] = (lam.T @ mat[lo:hi].reshape(-1, pk, n)).reshape(hi - lo, n)
        return mat

    def _cached_fill(self, r: np.ndarray, key: bytes) -> np.ndarray:
        """A new array holding the fill ``A M A'`` (lower triangle) at ``r``, from the cache
        of the last :data:`FILL_CACHE` fills (at most :data:`FILL_CACHE_BYTES`) when
        ``key`` (``lambda_0``) is in it.  The fill found or made is held in a local name
        before the cache is touched again, so objectives sharing the cache
        (:meth:`with_response`) in several threads never look up an evicted key."""
        cache = self._fill_cache
        fill = cache.get(key)
        if fill is None:
            fill = self.fill.lower_fill(r)
            fill.flags.writeable = False
            cache[key] = fill
            while len(cache) > self._fills_kept:
                with contextlib.suppress(KeyError):
                    cache.popitem(last=False)
        else:
            with contextlib.suppress(KeyError):
                cache.move_to_end(key)
        return fill.copy()

    def _schur_rest(
        self, r: np.ndarray, lams: list[np.ndarray], key: bytes = b"", keep: list | None = None
    ) -> np.ndarray:
        """``Lambda_R' (D_R - A M A') Lambda_R + I``; only the lower triangle is valid.

        With one scalar rest term the fill depends on theta only through ``lambda_0``
        (``key``) and the rest's scale multiplies it: where the fill is expensive, the last
        few are kept, so a step in the rest's theta alone (a quarter to a third of a finite
        difference stencil's points) costs one dense factorization, not a fill.

        ``Lambda_R`` is block diagonal with ``p_k x p_k`` blocks, so the congruence maps
        each ``p_k x p_k`` sub-block on its own: only the sub-blocks on the diagonal need
        their upper halves (copied from the lower) before it.

        With ``keep`` (a list), a copy of ``D_R - A M A'`` (lower triangle valid) is
        appended to it: the derivatives in theta need it
        (:mod:`mixedmodels.core.crossed_gradient`).
        """
        if self.diagonal_rest:
            s2 = float(lams[0][0, 0]) ** 2
            if self._fill_cache is None and keep is None:
                h = self.fill.lower_fill(r, scale=-s2)  # the scale inside the kernel
            else:
                cached = self._fill_cache is not None
                h = self._cached_fill(r, key) if cached else self.fill.lower_fill(r)
                if keep is not None:
                    keep.append(np.subtract(self.d_rest, h))
                h *= -s2
            h.flat[:: self.q_rest + 1] += s2 * np.diagonal(self.d_rest) + 1.0
            return h
        h = self.fill.lower_fill(r)
        np.subtract(self.d_rest, h, out=h)
        if keep is not None:
            keep.append(h.copy())
        if self.scalar_rest:
            s = np.repeat(np.array([lam[0, 0] for lam in lams]), self.rest_levels)
            h *= s[:, None]
            h *= s[None, :]
        else:
            up_r, up_c = self._diagonal_upper
            h[up_r, up_c] = h[up_c, up_r]
            self._scale_rows(self._scale_columns(h, lams), lams)
        h.flat[:: self.q_rest + 1] += 1.0
        return h

    def pieces(self, theta: np.ndarray) -> tuple[float, float, float]:
        """``(log |L_Z|^2, log |R_X|^2, PWRSS)`` at ``theta``.

        A dense rest of at most ``SINGLE_THREAD_REST`` columns is factored with one BLAS
        thread: handing the work to a second thread saves little when the machine is idle
        and costs far more when it is shared (kb07's 128 x 128 factor: 0.5 s per evaluation
        with two threads on a loaded 2-core machine, 1.5 ms with one).
        """
        with single_threaded_blas(self.q_rest <= SINGLE_THREAD_REST):
            return self._pieces(np.asarray(theta, dtype=float))

    def _pieces(self, theta: np.ndarray) -> tuple[float, float, float]:
        f = self._factor(theta)
        return f.log_det_random, f.log_det_fixed(self.n_fixed), f.pwrss

    def factor(self, theta: np.ndarray, keep_schur: bool = False) -> CrossedFactor:
        """The factor's pieces at ``theta`` (one BLAS thread for a small dense rest, as
        :meth:`pieces`); with ``keep_schur`` it holds ``D_R - A M A'`` too
        (:attr:`CrossedFactor.rest_schur`)."""
        with single_threaded_blas(self.q_rest <= SINGLE_THREAD_REST):
            return self._factor(np.asarray(theta, dtype=float), keep_schur)

    def _factor(self, theta: np.ndarray, keep_schur: bool = False) -> CrossedFactor:
        """The factor at ``theta``; the last one is kept (read-only): BOBYQA's result is
        usually its last point, which the optimizer's final check and the solution then
        ask for again (two of the slopes case's 26 factorizations).  Where a fill is
        expensive (:data:`FILL_CACHE_PRODUCTS`) ``D_R - A M A'`` is always kept with it, so
        the derivatives at a point whose value was computed need no second fill."""
        key = theta.tobytes()
        if (
            self._last is not None
            and self._last[0] == key
            and (self._last[1].rest_schur is not None or not keep_schur)
        ):
            return self._last[1]
        keep = keep_schur or self.summary.triples >= FILL_CACHE_PRODUCTS
        factor = self._compute_factor(theta, keep)
        for array in (factor.low, factor.upper_rest, factor.c_rest, factor.xy_xy):
            array.flags.writeable = False
        if factor.rest_schur is not None:
            factor.rest_schur.flags.writeable = False
        self._last = (key, factor)
        return factor

    def _compute_factor(self, theta: np.ndarray, keep_schur: bool = False) -> CrossedFactor:
        lam0 = self.first_lambda(theta)
        lams = self.rest_lambdas(theta)
        p = self.p
        d = batched.congruence(lam0, self.d0)
        for i in range(p):
            d[i, i] += 1.0
        low = batched.cholesky(d)
        if not np.all(np.isfinite(low)):
            raise NotPositiveDefiniteError
        ld0 = 2.0 * batched.log_diagonal_sum(low)
        inv = batched.invert_lower(low)
        r = np.einsum("ik,jkl->ijl", lam0, inv)  # lambda_0 L_s^-T, M_s = r_s r_s'
        kept: list | None = [] if keep_schur else None
        h = self._schur_rest(r, lams, lam0.tobytes(), kept)
        # the transpose is Fortran-ordered: LAPACK factors it in place (upper = our lower)
        upper_rest, info = sla.lapack.dpotrf(h.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            raise NotPositiveDefiniteError
        ld_rest = 2.0 * float(np.log(np.diagonal(upper_rest)).sum())
        # [X y] border
        xz0 = self.xz0  # (m, p, l)
        m = xz0.shape[0]
        t = np.einsum("mbl,bcl->mcl", xz0, r)  # c_s r_s
        c0 = t.reshape(m, -1)
        s = self.xx - c0 @ c0.T
        e = np.einsum("mcl,acl->mla", t, r).reshape(m, -1)  # c_s M_s, level-major
        border = self.xz_rest - (self.a @ e.T).T
        border = self._scale_columns(border, lams)
        c_rest, info = sla.lapack.dtrtrs(upper_rest, border.T, lower=0, trans=1)
        s -= c_rest.T @ c_rest
        rx, info = sla.lapack.dpotrf(s, lower=1, clean=1, overwrite_a=1)
        if info != 0 and info != m:
            raise NotPositiveDefiniteError
        if info == m:  # exact fit: r_yy = 0
            rx[-1, -1] = 0.0
        return CrossedFactor(
            lam0=lam0,
            lams=lams,
            low=low,
            upper_rest=upper_rest,
            c_rest=c_rest,
            xy_xy=rx,
            log_det_random=ld0 + ld_rest,
            rest_schur=kept[0] if kept else None,
        )

    def solve(self, theta: np.ndarray, beta: np.ndarray | None = None) -> CrossedSolution:
        """beta (relative to the response shift), the spherical effects ``u`` and the
        factor's pieces at ``theta``, by back substitution through the same blocks:

        ``u_R = L_R^-T (c_R w)``, ``u_s = (L_s L_s')^-1 lambda_0' (c_s' w - (A' Lambda_R
        u_R)_s)`` with ``w = (-beta, 1)``.  With ``beta`` given (relative to the shift),
        ``u`` is the conditional mode at that ``beta``.
        """
        with single_threaded_blas(self.q_rest <= SINGLE_THREAD_REST):
            f = self._factor(np.asarray(theta, dtype=float))
            p = self.n_fixed
            if beta is None:
                lxx = f.xy_xy[:p, :p]
                ly = f.xy_xy[-1, :p]
                beta = sla.solve_triangular(lxx, ly, lower=True, trans=1) if p else np.zeros(0)
            beta = np.asarray(beta, dtype=float)
            w = np.append(-beta, 1.0)
            rhs = f.c_rest @ w
            u_rest, _ = sla.lapack.dtrtrs(f.upper_rest, rhs, lower=0)
            b_rest = np.concatenate(  # Lambda_R u_R
                [
                    (u_rest[lo:hi].reshape(-1, lam.shape[0]) @ lam.T).ravel()
                    for lo, hi, lam in zip(
                        self.rest_offsets[:-1], self.rest_offsets[1:], f.lams, strict=True
                    )
                ]
            )
            g = np.einsum("m,mpl->pl", w, self.xz0)  # c_s' w, (p, l)
            at_b = self.a.T @ b_rest  # A' Lambda_R u_R (a transposed view: nothing formed)
            g -= at_b.reshape(self.n_levels, self.p).T
            g = np.einsum("ji,jl->il", f.lam0, g)  # lambda_0' (...)
            inv = batched.invert_lower(f.low)
            half = np.einsum("ijl,jl->il", inv, g)  # L_s^-1 g
            u_first = np.einsum("jil,jl->li", inv, half)  # L_s^-T L_s^-1 g, (l, p)
        return CrossedSolution(factor=f, beta=beta, u_first=u_first, u_rest=u_rest)

    def split_effects(
        self, u_first: np.ndarray, u_rest: np.ndarray
    ) -> list[tuple[int, np.ndarray]]:
        """``u`` per engine block, ``(engine index, (l, p))``, from the two parts."""
        out = []
        at = 0
        for k, pk in zip(self.order.first, self.first_p, strict=True):
            out.append((k, u_first[:, at : at + pk]))
            at += pk
        for i, k in enumerate(self.order.rest):
            lo, hi = self.rest_offsets[i], self.rest_offsets[i + 1]
            out.append((k, u_rest[lo:hi].reshape(self.rest_levels[i], -1)))
        return out


@dataclass(frozen=True)
class CrossedFactor:
    """The pieces of the blocked factor the crossed path computes for one theta."""

    lam0: np.ndarray
    lams: list[np.ndarray]
    low: np.ndarray  # (p, p, l): L_s
    upper_rest: np.ndarray  # L_R' (upper triangle valid)
    c_rest: np.ndarray  # C_R' (Q, m)
    xy_xy: np.ndarray  # lower Cholesky factor of the [X y] Schur complement
    log_det_random: float
    rest_schur: np.ndarray | None = None  # D_R - A M A' (lower triangle), when kept

    def log_det_fixed(self, n_fixed: int) -> float:
        """``log |R_X|^2``."""
        return 2.0 * float(np.log(np.diagonal(self.xy_xy)[:n_fixed]).sum())

    @property
    def pwrss(self) -> float:
        return float(self.xy_xy[-1, -1] ** 2)


@dataclass(frozen=True)
class CrossedSolution:
    factor: CrossedFactor
    beta: np.ndarray
    u_first: np.ndarray  # (l, p) of the eliminated (amalgamated) terms
    u_rest: np.ndarray  # (Q,) of the rest, rest order
