"""The Lindstrom-Bates alternation's failures found by the review of issue 16
(tests/results/test_nlme_review.py; data and nlme's values from
tests/reference/nlmereview/make_nlmereview.R), one test per mechanism.

* ChickWeight's logistic has two fixed points of the alternation: nlme's estimates
  (logLik -2216.986) satisfy both halves of it in our code (theta is the ML optimum of the
  model linearized there, PNLS does not move), and so does the point the alternation reached
  from the self-start before the basin check (-2217.524).  They differ in chick 18, whose
  penalized least squares has two local minima; the search of its mode from 0 finds the
  other one (``_other_basin``).
* From nlme's start Asym = 937, three Gauss-Newton steps per early PNLS step led to a
  point at Asym = 6e5 where the fixed effects are not determined; that is now a
  non-converged fit with a ConvergenceWarning naming the cause.
* nlme's default fit of Indometh is not a fixed point: a PNLS step from it (nlme's own
  covariance) still moves the fixed effects by 1e-3, which is the 6.9e-3 gap in logLik
  between nlme's default fit and the fixed point (ours and nlme's at pnlsTol = 1e-7).

Tolerances: "a fixed point" is checked to 1e-6 relative on theta and the fixed effects
(nlme's estimates are written to 15 digits from a fit at tolerance 1e-9).  Measured: theta
moves 0 (the LME step's Newton iteration predicts no gain at all four points), the fixed
effects 2.2e-9 (nlme's ChickWeight), 5.9e-11 and 9.7e-11 (our two ChickWeight fixed points),
3.7e-9 (our Indometh) against 1.2e-3 for nlme's default Indometh fit.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.core.nonlinear import deviance, gram, pls
from mixedmodels.optim import nonlinear as onl

HERE = Path(__file__).resolve().parents[1] / "reference" / "nlmereview"
REF = json.loads((HERE / "nlmereview_reference.json").read_text())


def _fit(name: str, **changes) -> mm.NlmeFit:
    py = dict(REF["cases"][name]["py"])
    data = pd.read_csv(HERE / "data" / f"{py.pop('data')}.csv")
    if py.get("start") is None:
        py.pop("start", None)
    py.update(changes)
    return mm.nlme(data=data, **py)


def _state(fit: mm.NlmeFit, ref: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nlme's fixed effects, random effects (in our group order) and theta."""
    ours = [str(g) for g in fit.ranef.index]
    b = np.empty_like(np.asarray(ref["ranef"], dtype=float))
    for row, group in zip(ref["ranef"], ref["ranef_groups"], strict=True):
        b[ours.index(str(group))] = row
    sd = np.asarray(ref["re_sd"], dtype=float)
    q = sd.size
    cor = np.eye(q)
    cor[np.tril_indices(q, -1)] = np.atleast_1d(ref["re_cor"])  # R's lower triangle
    cor = np.tril(cor) + np.tril(cor, -1).T
    problem = fit.problem
    if problem.diagonal:
        theta = sd / ref["sigma"]
    else:
        theta = problem.theta_of(np.linalg.cholesky(cor * np.outer(sd, sd)) / ref["sigma"])
    return np.asarray(ref["fixef"], dtype=float), b, theta


def _is_fixed_point(problem, beta, b, theta) -> tuple[float, float]:
    """The largest relative moves of theta (the LME step at the linearization at
    ``(beta, b)``) and of the fixed effects (PNLS from ``(beta, b)`` at that theta)."""
    lin = problem.linearize(beta, b)
    theta_new, _ = onl._theta_step(problem, gram(problem, lin), theta, True, None)
    lam = problem.lambda_of(theta)
    ones = np.ones(problem.n)
    beta_new, *_ = onl._pnls(problem, beta, onl._u_of(b, lam), lam, ones, max_iter=50)
    return (float(np.max(np.abs(theta_new - theta) / np.abs(theta))),
            float(np.max(np.abs(beta_new - beta) / np.abs(beta))))


def _loglik(problem, beta, b, theta) -> float:
    sol = pls(gram(problem, problem.linearize(beta, b)), problem.lambda_of(theta))
    return -deviance(sol, problem.n, problem.p, False) / 2


@pytest.fixture(scope="module")
def chick() -> mm.NlmeFit:
    return _fit("chick_selfstart")


