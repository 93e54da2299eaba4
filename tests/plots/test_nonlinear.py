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


def _review_case(name: str):
    """A case of the nlme review (tests/reference/nlmecheck), fitted, with its data."""
    import warnings

    from tests.results.test_nlme_agreement_more import kwargs_of, load

    data = load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.nlme(data=data, **kwargs_of(name)), data


def test_transformed_response_shows_the_fitted_response():
    """``log(size) ~ ...``: the points are the transformed response the fit used (its
    design's y), the curves are the fit's predictions on the same scale."""
    fit, data = _review_case("log_response")
    fig = plots.plot_nlme(fit, data, "age")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(fit.design.levels)
    ax = panels[0]
    points, group_curve, population = ax.get_lines()
    mine = fit.design.groups == 0
    np.testing.assert_array_equal(points.get_data()[1], fit.design.y[mine])
    assert fig.get_supylabel() == fit.design.response
    rows = data.iloc[fit.design.rows[mine][:1]]
    xs, ys = group_curve.get_data()
    new = rows.loc[rows.index.repeat(len(xs))].assign(age=xs)
    np.testing.assert_allclose(ys, fit.predict(new), rtol=1e-12)


def test_nested_fit_draws_one_panel_per_innermost_group():
    """``site/plot``: one panel per plot within site, labelled as the fit's groups; its
    curve is the innermost level's prediction (site and plot effects), the dashed one the
    population's."""
    fit, data = _review_case("nested_groups")
    fig = plots.plot_nlme(fit, data)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == fit.n_groups == len(fit.design.levels)
    for k in (0, len(panels) - 1):
        ax = panels[k]
        assert ax.get_title().endswith(fit.design.levels[k])
        points, group_curve, population = ax.get_lines()
        mine = fit.design.groups == k
        np.testing.assert_array_equal(points.get_data()[1], fit.design.y[mine])
        rows = data.iloc[fit.design.rows[mine][:1]]
        xs, ys = group_curve.get_data()
        new = rows.loc[rows.index.repeat(len(xs))].assign(**{_x(fit): xs})
        np.testing.assert_allclose(ys, fit.predict(new, level=fit.inner_level), rtol=1e-12)
        np.testing.assert_allclose(population.get_data()[1], fit.predict(new, level=0),
                                   rtol=1e-12)


def _x(fit) -> str:
    from mixedmodels.plots.nonlinear import _default_x

    return _default_x(fit)
