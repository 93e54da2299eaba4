"""Linear mixed models of data beyond memory: three passes over the chunks, then the
in-memory optimizer on the reduced problem.

1. the levels of every factor and the complete rows (:meth:`ChunkedDesign.survey`);
2. ``[X y]' W [X y]`` for the rank check and the least-squares shift of the response, the
   nesting of the terms and ``sum log w``;
3. the Gram of ``[Z X y - X beta0]``, one partial per chunk, added.

Sources that hand out their chunks in order in this process (Parquet files, in-memory
chunks) make passes 2 and 3 one when there are fixed effects and no weights: the Gram of
``[Z X y - X b1]`` with ``b1`` fitted to the first rows, moved to ``beta0`` once pass 2's
sums are complete (:func:`_reshifted`).

No pass is made per objective evaluation: the objective depends on the rows only through the
Gram, whose size is set by the numbers of random and fixed effects.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import scipy.linalg as sla

from mixedmodels.core.gram import Gram
from mixedmodels.core.reduce import (
    GramSum,
    Ranged,
    chunk_gram,
    is_nested_by,
    level_counts,
    merge_nesting,
    nesting_partial,
)
from mixedmodels.core.reduced import crossed_order, engine_order, reduced_problem, term_shapes
from mixedmodels.design.chunked import ChunkedDesign, EncodedChunk, merge_surveys, reduced_design
from mixedmodels.design.model import lme4_term_permutation
from mixedmodels.design.rank import dropped_columns, independent_columns_of_gram
from mixedmodels.design.sources import FrameSource, ParquetSource, RowSource
from mixedmodels.design.validate import check_finite_columns
from mixedmodels.errors import DataError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim.reduced_start import StartSums
from mixedmodels.progress import ProgressBar, progress_enabled

T = TypeVar("T")


def _passes(source: RowSource, progress: bool) -> Callable:
    """A pass over the chunks: the function's results as they come, with a progress bar.

    BLAS runs on one thread meanwhile: a chunk's products are of tall, thin matrices
    (``X' X`` of a million rows and a few columns), which another BLAS thread barely
    speeds up while it spins for work afterwards (OpenBLAS, 10M rows: 4.1 s of CPU for
    the Gram's pass with two threads, 2.9 s with one)."""

    def run(function: Callable[[pd.DataFrame], T], columns: list[str], label: str) -> Iterator[T]:
        with (
            single_threaded_blas(),
            ProgressBar(source.n_chunks, label, enabled=progress) as bar,
        ):
            for result in source.map(function, columns):
                bar.update()
                yield result

    return run


@dataclass
class _Pass2:
    """Sums of pass 2 (terms in public order): of one chunk (level-indexed sums over the
    levels its rows touch, :class:`~mixedmodels.core.reduce.Ranged`) or of all chunks so
    far (every level; :meth:`zeros`, :meth:`add`)."""

    xx: np.ndarray  # X'X (the rank check, unweighted as in memory)
    xwx: np.ndarray  # X'WX
    xwy: np.ndarray  # X'Wy (with X'WX: the least-squares shift of the response)
    nesting: dict[tuple[int, int], Ranged | np.ndarray]  # (inner, outer) -> nesting_partial
    log_weights: float
    counts: list[Ranged | np.ndarray]  # rows per level of each term
    intercept: list[bool]  # one column, 1 on every row
    same_codes: dict[tuple[int, int], bool]  # (i, j), i < j: identical level codes

    @classmethod
    def zeros(cls, n_levels: list[int], n_columns: int) -> _Pass2:
        """Nothing summed yet: every level's entries allocated once."""
        k = len(n_levels)
        return cls(
            np.zeros((n_columns, n_columns)),
            np.zeros((n_columns, n_columns)),
            np.zeros(n_columns),
            {(i, j): np.full(n_levels[i], -1, dtype=np.int64)
             for i in range(k) for j in range(k) if i != j},
            0.0,
            [np.zeros(n, dtype=np.int64) for n in n_levels],
            [True] * k,
            {(i, j): True for i in range(k) for j in range(i + 1, k)},
        )

    def add(self, part: _Pass2) -> _Pass2:
        """Add one chunk's sums in place (returns self)."""
        self.xx += part.xx
        self.xwx += part.xwx
        self.xwy += part.xwy
        for key, total in self.nesting.items():
            merge_nesting(total, part.nesting[key])
        self.log_weights += part.log_weights
        for total, counts in zip(self.counts, part.counts, strict=True):
            total[counts.first : counts.first + counts.values.size] += counts.values
        self.intercept = [a and b for a, b in zip(self.intercept, part.intercept, strict=True)]
        self.same_codes = {k: v and part.same_codes[k] for k, v in self.same_codes.items()}
        return self


def _second_pass(public: list, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> _Pass2:
    """Pass 2 on one chunk's encoded rows (terms in public order)."""
    k = len(public)
    wX = X if w is None else X * w[:, None]
    wy = y if w is None else y * w
    xx = X.T @ X
    return _Pass2(
        xx,
        xx if w is None else X.T @ wX,
        X.T @ wy,
        {
            (i, j): nesting_partial(public[i], public[j])
            for i in range(k)
            for j in range(k)
            if i != j
        },
        0.0 if w is None else float(np.log(w).sum()),
        [level_counts(b) for b in public],
        [b.p == 1 and bool(np.all(b.z[:, 0] == 1.0)) for b in public],
        {
            (i, j): public[i].n_levels == public[j].n_levels
            and np.array_equal(public[i].codes, public[j].codes)
            for i in range(k)
            for j in range(i + 1, k)
        },
    )


def _shift(xwx: np.ndarray, xwy: np.ndarray) -> np.ndarray:
    """The least-squares shift of the response, as the in-memory problem computes it
    (:meth:`~mixedmodels.core.lmm.LmmProblem._shift_response`)."""
    try:
        shift = sla.solve(xwx, xwy, assume_a="pos")
    except (sla.LinAlgError, ValueError):
        return np.zeros(xwy.size)
    return shift if np.all(np.isfinite(shift)) else np.zeros(xwy.size)


def _provisional_shift(xwx: np.ndarray, xwy: np.ndarray) -> np.ndarray:
    """A least-squares shift of the response from one chunk's cross products (minimum norm
    when they are singular; zero when not finite).  Any shift gives the same Gram after
    :func:`_reshifted`; one near the final one keeps the response's sums of squares from
    cancelling."""
    shift = np.linalg.lstsq(xwx, xwy, rcond=None)[0]
    return shift if np.all(np.isfinite(shift)) else np.zeros(xwy.size)


#: Chunks whose Grams may be computed (in a thread) while the next chunk is encoded.
GRAMS_AHEAD = 1
#: Rows whose cross products give the first shift of the response (fewer when the data
#: have fewer): chunks before them wait, encoded, until they have come.
FIRST_SHIFT_ROWS = 10_000
#: The shifted response's sum of squares may be this much smaller than the sums it is
#: computed from (digits lost: log10 of it, 1e-12 relative at 1e4); beyond, pass 3 runs.
RESHIFT_CANCELLATION = 1e4


def _reshifted(gram: Gram, keep: np.ndarray, change: np.ndarray) -> Gram | None:
    """The Gram of ``[X[:, keep], r + X change]`` from the Gram of ``[X, r]``: the rows of
    ``[X y]`` are linear in the response column, so every block that has it is a linear
    combination of blocks already summed (the random blocks are unchanged).  None when
    the new response's sum of squares would cancel beyond :data:`RESHIFT_CANCELLATION`
    (a first shift far from the final one)."""
    p = gram.xy_xy.shape[0] - 1
    k = keep.size
    xy_random = []
    for block in gram.xy_random:
        out = np.empty((k + 1, block.shape[1]))
        out[:k] = block[keep]
        out[k] = block[p] + change @ block[:p]
        xy_random.append(out)
    A = gram.xy_xy
    Ac = A[:p, :p] @ change
    xy_xy = np.empty((k + 1, k + 1))
    xy_xy[:k, :k] = A[np.ix_(keep, keep)]
    xy_xy[:k, k] = xy_xy[k, :k] = A[keep, p] + Ac[keep]
    cross = 2.0 * (change @ A[:p, p])
    xy_xy[k, k] = A[p, p] + cross + change @ Ac
    size = A[p, p] + abs(cross) + abs(change @ Ac)
    if not xy_xy[k, k] * RESHIFT_CANCELLATION >= size:
        return None
    return Gram(gram.diagonal, gram.off_diagonal, xy_random, xy_xy)


def _release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere).  The chunks' arrays of a few MB live on the heap, and the allocator keeps
    what they leave; the whole fit's peak is reached in the optimizer, after the passes
    (100M rows of ``benchmarks/scale.py``: 4,051 MB with the heap and the decoded
    dictionaries kept, 3,927 MB without)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _checked(chunk: EncodedChunk, design: ChunkedDesign) -> EncodedChunk:
    check_finite_columns(chunk.y, [design.parsed.response], "the response")
    check_finite_columns(chunk.X, design.fixed_builder.column_names, "fixed-effect column")
    if chunk.offset is not None:
        check_finite_columns(chunk.offset, ["offset"], "the offset")
    if chunk.weights is not None:
        check_finite_columns(chunk.weights, [design.weights_column], "weights")
        if np.any(chunk.weights <= 0):
            raise DataError(f"weights column {design.weights_column!r} has values <= 0")
    return chunk


def _response(chunk: EncodedChunk) -> np.ndarray:
    return chunk.y if chunk.offset is None else chunk.y - chunk.offset


def fit_chunks(
    formula: str,
    source: RowSource,
    *,
    reml: bool = True,
    weights: str | None = None,
    offset: str | None = None,
    contrasts: dict[str, str] | None = None,
    progress: bool | None = None,
):
    """The design and the reduced problem of ``formula`` on the rows of ``source``.

    Returns
    -------
    (ReducedDesign, LmmProblem, StartSums)
        The design without rows, the reduced problem and what the default (moment) start
        needs besides the problem's Gram (:func:`~mixedmodels.optim.reduced_start.
        reduced_moment_start`).
    """
    progress = progress_enabled() if progress is None else progress
    passes = _passes(source, progress)
    design = ChunkedDesign(
        formula, source.columns, weights=weights, offset=offset, contrasts=contrasts
    )
    prototypes: dict[str, pd.Series] = {}

    def survey(chunk: pd.DataFrame):
        return design.survey(chunk), chunk.iloc[:0]

    total = None  # merged as they come: a survey holds a mask over every level
    for found, empty in passes(survey, design.needed, "pass 1/3 (levels)"):
        total = found if total is None else merge_surveys(total, found)
        if not prototypes:
            prototypes = {c: empty[c] for c in empty.columns}
    if total is None:  # a source of zero chunks: no rows at all
        raise DataError(f"data has no rows (the {type(source).__name__} yields none)")
    design.fix(total)

    n_levels = [len(levels) for levels in design.levels]
    permutation = lme4_term_permutation(n_levels)  # public (lme4) order of the terms
    widths = [len(b.column_names) for b in design.term_builders]
    blocks = term_shapes([n_levels[i] for i in permutation], [widths[i] for i in permutation])
    order = engine_order(blocks)  # engine order, as indices into the public order
    public_of = order  # public index of each engine term

    def engine_blocks(chunk: EncodedChunk):
        public = [chunk.blocks[i] for i in permutation]
        return [public[i] for i in order]

    def second(frame: pd.DataFrame) -> _Pass2:
        chunk = _checked(design.encode(frame), design)
        public = [chunk.blocks[i] for i in permutation]
        return _second_pass(public, chunk.X, _response(chunk), chunk.weights)

    engine_shapes = [blocks[i] for i in order]
    n_columns = len(design.fixed_builder.column_names)
    public_levels = [n_levels[i] for i in permutation]
    # one pass for both when the chunks come in order, here (the first chunk's shift is
    # then every chunk's) and the model has fixed effects and no weights
    fused = (
        isinstance(source, FrameSource | ParquetSource)
        and design.weights_column is None
        and n_columns > 0
    )
    if fused:
        first_shift: list[np.ndarray] = []
        waiting: list[tuple[EncodedChunk, _Pass2]] = []  # chunks before the first shift

        def gram_of(chunk: EncodedChunk):
            X = np.asfortranarray(chunk.X)
            y_first = _response(chunk) - X @ first_shift[0]
            return chunk_gram(engine_blocks(chunk), X, y_first, None)

        # a chunk's Gram (compiled loops and BLAS, without the GIL) is computed in a thread
        # of its own while the next chunk is read and encoded (pandas, with the GIL)
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gram")

        def release() -> list:
            """The waiting chunks' Grams (futures), around a shift fitted to all of them."""
            xwx = sum(s.xwx for _, s in waiting)
            xwy = sum(s.xwy for _, s in waiting)
            first_shift.append(_provisional_shift(xwx, xwy))
            grams = [worker.submit(gram_of, chunk) for chunk, _ in waiting]
            waiting.clear()
            return grams

        def second_and_third(frame: pd.DataFrame) -> tuple[_Pass2, list]:
            chunk = _checked(design.encode(frame), design)
            public = [chunk.blocks[i] for i in permutation]
            sums = _second_pass(public, chunk.X, _response(chunk), None)
            if first_shift:
                return sums, [worker.submit(gram_of, chunk)]
            waiting.append((chunk, sums))
            if sum(c.y.size for c, _ in waiting) < FIRST_SHIFT_ROWS:
                return sums, []
            return sums, release()

        whole = GramSum(engine_shapes, n_columns)
        sums = _Pass2.zeros(public_levels, n_columns)
        pending: deque = deque()  # Grams being computed, in chunk order
        try:
            for part_sums, parts in passes(
                second_and_third, design.needed, "pass 2/2 (cross products)"
            ):
                sums.add(part_sums)
                pending.extend(parts)
                while len(pending) > GRAMS_AHEAD:
                    whole.add(pending.popleft().result())
                del parts, part_sums
            pending.extend(release() if waiting else [])  # fewer rows than FIRST_SHIFT_ROWS
            while pending:
                whole.add(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
            worker.shutdown(wait=True)
    else:
        sums = _Pass2.zeros(public_levels, n_columns)
        for part_sums in passes(second, design.needed, "pass 2/3 (cross products)"):
            sums.add(part_sums)
    n = design.n_rows - design.n_dropped
    keep = independent_columns_of_gram(sums.xx, n) if sums.xx.shape[0] else np.arange(0)
    dropped_columns(design.fixed_builder.column_names, keep)
    if keep.size >= n:
        raise DataError(
            f"as many fixed effects as observations: {keep.size} independent fixed-effect "
            f"column(s) for {n} observation(s)"
        )
    shift = _shift(sums.xwx[np.ix_(keep, keep)], sums.xwy[keep]) if keep.size else np.zeros(0)
    weighted = design.weights_column is not None
    every_column = np.array_equal(keep, np.arange(sums.xx.shape[0]))  # no copy of X needed

    def third(frame: pd.DataFrame) -> tuple:
        chunk = design.encode(frame)
        blocks = engine_blocks(chunk)
        X = np.asfortranarray(chunk.X if every_column else chunk.X[:, keep])
        y_work = _response(chunk) - X @ shift if keep.size else _response(chunk)
        w = chunk.weights
        grams = [chunk_gram(blocks, X, y_work, w)]
        # the start's residuals: on X, or around the mean when there is no X
        R = X if keep.size else np.ones((X.shape[0], 1))
        if not keep.size:
            grams.append(chunk_gram(blocks, R, y_work, w))
        if weighted:
            grams.append(chunk_gram(blocks, R, y_work, None))
        return tuple(grams)

    grams = []
    if fused and keep.size:
        # the Gram of [X, y - X b1] made that of [X_keep, y - X_keep shift]
        shift_all = np.zeros(n_columns)
        shift_all[keep] = shift
        grams = [_reshifted(whole.gram(), keep, first_shift[0] - shift_all)]
        del whole
        if grams[0] is None:  # the response's sums would cancel: pass 3 after all
            grams = []
    if not grams:
        whole = None  # a one-pass Gram, if any, is not used: its memory goes
        sums3 = [GramSum(engine_shapes, keep.size)]
        if not keep.size:
            sums3.append(GramSum(engine_shapes, 1))
        if weighted:
            sums3.append(GramSum(engine_shapes, keep.size or 1))
        for parts in passes(third, design.needed, "pass 3/3 (cross products)"):
            for acc, part in zip(sums3, parts, strict=True):
                acc.add(part)
            del parts
        grams = [acc.gram() for acc in sums3]
        del sums3
    if isinstance(source, ParquetSource):
        source.clear_cache()  # the passes are over: the codes kept between them go
    _release_freed_memory()
    gram = grams[0]
    start_weighted = grams[0] if keep.size else grams[1]
    k = len(blocks)
    nested = {key: is_nested_by(value) for key, value in sums.nesting.items()}
    # the in-memory problem keeps engine term a dense unless every earlier term b is
    # nested in it (LmmProblem.dense)
    engine_nested = {(a, b): nested[public_of[b], public_of[a]] for a in range(k) for b in range(a)}
    same = np.eye(k, dtype=bool)
    for (i, j), value in sums.same_codes.items():
        same[i, j] = same[j, i] = value
    engine_same = same[np.ix_(public_of, public_of)]
    engine_inner = np.array(
        [[a != b and nested[public_of[a], public_of[b]] for b in range(k)] for a in range(k)]
    )
    problem = reduced_problem(
        blocks,
        gram,
        n=n,
        n_fixed=keep.size,
        log_weights=sums.log_weights,
        beta_shift=shift,
        nested=engine_nested,
        reml=reml,
        order=crossed_order([blocks[i] for i in public_of], engine_same, engine_inner)
        if k > 1
        else None,
    )
    start = StartSums(
        counts=sums.counts,
        intercept=sums.intercept,
        same_factor=same,
        nested=np.array([[i != j and nested[i, j] for j in range(k)] for i in range(k)]),
        weighted=start_weighted,
        unweighted=grams[-1] if weighted else start_weighted,
    )
    return reduced_design(design, keep, prototypes, permutation, source), problem, start
