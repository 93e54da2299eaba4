"""The path of "Thinking About Mixed Models" (M. Clark, 2016), end to end, in mixedmodels.

usage: python examples/thinking_about_mixed_models.py FIGURE_FOLDER

Prints each result and writes the figures (PNG) into FIGURE_FOLDER.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

import mixedmodels as mm
from mixedmodels.priors import HalfCauchy, Normal


def section(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sleep = mm.datasets.load("sleepstudy")
    seedsim = mm.datasets.load("seedsim")

    section("1. The standard linear model")
    lm = mm.lm("Reaction ~ Days", sleep, data_name="sleepstudy")
    print(lm)
    print(
        f"log-likelihood at beta = (250, 10), sigma = 47: "
        f"{lm.loglik_at([250.0, 10.0], 47.0):.3f} (maximum {lm.loglik:.3f})"
    )

    section("2. Random intercepts on the tutorial's simulated data")
    fit = mm.lmer("y ~ x + (1 | clus)", seedsim, data_name="seedsim")
    print(fit)

    section("Models 1a/1b: cluster coefficients alpha_c = alpha + gamma_c")
    print(fit.coef["clus"].head())
    print(fit.ranef["clus"].head())

    section("Model 2: a cluster-level predictor (MathAchieve's MEANSES and Sector)")
    math_fit = mm.lmer(
        "MathAch ~ SES + MEANSES + Sector + (SES | School)",
        mm.datasets.load("MathAchieve"),
        data_name="MathAchieve",
    )
    print(math_fit.fixef.round(4))
    separate = mm.lmlist("Reaction ~ Days | Subject", sleep)
    sleep_fit = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep, data_name="sleepstudy")
    print("separate regressions beside shrunken mixed-model coefficients:")
    print(separate.join(sleep_fit.coef["Subject"].add_suffix(" (mixed)")).head().round(3))

    section("Models 3a/3b: design matrices X, Z and Lambda")
    print(
        f"X: {fit.X.shape} dense; Z: {fit.Z.shape} sparse with {fit.Z.nnz} nonzeros "
        f"(the indicator matrix of clus); Lambda: {fit.Lambda.shape}"
    )
    print("random-effect covariance:", fit.ranef_cov())

    section("Models 4a/4b: intraclass correlation; conditional vs marginal predictions")
    print(f"ICC = tau^2 / (tau^2 + sigma^2) = {fit.icc():.4f}")
    print("conditional:", np.round(fit.predict()[:5], 4))
    print("marginal:   ", np.round(fit.predict(include_random=False)[:5], 4))

    section("Models 5a/5b: the marginal covariance Sigma = sigma^2 (I + Z Lambda Lambda' Z')")
    ml = mm.lmer("y ~ x + (1 | clus)", seedsim, reml=False)
    cov = ml.marginal_cov()
    print(cov[:5, :5].toarray().round(4))
    density = stats.multivariate_normal(ml.X @ ml.fixef.to_numpy(), cov.toarray()).logpdf(
        seedsim.y.to_numpy()
    )
    print(f"log N(y; X beta, Sigma) = {density:.6f};  ML logLik = {ml.loglik:.6f}")

    section("Model 5a with AR(1) errors: e ~ N(0, sigma^2 V), V_ij = Phi^|i - j| in a subject")
    sleep_ar1 = mm.lmer(
        "Reaction ~ Days + (1 | Subject)", sleep, correlation=mm.cor.AR1(), data_name="sleepstudy"
    )
    print(sleep_ar1)
    print("Sigma for the first subject's first five days:")
    print(sleep_ar1.marginal_cov()[:5, :5].toarray().round(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(mm.anova(mm.lmer("Reaction ~ Days + (1 | Subject)", sleep), sleep_ar1).round(4))

    section("Model 6: the penalized-regression view")
    lam = fit.sigma**2 / fit.varcorr.vcov[0]
    print(
        f"penalty lambda = sigma^2 / tau^2 = {lam:.4f}; penalized loss at the fit "
        f"{fit.penalized_loss():.4f}; with beta + 0.1: "
        f"{fit.penalized_loss(fit.fixef.to_numpy() + 0.1):.4f}"
    )

    section("Model 7: the Bayesian view (priors on every parameter; Gibbs sampling)")
    # beta ~ N(0, 10), sigma ~ Half-Cauchy(0, 5), gamma ~ N(0, tau) with tau ~ Half-Cauchy(0, 5)
    priors = dict(fixef=Normal(0, 10), sigma=HalfCauchy(5), sd=HalfCauchy(5))
    posterior = fit.sample_posterior(1000, 500, seed=2016, progress=False, **priors)
    print(posterior.summary().round(4))
    print("REML estimates for comparison:")
    print(fit.parameters.round(4))

    section("Simulating a mixed model (50 clusters of 5, intercept 3, slope 0.75, tau 0.5)")
    sim, parts = mm.simulate_mixed(50, 5, seed=2016, return_parts=True)
    print(sim.head())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(mm.lmer("y ~ x + (1 | cluster)", sim).varcorr)

    section("The applied example: sleepstudy with (Days | Subject)")
    print(sleep_fit)
    print(sleep_fit.ranef["Subject"].head())
    print(sleep_fit.coef["Subject"].head())

    section("Pictures")
    try:
        from mixedmodels import plots
    except Exception as exc:  # matplotlib missing
        print(f"skipped: {exc}")
        return
    figures = {
        "data_with_pooled_line.png": plots.plot_data(sleep, "Days", "Reaction", "Subject"),
        "fitted_lines.png": plots.plot_fitted_lines(sleep_fit, sleep, "Days"),
        "caterpillar.png": plots.plot_caterpillar(sleep_fit),
        "residuals.png": plots.plot_residuals(sleep_fit),
        "sigma_ar1_heatmap.png": plots.plot_marginal_cov(sleep_ar1, "Subject", "308"),
    }
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=110)
        print("wrote", folder / name)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "figures"))
