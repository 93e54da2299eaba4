"""Posterior draws of a linear mixed model (the Bayesian view): priors, chains run in
parallel processes, diagnostics, ArviZ output.

Chain ``c`` draws every random number (its dispersed start included) from
``SeedSequence(seed).spawn(chains)[c]``, so the draws do not depend on how many processes
run the chains.  Draws go straight into shared memory, so Ctrl-C keeps every sweep that
finished.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mixedmodels.arguments import check_n_jobs, seed_sequence
from mixedmodels.core import diagnostics as dg
from mixedmodels.core.gibbs import GibbsSampler, ModelPriors
from mixedmodels.core.priors import (
    LKJ,
    Flat,
    HalfStudentT,
    LocationPrior,
    Prior,
    ScalePrior,
)
from mixedmodels.core.terms import RandomBlock
from mixedmodels.errors import ArgumentError, MixedModelsWarning
from mixedmodels.progress import ProgressBar

# ---------------------------------------------------------------------------- priors


def default_scale(y: np.ndarray) -> float:
    """brms's default scale of the half-t priors: ``max(2.5, mad(y))`` (R's ``mad``)."""
    y = np.asarray(y, dtype=float)
    mad = 1.4826 * float(np.median(np.abs(y - np.median(y))))
    return max(2.5, mad)


def _check(kind: str, prior, wanted: type) -> Prior:
    if not isinstance(prior, wanted):
        what = {
            LocationPrior: "Flat, Normal or StudentT",
            ScalePrior: "a scale prior "
            "(HalfNormal, HalfCauchy, HalfStudentT, InverseGamma or Flat)",
            LKJ: "LKJ",
        }
        raise ArgumentError(f"{kind} prior must be {what[wanted]}, not {prior!r}")
    return prior


def resolve_priors(
    fixed_names: list[str],
    term_labels: list[tuple[str, list[str]]],
    y: np.ndarray,
    fixef=None,
    sigma=None,
    sd=None,
    cor=None,
) -> ModelPriors:
    """One prior per parameter from the per-class arguments (see
    :meth:`LmerFit.sample_posterior`).

    ``fixef``, ``sd`` and ``cor`` are a prior (for every parameter of the class) or a dict
    from names to priors: fixed-effect names for ``fixef``; for ``sd`` a group name (every
    sd of its terms) or a parameter name such as ``"sd_Days|Subject"``; for ``cor`` a
    group name.  What a dict leaves out gets the default.
    """
    scale = default_scale(y)
    default_sd = HalfStudentT(3, scale)

    def lookup(arg, names: list[str], default, kind: str, wanted: type, known: set[str]):
        if arg is None:
            return [default] * len(names) if names else []
        if isinstance(arg, dict):
            unknown = [k for k in arg if k not in known]
            if unknown:
                raise ArgumentError(
                    f"{kind}= names {unknown[0]!r}, which is not one of {sorted(known)}"
                )
            return None  # caller resolves
        return [_check(kind, arg, wanted)] * len(names)

    # fixed effects
    fixed = lookup(fixef, fixed_names, Flat(), "fixef", LocationPrior, set(fixed_names))
    if fixed is None:
        fixed = [_check("fixef", fixef.get(n, Flat()), LocationPrior) for n in fixed_names]
    sigma_prior = HalfStudentT(3, scale) if sigma is None else _check("sigma", sigma, ScalePrior)

    groups = {g for g, _ in term_labels}
    sd_names = {f"sd_{c}|{g}" for g, cols in term_labels for c in cols}
    sds: list[list[ScalePrior]] = []
    cors: list[LKJ] = []
    if isinstance(sd, dict):
        unknown = [k for k in sd if k not in groups | sd_names]
        if unknown:
            raise ArgumentError(
                f"sd= names {unknown[0]!r}, which is neither a grouping factor "
                f"({sorted(groups)}) nor a standard deviation ({sorted(sd_names)})"
            )
    if isinstance(cor, dict):
        unknown = [k for k in cor if k not in groups]
        if unknown:
            raise ArgumentError(
                f"cor= names {unknown[0]!r}, which is not a grouping factor {sorted(groups)}"
            )
    for group, cols in term_labels:
        term_sd = []
        for c in cols:
            if sd is None:
                pr = default_sd
            elif isinstance(sd, dict):
                pr = sd.get(f"sd_{c}|{group}", sd.get(group, default_sd))
            else:
                pr = sd
            term_sd.append(_check("sd", pr, ScalePrior))
        sds.append(term_sd)
        if cor is None:
            cors.append(LKJ(1.0))
        elif isinstance(cor, dict):
            cors.append(_check("cor", cor.get(group, LKJ(1.0)), LKJ))
        else:
            cors.append(_check("cor", cor, LKJ))
    return ModelPriors(fixed, sigma_prior, sds, cors)


# ---------------------------------------------------------------------------- results


@dataclass
class PosteriorData:
    """The numbers the posterior predictive and the log-likelihood need."""

    X: np.ndarray
    blocks: list[RandomBlock]
    y: np.ndarray  # as observed (offset included)
    offset: np.ndarray
    weights: np.ndarray | None
    group_levels: list[tuple[str, list[str], list[str]]]  # (group, levels, columns)
    trials: np.ndarray | None = None  # binomial-logit model: y is the proportion
    family: str = "gaussian"


@dataclass
class Posterior:
    """Draws from the posterior of a linear mixed model.

    Attributes
    ----------
    draws : DataFrame
        One row per kept draw, indexed by ``(chain, draw)``; one column per parameter,
        named as ``fit.confint``'s rows (``sd_<term>|<group>``, ``cor_<a>.<b>|<group>``,
        ``sigma``, the fixed effects).
    effects : ndarray (chains, draws, q) or None
        Random-effect draws, terms in lme4's order, level-major (``fit.Z``'s columns).
    priors : ModelPriors
    interrupted : bool
        True when Ctrl-C stopped the sampler; ``draws`` holds the finished sweeps.
    """

    draws: pd.DataFrame
    effects: np.ndarray | None
    priors: ModelPriors
    data: PosteriorData
    n_fixed: int
    warmup: int
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        counts = self.draws.groupby(level="chain").size().tolist()
        state = ", interrupted" if self.interrupted else ""
        return (
            f"<Posterior: {len(counts)} chains x {counts[0] if counts else 0} draws of "
            f"{self.draws.shape[1]} parameters after {self.warmup} warm-up sweeps{state}; "
            f".summary(), .draws, .effects, .to_arviz()>"
        )

    @property
    def n_chains(self) -> int:
        """Number of chains."""
        return int(self.draws.index.get_level_values("chain").nunique())

    def chain_array(self) -> np.ndarray:
        """Draws as ``(chains, iterations, parameters)``, every chain cut to the shortest
        non-empty one (they differ only after Ctrl-C)."""
        groups = [g.to_numpy() for _, g in self.draws.groupby(level="chain", sort=True)]
        groups = [g for g in groups if len(g)]
        if not groups:
            return np.zeros((0, 0, self.draws.shape[1]))
        n = min(len(g) for g in groups)
        return np.stack([g[:n] for g in groups])

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior mean, sd, median, the equal-tailed ``level`` interval, the Monte Carlo
        standard error of the mean, bulk and tail effective sample sizes and R-hat
        (:mod:`mixedmodels.core.diagnostics`)."""
        alpha = (1 - level) / 2
        d = self.draws
        arr = self.chain_array()
        diag = {"mcse_mean": [], "ess_bulk": [], "ess_tail": [], "r_hat": []}
        for j in range(d.shape[1]):
            x = arr[:, :, j]
            diag["mcse_mean"].append(dg.mcse_mean(x))
            diag["ess_bulk"].append(dg.ess_bulk(x))
            diag["ess_tail"].append(dg.ess_tail(x))
            diag["r_hat"].append(dg.rhat(x))
        out = pd.DataFrame(
            {
                "mean": d.mean(),
                "sd": d.std(ddof=1),
                "median": d.median(),
                "lower": d.quantile(alpha),
                "upper": d.quantile(1 - alpha),
            }
        )
        for key, values in diag.items():
            out[key] = values
        return out

    # ------------------------------------------------------------------ predictions
    def _linear_predictor(self, beta: np.ndarray, effects: np.ndarray) -> np.ndarray:
        """``offset + X beta + Z b`` for draws (rows) of beta and b."""
        data = self.data
        eta = beta @ data.X.T + data.offset
        start = 0
        for blk in data.blocks:
            b = effects[:, start : start + blk.size].reshape(len(effects), blk.n_levels, blk.p)
            start += blk.size
            for j in range(blk.p):
                eta += b[:, blk.codes, j] * blk.z[:, j]
        return eta

    def to_arviz(self, posterior_predictive: bool = True, log_likelihood: bool = True, seed=None):
        """The draws as ``arviz.InferenceData``.

        Groups: ``posterior`` (every parameter of :attr:`draws` as a variable, and the
        random effects as ``b_<group>`` with dimensions ``<group>`` and
        ``<group>_coef``), ``posterior_predictive`` (``y``, one replicate per draw),
        ``log_likelihood`` (``y``, pointwise ``log N(y_i | eta_i, sigma^2 / w_i)``, for
        ``az.loo``) and ``observed_data``.  The last two need the random-effect draws and
        hold ``chains x draws x n`` numbers.
        """
        try:
            import arviz as az
        except ImportError:
            raise ArgumentError("to_arviz needs ArviZ: pip install 'mixedmodels[bayes]'") from None
        arr = self.chain_array()
        n_chains, n_draws = arr.shape[:2]
        names = list(self.draws.columns)
        posterior = {name: arr[:, :, j] for j, name in enumerate(names)}
        coords: dict[str, list] = {}
        dims: dict[str, list[str]] = {}
        effects = None
        if self.effects is not None:
            effects = self._aligned_effects(n_draws)
            start = 0
            for blk, (group, levels, cols) in zip(
                self.data.blocks, self.data.group_levels, strict=True
            ):
                key = f"b_{group}"
                while key in posterior:
                    key += "_"
                posterior[key] = effects[:, :, start : start + blk.size].reshape(
                    n_chains, n_draws, blk.n_levels, blk.p
                )
                start += blk.size
                dims[key] = [f"{key}_level", f"{key}_coef"]
                coords[f"{key}_level"] = list(levels)
                coords[f"{key}_coef"] = list(cols)
        groups = {"posterior": posterior}
        y = self.data.y
        coords["obs"] = list(range(len(y)))
        dims["y"] = ["obs"]
        if effects is not None and (posterior_predictive or log_likelihood):
            p = self.n_fixed
            beta = arr[:, :, -p:].reshape(-1, p) if p else np.zeros((n_chains * n_draws, 0))
            eta = self._linear_predictor(beta, effects.reshape(n_chains * n_draws, -1))
            rng = np.random.default_rng(seed)
            if self.data.family == "poisson":
                from scipy import stats

                rate = np.exp(eta)
                ll = stats.poisson.logpmf(y, rate)
                rep = rng.poisson(rate).astype(float) if posterior_predictive else None
            elif self.data.trials is None:
                sigma = arr[:, :, names.index("sigma")].reshape(-1)
                w = np.ones(len(y)) if self.data.weights is None else self.data.weights
                sd = sigma[:, None] / np.sqrt(w)[None, :]
                ll = -0.5 * (((y - eta) / sd) ** 2) - np.log(sd) - 0.5 * math.log(2 * math.pi)
                rep = eta + sd * rng.standard_normal(eta.shape) if posterior_predictive else None
            else:
                from scipy import special, stats

                n_i = self.data.trials
                prob = special.expit(eta)
                ll = stats.binom.logpmf(np.round(y * n_i), n_i, prob)
                rep = rng.binomial(n_i, prob) / np.maximum(n_i, 1) if posterior_predictive else None
            if log_likelihood:
                groups["log_likelihood"] = {"y": ll.reshape(n_chains, n_draws, -1)}
            if posterior_predictive:
                groups["posterior_predictive"] = {"y": rep.reshape(n_chains, n_draws, -1)}
        groups["observed_data"] = {"y": y}
        return az.from_dict(**groups, coords=coords, dims=dims)

    def _aligned_effects(self, n_draws: int) -> np.ndarray:
        counts = self.draws.groupby(level="chain", sort=True).size()
        keep = [c for c, k in counts.items() if k > 0]
        return np.stack([self.effects[c, :n_draws] for c in keep])


