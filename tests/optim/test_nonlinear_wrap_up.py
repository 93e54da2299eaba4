"""The wrap-up of the Lindstrom-Bates alternation (optim/nonlinear.py ``_wrap_up``,
``_final_solution``) against the code it replaced: ``pls(gram(problem, lin, s), lam)``.

With numba, ``_final_solution`` calls the kernels ``gram`` and ``pls`` call
(``gram_groups``, ``pls_groups``) in one call with the same arguments: the PWRSS, the log
determinants and the reduced system are the same bits.  Without, it is numpy's
``pls(gram(...), modes=False)``, whose PWRSS does not depend on the modes (the same bits as
with them); numpy's and the kernels' sums agree to rounding (1e-11 relative, as
tests/core/test_nonlinear_kernels.py states for these cross-products).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core import nonlinear as cn
from mixedmodels.core.nonlinear import deviance, gram, pls
from mixedmodels.optim import nonlinear as onl
from tests.reference.nlme.cases import arguments, reference

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed")


def _at_fit(name):
    data, kwargs = arguments(name, reference())
    fit = mm.nlme(data=data, **kwargs)
    problem, e = fit.problem, fit.estimate
    lin = problem.linearize(e.beta, e.b)
    s = problem.row_weights(lin.f, e.delta)
    return fit, problem, e, lin, s


@needs_numba
@pytest.mark.parametrize("name", ["orange_reml", "theoph", "co2_type_treatment",
                                  "soybean_variety_varpower"])
def test_final_solution_is_pls_of_gram(monkeypatch, name):
    fit, problem, e, lin, s = _at_fit(name)
    lam = problem.lambda_of(e.theta)
    got = onl._final_solution(problem, lin, s, lam)
    want = pls(gram(problem, lin, s), lam)
    assert got.u is None
    assert (got.pwrss, got.logdet_l) == (want.pwrss, want.logdet_l)
    assert got.xtx_reduced.tobytes() == want.xtx_reduced.tobytes()
    assert got.logdet_rx == want.logdet_rx
    # the wrap-up's log-likelihood, sigma and covariance from that solution
    log_weights = 0.0 if s is None else float(np.log(s).sum())
    wrapped = onl._wrap_up(problem, e.beta, e.b, e.theta, e.delta, 1, True, "converged", [],
                           0, lin=lin)
    assert wrapped.loglik == -deviance(want, problem.n, problem.p, problem.reml,
                                       log_weights) / 2
    sigma2 = want.pwrss / (problem.n - problem.p if problem.reml else problem.n)
    assert wrapped.sigma == float(np.sqrt(sigma2))
    assert wrapped.vcov.tobytes() == (sigma2 * np.linalg.inv(want.xtx_reduced)).tobytes()
    assert wrapped.converged and wrapped.message == "converged"
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    plain = onl._final_solution(problem, lin, s, lam)
    want_numpy = pls(gram(problem, lin, s), lam)
    assert plain.pwrss == want_numpy.pwrss and plain.logdet_l == want_numpy.logdet_l
    np.testing.assert_allclose(plain.pwrss, got.pwrss, rtol=1e-11)
    np.testing.assert_allclose(plain.logdet_l, got.logdet_l, rtol=1e-11)
    np.testing.assert_allclose(plain.xtx_reduced, got.xtx_reduced, rtol=1e-11)
