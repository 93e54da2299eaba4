"""The residual problem's set-up without its unstructured LmmProblem
(core/residual_problem.py: MomentInputs, the bounds, the objective from pieces).

Identities between two representations, exact (the same arithmetic, so bit for bit):

* :class:`MomentInputs` gives the same shifted response, ``[X y]'[X y]`` and
  ``moment_start`` as the :class:`LmmProblem` of the same sorted rows, for one term of
  one column (random intercepts, a slope alone, no fixed effects, a constant response);
* the bounds and the objective from pieces equal the LmmProblem's (both criteria).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.residual_problem import MomentInputs
from mixedmodels.optim.start import moment_start

CASES = {
    "ovary_ar1": (
        "Ovary",
        "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)",
        {"correlation": lambda: mm.cor.AR1()},
    ),
    "pastes_cs": (
        "Pastes",
        "strength ~ 1 + (1 | batch)",
        {"correlation": lambda: mm.cor.CompSymm(group="batch/cask")},
    ),
    "orthodont_varident": (
        "Orthodont",
        "distance ~ age * Sex + (1 | Subject)",
        {"weights": lambda: mm.var.Ident("Sex")},
    ),
    "sleepstudy_ar1": (
        "sleepstudy",
        "Reaction ~ Days + (1 | Subject)",
        {"correlation": lambda: mm.cor.AR1()},
    ),
    "sleepstudy_slope_only": (
        "sleepstudy",
        "Reaction ~ Days + (0 + Days | Subject)",
        {"correlation": lambda: mm.cor.AR1()},
    ),
    "no_fixed_effects": (
        "sleepstudy",
        "Reaction ~ 0 + (1 | Subject)",
        {"correlation": lambda: mm.cor.AR1()},
    ),
}


def _problem(case, reml=True):
    data, formula, kwargs = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer(
            formula, mm.datasets.load(data), reml=reml, **{k: v() for k, v in kwargs.items()}
        )
    return fit.residual_problem


@pytest.mark.parametrize("case", list(CASES))
def test_moment_inputs_are_the_lmm_problems_own(case):
    rp = _problem(case)
    inputs = rp.moment_problem
    assert isinstance(inputs, MomentInputs)
    template = LmmProblem(rp.sorted_blocks, rp.X, rp.y, None, rp.reml)
    np.testing.assert_array_equal(inputs.y_work, template.y_work)
    np.testing.assert_array_equal(inputs.gram.xy_xy, template.gram.xy_xy)
    np.testing.assert_array_equal(inputs.theta_start(), template.theta_start())
    assert inputs.n_theta == template.n_theta
    for got, want in zip(moment_start(inputs), moment_start(template), strict=True):
        np.testing.assert_array_equal(got, want)


def test_moment_inputs_of_a_constant_response():
    # the fixed effects reproduce the response: nothing informs a start (lme4's)
    rp = _problem("sleepstudy_ar1")
    y = np.full(rp.n, 3.0)
    inputs = MomentInputs(rp.sorted_blocks, rp.X, y)
    template = LmmProblem(rp.sorted_blocks, rp.X, y, None, True)
    np.testing.assert_array_equal(inputs.gram.xy_xy, template.gram.xy_xy)
    for got, want in zip(moment_start(inputs), moment_start(template), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("reml", [True, False])
def test_bounds_and_objective_from_pieces_are_the_lmm_problems(reml):
    rp = _problem("ovary_ar1", reml)
    template = rp.unstructured_problem
    np.testing.assert_array_equal(rp.theta_lower_bounds(), template.theta_lower_bounds())
    n_extra = rp.n_cor + rp.n_var
    np.testing.assert_array_equal(rp.lower_bounds()[: rp.n_theta], template.theta_lower_bounds())
    np.testing.assert_array_equal(rp.upper_bounds()[: rp.n_theta], template.theta_upper_bounds())
    assert rp.lower_bounds().size == rp.upper_bounds().size == rp.n_theta + n_extra
    for pieces in [(3.25, -1.5, 812.0), (0.0, 0.0, 1e-3), (1.0, 2.0, 0.0)]:
        assert rp._objective_from_pieces(*pieces) == template.objective_from_pieces(*pieces)


def test_a_vector_term_uses_the_lmm_problem():
    rp = _problem("sleepstudy_slope_only")
    assert isinstance(rp.moment_problem, MomentInputs)
    data = mm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer("Reaction ~ Days + (Days | Subject)", data, correlation=mm.cor.AR1())
    assert isinstance(fit.residual_problem.moment_problem, LmmProblem)
