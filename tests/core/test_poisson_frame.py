"""The Poisson sampler's Laplace-frame sd move (``GibbsSampler._laplace_frame_moves``) and
the Henderson factor's pieces it uses, checked in isolation.

* ``HendersonSystem.log_det`` is ``log det M / 2`` and ``HendersonSystem.whiten`` is ``L'``
  for ``M = L L'`` of the last draw, against ``M`` written densely from a dense ``Z``
  (``[Z Lambda, X]' W [Z Lambda, X] + diag(I, P)``; 1e-9 relative): ``|L' v|^2 = v' M v``,
  and a draw whose noise is ``L' v`` is the centre plus ``v`` (round trip).
* Exactness: a chain that alternates the joint Laplace step (variances held) with the
  frame move of the sd, on ``y_gi ~ Poisson(exp(beta + b_g))`` with grouseticks' broods,
  ``b_g ~ N(0, tau^2)``, ``beta ~ N(0, 2^2)``, ``tau ~ HalfStudentT(3, 1)``, has the
  posterior mean of ``tau``, of ``tau^2`` and of ``beta`` computed by quadrature
  (adaptive Gauss-Hermite per brood, a grid in ``beta`` and in ``tau``) within 4 Monte
  Carlo standard errors.  The move changes the sd and all coefficients at once.  Checked
  by hand when the test was written (1,500 draws): leaving out the map's Jacobian
  ``det L^-1`` sends the mean of ``tau`` to 15 (quadrature: 1.61); leaving out the ``log
  sd`` random walk's Jacobian (a factor ``1 / tau``, a shift of about ``-var(tau) / tau =
  -0.012``) is within 2 standard errors at this length and is not caught here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from threadpoolctl import threadpool_limits

import mixedmodels as mm
from mixedmodels.core.diagnostics import ess_bulk
from mixedmodels.core.gibbs import GibbsSampler, ModelPriors, _Noise
from mixedmodels.core.henderson import term_matrix
from mixedmodels.core.priors import LKJ, HalfStudentT, Normal
from mixedmodels.core.terms import RandomBlock

PRIOR_SD = 2.0


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _grouse():
    d = mm.datasets.load("grouseticks")
    n = len(d)
    brood = RandomBlock(d.BROOD.cat.codes.to_numpy(), d.BROOD.nunique(), np.ones((n, 1)))
    loc = RandomBlock(d.LOCATION.cat.codes.to_numpy(), d.LOCATION.nunique(), np.ones((n, 1)))
    return d, brood, loc, d.TICKS.to_numpy(float)


def _sampler(blocks, X, y):
    priors = ModelPriors(
        fixef=[Normal(0, PRIOR_SD)] * X.shape[1],
        sigma=HalfStudentT(3, 1),
        sd=[[HalfStudentT(3, 1)] for _ in blocks],
        cor=[LKJ(1) for _ in blocks],
    )
    return GibbsSampler(blocks, X, y, None, priors, family="poisson")


def test_whiten_and_log_det_are_the_factor_of_m():
    d, brood, loc, y = _grouse()
    X = np.column_stack([np.ones(len(y)), np.linspace(-1, 1, len(y))])
    sampler = _sampler([brood, loc], X, y)
    system = sampler.coefficients.joint.system
    factors = [np.array([[0.7]]), np.array([[0.4]])]
    precision, mean = np.array([0.0, 0.25]), np.array([0.0, 0.5])
    reference = (np.zeros(2), [np.zeros((brood.n_levels, 1)), np.zeros((loc.n_levels, 1))])
    frame = sampler._frame(factors, precision, mean, reference)
    (beta_c, b_c, _, weights), _, log_det = frame
    # dense M on the system's scale: the first (largest) term, the rest, then X
    order = [system.first, *system.rest]
    blocks = [brood, loc]
    a = np.hstack([term_matrix(blocks[k]).toarray() * factors[k][0, 0] for k in order] + [X])
    m = a.T @ (a * weights[:, None])
    m += np.diag(np.concatenate([np.ones(a.shape[1] - 2), precision]))
    assert log_det == pytest.approx(0.5 * np.linalg.slogdet(m)[1], rel=1e-9)
    rng = np.random.default_rng(2)
    l0 = blocks[system.first].n_levels
    v = rng.standard_normal(a.shape[1])
    e0, er = system.whiten(v[:l0, None], v[l0:])
    e = np.concatenate([e0[:, 0], er])
    assert float(e @ e) == pytest.approx(float(v @ m @ v), rel=1e-9)
    b_new, beta_new = system.draw(factors, 1.0, precision, mean, _Noise(er, e0))
    x0, xr = sampler._to_frame(beta_new, b_new, factors)
    c0, cr = sampler._to_frame(beta_c, b_c, factors)
    np.testing.assert_allclose(np.concatenate([(x0 - c0)[:, 0], xr - cr]), v, atol=1e-9)


def _exact_tau(y_tot, n_tot, prior):
    """Posterior means of ``tau``, ``tau^2`` and ``beta`` by quadrature: per ``(tau,
    beta)`` grid point, each brood's integral by 12-node Gauss-Hermite around its
    integrand's mode."""
    nodes, wts = np.polynomial.hermite.hermgauss(12)
    taus = np.linspace(0.8, 3.3, 251)
    beta = np.linspace(-1.0, 2.5, 141)
    log_post = np.empty((taus.size, beta.size))
    b = np.zeros((beta.size, y_tot.size))
    for t, tau in enumerate(taus):
        tau2 = tau * tau
        for _ in range(60 if t == 0 else 12):  # each tau from the last one's modes
            mu = n_tot * np.exp(beta[:, None] + b)
            b = b + np.clip((y_tot - mu - b / tau2) / (mu + 1 / tau2), -2, 2)
        scale = 1 / np.sqrt(n_tot * np.exp(beta[:, None] + b) + 1 / tau2)
        points = b[..., None] + np.sqrt(2) * scale[..., None] * nodes
        eta = beta[:, None, None] + points
        log_g = y_tot[:, None] * eta - n_tot[:, None] * np.exp(eta)
        log_g += -0.5 * points**2 / tau2 - 0.5 * np.log(2 * np.pi * tau2)
        log_g += nodes**2 + np.log(wts * np.sqrt(2) * scale[..., None])
        log_post[t] = special.logsumexp(log_g, axis=-1).sum(-1)
        log_post[t] += prior.log_density_sd(tau) - 0.5 * (beta / PRIOR_SD) ** 2
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    assert w[[0, -1]].sum() < 1e-8 and w[:, [0, -1]].sum() < 1e-8  # the grid holds it
    tau_w = w.sum(1)
    return float(tau_w @ taus), float(tau_w @ taus**2), float(w.sum(0) @ beta)


