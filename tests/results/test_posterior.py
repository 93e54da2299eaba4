"""The Bayesian view of a fitted model: posterior draws named like confint's rows,
reproducible whatever the number of processes, interruptible, and equal to the exact
posterior computed by quadrature.

The quadrature reference: in a one-way random-intercept model ``y_gi = beta + b_g + e_gi``
the coefficients integrate out in closed form (``V = sigma^2 I + tau^2 J`` per group, and
``beta`` flat or normal), leaving a two-dimensional posterior of ``(sigma, tau)`` evaluated
on a 400 x 400 grid in ``(log sigma, log tau)``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core.gibbs import GibbsSampler
from mixedmodels.priors import Flat, HalfCauchy, HalfNormal, HalfStudentT, InverseGamma, Normal
from mixedmodels.results.posterior import default_scale


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def posterior(fit):
    return fit.sample_posterior(500, 200, seed=11, progress=False)


def test_draws_are_named_like_the_parameters(fit, posterior):
    assert list(posterior.draws.columns) == fit.parameter_names
    assert posterior.n_chains == 4
    assert posterior.draws.groupby(level="chain").size().tolist() == [500] * 4
    assert posterior.effects.shape == (4, 500, 36)


def test_posterior_sits_on_the_likelihood(fit, posterior):
    """With weak priors and 180 rows: each fixed effect's 95% interval holds the REML
    estimate, its posterior sd is at least 0.9 x the REML standard error (variance
    uncertainty only adds), and sigma's posterior median is within 5% of REML's
    (posterior sd of sigma ~6%)."""
    table = posterior.summary()
    for name, se in zip(fit.fixef.index, np.sqrt(np.diag(fit.vcov)), strict=True):
        assert table.loc[name, "lower"] < fit.fixef[name] < table.loc[name, "upper"]
        assert table.loc[name, "sd"] > 0.9 * se
    assert table.loc["sigma", "median"] == pytest.approx(fit.sigma, rel=0.05)
    row = table.loc["cor_Days.(Intercept)|Subject"]
    assert -1 < row["lower"] < 0 < row["upper"] < 1
    # the chains agree (R-hat) and mix (bulk ESS of 2,000 draws well above 400)
    assert table["r_hat"].max() < 1.01
    assert table["ess_bulk"].min() > 400


def test_random_effect_draws_average_to_the_conditional_modes(fit, posterior):
    """The posterior mean of each b is close to the REML conditional mode (the variances'
    uncertainty moves it little here): within 15% of the modes' spread."""
    mean = posterior.effects.reshape(-1, 36).mean(axis=0)
    modes = fit.ranef["Subject"].to_numpy().ravel()
    spread = fit.ranef["Subject"].to_numpy().std(axis=0)
    assert np.all(np.abs(mean - modes).reshape(18, 2) < 0.15 * spread)


def test_same_seed_same_draws_whatever_the_number_of_processes(fit):
    a = fit.sample_posterior(40, 10, chains=3, seed=3, progress=False, n_jobs=1)
    b = fit.sample_posterior(40, 10, chains=3, seed=3, progress=False, n_jobs=2)
    np.testing.assert_array_equal(a.draws.to_numpy(), b.draws.to_numpy())
    np.testing.assert_array_equal(a.effects, b.effects)
    c = fit.sample_posterior(40, 10, chains=3, seed=4, progress=False, n_jobs=1)
    assert not np.array_equal(a.draws.to_numpy(), c.draws.to_numpy())


def test_chain_0_starts_at_the_fit_and_the_others_apart(fit):
    """Chain 0's start is the REML fit (sds, correlation and sigma to 1e-12); the other
    chains' starts are dispersed: sigma times exp(N(0, 0.5^2)), each sd times
    exp(N(0, 1)) (seeded: checked to differ from the fit by more than 1%)."""
    from mixedmodels.results.posterior import _chain_starts

    post = fit.sample_posterior(1, 0, chains=1, seed=1, progress=False, n_jobs=1)
    priors = post.priors
    sampler = GibbsSampler([t.block for t in fit.design.terms], fit.X, fit.design.y, None, priors)
    seeds = np.random.SeedSequence(5).spawn(4)
    starts = [_chain_starts(fit, sampler, np.random.default_rng(s), c) for c, s in enumerate(seeds)]
    cov = fit._term_info()[0][2]
    np.testing.assert_allclose(starts[0].factors[0] @ starts[0].factors[0].T, cov, rtol=1e-12)
    assert starts[0].sigma2 == pytest.approx(fit.sigma**2, rel=1e-12)
    for state in starts[1:]:
        assert abs(math.log(state.sigma2 / fit.sigma**2)) > 0.02
        sds = np.sqrt(np.diagonal(state.factors[0] @ state.factors[0].T))
        assert np.all(np.abs(np.log(sds / np.sqrt(np.diagonal(cov)))) > 0.01)


