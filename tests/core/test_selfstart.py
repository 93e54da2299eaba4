"""Self-starting models' starting values against R's stats::getInitial (reference made by
tests/reference/nlme/make_nlme_reference.R).

R ends each start with nls(), whose relative-offset criterion (1e-5) stops within a few
1e-6 (relative) of the least-squares optimum that ours reaches to ~1e-12: tolerance 2e-5
relative.  SSfol is R's peak heuristic plus a one-parameter fit (no final joint fit), which
is reproduced as such.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mixedmodels.core import selfstart
from mixedmodels.core.selfstart import INITIAL, least_squares_fit, sorted_xy
from mixedmodels.design.nonlinear import SELF_START, parse_model
from mixedmodels.errors import DataError
from tests.reference.nlme.cases import load, reference

REF = reference()["initial"]

CASES = {
    "SSlogis": ("Orange", "circumference ~ SSlogis(age, Asym, xmid, scal)"),
    "SSasymp": ("Loblolly", "height ~ SSasymp(age, Asym, R0, lrc)"),
    "SSasympOff": ("CO2", "uptake ~ SSasympOff(conc, Asym, lrc, c0)"),
    "SSfol": ("Theoph", "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"),
    "SSmicmen": ("CO2", "uptake ~ SSmicmen(conc, Vm, K)"),
    "SSgompertz": ("Loblolly", "height ~ SSgompertz(age, Asym, b2, b3)"),
    "SSfpl": ("Soybean", "weight ~ SSfpl(Time, A, B, xmid, scal)"),
    "SSbiexp": ("Theoph", "conc ~ SSbiexp(Time, A1, lrc1, A2, lrc2)"),
}


def test_every_model_is_checked():
    assert set(CASES) == set(SELF_START)


@pytest.mark.parametrize("name", list(CASES))
def test_initial_matches_getinitial(name):
    data_name, model = CASES[name]
    data = load(data_name)
    if name == "SSbiexp":  # as in the R script: subject 1 after dosing
        data = data[(data.Subject == 1) & (data.Time > 0)]
    params = list(REF[name])
    response, function = parse_model(model, params)
    roles = function.self_start_roles(function.covariate_values(data))
    got = INITIAL[name](roles, data[response].to_numpy(float), function.on)
    want = np.array([REF[name][p] for p in params])
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_sorted_xy_averages_replicates():
    x = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    y = np.array([6.0, 1.0, 8.0, 4.0, 3.0])
    ux, uy = sorted_xy(x, y)
    np.testing.assert_array_equal(ux, [1, 2, 3])
    np.testing.assert_array_equal(uy, [2, 4, 7])


def test_least_squares_recovers_exact_curve():
    """On noise-free data the fit returns the generating parameters (an identity)."""
    _, function = parse_model("y ~ SSlogis(x, Asym, xmid, scal)", ["Asym", "xmid", "scal"])
    x = np.linspace(0, 10, 12)
    truth = np.array([5.0, 4.0, 1.5])
    f, _ = function.on({"input": x})(truth)
    fit = least_squares_fit(function.on({"input": x}), f, truth * [1.2, 0.9, 1.3])
    np.testing.assert_allclose(fit, truth, rtol=1e-9)


def test_too_few_points():
    _, function = parse_model("y ~ SSlogis(x, Asym, xmid, scal)", ["Asym", "xmid", "scal"])
    with pytest.raises(DataError, match="at least 4 distinct"):
        roles = function.self_start_roles({"input": np.array([1.0, 2, 3])})
        INITIAL["SSlogis"](roles, np.array([1.0, 2, 3]), function.on)


def test_sorted_xy_is_unique_and_means():
    """sorted_xy (one sort) is numpy's unique values and the bincount means of y by them,
    to the bit, non-finite pairs left out."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 9, 60).astype(float)
    y = rng.normal(size=60)
    x[4], y[7] = np.nan, np.inf
    ok = np.isfinite(x) & np.isfinite(y)
    ux, inverse = np.unique(x[ok], return_inverse=True)
    means = np.bincount(inverse, weights=y[ok]) / np.bincount(inverse)
    got_x, got_y = sorted_xy(x, y)
    assert got_x.tobytes() == ux.tobytes()
    assert got_y.tobytes() == means.tobytes()


