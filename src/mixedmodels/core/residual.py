"""Correlation of the residuals within groups (nlme's ``correlation =``).

The residual covariance is ``sigma^2 V`` with ``V = S R S`` block diagonal by group:
``S`` diagonal from a variance function (:mod:`mixedmodels.core.variance_functions`) and
``R`` a correlation matrix from one of the structures here.  Each structure knows how to
*whiten* rows: given ``M`` (the rows of ``[Z X y]`` sorted by group, then time) it returns
``L^-1 M`` with ``R_g = L_g L_g'`` in every group, and ``log|R| = 2 sum log diag L``.  With
whitened rows the model is an ordinary linear mixed model, so the engine's profiled
objective applies unchanged and the correlation adds ``log|R|`` to it.

AR(1) and continuous-time AR(1) whiten with a bidiagonal transform (``O(n)``, no matrix),
compound symmetry in closed form through group means, ARMA(p, q) through the Cholesky
factor of one small Toeplitz matrix per distinct pattern of times.

Each structure has an unconstrained parameter vector ``u`` (what the optimizer moves) and
the natural parameters nlme prints (``Phi``, ``Rho``, ``Theta``); the transforms are
nlme's, so Wald intervals computed on the unconstrained scale agree with nlme's
``intervals()``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import scipy.linalg as sla

from mixedmodels.errors import ArgumentError, DataError
from mixedmodels.linalg.optional_kernels import OptionalKernels


@dataclass(frozen=True)
class GroupLayout:
    """Rows sorted by group and, within a group, by time.

    Attributes
    ----------
    order : ndarray of int (n,)
        Original row index of each sorted row.
    group : ndarray of int (n,)
        Group code of each sorted row.
    time : ndarray (n,)
        Time of each sorted row (the position within the group when no time was given).
    first : ndarray of bool (n,)
        True for the first row of each group.
    starts, sizes : ndarray of int
        Start (in sorted order) and size of each group.
    """

    order: np.ndarray
    group: np.ndarray
    time: np.ndarray
    first: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    _patterns: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return int(self.order.size)

    @property
    def n_groups(self) -> int:
        return int(self.starts.size)

    @property
    def max_size(self) -> int:
        return int(self.sizes.max()) if self.sizes.size else 0

    def gaps(self) -> np.ndarray:
        """Time since the previous row of the same group (0 on each group's first row)."""
        d = np.zeros(self.n)
        d[1:] = self.time[1:] - self.time[:-1]
        d[self.first] = 0.0
        return d

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Row index of each group's ``j``-th row, shape (groups, largest size), and
        where it exists.  Computed once."""
        if "padded" not in self._patterns:
            j = np.arange(self.max_size)
            valid = j[None, :] < self.sizes[:, None]
            index = np.where(valid, self.starts[:, None] + j[None, :], 0)
            self._patterns["padded"] = (index, valid)
        return self._patterns["padded"]

    def leading_patterns(self) -> bool:
        """Whether every group's pattern of times is a leading part of the longest one
        (positions 0..m-1 with the same gaps).  Computed once."""
        if "leading" not in self._patterns:
            times, _ = self.patterns()
            longest = max(times, key=len)
            self._patterns["leading"] = all(
                np.array_equal(t, longest[: t.size]) for t in times
            )
        return self._patterns["leading"]

    def patterns(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Distinct within-group time patterns (times relative to the group's first) and
        the pattern of each group.  Computed once."""
        if "patterns" not in self._patterns:
            keys: dict[tuple, int] = {}
            which = np.empty(self.n_groups, dtype=np.intp)
            times: list[np.ndarray] = []
            for g, (s, m) in enumerate(zip(self.starts, self.sizes, strict=True)):
                t = self.time[s : s + m] - self.time[s]
                key = tuple(t.tolist())
                if key not in keys:
                    keys[key] = len(times)
                    times.append(t)
                which[g] = keys[key]
            self._patterns["patterns"] = (times, which)
        return self._patterns["patterns"]


def make_layout(
    group: np.ndarray, time: np.ndarray | None, outer: np.ndarray | None = None
) -> GroupLayout:
    """The layout of rows with group codes ``group`` and optional times (``None``: the
    row order within each group, as nlme's ``form = ~ 1 | g``).

    ``outer`` (codes of a grouping factor the groups are nested in) sorts the groups so
    that each of its levels is contiguous.

    Raises
    ------
    DataError
        When two rows of a group have the same time.
    """
    group = np.asarray(group, dtype=np.intp)
    n = group.size
    if outer is not None and (outer is group or np.array_equal(outer, group)):
        outer = None  # the groups themselves (one term, no group=): the same order
    keys = (group,) if outer is None else (group, np.asarray(outer))
    if time is None:
        order = np.lexsort((np.arange(n),) + keys)
        g_sorted = group[order]
        first = np.ones(n, dtype=bool)
        first[1:] = g_sorted[1:] != g_sorted[:-1]
        starts = np.flatnonzero(first)
        sizes = np.diff(np.append(starts, n))
        if outer is not None:  # sorted by group alone, each group is one run
            _check_runs(g_sorted, starts)
        position = np.arange(n) - np.repeat(starts, sizes)
        return GroupLayout(order, g_sorted, position.astype(float), first, starts, sizes)
    time = np.asarray(time, dtype=float)
    order = np.lexsort((time,) + keys)
    g_sorted = group[order]
    t_sorted = time[order]
    first = np.ones(n, dtype=bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, n))
    if outer is not None:  # sorted by group first, each group is one run
        _check_runs(g_sorted, starts)
    same = ~first[1:] & (t_sorted[1:] == t_sorted[:-1])
    if same.any():
        i = int(np.flatnonzero(same)[0]) + 1
        raise DataError(
            f"two rows of the same group have time {t_sorted[i]:g}: a correlation structure "
            "needs distinct times within each group"
        )
    return GroupLayout(order, g_sorted, t_sorted, first, starts, sizes)


