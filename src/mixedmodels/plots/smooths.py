"""Pictures of fitted smooth terms: each smooth's curve with its pointwise band and a rug
of the data (mgcv's ``plot.gam``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.errors import ArgumentError
from mixedmodels.plots.figures import _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_smooths(
    fit, names: list[str] | None = None, n: int = 200, level: float = 0.95
) -> Figure:
    """One panel per smooth (per ``by`` level; one line per group for an ``fs`` smooth):
    the fitted curve, its ``level`` band, and a rug of the covariate's values.

    Parameters
    ----------
    fit : LmerFit or GlmerFit
        A fit whose formula has smooth terms.
    names : list of str, optional
        Smooth labels (``"s(x)"``) or covariates (``"x"``); all smooths by default.
    n : int
        Grid points per curve.
    level : float
        Coverage of the pointwise bands.

    Raises
    ------
    ArgumentError
        A model without smooths, or a name that is not one of its smooths.
    """
    smooths = fit.design.smooths
    if not smooths:
        raise ArgumentError("the model has no smooth terms such as s(x)")
    wanted = names or [s.label for s in smooths]
    curves = [fit.smooth(name, n=n, level=level) for name in wanted]
    panels = [(label, frame) for c in curves for label, frame in c.groupby("smooth", sort=False)]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = _figure(4.2 * columns, 3.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    data = fit.design.data
    for ax, (label, frame) in zip(axes, panels, strict=False):
        covariate = frame.columns[frame.columns.get_loc("fit") - 1]
        group = frame.columns[1] if frame.columns[1] != covariate else None
        if group is None:
            ax.fill_between(
                frame[covariate], frame["lower"], frame["upper"], color="C0", alpha=0.25,
                lw=0, label=f"{level:.0%} band",
            )
            ax.plot(frame[covariate], frame["fit"], color="C0", lw=2)
        else:
            for i, (_, sub) in enumerate(frame.groupby(group, sort=False)):
                ax.plot(sub[covariate], sub["fit"], color=f"C{i % 10}", lw=1.2)
        x = np.asarray(data[covariate], dtype=float)
        low = ax.get_ylim()[0]
        ax.plot(x, np.full(x.size, low), "|", color="0.3", ms=6, alpha=0.5)
        ax.axhline(0, color="0.6", lw=0.7)
        edf = fit.edf.get(label, np.nan)
        ax.set_title(f"{label}, edf {edf:.2f}")
        ax.set_xlabel(covariate)
        ax.set_ylabel(label if fit.has_residual_variance else f"{label} (link scale)")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig
