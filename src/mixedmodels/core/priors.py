"""Prior distributions of the Bayesian mixed model and their exact conditional updates.

Two kinds of prior, by what they are put on:

* **location priors** (the fixed effects): :class:`Flat`, :class:`Normal` and
  :class:`StudentT`.  Given the other parameters each makes ``beta_j`` normal (Normal
  directly; Student-t as a scale mixture of normals, ``beta_j | lambda ~ N(m, lambda s^2)``,
  ``lambda ~ IG(nu/2, nu/2)``, with ``lambda`` drawn exactly each sweep), so the fixed
  effects stay in the joint normal draw with the random effects;
* **scale priors** (``sigma`` and the random-effect standard deviations):
  :class:`HalfNormal`, :class:`HalfCauchy`, :class:`HalfStudentT`, :class:`Flat` (on the
  standard deviation) and :class:`InverseGamma` (on the variance).  Given the rest, the
  variance ``v`` has a likelihood kernel ``v^-k exp(-S / v)``; each prior draws ``v`` from
  the exact full conditional:

  - inverse-gamma: ``IG(a + k, b + S)`` (conjugate);
  - half-t / half-Cauchy: the scale mixture ``v | a ~ IG(nu/2, nu/a)``,
    ``a ~ IG(1/2, 1/s^2)`` (Wand et al. 2011), which makes ``sqrt(v)`` half-t(nu, s); ``v``
    and ``a`` are each drawn from their inverse-gamma conditionals;
  - half-normal: a generalized inverse Gaussian, ``GIG(1/2 - k, 1/s^2, 2 S)``;
  - flat on the sd: ``p(v) ~ v^-1/2``, so ``IG(k - 1/2, S)``.

  Each also gives its log density on the sd scale, for the slice-sampling update of
  vector terms (see :mod:`mixedmodels.core.covariance`).

:class:`LKJ` is the correlation prior of vector terms, ``p(R) ~ det(R)^(eta - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixedmodels.core.slice import slice_step
from mixedmodels.errors import ArgumentError


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ArgumentError(f"{name} must be finite and {bound}, not {value!r}")
    return v


def _finite(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(v):
        raise ArgumentError(f"{name} must be finite, not {value!r}")
    return v


def inverse_gamma(rng: np.random.Generator, shape: float, rate: float) -> float:
    """One draw from ``IG(shape, rate)`` (density ``~ v^(-shape-1) exp(-rate / v)``)."""
    return float(rate / rng.gamma(shape))


class Prior:
    """Base class of every prior (for ``isinstance`` checks and the repr)."""

    #: this prior may be put on a fixed effect
    location: bool = False
    #: this prior may be put on sigma or a random-effect standard deviation
    scale: bool = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


# ----------------------------------------------------------------------- scale priors
class ScalePrior(Prior):
    """A prior on a standard deviation (or on its variance)."""

    scale = True

    def new_state(self, variance: float) -> float:
        """The auxiliary variable at a chain's start, given the starting variance."""
        return 1.0

    def draw_variance(
        self, rng: np.random.Generator, k: float, s: float, state: float
    ) -> tuple[float, float]:
        """Draw ``v`` from ``p(v) v^-k exp(-s / v)`` (then the auxiliary variable)."""
        raise NotImplementedError

    def log_density_sd(self, sd: float) -> float:
        """Log prior density of the standard deviation (up to a constant), the auxiliary
        variable integrated out."""
        raise NotImplementedError

    def refresh_state(self, rng: np.random.Generator, variance: float, state: float) -> float:
        """Draw the auxiliary variable given the variance (after a move that integrated it
        out)."""
        return state

    def draw_sd(self, rng: np.random.Generator) -> float:
        """One draw of the standard deviation from the prior (simulation-based checks)."""
        raise NotImplementedError

    @property
    def proper(self) -> bool:
        """Whether the prior integrates to one (the half-t, half-Cauchy and half-normal do)."""
        return True


class HalfStudentT(ScalePrior):
    """Half Student-t with ``nu`` degrees of freedom and scale ``s`` on a standard deviation."""

    def __init__(self, nu: float, s: float):
        self.nu = _positive("HalfStudentT's nu", nu)
        self.s = _positive("HalfStudentT's scale s", s)

    def new_state(self, variance: float) -> float:
        return self.s**2

    def draw_variance(self, rng, k, s, state):
        v = inverse_gamma(rng, self.nu / 2 + k, self.nu / state + s)
        a = inverse_gamma(rng, (self.nu + 1) / 2, self.nu / v + 1 / self.s**2)
        return v, a

    def log_density_sd(self, sd: float) -> float:
        return -(self.nu + 1) / 2 * math.log1p((sd / self.s) ** 2 / self.nu)

    def refresh_state(self, rng, variance, state):
        return inverse_gamma(rng, (self.nu + 1) / 2, self.nu / variance + 1 / self.s**2)

    def draw_sd(self, rng):
        return float(abs(self.s * rng.standard_t(self.nu)))


