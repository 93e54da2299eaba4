"""Public entry points: short functions chaining parse -> design -> engine -> optimizer."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pandas as pd

from mixedmodels.arguments import check_bool, check_int, check_optional_str
from mixedmodels.core.families import (
    FAMILIES,
    Family,
    NBinom1,
    NBinom2,
    NegativeBinomial,
    PoissonLikelihood,
    ZeroInflated,
    make_family,
)
from mixedmodels.core.pirls import GlmmProblem, PirlsError
from mixedmodels.core.variance_functions import VarianceFunction
from mixedmodels.design import build_design
from mixedmodels.design.matrices import MatrixBuilder
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.design.sources import RowSource, row_source
from mixedmodels.design.validate import degenerate_glm_response, missing_mask
from mixedmodels.errors import (
    ArgumentError,
    ConvergenceError,
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
from mixedmodels.optim.reduced_start import reduced_moment_start
from mixedmodels.optim.start import moment_start
from mixedmodels.results.chunked_fit import ChunkedLmerFit
from mixedmodels.results.fit import LmerFit, lmm_problem
from mixedmodels.results.glmer_fit import GlmerFit
from mixedmodels.results.lm_fit import LmFit
from mixedmodels.results.residual_lmer import lmer_residual
from mixedmodels.results.smooth import glmm_smooth_start, smooth_start
from mixedmodels.results.zero_inflation import ZeroInflationModel


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
        products, with the same numbers (:class:`ChunkedLmerFit`; the same default start,
        computed from the cross products);
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
            formula,
            data,
            reml=reml,
            correlation=correlation,
            variance=variance,
            offset=offset,
            contrasts=contrasts,
            data_name=_data_name(data, data_name),
        )
    optimize = check_bool(optimize, "optimize")
    # a DataFrame first: a runtime Protocol check costs ~70 us, a class check nothing
    if isinstance(data, pd.DataFrame):
        source = None
    else:
        source = data if isinstance(data, RowSource) else row_source(data)
    if source is not None and _has_smooths(formula):
        raise ArgumentError(
            "smooth terms such as s(x) need the rows in memory (their bases are built from "
            "the data): pass a DataFrame"
        )
    default_start = moment_start
    if source is not None:
        design, problem, sums = fit_chunks(
            formula,
            source,
            reml=check_bool(reml, "reml"),
            weights=weights,
            offset=offset,
            contrasts=contrasts,
        )
        # the in-memory fit's moment start, from the cross products: the same path
        default_start = partial(reduced_moment_start, sums=sums)
        fit_class: type[LmerFit] = ChunkedLmerFit
    else:
        design, problem = lmer_problem(
            formula, data, reml=reml, weights=weights, offset=offset, contrasts=contrasts
        )
        fit_class = LmerFit
    _warn_dropped_rows(design)
    if optimize and start is None and design.smooths:
        # the smooths' variances start at their Schall estimates, not at lme4's 1
        start = smooth_start(design, problem)
    if not optimize and start is None:
        raise ArgumentError("optimize=False needs a start: the theta to evaluate at")
    # one BLAS thread for a small (dense) problem, set once for the search and the solution
    with problem.blas_context():
        if optimize:
            result = optimize_problem(problem, start, default_start)
        else:
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
    if not fit.residual_vanishes():  # every fit: the response's sd computed there only
        return
    spread = float(np.std(design.y))
    if spread == 0:
        warnings.warn(
            "the response is constant: the model describes no variation, its criterion has "
            "no minimum and the estimates are not meaningful",
            DegenerateFitWarning,
            stacklevel=3,
        )
    else:
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
    zi: str | None = None,
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
    family : {"binomial", "poisson", "gamma", "inverse_gaussian", "gaussian"} or Family
        Families with a dispersion parameter (gamma, inverse_gaussian, gaussian with a
        non-identity link) are fitted as lme4 fits them: the Laplace deviance holds R's
        ``family$aic`` with the dispersion estimated from the deviance (see
        :attr:`GlmerFit.loglik`), and ``sigma`` is lme4's.
    link : str, optional
        binomial: logit (default), probit, cloglog, log; poisson: log (default), identity,
        sqrt; gamma: inverse (default), log, identity; inverse_gaussian: 1/mu^2 (default),
        inverse, log, identity; gaussian: log or inverse.  glmmTMB's families (fitted as
        glmmTMB fits them: the exact Laplace approximation, their own parameters estimated
        with beta): "nbinom2" (``Var = mu + mu^2/k``, sigma = k), "nbinom1" (``Var = mu (1
        + phi)``, sigma = phi), both log link; "beta" (logit link, precision phi = sigma).
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
    zi : str, optional
        Zero inflation (glmmTMB's ``ziformula``): ``"~1"`` for a constant probability of a
        structural zero or ``"~x + f"`` for fixed effects on its logit; for "poisson",
        "nbinom2" and "nbinom1".

    Returns
    -------
    GlmerFit
    """
    _check_model_arguments(formula, contrasts, data_name)
    check_optional_str(link, "link")
    check_optional_str(zi, "zi")
    family = _glmer_family(family, link)
    if zi is not None:
        family = _zi_base(family)
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
    if n_agq > 1 and (family.has_dispersion or family.extra_names or zi is not None):
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) is for families without a "
            f"dispersion parameter; the {family.name} family is fitted by Laplace (n_agq=1)"
        )
    # rows missing a column only zi reads are dropped (and counted) like any other's
    model_data, zi_dropped = _zi_complete_rows(zi, data)
    design = build_design(
        formula, model_data, weights=weights, offset=offset, glm_family=family.name,
        contrasts=contrasts,
    )
    if zi_dropped:
        design.n_dropped += sum(zi_dropped.values())
        design.dropped_by = {**design.dropped_by, **zi_dropped}
    _warn_dropped_rows(design)
    if n_agq > 1 and (len(design.terms) != 1 or design.terms[0].block.p != 1):
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) needs a single scalar "
            "random-effect term such as (1 | g); use n_agq=1 (Laplace) for this model"
        )
    zero_inflation = None
    if zi is not None:
        X_zi, zi_names, zero_inflation = _zi_matrix(zi, design, model_data)
        family = ZeroInflated(family, X_zi, zi_names)
    if n_agq == 0 and family.extra_names:
        raise ArgumentError(
            f"n_agq = 0 is not available for the {family.name} family (its own parameters "
            "are estimated in the Laplace stage); use n_agq=1"
        )
    problem = glmm_problem(design, family)
    # the smooths' variances start at their PQL-Schall estimates, not at lme4's 1
    start_theta = glmm_smooth_start(design, problem) if design.smooths else None
    try:
        solution = fit_glmm(problem, n_agq, start_theta=start_theta)
    except PirlsError as exc:
        raise ConvergenceError(
            f"the {family.name} GLMM with the {family.link.name} link could not be fitted: "
            f"{exc} (a link whose range the fitted means leave, such as the inverse link's "
            "positive means, can cause this; try another link)"
        ) from exc
    fit = GlmerFit(
        design,
        problem,
        solution,
        n_agq=n_agq,
        data_name=_data_name(data, data_name),
        zi_formula=None if zi is None else zi.strip(),
        zero_inflation_model=zero_inflation,
    )
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


