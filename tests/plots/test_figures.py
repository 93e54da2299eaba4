"""Figures carry the numbers they claim to show (read back from the artists)."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm

pytest.importorskip("matplotlib")
from mixedmodels import plots  # noqa: E402


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days|Subject)", mm.datasets.load("sleepstudy"))


def test_data_plot_has_one_line_per_subject_and_the_pooled_line():
    df = mm.datasets.load("sleepstudy")
    fig = plots.plot_data(df, "Days", "Reaction", "Subject")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 18 + 1
    pooled = lines[-1]
    lm = mm.lm("Reaction ~ Days", df)
    x, y = pooled.get_data()
    np.testing.assert_allclose(y, lm.fixef["(Intercept)"] + lm.fixef["Days"] * x, rtol=1e-9)


def test_fitted_lines_are_the_mixed_model_coefficients(fit):
    df = mm.datasets.load("sleepstudy")
    fig = plots.plot_fitted_lines(fit, df, "Days")
    right = fig.axes[1].get_lines()[:18]
    coef = fit.coef["Subject"]
    starts = sorted(line.get_data()[1][0] for line in right)
    np.testing.assert_allclose(starts, sorted(coef["(Intercept)"]), rtol=1e-9)


def test_caterpillar_points_are_the_conditional_modes(fit):
    fig = plots.plot_caterpillar(fit)
    assert len(fig.axes) == 2
    xs = fig.axes[0].collections  # errorbar line collections
    assert xs
    table = fit.ranef_table()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    part = table[table.term == "(Intercept)"].sort_values("condval")
    assert ticks == list(part.grp)


def test_residual_plots(fit, tmp_path):
    fig = plots.plot_residuals(fit)
    qq = fig.axes[1].collections[0].get_offsets()
    np.testing.assert_allclose(np.sort(qq[:, 1]), np.sort(fit.scaled_residuals), rtol=1e-12)
    path = tmp_path / "r.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000


def test_profile_plot(fit):
    traces = mm.lmer("Yield ~ 1 + (1|Batch)", mm.datasets.load("Dyestuff")).profile(points=3)
    fig = plots.plot_profile(traces)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3


def test_cli_writes_a_plot(tmp_path):
    from mixedmodels.cli import main

    out = tmp_path / "cat.png"
    code = main(
        [
            "fit",
            "Reaction ~ Days + (Days|Subject)",
            "--data",
            "sleepstudy",
            "--plot",
            str(out),
            "--plot-kind",
            "caterpillar",
        ]
    )
    assert code == 0 and out.stat().st_size > 10_000


def test_qq_reference_line_spans_the_points_only(fit):
    """The identity line runs from the smallest to the largest normal quantile of the points
    (closed form: Phi^-1(0.5 / n) and Phi^-1(1 - 0.5 / n)), not to the largest |residual|."""
    from scipy import stats

    ax = plots.plot_residuals(fit).axes[1]
    points = ax.collections[0].get_offsets()
    (line,) = ax.get_lines()
    x, y = (np.asarray(v, float) for v in line.get_data())
    n = fit.nobs
    np.testing.assert_allclose(
        [x.min(), x.max()], [points[:, 0].min(), points[:, 0].max()], rtol=1e-12
    )
    np.testing.assert_allclose(
        [x.min(), x.max()], stats.norm.ppf([0.5 / n, 1 - 0.5 / n]), rtol=1e-12
    )
    np.testing.assert_allclose(y, x, rtol=1e-12)  # the identity line
    # sleepstudy's largest scaled residual (5.18) lies far beyond the quantiles (2.77): the
    # x-axis must not stretch to it
    left, right = ax.get_xlim()
    span = points[:, 0].max() - points[:, 0].min()
    assert right - left < 1.2 * span
