"""Residual correlation structures and variance functions against dense linear algebra.

Each structure's O(n) or closed-form whitening is checked against the definition: the
inverse Cholesky factor of the dense correlation matrix of every group (numpy), and its
log-determinant against ``slogdet``.  Tolerances 1e-10: both sides are exact up to
rounding on matrices of condition number below 1e3.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.residual import (
    AR1,
    ARMA,
    CAR1,
    CompoundSymmetry,
    arma_autocorrelation,
    make_layout,
)
from mixedmodels.core.variance_functions import Combined, Exp, Fixed, Ident, Power
from mixedmodels.errors import ArgumentError, DataError

RNG = np.random.default_rng(12)


def _groups(times_per_group: list[np.ndarray]):
    group = np.concatenate([np.full(t.size, g) for g, t in enumerate(times_per_group)])
    time = np.concatenate(times_per_group)
    perm = RNG.permutation(group.size)  # rows arrive in any order
    return group[perm], time[perm]


def _dense_check(structure, u, layout, M):
    white, log_det = structure.whiten(u, layout, M)
    expected_quad = np.zeros((M.shape[1], M.shape[1]))
    expected_log_det = 0.0
    for s, m in zip(layout.starts, layout.sizes, strict=True):
        r = structure.matrix(u, layout.time[s : s + m])
        low = np.linalg.cholesky(r)
        block = np.linalg.solve(low, M[s : s + m])
        expected_quad += block.T @ block
        expected_log_det += np.linalg.slogdet(r)[1]
    # the whitened cross products are M' R^-1 M whichever square root is used
    np.testing.assert_allclose(white.T @ white, expected_quad, rtol=1e-10, atol=1e-10)
    assert log_det == pytest.approx(expected_log_det, rel=1e-10, abs=1e-10)
    return white


@pytest.mark.parametrize(
    ("structure", "natural", "times"),
    [
        (AR1(), [0.6], None),
        (AR1(), [-0.4], None),
        (AR1("t"), [0.7], "gaps"),
        (CAR1("t"), [0.3], "real"),
        (ARMA(1, 1), [0.8, -0.3], None),
        (ARMA(2, 0), [0.5, 0.2], "gaps"),
        (ARMA(0, 2), [0.4, 0.3], None),
    ],
)
def test_whitening_is_the_inverse_cholesky_factor(structure, natural, times):
    sizes = [1, 5, 7, 7, 3]
    if times is None:
        per_group = [np.arange(m, dtype=float) for m in sizes]
    elif times == "gaps":
        per_group = [np.sort(RNG.choice(20, m, replace=False)).astype(float) for m in sizes]
    else:
        per_group = [np.sort(RNG.uniform(0, 10, m)) for m in sizes]
    group, time = _groups(per_group)
    layout = make_layout(group, None if times is None else time)
    u = structure.unconstrained(np.array(natural))
    np.testing.assert_allclose(structure.natural(u), natural, rtol=1e-12)
    M = RNG.standard_normal((layout.n, 3))
    white = _dense_check(structure, u, layout, M)
    if not isinstance(structure, CompoundSymmetry):  # a Cholesky factor: color undoes it
        np.testing.assert_allclose(structure.color(u, layout, white), M, rtol=1e-9, atol=1e-9)


def test_compound_symmetry_closed_form():
    group, _ = _groups([np.arange(m, dtype=float) for m in (2, 4, 6, 1)])
    layout = make_layout(group, None)
    cs = CompoundSymmetry()
    cs.bind_size(layout.max_size)
    for rho in (0.5, -0.15, 0.0):
        u = cs.unconstrained(np.array([rho]))
        assert cs.natural(u)[0] == pytest.approx(rho, abs=1e-14)
        _dense_check(cs, u, layout, RNG.standard_normal((layout.n, 2)))
    # Rho's lower bound is -1 / (largest group - 1): the matrix stays positive definite
    assert -1 / 5 < cs.natural(np.array([-10.0]))[0] < -0.19


def test_arma_autocorrelation_closed_forms():
    lags = np.arange(6)
    np.testing.assert_allclose(
        arma_autocorrelation(np.array([0.6]), np.zeros(0), 5), 0.6**lags, rtol=1e-13
    )
    theta = 0.5
    ma = arma_autocorrelation(np.zeros(0), np.array([theta]), 5)
    np.testing.assert_allclose(ma, [1, theta / (1 + theta**2), 0, 0, 0, 0], atol=1e-14)
    phi = 0.7
    arma = arma_autocorrelation(np.array([phi]), np.array([theta]), 5)
    rho1 = (1 + phi * theta) * (phi + theta) / (1 + 2 * phi * theta + theta**2)
    np.testing.assert_allclose(arma, np.r_[1.0, rho1 * phi ** lags[:-1]], rtol=1e-13)
    # AR(2): Yule-Walker, rho1 = a1 / (1 - a2)
    a1, a2 = 0.5, 0.2
    ar2 = arma_autocorrelation(np.array([a1, a2]), np.zeros(0), 3)
    assert ar2[1] == pytest.approx(a1 / (1 - a2), rel=1e-13)
    assert ar2[2] == pytest.approx(a1 * ar2[1] + a2, rel=1e-13)


def test_arma_transform_is_nlme_partial_autocorrelation():
    # nlme: an order-1 coefficient x is stored as log((1 + x) / (1 - x))
    arma = ARMA(1, 1)
    u = arma.unconstrained(np.array([0.8, -0.3]))
    np.testing.assert_allclose(u, np.log([(1.8 / 0.2), (0.7 / 1.3)]), rtol=1e-13)
    ar2 = ARMA(2, 0)
    x = np.array([0.5, 0.2])
    np.testing.assert_allclose(ar2.natural(ar2.unconstrained(x)), x, rtol=1e-13)
    # any unconstrained vector gives a stationary AR(2): roots of 1 - a1 z - a2 z^2 outside
    for _ in range(20):
        a = ar2.natural(RNG.normal(0, 3, 2))
        roots = np.roots([-a[1], -a[0], 1.0])
        assert np.all(np.abs(roots) > 1.0)


def test_layout_errors():
    with pytest.raises(DataError, match="same group have time"):
        make_layout(np.array([0, 0, 1]), np.array([1.0, 1.0, 2.0]))
    layout = make_layout(np.array([0, 0, 1]), np.array([1.0, 2.5, 2.0]))
    with pytest.raises(DataError, match="integer times"):
        AR1("t").check_layout(layout, "t")
    with pytest.raises(ArgumentError, match="p > 0 or q > 0"):
        ARMA(0, 0)
    with pytest.raises(ArgumentError, match="non-negative integer"):
        ARMA(1.5, 0)
    with pytest.raises(ArgumentError, match="time column"):
        CAR1(None)


def test_layout_sorts_by_outer_group_then_time():
    group = np.array([2, 0, 1, 0, 2, 1])
    outer = np.array([0, 1, 0, 1, 0, 0])
    time = np.array([5.0, 2.0, 1.0, 1.0, 3.0, 0.0])
    layout = make_layout(group, time, outer)
    assert outer[layout.order].tolist() == [0, 0, 0, 0, 1, 1]
    assert layout.group.tolist() == [1, 1, 2, 2, 0, 0]
    assert layout.time.tolist() == [0.0, 1.0, 3.0, 5.0, 1.0, 2.0]
    assert layout.sizes.tolist() == [2, 2, 2]


def test_variance_functions():
    stratum = np.array(["b", "a", "b", "c"])
    ident = Ident("s")
    ident.bind({"s": stratum}, np.arange(4))
    assert ident.levels == ["b", "a", "c"]  # the first met is the reference
    np.testing.assert_allclose(ident.sd(np.log([2.0, 3.0]), {}), [1, 2, 1, 3])
    np.testing.assert_allclose(
        ident.sd_of(np.log([2.0, 3.0]), {"s": np.array(["c", "b"])}), [3.0, 1.0]
    )
    with pytest.raises(DataError, match="not in the fitted data"):
        ident.sd_of(np.log([2.0, 3.0]), {"s": np.array(["z"])})
    ref = Ident("s", reference="c")
    ref.bind({"s": stratum}, np.arange(4))
    assert ref.param_names() == ["b", "a"]
    with pytest.raises(DataError, match="reference level 'z'"):
        Ident("s", reference="z").bind({"s": stratum}, np.arange(4))
    v = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(Power("x").sd(np.array([0.5]), {"x": v}), np.sqrt(v))
    np.testing.assert_allclose(Exp("x").sd(np.array([0.1]), {"x": v}), np.exp(0.1 * v))
    np.testing.assert_allclose(Fixed("x").sd(np.zeros(0), {"x": v}), np.sqrt(v))
    both = Combined(Power("x"), Exp("x"))
    np.testing.assert_allclose(
        both.sd(np.array([0.5, 0.1]), {"x": v}), np.sqrt(v) * np.exp(0.1 * v)
    )
    with pytest.raises(DataError, match="zeros"):
        Power("x").bind({"x": np.array([0.0, 1.0])}, np.arange(2))
    with pytest.raises(DataError, match="positive"):
        Fixed("x").bind({"x": np.array([-1.0, 1.0])}, np.arange(2))
    with pytest.raises(DataError, match="numeric"):
        Power("x").bind({"x": np.array(["a", "b"])}, np.arange(2))
    with pytest.raises(ArgumentError, match="column name"):
        Ident(3)
