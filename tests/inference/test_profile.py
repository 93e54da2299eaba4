"""Profile-likelihood intervals against lme4's confint(method = "profile") (references
confint_profile).  lme4 interpolates zeta with splines, we solve for the crossing; both are
within 1e-3 relative (we see <= 2e-4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.errors import DataError
from tests.catalogue import gaussian_cases

CASES = [c for c in gaussian_cases() if "confint_profile" in c.reference]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_profile_intervals_match_lme4(case):
    fit = case.fit()
    ci = fit.confint("profile")
    ref = case.reference["confint_profile"]
    assert list(ci.index) == ref["names"]
    np.testing.assert_allclose(ci.lower, ref["lower"], rtol=1e-3)
    np.testing.assert_allclose(ci.upper, ref["upper"], rtol=1e-3)


def test_profile_traces_cross_zero_at_the_estimate():
    case = next(c for c in CASES if c.name == "dyestuff_reml")
    fit = case.fit()
    traces = fit.profile(points=4)
    assert set(traces.parameter) == set(fit.parameter_names)
    ml = fit.parameters  # REML values; the profile is ML so compare monotonicity only
    for name in ml.index:
        part = traces[traces.parameter == name]
        assert np.all(np.diff(part.zeta.to_numpy()) > 0)  # zeta increases with the value


def test_wald_intervals_are_estimate_plus_minus_z_se():
    fit = CASES[0].fit()
    ci = fit.confint("wald")
    se = np.sqrt(np.diag(fit.vcov))
    np.testing.assert_allclose(
        ci.loc[fit.fixef.index, "upper"] - fit.fixef, 1.959964 * se, rtol=1e-6
    )
    assert ci.loc["sigma"].isna().all()


def test_glmer_profile_intervals_match_lme4():
    """confint(glmer fit) by profiling the Laplace deviance, against lme4's
    confint(method = "profile") with PIRLS converged: within 5e-4 relative (lme4 interpolates
    the profile with splines, we solve for the ends; measured <= 1e-4)."""
    import json
    from pathlib import Path

    import mixedmodels as mm

    ref = json.loads(
        (
            Path(__file__).parent.parent
            / "reference"
            / "inference"
            / "confint_profile_cbpp_glmer.json"
        ).read_text()
    )
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1|herd)",
        mm.datasets.load("cbpp"),
        "binomial",
    )
    ci = fit.confint("profile")
    assert list(ci.index) == ref["names"]
    np.testing.assert_allclose(ci.lower, ref["lower"], rtol=5e-4)
    np.testing.assert_allclose(ci.upper, ref["upper"], rtol=5e-4)


def test_glmer_profile_trace_is_signed_root_deviance():
    """zeta is 0 at the estimate, increasing along each parameter, and reaches -+z at the
    confint ends (identity between the traces and the intervals, 1e-3)."""
    from scipy import stats

    import mixedmodels as mm

    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1|herd)",
        mm.datasets.load("cbpp"),
        "binomial",
    )
    traces = fit.profile(level=0.95, points=3)
    z = stats.norm.ppf(0.975)
    for name, trace in traces.groupby("parameter", sort=False):
        assert np.all(np.diff(trace.zeta.to_numpy()) > 0), name
        assert trace.zeta.min() == pytest.approx(-z, abs=1e-3), name
        assert trace.zeta.max() == pytest.approx(z, abs=1e-3)


def test_profile_of_a_constant_response_is_an_error_not_a_crash():
    """The issue's case: NaN reached the optimizer and the process died."""
    df = mm.datasets.load("sleepstudy").assign(Reaction=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer("Reaction ~ Days + (1 | Subject)", df)
    with pytest.raises(DataError, match="cannot profile this fit.*constant"):
        fit.confint("profile")
    with pytest.raises(DataError, match="cannot profile this fit"):
        fit.profile()


def test_profile_of_a_response_reproduced_by_the_random_effects_is_an_error():
    """A response constant within subjects: the random effects reproduce it and sigma is
    rounding (0 with one LAPACK build, 6e-17 with another, which passed the old check
    ``sigma > 0`` and profiled a likelihood without a maximum).  The fit warns and the
    profile refuses, whatever the rounding: sigma is compared with the response's spread."""
    df = mm.datasets.load("sleepstudy")
    df = df.assign(Reaction=df.Subject.astype("category").cat.codes.astype(float))
    with pytest.warns(mm.errors.DegenerateFitWarning, match="negligible"):
        fit = mm.lmer("Reaction ~ Days + (1 | Subject)", df)
    assert fit.residual_vanishes() and fit.sigma < 1e-6 * df.Reaction.std()
    with pytest.raises(DataError, match="cannot profile this fit"):
        fit.confint("profile")


def test_profile_arguments_are_checked():
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", mm.datasets.load("sleepstudy"))
    with pytest.raises(mm.ArgumentError, match="level must lie strictly between 0 and 1"):
        fit.confint("profile", level=95)
    with pytest.raises(mm.ArgumentError, match="points must be at least 1"):
        fit.profile(points=0)
    with pytest.raises(mm.ArgumentError, match="method must be one of"):
        fit.confint(method=None)


def test_glmer_response_constant_at_the_boundary_warns_and_cannot_be_profiled():
    df = mm.datasets.load("sleepstudy").assign(y=0)
    with pytest.warns(mm.errors.DegenerateFitWarning, match="response is 0 in every row"):
        fit = mm.glmer("y ~ Days + (1 | Subject)", df, "poisson")
    with pytest.raises(DataError, match="response is 0 in every row.*diverge"):
        fit.confint("profile")