def _check_runs(g_sorted: np.ndarray, starts: np.ndarray) -> None:
    """Each group must be one run of the sorted rows: a group split by the outer factor
    spans several of its levels."""
    if np.unique(g_sorted[starts]).size != starts.size:
        raise ArgumentError(
            "the correlation groups must be nested in the grouping factor of the random "
            "effects: a group of the correlation structure spans several of its levels "
            "(give the correlation structure group= the innermost grouping factor)"
        )


#: False forces the numpy code (the tests compare both paths).
USE_KERNELS = True
_RESIDUAL_KERNELS = OptionalKernels(
    "mixedmodels.core.residual_kernels",
    "the compiled kernels of the structured-residual objective",
    "using numpy",
)


def residual_kernels() -> ModuleType | None:
    """The compiled kernel module (:mod:`mixedmodels.core.residual_kernels`), or None when
    it is switched off (:data:`USE_KERNELS`), numba is missing or fails to load (reported
    once as a :class:`~mixedmodels.errors.MixedModelsWarning`; the numpy code computes the
    same numbers to rounding)."""
    return _RESIDUAL_KERNELS.load() if USE_KERNELS else None


def _logistic(u: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-u))


def _tanh_half(u: np.ndarray) -> np.ndarray:
    """The inverse of nlme's ``log((1 + x) / (1 - x))``."""
    return np.tanh(np.asarray(u, dtype=float) / 2.0)


