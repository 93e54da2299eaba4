"""Constant prior weights ``c`` describe the same model: lme4's log-likelihood (which
includes ``sum log w``) is unchanged, sigma scales by ``sqrt(c)`` (``Var e_i = sigma^2 /
w_i``) and theta, the random effects' sd relative to sigma, by ``1 / sqrt(c)``.
R agrees (lme4 1.1-31: logLik -871.8141 for c = 1, 1e3, 1e-3, 1e-8 on sleepstudy).

Before the fix the default start of a single vector term (optim/start.py,
``_per_level_regression_start``) takes ``rr = r'r`` unweighted against the weighted grams
``Z'WZ`` / ``Z'Wr``; with c ~ 1e-3 the moment estimate collapses to theta ~ 1e-3 and BOBYQA
stops on the boundary, 11.4 below the optimum (c = 1e-3, 3e-4, 1e-5 fail; 1e-2, 1e-4, 1e-6
happen to work).  Now ``rr = r'Wr`` with the problem's weights (in-memory and
out-of-core starts): every c gives the unweighted fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm

FORMULA = "Reaction ~ Days + (Days | Subject)"


def test_constant_weights_give_the_unweighted_fit():
    sleep = mm.datasets.load("sleepstudy")
    base = mm.lmer(FORMULA, sleep)
    for c in (1e-3, 3e-4, 1e-5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mm.MixedModelsWarning)
            fit = mm.lmer(FORMULA, sleep, weights=np.full(len(sleep), c))
        # both optimizers stop at ftol 1e-10 on a criterion of 1743: 1e-8 relative
        assert fit.loglik == pytest.approx(base.loglik, rel=1e-8)
        np.testing.assert_allclose(np.asarray(fit.theta) * np.sqrt(c), base.theta, rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(fit.fixef, base.fixef, rtol=1e-7)