def test_ctrl_c_keeps_the_draws_so_far(fit, monkeypatch):
    original = GibbsSampler.sweep
    calls = {"n": 0}

    def interrupted(self, state, rng):
        calls["n"] += 1
        if calls["n"] > 25:
            raise KeyboardInterrupt
        original(self, state, rng)

    monkeypatch.setattr(GibbsSampler, "sweep", interrupted)
    with pytest.warns(mm.MixedModelsWarning, match="kept 15 of 200"):
        post = fit.sample_posterior(100, 10, chains=2, seed=1, progress=False, n_jobs=1)
    assert post.interrupted
    assert len(post.draws) == 15
    assert post.draws.index.get_level_values("chain").unique().tolist() == [0]


def test_bad_priors_are_named():
    data = mm.datasets.load("Dyestuff")
    fit = mm.lmer("Yield ~ 1 + (1 | Batch)", data)
    with pytest.raises(mm.ArgumentError, match="sigma prior must be a scale prior"):
        fit.sample_posterior(10, 0, sigma=Normal(0, 1), progress=False)
    with pytest.raises(mm.ArgumentError, match="'Batchx'"):
        fit.sample_posterior(10, 0, sd={"Batchx": HalfNormal(1)}, progress=False)
    with pytest.raises(mm.ArgumentError, match="HalfNormal's scale s must be"):
        HalfNormal(-1)
    with pytest.raises(mm.ArgumentError, match="chains must be an integer"):
        fit.sample_posterior(10, 0, chains=0, progress=False)


# ---------------------------------------------------------------------------- quadrature


def _log_density_sd(prior, sd):
    return np.vectorize(prior.log_density_sd)(sd)


def quadrature(y, groups, sigma_prior, tau_prior, beta_mean=0.0, beta_sd=math.inf):
    """Posterior means of sigma, tau and beta in ``y = beta + b_g + e``."""
    levels = np.unique(groups)
    m = np.array([np.sum(groups == g) for g in levels], dtype=float)
    s1 = np.array([y[groups == g].sum() for g in levels])
    s2 = np.array([(y[groups == g] ** 2).sum() for g in levels])
    spread = y.std()
    log_sigma = np.linspace(math.log(spread / 20), math.log(spread * 5), 400)
    log_tau = np.linspace(math.log(spread * 1e-5), math.log(spread * 20), 400)
    ls, lt = np.meshgrid(log_sigma, log_tau, indexing="ij")
    v, t = np.exp(2 * ls)[..., None], np.exp(2 * lt)[..., None]
    d = v + m * t  # per group: V_g = v I + t J; V_g^-1 = (I - t/d J) / v
    log_det = ((m - 1) * np.log(v) + np.log(d)).sum(-1)
    # with delta = y - beta_mean: quadratic forms of V^-1
    c1 = s1 - m * beta_mean
    c2 = s2 - 2 * beta_mean * s1 + m * beta_mean**2
    yvy = ((c2 - t * c1**2 / d) / v).sum(-1)
    one_v_one = (m / d).sum(-1)
    one_v_y = (c1 / d).sum(-1)
    precision = one_v_one + (0 if math.isinf(beta_sd) else 1 / beta_sd**2)
    log_post = -0.5 * log_det - 0.5 * yvy + 0.5 * one_v_y**2 / precision
    log_post -= 0.5 * np.log(precision)
    log_post += _log_density_sd(sigma_prior, np.exp(ls)) + ls
    log_post += _log_density_sd(tau_prior, np.exp(lt)) + lt
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    beta = beta_mean + one_v_y / precision
    return {
        "sigma": float((w * np.exp(ls)).sum()),
        "tau": float((w * np.exp(lt)).sum()),
        "beta": float((w * beta).sum()),
    }


QUADRATURE_CASES = {
    # Dyestuff2's REML fit is singular (sd 0): the old sampler crashed on it
    "Dyestuff2, defaults": ("Dyestuff2", {}),
    "Dyestuff, normal beta, half-normal sd, inverse-gamma sigma": (
        "Dyestuff",
        {"fixef": Normal(1500, 30), "sd": HalfNormal(40), "sigma": InverseGamma(2, 2000)},
    ),
    "Dyestuff, half-Cauchy sigma, flat sd": (
        "Dyestuff",
        {"sigma": HalfCauchy(25), "sd": Flat()},
    ),
}


@pytest.mark.parametrize("case", list(QUADRATURE_CASES))
def test_posterior_means_equal_the_quadrature(case):
    """Posterior means of sigma, the sd and beta within 4 Monte Carlo standard errors
    (the summary's mcse_mean) of the exact values; 4 chains x 400 draws."""
    name, priors = QUADRATURE_CASES[case]
    data = mm.datasets.load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        fit = mm.lmer("Yield ~ 1 + (1 | Batch)", data)
    post = fit.sample_posterior(400, 100, seed=7, progress=False, **priors)
    table = post.summary()
    y = data.Yield.to_numpy(dtype=float)
    scale = default_scale(y)
    fixef = priors.get("fixef")
    exact = quadrature(
        y,
        data.Batch.to_numpy(),
        priors.get("sigma", HalfStudentT(3, scale)),
        priors.get("sd", HalfStudentT(3, scale)),
        beta_mean=fixef.mean if fixef else 0.0,
        beta_sd=fixef.sd if fixef else math.inf,
    )
    for row, key in (("sigma", "sigma"), ("sd_(Intercept)|Batch", "tau"), ("(Intercept)", "beta")):
        got, mcse = table.loc[row, "mean"], table.loc[row, "mcse_mean"]
        assert abs(got - exact[key]) < 4 * mcse, (row, got, exact[key], mcse)


