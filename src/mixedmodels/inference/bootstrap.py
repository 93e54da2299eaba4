"""Parametric bootstrap (lme4's ``bootMer``): simulate from the fit, refit, collect.

Each replicate ``i`` draws its response from its own random stream,
``SeedSequence(seed).spawn(nsim)[i]``, so results are identical whatever the number of
worker processes.  Refits reuse the model structure (only the response's cross products
and the optimization are redone) and start at the fitted theta.  Ctrl-C stops the loop and
keeps the replicates finished so far.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from mixedmodels.arguments import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_level,
    check_n_jobs,
    seed_sequence,
)
from mixedmodels.errors import ArgumentError
from mixedmodels.progress import ProgressBar

_STATE: dict = {}  # read by forked workers


@dataclass
class BootstrapResult:
    """Bootstrap replicates of a statistic with percentile, basic and normal intervals.

    Attributes
    ----------
    original : Series
        The statistic on the fitted model.
    replicates : DataFrame
        One row per finished replicate.
    nsim : int
        Replicates requested.
    interrupted : bool
        True when stopped early (Ctrl-C); ``replicates`` holds those done.
    """

    original: pd.Series
    replicates: pd.DataFrame
    nsim: int
    interrupted: bool = False
    failures: int = 0
    notes: list[str] = field(default_factory=list)

    def confint(self, method: str = "percentile", level: float = 0.95) -> pd.DataFrame:
        """Intervals: ``percentile`` (quantiles of the replicates), ``basic``
        (``2 t0 - quantiles``) or ``normal`` (``t0 - bias -+ z sd``)."""
        method = check_choice(method, "method", ("percentile", "basic", "normal"))
        alpha = (1 - check_level(level)) / 2
        reps = self.replicates
        t0 = self.original
        if method == "percentile":
            lower, upper = reps.quantile(alpha), reps.quantile(1 - alpha)
        elif method == "basic":
            lower, upper = 2 * t0 - reps.quantile(1 - alpha), 2 * t0 - reps.quantile(alpha)
        elif method == "normal":
            bias = reps.mean() - t0
            z = stats.norm.ppf(1 - alpha)
            sd = reps.std(ddof=1)
            lower, upper = t0 - bias - z * sd, t0 - bias + z * sd
        else:
            raise ArgumentError("method must be 'percentile', 'basic' or 'normal'")
        return pd.DataFrame({"lower": lower, "upper": upper})

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Tidy table: original, bias, std_error and the three kinds of interval."""
        out = pd.DataFrame(
            {
                "original": self.original,
                "bias": self.replicates.mean() - self.original,
                "std_error": self.replicates.std(ddof=1),
            }
        )
        for method in ("percentile", "basic", "normal"):
            ci = self.confint(method, level)
            out[f"{method}_lower"] = ci["lower"]
            out[f"{method}_upper"] = ci["upper"]
        return out


def _statistic_values(value: object) -> np.ndarray:
    """What ``statistic(fit)`` returned, as a flat float array."""
    try:
        return np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f"statistic must return a number or an array of numbers, got {type(value).__name__}"
        ) from exc


def _replicate(i: int) -> np.ndarray | None:
    rng = np.random.default_rng(_STATE["seeds"][i])
    return _STATE["fit"].bootstrap_replicate(rng, _STATE["statistic"])


def _safe_replicate(i: int) -> np.ndarray | None:
    try:
        return _replicate(i)
    except Exception:  # a failed refit is counted, not fatal
        return None


def _run_chunk(indices: list[int]) -> list[tuple[int, np.ndarray | None]]:
    return [(i, _safe_replicate(i)) for i in indices]


def bootstrap(
    fit,
    nsim: int,
    statistic: Callable | None = None,
    *,
    seed=None,
    n_jobs: int = 1,
    progress: bool = True,
    names: list[str] | None = None,
) -> BootstrapResult:
    """Parametric bootstrap of ``statistic`` (default: sd/cor, sigma, fixed effects).

    Raises
    ------
    ArgumentError
        ``nsim`` not a positive integer, ``n_jobs`` not a count (or -1), a ``seed`` numpy
        cannot use, a ``statistic`` that is not a function or returns no numbers, ``names``
        of the wrong length.
    """
    nsim = check_int(nsim, "nsim", minimum=1)
    statistic = check_callable(statistic, "statistic")
    n_jobs = check_n_jobs(n_jobs)
    progress = check_bool(progress, "progress")
    seeds = seed_sequence(seed).spawn(nsim)

    if statistic is None:
        original = fit.parameters.to_numpy()
        names = names or list(fit.parameter_names)
    else:
        original = _statistic_values(statistic(fit))
        names = names or [f"t{i + 1}" for i in range(original.size)]
    if len(names) != original.size:
        raise ArgumentError(f"names must be {original.size} labels, got {len(names)}")
    _STATE.update(fit=fit, seeds=seeds, statistic=statistic)
    results: dict[int, np.ndarray | None] = {}
    interrupted = False
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    chunk = 25
    batches = [list(range(s, min(s + chunk, nsim))) for s in range(0, nsim, chunk)]
    with ProgressBar(nsim, "bootstrap", enabled=progress) as bar:
        try:
            if n_jobs == 1 or nsim < 2 * chunk:
                for i in range(nsim):
                    results[i] = _safe_replicate(i)
                    bar.update(1)
            else:
                ctx = mp.get_context("fork")
                # one BLAS thread per worker: on small matrices BLAS threads only contend
                # (2 workers: 11.4 s -> 2.3 s for 1,000 sleepstudy replicates here)
                with threadpool_limits(limits=1), ctx.Pool(n_jobs) as pool:
                    try:
                        for part in pool.imap_unordered(_run_chunk, batches):
                            for i, value in part:
                                results[i] = value
                            bar.update(len(part))
                    except KeyboardInterrupt:
                        pool.terminate()
                        raise
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _STATE.clear()
    done = sorted(i for i, v in results.items() if v is not None)
    failures = sum(1 for v in results.values() if v is None)
    for i in done:  # one row per replicate: a statistic of varying length cannot fill it
        size = np.asarray(results[i]).size
        if size != len(names):
            raise ArgumentError(
                f"statistic returned {len(names)} value(s) for the fit but {size} for "
                f"replicate {i}: it must return the same number of values every time"
            )
    reps = pd.DataFrame(
        np.array([results[i] for i in done]).reshape(len(done), len(names)),
        index=pd.Index(done, name="replicate"),
        columns=names,
    )
    notes = []
    if failures:
        notes.append(f"{failures} replicate(s) failed to refit and were dropped")
    if interrupted:
        notes.append(f"interrupted: {len(done)} of {nsim} replicates done")
    return BootstrapResult(
        original=pd.Series(original, index=names),
        replicates=reps,
        nsim=nsim,
        interrupted=interrupted,
        failures=failures,
        notes=notes,
    )
