"""A fitted nonlinear mixed model: estimates, tests, predictions, summary in nlme's layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels.core.nonlinear import NonlinearProblem
from mixedmodels.core.variance_functions import Combined, Ident, VarianceFunction
from mixedmodels.design.grouping import codes_for_levels
from mixedmodels.design.nonlinear import NlmeDesign
from mixedmodels.errors import ArgumentError, DataError, NewLevelError
from mixedmodels.optim.nonlinear import NlmeEstimate


def fixed_df(x: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """nlme's denominator degrees of freedom of each fixed effect (``getFixDF``).

    A column of the linearized fixed-effects design that varies within some group is
    estimated at the residual stratum (``n - m`` minus such columns, plus one when no column
    is constant); one constant within every group at the group stratum (``m`` minus such
    columns); a constant column (an intercept) gets the largest of the two.
    """
    n, p = x.shape
    tol = np.sqrt(np.finfo(float).eps)
    mean_abs = np.mean(np.abs(x), axis=0)
    constant = np.sum(np.abs(x - x.mean(axis=0)), axis=0) < tol * mean_abs
    df_strata = np.array([n_groups, n - n_groups], dtype=float)
    stratum = np.zeros(p, dtype=int)
    for j in range(p):
        if constant[j]:
            continue
        col = x[:, j]
        lo = np.full(n_groups, np.inf)
        hi = np.full(n_groups, -np.inf)
        np.minimum.at(lo, groups, col)
        np.maximum.at(hi, groups, col)
        scale = np.maximum(np.abs(hi), np.abs(lo))
        within = np.any(hi - lo > tol * np.maximum(scale, 1e-300))
        stratum[j] = 1 if within else 0
    not_const = ~constant
    for s in (0, 1):
        df_strata[s] -= np.sum(not_const & (stratum == s))
    if np.all(not_const):
        df_strata[1] += 1
    else:
        df_strata[0] -= 1
    out = np.where(not_const, df_strata[stratum], np.max(df_strata))
    return out


@dataclass
class NlmeFit:
    """A nonlinear mixed model fitted by Lindstrom-Bates alternation (nlme's ``nlme()``).

    Attributes
    ----------
    fixef : Series
        Fixed effects (nlme's names: ``Asym``, or ``Asym.(Intercept)``, ``Asym.VarietyP``
        when a parameter has covariates).
    vcov : DataFrame
        Their covariance (nlme's ``vcov``: sigma^2 (X'V^-1X)^-1 of the linearized model).
    sigma : float
        Residual standard deviation.
    loglik : float
        Log-likelihood (restricted for REML) of the linearized model at convergence, as
        nlme reports it.
    """

    design: NlmeDesign
    problem: NonlinearProblem
    estimate: NlmeEstimate
    method: str
    start: np.ndarray
    data_name: str | None = None
    #: Adaptive Gauss-Hermite nodes per group (``method="Laplace"``; 1: Laplace).
    n_agq: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ estimates
    @property
    def fixef(self) -> pd.Series:
        """Fixed effects, named as nlme names them (``Asym`` or ``Asym.(Intercept)``)."""
        return pd.Series(self.estimate.beta, index=self.design.fixed_names, name="fixef")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects (nlme's ``vcov``: sigma^2 (X'V^-1X)^-1 of the
        linearized model; with ``n_agq > 1`` the fixed effects' block of twice the inverse
        Hessian of the quadrature deviance over fixed effects, theta and sigma)."""
        names = self.design.fixed_names
        return pd.DataFrame(self.estimate.vcov, index=names, columns=names)

    @property
    def std_errors(self) -> pd.Series:
        """``sqrt(diag(vcov))`` (nlme's ``vcov``; the summary table scales ML ones, see
        :meth:`coef_table`)."""
        return pd.Series(np.sqrt(np.diag(self.estimate.vcov)), index=self.design.fixed_names)

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return self.estimate.sigma

    @property
    def loglik(self) -> float:
        """Log-likelihood (restricted for REML) of the linearized model at convergence, as
        nlme reports it."""
        return self.estimate.loglik

    @property
    def n_obs(self) -> int:
        """Number of observations used."""
        return self.problem.n

    @property
    def n_groups(self) -> int:
        """Number of levels of the grouping factor."""
        return self.problem.n_groups

    @property
    def n_params(self) -> int:
        """Parameters counted by logLik's df: fixed effects, covariance parameters, sigma
        and the variance function's parameters."""
        return self.problem.p + self.problem.n_theta + 1 + self.problem.n_variance

    @property
    def aic(self) -> float:
        """Akaike's information criterion ``-2 logLik + 2 k`` (k: ``n_params``)."""
        return -2 * self.loglik + 2 * self.n_params

    @property
    def bic(self) -> float:
        """Schwarz's criterion ``-2 logLik + log(n) k`` (n less the fixed effects for REML, as
        nlme)."""
        n = self.n_obs - (self.problem.p if self.method == "REML" else 0)
        return -2 * self.loglik + np.log(n) * self.n_params

    @property
    def converged(self) -> bool:
        """Whether the Lindstrom-Bates alternation converged."""
        return self.estimate.converged

    @property
    def variance_function(self) -> VarianceFunction | None:
        """The fitted variance function (bound to the data), or None."""
        return None if self.problem.variance is None else self.problem.variance.function

    @property
    def variance_parameters(self) -> pd.Series:
        """The variance function's parameters as nlme prints them (``power``, ``expon``,
        the ratios of ``Ident``'s standard deviations to the reference level's), named as
        :attr:`ResidualLmerFit.variance_parameters` names them; empty without one."""
        v = self.variance_function
        if v is None:
            return pd.Series([], dtype=float, name="variance")
        return pd.Series(v.natural(self.estimate.delta), index=v.param_names(),
                         name="variance")

    @property
    def variance_power(self) -> float | None:
        """The power of a lone ``varPower`` (sd proportional to ``|fitted|^power``); None
        with another or no variance function (see :attr:`variance_parameters`)."""
        params = self.variance_parameters
        if list(params.index) != ["power"]:
            return None
        return float(params.iloc[0])

    def residual_sd(self) -> np.ndarray:
        """Each row's residual standard deviation ``sigma * sd_j`` (``sigma`` without a
        variance function; nlme's ``attr(resid(fit), "std")``)."""
        return self.sigma / self.estimate.weights

    @property
    def random_parameters(self) -> list[str]:
        """The nonlinear parameters that have random effects."""
        return list(self.design.random.parameters)

    @property
    def random_covariance(self) -> pd.DataFrame:
        """Covariance matrix of the random effects, ``sigma^2 Lambda Lambda'``."""
        lam = self.problem.lambda_of(self.estimate.theta)
        cov = self.sigma**2 * lam @ lam.T
        names = self.random_parameters
        return pd.DataFrame(cov, index=names, columns=names)

    @property
    def varcorr(self) -> pd.DataFrame:
        """Standard deviations of the random effects and the residual; correlations of the
        random effects in the columns named after them."""
        cov = self.random_covariance.to_numpy()
        sd = np.sqrt(np.diag(cov))
        names = self.random_parameters
        with np.errstate(invalid="ignore", divide="ignore"):
            cor = cov / np.outer(sd, sd)
        table = pd.DataFrame({"StdDev": np.append(sd, self.sigma)}, index=names + ["Residual"])
        if len(names) > 1:
            for j, name in enumerate(names[:-1]):
                col = np.full(len(names) + 1, np.nan)
                col[j + 1: len(names)] = cor[j + 1:, j]
                table[name] = col
        return table

    @property
    def ranef(self) -> pd.DataFrame:
        """Conditional modes of the random effects, one row per group."""
        return pd.DataFrame(self.estimate.b, index=pd.Index(self.design.levels, name=
                            self.design.random.group), columns=self.random_parameters)

    def coef(self) -> pd.DataFrame:
        """Each group's curve parameters (fixed part at the group's first row plus its
        random effect), nlme's ``coef``."""
        phi = self.problem.phi(self.estimate.beta, self.estimate.b)
        first = np.full(self.n_groups, -1)
        for j in range(self.n_obs - 1, -1, -1):
            first[self.design.groups[j]] = j
        names = list(self.design.model.parameters)
        return pd.DataFrame(phi[first], index=pd.Index(self.design.levels,
                            name=self.design.random.group), columns=names)

    # ----------------------------------------------------------- fitted, residuals
    def fitted(self, level: int = 1) -> np.ndarray:
        """Fitted values: ``level=0`` population (random effects 0), ``level=1`` group."""
        self._check_level(level)
        if level == 1:
            return self.problem.fitted(self.estimate.beta, self.estimate.b)
        return self.problem.fitted(self.estimate.beta, np.zeros_like(self.estimate.b))

    def residuals(self, level: int = 1, kind: str = "response") -> np.ndarray:
        """Response residuals, or ``kind="pearson"`` standardized by each row's residual
        sd ``sigma * sd_j`` (:meth:`residual_sd`), or ``kind="normalized"`` (nlme's: the
        Pearson residuals whitened by the residual correlation; without a correlation
        structure the same as ``"pearson"``)."""
        r = self.design.y - self.fitted(level)
        if kind == "response":
            return r
        if kind in ("pearson", "normalized"):
            return r / self.residual_sd()
        raise ArgumentError(
            f"kind must be 'response', 'pearson' or 'normalized', got {kind!r}"
        )

    @staticmethod
    def _check_level(level: int) -> None:
        if level not in (0, 1):
            raise ArgumentError(f"level must be 0 (population) or 1 (group), got {level!r}")

    # ------------------------------------------------------------------- predict
    def predict(self, newdata: pd.DataFrame | None = None, level: int = 1) -> np.ndarray:
        """Predictions on new data at the population (``level=0``) or group level
        (``level=1``; the grouping column must name fitted groups)."""
        self._check_level(level)
        if newdata is None:
            return self.fitted(level)
        if not isinstance(newdata, pd.DataFrame):
            raise ArgumentError("newdata must be a pandas DataFrame")
        design = self.design
        cov = design.model.covariate_values(newdata)
        matrices = design.new_fixed_matrices(newdata)
        n = len(newdata)
        phi = np.zeros((n, len(design.model.parameters)))
        for k, (matrix, sl) in enumerate(zip(matrices, self.problem.slices, strict=True)):
            phi[:, design.function_index[k]] += matrix @ self.estimate.beta[sl]
        if level == 1:
            group = design.random.group
            if group not in newdata.columns:
                raise DataError(f"group-level predictions need the grouping column {group!r}")
            codes = codes_for_levels(newdata, (group,), design.levels)
            if np.any(codes < 0):
                bad = newdata[group].to_numpy()[codes < 0]
                raise NewLevelError(
                    f"{bad.size} row(s) of newdata have a level of grouping factor {group!r} "
                    f"the fit did not see (first: '{bad[0]}'); predict them with level=0"
                )
            for r, col in enumerate(design.random_index):
                phi[:, col] += self.estimate.b[codes, r]
        f, _ = design.model(phi, cov, gradient=False)
        return f

    # ------------------------------------------------------------------ simulate
    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """``nsim`` new response vectors ``(n, nsim)`` from the fitted model: new random
        effects ``N(0, Psi)``, new errors ``N(0, sigma^2 sd_j^2)`` with ``sd_j`` the variance
        function's multipliers (of the simulated group-level fitted values for a
        fitted-value covariate)."""
        if not isinstance(nsim, int | np.integer) or nsim < 1:
            raise ArgumentError(f"nsim must be a positive integer, got {nsim!r}")
        rng = np.random.default_rng(seed)
        lam = self.problem.lambda_of(self.estimate.theta)
        out = np.empty((self.n_obs, nsim))
        for k in range(nsim):
            u = rng.standard_normal((self.n_groups, self.problem.q)) * self.sigma
            b = u @ lam.T
            f = self.problem.fitted(self.estimate.beta, b)
            s = self.problem.row_weights(f, self.estimate.delta)
            s = 1.0 if s is None else s
            out[:, k] = f + rng.standard_normal(self.n_obs) * self.sigma / s
        return out

    # -------------------------------------------------------------------- tests
    @property
    def df(self) -> pd.Series:
        """nlme's denominator degrees of freedom of the fixed effects."""
        if "df" not in self._cache:
            lin = self.problem.linearize(self.estimate.beta, self.estimate.b)
            self._cache["df"] = fixed_df(lin.x, self.design.groups, self.n_groups)
        return pd.Series(self._cache["df"], index=self.design.fixed_names)

    def coef_table(self) -> pd.DataFrame:
        """nlme's summary table: Value, Std.Error, DF, t-value, p-value.  As nlme's
        ``summary`` does, ML standard errors are scaled by ``sqrt(n / (n - p))``."""
        se = self.std_errors.to_numpy()
        if self.method == "ML":
            se = se * np.sqrt(self.n_obs / (self.n_obs - self.problem.p))
        value = self.estimate.beta
        df = self.df.to_numpy()
        t = value / se
        p = 2 * stats.t.sf(np.abs(t), df)
        return pd.DataFrame({"Value": value, "Std.Error": se, "DF": df, "t-value": t,
                             "p-value": p}, index=self.design.fixed_names)

    def anova(self, *others: NlmeFit) -> pd.DataFrame:
        """Likelihood-ratio tests between nested fits, in nlme's layout (Model, df, AIC,
        BIC, logLik, Test, L.Ratio, p-value)."""
        return anova_nlme(self, *others)

    # ------------------------------------------------------------------- summary
    def summary(self) -> str:
        """The fit in nlme's ``summary`` layout."""
        return format_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (f"<NlmeFit {self.design.response} ~ {self.design.model.text}: "
                f"logLik {self.loglik:.4f}, {self.n_obs} obs, {self.n_groups} groups>")


