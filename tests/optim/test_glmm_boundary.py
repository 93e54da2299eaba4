"""Stage 2's boundary search (optim/glmm._near_boundary, _boundary_search): which diagonal
theta are tried at 0, and the search with them held there, against closed forms.  The
glmer.nb (x | g) fit whose slope sd lme4 puts at 0 (where BOBYQA stopped at 2.9e-4) is
checked against lme4 in tests/test_family_agreement_more.py (glmer_nb_slopes_offset)."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.optim.bobyqa import OptimizeResult
from mixedmodels.optim.glmm import NEAR_BOUNDARY, _boundary_search, _near_boundary


def test_near_boundary_picks_small_diagonals_relative_to_their_term():
    """Two terms: (x | g) with theta (0.36, -0.05, 2.9e-4) and a scalar term at 1e-3.
    Only the first term's slope diagonal (2.9e-4 < 1e-2 x 0.36) is tried: the off-diagonal
    is unbounded, a diagonal at 0 is already there, and the scalar term's theta is its own
    term's largest."""
    theta = np.array([0.36, -0.05, 2.9e-4, 1e-3])
    lower = np.array([0.0, -np.inf, 0.0, 0.0])
    assert _near_boundary(theta, lower, [3, 1]).tolist() == [2]
    theta[2] = 0.0
    assert _near_boundary(theta, lower, [3, 1]).tolist() == []
    theta[2] = NEAR_BOUNDARY * 0.36 * 1.01  # just above the fraction
    assert _near_boundary(theta, lower, [3, 1]).tolist() == []


def test_boundary_search_holds_the_entry_and_reoptimizes_the_rest():
    """``f(z) = (z0 - 1 - z1)^2 + 10 (z1 - 1e-4)^2``: with ``z1`` held at 0 the rest's
    minimum is ``z0 = 1``, ``f = 1e-7`` (closed form), to BOBYQA's tolerance (1e-8 in z)."""

    def f(z: np.ndarray) -> float:
        return float((z[0] - 1.0 - z[1]) ** 2 + 10.0 * (z[1] - 1e-4) ** 2)

    interior = OptimizeResult(np.array([1.0001, 1e-4]), 0.0, 1, True, "")
    bounds = np.array([-np.inf, 0.0])
    found = _boundary_search(f, interior, bounds, np.array([1]), np.array([0.1, 0.1]), 1e-14)
    assert found.x[1] == 0.0
    assert found.x[0] == pytest.approx(1.0, abs=1e-7)
    assert found.fun == pytest.approx(1e-7, rel=1e-6)
    assert found.fun > interior.fun  # the caller keeps the interior point here


def test_vcov_leaves_out_a_flat_family_parameter():
    """A Hessian whose last coordinate (a family parameter) is flat (curvature 1e-12 in
    its step's units against 2) and, through a coupling of 1e-5, makes it indefinite: the
    covariance of the rest is ``2 H^-1`` of their block (closed form), the flat
    parameter's row and column NaN; a flat coordinate that is not droppable (theta or
    beta) gives the conditional fallback as before."""
    from mixedmodels.optim.glmm import _vcov_from_hessian

    hess = np.array([[2.0, 0.5, 1e-5], [0.5, 1.0, 1e-5], [1e-5, 1e-5, 1e-12]])
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(hess)
    fallback = np.full((3, 3), -1.0)
    cov = _vcov_from_hessian(
        hess, 0, fallback, droppable=np.array([False, False, True]), steps=np.ones(3)
    )
    np.testing.assert_allclose(cov[:2, :2], 2.0 * np.linalg.inv(hess[:2, :2]), rtol=1e-14)
    assert np.all(np.isnan(cov[2])) and np.all(np.isnan(cov[:, 2]))
    with pytest.warns(Warning, match="not positive definite"):
        kept = _vcov_from_hessian(
            hess, 0, fallback, droppable=np.array([False, False, False]), steps=np.ones(3)
        )
    assert np.array_equal(kept, fallback)