class HalfCauchy(HalfStudentT):
    """Half-Cauchy with scale ``s`` on a standard deviation (half-t with ``nu = 1``)."""

    def __init__(self, s: float):
        super().__init__(1.0, s)

    def __repr__(self) -> str:
        return f"HalfCauchy(s={self.s!r})"


class HalfNormal(ScalePrior):
    """Half-normal with scale ``s`` on a standard deviation.

    The variance's full conditional is a generalized inverse Gaussian,
    ``v^(p-1) exp(-(a v + b / v) / 2)`` with ``p = 1/2 - k``, ``a = 1/s^2``, ``b = 2S``; it is
    updated by an exact slice-sampling step in ``log v`` (the state is the current
    variance).
    """

    def __init__(self, s: float):
        self.s = _positive("HalfNormal's scale s", s)

    def new_state(self, variance: float) -> float:
        return variance

    def refresh_state(self, rng, variance, state):
        return variance

    def draw_variance(self, rng, k, s, state):
        p, a, b = 0.5 - k, 1 / self.s**2, 2 * s

        def log_density(x: float) -> float:  # density of x = log v (Jacobian v)
            v = math.exp(x)
            return p * x - 0.5 * (a * v + b / v)

        x0 = math.log(state)
        width = 2.5 * math.sqrt(2 / max(k, 0.5)) + 0.1
        x, _ = slice_step(rng, log_density, x0, log_density(x0), width)
        v = math.exp(x)
        return v, v

    def log_density_sd(self, sd: float) -> float:
        return -0.5 * (sd / self.s) ** 2

    def draw_sd(self, rng):
        return float(abs(self.s * rng.standard_normal()))


class InverseGamma(ScalePrior):
    """Inverse-gamma ``IG(a, b)`` on a variance (``a = b = 0``: the improper ``1/v``)."""

    def __init__(self, a: float, b: float):
        self.a = _positive("InverseGamma's shape a", a, allow_zero=True)
        self.b = _positive("InverseGamma's rate b", b, allow_zero=True)
        if (self.a == 0) != (self.b == 0):
            raise ArgumentError("InverseGamma needs a > 0 and b > 0 (or a = b = 0 for 1/v)")

    @property
    def proper(self) -> bool:
        """Whether the prior is proper: ``a > 0`` (``a = b = 0`` is the improper ``1/v``)."""
        return self.a > 0

    def draw_variance(self, rng, k, s, state):
        return inverse_gamma(rng, self.a + k, self.b + s), state

    def log_density_sd(self, sd: float) -> float:
        v = sd * sd  # density of v times |dv/dsd| = 2 sd
        return -(self.a + 1) * math.log(v) - self.b / v + math.log(sd)

    def draw_sd(self, rng):
        if not self.proper:
            raise ArgumentError("cannot draw from the improper InverseGamma(0, 0)")
        return math.sqrt(inverse_gamma(rng, self.a, self.b))


# ----------------------------------------------------------------------- location priors
class LocationPrior(Prior):
    """A prior on a fixed effect, normal given an auxiliary variable."""

    location = True

    def new_state(self, variance: float = 1.0) -> float:
        """The auxiliary variable of a scale-mixture prior (1 for the normal)."""
        return 1.0

    def precision_and_mean(self, state: float) -> tuple[float, float]:
        """Prior precision and mean of the coefficient given the auxiliary variable."""
        raise NotImplementedError

    def update_state(self, rng: np.random.Generator, value: float, state: float) -> float:
        """Draw the auxiliary variable given the coefficient."""
        return state

    def draw(self, rng: np.random.Generator) -> float:
        """One draw of the coefficient from the prior (simulation-based checks)."""
        raise NotImplementedError

    @property
    def proper(self) -> bool:
        """Whether the prior integrates to one."""
        return True


