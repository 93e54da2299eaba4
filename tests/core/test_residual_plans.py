"""Which cross-product plan an AR(1)-type correlation uses, and that the choice does not
change the objective.

With continuous times (CAR(1)) nearly every row has its own gap to the previous one, so
the per-gap plan (three (levels, k, k) arrays per distinct gap) costs more than whitening
the rows: it is skipped when levels x distinct gaps exceed the rows (the rescheck review
found 3,000 rows in 300 groups taking 9.7 s and 469 MB with it, 0.1 s without).  The
objective without the plan must equal the objective with the plan forced (the same
likelihood written two ways; 1e-10 relative, rounding of sums in another order).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.residual import CAR1, BidiagonalPlan, make_layout
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.terms import RandomBlock

RNG = np.random.default_rng(12)


def _problem(times: np.ndarray, codes: np.ndarray, y: np.ndarray) -> ResidualProblem:
    n = codes.size
    X = np.column_stack([np.ones(n), times])
    layout = make_layout(codes, times, codes)
    blocks = [RandomBlock(codes, int(codes.max()) + 1, np.ones((n, 1)))]
    return ResidualProblem(blocks, X, y, layout, CAR1("t"), None, {}, True)


def _response(times: np.ndarray, codes: np.ndarray) -> np.ndarray:
    b = RNG.standard_normal(codes.max() + 1)
    return 1.0 + 0.3 * times + b[codes] + RNG.standard_normal(codes.size)


def _continuous(groups: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    codes = np.repeat(np.arange(groups), size)
    times = np.concatenate([np.cumsum(RNG.exponential(1.0, size)) for _ in range(groups)])
    return times, codes


def test_continuous_times_whiten_the_rows():
    times, codes = _continuous(40, 9)
    y = _response(times, codes)
    rp = _problem(times, codes, y)
    assert rp._plan() is None
    forced = _problem(times, codes, y)
    forced._plan_state = BidiagonalPlan(
        forced.layout,
        np.hstack([forced.sorted_blocks[0].z, forced.X, forced.y[:, None]]),
        forced._level_starts,
        forced.correlation,
    )
    for x in ([0.8, -1.0], [1.3, 0.4], [0.2, 2.0]):
        x = np.asarray(x)
        assert rp.objective(x) == pytest.approx(forced.objective(x), rel=1e-10)


def test_integer_times_keep_the_per_gap_plan():
    codes = np.repeat(np.arange(30), 8)
    times = np.tile(np.arange(8.0), 30)
    times[::5] += 20.0  # a few gaps of another length
    times = np.sort(times.reshape(30, 8), axis=1).ravel()
    rp = _problem(times, codes, _response(times, codes))
    assert isinstance(rp._plan(), BidiagonalPlan)
