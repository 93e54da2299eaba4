"""Estimated marginal means, contrasts and slopes (R's emmeans) for lmer and glmer fits.

``emmeans(fit, "treatment")`` averages the model's predictions over the reference grid
(:mod:`mixedmodels.inference.emm_grid`): every combination of factor levels, covariates at
their means.  Each mean is a linear function ``l' beta`` with

* ``SE = sqrt(l' V l)``; for lmer with Kenward-Roger df ``V`` is the adjusted covariance
  ``Phi_A`` (pbkrtest's ``vcovAdj``), otherwise ``vcov(beta)``;
* df by Kenward-Roger (pbkrtest's ``Lb_ddf``, emmeans' default for lmer),
  Satterthwaite (lmerTest) or none (asymptotic, z); glmer is asymptotic;
* on ``type="response"`` the link is inverted: estimate ``g^-1(eta)``, ``SE =
  |d mu / d eta| SE_eta`` (delta method), interval ends back-transformed, tests on the
  link scale.  Contrasts of log or logit means become ratios or odds ratios.

Results are :class:`EmmeansTable` objects: pandas DataFrames with emmeans' column names
that also know how to make contrasts (``.contrast("pairwise")``, ``.pairs()``) and to
summarize again with other options (``.summary(infer=(True, True), adjust="holm")``).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mixedmodels.errors import ArgumentError
from mixedmodels.inference.emm_adjust import adjusted_p, check_adjust, critical_values, families
from mixedmodels.inference.emm_contrasts import (
    contrast_family,
    is_true_contrast,
    level_names,
)
from mixedmodels.inference.emm_grid import (
    Averaged,
    ReferenceGrid,
    average_grid,
    estimable,
    reference_grid,
)

_RESPONSE_LABELS = {"binomial": "prob", "poisson": "rate"}  # emmeans' .std.link.labels
_RATIO_LABELS = {"logit": "odds.ratio", "log": "ratio", "log2": "ratio", "log10": "ratio"}
_RATIO_BASES = {"log2": 2.0, "log10": 10.0}  # others: e
_DF_METHODS = {
    "kenward-roger": "kenward-roger",
    "kr": "kenward-roger",
    "satterthwaite": "satterthwaite",
    "asymptotic": "asymptotic",
}


# ----------------------------------------------------------------------------- inference
@dataclass
class Inference:
    """What the summaries need from a fit: estimates, their covariance, a df rule and the
    scale (``link`` None for an identity scale)."""

    beta: np.ndarray
    vcov: np.ndarray
    df: Callable[[np.ndarray], float]
    method: str
    link: object | None = None
    response_label: str = "response"


class _RatioScale:
    """``base ** x``: the back-transformation of log and log-odds differences (base e, or
    2 and 10 for a log2 or log10 response)."""

    name = "log ratio"

    def __init__(self, base: float = math.e):
        self.log_base = math.log(base)

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        return np.exp(eta * self.log_base)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        return np.exp(eta * self.log_base) * self.log_base


@dataclass(frozen=True)
class ResponseTransform:
    """A transformation of an lmer response that emmeans reads from the formula's left side
    (``log(y) ~ ...``): ``type="response"`` back-transforms the means with ``inverse`` and
    their SEs with ``|d inverse / d eta|`` (the delta method), as emmeans does."""

    name: str
    inverse: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]


_LOG2, _LOG10 = math.log(2.0), math.log(10.0)
_RESPONSE_TRANSFORMS = {
    t.name: t
    for t in (
        ResponseTransform("log", np.exp, np.exp),
        ResponseTransform("log2", np.exp2, lambda e: np.exp2(e) * _LOG2),
        ResponseTransform("log10", lambda e: 10.0**e, lambda e: 10.0**e * _LOG10),
        ResponseTransform("log1p", np.expm1, np.exp),
        ResponseTransform("sqrt", np.square, lambda e: 2.0 * e),
    )
}
_NAME = r"(?:[A-Za-z.][A-Za-z0-9._]*|`[^`]+`)"
_TRANSFORMED = re.compile(rf"\s*([A-Za-z0-9_.]+)\s*\(\s*{_NAME}\s*\)\s*")


def response_transform(response: str | None) -> ResponseTransform | None:
    """The transformation of ``f(y)`` on the left of an lmer formula, if emmeans would
    back-transform it: ``log``, ``log2``, ``log10``, ``log1p`` or ``sqrt`` of one variable
    (matched as text; nothing is evaluated).  None for anything else."""
    match = _TRANSFORMED.fullmatch(response or "")
    return _RESPONSE_TRANSFORMS.get(match.group(1)) if match else None


def _lmer_inference(fit, lmer_df: str | None) -> Inference:
    method = _DF_METHODS.get((lmer_df or "kenward-roger").lower().replace("_", "-"))
    if method is None:
        raise ArgumentError(
            f"lmer_df must be 'kenward-roger', 'satterthwaite' or 'asymptotic'; got {lmer_df!r}"
        )
    beta = fit.fixef.to_numpy()
    transform = response_transform(fit.design.formula.response)
    if method == "kenward-roger":
        from mixedmodels.inference.kenward_roger import (
            kenward_roger_pieces,
            linear_combination_df,
        )

        pieces = kenward_roger_pieces(fit)
        return Inference(
            beta,
            pieces["phi_a"],
            lambda ell: linear_combination_df(pieces, ell),
            method,
            link=transform,
        )
    vcov = fit.vcov.to_numpy()
    if method == "satterthwaite":
        from mixedmodels.inference.satterthwaite import contrast_df

        info = fit._variance_info  # the fit's own: residual structures' parameters included
        return Inference(beta, vcov, lambda ell: contrast_df(info, ell), method, link=transform)
    return Inference(beta, vcov, lambda ell: math.inf, method, link=transform)


def _glmer_inference(fit, lmer_df: str | None) -> Inference:
    if lmer_df is not None and lmer_df.lower() != "asymptotic":
        raise ArgumentError(
            f"a glmer fit's inference is asymptotic; lmer_df={lmer_df!r} applies to lmer"
        )
    family = fit.family
    return Inference(
        fit.fixef.to_numpy(),
        fit.vcov.to_numpy(),
        lambda ell: math.inf,
        "asymptotic",
        link=None if family.link.name == "identity" else family.link,
        response_label=_RESPONSE_LABELS.get(family.name, "response"),
    )


def _inference_builders() -> dict[type, Callable[..., Inference]]:
    from mixedmodels.results.fit import LmerFit
    from mixedmodels.results.glmer_fit import GlmerFit

    return {LmerFit: _lmer_inference, GlmerFit: _glmer_inference}


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference(fit, lmer_df: str | None) -> Inference:
    """The fit's inference for a df method, computed once per fit (fits are immutable)."""
    builders = _inference_builders()
    for cls in type(fit).__mro__:
        if cls in builders:
            per_fit = _CACHE.setdefault(fit, {})
            key = (lmer_df or "").lower()
            if key not in per_fit:
                per_fit[key] = builders[cls](fit, lmer_df)
            return per_fit[key]
    raise ArgumentError(f"emmeans needs an lmer or glmer fit, got {type(fit).__name__}")


