"""Whole fits through the scatter fill kernel on model shapes the kernel tests do not cover.

References, each independent of the scatter kernel:

* the blocked sparse engine (the crossed path switched off): the same objective function
  by other sums, so at one theta the two agree to rounding (1e-12 relative), and the
  estimates of the two fits agree to the issue's exactness goal (objective 1e-10
  relative, theta and fixef (relative to max(1, |b|)) 1e-8; measured in this review at
  most 2.2e-10 for theta, 1.6e-10 for fixef);
* the map kernel forced on the crossed path (same tolerances; measured 1.5e-10);
* the in-memory fit, for chunked and Parquet fits (same tolerances; measured 5.6e-10).

The kernel's split of the rows of ``F`` among threads and into cache blocks does not change
which products are added to an entry nor their order (levels in order), so fits with any
split are bitwise identical.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.core import crossed as crossed_module
from mixedmodels.core import lmm as lmm_module
from mixedmodels.linalg import fillin

pytestmark = pytest.mark.skipif(not fillin.numba_available(), reason="needs numba (fast extra)")

OBJECTIVE_RTOL = 1e-10
ESTIMATE_ATOL = 1e-8
FUNCTION_RTOL = 1e-12


def simulated(seed: int = 1, n_subjects: int = 250, n_items: int = 30, rows: int = 1500):
    """Crossed subjects x items (and 7 sites), unbalanced, rows shuffled, with x and z
    slopes by subject and an x slope by item; positive weights."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_subjects, rows)
    item = rng.integers(0, n_items, rows)
    site = rng.integers(0, 7, rows)
    x, z = rng.normal(size=rows), rng.normal(size=rows)
    bs = rng.normal(size=(n_subjects, 4)) * [1.0, 0.5, 0.4, 0.3]
    bi = rng.normal(size=(n_items, 2)) * [0.7, 0.3]
    y = (
        1
        + 0.5 * x
        - 0.3 * z
        + bs[s, 0]
        + bs[s, 1] * x
        + bs[s, 2] * z
        + bs[s, 3] * x * z
        + bi[item, 0]
        + bi[item, 1] * x
        + 0.4 * rng.normal(size=7)[site]
        + rng.normal(size=rows)
    )
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "z": z,
            "s": [f"s{v}" for v in s],
            "item": [f"i{v}" for v in item],
            "site": [f"t{v}" for v in site],
            "w": rng.uniform(0.3, 3.0, rows),
        }
    )


def single_row_levels() -> pd.DataFrame:
    """100 subjects with ~15 rows each and 200 subjects of one row, shuffled."""
    many = simulated(3, n_subjects=100, rows=1500)
    solo = simulated(4, n_subjects=1, rows=200).assign(s=[f"solo{k}" for k in range(200)])
    both = pd.concat([many, solo], ignore_index=True)
    return both.sample(frac=1.0, random_state=2).reset_index(drop=True)


def empty_panels() -> pd.DataFrame:
    """With ``(1 | s) + (0 + x | item)``, subjects whose x is 0 meet no rest column:
    their columns of A are empty (or explicit zeros)."""
    frame = simulated(5)
    frame.loc[frame.s.isin(["s1", "s2", "s3"]), "x"] = 0.0
    return frame


def split_patterns() -> pd.DataFrame:
    """x is 0 on every row of one (subject, item) cell and of one subject: the slope's
    column of A lacks entries its intercept's has (no common row pattern per level)."""
    frame = simulated(6)
    frame.loc[(frame.s == "s1") & (frame.item == "i3"), "x"] = 0.0
    frame.loc[frame.s == "s2", "x"] = 0.0
    return frame


MODELS = {
    "p1": ("y ~ x + (1|s) + (1|item)", {}, simulated),
    "p3": ("y ~ x + z + (x + z|s) + (1|item)", {}, simulated),
    "p4": ("y ~ x * z + (x * z|s) + (1|item)", {}, simulated),
    "two_rest_terms": ("y ~ x + (1|s) + (1|item) + (1|site)", {}, simulated),
    "rest_slope": ("y ~ x + (1|s) + (x|item)", {}, simulated),
    "weights_p3": ("y ~ x + z + (x + z|s) + (1|item)", {"weights": "w"}, simulated),
    "amalgamated": ("y ~ x + (1|s) + (0 + x|s) + (1|item)", {}, simulated),
    "zerocorr_ml": ("y ~ x + (x || s) + (1|item)", {"reml": False}, simulated),
    "single_row_levels": ("y ~ x + (x|s) + (1|item)", {}, single_row_levels),
    "empty_panels": ("y ~ x + (1|s) + (0 + x|item)", {}, empty_panels),
    "split_patterns": ("y ~ x + (x|s) + (1|item)", {"weights": "w"}, split_patterns),
}


def fit(formula, data, **arguments):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, **arguments)


