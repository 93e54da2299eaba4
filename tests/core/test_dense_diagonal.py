"""The dense path's elementwise congruence for diagonal relative factors (scalar terms,
``diag`` and scaled-identity structures such as a smooth's random part) against the
blocked Cholesky factorization of the same model (an identity between two computations;
tolerance 1e-10 relative: rounding only)."""

import numpy as np
import pytest

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.reterms.blocks import RandomBlock
from mixedmodels.reterms.structures import Diagonal, ScaledIdentity, Unstructured


def _problem(structure_of_vector_term):
    rng = np.random.default_rng(4)
    n = 300
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    smooth = RandomBlock(np.zeros(n, dtype=np.int64), 1, rng.normal(size=(n, 6)), ScaledIdentity(6))
    groups = rng.integers(0, 12, n)
    vector = RandomBlock(groups, 12, rng.normal(size=(n, 3)), structure_of_vector_term(3))
    intercept = RandomBlock(rng.integers(0, 9, n), 9, np.ones((n, 1)))
    y = X @ [1.0, 0.5] + rng.normal(size=n)
    return LmmProblem([vector, smooth, intercept], X, y)


@pytest.mark.parametrize("structure", [Diagonal, ScaledIdentity])
def test_diagonal_factors_take_the_elementwise_path_with_the_blocked_value(structure):
    problem = _problem(structure)
    assert problem.dense_objective is not None and problem.dense_objective._diagonal_lambda
    rng = np.random.default_rng(1)
    for _ in range(5):
        theta = rng.uniform(0.05, 3.0, problem.n_theta)
        dense = problem.objective(theta)
        blocked = problem.objective_from_factor(problem.factorize(theta))
        assert abs(dense - blocked) <= 1e-10 * abs(blocked)


def test_an_unstructured_vector_term_keeps_the_general_path():
    problem = _problem(Unstructured)
    assert not problem.dense_objective._diagonal_lambda
    theta = problem.theta_start() * 0.7
    dense = problem.objective(theta)
    blocked = problem.objective_from_factor(problem.factorize(theta))
    assert abs(dense - blocked) <= 1e-10 * abs(blocked)
