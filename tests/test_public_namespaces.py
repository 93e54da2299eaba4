"""``mm.cor`` and ``mm.var`` name nlme's structures and nothing else (they were the core
modules themselves, so ``mm.cor.np`` or ``mm.cor.BidiagonalPlan`` showed up in completion)."""

from __future__ import annotations

import mixedmodels as mm
from mixedmodels.core import residual, variance_functions


def _public(module) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def test_cor_names_the_correlation_structures_only():
    assert _public(mm.cor) == set(mm.cor.__all__)
    for name in mm.cor.__all__:
        assert getattr(mm.cor, name) is getattr(residual, name)
    assert issubclass(mm.cor.AR1, mm.cor.ResidualCorrelation)
    assert mm.cor.CompSymm is mm.cor.CompoundSymmetry


def test_var_names_the_variance_functions_only():
    assert _public(mm.var) == set(mm.var.__all__)
    for name in mm.var.__all__:
        assert getattr(mm.var, name) is getattr(variance_functions, name)
    assert all(
        issubclass(getattr(mm.var, n), mm.var.VarianceFunction)
        for n in ("Ident", "Power", "Exp", "Fixed", "Combined")
    )
