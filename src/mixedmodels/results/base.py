"""What every mixed-model fit (lmer and glmer) exposes the same way."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse.linalg  # noqa: F401  (sp.linalg.lsqr)
from scipy import sparse as sp

from mixedmodels.arguments import check_bool
from mixedmodels.design.model import ModelDesign, formula_offset
from mixedmodels.design.newdata import prepare_newdata
from mixedmodels.design.validate import vector_argument
from mixedmodels.errors import ArgumentError
from mixedmodels.results.random_effects import (
    group_counts,
    is_singular,
    level_coefficients,
    new_data_codes,
    random_part,
    ranef_frames,
)
from mixedmodels.results.smooth import SmoothMethods
from mixedmodels.results.varcorr import term_covariances, unique_group_labels, varcorr_frame


class MixedFit(SmoothMethods):
    """Accessors shared by :class:`LmerFit` and :class:`GlmerFit`.

    Subclasses hold ``_design``, ``_problem`` (with ``lambdas(theta)`` and
    ``theta_lower_bounds()``) and ``_solution`` (with ``theta`` and ``beta``), and give
    ``sigma`` and ``_modes`` (the conditional modes ``b`` per term, shape (levels, p)).
    """

    #: False for fits whose rows were read in chunks and not kept (row-level outputs
    #: then raise a clear error).
    rows_available: bool = True

    _design: ModelDesign
    has_residual_variance: bool = True  # a Residual row in varcorr

    @property
    def formula(self) -> str:
        """The model formula as given."""
        return self._design.formula.text

    @property
    def design(self) -> ModelDesign:
        """The numeric design (y, X, random-effect terms) the fit was made from."""
        return self._design

    @property
    def theta(self) -> np.ndarray:
        """Relative covariance parameters in lme4's order."""
        return self._solution.theta.copy()

    @property
    def nobs(self) -> int:
        """Number of observations used (after dropping rows with missing values)."""
        return self._design.n

    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing values."""
        return self._design.n_dropped

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor (each factor once)."""
        return group_counts(self._design.terms)

    @property
    def is_singular(self) -> bool:
        """True when a theta element bounded below by 0 is below 1e-4 (lme4's rule)."""
        return is_singular(self._solution.theta, self._problem.theta_lower_bounds())

    @cached_property
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates (lme4's ``fixef(m)``), a Series named by the columns of X."""
        return pd.Series(self._solution.beta, index=self._design.fixed_names, name="fixef")

    def _term_info(self) -> list[tuple[str, list[str], np.ndarray]]:
        """(group label, column names, covariance ``sigma^2 lambda lambda'``) per term."""
        labels = unique_group_labels([t.group_name for t in self._design.terms])
        covs = term_covariances(self._problem.lambdas(self._solution.theta), self.sigma)
        return [
            (label, t.column_names, cov)
            for label, t, cov in zip(labels, self._design.terms, covs, strict=True)
        ]

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variances and covariances (lme4's ``as.data.frame(VarCorr(m))``)."""
        info = self._term_info()
        residual = self.sigma if self.has_residual_variance else None
        return varcorr_frame(
            [i[0] for i in info], [i[1] for i in info], [i[2] for i in info], residual
        )

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes: group name -> DataFrame (levels x coefficients)."""
        return ranef_frames(self._design.terms, self._modes)

    def _newdata_rows(
        self, newdata: object, include_random: object, allow_new_levels: object
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The complete rows of ``newdata`` in the fit's encoding and where they are (see
        :func:`mixedmodels.design.newdata.prepare_newdata`); the flags checked."""
        include_random = check_bool(include_random, "include_random")
        check_bool(allow_new_levels, "allow_new_levels")
        return prepare_newdata(self._design, newdata, include_random=include_random)

    def _fixed_part(self, newdata: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """``(X, X beta + offset)`` for the fitted rows (None; the fit's offset) or for
        checked, complete new rows (their ``offset(...)`` terms and the column an
        ``offset=`` argument named, as lme4; one given as values is an ArgumentError)."""
        design = self._design
        if newdata is None:
            mean = design.X @ self._solution.beta
            if design.offset is not None:
                mean = mean + design.offset
            return design.X, mean
        if design.offset_values_given:
            raise ArgumentError(
                "the fit's offset= argument was given as values, which describe the fitted "
                "rows only: give it as a column name (offset='column') or in the formula "
                "(offset(column)) to predict new rows"
            )
        X = design.fixed_matrix(newdata)
        mean = X @ self._solution.beta
        if design.formula.offsets:
            mean = mean + formula_offset(design.formula, newdata)
        if design.offset_column is not None:  # offset="column": the new rows' values
            mean = mean + vector_argument(design.offset_column, newdata, "offset")
        return X, mean

    def _included_terms(
        self, newdata: pd.DataFrame | None, include_random: bool, allow_new_levels: bool
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(term index, codes, z, modes)`` of each random term in the linear predictor:
        every term with ``include_random``, smooth terms always (they are part of the
        mean); codes of new rows from :func:`new_data_codes` (``-1`` for unseen levels)."""
        for i, (t, b) in enumerate(zip(self._design.terms, self._modes, strict=True)):
            if not (include_random or t.always_included):
                continue
            if newdata is None:
                yield i, t.codes, t.z, b
            else:
                codes, z = new_data_codes(t, newdata, allow_new_levels)
                yield i, codes, z, b

    def _linear_predictor(
        self, newdata: pd.DataFrame | None, include_random: bool, allow_new_levels: bool
    ) -> np.ndarray:
        """``X beta + offset + Z b`` (the included terms) for the fitted or new rows."""
        _, eta = self._fixed_part(newdata)
        for _, codes, z, b in self._included_terms(newdata, include_random, allow_new_levels):
            eta = eta + random_part(codes, z, b)
        return eta

    @staticmethod
    def _spread(values: np.ndarray, complete: np.ndarray) -> np.ndarray:
        """Values for the complete rows placed among NaN for the incomplete ones."""
        if complete.all():
            return values
        out = np.full(complete.shape[0], np.nan)
        out[complete] = values
        return out

    @cached_property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: fixed effects plus the level's random effects."""
        return level_coefficients(self.ranef, self._solution.beta, self._design.fixed_names)

    @property
    def dropped_fixed(self) -> list[str]:
        """Fixed-effect columns dropped for rank deficiency."""
        return list(self._design.dropped_fixed)

    @property
    def b(self) -> np.ndarray:
        """Conditional modes stacked in ``Z``'s column order (lme4's ``getME(m, "b")``)."""
        return np.concatenate([bk.ravel() for bk in self._modes])

    def ranef_cov(self) -> dict[str, pd.DataFrame]:
        """Random-effect covariance matrix of each term (lme4's ``VarCorr(m)`` matrices):
        ``sigma^2 lambda lambda'`` (``lambda lambda'`` for GLMM families without a
        dispersion), keyed by the group label :attr:`varcorr` uses."""
        return {
            label: pd.DataFrame(cov, index=cols, columns=cols)
            for label, cols, cov in self._term_info()
        }

    _conditional_covariances: list[np.ndarray]  # Var(b | y) per term, (levels, p, p)

    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Conditional covariances ``Var(b | y)`` of each term's random effects, an array
        (levels, p, p) per term keyed by its group label (lme4's ``attr(ranef(m, condVar =
        TRUE)[[g]], "postVar")`` with the levels first; for glmmTMB's families what its
        ``ranef(condVar = TRUE)`` reports, the estimates' uncertainty included); the square
        roots of their diagonals are :meth:`ranef_table`'s ``condsd``."""
        labels = unique_group_labels([t.group_name for t in self._design.terms])
        return {
            label: cov.copy()
            for label, cov in zip(labels, self._conditional_covariances, strict=True)
        }

    def _parameter_vector(self, value: object, default: np.ndarray, name: str) -> np.ndarray:
        """``value`` as a finite float vector the length of ``default`` (``default`` when
        None)."""
        if value is None:
            return default
        try:
            out = np.asarray(value, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise ArgumentError(f"{name} must be a vector of numbers, not {value!r}") from None
        if out.size != default.size:
            raise ArgumentError(f"{name} must have {default.size} values, got {out.size}")
        if not np.isfinite(out).all():
            raise ArgumentError(f"{name} must be finite, got {out.tolist()}")
        return out

    def _data_loss(self, fixed_random: np.ndarray) -> float:
        """The data part of :meth:`penalized_loss` at ``X beta + Z b`` (without the
        offset)."""
        raise NotImplementedError  # pragma: no cover - every fit class gives its own

    def penalized_loss(self, beta=None, b=None) -> float:
        """The penalized objective of ``beta`` and ``b`` (the fitted values where None):
        the data part at ``eta = X beta + Z b + offset`` plus ``||u||^2`` with ``b = Lambda
        u``, ``u`` by least squares (``b' (Lambda Lambda')^-1 b``; for random intercepts
        ``||b||^2 / theta^2``).  The data part is the weighted residual sum of squares for
        an LMM (whose fitted ``beta`` and ``b`` minimise the whole at the fitted theta) and
        the deviance ``sum_i d_i(y_i, g^-1(eta_i))`` for a GLMM (PIRLS's penalized
        deviance, which the conditional modes minimise over ``b`` at the fitted beta and
        theta)."""
        beta = self._parameter_vector(beta, self._solution.beta, "beta")
        b = self._parameter_vector(b, self.b, "b")
        loss = self._data_loss(self._design.X @ beta + self.Z @ b)
        u = sp.linalg.lsqr(self.Lambda, b, atol=1e-14, btol=1e-14)[0]
        return loss + float(u @ u)

    # ------------------------------------------------------------------ Nakagawa's R2, ICC
    def _term_variances(self) -> list[float]:
        """Each term's random-effect variance averaged over the rows,
        ``mean_i z_i' Sigma_k z_i`` (insight's ``var.random`` summands)."""
        return [
            float(np.mean(np.einsum("ni,ij,nj->n", t.z, cov, t.z)))
            for t, (_, _, cov) in zip(self._design.terms, self._term_info(), strict=True)
        ]

    def variance_decomposition(self) -> dict[str, float]:
        """Nakagawa's variances ``fixed`` (``var(X beta)``), ``random`` and ``residual``."""
        raise NotImplementedError  # pragma: no cover - every fit class gives its own

    def icc(self) -> float:
        """Intraclass correlation (performance's adjusted ICC): ``v_r / (v_r + v_e)`` with
        the variances of :meth:`variance_decomposition`.

        For random intercepts only, ``sum tau_k^2 / (sum tau_k^2 + v_e)``; with one term
        this is ``tau^2 / (tau^2 + v_e)``, the correlation of two observations in the
        same cluster (on the latent scale for a GLMM).  With random slopes the
        random-effect variance depends on the covariates; we use its average over the
        observed rows, ``v_r = mean_i sum_k z_ik' Sigma_k z_ik`` (as performance::icc).
        """
        v = self.variance_decomposition()
        return v["random"] / (v["random"] + v["residual"])

    def r2_nakagawa(self) -> dict[str, float]:
        """Nakagawa's marginal and conditional R-squared (as performance::r2_nakagawa).

        ``R2_m = v_f / (v_f + v_r + v_e)``, ``R2_c = (v_f + v_r) / (v_f + v_r + v_e)``.
        """
        v = self.variance_decomposition()
        total = v["fixed"] + v["random"] + v["residual"]
        return {"marginal": v["fixed"] / total, "conditional": (v["fixed"] + v["random"]) / total}

    def icc_adjusted(self) -> dict[str, float]:
        """Adjusted ICC ``v_r / (v_r + v_e)`` and conditional ICC
        ``v_r / (v_f + v_r + v_e)`` (as performance::icc)."""
        v = self.variance_decomposition()
        total = v["fixed"] + v["random"] + v["residual"]
        return {
            "adjusted": v["random"] / (v["random"] + v["residual"]),
            "conditional": v["random"] / total,
        }