def test_nlme_chick_estimates_are_a_fixed_point(chick):
    ref = REF["cases"]["chick_nlme_start"]["reference"]
    beta, b, theta = _state(chick, ref)
    moves = _is_fixed_point(chick.problem, beta, b, theta)
    assert max(moves) < 1e-6
    assert _loglik(chick.problem, beta, b, theta) == pytest.approx(ref["logLik"], rel=1e-9)


def test_chick_has_a_second_fixed_point_in_chick_18(chick, monkeypatch):
    """Without the basin check the self-start reaches the other fixed point: a fixed point
    too, 0.54 lower in logLik, where chick 18's mode searched from 0 is another one."""
    monkeypatch.setattr(onl, "MODE_RESTARTS", 0)
    other = _fit("chick_selfstart")
    ref = REF["cases"]["chick_nlme_start"]["reference"]
    assert other.converged
    assert other.loglik < ref["logLik"] - 0.5
    est, problem = other.estimate, other.problem
    assert max(_is_fixed_point(problem, est.beta, est.b, est.theta)) < 1e-6
    lam = problem.lambda_of(est.theta)
    u_zero, _, _ = onl.conditional_modes(problem, est.beta, lam, np.zeros_like(est.b))
    apart = np.max(np.abs(u_zero - onl._u_of(est.b, lam)), axis=1) > onl.MODE_APART
    assert [str(g) for g in other.ranef.index[apart]] == ["18"]
    # with the check (the fixture): nlme's fixed point
    assert chick.loglik == pytest.approx(ref["logLik"], rel=1e-9)
    assert chick.estimate.pnls_iterations[: len(est.pnls_iterations)] == est.pnls_iterations


def test_far_start_without_long_early_pnls_steps_is_not_converged(monkeypatch):
    """The reproducer of the fit that said converged at Asym = 6e5: with the early PNLS
    steps capped at 3 Gauss-Newton steps again it ends where the fixed effects are not
    determined, and says so.  (Without the secant extrapolation, which moves this drifting
    path elsewhere: with it the same run ends in a singular system, a ConvergenceError.)"""
    monkeypatch.setattr(onl, "PNLS_EXTEND", np.inf)
    monkeypatch.setattr(onl.SecantAcceleration, "ALIGNED", np.inf)
    with pytest.warns(mm.errors.ConvergenceWarning, match="fixed effects are not determined"):
        fit = _fit("chick_nlme_start")
    assert not fit.converged
    assert fit.fixef["Asym"] > 1e4  # where it went
    assert "condition number" in fit.estimate.message


def test_far_start_reaches_nlme(recwarn):
    fit = _fit("chick_nlme_start")
    assert fit.converged
    assert fit.estimate.pnls_iterations[0] == onl.PNLS_MAX  # the first step went on
    assert fit.loglik == pytest.approx(REF["cases"]["chick_nlme_start"]["reference"]["logLik"],
                                       rel=1e-9)
    assert not [w for w in recwarn if issubclass(w.category, mm.errors.MixedModelsWarning)]


def test_nlme_default_indometh_is_not_a_fixed_point():
    with warnings.catch_warnings():
        warnings.simplefilter("error", mm.errors.MixedModelsWarning)
        fit = _fit("indometh")
    case = REF["cases"]["indometh"]
    default = case["default"]
    beta, b, theta = _state(fit, default)
    # nlme's covariance at its default stop (pdDiag: the sds it reports)
    np.testing.assert_allclose(np.sqrt(np.diag(default["D"])), default["re_sd"], rtol=1e-12)
    theta_move, beta_move = _is_fixed_point(fit.problem, beta, b, theta)
    assert beta_move > 1e-4  # PNLS from nlme's default estimates moves them
    est = fit.estimate
    assert max(_is_fixed_point(fit.problem, est.beta, est.b, est.theta)) < 1e-6
    # the gap in logLik is nlme's early stop: ours is nlme's at pnlsTol = 1e-7
    assert default["logLik"] - fit.loglik > 5e-3
    assert fit.loglik == pytest.approx(case["reference"]["logLik"], rel=1e-6)