# --------------------------------------------------------------------------------- table
@dataclass
class _State:
    """Linear functions of a table and everything its summaries need."""

    labels: pd.DataFrame  # label columns as shown (numbers or categoricals)
    texts: pd.DataFrame  # the same as strings (for contrast names)
    numeric: frozenset[str]  # label columns whose values all read as numbers
    full: np.ndarray  # rows on the full model matrix columns (estimability)
    keep: np.ndarray
    basis: np.ndarray | None
    offset: np.ndarray
    by: list[str]
    by_rows: list[np.ndarray]
    est_name: str
    est_type: str
    fam_size: int
    adjust: str
    infer: tuple[bool, bool]
    level: float
    type: str
    link: object | None
    inv_label: str | None
    inference: Inference
    averaged_over: list[str]
    estimate: np.ndarray | None = None
    se: np.ndarray | None = None
    df: np.ndarray | None = None

    @property
    def linfct(self) -> np.ndarray:
        return self.full[:, self.keep]

    def compute(self) -> _State:
        ok = estimable(self.full, self.basis) & np.all(np.isfinite(self.full), axis=1)
        L = np.where(ok[:, None], np.nan_to_num(self.linfct), 0.0)
        inf = self.inference
        est = L @ inf.beta + self.offset
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", L, inf.vcov, L), 0.0))
        df = np.array([inf.df(row) if good else np.nan for row, good in zip(L, ok, strict=True)])
        est[~ok] = np.nan
        se[~ok] = np.nan
        return replace(self, estimate=est, se=se, df=df)


