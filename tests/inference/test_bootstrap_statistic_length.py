"""A bootstrap statistic that returns a different number of values on a replicate than on
the fit: an ArgumentError naming the replicate (a raw numpy "inhomogeneous shape" ValueError
before).  A statistic of fixed length still fills one row per replicate."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm


def test_statistic_of_varying_length_is_an_argument_error():
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", mm.datasets.load("sleepstudy"))
    calls = {"n": 0}

    def statistic(f):
        calls["n"] += 1
        return np.arange(1 if calls["n"] == 1 else 2, dtype=float)

    with pytest.raises(mm.ArgumentError, match=r"1 value\(s\) for the fit but 2 for replicate"):
        fit.bootstrap(3, statistic=statistic, seed=1, n_jobs=1, progress=False)


def test_fixed_length_statistic_fills_a_row_per_replicate():
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", mm.datasets.load("sleepstudy"))
    result = fit.bootstrap(3, statistic=lambda f: f.fixef, seed=1, n_jobs=1, progress=False)
    assert result.replicates.shape == (3, 2)
    np.testing.assert_allclose(result.original, fit.fixef, rtol=0)
