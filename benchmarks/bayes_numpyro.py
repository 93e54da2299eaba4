"""The same Bayesian models under NumPyro's NUTS, for benchmarks/bayes_sampler.py.

Not a dependency: run it in its own environment,

    python -m venv /tmp/npvenv && /tmp/npvenv/bin/pip install numpyro pandas
    /tmp/npvenv/bin/python benchmarks/bayes_numpyro.py sleepstudy OUT.npz

then compare with ``python benchmarks/bayes_numpyro.py --compare sleepstudy OUT.npz`` in the
project's environment (bulk ESS, MCSE of means and of quantiles by
:mod:`mixedmodels.core.diagnostics`, the same definitions for both samplers).  Priors are
the sampler's defaults: flat fixed effects, ``HalfStudentT(3, max(2.5, mad(y)))`` for
sigma and every sd, ``LKJ(1)``; the random effects are non-centred (the parameterization
NUTS needs).  4 chains x (500 warm-up + 1,000 draws), run one after the other on one core
(``chain_method="sequential"``); the time includes JAX's compilation, as a user would
wait for it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "src" / "mixedmodels" / "datasets" / "data"


def _scale(y: np.ndarray) -> float:
    return max(2.5, 1.4826 * float(np.median(np.abs(y - np.median(y)))))


def run(case: str, out: str, chains: int = 4, warmup: int = 500, draws: int = 1000) -> None:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    numpyro.set_host_device_count(1)

    def half_t(s):
        return dist.FoldedDistribution(dist.StudentT(3.0, 0.0, s))

    if case == "sleepstudy":
        d = pd.read_csv(DATA / "sleepstudy.csv.gz")
        y = d.Reaction.to_numpy(float)
        days = d.Days.to_numpy(float)
        g = pd.Categorical(d.Subject).codes
        s = _scale(y)

        def model():
            beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (2,)))
            sd = numpyro.sample("sd", half_t(s).expand([2]).to_event(1))
            corr = numpyro.sample("corr", dist.LKJCholesky(2, 1.0))
            sigma = numpyro.sample("sigma", half_t(s))
            z = numpyro.sample("z", dist.Normal(0, 1).expand([18, 2]).to_event(2))
            b = z @ (sd[:, None] * corr).T
            mu = beta[0] + b[g, 0] + (beta[1] + b[g, 1]) * days
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

        names = ["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma"]

        def pick(samples):
            return [samples["sd"][..., 0], samples["sd"][..., 1], samples["sigma"]]

    elif case == "insteval":
        d = pd.read_csv(DATA / "InstEval.csv.gz")
        y = d.y.to_numpy(float)
        service = (d.service.astype(str) == "1").to_numpy(float)
        codes = [pd.Categorical(d[c]).codes for c in ("s", "d", "dept")]
        sizes = [int(c.max()) + 1 for c in codes]
        s = _scale(y)

        def model():
            beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (2,)))
            sd = numpyro.sample("sd", half_t(s).expand([3]).to_event(1))
            sigma = numpyro.sample("sigma", half_t(s))
            mu = beta[0] + beta[1] * service
            for k, (c, n) in enumerate(zip(codes, sizes, strict=True)):
                z = numpyro.sample(f"z{k}", dist.Normal(0, 1).expand([n]).to_event(1))
                mu = mu + sd[k] * z[c]
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

        names = ["sd_(Intercept)|s", "sd_(Intercept)|d", "sd_(Intercept)|dept", "sigma"]

        def pick(samples):
            return [
                samples["sd"][..., 0],
                samples["sd"][..., 1],
                samples["sd"][..., 2],
                samples["sigma"],
            ]

    else:
        raise SystemExit(f"unknown case {case}")
    start = time.perf_counter()
    cpu_start = time.process_time()
    mcmc = MCMC(
        NUTS(model),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1))
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    arrays = {n: np.asarray(a) for n, a in zip(names, pick(samples), strict=True)}
    np.savez(out, seconds=elapsed, cpu_seconds=cpu, names=np.array(names), **arrays)
    print(f"{case}: {elapsed:.1f} s wall, {cpu:.1f} s CPU (all threads)")
    del jnp


FORMULAS = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    "insteval": ("y ~ service + (1 | s) + (1 | d) + (1 | dept)", "InstEval"),
}


def compare(case: str, path: str) -> None:
    """NUTS's draws beside the Gibbs sampler's (same priors, 4 x (500 + 1,000), 2
    processes), run right after NUTS: bulk ESS per second of wall time and per second of
    CPU time (all threads and processes: per core), and the posterior means' difference
    in units of its Monte Carlo standard error (both samplers' MCSE combined); then, for
    the 5%, 50% and 95% quantiles, both samplers' values and their difference over
    ``hypot(mcse_quantile(nuts), mcse_quantile(gibbs))``.  The Gibbs draws are saved
    next to ``path`` (``*_gibbs.npz``)."""
    import os
    import resource

    import mixedmodels as mm
    from mixedmodels.core.diagnostics import ess_bulk, mcse_mean, rhat

    data = np.load(path)
    seconds = float(data["seconds"])
    cpu_nuts = float(data["cpu_seconds"]) if "cpu_seconds" in data else float("nan")
    formula, name = FORMULAS[case]
    fit = mm.lmer(formula, mm.datasets.load(name))
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = time.process_time()
    start = time.perf_counter()
    post = fit.sample_posterior(1000, 500, seed=1, n_jobs=2, progress=False)
    gibbs_seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    gibbs_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) + (
        time.process_time() - cpu_before
    )
    arr = post.chain_array()
    columns = list(post.draws.columns)
    saved = Path(path).with_name(Path(path).stem + "_gibbs.npz")
    np.savez(
        saved,
        seconds=gibbs_seconds,
        cpu_seconds=gibbs_cpu,
        **{str(k): arr[:, :, columns.index(str(k))] for k in data["names"]},
    )
    print(
        f"{case}: NUTS {seconds:.1f} s wall, {cpu_nuts:.1f} s CPU; Gibbs {gibbs_seconds:.1f} s "
        f"wall, {gibbs_cpu:.1f} s CPU (two processes); load average before Gibbs "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "| parameter | NUTS bulk ESS | Gibbs bulk ESS | NUTS ESS/s wall | Gibbs ESS/s wall "
        "| ratio wall | NUTS ESS/s CPU | Gibbs ESS/s CPU | ratio CPU | NUTS mean | Gibbs mean "
        "| diff / MCSE |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in data["names"]:
        key = str(key)
        x = data[key]
        y = arr[:, :, columns.index(key)]
        ex, ey = ess_bulk(x), ess_bulk(y)
        w_nuts, w_gibbs = ex / seconds, ey / gibbs_seconds
        c_nuts, c_gibbs = ex / cpu_nuts, ey / gibbs_cpu
        se = np.hypot(mcse_mean(x), mcse_mean(y))
        print(
            f"| {key} | {ex:.0f} | {ey:.0f} | {w_nuts:.2f} | {w_gibbs:.1f} "
            f"| {w_gibbs / w_nuts:.1f} "
            f"| {c_nuts:.2f} | {c_gibbs:.1f} | {c_gibbs / c_nuts:.1f} | {x.mean():.4g} "
            f"| {y.mean():.4g} | {(y.mean() - x.mean()) / se:+.2f} |",
            flush=True,
        )
        if x.shape[0] > 1:
            assert rhat(x) < 1.05
    print()
    print(quantile_table(data, {str(k): arr[:, :, columns.index(str(k))] for k in data["names"]}))


def quantile_table(nuts, gibbs, probs=(0.05, 0.5, 0.95)) -> str:
    """Markdown rows: for each parameter and probability, NUTS's and Gibbs's quantile
    (pooled draws, type 7), their MCSEs and the difference over the combined MCSE."""
    from mixedmodels.core.diagnostics import mcse_quantile

    lines = [
        "| parameter | quantile | NUTS | Gibbs | MCSE NUTS | MCSE Gibbs | diff / MCSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in nuts["names"]:
        key = str(key)
        x, y = np.asarray(nuts[key]), np.asarray(gibbs[key])
        for p in probs:
            qx, qy = np.quantile(x, p), np.quantile(y, p)
            sx, sy = mcse_quantile(x, p), mcse_quantile(y, p)
            lines.append(
                f"| {key} | {p:.0%} | {qx:.4g} | {qy:.4g} | {sx:.2g} | {sy:.2g} "
                f"| {(qy - qx) / np.hypot(sx, sy):+.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--quantiles":  # NUTS.npz GIBBS.npz: the table again, no sampling
        print(quantile_table(np.load(sys.argv[2]), np.load(sys.argv[3])))
    else:  # CASE OUT [CHAINS WARMUP DRAWS]
        run(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]))