def force_kernel(monkeypatch, kind: str | None) -> list:
    """Every CrossedObjective built from now on uses the fill kernel ``kind``; returns the
    list of the kernels built."""
    original = crossed_module.CrossedObjective.__init__
    built: list = []

    def init(self, *args, kind=None, **kwargs):
        original(self, *args, kind=forced, **kwargs)
        built.append(self.fill.kind if self.fill is not None else None)

    forced = kind
    monkeypatch.setattr(crossed_module.CrossedObjective, "__init__", init)
    return built


def assert_same_fit(fit_a, fit_b) -> None:
    assert fit_a.objective == pytest.approx(fit_b.objective, rel=OBJECTIVE_RTOL, abs=0)
    np.testing.assert_allclose(fit_a.theta, fit_b.theta, rtol=0, atol=ESTIMATE_ATOL)
    b = fit_b.fixef.to_numpy()
    np.testing.assert_array_less(
        np.abs(fit_a.fixef.to_numpy() - b) / np.maximum(1.0, np.abs(b)), ESTIMATE_ATOL
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_scatter_fit_equals_the_blocked_engine_and_the_map_kernel(monkeypatch, name):
    formula, arguments, make = MODELS[name]
    frame = make()
    built = force_kernel(monkeypatch, "scatter")
    scatter = fit(formula, frame, **arguments)
    assert built and set(built) == {"scatter"}
    assert scatter.problem.crossed_objective().fill.kind == "scatter"
    force_kernel(monkeypatch, "map")
    mapped = fit(formula, frame, **arguments)
    monkeypatch.setattr(lmm_module, "choose_order", lambda blocks: None)
    blocked = fit(formula, frame, **arguments)
    assert blocked.problem.crossed_objective() is None
    for theta in (scatter.problem.theta_start(), scatter.theta):
        assert scatter.problem.objective(theta) == pytest.approx(
            blocked.problem.objective(theta), rel=FUNCTION_RTOL, abs=0
        )
    assert_same_fit(scatter, blocked)
    assert_same_fit(scatter, mapped)


@pytest.mark.parametrize("name", ["p1", "weights_p3", "empty_panels"])
def test_kept_fills_over_a_whole_fit_give_the_uncached_estimates(monkeypatch, name):
    """The fill cache on (every fill kept, not only those of 10M products): some points of
    the fit reuse a fill, and the estimates equal the uncached fit's (the cached fill is
    scaled after the kernel, not inside it: rounding apart; measured 1e-10 in theta)."""
    formula, arguments, make = MODELS[name]
    frame = make()
    force_kernel(monkeypatch, "scatter")
    uncached = fit(formula, frame, **arguments)
    assert uncached.problem.crossed_objective()._fill_cache is None
    monkeypatch.setattr(crossed_module, "FILL_CACHE_PRODUCTS", 0)
    hits = []
    original = crossed_module.CrossedObjective._cached_fill

    def counted(self, r, key):
        hits.append(key in self._fill_cache)
        return original(self, r, key)

    monkeypatch.setattr(crossed_module.CrossedObjective, "_cached_fill", counted)
    cached = fit(formula, frame, **arguments)
    assert any(hits) and not all(hits)
    assert_same_fit(cached, uncached)


@pytest.mark.parametrize("name", ["p1", "p3", "rest_slope"])
def test_any_split_of_the_rows_gives_bitwise_the_same_fit(monkeypatch, name):
    formula, arguments, make = MODELS[name]
    frame = make()
    force_kernel(monkeypatch, "scatter")
    fits = []
    for threads, block_bytes in ((1, 2**24), (2, 2**24), (2, 64), (3, 800)):
        monkeypatch.setattr(fillin, "scatter_threads", lambda products, t=threads: t)
        monkeypatch.setattr(fillin, "SCATTER_BLOCK_BYTES", block_bytes)
        fits.append(fit(formula, frame, **arguments))
        assert fits[-1].problem.crossed_objective().fill.threads == threads
    for other in fits[1:]:
        assert other.objective == fits[0].objective
        np.testing.assert_array_equal(other.theta, fits[0].theta)
        np.testing.assert_array_equal(other.fixef.to_numpy(), fits[0].fixef.to_numpy())


@pytest.mark.parametrize("name", ["p1", "p3", "two_rest_terms", "rest_slope", "empty_panels"])
def test_chunked_and_parquet_fits_equal_the_in_memory_fit(monkeypatch, tmp_path, name):
    """Out of core the Gram holds ``Z_R' W Z_0`` as CSC and the kernel reads it in place
    (one rest term); chunks of a frame, one Parquet file, and a directory of three files
    with dictionary-encoded factors read in batches of 211 rows give the in-memory fit
    (the issue's exactness goal)."""
    pytest.importorskip("pyarrow")
    formula, arguments, make = MODELS[name]
    frame = make()
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path)
    folder = tmp_path / "parts"
    folder.mkdir()
    coded = frame.astype({"s": "category", "item": "category", "site": "category"})
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        coded.iloc[rows].to_parquet(folder / f"part{k}.parquet")
    built = force_kernel(monkeypatch, "scatter")
    memory = fit(formula, frame, **arguments)
    for source in (mm.FrameSource(frame, 377), str(path), mm.ParquetSource(folder, 211)):
        built.clear()
        chunked = fit(formula, source, **arguments)
        assert built == ["scatter"]
        crossed = chunked.problem.crossed_objective()
        if name != "two_rest_terms":  # one rest term: the Gram's own block, not a copy
            assert any(crossed.a is block for block in chunked.problem.gram.off_diagonal.values())
        assert chunked.problem.objective(memory.theta) == pytest.approx(
            memory.problem.objective(memory.theta), rel=FUNCTION_RTOL, abs=0
        )
        assert_same_fit(chunked, memory)