class EmmeansTable(pd.DataFrame):
    """A summary of estimated marginal means, trends or contrasts (a pandas DataFrame with
    emmeans' columns) that can make contrasts and summarize again.

    Derived frames (slices, copies, arithmetic) are plain DataFrames.
    """

    _metadata = ["_emm"]
    _emm: _State | None = None

    @property
    def _constructor(self):
        return pd.DataFrame

    # ---------------------------------------------------------------- public
    def summary(
        self,
        infer: tuple[bool, bool] | bool | None = None,
        level: float | None = None,
        adjust: str | None = None,
        type: str | None = None,
    ) -> EmmeansTable:
        """The same estimates summarized again (emmeans' ``summary``): ``infer`` =
        (intervals, tests), confidence ``level``, p-value/interval ``adjust``ment and
        ``type`` ("link" or "response")."""
        state = self._state()
        if isinstance(infer, bool):
            infer = (infer, infer)
        new = replace(
            state,
            infer=tuple(infer) if infer is not None else state.infer,
            level=_check_level(level) if level is not None else state.level,
            adjust=check_adjust(adjust) if adjust is not None else state.adjust,
            type=_check_type(type) if type is not None else state.type,
        )
        return _table(new)

    def contrast(
        self,
        method="pairwise",
        by: str | Sequence[str] | None | type[Ellipsis] = ...,
        adjust: str | None = None,
        *,
        ratios: bool = True,
        infer: tuple[bool, bool] = (False, True),
        level: float | None = None,
        type: str | None = None,
        **options,
    ) -> EmmeansTable:
        """Contrasts among the rows of each ``by`` group (emmeans' ``contrast``).

        Parameters
        ----------
        method : str, mapping or DataFrame
            "pairwise", "revpairwise", "trt.vs.ctrl" (``ref=`` level or position,
            ``reverse=``), "consec", "poly" (``max_degree=``), "eff"; or custom
            coefficients: ``{"A - B": [1, -1, 0], ...}`` (one per row of a by group).
        by : str or list, optional
            Groups (default: this table's ``by``; None: one group of all rows).
        adjust : str, optional
            "tukey", "holm", "bonferroni", "sidak", "dunnettx", "hochberg", "BH" ("fdr"),
            "BY", "none"; default: the method's (tukey for pairwise, dunnettx for
            trt.vs.ctrl, fdr for eff, none otherwise; emmeans' mvt for consec is not
            available and sidak is used).
        ratios : bool
            On the response scale of a log or logit link, report ratios (odds ratios).
        """
        return _contrast(self._state(), method, by, adjust, ratios, infer, level, type, options)

    def pairs(self, adjust: str | None = None, **kwargs) -> EmmeansTable:
        """Pairwise comparisons (``contrast("pairwise")``)."""
        return self.contrast("pairwise", adjust=adjust, **kwargs)

    # --------------------------------------------------------------- private
    def _state(self) -> _State:
        if self._emm is None:
            raise ArgumentError("this table has no emmeans state (was it copied or sliced?)")
        return self._emm


