"""The tutorial's closing point, run: a smooth, a spatial effect and a random effect are the
same thing to a penalized model.  The tutorial's simulated data (seedsim: y, x, 50
clusters) fitted three ways -- a random intercept, a smooth of x, and both -- and the
picture of the fitted smooth.

usage: python examples/smooths.py [FOLDER]   (FOLDER receives smooth_seedsim.png)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import mixedmodels as mm


def main(folder: str | None = None) -> None:
    data = mm.datasets.load("seedsim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        intercept = mm.lmer("y ~ x + (1 | clus)", data)
        smooth = mm.gamm("y ~ s(x)", data)
        both = mm.gamm("y ~ s(x) + (1 | clus)", data)
    print("random intercept  y ~ x + (1 | clus):")
    print(f"  sd(clus) = {intercept.varcorr['sdcor'].iloc[0]:.4f}, sigma = {intercept.sigma:.4f}")
    print("smooth            y ~ s(x):")
    print(f"  edf(s(x)) = {smooth.edf['s(x)']:.3f}, sigma = {smooth.sigma:.4f}")
    print("both              y ~ s(x) + (1 | clus):")
    sd_clus = both.varcorr.query("grp == 'clus'")["sdcor"].iloc[0]
    print(
        f"  edf(s(x)) = {both.edf['s(x)']:.3f}, sd(clus) = {sd_clus:.4f}, "
        f"sigma = {both.sigma:.4f}"
    )
    print()
    print(both.smooth_table().round(4).to_string())
    print()
    curve = both.smooth("x", n=5)
    print(curve.round(4).to_string(index=False))
    if folder:
        from mixedmodels.plots import plot_smooths

        path = Path(folder) / "smooth_seedsim.png"
        plot_smooths(both).savefig(path, dpi=100)
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
