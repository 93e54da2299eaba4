"""The compiled kernel of the nonlinear models' penalized least squares
(core/nonlinear_kernels.py) against the numpy code it replaces when numba loads
(core/nonlinear.py ``pls_numpy`` and ``ml_deviance_gradient``'s numpy branch), and the
fits by each path against nlme's converged values.

The two paths compute the same formulas; the kernel sums the groups' terms one group after
the other where numpy's products sum them in BLAS's order, so they agree to rounding: the
deviance, PWRSS, fixed effects, modes and log-determinants within 1e-11 relative (the
cross-products here span 8 orders of magnitude, and a difference of rounding in the
reduced system's 1e-16 relative is magnified by its condition number, up to ~1e4), the
gradient within 1e-9 of its largest entry (a difference of two sums of ~1e3 each).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core import nonlinear as cn
from mixedmodels.core.nonlinear import (
    Gram,
    NonlinearProblem,
    RowVariance,
    gram,
    ml_deviance_gradient,
    ml_deviance_gradient_weighted,
    pls,
    pls_numpy,
    theta_pairs,
)
from mixedmodels.design.nonlinear import build_nlme_design
from tests.reference.nlme.cases import arguments, load, reference

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed")


def _gram(rng, m, q, p, n) -> Gram:
    """Cross-products of a random linearized model: ``m`` groups of 6 rows."""
    z = rng.normal(size=(n, q)) * np.geomspace(1.0, 30.0, q)
    x = rng.normal(size=(n, p)) * np.geomspace(1.0, 100.0, p)
    w = x @ rng.normal(size=p) + rng.normal(size=n)
    groups = np.repeat(np.arange(m), n // m)
    e = (groups[None, :] == np.arange(m)[:, None]).astype(float)
    mm_ = np.column_stack([x, w])
    ztz = np.einsum("in,na,nb->abi", e, z, z)
    ztm = np.einsum("in,na,nk->aik", e, z, mm_)
    return Gram(np.ascontiguousarray(ztz), np.ascontiguousarray(ztm), mm_.T @ mm_, 0.0)


def _lambda(rng, q, diagonal):
    lam = np.diag(rng.uniform(0.2, 3.0, size=q))
    if not diagonal:
        lam[np.tril_indices(q, -1)] = rng.normal(size=q * (q - 1) // 2)
    return lam


@needs_numba
@pytest.mark.parametrize(("q", "diagonal"), [(1, True), (2, False), (2, True), (3, False),
                                             (3, True), (4, False)])
def test_kernel_equals_numpy_to_rounding(monkeypatch, q, diagonal):
    rng = np.random.default_rng(10 + q)
    m, p = 9, 4
    g = _gram(rng, m, q, p, 6 * m)
    lam = _lambda(rng, q, diagonal)
    pairs = theta_pairs(q, diagonal)
    want = pls_numpy(g, lam)
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    dev0, grad0 = ml_deviance_gradient(g, lam, pairs, 6 * m)
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    assert cn.pls_kernels() is not None
    got = pls(g, lam)
    dev1, grad1 = ml_deviance_gradient(g, lam, pairs, 6 * m)
    assert got.low is None  # the kernel's solution (numpy's has the factor)
    np.testing.assert_allclose(got.beta, want.beta, rtol=1e-11)
    np.testing.assert_allclose(got.u, want.u, rtol=1e-11, atol=1e-11 * np.abs(want.u).max())
    np.testing.assert_allclose(got.pwrss, want.pwrss, rtol=1e-11)
    np.testing.assert_allclose(got.logdet_l, want.logdet_l, rtol=1e-11)
    np.testing.assert_allclose(got.logdet_rx, want.logdet_rx, rtol=1e-11)
    np.testing.assert_allclose(got.xtx_reduced, want.xtx_reduced, rtol=1e-11,
                               atol=1e-11 * np.abs(want.xtx_reduced).max())
    np.testing.assert_allclose(dev1, dev0, rtol=1e-11)
    np.testing.assert_allclose(grad1, grad0, rtol=0, atol=1e-9 * np.abs(grad0).max())
    # without the modes: the same fixed effects and criterion
    bare = pls(g, lam, modes=False)
    assert bare.u is None
    np.testing.assert_allclose(bare.beta, got.beta, rtol=0, atol=0)


@needs_numba
def test_kernel_reports_a_matrix_that_is_not_positive_definite():
    rng = np.random.default_rng(3)
    g = _gram(rng, 5, 2, 2, 30)
    g.ztz[0, 0, 1] = -1e6  # a group's Z'Z with a negative diagonal entry
    g.ztz_groups = None
    with pytest.raises(np.linalg.LinAlgError):
        pls(g, np.eye(2))
    with pytest.raises(np.linalg.LinAlgError):
        pls_numpy(g, np.eye(2))


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("name", ["orange_ml", "theoph", "soybean_diag", "co2"])
def test_fits_by_either_path_agree_with_nlme(monkeypatch, compiled, name):
    """Both paths reach nlme's converged fit (the issue's tolerances: log-likelihood 1e-6
    relative, fixed effects 1e-4) and each other's to 1e-9 relative in the log-likelihood."""
    if compiled and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    ref = reference()
    data, kwargs = arguments(name, ref)
    monkeypatch.setattr(cn, "USE_KERNELS", compiled)
    fit = mm.nlme(data=data, **kwargs)
    want = ref["cases"][name]["converged"]
    assert abs(fit.loglik - want["logLik"]) <= 1e-6 * abs(want["logLik"])
    np.testing.assert_allclose(fit.fixef.to_numpy(), np.array(list(want["fixef"].values())),
                               rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(cn, "USE_KERNELS", not compiled)
    other = mm.nlme(data=data, **kwargs)
    assert abs(fit.loglik - other.loglik) <= 1e-9 * abs(fit.loglik)


@needs_numba
@pytest.mark.parametrize("name", ["soybean_variety_varpower", "orange_two_diag", "co2"])
def test_weighted_gradient_by_kernel_equals_numpy(monkeypatch, name):
    """The ML deviance with row weights (a power of the fitted values) and its gradient in
    ``(theta, delta)`` by the kernels (least squares, theta part, rows' leverages) and by
    numpy, on the linearized model at nlme's start."""
    ref = reference()
    data, kwargs = arguments(name, ref)
    design = build_nlme_design(kwargs["model"], data, kwargs["fixed"], kwargs["random"])
    function = design.model
    problem = NonlinearProblem(
        y=design.y, model=function.rows(design.covariates),
        n_model_parameters=len(function.parameters), fixed_matrices=design.fixed_matrices,
        function_index=design.function_index, random_index=design.random_index,
        groups=design.groups, n_groups=len(design.levels), diagonal=design.random.diagonal,
        variance=RowVariance(mm.var.Power(), {}, design.groups))
    beta = mm.nlme(data=data, **kwargs).estimate.beta
    b = np.full((problem.n_groups, problem.q), 0.1)
    lin = problem.linearize(beta, b)
    at = problem.variance.at(lin.f)
    pairs = theta_pairs(problem.q, problem.diagonal)
    theta = np.linspace(0.3, 1.2, problem.n_theta)
    lam = problem.lambda_of(theta)
    delta = np.array([0.4])
    s = at.weights(delta)
    jac = at.jacobian(delta)
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    dev0, grad0 = ml_deviance_gradient_weighted(problem, lin, lam, s, jac, pairs)
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    dev1, grad1 = ml_deviance_gradient_weighted(problem, lin, lam, s, jac, pairs,
                                                gram(problem, lin, s))
    np.testing.assert_allclose(dev1, dev0, rtol=1e-11)
    np.testing.assert_allclose(grad1, grad0, rtol=0, atol=1e-9 * np.abs(grad0).max())


@needs_numba
@pytest.mark.parametrize("weighted", [False, True])
def test_gram_by_kernel_equals_numpy(monkeypatch, weighted):
    """The per-group cross-products by the kernel (one pass over the rows) and by numpy's
    products with the group indicator: the same sums to rounding (1e-13 relative of the
    largest), in both layouts."""
    from mixedmodels.core.nonlinear import Linearization

    rng = np.random.default_rng(5)
    n, m, q, p = 60, 7, 2, 3
    groups = rng.integers(0, m, size=n)
    groups[:m] = np.arange(m)
    problem = NonlinearProblem(
        y=rng.normal(size=n), model=lambda phi: (phi[:, 0], np.ones_like(phi)),
        n_model_parameters=3, fixed_matrices=[np.ones((n, 1))] * 3, function_index=[0, 1, 2],
        random_index=[0, 1], groups=groups, n_groups=m)
    lin = Linearization(f=rng.normal(size=n), x=rng.normal(size=(n, p)) * 10,
                        z=rng.normal(size=(n, q)), w=rng.normal(size=n) * 100)
    s = rng.uniform(0.5, 2.0, size=n) if weighted else None
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    want = gram(problem, lin, s)
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    got = gram(problem, lin, s)
    for a, b in [(got.ztz, want.ztz), (got.ztm, want.ztm), (got.mtm, want.mtm),
                 (got.ztz_groups, want.ztz_groups), (got.ztm_groups, want.ztm_groups)]:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * np.abs(b).max())
    assert got.log_weights == want.log_weights