def _check_level(level: float) -> float:
    if not 0 < float(level) < 1:
        raise ArgumentError(f"level must be between 0 and 1, got {level!r}")
    return float(level)


def _check_type(type: str) -> str:
    if type not in ("link", "response"):
        raise ArgumentError(f"type must be 'link' or 'response', got {type!r}")
    return type


def _table(state: _State) -> EmmeansTable:
    """Summarize: estimate, SE, df, interval, tests, as emmeans' ``summary``."""
    est, se, df = state.estimate, state.se, state.df
    z_flag = bool(np.all(np.isnan(df) | np.isinf(df)))
    inv = state.type == "response" and state.link is not None
    name = (state.inv_label or "response") if inv else state.est_name
    fam = families(state.by_rows, state.fam_size, state.est_type)
    cols: dict[str, object] = {c: state.labels[c].to_numpy() for c in state.labels.columns}
    for c in state.labels.columns:
        if isinstance(state.labels[c].dtype, pd.CategoricalDtype):
            cols[c] = state.labels[c].array
    out_est, out_se = est.copy(), se.copy()
    if inv:
        out_se = np.abs(state.link.mu_eta(est)) * se
        out_est = state.link.inverse(est)
    cols[name] = out_est
    cols["SE"] = out_se
    cols["df"] = np.where(np.isnan(df), np.inf, df) if z_flag else df
    adjust_used = state.adjust
    if state.infer[0]:
        cv, adj_ci = critical_values(state.level, df, state.adjust, fam)
        lo, hi = est - cv * se, est + cv * se
        if inv:
            lo, hi = state.link.inverse(lo), state.link.inverse(hi)
            diff = np.nan_to_num(hi - lo)
            if not np.all(diff >= 0):
                lo, hi = hi, lo
        names = ("asymp.LCL", "asymp.UCL") if z_flag else ("lower.CL", "upper.CL")
        cols[names[0]], cols[names[1]] = lo, hi
        adjust_used = adj_ci
    if state.infer[1]:
        if inv:
            null = float(state.link.inverse(np.array([0.0]))[0])
            if null != 0:
                cols["null"] = np.full(len(est), null)
        t = est / se
        p, adjust_used = adjusted_p(t, df, state.adjust, fam)
        cols["z.ratio" if z_flag else "t.ratio"] = t
        cols["p.value"] = p
    table = EmmeansTable(cols)
    object.__setattr__(table, "_emm", state)
    table.attrs.update(
        {
            "estimate": name,
            "by": list(state.by),
            "adjust": adjust_used,
            "df_method": state.inference.method,
            "averaged_over": list(state.averaged_over),
            "type": state.type,
            "level": state.level,
        }
    )
    return table


