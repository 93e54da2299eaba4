"""Simulating a mixed model: matrix form identity, parameter recovery, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import SimulationError
from mixedmodels.simulate import simulate_mixed


def test_matrix_form_reproduces_the_data():
    df, parts = simulate_mixed(50, 5, seed=1, return_parts=True)
    assert len(df) == 250 and df.cluster.nunique() == 50
    np.testing.assert_allclose(
        parts.X @ parts.beta + parts.Z @ parts.gamma.ravel() + parts.e, df.y, rtol=1e-12
    )
    np.testing.assert_array_equal(parts.Z.sum(axis=1), 1.0)  # one cluster per row


def test_unequal_sizes_and_seed_reproducibility():
    sizes = np.arange(1, 11)
    a = simulate_mixed(10, sizes, seed=3)
    b = simulate_mixed(10, sizes, seed=np.random.default_rng(3))
    assert list(a.groupby("cluster", observed=True).size()) == list(sizes)
    np.testing.assert_array_equal(a.y, b.y)


def test_random_slopes_covariance():
    _, parts = simulate_mixed(
        20000, 2, fixed=(1.0, 0.5), re_sd=(1.0, 0.5), re_cor=0.4, seed=5, return_parts=True
    )
    cov = np.cov(parts.gamma.T)
    # 20000 draws: sampling sd of a variance ~ sqrt(2/20000) * var, of a covariance smaller
    np.testing.assert_allclose(cov, parts.D, atol=0.03)
    np.testing.assert_allclose(parts.D, [[1.0, 0.2], [0.2, 0.25]])


def test_seeded_study_recovers_parameters_within_sampling_error():
    """100 data sets of the tutorial's setup: the mean estimates lie within 4 Monte Carlo
    standard errors of the truth (REML is unbiased for beta; tau is slightly biased, so it
    gets 4 MC SE plus 0.02)."""
    est = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(100):
            df = simulate_mixed(50, 5, seed=1000 + i)
            fit = mm.lmer("y ~ x + (1|cluster)", df)
            est.append([*fit.fixef, fit.varcorr.sdcor[0], fit.sigma])
    est = np.array(est)
    truth = np.array([3.0, 0.75, 0.5, 1.0])
    mc_se = est.std(axis=0, ddof=1) / np.sqrt(len(est))
    slack = np.array([0.0, 0.0, 0.02, 0.0])
    assert np.all(np.abs(est.mean(axis=0) - truth) < 4 * mc_se + slack)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"re_sd": (-0.5,)}, "standard deviations"),
        ({"re_sd": (0.5, 0.2), "re_cor": 1.5}, r"\[-1, 1\]"),
        ({"sigma": -1.0}, "sigma"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(SimulationError, match=match):
        simulate_mixed(10, 5, **kwargs)


def test_zero_clusters():
    with pytest.raises(SimulationError, match="n_clusters"):
        simulate_mixed(0, 5)
    assert issubclass(SimulationError, mm.MixedModelsError)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("ten", 5), {}, "n_clusters must be a positive integer, got 'ten'"),
        ((2.5, 5), {}, "n_clusters must be a positive integer, got 2.5"),
        ((10, 0), {}, "cluster_size must be a positive integer, got 0"),
        ((10, [5] * 9), {}, r"one per cluster \(10\)"),
        ((10, 5), {"sigma": np.nan}, "sigma must be finite"),
        ((10, 5), {"sigma": "one"}, "sigma must be numbers"),
        ((10, 5), {"fixed": (3.0, np.inf)}, "fixed must be finite"),
        ((10, 5), {"re_sd": (np.nan,)}, "re_sd"),
        ((10, 5), {"re_sd": (0.5, 0.2), "re_cor": np.nan}, "re_cor must be finite"),
        ((10, 5), {"seed": "abc"}, "seed must be None"),
        ((10, 5), {"covariates": 3}, "covariates must be a function"),
        ((10, 5), {"covariates": lambda rng, n: np.ones(3)}, r"covariates\(rng, n\) must return"),
    ],
)
def test_unusable_arguments_are_simulation_errors(args, kwargs, match):
    with pytest.raises(SimulationError, match=match):
        simulate_mixed(*args, **kwargs)


def test_whole_float_counts_are_accepted():
    a = simulate_mixed(10.0, 5.0, seed=3)
    b = simulate_mixed(10, 5, seed=3)
    pd.testing.assert_frame_equal(a, b)
