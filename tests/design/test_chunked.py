"""Designs of chunked rows equal the in-memory design: the same names, levels and dropped
rows, and Grams that add up to the in-memory Gram (an identity: each block is a sum over
rows), whatever the chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.core.gram import add_grams, build_gram
from mixedmodels.design import build_design
from mixedmodels.design.chunked import ChunkedDesign, merge_surveys
from mixedmodels.design.sources import FrameSource
from mixedmodels.errors import DataError
from tests.catalogue import Case, case

CASES = [
    "sleepstudy_slopes_reml",
    "penicillin_crossed_ml",
    "machines_slash_reml",
    "cake_interaction_grouping_reml",
    "arabidopsis_nested_three_reml",
    "orthodont_factor_interaction_ml",
    "sleepstudy_missing_reml",
    "sleepstudy_factor_days_reml",
    "sleepstudy_offset_reml",
    "oxboys_ordered_factor_reml",
    "machines_sum_contrasts_reml",
]


def chunked(c: Case, frame: pd.DataFrame, chunk_rows: int, weights=None):
    source = FrameSource(frame, chunk_rows)
    design = ChunkedDesign(
        c.formula, source.columns, weights=weights, contrasts=c.reference.get("contrasts")
    )
    columns = design.needed
    surveys = list(source.map(design.survey, columns))
    total = surveys[0]
    for s in surveys[1:]:
        total = merge_surveys(total, s)
    design.fix(total)
    return design, source


def grams_from_chunks(design, source, order):
    total = None
    for chunk in source.map(design.encode, design.needed):
        y = chunk.y if chunk.offset is None else chunk.y - chunk.offset
        part = build_gram([chunk.blocks[i] for i in order], chunk.X, y, chunk.weights)
        total = part if total is None else add_grams(total, part)
    return total


PAIRS = [(name, rows) for name in CASES for rows in (13, 100_000)] + [
    ("sleepstudy_missing_reml", 1),  # one row per chunk
    ("machines_slash_reml", 1),
]


@pytest.mark.parametrize("name, chunk_rows", PAIRS)
def test_chunked_design_equals_the_in_memory_design(name, chunk_rows):
    c = case(name)
    frame = c.data()
    weights = None
    if c.weights(frame) is not None:
        frame = frame.assign(_w=c.weights(frame))
        weights = "_w"
    memory = build_design(
        c.formula, frame, weights=weights, contrasts=c.reference.get("contrasts")
    )
    design, source = chunked(c, frame, chunk_rows, weights)
    assert design.fixed_builder.column_names == memory.fixed_builder.column_names
    assert design.n_dropped == memory.n_dropped
    assert [list(map(str, lv)) for lv in design.levels] == [
        list(map(str, t.level_index)) for t in sorted(memory.terms, key=_spec_order(design))
    ]
    order = sorted(range(len(design.levels)), key=lambda k: -len(design.levels[k]))
    ours = grams_from_chunks(design, source, order)
    blocks = sorted(memory.terms, key=_spec_order(design))
    engine = [blocks[i].block for i in order]
    X_keep = memory.X
    full = build_gram(engine, memory.fixed_builder.build(memory.data), _y(memory), memory.weights)
    for a, b in zip(ours.diagonal, full.diagonal, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    for key in full.off_diagonal:
        np.testing.assert_allclose(
            ours.off_diagonal[key].toarray(), full.off_diagonal[key].toarray(), rtol=1e-10,
            atol=1e-9,
        )
    for a, b in zip(ours.xy_random, full.xy_random, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(ours.xy_xy, full.xy_xy, rtol=1e-10, atol=1e-8)
    assert X_keep.shape[0] == memory.n


def _y(design):
    return design.y if design.offset is None else design.y - design.offset


def _spec_order(design):
    specs = [str(s) for s in design.parsed.random]
    return lambda term: specs.index(str(term.spec))


def test_learned_transforms_are_refused_in_chunks():
    frame = pd.DataFrame({"y": np.arange(8.0), "x": np.arange(8.0), "g": list("aabbccdd")})
    design = ChunkedDesign("y ~ poly(x, 2) + (1 | g)", list(frame.columns))
    with pytest.raises(DataError, match="poly"):
        design.survey(frame)


@pytest.mark.parametrize(
    ("formula", "column", "kind"),
    [("Reaction ~ L + (1 | Subject)", "L", "list"), ("Reaction ~ Days + (1 | D)", "D", "dict")],
)
def test_unhashable_cells_out_of_core_are_the_in_memory_error(formula, column, kind):
    """Lists or dicts in a fixed-effect or grouping column, read chunk by chunk: the same
    DataError as in memory, naming the column and the cells' type (was a raw TypeError
    from pandas' factorize in pass 1)."""
    data = mm.datasets.load("sleepstudy").copy()
    data["L"] = [[i] for i in range(len(data))]
    data["D"] = [{"a": i} for i in range(len(data))]
    expected = f"column '{column}' holds {kind} cells"
    with pytest.raises(DataError, match=expected):
        mm.lmer(formula, data)
    with pytest.raises(DataError, match=expected):
        mm.lmer(formula, mm.FrameSource(data, 13))
