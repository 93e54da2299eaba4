"""The compiled kernels of the one-term structured-residual objective
(core/residual_kernels.py) against the numpy code they replace when numba loads
(:meth:`ResidualProblem.level_heads` and :func:`head_pieces` for the objective,
:func:`head_solution` and :func:`single_term_coefficients` for the solution and the fitted
values).

Both compute the same formulas; the kernels sum per row, per level and per basis term in
loops where numpy sums in BLAS's order, so they agree to rounding: the objective within
1e-11 relative (a sum of terms of ~1e2 whose Schur complement, on these well-conditioned
simulated data, magnifies a rounding difference of 1e-16 by less than 1e3), ``log|V|``
within 1e-12, the solution's estimates within 1e-9 (as ``test_residual_solution`` holds
the numpy path against the engine), the fitted values within 1e-10.  The cases are
:mod:`tests.core.test_residual_solution`'s (every path that has a kernel, and the paths
without one, where the kernel is not used), at three points, terms of 1, 2 and 5
coefficients, REML and ML.  Points outside a structure's range raise
:class:`numpy.linalg.LinAlgError` on both paths.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mixedmodels.core import residual as residual_module
from mixedmodels.core.residual import AR1
from mixedmodels.core.variance_functions import Exp, Power
from tests.core.test_residual_solution import CASES, _params, _problem

needs_numba = pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba is not installed"
)


def _numpy_problem(p, correlation, variance, unequal, reml, monkeypatch):
    monkeypatch.setattr(residual_module, "USE_KERNELS", False)
    rp = _problem(p, correlation(), variance(), unequal, reml)
    rp._compiled()  # decided now: the numpy path
    monkeypatch.setattr(residual_module, "USE_KERNELS", True)
    return rp


@needs_numba
@pytest.mark.parametrize("p", [1, 2, 5])
@pytest.mark.parametrize("name, correlation, variance, unequal", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_kernel_objective_equals_numpy(p, name, correlation, variance, unequal, reml,
                                       monkeypatch):
    compiled = _problem(p, correlation(), variance(), unequal, reml)
    plain = _numpy_problem(p, correlation, variance, unequal, reml, monkeypatch)
    assert plain._compiled() is None
    # the paths with a kernel: every one but compound symmetry or ARMA beside a variance
    # function with parameters (AR(1) there: the rows whitened in the kernel)
    whitened = compiled.correlation is not None and compiled.n_var > 0
    assert (compiled._compiled() is None) == (whitened and not isinstance(
        compiled.correlation, AR1)), name
    base = _params(compiled)
    for shift in (0.0, -0.3, 0.5):
        params = base + shift * np.linspace(0.5, 1.0, base.size)
        theta, u_cor, u_var = compiled.split(params)
        np.testing.assert_allclose(
            compiled.objective(params), plain.objective(params), rtol=1e-11, err_msg=name
        )
        np.testing.assert_allclose(
            compiled.whitening_log_det(u_cor, u_var),
            plain.whitening_log_det(u_cor, u_var),
            rtol=1e-12,
            atol=1e-12,
        )
        # the solution's objective is the optimizer's value there, bit for bit
        solution = compiled.solution_at(params)
        assert solution.objective + compiled.whitening_log_det(u_cor, u_var) == (
            compiled.objective(params)
        )
        reference = plain.solution_at(params)
        for field in ("objective", "pwrss", "sigma", "log_det_random"):
            np.testing.assert_allclose(
                getattr(solution, field), getattr(reference, field), rtol=1e-11, err_msg=field
            )
        # the estimates through the kernels' factorization (1e-9 relative, as
        # test_residual_solution holds the numpy path to the engine's)
        for field in ("beta", "vcov_unscaled"):
            np.testing.assert_allclose(
                getattr(solution, field), getattr(reference, field), rtol=1e-9, atol=1e-12,
                err_msg=field,
            )
        np.testing.assert_allclose(solution.u[0], reference.u[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(solution.b[0], reference.b[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            compiled.fitted_at(params), plain.fitted_at(params), rtol=1e-10
        )


@needs_numba
@pytest.mark.parametrize(
    "name, correlation, variance, unequal",
    [c for c in CASES if c[0] in ("ar1", "cs", "arma11")],
)
def test_kernel_refuses_where_numpy_refuses(name, correlation, variance, unequal, monkeypatch):
    """A correlation parameter whose correlation is 1 (AR(1) ``Phi = tanh(u / 2)`` rounds
    to 1 at ``u = 40``; compound symmetry likewise; ARMA's autoregressive partial
    autocorrelation 1): both paths raise LinAlgError."""
    compiled = _problem(2, correlation(), variance(), unequal, True)
    plain = _numpy_problem(2, correlation, variance, unequal, True, monkeypatch)
    params = _params(compiled)
    params[compiled.n_theta] = 40.0
    for rp in (plain, compiled):
        with pytest.raises(np.linalg.LinAlgError):
            rp.objective(params)



@needs_numba
@pytest.mark.parametrize("name, correlation, variance, unequal", CASES)
def test_internal_objective_written_out_is_the_same(name, correlation, variance, unequal):
    """On a compiled path :meth:`ResidualProblem.internal_objective` is written out
    (``_compiled_internal``); its value is :meth:`from_internal` then :meth:`objective`'s
    bit for bit, and it counts the evaluation once."""
    rp = _problem(2, correlation(), variance(), unequal, True)
    base = rp.to_internal(_params(rp))
    for shift in (0.0, -0.2, 0.3):
        z = base + shift * np.linspace(0.5, 1.0, base.size)
        before = rp.n_evaluations
        value = rp.internal_objective(z)
        assert rp.n_evaluations == before + 1
        assert value == rp.objective(rp.from_internal(z))


@needs_numba
@pytest.mark.parametrize("k", [2, 5, 11])
def test_bidiagonal_basis_kernel_equals_numpy(k, monkeypatch):
    """BidiagonalPlan's basis by the kernel's one pass over the rows against the numpy
    sums (rows with several gaps, levels of several groups, columns spanning 7 orders of
    magnitude): within 1e-13 of each entry's scale (the products' magnitudes summed), the
    same sums added in another order."""
    from mixedmodels.core.residual import AR1, BidiagonalPlan, make_layout

    rng = np.random.default_rng(12)
    sizes = rng.integers(2, 9, size=12)
    groups = np.repeat(np.arange(sizes.size), sizes)
    time = np.concatenate([np.cumsum(rng.integers(1, 4, size=s)) for s in sizes]).astype(float)
    layout = make_layout(groups, time, groups)
    M = rng.normal(size=(groups.size, k)) * 10.0 ** rng.integers(-3, 4, size=k)
    level_starts = layout.starts[np.flatnonzero(np.arange(layout.n_groups) % 3 == 0)]
    compiled = BidiagonalPlan(layout, M, level_starts, AR1())
    monkeypatch.setattr(residual_module, "USE_KERNELS", False)
    plain = BidiagonalPlan(layout, M, level_starts, AR1())
    assert compiled.gap_list == plain.gap_list and compiled.counts == plain.counts
    scale = np.abs(M).T @ np.abs(M)  # every entry's products are at most this in size
    assert np.all(np.abs(compiled.basis - plain.basis) <= 1e-13 * 2.0 * scale)


@pytest.mark.parametrize("variance", [lambda: Power("t"), lambda: Exp("t")])
def test_log_sd_basis_is_the_log_of_the_multipliers(variance):
    """``log s = C u`` (:meth:`VarianceFunction.log_sd_basis`) against ``log`` of
    :meth:`sd` at several parameters: 1e-13 relative (an identity of two formulas)."""
    rng = np.random.default_rng(3)
    values = {"t": rng.uniform(0.5, 20.0, 50)}
    function = variance()
    basis = function.log_sd_basis(values)
    for u in (np.array([0.0]), np.array([0.37]), np.array([-1.2])):
        np.testing.assert_allclose(
            basis @ u, np.log(function.sd(u, values)), rtol=1e-13, atol=1e-13
        )
    values["t"][4] = 0.0  # log|0|: Power has no basis there (the multipliers' path)
    assert (Power("t").log_sd_basis(values) is None) and Exp("t").log_sd_basis(values) is not None


@needs_numba
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reml", [True, False])
def test_log_linear_exp_kernel_equals_numpy(p, reml, monkeypatch):
    """``Exp`` of a covariate (the log-linear kernel path, as ``Power`` in the cases above)
    against the numpy path: objective 1e-11, and far outside the range (``|log s| > 300``,
    where the numpy multipliers overflow) the optimizer is told infinity on both."""
    compiled = _problem(p, None, Exp("t"), False, reml)
    plain = _numpy_problem(p, lambda: None, lambda: Exp("t"), False, reml, monkeypatch)
    base = _params(compiled)
    for shift in (0.0, -0.3, 0.5):
        params = base + shift * np.linspace(0.5, 1.0, base.size)
        np.testing.assert_allclose(
            compiled.objective(params), plain.objective(params), rtol=1e-11
        )
        z = compiled.to_internal(params)
        np.testing.assert_allclose(
            compiled.internal_objective(z), plain.internal_objective(z), rtol=1e-11
        )
    far = compiled.to_internal(base)
    far[-1] = 1000.0  # exp(1000 t): s overflows
    assert compiled.internal_objective(far) == plain.internal_objective(far) == np.inf


@needs_numba
@pytest.mark.parametrize("p_ar, q_ma", [(1, 1), (2, 1), (0, 2), (2, 0), (1, 3)])
def test_arma_innovations_equal_the_factor(p_ar, q_ma):
    """ARMA rows at consecutive times are whitened by the innovations algorithm
    (``arma_innovations_heads``); the same heads, Schur sums and ``log|R|`` as the
    whitening by the correlation matrix's Cholesky factor (``arma_heads``), to 1e-10 of
    their scale, on groups of unequal sizes (leading blocks), at several parameters."""
    from mixedmodels.core import residual_kernels as module
    from mixedmodels.core.residual import ARMA

    rp = _problem(2, ARMA(p_ar, q_ma), None, True, True)
    plan = rp._plan()
    longest = plan.longest
    assert np.array_equal(longest, np.arange(longest.size))
    _, lags = plan.structure.leading_correlation(np.zeros(p_ar + q_ma), longest)
    g, size, k = plan.padded.shape
    rows = np.ascontiguousarray(plan.padded.transpose(1, 0, 2).reshape(size, g * k))
    rng = np.random.default_rng(4)
    for _ in range(4):
        u = rng.uniform(-1.5, 1.5, p_ar + q_ma)
        by_factor = module.arma_heads(
            u, p_ar, int(longest[-1]), np.ascontiguousarray(lags), rows, plan.sizes,
            plan.group_level, plan.n_levels, 2,
        )
        by_innovations = module.arma_innovations_heads(
            u, p_ar, plan.padded, plan.sizes, plan.group_level, plan.n_levels, 2
        )
        assert by_factor[0] == by_innovations[0] == 0
        for a, b in zip(by_factor[1:3], by_innovations[1:3], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10 * np.abs(a).max())
        np.testing.assert_allclose(by_innovations[3], by_factor[3], rtol=1e-10, atol=1e-12)


@needs_numba
def test_arma_at_spaced_times_uses_the_factor(monkeypatch):
    """ARMA at integer times two apart (every group the same pattern, not consecutive):
    the kernel whitens by the Cholesky factor of ``acf[lags]``; the objective equals the
    numpy path's (1e-11)."""
    from mixedmodels.core.residual import ARMA, make_layout
    from mixedmodels.core.residual_problem import ResidualProblem
    from mixedmodels.core.terms import RandomBlock

    def build():
        rng = np.random.default_rng(8)
        sizes = rng.integers(3, 9, 9)
        codes = np.repeat(np.arange(9), sizes)
        n = codes.size
        t = np.concatenate([2.0 * np.arange(m) for m in sizes])
        X = np.column_stack([np.ones(n), t])
        y = 3 + 0.2 * t + rng.standard_normal(9)[codes] + rng.standard_normal(n)
        layout = make_layout(codes, t, codes)
        return ResidualProblem(
            [RandomBlock(codes, 9, np.ones((n, 1)))], X, y, layout, ARMA(1, 1, time="t"),
            None, {}, True,
        )

    monkeypatch.setattr(residual_module, "USE_KERNELS", True)
    compiled = build()
    assert compiled._compiled().pieces.__name__ == "leading_pieces"
    monkeypatch.setattr(residual_module, "USE_KERNELS", False)
    plain = build()
    assert plain._compiled() is None
    for params in ([0.8, 0.3, -0.2], [1.2, -0.5, 0.6]):
        params = np.array(params)
        np.testing.assert_allclose(compiled.objective(params), plain.objective(params),
                                   rtol=1e-11)


