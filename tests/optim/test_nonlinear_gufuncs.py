"""The alternation's shortcuts past numpy's linear-algebra wrappers against the wrappers.

``_u_of``, ``_lapack`` and ``ml_deviance_gradient_function`` call the same LAPACK gufuncs
or compiled kernels as ``np.linalg.lstsq``/``solve``/``inv``/``eigvalsh`` and
``ml_deviance_gradient`` (without their checks and set-up), so their answers must be
identical to the bit (``array_equal``, no tolerance); where LAPACK fails they must raise
the wrappers' :class:`numpy.linalg.LinAlgError`.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.nonlinear import (
    NonlinearProblem,
    gram,
    ml_deviance_gradient,
    ml_deviance_gradient_function,
    theta_pairs,
)
from mixedmodels.optim.nonlinear import _inv, _lapack, _solve, _solve1, _u_of

RNG = np.random.default_rng(31)


@pytest.mark.parametrize("lam", [
    np.array([[1.3, 0.0], [0.4, 0.7]]),
    np.diag([0.0, 0.7]),  # singular: lstsq's minimum-norm solution
    np.array([[2.5]]),
])
def test_u_of_is_lstsq(lam):
    b = RNG.standard_normal((9, lam.shape[0]))
    expected = np.linalg.lstsq(lam, b.T, rcond=None)[0].T
    assert np.array_equal(_u_of(b, lam), expected)


def test_u_of_one_effect_is_lstsq_to_the_bit():
    """One random effect: ``_u_of``'s ``b * (1 / d)`` against ``np.linalg.lstsq`` (LAPACK's
    dgelsd on a 1 x 1 system scales the right-hand side by dlascl's reciprocal) on
    factors and effects across 12 and 20 orders of magnitude, signed zeros, a factor 0
    (lstsq's minimum-norm 0) and values outside LAPACK's unscaled range (lstsq itself)."""
    rng = np.random.default_rng(8)
    cases = []
    for _ in range(3000):
        d = float(rng.uniform(0.001, 30.0) * 10.0 ** rng.integers(-6, 7))
        cases.append((rng.standard_normal((int(rng.integers(1, 50)), 1))
                      * 10.0 ** rng.integers(-10, 11), d))
    cases += [(np.array([[-0.0], [0.0], [1.5]]), 0.7), (np.zeros((4, 1)), 0.3),
              (np.array([[-0.0]]), 2.0), (RNG.standard_normal((5, 1)), 0.0),
              (RNG.standard_normal((5, 1)) * 1e-300, 0.5), (RNG.standard_normal((5, 1)), 1e300)]
    for b, d in cases:
        lam = np.array([[d]])
        expected = np.linalg.lstsq(lam, b.T, rcond=None)[0].T
        assert _u_of(b, lam).tobytes() == expected.tobytes()


def test_lapack_is_the_wrapper_and_raises_as_it():
    a = RNG.standard_normal((5, 3, 3))
    a = a @ np.swapaxes(a, 1, 2) + np.eye(3)
    rhs = RNG.standard_normal((5, 3, 1))
    assert np.array_equal(_lapack(_solve, np.linalg.solve, a, rhs), np.linalg.solve(a, rhs))
    assert np.array_equal(_lapack(_solve1, np.linalg.solve, a[0], rhs[0, :, 0]),
                          np.linalg.solve(a[0], rhs[0, :, 0]))
    assert np.array_equal(_lapack(_inv, np.linalg.inv, a), np.linalg.inv(a))
    with np.errstate(all="ignore"), pytest.raises(np.linalg.LinAlgError):
        _lapack(_inv, np.linalg.inv, np.zeros((2, 2)))


@pytest.mark.parametrize("diagonal", [False, True])
def test_deviance_gradient_function_is_ml_deviance_gradient(diagonal):
    m, per = 12, 6
    groups = np.repeat(np.arange(m), per)
    t = np.tile(np.linspace(0, 3, per), m)
    y = 5 + RNG.standard_normal(m)[groups] + (1 + 0.3 * RNG.standard_normal(m)[groups]) * t
    y = y + 0.4 * RNG.standard_normal(t.size)

    def model(phi):
        return phi[:, 0] + phi[:, 1] * t, np.column_stack([np.ones_like(t), t])

    problem = NonlinearProblem(
        y=y, model=model, n_model_parameters=2,
        fixed_matrices=[np.ones((t.size, 1)), np.ones((t.size, 1))], function_index=[0, 1],
        random_index=[0, 1], groups=groups, n_groups=m, diagonal=diagonal,
    )
    g = gram(problem, problem.linearize(np.array([5.0, 1.0]), np.zeros((m, 2))))
    dev_grad = ml_deviance_gradient_function(g, problem, problem.n)
    pairs = theta_pairs(problem.q, diagonal)
    for theta in (np.full(problem.n_theta, 0.8), np.linspace(0.2, 1.5, problem.n_theta)):
        value, grad = dev_grad(theta)
        expected_value, expected_grad = ml_deviance_gradient(
            g, problem.lambda_of(theta), pairs, problem.n)
        assert value == expected_value
        assert np.array_equal(grad, expected_grad)


def test_start_is_better_only_where_lstsq_agrees():
    """The PNLS start test without lstsq (``_start_is_better``): with a diagonal factor
    ``||u||^2`` by ``b * (1 / d)`` is within 1e-13 (relative) of ``_u_of``'s (lstsq's), so
    a start below the objective by more than the margin is below the objective with
    lstsq's ``u`` (True), and one at or above it is left to the exact test (False); an
    entry 0 is lstsq's rank cut (``u`` 0 there); a factor with a tiny positive entry is
    always left to the exact test."""
    from types import SimpleNamespace

    from mixedmodels.optim.nonlinear import START_MARGIN, _start_is_better, _sum

    rng = np.random.default_rng(12)
    diagonal = SimpleNamespace(diagonal=True)
    for _ in range(2000):
        q = int(rng.integers(2, 5))
        d = rng.uniform(0.01, 30.0, size=q) * 10.0 ** rng.integers(-9, 4, size=q)
        if rng.random() < 0.2:
            d[int(rng.integers(0, q - 1))] = 0.0
        b = rng.standard_normal((int(rng.integers(1, 60)), q)) * 10.0 ** rng.integers(-4, 5)
        lam = np.diag(d)
        u = _u_of(b, lam)
        uu = float(_sum(u * u, axis=None))
        with np.errstate(divide="ignore"):
            approx = np.where(d == 0, 0.0, b * (1.0 / d))
        clear = all(v == 0 or v > 1e-14 * d.max() for v in d)  # (of lstsq's rank cut)
        if clear:
            assert abs(float(_sum(approx * approx, axis=None)) - uu) <= 1e-13 * uu
        rss = float(rng.uniform(0.0, 10.0) * uu * 10.0 ** rng.integers(-3, 4))
        here = rss + uu
        sure = _start_is_better(diagonal, here - 2 * START_MARGIN * uu, rss, b, lam)
        assert sure == clear
        assert not _start_is_better(diagonal, here, rss, b, lam)
        if q > 2:  # (a general factor of more than two effects: left to the exact test)
            assert not _start_is_better(SimpleNamespace(diagonal=False), 0.0, rss, b, lam)
    b = rng.standard_normal((5, 2))
    for lam in (np.diag([0.0, 0.0]), np.diag([1e-15, 1.0]), np.diag([1.0, np.inf]),
                np.diag([1e-160, 1e-155])):
        assert not _start_is_better(diagonal, -1.0, 1.0, b, lam)


def test_start_is_better_with_a_general_factor_only_where_lstsq_agrees():
    """``_start_is_better`` with a general 2 x 2 factor (forward substitution, margin
    ``1e-10 + 1e3 cond eps``) on factors with condition numbers up to 1e7: a start below
    lstsq's objective by 2 margins is decided (True), one at it is not; within 1e8 of
    singular, a 0 on the diagonal, or 3 x 3: left to the exact test."""
    from types import SimpleNamespace

    from mixedmodels.optim.nonlinear import START_MARGIN, _start_is_better, _sum

    rng = np.random.default_rng(13)
    general = SimpleNamespace(diagonal=False)
    decided = 0
    for _ in range(2000):
        a, d = rng.uniform(0.01, 30.0, size=2) * 10.0 ** rng.integers(-3, 4, size=2)
        c = float(rng.normal() * 10.0 ** rng.integers(-3, 4))
        lam = np.array([[a, 0.0], [c, d]])
        cond = float(np.linalg.cond(lam))
        b = rng.standard_normal((int(rng.integers(1, 60)), 2)) * 10.0 ** rng.integers(-4, 5)
        u = _u_of(b, lam)
        uu = float(_sum(u * u, axis=None))
        rss = float(rng.uniform(0.0, 10.0) * uu)
        here = rss + uu
        margin = START_MARGIN + 1e3 * cond * np.finfo(float).eps
        sure = _start_is_better(general, here - 2.01 * margin * uu, rss, b, lam)
        assert sure == (cond < 0.99e8) or cond > 0.9e8
        decided += sure
        assert not _start_is_better(general, here, rss, b, lam)
    assert decided > 1000
    b = rng.standard_normal((5, 2))
    for lam in (np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [1e5, 1e-5]])):
        assert not _start_is_better(general, -1.0, 1.0, b, lam)
    assert not _start_is_better(general, -1.0, 1.0, rng.standard_normal((5, 3)), np.eye(3))


@pytest.mark.parametrize("compiled", [True, False])
def test_check_finite_names_the_rows_by_either_path(monkeypatch, compiled):
    """``_check_finite`` (one compiled pass, or numpy's sums) passes finite values (also
    where their sum overflows) and raises the package's error naming the array, the
    number of rows and the first row for a NaN or inf in the values or either gradient."""
    from mixedmodels.core import nonlinear as cn
    from mixedmodels.errors import ConvergenceError
    from mixedmodels.optim.nonlinear import _check_finite

    monkeypatch.setattr(cn, "USE_KERNELS", compiled)
    rng = np.random.default_rng(14)
    f, x, z = rng.normal(size=9), rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    _check_finite(cn.Linearization(f, x, z, f))
    huge = np.full(9, 1e308)
    with np.errstate(all="ignore"):  # (as the fits call it: numpy's sum overflows)
        _check_finite(cn.Linearization(huge, x, z, f))
    for what, field, row, bad in (("values", 0, 4, np.nan), ("gradient", 1, 2, np.inf),
                                  ("gradient", 2, 7, -np.inf)):
        arrays = [f.copy(), x.copy(), z.copy()]
        arrays[field][row] = bad
        with pytest.raises(ConvergenceError, match=f"{what} are not finite .* 1 row.*row {row}"):
            _check_finite(cn.Linearization(*arrays, f))
