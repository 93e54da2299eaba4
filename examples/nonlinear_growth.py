"""Logistic growth of orange trees as a nonlinear mixed model (the tutorial's closing
remark: "growth curve" also means nonlinear population growth, "a popular one being the
logistic growth curve", fit "within the mixed framework").

usage: python examples/nonlinear_growth.py FIGURE_FOLDER

Fits ``circumference ~ SSlogis(age, Asym, xmid, scal)`` with a random asymptote per tree
(nlme's Orange model), prints nlme's summary, each tree's curve parameters, a comparison
with random asymptote and midpoint, and writes the picture of each tree's data with its
fitted curve and the population curve.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import mixedmodels as mm
from mixedmodels.plots import plot_nlme

DATA = Path(__file__).parent.parent / "tests" / "reference" / "nlme" / "data" / "Orange.csv"


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    orange = pd.read_csv(DATA)
    fit = mm.nlme("circumference ~ SSlogis(age, Asym, xmid, scal)", orange,
                  fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree",
                  data_name="Orange")
    print(fit.summary())
    print("\nEach tree's curve (coef):")
    print(fit.coef().round(2))
    # the same model written out: parsed as data, differentiated symbolically
    written = mm.nlme("circumference ~ Asym/(1 + exp((xmid - age)/scal))", orange,
                      fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree",
                      start={"Asym": 170, "xmid": 700, "scal": 350})
    print(f"\nwritten-out logistic: logLik {written.loglik:.6f} (SSlogis {fit.loglik:.6f})")
    both = mm.nlme("circumference ~ SSlogis(age, Asym, xmid, scal)", orange,
                   fixed="Asym + xmid + scal ~ 1", random="pdDiag(Asym + xmid ~ 1) | Tree")
    print("\nrandom Asym vs random Asym and xmid (likelihood ratio):")
    print(fit.anova(both).round(4).to_string())
    new = pd.DataFrame({"age": [500, 1000, 1500], "Tree": [1, 1, 1]})
    print("\ntree 1 at ages 500, 1000, 1500:", fit.predict(new, level=1).round(2),
          "population:", fit.predict(new, level=0).round(2))
    figure = plot_nlme(fit, orange, columns=5)
    figure.savefig(folder / "orange_nlme.png", dpi=110)
    print(f"\nwrote {folder / 'orange_nlme.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "figures"))
