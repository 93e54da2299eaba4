"""Agreement review of ``mm.nlme`` against ``nlme::nlme`` on cases that are not in
tests/results/test_nlme_fit.py (reference values, data and each case's Python arguments made by
tests/reference/nlmecheck/make_nlmecheck.R; nlme 3.1-162).

The cases (33 nlme fits, simulated with set.seed): the self-starting models not fitted
elsewhere (SSmicmen, SSgompertz, SSfpl with two diagonal random effects and with all four
diagonal or general, SSbiexp with a general 2 x 2 covariance, SSlogis on log(age)); an
expression with a data column inside (``(b0 + b1 * dose) * exp(-k * t)``); covariates on the
asymptote (continuous, ML and REML, ``log(x + 3)``, ``factor(code)``, ``trt * x``, a factor
without intercept, a factor on two parameters, covariates varying within groups); three random
effects general (ML, REML) and diagonal; fixed formulas and random effects in another order
than the model's arguments; unbalanced groups (2 to 12 rows), a group with one row; missing
values in the response, a covariate, the grouping column and a factor (rows dropped and
counted); integer group ids whose text order differs from their numeric order; shuffled rows;
``varPower()`` on SSmicmen; a variance at its boundary; a singular 2 x 2 covariance; three
likelihood-ratio tests; nine other starting values.  Three cases nlme fits and mm.nlme does
not (varPower with REML, nested ``site/plot`` grouping, a transformed response) and four
starts from which our alternation fails are ``xfail(strict=True)`` with the diagnosis.

Tolerances.  ``converged`` (nlme with tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500: the
fixed point of the Lindstrom-Bates iteration, which mm.nlme computes): the issue's
log-likelihood 1e-6 relative, fixed effects 1e-4, standard errors, random-effect sds, sigma and
correlations 1e-3.  Measured largest gaps: logLik 4.0e-9, fixed effects 1.2e-7, SEs 9.7e-7,
sds 9.8e-7, correlations 2.4e-7 (absolute), sigma 2.3e-5 (micmen_varpower, where nlme's tight
fit ends on a failed step halving; 1.3e-7 elsewhere).  ``default`` (nlme's defaults, which stop
up to ~1e-4 from the fixed point): logLik 2e-5 relative, fixed effects and SEs 1e-3 (measured
6.6e-6, 1.9e-4, 4.6e-4), the tolerances of test_nlme_fit.py.  Conditional modes, per-group
coefficients, fitted values and predictions: 1e-5 relative (measured 4.4e-7 at most).
Where nlme's tight fit stops at its iteration cap (UNCONVERGED: singular_2x2, fpl_general4)
our log-likelihood is the higher one (by 5.0e-5 and 1.4e-4 absolute) and those values are
compared at the issue's 1e-3 (measured: sds 5.2e-4, fitted 1.8e-5).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedmodels as mm
from mixedmodels.core.selfstart import INITIAL

HERE = Path(__file__).resolve().parents[1] / "reference" / "nlmecheck"
REF = json.loads((HERE / "nlmecheck_reference.json").read_text())

#: Cases nlme fits and mm.nlme does not (yet): name -> diagnosis.
XFAIL = {
    "nested_groups": "nested grouping 'Asym ~ 1 | site/plot': design/nonlinear.py parse_random "
                     "takes one grouping column (FormulaError); nlme fits multilevel models",
    "log_response": "transformed response 'log(size) ~ log(...)': design/nonlinear.py "
                    "_parse_model requires a column name on the left (FormulaError)",
}


def _cases(names: list[str]) -> list:
    mark = {n: pytest.mark.xfail(strict=True, raises=mm.errors.MixedModelsError, reason=r)
            for n, r in XFAIL.items()}
    return [pytest.param(n, marks=mark[n]) if n in XFAIL else n for n in names]


CASES = _cases(list(REF["cases"]))

#: Cases where nlme's tight fit stops at its iteration cap (a singular covariance: each LME
#: step ends at nlminb's evaluation limit, or a singular precision matrix) short of the fixed
#: point mm.nlme reaches; our log-likelihood is the higher one (test_higher_than_nlme) and the
#: values derived from the estimates are compared at the issue's 1e-3 instead of 1e-5.
UNCONVERGED = [n for n, c in REF["cases"].items()
               if any("reached without convergence" in w for w in c["warnings"]["converged"])]


def _tol(name: str, tight: float) -> float:
    return 1e-3 if name in UNCONVERGED else tight


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def kwargs_of(name: str) -> dict:
    """``mm.nlme`` keyword arguments of a case, as the R script wrote them."""
    py = dict(REF["cases"][name]["py"])
    py.pop("n_dropped", None)
    return py


def fit_case(name: str) -> mm.NlmeFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.errors.RowsDroppedWarning)
        return mm.nlme(data=load(name), **kwargs_of(name))


class Fits(dict):
    """The fits by case; a case whose fit raised raises that error again when asked for."""

    def __getitem__(self, name: str) -> mm.NlmeFit:
        value = super().__getitem__(name)
        if isinstance(value, Exception):
            raise value
        return value


@pytest.fixture(scope="module")
def fits() -> Fits:
    out = Fits()
    for name in REF["cases"]:
        try:
            out[name] = fit_case(name)
        except mm.errors.MixedModelsError as error:
            if name not in XFAIL:
                raise
            out[name] = error
    return out


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _group_order(fit: mm.NlmeFit, groups: list) -> list[int]:
    """Positions of R's groups (by label) among ours."""
    ours = [str(g) for g in fit.ranef.index]
    return [ours.index(str(g)) for g in groups]