class Flat(LocationPrior, ScalePrior):
    """The improper uniform prior: on a fixed effect, or on a standard deviation."""

    def __init__(self):
        pass

    @property
    def proper(self) -> bool:
        """False: the flat prior is improper."""
        return False

    def precision_and_mean(self, state):
        return 0.0, 0.0

    def draw_variance(self, rng, k, s, state):
        if k <= 0.5:
            raise ArgumentError("a flat prior on a standard deviation needs 2 or more levels")
        return inverse_gamma(rng, k - 0.5, s), state

    def log_density_sd(self, sd: float) -> float:
        return 0.0

    def draw(self, rng):
        """Raises: an improper prior cannot be drawn from."""
        raise ArgumentError("cannot draw from the improper Flat prior")

    draw_sd = draw


class Normal(LocationPrior):
    """Normal with mean ``mean`` and standard deviation ``sd`` on a fixed effect."""

    def __init__(self, mean: float, sd: float):
        self.mean = _finite("Normal's mean", mean)
        self.sd = _positive("Normal's sd", sd)

    def precision_and_mean(self, state):
        return 1.0 / self.sd**2, self.mean

    def draw(self, rng):
        """One draw of the coefficient from the prior (simulation-based checks)."""
        return float(self.mean + self.sd * rng.standard_normal())


class StudentT(LocationPrior):
    """Student-t with ``nu`` degrees of freedom, location ``mean`` and scale ``s`` on a
    fixed effect (``nu = 1``: Cauchy)."""

    def __init__(self, nu: float, mean: float, s: float):
        self.nu = _positive("StudentT's nu", nu)
        self.mean = _finite("StudentT's mean", mean)
        self.s = _positive("StudentT's scale s", s)

    def precision_and_mean(self, state):
        return 1.0 / (state * self.s**2), self.mean

    def update_state(self, rng, value, state):
        z = (value - self.mean) / self.s
        return inverse_gamma(rng, (self.nu + 1) / 2, (self.nu + z * z) / 2)

    def draw(self, rng):
        """One draw of the coefficient from the prior (simulation-based checks)."""
        return float(self.mean + self.s * rng.standard_t(self.nu))


# ----------------------------------------------------------------------- correlations
@dataclass(frozen=True, eq=True)
class LKJ(Prior):
    """Lewandowski-Kurowicka-Joe prior on a correlation matrix, ``p(R) ~ det(R)^(eta-1)``
    (``eta = 1``: uniform over correlation matrices; larger: toward the identity).

    Under it the canonical partial correlations of the Cholesky factor are independent,
    the one in column ``j`` (0-based) of a ``p x p`` matrix ``Beta(b_j, b_j)`` on
    ``(-1, 1)`` with ``b_j = eta + (p - 2 - j) / 2``.
    """

    eta: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "eta", _positive("LKJ's eta", self.eta))

    def __repr__(self) -> str:
        return f"LKJ(eta={self.eta!r})"

    def cpc_shape(self, p: int, column: int) -> float:
        """Beta shape of the partial correlation in ``column`` of a ``p x p`` matrix (LKJ's
        onion construction: ``eta + (p - 2 - column) / 2``)."""
        return self.eta + (p - 2 - column) / 2

    def log_density_cpc(self, z: float, p: int, column: int) -> float:
        """Log density (up to a constant) of the partial correlation ``z``."""
        b = self.cpc_shape(p, column)
        return (b - 1) * math.log1p(-z * z)

    def draw(self, rng: np.random.Generator, p: int) -> np.ndarray:
        """A correlation matrix from the prior (through its partial correlations)."""
        cpc = np.zeros((p, p))
        for j in range(p - 1):
            b = self.cpc_shape(p, j)
            cpc[j + 1 :, j] = 2 * rng.beta(b, b, size=p - 1 - j) - 1
        low = cholesky_from_cpc(cpc)
        return low @ low.T


def cholesky_from_cpc(cpc: np.ndarray) -> np.ndarray:
    """The Cholesky factor of a correlation matrix from its canonical partial correlations
    (strict lower triangle of ``cpc``): ``L_ij = z_ij sqrt(1 - sum_{k<j} L_ik^2)``."""
    p = cpc.shape[0]
    low = np.zeros((p, p))
    for i in range(p):
        rest = 1.0
        for j in range(i):
            low[i, j] = cpc[i, j] * math.sqrt(rest)
            rest -= low[i, j] ** 2
        low[i, i] = math.sqrt(max(rest, 0.0))
    return low


def cpc_from_cholesky(low: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cholesky_from_cpc`."""
    p = low.shape[0]
    cpc = np.zeros((p, p))
    for i in range(p):
        rest = 1.0
        for j in range(i):
            cpc[i, j] = low[i, j] / math.sqrt(rest) if rest > 0 else 0.0
            rest -= low[i, j] ** 2
    return cpc
