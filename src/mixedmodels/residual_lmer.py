"""``mm.lmer(..., correlation=..., weights=mm.var...)``: parse, design, whiten, optimize.

Called by :func:`mixedmodels.api.lmer` when a correlation structure or a variance
function is given.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mixedmodels.arguments import check_bool
from mixedmodels.core.residual import CompoundSymmetry, ResidualCorrelation
from mixedmodels.core.residual_problem import ResidualProblem
from mixedmodels.core.variance_functions import VarianceFunction
from mixedmodels.design import build_design
from mixedmodels.design.residual_inputs import (
    check_columns,
    extra_columns,
    residual_layout,
    variance_values,
)
from mixedmodels.errors import (
    ArgumentError,
    ConvergenceWarning,
    DataError,
    RowsDroppedWarning,
    SingularFitWarning,
)
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.residual import optimize_residual
from mixedmodels.optim.start import moment_start
from mixedmodels.results.residual_fit import ResidualLmerFit


def check_structures(correlation: object, variance: object) -> None:
    """The two arguments are structures of the right kinds (or None)."""
    if correlation is not None and not isinstance(correlation, ResidualCorrelation):
        raise ArgumentError(
            "correlation must be a structure such as mm.cor.AR1(), mm.cor.CAR1('time'), "
            f"mm.cor.CompSymm(), mm.cor.ARMA(p=1, q=1); got {type(correlation).__name__}"
        )
    if variance is not None and not isinstance(variance, VarianceFunction):
        raise ArgumentError(
            "a variance function must be mm.var.Ident, Power, Exp, Fixed or Combined; got "
            f"{type(variance).__name__}"
        )


def _drop_incomplete(data: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows with a missing value in a column only the structures read are dropped, with a
    count (the user's frame is not modified)."""
    if not columns:
        return data
    missing = data[columns].isna().any(axis=1).to_numpy()
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} row(s) with missing values in "
            f"{', '.join(columns)} (read by the residual structure) dropped",
            RowsDroppedWarning,
            stacklevel=4,
        )
        return data.loc[~missing]
    return data


def _theta_start(rp: ResidualProblem) -> tuple[np.ndarray, np.ndarray | None]:
    """Moment estimates of theta ignoring the structure (lme4's start if unusable)."""
    template = rp.unstructured_problem
    try:
        x0, step = moment_start(template)
    except (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError):
        return template.theta_start(), None
    if not (np.all(np.isfinite(x0)) and np.all(np.isfinite(step)) and np.all(step > 0)):
        return template.theta_start(), None
    # the structure moves theta away from the moment estimates: steps of a fifth of each
    # (BodyWeight with CAR(1): 120 evaluations, against 256 with the moment start's own
    # small steps for vector terms)
    return x0, 0.2 * np.maximum(np.abs(x0), 0.1)


def lmer_residual(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool,
    correlation: ResidualCorrelation | None,
    variance: VarianceFunction | None,
    offset=None,
    contrasts=None,
    data_name: str | None = None,
) -> ResidualLmerFit:
    """Fit a linear mixed model with structured residual covariance (see
    :func:`mixedmodels.api.lmer`)."""
    check_structures(correlation, variance)
    reml = check_bool(reml, "reml")
    if not isinstance(data, pd.DataFrame):
        raise DataError(
            "correlation= and variance functions need the data as a pandas DataFrame, not "
            f"{type(data).__name__}"
        )
    columns = extra_columns(correlation, variance)
    check_columns(data, columns)
    data = _drop_incomplete(data, columns)
    design = build_design(formula, data, offset=offset, contrasts=contrasts)
    if design.n_dropped:
        warnings.warn(
            f"{design.n_dropped} row(s) with missing values dropped",
            RowsDroppedWarning,
            stacklevel=3,
        )
    layout, label = residual_layout(design, correlation)
    values = variance_values(design, variance, layout)
    y = design.y if design.offset is None else design.y - design.offset
    blocks = [t.block for t in design.terms]
    rp = ResidualProblem(blocks, design.X, y, layout, correlation, variance, values, reml, label)
    if isinstance(correlation, CompoundSymmetry):
        correlation.bind_size(layout.max_size)
    u0 = [correlation.start(layout)] if correlation is not None else []
    u0 += [variance.start()] if variance is not None else []
    theta0, theta_step = _theta_start(rp)
    optimum = optimize_residual(rp, np.concatenate([theta0, *u0]), theta_step=theta_step)
    fit = ResidualLmerFit(design, rp, optimum, data_name)
    if not optimum.result.converged:
        warnings.warn(f"optimizer: {optimum.result.message}", ConvergenceWarning, stacklevel=3)
    if fit.is_singular:
        warnings.warn("boundary (singular) fit", SingularFitWarning, stacklevel=3)
    return fit
