"""Estimated marginal means (or trends, or contrasts) with their confidence intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixedmodels.errors import ArgumentError
from mixedmodels.plots.figures import _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mixedmodels.inference.emmeans import EmmeansTable

_INTERVALS = (("lower.CL", "upper.CL"), ("asymp.LCL", "asymp.UCL"))


def _text(column: pd.Series) -> pd.Series:
    """Labels as R prints them: numbers without a trailing ``.0``."""
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.map(lambda v: f"{v:g}")
    return column.astype(str)


def _with_intervals(table: EmmeansTable) -> pd.DataFrame:
    from mixedmodels.inference.emmeans import EmmeansTable

    if any(lo in table.columns for lo, _ in _INTERVALS):
        return table
    if not isinstance(table, EmmeansTable):
        raise ArgumentError("the table has no confidence intervals (lower.CL/upper.CL)")
    return table.summary(infer=(True, False))


def plot_emmeans(table: EmmeansTable, *, width: float = 6.5, height: float = 4.0) -> Figure:
    """Points at the estimates with their confidence intervals (emmeans' ``plot``).

    The first label column is the x axis; every other label column (a second factor, the
    ``by`` groups) gives a colour, the groups side by side.

    Parameters
    ----------
    table : EmmeansTable
        What :func:`mixedmodels.emmeans`, :func:`mixedmodels.emtrends` or ``.contrast()``
        returned (intervals are computed when the table shows none).
    """
    frame = _with_intervals(table)
    estimate = frame.attrs.get("estimate", frame.columns[0])
    labels = list(frame.columns[: list(frame.columns).index(estimate)])
    lo_name, hi_name = next((lo, hi) for lo, hi in _INTERVALS if lo in frame.columns)
    x_name = labels[0]
    groups = labels[1:]
    x_text = _text(frame[x_name]).to_numpy()
    x_levels = list(dict.fromkeys(x_text))
    keys = (
        [
            " ".join(f"{g}={v}" for g, v in zip(groups, row, strict=True))
            for row in zip(*[_text(frame[g]) for g in groups], strict=True)
        ]
        if groups
        else [""] * len(frame)
    )
    group_levels = list(dict.fromkeys(keys))
    fig = _figure(width, height)
    ax = fig.add_subplot()
    n_groups = len(group_levels)
    offsets = (np.arange(n_groups) - (n_groups - 1) / 2) * (0.6 / max(n_groups, 1))
    for g, (key, dx) in enumerate(zip(group_levels, offsets, strict=True)):
        rows = np.array([k == key for k in keys])
        pos = np.array([x_levels.index(v) for v in x_text[rows]], dtype=float) + dx
        est = frame[estimate].to_numpy(dtype=float)[rows]
        lo = frame[lo_name].to_numpy(dtype=float)[rows]
        hi = frame[hi_name].to_numpy(dtype=float)[rows]
        ax.errorbar(
            pos,
            est,
            yerr=np.vstack([est - lo, hi - est]),
            fmt="o",
            color=f"C{g % 10}",
            capsize=3,
            label=key or None,
        )
    ax.set_xticks(range(len(x_levels)), x_levels, rotation=30 if len(x_levels) > 6 else 0)
    ax.set_xlabel(x_name)
    ax.set_ylabel(estimate)
    level = frame.attrs.get("level")
    ax.set_title(f"{estimate} with {'' if level is None else f'{level:.0%} '}confidence intervals")
    if groups:
        ax.legend(frameon=False)
    ax.grid(axis="y", color="0.9")
    return fig