def glmer_nb(
    formula: str,
    data: pd.DataFrame,
    *,
    weights=None,
    offset=None,
    contrasts: dict[str, str] | None = None,
    data_name: str | None = None,
) -> GlmerFit:
    """Fit a negative binomial (NB2) GLMM as lme4's ``glmer.nb``: log link, ``Var(y) = mu +
    mu^2 / k``, the Laplace deviance with R's ``aic`` and lme4's GLM weights.

    lme4 estimates ``k`` by an outer loop (a one-dimensional search over ``log k``, each
    step a full glmer fit); here ``log k`` is estimated with theta and beta in the Laplace
    stage, which reaches the same optimum.  ``fit.family.k`` is lme4's
    ``getME(m, "glmer.nb.theta")``; standard errors hold ``k`` at its estimate, as lme4's.

    Parameters are those of :func:`glmer`.

    Returns
    -------
    GlmerFit
    """
    return glmer(
        formula,
        data,
        NegativeBinomial(),
        weights=weights,
        offset=offset,
        contrasts=contrasts,
        data_name=data_name,
    )


def _zi_base(family: Family) -> Family:
    """The count family under zero inflation (poisson as glmmTMB fits it)."""
    bases = {"poisson": PoissonLikelihood, "nbinom2": NBinom2, "nbinom1": NBinom1}
    cls = bases.get(family.name)
    if cls is None or family.link.name != "log":
        raise ArgumentError(
            "zero inflation (zi=) is for the poisson, nbinom2 and nbinom1 families with the "
            f"log link, not {family.name} ({family.link.name})"
        )
    return cls()


