"""Kenward-Roger df and adjusted standard errors of fits with structured residuals.

References:

- pbkrtest (``tests/reference/residual/make_satterthwaite_reference.R``): compound
  symmetry within the inner groups plus ``(1 | outer)`` has the marginal covariance of
  ``(1 | outer) + (1 | outer:inner)`` (Rho >= 0).  Without Kenward and Roger's second-
  derivative terms (left out by pbkrtest and by the package) the df and ``Phi_A`` do not
  depend on the parametrization, so they must equal pbkrtest's: df 1e-4 relative (the
  issue's tolerance; the two optima agree to ~1e-7), standard errors 1e-5.
- a dense computation in this file, written from Kenward and Roger (1997): ``Sigma`` from
  the natural parameters (intercept variance, sigma^2, Phi, the varIdent ratio), its
  derivatives by central differences, the REML information ``tr(P G_i P G_j) / 2`` with
  the projection ``P = Sigma^-1 - Sigma^-1 X Phi X' Sigma^-1``, ``Phi_A`` and the moment
  matching for one contrast.  Central differences with steps 1e-5 relative leave errors
  near 1e-9; 1e-6 relative on the df and 1e-8 on the standard errors.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from tests.inference.test_residual_satterthwaite import _simulated

REFERENCE = Path(__file__).parent.parent / "reference" / "residual"
CS_CASES = {
    "machines": ("Machines", "score ~ Machine + (1 | Worker)", "Worker/Machine"),
    "cake": ("cake", "angle ~ recipe + temp + (1 | replicate)", "replicate/recipe"),
}


def _fit(formula, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, **kwargs)


@pytest.mark.parametrize("case", sorted(CS_CASES))
def test_compound_symmetry_equals_pbkrtest_of_the_nested_model(case):
    ref = json.loads((REFERENCE / "satterthwaite_cs_nested.json").read_text())[case]
    data, formula, group = CS_CASES[case]
    fit = _fit(formula, mm.datasets.load(data), correlation=mm.cor.CompSymm(group=group))
    table = fit.fixef_table("kenward-roger")
    np.testing.assert_allclose(table["df"], ref["df_kenward_roger"], rtol=1e-4)
    np.testing.assert_allclose(table["std_error"], ref["se_kenward_roger"], rtol=1e-5)


def _dense_kenward_roger(sigma_of, v: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(df, adjusted se) of each coefficient, Kenward and Roger (1997) written densely."""
    k = v.size
    S = sigma_of(v)
    Si = np.linalg.inv(S)
    phi = np.linalg.inv(X.T @ Si @ X)
    proj = Si - Si @ X @ phi @ X.T @ Si
    h = 1e-5 * np.maximum(np.abs(v), 0.1)
    G = []
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        G.append((sigma_of(v + e) - sigma_of(v - e)) / (2 * h[i]))
    P = [-X.T @ Si @ g @ Si @ X for g in G]
    Q = [[X.T @ Si @ gi @ Si @ gj @ Si @ X for gj in G] for gi in G]
    info = np.array([[0.5 * np.trace(proj @ gi @ proj @ gj) for gj in G] for gi in G])
    W = np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ phi @ P[j]) for i in range(k) for j in range(k))
    phi_a = phi + 2 * phi @ U @ phi
    dfs = []
    for c in range(X.shape[1]):
        ell = np.zeros((1, X.shape[1]))
        ell[0, c] = 1.0
        theta = ell.T @ np.linalg.inv(ell @ phi @ ell.T) @ ell
        M = [theta @ phi @ p @ phi for p in P]
        a1 = sum(W[i, j] * np.trace(M[i]) * np.trace(M[j]) for i in range(k) for j in range(k))
        a2 = sum(W[i, j] * np.trace(M[i] @ M[j]) for i in range(k) for j in range(k))
        q = 1
        b = (a1 + 6 * a2) / (2 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        d = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / d, (q - g) / d, (q + 2 - g) / d
        e_star = 1 / (1 - a2 / q)
        v_star = (2 / q) * (1 + c1 * b) / ((1 - c2 * b) ** 2 * (1 - c3 * b))
        rho = v_star / (2 * e_star**2)
        dfs.append(4 + (q + 2) / (q * rho - 1))
    return np.array(dfs), np.sqrt(np.diagonal(phi_a))


def test_ar1_with_varident_agrees_with_a_dense_computation():
    d = _simulated()
    fit = _fit("y ~ x + arm + (1 | g)", d, correlation=mm.cor.AR1(), weights=mm.var.Ident("arm"))
    groups = d["g"].cat.codes.to_numpy()
    same = groups[:, None] == groups[None, :]
    lag = np.abs(d["t"].to_numpy()[:, None] - d["t"].to_numpy()[None, :])
    is_b = (d["arm"] == "b").to_numpy()

    def sigma_of(v):
        var_b, s2, phi, delta = v
        s = np.where(is_b, delta, 1.0)
        return same * (var_b + s2 * np.outer(s, s) * phi**lag)

    v = np.array(
        [
            fit.varcorr.query("grp == 'g'")["vcov"].iloc[0],
            fit.sigma**2,
            fit.correlation_parameters["Phi"],
            fit.variance_parameters["b"],
        ]
    )
    np.testing.assert_allclose(
        sigma_of(v), fit.marginal_cov().toarray(), atol=1e-10 * fit.sigma**2
    )  # the same model, rows in the data's order
    df, se = _dense_kenward_roger(sigma_of, v, fit.X)
    table = fit.fixef_table("kenward-roger")
    np.testing.assert_allclose(table["df"], df, rtol=1e-6)
    np.testing.assert_allclose(table["std_error"], se, rtol=1e-8)
    # the structure's parameters count: their uncertainty inflates the standard errors
    assert np.all(table["std_error"] > np.sqrt(np.diagonal(fit.vcov.to_numpy())))
