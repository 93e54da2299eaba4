"""The lean dense solver of PIRLS's weighted steps (core/pirls_dense.py) against the
normal equations written out with dense numpy matrices: ``Z`` built column by column from
the terms' codes, ``Lambda`` as a dense block-diagonal matrix, ``M = Lambda' Z' W Z Lambda +
I`` and the bordered system solved by ``numpy.linalg.solve``.  Tolerances: the systems are
well conditioned (condition numbers below 1e4), so the two solves agree to 1e-9 relative;
log-determinants to 1e-10 relative."""

import numpy as np
import pytest

from mixedmodels.core.pirls_dense import DenseWeightedSystem, ZRows
from mixedmodels.core.structures import Unstructured
from mixedmodels.core.terms import RandomBlock


def _blocks(kind: str, rng: np.random.Generator, n: int = 120):
    """Terms of several shapes: scalar crossed, a slope term, a one-level (dense) term,
    an observation-level term."""
    g1 = rng.integers(0, 9, n)
    g2 = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    blocks = {
        "scalar": RandomBlock(g1, 9, np.ones((n, 1))),
        "crossed": RandomBlock(g2, 5, np.ones((n, 1))),
        "slope": RandomBlock(g2, 5, np.column_stack([np.ones(n), x])),
        "one_level": RandomBlock(np.zeros(n, dtype=int), 1, rng.normal(size=(n, 3))),
        "observation": RandomBlock(np.arange(n), n, np.ones((n, 1))),
    }
    chosen = {
        "one_scalar": ["scalar"],
        "crossed": ["scalar", "crossed"],
        "slopes": ["slope", "scalar"],
        "smooth": ["one_level", "scalar"],
        "observation": ["observation", "scalar", "crossed"],
    }[kind]
    return [blocks[c] for c in chosen]


def _dense_z(blocks, n):
    cols = []
    for b in blocks:
        zk = np.zeros((n, b.size))
        for j in range(b.p):
            zk[np.arange(n), b.codes * b.p + j] = b.z[:, j]
        cols.append(zk)
    return np.hstack(cols)


def _dense_lambda(blocks, lambdas):
    return np.block(
        [
            [
                np.kron(np.eye(b.n_levels), lam) if i == j else np.zeros((b.size, c.size))
                for j, c in enumerate(blocks)
            ]
            for i, (b, lam) in enumerate(zip(blocks, lambdas, strict=True))
        ]
    )


def _lambdas(blocks, rng):
    out = []
    for b in blocks:
        lam = np.tril(rng.uniform(0.3, 1.2, (b.p, b.p)))
        out.append(lam)
    return out


CASES = [
    ("one_scalar", None),
    ("one_scalar", 0),  # the only sparse term eliminated: nothing left but X and z
    ("crossed", None),
    ("slopes", None),
    ("smooth", None),
    ("crossed", 0),  # eliminate the first scalar term (several rows per level)
    ("slopes", 1),
    ("observation", 0),  # an observation-level term: absorbed into the weights
]


