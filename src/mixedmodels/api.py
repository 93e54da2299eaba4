"""Public entry points: short functions chaining parse -> design -> engine -> optimizer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mixedmodels.arguments import check_bool, check_int, check_optional_str
from mixedmodels.core.families import Family, make_family
from mixedmodels.core.pirls import GlmmProblem
from mixedmodels.core.variance_functions import VarianceFunction
from mixedmodels.design import build_design
from mixedmodels.design.sources import RowSource, row_source
from mixedmodels.design.validate import degenerate_glm_response
from mixedmodels.errors import (
    ArgumentError,
    ConvergenceWarning,
    DataError,
    DegenerateFitWarning,
    FormulaError,
    RowsDroppedWarning,
    SingularFitWarning,
)
from mixedmodels.large import fit_chunks
from mixedmodels.optim import OptimizeResult
from mixedmodels.optim.glmm import fit_glmm
from mixedmodels.optim.lmm import checked_start, optimize_problem, solve_at
from mixedmodels.results.chunked_fit import ChunkedLmerFit
from mixedmodels.results.fit import LmerFit, lmm_problem
from mixedmodels.results.glmer_fit import GlmerFit
from mixedmodels.results.lm_fit import LmFit
from mixedmodels.results.residual_lmer import lmer_residual


def lmer_problem(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    weights=None,
    offset=None,
    contrasts: dict[str, str] | None = None,
):
    """Design and objective without fitting (lme4's ``lFormula`` + ``mkLmerDevfun``).

    Returns
    -------
    (ModelDesign, LmmProblem)
        ``problem.objective(theta)`` is the REML criterion or deviance at ``theta``.
    """
    _check_model_arguments(formula, contrasts)
    reml = check_bool(reml, "reml")
    design = build_design(formula, data, weights=weights, offset=offset, contrasts=contrasts)
    return design, lmm_problem(design, reml)


def _data_name(data: object, data_name: str | None) -> str | None:
    """The name on the summary's ``Data:`` line: the one given, else a bundled data set's."""
    if data_name is None and isinstance(data, pd.DataFrame):
        name = data.attrs.get("dataset")
        return name if isinstance(name, str) else None
    return data_name


def _check_model_arguments(formula: object, contrasts: object, data_name: object = None) -> None:
    """The arguments every fitting function shares."""
    if not isinstance(formula, str):
        raise FormulaError(
            f"formula must be a string such as 'y ~ x + (1 | g)', got {type(formula).__name__}"
        )
    if contrasts is not None and not isinstance(contrasts, dict):
        raise ArgumentError(
            f'contrasts must be a dict such as {{"f": "contr.sum"}}, got {type(contrasts).__name__}'
        )
    check_optional_str(data_name, "data_name")


def lmer(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    weights=None,
    offset=None,
    contrasts: dict[str, str] | None = None,
    start: np.ndarray | str | None = None,
    optimize: bool = True,
    data_name: str | None = None,
    correlation=None,
) -> LmerFit:
    """Fit a linear mixed-effects model written in lme4's formula language.

    Parameters
    ----------
    formula : str
        e.g. ``"Reaction ~ Days + (Days | Subject)"``; bar terms ``(x | g)``, ``(x || g)``,
        ``(1 | a/b)``, ``(1 | a:b)``; the fixed part in R's formula language.
    data : DataFrame, Dask DataFrame, Parquet path or RowSource
        Never modified. Rows with missing values in used columns are dropped and counted.
        A path (file, directory or glob) of Parquet files or a ``dask.dataframe.DataFrame``
        is read chunk by chunk in three passes and fitted from the sums of its cross
        products, with the same numbers (:class:`ChunkedLmerFit`; lme4's start is used);
        ``mm.FrameSource(df, chunk_rows)`` does the same for a DataFrame in memory.
    reml : bool
        REML (default) or maximum likelihood.
    weights, offset : str or array-like, optional
        Prior weights / offset: a column name or one value per row.  ``weights`` may
        instead be a variance function (nlme's ``weights =``): ``mm.var.Ident("Sex")``,
        ``mm.var.Power()``, ``mm.var.Exp("x")``, ``mm.var.Fixed("x")``.
    contrasts : dict, optional
        Codings of factor columns in the fixed part, as R's ``contrasts = list(f =
        "contr.sum")``: ``{"f": "contr.sum"}`` (or ``"sum"``; also treatment, helmert,
        poly); columns named as R names them (``f1, f2`` for sum and Helmert).
    start : array-like or "lme4", optional
        Starting theta (lme4's order), or ``"lme4"`` for lme4's own start (identity
        lambda).  By default scalar random intercepts start at moment (ANOVA) estimates and
        a single vector term at per-level regressions: the same optimum in fewer
        evaluations (InstEval: 33 instead of 112).
    optimize : bool
        False evaluates the model at ``start`` without optimizing (lme4's
        ``lmerControl(optimizer = NULL)``): every summary, test and interval then describes
        that theta, e.g. another program's estimate.
    data_name : str, optional
        Name printed on the summary's ``Data:`` line.
    correlation : optional
        Residual correlation within groups (nlme's ``correlation =``):
        ``mm.cor.AR1()``, ``mm.cor.CAR1("time")``, ``mm.cor.CompSymm()``,
        ``mm.cor.ARMA(p, q)``.  With it, or with a variance function, the fit is a
        :class:`~mixedmodels.results.residual_fit.ResidualLmerFit` (``start`` and
        ``optimize`` do not apply; the data must be a DataFrame).

    Returns
    -------
    LmerFit
    """
    _check_model_arguments(formula, contrasts, data_name)
    if correlation is not None or isinstance(weights, VarianceFunction):
        variance = weights if isinstance(weights, VarianceFunction) else None
        if weights is not None and variance is None:
            raise ArgumentError(
                "prior weights cannot be combined with correlation=; a known variance "
                "per row is mm.var.Fixed('column') (variance proportional to the column)"
            )
        if start is not None or not optimize:
            raise ArgumentError("start and optimize=False are not available with correlation=")
        return lmer_residual(
            formula, data, reml=reml, correlation=correlation, variance=variance,
            offset=offset, contrasts=contrasts, data_name=_data_name(data, data_name),
        )
    optimize = check_bool(optimize, "optimize")
    source = data if isinstance(data, RowSource) else row_source(data)
    if source is not None:
        design, problem = fit_chunks(
            formula,
            source,
            reml=check_bool(reml, "reml"),
            weights=weights,
            offset=offset,
            contrasts=contrasts,
        )
        start = "lme4" if start is None else start  # moment starts would need the rows
        fit_class: type[LmerFit] = ChunkedLmerFit
    else:
        design, problem = lmer_problem(
            formula, data, reml=reml, weights=weights, offset=offset, contrasts=contrasts
        )
        fit_class = LmerFit
    _warn_dropped_rows(design)
    if optimize:
        result = optimize_problem(problem, start)
    else:
        if start is None:
            raise ArgumentError("optimize=False needs a start: the theta to evaluate at")
        theta = checked_start(problem, start)
        result = OptimizeResult(
            theta, problem.objective(theta), 1, True, "evaluated at start (optimize=False)"
        )
    solution = solve_at(problem, result.x)
    fit = fit_class(design, problem, solution, result, data_name=_data_name(data, data_name))
    _warn_fit_outcome(fit, result.converged, result.message)
    if fit.rows_available:
        _warn_if_residual_vanishes(fit, design)
    return fit


def _warn_dropped_rows(design) -> None:
    """Rows with missing values are dropped, never silently: say how many."""
    if design.n_dropped:
        where = ", ".join(f"{name}: {count}" for name, count in design.dropped_by.items())
        warnings.warn(
            f"{design.n_dropped} row(s) with missing values dropped"
            + (f" (missing in {where})" if where else ""),
            RowsDroppedWarning,
            stacklevel=3,
        )


def _warn_fit_outcome(fit, converged: bool, message: str) -> None:
    """lme4's post-fit warnings: no convergence, a singular (boundary) fit."""
    if not converged:
        warnings.warn(f"optimizer: {message}", ConvergenceWarning, stacklevel=3)
    if fit.is_singular:
        warnings.warn(
            "boundary (singular) fit: a random-effect variance is (near) zero",
            SingularFitWarning,
            stacklevel=3,
        )


def _warn_if_residual_vanishes(fit: LmerFit, design) -> None:
    """Warn when sigma is negligible next to the response's spread: the random effects
    then reproduce the response (typically a response constant within a grouping factor),
    the criterion has no minimum and the estimates are arbitrary."""
    spread = float(np.std(design.y))
    if spread == 0:
        warnings.warn(
            "the response is constant: the model describes no variation, its criterion has "
            "no minimum and the estimates are not meaningful",
            DegenerateFitWarning,
            stacklevel=3,
        )
    elif fit.sigma < 1e-6 * spread:
        warnings.warn(
            f"residual standard deviation {fit.sigma:.3g} is negligible next to the "
            f"response's ({spread:.3g}): the random effects reproduce the response (is it "
            "constant within the levels of a grouping factor?); the estimates are not "
            "meaningful",
            DegenerateFitWarning,
            stacklevel=3,
        )


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str | Family = "binomial",
    *,
    link: str | None = None,
    weights=None,
    offset=None,
    contrasts: dict[str, str] | None = None,
    n_agq: int = 1,
    data_name: str | None = None,
    fast: bool = False,
) -> GlmerFit:
    """Fit a generalized linear mixed model by the Laplace approximation (lme4's glmer).

    Parameters
    ----------
    formula : str
        lme4 formula; a binomial response may be ``cbind(successes, failures)``, 0/1, a
        logical or a factor (first level = failure), or a proportion with ``weights`` as
        the numbers of trials.
    data : DataFrame
        Never modified; rows with missing values are dropped and counted.
    family : {"binomial", "poisson"} or Family
    link : str, optional
        binomial: logit (default), probit, cloglog; poisson: log (default), identity, sqrt.
    weights, offset : str or array-like, optional
        Prior weights (binomial: numbers of trials) and an offset on the link scale.
    contrasts : dict, optional
        Factor codings of the fixed part, as in :func:`lmer`.
    n_agq : int
        1: Laplace (lme4's default); more: adaptive Gauss-Hermite quadrature with that many
        nodes (one scalar random-effect term, as lme4); 0: lme4's faster ``nAGQ = 0``
        (beta estimated inside PIRLS).
    fast : bool
        MixedModels.jl's ``fast = true``: beta from PIRLS, the optimizer over theta only
        (the Laplace deviance at beta = beta(theta)); the same fit as lme4's
        ``nAGQ = 0``, reported as such.  Its log-likelihood is at most the default fit's.

    Returns
    -------
    GlmerFit
    """
    _check_model_arguments(formula, contrasts, data_name)
    check_optional_str(link, "link")
    if isinstance(family, str):
        try:
            family = make_family(family, link)
        except ValueError as exc:
            raise ArgumentError(str(exc)) from exc
    elif not isinstance(family, Family):
        raise ArgumentError(
            f'family must be "binomial", "poisson" or a Family, got {type(family).__name__}'
        )
    n_agq = check_int(n_agq, "n_agq", minimum=0)
    if n_agq > 25:
        raise ArgumentError(f"n_agq must be an integer from 0 to 25, not {n_agq!r}")
    if check_bool(fast, "fast"):
        if n_agq > 1:
            raise ArgumentError(
                f"fast=True (beta from PIRLS) does not combine with n_agq = {n_agq} "
                "(quadrature); use one or the other"
            )
        n_agq = 0
    design = build_design(
        formula, data, weights=weights, offset=offset, glm_family=family.name, contrasts=contrasts
    )
    _warn_dropped_rows(design)
    if n_agq > 1 and (len(design.terms) != 1 or design.terms[0].block.p != 1):
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) needs a single scalar "
            "random-effect term such as (1 | g); use n_agq=1 (Laplace) for this model"
        )
    problem = glmm_problem(design, family)
    solution = fit_glmm(problem, n_agq)
    fit = GlmerFit(design, problem, solution, n_agq=n_agq, data_name=_data_name(data, data_name))
    _warn_fit_outcome(fit, solution.converged, solution.message)
    value = degenerate_glm_response(design.y, family.variance)
    if value is not None:
        warnings.warn(
            f"the response is {value:g} in every row: the fixed effects diverge (complete "
            "separation) and the estimates are not meaningful",
            DegenerateFitWarning,
            stacklevel=2,
        )
    return fit


def glmm_problem(design, family: Family) -> GlmmProblem:
    """The engine's GLMM problem for a design: prior weights times binomial trials."""
    weights = design.weights
    if design.trials is not None:
        weights = design.trials if weights is None else weights * design.trials
    problem = GlmmProblem(
        [t.block for t in design.terms], design.X, design.y, weights, design.offset, family
    )
    complaint = family.check_response(design.y)
    if complaint:
        raise DataError(f"{complaint}; got values from {design.y.min():g} to {design.y.max():g}")
    return problem


def lm(
    formula: str,
    data: pd.DataFrame,
    *,
    weights=None,
    contrasts: dict[str, str] | None = None,
    data_name: str | None = None,
) -> LmFit:
    """Fit a standard linear model by least squares (R's ``lm``).

    Parameters
    ----------
    formula : str
        e.g. ``"Reaction ~ Days"`` (no random-effect terms).
    data : DataFrame
    weights : str or array-like, optional
    contrasts : dict, optional
        Factor codings, as in :func:`lmer`.
    data_name : str, optional
        Name shown on the summary's ``Call:`` line.
    """
    _check_model_arguments(formula, contrasts, data_name)
    design = build_design(formula, data, weights=weights, require_random=False, contrasts=contrasts)
    if design.formula.random:
        raise FormulaError("lm() takes no random-effect terms; use mm.lmer", formula)
    _warn_dropped_rows(design)
    return LmFit(design, data_name=_data_name(data, data_name))


def refit_ml(fit: LmerFit) -> LmerFit:
    """The same model refitted by maximum likelihood (a REML fit's ML counterpart)."""
    if not isinstance(fit, LmerFit):
        raise ArgumentError(f"refit_ml takes an lmer fit, got {type(fit).__name__}")
    return fit.refit_ml()


def anova(*fits, names: list[str] | None = None) -> pd.DataFrame:
    """Compare models, or test the terms of one.

    With several fits: lme4's likelihood-ratio table (npar, AIC, BIC, logLik, deviance,
    Chisq, Df, Pr(>Chisq)); REML fits are first refitted by ML, as lme4 does, and the
    table's ``attrs["note"]`` says so.  glmer fits are compared by their (Laplace)
    log-likelihoods.  With one fit: F tests of its fixed-effect terms with
    Satterthwaite denominator df (lmerTest's ``anova(m)``).

    Raises
    ------
    DataError
        When the models were fitted to different data.
    """
    from mixedmodels.inference.anova import (
        check_nested,
        check_same_data,
        likelihood_ratio_table,
        type3_table,
    )

    if not fits:
        raise ArgumentError("anova needs at least one fit")
    glmm = [isinstance(f, GlmerFit) for f in fits]
    if len(fits) == 1:
        if glmm[0]:
            raise ArgumentError(
                "F tests of a glmer fit's terms are not available; compare models with "
                "mm.anova(fit_a, fit_b)"
            )
        return type3_table(fits[0])
    if any(glmm) and not all(glmm):
        raise ArgumentError("anova compares lmer fits with lmer fits and glmer with glmer")
    kinds = (LmerFit, GlmerFit)
    for i, f in enumerate(fits):
        if not isinstance(f, kinds):
            raise ArgumentError(f"anova compares fits; argument {i + 1} is {type(f).__name__}")
    if names is not None and (
        len(names) != len(fits) or not all(isinstance(n, str) for n in names)
    ):
        raise ArgumentError(f"names must be {len(fits)} strings, one per fit, got {names!r}")
    names = names or [f"model{i + 1}" for i in range(len(fits))]
    check_same_data(list(fits))
    note = None
    if not any(glmm) and any(f.reml for f in fits):
        fits = tuple(refit_ml(f) for f in fits)
        note = "refitting model(s) with ML (instead of REML)"
        warnings.warn(note, UserWarning, stacklevel=2)
    check_nested(list(fits), names)
    table = likelihood_ratio_table(list(fits), names)
    if note:
        table.attrs["note"] = note
    return table


def refit(fit: LmerFit, y) -> LmerFit:
    """Refit the same model to a new response without rebuilding its structure.

    Raises
    ------
    DataError
        When ``y`` does not hold one finite number per fitted row.
    """
    if not isinstance(fit, LmerFit):
        raise ArgumentError(f"refit takes an lmer fit, got {type(fit).__name__}")
    return fit.refit(y)
