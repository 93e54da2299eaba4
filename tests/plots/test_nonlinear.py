"""The nonlinear model's picture carries the numbers it claims to show."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm
from tests.reference.nlme.cases import arguments

pytest.importorskip("matplotlib")
from mixedmodels import plots  # noqa: E402


def test_each_panel_shows_data_group_curve_and_population_curve():
    data, kwargs = arguments("orange_ml")
    fit = mm.nlme(data=data, **kwargs)
    fig = plots.plot_nlme(fit, data)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 5
    for ax, tree in zip(panels, fit.design.levels, strict=True):
        points, group_curve, population = ax.get_lines()
        rows = data[data.Tree.astype(str) == tree]
        np.testing.assert_array_equal(points.get_data()[1], rows.circumference)
        xs, ys = group_curve.get_data()
        c = fit.coef().loc[tree]
        np.testing.assert_allclose(ys, c.Asym / (1 + np.exp((c.xmid - xs) / c.scal)), rtol=1e-12)
        f = fit.fixef
        xs, ys = population.get_data()
        np.testing.assert_allclose(ys, f.Asym / (1 + np.exp((f.xmid - xs) / f.scal)),
                                   rtol=1e-12)


def test_other_columns_come_from_the_group():
    """Theoph: each subject's curve uses its own dose."""
    data, kwargs = arguments("theoph")
    fit = mm.nlme(data=data, **kwargs)
    fig = plots.plot_nlme(fit, data, "Time")
    ax = fig.axes[0]
    _, curve, _ = ax.get_lines()
    subject = fit.design.levels[0]
    rows = data[data.Subject.astype(str) == subject]
    c = fit.coef().loc[subject]
    t, y = curve.get_data()
    ke, ka, cl = np.exp(c.lKe), np.exp(c.lKa), np.exp(c.lCl)
    dose = rows.Dose.iloc[0]
    want = dose * ke * ka / (cl * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t))
    np.testing.assert_allclose(y, want, rtol=1e-10)
