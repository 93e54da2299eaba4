"""Smooth bases against mgcv's smoothCon / smooth2random / PredictMat.

Bases are unique only up to a reparametrization (signs and rotations within eigenspaces,
the orthonormal basis of the constraint's null space), so the comparisons are of
invariants: the projection onto the column space, ``Xr Xr'`` of the random part (the
covariance it implies, which fixes the model), ``Xf Xf'`` of the orthonormal fixed part,
and the map from fitted values at the data to predictions at new ``x``.  Reference:
tests/reference/smooths/bases.R (mgcv 1.8-41).  Tolerances: 1e-10 relative, the data's
numbers pass through eigen-decompositions of matrices whose condition is ~1e5.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from mixedmodels.reterms.smooth_bases import (
    CubicRegressionBasis,
    ThinPlateBasis,
    _radial_times,
    mixed_model_form,
    sum_to_zero,
)

REF = json.loads((Path(__file__).parents[1] / "reference/smooths/bases.json").read_text())
X_DATA = np.array(REF["x"])
X_NEW = np.array(REF["xnew"])
TOL = 1e-10


def _projection(a: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(a)
    return q @ q.T


def _build(case):
    if case["bs"] == "tp":
        return ThinPlateBasis.build(X_DATA, case["k"], case["m"] or 2)
    return CubicRegressionBasis.build(X_DATA, case["k"])


def _close(a, b, tol=TOL):
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a - b).max() <= tol * scale


@pytest.mark.parametrize("name", sorted(REF["cases"]))
def test_raw_basis_spans_mgcvs(name):
    case = REF["cases"][name]
    _, X = _build(case)
    _close(_projection(X), _projection(np.array(case["X_raw"])))


@pytest.mark.parametrize("name", sorted(REF["cases"]))
def test_mixed_model_form_matches_smooth2random(name):
    case = REF["cases"][name]
    basis, X = _build(case)
    Z = sum_to_zero(X)
    form = mixed_model_form(Z.T @ basis.penalty @ Z, case["rank"])
    Xr, Xf = X @ Z @ form.random, X @ Z @ form.fixed
    Xr_ref, Xf_ref = np.array(case["Xr"]), np.array(case["Xf"])
    _close(Xr @ Xr.T, Xr_ref @ Xr_ref.T)
    assert Xf.shape == (X.shape[0], len(case["Xf"][0]) if case["Xf"] else 0)
    if Xf.size:
        _close(Xf @ Xf.T, Xf_ref @ Xf_ref.T)
    # the constrained model matrix sums to zero, as mgcv's does
    assert np.abs((X @ Z).sum(axis=0)).max() < 1e-9 * np.abs(X).sum()


@pytest.mark.parametrize("name", sorted(REF["cases"]))
def test_prediction_map_matches_predictmat(name):
    """New x (inside and beyond the data's range): the map from fitted values at the
    data to values at new x is parametrization-free."""
    case = REF["cases"][name]
    basis, X = _build(case)
    Z = sum_to_zero(X)
    ours = basis.matrix(X_NEW) @ Z @ np.linalg.pinv(X @ Z)
    theirs = np.array(case["Xnew"]) @ np.linalg.pinv(np.array(case["X"]))
    _close(ours, theirs)


def test_cr_basis_is_mgcvs_exactly():
    """The cr basis is unique (values at the knots), so mgcv's own matrix is reproduced."""
    case = REF["cases"]["cr10"]
    basis, X = _build(case)
    _close(X, np.array(case["X_raw"]), 1e-12)
    _close(basis.matrix(X_NEW), np.array(case["Xnew_raw"]), 1e-12)


def test_radial_prefix_sums_equal_the_direct_product():
    """The O(n log k) evaluation of sum_j c_j |x - x_j|^3 equals the dense product."""
    rng = np.random.default_rng(1)
    knots = np.sort(rng.uniform(-2, 2, 300))
    coefs = rng.normal(size=(300, 4))
    x = rng.uniform(-2.5, 2.5, 20_000)
    fast = _radial_times(x, knots, coefs, 2)
    direct = (np.abs(x[:, None] - knots[None, :]) ** 3 / 12) @ coefs
    assert np.abs(fast - direct).max() <= 1e-9 * np.abs(direct).max()


def test_too_few_unique_values_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than the basis dimension k = 10"):
        ThinPlateBasis.build(np.repeat([1.0, 2.0, 3.0], 5), 10)
    with pytest.raises(ValueError, match="k >= 3"):
        CubicRegressionBasis.build(np.arange(10.0), 2)