@needs_numba
@pytest.mark.parametrize("name", ["soybean_variety_varpower", "theoph", "co2_type_treatment"])
def test_linearization_by_kernel_equals_numpy(monkeypatch, name):
    """The compiled linearization (parameter rows, the model's register program, X, Z and
    the working response: ``nonlinear_kernels.linearize_start``/``linearize_finish``)
    against the numpy code at the fit's estimates with random effects off 0: the same
    operations in the same order (numpy's elementary functions and ``X beta`` in both),
    so the same bits."""
    from mixedmodels.linalg import row_program

    ref = reference()
    data, kwargs = arguments(name, ref)
    fit = mm.nlme(data=data, **kwargs)
    problem = fit.problem
    assert problem._program is not None
    rng = np.random.default_rng(2)
    b = fit.estimate.b + rng.normal(scale=0.1, size=fit.estimate.b.shape)
    beta = fit.estimate.beta
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    want = problem.linearize(beta, b)
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    monkeypatch.setattr(row_program, "USE_KERNELS", True)
    got = problem.linearize(beta, b)
    assert got.r is not None and want.r is not None
    for a, w in [(got.f, want.f), (got.x, want.x), (got.z, want.z), (got.w, want.w),
                 (got.r, want.r), (got.r, problem.y - want.f)]:
        assert a.shape == w.shape
        assert a.tobytes() == w.tobytes()