@needs_numba
@pytest.mark.parametrize("reml", [True, False])
def test_car1_continuous_times_kernel_equals_numpy(reml, monkeypatch):
    """CAR(1) at continuous times (each row its own gap: no plan pays, the rows are
    whitened at each evaluation, in one kernel pass): objective 1e-11 and solution 1e-9
    against the numpy path, Phi near 0 and near 1."""
    from mixedmodels.core.residual import CAR1, make_layout
    from mixedmodels.core.residual_problem import ResidualProblem
    from mixedmodels.core.terms import RandomBlock

    def build():
        rng = np.random.default_rng(9)
        sizes = rng.integers(3, 9, 40)
        codes = np.repeat(np.arange(40), sizes)
        n = codes.size
        t = np.concatenate([np.cumsum(rng.uniform(0.1, 2.0, m)) for m in sizes])
        X = np.column_stack([np.ones(n), t])
        z = np.column_stack([np.ones(n), t])
        y = 3 + 0.2 * t + rng.standard_normal(40)[codes] + rng.standard_normal(n)
        layout = make_layout(codes, t, codes)
        return ResidualProblem(
            [RandomBlock(codes, 40, z)], X, y, layout, CAR1("t"), None, {}, reml
        )

    monkeypatch.setattr(residual_module, "USE_KERNELS", True)
    compiled = build()
    assert compiled._plan() is None
    assert compiled._compiled().pieces.__name__ == "bidiagonal_pieces"
    monkeypatch.setattr(residual_module, "USE_KERNELS", False)
    plain = build()
    for u in (-2.0, 0.5, 4.0):
        params = np.array([0.8, 0.1, 0.3, u])
        np.testing.assert_allclose(compiled.objective(params), plain.objective(params),
                                   rtol=1e-11)
        ours, theirs = compiled.solution_at(params), plain.solution_at(params)
        for field in ("beta", "vcov_unscaled", "sigma"):
            np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field),
                                       rtol=1e-9, err_msg=field)


def test_stratum_log_basis_is_the_log_of_the_strata_multipliers():
    """``Ident``'s ``log stratum_sd(u) = D u`` (:meth:`stratum_log_basis`): 1e-14, an
    identity of two formulas; the reference stratum's row is zero."""
    from mixedmodels.core.variance_functions import Ident

    function = Ident("s")
    labels = np.array(["a", "b", "c", "b", "a", "d"])
    function.bind({"s": labels}, np.arange(labels.size))
    basis = function.stratum_log_basis()
    assert basis.shape == (4, 3) and not basis[0].any()
    for u in (np.zeros(3), np.array([0.3, -1.1, 2.0])):
        np.testing.assert_allclose(basis @ u, np.log(function.stratum_sd(u)), atol=1e-14)
