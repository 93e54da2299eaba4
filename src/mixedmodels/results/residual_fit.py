"""A linear mixed model fitted with structured residuals (nlme's ``correlation =`` and
``weights =``).

The fit is the engine's fit of the whitened rows (:mod:`mixedmodels.core.residual_problem`)
at the estimated residual parameters, so the fixed effects, their covariance, sigma, the
random-effect covariances and conditional modes are those of the engine; what depends on
the rows themselves (fitted values, residuals, simulation, the marginal covariance) is
computed here on the original scale, and the likelihood adds ``log|V|``.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mixedmodels.arguments import check_choice, check_int, check_level, random_generator
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.design.validate import new_response
from mixedmodels.errors import ArgumentError, ColumnNotFoundError
from mixedmodels.optim.residual import ResidualOptimum, residual_blas
from mixedmodels.results.fit import LmerFit
from mixedmodels.results.random_effects import is_singular, random_part


class ResidualLmerFit(LmerFit):
    """What ``mm.lmer(..., correlation=..., weights=mm.var...)`` returns.

    Everything :class:`LmerFit` offers, with the residual structure's parameters in
    :attr:`correlation_parameters` and :attr:`variance_parameters`, nlme's blocks in the
    summary, :meth:`residual_cov` / :meth:`marginal_cov` built from the structure, and
    Wald intervals for the structure's parameters on nlme's unconstrained scale.

    Notes
    -----
    :attr:`problem` is the engine's problem of the whitened rows at the estimated residual
    parameters: its ``objective(theta)`` lacks ``log|V|`` and holds those parameters fixed.
    Satterthwaite and Kenward-Roger df propagate the uncertainty of the structure's
    parameters (:mod:`mixedmodels.inference.residual_satterthwaite`,
    :mod:`mixedmodels.inference.residual_kenward_roger`); :meth:`confint`
    ``method="profile"`` and :meth:`profile` profile every parameter, the structure's
    included, over the ML deviance (:mod:`mixedmodels.inference.residual_profile`).
    """

    def __init__(self, design, rp: ResidualProblem, optimum: ResidualOptimum, data_name=None):
        self._optimum = optimum
        super().__init__(design, None, optimum.solution, optimum.result, data_name)
        self._rp = rp
        _, self._u_cor, self._u_var = rp.split(optimum.result.x)

    @property
    def _problem(self):
        """The whitened :class:`~mixedmodels.core.lmm.LmmProblem` at the optimum, built on
        first use (:attr:`ResidualOptimum.problem`): a fit that is only read for its
        estimates never builds it."""
        return self._optimum.problem

    @_problem.setter
    def _problem(self, value) -> None:
        if value is not None:  # (the base class stores the problem it is given)
            raise AttributeError("the whitened problem follows from the optimum")

    @property
    def is_singular(self) -> bool:
        """True when a theta element bounded below by 0 is below 1e-4 (lme4's rule); the
        bounds are the residual problem's (the whitened problem's, without building it)."""
        return is_singular(self._solution.theta, self._rp.theta_lower_bounds())

    # ------------------------------------------------------------------ structure
    @property
    def correlation_structure(self):
        """The fitted :class:`~mixedmodels.core.residual.ResidualCorrelation` (or None)."""
        return self._rp.correlation

    @property
    def variance_function(self):
        """The fitted :class:`~mixedmodels.core.variance_functions.VarianceFunction` (or None)."""
        return self._rp.variance

    @property
    def correlation_parameters(self) -> pd.Series:
        """The correlation structure's parameters as nlme prints them (``Phi``, ``Rho``...)."""
        c = self._rp.correlation
        if c is None:
            return pd.Series([], dtype=float, name="correlation")
        return pd.Series(c.natural(self._u_cor), index=list(c.param_names), name="correlation")

    @property
    def variance_parameters(self) -> pd.Series:
        """The variance function's parameters as nlme prints them (``power``, the ratios
        of ``Ident``'s standard deviations to the reference level's...)."""
        v = self._rp.variance
        if v is None:
            return pd.Series([], dtype=float, name="variance")
        return pd.Series(v.natural(self._u_var), index=v.param_names(), name="variance")

    @property
    def residual_problem(self) -> ResidualProblem:
        """The fitted :class:`~mixedmodels.core.residual_problem.ResidualProblem` (its
        objective in ``(theta, u_cor, u_var)`` includes ``log|V|``)."""
        return self._rp

    @property
    def optimum_parameters(self) -> np.ndarray:
        """The optimum ``(theta, u_cor, u_var)`` of :attr:`residual_problem` (a copy)."""
        return self._optimum.result.x.copy()

    @property
    def outer_iterations(self) -> int:
        """Fixed-point iterations of a fitted-value variance covariate (1 without one)."""
        return self._optimum.outer_iterations

    # ------------------------------------------------------------------ likelihood
    @property
    def objective(self) -> float:
        """REML criterion or deviance, including ``log|V|`` of the residual structure."""
        return self._optimum.objective

    @property
    def n_parameters(self) -> int:
        return super().n_parameters + self._rp.n_cor + self._rp.n_var

    def loglik_at(self, beta=None, theta=None, sigma=None) -> float:
        raise ArgumentError(
            "loglik_at is not available for models with correlation= or variance functions"
        )

    # ------------------------------------------------------------------ inference
    @cached_property
    def _variance_info(self):
        """Satterthwaite's pieces with the structure's parameters among the variance
        parameters (:mod:`mixedmodels.inference.residual_satterthwaite`)."""
        from mixedmodels.results.services import inference

        return inference().variance_parameter_info(self._rp, self._optimum.result.x, self.sigma)

    # ------------------------------------------------------------------ rows
    def _residual_sd(self) -> np.ndarray:
        """The variance function's multipliers in the design's row order."""
        return self._rp.unsort(self._rp.residual_sd(self._u_var))

    @cached_property
    def fitted(self) -> np.ndarray:
        """Conditional fitted values ``X beta + Z b (+ offset)``."""
        out = self._design.X @ self._solution.beta + self._offset
        for t, b in zip(self._design.terms, self._solution.b, strict=True):
            out = out + random_part(t.codes, t.z, b)
        return out

    @property
    def scaled_residuals(self) -> np.ndarray:
        """Pearson residuals: residuals over ``sigma * s_i`` (nlme's ``type = "pearson"``)."""
        return self.residuals / (self.sigma * self._residual_sd())

    @property
    def normalized_residuals(self) -> np.ndarray:
        """Residuals premultiplied by the inverse Cholesky factor of ``sigma^2 V`` within
        each group (nlme's ``type = "normalized"``): uncorrelated with unit variance under
        the model."""
        r = self._rp.layout.order
        white, _ = self._rp.whiten(self._u_cor, self._u_var, self.residuals[r][:, None])
        return self._rp.unsort(white[:, 0]) / self.sigma

    def predict(
        self,
        newdata=None,
        *,
        include_random: bool = True,
        allow_new_levels: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ):
        """As :meth:`LmerFit.predict`; prediction intervals use each row's residual
        variance ``sigma^2 s_i^2`` from the variance function (for new rows, from their
        covariates; a fitted-value covariate uses the prediction itself)."""
        out = super().predict(
            newdata,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            interval=interval,
            level=level,
        )
        if interval != "prediction" or self._rp.variance is None:
            return out
        from scipy import stats

        if newdata is None:
            s = self._residual_sd()
        else:
            s = self._new_residual_sd(newdata, out["fit"].to_numpy())
        var = out["se"].to_numpy() ** 2 + self.sigma**2 * (s**2 - 1.0)
        se = np.sqrt(var)
        z = stats.norm.ppf(0.5 + level / 2)
        fit = out["fit"].to_numpy()
        return pd.DataFrame({"fit": fit, "se": se, "lower": fit - z * se, "upper": fit + z * se})

    def _new_residual_sd(self, newdata: pd.DataFrame, fit: np.ndarray) -> np.ndarray:
        from mixedmodels.core.variance_functions import FITTED

        variance = self._rp.variance
        values: dict[str, np.ndarray] = {FITTED: fit}
        for name in variance.columns():
            if name == FITTED:
                continue
            if name not in newdata.columns:
                raise ColumnNotFoundError(
                    f"newdata has no column {name!r} (read by the variance function)"
                )
            column = newdata[name]
            numeric = pd.api.types.is_numeric_dtype(column)
            values[name] = column.to_numpy(dtype=float) if numeric else column.to_numpy()
        return variance.sd_of(self._u_var, values)

    def _correlation_blocks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group, (original row indices, ``V_g``)."""
        rp = self._rp
        lay = rp.layout
        s = rp.residual_sd(self._u_var)
        out = []
        for start, size in zip(lay.starts, lay.sizes, strict=True):
            rows = slice(start, start + size)
            if rp.correlation is None:
                r = np.eye(size)
            else:
                r = rp.correlation.matrix(self._u_cor, lay.time[rows])
            out.append((lay.order[rows], s[rows, None] * r * s[None, rows]))
        return out

    def residual_cov(self) -> sp.csr_matrix:
        """``sigma^2 V`` (sparse, block diagonal by correlation group, row order of the data)."""
        rows, cols, vals = [], [], []
        for idx, v in self._correlation_blocks():
            rows.append(np.repeat(idx, idx.size))
            cols.append(np.tile(idx, idx.size))
            vals.append(v.ravel())
        n = self.nobs
        out = sp.coo_matrix(
            (self.sigma**2 * np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
        )
        return out.tocsr()

    def marginal_cov(self) -> sp.csr_matrix:
        """Marginal covariance of y: ``Sigma = sigma^2 (V + Z Lambda Lambda' Z')`` with the
        structured ``V`` (model 5b of the tutorial)."""
        zl = self.Z @ self.Lambda
        return (self.residual_cov() + self.sigma**2 * (zl @ zl.T)).tocsr()

    def penalized_loss(self, beta=None, b=None) -> float:
        """``(y - X beta - Z b)' V^-1 (y - X beta - Z b) + ||u||^2`` (see :class:`LmerFit`)."""
        beta = self._solution.beta if beta is None else np.asarray(beta, dtype=float)
        b = self.b if b is None else np.asarray(b, dtype=float)
        r = self._design.y - self._offset - self._design.X @ beta - self.Z @ b
        white, _ = self._rp.whiten(self._u_cor, self._u_var, r[self._rp.layout.order][:, None])
        u = sp.linalg.lsqr(self.Lambda, b, atol=1e-14, btol=1e-14)[0]
        return float(white[:, 0] @ white[:, 0]) + float(u @ u)

    def simulate(self, nsim: int = 1, seed=None) -> np.ndarray:
        """Draw responses: ``X beta + Z Lambda u + offset + e`` with ``e ~ N(0, sigma^2 V)``,
        shape (n, nsim)."""
        nsim = check_int(nsim, "nsim", minimum=1)
        rng = random_generator(seed)
        return self._simulate(rng, nsim)

    def _simulate(self, rng, nsim: int) -> np.ndarray:
        rp = self._rp
        zl = self.Z @ self.Lambda
        u = rng.standard_normal((zl.shape[1], nsim)) * self.sigma
        e = rng.standard_normal((self.nobs, nsim))
        if rp.correlation is not None:
            e = rp.correlation.color(self._u_cor, rp.layout, e)
        e = e * rp.residual_sd(self._u_var)[:, None] * self.sigma
        noise = np.empty_like(e)
        noise[rp.layout.order] = e
        mean = self._design.X @ self._solution.beta + self._offset
        return mean[:, None] + zl @ u + noise

    # ------------------------------------------------------------------ refits
    def _refit(self, y: np.ndarray, reml: bool | None = None) -> ResidualLmerFit:
        """The same structure refitted to response ``y`` (design order), from this optimum."""
        from mixedmodels.optim.residual import optimize_residual

        rp = self._rp
        offset = self._offset
        new = rp.with_response((y - offset)[rp.layout.order], reml)
        optimum = optimize_residual(new, self._optimum.result.x)
        return ResidualLmerFit(self._design.with_response(y), new, optimum, self.data_name)

    def refit(self, y) -> ResidualLmerFit:
        """The same model (structure included) fitted to another response (``mm.refit``).

        Raises
        ------
        DataError
            When ``y`` does not hold one finite number per fitted row.
        """
        return self._refit(new_response(y, self._design.n))

    def refit_ml(self) -> ResidualLmerFit:
        """The same model refitted by maximum likelihood (for likelihood-ratio tests and
        profiles; computed once)."""
        return self._ml_fit

    @cached_property
    def _ml_fit(self) -> ResidualLmerFit:
        return self if not self.reml else self._refit(self._design.y, reml=False)

    def bootstrap_replicate(self, rng: np.random.Generator, statistic=None) -> np.ndarray:
        """One parametric-bootstrap replicate: simulate from the fit (structured errors
        included), refit from this fit's estimates."""
        y = self._simulate(rng, 1)[:, 0]
        refitted = self._refit(y)
        if statistic is None:
            return refitted.parameters.to_numpy()
        return np.asarray(statistic(refitted), dtype=float)

    # ------------------------------------------------------------------ parameters
    @property
    def parameter_names(self) -> list[str]:
        """lme4's names (sd/cor, sigma, fixed effects) followed by the structure's."""
        return (
            super().parameter_names
            + list(self.correlation_parameters.index)
            + list(self.variance_parameters.index)
        )

    @property
    def parameters(self) -> pd.Series:
        """lme4's parameters (sd/cor, sigma, fixed effects) followed by the structure's."""
        from mixedmodels.results.parameters import parameter_values

        base = parameter_values(
            self._problem.lambdas(self._solution.theta),
            self.sigma,
            self._solution.beta,
            [b.structure for b in self._problem.blocks],
        )
        values = np.concatenate(
            [
                base,
                self.correlation_parameters.to_numpy(),
                self.variance_parameters.to_numpy(),
            ]
        )
        return pd.Series(values, index=self.parameter_names)

    @cached_property
    def structure_vcov(self) -> np.ndarray:
        """Approximate covariance of the structure's unconstrained parameters: twice the
        inverse Hessian of the objective over (theta, u) (theta on a bound dropped), its
        (u, u) block — nlme's ``apVar`` for these parameters."""
        from mixedmodels.optim.derivatives import hessian_and_gradient

        rp = self._rp
        x = self._optimum.result.x.copy()
        free = np.ones(x.size, dtype=bool)
        free[: rp.n_theta] = self._solution.theta > 1e-4 * np.maximum(1.0, np.abs(x[: rp.n_theta]))
        free[: rp.n_theta] |= ~np.isfinite(rp.theta_lower_bounds())

        def f(z):
            y = x.copy()
            y[free] = z
            return rp.objective(y)

        steps = 1e-3 * np.maximum(np.abs(x[free]), 0.1)
        with residual_blas(rp):
            hess, _ = hessian_and_gradient(f, x[free], steps)
        cov = 2.0 * np.linalg.inv(hess)
        k = rp.n_cor + rp.n_var
        return cov[-k:, -k:] if k else np.zeros((0, 0))

    def confint(self, method: str = "wald", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals.

        Parameters
        ----------
        method : {"wald", "profile", "boot"}
            Wald: fixed effects from their standard errors, the structure's parameters on
            nlme's unconstrained scale transformed back (as nlme's ``intervals``), NaN
            for the random-effect sd/cor and sigma.  ``"profile"``: every parameter
            from the profile of the ML deviance, as lme4 (a REML fit is refitted by ML),
            the structure's parameters profiled on nlme's unconstrained scale and the
            ends transformed back (:mod:`mixedmodels.inference.residual_profile`).
            ``"boot"``: parametric bootstrap percentile intervals for all (``kwargs`` go
            to :meth:`bootstrap`).
        level : float
        """
        from scipy import stats

        from mixedmodels.results.services import inference

        key = check_choice(method, "method", ("wald", "boot", "profile"))
        level = check_level(level)
        if key == "boot":
            kwargs.setdefault("nsim", 500)
            return self.bootstrap(**kwargs).confint("percentile", level)
        names = list(self.correlation_parameters.index) + list(self.variance_parameters.index)
        if key == "profile":
            table = inference().profile_confint(self, level)
            if names:
                ml = self.refit_ml()
                u = np.concatenate([ml._u_cor, ml._u_var])
                lo = ml._natural_structure(table.loc[names, "lower"].to_numpy(), u)
                hi = ml._natural_structure(table.loc[names, "upper"].to_numpy(), u)
                table.loc[names, "lower"] = np.minimum(lo, hi)
                table.loc[names, "upper"] = np.maximum(lo, hi)
            return table.loc[self.parameter_names]
        z = stats.norm.ppf(0.5 + level / 2)
        params = self.parameters
        lower = pd.Series(np.nan, index=params.index)
        upper = lower.copy()
        se = pd.Series(np.sqrt(np.diagonal(self.vcov.to_numpy())), index=self.fixef.index)
        lower[se.index] = params[se.index] - z * se
        upper[se.index] = params[se.index] + z * se
        if names:
            u = np.concatenate([self._u_cor, self._u_var])
            se = np.sqrt(np.diagonal(self.structure_vcov))
            # nlme's intervals() transforms the vector of lower (upper) ends at once: the
            # same as one by one except for ARMA with p or q above 1, whose coefficients
            # each depend on all the partial autocorrelations
            lo = self._natural_all(u - z * se)
            hi = self._natural_all(u + z * se)
            lower[names] = np.minimum(lo, hi)
            upper[names] = np.maximum(lo, hi)
        return pd.DataFrame({"lower": lower, "upper": upper})

    def _natural_all(self, w: np.ndarray) -> np.ndarray:
        """The structure's natural parameters at unconstrained ``w = (u_cor, u_var)``."""
        rp = self._rp
        with np.errstate(over="ignore", invalid="ignore"):
            return np.concatenate(
                [
                    rp.correlation.natural(w[: rp.n_cor]) if rp.correlation is not None else [],
                    rp.variance.natural(w[rp.n_cor :]) if rp.variance is not None else [],
                ]
            )

    def _natural_structure(self, ends: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Natural parameters of each coordinate of ``ends`` alone, the others at ``u``
        (profile ends: one coordinate moves at a time; for ARMA with p or q above 1 each
        coefficient depends on all coordinates, so its end is that of the moved
        coordinate's with the others at the estimates); infinite ends map to the
        parameter's limits."""
        out = []
        for i in range(ends.size):
            w = u.copy()
            w[i] = ends[i]
            out.append(self._natural_all(w)[i])
        return np.array(out)

    # ------------------------------------------------------------------ printing
    def structure_text(self) -> str:
        """nlme's ``Correlation Structure`` and ``Variance function`` blocks."""
        parts = []
        rp = self._rp
        if rp.correlation is not None:
            parts.append(rp.correlation.describe(self._u_cor).replace("<group>", self._group_label))
        if rp.variance is not None:
            parts.append(rp.variance.describe(self._u_var))
        return "\n".join(parts)

    @property
    def _group_label(self) -> str:
        return self._rp.group_label

    def summary(self, ddf: str = "satterthwaite") -> str:
        """lmerTest's summary with nlme's correlation-structure and variance-function
        blocks after the random effects, and the log-likelihood including ``log|V|``."""
        text = super().summary(ddf)
        marker = "Number of obs:"
        head, sep, tail = text.partition(marker)
        extra = self.structure_text()
        return f"{head}{extra}\n{sep}{tail}" if sep else f"{text}\n{extra}"

    def __repr__(self) -> str:
        crit = "REML" if self.reml else "ML"
        return (
            f"<ResidualLmerFit {self.formula!r} ({crit}), objective={self.objective:.4f}, "
            f"loglik={self.loglik:.4f}>"
        )
