"""``plot_residuals`` of a GLMM fit: an ArgumentError that says what to plot instead (a raw
matplotlib ``ValueError: x and y must be the same size`` before: a GlmerFit's
``residuals`` is a method)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm

pytest.importorskip("matplotlib")


def test_glmer_fit_is_refused_with_a_pointer():
    from mixedmodels.plots import plot_residuals

    cbpp = mm.datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        fit = mm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                       "binomial")
    with pytest.raises(mm.ArgumentError, match=r"GlmerFit.*residuals\('pearson'\)"):
        plot_residuals(fit)
    # what it points to exists and is one value per row
    assert fit.residuals("pearson").shape == np.shape(fit.fitted) == (len(cbpp),)
