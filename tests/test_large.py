"""Fits from chunks (in-memory chunks, Parquet files, Dask partitions, a distributed
cluster) equal the in-memory fit on the same rows: the same Gram up to rounding, hence the
same objective; estimates agree to the optimizer's precision (the same start, lme4's, for
both: a path of BOBYQA steps turns rounding of 1e-15 into differences of ~1e-8 in theta)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import DataError
from tests.catalogue import case

CASES = [
    "sleepstudy_slopes_reml",
    "sleepstudy_intercepts_ml",
    "penicillin_crossed_ml",
    "machines_slash_reml",
    "cake_interaction_grouping_reml",
    "orthodont_factor_interaction_ml",
    "sleepstudy_missing_reml",
    "sleepstudy_weighted_reml",
    "sleepstudy_offset_reml",
    "oxboys_ordered_factor_reml",
    "arabidopsis_nested_three_reml",
]
OBJECTIVE_RTOL = 1e-10  # the same Gram up to summation order: ~1e-13 measured
# BOBYQA's stopping precision: the same start and a function equal to 1e-13 still end
# up to 1e-5 apart (relative) in a flat direction of theta (orthodont ML, measured)
ESTIMATE_RTOL = 1e-4


def _quiet(fitter, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter(*args, **kwargs)


def _frame_and_weights(c):
    frame = c.data()
    w = c.weights(frame)
    if w is None:
        return frame, None
    return frame.assign(_w=w), "_w"


def _agree(chunked, memory):
    # the same function: the chunked objective at the in-memory optimum
    at_memory = chunked.problem.objective(memory.theta)
    assert at_memory == pytest.approx(memory.objective, rel=OBJECTIVE_RTOL)
    assert chunked.objective == pytest.approx(memory.objective, rel=OBJECTIVE_RTOL)
    np.testing.assert_allclose(chunked.theta, memory.theta, rtol=ESTIMATE_RTOL, atol=1e-5)
    np.testing.assert_allclose(chunked.fixef, memory.fixef, rtol=ESTIMATE_RTOL, atol=1e-5)
    np.testing.assert_allclose(chunked.sigma, memory.sigma, rtol=ESTIMATE_RTOL)
    assert chunked.nobs == memory.nobs and chunked.n_dropped == memory.n_dropped
    assert list(chunked.fixef.index) == list(memory.fixef.index)
    assert chunked.ngroups == memory.ngroups


@pytest.mark.parametrize("name", CASES)
def test_chunks_give_the_in_memory_fit(name):
    c = case(name)
    frame, weights = _frame_and_weights(c)
    reml = c.reml
    memory = _quiet(mm.lmer, c.formula, frame, reml=reml, weights=weights, start="lme4")
    for rows in (13, len(frame)):
        source = mm.FrameSource(frame, rows)
        chunked = _quiet(mm.lmer, c.formula, source, reml=reml, weights=weights)
        _agree(chunked, memory)
    np.testing.assert_allclose(
        chunked.ranef_table()["condsd"], memory.ranef_table()["condsd"], rtol=1e-5
    )


def test_one_row_per_chunk():
    c = case("sleepstudy_missing_reml")
    frame = c.data()
    memory = _quiet(mm.lmer, c.formula, frame, start="lme4")
    _agree(_quiet(mm.lmer, c.formula, mm.FrameSource(frame, 1)), memory)


def test_parquet_files_give_the_in_memory_fit(tmp_path):
    frame = mm.datasets.load("Penicillin")
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part{i}.parquet")
    formula = "diameter ~ 1 + (1|plate) + (1|sample)"
    memory = _quiet(mm.lmer, formula, frame, start="lme4")
    _agree(_quiet(mm.lmer, formula, str(tmp_path)), memory)
    _agree(_quiet(mm.lmer, formula, str(tmp_path / "*.parquet")), memory)


def test_dask_dataframe_gives_the_in_memory_fit():
    dd = pytest.importorskip("dask.dataframe")
    frame = mm.datasets.load("sleepstudy")
    memory = _quiet(mm.lmer, "Reaction ~ Days + (Days|Subject)", frame, start="lme4")
    lazy = dd.from_pandas(frame, npartitions=4)
    _agree(_quiet(mm.lmer, "Reaction ~ Days + (Days|Subject)", lazy), memory)


def test_a_distributed_cluster_of_two_worker_processes():
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    frame = mm.datasets.load("Machines")
    formula = "score ~ Machine + (1|Worker) + (1|Worker:Machine)"
    memory = _quiet(mm.lmer, formula, frame, start="lme4")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        chunked = _quiet(mm.lmer, formula, dd.from_pandas(frame, npartitions=3))
    _agree(chunked, memory)


def test_what_needs_the_rows_says_so():
    frame = mm.datasets.load("sleepstudy")
    fit = _quiet(mm.lmer, "Reaction ~ Days + (1|Subject)", mm.FrameSource(frame, 50))
    for what in ("fitted", "residuals", "X", "Z"):
        with pytest.raises(DataError, match=f"{what} needs the rows"):
            getattr(fit, what)
    with pytest.raises(DataError, match="Kenward-Roger"):
        fit.fixef_table(ddf="kenward-roger")
    assert "Scaled residuals" not in fit.summary()
    memory = _quiet(mm.lmer, "Reaction ~ Days + (1|Subject)", frame, start="lme4")
    new = frame.iloc[[3, 50, 100]]
    np.testing.assert_allclose(fit.predict(new), memory.predict(new), rtol=1e-8)


def test_learned_transforms_are_refused_with_a_reason():
    frame = mm.datasets.load("sleepstudy")
    with pytest.raises(DataError, match="scale"):
        mm.lmer("Reaction ~ scale(Days) + (1|Subject)", mm.FrameSource(frame, 50))


def test_weights_must_name_a_column_out_of_core():
    frame = mm.datasets.load("sleepstudy")
    with pytest.raises(DataError, match="weights must name a column"):
        mm.lmer("Reaction ~ Days + (1|Subject)", mm.FrameSource(frame, 50), weights=np.ones(180))


def test_infinite_values_are_named_out_of_core():
    frame = mm.datasets.load("sleepstudy").assign(x=1.0)
    frame.loc[7, "x"] = np.inf
    with pytest.raises(DataError, match="'x'"):
        mm.lmer("Reaction ~ x + (1|Subject)", mm.FrameSource(frame, 50))


def test_missing_parquet_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no Parquet files"):
        mm.lmer("y ~ 1 + (1|g)", str(tmp_path / "nothing*.parquet"))


def test_frame_is_not_modified():
    frame = mm.datasets.load("sleepstudy")
    before = frame.copy()
    _quiet(mm.lmer, "Reaction ~ Days + (Days|Subject)", mm.FrameSource(frame, 17))
    pd.testing.assert_frame_equal(frame, before)


def test_dates_in_the_model_are_named_out_of_core():
    frame = mm.datasets.load("sleepstudy").assign(when=pd.Timestamp("2020-01-01"))
    with pytest.raises(DataError, match="'when'"):
        mm.lmer("Reaction ~ when + (1|Subject)", mm.FrameSource(frame, 50))
