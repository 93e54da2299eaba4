"""Public API behaviour: objective function access, refit, prediction, identities."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import NewLevelError
from tests.catalogue import case


@pytest.fixture(scope="module")
def sleep_fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


def test_objective_function_reachable_without_fitting(sleep_fit):
    ref = case("sleepstudy_slopes_reml").reference
    _, problem = mm.lmer_problem(
        "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy")
    )
    assert problem.objective(np.array(ref["theta"])) == pytest.approx(ref["objective"], rel=1e-10)
    assert sleep_fit.problem.objective(sleep_fit.theta) == pytest.approx(sleep_fit.objective)


def test_refit_to_new_response_equals_fresh_fit(sleep_fit):
    df = mm.datasets.load("sleepstudy")
    y_new = df.Reaction.to_numpy() + np.random.default_rng(1).normal(0, 10, len(df))
    again = mm.refit(sleep_fit, y_new)
    fresh = mm.lmer("Reaction ~ Days + (Days | Subject)", df.assign(Reaction=y_new))
    assert again.objective == pytest.approx(fresh.objective, rel=1e-8)
    np.testing.assert_allclose(again.fixef, fresh.fixef, rtol=1e-5)
    np.testing.assert_allclose(again.fitted, fresh.fitted, rtol=1e-5)


def test_coef_is_fixef_plus_ranef(sleep_fit):
    coef = sleep_fit.coef["Subject"]
    ranef = sleep_fit.ranef["Subject"]
    np.testing.assert_allclose(coef.to_numpy(), sleep_fit.fixef.to_numpy() + ranef.to_numpy())


def test_fitted_is_x_beta_plus_z_b(sleep_fit):
    df = mm.datasets.load("sleepstudy")
    coef = sleep_fit.coef["Subject"].loc[df.Subject.astype(str)]
    expected = coef["(Intercept)"].to_numpy() + coef["Days"].to_numpy() * df.Days.to_numpy()
    np.testing.assert_allclose(sleep_fit.fitted, expected, rtol=1e-12)
    np.testing.assert_allclose(sleep_fit.residuals, df.Reaction - expected, rtol=1e-9)


def test_predict_new_levels(sleep_fit):
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "999"]})
    with pytest.raises(NewLevelError, match="999"):
        sleep_fit.predict(new)
    pred = sleep_fit.predict(new, allow_new_levels=True)
    marginal = sleep_fit.fixef["(Intercept)"] + 5.0 * sleep_fit.fixef["Days"]
    assert pred[1] == pytest.approx(marginal)
    assert pred[0] == pytest.approx(sleep_fit.fitted[0])


def test_ml_loglik_and_information_criteria(sleep_fit):
    ml = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"), reml=False)
    assert ml.loglik == pytest.approx(-ml.objective / 2)
    assert ml.aic == pytest.approx(ml.objective + 2 * 6)
    assert ml.bic == pytest.approx(ml.objective + np.log(180) * 6)


def test_singular_fit_reported():
    with pytest.warns(mm.errors.SingularFitWarning):
        fit = mm.lmer("Yield ~ 1 + (1|Batch)", mm.datasets.load("Dyestuff2"))
    assert fit.is_singular and fit.theta[0] == 0.0
    assert "singular" in fit.summary()


def test_offset_equals_shifted_response():
    df = mm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_offset = mm.lmer("Reaction ~ Days + (1|Subject)", df, offset=5.0 * df.Days)
        shifted = mm.lmer(
            "Reaction ~ Days + (1|Subject)", df.assign(Reaction=df.Reaction - 5 * df.Days)
        )
    assert with_offset.fixef["Days"] == pytest.approx(shifted.fixef["Days"] + 0.0, rel=1e-6)
    np.testing.assert_allclose(with_offset.fitted - 5 * df.Days, shifted.fitted, rtol=1e-6)


def test_user_dataframe_not_modified():
    df = mm.datasets.load("sleepstudy")
    before = df.copy()
    mm.lmer("Reaction ~ Days + (Days || Subject)", df)
    pd.testing.assert_frame_equal(df, before)


def test_notebook_repr_is_the_escaped_summary(sleep_fit):
    html = sleep_fit._repr_html_()
    assert html.startswith("<pre>") and "Pr(&gt;|t|)" in html


def test_refit_with_wrong_length_is_a_data_error(sleep_fit):
    with pytest.raises(mm.DataError, match="180 values"):
        mm.refit(sleep_fit, np.zeros(5))


def test_lme4_start_reaches_the_same_optimum():
    """lme4's own start (identity lambda) and the default moment-based start agree."""
    df = mm.datasets.load("Penicillin")
    formula = "diameter ~ 1 + (1|plate) + (1|sample)"
    a = mm.lmer(formula, df)
    b = mm.lmer(formula, df, start="lme4")
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-3)