# ---------------------------------------------------------------------------- chains

_STATE: dict = {}  # read by forked workers


def _chain_starts(fit, sampler: GibbsSampler, rng: np.random.Generator, index: int):
    """Chain 0 starts at the fit (zero sds raised to a small value); the others from
    dispersed values around it: each sd times ``exp(N(0, 1))`` (zeros first raised to
    0.1 sigma), sigma times ``exp(N(0, 0.5^2))``, correlations shrunk toward 0 by a
    uniform factor; for the logit model also beta (the fit's plus 2 standard errors times
    ``N(0, 1)``) and the random effects (the conditional modes)."""
    info = fit._term_info()
    sigma = 1.0 if sampler.glmm else float(fit.sigma)
    sds, cors = [], []
    for _label, _cols, cov in info:
        cov = np.asarray(cov, dtype=float)
        sd = np.sqrt(np.maximum(np.diagonal(cov), 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            cor = cov / np.outer(sd, sd)
        cor = np.where(np.isfinite(cor), cor, 0.0)
        np.fill_diagonal(cor, 1.0)
        if index > 0:
            sd = np.maximum(sd, 0.1 * sigma) * np.exp(rng.standard_normal(sd.size))
            shrink = rng.uniform()
            cor = shrink * cor + (1 - shrink) * np.eye(sd.size)
        sds.append(sd)
        cors.append(cor)
    if not sampler.glmm:
        if index > 0:
            sigma *= math.exp(0.5 * rng.standard_normal())
        return sampler.initial_state(sds, cors, sigma)
    problem, solution = fit._problem, fit._solution
    beta = np.array(solution.beta, dtype=float)
    if index > 0:
        beta = beta + 2 * np.sqrt(np.diag(solution.vcov_beta)) * rng.standard_normal(beta.size)
    flat = np.asarray(problem.scale(problem.lambdas(solution.theta), solution.mode.u))
    sizes = np.cumsum([blk.size for blk in sampler.blocks])[:-1]
    return sampler.initial_state(sds, cors, 1.0, beta, np.split(flat, sizes))


def _run_chain(c: int) -> None:
    st = _STATE
    sampler: GibbsSampler = st["sampler"]
    rng = np.random.default_rng(st["seeds"][c])
    state = _chain_starts(st["fit"], sampler, rng, c)
    params = st["params"][c]
    effects = st["effects"][c] if st["effects"] is not None else None
    done = st["done"]

    def on_sweep(i: int) -> None:
        done[c] = i
        if st.get("on_sweep") is not None:
            st["on_sweep"]()

    sampler.run(state, rng, st["warmup"], st["draws"], params, effects, on_sweep)


def _worker(chains: list[int]) -> None:
    try:
        with threadpool_limits(limits=1):
            for c in chains:
                _run_chain(c)
    except KeyboardInterrupt:
        pass


def _shared(shape: tuple[int, ...], ctx) -> np.ndarray:
    size = int(np.prod(shape))
    buffer = ctx.RawArray("d", max(size, 1))
    return np.frombuffer(buffer, dtype=float, count=size).reshape(shape)


def _check_counts(draws, warmup, chains) -> None:
    for name, value, low in (("draws", draws, 1), ("warmup", warmup, 0), ("chains", chains, 1)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise ArgumentError(f"{name} must be an integer >= {low}, not {value!r}")


def _posterior_data(
    fit, blocks, y_obs, offset, weights, trials=None, family="gaussian"
) -> PosteriorData:
    design = fit.design
    group_levels = [
        (label, [str(v) for v in t.level_index], list(cols))
        for t, (label, cols, _c) in zip(design.terms, fit._term_info(), strict=True)
    ]
    return PosteriorData(
        X=np.asarray(design.X, dtype=float),
        blocks=blocks,
        y=y_obs,
        offset=offset,
        weights=None if weights is None else np.asarray(weights, dtype=float),
        group_levels=group_levels,
        trials=trials,
        family=family,
    )


def sample_posterior(
    fit,
    draws: int = 1000,
    warmup: int = 500,
    *,
    chains: int = 4,
    seed=None,
    fixef=None,
    sigma=None,
    sd=None,
    cor=None,
    n_jobs: int = -1,
    keep_effects: bool = True,
    progress: bool = True,
) -> Posterior:
    """Gibbs sampling from the posterior of a fitted linear mixed model (see
    :meth:`mixedmodels.results.fit.LmerFit.sample_posterior`)."""
    _check_counts(draws, warmup, chains)
    design = fit.design
    offset = np.zeros(design.n) if design.offset is None else np.asarray(design.offset)
    y_obs = np.asarray(design.y, dtype=float)
    y = y_obs - offset
    blocks = [t.block for t in design.terms]
    labels = [(label, list(cols)) for label, cols, _c in fit._term_info()]
    priors = resolve_priors(list(design.fixed_names), labels, y, fixef, sigma, sd, cor)
    sampler = GibbsSampler(blocks, design.X, y, design.weights, priors)
    data = _posterior_data(fit, blocks, y_obs, offset, design.weights)
    return _sample(
        fit, sampler, priors, data, draws, warmup, chains, seed, n_jobs, keep_effects, progress
    )


def sample_posterior_glmm(
    fit,
    draws: int = 1000,
    warmup: int = 500,
    *,
    chains: int = 4,
    seed=None,
    fixef=None,
    sd=None,
    cor=None,
    n_jobs: int = -1,
    keep_effects: bool = True,
    progress: bool = True,
) -> Posterior:
    """Sampling from the posterior of a binomial-logit (Polya-Gamma Gibbs) or Poisson-log
    (exact Metropolis-Hastings steps within Gibbs) GLMM; see
    :meth:`mixedmodels.results.glmer_fit.GlmerFit.sample_posterior`."""
    _check_counts(draws, warmup, chains)
    problem = fit._problem
    family = problem.family
    if (family.name, family.link.name) not in (("binomial", "logit"), ("poisson", "log")):
        raise ArgumentError(
            f"sample_posterior handles the binomial family with the logit link and the "
            f"poisson family with the log link; this fit is {family.name} with the "
            f"{family.link.name} link"
        )
    weights = np.asarray(problem.prior_weights, dtype=float)
    trials = None
    if family.name == "binomial":
        if np.any(np.abs(weights - np.round(weights)) > 1e-8):
            raise ArgumentError(
                "the logit sampler needs whole numbers of trials (binomial weights); got "
                "non-integer weights"
            )
        trials = np.round(weights).astype(np.int64)
    elif np.any(weights != 1):
        raise ArgumentError("the Poisson sampler takes no prior weights")
    design = fit.design
    blocks = list(problem.blocks)
    labels = [(label, list(cols)) for label, cols, _c in fit._term_info()]
    # scales of the default half-t priors: 2.5 on the logit scale (brms's floor)
    priors = resolve_priors(list(design.fixed_names), labels, np.zeros(2), fixef, None, sd, cor)
    sampler = GibbsSampler(
        blocks,
        problem.X,
        problem.y,
        None,
        priors,
        trials=trials,
        offset=problem.offset,
        family=family.name,
    )
    data = _posterior_data(
        fit, blocks, np.asarray(problem.y), problem.offset, None, trials, family.name
    )
    return _sample(
        fit, sampler, priors, data, draws, warmup, chains, seed, n_jobs, keep_effects, progress
    )


def _sample(
    fit, sampler, priors, data, draws, warmup, chains, seed, n_jobs, keep_effects, progress
) -> Posterior:
    ctx = mp.get_context("fork")
    params = _shared((chains, draws, sampler.n_params), ctx)
    effects = _shared((chains, draws, sampler.q), ctx) if keep_effects else None
    done_buffer = ctx.RawArray("q", chains)
    done = np.frombuffer(done_buffer, dtype=np.int64)
    seeds = seed_sequence(seed).spawn(chains)
    n_jobs = check_n_jobs(n_jobs)
    n_jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    n_jobs = min(n_jobs, chains)
    total = chains * (warmup + draws)
    interrupted = False
    with ProgressBar(total, "posterior", enabled=progress) as bar:
        _STATE.update(
            fit=fit,
            sampler=sampler,
            seeds=seeds,
            params=params,
            effects=effects,
            done=done,
            warmup=warmup,
            draws=draws,
            on_sweep=None,
        )
        try:
            if n_jobs == 1:
                _STATE["on_sweep"] = bar.update
                with threadpool_limits(limits=1):
                    for c in range(chains):
                        _run_chain(c)
            else:
                workers = [
                    ctx.Process(target=_worker, args=(list(range(j, chains, n_jobs)),))
                    for j in range(n_jobs)
                ]
                for w in workers:
                    w.start()
                try:
                    shown = 0
                    while any(w.is_alive() for w in workers):
                        time.sleep(0.1)
                        now = int(done.sum())
                        bar.update(now - shown)
                        shown = now
                    bar.update(int(done.sum()) - shown)
                except KeyboardInterrupt:
                    for w in workers:
                        w.terminate()
                    raise
                finally:
                    for w in workers:
                        w.join()
                failed = [w.exitcode for w in workers if w.exitcode not in (0, None)]
                if failed and int(done.sum()) < total:
                    raise ArgumentError(
                        f"a sampler process failed (exit code {failed[0]}); run with "
                        "n_jobs=1 to see the error"
                    )
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _STATE.clear()
    kept = np.clip(done - warmup, 0, draws).astype(int)
    rows, index = [], []
    for c in range(chains):
        rows.append(params[c, : kept[c]])
        index.extend((c, d) for d in range(kept[c]))
    table = pd.DataFrame(
        np.concatenate(rows) if rows else np.zeros((0, sampler.n_params)),
        index=pd.MultiIndex.from_tuples(index, names=["chain", "draw"])
        if index
        else pd.MultiIndex.from_arrays([[], []], names=["chain", "draw"]),
        columns=fit.parameter_names,
    )
    notes = []
    if interrupted:
        notes.append(f"interrupted: kept {int(kept.sum())} of {chains * draws} draws")
        warnings.warn(notes[-1], MixedModelsWarning, stacklevel=4)
    return Posterior(
        draws=table,
        effects=None if effects is None else np.array(effects),
        priors=priors,
        data=data,
        n_fixed=sampler.p,
        warmup=warmup,
        interrupted=interrupted,
        notes=notes,
    )