def anova_nlme(*fits: NlmeFit) -> pd.DataFrame:
    """Likelihood-ratio table of nested nonlinear mixed models (nlme's ``anova``)."""
    if len(fits) < 2:
        raise ArgumentError("anova of nonlinear mixed models needs at least two fits")
    n = fits[0].n_obs
    for f in fits:
        if not isinstance(f, NlmeFit):
            raise ArgumentError("anova compares NlmeFit objects")
        if f.n_obs != n or not np.array_equal(f.design.y, fits[0].design.y):
            raise DataError("the models were not fitted to the same data")
        if f.method != fits[0].method:
            raise ArgumentError("the models were fitted by different methods")
        if f.n_agq != fits[0].n_agq:
            raise ArgumentError(
                "the models' likelihoods use different numbers of quadrature nodes (n_agq "
                f"{fits[0].n_agq} and {f.n_agq})"
            )
    if fits[0].method == "REML":
        base = fits[0].fixef.index
        for f in fits[1:]:
            if not f.fixef.index.equals(base):
                raise ArgumentError("REML fits with different fixed effects cannot be compared")
    rows = []
    for i, f in enumerate(fits):
        row = {"Model": i + 1, "df": f.n_params, "AIC": f.aic, "BIC": f.bic,
               "logLik": f.loglik, "Test": "", "L.Ratio": np.nan, "p-value": np.nan}
        if i > 0:
            prev = fits[i - 1]
            ratio = 2 * abs(f.loglik - prev.loglik)
            ddf = abs(f.n_params - prev.n_params)
            row["Test"] = f"{i} vs {i + 1}"
            row["L.Ratio"] = ratio
            row["p-value"] = stats.chi2.sf(ratio, ddf) if ddf > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows, index=[f"fit{i + 1}" for i in range(len(fits))])


