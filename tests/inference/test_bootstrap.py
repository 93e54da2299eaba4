"""Parametric bootstrap: reproducibility, agreement with the model's own sampling theory,
interruption, and (slow) coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.simulate import simulate_mixed


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days|Subject)", mm.datasets.load("sleepstudy"))


def test_reproducible_whatever_n_jobs(fit):
    a = fit.bootstrap(60, seed=42, progress=False)
    b = fit.bootstrap(60, seed=42, n_jobs=2, progress=False)
    np.testing.assert_array_equal(a.replicates.to_numpy(), b.replicates.to_numpy())
    assert list(a.replicates.columns) == fit.parameter_names


def test_fixed_effect_spread_matches_standard_errors(fit):
    """The bootstrap sd of beta estimates its standard error: with 400 replicates the sd is
    within ~3.5 x sqrt(1/(2*400)) = 12% of the truth; the check allows 20%."""
    boot = fit.bootstrap(400, seed=7, progress=False)
    se = np.sqrt(np.diag(fit.vcov))
    sd = boot.replicates[["(Intercept)", "Days"]].std(ddof=1).to_numpy()
    np.testing.assert_allclose(sd, se, rtol=0.2)
    ci = boot.confint("percentile")
    params = fit.parameters
    assert np.all(ci.lower < params) and np.all(params < ci.upper)
    basic, normal = boot.confint("basic"), boot.confint("normal")
    t0 = boot.original
    np.testing.assert_allclose(basic.lower, 2 * t0 - ci.upper)
    assert np.all(normal.lower < normal.upper)


def test_custom_statistic(fit):
    boot = fit.bootstrap(30, statistic=lambda f: [f.sigma**2], seed=1, progress=False)
    assert boot.original.iloc[0] == pytest.approx(fit.sigma**2)
    assert boot.replicates.shape == (30, 1)


def test_ctrl_c_keeps_finished_replicates(fit):
    calls = {"n": 0}

    def stat(f):
        calls["n"] += 1
        if calls["n"] > 12:  # the 12th replicate; call 1 is the original
            raise KeyboardInterrupt
        return [f.sigma]

    boot = fit.bootstrap(100, statistic=stat, seed=1, progress=False)
    assert boot.interrupted
    assert 0 < len(boot.replicates) < 100
    assert any("interrupted" in n for n in boot.notes)


@pytest.mark.slow
def test_percentile_interval_coverage():
    """200 simulated data sets (tutorial setup), 200 bootstrap replicates each: the 95%
    percentile interval for the slope covers 0.75 in 95% +- 3 Monte Carlo sd (1.5%)."""
    covered = 0
    n_sets = 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n_sets):
            df = simulate_mixed(50, 5, seed=5000 + i)
            f = mm.lmer("y ~ x + (1|cluster)", df)
            ci = f.bootstrap(200, seed=i, progress=False).confint("percentile").loc["x"]
            covered += ci.lower <= 0.75 <= ci.upper
    rate = covered / n_sets
    print(f"percentile-interval coverage of the slope: {rate:.3f} over {n_sets} data sets")
    mc_sd = np.sqrt(0.95 * 0.05 / n_sets)
    assert abs(rate - 0.95) < 3 * mc_sd + 0.01


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((-5,), {}, "nsim must be at least 1, got -5"),
        ((2.5,), {}, "nsim must be an integer, got 2.5"),
        (("100",), {}, "nsim must be an integer, got '100'"),
        ((5,), {"n_jobs": "all"}, "n_jobs must be an integer"),
        ((5,), {"seed": -1}, "seed must be None or a non-negative integer"),
        ((5, "fixef"), {}, "statistic must be a function"),
        ((5,), {"progress": "no"}, "progress must be True or False"),
    ],
)
def test_bootstrap_arguments_are_checked(fit, args, kwargs, message):
    with pytest.raises(mm.ArgumentError, match=message):
        fit.bootstrap(*args, **kwargs)


def test_statistic_must_return_numbers(fit):
    with pytest.raises(mm.ArgumentError, match="statistic must return a number"):
        fit.bootstrap(5, lambda f: "text", progress=False)


def test_bootstrap_interval_arguments(fit):
    boot = fit.bootstrap(5, seed=1, progress=False)
    with pytest.raises(mm.ArgumentError, match="method must be one of"):
        boot.confint("bca")
    with pytest.raises(mm.ArgumentError, match="level must lie strictly between 0 and 1"):
        boot.confint("percentile", level=1.5)


def test_glmer_bootstrap_arguments_are_checked():
    df = mm.datasets.load("cbpp")
    glmm = mm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", df, "binomial")
    with pytest.raises(mm.ArgumentError, match="nsim must be at least 1, got -5"):
        glmm.bootstrap(-5)
    with pytest.raises(mm.ArgumentError, match="nsim must be an integer, got 2.5"):
        glmm.simulate(2.5)
