"""``NonlinearProblem``'s set-up (core/nonlinear.py ``__post_init__``): the group indicator
built at its first use, and the intercept-only test, against their definitions.

The indicator sums rows into groups: ``E @ v`` equals ``np.bincount(groups, v)`` (exact: a
sum of the same numbers with 0 * v_j = 0 added; the dense product's order may differ, so
within 1e-13 relative), dense below ``DENSE_INDICATOR`` entries and sparse above.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import sparse

import mixedmodels as mm
from mixedmodels.core import nonlinear as cn
from tests.reference.nlme.cases import arguments, reference

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed")


def _problem(name):
    data, kwargs = arguments(name, reference())
    return mm.nlme(data=data, **kwargs).problem


def _copy(problem, **changes):
    fields = dict(y=problem.y, model=problem.model, n_model_parameters=problem.n_model_parameters,
                  fixed_matrices=problem.fixed_matrices, function_index=problem.function_index,
                  random_index=problem.random_index, groups=problem.groups,
                  n_groups=problem.n_groups, diagonal=problem.diagonal, reml=problem.reml,
                  variance=problem.variance, values=problem.values,
                  random_affine=problem.random_affine)
    fields.update(changes)
    return cn.NonlinearProblem(**fields)


@pytest.mark.parametrize("name", ["theoph", "co2_type_treatment"])
def test_indicator_sums_rows_into_groups(monkeypatch, name):
    problem = _copy(_problem(name))
    assert "indicator" not in vars(problem)  # (not built by the set-up)
    v = np.random.default_rng(1).normal(size=problem.y.size)
    want = np.bincount(problem.groups, v, minlength=problem.n_groups)
    e = problem.indicator
    assert isinstance(e, np.ndarray) and e.shape == (problem.n_groups, problem.y.size)
    assert set(np.unique(e).tolist()) == {0.0, 1.0}
    np.testing.assert_allclose(e @ v, want, rtol=1e-13)
    assert problem.indicator is e  # (kept)
    monkeypatch.setattr(cn, "DENSE_INDICATOR", 10)
    big = _copy(problem)
    assert sparse.issparse(big.indicator)
    np.testing.assert_allclose(big.indicator @ v, want, rtol=1e-13)
    np.testing.assert_array_equal(big.indicator.toarray(), e)


@needs_numba
def test_a_compiled_fit_does_not_build_the_indicator():
    assert "indicator" not in vars(_problem("orange_two_diag"))


@pytest.mark.parametrize(("name", "intercepts"), [("orange_ml", True), ("theoph", True),
                                                   ("co2_type_treatment", False)])
def test_intercepts_as_defined(name, intercepts):
    """Every model parameter one fixed effect whose column is all ones (phi's fixed part is
    beta on every row), as np.array_equal / np.all define it."""
    problem = _problem(name)
    p = problem.n_model_parameters
    want = bool(problem.column_parameter.size == p
                and np.array_equal(problem.column_parameter, np.arange(p))
                and np.all(problem.fixed_columns == 1.0))
    assert want == intercepts
    assert problem._intercepts == want
    scaled = [m.copy() for m in problem.fixed_matrices]
    scaled[-1][0, 0] = np.nan  # (one entry not 1: no longer all intercepts)
    assert not _copy(problem, fixed_matrices=scaled)._intercepts
