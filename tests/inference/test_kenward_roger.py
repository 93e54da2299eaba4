"""Kenward-Roger df, adjusted standard errors and p-values against pbkrtest (references
kr_df, kr_se, kr_p), within 1e-3 relative at our optimum and within 1e-6 at lme4's estimates
(the same closed-form algebra on the same theta: measured agreement 1e-10); and the q x q
algebra against a dense n x n computation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.inference.kenward_roger import kenward_roger_pieces, kr_test
from tests.catalogue import gaussian_cases

CASES = [c for c in gaussian_cases() if "kr_df" in c.reference]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kenward_roger_matches_pbkrtest(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = case.fit()
    table = fit.fixef_table("kenward-roger")
    ref = case.reference
    np.testing.assert_allclose(table.df, ref["kr_df"], rtol=1e-3)
    np.testing.assert_allclose(table.std_error, ref["kr_se"], rtol=1e-3)
    np.testing.assert_allclose(table.p_value, ref["kr_p"], rtol=1e-3)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kenward_roger_at_lme4_estimates_matches_pbkrtest(case):
    frame = case.data()
    theta = np.array(case.reference["theta"], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer(
            case.formula,
            frame,
            reml=case.reml,
            contrasts=case.reference.get("contrasts"),
            start=theta,
            optimize=False,
        )
    table = fit.fixef_table("kenward-roger")
    ref = case.reference
    np.testing.assert_allclose(table.df, ref["kr_df"], rtol=1e-6)
    np.testing.assert_allclose(table.std_error, ref["kr_se"], rtol=1e-6)
    np.testing.assert_allclose(table.p_value, ref["kr_p"], rtol=1e-6)


def test_adjusted_covariance_equals_dense_formula():
    """Phi_A from the Woodbury/q x q route equals the textbook n x n computation."""
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    X, Z = fit.X, fit.Z.toarray()
    n = X.shape[0]
    cov = fit.ranef_cov()["Subject"].to_numpy()
    s2 = fit.sigma**2
    G = []
    for a, b in [(0, 0), (1, 0), (1, 1)]:
        e = np.zeros((2, 2))
        e[a, b] = e[b, a] = 1.0
        G.append(Z @ np.kron(np.eye(18), e) @ Z.T)
    G.append(np.eye(n))
    sigma = s2 * np.eye(n) + Z @ np.kron(np.eye(18), cov) @ Z.T
    si = np.linalg.inv(sigma)
    phi = np.linalg.inv(X.T @ si @ X)
    P = [-X.T @ si @ g @ si @ X for g in G]
    Q = [[X.T @ si @ gi @ si @ gj @ si @ X for gj in G] for gi in G]
    proj = si - si @ X @ phi @ X.T @ si
    info = np.array([[np.trace(proj @ gi @ proj @ gj) for gj in G] for gi in G])
    W = 2 * np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ phi @ P[j]) for i in range(4) for j in range(4))
    pieces = kenward_roger_pieces(fit)
    np.testing.assert_allclose(pieces["phi_a"], phi + 2 * phi @ U @ phi, rtol=1e-8)


def test_multi_df_test_with_one_row_equals_t_squared():
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    pieces = kenward_roger_pieces(fit)
    table = fit.fixef_table("kenward-roger")
    f, num, den, p = kr_test(pieces, np.array([[0.0, 1.0]]), fit.fixef.to_numpy())
    assert num == 1 and den == pytest.approx(table.df.iloc[1])
    assert f == pytest.approx(table.t_value.iloc[1] ** 2, rel=1e-6)


@pytest.mark.parametrize(
    "data, formula",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        ("seedsim", "y ~ x + (1 | clus)"),
    ],
)
def test_single_term_route_equals_general_route(data, formula):
    from mixedmodels.inference.kenward_roger import _general_pieces, _single_term_pieces

    fit = mm.lmer(formula, mm.datasets.load(data))
    a, b = _single_term_pieces(fit), _general_pieces(fit)
    np.testing.assert_allclose(a["phi_a"], b["phi_a"], rtol=1e-9)
    np.testing.assert_allclose(a["W"], b["W"], rtol=1e-8)