@pytest.mark.parametrize("shape", [(7, 1), (7, 2), (30, 4), (3, 3)])
def test_lstsq_is_numpy_lstsq(shape):
    """_lstsq (numpy's gufunc called directly) gives np.linalg.lstsq's coefficients to the
    bit, and numpy's error where numpy raises (non-finite data)."""
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    a = rng.normal(size=shape)
    y = rng.normal(size=shape[0])
    expected = np.linalg.lstsq(a, y, rcond=None)[0]
    assert selfstart._lstsq(a, y).tobytes() == expected.tobytes()
    a[0, 0] = np.nan
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.lstsq(a, y, rcond=None)
    with pytest.raises(np.linalg.LinAlgError):
        selfstart._lstsq(a, y)


def test_relative_step_is_numpy_formula():
    """_relative_step on Python floats is max |step| / max(|p|, 1e-8) as numpy computes it
    (NaN for a singular system's all-NaN step)."""
    step = np.array([1e-3, -2.5e-9, 4.0])
    p = np.array([3.0, 0.0, -7e2])
    expected = float(np.maximum.reduce(np.abs(step) / np.maximum(np.abs(p), 1e-8)))
    assert selfstart._relative_step(step, p) == expected
    assert np.isnan(selfstart._relative_step(np.full(3, np.nan), p))


@pytest.mark.parametrize("seed", range(6))
def test_absorption_fit_is_the_projected_fit_to_the_bit(seed):
    """SSfol's absorption-rate fit (three columns per numpy call) equals the generic
    projected_fit of the same column, to the bit, on Theoph and on noisy copies."""
    data = load("Theoph")
    t, dose = data["Time"].to_numpy(float), data["Dose"].to_numpy(float)
    y = data["conc"].to_numpy(float)
    if seed:
        y = y * np.exp(np.random.default_rng(seed).normal(0, 0.1 * seed, y.size))
    imax = int(np.argmax(y))
    lke = float(np.log((np.log(y[imax]) - np.log(y[-1])) / (t[-1] - t[imax])))
    slow = np.exp(-t * np.exp(lke))
    generic = selfstart.projected_fit(
        lambda p: ((slow - np.exp(-t * np.exp(p[0]))) * dose)[:, None], y,
        np.array([lke + 1.0]))[0]
    assert selfstart.absorption_fit(t, dose, y, lke, lke + 1.0) == float(generic)


needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed")


@needs_numba
def test_compiled_steps_equal_the_python_steps():
    """The compiled damping and trial step (selfstart_kernels) give the Python helpers'
    values to the bit: diagonals negative, zero, tiny, NaN; steps NaN, infinite, on
    parameters near zero."""
    kernels = selfstart.selfstart_kernels()
    assert kernels is not None
    rng = np.random.default_rng(7)
    specials = [0.0, -0.0, 1e-310, -3.0, np.nan, np.inf, 1e-300, 5e-9]
    for _ in range(300):
        k = int(rng.integers(1, 6))
        jtj = rng.normal(size=(k, k)) * 10.0 ** rng.integers(-5, 6)
        jtj[np.diag_indices(k)] = rng.choice(specials + list(rng.normal(size=4)), k)
        mu = float(10.0 ** rng.integers(-12, 13))
        assert kernels.damped(jtj, mu).tobytes() == selfstart._damped(jtj, mu).tobytes()
        p = rng.choice([0.0, 1e-9, -2e-8, 3.5, -700.0, 1e5], k) + rng.normal(size=k) * (
            rng.random() < 0.5)
        step = rng.normal(size=k) * 10.0 ** rng.integers(-14, 3)
        if rng.random() < 0.2:
            step[int(rng.integers(k))] = rng.choice([np.nan, np.inf, -np.inf])
        got, want = kernels.trial_step(p, step), selfstart._trial_step(p, step)
        assert got[0].tobytes() == want[0].tobytes()
        assert got[1] == want[1]
        assert (np.isnan(got[2]) and np.isnan(want[2])) or got[2] == want[2]


@needs_numba
@pytest.mark.parametrize("name", list(CASES))
def test_starts_with_and_without_the_compiled_steps_are_equal(name, monkeypatch):
    """Every self-start's values with the compiled steps equal the Python code's, to the
    bit (the reference data of test_initial_matches_getinitial, then the data scaled)."""
    data_name, model = CASES[name]
    data = load(data_name)
    if name == "SSbiexp":
        data = data[(data.Subject == 1) & (data.Time > 0)]
    params = list(REF[name])
    response, function = parse_model(model, params)
    roles = function.self_start_roles(function.covariate_values(data))
    for scale in (1.0, 1.7):
        y = data[response].to_numpy(float) * scale
        monkeypatch.setattr(selfstart, "USE_KERNELS", False)
        want = INITIAL[name](roles, y, function.on)
        monkeypatch.setattr(selfstart, "USE_KERNELS", True)
        assert INITIAL[name](roles, y, function.on).tobytes() == want.tobytes()
