"""Which cross-product plan an AR(1)-type correlation uses, and that the choice does not
change the objective.

With continuous times (CAR(1)) nearly every row has its own gap to the previous one, so
the per-gap plan (three (levels, k, k) arrays per distinct gap) costs more than whitening
the rows: it is skipped when levels x distinct gaps exceed the rows (the rescheck review
found 3,000 rows in 300 groups taking 9.7 s and 469 MB with it, 0.1 s without).  The
objective without the plan must equal the objective with the plan forced (the same
likelihood written two ways; 1e-10 relative, rounding of sums in another order).

Several nested terms (``(1 | a/b)`` with the correlation within ``a:b``) take the
whitened rows' cross products from the structure's plan over the dense ``[Z X y]``
instead of whitening the rows and building a problem at each evaluation (nested_ar1 of
the rescheck review: 157-181 ms CPU per fit, 4x nlme's 42 ms; 29-35 ms with it): the
objective must be the whitened problem's (1e-10 relative).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.residual import AR1, ARMA, CAR1, BidiagonalPlan, CompoundSymmetry, make_layout
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.core.variance_functions import Fixed

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


def _nested(correlation, variance=None, values=None) -> ResidualProblem:
    a = np.repeat(np.arange(8), 18)  # 8 outer levels, 3 inner levels of 6 rows each
    ab = np.repeat(np.arange(24), 6)
    n = a.size
    x = RNG.standard_normal(n)
    X = np.column_stack([np.ones(n), x])
    y = 1 + 0.5 * x + RNG.standard_normal(8)[a] + RNG.standard_normal(24)[ab] + RNG.normal(size=n)
    blocks = [RandomBlock(ab, 24, np.ones((n, 1))), RandomBlock(a, 8, np.ones((n, 1)))]
    layout = make_layout(ab, None, None)
    return ResidualProblem(blocks, X, y, layout, correlation, variance, values or {}, True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _nested(AR1()),
        lambda: _nested(CompoundSymmetry()),
        lambda: _nested(ARMA(p=1, q=1)),
        lambda: _nested(AR1(), Fixed("w"), {"w": np.linspace(0.5, 2.0, 144)}),
    ],
)
def test_nested_terms_dense_plan_equals_the_whitened_problem(make):
    # several (nested) terms: the whitened rows' cross products from the structure's plan
    # over the dense [Z X y], against whitening the rows and building the problem
    rp = make()
    if isinstance(rp.correlation, CompoundSymmetry):
        rp.correlation.bind_size(rp.layout.max_size)
    for x in ([0.8, 1.1, 0.3], [1.5, 0.2, -0.6], [0.3, 2.0, 1.2]):
        x = np.asarray(x + [0.1] * (rp.n_cor - 1))
        theta, u_cor, u_var = rp.split(x)
        problem, log_det = rp.problem_at(u_cor, u_var)
        assert rp.objective(x) == pytest.approx(problem.objective(theta) + log_det, rel=1e-10)
    assert rp._dense_plan() is not None
