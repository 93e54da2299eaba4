"""The marginal covariance of one cluster as a heatmap (the tutorial's model 5b: the
mixed model as a regression with correlated errors, ``Sigma`` block diagonal)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.errors import ArgumentError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mixedmodels.results.fit import LmerFit


def cluster_rows(fit: LmerFit, group: str | None, level: object) -> tuple[str, np.ndarray]:
    """The grouping factor's name and the row indices of ``level`` (the first level when
    None) of ``group`` (the first random-effect term's factor when None)."""
    terms = fit.design.terms
    term = terms[0] if group is None else next((t for t in terms if t.group_name == group), None)
    if term is None:
        names = ", ".join(t.group_name for t in terms)
        raise ArgumentError(f"no random-effect term groups by {group!r} (terms group by {names})")
    labels = term.levels
    label = labels[0] if level is None else str(level)
    if label not in labels:
        raise ArgumentError(f"{label!r} is not a level of {term.group_name}")
    return term.group_name, np.flatnonzero(term.codes == labels.index(label))


def plot_marginal_cov(
    fit: LmerFit, group: str | None = None, level: object = None, *, correlation: bool = False
) -> Figure:
    """Heatmap of ``Sigma`` (``fit.marginal_cov()``) for the rows of one cluster.

    Parameters
    ----------
    fit : LmerFit or ResidualLmerFit
        With AR(1) errors the picture shows the band of correlation decaying away from the
        diagonal on top of the random intercept's constant block.
    group, level : optional
        Which cluster: a level of a grouping factor (default: the first of the first term).
    correlation : bool
        Show the correlation matrix instead of the covariance.
    """
    from mixedmodels.plots.figures import _figure

    name, rows = cluster_rows(fit, group, level)
    sigma = fit.marginal_cov()[rows][:, rows].toarray()
    if correlation:
        sd = np.sqrt(np.diagonal(sigma))
        sigma = sigma / np.outer(sd, sd)
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    image = ax.imshow(sigma, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="correlation" if correlation else "covariance")
    what = "Correlation" if correlation else "Covariance"
    ax.set_title(f"{what} of y within {name} {level if level is not None else ''}".strip())
    ax.set_xlabel("row within the cluster")
    ax.set_ylabel("row within the cluster")
    return fig