# -------------------------------------------------------------------- summary text


def _fmt(values, digits: int = 7) -> list[str]:
    return [f"{v:.{digits}g}" for v in values]


def _table(rows: list[str], columns: list[str], cells: list[list[str]]) -> str:
    width0 = max(len(r) for r in rows)
    widths = [max(len(c), *(len(cells[i][j]) for i in range(len(rows))))
              for j, c in enumerate(columns)]
    lines = [" " * width0 + "".join(" " + c.rjust(w) for c, w in zip(columns, widths,
                                                                     strict=True))]
    for r, row in zip(rows, cells, strict=True):
        lines.append(r.ljust(width0) + "".join(" " + v.rjust(w) for v, w in zip(row, widths,
                                                                             strict=True)))
    return "\n".join(lines)


def _pvalue(p: float) -> str:
    """As nlme prints it: rounded to 4 decimals."""
    text = f"{p:.4f}".rstrip("0").rstrip(".")
    return text if text else "0"


def format_summary(fit: NlmeFit) -> str:
    method = {"ML": "maximum likelihood", "REML": "REML",
              "Laplace": "Laplace approximation (lme4's nlmer)"}[fit.method]
    if fit.n_agq > 1:  # as glmer labels it
        method = f"maximum likelihood (Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.n_agq})"
    d = fit.design
    out = [f"Nonlinear mixed-effects model fit by {method}",
           f"  Model: {d.response} ~ {d.model.text} "]
    if fit.data_name:
        out.append(f"  Data: {fit.data_name} ")
    out.append(_table(["  "], ["AIC", "BIC", "logLik"],
                      [_fmt([fit.aic, fit.bic, fit.loglik])]))
    out.append("")
    out.append("Random effects:")
    spec = d.random
    formula = f"{' + '.join(spec.parameters)} ~ 1 | {spec.group}"
    out.append(f" Formula: {formula}")
    names = list(spec.parameters)
    vc = fit.varcorr
    if len(names) == 1:
        out.append(_table(["StdDev:"], names + ["Residual"],
                          [_fmt(vc["StdDev"].to_numpy())]))
    else:
        structure = ("Diagonal" if spec.diagonal
                     else "General positive-definite, Log-Cholesky parametrization")
        out.append(f" Structure: {structure}")
        cols = ["StdDev"] + ([] if spec.diagonal else ["Corr"] + names[1:-1])
        cells = []
        for i in range(len(names) + 1):
            row = _fmt([vc["StdDev"].iloc[i]])
            if not spec.diagonal:
                cor = [vc[nm].iloc[i] if nm in vc else np.nan for nm in names[:-1]]
                row += [("" if not np.isfinite(c) else f"{c:.3f}") for c in cor]
            cells.append(row)
        if not spec.diagonal:
            cols = ["StdDev", "Corr"] + [" " * 1] * (len(names) - 2)
        out.append(_table(names + ["Residual"], cols, cells))
    out.append("")
    if fit.variance_function is not None:
        out += variance_block(fit.variance_function, fit.estimate.delta)
    by_rhs: dict[str, list[str]] = {}
    for par in d.parameters:
        by_rhs.setdefault(par.rhs, []).append(par.name)
    fixed_text = "; ".join(f"{' + '.join(ps)} ~ {rhs}" for rhs, ps in by_rhs.items())
    out.append(f"Fixed effects:  {fixed_text} ")
    table = fit.coef_table()
    cells = []
    for _, row in table.iterrows():
        cells.append([f"{row['Value']:.7g}", f"{row['Std.Error']:.7g}", f"{int(row['DF'])}",
                      f"{row['t-value']:.7g}", _pvalue(row["p-value"])])
    out.append(_table(list(table.index), ["Value", "Std.Error", "DF", "t-value", "p-value"],
                      cells))
    se = np.sqrt(np.diag(fit.estimate.vcov))
    cor = fit.estimate.vcov / np.outer(se, se)
    names_f = list(table.index)
    if len(names_f) > 1:
        out.append(" Correlation: ")
        cells = [[f"{cor[i, j]:.3f}" if j < i else "" for j in range(len(names_f) - 1)]
                 for i in range(1, len(names_f))]
        out.append(_table(names_f[1:], names_f[:-1], cells))
    out.append("")
    out.append("Standardized Within-Group Residuals:")
    q = np.quantile(fit.residuals(1, "pearson"), [0, 0.25, 0.5, 0.75, 1])
    out.append(_table([""], ["Min", "Q1", "Med", "Q3", "Max"], [_fmt(q, 8)]))
    out.append("")
    out.append(f"Number of Observations: {fit.n_obs}")
    out.append(f"Number of Groups: {fit.n_groups} ")
    return "\n".join(out)


