"""The starting theta of models with smooth terms (Schall's iteration).

Identities checked: for a Gaussian model whose every term has one variance (a smooth's
random parts, ``s(g, bs = "re")``), Schall's fixed point is the REML estimate (Wood and
Fasiolo 2017), so the start equals the optimum BOBYQA finds from lme4's start, to the
iteration's tolerance (1e-3 in log rho, 5e-4 relative in theta; 2e-3 allowed for the
optimizer's own stopping); a start changes the search, not the optimum: the criterion
from the default (Schall) start equals the one from lme4's start (1e-7 relative; both
optimizers stop at ftol 1e-10 absolute) in fewer evaluations; for a GLMM the
penalized-quasi-likelihood start leads to the same Laplace optimum (1e-6 relative:
glmer's first stage stops at ftol 1e-6).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.optim.glmm import fit_glmm
from mixedmodels.results.glmer_fit import GlmerFit
from mixedmodels.results.smooth import glmm_smooth_start, smooth_start

REF = json.loads((Path(__file__).parents[1] / "reference/smooths/gamm4_cases.json").read_text())[
    "cases"
]


def _formula(case) -> str:
    rhs = case["formula"].split("~", 1)[1].strip()
    random = case["random"]
    return f"y ~ {rhs}" + (f" + {random.lstrip('~').strip()}" if random else "")


def _lmer(name, **kwargs):
    case = REF[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(_formula(case), pd.DataFrame(case["data"]), **kwargs)


@pytest.mark.parametrize("name", ["gaussian_re", "gaussian_fs_m1", "gaussian_fs"])
def test_schall_fixed_point_is_the_reml_estimate(name):
    fit = _lmer(name, start="lme4")
    start = smooth_start(fit.design, fit._problem)
    theta = np.asarray(fit.theta)
    assert np.allclose(start, theta, rtol=2e-3, atol=0)


GAUSSIAN = sorted(n for n, c in REF.items() if c["family"] == "gaussian")


@pytest.mark.parametrize("name", GAUSSIAN)
def test_the_start_moves_the_search_not_the_optimum(name):
    default, lme4 = _lmer(name), _lmer(name, start="lme4")
    assert abs(default.objective - lme4.objective) <= 1e-7 * abs(lme4.objective)
    assert default._optimization.n_evaluations < lme4._optimization.n_evaluations


def test_a_model_without_one_variance_smooth_terms_gets_no_start():
    """Only smooth terms trigger the start (a plain model keeps the moment start)."""
    case = REF["gaussian_tp"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer("y ~ x + (1 | g)", pd.DataFrame(case["data"]))
    assert smooth_start(fit.design, fit._problem) is None


def test_glmm_start_reaches_the_laplace_optimum_of_lme4s_start():
    case = REF["poisson_cr"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer(_formula(case), pd.DataFrame(case["data"]), family="poisson")
    problem = fit._problem
    start = glmm_smooth_start(fit.design, problem)
    assert start is not None and np.all(np.isfinite(start))
    theta = np.asarray(fit.theta)
    assert np.all(np.abs(np.log(np.maximum(start, 1e-2) / np.maximum(theta, 1e-2))) < 0.2)
    plain = GlmerFit(fit.design, problem, fit_glmm(problem, 1), n_agq=1)  # lme4's start
    assert abs(fit.loglik - plain.loglik) <= 1e-6 * abs(plain.loglik)
    assert np.allclose(fit.fixef, plain.fixef, rtol=0, atol=1e-4)
    assert fit._solution.n_evaluations < plain._solution.n_evaluations


def test_numerical_trouble_means_no_start_not_an_error():
    """A singular system or a non-finite result gives None (the fit then starts where
    lme4 does) instead of an exception."""
    from mixedmodels.results.smooth import _guarded

    fit = _lmer("gaussian_re")

    def singular(design):
        raise np.linalg.LinAlgError("singular")

    assert _guarded(singular, fit.design) is None
    assert _guarded(lambda design: np.array([1.0, np.nan]), fit.design) is None
    assert np.array_equal(_guarded(lambda design: np.array([2.0]), fit.design), [2.0])


def test_no_start_beyond_the_row_limit(monkeypatch):
    """Beyond START_MAX_ROWS the start (a pass over the rows) is skipped: None."""
    from mixedmodels.results import smooth

    fit = _lmer("gaussian_re")
    assert smooth_start(fit.design, fit._problem) is not None
    monkeypatch.setattr(smooth, "START_MAX_ROWS", fit.design.n - 1)
    assert smooth_start(fit.design, fit._problem) is None