def test_evaluating_at_lme4_theta_reproduces_lme4s_estimates():
    """optimize=False (lme4's optimizer = NULL) describes the given theta: at lme4's theta,
    the objective, fixef, their standard errors and sigma are lme4's to 1e-9 relative (the
    same closed-form solve; measured 1e-12)."""
    ref = case("penicillin_crossed_reml").reference
    fit = mm.lmer(
        ref["formula"], mm.datasets.load("Penicillin"), start=ref["theta"], optimize=False
    )
    np.testing.assert_array_equal(fit.theta, ref["theta"])
    assert fit.objective == pytest.approx(ref["objective"], rel=1e-9)
    np.testing.assert_allclose(fit.fixef, ref["fixef"], rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov)), ref["se"], rtol=1e-9)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-9)


def test_optimize_false_at_the_optimum_is_the_fit(sleep_fit):
    again = mm.lmer(
        "Reaction ~ Days + (Days | Subject)",
        mm.datasets.load("sleepstudy"),
        start=sleep_fit.theta,
        optimize=False,
    )
    assert again.objective == sleep_fit.objective
    np.testing.assert_array_equal(again.fixef, sleep_fit.fixef)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimize": False}, "needs a start"),
        ({"start": [1.0, 0.0]}, "2 value.*3 theta"),
        ({"start": [1.0, 0.0, -1.0]}, r"start\[2\] = -1.0"),
        ({"start": [1.0, np.nan, 1.0]}, r"start\[1\]"),
        ({"start": "identity"}, "start must be"),
    ],
)
def test_unusable_start_is_an_argument_error(kwargs, message):
    with pytest.raises(mm.ArgumentError, match=message):
        mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"), **kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda fit: fit.fixef_table(ddf="between-within"),
        lambda fit: fit.confint(method="bca"),
        lambda fit: fit.predict(interval="credible"),
        lambda fit: mm.anova(),
    ],
)
def test_unknown_options_are_argument_errors(sleep_fit, call):
    with pytest.raises(mm.ArgumentError):
        call(sleep_fit)


# ------------------------------------------------------------------ argument checks
SLEEP_FORMULA = "Reaction ~ Days + (1 | Subject)"


@pytest.mark.parametrize(
    "fitter, kwargs, message",
    [
        ("lmer", {"reml": "no"}, "reml must be True or False, got 'no'"),
        ("lmer", {"reml": 0}, "reml must be True or False, got 0"),
        ("lmer", {"optimize": "yes"}, "optimize must be True or False"),
        ("lmer", {"contrasts": ["Days"]}, "contrasts must be a dict"),
        ("lmer", {"data_name": 3}, "data_name must be a string"),
        ("glmer", {"n_agq": True}, "n_agq must be an integer, got True"),
        ("glmer", {"n_agq": 2.5}, "n_agq must be an integer, got 2.5"),
        ("glmer", {"n_agq": 30}, "n_agq must be an integer from 0 to 25"),
        ("glmer", {"family": 3}, "family must be"),
        ("glmer", {"link": 5}, "link must be a string"),
        ("lm", {"contrasts": "contr.sum"}, "contrasts must be a dict"),
    ],
)
def test_fitting_arguments_are_checked(fitter, kwargs, message):
    df = mm.datasets.load("sleepstudy")
    formula = SLEEP_FORMULA
    if fitter == "glmer":
        df = df.assign(slow=(df.Reaction > 300).astype(int))
        formula = "slow ~ Days + (1 | Subject)"
    elif fitter == "lm":
        formula = "Reaction ~ Days"
    with pytest.raises(mm.ArgumentError, match=message):
        getattr(mm, fitter)(formula, df, **kwargs)


def test_reml_false_is_ml_and_a_numpy_bool_is_accepted():
    df = mm.datasets.load("sleepstudy")
    ml = mm.lmer(SLEEP_FORMULA, df, reml=np.False_)
    assert not ml.reml
    ref = mm.refit_ml(mm.lmer(SLEEP_FORMULA, df))
    assert ml.objective == pytest.approx(ref.objective, rel=1e-8)


@pytest.mark.parametrize("formula", [None, 3, ["Reaction ~ Days"]])
def test_formula_must_be_text(formula):
    with pytest.raises(mm.FormulaError, match="formula must be a string"):
        mm.lmer(formula, mm.datasets.load("sleepstudy"))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.nan, r"1 missing or non-finite value\(s\) at position\(s\) 7"),
        (np.inf, r"1 missing or non-finite value\(s\) at position\(s\) 7"),
    ],
)
def test_refit_with_missing_response_is_a_data_error(sleep_fit, bad, message):
    y = mm.datasets.load("sleepstudy").Reaction.to_numpy().copy()
    y[7] = bad
    with pytest.raises(mm.DataError, match=message):
        mm.refit(sleep_fit, y)