def _zi_complete_rows(zi: str | None, data: object) -> tuple[object, dict[str, int]]:
    """``data`` without the rows missing a value in a column that only the zero-inflation
    formula ``zi`` reads (glmmTMB's ``na.action`` covers every formula), and the count per
    column; ``data`` itself when there are none."""
    if zi is None or not isinstance(data, pd.DataFrame) or not zi.strip().startswith("~"):
        return data, {}
    rhs = zi.strip()[1:].strip()
    if not rhs or "|" in rhs:
        return data, {}
    keep = np.ones(len(data), dtype=bool)
    dropped: dict[str, int] = {}
    for name in variables_of(rhs):
        if name in data.columns:
            gone = missing_mask(data[name]) & keep
            if gone.any():
                dropped[name] = int(gone.sum())
                keep &= ~gone
    return (data.loc[keep] if dropped else data), dropped


def _zi_matrix(
    zi: str, design, data: pd.DataFrame
) -> tuple[np.ndarray, list[str], ZeroInflationModel]:
    """The zero-inflation model matrix of ``zi`` (``"~1"``, ``"~x + f"``) on the rows the
    design kept, its column names and its encoding (for new rows).

    Raises
    ------
    FormulaError
        ``zi`` not a one-sided formula, or one with random effects.
    DataError
        A missing value in a column ``zi`` reads on a kept row.
    """
    text = zi.strip()
    if not text.startswith("~"):
        raise FormulaError("zi must be a one-sided formula such as '~1' or '~x'", zi)
    rhs = text[1:].strip()
    if "|" in rhs:
        raise FormulaError("zi takes fixed effects only (no random-effect terms)", zi)
    rows = data.loc[design.row_index] if len(design.row_index) != len(data) else data
    builder = MatrixBuilder(rhs or "1")
    X = np.asarray(builder.build(rows), dtype=float)
    if X.shape[0] != design.n or not np.isfinite(X).all():
        raise DataError(
            f"the zero-inflation formula {zi!r} reads a missing or non-finite value on a row "
            "the model uses"
        )
    return X, list(builder.column_names), ZeroInflationModel(text, builder)


def _glmer_family(family: object, link: object) -> Family:
    """The Family named by ``family`` (and ``link``), or a Family instance as given.

    Raises
    ------
    ArgumentError
        An unknown family or link (naming the valid ones), or the gaussian family with the
        identity link (a linear mixed model: lmer).
    """
    if isinstance(family, str):
        family = make_family(family, link)
    elif not isinstance(family, Family):
        raise ArgumentError(
            f"family must be one of {', '.join(repr(f) for f in FAMILIES)} or a Family, got "
            f"{type(family).__name__}"
        )
    if family.name == "gaussian" and family.link.name == "identity":
        raise ArgumentError(
            "the gaussian family with the identity link is a linear mixed model: use "
            "mm.lmer(...) (or give glmer link='log' or link='inverse')"
        )
    return family


def glmm_problem(design, family: Family) -> GlmmProblem:
    """The engine's GLMM problem for a design: prior weights times binomial trials."""
    weights = design.weights
    if design.trials is not None:
        weights = design.trials if weights is None else weights * design.trials
    problem = GlmmProblem(
        [t.block for t in design.terms], design.X, design.y, weights, design.offset, family
    )
    complaint = family.check_response(design.y) or family.check_link_response(design.y)
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
    if design.formula.smooths:
        raise FormulaError("lm() takes no smooth terms such as s(x); use mm.gamm", formula)
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


