"""The families' PIRLS kernels (core/families.py: ``Family.kernel``) give the numbers of the
families' own methods: the deviance, working weights and residuals, and the Laplace weights,
over linear predictors from -50 to 50 (the means clipped at both ends included).  The
binomial and Poisson kernels compute them with fewer operations (the logit's
``d mu / d eta`` is ``V(mu)``, the log link's is ``mu``); the identity is exact in
floating point for these formulas, and asserted to 4 ulp (``rtol = 1e-15``).  So are the
Newton kernels of the families with a dispersion on the log link (``d mu / d eta`` and
``d^2 mu / d eta^2`` read as ``mu``), and the negative binomial's."""

import numpy as np
import pytest

from mixedmodels.core.families import NegativeBinomial, make_family

ETA = np.concatenate([np.linspace(-50, 50, 201), [-745.0, -40.0, 36.5, 40.0, 700.0]])


def _response(name: str, kind: str, rng: np.random.Generator):
    n = ETA.size
    if name == "binomial":
        if kind == "binary":
            return rng.integers(0, 2, n).astype(float), np.ones(n)
        trials = rng.integers(1, 9, n).astype(float)
        return rng.integers(0, 9, n) % (trials + 1) / trials, trials
    return rng.poisson(3.0, n).astype(float), rng.uniform(0.5, 2.0, n)


CASES = [
    ("binomial", "logit", "binary"),
    ("binomial", "logit", "proportion"),
    ("binomial", "probit", "proportion"),
    ("binomial", "cloglog", "binary"),
    ("poisson", "log", "counts"),
    ("poisson", "sqrt", "counts"),
    ("gamma", "log", "counts"),
    ("gamma", "inverse", "counts"),
    ("inverse_gaussian", "log", "counts"),
    ("gaussian", "log", "counts"),
]


@pytest.mark.parametrize(("name", "link", "kind"), CASES)
def test_kernel_matches_the_family_methods(name, link, kind):
    rng = np.random.default_rng(11)
    family = make_family(name, link)
    y, w = _response(name, kind, rng)
    if name in ("gamma", "inverse_gaussian", "gaussian"):
        y = y + 0.5
        eta = np.clip(ETA, -20, 20) if link == "log" else np.abs(ETA) + 0.1
    elif link == "sqrt":
        eta = np.abs(ETA) + 0.1
    else:
        eta = ETA
    kernel = family.kernel(y, w)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mu = family.link.inverse(eta)
        np.testing.assert_array_equal(kernel.inverse(eta), mu)
        assert kernel.deviance(eta, mu) == pytest.approx(
            float(np.sum(family.unit_deviance_at(y, eta, mu, w))), rel=1e-15
        )
        h, r = kernel.working(eta, mu)
        h_ref, r_ref = family.working(y, eta, mu, w)
        np.testing.assert_allclose(h, h_ref, rtol=1e-15, atol=0)
        np.testing.assert_allclose(r, r_ref, rtol=1e-15, atol=0)
        np.testing.assert_allclose(
            kernel.laplace_weights(eta, mu),
            family.laplace_weights(y, eta, mu, w),
            rtol=1e-15,
            atol=0,
        )
        dev = kernel.deviance(eta, mu)
        assert kernel.objective_term(mu, dev) == pytest.approx(
            family.objective_term(y, mu, w, dev), rel=1e-15
        )


def test_negative_binomial_kernel_matches_the_family_methods():
    rng = np.random.default_rng(12)
    family = NegativeBinomial(k=2.5)
    y = rng.poisson(3.0, ETA.size).astype(float)
    w = np.ones(ETA.size)
    eta = np.clip(ETA, -20, 20)
    kernel = family.kernel(y, w)
    mu = family.link.inverse(eta)
    h, r = kernel.working(eta, mu)
    h_ref, r_ref = family.working(y, eta, mu, w)
    np.testing.assert_allclose(h, h_ref, rtol=1e-15, atol=0)
    np.testing.assert_allclose(r, r_ref, rtol=1e-15, atol=0)
    np.testing.assert_allclose(
        kernel.laplace_weights(eta, mu), family.laplace_weights(y, eta, mu, w), rtol=1e-15
    )
