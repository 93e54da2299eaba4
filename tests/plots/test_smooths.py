"""plot_smooths draws each smooth's curve and band from fit.smooth and a rug of the data."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

import mixedmodels as mm  # noqa: E402
from mixedmodels.errors import ArgumentError  # noqa: E402
from mixedmodels.plots import plot_smooths  # noqa: E402


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(5)
    n = 300
    d = pd.DataFrame({"x": rng.uniform(0, 1, n).round(3), "g": rng.choice(list("abcdef"), n)})
    d["y"] = np.sin(2 * np.pi * d["x"]) + rng.normal(0, 0.3, n)
    return mm.lmer("y ~ s(x) + (1 | g)", d)


def test_curve_band_and_rug_are_the_fits_numbers(fit):
    fig = plot_smooths(fit, n=50)
    ax = fig.axes[0]
    curve = fit.smooth("x", n=50)
    line = ax.lines[0]
    assert np.allclose(line.get_xdata(), curve["x"]) and np.allclose(line.get_ydata(), curve["fit"])
    band = ax.collections[0].get_paths()[0].vertices
    assert np.isclose(band[:, 1].max(), curve["upper"].max())
    assert np.isclose(band[:, 1].min(), curve["lower"].min())
    rug = ax.lines[1]
    assert np.allclose(np.sort(rug.get_xdata()), np.sort(fit.design.data["x"]))
    assert ax.get_title() == f"s(x), edf {fit.edf['s(x)']:.2f}"


def test_unknown_smooth_is_an_argument_error(fit):
    with pytest.raises(ArgumentError, match="no smooth of 'w'"):
        plot_smooths(fit, names=["w"])
