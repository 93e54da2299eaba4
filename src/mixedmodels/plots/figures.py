"""The tutorial's pictures: raw data with the pooled line, per-cluster lines (separate
regressions vs mixed model), caterpillar plot of random effects, residual diagnostics."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels.errors import ArgumentError, MixedModelsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mixedmodels.results.fit import LmerFit


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MixedModelsError(
            "plotting needs matplotlib: pip install 'mixedmodels[plot]'"
        ) from exc
    return Figure(figsize=(width, height), layout="constrained")


def _pooled_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    return intercept, slope


def plot_data(data: pd.DataFrame, x: str, y: str, group: str) -> Figure:
    """One line per cluster through the raw data, with the pooled linear-model line."""
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    for _, sub in data.groupby(group, observed=True):
        sub = sub.sort_values(x)
        ax.plot(sub[x], sub[y], color="0.6", lw=0.8, marker="o", ms=2.5, alpha=0.8)
    a, b = _pooled_line(data[x].to_numpy(float), data[y].to_numpy(float))
    xs = np.linspace(data[x].min(), data[x].max(), 50)
    ax.plot(xs, a + b * xs, color="C3", lw=2.5, label="pooled linear model")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} by {x}, one line per {group}")
    ax.legend(loc="upper left", frameon=False)
    return fig


def plot_fitted_lines(fit: LmerFit, data: pd.DataFrame, x: str, group: str | None = None) -> Figure:
    """Per-cluster lines: separate regressions (left) beside the mixed model's shrunken lines
    (right), each with the pooled line."""
    from mixedmodels.results.lmlist import lmlist

    group = group or next(iter(fit.ngroups))
    y = fit.design.formula.response
    coef = fit.coef[group]
    separate = lmlist(f"{y} ~ {x} | {group}", data)
    xs = np.linspace(data[x].min(), data[x].max(), 20)
    a, b = _pooled_line(data[x].to_numpy(float), data[y].to_numpy(float))
    fig = _figure(11, 4.5)
    axes = fig.subplots(1, 2, sharey=True)
    panels = [(separate, "separate regressions per " + group), (coef, "mixed model (shrunken)")]
    for ax, (table, title) in zip(axes, panels, strict=True):
        for _, row in table.dropna().iterrows():
            ax.plot(xs, row["(Intercept)"] + row[x] * xs, color="C0", lw=0.9, alpha=0.7)
        ax.plot(xs, a + b * xs, color="C3", lw=2.5, label="pooled")
        ax.set_title(title)
        ax.set_xlabel(x)
    axes[0].set_ylabel(y)
    axes[0].legend(loc="upper left", frameon=False)
    return fig


def plot_caterpillar(fit: LmerFit, level: float = 0.95) -> Figure:
    """Conditional modes with ``level`` intervals from their conditional sd, sorted, one
    panel per grouping factor and coefficient."""
    table = fit.ranef_table()
    z = stats.norm.ppf(0.5 + level / 2)
    panels = list(table.groupby(["grpvar", "term"], sort=False))
    n_levels = max(len(p[1]) for p in panels)
    fig = _figure(4.2 * len(panels), max(3.0, min(0.22 * n_levels + 1.2, 14)))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, ((grp, term), part) in zip(axes, panels, strict=True):
        part = part.sort_values("condval")
        pos = np.arange(len(part))
        ax.errorbar(
            part.condval, pos, xerr=z * part.condsd, fmt="o", ms=3, color="C0", ecolor="0.5", lw=1
        )
        ax.axvline(0, color="C3", lw=1)
        if len(part) <= 40:
            ax.set_yticks(pos, part.grp, fontsize=8)
        else:
            ax.set_yticks([])
        ax.set_title(f"{grp}: {term}")
        ax.set_xlabel(f"conditional mode, {int(level * 100)}% interval")
    return fig


def plot_residuals(fit: LmerFit) -> Figure:
    """Residuals against fitted values, and a normal QQ plot of the scaled residuals with the
    identity line over the range of the points' normal quantiles.

    Raises
    ------
    ArgumentError
        For a fit that is not an lmer fit (a GLMM has no scaled residuals; its
        ``residuals`` is a method taking the kind).
    """
    from mixedmodels.results.fit import LmerFit

    if not isinstance(fit, LmerFit):
        raise ArgumentError(
            f"plot_residuals draws lmer fits (residuals and scaled residuals); got "
            f"{type(fit).__name__}: plot fit.residuals('pearson') against fit.fitted"
        )
    fig = _figure(10, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(fit.fitted, fit.residuals, s=10, alpha=0.7)
    ax1.axhline(0, color="C3", lw=1)
    ax1.set_xlabel("fitted values")
    ax1.set_ylabel("residuals")
    ax1.set_title("Residuals vs fitted")
    r = np.sort(fit.scaled_residuals)
    n = r.size
    theo = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    ax2.scatter(theo, r, s=10, alpha=0.7)
    # the identity line (scaled residuals are standard normal under the model), drawn over
    # the points' normal quantiles only, so it does not stretch the axes beyond the data
    ends = np.array([theo[0], theo[-1]])
    ax2.plot(ends, ends, color="C3", lw=1)
    ax2.set_xlabel("normal quantiles")
    ax2.set_ylabel("scaled residuals")
    ax2.set_title("Normal QQ plot")
    return fig


def plot_profile(traces: pd.DataFrame, level: float = 0.95) -> Figure:
    """zeta against each parameter (from ``fit.profile()``), with the ``level`` cutoffs."""
    params = list(dict.fromkeys(traces.parameter))
    ncol = min(3, len(params))
    nrow = math.ceil(len(params) / ncol)
    fig = _figure(3.8 * ncol, 3.0 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    cut = stats.norm.ppf(0.5 + level / 2)
    for ax, name in zip(axes, params, strict=False):
        part = traces[traces.parameter == name]
        ax.plot(part.value, part.zeta, marker="o", ms=3)
        for c in (-cut, cut):
            ax.axhline(c, color="0.6", lw=0.8, ls="--")
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("zeta")
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    return fig
