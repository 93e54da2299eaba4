"""A nonlinear mixed model's picture: each group's data with its fitted curve and the
population curve (random effects at 0)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixedmodels.errors import ArgumentError, ColumnNotFoundError
from mixedmodels.formula.expr import Name
from mixedmodels.plots.figures import _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mixedmodels.results.nlme_fit import NlmeFit


def _default_x(fit: NlmeFit) -> str:
    covariates = fit.design.model.covariates
    tree = covariates.get("input", next(iter(covariates.values()), None))
    if isinstance(tree, Name):
        return tree.id
    raise ArgumentError("name the column for the horizontal axis: x=...")


def plot_nlme(fit: NlmeFit, data: pd.DataFrame, x: str | None = None, *, points: int = 100,
              columns: int | None = None) -> Figure:
    """One panel per group (the innermost level's, for nested groups): its observations,
    its fitted curve (``predict`` at the innermost level, solid) and the population curve
    (``level=0``, dashed), on a grid of ``points`` values of ``x`` over the group's range;
    other columns are taken from the group's first row.  The observations are the fit's
    own: its rows of ``data`` (those with missing values dropped) and its response, a
    transformed one (``log(size)``) included.

    Parameters
    ----------
    fit : NlmeFit
    data : DataFrame
        The data the model was fitted to.
    x : str, optional
        Column on the horizontal axis (default: the self-starting model's input).
    """
    x = x or _default_x(fit)
    design = fit.design
    if x not in data.columns:
        raise ColumnNotFoundError(f"column {x!r} is not in the data")
    if len(data) <= int(design.rows.max(initial=-1)):
        raise ArgumentError(
            f"data has {len(data)} rows, fewer than the fit's; pass the data it was fitted to"
        )
    kept = data.iloc[design.rows]
    observed_x = kept[x].to_numpy()
    observed_y = np.asarray(design.y, dtype=float)
    keys = list(design.levels)
    group = "/".join(design.random.columns)
    n = len(keys)
    ncol = columns or min(n, math.ceil(math.sqrt(n * 1.5)))
    nrow = math.ceil(n / ncol)
    fig = _figure(2.4 * ncol + 0.6, 2.0 * nrow + 0.6)
    axes = fig.subplots(nrow, ncol, sharex=True, sharey=True, squeeze=False)
    for k, key in enumerate(keys):
        ax = axes[k // ncol][k % ncol]
        mine = np.flatnonzero(design.groups == k)
        rows = kept.iloc[mine]
        grid = np.linspace(observed_x[mine].min(), observed_x[mine].max(), points)
        new = pd.DataFrame({c: np.repeat(rows[c].to_numpy()[:1], points) for c in data.columns})
        new[x] = grid
        ax.plot(observed_x[mine], observed_y[mine], "o", color="0.3", ms=3)
        ax.plot(grid, fit.predict(new), color="C0", lw=1.6, label="group curve")
        ax.plot(grid, fit.predict(new, level=0), color="C3", lw=1.2, ls="--",
                label="population curve")
        ax.set_title(f"{group} {key}", fontsize=9)
    for k in range(n, nrow * ncol):
        axes[k // ncol][k % ncol].set_visible(False)
    fig.supxlabel(x)
    fig.supylabel(design.response)
    axes[0][0].legend(fontsize=7, frameon=False, loc="upper left")
    return fig
