"""The GLM start of PIRLS (core/pirls.py ``glm_start``) where the IRLS steps from R's
``mustart`` fail at first: Gamma with the inverse link on the robustness review's simulated
set (tests/reference/robust, case sim_gamma_inverse).  Halving the failing step towards
beta = 0 (where the inverse link's mean is infinite) gave no usable start; halving towards
the least-squares fit of ``link(mustart)`` does.  The start is the GLM's maximum likelihood
estimate without random effects, so its score equations hold:
``X' diag(w mu_eta / V(mu)) (y - mu) = 0``."""

from __future__ import annotations

import warnings

import numpy as np

import mixedmodels as mm
from tests.test_robust_agreement import fit_case, load


def test_inverse_link_start_solves_the_glm_score_equations():
    ref, data = load("sim_gamma_inverse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        fit = fit_case(ref, data)
    problem = fit.problem
    beta = problem.glm_start()
    link, fam = problem.family.link, problem.family
    eta = problem.offset + problem.X @ beta
    mu = link.inverse(eta)
    assert np.all(np.isfinite(mu)) and np.all(mu > 0)
    contributions = problem.X * (problem.prior_weights * link.mu_eta(eta) / fam.variance(mu)
                                 * (problem.y - mu))[:, None]
    score = contributions.sum(axis=0)
    # IRLS converges quadratically and stops at a relative deviance change of 1e-10: the
    # score is measured at 6e-15 of the sum of the absolute contributions; 1e-8 is the bound
    # (the size of the last step's change allowed by that stopping rule)
    scale = np.abs(contributions).sum(axis=0)
    np.testing.assert_array_less(np.abs(score), 1e-8 * scale)
