"""Starting values of the self-starting models, as R's ``getInitial`` computes them.

Each algorithm follows R's ``stats`` self-start (``SSlogis``, ``SSasymp``, ...): a quick
linearizing guess (a logit or log transform, an inverse regression, curve peeling) from the
data averaged at each distinct covariate value (R's ``sortedXyData``; ``SSfol`` uses the
rows as given), followed by a least-squares fit of the model to those data.  R does the
last step with ``nls(algorithm = "plinear")``; here it is a Levenberg-Marquardt fit of all
parameters from the guess (the conditionally linear parameters solved exactly first), so
both end at the least-squares optimum.

The model itself is not known here (no formulas in the numeric core): the caller passes
``model_on(covariates)``, which returns a function of the parameter vector giving the
model's values and Jacobian on those covariates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import numpy as np

from mixedmodels.errors import DataError
from mixedmodels.linalg.optional_kernels import OptionalKernels

try:  # numpy's LAPACK gufuncs behind np.linalg.solve and lstsq (their checks cost 3 of 5 us)
    from numpy.linalg import _umath_linalg
except ImportError:  # pragma: no cover - a numpy without it
    _umath_linalg = None

#: numpy's ``finfo(float).eps``: lstsq's default ``rcond`` is it times ``max(m, k)``.
_EPS = float(np.finfo(float).eps)

ModelOn = Callable[[dict[str, np.ndarray]], Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]


def sorted_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R's ``sortedXyData``: distinct ``x`` in increasing order, ``y`` averaged at each."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all():
        x, y = x[ok], y[ok]
    # np.unique(x, return_inverse=True) by one sort (its wrapper cost more than the work)
    order = x.argsort()
    ordered = x[order]
    first = np.empty(ordered.size, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    ux = ordered[first]
    inverse = np.empty(ordered.size, dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    sums = np.bincount(inverse, weights=y, minlength=ux.size)
    counts = np.bincount(inverse, minlength=ux.size)
    return ux, sums / counts


def rt_asymptote(x: np.ndarray, y: np.ndarray) -> float:
    """R's ``NLSstRtAsymptote``: the response range's end nearer the last response, moved
    outwards by an eighth of the range."""
    lo, hi = float(y.min()), float(y.max())
    last = y[-1]
    if abs(hi - last) < abs(lo - last):
        return hi + (hi - lo) / 8
    return lo - (hi - lo) / 8


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the least-squares line ``y ~ x``."""
    design = np.empty((x.size, 2))
    design[:, 0] = 1.0
    design[:, 1] = x
    coef = _lstsq(design, y)
    return float(coef[0]), float(coef[1])


