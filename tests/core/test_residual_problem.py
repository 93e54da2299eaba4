"""The whitened objective against the marginal likelihood computed densely.

For random ``(theta, phi)`` the objective of
:class:`~mixedmodels.core.residual_problem.ResidualProblem` must equal the profiled
deviance / REML criterion of ``y ~ N(X beta, sigma^2 (Z Lambda Lambda' Z' + V))``
computed from the dense ``n x n`` matrix (GLS for beta, sigma^2 profiled); and the batched
one-term path must equal the path through the engine's ``LmmProblem``.  Tolerance 1e-9
relative: dense and blocked arithmetic differ by rounding only.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixedmodels.core.residual import AR1, ARMA, CAR1, CompoundSymmetry, make_layout
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.core.variance_functions import Ident, Power
from mixedmodels.errors import ArgumentError

RNG = np.random.default_rng(2026)


def _data(n_levels=6, per=5, p_z=2):
    codes = np.repeat(np.arange(n_levels), per)
    n = codes.size
    t = np.tile(np.arange(per, dtype=float), n_levels) + RNG.uniform(0, 0.5, n)
    z = np.column_stack([np.ones(n), t])[:, :p_z]
    X = np.column_stack([np.ones(n), t, RNG.standard_normal(n)])
    y = X @ [1.0, 0.5, -0.3] + RNG.standard_normal(n)
    perm = RNG.permutation(n)
    return codes[perm], t[perm], z[perm], X[perm], y[perm]


def _dense_objective(rp: ResidualProblem, params, blocks, X, y) -> float:
    theta, u_cor, u_var = rp.split(params)
    n, p = X.shape
    lay = rp.layout
    s = rp.unsort(rp.residual_sd(u_var))
    V = np.zeros((n, n))
    for start, size in zip(lay.starts, lay.sizes, strict=True):
        rows = lay.order[start : start + size]
        r = (
            np.eye(size)
            if rp.correlation is None
            else rp.correlation.matrix(u_cor, lay.time[start : start + size])
        )
        V[np.ix_(rows, rows)] = r
    V = s[:, None] * V * s[None, :]
    k = 0
    for b in blocks:
        lam = b.lambda_matrix(theta[k : k + b.n_theta])
        k += b.n_theta
        Z = sp.csr_matrix(
            (
                b.z.ravel(),
                (np.repeat(np.arange(n), b.p), (b.codes[:, None] * b.p + np.arange(b.p)).ravel()),
            ),
            shape=(n, b.size),
        ).toarray()
        ZL = Z @ np.kron(np.eye(b.n_levels), lam)
        V = V + ZL @ ZL.T
    vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ vi @ X, X.T @ vi @ y)
    r = y - X @ beta
    quad = r @ vi @ r
    log_det = np.linalg.slogdet(V)[1]
    if rp.reml:
        dof = n - p
        return (
            log_det
            + np.linalg.slogdet(X.T @ vi @ X)[1]
            + dof * (1 + np.log(2 * np.pi * quad / dof))
        )
    return log_det + n * (1 + np.log(2 * np.pi * quad / n))


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    ("structure", "variance"),
    [
        (AR1(), None),
        (CAR1("t"), Power("t")),
        (CompoundSymmetry(), None),
        (ARMA(1, 1), Ident("s")),
        (None, Ident("s")),
    ],
)
def test_objective_equals_dense_marginal_likelihood(structure, variance, reml):
    codes, t, z, X, y = _data()
    blocks = [RandomBlock(codes, 6, z)]
    layout = make_layout(codes, t if isinstance(structure, CAR1) else None, codes)
    values = {"t": t}
    if variance is not None:
        variance.bind({"t": t, "s": (t > 2).astype(int).astype(str)}, layout.order)
    if isinstance(structure, CompoundSymmetry):
        structure.bind_size(layout.max_size)
    rp = ResidualProblem(blocks, X, y, layout, structure, variance, values, reml)
    for _ in range(3):
        theta = np.array([RNG.uniform(0.3, 2), RNG.normal(), RNG.uniform(0.1, 1)])
        u = RNG.normal(0, 0.5, rp.n_cor + rp.n_var)
        params = np.concatenate([theta, u])
        expected = _dense_objective(rp, params, blocks, X, y)
        assert rp.objective(params) == pytest.approx(expected, rel=1e-9)
        # the engine's path through the whitened LmmProblem gives the same number
        _, u_cor, u_var = rp.split(params)
        problem, log_det = rp.problem_at(u_cor, u_var)
        assert problem.objective(theta) + log_det == pytest.approx(expected, rel=1e-9)


def test_two_terms_go_through_the_engine():
    # (1 | a) + (1 | a:b) with AR(1) within a:b: the LmmProblem path
    a = np.repeat(np.arange(4), 8)
    b = np.repeat(np.arange(8), 4)
    n = a.size
    X = np.column_stack([np.ones(n), RNG.standard_normal(n)])
    y = RNG.standard_normal(n)
    blocks = [RandomBlock(b, 8, np.ones((n, 1))), RandomBlock(a, 4, np.ones((n, 1)))]
    layout = make_layout(b, None)
    rp = ResidualProblem(blocks, X, y, layout, AR1(), None, {}, True)
    params = np.array([0.8, 1.3, 0.4])
    assert rp.objective(params) == pytest.approx(
        _dense_objective(rp, params, blocks, X, y), rel=1e-9
    )


def test_structured_random_effects_with_correlated_residuals():
    # an AR(1) random-effect covariance (theta = sd, rho) beside AR(1) residuals
    from mixedmodels.core.structures import AR1 as AR1_COVARIANCE

    codes, t, z, X, y = _data(p_z=2)
    blocks = [RandomBlock(codes, 6, z, AR1_COVARIANCE(2))]
    layout = make_layout(codes, None, codes)
    rp = ResidualProblem(blocks, X, y, layout, AR1(), None, {}, False)
    assert rp.upper_bounds()[:2].tolist() == [np.inf, 1.0]
    params = np.array([0.9, 0.4, 0.3])
    assert rp.objective(params) == pytest.approx(
        _dense_objective(rp, params, blocks, X, y), rel=1e-9
    )
    # the optimizer's coordinates scale the standard deviation, not the correlation
    inner = rp.to_internal(params)
    assert inner[1] == params[1]
    np.testing.assert_allclose(rp.from_internal(inner), params, rtol=1e-14)


def test_correlation_groups_must_nest_in_the_random_effects():
    codes, t, z, X, y = _data()
    crossing = np.arange(codes.size) % 3  # groups spanning levels
    layout = make_layout(crossing, None)
    with pytest.raises(ArgumentError, match="nested in the grouping factor"):
        ResidualProblem([RandomBlock(codes, 6, z)], X, y, layout, AR1(), None, {}, True)
