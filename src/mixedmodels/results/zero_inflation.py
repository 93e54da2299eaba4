"""The zero-inflation part of a fit (glmmTMB's ``ziformula``) on new rows: its model matrix
in the fit's encoding and the predictions that read it (glmmTMB's ``predict`` types
``"response"``, ``"conditional"``, ``"zprob"`` and ``"zlink"``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from mixedmodels.design.matrices import MatrixBuilder
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.design.validate import check_frame, missing_mask, plain_columns
from mixedmodels.errors import ArgumentError, ColumnNotFoundError

#: what ``predict(type=...)`` of a GLMM returns (glmmTMB's names for the last three)
PREDICTION_TYPES = ("link", "response", "conditional", "zprob", "zlink")


class ZeroInflationModel:
    """The zero-inflation formula with the encoding learnt from the fitted rows.

    Parameters
    ----------
    formula : str
        The one-sided formula as given (``"~mined"``).
    builder : MatrixBuilder
        The builder that made the fitted rows' matrix (its factor levels and contrasts are
        the ones new rows are encoded with).
    """

    def __init__(self, formula: str, builder: MatrixBuilder):
        self.formula = formula
        self.builder = builder
        self.columns = variables_of(builder.rhs)

    def matrix(self, newdata: object) -> tuple[np.ndarray, np.ndarray]:
        """The model matrix of the complete rows of ``newdata`` and which rows those are
        (a row with a missing value in a column the formula reads is not complete).

        Raises
        ------
        ColumnNotFoundError
            ``newdata`` lacks a column the zero-inflation formula reads.
        NewLevelError
            A factor level the fit did not see.
        """
        frame = check_frame(newdata, "newdata")
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise ColumnNotFoundError(
                f"newdata lacks column(s) {', '.join(repr(a) for a in absent)}, which the "
                f"zero-inflation formula {self.formula!r} reads"
            )
        complete = np.ones(len(frame), dtype=bool)
        for column in self.columns:
            complete &= ~missing_mask(frame[column])
        rows = plain_columns(frame.loc[complete, self.columns], self.columns)
        if not self.columns:  # "~1": one row per new row
            rows = pd.DataFrame(index=frame.index[complete])
        return np.asarray(self.builder.build(rows), dtype=float), complete


def zero_inflated_prediction(
    kind: str, eta: np.ndarray, link_inverse, zi_linear: np.ndarray
) -> np.ndarray:
    """glmmTMB's prediction of type ``kind`` from the count model's linear predictor
    ``eta`` and the zero-inflation linear predictor ``logit(pi)``: ``"link"`` eta,
    ``"conditional"`` the count mean ``mu``, ``"zprob"`` ``pi``, ``"zlink"`` ``logit(pi)``,
    ``"response"`` the mixture's mean ``(1 - pi) mu``."""
    if kind == "link":
        return eta
    if kind == "zlink":
        return zi_linear
    pi = special.expit(zi_linear)
    if kind == "zprob":
        return pi
    mu = link_inverse(eta)
    return mu if kind == "conditional" else (1.0 - pi) * mu


def predict_zero_inflated(fit, newdata, kind: str, include_random: bool, allow_new_levels: bool):
    """Predictions of a zero-inflated glmer fit (see :meth:`GlmerFit.predict`); rows
    incomplete in either formula's columns are NaN."""
    family = fit.family
    gamma = family.gamma
    if newdata is None:
        eta = fit._eta(None, include_random, allow_new_levels)
        return zero_inflated_prediction(kind, eta, family.link.inverse, family.X_zi @ gamma)
    model = fit.zero_inflation_model
    if model is None:
        raise ArgumentError(
            "this zero-inflated fit does not carry its zero-inflation formula's encoding; "
            "predict on the fitted rows (newdata=None)"
        )
    X_zi, complete_zi = model.matrix(newdata)
    rows, complete = fit._newdata_rows(newdata, include_random, allow_new_levels)
    out = np.full(complete.size, np.nan)
    both = complete & complete_zi
    if not both.any():
        return out
    eta = fit._eta(rows.loc[both[complete]], include_random, allow_new_levels)
    zi_linear = X_zi[both[complete_zi]] @ gamma
    out[both] = zero_inflated_prediction(kind, eta, family.link.inverse, zi_linear)
    return out