def _linear(columns: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``y`` on ``columns`` (np.column_stack's matrix)."""
    a = np.empty((y.size, len(columns)))
    for j, column in enumerate(columns):
        a[:, j] = column
    return _lstsq(a, y)


def _lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``np.linalg.lstsq(a, y, rcond=None)[0]`` for float ``a`` (m, k) and ``y`` (m,): the
    same LAPACK call (numpy's gufunc, its default ``rcond``) without the wrapper's checks
    (10 of its 12 us); numpy's own call where the result is not finite (its error then)."""
    if _umath_linalg is not None and a.dtype == np.float64 and y.dtype == np.float64:
        m, k = a.shape
        with np.errstate(all="ignore"):
            coef = _umath_linalg.lstsq(a, y[:, None], _EPS * max(m, k),
                                       signature="ddd->ddid")[0][:, 0]
        if all(map(math.isfinite, coef.tolist())):
            return coef.copy()
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef


def least_squares_fit(
    fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], y: np.ndarray, start: np.ndarray,
    max_iter: int = 500,
) -> np.ndarray:
    """The least-squares fit of ``fun`` (values and Jacobian) to ``y`` from ``start``:
    Levenberg-Marquardt, stopping when a step changes the parameters by less than 1e-12
    relative (1e-8 when the damping is at most 1e-6: :func:`_tiny`) or the residual sum
    of squares by less than 1e-15 relative."""
    p = np.asarray(start, dtype=float).copy()
    if not all(map(math.isfinite, p.tolist())):
        raise DataError("the self-starting model found no finite starting values for these data")
    with np.errstate(all="ignore"):  # once for every solve (a singular one gives NaN)
        return _levenberg_marquardt(fun, y, p, max_iter)


def _levenberg_marquardt(
    fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], y: np.ndarray, p: np.ndarray,
    max_iter: int,
) -> np.ndarray:
    """:func:`least_squares_fit`'s iteration from finite ``p`` (under ``np.errstate(all=
    "ignore")``: :func:`_solve` and the model rely on it); one model call per trial (an
    accepted trial's Jacobian serves the next step)."""
    f, jac = fun(p)
    r = y - f
    rss = float(r @ r)
    if not math.isfinite(rss):
        raise DataError("the self-starting model is not finite at its starting values")
    isfinite = math.isfinite
    kernels = selfstart_kernels()
    damped, trial_step = ((kernels.damped, kernels.trial_step) if kernels is not None
                          else (_damped, _trial_step))
    mu = 1e-3
    for _ in range(max_iter):
        jtj = jac.T @ jac
        jtr = jac.T @ r
        while True:
            step = _solve(damped(jtj, mu), jtr)
            trial, finite, relative = trial_step(p, step)
            new = math.inf  # (a non-finite trial or residual sum of squares: no decrease)
            if finite:
                f_trial, jac_trial = fun(trial)
                r_trial = y - f_trial
                value = float(r_trial @ r_trial)
                if isfinite(value):
                    new = value
            if new <= rss:
                break
            if mu <= 1e-6 and relative < 1e-8:  # _tiny: a rounding-level step that does
                return p                          # not decrease: optimal
            mu *= 10
            if mu > 1e12:
                return p
        small = (mu <= 1e-6 and relative < 1e-8) or relative < 1e-12  # _tiny, or smaller
        gain = rss - new
        p, rss = trial, new
        jac, r = jac_trial, r_trial
        mu = max(mu / 10, 1e-12)
        if small or gain <= 1e-15 * rss:
            break
    return p


def _damped(jtj: np.ndarray, mu: float) -> np.ndarray:
    """``jtj + mu diag(max(diag(jtj), 1e-300))`` (the Marquardt damping): a copy with the
    diagonal's sums on Python floats (the same IEEE operations as numpy's on k values, NaN
    kept), the rest as it is (adding 0 would turn -0 into 0).  Compiled:
    :func:`mixedmodels.core.selfstart_kernels.damped`."""
    out = jtj.copy()
    for i, d in enumerate(jtj.diagonal().tolist()):
        out[i, i] = d + mu * max(d, 1e-300)
    return out


def _trial_step(p: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """``p + step``, whether it is all finite, and :func:`_relative_step`.  Compiled:
    :func:`mixedmodels.core.selfstart_kernels.trial_step`."""
    trial = p + step
    return trial, all(map(math.isfinite, trial.tolist())), _relative_step(step, p)


#: Use the compiled steps when numba loads; False forces the Python code (the tests
#: compare both).
USE_KERNELS = True
_KERNELS = OptionalKernels(
    "mixedmodels.core.selfstart_kernels",
    "the compiled steps of the self-starting models' fit",
    "using Python",
)


def selfstart_kernels() -> ModuleType | None:
    """The compiled steps' module, or None (switched off by :data:`USE_KERNELS`, numba
    missing or failing to load)."""
    return _KERNELS.load() if USE_KERNELS else None


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve(a, b)`` (the same LAPACK call, the same values), NaN where numpy
    raises for a singular matrix (the step is then no step).  Called under
    ``np.errstate(all="ignore")`` (:func:`least_squares_fit`)."""
    if _umath_linalg is None:
        try:
            return np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            return np.full_like(b, np.nan)
    out = _umath_linalg.solve1(a, b, signature="dd->d")
    return out if all(map(math.isfinite, out.tolist())) else np.full_like(b, np.nan)


def _tiny(step: np.ndarray, p: np.ndarray, mu: float) -> bool:
    """A nearly Gauss-Newton step (damping at most 1e-6) below 1e-8 relative: the
    iteration converges linearly with a small ratio there, so what is left is below 1e-9
    relative, where the residual sum of squares only rounds (Orange's SSlogis spent 18 of
    its 26 evaluations wandering in the last digits after such a step)."""
    return mu <= 1e-6 and bool(_relative_step(step, p) < 1e-8)


def _relative_step(step: np.ndarray, p: np.ndarray) -> float:
    """``max |step| / max(|p|, 1e-8)`` (on Python floats: the same IEEE operations, and
    NaN for the all-NaN step of a singular system, as numpy's maximum gives)."""
    ratios = [abs(s) / max(abs(q), 1e-8) for s, q in zip(step.tolist(), p.tolist(), strict=True)]
    return math.nan if any(map(math.isnan, ratios)) else max(ratios)


def projected_fit(
    columns: Callable[[np.ndarray], np.ndarray], y: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """R's ``nls(algorithm = "plinear")``: least squares over the nonlinear parameters with
    the linear coefficients of ``columns(p)`` solved exactly at each ``p`` (variable
    projection), from ``start``: :func:`least_squares_fit` of the projected fitted values
    with a central-difference Jacobian (their derivative in ``p``; scipy's
    ``least_squares`` set-up cost more than the whole fit on Theoph)."""

    def projected(p):
        a = columns(p)
        if a.shape[1] == 1:  # one linear coefficient: its normal equation
            c = a[:, 0]
            return c * (float(c @ y) / float(c @ c))
        coef = _lstsq(a, y)
        return a @ coef

    def values_and_jacobian(p):
        f = projected(p)
        jac = np.empty((f.size, p.size))
        for j in range(p.size):
            h = 1e-6 * max(abs(float(p[j])), 1.0)
            e = np.zeros_like(p)
            e[j] = h
            jac[:, j] = (projected(p + e) - projected(p - e)) / (2 * h)
        return f, jac

    return least_squares_fit(values_and_jacobian, y, np.asarray(start, dtype=float))


def absorption_fit(t: np.ndarray, dose: np.ndarray, y: np.ndarray, lke: float,
                   start: float) -> float:
    """SSfol's absorption rate ``lKa``: :func:`projected_fit` of the column ``(exp(-t
    exp(lKe)) - exp(-t exp(lKa))) Dose`` in ``lKa`` from ``start``, to the bit, with the
    column at ``lKa`` and at ``lKa +- h`` (the central difference) made by one call of
    each numpy function on a (3, n) array instead of three (the same operations on the
    same values: products commuted, which IEEE leaves exact; numpy's exp on each
    element as on a scalar), then projected row by row as :func:`projected_fit` does."""
    slow = np.exp(-t * np.exp(lke))  # (the same in every call: computed once)
    minus_t = -t  # (-t * x is (-t) * x: negated once)

    def values_and_jacobian(p):
        lka = p[0]
        h = 1e-6 * max(abs(float(lka)), 1.0)
        rates = np.exp(np.array([lka, lka + h, lka - h]))
        columns = slow - np.exp(rates[:, None] * minus_t)
        columns *= dose
        projected = [c * (float(c @ y) / float(c @ c)) for c in columns]
        jac = np.empty((y.size, 1))
        jac[:, 0] = (projected[1] - projected[2]) / (2 * h)
        return projected[0], jac

    return float(least_squares_fit(values_and_jacobian, y, np.array([start]))[0])


def _need(n: int, at_least: int, name: str) -> None:
    if n < at_least:
        raise DataError(
            f"{name} needs at least {at_least} distinct covariate values to compute starting "
            f"values; the data have {n}"
        )


def _logistic_guess(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    lo, hi = float(y.min()), float(y.max())
    dz = hi - lo
    if dz <= 0:
        raise DataError("the response is constant: no logistic curve to start from")
    z = (y - lo + 0.05 * dz) / (1.1 * dz)
    xmid, scal = _line(np.log(z / (1 - z)), x)
    return xmid, scal


def init_sslogis(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSlogis: ``Asym, xmid, scal`` (inverse regression of ``x`` on the response's logit)."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 4, "SSlogis")
    xmid, scal = _logistic_guess(x, ya)
    asym = _linear([1 / (1 + np.exp((xmid - x) / scal))], ya)[0]
    return least_squares_fit(model_on({"input": x}), ya, np.array([asym, xmid, scal]))


def init_ssfpl(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSfpl: ``A, B, xmid, scal``."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 5, "SSfpl")
    xmid, scal = _logistic_guess(x, ya)
    scal = abs(scal)
    a, d = _linear([np.ones_like(x), 1 / (1 + np.exp((xmid - x) / scal))], ya)
    return least_squares_fit(model_on({"input": x}), ya, np.array([a, a + d, xmid, scal]))


def _rate_guess(x: np.ndarray, y: np.ndarray) -> float:
    """log rate constant from the log distance to the guessed asymptote."""
    ydiff = np.abs(y - rt_asymptote(x, y))
    _, slope = _line(x, np.log(ydiff))
    return float(np.log(-slope)) if slope < 0 else float(np.log(abs(slope) + 1e-12))


def init_ssasymp(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSasymp: ``Asym, R0, lrc``."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 4, "SSasymp")
    lrc = _rate_guess(x, ya)
    e = np.exp(-np.exp(lrc) * x)
    asym, r0 = _linear([1 - e, e], ya)
    return least_squares_fit(model_on({"input": x}), ya, np.array([asym, r0, lrc]))


def init_ssasympoff(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSasympOff: ``Asym, lrc, c0``."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 4, "SSasympOff")
    lrc = _rate_guess(x, ya)
    e = np.exp(-np.exp(lrc) * x)
    asym, b = _linear([np.ones_like(x), e], ya)
    c0 = np.exp(-lrc) * np.log(-b / asym) if -b / asym > 0 else 0.0
    return least_squares_fit(model_on({"input": x}), ya, np.array([asym, lrc, c0]))


def init_ssmicmen(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSmicmen: ``Vm, K`` (Lineweaver-Burk line, then least squares)."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 3, "SSmicmen")
    b0, b1 = _line(1 / x, 1 / ya)
    k = abs(b1 / b0)
    vm = _linear([x / (k + x)], ya)[0]
    return least_squares_fit(model_on({"input": x}), ya, np.array([vm, k]))


def init_ssgompertz(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSgompertz: ``Asym, b2, b3`` (an asymptotic regression of ``log|y|`` first)."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 4, "SSgompertz")
    ly = np.log(np.abs(ya))
    lrc = _rate_guess(x, ly)

    def asymptotic(p):
        b0, b1, r = p
        e = np.exp(-np.exp(r) * x)
        f = b0 + b1 * (1 - e)
        return f, np.column_stack([np.ones_like(x), 1 - e, b1 * np.exp(r) * x * e])

    e = np.exp(-np.exp(lrc) * x)
    b0, b1 = _linear([np.ones_like(x), 1 - e], ly)
    b0, b1, lrc = least_squares_fit(asymptotic, ly, np.array([b0, b1, lrc]))
    b2, b3 = b1, np.exp(-np.exp(lrc))
    asym = _linear([np.exp(-b2 * b3**x)], ya)[0]
    return least_squares_fit(model_on({"input": x}), ya, np.array([asym, b2, b3]))


def init_ssbiexp(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSbiexp: ``A1, lrc1, A2, lrc2`` (curve peeling: the last half of the points gives the
    slow phase, the residuals of the first points the fast one)."""
    x, ya = sorted_xy(cov["input"], y)
    _need(x.size, 5, "SSbiexp")
    n = x.size
    nlast = max(3, int(np.floor(n / 2 + 0.5)))
    xl, yl = x[n - nlast:], ya[n - nlast:]
    a2, s2 = _line(xl, np.log(yl))
    lrc2 = np.log(abs(s2))
    res = ya - np.exp(a2) * np.exp(-np.exp(lrc2) * x)
    xf, rf = x[: n - nlast], res[: n - nlast]
    _, s1 = _line(xf, np.log(np.abs(rf)))
    lrc1 = np.log(abs(s1))
    c1, c2 = _linear([np.exp(-np.exp(lrc1) * x), np.exp(-np.exp(lrc2) * x)], ya)
    return least_squares_fit(model_on({"input": x}), ya, np.array([c1, lrc1, c2, lrc2]))


def init_ssfol(cov: dict[str, np.ndarray], y: np.ndarray, model_on: ModelOn) -> np.ndarray:
    """SSfol: ``lKe, lKa, lCl`` from the rows in their order (R's SSfol does not average):
    the elimination rate from the decline after the peak, the absorption rate by a
    conditionally linear fit with that elimination rate fixed."""
    t, dose = cov["input"], cov["Dose"]
    n = y.size
    _need(n, 4, "SSfol")
    imax = int(np.argmax(y))
    if imax == n - 1:
        lke = -2.5
    else:
        lke = float(np.log((np.log(y[imax]) - np.log(y[-1])) / (t[-1] - t[imax])))
    # R: nls(resp ~ (exp(-t Ke) - exp(-t Ka)) * Dose, start lKa = lKe + 1, "plinear")
    lka = absorption_fit(t, dose, y, lke, lke + 1.0)
    # R then refits (lKa, lKe) with nls(resp ~ Dose (exp(-t Ke) - exp(-t Ka)) / (Ka - Ke),
    # algorithm = "plinear"); in R 4.2 that fit stops at its start (its convergence
    # criterion is met there), so R's values are lKe from the peak, lKa from the first fit
    # and lCl from the linear coefficient of the second form at those values.
    ka, ke = np.exp(lka), np.exp(lke)
    column = dose * (np.exp(-t * ke) - np.exp(-t * ka)) / (ka - ke)
    lin = _linear([column], y)[0]
    lcl = lke + lka - np.log(lin) if lin > 0 else 0.0
    return np.array([lke, lka, lcl])


INITIAL: dict[str, Callable[[dict[str, np.ndarray], np.ndarray, ModelOn], np.ndarray]] = {
    "SSlogis": init_sslogis,
    "SSfpl": init_ssfpl,
    "SSasymp": init_ssasymp,
    "SSasympOff": init_ssasympoff,
    "SSmicmen": init_ssmicmen,
    "SSgompertz": init_ssgompertz,
    "SSbiexp": init_ssbiexp,
    "SSfol": init_ssfol,
}
