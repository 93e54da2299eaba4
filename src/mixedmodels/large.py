"""Linear mixed models of data beyond memory: three passes over the chunks, then the
in-memory optimizer on the reduced problem.

1. the levels of every factor and the complete rows (:meth:`ChunkedDesign.survey`);
2. ``[X y]' W [X y]`` for the rank check and the least-squares shift of the response, the
   nesting of the terms and ``sum log w``;
3. the Gram of ``[Z X y - X beta0]``, one partial per chunk, added.

No pass is made per objective evaluation: the objective depends on the rows only through the
Gram, whose size is set by the numbers of random and fixed effects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import reduce
from typing import TypeVar

import numpy as np
import pandas as pd

from mixedmodels.core.reduce import (
    add_grams,
    cross_products,
    is_nested_by,
    merge_nesting,
    nesting_partial,
    partial_gram,
)
from mixedmodels.core.reduced import engine_order, reduced_problem, term_shapes
from mixedmodels.design.chunked import ChunkedDesign, EncodedChunk, merge_surveys, reduced_design
from mixedmodels.design.model import lme4_term_permutation
from mixedmodels.design.rank import dropped_columns, independent_columns_of_gram
from mixedmodels.design.sources import RowSource
from mixedmodels.design.validate import check_finite_columns
from mixedmodels.errors import DataError
from mixedmodels.progress import ProgressBar, progress_enabled

T = TypeVar("T")


def _passes(source: RowSource, progress: bool) -> Callable:
    def run(function: Callable[[pd.DataFrame], T], columns: list[str], label: str) -> Iterator[T]:
        with ProgressBar(source.n_chunks, label, enabled=progress) as bar:
            for result in source.map(function, columns):
                bar.update()
                yield result

    return run


@dataclass
class _Pass2:
    cross: np.ndarray
    nesting: dict[tuple[int, int], np.ndarray]
    log_weights: float


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
    (ReducedDesign, LmmProblem)
    """
    progress = progress_enabled() if progress is None else progress
    passes = _passes(source, progress)
    design = ChunkedDesign(
        formula, source.columns, weights=weights, offset=offset, contrasts=contrasts
    )
    prototypes: dict[str, pd.Series] = {}

    def survey(chunk: pd.DataFrame):
        return design.survey(chunk), chunk.iloc[:0]

    surveys = []
    for found, empty in passes(survey, design.needed, "pass 1/3 (levels)"):
        surveys.append(found)
        if not prototypes:
            prototypes = {c: empty[c] for c in empty.columns}
    design.fix(reduce(merge_surveys, surveys))

    n_levels = [len(levels) for levels in design.levels]
    permutation = lme4_term_permutation(n_levels)  # public (lme4) order of the terms
    widths = [len(b.column_names) for b in design.term_builders]
    blocks = term_shapes([n_levels[i] for i in permutation], [widths[i] for i in permutation])
    order = engine_order(blocks)  # engine order, as indices into the public order

    def engine_blocks(chunk: EncodedChunk):
        public = [chunk.blocks[i] for i in permutation]
        return [public[i] for i in order]

    def second(frame: pd.DataFrame) -> _Pass2:
        chunk = _checked(design.encode(frame), design)
        engine = engine_blocks(chunk)
        nesting = {
            (k, m): nesting_partial(engine[k], engine[m])
            for k in range(len(engine))
            for m in range(k)
        }
        w = chunk.weights
        log_w = 0.0 if w is None else float(np.log(w).sum())
        return _Pass2(cross_products(chunk.X, _response(chunk), w), nesting, log_w)

    cross, nesting, log_weights = None, None, 0.0
    for part in passes(second, design.needed, "pass 2/3 (cross products)"):
        cross = part.cross if cross is None else cross + part.cross
        nesting = part.nesting if nesting is None else {
            key: merge_nesting(nesting[key], part.nesting[key]) for key in nesting
        }
        log_weights += part.log_weights
    n = design.n_rows - design.n_dropped
    p_all = cross.shape[0] - 1
    keep = independent_columns_of_gram(cross[:p_all, :p_all], n) if p_all else np.arange(0)
    dropped_columns(design.fixed_builder.column_names, keep)
    if keep.size >= n:
        raise DataError(
            f"as many fixed effects as observations: {keep.size} independent fixed-effect "
            f"column(s) for {n} observation(s)"
        )
    shift = np.zeros(keep.size)
    if keep.size:
        xx = cross[np.ix_(keep, keep)]
        try:
            shift = np.linalg.solve(xx, cross[keep, -1])
        except np.linalg.LinAlgError:
            shift = np.zeros(keep.size)
        if not np.all(np.isfinite(shift)):
            shift = np.zeros(keep.size)

    def third(frame: pd.DataFrame):
        chunk = design.encode(frame)
        X = np.asfortranarray(chunk.X[:, keep])
        y_work = _response(chunk) - X @ shift if keep.size else _response(chunk)
        return partial_gram(engine_blocks(chunk), X, y_work, chunk.weights)

    gram = reduce(add_grams, passes(third, design.needed, "pass 3/3 (cross products)"))
    problem = reduced_problem(
        blocks,
        gram,
        n=n,
        n_fixed=keep.size,
        log_weights=log_weights,
        beta_shift=shift,
        nested={key: is_nested_by(value) for key, value in (nesting or {}).items()},
        reml=reml,
    )
    return reduced_design(design, keep, prototypes), problem
