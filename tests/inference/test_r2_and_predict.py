"""Nakagawa R2 / ICC against performance 0.10.2 (reference/inference/r2_nakagawa.json,
made by make_r2_reference.R), prediction intervals by simulation, the tidy table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.simulate import simulate_mixed

REF = json.loads(
    (Path(__file__).parent.parent / "reference" / "inference" / "r2_nakagawa.json").read_text()
)
MODELS = {
    "sleepstudy_slopes": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "sleepstudy_intercepts": ("sleepstudy", "Reaction ~ Days + (1 | Subject)"),
    "penicillin_crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_r2_and_icc_match_performance(name):
    """1e-4 relative: the estimates themselves agree with lme4 to ~1e-5."""
    data, formula = MODELS[name]
    fit = mm.lmer(formula, mm.datasets.load(data))
    ref = REF[name]
    r2, icc = fit.r2_nakagawa(), fit.icc_adjusted()
    assert r2["marginal"] == pytest.approx(ref["r2_marginal"], rel=1e-4, abs=1e-10)
    assert r2["conditional"] == pytest.approx(ref["r2_conditional"], rel=1e-4)
    assert icc["adjusted"] == pytest.approx(ref["icc_adjusted"], rel=1e-4)
    assert icc["conditional"] == pytest.approx(ref["icc_conditional"], rel=1e-4)


def test_prediction_intervals_cover_new_observations():
    """60 simulated data sets; each predicts one new observation per cluster (50 per set,
    3,000 in all) from the true model: 95% prediction intervals cover 95% +- 3 binomial sd
    (1.2%) plus 1% for the approximation (beta and b uncertainties added, their covariance
    ignored)."""
    hits, total = 0, 0
    rng = np.random.default_rng(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(60):
            df, parts = simulate_mixed(50, 5, seed=300 + i, return_parts=True)
            fit = mm.lmer("y ~ x + (1|cluster)", df)
            x_new = rng.standard_normal(50)
            y_new = 3 + 0.75 * x_new + parts.gamma[:, 0] + rng.standard_normal(50)
            new = pd.DataFrame({"x": x_new, "cluster": df.cluster.cat.categories})
            pi = fit.predict(new, interval="prediction")
            hits += int(np.sum((pi.lower <= y_new) & (y_new <= pi.upper)))
            total += 50
    rate = hits / total
    assert abs(rate - 0.95) < 3 * np.sqrt(0.95 * 0.05 / total) + 0.01


def test_confidence_interval_is_the_fixed_part_standard_error():
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "308"]})
    ci = fit.predict(new, include_random=False, interval="confidence")
    v = fit.vcov.to_numpy()
    assert ci.se[0] == pytest.approx(np.sqrt(v[0, 0]))
    assert ci.se[1] == pytest.approx(np.sqrt(v[0, 0] + 25 * v[1, 1] + 10 * v[0, 1]))
    pi = fit.predict(new, interval="prediction")
    assert np.all(pi.se > ci.se)


def test_tidy_table():
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    t = fit.tidy()
    assert list(t.term) == [
        "sd_(Intercept)",
        "cor_Days.(Intercept)",
        "sd_Days",
        "sigma",
        "(Intercept)",
        "Days",
    ]
    assert list(t.effect) == ["ran_pars"] * 4 + ["fixed"] * 2
    np.testing.assert_allclose(t.estimate, fit.parameters, rtol=1e-12)
