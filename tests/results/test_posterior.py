"""The Bayesian view of a fitted model: posterior draws named like confint's rows,
reproducible, interruptible, and centred where the likelihood is."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm
import mixedmodels.results.posterior as posterior_module


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def posterior(fit):
    return fit.sample_posterior(2000, 300, seed=11, progress=False)


def test_draws_are_named_like_the_parameters(fit, posterior):
    assert list(posterior.draws.columns) == fit.parameter_names
    assert len(posterior.draws) == 2000


def test_posterior_sits_on_the_likelihood(fit, posterior):
    """With weak priors and 180 rows: each fixed effect's 95% interval holds the REML
    estimate, its posterior sd is at least 0.9 x the REML standard error (variance
    uncertainty only adds), and sigma's posterior median is within 5% of REML's
    (posterior sd of sigma ~6%)."""
    table = posterior.summary()
    for name, se in zip(fit.fixef.index, np.sqrt(np.diag(fit.vcov)), strict=True):
        assert table.loc[name, "lower"] < fit.fixef[name] < table.loc[name, "upper"]
        assert table.loc[name, "sd"] > 0.9 * se
    assert table.loc["sigma", "median"] == pytest.approx(fit.sigma, rel=0.05)
    assert (
        -1
        < table.loc["cor_Days.(Intercept)|Subject", "lower"]
        < 0
        < table.loc["cor_Days.(Intercept)|Subject", "upper"]
        < 1
    )


def test_same_seed_same_draws(fit):
    a = fit.sample_posterior(50, 10, seed=3, progress=False).draws
    b = fit.sample_posterior(50, 10, seed=3, progress=False).draws
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_ctrl_c_keeps_the_draws_so_far(fit, monkeypatch):
    original = posterior_module.run_gibbs

    def interrupted(problem, settings, s2, covs, n, rng, on_draw):
        calls = {"n": 0}

        def stopping(*args):
            calls["n"] += 1
            if calls["n"] > 25:
                raise KeyboardInterrupt
            on_draw(*args)

        original(problem, settings, s2, covs, n, rng, stopping)

    monkeypatch.setattr(posterior_module, "run_gibbs", interrupted)
    with pytest.warns(mm.MixedModelsWarning, match="kept 15 of 100"):
        post = fit.sample_posterior(100, 10, seed=1, progress=False)
    assert len(post.draws) == 15
