"""The Poisson sampler's joint update of ``(beta, b)`` (:class:`JointLaplaceStep`) and
the nested-intercept centring, checked in isolation.

* The Laplace centre is the mode of the conditional posterior: its penalized score,
  written densely from a dense ``Z``, is zero (1e-6 relative to the score's terms), and
  the precision's weights are ``mu`` there (1e-5: Newton stops at a 1e-6 change of eta).
* The Gaussian's quadratic form computed from the linear predictor equals the dense
  ``d' H d`` with ``H = [Z X]' diag(w) [Z X] + blockdiag(Sigma^-1, P)`` (1e-9 relative).
* Exactness: with the variances held fixed, a chain of joint steps alone (``rho = 0``, the
  independence proposal, and ``rho = 0.6``) has the conditional posterior's mean of
  ``beta`` and of a brood's effect and the variance of ``beta``, computed by adaptive
  Gauss-Hermite quadrature (a brood's likelihood depends on its total only; 12 nodes
  around each integrand's mode; ``beta`` on a 400-point grid), within 4 Monte Carlo
  standard errors.  A step that does not keep the posterior (a wrong sign in the
  acceptance ratio, a proposal that is not reversible for the Gaussian) shifts these by
  many standard errors.
* The nested centring step keeps ``b_inner + b_outer[parent]`` (so the likelihood) and
  draws the outer effects from their normal conditional: its mean and variance over
  many draws match the closed form (4 Monte Carlo standard errors; variance within 10%).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from threadpoolctl import threadpool_limits

import mixedmodels as mm
from mixedmodels.core.diagnostics import ess_bulk
from mixedmodels.core.henderson import term_matrix
from mixedmodels.core.poisson import JointLaplaceStep, _centre_nested, nested_intercepts
from mixedmodels.core.terms import RandomBlock

TAU = 0.8
PRIOR_SD = 2.0


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def broods():
    """grouseticks' ticks with a random intercept per brood and a covariate."""
    d = mm.datasets.load("grouseticks")
    codes = d.BROOD.cat.codes.to_numpy()
    levels = int(codes.max()) + 1
    y = d.TICKS.to_numpy(float)
    return codes, levels, y


def _step(codes, levels, y, X):
    block = RandomBlock(codes, levels, np.ones((len(y), 1)))
    return JointLaplaceStep([block], X, y, np.zeros(len(y))), block


def _dense(step: JointLaplaceStep, factors):
    z = np.hstack([term_matrix(b).toarray() for b in step.blocks])
    a = np.hstack([z, step.X])
    prior = np.concatenate(
        [
            np.repeat(1 / np.diag(f) ** 2, b.n_levels)
            for f, b in zip(factors, step.blocks, strict=True)
        ]
    )
    return a, prior


def test_centre_is_the_mode_and_the_quadratic_form_is_h(broods):
    codes, levels, y = broods
    x = np.linspace(-1, 1, len(y))
    X = np.column_stack([np.ones(len(y)), x])
    step, _ = _step(codes, levels, y, X)
    factors = [np.array([[TAU]])]
    precision, mean = np.array([0.0, 0.25]), np.array([0.0, 0.5])
    inverses = [1 / f for f in factors]
    reference = (np.zeros(2), [np.zeros((levels, 1))])
    beta, b, eta, weights = step._centre(factors, inverses, precision, mean, reference)
    a, prior = _dense(step, factors)
    mu = np.exp(eta)
    score = a.T @ (y - mu) - np.concatenate([b[0][:, 0] * prior, precision * (beta - mean)])
    scale = np.abs(a).T @ (y + mu)
    assert np.all(np.abs(score) < 1e-6 * scale)
    np.testing.assert_allclose(weights, mu, rtol=1e-5)  # Newton stops at 1e-6 in eta
    # the quadratic form at an arbitrary point
    rng = np.random.default_rng(1)
    b2 = [b[0] + rng.standard_normal((levels, 1))]
    beta2 = beta + rng.standard_normal(2)
    eta2 = step._eta(beta2, b2)
    got = -2 * step._log_gaussian(beta2, b2, eta2, (beta, b, eta, weights), inverses, precision)
    h = a.T @ (a * weights[:, None]) + np.diag(np.concatenate([prior, precision]))
    d = np.concatenate([b2[0][:, 0] - b[0][:, 0], beta2 - beta])
    assert got == pytest.approx(float(d @ h @ d), rel=1e-9)


