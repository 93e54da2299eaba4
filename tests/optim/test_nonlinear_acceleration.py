"""The alternation's secant extrapolation (optim.nonlinear.SecantAcceleration) on linear
maps with a known fixed point, its safeguards, and the fits that use it against the fixed
point the alternation reaches when run far tighter than its defaults."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
import mixedmodels.optim.nonlinear as onl
from tests.reference.nlme.cases import arguments, reference

FIXED = np.array([4.0, 2.5, 0.8])


def _linear_map(rates, directions):
    """``G(x) = x* + J (x - x*)`` with ``J = sum_k rate_k d_k d_k'`` (orthonormal ``d_k``):
    the fixed point ``x*`` is known in closed form."""
    jac = sum(r * np.outer(d, d) for r, d in zip(rates, directions, strict=True))
    return lambda x: FIXED + jac @ (x - FIXED)


def _run(fun, x0, lower=None, steps=2):
    """Alternations of ``fun`` with the extrapolation; the points evaluated."""
    acc = onl.SecantAcceleration(np.zeros(3) if lower is None else lower)
    x = np.asarray(x0, dtype=float)
    points, flags = [x], []
    for _ in range(steps):
        x = acc.next(x, fun(x))
        points.append(x)
        flags.append(acc.extrapolated)
    return points, flags


E1 = np.array([1.0, 0.0, 0.0])
E2 = np.array([0.0, 1.0, 0.0])


@pytest.mark.parametrize("rate", [0.1, 0.3, -0.2, -0.45])
def test_one_direction_lands_on_the_fixed_point(rate):
    """Along one direction ``f_k = r f_k-1``: Aitken's step from the second alternation
    is the fixed point itself (to rounding)."""
    fun = _linear_map([rate], [np.array([0.6, 0.8, 0.0])])
    start = FIXED + 0.02 * np.array([0.6, 0.8, 0.0])
    points, flags = _run(fun, start)
    assert flags == [False, True]
    np.testing.assert_allclose(points[-1], FIXED, rtol=0, atol=1e-13)


def test_plain_steps_where_the_model_does_not_hold():
    """Residuals in two directions with different rates (not aligned), a rate of 0.6
    (above 0.5), a residual above ACCELERATE_BELOW and one below ACCELERATE_ABOVE: the
    plain step G(x), bitwise."""
    cases = [
        (_linear_map([0.1, -0.3], [E1, E2]), FIXED + np.array([0.01, 0.01, 0.0])),
        (_linear_map([0.6], [E1]), FIXED + 0.02 * E1),
        (_linear_map([0.1], [E1]), FIXED + 10.0 * E1),
        (_linear_map([0.1], [E1]), FIXED + 1e-5 * E1),
    ]
    for fun, start in cases:
        points, flags = _run(fun, start)
        assert flags == [False, False]
        assert np.array_equal(points[-1], fun(points[-2]))


def test_bounds():
    """A parameter within BOUNDARY of its lower bound that is not pinned there: the plain
    step (the same map without the bound is extrapolated).  One that stays on its bound in
    all four points: extrapolated as the others (and stays on it)."""
    jac = 0.1 * np.outer(E1, E1)
    near = np.array([4.0, 3e-5, 0.8])  # within BOUNDARY (1e-4) of 0, not on it

    def close(x):
        return near + jac @ (x - near)

    for lower, extrapolated in ((np.array([0.0, 0.0, -np.inf]), False),
                                (np.full(3, -np.inf), True)):
        _, flags = _run(close, near + 0.02 * E1, lower=lower)
        assert flags == [False, extrapolated]
    pinned = np.array([4.0, 0.0, 0.8])

    def on_bound(x):
        return pinned + jac @ (x - pinned)

    points, flags = _run(on_bound, pinned + 0.02 * E1, lower=np.array([0.0, 0.0, -np.inf]))
    assert flags == [False, True]
    np.testing.assert_allclose(points[-1], pinned, rtol=0, atol=1e-13)
    assert points[-1][1] == 0.0


@pytest.fixture(scope="module")
def tight():
    """The reference cases run to the alternation's fixed point far tighter than the
    defaults: every LME step Newton to a predicted gain of 1e-18 with fresh Hessians, the
    alternation to 1e-11, no extrapolation."""
    ref = reference()
    original = onl.newton_gradient

    def newton(fun, x, lower, iterations=30, cache=None, stop=1e-10):
        return original(fun, x, lower, iterations=60, cache=None, stop=1e-18)

    out = {}
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(onl, "newton_gradient", newton)
        mp.setattr(onl.SecantAcceleration, "ALIGNED", np.inf)
        for case in ("orange_two_diag", "co2", "theoph"):
            data, kw = arguments(case, ref)
            out[case] = mm.nlme(data=data, **kw, tolerance=1e-11, max_iter=200)
    return out


@pytest.mark.parametrize("case, alternations", [("orange_two_diag", 5), ("co2", 6),
                                                ("theoph", 7)])
def test_fits_reach_the_tight_fixed_point(tight, case, alternations):
    """With the extrapolation and the stop where the LME step stays put, the estimates
    are within what the LME step's own stop allows of the tight fixed point: a predicted
    gain of 1e-10 in the deviance leaves theta up to ~1e-5 (relative) off the optimum of its
    linearized model (the plain alternation ended 5.5e-6, 1.2e-6, 4.8e-6 off), the fixed
    effects ~1e-7, the log-likelihood ~1e-9 (second order); and in fewer alternations
    than the plain one's 7, 7, 7."""
    data, kw = arguments(case, reference())
    fit = mm.nlme(data=data, **kw)
    ref = tight[case]
    assert fit.converged and ref.converged
    e, t = fit.estimate, ref.estimate
    np.testing.assert_allclose(e.theta, t.theta, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(e.beta, t.beta, rtol=1e-7)
    np.testing.assert_allclose(np.sqrt(np.diag(e.vcov)), np.sqrt(np.diag(t.vcov)), rtol=1e-5)
    assert fit.loglik == pytest.approx(ref.loglik, rel=1e-8)
    assert e.iterations == alternations


def test_settled_cold_step_at_a_boundary_estimate():
    """The boundary check's cold LME step at a converged estimate with an sd at 0
    (Soybean, three diagonal effects, sd(scal) = 0): with ``settled`` it returns the
    estimate's theta when no other start is better, as the full cold step (Newton from
    there) does, bitwise, in fewer evaluations."""
    from mixedmodels.core.nonlinear import gram

    data, kw = arguments("soybean_diag", reference())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.nlme(data=data, **kw)
    problem, e = fit.problem, fit.estimate
    assert e.theta[2] == 0.0
    g = gram(problem, problem.linearize(e.beta, e.b))
    full, n_full = onl._theta_step(problem, g, e.theta, False, None)
    quick, n_quick = onl._theta_step(problem, g, e.theta, False, None, settled=True)
    assert np.array_equal(full, e.theta) and np.array_equal(quick, e.theta)
    assert n_quick < n_full


def _numpy_residual_size(x, g):
    """The residual size as numpy computed it before (the reference of the floats')."""
    with np.errstate(all="ignore"):
        scale = 1.0 / np.maximum(np.abs(g), 1e-2)
        return float(np.maximum.reduce(np.abs((g - x) * scale), initial=0.0))


def _numpy_change(old, new, p):
    floor = np.full(new.size, 1e-2)
    floor[:p] = 1e-5
    with np.errstate(all="ignore"):
        return float(np.maximum.reduce(np.abs(old - new) / np.maximum(np.abs(new), floor),
                                       initial=0.0))


def test_sizes_by_python_floats_equal_numpy_to_the_bit():
    """The alternation's change and the extrapolation's residual size by Python's floats
    against numpy's expressions on random vectors across scales and around the floors:
    the same IEEE operations, so the same bits; where an entry is not finite both give a
    value outside every range the alternation tests (NaN, or inf for numpy's residual
    size)."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        k = int(rng.integers(1, 8))
        new = rng.normal(size=k) * 10.0 ** rng.integers(-7, 3, size=k)
        new[rng.random(k) < 0.2] = 0.0
        old = new * (1 + rng.normal(size=k) * 10.0 ** rng.integers(-12, 0, size=k))
        p = int(rng.integers(0, k + 1))
        assert onl.alternation_change(old, new, p) == _numpy_change(old, new, p)
        assert onl._residual_size(old, new) == _numpy_residual_size(old, new)
    for bad in (np.nan, np.inf, -np.inf):
        old, new = np.array([1.0, 2.0]), np.array([1.0, bad])
        for a, b in ((old, new), (new, old), (new, new)):
            want, got = _numpy_change(a, b, 1), onl.alternation_change(a, b, 1)
            assert got == want or (np.isnan(got) and np.isnan(want))
            size = onl._residual_size(a, b)
            assert np.isnan(size)
            assert not 0 <= _numpy_residual_size(a, b) <= 1  # (NaN or inf)