# ----------------------------------------------------------- the variance function block


def variance_block(function: VarianceFunction, delta: np.ndarray) -> list[str]:
    """nlme's ``Variance function:`` block of ``print(summary(fit))`` (``Combination of
    variance functions:`` for a ``Combined``)."""
    header = ("Combination of variance functions: " if isinstance(function, Combined)
              else "Variance function:")
    return [header] + _variance_lines(function, np.asarray(delta, dtype=float))


@singledispatch
def _variance_lines(function: VarianceFunction, delta: np.ndarray) -> list[str]:
    """Structure, formula and parameter lines of one variance function, as nlme's
    ``print.summary.varFunc`` writes them.  An adapter of this module over the seam's
    functions (their ``describe`` is the lmer summary's layout): a new kind whose formula
    or printed parameters differ registers its own."""
    formula = "~fitted(.)" if function.uses_fitted else f"~{function.covariate}"
    names = function.param_names()
    return _structure_lines(function.label, formula, names, function.natural(delta))


@_variance_lines.register
def _(function: Ident, delta: np.ndarray) -> list[str]:
    # nlme prints every stratum, the reference level's ratio 1 first
    values = np.concatenate([[1.0], function.natural(delta)])
    return _structure_lines(function.label, f"~1 | {function.covariate}", function.levels,
                            values)


