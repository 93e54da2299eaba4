"""The Sigma heatmap shows the numbers of ``marginal_cov()`` for the chosen cluster."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm

pytest.importorskip("matplotlib")
from mixedmodels import plots  # noqa: E402
from mixedmodels.errors import ArgumentError  # noqa: E402


def test_heatmap_is_the_clusters_block_of_sigma():
    ovary = mm.datasets.load("Ovary")
    fit = mm.lmer(
        "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)",
        ovary,
        correlation=mm.cor.AR1(),
    )
    fig = plots.plot_marginal_cov(fit, "Mare", "3")
    shown = fig.axes[0].get_images()[0].get_array()
    rows = np.flatnonzero(ovary["Mare"].astype(str).to_numpy() == "3")
    np.testing.assert_allclose(shown, fit.marginal_cov()[rows][:, rows].toarray(), rtol=1e-12)
    # AR(1) + random intercept: cov(lag k) = tau^2 + sigma^2 Phi^k
    tau2 = fit.varcorr["vcov"].iloc[0]
    phi = fit.correlation_parameters["Phi"]
    assert shown[0, 2] == pytest.approx(tau2 + fit.sigma**2 * phi**2, rel=1e-10)
    corr = plots.plot_marginal_cov(fit, correlation=True).axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.diagonal(corr), 1.0, rtol=1e-12)
    with pytest.raises(ArgumentError, match="not a level"):
        plots.plot_marginal_cov(fit, "Mare", "99")