def test_to_arviz_groups_hold_the_draws_and_the_pointwise_likelihood(fit, posterior):
    """posterior = the draws (and b_<group> = the effects); log_likelihood at a draw =
    scipy's normal log density of y around X beta + Z b with that draw's sigma (computed
    here from fit.Z, independently of the sampler's own bookkeeping, 1e-10); ArviZ's
    summary gives our R-hat and bulk ESS (1e-8)."""
    az = pytest.importorskip("arviz")
    from scipy import stats

    idata = posterior.to_arviz(seed=2)
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(
        idata.groups()
    )
    np.testing.assert_array_equal(idata.posterior["sigma"].values, posterior.chain_array()[:, :, 3])
    np.testing.assert_array_equal(
        idata.posterior["b_Subject"].values.reshape(4, 500, 36), posterior.effects
    )
    chain, draw = 2, 17
    row = posterior.draws.loc[(chain, draw)]
    mean = fit.X @ row[["(Intercept)", "Days"]].to_numpy() + fit.Z @ posterior.effects[chain, draw]
    expected = stats.norm.logpdf(fit.design.y, mean, row["sigma"])
    np.testing.assert_allclose(idata.log_likelihood["y"].values[chain, draw], expected, rtol=1e-10)
    np.testing.assert_array_equal(idata.observed_data["y"].values, fit.design.y)
    replicate = idata.posterior_predictive["y"].values
    assert replicate.shape == (4, 500, 180)
    # replicates scatter around the draw's mean with the draw's sigma (180 values: 5 sds)
    z = (replicate[chain, draw] - mean) / row["sigma"]
    assert abs(z.mean()) < 5 / np.sqrt(180) and abs(z.std() - 1) < 0.2
    theirs = az.summary(idata, var_names=["sigma", "Days"], round_to="none")
    ours = posterior.summary().loc[["sigma", "Days"]]
    np.testing.assert_allclose(theirs["r_hat"], ours["r_hat"], rtol=1e-8)
    np.testing.assert_allclose(theirs["ess_bulk"], ours["ess_bulk"], rtol=1e-8)


def test_priors_resolve_per_parameter():
    """A dict names fixed effects, grouping factors or single sds; the rest get brms's
    defaults: flat beta, half-t(3, max(2.5, mad(y))) (mad as scipy's normal-consistent
    median absolute deviation), LKJ(1)."""
    from scipy import stats

    from mixedmodels.priors import LKJ
    from mixedmodels.results.posterior import resolve_priors

    y = mm.datasets.load("sleepstudy").Reaction.to_numpy()
    scale = max(2.5, stats.median_abs_deviation(y, scale="normal"))
    resolved = resolve_priors(
        ["(Intercept)", "Days"],
        [("Subject", ["(Intercept)", "Days"])],
        y,
        fixef={"Days": Normal(0, 1)},
        sd={"sd_Days|Subject": HalfNormal(2)},
    )
    assert resolved.fixef == [Flat(), Normal(0, 1)]
    assert resolved.sd[0][1] == HalfNormal(2)
    assert resolved.cor == [LKJ(1.0)]
    for prior in (resolved.sd[0][0], resolved.sigma):
        assert isinstance(prior, HalfStudentT) and prior.nu == 3
        assert prior.s == pytest.approx(scale, rel=1e-5)  # R's mad constant is 1.4826


def test_ctrl_c_in_parallel_keeps_the_draws(tmp_path):
    """SIGINT to a process sampling with 2 worker processes (sent once its progress bar
    shows draws): it returns the draws made so far (shared memory), flagged as
    interrupted."""
    import os
    import re
    import signal
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import sys, warnings\n"
        "import mixedmodels as mm\n"
        "fit = mm.lmer('Reaction ~ Days + (Days | Subject)', mm.datasets.load('sleepstudy'))\n"
        "print('ready', flush=True)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    post = fit.sample_posterior(200000, 10, chains=2, n_jobs=2, seed=1)\n"
        "counts = post.draws.groupby(level='chain').size().tolist()\n"
        "print(post.interrupted, sum(counts), len(counts), caught[0].message, flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), MIXEDMODELS_PROGRESS="1")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "ready"
    seen = ""
    while True:  # until the bar shows 100 sweeps done (10 of them warm-up)
        char = proc.stderr.read(1)
        assert char, "no progress bar"
        seen = (seen + char)[-200:]
        done = re.findall(r"(\d+)/400020 ", seen)
        if done and int(done[-1]) > 100:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    interrupted, kept, chains, message = out.split(" ", 3)
    assert interrupted == "True", err
    assert int(kept) > 0 and int(chains) == 2
    assert message.startswith(f"interrupted: kept {kept} of 400000 draws")
