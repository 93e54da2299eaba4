"""The single-term shortcuts of :class:`ResidualProblem` against the whitened rows.

* :meth:`ResidualProblem.solution_at` (beta, modes, sigma, ``(R_X'R_X)^-1``, the
  objective) from the per-level cross products, against the whitened
  :class:`~mixedmodels.core.lmm.LmmProblem`'s ``solve`` (the engine's factorization of
  the rows): 1e-9 relative, the same estimates through two factorizations of
  well-conditioned simulated data.  Terms of 1, 2 (entry-by-entry path) and 5 (batched
  LAPACK path) coefficients; AR(1) with gaps (a linear plan), compound symmetry with
  unequal group sizes (a linear plan), ARMA(1,1) and ARMA(2,1) with unequal group sizes
  (whitened rows: the leading blocks of the longest group's factor), a variance function
  alone (``Power``: rows weighted; ``Ident``: strata weighted) and with AR(1).
* The solution's objective is the optimizer's objective at the same point bit for bit
  (the same arithmetic), and :meth:`ResidualProblem.level_heads` equals the slices of
  :meth:`ResidualProblem.level_grams` (1e-12 relative: the plans' basis summed over
  levels before or after the weights).
* :class:`LinearPlan` cross products against the whitened rows' (1e-10 relative).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.core.residual import AR1, ARMA, CAR1, CompoundSymmetry, LinearPlan, make_layout
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.core.variance_functions import Ident, Power

SEED = 20


def _problem(p, correlation, variance, unequal=False, reml=True):
    rng = np.random.default_rng(SEED + p)
    sizes = np.full(9, 7)
    if unequal:
        sizes = rng.integers(3, 9, 9)
    codes = np.repeat(np.arange(9), sizes)
    n = codes.size
    # integer times with gaps (1, 2 and 3 apart)
    t = np.concatenate([np.cumsum(rng.integers(1, 4, m)) for m in sizes]).astype(float)
    X = np.column_stack([np.ones(n), t, rng.standard_normal(n)])
    z = np.column_stack([np.ones(n), t / 5.0] + [rng.standard_normal(n) for _ in range(p - 2)])
    z = z[:, :p]
    y = 5 + t + rng.standard_normal(9)[codes] + rng.standard_normal(n) * (1 + t / 10)
    layout = make_layout(codes, t if isinstance(correlation, AR1) else None, codes)
    if isinstance(correlation, CompoundSymmetry):
        correlation.bind_size(layout.max_size)
    if isinstance(variance, Ident):
        variance.bind({"s": np.where(rng.random(n) < 0.4, "a", "b")}, layout.order)
    blocks = [RandomBlock(codes, 9, z)]
    return ResidualProblem(
        blocks, X, y, layout, correlation, variance, {"t": t + 1.0}, reml
    )


def _params(rp):
    p = rp.sorted_blocks[0].p
    lam = np.tril(np.full((p, p), 0.2)) + 0.5 * np.eye(p)
    theta = rp.sorted_blocks[0].structure.theta_from_lambda(lam)
    return np.concatenate([theta, np.full(rp.n_cor, 0.4), np.full(rp.n_var, 0.3)])


CASES = [
    ("ar1", lambda: AR1("t"), lambda: None, False),
    ("car1", lambda: CAR1("t"), lambda: None, False),
    ("cs", lambda: CompoundSymmetry(), lambda: None, True),
    ("arma11", lambda: ARMA(1, 1), lambda: None, False),
    ("arma21_unequal", lambda: ARMA(2, 1), lambda: None, True),
    ("power", lambda: None, lambda: Power("t"), False),
    ("ar1_power", lambda: AR1("t"), lambda: Power("t"), False),
    ("ident", lambda: None, lambda: Ident("s"), True),
    ("ar1_ident", lambda: AR1("t"), lambda: Ident("s"), False),
]


@pytest.mark.parametrize("p", [1, 2, 5])
@pytest.mark.parametrize("name, correlation, variance, unequal", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_solution_from_cross_products_matches_the_engine(
    p, name, correlation, variance, unequal, reml
):
    rp = _problem(p, correlation(), variance(), unequal, reml)
    params = _params(rp)
    theta, u_cor, u_var = rp.split(params)
    problem, log_det = rp.problem_at(u_cor, u_var)
    reference = problem.solve(theta)
    ours = rp.solution_at(params)
    for field in ("beta", "vcov_unscaled", "objective", "sigma", "pwrss", "log_det_random"):
        np.testing.assert_allclose(
            getattr(ours, field), getattr(reference, field), rtol=1e-9, atol=1e-12, err_msg=field
        )
    np.testing.assert_allclose(ours.u[0], reference.u[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.b[0], reference.b[0], rtol=1e-9, atol=1e-12)
    # the optimizer's value at the same point, bit for bit
    assert ours.objective + rp.whitening_log_det(u_cor, u_var) == rp.objective(params)
    np.testing.assert_allclose(rp.whitening_log_det(u_cor, u_var), log_det, rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("name, correlation, variance, unequal", CASES)
def test_level_heads_are_slices_of_level_grams(p, name, correlation, variance, unequal):
    rp = _problem(p, correlation(), variance(), unequal)
    _, u_cor, u_var = rp.split(_params(rp))
    head, xyxy, log_det = rp.level_heads(u_cor, u_var)
    grams, log_det_grams = rp.level_grams(u_cor, u_var)
    np.testing.assert_allclose(head, grams[:, :p, :], rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(xyxy, grams[:, p:, p:].sum(axis=0), rtol=1e-12, atol=1e-10)
    assert log_det == pytest.approx(log_det_grams, rel=1e-12)


@pytest.mark.parametrize(
    "correlation, unequal", [(AR1("t"), False), (CAR1("t"), False), (CompoundSymmetry(), True)]
)
def test_linear_plans_match_whitened_rows(correlation, unequal):
    rp = _problem(2, correlation, None, unequal)
    plan = rp._plan()
    assert isinstance(plan, LinearPlan)
    for u in (np.array([0.4]), np.array([-1.3]), np.array([2.2])):
        grams, log_det = plan.grams(u)
        white, log_det_rows = correlation.whiten(u, rp.layout, rp._term_rows())
        starts = np.append(rp._level_starts, rp.n)
        reference = np.stack(
            [white[a:b].T @ white[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]
        )
        np.testing.assert_allclose(grams, reference, rtol=1e-10, atol=1e-10)
        assert log_det == pytest.approx(log_det_rows, rel=1e-12)


def test_ar1_plan_refuses_a_coefficient_outside_the_unit_interval():
    rp = _problem(1, AR1("t"), None)
    with pytest.raises(np.linalg.LinAlgError):
        rp._plan().weights(np.array([np.inf]))


def test_ident_uses_its_strata_and_the_rows_multipliers_stay_per_row():
    """varIdent's evaluations weight its strata (nothing per row); the rows' multipliers
    asked for afterwards are still one per row, the strata's at the rows' levels."""
    rp = _problem(1, None, Ident("s"), True)
    params = _params(rp)
    rp.objective(params)
    assert rp._strata() is not None and rp._strata_basis is not None
    _, _, u_var = rp.split(params)
    s = rp.residual_sd(u_var)
    assert s.shape == (rp.n,)
    np.testing.assert_array_equal(s, rp.variance.stratum_sd(u_var)[rp.variance.strata()])
    assert rp.sd_scale(u_var) == pytest.approx(np.exp(np.log(s).mean()), rel=1e-14)


def test_an_exact_fit_has_zero_pwrss_in_both_the_objective_and_the_solution():
    """``[X y]'[X y]`` with ``y = X``: the Schur complement's last pivot is exactly 0
    (LAPACK's info = m); the objective's pieces and the solution both take PWRSS = 0 and
    beta = 1 (closed form), not an error."""
    from mixedmodels.core.residual_heads import head_pieces, head_solution

    head = np.zeros((3, 1, 3))
    head[:, 0, 0] = 2.0  # z'z per level; z'X = z'y = 0
    xyxy = np.array([[4.0, 4.0], [4.0, 4.0]])
    lam = np.array([[0.5]])
    ld_z, ld_x, pwrss = head_pieces(lam, head, xyxy, 1)
    assert pwrss == 0.0
    assert ld_z == pytest.approx(3 * np.log(1.5), rel=1e-15)
    assert ld_x == pytest.approx(np.log(4.0), rel=1e-15)
    _, r, beta, u = head_solution(lam, head, xyxy, 1)
    assert r[-1, -1] == 0.0
    np.testing.assert_allclose(beta, [1.0], rtol=1e-15)
    np.testing.assert_array_equal(u, np.zeros((3, 1)))


def test_car1_plan_weights_at_extreme_parameters():
    """Far out on CAR(1)'s unconstrained scale: Phi -> 0 gives independent rows (weights
    of the first rows' and the current rows' sums 1, the others 0; no overflow), Phi -> 1
    is refused as outside the range."""
    rp = _problem(1, CAR1("t"), None)
    w, log_det = rp._plan().weights(np.array([-800.0]))
    np.testing.assert_array_equal(w, [1.0] + [1.0, 0.0, -0.0] * (w.size // 3))
    assert log_det == 0.0
    with pytest.raises(np.linalg.LinAlgError):
        rp._plan().weights(np.array([800.0]))