@needs_numba
@pytest.mark.parametrize("name", ["orange_two_diag", "theoph", "soybean_variety_varpower",
                                  "co2_type_treatment"])
def test_fits_with_register_programs_equal_numpy_models_to_the_bit(monkeypatch, name):
    """The compiled register programs (the model, its gradient and the self-start's model
    of the parameter vector) and the one-call linearization change no bit of a fit: the
    same fit with the models evaluated by numpy's calls (``Program.bind``) and the numpy
    linearization has the same fixed effects, theta, random effects and logLik."""
    from mixedmodels.linalg import row_program

    ref = reference()
    data, kwargs = arguments(name, ref)
    fit = mm.nlme(data=data, **kwargs)
    assert fit.problem._program is not None
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    monkeypatch.setattr(cn, "RowModel", type("NotARowModel", (), {}))
    plain = mm.nlme(data=data, **kwargs)
    assert plain.problem._program is None
    for a, b in [(fit.estimate.beta, plain.estimate.beta),
                 (fit.estimate.theta, plain.estimate.theta),
                 (fit.estimate.b, plain.estimate.b)]:
        assert a.tobytes() == b.tobytes()
    assert fit.loglik == plain.loglik


@needs_numba
def test_linearization_with_a_continuous_fixed_covariate_equals_numpy(monkeypatch):
    """A fixed-effects formula with a continuous covariate (``Asym ~ w``): phi's fixed part
    is numpy's product in both paths, so the compiled linearization keeps every bit."""
    from mixedmodels.linalg import row_program

    data = load("Orange")
    data = data.assign(w=np.sin(np.arange(len(data))) * 3.7 + 0.1)
    design = build_nlme_design("circumference ~ SSlogis(age, Asym, xmid, scal)", data,
                               ["Asym ~ w", "xmid + scal ~ 1"], "Asym + xmid ~ 1 | Tree")
    function = design.model
    problem = NonlinearProblem(
        y=design.y, model=function.rows(design.covariates),
        n_model_parameters=len(function.parameters), fixed_matrices=design.fixed_matrices,
        function_index=design.function_index, random_index=design.random_index,
        groups=design.groups, n_groups=len(design.levels))
    assert problem._program is not None and not problem._intercepts
    rng = np.random.default_rng(4)
    beta = np.array([190.3, 1.37, 720.1, 345.9])
    b = rng.normal(scale=[20.0, 30.0], size=(problem.n_groups, 2))
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    want = problem.linearize(beta, b)
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    monkeypatch.setattr(row_program, "USE_KERNELS", True)
    got = problem.linearize(beta, b)
    for a, w in [(got.f, want.f), (got.x, want.x), (got.z, want.z), (got.w, want.w)]:
        assert a.shape == w.shape
        assert a.tobytes() == w.tobytes()


