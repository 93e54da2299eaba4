"""Variance functions for heteroscedastic residuals (nlme's ``weights =``).

A variance function gives each row a standard-deviation multiplier ``s_i > 0``: the
residual variance of row ``i`` is ``sigma^2 s_i^2`` (before any correlation).  Dividing the
rows of ``[Z X y]`` by ``s`` makes them homoscedastic and adds ``2 sum log s_i`` to
``log|V|``.

The covariate of :class:`Power` and :class:`Exp` is a column or, by default, the fitted
values (nlme's ``form = ~fitted(.)``); fitted values make the fit a fixed point (see
:mod:`mixedmodels.optim.residual`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mixedmodels.errors import ArgumentError, DataError

FITTED = "fitted"  # the covariate name that means the fitted values
#: the largest ``|log s|`` of a row on the compiled log-linear path (``s`` and ``1 / s^2``
#: finite and nonzero with room for the rows' products); beyond, the variance function
#: is outside its range (:meth:`VarianceFunction.log_sd_basis`)
LOG_SD_LIMIT = 300.0


class VarianceFunction(ABC):
    """Standard-deviation multipliers ``s_i(delta)`` of the residuals.

    ``covariate`` names a data column, or ``"fitted"`` for the fitted values.
    """

    label: str = ""
    covariate: str | None = None

    @property
    def uses_fitted(self) -> bool:
        return self.covariate == FITTED

    @abstractmethod
    def n_params(self) -> int:
        """Number of free parameters (known once bound to data)."""

    def columns(self) -> list[str]:
        """Data columns (or :data:`FITTED`) the multipliers depend on."""
        return [self.covariate]

    def bind(self, values: dict[str, np.ndarray], order: np.ndarray) -> None:
        """Check the covariate's values and record what they determine (levels of a
        stratum); called once.  ``values`` maps :meth:`columns` to arrays (the fitted
        values are absent); ``order`` is nlme's row order (by group) for "first met"."""
        return None

    def start(self) -> np.ndarray:
        return np.zeros(self.n_params())

    def initial_step(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """The optimizer's first step for each parameter (unconstrained scale)."""
        return np.full(self.n_params(), 0.1)

    def residual_start(self, residuals: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """A start for the parameters from the residuals of the fit without the function
        (covariates in ``values``, same rows): a moment estimate where one is cheap,
        :meth:`start` otherwise.  Only where the search begins: not the estimate."""
        return self.start()

    @abstractmethod
    def sd(self, u: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """Multipliers ``s_i`` at parameters ``u`` for covariate ``values``."""

    def sd_of(self, u: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """Multipliers for new rows (their covariates in ``values``)."""
        return self.sd(u, values)

    def log_sd_basis(self, values: dict[str, np.ndarray]) -> np.ndarray | None:
        """``C`` (n, n_params) with ``log s = C u`` for every ``u`` when the function is
        log-linear in its parameters (``Power``: ``log|v|``; ``Exp``: ``v``), for
        covariates ``values``; None (the default) otherwise or where ``C`` is not finite
        (a zero covariate of ``Power``).  The compiled objective then forms the weights
        ``exp(-2 C u)`` and ``sum log s = (sum_i C_i) u`` without the multipliers."""
        return None

    def strata(self) -> np.ndarray | None:
        """Codes ``0..k-1`` of the bound rows (the problem's sorted order) within which
        the multiplier is the same whatever the parameters, for :meth:`stratum_sd`; None
        (the default) when it may differ from row to row."""
        return None

    def stratum_sd(self, u: np.ndarray) -> np.ndarray:
        """The multiplier of each stratum of :meth:`strata` at ``u`` (k,)."""
        raise NotImplementedError(f"{type(self).__name__} has no strata")

    def stratum_log_basis(self) -> np.ndarray | None:
        """``D`` (k, n_params) with ``log stratum_sd(u) = D u`` for every ``u`` when the
        strata's multipliers are log-linear in the parameters (``Ident``); None (the
        default) otherwise.  The compiled objective then weights the strata by ``exp(-2 D
        u)`` without forming the multipliers."""
        return None

    def natural(self, u: np.ndarray) -> np.ndarray:
        """The parameters as nlme prints them."""
        return np.asarray(u, dtype=float)

    def unconstrained(self, natural: np.ndarray) -> np.ndarray:
        return np.asarray(natural, dtype=float)

    def param_names(self) -> list[str]:
        return (
            ["power"] if self.n_params() == 1 else [f"delta{i + 1}" for i in range(self.n_params())]
        )

    def describe(self, u: np.ndarray) -> str:
        """nlme's ``Variance function:`` block."""
        names = self.param_names()
        values = self.natural(u)
        form = f"~{'fitted(.)' if self.uses_fitted else self.covariate}"
        lines = [f"Variance function:\n Structure: {self.label}\n Formula: {form} "]
        if names:
            lines.append(" Parameter estimates:")
            lines.append("  ".join(f"{n:>10}" for n in names))
            lines.append("  ".join(f"{v:>10.7f}" for v in values))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.covariate!r})"


def _checked_name(covariate: object, what: str) -> str:
    if not isinstance(covariate, str) or not covariate:
        raise ArgumentError(f"{what} needs a column name (a string), not {covariate!r}")
    return covariate


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` over the rows where both are finite (NaN when
    there are fewer than three or ``x`` does not vary)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return np.array([np.nan])
    xc = x[ok] - x[ok].mean()
    sxx = float(xc @ xc)
    return np.array([float(xc @ y[ok]) / sxx if sxx > 0 else np.nan])


def _sane(u: np.ndarray, fallback: np.ndarray, bound: float = 5.0) -> np.ndarray:
    """``u`` when finite, clipped to ``[-bound, bound]``; ``fallback`` otherwise."""
    u = np.asarray(u, dtype=float)
    if u.shape != fallback.shape or not np.isfinite(u).all():
        return fallback
    return np.clip(u, -bound, bound)


def _check_numeric(values: dict[str, np.ndarray], name: str, what: str) -> None:
    if name in values and np.asarray(values[name]).dtype.kind not in "fiu":
        raise DataError(f"{what}: column {name!r} must be numeric")


class Ident(VarianceFunction):
    """A standard deviation per level of a factor (nlme's ``varIdent(form = ~1 | f)``):
    ``s_i = delta_level``, 1 for the reference level.

    Parameters
    ----------
    stratum : str
        The factor column.
    reference : str, optional
        The level whose multiplier is 1; by default nlme's choice (the first level met in
        the rows ordered by the model's grouping factor).
    """

    label = "Different standard deviations per stratum"

    def __init__(self, stratum: str, reference: str | None = None):
        self.covariate = _checked_name(stratum, "Ident")
        self.reference = reference
        self.levels: list[str] = []
        self._codes: np.ndarray | None = None

    def n_params(self) -> int:
        return max(len(self.levels) - 1, 0)

    def bind(self, values, order):
        labels = np.asarray(values[self.covariate]).astype(str)[order].tolist()
        # levels in order of first appearance (a dict keeps its keys' first insertion; no
        # sort of the labels)
        seen: list[str] = list(dict.fromkeys(labels))
        if self.reference is not None:
            if self.reference not in seen:
                raise DataError(
                    f"Ident: reference level {self.reference!r} does not occur in column "
                    f"{self.covariate!r} (levels: {', '.join(seen)})"
                )
            seen.remove(self.reference)
            seen.insert(0, self.reference)
        self.levels = seen
        lookup = {v: i for i, v in enumerate(seen)}
        # the codes in ``order``, the problem's sorted rows (its ``values`` and residuals
        # are sorted; codes in the data's order mismatched the rows of any data not
        # already sorted by group, a shuffled sleepstudy's logLik 8.5 below nlme's)
        self._codes = np.array([lookup[v] for v in labels], dtype=np.intp)

    def sd(self, u, values):
        """Multipliers of the bound rows in the problem's sorted order (``values`` holds no
        stratum: the codes were fixed by :meth:`bind`)."""
        return self.stratum_sd(u)[self._codes]

    def strata(self):
        """The levels' codes of the bound rows: one multiplier per level."""
        return self._codes

    def stratum_sd(self, u):
        return np.concatenate([[1.0], np.exp(np.asarray(u, dtype=float))])

    def stratum_log_basis(self):
        """The reference stratum's log multiplier 0, the others' their parameter."""
        k = len(self.levels)
        return np.vstack([np.zeros((1, max(k - 1, 0))), np.eye(max(k - 1, 0))])

    def residual_start(self, residuals, values):
        """log of each stratum's residual sd relative to the reference stratum's."""
        if self._codes is None or residuals.size != self._codes.size:
            return self.start()
        k = len(self.levels)
        counts = np.bincount(self._codes, minlength=k)
        ms = np.bincount(self._codes, weights=residuals * residuals, minlength=k)
        with np.errstate(all="ignore"):
            u = 0.5 * np.log(ms[1:] / counts[1:] / (ms[0] / counts[0]))
        return _sane(u, self.start())

    def sd_of(self, u, values):
        labels = np.asarray(values[self.covariate]).astype(str)
        unknown = sorted(set(labels.tolist()) - set(self.levels))
        if unknown:
            raise DataError(
                f"Ident: level(s) {', '.join(map(repr, unknown))} of {self.covariate!r} were "
                "not in the fitted data, so their standard deviation is unknown"
            )
        lookup = {v: i for i, v in enumerate(self.levels)}
        delta = np.concatenate([[1.0], np.exp(np.asarray(u, dtype=float))])
        return delta[np.array([lookup[v] for v in labels], dtype=np.intp)]

    def natural(self, u):
        return np.exp(np.asarray(u, dtype=float))

    def unconstrained(self, natural):
        return np.log(np.asarray(natural, dtype=float))

    def param_names(self):
        return self.levels[1:]

    def describe(self, u):
        values = np.concatenate([[1.0], self.natural(u)])
        return (
            f"Variance function:\n Structure: {self.label}\n Formula: ~1 | {self.covariate} \n"
            " Parameter estimates:\n"
            + "  ".join(f"{n:>10}" for n in self.levels)
            + "\n"
            + "  ".join(f"{v:>10.7f}" for v in values)
        )


class Power(VarianceFunction):
    """``s_i = |v_i|^power`` (nlme's ``varPower``) of a column or, by default, of the
    fitted values."""

    label = "Power of variance covariate"

    def __init__(self, covariate: str = FITTED):
        self.covariate = _checked_name(covariate, "Power")

    def n_params(self):
        return 1

    def bind(self, values, order):
        _check_numeric(values, self.covariate, "Power")
        if self.covariate in values and np.any(np.asarray(values[self.covariate]) == 0):
            raise DataError(
                f"Power: column {self.covariate!r} has zeros, where |v|^power is 0 or infinite"
            )

    def sd(self, u, values):
        return np.abs(values[self.covariate]) ** float(u[0])

    def log_sd_basis(self, values):
        v = values.get(self.covariate)
        if v is None:
            return None
        with np.errstate(divide="ignore"):
            c = np.log(np.abs(np.asarray(v, dtype=float)))
        return c[:, None] if np.isfinite(c).all() else None

    def residual_start(self, residuals, values):
        """The slope of ``log|r|`` on ``log|v|`` (``E log|r| = log sigma + power log|v| +
        const``)."""
        v = values.get(self.covariate)
        if v is None or v.size != residuals.size:
            return self.start()
        with np.errstate(all="ignore"):
            return _sane(_slope(np.log(np.abs(v)), np.log(np.abs(residuals))), self.start())

    def param_names(self):
        return ["power"]


class Exp(VarianceFunction):
    """``s_i = exp(expon * v_i)`` (nlme's ``varExp``) of a column or the fitted values."""

    label = "Exponential of variance covariate"

    def __init__(self, covariate: str = FITTED):
        self.covariate = _checked_name(covariate, "Exp")

    def n_params(self):
        return 1

    def bind(self, values, order):
        _check_numeric(values, self.covariate, "Exp")

    def initial_step(self, values):
        v = values.get(self.covariate)
        scale = float(np.max(np.abs(v))) if v is not None and v.size else 1.0
        return np.array([0.1 / max(scale, 1e-8)])

    def sd(self, u, values):
        return np.exp(float(u[0]) * values[self.covariate])

    def log_sd_basis(self, values):
        v = values.get(self.covariate)
        if v is None:
            return None
        c = np.asarray(v, dtype=float)
        return c[:, None] if np.isfinite(c).all() else None

    def residual_start(self, residuals, values):
        """The slope of ``log|r|`` on ``v``."""
        v = values.get(self.covariate)
        if v is None or v.size != residuals.size:
            return self.start()
        v = np.asarray(v, dtype=float)
        scale = max(float(np.max(np.abs(v), initial=0.0)), 1e-8)
        with np.errstate(all="ignore"):
            slope = _slope(v, np.log(np.abs(residuals)))
        return _sane(slope, self.start(), bound=5.0 / scale)  # s within e^-5 .. e^5

    def param_names(self):
        return ["expon"]


class Fixed(VarianceFunction):
    """Variance proportional to a positive column, ``s_i = sqrt(v_i)`` (nlme's
    ``varFixed``); no parameters."""

    label = "fixed weights"

    def __init__(self, covariate: str):
        self.covariate = _checked_name(covariate, "Fixed")

    def n_params(self):
        return 0

    def bind(self, values, order):
        _check_numeric(values, self.covariate, "Fixed")
        if np.any(np.asarray(values[self.covariate]) <= 0):
            raise DataError(f"Fixed: column {self.covariate!r} must be positive (a variance)")

    def sd(self, u, values):
        return np.sqrt(values[self.covariate])

    def param_names(self):
        return []


class Combined(VarianceFunction):
    """The product of several variance functions (nlme's ``varComb``)."""

    label = "Combination of variance functions"

    def __init__(self, *parts: VarianceFunction):
        if not parts or not all(isinstance(p, VarianceFunction) for p in parts):
            raise ArgumentError("Combined needs variance functions, e.g. Ident('g'), Power('x')")
        self.parts = list(parts)
        self.covariate = None

    @property
    def uses_fitted(self) -> bool:
        return any(p.uses_fitted for p in self.parts)

    def n_params(self):
        return sum(p.n_params() for p in self.parts)

    def _split(self, u):
        out, k = [], 0
        for p in self.parts:
            out.append(np.asarray(u[k : k + p.n_params()]))
            k += p.n_params()
        return out

    def columns(self):
        return [c for p in self.parts for c in p.columns()]

    def bind(self, values, order):
        for p in self.parts:
            p.bind(values, order)

    def start(self):
        return np.concatenate([p.start() for p in self.parts])

    def initial_step(self, values):
        return np.concatenate([p.initial_step(values) for p in self.parts])

    def sd(self, u, values):
        s = 1.0
        for p, up in zip(self.parts, self._split(u), strict=True):
            s = s * p.sd(up, values)
        return s

    def sd_of(self, u, values):
        s = 1.0
        for p, up in zip(self.parts, self._split(u), strict=True):
            s = s * p.sd_of(up, values)
        return s

    def natural(self, u):
        return np.concatenate(
            [p.natural(up) for p, up in zip(self.parts, self._split(u), strict=True)]
        )

    def unconstrained(self, natural):
        return np.concatenate(
            [p.unconstrained(x) for p, x in zip(self.parts, self._split(natural), strict=True)]
        )

    def param_names(self):
        return [n for p in self.parts for n in p.param_names()]

    def describe(self, u):
        blocks = [p.describe(up) for p, up in zip(self.parts, self._split(u), strict=True)]
        return "Combination of:\n" + "\n".join(blocks)