def _exact(y_tot, n_tot, focus: int):
    """Conditional posterior (given tau) of ``y_gi ~ Poisson(exp(beta + b_g))``,
    ``b_g ~ N(0, TAU^2)``, ``beta ~ N(0, PRIOR_SD^2)``: mean and variance of beta, mean of
    ``b_focus``."""
    nodes, wts = np.polynomial.hermite.hermgauss(12)
    beta = np.linspace(-2.0, 2.5, 400)
    b = np.zeros((beta.size, y_tot.size))
    tau2 = TAU**2
    for _ in range(60):  # Newton for each integrand's mode
        mu = n_tot * np.exp(beta[:, None] + b)
        b = b + np.clip((y_tot - mu - b / tau2) / (mu + 1 / tau2), -2, 2)
    scale = 1 / np.sqrt(n_tot * np.exp(beta[:, None] + b) + 1 / tau2)
    points = b[..., None] + np.sqrt(2) * scale[..., None] * nodes
    eta = beta[:, None, None] + points
    log_g = y_tot[:, None] * eta - n_tot[:, None] * np.exp(eta) - 0.5 * points**2 / tau2
    log_g += nodes**2 + np.log(wts * np.sqrt(2) * scale[..., None])
    log_group = special.logsumexp(log_g, axis=-1)  # (beta, groups)
    focus_mean = np.exp(
        special.logsumexp(log_g[:, focus], b=points[:, focus], axis=-1) - log_group[:, focus]
    )
    log_post = log_group.sum(-1) - 0.5 * (beta / PRIOR_SD) ** 2
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    assert w[[0, -1]].sum() < 1e-8  # the grid holds the posterior
    m = float(w @ beta)
    return m, float(w @ (beta - m) ** 2), float(w @ focus_mean)


@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_joint_steps_alone_keep_the_conditional_posterior(broods, rho):
    codes, levels, y = broods
    X = np.ones((len(y), 1))
    step, _ = _step(codes, levels, y, X)
    factors = [np.array([[TAU]])]
    precision, mean = np.array([1 / PRIOR_SD**2]), np.zeros(1)
    y_tot = np.bincount(codes, weights=y, minlength=levels)
    n_tot = np.bincount(codes, minlength=levels).astype(float)
    focus = int(np.argmax(y_tot))
    exact_mean, exact_var, exact_focus = _exact(y_tot, n_tot, focus)
    rng = np.random.default_rng(7)
    reference = (np.zeros(1), [np.zeros((levels, 1))])
    beta, b, _, _ = step._centre(factors, [1 / f for f in factors], precision, mean, reference)
    beta = beta + 0.3  # a start off the mode
    draws, burn = 1500, 100
    chain = np.empty((draws, 3))
    for i in range(burn + draws):
        beta, b, _ = step.update(beta, b, factors, precision, mean, reference, rho, rng)
        if i >= burn:
            chain[i - burn] = beta[0], (beta[0] - exact_mean) ** 2, b[0][focus, 0]
    assert step.accepts / step.tries > 0.1  # the proposal is a usable one
    for j, exact in enumerate((exact_mean, exact_var, exact_focus)):
        x = chain[:, j]
        mcse = x.std() / np.sqrt(ess_bulk(x[None, :]))
        assert abs(x.mean() - exact) < 4 * mcse, (j, x.mean(), exact, mcse)


def test_nested_centring():
    """Broods within locations: the pairs found; the step's outer draw against its normal
    conditional given ``c``."""
    d = mm.datasets.load("grouseticks")
    n = len(d)
    brood = RandomBlock(d.BROOD.cat.codes.to_numpy(), d.BROOD.nunique(), np.ones((n, 1)))
    loc = RandomBlock(d.LOCATION.cat.codes.to_numpy(), d.LOCATION.nunique(), np.ones((n, 1)))
    index = RandomBlock(np.arange(n), n, np.ones((n, 1)))
    pairs = nested_intercepts([brood, loc, index])
    assert sorted((i, o) for i, o, _ in pairs) == [(0, 1), (2, 0), (2, 1)]
    parent = next(p for i, o, p in pairs if (i, o) == (0, 1))
    rng = np.random.default_rng(3)
    inner = rng.standard_normal((brood.n_levels, 1))
    outer = rng.standard_normal((loc.n_levels, 1))
    t_in, t_out = np.array([[0.7]]), np.array([[0.4]])
    c = inner[:, 0] + outer[parent, 0]
    reps = 4000
    draws = np.empty((reps, loc.n_levels))
    for r in range(reps):
        new_in, new_out = _centre_nested(inner, outer, t_in, t_out, parent, rng)
        np.testing.assert_allclose(new_in[:, 0] + new_out[parent, 0], c, atol=1e-12)
        draws[r] = new_out[:, 0]
    # closed form: b_m | c ~ N(sum c_l / s_in^2 / a_m, 1 / a_m), a_m = n_m/s_in^2 + 1/s_out^2
    a = np.bincount(parent, minlength=loc.n_levels) / 0.49 + 1 / 0.16
    centre = np.bincount(parent, weights=c, minlength=loc.n_levels) / 0.49 / a
    z = (draws.mean(0) - centre) / np.sqrt(1 / a / reps)
    assert np.all(np.abs(z) < 4.5)  # 63 levels: each within 4.5 standard errors
    np.testing.assert_allclose(draws.var(0) * a, 1.0, atol=0.1)