def nlme(
    model: str,
    data: object,
    fixed: str | list[str],
    random: str,
    *,
    start: dict | list | np.ndarray | None = None,
    method: str = "ML",
    covariance: str | None = None,
    weights: str | VarianceFunction | None = None,
    tolerance: float = 1e-8,
    max_iter: int = 100,
    data_name: str | None = None,
    n_agq: int = 1,
):
    """Fit a nonlinear mixed-effects model as ``nlme::nlme`` does (Lindstrom-Bates).

    Parameters
    ----------
    model : str
        ``"circumference ~ SSlogis(age, Asym, xmid, scal)"`` (a self-starting model:
        SSlogis, SSfpl, SSasymp, SSasympOff, SSmicmen, SSgompertz, SSbiexp, SSfol) or
        ``"circumference ~ Asym/(1 + exp((xmid - age)/scal))"`` (an arithmetic expression of
        the parameters and data columns; parsed, never evaluated as Python, and
        differentiated symbolically).  The response may be an expression of data columns
        (``"log(size) ~ ..."``); rows where it is NaN or infinite are dropped and counted.
    data : DataFrame
    fixed : str or list of str
        Parameters and their covariates: ``"Asym + xmid + scal ~ 1"``,
        ``["Asym ~ Variety", "xmid + scal ~ 1"]``.
    random : str
        ``"Asym ~ 1 | Tree"``, ``"lKa + lCl ~ 1 | Subject"`` (general covariance) or
        ``"pdDiag(Asym + xmid ~ 1) | Plot"`` (independent random effects); nested levels
        ``"Asym ~ 1 | site/plot"`` (random effects at each level, nlme's multilevel model:
        ML or REML, no variance function or Laplace; returns a :class:`NestedNlmeFit`).
    start : dict or array, optional
        Starting fixed effects (a dict by parameter, a value or a list for a parameter with
        covariates, or one array in the order of the fixed effects).  Self-starting models
        start from R's ``getInitial`` values (covariate effects from 0).
    method : {"ML", "REML", "Laplace"}
        ``"ML"``, ``"REML"``: nlme's Lindstrom-Bates estimates (REML as nlme computes it:
        the fixed effects and relative covariance of the ML fit, the restricted likelihood
        and its sigma).  ``"Laplace"``: lme4's ``nlmer`` criterion, the Laplace
        approximation of the marginal likelihood maximized over covariance and fixed
        effects jointly (started from the Lindstrom-Bates fit).
    covariance : {"general", "diag"}, optional
        Overrides the structure written in ``random``.
    weights : VarianceFunction or "varPower", optional
        A variance function of ``mm.var`` (nlme's ``weights =``): ``mm.var.Power()``
        (residual sd proportional to ``|fitted|^power``; the string ``"varPower"`` is the
        same), ``mm.var.Power("x")``, ``mm.var.Exp(...)``, ``mm.var.Ident("Type")``,
        ``mm.var.Fixed("x")``, ``mm.var.Combined(...)``; with ``method="ML"`` or
        ``"REML"`` (not ``"Laplace"``).  The object given is not modified (a copy is
        bound to the data).
    tolerance, max_iter
        Relative change of the estimates at which the alternation stops; its cap.
    data_name : str, optional
        Shown on the summary's Data line.
    n_agq : int
        With ``method="Laplace"`` and one scalar random effect (``"Asym ~ 1 | Tree"``): the
        number of adaptive Gauss-Hermite quadrature nodes per group, 1 to 25 (1: the
        Laplace approximation).  More than one node estimates the fixed effects, the
        random-effect sd and sigma jointly (sigma is not profiled out) and takes standard
        errors from the Hessian of the quadrature deviance
        (:func:`mixedmodels.optim.nonlinear_agq.fit_agq`).

    Returns
    -------
    NlmeFit
        (:class:`NestedNlmeFit` with nested grouping levels.)
    """
    from mixedmodels.core.nonlinear import NonlinearProblem, RowVariance
    from mixedmodels.design.nonlinear import build_nlme_design
    from mixedmodels.optim.nonlinear import fit_lindstrom_bates
    from mixedmodels.results.nlme_fit import NlmeFit

    n_agq = _check_nlme_n_agq(n_agq, method, weights)
    if method not in ("ML", "REML", "Laplace"):
        raise ArgumentError(f"method must be 'ML', 'REML' or 'Laplace', got {method!r}")
    variance = _nlme_variance(weights, method)
    tolerance = float(tolerance)
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ArgumentError(f"tolerance must be a positive number, got {tolerance!r}")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    design = build_nlme_design(
        model, data, fixed, random, covariance,
        extra_columns=_variance_columns(variance),
    )
    if design.n_dropped:
        warnings.warn(design.dropped_message(), RowsDroppedWarning, stacklevel=2)
    beta0 = _nlme_start(design, start)
    cov = design.covariates
    function = design.model
    if design.random.nesting:
        return _nlme_nested(design, beta0, method, variance, tolerance, max_iter,
                            _data_name(data, data_name))
    problem = NonlinearProblem(
        y=design.y,
        model=function.rows(cov),
        n_model_parameters=len(function.parameters),
        fixed_matrices=design.fixed_matrices,
        function_index=design.function_index,
        random_index=design.random_index,
        groups=design.groups,
        n_groups=len(design.levels),
        diagonal=design.random.diagonal,
        reml=method == "REML",
        variance=None if variance is None else RowVariance(variance, design.extra, design.groups),
        values=function.values(cov),
        random_affine=function.affine_in(design.random.parameters),
    )
    if n_agq > 1 and problem.n_theta != 1:
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) needs one scalar random "
            f"effect; {random!r} has {problem.n_theta} random-effect parameters"
        )
    if design.y.size <= problem.p + problem.q:
        raise DataError(
            f"{design.y.size} observations are too few for {problem.p} fixed "
            "effects and the random effects"
        )
    estimate = fit_lindstrom_bates(problem, beta0, tolerance=tolerance, max_iter=max_iter)
    if method == "Laplace":
        from mixedmodels.optim.nonlinear import fit_laplace

        estimate = fit_laplace(problem, estimate)
        if n_agq > 1:
            from mixedmodels.optim.nonlinear_agq import fit_agq

            def stacked(phi: np.ndarray, copies: int) -> np.ndarray:
                tiled = {name: np.tile(v, copies) for name, v in cov.items()}
                return function(phi, tiled, gradient=False)[0]

            estimate = fit_agq(problem, estimate, n_agq, values=stacked)
    if not estimate.converged:
        text = (f"the Lindstrom-Bates iteration did not converge in {max_iter} iterations "
                f"(tolerance {tolerance:g})")
        if estimate.message != "maximum number of iterations reached":
            text = f"the fit did not converge: {estimate.message}"  # what failed
        warnings.warn(text, ConvergenceWarning, stacklevel=2)
    return NlmeFit(design, problem, estimate, method, beta0, data_name=_data_name(data, data_name),
                   n_agq=n_agq)


