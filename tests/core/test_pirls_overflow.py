"""PIRLS at a trial point whose mean overflows (core/pirls.py).

Reproducer of a fuzz failure: glmer poisson ``h ~ h:f + (1 + x | g)`` with ``x`` up to
+-700 let the optimizer try a fixed effect whose linear predictor exceeded 709, and the
working weights ``(d mu / d eta)^2 / V(mu)`` overflowed with numpy RuntimeWarnings (and an
infinite Gram reached the factorization).  Such a point must be an infinite deviance for
the optimizer (a :class:`PirlsError`), without any numpy warning; a fit on those data must
end without foreign warnings."""

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.core.pirls import PirlsError


def test_a_point_whose_mean_overflows_is_a_pirls_error_without_warnings():
    sleep = mm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer("Reaction ~ Days + (1 | Subject)", sleep, "poisson")
    problem = fit.problem
    theta = np.asarray(fit.theta, float)
    beta = np.asarray(fit.fixef, float)
    ok = problem.mode(theta, beta)  # the reference point is fine
    assert np.isfinite(ok.laplace)
    # slope 100 per day: eta up to ~ 5.5 + 900 > 709, exp overflows without the guard
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PirlsError):
            problem.mode(theta, beta + np.array([0.0, 100.0]))


def test_fit_on_overflowing_data_gives_only_package_warnings():
    rng = np.random.default_rng(30)
    n = 24
    data = pd.DataFrame(
        {
            "h": rng.integers(0, 4, n),
            "x": rng.uniform(-700, 700, n) * (rng.random(n) < 0.8),
            "f": rng.integers(0, rng.integers(1, 5), n),
            "g": rng.integers(0, rng.integers(1, 5), n),
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = mm.glmer("h ~ h:f + (1 + x | g)", data, "poisson")
        except mm.errors.MixedModelsError:
            fit = None
    foreign = [w for w in caught if not issubclass(w.category, mm.errors.MixedModelsWarning)]
    assert foreign == []
    if fit is not None:
        assert np.isfinite(fit.loglik)