@pytest.mark.parametrize(("kind", "eliminate"), CASES)
@pytest.mark.parametrize("update_beta", [False, True])
def test_step_solves_the_normal_equations(kind, eliminate, update_beta):
    rng = np.random.default_rng(3)
    n = 120
    blocks = _blocks(kind, rng, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    lambdas = _lambdas(blocks, rng)
    rows = ZRows(blocks)
    system = DenseWeightedSystem(rows, X, eliminate=eliminate)
    system.set_rows(rows.scaled(lambdas))
    w = rng.uniform(0.2, 2.0, n)
    z = rng.normal(size=n)
    u, beta, log_det = system.step(w, z, update_beta)

    zl = _dense_z(blocks, n) @ _dense_lambda(blocks, lambdas)
    q = zl.shape[1]
    m = zl.T @ (w[:, None] * zl) + np.eye(q)
    if update_beta:
        c = np.hstack([zl, X])
        a = c.T @ (w[:, None] * c)
        a[:q, :q] += np.eye(q)
        ref = np.linalg.solve(a, c.T @ (w * z))
        np.testing.assert_allclose(u, ref[:q], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(beta, ref[q:], rtol=1e-9, atol=1e-11)
    else:
        assert beta is None
        np.testing.assert_allclose(u, np.linalg.solve(m, zl.T @ (w * z)), rtol=1e-9, atol=1e-11)
    sign, ref_log_det = np.linalg.slogdet(m)
    assert sign == 1.0
    assert log_det == pytest.approx(ref_log_det, rel=1e-10)
    assert system.log_det(w) == pytest.approx(ref_log_det, rel=1e-10)

    # (R_X' R_X)^-1: the inverse of X' W X - X' W Z Lambda M^-1 Lambda' Z' W X
    schur = X.T @ (w[:, None] * X) - (X.T @ (w[:, None] * zl)) @ np.linalg.solve(
        m, zl.T @ (w[:, None] * X)
    )
    np.testing.assert_allclose(
        system.fixed_covariance(w), np.linalg.inv(schur), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize(("kind", "eliminate"), CASES)
@pytest.mark.parametrize("update_beta", [False, True])
def test_increment_form_gives_the_same_solution(kind, eliminate, update_beta):
    """The step from a current ``(u, beta)`` in increment form (working residuals as the
    response, ``u`` subtracted from the right-hand side) lands on the full form's solution:
    ``u + du`` and ``beta + dbeta`` agree to 1e-9."""
    rng = np.random.default_rng(9)
    n = 120
    blocks = _blocks(kind, rng, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    lambdas = _lambdas(blocks, rng)
    rows = ZRows(blocks)
    system = DenseWeightedSystem(rows, X, eliminate=eliminate)
    scaled = rows.scaled(lambdas)
    system.set_rows(scaled)
    w = rng.uniform(0.2, 2.0, n)
    z = rng.normal(size=n)
    u0 = rng.normal(size=rows.q)
    beta0 = rng.normal(size=2)
    fit0 = scaled.times(u0) + (X @ beta0 if update_beta else 0.0)
    u, beta, log_det = system.step(w, z, update_beta)
    du, dbeta, log_det_inc = system.step(w, z - fit0, update_beta, current=u0)
    np.testing.assert_allclose(u0 + du, u, rtol=1e-9, atol=1e-11)
    if update_beta:
        np.testing.assert_allclose(beta0 + dbeta, beta, rtol=1e-9, atol=1e-11)
    assert log_det_inc == pytest.approx(log_det, rel=1e-12)


@pytest.mark.parametrize("kind", ["crossed", "slopes", "smooth", "observation"])
def test_scaled_rows_are_z_lambda(kind):
    rng = np.random.default_rng(5)
    n = 120
    blocks = _blocks(kind, rng, n)
    lambdas = _lambdas(blocks, rng)
    scaled = ZRows(blocks).scaled(lambdas)
    zl = _dense_z(blocks, n) @ _dense_lambda(blocks, lambdas)
    u = rng.normal(size=zl.shape[1])
    s = rng.normal(size=n)
    np.testing.assert_allclose(scaled.times(u), zl @ u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scaled.transpose_times(s), zl.T @ s, rtol=1e-12, atol=1e-12)


def test_non_positive_definite_weights_raise():
    """Negative weights that break the system raise the solver's error (PIRLS then floors
    them), never return a garbage step."""
    from mixedmodels.linalg.blocks import NotPositiveDefiniteError

    rng = np.random.default_rng(1)
    n = 40
    blocks = [RandomBlock(rng.integers(0, 4, n), 4, np.ones((n, 1)), Unstructured(1))]
    rows = ZRows(blocks)
    system = DenseWeightedSystem(rows, np.ones((n, 1)))
    system.set_rows(rows.scaled([np.array([[3.0]])]))
    with pytest.raises(NotPositiveDefiniteError):
        system.step(np.full(n, -1.0), rng.normal(size=n), True)


@pytest.mark.parametrize("kind", ["crossed", "observation"])
def test_eliminated_term_with_negative_weights_raises(kind):
    """Weights that make the eliminated term's diagonal block non-positive raise, whatever
    the Schur complement's factorization would say."""
    from mixedmodels.linalg.blocks import NotPositiveDefiniteError

    rng = np.random.default_rng(4)
    n = 120
    blocks = _blocks(kind, rng, n)
    rows = ZRows(blocks)
    system = DenseWeightedSystem(rows, np.ones((n, 1)), eliminate=0)
    system.set_rows(rows.scaled([np.array([[2.0]])] * len(blocks)))
    with pytest.raises(NotPositiveDefiniteError):
        system.step(np.full(n, -1.0), rng.normal(size=n), False)


def test_only_a_scalar_term_is_eliminated():
    rng = np.random.default_rng(2)
    blocks = _blocks("slopes", rng)
    with pytest.raises(ValueError, match="scalar term"):
        DenseWeightedSystem(ZRows(blocks), np.ones((120, 1)), eliminate=0)


def _glmm(kind: str, family: str, rng: np.random.Generator):
    from mixedmodels.core.families import make_family
    from mixedmodels.core.pirls import GlmmProblem

    n = 400
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    if kind == "many_levels":  # one scalar term with 300 levels: q > 240, eliminated
        blocks = [RandomBlock(rng.integers(0, 300, n), 300, np.ones((n, 1)))]
    elif kind == "observation":  # an observation-level term with two crossed ones
        blocks = [
            RandomBlock(np.arange(n), n, np.ones((n, 1))),
            RandomBlock(rng.integers(0, 70, n), 70, np.ones((n, 1))),
            RandomBlock(rng.integers(0, 6, n), 6, np.ones((n, 1))),
        ]
    elif kind == "crossed":  # 100 x 8 crossed scalar terms: the 100 eliminated
        blocks = [
            RandomBlock(rng.integers(0, 8, n), 8, np.ones((n, 1))),
            RandomBlock(rng.integers(0, 100, n), 100, np.ones((n, 1))),
        ]
    else:  # "slopes": a correlated slope term and a dense one-level term
        blocks = [
            RandomBlock(rng.integers(0, 12, n), 12, np.column_stack([np.ones(n), x])),
            RandomBlock(np.zeros(n, dtype=int), 1, rng.normal(size=(n, 4))),
        ]
    q = sum(b.size for b in blocks)
    b_true = 0.5 * rng.normal(size=q)
    from mixedmodels.core.pirls import _sparse_z

    eta = X @ np.array([0.2, 0.5]) + _sparse_z(blocks, n) @ b_true
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return GlmmProblem(blocks, X, y, None, None, make_family(family))


@pytest.mark.parametrize("kind", ["many_levels", "observation", "crossed", "slopes"])
@pytest.mark.parametrize("family", ["poisson", "binomial"])
@pytest.mark.parametrize("update_beta", [False, True])
def test_lean_mode_matches_the_lmm_engine(kind, family, update_beta):
    """The conditional mode and the Laplace deviance by the lean dense solver agree with
    those the LMM engine's scoring steps reach (the engine forced by disabling the lean
    solver): both converge PIRLS to 1e-12 relative, so the Laplace deviances agree to
    1e-10 relative and the modes to 1e-6 (u's error is of the order of the square root
    of the deviance's)."""
    rng = np.random.default_rng(7)
    lean = _glmm(kind, family, rng)
    engine = lean.with_family(lean.family)
    engine._dense = None  # decided: the LMM engine
    theta = 0.7 * lean.theta_start()
    theta[lean.theta_start() == 0] = 0.1  # correlated terms: off-diagonal entries too
    beta = np.array([0.1, 0.4])
    a = lean.mode(theta, beta, update_beta=update_beta)
    assert lean._dense is not None  # the lean solver was used
    b = engine.mode(theta, beta, update_beta=update_beta)
    assert a.laplace == pytest.approx(b.laplace, rel=1e-10)
    np.testing.assert_allclose(a.u, b.u, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.beta, b.beta, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.unscaled_fixed_cov, b.unscaled_fixed_cov, rtol=1e-6)


@pytest.mark.parametrize("engine", [False, True])
def test_mode_pickles_with_its_lazy_covariance(engine):
    """A conditional mode (and so a fit holding one) pickles; ``(R_X' R_X)^-1``, computed
    only when first read, is the same number after the round trip (both computed from the
    same weights by the same solver: equal to 1e-12)."""
    import pickle

    rng = np.random.default_rng(8)
    problem = _glmm("crossed", "poisson", rng)
    if engine:
        problem._dense = None
    theta = 0.7 * problem.theta_start()
    mode = problem.mode(theta, np.array([0.1, 0.4]))
    copy = pickle.loads(pickle.dumps(mode))
    np.testing.assert_allclose(copy.unscaled_fixed_cov, mode.unscaled_fixed_cov, rtol=1e-12)
    assert copy.laplace == mode.laplace


def test_the_solver_view_names_the_path_and_the_eliminated_term():
    """``GlmmProblem.describe_solver``: cbpp (q = 15) is solved on the whole dense system;
    grouseticks with an observation-level ``(1|INDEX)`` (403 levels, one row each) absorbs
    that term into the weights; before a fit nothing has been built."""
    import warnings

    import mixedmodels as mm
    from mixedmodels.core.pirls import GlmmProblem

    cbpp = mm.datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer("cbind(incidence, size - incidence) ~ period + (1|herd)", cbpp, "binomial")
    assert fit.problem.describe_solver() == (
        "path: lean dense PIRLS system (15 random-effect columns + X)"
    )
    ticks = mm.datasets.load("grouseticks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer(
            "TICKS ~ YEAR + (1|INDEX) + (1|BROOD) + (1|LOCATION)", ticks, "poisson"
        )
    view = fit.problem.describe_solver().splitlines()
    assert view[0] == "path: lean dense PIRLS system (181 random-effect columns + X)"
    assert view[1].endswith("(403 levels x 1): absorbed into the weights")
    fresh = GlmmProblem(
        fit.problem.blocks, fit.problem.X, fit.problem.y, None, None, fit.problem.family
    )
    assert fresh.describe_solver() == ""