@needs_numba
@pytest.mark.parametrize("name", ["orange_two_diag", "theoph", "soybean_variety_varpower"])
def test_basin_probe_modes_by_kernels_equal_numpy(monkeypatch, name):
    """The conditional modes of the second-basin check (``conditional_modes`` with
    ``near``: the groups' objectives, quasi-Newton steps, halving and BFGS updates by the
    ``mode_*`` kernels) against numpy's code, from 0 to the modes (``within = 0``: no early
    stop) at the fit's estimates, with the fit's row weights where it has them: the modes
    within 1e-9 of their largest and the penalized residual sum of squares within 1e-12
    relative (the same steps; sums in another order)."""
    from mixedmodels.optim.nonlinear import _compiled_modes, conditional_modes

    ref = reference()
    data, kwargs = arguments(name, ref)
    fit = mm.nlme(data=data, **kwargs)
    problem, e = fit.problem, fit.estimate
    lam = problem.lambda_of(e.theta)
    weights = None if problem.variance is None else e.weights
    u_fit = np.linalg.lstsq(lam, e.b.T, rcond=None)[0].T
    start = np.zeros_like(u_fit)
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    u0, _, pwrss0 = conditional_modes(problem, e.beta, lam, start, weights=weights,
                                      near=u_fit, within=0.0)
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    # (the kernels' search itself: conditional_modes keeps its answer only when every
    # group ends within `within` of `near`, numpy's otherwise)
    u1, _, pwrss1 = _compiled_modes(cn.pls_kernels(), problem, e.beta, lam, start, 100,
                                    weights, u_fit, 0.0)
    np.testing.assert_allclose(u1, u0, rtol=0, atol=1e-9 * np.abs(u0).max())
    np.testing.assert_allclose(pwrss1, pwrss0, rtol=1e-12)
    # and both at the fit's own modes (the reference cases have one basin)
    np.testing.assert_allclose(u1, u_fit, rtol=0, atol=1e-6 * np.abs(u_fit).max())
    # the check's call: the kernels' answer where every group is near the fitted modes
    u2, _, _ = conditional_modes(problem, e.beta, lam, start, max_iter=6, weights=weights,
                                 near=u_fit, within=1e-3)
    assert np.max(np.abs(u2 - u_fit)) <= 1e-3