# ------------------------------------------------------------------------------- builders
def _names(value: str | Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = [p.strip() for p in re.split(r"[*:+]", value)]
        return [p for p in parts if p]
    out = list(value)
    if not all(isinstance(v, str) for v in out):
        raise ArgumentError(f"{what} must be variable names, got {value!r}")
    return out


def _parse_specs(specs, by) -> tuple[list[str], list[str]]:
    """``"a"``, ``"a*b"``, ``"a | b"``, ``"~ a | b"``, ``"1"`` or a list of names."""
    spec_by: list[str] = []
    if isinstance(specs, str):
        text = specs.strip().removeprefix("~").strip()
        if "~" in text:
            raise ArgumentError(
                f"specs {specs!r}: give contrasts with .contrast() on the result, not 'method ~ x'"
            )
        main, _, after = text.partition("|")
        primary = _names(main, "specs")
        spec_by = _names(after, "specs")
    else:
        primary = _names(specs, "specs")
    by_names = list(dict.fromkeys(spec_by + _names(by, "by")))
    if primary == ["1"]:
        primary = []
        if by_names:
            raise ArgumentError("specs '1' (the overall mean) takes no by variables")
    elif not primary:
        raise ArgumentError("specs names no variable; use '1' for the overall mean")
    primary = [p for p in primary if p not in by_names]
    return primary, by_names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _grid_labels(grid: ReferenceGrid, avg: Averaged) -> tuple[pd.DataFrame, pd.DataFrame, set]:
    values, texts, numeric = {}, {}, set()
    if not avg.names:
        values["1"] = pd.Categorical(["overall"])
        texts["1"] = ["overall"]
    for j, name in enumerate(avg.names):
        var = grid.variable(name)
        idx = avg.index[:, j]
        labels = [var.labels[i] for i in idx]
        texts[name] = labels
        if var.numeric:
            values[name] = np.asarray([var.values[i] for i in idx], dtype=float)
        else:
            values[name] = pd.Categorical(labels, categories=var.labels)
        if all(_is_number(lab) for lab in var.labels):
            numeric.add(name)
    return pd.DataFrame(values), pd.DataFrame(texts), numeric


def _by_rows(texts: pd.DataFrame, by: list[str]) -> list[np.ndarray]:
    if not by:
        return [np.arange(len(texts))]
    missing = [b for b in by if b not in texts.columns]
    if missing:
        raise ArgumentError(
            f"by names {', '.join(map(repr, missing))}, not a column of the table "
            f"({', '.join(texts.columns)})"
        )
    keys = list(zip(*[texts[b] for b in by], strict=True))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    rows = [np.asarray(r) for r in groups.values()]
    if len({len(r) for r in rows}) > 1:
        raise ArgumentError(f"by groups of {', '.join(by)} have different sizes")
    return rows


def _means_state(
    fit,
    grid: ReferenceGrid,
    specs,
    by,
    weights,
    inference: Inference,
    *,
    est_name: str,
    type: str,
    level: float,
    adjust: str,
    infer,
    link: object | None,
) -> _State:
    primary, by_names = _parse_specs(specs, by)
    avg = average_grid(grid, primary + by_names, weights)
    labels, texts, numeric = _grid_labels(grid, avg)
    m = avg.full.shape[0]
    state = _State(
        labels=labels,
        texts=texts,
        numeric=frozenset(numeric),
        full=avg.full,
        keep=grid.keep,
        basis=grid.basis,
        offset=np.zeros(m) if avg.offset is None else avg.offset,
        by=by_names,
        by_rows=_by_rows(texts, by_names),
        est_name=est_name,
        est_type="prediction",
        fam_size=m,
        adjust=check_adjust(adjust),
        infer=(bool(infer[0]), bool(infer[1])),
        level=_check_level(level),
        type=_check_type(type),
        link=link,
        inv_label=inference.response_label,
        inference=inference,
        averaged_over=avg.averaged_over,
    )
    return state.compute()


def _check_response_scale(fit, type: str, inference: Inference) -> None:
    response = fit.design.formula.response
    plain = re.fullmatch(r"\s*[A-Za-z.][A-Za-z0-9._]*\s*", response or "") is not None
    if type == "response" and inference.link is None and not plain:
        raise ArgumentError(
            f"type='response' would need the back-transformation of the response "
            f"{response!r}, which is not supported (log, log2, log10, log1p and sqrt of a "
            f"variable are); use type='link'"
        )


def emmeans(
    fit,
    specs,
    by: str | Sequence[str] | None = None,
    *,
    at: Mapping[str, object] | None = None,
    weights: str | Sequence[float] = "equal",
    cov_reduce: Callable[[np.ndarray], float] | None = None,
    lmer_df: str | None = None,
    type: str = "link",
    level: float = 0.95,
    adjust: str = "none",
    infer: tuple[bool, bool] = (True, False),
) -> EmmeansTable:
    """Estimated marginal means (R's ``emmeans(fit, specs, by)``).

    Parameters
    ----------
    fit : LmerFit or GlmerFit
    specs : str or list of str
        The variables whose means are wanted: ``"treatment"``, ``"a*b"`` (or
        ``["a", "b"]``), ``"a | b"`` (a within each level of b), ``"1"`` (overall).
    by : str or list of str, optional
        Variables whose levels make separate groups (for contrasts and adjustments).
    at : mapping, optional
        Covariate values (``{"age": [8, 14]}``) or factor levels to use in the grid.
    weights : {"equal", "proportional", "outer", "cells", "flat"} or numbers
        How the averaged-over combinations are weighted (emmeans' ``weights``).
    cov_reduce : callable, optional
        Value of each covariate with more than two distinct values (default: mean).
    lmer_df : {"kenward-roger", "satterthwaite", "asymptotic"}, optional
        Degrees of freedom for an lmer fit (default Kenward-Roger, as emmeans); glmer
        fits are asymptotic.
    type : {"link", "response"}
        Scale of the summary; "response" back-transforms a glmer link.
    level : float
        Confidence level.
    adjust : str
        Multiplicity adjustment of the intervals and tests (default none).
    infer : (bool, bool)
        Whether to show confidence intervals and tests (null 0 on the link scale).

    Returns
    -------
    EmmeansTable
        The specs and by columns, ``emmean`` (``prob``/``rate``/``response`` on the
        response scale), ``SE``, ``df``, ``lower.CL``/``upper.CL`` (``asymp.LCL``/
        ``asymp.UCL`` for infinite df) and, with tests, ``t.ratio``/``z.ratio`` and
        ``p.value``.
    """
    inference = _inference(fit, lmer_df)
    _check_response_scale(fit, type, inference)
    grid = reference_grid(fit.design, at, cov_reduce)
    state = _means_state(
        fit,
        grid,
        specs,
        by,
        weights,
        inference,
        est_name="emmean",
        type=type,
        level=level,
        adjust=adjust,
        infer=infer,
        link=inference.link,
    )
    return _table(state)


def emtrends(
    fit,
    specs,
    var: str,
    by: str | Sequence[str] | None = None,
    *,
    at: Mapping[str, object] | None = None,
    weights: str | Sequence[float] = "equal",
    cov_reduce: Callable[[np.ndarray], float] | None = None,
    lmer_df: str | None = None,
    delta_var: float | None = None,
    level: float = 0.95,
    adjust: str = "none",
    infer: tuple[bool, bool] = (True, False),
) -> EmmeansTable:
    """Estimated marginal slopes of a covariate (R's ``emtrends(fit, specs, var)``).

    As emmeans, the slope is the forward difference quotient of the predictions (on the
    link scale) between ``var`` and ``var + delta_var`` at each grid point, with
    ``delta_var = 0.001 * range(var)`` by default; for a model linear in ``var`` that is
    the exact slope.  Other arguments as :func:`emmeans`; the estimate column is named
    ``<var>.trend``.
    """
    inference = _inference(fit, lmer_df)
    design = fit.design
    grid = reference_grid(design, at, cov_reduce)
    variable = grid.variable(var)
    if not variable.numeric or var not in design.data.columns:
        raise ArgumentError(f"var {var!r} must be a numeric covariate of the fixed part")
    x = design.data[var].to_numpy(dtype=float)
    h = 0.001 * float(np.nanmax(x) - np.nanmin(x)) if delta_var is None else float(delta_var)
    if not math.isfinite(h) or h == 0:
        raise ArgumentError(f"delta_var must be a nonzero number; got {h} for {var!r}")
    shifted = reference_grid(design, at, cov_reduce, shift=(var, h))
    slopes = replace(grid, full=(shifted.full - grid.full) / h, offset=None)
    state = _means_state(
        fit,
        slopes,
        specs,
        by,
        weights,
        inference,
        est_name=f"{var}.trend",
        type="link",
        level=level,
        adjust=adjust,
        infer=infer,
        link=None,
    )
    return _table(state)


# ------------------------------------------------------------------------------ contrasts
def _contrast(
    state: _State, method, by, adjust, ratios: bool, infer, level, type, options
) -> EmmeansTable:
    by_names = state.by if by is ... else _names(by, "by")
    by_rows = _by_rows(state.texts, by_names)
    inner = [c for c in state.texts.columns if c not in by_names]
    columns = [
        [f"{c}{t}" for t in state.texts[c]] if c in state.numeric else list(state.texts[c])
        for c in inner
    ]
    all_levels = level_names(columns) if columns else [""] * len(state.texts)
    first = by_rows[0]
    fam = contrast_family(method, [all_levels[i] for i in first], **options)
    k, n_con = fam.coef.shape
    if k != len(first):
        raise ArgumentError(f"contrast coefficients need {len(first)} rows, got {k}")
    C = fam.coef.T  # (contrasts, means)
    full, offset, label_rows, names = [], [], [], []
    for rows in by_rows:
        if [all_levels[i] for i in rows] != [all_levels[i] for i in first]:
            names.extend(contrast_family(method, [all_levels[i] for i in rows], **options).names)
        else:
            names.extend(fam.names)
        full.append(C @ state.full[rows])
        offset.append(C @ state.offset[rows])
        label_rows.extend([rows[0]] * n_con)
    true_con = is_true_contrast(fam.coef)
    est_type = fam.est_type or (
        "contrast" if np.all(np.abs(fam.coef.sum(axis=0)) < 1e-3) else "prediction"
    )
    scale_type = _check_type(type) if type is not None else state.type
    link, inv_label = None, None
    if state.link is not None and ratios and true_con and state.link.name in _RATIO_LABELS:
        base = _RATIO_BASES.get(state.link.name, math.e)
        link, inv_label = _RatioScale(base), _RATIO_LABELS[state.link.name]
        if scale_type == "response":
            names = [n.replace(" - ", " / ") for n in names]
    label_index = np.asarray(label_rows, dtype=int)
    values = {"contrast": pd.Categorical(names, categories=list(dict.fromkeys(names)))}
    texts = {"contrast": names}
    for b in by_names:
        values[b] = state.labels[b].to_numpy()[label_index]
        if isinstance(state.labels[b].dtype, pd.CategoricalDtype):
            values[b] = pd.Categorical(
                np.asarray(state.texts[b])[label_index],
                categories=state.labels[b].cat.categories,
            )
        texts[b] = list(np.asarray(state.texts[b])[label_index])
    full_rows = np.vstack(full)
    new = _State(
        labels=pd.DataFrame(values),
        texts=pd.DataFrame(texts),
        numeric=frozenset(b for b in by_names if b in state.numeric),
        full=full_rows,
        keep=state.keep,
        basis=state.basis,
        offset=np.concatenate(offset),
        by=by_names,
        by_rows=[np.arange(i * n_con, (i + 1) * n_con) for i in range(len(by_rows))],
        est_name="estimate",
        est_type=est_type,
        fam_size=fam.fam_size or len(first),
        adjust=check_adjust(adjust if adjust is not None else fam.adjust),
        infer=(bool(infer[0]), bool(infer[1])),
        level=_check_level(level) if level is not None else state.level,
        type=scale_type,
        link=link,
        inv_label=inv_label,
        inference=state.inference,
        averaged_over=state.averaged_over,
    )
    bad_means = np.array([np.any(np.isnan(state.estimate[rows])) for rows in by_rows])
    new = new.compute()
    if bad_means.any():  # a contrast that involves a non-estimable mean is not estimable
        for g, rows in enumerate(by_rows):
            involved = np.abs(C) > 0
            nan_means = np.isnan(state.estimate[rows])
            hit = np.any(involved[:, nan_means], axis=1)
            sl = slice(g * n_con, (g + 1) * n_con)
            for arr in (new.estimate, new.se, new.df):
                arr[sl] = np.where(hit, np.nan, arr[sl])
    return _table(new)
