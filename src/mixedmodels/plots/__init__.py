"""Figures that make mixed models clear (matplotlib, an optional extra:
``pip install 'mixedmodels[plot]'``).  Every function returns a matplotlib Figure."""

from mixedmodels.plots.covariance import plot_marginal_cov
from mixedmodels.plots.emmeans import plot_emmeans
from mixedmodels.plots.figures import (
    plot_caterpillar,
    plot_data,
    plot_fitted_lines,
    plot_profile,
    plot_residuals,
)
from mixedmodels.plots.nonlinear import plot_nlme
from mixedmodels.plots.smooths import plot_smooths

__all__ = [
    "plot_caterpillar",
    "plot_data",
    "plot_emmeans",
    "plot_fitted_lines",
    "plot_profile",
    "plot_residuals",
    "plot_marginal_cov",
    "plot_nlme",
    "plot_smooths",
]
