"""The standard linear model (R's ``lm``), the first step of the tutorial's path.

Ordinary least squares through a QR decomposition: ``X = QR``, ``beta = R^-1 Q'y``,
``sigma^2 = ||y - X beta||^2 / (n - p)``, ``Var(beta) = sigma^2 (R'R)^-1``.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import stats

from mixedmodels.design.model import ModelDesign


class LmFit:
    """A fitted linear model with R's ``summary(lm)`` quantities."""

    def __init__(self, design: ModelDesign, data_name: str | None = None):
        self._design = design
        self.data_name = data_name
        X, y = design.X, design.y
        if design.weights is not None:
            sw = np.sqrt(design.weights)
            X, y = X * sw[:, None], y * sw
        q, r = sla.qr(X, mode="economic")
        self._r = r
        self._beta = sla.solve_triangular(r, q.T @ y)
        self._weighted_residuals = y - X @ self._beta

    @property
    def formula(self) -> str:
        """The model formula as given."""
        return self._design.formula.text

    @property
    def nobs(self) -> int:
        """Number of observations used (after dropping rows with missing values)."""
        return self._design.n

    @property
    def df_residual(self) -> int:
        """Residual degrees of freedom ``n - p``."""
        return self.nobs - len(self._beta)

    @cached_property
    def fixef(self) -> pd.Series:
        """Coefficient estimates (R's ``coef(lm)``)."""
        return pd.Series(self._beta, index=self._design.fixed_names, name="coef")

    @property
    def coef(self) -> pd.Series:
        """Same as ``fixef`` (R's ``coef(lm)``)."""
        return self.fixef

    @property
    def sigma(self) -> float:
        """Residual standard error ``sqrt(RSS / (n - p))``; NaN without residual degrees of
        freedom (as many coefficients as observations, as R)."""
        if self.df_residual <= 0:
            return math.nan
        return math.sqrt(
            float(self._weighted_residuals @ self._weighted_residuals) / self.df_residual
        )

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the coefficients ``sigma^2 (X'X)^-1`` (R's ``vcov(lm)``)."""
        rinv = sla.solve_triangular(self._r, np.eye(self._r.shape[0]))
        names = self._design.fixed_names
        return pd.DataFrame(self.sigma**2 * rinv @ rinv.T, index=names, columns=names)

    @cached_property
    def fitted(self) -> np.ndarray:
        """Fitted values ``X beta``."""
        return self._design.X @ self._beta

    @cached_property
    def residuals(self) -> np.ndarray:
        """Residuals ``y - X beta``."""
        return self._design.y - self.fitted

    def coef_table(self) -> pd.DataFrame:
        """Estimate, standard error, t value and two-sided p-value per coefficient."""
        se = np.sqrt(np.diagonal(self.vcov.to_numpy()))
        t = self._beta / se
        p = 2 * stats.t.sf(np.abs(t), self.df_residual)
        return pd.DataFrame(
            {"estimate": self._beta, "std_error": se, "t_value": t, "p_value": p},
            index=self._design.fixed_names,
        )

    @property
    def _has_intercept(self) -> bool:
        return "(Intercept)" in self._design.fixed_names

    @property
    def r_squared(self) -> float:
        """``1 - RSS / TSS`` (TSS about the mean when there is an intercept)."""
        y = self._design.y
        if self._design.weights is not None:
            w = self._design.weights
            centre = np.average(y, weights=w) if self._has_intercept else 0.0
            tss = float(np.sum(w * (y - centre) ** 2))
        else:
            centre = y.mean() if self._has_intercept else 0.0
            tss = float(np.sum((y - centre) ** 2))
        rss = float(self._weighted_residuals @ self._weighted_residuals)
        return 1.0 - rss / tss if tss > 0 else math.nan

    @property
    def adj_r_squared(self) -> float:
        """Adjusted R-squared, as R's ``summary(lm)`` reports it."""
        n, dfr = self.nobs, self.df_residual
        if dfr <= 0:
            return math.nan
        return 1.0 - (1.0 - self.r_squared) * ((n - int(self._has_intercept)) / dfr)

    @property
    def f_statistic(self) -> tuple[float, int, int, float]:
        """(F, numerator df, denominator df, p-value) against the intercept-only model."""
        num_df = len(self._beta) - int(self._has_intercept)
        r2 = self.r_squared
        if num_df <= 0 or self.df_residual <= 0 or not r2 < 1:
            return math.nan, num_df, self.df_residual, math.nan
        f = (r2 / num_df) / ((1 - r2) / self.df_residual)
        return f, num_df, self.df_residual, float(stats.f.sf(f, num_df, self.df_residual))

    def loglik_at(self, beta=None, sigma: float | None = None) -> float:
        """Gaussian log-likelihood at given ``beta`` and ``sigma`` (the ML estimates if None).

        ``log L = -n/2 log(2 pi sigma^2) - ||y - X beta||^2 / (2 sigma^2)``
        """
        beta = self._beta if beta is None else np.asarray(beta, dtype=float)
        r = self._design.y - self._design.X @ beta
        n = self.nobs
        if sigma is None:
            sigma = math.sqrt(float(r @ r) / n)
        return -0.5 * n * math.log(2 * math.pi * sigma**2) - float(r @ r) / (2 * sigma**2)

    @property
    def loglik(self) -> float:
        """Maximized log-likelihood (R's ``logLik(lm)``)."""
        return self.loglik_at()

    def summary(self) -> str:
        """R's printed ``summary(lm)`` as text (what ``print(fit)`` shows)."""
        from mixedmodels.results.lm_summary import lm_summary_text

        return lm_summary_text(self)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """Notebook display: the summary in a preformatted block."""
        import html

        return f"<pre>{html.escape(self.summary())}</pre>"

    def __repr__(self) -> str:
        return f"<LmFit {self.formula!r}>"