@needs_numba
@pytest.mark.parametrize("name", ["theoph", "co2_type_treatment", "soybean_variety_varpower"])
def test_gauss_newton_step_in_one_call_equals_its_pieces(monkeypatch, name):
    """``gauss_newton_step`` (one kernel call: the Gram, the penalized least squares, the
    step, the full step's point and the step's sizes from both ends) against its pieces
    called one by one (``gauss_newton_solution``, numpy's differences and sums, the
    compiled ``step_size``): the same operations, so the same bits, at a point off the
    fit's estimates (weights 1, and the variance function's weights); with the kernels
    off, numpy's pieces agree to rounding (the Gram's sums in BLAS's order: 1e-9
    relative on these cross-products, whose condition number reaches 1e5)."""
    ref = reference()
    data, kwargs = arguments(name, ref)
    fit = mm.nlme(data=data, **kwargs)
    problem, est = fit.problem, fit.estimate
    rng = np.random.default_rng(5)
    lam = problem.lambda_of(est.theta)
    u = np.ascontiguousarray(np.linalg.lstsq(lam, est.b.T, rcond=None)[0].T)
    u = u + rng.normal(scale=0.05, size=u.shape)
    beta = est.beta * (1 + 1e-3 * rng.normal(size=est.beta.size))
    lin = problem.linearize(beta, u @ lam.T)
    for s in (None, est.weights):
        sol_beta, sol_u, pwrss = cn.gauss_newton_solution(problem, lin, s, lam)
        dbeta, du = sol_beta - beta, sol_u - u
        nb, nu = beta + dbeta, u + du
        want = (pwrss, dbeta, du, nb, nu, cn.step_size(dbeta, du, beta, u),
                cn.step_size(dbeta, du, nb, nu))
        got = cn.gauss_newton_step(problem, lin, s, lam, beta, u)
        assert got[1].shape == dbeta.shape and got[2].shape == du.shape
        for a, w in zip(got, want, strict=True):
            assert np.asarray(a).tobytes() == np.asarray(w).tobytes()
        assert want[5] > 1e-6  # (a step that moves)
        monkeypatch.setattr(cn, "USE_KERNELS", False)
        plain = cn.gauss_newton_step(problem, lin, s, lam, beta, u)
        monkeypatch.setattr(cn, "USE_KERNELS", True)
        for a, w in zip(plain, got, strict=True):
            np.testing.assert_allclose(a, w, rtol=1e-9, atol=1e-12)


@needs_numba
def test_step_size_by_kernel_equals_numpy(monkeypatch):
    """PNLS's step size compiled and by numpy: only divisions, absolute values and
    maxima, so the same bits (NaN passed on by both)."""
    rng = np.random.default_rng(6)
    cases = []
    for _ in range(50):
        cases.append((rng.normal(size=3) * 10.0 ** rng.integers(-8, 3),
                      rng.normal(size=(5, 2)) * 10.0 ** rng.integers(-9, 2),
                      rng.normal(size=3) * 10.0 ** rng.integers(-7, 3),
                      rng.normal(size=(5, 2)) * 10.0 ** rng.integers(-9, 2)))
    cases.append((np.array([np.nan, 1.0]), np.zeros((2, 1)), np.ones(2), np.ones((2, 1))))
    cases.append((np.ones(2), np.zeros((0, 1)), np.zeros(2), np.zeros((0, 1))))
    got = [cn.step_size(*c) for c in cases]
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    want = [cn.step_size(*c) for c in cases]
    assert np.array(got).tobytes() == np.array(want).tobytes()


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(("q", "diagonal"), [(1, True), (2, False), (3, True)])
def test_pls_point_is_pls(monkeypatch, compiled, q, diagonal):
    """``pls_point`` (the PNLS start: ``beta`` and ``u`` alone) is ``pls``'s ``beta`` and
    ``u`` to the bit by either path (the same kernel call, or ``pls_numpy`` itself)."""
    if compiled and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(cn, "USE_KERNELS", compiled)
    rng = np.random.default_rng(21)
    g = _gram(rng, 7, q, 3, 42)
    lam = _lambda(rng, q, diagonal)
    beta, u = cn.pls_point(g, lam)
    sol = pls(g, lam)
    assert beta.tobytes() == sol.beta.tobytes()
    assert u.tobytes() == sol.u.tobytes()
