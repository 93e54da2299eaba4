"""Smooth bases and extreme covariate scales.

A thin plate or cubic regression smooth is invariant to the covariate's units: the basis'
column space and the penalty only scale, so the REML fit of ``y ~ s(c x) + (1 | clus)`` is
the fit of ``y ~ s(x) + (1 | clus)`` (identity checked here to 1e-8 relative in the REML
criterion across c = 1e-40 .. 1e40).  Beyond the scale at which the penalty's entries
overflow or underflow in double precision (c = 1e60: the penalty became rank 0, "ValueError:
the penalty has lower rank than its basis declares"; c = 1e-60: "LinAlgError: Eigenvalues did
not converge") the fit is a DataError naming the smooth and saying to rescale.
"""

from __future__ import annotations

import warnings

import pytest

import mixedmodels as mm

SEEDSIM = mm.datasets.load("seedsim")


def _fit(bs: str, factor: float) -> mm.LmerFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        return mm.gamm(f"y ~ s(x, bs = '{bs}') + (1 | clus)", SEEDSIM.assign(x=SEEDSIM.x * factor))


@pytest.mark.parametrize("bs", ["tp", "cr"])
def test_fit_does_not_depend_on_the_covariate_units(bs):
    base = _fit(bs, 1.0)
    for factor in (1e-40, 1e-10, 1e10, 1e40):
        scaled = _fit(bs, factor)
        assert scaled.objective == pytest.approx(base.objective, rel=1e-8)
        assert scaled.sigma == pytest.approx(base.sigma, rel=1e-5)


@pytest.mark.parametrize("bs", ["tp", "cr"])
@pytest.mark.parametrize("factor", [1e60, 1e-60])
def test_unusable_scale_is_a_data_error(bs, factor):
    data = SEEDSIM.assign(x=SEEDSIM.x * factor)
    before = data.copy()
    with pytest.raises(mm.DataError, match=r"s\(x.*rescale"):
        mm.gamm(f"y ~ s(x, bs = '{bs}') + (1 | clus)", data)
    assert data.equals(before)