def _nlme_nested(design, beta0, method, variance, tolerance, max_iter, data_name):
    """:func:`nlme` with nested grouping levels (``site/plot``): nlme's Lindstrom-Bates
    alternation over every level's covariance (ML, or nlme's REML), no variance function
    or Laplace yet."""
    from mixedmodels.core.nonlinear import Level, MultilevelProblem
    from mixedmodels.optim.nonlinear_multilevel import fit_multilevel
    from mixedmodels.results.nlme_fit import NestedNlmeFit

    nesting = "/".join(design.random.nesting)
    if method == "Laplace":
        raise ArgumentError(f"method='Laplace' is not available with nested grouping "
                            f"({nesting}) yet: use 'ML' or 'REML'")
    if variance is not None:
        raise ArgumentError(f"variance functions (weights=) are not available with nested "
                            f"grouping ({nesting}) yet")
    cov = design.covariates
    function = design.model
    levels = [Level(list(design.random_index), codes, len(labels), design.random.diagonal)
              for codes, labels in zip(design.level_groups, design.level_levels, strict=True)]
    problem = MultilevelProblem(
        y=design.y,
        model=function.rows(cov),
        n_model_parameters=len(function.parameters),
        fixed_matrices=design.fixed_matrices,
        function_index=design.function_index,
        levels=levels,
        reml=method == "REML",
    )
    if design.y.size <= problem.p + problem.n_random:
        raise DataError(
            f"{design.y.size} observations are too few for {problem.p} fixed "
            "effects and the random effects"
        )
    estimate = fit_multilevel(problem, beta0, tolerance=tolerance, max_iter=max_iter)
    if not estimate.converged:
        warnings.warn(
            f"the Lindstrom-Bates iteration did not converge in {max_iter} iterations "
            f"(tolerance {tolerance:g})",
            ConvergenceWarning,
            stacklevel=3,
        )
    return NestedNlmeFit(design, problem, estimate, method, beta0, data_name=data_name)


def _check_nlme_n_agq(n_agq: object, method: str, weights: object) -> int:
    """``n_agq`` of :func:`nlme` as an int from 1 to 25; more than one node needs
    ``method="Laplace"`` and no variance function (the random-effect count is checked once
    the design is built)."""
    n_agq = check_int(n_agq, "n_agq", minimum=1, maximum=25)
    if n_agq > 1 and method != "Laplace":
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) needs method='Laplace', "
            f"not {method!r}"
        )
    if n_agq > 1 and weights is not None:
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) does not combine with "
            f"weights={weights!r} (a variance function)"
        )
    return n_agq


