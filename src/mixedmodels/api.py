"""Public entry points: short functions chaining parse -> design -> engine -> optimizer."""

from __future__ import annotations

import warnings

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
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.pirls import GlmmProblem, PirlsError
from mixedmodels.design import build_design
from mixedmodels.design.matrices import MatrixBuilder
from mixedmodels.design.sources import RowSource, row_source
from mixedmodels.design.validate import degenerate_glm_response, new_response
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
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.optim import OptimizeResult, minimize_bounded
from mixedmodels.optim.glmm import fit_glmm
from mixedmodels.optim.start import DEFAULT_STEP, moment_start
from mixedmodels.results.chunked_fit import ChunkedLmerFit
from mixedmodels.results.fit import LmerFit
from mixedmodels.results.glmer_fit import GlmerFit
from mixedmodels.results.lm_fit import LmFit

BOUNDARY_TOLERANCE = 1e-5  # lme4's lmerControl(boundary.tol = 1e-5)
MAX_RELATIVE_SD = 1e8  # the largest start theta accepted


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
    return design, _problem_for(design, reml)


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


def solve_at(problem: LmmProblem, theta: np.ndarray):
    """The solution at the optimizer's theta, or a :class:`ConvergenceError` saying why
    there is none (instead of the engine's bare exception)."""
    try:
        return problem.solve(theta)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError) as exc:
        raise ConvergenceError(
            "the model cannot be evaluated at the optimizer's estimate (theta = "
            f"{np.array2string(np.asarray(theta), precision=4)}): a matrix lost positive "
            "definiteness; the fixed effects may be (nearly) collinear or the data "
            "degenerate"
        ) from exc


def _problem_for(design, reml: bool) -> LmmProblem:
    """The engine's problem for a design (response minus offset)."""
    y = design.y if design.offset is None else design.y - design.offset
    return LmmProblem([t.block for t in design.terms], design.X, y, design.weights, reml)


def optimize_problem(problem: LmmProblem, start: np.ndarray | str | None = None) -> OptimizeResult:
    """Minimize the objective over theta, then try the boundary.

    By default scalar random intercepts start at moment estimates and a single vector term
    at per-level regressions (:func:`mixedmodels.optim.start.moment_start`), other terms at
    lme4's identity; ``start="lme4"`` uses lme4's start throughout; an array is a previous
    optimum to search near.

    As lme4's ``check.boundary``: parameters bounded at 0 that end within 1e-5 of it are set
    to exactly 0 when that does not raise the objective.
    """
    with single_threaded_blas(problem.dense_objective is not None):
        return _optimize(problem, start)


def checked_start(problem: LmmProblem, start) -> np.ndarray:
    """``start`` as a theta vector the problem accepts, or an :class:`ArgumentError`.

    ``"lme4"`` is lme4's start (1 on the diagonals of each relative factor, 0 off them).
    """
    if isinstance(start, str):
        if start != "lme4":
            raise ArgumentError(f'start must be None, "lme4" or an array, not {start!r}')
        return problem.theta_start()
    try:
        theta = np.asarray(start, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f'start must be None, "lme4" or an array of numbers, not {start!r}'
        ) from exc
    if theta.size != problem.n_theta:
        raise ArgumentError(
            f"start has {theta.size} value(s); this model has {problem.n_theta} theta "
            "parameter(s) (lme4's order: per term, the lower triangle of its relative "
            "covariance factor by columns)"
        )
    bad = ~np.isfinite(theta) | (theta < problem.theta_lower_bounds())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ArgumentError(
            f"start[{i}] = {float(theta[i])} is not allowed: diagonal elements of a relative "
            "covariance factor must be finite and >= 0"
        )
    if np.any(np.abs(theta) > MAX_RELATIVE_SD):
        i = int(np.argmax(np.abs(theta)))
        raise ArgumentError(
            f"start[{i}] = {float(theta[i]):g} is not allowed: theta holds standard deviations "
            f"relative to the residual's, and beyond {MAX_RELATIVE_SD:g} the objective overflows"
        )
    return theta


