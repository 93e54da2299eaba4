"""The same Bayesian models under NumPyro's NUTS, for benchmarks/bayes_sampler.py.

Not a dependency: run it in its own environment,

    python -m venv /tmp/npvenv && /tmp/npvenv/bin/pip install numpyro pandas
    /tmp/npvenv/bin/python benchmarks/bayes_numpyro.py sleepstudy OUT.npz

then compare with ``python benchmarks/bayes_numpyro.py --compare OUT.npz`` in the
project's environment (bulk ESS by :mod:`mixedmodels.inference.diagnostics`, the same
definitions for both samplers).  Priors are the sampler's defaults: flat fixed effects,
``HalfStudentT(3, max(2.5, mad(y)))`` for sigma and every sd, ``LKJ(1)``; the random
effects are non-centred (the parameterization NUTS needs).  4 chains x (500 warm-up +
1,000 draws), run one after the other on one core (``chain_method="sequential"``); the
time includes JAX's compilation, as a user would wait for it.
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


def run(case: str, out: str) -> None:
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
            return [samples["sd"][..., 0], samples["sd"][..., 1], samples["sd"][..., 2],
                    samples["sigma"]]

    else:
        raise SystemExit(f"unknown case {case}")
    start = time.perf_counter()
    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=1000, num_chains=4,
                chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1))
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    elapsed = time.perf_counter() - start
    arrays = {n: np.asarray(a) for n, a in zip(names, pick(samples), strict=True)}
    np.savez(out, seconds=elapsed, names=np.array(names), **arrays)
    print(f"{case}: {elapsed:.1f} s")
    del jnp


def compare(path: str) -> None:
    from mixedmodels.inference.diagnostics import ess_bulk, rhat

    data = np.load(path)
    seconds = float(data["seconds"])
    print(f"NUTS wall time {seconds:.1f} s")
    for name in data["names"]:
        x = data[str(name)]
        e = ess_bulk(x)
        print(f"{name}: bulk ESS {e:.0f}, ESS/s {e / seconds:.1f}, R-hat {rhat(x):.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2])
    else:
        run(sys.argv[1], sys.argv[2])