def test_frame_move_with_joint_steps_keeps_the_posterior():
    d, brood, _, y = _grouse()
    X = np.ones((len(y), 1))
    sampler = _sampler([brood], X, y)
    codes = brood.codes
    y_tot = np.bincount(codes, weights=y, minlength=brood.n_levels)
    n_tot = np.bincount(codes, minlength=brood.n_levels).astype(float)
    exact = _exact_tau(y_tot, n_tot, sampler.priors.sd[0][0])
    rng = np.random.default_rng(11)
    state = sampler.initial_state([np.array([1.2])], [None], 1.0)
    state.frame_log_steps[0] = math.log(0.35)
    precision, mean = sampler.fixef_prior(state)
    joint = sampler.coefficients.joint
    # a start near the coefficients' conditional mode, off it in beta (the joint step's
    # t proposal is scaled by the distance from its centre: from b = 0 it rarely accepts)
    (beta, b, _, _), _, _ = sampler._frame(state.factors, precision, mean, state.reference)
    state.beta, state.b = beta + 0.3, b
    draws, burn = 600, 50
    chain = np.empty((draws, 3))
    for i in range(burn + draws):
        state.beta, state.b, _ = joint.update(
            state.beta, state.b, state.factors, precision, mean, state.reference, 0.6, rng
        )
        sampler._laplace_frame_moves(state, rng)
        if i >= burn:
            tau = state.factors[0][0, 0]
            chain[i - burn] = tau, tau * tau, state.beta[0]
    rate = sampler.frame_accepts[0] / sampler.frame_tries[0]
    assert 0.2 < rate < 0.8, rate  # a usable random walk
    for j in range(3):
        x = chain[:, j]
        mcse = x.std() / np.sqrt(ess_bulk(x[None, :]))
        assert abs(x.mean() - exact[j]) < 4 * mcse, (j, x.mean(), exact[j], mcse)