def test_refit_with_wrong_length_or_text(sleep_fit):
    with pytest.raises(mm.DataError, match="must have 180 values"):
        mm.refit(sleep_fit, np.ones(5))
    with pytest.raises(mm.DataError, match="must be numbers"):
        mm.refit(sleep_fit, ["a"] * 180)
    with pytest.raises(mm.ArgumentError, match="refit takes an lmer fit"):
        mm.refit("fit", np.ones(180))


def test_glmer_refit_checks_the_new_response():
    df = mm.datasets.load("sleepstudy")
    df = df.assign(slow=(df.Reaction > 300).astype(int))
    fit = mm.glmer("slow ~ Days + (1 | Subject)", df, "binomial")
    y = df.slow.to_numpy(dtype=float)
    y[3] = np.nan
    with pytest.raises(mm.DataError, match=r"position\(s\) 3"):
        fit.refit(y)
    with pytest.raises(mm.DataError, match="binomial response must be 0/1"):
        fit.refit(np.full(180, 2.0))
    again = fit.refit(df.slow.to_numpy(dtype=float))
    np.testing.assert_allclose(again.fixef, fit.fixef, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nsim": -1}, "nsim must be at least 1, got -1"),
        ({"nsim": 2.5}, "nsim must be an integer, got 2.5"),
        ({"nsim": 2, "seed": "abc"}, "seed must be None"),
    ],
)
def test_simulate_arguments(sleep_fit, kwargs, message):
    with pytest.raises(mm.ArgumentError, match=message):
        sleep_fit.simulate(**kwargs)


def test_simulate_with_a_whole_float_count(sleep_fit):
    np.testing.assert_array_equal(sleep_fit.simulate(3.0, seed=1), sleep_fit.simulate(3, seed=1))


def test_anova_arguments(sleep_fit):
    with pytest.raises(mm.ArgumentError, match="argument 2 is str"):
        mm.anova(sleep_fit, "model")
    with pytest.raises(mm.ArgumentError, match="names must be 2 strings"):
        mm.anova(sleep_fit, sleep_fit, names=["a"])


def test_constant_response_warns_that_the_fit_is_degenerate():
    df = mm.datasets.load("sleepstudy").assign(Reaction=250.0)
    with pytest.warns(mm.errors.DegenerateFitWarning, match="response is constant"):
        mm.lmer(SLEEP_FORMULA, df)


def test_callers_frame_is_never_modified_by_any_entry_point():
    df = mm.datasets.load("sleepstudy")
    df = df.assign(
        slow=pd.array(np.where(df.Reaction > 300, True, False), dtype="boolean"),
        k=pd.array(np.round(df.Reaction / 10).astype(int), dtype="Int64"),
        w=pd.array(np.linspace(0.5, 2, len(df)), dtype="Float64"),
    )
    df.loc[[2, 9], "k"] = pd.NA
    df.loc[4, "slow"] = pd.NA
    before = df.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer("Reaction ~ Days + k + (1 | Subject)", df, weights="w")
        fit.predict(df)
        mm.glmer("slow ~ Days + (1 | Subject)", df, "binomial")
        mm.glmer("k ~ Days + (1 | Subject)", df, "poisson")
        mm.lm("Reaction ~ k", df, weights="w")
        mm.lmlist("Reaction ~ k | Subject", df)
    pd.testing.assert_frame_equal(df, before)


def test_summary_and_posterior_arguments(sleep_fit):
    with pytest.raises(mm.ArgumentError, match="ddf must be .* not 3"):
        sleep_fit.summary(ddf=3)
    with pytest.raises(mm.ArgumentError, match="draws must be an integer.*2.5"):
        sleep_fit.sample_posterior(draws=2.5, progress=False)
    with pytest.raises(mm.ArgumentError, match="warmup must be .*0.*-1"):
        sleep_fit.sample_posterior(draws=10, warmup=-1, progress=False)
    with pytest.raises(mm.ArgumentError, match="seed must be None"):
        sleep_fit.sample_posterior(draws=10, seed="x", progress=False)


def test_summary_names_a_bundled_data_set():
    """lme4 prints 'Data: sleepstudy'; a bundled data set carries its name, a given
    data_name wins, and a frame of the user's own has no Data line."""
    ss = mm.datasets.load("sleepstudy")
    assert "   Data: sleepstudy" in str(mm.lmer("Reaction ~ Days + (1 | Subject)", ss))
    named = mm.lmer("Reaction ~ Days + (1 | Subject)", ss, data_name="ss")
    assert "   Data: ss" in str(named)
    plain = pd.DataFrame(ss.to_dict(orient="list"))
    assert "Data:" not in str(mm.lmer("Reaction ~ Days + (1 | Subject)", plain))