def test_without_numba_the_other_kernels_give_the_same_fit(monkeypatch):
    formula, arguments, make = MODELS["p3"]
    frame = make()
    force_kernel(monkeypatch, "scatter")
    scatter = fit(formula, frame, **arguments)
    built = force_kernel(monkeypatch, None)
    monkeypatch.setattr(fillin, "numba_available", lambda: False)
    other = fit(formula, frame, **arguments)
    assert built and "scatter" not in built and None not in built
    assert_same_fit(other, scatter)


def test_a_numba_that_fails_to_load_leaves_the_fit_to_the_other_kernels(monkeypatch):
    """numba installed but failing at import (a numpy it does not support) made a fit whose
    cost model chose the scatter kernel die with an ImportError; now the fit warns once
    and takes the next kernel, with the same estimates."""
    import sys

    import mixedmodels.linalg as linalg_package
    from mixedmodels.errors import MixedModelsWarning

    formula, arguments, make = MODELS["p3"]
    frame = make()
    monkeypatch.setattr(fillin, "MAX_STORED_ENTRIES", 0)  # only scatter within the cap
    built = force_kernel(monkeypatch, None)
    scatter = fit(formula, frame, **arguments)
    assert built[0] == "scatter"
    monkeypatch.setattr(fillin, "MAX_STORED_ENTRIES", 10**9)
    monkeypatch.setattr(fillin, "SCATTER_PER_PRODUCT", 0.0)  # scatter stays the cheapest
    monkeypatch.setattr(fillin, "SCATTER_LOAD", 0.0)
    monkeypatch.setattr(fillin.SCATTER_KERNELS, "failure", None)
    monkeypatch.setattr(fillin.SCATTER_KERNELS, "_module", None)
    monkeypatch.delattr(linalg_package, "scatter_kernels", raising=False)
    monkeypatch.setitem(sys.modules, "mixedmodels.linalg.scatter_kernels", None)
    built.clear()
    with pytest.warns(MixedModelsWarning, match="numba failed to load"):
        other = mm.lmer(formula, frame, **arguments)
    assert built and built[0] not in ("scatter", None)
    assert_same_fit(other, scatter)


LME4_CROSSED = [
    "penicillin_crossed_reml",
    "penicillin_crossed_ml",
    "arabidopsis_crossed_factor_slopes_reml",
    "grouseticks_crossed_year_reml",
    "machines_interaction_reml",
    "oxboys_crossed_slopes_reml",
    "pastes_two_terms_reml",
    "mathachieve_nested_slopes_ml",
]


@pytest.mark.parametrize("name", LME4_CROSSED)
def test_reference_cases_through_the_scatter_kernel_match_lme4(monkeypatch, name):
    """The catalogue's crossed cases (lme4's numbers from tests/reference, made by its R
    scripts), small enough for the dense path, forced onto the crossed path with the
    scatter kernel: logLik and fixef within test_lme4_agreement's tolerances (1e-6 and
    1e-4 relative; ours not below lme4's optimum by more than 1e-6 relative), and the
    objective equals the default path's fit (1e-10 relative; measured 1.7e-14)."""
    from tests.catalogue import case

    c = case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = c.fit()
    monkeypatch.setattr(lmm_module, "MAX_DENSE_RANDOM_EFFECTS", 0)
    built = force_kernel(monkeypatch, "scatter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scatter = c.fit()
    assert built and set(built) == {"scatter"}
    assert scatter.problem.crossed_objective().fill.kind == "scatter"
    ref = c.reference
    assert scatter.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert scatter.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    np.testing.assert_allclose(scatter.fixef.to_numpy(), ref["fixef"], rtol=1e-4, atol=1e-8)
    assert scatter.objective == pytest.approx(default.objective, rel=OBJECTIVE_RTOL, abs=0)