def test_weighted_conditional_modes_are_stationary(chick):
    """conditional_modes with row weights: the weighted penalized objective's gradient
    (central differences) vanishes at the modes it returns, which differ from the
    unweighted ones."""
    problem, est = chick.problem, chick.estimate
    lam = problem.lambda_of(est.theta)
    s = np.linspace(0.5, 2.0, problem.n)
    u_w, _, _ = onl.conditional_modes(problem, est.beta, lam, np.zeros_like(est.b), weights=s)
    u_1, _, _ = onl.conditional_modes(problem, est.beta, lam, onl._u_of(est.b, lam))

    def objective(u):
        r = s * (problem.y - problem.fitted(est.beta, u @ lam.T))
        return np.bincount(problem.groups, r * r, minlength=problem.n_groups) + (u * u).sum(1)

    h = 1e-5
    grad = np.empty_like(u_w)
    for k in range(u_w.shape[1]):
        e = np.zeros_like(u_w)
        e[:, k] = h
        grad[:, k] = (objective(u_w + e) - objective(u_w - e)) / (2 * h)
    assert np.max(np.abs(grad)) < 1e-4 * np.max(objective(u_w))
    assert np.max(np.abs(u_w - u_1)) > 1e-2


@pytest.mark.parametrize(("r", "collinear"), [(0.99, False), (1 - 1e-9, False),
                                              (1 - 1e-14, True), (-(1 - 1e-14), True)])
def test_collinear_fixed_effects_closed_form(r, collinear):
    """The condition number of a 2 x 2 correlation matrix is (1 + |r|) / (1 - |r|): above
    1e12 (|r| > 1 - 2e-12) the fixed point is not an estimate; the sds do not matter."""
    sd = np.array([3e5, 2e-3])
    vcov = np.outer(sd, sd) * np.array([[1.0, r], [r, 1.0]])
    message = onl._collinear_fixed_effects(vcov)
    assert (message is not None) == collinear
    if collinear:  # the condition number it reports (1 - |r| = 1e-14 holds ~1% rounding)
        reported = float(re.search(r"is ([0-9.e+]+):", message).group(1))
        assert reported == pytest.approx((1 + abs(r)) / (1 - abs(r)), rel=0.05)


@pytest.mark.parametrize("p", [2, 3, 5])
def test_collinear_bound_gives_the_condition_numbers_answer(p):
    """With the inverse of the covariance (``precision / scale``, as the wrap-up passes
    ``X'V^-1X`` and sigma^2) the bound ``p sum_k V_kk (V^-1)_kk`` is at least the
    correlation matrix's condition number (numpy's ``np.linalg.cond``, the closed form of
    the 2 x 2 case's (1 + |r|) / (1 - |r|) checked above), and the answer is the exact
    one's: None for well-conditioned matrices, the same message for collinear ones."""
    rng = np.random.default_rng(p)
    for near in [1e-1, 1e-4, 1e-7, 1e-10, 1e-13, 1e-15]:
        a = rng.normal(size=(p, p))
        a[:, -1] = a[:, 0] + near * rng.normal(size=p)  # columns nearly collinear
        scales = 10.0 ** rng.uniform(-3, 3, p)  # (units: the bound does not depend on them)
        a = a @ a.T * np.outer(scales, scales)
        sigma2 = 0.37
        try:
            vcov = sigma2 * np.linalg.inv(a)
        except np.linalg.LinAlgError:  # (exactly singular: no covariance to judge)
            continue
        if np.all(np.isfinite(vcov)) and np.all(np.diag(vcov) > 0):
            sd = np.sqrt(np.diag(vcov))
            exact = np.linalg.cond(vcov / np.outer(sd, sd))
            bound = p * np.sum(np.diag(vcov) * np.diag(a)) / sigma2
            assert bound >= exact * (1 - 1e-6) or exact > 1e10
        with np.errstate(invalid="ignore"):  # (a rounded inverse's negative variances)
            assert onl._collinear_fixed_effects(vcov, a, sigma2) == (
                onl._collinear_fixed_effects(vcov))


def test_collinear_fixed_effects_not_finite():
    assert "not finite" in onl._collinear_fixed_effects(np.array([[1.0, np.inf], [np.inf, 1.0]]))
    assert onl._collinear_fixed_effects(np.array([[4.0]])) is None


