"""The result of fitting a generalized linear mixed model (what ``mm.glmer`` returns)."""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels.arguments import (
    check_bool,
    check_choice,
    check_int,
    check_level,
    random_generator,
)
from mixedmodels.core.families import Family
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.pirls import GlmmProblem
from mixedmodels.design.model import ModelDesign
from mixedmodels.design.validate import new_response
from mixedmodels.errors import ArgumentError, DataError
from mixedmodels.optim.glmm import GlmmSolution
from mixedmodels.results.base import MixedFit
from mixedmodels.results.broom import broom_terms
from mixedmodels.results.glmm_condvar import modes_by_level, parameter_uncertainty
from mixedmodels.results.glmm_variance import (
    distribution_variance,
    null_intercept,
    observation_level,
)
from mixedmodels.results.parameters import parameter_names, parameter_values
from mixedmodels.results.random_effects import (
    ranef_long,
)
from mixedmodels.results.services import inference
from mixedmodels.results.zero_inflation import PREDICTION_TYPES, predict_zero_inflated


class GlmerFit(MixedFit):
    """A fitted GLMM with lme4's accessors: ``fixef``, ``vcov``, ``theta``, ``varcorr``,
    ``ranef``, ``coef``, ``fitted`` (response scale), ``residuals`` (deviance residuals),
    ``deviance``, ``loglik``, ``aic``, ``bic``, ``nobs``, ``ngroups``, ``is_singular``.

    The log-likelihood is the Laplace approximation (lme4's ``logLik``)

    .. math::

        \\log L \\approx -\\tfrac12 \\left(-2 \\sum_i \\log p(y_i \\mid \\tilde\\mu_i)
            + \\|\\tilde u\\|^2 + \\log|L|^2\\right).
    """


    def __init__(
        self,
        design: ModelDesign,
        problem: GlmmProblem,
        solution: GlmmSolution,
        n_agq: int = 1,
        data_name: str | None = None,
        zi_formula: str | None = None,
        zero_inflation_model=None,
    ):
        self._design = design
        # the problem at the optimum: its family carries the estimates of the family's own
        # parameters (negative binomial size, beta precision, zero-inflation coefficients)
        self._problem = solution.problem if solution.problem is not None else problem
        self._solution = solution
        self.n_agq = n_agq
        self.data_name = data_name
        #: the zero-inflation formula (glmmTMB's ziformula), None without zero inflation
        self.zi_formula = zi_formula
        #: the zero-inflation formula's encoding (results.zero_inflation), for new rows
        self.zero_inflation_model = zero_inflation_model

    # ------------------------------------------------------------------ basics

    @property
    def family(self) -> Family:
        """The response family and link (binomial or poisson)."""
        return self._problem.family

    @property
    def problem(self) -> GlmmProblem:
        """The Laplace deviance as a function of theta and beta:
        ``fit.problem.laplace_deviance(theta, beta)``."""
        return self._problem

    @property
    def has_residual_variance(self) -> bool:  # type: ignore[override]
        """A Residual row in varcorr and the summary: for families with a dispersion."""
        return self.family.has_dispersion

    @cached_property
    def sigma(self) -> float:
        """1 for families without a dispersion parameter (binomial, poisson, lme4's
        negative binomial); for gamma, inverse Gaussian and gaussian lme4's ``sigma()``:
        ``sqrt((sum_i w_i (y_i - mu_i)^2 / V(mu_i) + ||u||^2) / n)`` at the conditional
        modes (a Pearson estimate of ``sqrt(phi)``; it also scales the random-effect
        standard deviations that varcorr reports, as lme4's VarCorr); for glmmTMB's
        families its ``sigma()``: nbinom2's size ``k``, nbinom1's and beta's ``phi``."""
        p, mode = self._problem, self._solution.mode
        return p.family.fit_sigma(p.y, mode.mu, mode.u, p.prior_weights)

    def _term_info(self) -> list[tuple[str, list[str], np.ndarray]]:
        """(group label, column names, covariance) per term: ``lambda lambda'``, times
        ``sigma^2`` for lme4's families with a dispersion (lme4's VarCorr)."""
        from mixedmodels.results.varcorr import term_covariances, unique_group_labels

        labels = unique_group_labels([t.group_name for t in self._design.terms])
        scale = self.sigma if self.family.has_dispersion else 1.0
        covs = term_covariances(self._problem.lambdas(self._solution.theta), scale)
        return [
            (label, t.column_names, cov)
            for label, t, cov in zip(labels, self._design.terms, covs, strict=True)
        ]

    @property
    def extra_parameters(self) -> pd.Series:
        """The family's own parameters as reported (glmmTMB: ``sigma`` for the
        dispersion, ``zi_<name>`` for zero-inflation coefficients); empty for lme4's."""
        rows = self.family.reported_extra()
        return pd.Series([r[1] for r in rows], index=[r[0] for r in rows], dtype=float)

    @property
    def converged(self) -> bool:
        """Whether the optimizer reported convergence."""
        return self._solution.converged

    @property
    def optimizer_message(self) -> str:
        """The optimizer's closing message."""
        return self._solution.message

    @property
    def n_evaluations(self) -> int:
        """Deviance evaluations the optimizer used."""
        return self._solution.n_evaluations

    # ------------------------------------------------------------------ fixed effects

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effect estimates from the Hessian of the Laplace (or
        quadrature) deviance, as lme4's ``vcov(m)``."""
        names = self._design.fixed_names
        return pd.DataFrame(self._solution.vcov_beta, index=names, columns=names)

    def fixef_table(self) -> pd.DataFrame:
        """Estimates with standard errors, Wald z values and ``Pr(>|z|)`` (lme4's table)."""
        beta = self._solution.beta
        se = np.sqrt(np.diagonal(self._solution.vcov_beta))
        z = beta / se
        return pd.DataFrame(
            {
                "estimate": beta,
                "std_error": se,
                "z_value": z,
                "p_value": 2.0 * stats.norm.sf(np.abs(z)),
            },
            index=self._design.fixed_names,
        )

    def confint(self, method: str = "wald", level: float = 0.95) -> pd.DataFrame:
        """Intervals (``lower``, ``upper``): ``"wald"`` for the fixed effects (lme4's
        ``confint(method = "Wald")``; sd rows NaN) or ``"profile"`` for every parameter
        (lme4's default ``confint``), from the profiled Laplace deviance."""
        method = check_choice(method, "method", ("wald", "profile"))
        level = check_level(level)
        if method == "profile":
            return inference().profile_confint(self, level)
        table = self.fixef_table()
        q = stats.norm.ppf(0.5 + level / 2)
        fixed = pd.DataFrame(
            {
                "lower": table.estimate - q * table.std_error,
                "upper": table.estimate + q * table.std_error,
            }
        )
        extra = self._extra_intervals(q)
        variance_names = [
            n for n in self.parameter_names if n not in fixed.index and n not in extra.index
        ]
        empty = pd.DataFrame(np.nan, index=variance_names, columns=["lower", "upper"])
        return pd.concat([empty, fixed, extra])

    def _extra_intervals(self, q: float) -> pd.DataFrame:
        """Wald intervals of the family's own parameters (glmmTMB's ``confint``: a
        dispersion's on the log scale, exponentiated; zero-inflation coefficients as
        they are); NaN where their covariance is not available."""
        rows = self.family.reported_extra()
        cov = self._solution.vcov_extra
        out = pd.DataFrame(np.nan, index=[r[0] for r in rows], columns=["lower", "upper"])
        if cov is None:
            return out
        values = self.family.extra_values
        for name, _value, index, on_log in rows:
            se = math.sqrt(cov[index, index]) if cov[index, index] >= 0 else math.nan
            lo, hi = values[index] - q * se, values[index] + q * se
            if callable(on_log):  # a parameter reported through its own map (tweedie's power)
                out.loc[name] = (on_log(lo), on_log(hi))
            else:
                out.loc[name] = (math.exp(lo), math.exp(hi)) if on_log else (lo, hi)
        return out

    def profile(self, level: float = 0.99, points: int = 12) -> pd.DataFrame:
        """Profile traces (lme4's ``profile``): ``parameter``, ``value``, ``zeta``, on a
        grid spanning each parameter's ``level`` interval; plottable with
        ``mixedmodels.plots.plot_profile``."""
        return inference().profile_traces(self, level, points)

    @property
    def parameter_names(self) -> list[str]:
        """sd/cor of each term, ``sigma`` for families with a dispersion parameter, then
        the fixed effects (lme4's ``confint`` names)."""
        info = self._term_info()
        structures = [b.structure for b in self._problem.blocks]
        names = parameter_names([i[0] for i in info], [i[1] for i in info], [], structures)
        if not self.family.has_dispersion:
            names = [n for n in names if n != "sigma"]
        return names + list(self._design.fixed_names) + list(self.extra_parameters.index)

    @property
    def parameters(self) -> pd.Series:
        """Values of :attr:`parameter_names` (sd/cor as :attr:`varcorr` reports them)."""
        lambdas = self._problem.lambdas(self._solution.theta)
        structures = [b.structure for b in self._problem.blocks]
        scale = self.sigma if self.family.has_dispersion else 1.0
        values = parameter_values(lambdas, scale, self._solution.beta, structures)
        keep = np.ones(values.size, dtype=bool)
        if not self.family.has_dispersion:
            keep[values.size - len(self._solution.beta) - 1] = False  # sigma
        values = np.concatenate([values[keep], self.extra_parameters.to_numpy()])
        return pd.Series(values, index=self.parameter_names)

    # ------------------------------------------------------------------ simulation
    def _draw_response(self, rng: np.random.Generator) -> np.ndarray:
        """One response from the fitted model: ``u ~ N(0, I)``, then ``y | u`` from the
        family (binomial: successes over trials, as the response was given)."""
        p = self._problem
        lambdas = p.lambdas(self._solution.theta)
        u = rng.standard_normal(p.q)
        if self.family.has_dispersion:
            # lme4's Laplace deviance for these families, sum d_i + ||u||^2 with d_i not
            # divided by phi, is the model b = sigma Lambda u (hence VarCorr's sigma *
            # theta); lme4's simulate leaves b unscaled, which does not reproduce its fit
            u = u * self.sigma
        eta = p.offset + p.X @ self._solution.beta + p.Z @ p.scale(lambdas, u)
        mu = p.family.link.inverse(eta)
        return p.family.simulate(mu, p.prior_weights, rng, self._simulation_dispersion)

    @property
    def _simulation_dispersion(self) -> float:
        """The family's dispersion for simulation (``sigma^2`` for lme4's families)."""
        return self.family.dispersion_for_simulation(self.sigma)

    def simulate(self, nsim: int = 1, seed=None) -> np.ndarray:
        """``nsim`` responses from the fitted model (lme4's ``simulate``), shape (n, nsim):
        new random effects each time; binomial responses as proportions of the trials
        (0/1 for binary data), poisson as counts; Gamma with shape ``w / sigma^2`` (lme4's
        ``Gamma_simfun``), inverse Gaussian with shape ``w / sigma^2`` (lme4 uses
        ``w / sigma``, which does not give ``Var(y) = sigma^2 mu^3``), gaussian with sd
        ``sigma / sqrt(w)``."""
        nsim = check_int(nsim, "nsim", minimum=1)
        rng = random_generator(seed)
        return np.column_stack([self._draw_response(rng) for _ in range(nsim)])

    def refit(self, y) -> GlmerFit:
        """The same model fitted to another response (same trials and weights), starting
        at this fit's theta (lme4's ``refit``)."""
        from mixedmodels.optim.glmm import fit_glmm

        p = self._problem
        y = new_response(y, p.n)
        complaint = p.family.check_response(y) or p.family.check_link_response(y)
        if complaint:
            raise DataError(f"new response 'y': {complaint}")
        problem = GlmmProblem(p.blocks, p.X, y, p.prior_weights, p.offset, p.family)
        solution = fit_glmm(problem, self.n_agq, start_theta=self._solution.theta)
        return GlmerFit(
            self._design.with_response(y),
            problem,
            solution,
            self.n_agq,
            self.data_name,
            self.zi_formula,
            self.zero_inflation_model,
        )

    def bootstrap_replicate(self, rng: np.random.Generator, statistic=None) -> np.ndarray:
        """One parametric-bootstrap replicate: a response simulated from the fit (new random
        effects), refitted from this fit's theta; ``statistic(refit)`` or its
        :attr:`parameters`."""
        refitted = self.refit(self._draw_response(rng))
        value = refitted.parameters.to_numpy() if statistic is None else statistic(refitted)
        return np.asarray(value, dtype=float)

    def sample_posterior(
        self,
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
    ):
        """The Bayesian view of a binomial-logit GLMM: exact Gibbs sampling through
        Polya-Gamma augmentation, with the priors and outputs of
        :meth:`LmerFit.sample_posterior` (no ``sigma``; default sd prior
        ``HalfStudentT(3, 2.5)``).  Other families and links raise ``ArgumentError``."""
        from mixedmodels.results.posterior import sample_posterior_glmm

        return sample_posterior_glmm(
            self,
            draws,
            warmup,
            chains=chains,
            seed=seed,
            fixef=fixef,
            sd=sd,
            cor=cor,
            n_jobs=n_jobs,
            keep_effects=keep_effects,
            progress=progress,
        )

    def bootstrap(
        self, nsim: int = 1000, statistic=None, *, seed=None, n_jobs: int = 1, progress=True
    ):
        """Parametric bootstrap (lme4's ``bootMer``): simulate, refit, collect ``statistic``
        (default: sd/cor and fixed effects); see
        :func:`mixedmodels.inference.bootstrap.bootstrap`."""
        return inference().bootstrap(
            self, nsim, statistic, seed=seed, n_jobs=n_jobs, progress=progress
        )

    # ------------------------------------------------------------------ likelihood
    @property
    def n_parameters(self) -> int:
        """Fixed effects, theta and (lme4's ``useSc``) one dispersion where there is one."""
        extra = (1 if self.family.has_dispersion else 0) + len(self.family.extra_names)
        return len(self._design.fixed_names) + self._problem.n_theta + extra

    @property
    def deviance(self) -> float:
        """Sum of squared deviance residuals at the conditional modes (lme4's
        ``deviance()`` of a glmer fit)."""
        return self._solution.mode.deviance

    @property
    def objective(self) -> float:
        """lme4's ``deviance(m)`` of a glmer fit (what its reference tables call the
        objective): the deviance-residual sum at the conditional modes."""
        return self.deviance

    @cached_property
    def loglik(self) -> float:
        """The approximate log-likelihood: ``-(objective + c) / 2`` where the objective uses
        deviance residuals and ``c = -2 sum log p(y | mu) - sum d_i`` (the saturated model's
        ``-2 log`` density, free of ``mu``) puts it on the scale of R's ``family$aic``.

        For families with a dispersion parameter the objective already holds R's ``aic``
        (as lme4's): ``-2 sum log p(y | mu, phi)`` with ``phi = deviance / sum(w)``
        (gaussian: ``/ n``) plus 2, so the log-likelihood is lme4's, 1 below the Laplace
        approximation at that ``phi``, and AIC counts the dispersion twice (once in that
        2, once in the parameter count), exactly as lme4's ``logLik`` and ``AIC``."""
        if self.n_agq > 1:
            # lme4 1.1-31's quadrature deviance omits the saturated term, and its logLik
            # follows it; we report the same number (so it is not comparable with a
            # Laplace fit's, in lme4 as here)
            return -0.5 * self._solution.objective
        return self._laplace_loglik(self._solution.objective, self._solution.mode)

    def loglik_at(self, beta=None, theta=None) -> float:
        """The log-likelihood :attr:`loglik` reports, at other values of ``beta`` and
        ``theta`` (the fitted ones where None; the family's own parameters at their
        estimates): the Laplace approximation at the conditional mode given both (the
        quadrature approximation for ``n_agq > 1``), with the same saturated-model and
        dispersion terms, so ``loglik_at() == loglik`` and differences are lme4's
        deviance function's (``update(m, devFunOnly = TRUE)``) times ``-1/2``.

        Raises
        ------
        ArgumentError
            When ``beta`` or ``theta`` is not a finite vector of the right length, or a
            theta element is below its lower bound (a negative sd).
        """
        p = self._problem
        beta = self._parameter_vector(beta, self._solution.beta, "beta")
        theta = self._parameter_vector(theta, self._solution.theta, "theta")
        lower = p.theta_lower_bounds()
        if np.any(theta < lower):
            raise ArgumentError(
                f"theta must be at least its lower bounds {lower.tolist()} (standard "
                f"deviations are not negative), got {theta.tolist()}"
            )
        start = self._solution.mode.u
        if self.n_agq > 1:
            return -0.5 * p.quadrature_deviance(theta, beta, self.n_agq, start)[0]
        mode = p.mode(theta, beta, start)
        return self._laplace_loglik(mode.laplace, mode)

    def _laplace_loglik(self, objective: float, mode) -> float:
        """``-(objective - data term + R's aic) / 2`` at a conditional mode (see
        :attr:`loglik`)."""
        p = self._problem
        trials = self._design.trials  # a cbind response: R weights dbinom(k, n) by w
        extra = {} if trials is None else {"trials": trials}
        aic = p.family.aic(p.y, mode.mu, p.prior_weights, mode.deviance, **extra)
        return -0.5 * (objective - mode.data_term + aic)

    @property
    def aic(self) -> float:
        """Akaike's information criterion ``-2 logLik + 2 k``."""
        return -2.0 * self.loglik + 2.0 * self.n_parameters

    @property
    def bic(self) -> float:
        """Schwarz's Bayesian information criterion ``-2 logLik + log(n) k``."""
        return -2.0 * self.loglik + math.log(self.nobs) * self.n_parameters

    # ------------------------------------------------------------------ random effects

    @cached_property
    def _modes(self) -> list[np.ndarray]:
        """Conditional modes ``b = Lambda u`` per term, shape (levels, p)."""
        return modes_by_level(self._problem, self._solution.theta, self._solution.mode.u)

    @cached_property
    def _conditional_covariances(self) -> list[np.ndarray]:
        """``Var(b | y)`` per term and level: ``Lambda (L L')^-1 Lambda'`` with ``L`` the
        Cholesky factor at the mode's GLM weights, times ``sigma^2`` for lme4's families
        with a dispersion (lme4's condVar for glmer, scaled as its VarCorr); for glmmTMB's
        families plus the estimates' uncertainty, as glmmTMB's ``ranef(condVar = TRUE)``
        (:func:`~mixedmodels.results.glmm_condvar.parameter_uncertainty`)."""
        mode, pr = self._solution.mode, self._problem
        weighted = LmmProblem(pr.blocks, pr.X, pr.y, mode.weights, reml=False)
        scale = self.sigma if self.family.has_dispersion else 1.0
        conditional = weighted.conditional_covariances(self._solution.theta, scale)
        whole = self._solution.vcov_all
        if whole is None:  # lme4's families (and a glmmTMB fit with theta on its bound)
            return conditional
        # glmmTMB's families: its sdreport adds the estimates' uncertainty
        # (mixedmodels.results.glmm_condvar)
        added = parameter_uncertainty(
            pr, self._solution.theta, self._solution.beta, mode.u, whole
        )
        if added is None:
            return conditional
        return [c + a for c, a in zip(conditional, added, strict=True)]

    @cached_property
    def _conditional_sd(self) -> list[np.ndarray]:
        """sd of ``b | y`` per term (the diagonals of :attr:`_conditional_covariances`)."""
        return [np.sqrt(np.diagonal(c, axis1=1, axis2=2)) for c in self._conditional_covariances]

    def ranef_table(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(ranef(m, condVar = TRUE))``."""
        return ranef_long(self._design.terms, self._modes, self._conditional_sd)

    # ------------------------------------------------------------------ Nakagawa's R2, ICC
    @cached_property
    def _variance_components(self) -> dict[str, float]:
        levels = [t.n_levels for t in self._design.terms]
        at_rows = observation_level(levels, self.nobs)
        parts = self._term_variances()
        dist = distribution_variance(
            self.family, self.sigma, lambda: math.exp(null_intercept(self._problem, self.n_agq))
        )
        disp = float(sum(v for v, obs in zip(parts, at_rows, strict=True) if obs))
        return {
            "fixed": float(np.var(self._design.X @ self._solution.beta, ddof=1)),
            "random": float(sum(v for v, obs in zip(parts, at_rows, strict=True) if not obs)),
            "residual": dist + disp,
            "distribution": dist,
            "dispersion": disp,
        }

    def variance_decomposition(self) -> dict[str, float]:
        """Nakagawa et al.'s (2017) latent-scale variances, as performance's (insight's
        ``get_variance``): ``fixed`` ``var(X beta)``; ``random``, each term's
        ``mean_i z_i' Sigma z_i`` summed over the terms but observation-level ones (one
        level per row); ``distribution``, the family's distribution-specific variance (see
        :mod:`mixedmodels.results.glmm_variance`; for poisson, negative binomial and beta
        it takes ``mu = exp(b_0)`` from a null model, the same random terms with an
        intercept only, fitted on first use); ``dispersion``, the observation-level
        terms' variance; ``residual = distribution + dispersion``.  For a singular fit
        performance returns NA with a warning; here the zero variances enter as they are.

        Raises
        ------
        ArgumentError
            For a family or link without a definition (inverse Gaussian, gaussian,
            tweedie, zero inflation; poisson identity, binomial log).
        """
        return dict(self._variance_components)

    def tidy(self, conf_method: str = "wald", level: float = 0.95) -> pd.DataFrame:
        """All estimates in one table, broom.mixed's ``tidy(m, conf.int = TRUE)`` layout
        (snake_case columns): ``effect``, ``group``, ``term``, ``estimate``,
        ``std_error``, ``statistic``, ``p_value``, ``conf_low``, ``conf_high``.

        The fixed effects come first (Wald ``z`` and ``Pr(>|z|)``, group missing), then per
        random term its ``sd__<column>`` and ``cor__<column>.<column>`` rows (``effect``
        ``"ran_pars"``, the group as :attr:`varcorr` labels it, no standard error), then
        ``sd__Observation`` of group ``"Residual"`` (``sigma``) for families with a
        dispersion, then the family's own parameters (:attr:`extra_parameters`, effect
        ``"family"``).  Intervals by ``conf_method`` ``"wald"`` (ran_pars NaN, as
        broom.mixed's ``conf.method = "Wald"``) or ``"profile"``."""
        ci = self.confint(conf_method, level)
        table = self.fixef_table()
        params = self.parameters
        terms = broom_terms(self._term_info())
        extra = set(self.extra_parameters.index)
        rows = []
        for name in table.index:
            r = table.loc[name]
            rows.append(("fixed", None, name, r.estimate, r.std_error, r.z_value, r.p_value, name))
        for name, value in params.items():
            if name in table.index:
                continue
            nan = (np.nan, np.nan, np.nan)
            if name in extra:
                rows.append(("family", None, name, value, *nan, name))
            elif name == "sigma":
                rows.append(("ran_pars", "Residual", "sd__Observation", value, *nan, name))
            else:
                term, _, group = name.rpartition("|")
                rows.append(("ran_pars", group, terms.get(name, term), value, *nan, name))
        columns = ["effect", "group", "term", "estimate", "std_error", "statistic", "p_value"]
        out = pd.DataFrame([r[:-1] for r in rows], columns=columns)
        keys = [r[-1] for r in rows]
        out["conf_low"] = ci["lower"].reindex(keys).to_numpy()
        out["conf_high"] = ci["upper"].reindex(keys).to_numpy()
        return out

    # ------------------------------------------------------------------ fitted values
    @property
    def fitted(self) -> np.ndarray:
        """Fitted means ``mu = g^-1(eta)`` at the conditional modes (with zero inflation
        ``(1 - pi) mu``, glmmTMB's ``fitted``)."""
        return self.family.response_mean(self._solution.mode.mu.copy())

    @property
    def linear_predictor(self) -> np.ndarray:
        """The linear predictor ``eta = X beta + Z b`` at the conditional modes."""
        return self._solution.mode.eta.copy()

    def residuals(self, kind: str = "deviance") -> np.ndarray:
        """Residuals: ``"deviance"`` (lme4's default), ``"pearson"``, ``"response"`` or
        ``"working"``."""
        p = self._problem
        mu, y = self._solution.mode.mu, p.y
        if kind == "deviance":
            d = p.family.unit_deviance(y, mu, p.prior_weights)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        if kind == "pearson":
            mean = p.family.response_mean(mu)
            return (y - mean) * np.sqrt(p.prior_weights / p.family.variance(mu))
        if kind == "response":
            return y - p.family.response_mean(mu)
        if kind == "working":
            return (y - mu) / p.family.link.mu_eta(self._solution.mode.eta)
        raise ArgumentError("kind must be 'deviance', 'pearson', 'response' or 'working'")

    def _data_loss(self, fixed_random: np.ndarray) -> float:
        """``sum_i d_i(y_i, g^-1(offset_i + x_i' beta + z_i' b))`` (see
        :meth:`penalized_loss`)."""
        p = self._problem
        mu = p.family.link.inverse(p.offset + fixed_random)
        return float(np.sum(p.family.unit_deviance(p.y, mu, p.prior_weights)))

    @property
    def scaled_residuals(self) -> np.ndarray:
        """Pearson residuals divided by ``sigma`` for lme4's families with a dispersion
        (Gamma, inverse Gaussian, gaussian), the Pearson residuals otherwise: lme4's
        ``residuals(m, "pearson", scaled = TRUE)``, whose quantiles its summary prints
        as "Scaled residuals" (glmmTMB's families' Pearson residuals already hold their
        dispersion)."""
        r = self.residuals("pearson")
        return r / self.sigma if self.family.has_dispersion else r

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: str = "link",
        include_random: bool = True,
        allow_new_levels: bool = False,
    ) -> np.ndarray:
        """Predictions on the link scale (``type="link"``, lme4's default) or the response
        scale (``type="response"``); ``include_random=False`` is lme4's ``re.form = NA``.
        Zero-inflated fits also take glmmTMB's ``"conditional"`` (the count model's mean
        ``mu``), ``"zprob"`` (the zero-inflation probability ``pi``) and ``"zlink"``
        (``logit(pi)``); their ``"response"`` is ``(1 - pi) mu``, on new rows too.
        New levels of a grouping factor get zero random effects when ``allow_new_levels``
        (an error otherwise, as is a new level of a fixed-effect factor); rows of
        ``newdata`` with a missing value in a column the prediction reads are NaN.
        ``newdata`` is checked as :meth:`LmerFit.predict` checks it."""
        type = check_choice(type, "type", PREDICTION_TYPES)
        if self._zero_inflated:
            return predict_zero_inflated(self, newdata, type, include_random, allow_new_levels)
        if type in ("zprob", "zlink"):
            raise ArgumentError(
                f"type={type!r} is for zero-inflated fits (zi=); this fit has no zero inflation"
            )
        if newdata is None:
            include_random = check_bool(include_random, "include_random")
            eta = self._eta(None, include_random, allow_new_levels)
        else:
            rows, complete = self._newdata_rows(newdata, include_random, allow_new_levels)
            eta = np.full(complete.size, np.nan)
            if complete.any():
                eta = self._spread(self._eta(rows, include_random, allow_new_levels), complete)
        if type == "link":
            return eta
        return self.family.response_mean(self.family.link.inverse(eta))

    @property
    def _zero_inflated(self) -> bool:
        return any(name.startswith("zi_") for name in self.family.extra_names)

    def _eta(
        self, newdata: pd.DataFrame | None, include_random: bool, allow_new_levels: bool
    ) -> np.ndarray:
        """The linear predictor for the fitted rows (None) or checked, complete new rows."""
        if newdata is None and include_random:
            return self._solution.mode.eta.copy()  # PIRLS's, the same to rounding
        return self._linear_predictor(newdata, include_random, allow_new_levels)

    # ------------------------------------------------------------------ matrix form
    @property
    def X(self) -> np.ndarray:
        """Fixed-effects model matrix."""
        return self._design.X

    @property
    def Z(self):
        """Random-effects model matrix (sparse, n x q, terms side by side, level-major)."""
        return self._problem.Z

    @property
    def Lambda(self):
        """Relative covariance factor at the estimate (sparse, q x q): ``b = Lambda u``."""
        return self._problem.relative_factor(self._solution.theta)

    # ------------------------------------------------------------------ printing
    def summary(self) -> str:
        """lme4's printed glmer summary as text (what ``print(fit)`` shows)."""
        from mixedmodels.results.glmer_summary import glmer_summary_text

        return glmer_summary_text(self)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.summary())}</pre>"

    def __repr__(self) -> str:
        return f"<GlmerFit {self.formula!r} family={self.family} nobs={self.nobs}>"
