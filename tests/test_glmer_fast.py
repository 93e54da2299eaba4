"""``glmer(fast=True)`` (MixedModels.jl's fast fit: beta from PIRLS, theta optimized).

References: lme4 1.1-31's ``nAGQ = 0`` fit (the same objective; reference/glmer_fast/,
made by make_fast_reference.R with PIRLS and the optimizer converged tightly): theta and
beta within 1e-4 (the agreement tests' tolerance for the Laplace fits) and a
log-likelihood no lower than lme4's (1e-6 relative); the identity of the two spellings
(``fast=True`` and ``n_agq=0``, exactly); and the ordering of the optima: the fast fit
minimizes the Laplace deviance over the curve ``beta = beta(theta)``, a subset of the
default fit's ``(theta, beta)``, so its log-likelihood cannot exceed the default's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError

REFERENCE = json.loads(
    (Path(__file__).parent / "reference" / "glmer_fast" / "fast.json").read_text()
)
CASES = [
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", "poisson"),
]


def _fit(data, formula, family, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.glmer(formula, mm.datasets.load(data), family, **kw)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fast_is_the_nagq0_fit_and_no_better_than_laplace(case):
    fast = _fit(*case, fast=True)
    nagq0 = _fit(*case, n_agq=0)
    default = _fit(*case)
    np.testing.assert_array_equal(fast.theta, nagq0.theta)
    np.testing.assert_array_equal(fast.fixef.to_numpy(), nagq0.fixef.to_numpy())
    assert fast.n_agq == 0
    # a constrained optimum: no higher than the default's (1e-7 for the default's own
    # optimizer tolerance)
    assert fast.loglik <= default.loglik + 1e-7 * abs(default.loglik)
    ref = REFERENCE[case[0]]
    np.testing.assert_allclose(fast.theta, ref["theta"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast.fixef.to_numpy(), ref["fixef"], rtol=1e-4, atol=1e-4)
    assert fast.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])


def test_fast_refuses_quadrature():
    data, formula, family = CASES[0]
    with pytest.raises(ArgumentError, match="fast=True"):
        mm.glmer(formula, mm.datasets.load(data), family, fast=True, n_agq=5)