def test_nested_interweaving_targets_its_conditional():
    """``GibbsSampler._interweave_nested`` holds the outer term's standardized effects
    ``u`` and the centred inner effects ``c`` and moves the outer sd ``d``: repeated, its
    draws of ``d`` follow ``p(d) prod_l N(c_l - d u_parent(l); 0, s_in^2)`` (the
    half-Student-t prior; the density in ``d`` has no Jacobian factor left), whose mean and
    second moment are computed by quadrature on a fine grid (4 Monte Carlo standard
    errors)."""
    from mixedmodels.core.gibbs import GibbsSampler, ModelPriors
    from mixedmodels.core.priors import LKJ, HalfStudentT
    from mixedmodels.core.priors import Normal as NormalPrior

    d = mm.datasets.load("grouseticks")
    n = len(d)
    brood = RandomBlock(d.BROOD.cat.codes.to_numpy(), d.BROOD.nunique(), np.ones((n, 1)))
    loc = RandomBlock(d.LOCATION.cat.codes.to_numpy(), d.LOCATION.nunique(), np.ones((n, 1)))
    prior = HalfStudentT(3, 0.5)
    priors = ModelPriors(
        fixef=[NormalPrior(0, 2)],
        sigma=HalfStudentT(3, 1),
        sd=[[HalfStudentT(3, 1)], [prior]],
        cor=[LKJ(1), LKJ(1)],
    )
    y = d.TICKS.to_numpy(float)
    sampler = GibbsSampler([brood, loc], np.ones((n, 1)), y, None, priors, family="poisson")
    ((inner, outer, parent),) = [x for x in sampler.coefficients.nesting if x[:2] == (0, 1)]
    rng = np.random.default_rng(4)
    state = sampler.initial_state([np.array([0.7]), np.array([0.4])], [None, None], 1.0)
    state.b = [
        0.7 * rng.standard_normal((brood.n_levels, 1)),
        0.4 * rng.standard_normal((loc.n_levels, 1)),
    ]
    u = state.b[1][:, 0] / 0.4
    c = state.b[0][:, 0] + state.b[1][parent, 0]
    draws = np.empty(4000)
    for i in range(draws.size):
        sampler._interweave_nested(state, inner, outer, parent, rng)
        draws[i] = state.factors[1][0, 0]
    np.testing.assert_allclose(state.b[1][:, 0] / draws[-1], u, rtol=1e-10)
    np.testing.assert_allclose(state.b[0][:, 0] + state.b[1][parent, 0], c, atol=1e-10)
    grid = np.linspace(1e-4, 4.0, 40001)
    up = u[parent]
    log_k = np.array([prior.log_density_sd(g) for g in grid])
    log_k -= 0.5 / 0.49 * ((c[None, :] - grid[:, None] * up[None, :]) ** 2).sum(1)
    w = np.exp(log_k - log_k.max())
    w /= w.sum()
    for power in (1, 2):
        x = draws**power
        mcse = x.std() / np.sqrt(ess_bulk(x[None, :]))
        exact = float(w @ grid**power)
        assert abs(x.mean() - exact) < 4 * mcse, (power, x.mean(), exact, mcse)


def test_too_large_for_the_joint_step_falls_back(broods, monkeypatch):
    """More effects outside the largest term than the Schur complement takes: the joint
    step is left out (the term-by-term steps remain) instead of refusing the model."""
    import mixedmodels.core.henderson as henderson
    from mixedmodels.core.poisson import PoissonCoefficients

    codes, levels, y = broods
    X = np.column_stack([np.ones(len(y)), np.linspace(-1, 1, len(y))])
    block = RandomBlock(codes, levels, np.ones((len(y), 1)))
    monkeypatch.setattr(henderson, "MAX_DENSE_REST", 1)
    coefficients = PoissonCoefficients([block], X, y, np.zeros(len(y)))
    assert coefficients.joint is None
    rng = np.random.default_rng(0)
    beta, b, accepted = coefficients.update(
        np.zeros(2),
        [np.zeros((levels, 1))],
        [np.array([[0.8]])],
        np.zeros(2),
        np.zeros(2),
        (np.zeros(2), [np.zeros((levels, 1))]),
        rng,
    )
    assert accepted is None
    assert coefficients.tries[0] == levels  # the term's level-by-level step ran