def _log_ratio(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.log((1.0 + x) / (1.0 - x))


class ResidualCorrelation(ABC):
    """A correlation structure for the residuals within groups.

    Parameters common to all: ``time`` (column name of the time covariate, or None for
    the row order within each group) and ``group`` (the grouping column; None: the
    innermost grouping factor of the random effects, as nlme).
    """

    #: nlme's name in "Correlation Structure: ..."
    label: str = ""
    #: names of the natural parameters, as nlme prints them
    param_names: tuple[str, ...] = ()
    #: True when the time covariate must be integer (positions)
    integer_time: bool = True

    def __init__(self, time: str | None = None, group: str | None = None):
        if time is not None and not isinstance(time, str):
            raise ArgumentError(f"time must be a column name or None, not {time!r}")
        if group is not None and not isinstance(group, str):
            raise ArgumentError(f"group must be a column name or None, not {group!r}")
        self.time = time
        self.group = group

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @abstractmethod
    def natural(self, u: np.ndarray) -> np.ndarray:
        """Natural parameters (nlme's printed ones) from unconstrained ``u``."""

    @abstractmethod
    def unconstrained(self, natural: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`natural`."""

    def start(self, layout: GroupLayout) -> np.ndarray:
        """Unconstrained start (natural parameters 0, nlme's default)."""
        return np.zeros(self.n_params)

    def residual_start(self, residuals: np.ndarray, layout: GroupLayout) -> np.ndarray:
        """A start from the residuals (sorted as the layout) of the fit without the
        structure: a moment estimate where one is cheap, :meth:`start` otherwise.  Only
        where the search begins, never the estimate."""
        return self.start(layout)

    def initial_step(self) -> np.ndarray:
        """The optimizer's first step on the unconstrained scale."""
        return np.full(self.n_params, 0.5)

    @abstractmethod
    def whiten(self, u: np.ndarray, layout: GroupLayout, M: np.ndarray) -> tuple[np.ndarray, float]:
        """``(L^-1 M, log|R|)`` for rows ``M`` (n, k) in the layout's sorted order."""

    @abstractmethod
    def lag_correlation(self, u: np.ndarray, lags: np.ndarray) -> np.ndarray:
        """Correlation of two rows of one group ``lags`` apart (in time units)."""

    def check_layout(self, layout: GroupLayout, time_name: str | None) -> None:
        """A :class:`DataError` when the times do not suit the structure."""
        if self.integer_time and time_name is not None:
            bad = layout.time != np.round(layout.time)
            if bad.any():
                raise DataError(
                    f"{self.label} needs integer times; column {time_name!r} has "
                    f"{layout.time[np.flatnonzero(bad)[0]]:g} (use CAR1 for continuous time)"
                )

    def cross_product_plan(
        self, layout: GroupLayout, M: np.ndarray, level_starts: np.ndarray
    ) -> CrossProductPlan | None:
        """Precomputed sums from which the per-level cross products of the whitened rows
        ``M`` follow for any parameter value without touching the rows again (None: the
        structure whitens the rows at every evaluation)."""
        return None

    def matrix(self, u: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The correlation matrix of one group's rows at ``times`` (dense; for printing,
        the marginal covariance and simulation)."""
        t = np.asarray(times, dtype=float)
        lags = np.abs(t[:, None] - t[None, :])
        return self.lag_correlation(u, lags)

    def color(self, u: np.ndarray, layout: GroupLayout, E: np.ndarray) -> np.ndarray:
        """``L E`` for independent standard normal rows ``E`` (n, k) in sorted order: rows
        with correlation ``R`` (simulation).  Through one Cholesky factor per pattern."""
        times, which = layout.patterns()
        out = np.empty_like(E)
        for k, t in enumerate(times):
            low = np.linalg.cholesky(self.matrix(u, t))
            for g in np.flatnonzero(which == k):
                s, m = layout.starts[g], layout.sizes[g]
                out[s : s + m] = low @ E[s : s + m]
        return out

    def describe(self, u: np.ndarray) -> str:
        """nlme's lines: ``Correlation Structure: AR(1)`` / ``Formula: ~ ...`` /
        ``Parameter estimate(s):``."""
        form = f"~{self.time or '1'} | {self.group or '<group>'}"
        values = self.natural(u)
        names = "  ".join(f"{n:>10}" for n in self.param_names)
        nums = "  ".join(f"{v:>10.7f}" for v in values)
        return (
            f"Correlation Structure: {self.label}\n Formula: {form} \n"
            f" Parameter estimate(s):\n{names}\n{nums}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(time={self.time!r}, group={self.group!r})"


def _bidiagonal_whiten(
    a: np.ndarray, layout: GroupLayout, M: np.ndarray
) -> tuple[np.ndarray, float]:
    """Rows ``(m_i - a_i m_{i-1}) / sqrt(1 - a_i^2)`` (``a_i = 0`` on a group's first
    row): the inverse Cholesky factor of an AR(1)-type correlation, ``O(n k)``."""
    c = np.sqrt(1.0 - a * a)
    out = M.copy()
    out[1:] -= a[1:, None] * M[:-1]
    out /= c[:, None]
    return out, 2.0 * float(np.log(c).sum())


class AR1(ResidualCorrelation):
    """First-order autoregressive correlation ``Phi^|t_i - t_j|`` (nlme's ``corAR1``).

    Parameters
    ----------
    time : str, optional
        An integer time column; gaps count (rows 3 steps apart correlate ``Phi^3``, as
        nlme's ``corARMA(p = 1)`` with a covariate; nlme's ``corAR1`` uses only the
        order).  None: the row order within each group.
    group : str, optional
        Grouping column; by default the innermost grouping factor of the random effects.
    """

    label = "AR(1)"
    param_names = ("Phi",)

    def natural(self, u):
        return _tanh_half(u)

    def phi(self, u: np.ndarray) -> float:
        """``Phi`` as a float (:meth:`natural` without arrays: the plans' weights)."""
        return math.tanh(float(u[0]) / 2.0)

    def unconstrained(self, natural):
        return _log_ratio(natural)

    def whiten(self, u, layout, M):
        phi = float(self.natural(u)[0])
        gaps = layout.gaps()
        a = np.where(layout.first, 0.0, np.sign(phi) ** gaps * np.abs(phi) ** gaps)
        return _bidiagonal_whiten(a, layout, M)

    def lag_correlation(self, u, lags):
        phi = float(self.natural(u)[0])
        return np.sign(phi) ** lags * np.abs(phi) ** lags

    def cross_product_plan(self, layout, M, level_starts):
        """:class:`BidiagonalPlan` when the times have few distinct gaps (integer times:
        one set of sums per level and gap); None when there are more (levels x distinct
        gaps) than rows, as with continuous times, where nearly every row has its own gap
        and whitening the rows at each evaluation costs less.  (The plan there held three
        (levels, k, k) arrays per gap: 3,000 rows of CAR(1) in 300 groups took 9.7 s and
        469 MB; 30,000 rows would have needed ~50 GB.)"""
        n_gaps = np.unique(layout.gaps()[~layout.first]).size
        if n_gaps * level_starts.size > layout.n:
            return None
        return BidiagonalPlan(layout, M, level_starts, self)

    def residual_start(self, residuals, layout):
        """``Phi`` from the lag-1 correlation of the conditional residuals (the rows one
        time unit after the previous row of their group), clipped to ``[-0.9, 0.9]``:
        nearer the estimate than 0 (Ovary: 0.48 for 0.61; sleepstudy 0.34 for 0.65), 10 to
        15 fewer evaluations on the AR(1) reference cases.  Continuous times keep
        :meth:`start` (the gaps differ; measured: more evaluations on BodyWeight)."""
        if not self.integer_time:
            return self.start(layout)
        return _lag_one_start(self, residuals, layout)

    def coefficient(self, u: np.ndarray, gaps: np.ndarray) -> np.ndarray:
        """``a = Phi^gap``: the weight of the previous row in the whitening (the gaps are
        whole numbers, or ``Phi > 0`` for CAR(1), so the power of a negative ``Phi`` is
        real)."""
        return np.power(self.natural(u)[0], gaps)

    def color(self, u, layout, E):
        phi = float(self.natural(u)[0])
        gaps = layout.gaps()
        a = np.where(layout.first, 0.0, np.sign(phi) ** gaps * np.abs(phi) ** gaps)
        return _bidiagonal_color(a, layout, E)


def _lag_one_start(structure, residuals: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Unconstrained parameters of ``structure`` (one) at the lag-1 correlation of
    ``residuals`` within groups (rows a gap of 1 after the previous), clipped to ``[-0.9,
    0.9]``; :meth:`~ResidualCorrelation.start` without such rows or with a degenerate sum."""
    r = np.asarray(residuals, dtype=float)
    pairs = np.flatnonzero((layout.gaps() == 1.0) & ~layout.first)
    denominator = float(r @ r)
    if pairs.size == 0 or not (math.isfinite(denominator) and denominator > 0.0):
        return structure.start(layout)
    rho = float(r[pairs] @ r[pairs - 1]) / pairs.size / (denominator / r.size)
    if not math.isfinite(rho):
        return structure.start(layout)
    return structure.unconstrained(np.array([min(max(rho, -0.9), 0.9)]))


def _bidiagonal_color(a: np.ndarray, layout: GroupLayout, E: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_bidiagonal_whiten`: ``x_i = a_i x_{i-1} + sqrt(1 - a_i^2) e_i``,
    one vectorized step per position within a group."""
    c = np.sqrt(1.0 - a * a)
    out = c[:, None] * E
    for j in range(1, layout.max_size):
        rows = layout.starts[layout.sizes > j] + j
        out[rows] += a[rows, None] * out[rows - 1]
    return out


class CAR1(AR1):
    """Continuous-time AR(1): ``Phi^|t_i - t_j|`` for real times, ``0 < Phi < 1`` (nlme's
    ``corCAR1``).

    Parameters
    ----------
    time : str
        The time column (required).
    group : str, optional
        As :class:`AR1`.
    """

    label = "Continuous AR(1)"
    integer_time = False

    def __init__(self, time: str, group: str | None = None):
        if time is None:
            raise ArgumentError("CAR1 needs a time column: mm.cor.CAR1('Time')")
        super().__init__(time, group)

    def natural(self, u):
        return _logistic(np.asarray(u, dtype=float))

    def phi(self, u):
        return 0.5 * (1.0 + math.tanh(0.5 * float(u[0])))  # the logistic, never overflowing

    def unconstrained(self, natural):
        x = np.asarray(natural, dtype=float)
        return np.log(x / (1.0 - x))

    def start(self, layout):
        return self.unconstrained(np.array([0.2]))  # nlme's corCAR1 default value


class CompoundSymmetry(ResidualCorrelation):
    """Exchangeable correlation ``Rho`` between any two rows of a group (nlme's
    ``corCompSymm``).  Whitened in closed form: ``V^-1/2 x = (x - xbar) / sqrt(1 - Rho) +
    xbar / sqrt(1 + (m - 1) Rho)`` within a group of ``m`` rows.

    ``Rho`` lies in ``(-1 / (m_max - 1), 1)``.
    """

    label = "Compound symmetry"
    param_names = ("Rho",)
    integer_time = False

    def __init__(self, group: str | None = None):
        super().__init__(None, group)
        self._lower = -1.0

    def bind_size(self, max_size: int) -> None:
        """Record the largest group (the lower bound of Rho)."""
        self._lower = -1.0 / (max_size - 1) if max_size > 1 else -1.0

    def natural(self, u):
        lo = self._lower
        return lo + (1.0 - lo) * _logistic(np.asarray(u, dtype=float))

    def rho(self, u: np.ndarray) -> float:
        """``Rho`` as a float (:meth:`natural` without arrays: the plan's weights)."""
        lo = self._lower
        return lo + (1.0 - lo) * (0.5 * (1.0 + math.tanh(0.5 * float(u[0]))))

    def unconstrained(self, natural):
        lo = self._lower
        x = (np.asarray(natural, dtype=float) - lo) / (1.0 - lo)
        return np.log(x / (1.0 - x))

    def start(self, layout):
        self.bind_size(layout.max_size)
        return self.unconstrained(np.array([0.0]))

    def residual_start(self, residuals, layout):
        """``Rho`` from the within-group correlation of the conditional residuals, ``sum_g
        (s_g^2 - q_g) / sum_g (m_g - 1) q_g`` (``s_g``, ``q_g``: the sum and the sum of
        squares of group ``g``'s ``m_g`` residuals), clipped to the middle of its range."""
        self.bind_size(layout.max_size)
        r = np.asarray(residuals, dtype=float)
        group = np.repeat(np.arange(layout.n_groups), layout.sizes)
        sums = np.bincount(group, weights=r, minlength=layout.n_groups)
        squares = np.bincount(group, weights=r * r, minlength=layout.n_groups)
        denominator = float(((layout.sizes - 1) * squares).sum())
        if not (math.isfinite(denominator) and denominator > 0.0):
            return self.start(layout)
        rho = float((sums * sums - squares).sum()) / denominator
        if not math.isfinite(rho):
            return self.start(layout)
        lo = self._lower
        return self.unconstrained(np.array([min(max(rho, lo + 0.1 * (1 - lo)), 0.9)]))

    def whiten(self, u, layout, M):
        rho = float(self.natural(u)[0])
        sizes = layout.sizes
        idx = np.repeat(np.arange(layout.n_groups), sizes)
        sums = np.stack(
            [
                np.bincount(idx, weights=M[:, j], minlength=layout.n_groups)
                for j in range(M.shape[1])
            ],
            axis=1,
        )
        means = (sums / sizes[:, None])[idx]
        lam = 1.0 + (sizes - 1) * rho
        if rho >= 1.0 or np.any(lam <= 0.0):
            raise np.linalg.LinAlgError("compound symmetry outside its range")
        out = (M - means) / math.sqrt(1.0 - rho) + means / np.sqrt(lam)[idx, None]
        log_det = float(((sizes - 1) * math.log(1.0 - rho) + np.log(lam)).sum())
        return out, log_det

    def lag_correlation(self, u, lags):
        rho = float(self.natural(u)[0])
        return np.where(lags == 0, 1.0, rho)

    def cross_product_plan(self, layout, M, level_starts):
        return CompoundSymmetryPlan(layout, M, level_starts, self)

    def describe(self, u):
        return super().describe(u).replace(f"~{self.time or '1'}", "~1")


CompSymm = CompoundSymmetry  # nlme's name, as mm.cor.CompSymm


def _durbin_levinson(partial: np.ndarray, sign: float) -> np.ndarray:
    """Coefficients from partial autocorrelations (nlme's transform: the AR part with
    ``sign = -1``, the MA part with ``+1``)."""
    coef = np.zeros(0)
    for k, r in enumerate(partial):
        new = np.empty(k + 1)
        new[:k] = coef + sign * r * coef[::-1]
        new[k] = r
        coef = new
    return coef


def _inverse_durbin_levinson(coef: np.ndarray, sign: float) -> np.ndarray:
    coef = np.array(coef, dtype=float)
    out = np.empty(coef.size)
    for k in range(coef.size - 1, -1, -1):
        r = coef[k]
        if abs(r) >= 1.0:
            raise ArgumentError("ARMA start values must be stationary (|partial| < 1)")
        out[k] = r
        prev = coef[:k]
        coef = (prev - sign * r * prev[::-1]) / (1.0 - r * r)
    return out


def arma_autocorrelation(ar: np.ndarray, ma: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelations at lags ``0 .. max_lag`` of ``x_t = sum ar_j x_{t-j} + e_t + sum
    ma_j e_{t-j}`` (nlme's sign convention), from the linear equations for the
    autocovariances at lags ``0 .. p`` and the AR recursion beyond.

    Scalar Python arithmetic throughout (orders are small; numpy's per-call overhead was
    most of an ARMA(1,1) evaluation on Ovary)."""
    phi = [float(a) for a in np.ravel(ar)]
    theta = [1.0] + [float(m) for m in np.ravel(ma)]
    p, q = len(phi), len(theta) - 1
    # psi weights (MA(infinity)) up to lag q
    psi = [1.0] + [0.0] * q
    for i in range(1, q + 1):
        psi[i] = theta[i] + sum(phi[j] * psi[i - j - 1] for j in range(min(p, i)))
    c = [sum(theta[j] * psi[j - k] for j in range(k, q + 1)) for k in range(max(p, q) + 1)]
    n_lag = max(max_lag, p, q) + 1
    gamma = [0.0] * n_lag
    if p:
        a = [[1.0 if k == j else 0.0 for j in range(p + 1)] for k in range(p + 1)]
        for k in range(p + 1):
            for j in range(1, p + 1):
                a[k][abs(k - j)] -= phi[j - 1]
        gamma[: p + 1] = _solve_small(a, c[: p + 1])
    else:
        gamma[0] = c[0]
    for k in range(p + 1, n_lag):
        value = c[k] if k <= q else 0.0
        for j in range(p):
            value += phi[j] * gamma[k - j - 1]
        gamma[k] = value
    out = np.array(gamma[: max_lag + 1])
    return out / out[0]


def _solve_small(a: list[list[float]], b: list[float]) -> list[float]:
    """``a x = b`` for a small dense system: Gaussian elimination with partial pivoting on
    Python floats (a singular system raises :class:`numpy.linalg.LinAlgError`)."""
    n = len(b)
    a = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if not abs(a[pivot][col]) > 0.0:
            raise np.linalg.LinAlgError("singular ARMA autocovariance equations")
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            if f:
                for j in range(col, n + 1):
                    a[r][j] -= f * a[col][j]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - sum(a[r][j] * x[j] for j in range(r + 1, n))) / a[r][r]
    return x


class ARMA(ResidualCorrelation):
    """Autoregressive moving-average correlation of orders ``p`` and ``q`` (nlme's
    ``corARMA``): ``x_t = sum_j Phi_j x_{t-j} + e_t + sum_j Theta_j e_{t-j}`` at integer
    times (gaps count).  Parameters are moved on nlme's unconstrained scale (partial
    autocorrelations), which keeps the process stationary and invertible.
    """

    label = "ARMA"

    def __init__(self, p: int = 0, q: int = 0, time: str | None = None, group: str | None = None):
        for name, v in (("p", p), ("q", q)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ArgumentError(f"{name} must be a non-negative integer, not {v!r}")
        if p + q == 0:
            raise ArgumentError("ARMA needs p > 0 or q > 0")
        super().__init__(time, group)
        self.p, self.q = p, q
        self._lags: tuple[bytes, np.ndarray] | None = None  # see leading_factor
        self.label = f"ARMA({p},{q})"
        self.param_names = tuple(f"Phi{i + 1}" for i in range(p)) + tuple(
            f"Theta{i + 1}" for i in range(q)
        )

    def natural(self, u):
        u = np.asarray(u, dtype=float)
        r = _tanh_half(u)
        return np.concatenate(
            [_durbin_levinson(r[: self.p], -1.0), _durbin_levinson(r[self.p :], 1.0)]
        )

    def unconstrained(self, natural):
        x = np.asarray(natural, dtype=float)
        r = np.concatenate(
            [
                _inverse_durbin_levinson(x[: self.p], -1.0),
                _inverse_durbin_levinson(x[self.p :], 1.0),
            ]
        )
        return _log_ratio(r)

    def check_layout(self, layout: GroupLayout, time_name: str | None) -> None:
        """Also a :class:`DataError` when no group spans ``p + q`` lags: the
        autocorrelations the data can show (lags up to the longest span) then do not
        determine the ``p + q`` parameters (and BOBYQA would search a flat surface of that
        dimension for ever)."""
        super().check_layout(layout, time_name)
        spans = layout.time[layout.starts + layout.sizes - 1] - layout.time[layout.starts]
        longest = int(np.max(spans, initial=0.0))
        if longest < self.p + self.q:
            raise DataError(
                f"{self.label} has {self.p + self.q} parameters, but the longest group spans "
                f"{longest} lag(s): the data cannot determine them (use p + q <= {longest})"
            )

    def residual_start(self, residuals, layout):
        """The first autoregressive coefficient at the lag-1 correlation of the
        conditional residuals (as :meth:`AR1.residual_start`), the others 0; :meth:`start`
        without an autoregressive part."""
        if self.p == 0:
            return self.start(layout)
        first = _lag_one_start(AR1(), residuals, layout)
        return np.concatenate([first, np.zeros(self.n_params - 1)])

    def lag_correlation(self, u, lags):
        coef = self.natural(u)
        lags = np.asarray(lags)
        acf = arma_autocorrelation(coef[: self.p], coef[self.p :], int(np.max(lags, initial=0)))
        return acf[lags.astype(np.intp)]

    def leading_correlation(
        self, u: np.ndarray, longest: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(acf, lags)``: the autocorrelations at lags ``0 .. longest[-1]`` and the lag
        between each two rows of the longest pattern (times ``longest``, integers), whose
        correlation matrix is ``acf[lags]``."""
        coef = self.natural(u)
        acf = arma_autocorrelation(coef[: self.p], coef[self.p :], int(longest[-1]))
        key = longest.tobytes()
        if self._lags is None or self._lags[0] != key:  # the lags of the pattern, kept
            li = longest.astype(np.intp)
            self._lags = (key, np.abs(li[:, None] - li[None, :]))
        return acf, self._lags[1]

    def leading_factor(self, u: np.ndarray, longest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cholesky factor of the correlation of the longest pattern's rows (times
        ``longest``) and its inverse: every leading pattern's factor is a leading block."""
        acf, lags = self.leading_correlation(u, longest)
        matrix = acf[lags]
        if not np.isfinite(matrix).all():
            raise np.linalg.LinAlgError("ARMA autocorrelations are not finite")
        full, info = sla.lapack.dpotrf(matrix, lower=1, clean=1)
        if info != 0:
            raise np.linalg.LinAlgError("ARMA correlation is not positive definite")
        inverse, info = sla.lapack.dtrtri(full, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("ARMA correlation factor is singular")
        return full, inverse

    def cross_product_plan(self, layout, M, level_starts):
        if not layout.leading_patterns():
            return None
        return LeadingBlockPlan(layout, M, level_starts, self)

    def whiten(self, u, layout, M):
        times, which = layout.patterns()
        out = np.empty_like(M)
        log_det = 0.0
        longest = max(times, key=len)
        if layout.leading_patterns():
            # positions 0..m-1: every factor is a leading block of the longest group's,
            # so all groups are whitened by one batched product with its inverse
            full, inverse = self.leading_factor(u, longest)
            index, valid = layout.padded()
            padded = np.zeros(index.shape + (M.shape[1],))
            padded[valid] = M[index[valid]]
            out[index[valid]] = (inverse @ padded)[valid]
            counts = np.bincount(layout.sizes - 1, minlength=longest.size)[::-1].cumsum()[::-1]
            return out, 2.0 * float((counts * np.log(np.diagonal(full))).sum())
        coef = self.natural(u)
        acf = arma_autocorrelation(
            coef[: self.p], coef[self.p :], int(max((t[-1] for t in times), default=0))
        )
        for k, t in enumerate(times):
            ti = t.astype(np.intp)
            low = np.linalg.cholesky(acf[np.abs(ti[:, None] - ti[None, :])])
            groups = np.flatnonzero(which == k)
            m = t.size
            rows = (layout.starts[groups][:, None] + np.arange(m)[None, :]).ravel()
            block = M[rows].reshape(groups.size, m, -1).transpose(1, 0, 2).reshape(m, -1)
            solved = sla.solve_triangular(low, block, lower=True)
            out[rows] = solved.reshape(m, groups.size, -1).transpose(1, 0, 2).reshape(rows.size, -1)
            log_det += groups.size * 2.0 * float(np.log(np.diagonal(low)).sum())
        return out, log_det


def _level_of_rows(level_starts: np.ndarray, n: int) -> np.ndarray:
    sizes = np.diff(np.append(level_starts, n))
    return np.repeat(np.arange(level_starts.size), sizes)


#: rows per chunk when summing per-level outer products (bounds the temporary (rows, k, k)
#: products at 8 MB for k = 11, whatever the data's size)
PRODUCT_CHUNK = 8192
#: columns from which the batched sums beat ``k^2`` bincounts (measured: 2.3x faster at
#: k = 11, BodyWeight; 1.4x at k = 5, Ovary's 308 rows, 30 against 44 us; even at k = 3,
#: 60 rows: 14 against 13 us)
BATCHED_PRODUCTS = 4


def _per_level_products(
    level: np.ndarray, n_levels: int, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """``sum_{rows of level l} left_i right_i'`` for every level, (l, k, k).

    From :data:`BATCHED_PRODUCTS` columns on, rows whose levels do not decrease (sorted
    rows, as every caller has) are summed by
    ``np.add.reduceat`` over their outer products in chunks of :data:`PRODUCT_CHUNK`
    rows (one call per chunk instead of ``k^2`` ``bincount`` calls: BodyWeight's CAR(1)
    plan, k = 11, 1,200 calls); otherwise entry by entry with ``bincount``."""
    k = left.shape[1]
    n = level.size
    if k >= BATCHED_PRODUCTS and n and not (level[1:] < level[:-1]).any():
        out = np.zeros((n_levels, k * k))
        for lo in range(0, n, PRODUCT_CHUNK):
            hi = min(lo + PRODUCT_CHUNK, n)
            lev = level[lo:hi]
            prod = (left[lo:hi, :, None] * right[lo:hi, None, :]).reshape(hi - lo, k * k)
            change = np.flatnonzero(lev[1:] != lev[:-1])
            starts = np.empty(change.size + 1, dtype=np.intp)
            starts[0] = 0
            starts[1:] = change + 1
            out[lev[starts]] += np.add.reduceat(prod, starts, axis=0)
        return out.reshape(n_levels, k, k)
    out = np.empty((n_levels, k, k))
    symmetric = left is right  # the upper triangle, mirrored
    for a in range(k):
        for b in range(a if symmetric else 0, k):
            out[:, a, b] = np.bincount(level, weights=left[:, a] * right[:, b], minlength=n_levels)
            if symmetric:
                out[:, b, a] = out[:, a, b]
    return out


class CrossProductPlan(ABC):
    """Per-level cross products of whitened rows as a function of the parameters."""

    @abstractmethod
    def grams(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        """``(sum over each level of (L^-1 M)_i (L^-1 M)_i', log|R|)``, shapes (l, k, k)."""


class LinearPlan(CrossProductPlan):
    """Cross products that are a fixed combination of precomputed per-level matrices,
    ``grams(u) = sum_j w_j(u) G_j`` (``G``: :attr:`basis`, (terms, l, k, k)), with weights
    and ``log|R|`` from :meth:`weights`: an evaluation touches no row, and a caller that
    needs only part of the cross products (the single-term objective: the first ``p``
    rows of each level and the sum over levels of the rest) combines only those parts.
    """

    basis: np.ndarray

    @abstractmethod
    def weights(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        """``(w, log|R|)``: the weight of each basis matrix at ``u`` (terms,).

        Raises
        ------
        numpy.linalg.LinAlgError
            Outside the structure's range."""

    def grams(self, u):
        w, log_det = self.weights(u)
        t = self.basis.shape[0]
        out = (w @ self.basis.reshape(t, -1)).reshape(self.basis.shape[1:])
        return out, log_det


class BidiagonalPlan(LinearPlan):
    """AR(1)-type whitening ``e_i = (m_i - a m_{i-1}) / sqrt(1 - a^2)`` with ``a`` a
    function of the gap to the previous row: per level and per distinct gap ``d``, the
    sums ``A_d = sum m_i m_i'``, ``B_d = sum m_{i-1} m_{i-1}'``, ``C_d = sum m_i m_{i-1}'``
    (and ``F``, the first rows) give ``sum e e' = F + sum_d (A_d + a_d^2 B_d - a_d (C_d +
    C_d')) / (1 - a_d^2)``: after one pass over the rows an evaluation costs
    ``O(levels k^2)`` per distinct gap.  The basis is ``F, A_1, B_1, C_1 + C_1', A_2, ...``.
    """

    def __init__(self, layout: GroupLayout, M: np.ndarray, level_starts: np.ndarray, structure):
        n = layout.n
        level = _level_of_rows(level_starts, n)
        n_levels = level_starts.size
        gaps = layout.gaps()
        first = layout.first
        self.structure = structure
        later = np.flatnonzero(~first)
        self.gaps, gap_of_later = np.unique(gaps[later], return_inverse=True)
        self.gap_list = self.gaps.tolist()
        module = residual_kernels()
        if module is not None:
            # one pass over the rows (the same sums, added row after row)
            gap_index = np.full(n, -1, dtype=np.intp)
            gap_index[later] = gap_of_later.reshape(-1)
            self.basis = module.bidiagonal_basis(
                np.ascontiguousarray(M, dtype=float), level, gap_index, n_levels,
                self.gaps.size,
            )
            counts = np.bincount(gap_index[later], minlength=self.gaps.size)
            self.counts = [float(c) for c in counts]
            return
        k = M.shape[1]
        basis = np.empty((1 + 3 * self.gaps.size, n_levels, k, k))
        m_first = M[first]
        basis[0] = _per_level_products(level[first], n_levels, m_first, m_first)
        counts = []
        for j, d in enumerate(self.gaps):
            rows = later[gaps[later] == d]
            cur, prev, lev = M[rows], M[rows - 1], level[rows]
            if k >= BATCHED_PRODUCTS:
                # A, B and C as the blocks of one batched sum over [m_i m_{i-1}] (the same
                # products, summed in the same order: one call instead of three)
                both = np.hstack([cur, prev])
                g = _per_level_products(lev, n_levels, both, both)
                basis[1 + 3 * j] = g[:, :k, :k]
                basis[2 + 3 * j] = g[:, k:, k:]
                c = g[:, :k, k:]
            else:
                basis[1 + 3 * j] = _per_level_products(lev, n_levels, cur, cur)
                basis[2 + 3 * j] = _per_level_products(lev, n_levels, prev, prev)
                c = _per_level_products(lev, n_levels, cur, prev)
            basis[3 + 3 * j] = c + c.transpose(0, 2, 1)
            counts.append(rows.size)
        self.basis = basis
        self.counts = [float(c) for c in counts]

    def weights(self, u):
        # Python floats: a handful of gaps, where numpy's per-call cost was most of it
        w = [1.0]
        log_det = 0.0
        phi = self.structure.phi(u)
        for gap, count in zip(self.gap_list, self.counts, strict=True):
            a = phi**gap  # AR1.coefficient, on floats
            scale = 1.0 - a * a
            if not scale > 0.0:
                raise np.linalg.LinAlgError("AR(1) coefficient outside (-1, 1)")
            w += (1.0 / scale, a * a / scale, -a / scale)
            log_det += count * math.log(scale)
        return np.array(w), log_det


class CompoundSymmetryPlan(LinearPlan):
    """Compound symmetry from per-group sums: with ``S_g = sum m m'``, ``s_g = sum m`` and
    ``lambda_g = 1 + (n_g - 1) Rho``, a group contributes ``(S_g - s_g s_g' / n_g) / (1 -
    Rho) + s_g s_g' / (n_g lambda_g)``.  ``lambda_g`` depends on the group only through its
    size: the basis is the within-group part and, per distinct group size, the levels'
    sums of ``s_g s_g' / n_g``."""

    def __init__(self, layout: GroupLayout, M: np.ndarray, level_starts: np.ndarray, structure):
        n = layout.n
        level = _level_of_rows(level_starts, n)
        n_levels = level_starts.size
        group_index = np.repeat(np.arange(layout.n_groups), layout.sizes)
        sums = np.stack(
            [
                np.bincount(group_index, weights=M[:, j], minlength=layout.n_groups)
                for j in range(M.shape[1])
            ],
            axis=1,
        )
        k = M.shape[1]
        outer = sums[:, :, None] * sums[:, None, :] / layout.sizes[:, None, None]
        self.structure = structure
        group_level = level[layout.starts]
        self.sizes, size_index, self.counts = np.unique(
            layout.sizes, return_inverse=True, return_counts=True
        )
        basis = np.empty((1 + self.sizes.size, n_levels, k, k))
        flat = outer.reshape(layout.n_groups, k * k)
        # one (level, size) cell per group: the levels' sums per size by one bincount per
        # entry over the cells
        cell = size_index * n_levels + group_level
        per_cell = np.stack(
            [
                np.bincount(cell, weights=flat[:, j], minlength=self.sizes.size * n_levels)
                for j in range(k * k)
            ],
            axis=1,
        ).reshape(self.sizes.size, n_levels, k, k)
        basis[0] = _per_level_products(level, n_levels, M, M) - per_cell.sum(axis=0)
        basis[1:] = per_cell
        self.basis = basis
        self.size_list = [float(m) for m in self.sizes]
        self.count_list = [float(c) for c in self.counts]

    def weights(self, u):
        # Python floats: a handful of group sizes, where numpy's per-call cost was most
        # of an evaluation (Pastes: 17 us of which the kernel 1)
        rho = self.structure.rho(u)
        if not rho < 1.0:
            raise np.linalg.LinAlgError("compound symmetry outside its range")
        log_within = math.log(1.0 - rho)
        w = [1.0 / (1.0 - rho)]
        log_det = 0.0
        for m, count in zip(self.size_list, self.count_list, strict=True):
            lam = 1.0 + (m - 1.0) * rho
            if not lam > 0.0:
                raise np.linalg.LinAlgError("compound symmetry outside its range")
            w.append(1.0 / lam)
            log_det += count * ((m - 1.0) * log_within + math.log(lam))
        return np.array(w), log_det


class LeadingBlockPlan(CrossProductPlan):
    """A structure whose groups' correlation factors are all leading blocks of the longest
    group's (:meth:`GroupLayout.leading_patterns`): the rows ``M`` are laid out once as
    (groups, longest size, k) with zeros beyond each group's end; an evaluation is one
    batched product with the inverse factor, the rows beyond each group's end masked, and
    the per-group cross products summed to levels (no gather or scatter of rows)."""

    def __init__(self, layout: GroupLayout, M: np.ndarray, level_starts: np.ndarray, structure):
        index, valid = layout.padded()
        padded = np.zeros(index.shape + (M.shape[1],))
        padded[valid] = M[index[valid]]
        self.padded = padded
        self.mask = valid[:, :, None].astype(float)
        self.structure = structure
        times, _ = layout.patterns()
        self.longest = max(times, key=len)
        self.counts = np.bincount(layout.sizes - 1, minlength=self.longest.size)[::-1]
        self.counts = self.counts.cumsum()[::-1].astype(float)
        level = _level_of_rows(level_starts, layout.n)[layout.starts]
        n_levels = level_starts.size
        self.sizes = np.ascontiguousarray(layout.sizes, dtype=np.intp)
        self.group_level = np.ascontiguousarray(level, dtype=np.intp)
        self.n_levels = int(n_levels)
        # groups -> levels: the identity when each level is one group (the usual case)
        if n_levels == layout.n_groups and np.array_equal(level, np.arange(n_levels)):
            self.to_levels = None
        else:
            self.to_levels = np.zeros((n_levels, layout.n_groups))
            self.to_levels[level, np.arange(layout.n_groups)] = 1.0

    def grams(self, u):
        full, inverse = self.structure.leading_factor(u, self.longest)
        w = inverse @ self.padded
        w *= self.mask
        per_group = np.matmul(w.transpose(0, 2, 1), w)
        log_det = 2.0 * float(self.counts @ np.log(np.diagonal(full)))
        if self.to_levels is None:
            return per_group, log_det
        g, k = per_group.shape[0], per_group.shape[1]
        out = (self.to_levels @ per_group.reshape(g, k * k)).reshape(-1, k, k)
        return out, log_det