@_variance_lines.register
def _(function: Combined, delta: np.ndarray) -> list[str]:
    out: list[str] = []
    start = 0
    for part in function.parts:
        k = part.n_params()
        out += _variance_lines(part, delta[start:start + k])
        start += k
    return out


def _structure_lines(label: str, formula: str, names: list[str], values) -> list[str]:
    lines = [f" Structure: {label}", f" Formula: {formula} "]
    if len(names):
        lines.append(" Parameter estimates:")
        lines += r_named_vector(list(names), np.asarray(values, dtype=float))
    return lines


def _r_significant(x: float, digits: int) -> tuple[int, int]:
    """R's formatReal for one value: (digits left of the point, digits right of it) of
    ``x`` shown with ``digits`` significant digits, trailing zeros dropped."""
    if x == 0 or not np.isfinite(x):
        return 1, 0
    text = f"{abs(x):.{digits - 1}e}"
    mantissa, exponent = text.split("e")
    e = int(exponent)
    significant = len(mantissa.replace(".", "").rstrip("0")) or 1
    return max(e + 1, 1), max(significant - 1 - e, 0)


def r_named_vector(names: list[str], values: np.ndarray, digits: int = 7,
                   width: int = 80) -> list[str]:
    """A named numeric vector as R's ``print`` writes it: the values in fixed notation with
    the decimals the most demanding one needs for ``digits`` significant digits, each
    column as wide as its name or value, right-justified, a space after each, lines of at
    most ``width`` characters."""
    decimals = max((_r_significant(float(v), digits)[1] for v in values), default=0)
    cells = [f"{v:.{decimals}f}" for v in values]
    w = max([len(c) for c in cells] + [len(n) for n in names])
    per_line = max(1, width // (w + 1))
    out = []
    for i in range(0, len(cells), per_line):
        out.append("".join(n.rjust(w) + " " for n in names[i:i + per_line]))
        out.append("".join(c.rjust(w) + " " for c in cells[i:i + per_line]))
    return out