def _nlme_variance(weights, method: str) -> VarianceFunction | None:
    """A copy of the variance function asked for (the user's object is left unbound);
    ``"varPower"`` is ``mm.var.Power()``."""
    import copy

    from mixedmodels.core.variance_functions import Power

    if weights is None:
        return None
    given = weights
    if isinstance(weights, str) and weights in ("varPower", "varPower()"):
        weights = Power()
    if not isinstance(weights, VarianceFunction):
        raise ArgumentError(
            "weights must be a variance function (mm.var.Power(), mm.var.Exp('x'), "
            "mm.var.Ident('g'), mm.var.Fixed('x'), mm.var.Combined(...)) or 'varPower', "
            f"got {weights!r}"
        )
    if method == "Laplace":
        raise ArgumentError(
            f"weights={given!r}: variance functions are available with method='ML' or "
            "'REML', not 'Laplace'"
        )
    return copy.deepcopy(weights)


def _variance_columns(variance: VarianceFunction | None) -> list[str]:
    """The data columns a variance function reads (not the fitted values)."""
    from mixedmodels.core.variance_functions import FITTED

    if variance is None:
        return []
    return list(dict.fromkeys(c for c in variance.columns() if c != FITTED))


def _self_start_initial(model, covariates: dict, y: np.ndarray) -> dict[str, float]:
    """Starting values of a self-starting model (R's ``getInitial``)."""
    from mixedmodels.core.selfstart import INITIAL

    roles = model.self_start_roles(covariates)
    values = INITIAL[model.self_start](roles, np.asarray(y, dtype=float), model.on)
    return dict(zip(model.parameters, (float(v) for v in values), strict=True))


def _nlme_start(design, start) -> np.ndarray:
    """Starting fixed effects: given, or the self-starting model's (R's getInitial)."""
    p = design.n_fixed
    if start is None:
        if design.model.self_start is None:
            raise ArgumentError(
                "start= is needed for a model expression (only self-starting models such as "
                "SSlogis compute their own starting values)"
            )
        initial = _self_start_initial(design.model, design.covariates, design.y)
        values = []
        for par in design.parameters:
            values += [initial[par.name]] + [0.0] * (len(par.columns) - 1)
        return np.array(values)
    if isinstance(start, dict):
        values = []
        for par in design.parameters:
            if par.name not in start:
                raise ArgumentError(f"start= has no value for parameter {par.name!r}")
            v = np.atleast_1d(np.asarray(start[par.name], dtype=float))
            if v.size == 1 and len(par.columns) > 1:
                v = np.concatenate([v, np.zeros(len(par.columns) - 1)])
            if v.size != len(par.columns):
                raise ArgumentError(f"start= for {par.name!r} needs {len(par.columns)} values")
            values += list(v)
        out = np.array(values)
    else:
        try:
            out = np.asarray(start, dtype=float).ravel()
        except (TypeError, ValueError):
            raise ArgumentError("start= must be a dict or a sequence of numbers") from None
        if out.size != p:
            raise ArgumentError(
                f"start= needs {p} values (the fixed effects "
                f"{', '.join(design.fixed_names)}), got {out.size}"
            )
    if not np.all(np.isfinite(out)):
        raise ArgumentError("start= values must be finite")
    return out


def _has_smooths(formula: str) -> bool:
    from mixedmodels.formula import parse_formula

    return bool(parse_formula(formula).smooths)


def gamm(
    formula: str,
    data: pd.DataFrame,
    family: str | Family = "gaussian",
    **kwargs,
) -> LmerFit | GlmerFit:
    """An additive mixed model: :func:`lmer` (Gaussian) or :func:`glmer` (other families)
    of a formula with smooth terms, as R's ``gamm4(y ~ s(x), random = ~(1 | g))`` written
    in one formula: ``mm.gamm("y ~ s(x) + (1 | g)", df)``.

    Smooths: ``s(x)`` (thin plate regression spline, ``k = 10``), ``s(x, bs = "cr", k =
    ...)``, ``s(x, by = f)`` (one smooth per level of the factor ``f``), ``t2(x, z)``
    (tensor product), ``s(g, bs = "re")`` (random intercept), ``s(x, g, bs = "fs")`` (a
    smooth per level of ``g``).  Each smooth's wiggliness is a variance component
    estimated by REML (Laplace for GLMMs); results: ``fit.smooth("x")``,
    ``fit.smooth_table()``, ``fit.edf``, ``mixedmodels.plots.plot_smooths(fit)``.

    Other keyword arguments go to :func:`lmer` or :func:`glmer`.
    """
    gaussian = family == "gaussian" or (isinstance(family, Family) and family.name == "gaussian")
    if gaussian:
        return lmer(formula, data, **kwargs)
    return glmer(formula, data, family, **kwargs)
