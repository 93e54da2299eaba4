"""The joint draw of (beta, b) against the textbook form of Henderson's equations.

Reference: the precision of (b, beta) given the variances written densely from a dense Z,
``Q = [Z X]'W[Z X] / sigma^2 + blockdiag(I (x) Sigma_k^-1, P)``, solved and inverted by
numpy.  The sampler works on the u scale through a Schur complement and never forms Q: the
two must give the same mean and covariance to rounding (1e-8 relative).  The draw is
linear in its standard-normal noise, so feeding unit vectors as "noise" recovers the
covariance exactly (no Monte Carlo).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

import mixedmodels as mm
import mixedmodels.core.henderson as henderson
from mixedmodels.core.henderson import HendersonSystem


@pytest.fixture(autouse=True)
def one_blas_thread():
    """As the sampler runs (BLAS threads only contend on these sizes)."""
    with threadpool_limits(limits=1):
        yield


class UnitNoise:
    """Stands in for a Generator: ``standard_normal`` returns slices of one unit vector."""

    def __init__(self, size: int, index: int | None):
        self.vector = np.zeros(size)
        if index is not None:
            self.vector[index] = 1.0
        self.used = 0

    def standard_normal(self, shape):
        count = int(np.prod(shape))
        out = self.vector[self.used : self.used + count].reshape(shape)
        self.used += count
        return out


def _crossed_data(n_a: int, n_b: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_a, n)
    b = rng.integers(0, n_b, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=n_a)[a] + (0.5 + 0.3 * rng.normal(size=n_b))[b] * x
    y += rng.normal(size=n_b)[b] * 0.7 + rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": [f"a{i}" for i in a],
            "b": [f"b{i}" for i in b],
            "w": rng.uniform(0.5, 2, n),
        }
    )


CASES = {
    "one vector term": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", {}),
    "nothing outside the first term": ("Reaction ~ 0 + (1 | Subject)", "sleepstudy", {}),
    "crossed scalars": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", {}),
    "nested scalars": ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "Pastes", {}),
    "crossed, vector rest": ("y ~ x + (1 | a) + (x | b)", "crossed", {}),
    "weights": ("y ~ x + (1 | a) + (x | b)", "crossed", {"weights": "w"}),
    # weights that change each sweep (the logit sampler): cross products by bincount
    "weights, per-sweep products": (
        "y ~ x + (1 | a) + (x | b)",
        "crossed",
        {"weights": "w", "varying": True},
    ),
    # the large-model paths, forced on small data: the precomputed fill map (r >= 64),
    # with scalar and with vector terms in the rest; sparse products for a vector first term
    "fill map": ("y ~ x + (1 | a) + (1 | b)", "crossed-large", {"large": True}),
    "fill map, vector rest": ("y ~ x + (1 | a) + (x | b)", "crossed-large", {"large": True}),
    "sparse, vector first": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", {"large": True}),
}


def _data(name: str) -> pd.DataFrame:
    if name == "crossed":
        return _crossed_data(100, 40, 500, 3)
    if name == "crossed-large":
        return _crossed_data(200, 70, 600, 4)
    return mm.datasets.load(name)


def _dense_reference(fit, sigma2, covs, precision, mean_prior):
    Z = fit.Z.toarray()
    C = np.hstack([Z, fit.X])
    w = np.ones(fit.nobs) if fit.design.weights is None else fit.design.weights
    q = Z.shape[1]
    Q = C.T @ (C * w[:, None]) / sigma2
    start = 0
    for t, cov in zip(fit.design.terms, covs, strict=True):
        inv = np.linalg.inv(cov)
        for _ in range(t.block.n_levels):
            Q[start : start + len(cov), start : start + len(cov)] += inv
            start += len(cov)
    Q[q:, q:] += np.diag(precision)
    rhs = C.T @ (w * fit.design.y) / sigma2
    rhs[q:] += precision * mean_prior
    return np.linalg.solve(Q, rhs), np.linalg.inv(Q)


@pytest.mark.parametrize("case", list(CASES))
def test_mean_and_covariance_match_the_dense_equations(case, monkeypatch):
    formula, name, kwargs = CASES[case]
    kwargs = dict(kwargs)
    varying = kwargs.pop("varying", False)
    if kwargs.pop("large", False):
        monkeypatch.setattr(henderson, "DENSE_FILL_FLOPS", 0)
    fit = mm.lmer(formula, _data(name), **kwargs)
    blocks = [t.block for t in fit.design.terms]
    system = HendersonSystem(
        blocks, fit.X, fit.design.y, fit.design.weights, fixed_weights=not varying
    )
    if "fill map" in case:
        assert system.plan is not None
    # variances away from the optimum (the sampler visits any), a proper prior on beta
    factors = (1.3, 0.7, 1.1)[: len(blocks)]
    lams = [lam * f for lam, f in zip(fit.problem.lambdas(fit.theta), factors, strict=True)]
    lams = [lam + np.diag(np.full(len(lam), 0.05)) for lam in lams]
    sigma2 = fit.sigma**2 * 0.9
    covs = [sigma2 * lam @ lam.T for lam in lams]
    p = fit.X.shape[1]
    precision, prior_mean = np.full(p, 0.01), np.linspace(-1, 1, p)
    mean, cov = _dense_reference(fit, sigma2, covs, precision, prior_mean)

    def as_vector(b, beta):
        return np.concatenate([*(bk.ravel() for bk in b), beta])

    got_mean = as_vector(*system.draw(lams, sigma2, precision, prior_mean, None))
    np.testing.assert_allclose(got_mean, mean, rtol=1e-8, atol=1e-8 * np.abs(mean).max())
    size = system.r + system.q0
    columns = []
    for i in range(size):
        draw = as_vector(*system.draw(lams, sigma2, precision, prior_mean, UnitNoise(size, i)))
        columns.append(draw - got_mean)
    a = np.array(columns).T  # draw = mean + A z
    np.testing.assert_allclose(a @ a.T, cov, rtol=1e-7, atol=1e-9 * np.abs(cov).max())


def test_at_the_reml_estimates_the_mean_is_fixef_and_the_modes():
    """Flat prior, REML variances: the conditional mean is (ranef, fixef) and the beta
    block of the covariance is vcov(beta) (the mixed-model equations; 1e-8, two solvers
    of one system)."""
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    system = HendersonSystem([t.block for t in fit.design.terms], fit.X, fit.design.y)
    lams = fit.problem.lambdas(fit.theta)
    zero = np.zeros(2)
    b, beta = system.draw(lams, fit.sigma**2, zero, zero, None)
    np.testing.assert_allclose(beta, fit.fixef, rtol=1e-8)
    np.testing.assert_allclose(b[0], fit.ranef["Subject"].to_numpy(), rtol=1e-6, atol=1e-8)
    columns = []
    for i in range(2):  # noise on the rest block only: the beta block of the covariance
        noise = UnitNoise(system.r + system.q0, system.r - 2 + i)
        columns.append(system.draw(lams, fit.sigma**2, zero, zero, noise)[1] - beta)
    a = np.array(columns).T
    np.testing.assert_allclose(a @ a.T, fit.vcov.to_numpy(), rtol=1e-8)


def test_a_singular_variance_is_a_valid_state():
    """Dyestuff2's REML fit has sd 0: the draw is then the fixed-effects-only fit (b = 0,
    beta = mean(y)) with variance sigma^2 / n."""
    data = mm.datasets.load("Dyestuff2")
    with pytest.warns(mm.MixedModelsWarning):
        fit = mm.lmer("Yield ~ 1 + (1 | Batch)", data)
    system = HendersonSystem([t.block for t in fit.design.terms], fit.X, fit.design.y)
    lams = [np.zeros((1, 1))]
    b, beta = system.draw(lams, 4.0, np.zeros(1), np.zeros(1), None)
    assert np.all(b[0] == 0)
    assert beta[0] == pytest.approx(data.Yield.mean(), rel=1e-12)
    noise = UnitNoise(system.r + system.q0, 0)
    _, drawn = system.draw(lams, 4.0, np.zeros(1), np.zeros(1), noise)
    assert (drawn[0] - beta[0]) ** 2 == pytest.approx(4.0 / len(data), rel=1e-12)
