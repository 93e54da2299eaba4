"""Fits from chunks (in-memory chunks, Parquet files, Dask partitions, a distributed
cluster) equal the in-memory fit on the same rows, for every Gaussian reference case.

What "equal" can mean was measured (issue 10).  The chunked problem is the in-memory
problem: the same objective function (1e-13 relative at any theta; the Gram differs by
summation order only), the same start (the moment start, computed from the cross products:
4e-13), the same engine path and the same optimizer settings.  BOBYQA's end point alone is
not a function of the data to 1e-8: it stops where the objective's decrease falls below
its tolerance, and its decisions near the optimum follow differences of 1e-15 in the
objective (up to 7e-5 apart in theta between chunked and in-memory fits, 1e-4 with the
rows merely reversed).  Every fit now ends with Newton steps on the profiled objective
(:mod:`mixedmodels.optim.polish`), which converge to the optimum itself, so the tests check

* the same function (at the start and at the in-memory optimum), the same start;
* the reported estimates: theta, fixef (relative to max(1, |b|)) and sigma within 1e-8,
  the objective within 1e-10 (relative), for every (case, chunking) pair;
* the same for the in-memory fit of the rows in reverse order, over the catalogue.

Theta is compared where the data identify it (a Hessian of full rank, by differences:
``(Sex | Subject)`` with Sex between subjects has a ridge, along which the polish does not
move); fixef, sigma and the objective always.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels import large
from mixedmodels.errors import DataError
from mixedmodels.large import fit_chunks
from mixedmodels.optim.derivatives import hessian_and_gradient
from mixedmodels.optim.reduced_start import reduced_moment_start
from mixedmodels.optim.start import moment_start
from tests.catalogue import case, gaussian_cases

FUNCTION_RTOL = 1e-10  # the same Gram up to summation order: 1e-13 measured
START_ATOL = 1e-10  # the start from cross products vs from rows: 4e-13 measured
# the reported estimates (after the Newton polish): theta, fixef (relative to max(1, |b|)),
# sigma; the objective relative (benchmarks/results/large_exactness.txt has the measured)
ESTIMATE_ATOL = 1e-8
OBJECTIVE_RTOL = 1e-10
IDENTIFIED_COND = 1e6  # a Hessian (by differences) better conditioned identifies theta
# learned from all rows at once: refused out of core (compute the column beforehand)
REFUSED = {
    "sleepstudy_poly_reml": "poly",
    "sleepstudy_scale_ml": "scale",
    "oxboys_centered_vector_reml": "mean",
}
CASES = [c.name for c in gaussian_cases()]


def _quiet(fitter, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter(*args, **kwargs)


def _frame_and_arguments(c) -> tuple[pd.DataFrame, dict]:
    frame = c.data()
    w = c.weights(frame)
    if w is not None:
        frame = frame.assign(_w=w)
    arguments = {
        "reml": c.reml,
        "weights": None if w is None else "_w",
        "contrasts": c.reference.get("contrasts"),
    }
    return frame, arguments


def _identified(problem, theta: np.ndarray) -> bool:
    """Whether the data identify theta at ``theta``: the Hessian (Richardson differences)
    over the coordinates not held at a bound of 0 has full rank."""
    lower = problem.theta_lower_bounds()
    free = ~((lower == 0) & (theta == 0))
    if not free.any():
        return True

    def f(x):
        full = theta.copy()
        full[free] = x
        return problem.objective(full)

    hessian, _ = hessian_and_gradient(f, theta[free])
    return bool(np.linalg.cond(hessian) < IDENTIFIED_COND)


def _same_estimates(other, memory, identified: bool = True) -> None:
    """The reported estimates of two fits of the same rows agree."""
    assert other.objective == pytest.approx(memory.objective, rel=OBJECTIVE_RTOL)
    b, b0 = other.fixef.to_numpy(), memory.fixef.to_numpy()
    np.testing.assert_array_less(np.abs(b - b0) / np.maximum(1.0, np.abs(b0)), ESTIMATE_ATOL)
    assert other.sigma == pytest.approx(memory.sigma, rel=ESTIMATE_ATOL)
    if identified:
        scale = np.maximum(1.0, np.abs(memory.theta))
        np.testing.assert_array_less(np.abs(other.theta - memory.theta) / scale, ESTIMATE_ATOL)


def _agree(chunked, memory, identified: bool = True) -> None:
    # the same function, at lme4's start and at the in-memory optimum
    for theta in (memory.problem.theta_start(), memory.theta):
        assert chunked.problem.objective(theta) == pytest.approx(
            memory.problem.objective(theta), rel=FUNCTION_RTOL
        )
    _same_estimates(chunked, memory, identified)
    assert chunked.nobs == memory.nobs and chunked.n_dropped == memory.n_dropped
    assert list(chunked.fixef.index) == list(memory.fixef.index)
    assert chunked.ngroups == memory.ngroups


@pytest.mark.parametrize("name", CASES)
def test_every_gaussian_case_out_of_core(name):
    c = case(name)
    frame, arguments = _frame_and_arguments(c)
    if name in REFUSED:
        with pytest.raises(DataError, match=REFUSED[name]):
            mm.lmer(c.formula, mm.FrameSource(frame, 13), **arguments)
        return
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    identified = _identified(memory.problem, memory.theta)
    for rows in (max(13, len(frame) // 7), len(frame)):
        source = mm.FrameSource(frame, rows)
        _, problem, sums = _quiet(fit_chunks, c.formula, source, **arguments)
        theta0, step0 = reduced_moment_start(problem, sums)
        theta1, step1 = moment_start(memory.problem)
        np.testing.assert_allclose(theta0, theta1, rtol=0, atol=START_ATOL)
        np.testing.assert_allclose(step0, step1, rtol=0, atol=START_ATOL)
        _agree(_quiet(mm.lmer, c.formula, source, **arguments), memory, identified)


@pytest.mark.parametrize("name", CASES)
def test_rows_reversed_in_memory_give_the_same_estimates(name):
    c = case(name)
    frame, arguments = _frame_and_arguments(c)
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    flipped = _quiet(mm.lmer, c.formula, frame.iloc[::-1], **arguments)
    _same_estimates(flipped, memory, _identified(memory.problem, memory.theta))


@pytest.mark.parametrize("name", ["dyestuff_reml", "sleepstudy_weighted_reml"])
def test_one_row_per_chunk(name):
    c = case(name)
    frame, arguments = _frame_and_arguments(c)
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    _agree(_quiet(mm.lmer, c.formula, mm.FrameSource(frame, 1), **arguments), memory)


def test_conditional_modes_and_variances_out_of_core():
    c = case("sleepstudy_slopes_reml")
    frame, arguments = _frame_and_arguments(c)
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    chunked = _quiet(mm.lmer, c.formula, mm.FrameSource(frame, 13), **arguments)
    # at the same theta the reduced problem gives the same modes and conditional sd
    same = chunked.problem.solve(memory.theta)
    for mine, theirs in zip(same.b, memory.problem.solve(memory.theta).b, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        chunked.ranef_table()["condsd"], memory.ranef_table()["condsd"], rtol=1e-5
    )


def test_parquet_files_give_the_in_memory_fit(tmp_path):
    c = case("penicillin_crossed_reml")
    frame, arguments = _frame_and_arguments(c)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part{i}.parquet")
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    _agree(_quiet(mm.lmer, c.formula, str(tmp_path), **arguments), memory)
    _agree(_quiet(mm.lmer, c.formula, str(tmp_path / "*.parquet"), **arguments), memory)


@pytest.mark.parametrize("name", ["sleepstudy_weighted_reml", "machines_slash_reml"])
def test_dask_dataframe_gives_the_in_memory_fit(name):
    dd = pytest.importorskip("dask.dataframe")
    c = case(name)
    frame, arguments = _frame_and_arguments(c)
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    lazy = dd.from_pandas(frame, npartitions=4)
    _agree(_quiet(mm.lmer, c.formula, lazy, **arguments), memory)


def test_a_distributed_cluster_of_two_worker_processes():
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    c = case("machines_slash_reml")
    frame, arguments = _frame_and_arguments(c)
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster):
        chunked = _quiet(mm.lmer, c.formula, dd.from_pandas(frame, npartitions=3), **arguments)
        fitted = chunked.fitted.compute()  # the further pass, on the workers
    _agree(chunked, memory)
    same_theta = _quiet(mm.lmer, c.formula, frame, start=chunked.theta, optimize=False, **arguments)
    np.testing.assert_allclose(fitted.to_numpy(), same_theta.fitted, rtol=1e-10)


def test_what_needs_the_rows_says_so():
    frame = mm.datasets.load("sleepstudy")
    fit = _quiet(mm.lmer, "Reaction ~ Days + (1|Subject)", mm.FrameSource(frame, 50))
    for what in ("X", "Z"):
        with pytest.raises(DataError, match=f"{what} needs the rows"):
            getattr(fit, what)
    with pytest.raises(DataError, match="Kenward-Roger"):
        fit.fixef_table(ddf="kenward-roger")
    assert "Scaled residuals" not in fit.summary()
    memory = _quiet(mm.lmer, "Reaction ~ Days + (1|Subject)", frame)
    new = frame.iloc[[3, 50, 100]]
    np.testing.assert_allclose(fit.predict(new), memory.predict(new), rtol=1e-8)


def test_learned_transforms_are_refused_with_a_reason():
    frame = mm.datasets.load("sleepstudy")
    with pytest.raises(DataError, match="scale"):
        mm.lmer("Reaction ~ scale(Days) + (1|Subject)", mm.FrameSource(frame, 50))
    with pytest.raises(DataError, match=r"'sd\(Days\)' in 'I\(Days/sd\(Days\)\)': sd\(\)"):
        mm.lmer("Reaction ~ I(Days / sd(Days)) + (1|Subject)", mm.FrameSource(frame, 50))


def test_the_refused_aggregates_are_the_interpreters():
    from mixedmodels.design.chunked import ROW_AGGREGATES
    from mixedmodels.design.evaluate import _AGGREGATE

    assert set(_AGGREGATE) == ROW_AGGREGATES


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


# ---------------------------------------------------------------------- row-level outputs
# Compared with the in-memory fit evaluated at the chunked fit's theta (optimize=False):
# the same estimates from the two Grams (1e-13), so fitted values agree to rounding
# (1e-13 absolute measured on values near 300); 1e-10 relative is stated.
ROW_RTOL = 1e-10
FORMULA = "Reaction ~ Days + (Days|Subject)"


def _sleepstudy_with_gaps() -> pd.DataFrame:
    frame = mm.datasets.load("sleepstudy").copy()
    frame.loc[[5, 77], "Reaction"] = np.nan  # dropped rows keep the others aligned
    return frame


def _at_same_theta(chunked, frame):
    return _quiet(mm.lmer, FORMULA, frame, start=chunked.theta, optimize=False)


def test_fitted_and_residuals_of_a_dask_frame_are_lazy_series():
    dd = pytest.importorskip("dask.dataframe")
    frame = _sleepstudy_with_gaps()
    chunked = _quiet(mm.lmer, FORMULA, dd.from_pandas(frame, npartitions=4))
    memory = _at_same_theta(chunked, frame)
    fitted, residuals = chunked.fitted, chunked.residuals
    assert isinstance(fitted, dd.Series) and isinstance(residuals, dd.Series)
    fitted, residuals = fitted.compute(), residuals.compute()
    assert list(fitted.index) == [i for i in frame.index if i not in (5, 77)]
    np.testing.assert_allclose(fitted.to_numpy(), memory.fitted, rtol=ROW_RTOL)
    np.testing.assert_allclose(residuals.to_numpy(), memory.residuals, rtol=ROW_RTOL, atol=1e-10)
    new = frame.iloc[::3].assign(Days=lambda f: f.Days + 0.5)
    predicted = chunked.predict(dd.from_pandas(new, npartitions=3))
    assert isinstance(predicted, dd.Series)
    np.testing.assert_allclose(predicted.compute().to_numpy(), memory.predict(new), rtol=ROW_RTOL)


def test_parquet_row_outputs_are_written_to_parquet(tmp_path):
    frame = _sleepstudy_with_gaps()
    folder = tmp_path / "data"
    folder.mkdir()
    frame.iloc[:100].to_parquet(folder / "a.parquet")
    frame.iloc[100:].to_parquet(folder / "b.parquet")
    chunked = _quiet(mm.lmer, FORMULA, str(folder))
    memory = _at_same_theta(chunked, frame)
    with pytest.raises(DataError, match=r"write_fitted\("):
        _ = chunked.fitted
    written = pd.read_parquet(chunked.write_fitted(tmp_path / "fitted.parquet"))
    assert list(written.columns) == ["row", "fitted", "residuals"]
    assert written["row"].tolist() == [i for i in range(len(frame)) if i not in (5, 77)]
    np.testing.assert_allclose(written["fitted"], memory.fitted, rtol=ROW_RTOL)
    np.testing.assert_allclose(written["residuals"], memory.residuals, rtol=ROW_RTOL, atol=1e-10)
    with pytest.raises(mm.errors.ArgumentError, match="out="):
        chunked.predict(str(folder))
    out = chunked.predict(str(folder), out=tmp_path / "predicted.parquet")
    predicted = pd.read_parquet(out)
    assert predicted["row"].tolist() == list(range(len(frame)))
    np.testing.assert_allclose(predicted["predicted"], memory.predict(frame), rtol=ROW_RTOL)


def test_row_outputs_of_chunks_in_memory_are_arrays():
    frame = _sleepstudy_with_gaps()
    chunked = _quiet(mm.lmer, FORMULA, mm.FrameSource(frame, 17))
    memory = _at_same_theta(chunked, frame)
    np.testing.assert_allclose(chunked.fitted, memory.fitted, rtol=ROW_RTOL)
    np.testing.assert_allclose(chunked.residuals, memory.residuals, rtol=ROW_RTOL, atol=1e-10)
    np.testing.assert_allclose(chunked.predict(), memory.fitted, rtol=ROW_RTOL)


def test_parquet_dictionaries_read_as_plain_strings_give_the_in_memory_fit(
    tmp_path, monkeypatch
):
    # every dictionary column read as plain strings and coded through dictionaries decoded
    # once (design.sources._Dictionaries); each file's categoricals with another category
    # order (other dictionaries), missing values in the grouping columns (rows dropped and
    # counted); the reference is the in-memory fit of the same rows
    from mixedmodels.design import sources

    monkeypatch.setattr(sources, "PLAIN_READ_BYTES_PER_ROW", 0.0)
    coded = []
    original = sources._Dictionaries.coded

    def counted(self, *args):
        coded.append(args[3])
        return original(self, *args)

    monkeypatch.setattr(sources._Dictionaries, "coded", counted)
    c = case("penicillin_crossed_reml")
    frame, arguments = _frame_and_arguments(c)
    frame = frame.astype({"plate": str, "sample": str})
    frame.loc[[3, 50, 51], "plate"] = None
    frame.loc[[7, 100], "sample"] = None
    rng = np.random.default_rng(2)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        piece = frame.iloc[part].copy()
        for name in ("plate", "sample"):
            levels = sorted(frame[name].dropna().unique())
            piece[name] = pd.Categorical(piece[name], categories=rng.permutation(levels))
        piece.to_parquet(tmp_path / f"part{i}.parquet", row_group_size=60)
    memory = _quiet(mm.lmer, c.formula, frame, **arguments)
    chunked = _quiet(mm.lmer, c.formula, str(tmp_path), **arguments)
    _agree(chunked, memory)
    assert chunked.n_dropped == 5
    assert sorted(set(coded)) == ["plate", "sample"]  # read as plain strings


def _strong_covariate_frame() -> pd.DataFrame:
    # a response far from zero, 99.9998% of its variance explained by the fixed effects:
    # sums of squares of the unshifted response would cancel to 1e-6 of themselves
    rng = np.random.default_rng(5)
    n = 600
    g = rng.integers(0, 30, n)
    x = rng.normal(0.0, 10.0, n)
    y = 1e4 + 50.0 * x + rng.normal(0.0, 1.0, 30)[g] + rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"y": y, "x": x, "x2": 2.0 * x, "g": g.astype(str)})


@pytest.mark.parametrize(("chunk_rows", "first_rows"), [(1, 10_000), (7, 10_000), (600, 10_000),
                                                     (1, 1), (60, 1)])
def test_one_pass_for_the_cross_products_gives_the_in_memory_fit(
    chunk_rows, first_rows, monkeypatch
):
    # the sources that map in order here make passes 2 and 3 one (large._reshifted): the
    # Gram of the response shifted by the fit to the first rows (first_rows at least),
    # moved to the final shift afterwards; x2 = 2 x is dropped (rank), REML and ML.  A
    # first shift from one row would cancel the response's sums (1e-8 measured): pass 3
    # runs then.  The in-memory fit is the reference
    monkeypatch.setattr(large, "FIRST_SHIFT_ROWS", first_rows)
    frame = _strong_covariate_frame()
    for formula, reml in (("y ~ x + (1 | g)", True), ("y ~ x + x2 + (x | g)", False)):
        memory = _quiet(mm.lmer, formula, frame, reml=reml)
        source = mm.FrameSource(frame, chunk_rows)
        labels = []
        passes = large._passes

        def recording(src, progress, labels=labels, passes=passes):
            run = passes(src, progress)

            def each(function, columns, label):
                labels.append(label)
                yield from run(function, columns, label)

            return each

        large._passes = recording
        try:
            chunked = _quiet(mm.lmer, formula, source, reml=reml)
        finally:
            large._passes = passes
        one_pass = ["pass 1/3 (levels)", "pass 2/2 (cross products)"]
        if chunk_rows == 1 and first_rows == 1:
            assert labels == [*one_pass, "pass 3/3 (cross products)"]
        elif chunk_rows >= 60:  # a first shift from 60 rows or more
            assert labels == one_pass
        _agree(chunked, memory)