def _default_start(problem: LmmProblem) -> tuple[np.ndarray, np.ndarray | None]:
    """Moment estimates (:func:`moment_start`) when they are usable, lme4's start when
    they are not finite (degenerate data)."""
    try:
        x0, step = moment_start(problem)
    except (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError):
        return problem.theta_start(), None
    if not (np.isfinite(x0).all() and np.isfinite(step).all() and (step > 0).all()):
        return problem.theta_start(), None
    informed = step != DEFAULT_STEP
    return x0, (step if informed.any() else None)


def _optimize(problem: LmmProblem, start: np.ndarray | str | None) -> OptimizeResult:
    lower = problem.theta_lower_bounds()
    if isinstance(start, str):
        x0, initial_step = checked_start(problem, start), None
    elif start is None:
        x0, initial_step = _default_start(problem)
    else:  # a previous optimum (refits, bootstrap): search near it
        x0 = checked_start(problem, start)
        initial_step = np.maximum(0.1 * np.abs(x0), 0.02)
    # lme4's ftol_abs = 1e-8 can stop BOBYQA on one short step while a flat objective still
    # slopes (seen: 1.4e-6 above lme4's optimum, theta 2e-4 off); small models, whose
    # evaluations cost microseconds, use 1e-10 (sleepstudy: the same 29 evaluations)
    ftol = 1e-10 if problem.dense_objective is not None else 1e-8
    result = minimize_bounded(
        problem.objective, x0, lower, initial_step=initial_step, ftol_abs=ftol
    )
    theta = result.x.copy()
    best = result.fun
    near = (lower == 0) & (theta < BOUNDARY_TOLERANCE) & (theta != 0)
    if near.any():
        trial = theta.copy()
        trial[near] = 0.0
        value = problem.objective(trial)
        if value <= best:
            theta, best = trial, value
    return OptimizeResult(theta, best, result.n_evaluations, result.converged, result.message)


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
        Prior weights / offset: a column name or one value per row.
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

    Returns
    -------
    LmerFit
    """
    _check_model_arguments(formula, contrasts, data_name)
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
    if n_agq > 1 and (family.has_dispersion or family.extra_names or zi is not None):
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) is for families without a "
            f"dispersion parameter; the {family.name} family is fitted by Laplace (n_agq=1)"
        )
    design = build_design(
        formula, data, weights=weights, offset=offset, glm_family=family.name, contrasts=contrasts
    )
    _warn_dropped_rows(design)
    if n_agq > 1 and (len(design.terms) != 1 or design.terms[0].block.p != 1):
        raise ArgumentError(
            f"n_agq = {n_agq} (adaptive Gauss-Hermite quadrature) needs a single scalar "
            "random-effect term such as (1 | g); use n_agq=1 (Laplace) for this model"
        )
    if zi is not None:
        family = ZeroInflated(family, *_zi_matrix(zi, design, data))
    if n_agq == 0 and family.extra_names:
        raise ArgumentError(
            f"n_agq = 0 is not available for the {family.name} family (its own parameters "
            "are estimated in the Laplace stage); use n_agq=1"
        )
    problem = glmm_problem(design, family)
    try:
        solution = fit_glmm(problem, n_agq)
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


def _zi_matrix(zi: str, design, data: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The zero-inflation model matrix of ``zi`` (``"~1"``, ``"~x + f"``) on the rows the
    design kept, and its column names.

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
    return X, list(builder.column_names)


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
    _warn_dropped_rows(design)
    return LmFit(design, data_name=_data_name(data, data_name))


def refit_ml(fit: LmerFit) -> LmerFit:
    """The same model refitted by maximum likelihood (a REML fit's ML counterpart)."""
    if not fit.reml:
        return fit
    design = fit.design
    problem = _problem_for(design, reml=False)
    result = optimize_problem(problem)
    return LmerFit(design, problem, solve_at(problem, result.x), result, fit.data_name)


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
    design = fit.design
    y = new_response(y, design.n)
    offset = 0.0 if design.offset is None else design.offset
    problem = fit.problem.with_response(y - offset)
    result = optimize_problem(problem, fit.theta)
    return LmerFit(
        design.with_response(y), problem, solve_at(problem, result.x), result, fit.data_name
    )