# ------------------------------------------------------------------ estimates


@pytest.mark.parametrize("name", CASES)
def test_converged_estimates(fits, name):
    fit, ref = fits[name], REF["cases"][name]["converged"]
    assert fit.converged
    assert fit.n_obs == ref["nobs"] and fit.n_groups == ref["ngroups"]
    assert abs(fit.loglik - ref["logLik"]) <= 1e-6 * abs(ref["logLik"])
    assert list(fit.fixef.index) == ref["fixef_names"]
    assert _rel(fit.fixef, ref["fixef"]) < 1e-4
    assert _rel(fit.std_errors, ref["se"]) < 1e-3
    assert _rel(fit.sigma, ref["sigma"]) < 1e-3
    cov = fit.random_covariance.to_numpy()
    sd = np.sqrt(np.diag(cov))
    assert list(fit.random_covariance.index) == [n.split(".")[0] for n in ref["re_names"]]
    # a variance at its boundary (case "boundary": nlme's log-sd stops at 2e-4, ours at
    # 4e-6) is compared on the scale of the residual sd
    ref_sd = np.asarray(ref["re_sd"])
    big = ref_sd > 1e-2 * ref["sigma"]
    assert np.all(np.abs(sd - ref_sd)[big] < 1e-3 * ref_sd[big])
    assert np.all(np.abs(sd - ref_sd)[~big] < 1e-3 * ref["sigma"])
    if ref["re_cor"] and not fit.design.random.diagonal:
        # R's lower triangle, column by column
        cor = (cov / np.outer(sd, sd)).T[np.triu_indices(len(sd), 1)]
        np.testing.assert_allclose(cor, ref["re_cor"], atol=1e-3)
    if "varPower" in ref:
        assert abs(fit.variance_power - ref["varPower"]) < 1e-4
    assert fit.n_params == ref["df"]
    np.testing.assert_allclose([fit.aic, fit.bic], [ref["AIC"], ref["BIC"]], rtol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_default_estimates(fits, name):
    fit, ref = fits[name], REF["cases"][name]["default"]
    assert abs(fit.loglik - ref["logLik"]) <= 2e-5 * abs(ref["logLik"])
    assert _rel(fit.fixef, ref["fixef"]) < 1e-3
    assert _rel(fit.std_errors, ref["se"]) < 1e-3


@pytest.mark.parametrize("name", CASES)
def test_t_table(fits, name):
    """nlme's summary table: ML SEs scaled by sqrt(n / (n - p)), containment df."""
    fit, ref = fits[name], REF["cases"][name]["converged"]["tTable"]
    table = fit.coef_table()
    np.testing.assert_array_equal(table["DF"].to_numpy(), ref["df"])
    np.testing.assert_allclose(table["Value"], ref["value"], rtol=1e-4)
    np.testing.assert_allclose(table["Std.Error"], ref["se"], rtol=1e-3)
    np.testing.assert_allclose(table["t-value"], ref["t"], rtol=1e-3)
    np.testing.assert_allclose(table["p-value"], ref["p"], rtol=1e-2, atol=1e-12)


# --------------------------------------------------- random effects, coef, fitted


@pytest.mark.parametrize("name", CASES)
def test_ranef_coef_fitted(fits, name):
    fit, ref = fits[name], REF["cases"][name]["converged"]
    rtol = _tol(name, 1e-5)
    order = _group_order(fit, ref["ranef_groups"])
    ranef = fit.ranef.to_numpy()[order]
    for j, values in enumerate(ref["ranef"].values()):
        scale = max(np.max(np.abs(values)), ref["sigma"])  # 0 at a boundary: sigma's scale
        assert np.max(np.abs(ranef[:, j] - values)) < rtol * scale
    # nlme's coef is per fixed effect (Asym.(Intercept), Asym.x, ... with the random effect
    # added to its column); ours is each group's curve parameters at its first row: the
    # same numbers through the fixed-effects design row
    coef = fit.coef().to_numpy()[order]
    rows = np.array([np.flatnonzero(fit.design.groups == k)[0] for k in range(fit.n_groups)])
    rows = rows[order]
    rcoef = ref["coef"]
    for k, par in enumerate(fit.design.parameters):
        j = fit.design.function_index[k]
        if list(par.columns) == ["(Intercept)"] and par.name in rcoef:
            want = np.asarray(rcoef[par.name])
        else:
            x = fit.design.fixed_matrices[k][rows]
            want = sum(np.asarray(rcoef[f"{par.name}.{c}"]) * x[:, i]
                       for i, c in enumerate(par.columns))
            if f"{par.name}.(Intercept)" in rcoef and "(Intercept)" not in par.columns:
                want = want + np.asarray(rcoef[f"{par.name}.(Intercept)"])
        np.testing.assert_allclose(coef[:, j], want, rtol=rtol, err_msg=par.name)
    np.testing.assert_allclose(fit.fitted(0), ref["fitted0"], rtol=rtol)
    np.testing.assert_allclose(fit.fitted(1), ref["fitted1"], rtol=rtol)
    scale = np.max(np.abs(ref["resid1"]))
    assert np.max(np.abs(fit.residuals(1) - ref["resid1"])) < rtol * scale


@pytest.mark.parametrize("name", _cases([n for n in REF["cases"] if "predict" in REF["cases"][n]]))
def test_predict_new_rows(fits, name):
    """nlme's predict(level = 0:1) of the converged fit on new rows (extrapolating in x)."""
    fit, ref = fits[name], REF["cases"][name]["predict"]
    new = pd.DataFrame(ref["newdata"])
    rtol = _tol(name, 1e-5)
    np.testing.assert_allclose(fit.predict(new, level=0), ref["level0"], rtol=rtol)
    np.testing.assert_allclose(fit.predict(new, level=1), ref["level1"], rtol=rtol)


@pytest.mark.parametrize("name", _cases([n for n in REF["cases"]
                                         if "getInitial" in REF["cases"][n]]))
def test_self_start_initial(fits, name):
    """The self-start's pooled starting values against stats::getInitial on the same rows
    (R ends them with nls(), which stops within a few 1e-6: 2e-5 relative, as
    tests/core/test_selfstart.py)."""
    fit, want = fits[name], REF["cases"][name]["getInitial"]
    model = fit.design.model
    roles = model.self_start_roles(fit.design.covariates)
    got = INITIAL[model.self_start](roles, fit.design.y, model.on)
    assert list(model.parameters) == list(want)
    np.testing.assert_allclose(got, list(want.values()), rtol=2e-5)


@pytest.mark.parametrize("name", UNCONVERGED)
def test_higher_than_nlme(fits, name):
    """Where nlme stops at its cap, ours converges and its log-likelihood is not lower than
    nlme's (tight or default), and within the issue's 1e-6 of it."""
    fit, case = fits[name], REF["cases"][name]
    assert fit.converged
    for which in ("converged", "default"):
        assert fit.loglik >= case[which]["logLik"] - 1e-9 * abs(case[which]["logLik"])
    assert fit.loglik - case["converged"]["logLik"] < 1e-6 * abs(case["converged"]["logLik"])


# ------------------------------------------------------------ other starts

POOR = REF["poor_starts"]


@pytest.mark.parametrize(
    "i", range(len(POOR)), ids=[f"{e['case']}-{i}" for i, e in enumerate(POOR)]
)
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_other_starts_reach_the_optimum(i):
    """From starts away from the optimum our fit reaches the best log-likelihood nlme
    reaches from a good start (1e-6 relative), never below nlme's from the same start
    (nlme itself stops at logLik 34.60 from k >= 1 on the expression model, at -745 and -900
    from two of the three logistic starts).  From k >= 1 on the expression model our
    alternation used to raise ConvergenceError: the PNLS step started at the LME step's
    undamped solution, which jumped to k = -8.85 where exp(-k t) overflowed; it now starts
    from the better of that solution and the current estimates."""
    entry = POOR[i]
    best = REF["cases"][entry["case"]]["converged"]["logLik"]
    kwargs = kwargs_of(entry["case"]) | {"start": entry["start"]}
    fit = mm.nlme(data=load(entry["case"]), **kwargs)
    assert abs(fit.loglik - best) <= 1e-6 * abs(best)
    # nlme's tight fits of one model from different starts end up to 1.4e-9 (relative)
    # apart (85.9023037 from the case's start, 85.9023039 from (-2, 3, 0.1)): 1e-8
    for which in ("default", "converged"):
        if "logLik" in entry[which]:
            assert fit.loglik >= entry[which]["logLik"] - 1e-8 * abs(entry[which]["logLik"])


def test_shuffled_rows_give_the_sorted_fit(fits):
    """An identity: the shuffled data sorted back give the same start and fit."""
    data = load("shuffled")
    ordered = data.sort_values(["g", "age"]).reset_index(drop=True)
    fit = mm.nlme(data=ordered, **kwargs_of("shuffled"))
    np.testing.assert_allclose(fit.start, fits["shuffled"].start, rtol=1e-8)
    assert fit.loglik == pytest.approx(fits["shuffled"].loglik, rel=1e-10)


# --------------------------------------------------------- data handling


@pytest.mark.parametrize("name", ["missing", "single_obs_group"])
def test_missing_rows_dropped_and_counted(name):
    n_dropped = REF["cases"][name]["py"]["n_dropped"]
    data = load(name)
    before = data.copy()
    with pytest.warns(mm.errors.RowsDroppedWarning, match=f"^{n_dropped} row"):
        fit = mm.nlme(data=data, **kwargs_of(name))
    pd.testing.assert_frame_equal(data, before)
    assert fit.n_obs == len(data) - n_dropped == REF["cases"][name]["converged"]["nobs"]


def test_numeric_groups_in_numeric_order(fits):
    """Integer ids (7, 23, 101, 5, ...): nlme sorts the levels numerically; so do we (as text
    "101" would come before "23")."""
    ref = REF["cases"]["numeric_group"]["converged"]["ranef_groups"]
    assert [str(g) for g in fits["numeric_group"].ranef.index] == [str(g) for g in ref]


def test_reml_keeps_ml_fixed_effects(fits):
    """nlme's REML (with a covariate): the ML fit's fixed effects, sigma^2 scaled by
    n / (n - p)."""
    ml, reml = fits["asym_on_x"], fits["asym_on_x_reml"]
    np.testing.assert_allclose(reml.fixef, ml.fixef, rtol=1e-7)
    n, p = ml.n_obs, len(ml.fixef)
    np.testing.assert_allclose(reml.sigma**2 * (n - p), ml.sigma**2 * n, rtol=1e-8)


# ------------------------------------------------------------------ anova


@pytest.mark.parametrize("pair", list(REF["anova"]))
def test_anova_lrt(fits, pair):
    ref = REF["anova"][pair]["converged"]
    small, big = ref["models"]
    table = fits[small].anova(fits[big])
    np.testing.assert_array_equal(table["df"], ref["df"])
    np.testing.assert_allclose(table["logLik"], ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(table["AIC"], ref["AIC"], rtol=1e-6)
    np.testing.assert_allclose(table["BIC"], ref["BIC"], rtol=1e-6)
    # the statistic is a difference of two log-likelihoods each within ~1e-9 relative
    assert table["L.Ratio"].iloc[1] == pytest.approx(ref["L.Ratio"], rel=1e-5)
    assert table["p-value"].iloc[1] == pytest.approx(ref["p"], rel=1e-4)
    ddf = ref["df"][1] - ref["df"][0]
    assert table["p-value"].iloc[1] == pytest.approx(stats.chi2.sf(ref["L.Ratio"], ddf),
                                                     rel=1e-4)


# ---------------------------------------------------------------- summary


_NUMBER = r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def _last_digit(token: str) -> float:
    """The unit of the last printed digit of a number (0.001 for "0.05877" -> 1e-5)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def summary_numbers(text: str) -> dict:
    """The numbers of an nlme-layout summary: AIC/BIC/logLik, random-effect StdDevs, the
    fixed-effects table, residual quantiles, observation and group counts."""
    lines = text.splitlines()
    out: dict = {}
    i = next(k for k, line in enumerate(lines) if line.split()[:3] == ["AIC", "BIC", "logLik"])
    out["criteria"] = [float(v) for v in lines[i + 1].split()]
    start = next(k for k, line in enumerate(lines) if line.startswith("Random effects:"))
    end = next(k for k in range(start, len(lines)) if not lines[k].strip())
    sds, stop = [], False
    for line in lines[start + 1: end]:
        words = line.split()
        if stop or not words or words[0] in ("Formula:", "Level:", "Structure:", "StdDev:",
                                             "StdDev"):
            if words and words[0] == "StdDev:":  # one random effect: a row of numbers
                sds = [float(v) for v in words[1:]]
                stop = True
            continue
        if re.fullmatch(_NUMBER, words[1]):
            sds.append(float(words[1]))
    out["sd"] = sds
    start = next(k for k, line in enumerate(lines) if line.startswith("Fixed effects:"))
    table, step = [], []
    for line in lines[start + 2:]:
        words = line.split()
        if not words or not re.fullmatch(_NUMBER, words[-1]):
            break
        table.append([float(v) for v in words[-5:]])
        step.append([_last_digit(v) for v in words[-5:]])
    out["table"], out["table_step"] = np.array(table), np.array(step)
    i = next(k for k, line in enumerate(lines) if line.split() == ["Min", "Q1", "Med", "Q3",
                                                                  "Max"])
    out["quantiles"] = [float(v) for v in lines[i + 1].split()]
    out["nobs"] = int(re.search(r"Number of Observations: (\d+)", text).group(1))
    out["ngroups"] = int(re.search(r"Number of Groups: (\d+)", text).group(1))
    return out


@pytest.mark.parametrize("name", CASES)
def test_summary_numbers(fits, name):
    """Our summary's printed numbers against nlme's printed summary of the converged fit:
    7 significant digits (5e-7 rounding) plus nlme's stop (sigma 2.3e-5 on micmen_varpower,
    which enters the standardized residuals): 5e-5 relative.  nlme rounds each column of the
    fixed-effects table to common decimals (Vm 202.0718 and K 0.05877 in one column; we print
    7 significant digits each): there half a unit of nlme's last digit is added."""
    ours = summary_numbers(fits[name].summary())
    theirs = summary_numbers(REF["cases"][name]["converged"]["summary_text"])
    rtol = _tol(name, 5e-5)
    np.testing.assert_allclose(ours["criteria"], theirs["criteria"], rtol=5e-5)
    sigma = REF["cases"][name]["converged"]["sigma"]  # a boundary sd: sigma's scale
    np.testing.assert_allclose(ours["sd"], theirs["sd"], rtol=rtol, atol=1e-3 * sigma)
    assert ours["table"].shape == theirs["table"].shape
    gap = np.abs(ours["table"] - theirs["table"])
    assert np.all(gap <= 0.5 * theirs["table_step"] + rtol * np.abs(theirs["table"]))
    np.testing.assert_allclose(ours["quantiles"], theirs["quantiles"], rtol=rtol, atol=1e-6)
    assert (ours["nobs"], ours["ngroups"]) == (theirs["nobs"], theirs["ngroups"])
