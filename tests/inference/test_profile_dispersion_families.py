"""Profile intervals for lme4's dispersion families (gamma, inverse Gaussian, gaussian with
a link), which lme4 refuses ("can't (yet) profile GLMMs with non-fixed scale
parameters"): checked against independent computations of the same profile, since R has
none.

* A fixed effect's end: the model refitted by ``mm.glmer`` with that coefficient moved into
  an offset (theta and the other coefficients re-optimized by the fitting code, not the
  profile's) has twice its log-likelihood below the fit's by ``z^2``.
* An sd's end: on theta's (relative) scale, the deviance minimized by scipy's Powell over
  the other parameters (the engine's Laplace deviance, another optimizer) is ``z^2`` above
  the estimate's, and the reported sd is that end times lme4's sigma of the model there.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import optimize, stats

import mixedmodels as mm
from mixedmodels.inference import profile as profiling

Z = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def gamma_fit():
    data = mm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer("Reaction ~ Days + (Days | Subject)", data, "gamma", link="log")
    return data, fit


@pytest.fixture(scope="module")
def intervals(gamma_fit):
    return gamma_fit[1].confint(method="profile")


def test_rows_are_lme4s_names_without_sigma(gamma_fit, intervals):
    """sd/cor rows and fixed effects in lme4's order; sigma is not a parameter of the
    deviance, so it has no profile row (its Wald row is NaN, as lme4's)."""
    names = [n for n in gamma_fit[1].parameter_names if n != "sigma"]
    assert list(intervals.index) == names
    assert np.all(intervals["lower"] < intervals["upper"])


@pytest.mark.parametrize("end", ["lower", "upper"])
def test_fixed_effect_end_against_a_refit_with_it_in_the_offset(gamma_fit, intervals, end):
    """2 (logLik_hat - logLik_at_end) = z^2 within 1e-4 (measured 9e-8 and 1.2e-7: the
    profile's inner BOBYQA stops at a change of 1e-8 and its end is solved to ~1e-6 in
    zeta; the refit's optimum is as precise)."""
    data, fit = gamma_fit
    b = float(intervals.loc["Days", end])
    moved = data.assign(off=b * data["Days"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = mm.glmer(
            "Reaction ~ 1 + (Days | Subject)", moved, "gamma", link="log", offset="off"
        )
    assert 2.0 * (fit.loglik - refit.loglik) == pytest.approx(Z**2, abs=1e-4)


@pytest.mark.parametrize("target", [-Z, Z])
def test_sd_end_against_another_optimizer(gamma_fit, intervals, target):
    """The intercept sd's end on theta's scale (``theta_1`` itself: the first diagonal of
    the relative factor): the other two theta and both coefficients minimized by Powell
    from the estimate give ``dev - dev_hat = z^2`` within 1e-4 (measured 1e-7), and the
    reported sd is ``theta_1`` times lme4's sigma at that minimum within 2e-5 relative
    (measured 6e-7: the two optima differ in the other parameters by the optimizers'
    tolerances)."""
    _, fit = gamma_fit
    (prof,) = [p for p in profiling._glmm_profiles(fit) if p.name == "sd_(Intercept)|Subject"]
    x = profiling._solve_end(prof, target)
    problem = fit.problem
    u0 = fit._solution.mode.u
    base = fit._solution.objective

    def deviance(rest: np.ndarray) -> float:
        theta = np.array([x, rest[0], rest[1]])
        if theta[2] < 0:
            return 1e10
        return problem.mode(theta, rest[2:], u0).laplace

    start = np.concatenate([fit.theta[1:], fit.fixef.to_numpy()])
    found = optimize.minimize(
        deviance, start, method="Powell", options={"xtol": 1e-9, "ftol": 1e-13, "maxfev": 20000}
    )
    assert found.fun - base == pytest.approx(Z**2, abs=1e-4)
    mode = problem.mode(np.array([x, *found.x[:2]]), found.x[2:], u0)
    sigma = problem.family.fit_sigma(problem.y, mode.mu, mode.u, problem.prior_weights)
    end = "lower" if target < 0 else "upper"
    assert intervals.loc["sd_(Intercept)|Subject", end] == pytest.approx(x * sigma, rel=2e-5)


def test_inverse_gaussian_scalar_term_profiles(gamma_fit):
    """sleepstudy's inverse Gaussian log-link fit with ``(1 | Subject)``: the fixed-effect
    end against the offset refit as above (1e-4; measured 8e-8), and the sd interval contains the
    estimate (varcorr's sigma * theta)."""
    data, _ = gamma_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer("Reaction ~ Days + (1 | Subject)", data, "inverse_gaussian", link="log")
        ci = fit.confint(method="profile")
        moved = data.assign(off=float(ci.loc["Days", "upper"]) * data["Days"])
        refit = mm.glmer(
            "Reaction ~ 1 + (1 | Subject)", moved, "inverse_gaussian", link="log", offset="off"
        )
    assert 2.0 * (fit.loglik - refit.loglik) == pytest.approx(Z**2, abs=1e-4)
    sd = float(fit.varcorr.query("grp == 'Subject'")["sdcor"].iloc[0])
    lower, upper = ci.loc["sd_(Intercept)|Subject"]
    assert math.isfinite(lower) and lower < sd < upper


def test_profile_intervals_show_progress_per_parameter(gamma_fit, monkeypatch, capsys):
    """Forced on (``MIXEDMODELS_PROGRESS=1``), the bar counts one step per parameter and
    ends at the number of rows (5 here); off by default when stderr is not a terminal."""
    _, fit = gamma_fit
    monkeypatch.setenv("MIXEDMODELS_PROGRESS", "1")
    table = fit.confint(method="profile")
    err = capsys.readouterr().err
    assert f"profile: {len(table)}/{len(table)}" in err
    monkeypatch.setenv("MIXEDMODELS_PROGRESS", "0")
    fit.confint(method="profile")
    assert "profile:" not in capsys.readouterr().err
