"""The result of fitting a linear mixed model: an immutable object with lme4's accessors."""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg  # noqa: F401  (sp.linalg.lsqr)

from mixedmodels.arguments import (
    check_bool,
    check_choice,
    check_int,
    check_level,
    random_generator,
)
from mixedmodels.core.lmm import LmmProblem, Solution
from mixedmodels.design.model import ModelDesign
from mixedmodels.design.validate import new_response
from mixedmodels.errors import ArgumentError
from mixedmodels.optim import OptimizeResult
from mixedmodels.optim.lmm import optimize_problem, solve_at
from mixedmodels.results.base import MixedFit
from mixedmodels.results.parameters import parameter_names, parameter_values
from mixedmodels.results.random_effects import (
    random_part,
    ranef_long,
)
from mixedmodels.results.services import inference

#: sigma below this fraction of the response's standard deviation: the response is fitted
#: exactly (rounding leaves ~1e-16 of it; LAPACK builds differ in whether it is 0)
NEGLIGIBLE_SIGMA = 1e-6


class LmerFit(MixedFit):
    """A fitted linear mixed model (what ``mm.lmer`` returns).

    Attributes mirror lme4's accessors: ``fixef``, ``vcov``, ``sigma``, ``theta``,
    ``varcorr``, ``ranef``, ``coef``, ``fitted``, ``residuals``, ``loglik``, ``aic``,
    ``bic``, ``nobs``, ``ngroups``, ``is_singular``, ``objective``.
    """

    def __init__(
        self,
        design: ModelDesign,
        problem: LmmProblem,
        solution: Solution,
        optimization: OptimizeResult,
        data_name: str | None = None,
    ):
        self._design = design
        self._problem = problem
        self._solution = solution
        self._optimization = optimization
        self.data_name = data_name

    # ------------------------------------------------------------------ refits
    def refit_ml(self) -> LmerFit:
        """The same model refitted by maximum likelihood (a REML fit's ML counterpart);
        the fit itself when it is already ML."""
        if not self.reml:
            return self
        problem = lmm_problem(self._design, reml=False)
        result = optimize_problem(problem)
        return LmerFit(self._design, problem, solve_at(problem, result.x), result, self.data_name)

    def refit(self, y) -> LmerFit:
        """The same model fitted to another response, reusing its structure and starting at
        this fit's theta (lme4's ``refit``).

        Raises
        ------
        DataError
            When ``y`` does not hold one finite number per fitted row.
        """
        y = new_response(y, self._design.n)
        problem = self._problem.with_response(y - self._offset)
        result = optimize_problem(problem, self._solution.theta)
        return LmerFit(
            self._design.with_response(y),
            problem,
            solve_at(problem, result.x),
            result,
            self.data_name,
        )

    @cached_property
    def _simulation_parts(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | float]:
        """``Z Lambda``, the fixed part of the mean and the residual sd per row."""
        w = self._design.weights
        return (
            (self.Z @ self.Lambda).tocsr(),
            self._design.X @ self._solution.beta + self._offset,
            self.sigma if w is None else self.sigma / np.sqrt(w),
        )

    def bootstrap_replicate(self, rng: np.random.Generator, statistic=None) -> np.ndarray:
        """One parametric-bootstrap replicate: a response simulated from the fit, refitted
        from this fit's theta; ``statistic(refit)`` or the refit's :attr:`parameters`."""
        zl, mean, noise_sd = self._simulation_parts
        u = rng.standard_normal(zl.shape[1]) * self.sigma
        y = mean + zl @ u + rng.standard_normal(mean.size) * noise_sd
        problem = self._problem.with_response(y - self._offset)
        result = optimize_problem(problem, self._solution.theta)
        solution = problem.solve(result.x)
        if statistic is None:
            return parameter_values(
                problem.lambdas(solution.theta),
                solution.sigma,
                solution.beta,
                [b.structure for b in problem.blocks],
            )
        refitted = LmerFit(self._design.with_response(y), problem, solution, result, self.data_name)
        return np.asarray(statistic(refitted), dtype=float)

    # ------------------------------------------------------------------ basics
    @property
    def _modes(self) -> list[np.ndarray]:
        return self._solution.b

    @property
    def reml(self) -> bool:
        """True for a REML fit, False for maximum likelihood."""
        return self._problem.reml

    @property
    def problem(self) -> LmmProblem:
        """The objective as a function of theta (lme4's devFunOnly): ``fit.problem.objective``."""
        return self._problem

    @property
    def objective(self) -> float:
        """REML criterion (reml=True) or deviance ``-2 log L`` (reml=False)."""
        return self._solution.objective

    @property
    def sigma(self) -> float:
        """Residual standard deviation (lme4's ``sigma(m)``)."""
        return self._solution.sigma

    def residual_vanishes(self) -> bool:
        """True when the response is fitted exactly: it is constant, or ``sigma`` is below
        :data:`NEGLIGIBLE_SIGMA` times its standard deviation.  The criterion then has no
        minimum (the random effects reproduce the response), so the estimates are
        arbitrary and there is no likelihood to profile.  Needs the rows
        (``rows_available``)."""
        spread = float(np.std(self._design.y))
        return spread == 0 or not self.sigma >= NEGLIGIBLE_SIGMA * spread

    @property
    def converged(self) -> bool:
        """Whether the optimizer reported convergence."""
        return self._optimization.converged

    @property
    def optimizer_message(self) -> str:
        """The optimizer's closing message."""
        return self._optimization.message

    @property
    def n_evaluations(self) -> int:
        """Objective evaluations the optimizer used."""
        return self._optimization.n_evaluations

    # ------------------------------------------------------------------ fixed effects

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effect estimates (lme4's ``vcov(m)``), a DataFrame
        indexed by the fixed-effect names."""
        v = self._solution.sigma**2 * self._solution.vcov_unscaled
        names = self._design.fixed_names
        return pd.DataFrame(v, index=names, columns=names)

    # ------------------------------------------------------------------ inference
    @cached_property
    def _variance_info(self):
        return inference().variance_parameter_info(self._problem, self._solution.theta, self.sigma)

    def fixef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Fixed effects with standard errors, df, t and p-values.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "none"}
            Satterthwaite's df (lmerTest's default), Kenward-Roger's (pbkrtest), or none
            (lme4's plain t values; ``df`` and ``p_value`` NaN).

        Returns
        -------
        DataFrame indexed by the fixef names with columns ``estimate``, ``std_error``,
        ``df``, ``t_value``, ``p_value``.
        """
        from scipy import stats

        if not isinstance(ddf, str):
            raise ArgumentError(
                f"ddf must be 'satterthwaite', 'kenward-roger' or 'none', not {ddf!r}"
            )
        beta = self._solution.beta
        names = self._design.fixed_names
        key = ddf.lower().replace("_", "-")
        if key == "satterthwaite":
            se = np.sqrt(np.diagonal(self.vcov.to_numpy()))
            info = self._variance_info
            df = np.array([inference().contrast_df(info, row) for row in np.eye(len(beta))])
        elif key in ("kenward-roger", "kr"):
            return inference().kenward_roger_table(self)
        elif key == "none":
            se = np.sqrt(np.diagonal(self.vcov.to_numpy()))
            df = np.full(len(beta), np.nan)
        else:
            raise ArgumentError(
                f"ddf must be 'satterthwaite', 'kenward-roger' or 'none', not {ddf!r}"
            )
        t = beta / se
        p = 2.0 * stats.t.sf(np.abs(t), df) if key != "none" else np.full(len(beta), np.nan)
        return pd.DataFrame(
            {"estimate": beta, "std_error": se, "df": df, "t_value": t, "p_value": p}, index=names
        )

    @property
    def parameter_names(self) -> list[str]:
        """Names of sd/cor, sigma and fixed effects in lme4's ``confint`` order."""
        info = self._term_info()
        return parameter_names(
            [i[0] for i in info],
            [i[1] for i in info],
            self._design.fixed_names,
            [b.structure for b in self._problem.blocks],
        )

    @property
    def parameters(self) -> pd.Series:
        """sd/cor of the random effects, sigma and the fixed effects (lme4's order)."""
        values = parameter_values(
            self._problem.lambdas(self._solution.theta),
            self.sigma,
            self._solution.beta,
            [b.structure for b in self._problem.blocks],
        )
        return pd.Series(values, index=self.parameter_names)

    def confint(self, method: str = "profile", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals for sd/cor, sigma and the fixed effects.

        Parameters
        ----------
        method : {"profile", "wald", "boot"}
            Profile likelihood (lme4's default), Wald (fixed effects only; NaN for
            variance parameters, as lme4) or parametric bootstrap percentile intervals
            (``kwargs`` go to :meth:`bootstrap`, e.g. ``nsim``, ``seed``, ``n_jobs``).
        level : float

        Returns
        -------
        DataFrame with columns ``lower``, ``upper`` indexed by parameter name.
        """
        from scipy import stats

        key = check_choice(method, "method", ("profile", "wald", "boot"))
        level = check_level(level)
        if key == "wald":
            z = stats.norm.ppf(0.5 + level / 2)
            params = self.parameters
            se = pd.Series(np.sqrt(np.diagonal(self.vcov.to_numpy())), index=self.fixef.index)
            lower = pd.Series(np.nan, index=params.index)
            upper = lower.copy()
            lower[se.index] = params[se.index] - z * se
            upper[se.index] = params[se.index] + z * se
            return pd.DataFrame({"lower": lower, "upper": upper})
        if key == "boot":
            kwargs.setdefault("nsim", 500)
            return self.bootstrap(**kwargs).confint("percentile", level)
        return inference().profile_confint(self, level)

    def profile(self, level: float = 0.99, points: int = 12) -> pd.DataFrame:
        """Profile traces: zeta against each parameter (lme4's ``profile()``), long form
        with columns ``parameter``, ``value``, ``zeta``; see
        :func:`mixedmodels.plots.plot_profile`."""
        return inference().profile_traces(self, level, points)

    def bootstrap(
        self, nsim: int = 1000, statistic=None, *, seed=None, n_jobs: int = 1, progress: bool = True
    ):
        """Parametric bootstrap (lme4's ``bootMer``); see
        :func:`mixedmodels.inference.bootstrap.bootstrap`."""
        return inference().bootstrap(
            self, nsim, statistic, seed=seed, n_jobs=n_jobs, progress=progress
        )

    def sample_posterior(
        self,
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
    ):
        """The Bayesian view: Gibbs draws from the posterior with the priors you choose.

        Parameters
        ----------
        draws, warmup : int
            Kept draws and warm-up sweeps per chain.
        chains : int
            Chains, each from its own dispersed start (chain 0 at this fit).
        seed : int, optional
            Chain ``c`` uses ``SeedSequence(seed).spawn(chains)[c]``: the draws do not
            depend on ``n_jobs``.
        fixef, sigma, sd, cor : prior or dict, optional
            Priors from :mod:`mixedmodels.priors` per parameter class; a dict names
            fixed effects (``fixef``), grouping factors or ``sd_<coef>|<group>`` (``sd``),
            grouping factors (``cor``).  Defaults (brms's): ``Flat()`` fixed effects,
            ``HalfStudentT(3, max(2.5, mad(y)))`` for sigma and every sd, ``LKJ(1)``.
        n_jobs : int
            Processes running chains (-1: one per core).
        keep_effects : bool
            Keep the random-effect draws (needed for ``to_arviz``'s predictive groups).
        progress : bool
            Progress bar on stderr; Ctrl-C keeps the draws made so far.

        Returns
        -------
        Posterior
            ``.draws`` (indexed by chain and draw, columns named like ``confint``'s rows),
            ``.summary()`` (with R-hat, bulk/tail ESS, MCSE), ``.to_arviz()``.
        """
        from mixedmodels.results.posterior import sample_posterior

        return sample_posterior(
            self,
            draws,
            warmup,
            chains=chains,
            seed=seed,
            fixef=fixef,
            sigma=sigma,
            sd=sd,
            cor=cor,
            n_jobs=n_jobs,
            keep_effects=keep_effects,
            progress=progress,
        )

    # ------------------------------------------------------------------ likelihood
    @property
    def n_parameters(self) -> int:
        """fixed effects + theta + sigma (lme4's logLik df)."""
        return len(self._design.fixed_names) + self._problem.n_theta + 1

    @property
    def loglik(self) -> float:
        """Log-likelihood at the optimum (the REML log-likelihood for a REML fit, as lme4)."""
        return -0.5 * self.objective

    def loglik_at(self, beta=None, theta=None, sigma: float | None = None) -> float:
        """Marginal log-likelihood at given parameters (the fitted ones where None).

        ``log L = -1/2 [log|Sigma| + (y - X beta)' Sigma^-1 (y - X beta) + n log(2 pi)]``
        with ``Sigma = sigma^2 (W^-1 + Z Lambda(theta) Lambda(theta)' Z')``, evaluated
        through the engine with ``y - X beta`` as response and no fixed effects:
        ``log|Sigma| = n log sigma^2 + log|L_Z|^2 - sum log w`` and the quadratic form is
        ``PWRSS / sigma^2``.  At an ML fit's estimates it equals :attr:`loglik`.
        """
        from mixedmodels.core.lmm import LmmProblem

        beta = self._solution.beta if beta is None else np.asarray(beta, dtype=float)
        theta = self._solution.theta if theta is None else np.asarray(theta, dtype=float)
        sigma = self.sigma if sigma is None else float(sigma)
        design = self._design
        r = design.y - self._offset - design.X @ beta
        problem = LmmProblem(
            [t.block for t in design.terms], design.X[:, :0], r, design.weights, reml=False
        )
        factor = problem.factorize(theta)
        n = design.n
        log_det = n * math.log(sigma**2) + factor.log_det_random() - problem.log_weights
        quad = factor.pwrss() / sigma**2
        return -0.5 * (log_det + quad + n * math.log(2 * math.pi))

    @property
    def aic(self) -> float:
        """Akaike's information criterion ``-2 logLik + 2 k`` (k: fixed effects, theta, sigma)."""
        return -2.0 * self.loglik + 2.0 * self.n_parameters

    @property
    def bic(self) -> float:
        """Schwarz's Bayesian information criterion ``-2 logLik + log(n) k``."""
        return -2.0 * self.loglik + math.log(self.nobs) * self.n_parameters

    # ------------------------------------------------------------------ random effects

    @cached_property
    def _conditional_covariances(self) -> list[np.ndarray]:
        return self._problem.conditional_covariances(self._solution.theta, self.sigma)

    def ranef_table(self) -> pd.DataFrame:
        """Long form with conditional sd (lme4's ``as.data.frame(ranef(m, condVar=TRUE))``)."""
        sds = [np.sqrt(np.diagonal(c, axis1=1, axis2=2)) for c in self._conditional_covariances]
        return ranef_long(self._design.terms, self._solution.b, sds)

    # ------------------------------------------------------------------ fitted values
    @cached_property
    def _offset(self) -> np.ndarray:
        off = self._design.offset
        return np.zeros(self.nobs) if off is None else off

    @cached_property
    def fitted(self) -> np.ndarray:
        """Conditional fitted values ``X beta + Z b (+ offset)``."""
        return (
            self._design.X @ self._solution.beta
            + self._problem.random_contribution(self._solution.b)
            + self._offset
        )

    @cached_property
    def residuals(self) -> np.ndarray:
        """Response minus conditional fitted values."""
        return self._design.y - self.fitted

    @property
    def scaled_residuals(self) -> np.ndarray:
        """Pearson residuals divided by sigma (lme4's 'Scaled residuals')."""
        w = self._design.weights
        r = self.residuals if w is None else self.residuals * np.sqrt(w)
        return r / self.sigma

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        allow_new_levels: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ) -> np.ndarray | pd.DataFrame:
        """Predictions ``X beta (+ Z b)`` for the fitted rows or for ``newdata``.

        Parameters
        ----------
        newdata : DataFrame, optional
            New rows; the fitted rows when None.  ``offset(...)`` terms of the formula
            and the column an ``offset=`` argument named are read from them (an offset
            given as values belongs to the fitted rows: an ArgumentError).  Rows with a
            missing value in a column the prediction reads are predicted as NaN (lme4's
            ``na.action = na.pass``).
        include_random : bool
            False gives the marginal ``X beta`` (lme4's ``re.form = NA``).
        allow_new_levels : bool
            Levels not seen in fitting get zero random effects when True; an error
            naming them otherwise.
        interval : {None, "confidence", "prediction"}
            None returns an array.  Otherwise a DataFrame with ``fit``, ``se``, ``lower``,
            ``upper``: "confidence" uses ``x' Var(beta) x``; "prediction" adds, when random
            effects are included, ``z' Var(b | y) z`` for seen levels (``z' Sigma_b z``
            for new ones) and the residual variance ``sigma^2 / w``.
        level : float
            Coverage of the interval (normal quantiles).

        Raises
        ------
        ColumnNotFoundError, NewLevelError, DataError
            ``newdata`` without a column the model reads, with a level the fit did not
            see (of a fixed-effect factor; of a grouping factor unless
            ``allow_new_levels``), not a DataFrame, text in a numeric column.
        """
        if interval is not None:
            interval = check_choice(interval, "interval", ("confidence", "prediction"))
            level = check_level(level)
        if newdata is None:
            include_random = check_bool(include_random, "include_random")
            return self._predict_rows(None, include_random, allow_new_levels, interval, level)
        rows, complete = self._newdata_rows(newdata, include_random, allow_new_levels)
        columns = ["fit", "se", "lower", "upper"]
        if not complete.any():
            nan = np.full(complete.size, np.nan)
            return nan if interval is None else pd.DataFrame({c: nan for c in columns})
        result = self._predict_rows(rows, include_random, allow_new_levels, interval, level)
        if interval is None:
            return self._spread(result, complete)
        return pd.DataFrame({c: self._spread(result[c].to_numpy(), complete) for c in columns})

    def _predict_rows(
        self,
        newdata: pd.DataFrame | None,
        include_random: bool,
        allow_new_levels: bool,
        interval: str | None,
        level: float,
    ) -> np.ndarray | pd.DataFrame:
        """:meth:`predict` for the fitted rows (None) or checked, complete new rows."""
        data_rows = newdata is not None
        X, pred = self._fixed_part(newdata)
        random_var = np.zeros(X.shape[0])
        covs = self._conditional_covariances if interval == "prediction" else None
        term_covs = [info[2] for info in self._term_info()] if covs is not None else None
        for i, codes, z, b in self._included_terms(newdata, include_random, allow_new_levels):
            pred = pred + random_part(codes, z, b)
            if covs is not None:
                unseen = codes < 0
                safe = np.where(unseen, 0, codes)
                seen_var = np.einsum("ni,nij,nj->n", z, covs[i][safe], z)
                new_var = np.einsum("ni,ij,nj->n", z, term_covs[i], z)
                random_var += np.where(unseen, new_var, seen_var)
        if interval is None:
            return pred
        from scipy import stats

        var = np.einsum("ni,ij,nj->n", X, self.vcov.to_numpy(), X)
        if interval == "prediction":
            w = self._design.weights
            resid_var = self.sigma**2 if (data_rows or w is None) else self.sigma**2 / w
            var = var + random_var + resid_var
        se = np.sqrt(var)
        z = stats.norm.ppf(0.5 + level / 2)
        return pd.DataFrame({"fit": pred, "se": se, "lower": pred - z * se, "upper": pred + z * se})

    # ------------------------------------------------------------------ matrix form
    @property
    def X(self) -> np.ndarray:
        """Fixed-effects model matrix (dense, n x p)."""
        return self._design.X.copy()

    @cached_property
    def Z(self) -> sp.csc_matrix:
        """Random-effects model matrix (sparse, n x q), terms in lme4's order.

        Each term contributes ``l * p`` columns, level-major (level ``i``'s ``p`` columns
        together); for an intercept term it is the indicator matrix of the levels.
        """
        return sp.hstack([_term_z(t.block) for t in self._design.terms]).tocsc()

    @cached_property
    def Lambda(self) -> sp.csc_matrix:
        """Relative covariance factor ``Lambda = blockdiag(I_l (x) lambda_k)`` (sparse)."""
        lams = self._problem.lambdas(self._solution.theta)
        parts = [
            sp.kron(sp.identity(t.n_levels), lam)
            for t, lam in zip(self._design.terms, lams, strict=True)
        ]
        return sp.block_diag(parts).tocsc()

    def variance_decomposition(self) -> dict[str, float]:
        """Variance of the fixed part ``var(X beta)``, of the random part (mean over rows of
        ``sum_k z_k' Sigma_k z_k``) and of the residual ``sigma^2`` (Nakagawa et al.)."""
        fixed = float(np.var(self._design.X @ self._solution.beta, ddof=1))
        random = float(sum(self._term_variances()))
        return {"fixed": fixed, "random": random, "residual": self.sigma**2}

    def tidy(self, conf_method: str = "wald", level: float = 0.95) -> pd.DataFrame:
        """All estimates in one table for a paper: effect (fixed/ran_pars), group, term,
        estimate, std_error, df, statistic, p_value and the interval (``conf_method``
        "wald", "profile" or "boot")."""
        ci = self.confint(conf_method, level)
        table = self.fixef_table("satterthwaite")
        rows = []
        for name, value in self.parameters.items():
            if name in table.index:
                r = table.loc[name]
                rows.append(("fixed", None, name, value, r.std_error, r.df, r.t_value, r.p_value))
            else:
                term, _, group = name.partition("|")
                rows.append(
                    ("ran_pars", group or "Residual", term, value, np.nan, np.nan, np.nan, np.nan)
                )
        out = pd.DataFrame(
            rows,
            columns=[
                "effect",
                "group",
                "term",
                "estimate",
                "std_error",
                "df",
                "statistic",
                "p_value",
            ],
        )
        out["conf_low"] = ci["lower"].to_numpy()
        out["conf_high"] = ci["upper"].to_numpy()
        return out

    def marginal_cov(self) -> sp.csr_matrix:
        """Marginal covariance of y: ``Sigma = sigma^2 (W^-1 + Z Lambda Lambda' Z')``.

        Sparse; block diagonal for one grouping factor.
        """
        zl = self.Z @ self.Lambda
        w = self._design.weights
        inv_w = sp.identity(self.nobs) if w is None else sp.diags_array(1.0 / w)
        return (self.sigma**2 * (inv_w + zl @ zl.T)).tocsr()

    def _data_loss(self, fixed_random: np.ndarray) -> float:
        """``||y - offset - X beta - Z b||_W^2`` (see :meth:`penalized_loss`)."""
        r = self._design.y - self._offset - fixed_random
        w = self._design.weights
        return float(r @ r) if w is None else float(r @ (w * r))

    def simulate(self, nsim: int = 1, seed=None) -> np.ndarray:
        """Draw responses from the fitted model (lme4's ``simulate``), shape (n, nsim).

        ``y* = X beta + Z Lambda u + offset + e`` with ``u ~ N(0, sigma^2 I)`` and
        ``e ~ N(0, sigma^2 / w)``.
        """
        nsim = check_int(nsim, "nsim", minimum=1)
        rng = random_generator(seed)
        zl = self.Z @ self.Lambda
        u = rng.standard_normal((zl.shape[1], nsim)) * self.sigma
        e = rng.standard_normal((self.nobs, nsim)) * self.sigma
        w = self._design.weights
        if w is not None:
            e /= np.sqrt(w)[:, None]
        mean = self._design.X @ self._solution.beta + self._offset
        return mean[:, None] + zl @ u + e

    # ------------------------------------------------------------------ printing
    def summary(self, ddf: str = "satterthwaite") -> str:
        """The summary as text: lmerTest's layout with Satterthwaite df and p-values by
        default, Kenward-Roger with ``ddf="kenward-roger"``, lme4's plain layout with
        ``ddf="none"``."""
        from mixedmodels.results.summary import summary_text

        if not isinstance(ddf, str):
            raise ArgumentError(
                f"ddf must be 'satterthwaite', 'kenward-roger' or 'none', not {ddf!r}"
            )
        return summary_text(self, ddf)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """Notebook display: the summary in a preformatted block."""
        import html

        return f"<pre>{html.escape(self.summary())}</pre>"

    def __repr__(self) -> str:
        crit = "REML" if self.reml else "ML"
        return f"<LmerFit {self.formula!r} ({crit}), objective={self.objective:.4f}>"


def _term_z(block) -> sp.csc_matrix:
    n = block.codes.size
    rows = np.repeat(np.arange(n), block.p)
    cols = (block.codes[:, None] * block.p + np.arange(block.p)[None, :]).ravel()
    return sp.csc_matrix((block.z.ravel(), (rows, cols)), shape=(n, block.size))


def lmm_problem(design: ModelDesign, reml: bool) -> LmmProblem:
    """The engine's problem for a design (response minus offset)."""
    y = design.y if design.offset is None else design.y - design.offset
    return LmmProblem([t.block for t in design.terms], design.X, y, design.weights, reml)