def test_dnase_far_start_left_a_variance_at_0_that_is_no_lme_optimum(monkeypatch):
    """The reproducer of the boundary check: without it, DNase's SSfpl with random A + B
    from A = 0.5, B = 1, xmid = 0, scal = 0.5 converges with Lambda_11 = 0 and logLik
    354.13, where the cold LME step at the same linearization lowers the deviance by 56;
    with it the fit is dnase_general2's fixed point (382.214, as nlme)."""
    monkeypatch.setattr(onl, "BOUNDARY", -1.0)  # never at the bound: no check
    stuck = _fit("dnase_general2_far_start")
    ref = REF["cases"]["dnase_general2_far_start"]["reference"]
    assert stuck.converged
    assert stuck.loglik < ref["logLik"] - 20
    problem, est = stuck.problem, stuck.estimate
    assert est.theta[0] == 0.0
    g = gram(problem, problem.linearize(est.beta, est.b))

    def ml_deviance(theta):
        return deviance(pls(g, problem.lambda_of(theta), False), problem.n, problem.p, False)

    cold, _ = onl._theta_step(problem, g, est.theta, False, None)
    assert ml_deviance(cold) < ml_deviance(est.theta) - 50
    monkeypatch.setattr(onl, "BOUNDARY", 1e-4)
    fit = _fit("dnase_general2_far_start")
    assert fit.converged
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-9)


def test_varpower_chick_18_is_found_from_its_mirror_image_not_from_0(monkeypatch):
    """With varPower, the fit without the basin check has chick 18 at (-175, -6); under
    that fit's weights its mode searched from 0 is the same one, from -u_18 it is another
    (83, 4.7), and with the check the fit is nlme's (pnlsTol = 1e-6), 0.14 higher."""
    monkeypatch.setattr(onl, "MODE_RESTARTS", 0)
    first = _fit("chick_varpower_ml")
    problem, est = first.problem, first.estimate
    lam = problem.lambda_of(est.theta)
    u_fit = onl._u_of(est.b, lam)
    i = [str(g) for g in first.ranef.index].index("18")
    assert est.b[i, 0] < -100
    from_zero, _, _ = onl.conditional_modes(problem, est.beta, lam, np.zeros_like(u_fit),
                                            weights=est.weights)
    assert np.max(np.abs(from_zero - u_fit)) < onl.MODE_APART
    mirror = np.where(np.arange(len(u_fit))[:, None] == i, -u_fit, u_fit)
    from_mirror, _, _ = onl.conditional_modes(problem, est.beta, lam, mirror, weights=est.weights)
    apart = np.max(np.abs(from_mirror - u_fit), axis=1) > onl.MODE_APART
    assert np.flatnonzero(apart).tolist() == [i]
    assert (from_mirror[i] @ lam.T)[0] > 50
    monkeypatch.setattr(onl, "MODE_RESTARTS", 2)
    fit = _fit("chick_varpower_ml")
    ref = REF["cases"]["chick_varpower_ml"]["reference"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-9)
    assert fit.loglik > first.loglik + 0.1


def test_nlme_indometh_from_a_far_start_is_not_a_fixed_point():
    """nlme from A1 = 5, lrc1 = 1.5, A2 = 1, lrc2 = -0.5 reports logLik 55.748 (with
    sd(lrc1) = 3e-6), above the fixed point's 54.588 that we reach from there.  It is no
    fixed point: the LME step at its own linearization raises the linearized model's
    logLik by moving sd(lrc1) off 0 (nlme's pdDiag is parametrized by log sds, which
    stall near 0), and the alternation from nlme's estimates returns to 54.588."""
    case = REF["cases"]["indometh_start_5"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", mm.errors.MixedModelsWarning)
        fit = _fit("indometh_start_5")
    problem = fit.problem
    beta, b, theta = _state(fit, case["reference"])
    assert theta[1] < 1e-3
    assert _loglik(problem, beta, b, theta) == pytest.approx(case["reference"]["logLik"],
                                                             rel=1e-9)
    g = gram(problem, problem.linearize(beta, b))
    better, _ = onl._theta_step(problem, g, theta, False, None)
    assert better[1] > 0.1
    assert _loglik(problem, beta, b, better) > case["reference"]["logLik"] + 1e-4
    again = onl.fit_lindstrom_bates(problem, beta, theta0=theta, b0=b)
    indometh = REF["cases"]["indometh"]["reference"]["logLik"]
    assert again.converged
    assert again.loglik == pytest.approx(indometh, rel=1e-6)
    assert fit.loglik == pytest.approx(indometh, rel=1e-6)
