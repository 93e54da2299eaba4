"""Response distributions and link functions of generalized linear (mixed) models.

Each link and each family is a small class; families and links are found by name in a
registry (:func:`make_family`), so adding one is adding a class, never a branch elsewhere.
A family gives what penalized iteratively reweighted least squares needs: the variance
function ``V(mu)``, the unit deviance, the log density (for the log-likelihood and AIC, as
R's ``family$aic``), R's starting means, a response check, simulation, and whether it has a
dispersion parameter.  (R's warnings about non-integer counts are the design layer's.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from scipy import special, stats

from mixedmodels.errors import ArgumentError

_EPS = np.finfo(float).eps
_ETA_MAX = 700.0  # exp(700) ~ 1e304: larger linear predictors would overflow to inf


def _exp(eta):
    """``exp(eta)`` with ``eta`` capped at 700, so a runaway scoring step gives a huge
    but finite mean instead of ``inf`` and an overflow warning."""
    return np.exp(np.minimum(eta, _ETA_MAX))


def _clip_unit(mu):
    """``mu`` kept inside ``[eps, 1 - eps]`` (R's ``linkinv`` bounds): the same numbers as
    ``np.clip(mu, eps, 1 - eps)`` (NaN kept), as two ufunc calls without ``np.clip``'s
    Python dispatch, which cost ~5 us a call on the thousands of PIRLS steps of a fit."""
    return np.minimum(np.maximum(mu, _EPS), _ONE_MINUS_EPS)


_ONE_MINUS_EPS = 1 - _EPS


_RECURRENCE_STEPS = np.arange(10.0)


def _trigamma(x: np.ndarray) -> np.ndarray:
    """``psi'(x)`` for ``x > 0``: ten steps of the recurrence ``psi'(x) = psi'(x + 1) + 1 /
    x^2``, then the asymptotic series at ``x + 10 >= 10`` to ``x^-11`` (truncation below
    3e-14 relative); several times faster than ``scipy.special.polygamma(1, x)``, which goes
    through ``zeta``."""
    z = np.asarray(x, dtype=float)
    # the ten terms 1 / (z + j)^2 as rows of one array, summed row after row (numpy adds
    # along the leading axis in order: the sums of the loop ``out += 1 / (z + j)^2``,
    # with three array operations instead of forty)
    terms = _RECURRENCE_STEPS.reshape((10,) + (1,) * z.ndim) + z
    terms *= terms
    np.divide(1.0, terms, out=terms)
    out = terms.sum(axis=0)
    # the series r (1 + r (1/2 + r (1/6 - r^2 tail))), tail = 1/30 - r^2 (1/42 - r^2 (1/30
    # - r^2 5/66)), r = 1 / (z + 10), evaluated in place in one buffer (the same operations
    # in the same order)
    r = z + 10.0
    np.divide(1.0, r, out=r)
    r2 = r * r
    t = r2 * 5.0
    t /= 66
    for c in (1.0 / 30, 1.0 / 42, 1.0 / 30):
        np.subtract(c, t, out=t)
        t *= r2
    np.subtract(1.0 / 6, t, out=t)
    t *= r
    t += 0.5
    t *= r
    t += 1.0
    t *= r
    out += t
    return out


def _trigamma_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``psi'(a)`` and ``psi'(b)`` by one :func:`_trigamma` call on both (its operations are
    elementwise: the same numbers as two calls, with half the calls' overhead)."""
    both = _trigamma(np.concatenate([a, b]))
    return both[: a.size], both[a.size :]


# ------------------------------------------------------------------------------- links
class Link(ABC):
    """A link function ``eta = g(mu)`` with its inverse and ``d mu / d eta``."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, mu: np.ndarray) -> np.ndarray:
        """``eta = g(mu)``."""

    @abstractmethod
    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``mu = g^-1(eta)``."""

    @abstractmethod
    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""

    def mu_eta_derivative(self, eta: np.ndarray) -> np.ndarray | None:
        """``d^2 mu / d eta^2`` (for PIRLS's Newton steps), or None where the link does not
        give it (its families then take Fisher scoring steps)."""
        return None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LogitLink(Link):
    """``log(mu / (1 - mu))``; the mean is kept inside (0, 1) as R's ``linkinv`` does."""

    name = "logit"

    def __call__(self, mu):
        return special.logit(mu)

    def inverse(self, eta):
        return _clip_unit(special.expit(eta))

    def mu_eta(self, eta):
        p = special.expit(eta)
        return np.maximum(p * (1 - p), _EPS)


class ProbitLink(Link):
    """``Phi^-1(mu)``."""

    name = "probit"

    def __call__(self, mu):
        return special.ndtri(mu)

    def inverse(self, eta):
        return _clip_unit(special.ndtr(eta))

    def mu_eta(self, eta):
        return np.maximum(stats.norm.pdf(eta), _EPS)


class CloglogLink(Link):
    """``log(-log(1 - mu))``."""

    name = "cloglog"

    def __call__(self, mu):
        return np.log(-np.log1p(-mu))

    def inverse(self, eta):
        return _clip_unit(-np.expm1(-np.exp(eta)))

    def mu_eta(self, eta):
        e = np.minimum(eta, 700.0)
        return np.maximum(np.exp(e - np.exp(e)), _EPS)


class LogLink(Link):
    """``log(mu)``; the mean is kept above machine epsilon as R's ``linkinv`` does."""

    name = "log"

    def __call__(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.maximum(_exp(eta), _EPS)

    def mu_eta(self, eta):
        return np.maximum(_exp(eta), _EPS)

    def mu_eta_derivative(self, eta):
        return np.maximum(_exp(eta), _EPS)


class IdentityLink(Link):
    """``mu``."""

    name = "identity"

    def __call__(self, mu):
        return mu

    def inverse(self, eta):
        return eta

    def mu_eta(self, eta):
        return np.ones_like(eta)

    def mu_eta_derivative(self, eta):
        return np.zeros_like(eta)


class SqrtLink(Link):
    """``sqrt(mu)``."""

    name = "sqrt"

    def __call__(self, mu):
        return np.sqrt(mu)

    def inverse(self, eta):
        return eta**2

    def mu_eta(self, eta):
        return 2 * eta

    def mu_eta_derivative(self, eta):
        return np.full_like(eta, 2.0)


class InverseLink(Link):
    """``1 / mu`` (the Gamma family's canonical link)."""

    name = "inverse"

    def __call__(self, mu):
        return 1.0 / mu

    def inverse(self, eta):
        return 1.0 / eta

    def mu_eta(self, eta):
        return -1.0 / eta**2

    def mu_eta_derivative(self, eta):
        return 2.0 / eta**3


class InverseSquareLink(Link):
    """``1 / mu^2`` (the inverse Gaussian family's canonical link)."""

    name = "1/mu^2"

    def __call__(self, mu):
        return 1.0 / mu**2

    def inverse(self, eta):
        return 1.0 / np.sqrt(eta)

    def mu_eta(self, eta):
        return -0.5 * eta**-1.5

    def mu_eta_derivative(self, eta):
        return 0.75 * eta**-2.5


LINKS: dict[str, type[Link]] = {
    cls.name: cls
    for cls in (
        LogitLink,
        ProbitLink,
        CloglogLink,
        LogLink,
        IdentityLink,
        SqrtLink,
        InverseLink,
        InverseSquareLink,
    )
}


# ----------------------------------------------------------------------------- families
class Family(ABC):
    """A GLM family with its link.

    Class attributes name the family, its links (the first is the default) and whether it
    has a dispersion parameter.
    """

    name: ClassVar[str]
    links: ClassVar[tuple[str, ...]]
    has_dispersion: ClassVar[bool] = False
    #: R's name of the family, as summaries print it
    r_name: ClassVar[str] = ""
    #: whether the Laplace stage searches in scaled coordinates (theta relative to its
    #: first-stage value, beta in standard errors): for families whose coefficients range
    #: from 1e-4 (inverse links) to 1e3 (identity links); binomial and poisson keep the
    #: raw coordinates their reference numbers were made with
    scaled_search: ClassVar[bool] = True
    #: whether PIRLS solves every step on the dense system, even where the random effects'
    #: blocks could be solved one by one (the same numbers to rounding, fewer operations):
    #: binomial and poisson keep the dense solver's rounding their fits are pinned to
    dense_steps: ClassVar[bool] = False

    def __init__(self, link: Link | None = None):
        self.link = link if link is not None else LINKS[self.links[0]]()

    @abstractmethod
    def variance(self, mu: np.ndarray) -> np.ndarray:
        """The variance function ``V(mu)``."""

    @abstractmethod
    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``d_i = 2 w_i (log p(y_i | y_i) - log p(y_i | mu_i))``."""

    @abstractmethod
    def log_density(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``log p(y_i | mu_i)`` per observation (R's ``family$aic`` terms)."""

    def unit_deviance_at(
        self, y: np.ndarray, eta: np.ndarray, mu: np.ndarray, weights: np.ndarray
    ) -> np.ndarray:
        """:meth:`unit_deviance` where both ``eta`` and ``mu = g^-1(eta)`` are at hand
        (PIRLS's trial points): families written in ``eta`` need not take the link of
        ``mu`` again."""
        return self.unit_deviance(y, mu, weights)

    @abstractmethod
    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """R's ``mustart``."""

    def variance_derivative(self, mu: np.ndarray) -> np.ndarray | None:
        """``V'(mu)`` (for PIRLS's Newton steps), or None where not given (Fisher scoring
        steps then)."""
        return None

    @abstractmethod
    def check_response(self, y: np.ndarray) -> str | None:
        """What is wrong with ``y`` for this family (an error), or None."""

    @abstractmethod
    def simulate(
        self,
        mu: np.ndarray,
        weights: np.ndarray,
        rng: np.random.Generator,
        dispersion: float = 1.0,
    ):
        """A response drawn from the family at means ``mu`` (and dispersion ``phi`` where
        the family has one), in the scale ``y`` is given."""

    def working(
        self, y: np.ndarray, eta: np.ndarray, mu: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One scoring step's weights ``h`` and working residuals ``r`` (the step solves
        penalized least squares for ``eta + r`` with weights ``h``): Fisher scoring,
        ``h = w (d mu/d eta)^2 / V(mu)``, ``r = (y - mu) / (d mu/d eta)``."""
        d = self.link.mu_eta(eta)
        return weights * d**2 / self.variance(mu), (y - mu) / d

    def laplace_weights(
        self, y: np.ndarray, eta: np.ndarray, mu: np.ndarray, weights: np.ndarray
    ) -> np.ndarray:
        """The weights of ``log|Lambda' Z' W Z Lambda + I|`` at the mode: lme4's GLM
        (expected information) weights ``w (d mu/d eta)^2 / V(mu)``."""
        d = self.link.mu_eta(eta)
        return weights * d**2 / self.variance(mu)

    def kernel(self, y: np.ndarray, weights: np.ndarray) -> FamilyKernel:
        """The functions PIRLS calls at every trial point and scoring step, bound to the
        response ``y`` and the prior ``weights`` (what does not depend on the mean is
        computed once here).  The values are those of the family's methods."""
        return FamilyKernel(self, y, weights)

    #: names of the family's own parameters, estimated with beta (none for lme4's)
    extra_names: ClassVar[tuple[str, ...]] = ()
    #: whether vcov(beta) comes from the Hessian in all parameters, the family's own
    #: included (glmmTMB), or with them held at their estimates (lme4's glmer.nb)
    joint_vcov: ClassVar[bool] = False

    def extra_start(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Starting values of the family's own parameters (on their unbounded scale)."""
        return np.zeros(len(self.extra_names))

    def with_extra(self, values: np.ndarray) -> Family:
        """The family with its own parameters set to ``values``."""
        return self

    @property
    def extra_values(self) -> np.ndarray:
        return np.zeros(0)

    def vanished_extra(
        self, values: np.ndarray, below: float = 1e-4, to: float = 1e-8
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Where the family's own parameters ``values`` leave a part of the model that has
        (nearly) vanished (every zero-inflation probability below ``below``: the deviance
        may fall towards a limit, the MLE at ``-inf``): the values with that part moved to
        size ``to`` (the largest probability) and the mask of the entries concerned (the
        optimizer then holds them); None otherwise, and for families without such a part."""
        return None

    def saturated_extra(
        self, values: np.ndarray, below: float = 1e-5, to: float = 1e-2
    ) -> list[np.ndarray]:
        """Other values of the family's own parameters to try from, where one coefficient
        has driven its part of the model to (nearly) nothing on every row it acts on
        (every zero-inflation probability of a factor level below ``below``): there the
        deviance is flat in that coefficient, so an optimizer that arrives there stops,
        possibly short of a minimum in the coefficient's informative range.  Each
        alternative moves one such coefficient so the largest probability of its rows is
        ``to``.  None for families without such a part."""
        return []

    def check_link_response(self, y: np.ndarray) -> str | None:
        """What is wrong with ``y`` for this family's link (R's "cannot find valid starting
        values"), or None."""
        return None

    def aic(
        self,
        y: np.ndarray,
        mu: np.ndarray,
        weights: np.ndarray,
        deviance: float,
        trials: np.ndarray | None = None,
    ) -> float:
        """R's ``family$aic``: ``-2 sum log p(y_i | mu_i)``; for families with a dispersion
        parameter it is estimated from ``deviance`` and ``+ 2`` is added, as R does.
        ``trials``: a binomial ``cbind`` response's totals (``weights`` then holds the prior
        weights times them)."""
        return -2.0 * float(np.sum(self.log_density(y, mu, weights)))

    def objective_term(
        self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray, deviance: float
    ) -> float:
        """The data term of the Laplace deviance (lme4's ``glmResp::Laplace``): the deviance
        ``sum d_i`` for families without a dispersion parameter (it differs from R's
        ``aic`` by a constant), R's ``aic`` for the others (it is not a constant shift
        there: the dispersion is estimated from the deviance)."""
        if self.has_dispersion:
            return self.aic(y, mu, weights, deviance)
        return deviance

    def fit_sigma(
        self, y: np.ndarray, mu: np.ndarray, u: np.ndarray, weights: np.ndarray
    ) -> float:
        """What ``sigma()`` of a fit reports: 1 without a dispersion parameter; lme4's
        ``sqrt((Pearson X^2 + ||u||^2) / n)`` for its families with one; glmmTMB's
        dispersion for its families."""
        if not self.has_dispersion:
            return 1.0
        wrss = float(np.sum(weights * (y - mu) ** 2 / self.variance(mu)))
        return float(np.sqrt((wrss + float(u @ u)) / y.size))

    def reported_extra(self) -> list[tuple[str, float, int, bool]]:
        """The family's own parameters as reported: name, value, its position in
        ``extra_values`` and whether the value is ``exp`` of that entry (a dispersion on
        the log scale) or the entry itself (a zero-inflation coefficient)."""
        return []

    def response_mean(self, mu: np.ndarray) -> np.ndarray:
        """``E(y | u)`` from the count model's mean ``mu`` (``mu`` but for zero inflation)."""
        return mu

    def dispersion_for_simulation(self, sigma: float) -> float:
        """The dispersion ``phi`` (``Var(y) = phi V(mu) / w``) that simulation uses for a fit
        whose ``sigma`` is given: ``sigma^2``."""
        return sigma**2

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.link == other.link  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, self.link.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.link!r})"

    def __str__(self) -> str:
        return f"{self.r_name or self.name}  ( {self.link.name} )"


class FamilyKernel:
    """A family's PIRLS functions bound to one response and its prior weights.

    PIRLS evaluates the deviance at every trial point and the working weights at every
    scoring step of every Laplace evaluation; a kernel holds the response, the weights and
    whatever the family precomputes from them, so each call is the arithmetic alone.  This
    generic kernel calls the family's methods; families override :meth:`Family.kernel`
    with kernels that give the same values with less work.

    Parameters
    ----------
    family : Family
    y, weights : ndarray (n,)
    """

    def __init__(self, family: Family, y: np.ndarray, weights: np.ndarray):
        self.family = family
        self.link = family.link
        self.y = y
        self.weights = weights

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """The mean ``g^-1(eta)``."""
        return self.link.inverse(eta)

    def deviance(self, eta: np.ndarray, mu: np.ndarray) -> float:
        """``sum_i d_i(y_i, mu_i)``."""
        return float(np.sum(self.family.unit_deviance_at(self.y, eta, mu, self.weights)))

    def working(self, eta: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One scoring step's weights and working residuals (:meth:`Family.working`)."""
        return self.family.working(self.y, eta, mu, self.weights)

    def laplace_weights(self, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """The weights of ``log |L|^2`` at the mode (:meth:`Family.laplace_weights`)."""
        return self.family.laplace_weights(self.y, eta, mu, self.weights)

    def objective_term(self, mu: np.ndarray, deviance: float) -> float:
        """The data term of the Laplace deviance (:meth:`Family.objective_term`)."""
        return self.family.objective_term(self.y, mu, self.weights, deviance)

    def rebind(self, family: Family) -> FamilyKernel:
        """The kernel of ``family`` (the same family with other values of its own
        parameters: each Laplace evaluation of a fit that estimates them) on this response,
        keeping what was computed from the response alone."""
        return family.kernel(self.y, self.weights)


class _BinomialKernel(FamilyKernel):
    """The binomial's PIRLS functions: the values of :class:`Binomial`'s methods, with
    whether the response is binary decided once, and on the logit link ``d mu / d eta``
    taken as ``V(mu) = max(mu (1 - mu), eps)`` (the same number: ``mu`` is ``expit(eta)``
    clipped to ``[eps, 1 - eps]``, where ``expit(eta) (1 - expit(eta))`` is below eps)."""

    def __init__(self, family: Family, y: np.ndarray, weights: np.ndarray):
        super().__init__(family, y, weights)
        self.binary = bool(np.all((y == 0.0) | (y == 1.0)))
        self.ones = y == 1.0
        self.failures = 1 - y
        self.twice_weights = 2 * weights
        self.logit = isinstance(family.link, LogitLink)

    def deviance(self, eta, mu):
        if self.binary:
            return float(
                np.sum(-2.0 * self.weights * np.log(np.where(self.ones, mu, 1.0 - mu)))
            )
        y, f = self.y, self.failures
        terms = special.xlogy(y, y / mu) + special.xlogy(f, f / (1 - mu))
        return float(np.sum(self.twice_weights * terms))

    def working(self, eta, mu):
        if not self.logit:
            return super().working(eta, mu)
        v = np.maximum(mu * (1 - mu), _EPS)
        return self.weights * v**2 / v, (self.y - mu) / v

    def laplace_weights(self, eta, mu):
        if not self.logit:
            return super().laplace_weights(eta, mu)
        v = np.maximum(mu * (1 - mu), _EPS)
        return self.weights * v**2 / v


class _PoissonKernel(FamilyKernel):
    """The Poisson's PIRLS functions: the values of :class:`Poisson`'s methods, and on the
    log link ``d mu / d eta`` taken as ``mu`` (the same number: both are ``max(exp(eta),
    eps)``)."""

    def __init__(self, family: Family, y: np.ndarray, weights: np.ndarray):
        super().__init__(family, y, weights)
        self.twice_weights = 2 * weights
        self.log = isinstance(family.link, LogLink)

    def deviance(self, eta, mu):
        y = self.y
        return float(np.sum(self.twice_weights * (special.xlogy(y, y / mu) - (y - mu))))

    def working(self, eta, mu):
        if not self.log:
            return super().working(eta, mu)
        return self.weights * mu**2 / mu, (self.y - mu) / mu

    def laplace_weights(self, eta, mu):
        if not self.log:
            return super().laplace_weights(eta, mu)
        return self.weights * mu**2 / mu


class _NewtonLogKernel(FamilyKernel):
    """PIRLS functions of a family with Newton steps (:func:`_newton_working`, the same
    expressions and numbers): on the log link ``d mu / d eta`` and ``d^2 mu / d eta^2``
    are ``mu`` itself (all three are ``max(exp(eta), eps)``), so the link is not evaluated
    twice more per step; with unit prior weights their products are skipped (``1 x = x``);
    and the expected information of the last step's ``eta`` is kept for the Laplace weights
    at the mode (the same expression)."""

    def __init__(self, family: Family, y: np.ndarray, weights: np.ndarray):
        super().__init__(family, y, weights)
        self.log = isinstance(family.link, LogLink)
        self.unit_weights = None if np.all(weights == 1.0) else weights
        self._fisher: tuple | None = None  # (eta, mu, h_F) of the last step

    def _link_terms(self, eta, mu):
        if self.log:
            return mu, mu
        return self.link.mu_eta(eta), self.link.mu_eta_derivative(eta)

    def working(self, eta, mu):
        family = self.family
        d, d2 = self._link_terms(eta, mu)
        v, dv = family.variance(mu), family.variance_derivative(mu)
        h, r, fisher = _newton_terms(self.y, mu, self.unit_weights, d, d2, v, dv)
        self._fisher = (eta, mu, fisher)
        return h, r

    def laplace_weights(self, eta, mu):
        last = self._fisher
        if last is not None and last[0] is eta and last[1] is mu:
            return last[2]
        d = mu if self.log else self.link.mu_eta(eta)
        return self.weights * d**2 / self.family.variance(mu)


def _newton_terms(
    y: np.ndarray,
    mu: np.ndarray,
    weights: np.ndarray | None,
    d: np.ndarray,
    d2: np.ndarray | None,
    v: np.ndarray,
    dv: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_newton_working`'s weights and working residuals, and the expected
    information ``h_F``, from ``d mu / d eta`` (``d``), ``d^2 mu / d eta^2`` (``d2``),
    ``V(mu)`` (``v``) and ``V'(mu)`` (``dv``); ``weights`` None for unit prior weights.
    Each subexpression (``d^2``, ``w (y - mu)``) is computed once."""
    dd = d**2
    fisher = dd / v if weights is None else weights * dd / v
    if d2 is None or dv is None:
        return fisher, (y - mu) / d, fisher
    residual = y - mu
    w_residual = residual if weights is None else weights * residual
    score = w_residual * d / v
    h = fisher - w_residual * (d2 / v - dd * dv / v**2)
    h = np.where(np.isfinite(h) & (h >= 1e-3 * fisher), h, fisher)
    return h, score / h, fisher


def _gamma_log_working(
    ratio: np.ndarray, relative: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The Gamma family's Newton weights and working residuals on the log link from
    ``ratio = y / mu`` and ``relative = (y - mu) / mu`` (``weights`` None for unit prior
    weights): ``-d^2 l / d eta^2 = w y / mu`` and ``d l / d eta = w (y - mu) / mu``, so
    ``h = w ratio`` and ``r = relative / ratio`` where ``ratio >= 1e-3`` (the observed
    information at least 1e-3 of the expected, ``w``: :func:`_newton_working`'s rule);
    ``h = w`` and ``r = relative`` (Fisher scoring) in the other rows."""
    valid = ratio >= 1e-3
    if valid.all():
        h = ratio if weights is None else weights * ratio
        return h, relative / ratio
    h = np.where(valid, ratio, 1.0)
    r = np.where(valid, relative / h, relative)
    return (h if weights is None else weights * h), r


def _gamma_log_fisher(mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The Gamma family's expected information on the log link, ``w (d mu / d eta)^2 /
    V(mu) = w mu^2 / mu^2 = w`` (a new array)."""
    return np.array(weights, dtype=float)


def _newton_working(
    family: Family, y: np.ndarray, eta: np.ndarray, mu: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PIRLS's weights and working residuals from the observed information: ``h = -d^2 l /
    d eta^2`` where that is at least 1e-3 of the expected information ``h_F = w (d mu /
    d eta)^2 / V``, ``h_F`` in the other rows, and ``r = (d l / d eta) / h``.

    The step solves the same penalized least squares as Fisher scoring with other weights
    and the same gradient, so it has the same fixed point (the mode); on a non-canonical
    link (Gamma or negative binomial with the log link) it converges quadratically where
    Fisher scoring converges linearly (glmer.nb on grouseticks: 12-30 scoring steps per
    mode from the previous point's mode).  Falls back to Fisher scoring when the link or
    the family does not give its second derivative.
    """
    h, r, _ = _newton_terms(
        y,
        mu,
        weights,
        family.link.mu_eta(eta),
        family.link.mu_eta_derivative(eta),
        family.variance(mu),
        family.variance_derivative(mu),
    )
    return h, r


class _GammaLogKernel(_NewtonLogKernel):
    """The Gamma family's PIRLS functions on the log link (:class:`Gamma`'s closed forms):
    ``y / mu`` and ``(y - mu) / mu`` are computed once per linear predictor (the array
    object; PIRLS asks for the deviance at a trial point, then for the working weights at
    the same ``eta``) and serve the deviance, the Newton weights and residuals; the Laplace
    weights are the prior weights.  With unit prior weights the deviance is ``-2`` times
    the sum (the same number: a factor 2 commutes with rounding)."""

    def __init__(self, family: Family, y: np.ndarray, weights: np.ndarray):
        super().__init__(family, y, weights)
        self._terms: tuple | None = None  # (eta, y / mu, (y - mu) / mu) of the last eta

    def _ratios(self, eta: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = self._terms
        if last is not None and last[0] is eta:
            return last[1], last[2]
        y = self.y
        ratio = y / mu
        relative = (y - mu) / mu
        self._terms = (eta, ratio, relative)
        return ratio, relative

    def deviance(self, eta, mu):
        ratio, relative = self._ratios(eta, mu)
        terms = np.log(ratio) - relative
        if self.unit_weights is None:
            return -2.0 * float(terms.sum())
        return float(np.sum(-2 * self.weights * terms))

    def working(self, eta, mu):
        return _gamma_log_working(*self._ratios(eta, mu), self.unit_weights)

    def laplace_weights(self, eta, mu):
        return _gamma_log_fisher(mu, self.weights)

    def objective_term(self, mu, deviance):
        """R's ``aic`` (:meth:`Gamma.aic`, the same expression) with ``log y`` and ``sum w``
        computed once, and the product by unit prior weights skipped (``1 x = x``)."""
        cached = self.__dict__.get("_aic_terms")
        if cached is None:
            cached = self._aic_terms = (np.log(self.y), float(np.sum(self.weights)))
        log_y, total = cached
        phi = deviance / total
        shape = 1.0 / phi
        scale = mu * phi
        log_p = (shape - 1.0) * log_y - self.y / scale - special.gammaln(shape)
        terms = log_p - shape * np.log(scale)
        if self.unit_weights is not None:
            terms = self.weights * terms
        return -2.0 * float(np.sum(terms)) + 2.0


class Binomial(Family):
    """Proportions ``y`` of ``w`` trials: ``V(mu) = mu (1 - mu)``, unit deviance
    ``2 w [y log(y/mu) + (1-y) log((1-y)/(1-mu))]``."""

    name = "binomial"
    links = ("logit", "probit", "cloglog", "log")
    scaled_search = False
    dense_steps = True

    def variance(self, mu):
        return np.maximum(mu * (1 - mu), _EPS)

    def unit_deviance(self, y, mu, weights):
        if np.all((y == 0.0) | (y == 1.0)):
            # binary rows: -2 w log(mu) or -2 w log(1 - mu), one log instead of two xlogy
            # calls (the 100,000-row binary fit evaluates this 400 times: 4.3 -> 2.0 ms)
            return -2.0 * weights * np.log(np.where(y == 1.0, mu, 1.0 - mu))
        return 2 * weights * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))

    def kernel(self, y, weights):
        """:class:`FamilyKernel` with the binary test done once and, on the logit link,
        the working weights from ``V(mu)`` alone (``d mu / d eta = V(mu)`` there)."""
        return _BinomialKernel(self, y, weights)

    def log_density(self, y, mu, weights):
        """``log dbinom(round(w y), round(w), mu)``."""
        trials = np.round(weights)
        return stats.binom.logpmf(np.round(weights * y), trials, mu)

    def aic(self, y, mu, weights, deviance, trials=None):
        """R's ``binomial()$aic``: ``-2 sum (wt / m) log dbinom(round(m y), round(m), mu)``
        with ``wt`` the weights and ``m`` the cbind trials when some exceed 1 (so prior
        weights ``w`` count as ``w log dbinom(k, n)``), else ``m = wt``."""
        if trials is None or not np.any(trials > 1):
            return super().aic(y, mu, weights, deviance)
        share = np.divide(weights, trials, out=np.zeros(len(trials)), where=trials > 0)
        log_p = stats.binom.logpmf(np.round(trials * y), np.round(trials), mu)
        return -2.0 * float(np.sum(share * log_p))

    def start_mu(self, y, weights):
        """``(w y + 1/2) / (w + 1)``."""
        return (weights * y + 0.5) / (weights + 1)

    def check_response(self, y):
        if np.any(y < 0) or np.any(y > 1):
            return (
                "a binomial response must be 0/1, a proportion with weights, or "
                "cbind(successes, failures)"
            )
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        """Successes over trials (0/1 for binary data)."""
        trials = np.round(weights).astype(np.int64)
        return rng.binomial(trials, mu) / np.maximum(trials, 1)


class _PoissonResponse:
    """Poisson counts' start, check and simulation (lme4's and glmmTMB's Poisson)."""

    def start_mu(self, y, weights):
        """``y + 1/10``."""
        return y + 0.1

    def check_response(self, y):
        if np.any(y < 0):
            return "a poisson response must be non-negative counts"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        return rng.poisson(mu).astype(float)


class _NegativeBinomialResponse:
    """A negative binomial response's start and check (NB2 of lme4 and glmmTMB, NB1)."""

    def start_mu(self, y, weights):
        """``y + (y == 0) / 6`` (R's ``negative.binomial()$initialize``)."""
        return y + (y == 0) / 6.0

    def check_response(self, y):
        if np.any(y < 0):
            return "a negative binomial response must be non-negative counts"
        return None


class Poisson(_PoissonResponse, Family):
    """Counts: ``V(mu) = mu``, unit deviance ``2 w [y log(y/mu) - (y - mu)]``."""

    name = "poisson"
    links = ("log", "identity", "sqrt")
    scaled_search = False
    dense_steps = True

    def variance(self, mu):
        return np.maximum(mu, _EPS)

    def unit_deviance(self, y, mu, weights):
        return 2 * weights * (special.xlogy(y, y / mu) - (y - mu))

    def kernel(self, y, weights):
        """:class:`FamilyKernel` whose deviance and, on the log link, working weights skip
        the method calls (``d mu / d eta = mu`` there)."""
        return _PoissonKernel(self, y, weights)

    def log_density(self, y, mu, weights):
        return weights * stats.poisson.logpmf(y, mu)


class _DispersionFamily(Family):
    """An exponential-dispersion family with a dispersion ``phi`` (``Var(y) = phi V(mu) /
    w``) that lme4 estimates inside R's ``aic`` as ``deviance / sum(w)`` (gaussian:
    ``deviance / n``)."""

    has_dispersion = True

    def aic_dispersion(self, y: np.ndarray, weights: np.ndarray, deviance: float) -> float:
        """The dispersion R's ``aic`` plugs in: ``deviance / sum(w)``."""
        return deviance / float(np.sum(weights))

    @abstractmethod
    def log_density(self, y, mu, weights, dispersion: float = 1.0):
        """``log p(y_i | mu_i, phi)`` as R's ``family$aic`` sums it."""

    def aic(self, y, mu, weights, deviance, trials=None):
        phi = self.aic_dispersion(y, weights, deviance)
        return -2.0 * float(np.sum(self.log_density(y, mu, weights, phi))) + 2.0

    def working(self, y, eta, mu, weights):
        """Newton steps (:func:`_newton_working`): the same mode as Fisher scoring in fewer
        steps (``laplace_weights`` stay lme4's expected information)."""
        return _newton_working(self, y, eta, mu, weights)

    def kernel(self, y, weights):
        """:class:`FamilyKernel` whose Newton weights on the log link take ``d mu / d eta``
        and ``d^2 mu / d eta^2`` as ``mu`` (the same numbers)."""
        return _NewtonLogKernel(self, y, weights)

    def start_mu(self, y, weights):
        """``y`` (R's ``mustart``)."""
        return np.asarray(y, dtype=float).copy()


class Gamma(_DispersionFamily):
    """Positive responses with constant coefficient of variation: ``V(mu) = mu^2``, unit
    deviance ``-2 w [log(y/mu) - (y - mu)/mu]``, shape ``1/phi``.

    On the log link the Newton steps and the expected information are in closed form
    (:func:`_gamma_log_working`): ``h = w y / mu``, ``r = ((y - mu) / mu) / (y / mu)`` and
    ``W = w``, from the deviance's own ``y / mu`` and ``(y - mu) / mu``."""

    name = "gamma"
    r_name = "Gamma"
    links = ("inverse", "log", "identity")

    def variance(self, mu):
        return mu**2

    def working(self, y, eta, mu, weights):
        if not isinstance(self.link, LogLink):
            return super().working(y, eta, mu, weights)
        return _gamma_log_working(y / mu, (y - mu) / mu, weights)

    def laplace_weights(self, y, eta, mu, weights):
        if not isinstance(self.link, LogLink):
            return super().laplace_weights(y, eta, mu, weights)
        return _gamma_log_fisher(mu, weights)

    def kernel(self, y, weights):
        """:class:`_GammaLogKernel` on the log link (else the Newton kernel)."""
        if isinstance(self.link, LogLink):
            return _GammaLogKernel(self, y, weights)
        return super().kernel(y, weights)

    def variance_derivative(self, mu):
        return 2.0 * mu

    def unit_deviance(self, y, mu, weights):
        return -2 * weights * (np.log(y / mu) - (y - mu) / mu)

    def log_density(self, y, mu, weights, dispersion=1.0):
        """``w log dgamma(y, shape = 1/phi, scale = mu phi)``, in closed form (scipy's
        ``gamma.logpdf`` checks its arguments at 0.6 ms a call, once per Laplace
        evaluation)."""
        shape = 1.0 / dispersion
        scale = mu * dispersion
        log_p = (shape - 1.0) * np.log(y) - y / scale - special.gammaln(shape)
        return weights * (log_p - shape * np.log(scale))

    def start_mu(self, y, weights):
        """The mean of ``y`` in every row (as newer lme4 does: R's ``y`` can make the
        starting iterations diverge for small shapes); the optimum does not depend on it."""
        return np.full_like(np.asarray(y, dtype=float), float(np.mean(y)))

    def check_response(self, y):
        if np.any(y <= 0):
            return "a Gamma response must be positive"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        shape = weights / dispersion
        return rng.gamma(shape, mu / shape)


class InverseGaussian(_DispersionFamily):
    """Positive responses: ``V(mu) = mu^3``, unit deviance ``w (y - mu)^2 / (y mu^2)``."""

    name = "inverse_gaussian"
    r_name = "inverse.gaussian"
    links = ("1/mu^2", "inverse", "log", "identity")

    def variance(self, mu):
        return mu**3

    def variance_derivative(self, mu):
        return 3.0 * mu**2

    def unit_deviance(self, y, mu, weights):
        return weights * (y - mu) ** 2 / (y * mu**2)

    def log_density(self, y, mu, weights, dispersion=1.0):
        """R's ``inverse.gaussian()$aic`` per row: ``-(w (log(2 pi phi) + 3 log y) + d /
        phi) / 2`` (the weights' own normalizing term left out, as R does)."""
        d = self.unit_deviance(y, mu, weights)
        return -0.5 * (weights * (np.log(2 * np.pi * dispersion) + 3 * np.log(y)) + d / dispersion)

    def check_response(self, y):
        if np.any(y <= 0):
            return "an inverse Gaussian response must be positive"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        """Inverse Gaussian with mean ``mu`` and shape ``w / phi``."""
        return rng.wald(mu, weights / dispersion)


class Gaussian(_DispersionFamily):
    """Normal responses with a link: ``V(mu) = 1``, unit deviance ``w (y - mu)^2``.  (The
    identity link is a linear mixed model: use :func:`mixedmodels.lmer`.)"""

    name = "gaussian"
    links = ("identity", "log", "inverse")

    def variance(self, mu):
        return np.ones_like(mu)

    def variance_derivative(self, mu):
        return np.zeros_like(mu)

    def unit_deviance(self, y, mu, weights):
        return weights * (y - mu) ** 2

    def aic_dispersion(self, y, weights, deviance):
        """``deviance / n`` (R's ``gaussian()$aic``)."""
        return deviance / float(np.size(y))

    def log_density(self, y, mu, weights, dispersion=1.0):
        """``log dnorm(y, mu, sqrt(phi / w))`` in closed form."""
        var = dispersion / weights
        return -0.5 * (np.log(2.0 * np.pi * var) + (y - mu) ** 2 / var)

    def check_response(self, y):
        return None

    def check_link_response(self, y):
        if self.link.name == "log" and np.any(y <= 0):
            return "a gaussian response with the log link must be positive to start from"
        if self.link.name == "inverse" and np.any(y == 0):
            return "a gaussian response with the inverse link must be nonzero to start from"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        return rng.normal(mu, np.sqrt(dispersion / weights))


# ------------------------------------------------- families with their own parameters
class _NegativeBinomialTerms(_NegativeBinomialResponse):
    """NB2 with size ``k``: ``V(mu) = mu + mu^2 / k`` and its pmf, deviance and derivatives
    on the log link (shared by lme4's and glmmTMB's negative binomial)."""

    k: float

    def variance(self, mu):
        return mu + mu**2 / self.k

    def variance_derivative(self, mu):
        return 1.0 + 2.0 * mu / self.k

    def unit_deviance(self, y, mu, weights):
        k = self.k
        return 2 * weights * (special.xlogy(y, y / mu) - (y + k) * np.log((y + k) / (mu + k)))

    def log_density(self, y, mu, weights, dispersion=1.0):
        """``w log dnbinom(y, size = k, mu = mu)``."""
        k = self.k
        return weights * (
            special.gammaln(y + k)
            - special.gammaln(k)
            - special.gammaln(y + 1)
            + k * (np.log(k) - np.log(k + mu))
            + special.xlogy(y, mu)
            - y * np.log(k + mu)
        )

    def simulate(self, mu, weights, rng, dispersion=1.0):
        k = self.k
        return rng.negative_binomial(k, k / (k + mu)).astype(float)

    # the size enters the optimizer as log k (lme4's outer search, glmmTMB's joint fit)
    def extra_start(self, y, mu, weights):
        return np.array([np.log(self._size_start(y, mu))])

    def with_extra(self, values):
        return type(self)(self.link, float(np.exp(values[0])))

    @property
    def extra_values(self):
        return np.array([np.log(self.k)])

    @staticmethod
    def _size_start(y: np.ndarray, mu: np.ndarray) -> float:
        """A moment estimate of ``k`` from ``Var(y) = mu + mu^2 / k`` (in [0.05, 100])."""
        excess = float(np.mean((y - mu) ** 2 - mu))
        k = float(np.mean(mu**2)) / excess if excess > 0 else 100.0
        return min(max(k, 0.05), 100.0)


class NegativeBinomial(_NegativeBinomialTerms, Family):
    """lme4's ``glmer.nb`` family (MASS's ``negative.binomial(theta = k)``): NB2 with size
    ``k`` on the log link.  As lme4, the Laplace deviance takes R's ``aic`` (``-2 sum log
    p``, so fits with different ``k`` are comparable) and the GLM weights; ``k`` is
    estimated with the other parameters (lme4: an outer loop over ``log k``, the same
    optimum)."""

    name = "negative_binomial"
    links = ("log",)
    extra_names = ("log_k",)

    def __init__(self, link: Link | None = None, k: float = 1.0):
        super().__init__(link)
        self.k = float(k)

    @property
    def r_name(self) -> str:  # type: ignore[override]
        return f"Negative Binomial({_r_format(round(self.k, 4))})"

    def objective_term(self, y, mu, weights, deviance):
        return self.aic(y, mu, weights, deviance)

    def working(self, y, eta, mu, weights):
        """Newton steps (:func:`_newton_working`), as for the dispersion families."""
        return _newton_working(self, y, eta, mu, weights)

    def kernel(self, y, weights):
        """:class:`FamilyKernel` of the Newton steps on the log link (as the dispersion
        families')."""
        return _NewtonLogKernel(self, y, weights)

    def __eq__(self, other):
        return type(self) is type(other) and self.k == other.k  # type: ignore[attr-defined]

    def __hash__(self):
        return hash((self.name, self.k))


def _r_format(value: float) -> str:
    """R's ``format`` of a number: up to 7 significant digits, no trailing zeros."""
    text = f"{value:.7g}"
    return text


class LikelihoodFamily(Family):
    """A family fitted as glmmTMB fits it: the Laplace approximation with the exact second
    derivative of ``log p(y | eta)`` at the mode (not lme4's expected information), PIRLS
    steps from the exact gradient, and the family's own parameters (dispersion,
    zero-inflation coefficients) estimated with beta.  ``unit_deviance`` is ``-2 w log p``.

    Subclasses give ``log p`` and its first two derivatives in ``eta`` in three parts, so
    that PIRLS computes each once: :meth:`response_terms` (what depends on ``y`` alone, once
    per fit), :meth:`parameter_terms` (what depends on ``y`` and the family's own parameters,
    once per family value: each Laplace evaluation of a fit that estimates them), and at
    each linear predictor :meth:`value_terms` (``log p``, with the intermediates it leaves)
    and :meth:`derivative_terms` (from those intermediates).
    """

    def response_terms(self, y: np.ndarray) -> dict:
        """What ``log p`` and its derivatives need from ``y`` alone (for any values of the
        family's own parameters)."""
        return {}

    def parameter_terms(self, y: np.ndarray, terms: dict) -> dict:
        """``terms`` (:meth:`response_terms`) with what depends on ``y`` and the family's own
        parameters but not on ``eta`` (a new dict; ``terms`` is not modified)."""
        return terms

    @abstractmethod
    def value_terms(self, y: np.ndarray, eta: np.ndarray, terms: dict) -> tuple[np.ndarray, tuple]:
        """``log p`` per row (unweighted) at ``eta`` and the intermediates
        :meth:`derivative_terms` takes (``terms`` from :meth:`parameter_terms`)."""

    @abstractmethod
    def derivative_terms(
        self, y: np.ndarray, eta: np.ndarray, terms: dict, state: tuple
    ) -> tuple[np.ndarray, np.ndarray]:
        """``d log p / d eta`` and ``d^2 log p / d eta^2`` per row (unweighted, new arrays
        the caller may modify) from :meth:`value_terms`' ``state`` at the same ``eta``."""

    def response_key(self) -> object:
        """What :meth:`response_terms` depends on besides ``y`` (families with equal keys
        share them)."""
        return type(self)

    def parameter_key(self) -> tuple | None:
        """The values of the family's own parameters as :meth:`parameter_terms` reads them
        (two families of the same class and link with equal keys have the same parameter
        terms), or None where not given (nothing is shared then)."""
        return None

    def _response_memo(self) -> list:
        """Where :meth:`response_terms_of` keeps ``[y, response terms]`` (this family's own
        list; families that make their values' copies share one)."""
        memo = self.__dict__.get("_memo_response")
        if memo is None:
            memo = self.__dict__["_memo_response"] = []
        return memo

    def response_terms_of(self, y: np.ndarray) -> dict:
        """:meth:`response_terms` of ``y``, kept for the array object last given (a fit's
        response is never modified in place: the optimizer's gradients call
        :meth:`log_derivatives` a few times per evaluation with the same ``y``)."""
        memo = self._response_memo()
        if memo and memo[0] is y:
            return memo[1]
        terms = self.response_terms(y)
        memo[:] = [y, terms]
        return terms

    def terms_of(self, y: np.ndarray) -> dict:
        """:meth:`parameter_terms` of ``y`` (from :meth:`response_terms_of`), kept on this
        family (its parameter values are fixed) for the array object last given."""
        memo = self.__dict__.get("_memo_terms")
        if memo is not None and memo[0] is y:
            return memo[1]
        terms = self.parameter_terms(y, self.response_terms_of(y))
        self.__dict__["_memo_terms"] = (y, terms)
        return terms

    def log_derivatives(
        self, y: np.ndarray, eta: np.ndarray, weights: np.ndarray, derivatives: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(log p, d log p / d eta, d^2 log p / d eta^2)`` per row, times the weights
        (without ``derivatives`` only ``log p`` is computed; the others are None).  Unit
        weights (decided once per weights array, :meth:`_unit`) are not multiplied in
        (``1 x = x``: the same numbers)."""
        terms = self.terms_of(y)
        logp, state = self.value_terms(y, eta, terms)
        unit = self._unit(weights)
        if not derivatives:
            return (logp if unit else weights * logp), None, None
        d1, d2 = self.derivative_terms(y, eta, terms, state)
        if unit:
            return logp, d1, d2
        return weights * logp, weights * d1, weights * d2

    def _unit(self, weights: np.ndarray) -> bool:
        """Whether every weight is 1, kept with the response's terms for the array object
        last given (a fit's prior weights are never modified in place)."""
        memo = self._response_memo()  # [y, response terms] (filled by terms_of)
        if len(memo) == 4 and memo[2] is weights:
            return memo[3]
        unit = bool((np.asarray(weights) == 1.0).all())
        if len(memo) >= 2:
            memo[2:] = [weights, unit]
        return unit

    def mean_from_state(self, state: tuple) -> np.ndarray | None:
        """The mean ``g^-1(eta)`` (the link's, to the bit) from :meth:`value_terms`'
        ``state`` at ``eta``, where the family keeps it there; None where it does not."""
        return None

    #: whether :meth:`mean_from_state` gives the mean
    mean_in_state: ClassVar[bool] = False

    def kernel(self, y, weights):
        """:class:`_LikelihoodKernel`: the response's and the parameters' terms computed
        once, ``log p`` and its derivatives once per linear predictor."""
        return _LikelihoodKernel(self, y, weights)

    #: glmmTMB's name of the dispersion ``sigma()`` returns, for the summary
    dispersion_label: ClassVar[str] = ""
    joint_vcov = True

    @property
    def dispersion(self) -> float:
        """What glmmTMB's ``sigma()`` returns (1 without a dispersion)."""
        return 1.0

    def fit_sigma(self, y, mu, u, weights):
        return self.dispersion

    def reported_extra(self):
        if not self.extra_names:
            return []
        return [("sigma", self.dispersion, 0, True)]

    def unit_deviance(self, y, mu, weights):
        eta = self.link(mu)
        return -2.0 * self.log_derivatives(y, eta, weights, False)[0]

    def log_density(self, y, mu, weights, dispersion=1.0):
        return self.log_derivatives(y, self.link(mu), weights, False)[0]

    def unit_deviance_at(self, y, eta, mu, weights):
        return -2.0 * self.log_derivatives(y, eta, weights, False)[0]

    def objective_term(self, y, mu, weights, deviance):
        return deviance

    def working(self, y, eta, mu, weights):
        """Newton steps: ``h = -d2``, ``r = d1 / h`` (``|h|`` kept above a tiny value; a
        row's ``h`` may be negative where its own curvature is, PIRLS floors the weights
        when the system they give is not positive definite)."""
        _, d1, d2 = self.log_derivatives(y, eta, weights)
        return _newton_from_derivatives(d1, d2)

    def laplace_weights(self, y, eta, mu, weights):
        return -self.log_derivatives(y, eta, weights)[2]


def _newton_from_derivatives(d1: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A Newton step's weights ``h = -d2`` (``|h|`` at least ``1e-12 max |d2|``) and
    working residuals ``d1 / h``."""
    size = np.abs(d2)
    tiny = 1e-12 * (float(size.max()) + 1e-300)
    h = np.where(size > tiny, -d2, tiny)
    return h, d1 / h


class _LikelihoodKernel(FamilyKernel):
    """A :class:`LikelihoodFamily`'s PIRLS functions: its response terms computed once per
    fit (shared by the kernels of the family's other parameter values, :meth:`rebind`),
    its parameter terms once per kernel, and ``log p`` with its derivatives once per linear
    predictor: PIRLS asks for the deviance at a trial point, then (the point accepted) for
    the working weights at the same ``eta``, and at the mode for the Laplace weights; the
    last two ``eta`` (the array objects: PIRLS never modifies one it has passed) and what
    was computed there are kept.  The values are those of :meth:`LikelihoodFamily.log_derivatives`.
    """

    def __init__(
        self,
        family: LikelihoodFamily,
        y: np.ndarray,
        weights: np.ndarray,
        response: dict | None = None,
        terms: dict | None = None,
        unit: bool | None = None,
    ):
        super().__init__(family, y, weights)
        self.response = family.response_terms_of(y) if response is None else response
        if terms is None:
            terms = family.terms_of(y) if response is None else (
                family.parameter_terms(y, self.response)
            )
        self.terms = terms
        # 1.0 * x == x: the product is skipped
        self.unit = family._unit(weights) if unit is None else unit
        # the mean from log p's intermediates: computed there at the same eta anyway
        self._state_mean = family.mean_in_state
        self._points: list[list] = []  # the last two linear predictors' entries (_at)

    def rebind(self, family):
        """The kernel of ``family`` sharing this one's response terms (and its parameter
        terms too where ``family`` has the same parameter values: an optimizer's steps in
        theta and beta alone, where tweedie's series would be summed again)."""
        own = self.family
        if not isinstance(family, LikelihoodFamily) or family.response_key() != (
            own.response_key()
        ):
            return family.kernel(self.y, self.weights)
        kernel = _LikelihoodKernel(
            family, self.y, self.weights, self.response, self._same(family), self.unit
        )
        return kernel

    def _same(self, family: LikelihoodFamily) -> dict | None:
        """This kernel's parameter terms where ``family`` (of the same response key) has
        the same link and values of its own parameters, else None."""
        own = self.family
        key = own.parameter_key()
        if key is None or family.link != own.link or family.parameter_key() != key:
            return None
        return self.terms

    def _at(self, eta: np.ndarray) -> list:
        """The entry ``[eta, weighted log p, state, derivatives or None]`` of ``eta`` (the
        array object), computed where it is not one of the last two (PIRLS's start and its
        guess are both evaluated before either is stepped from)."""
        points = self._points
        for i, point in enumerate(points):
            if point[0] is eta:
                if i:
                    points.insert(0, points.pop(i))
                return point
        logp, state = self.family.value_terms(self.y, eta, self.terms)
        if not self.unit:
            logp = self.weights * logp
        point = [eta, logp, state, None]
        points.insert(0, point)
        del points[2:]
        return point

    def _derivatives_at(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        point = self._at(eta)
        if point[3] is None:
            d1, d2 = self.family.derivative_terms(self.y, eta, self.terms, point[2])
            if not self.unit:
                d1, d2 = self.weights * d1, self.weights * d2
            point[3] = (d1, d2)
        return point[3]

    def inverse(self, eta):
        """The link's inverse; from ``log p``'s intermediates at ``eta`` where the family
        keeps the mean there (PIRLS asks for the deviance at the same ``eta`` next)."""
        if self._state_mean:
            mean = self.family.mean_from_state(self._at(eta)[2])
            if mean is not None:
                return mean
        return self.link.inverse(eta)

    def deviance(self, eta, mu):
        return -2.0 * float(self._at(eta)[1].sum())

    def working(self, eta, mu):
        return _newton_from_derivatives(*self._derivatives_at(eta))

    def laplace_weights(self, eta, mu):
        return -self._derivatives_at(eta)[1]


class NBinom2(_NegativeBinomialTerms, LikelihoodFamily):
    """glmmTMB's ``nbinom2``: ``Var(y) = mu + mu^2 / k``, ``k`` = glmmTMB's ``sigma()``."""

    name = "nbinom2"
    links = ("log",)
    extra_names = ("log_k",)
    dispersion_label = "Dispersion parameter for nbinom2 family ()"

    def __init__(self, link: Link | None = None, k: float = 1.0):
        LikelihoodFamily.__init__(self, link)
        self.k = float(k)

    variance = _NegativeBinomialTerms.variance
    log_density = LikelihoodFamily.log_density
    unit_deviance = LikelihoodFamily.unit_deviance

    def response_terms(self, y):
        return {"log_y_factorial": special.gammaln(y + 1)}

    def parameter_key(self):
        return (self.k,)

    def parameter_terms(self, y, terms):
        """``log Gamma(y + k) - log Gamma(k) - log y!``, ``log k`` and ``y + k``."""
        k = self.k
        y_k = y + k
        constant = special.gammaln(y_k) - special.gammaln(k) - terms["log_y_factorial"]
        return {**terms, "constant": constant, "log_k": np.log(k), "y_k": y_k}

    def value_terms(self, y, eta, terms):
        k = self.k
        log_k_mu = np.logaddexp(terms["log_k"], eta)  # log(k + mu)
        logp = terms["constant"] + k * (terms["log_k"] - log_k_mu) + y * (eta - log_k_mu)
        return logp, ()

    def derivative_terms(self, y, eta, terms, state):
        k = self.k
        mu = _exp(eta)
        k_mu = k + mu
        d1 = k * (y - mu) / k_mu
        d2 = -k * mu * terms["y_k"] / k_mu**2
        return d1, d2

    @property
    def dispersion(self):
        return self.k


class NBinom1(_NegativeBinomialResponse, LikelihoodFamily):
    """glmmTMB's ``nbinom1``: ``Var(y) = mu (1 + phi)`` (size ``mu / phi``), ``phi`` =
    glmmTMB's ``sigma()``."""

    name = "nbinom1"
    links = ("log",)
    extra_names = ("log_phi",)
    dispersion_label = "Dispersion parameter for nbinom1 family ()"

    def __init__(self, link: Link | None = None, phi: float = 1.0):
        super().__init__(link)
        self.phi = float(phi)

    def variance(self, mu):
        return mu * (1 + self.phi)

    def response_terms(self, y):
        """``log y!`` and the rows with ``y > 0`` (at ``y = 0`` the size's gamma, digamma
        and trigamma differences are 0: only the other rows compute them)."""
        positive = np.flatnonzero(y > 0)
        return {
            "log_y_factorial": special.gammaln(y + 1),
            "positive": positive,
            "y_positive": y[positive],
        }

    def parameter_key(self):
        return (self.phi,)

    def parameter_terms(self, y, terms):
        phi = self.phi
        lp = np.log1p(phi)
        return {**terms, "log1p_phi": lp, "y_log_ratio": y * (np.log(phi) - lp)}

    def value_terms(self, y, eta, terms):
        size = _exp(eta) / self.phi
        positive, yp = terms["positive"], terms["y_positive"]
        size_p = size[positive]
        y_size_p = yp + size_p
        # log Gamma(y + size) - log Gamma(size): 0 where y is 0
        gamma_ratio = np.zeros(y.shape)
        gamma_ratio[positive] = special.gammaln(y_size_p) - special.gammaln(size_p)
        logp = (
            gamma_ratio
            - terms["log_y_factorial"]
            - size * terms["log1p_phi"]
            + terms["y_log_ratio"]
        )
        return logp, (size, size_p, y_size_p)

    def derivative_terms(self, y, eta, terms, state):
        size, size_p, y_size_p = state
        positive = terms["positive"]
        dig = np.zeros(y.shape)
        dig[positive] = special.digamma(y_size_p) - special.digamma(size_p)
        d1 = size * (dig - terms["log1p_phi"])
        trig = np.zeros(y.shape)
        trig_y_size, trig_size = _trigamma_pair(y_size_p, size_p)
        trig[positive] = trig_y_size - trig_size
        d2 = d1 + size**2 * trig
        return d1, d2

    @property
    def dispersion(self):
        return self.phi

    def simulate(self, mu, weights, rng, dispersion=1.0):
        size = mu / self.phi
        return rng.negative_binomial(size, 1.0 / (1.0 + self.phi)).astype(float)

    def extra_start(self, y, mu, weights):
        excess = float(np.mean((y - mu) ** 2)) / max(float(np.mean(mu)), 1e-8) - 1.0
        return np.array([np.log(min(max(excess, 0.05), 100.0))])

    def with_extra(self, values):
        return type(self)(self.link, float(np.exp(values[0])))

    @property
    def extra_values(self):
        return np.array([np.log(self.phi)])


class PoissonLikelihood(_PoissonResponse, LikelihoodFamily):
    """Poisson counts as glmmTMB fits them (the base of a zero-inflated Poisson)."""

    name = "poisson_tmb"
    links = ("log",)

    def variance(self, mu):
        return np.maximum(mu, _EPS)

    def response_terms(self, y):
        return {"log_y_factorial": special.gammaln(y + 1)}

    def parameter_key(self):
        return ()

    def value_terms(self, y, eta, terms):
        mu = _exp(eta)
        return y * eta - mu - terms["log_y_factorial"], (mu,)

    mean_in_state = True

    def mean_from_state(self, state):
        """``max(exp(eta), eps)``: the log link's inverse (the family's only link)."""
        return np.maximum(state[0], _EPS)

    def derivative_terms(self, y, eta, terms, state):
        mu = state[0]
        return y - mu, -mu


class Beta(LikelihoodFamily):
    """glmmTMB's ``beta_family``: ``y`` in (0, 1) with mean ``mu`` and precision ``phi``
    (shapes ``mu phi`` and ``(1 - mu) phi``, ``Var(y) = mu (1 - mu) / (1 + phi)``); ``phi``
    = glmmTMB's ``sigma()``."""

    name = "beta"
    links = ("logit",)
    extra_names = ("log_phi",)
    dispersion_label = "Dispersion parameter for beta family ()"

    def __init__(self, link: Link | None = None, phi: float = 1.0):
        super().__init__(link)
        self.phi = float(phi)

    def variance(self, mu):
        return mu * (1 - mu) / (1 + self.phi)

    def response_terms(self, y):
        return {"log_y": np.log(y), "log1m_y": np.log1p(-y)}

    def parameter_key(self):
        return (self.phi,)

    def parameter_terms(self, y, terms):
        return {**terms, "log_gamma_phi": special.gammaln(self.phi)}

    def value_terms(self, y, eta, terms):
        phi = self.phi
        # np.clip's numbers (NaN kept) without its Python dispatch
        mu = np.minimum(np.maximum(special.expit(eta), 1e-15), 1 - 1e-15)
        a, b = mu * phi, (1 - mu) * phi
        logp = (
            terms["log_gamma_phi"] - special.gammaln(a) - special.gammaln(b)
            + (a - 1) * terms["log_y"] + (b - 1) * terms["log1m_y"]
        )
        return logp, (mu, a, b)

    def derivative_terms(self, y, eta, terms, state):
        phi = self.phi
        mu, a, b = state
        m1 = mu * (1 - mu)
        t = special.digamma(b) - special.digamma(a) + terms["log_y"] - terms["log1m_y"]
        trig_a, trig_b = _trigamma_pair(a, b)
        dt = -phi * (trig_a + trig_b)
        d1 = phi * t * m1
        d2 = phi * (dt * m1**2 + t * m1 * (1 - 2 * mu))
        return d1, d2

    @property
    def dispersion(self):
        return self.phi

    def start_mu(self, y, weights):
        return np.asarray(y, dtype=float).copy()

    def check_response(self, y):
        if np.any(y <= 0) or np.any(y >= 1):
            return "a beta response must lie strictly between 0 and 1"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        return rng.beta(mu * self.phi, (1 - mu) * self.phi)

    def extra_start(self, y, mu, weights):
        v = float(np.mean((y - mu) ** 2))
        m = float(np.mean(mu * (1 - mu)))
        return np.array([np.log(min(max(m / max(v, 1e-12) - 1, 0.1), 1e4))])

    def with_extra(self, values):
        return type(self)(self.link, float(np.exp(values[0])))

    @property
    def extra_values(self):
        return np.array([np.log(self.phi)])


class _ZeroInflationDesign:
    """A zero-inflation model matrix bound once per fit: its distinct rows (a factor's
    design has a few), each row's index among them, and its intercept column.

    Parameters
    ----------
    X : ndarray (n, r)
    """

    def __init__(self, X: np.ndarray):
        self.X = np.asarray(X, dtype=float)
        intercept = np.flatnonzero(np.all(self.X == 1.0, axis=0))
        self.intercept: int | None = int(intercept[0]) if intercept.size else None
        self.rows: np.ndarray | None = None
        self.index: np.ndarray | None = None
        # [y, response terms] of the family values made from one another (with_extra)
        self.response_memo: list = []
        if self.X.shape[0] and np.isfinite(self.X).all():
            rows, index = np.unique(self.X, axis=0, return_inverse=True)
            if 2 * rows.shape[0] <= self.X.shape[0]:
                self.rows, self.index = rows, index.ravel()

    def row_probabilities(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``pi``, ``log pi`` and ``log(1 - pi)`` on the distinct rows (on every row where
        they are not few): :meth:`expand` gives them per row."""
        eta = (self.X if self.rows is None else self.rows) @ gamma
        return special.expit(eta), special.log_expit(eta), special.log_expit(-eta)

    def expand(self, values: np.ndarray) -> np.ndarray:
        """Values of :meth:`row_probabilities` per row of ``X``."""
        return values if self.index is None else values[self.index]

    def probabilities(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``pi = expit(X gamma)``, ``log pi`` and ``log(1 - pi)`` per row (computed on the
        distinct rows where they are few)."""
        if self.rows is None:
            eta = self.X @ gamma
            return special.expit(eta), special.log_expit(eta), special.log_expit(-eta)
        eta = self.rows @ gamma
        index = self.index
        return (
            special.expit(eta)[index],
            special.log_expit(eta)[index],
            special.log_expit(-eta)[index],
        )


class ZeroInflated(LikelihoodFamily):
    """A count family with structural zeros: ``p(0) = pi + (1 - pi) f(0)``, ``p(y) = (1 -
    pi) f(y)`` for ``y > 0``, ``logit(pi) = X_zi gamma`` (glmmTMB's ``ziformula``, fixed
    effects only).  Its own parameters are the base family's, then ``gamma``.

    Parameters
    ----------
    base : LikelihoodFamily
        Poisson (glmmTMB's), nbinom2 or nbinom1.
    X_zi : ndarray (n, r)
        The zero-inflation model matrix.
    zi_names : list of str
        Its column names.
    gamma : ndarray (r,), optional
    """

    def __init__(
        self,
        base: LikelihoodFamily,
        X_zi: np.ndarray,
        zi_names,
        gamma=None,
        design: _ZeroInflationDesign | None = None,
    ):
        super().__init__(base.link)
        self.base = base
        self._design = _ZeroInflationDesign(X_zi) if design is None else design
        self.X_zi = self._design.X
        self.zi_names = list(zi_names)
        r = self.X_zi.shape[1]
        self.gamma = np.zeros(r) if gamma is None else np.asarray(gamma, dtype=float)
        # pi, log pi and log(1 - pi) depend on gamma only: computed once per family value
        # (not at every scoring step), on X_zi's distinct rows, and spread over the rows
        # when first asked for (a gradient's moved values need log(1 - pi) alone)
        self._row_values = self._design.row_probabilities(self.gamma)
        self._expanded: list = [None, None, None]

    def _expanded_value(self, k: int) -> np.ndarray:
        value = self._expanded[k]
        if value is None:
            value = self._expanded[k] = self._design.expand(self._row_values[k])
        return value

    @property
    def pi(self) -> np.ndarray:
        """The zero-inflation probability per row."""
        return self._expanded_value(0)

    @property
    def _log_pi(self) -> np.ndarray:
        return self._expanded_value(1)

    @property
    def _log_1pi(self) -> np.ndarray:
        return self._expanded_value(2)

    links = ("log",)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.base.name

    @property
    def r_name(self) -> str:  # type: ignore[override]
        return self.base.name if self.base.name != "poisson_tmb" else "poisson"

    @property
    def extra_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.base.extra_names) + tuple(f"zi_{n}" for n in self.zi_names)

    @property
    def dispersion_label(self) -> str:  # type: ignore[override]
        return self.base.dispersion_label

    @property
    def dispersion(self):
        return self.base.dispersion

    def reported_extra(self):
        nb = len(self.base.extra_names)
        zi = [
            (f"zi_{n}", float(g), nb + j, False)
            for j, (n, g) in enumerate(zip(self.zi_names, self.gamma, strict=True))
        ]
        return self.base.reported_extra() + zi

    def response_mean(self, mu):
        return (1 - self.pi) * mu

    def variance(self, mu):
        """``Var(y) = (1 - pi) (V(mu) + pi mu^2)``."""
        return (1 - self.pi) * (self.base.variance(mu) + self.pi * mu**2)

    def response_key(self):
        # the design too: the response terms hold the zero rows' indices among its rows
        return (type(self), self.base.response_key(), self._design)

    def parameter_key(self):
        base = self.base.parameter_key()
        if base is None:
            return None
        return (base, self._design, tuple(self.gamma.tolist()))

    def _response_memo(self):
        return self._design.response_memo

    def response_terms(self, y):
        """The base family's, and the rows where ``y`` is 0."""
        zero = np.flatnonzero(y == 0)
        index = self._design.index
        return {
            "base": self.base.response_terms(y),
            "zero": zero,
            "zero_rows": zero if index is None else index[zero],
        }

    def parameter_terms(self, y, terms):
        """The base family's, and ``log pi``, ``log(1 - pi)`` at the zero rows."""
        return {
            **terms,
            "base": self.base.parameter_terms(y, terms["base"]),
            "log_pi_zero": self._row_values[1][terms["zero_rows"]],
            "log_1pi_zero": self._row_values[2][terms["zero_rows"]],
        }

    def value_terms(self, y, eta, terms):
        logf, base_state = self.base.value_terms(y, eta, terms["base"])
        zero = terms["zero"]
        lf0 = logf[zero] if zero.size else None
        logp = logf
        logp += self._log_1pi  # logf is the base's new array: log(1 - pi) + log f in place
        if not zero.size:
            return logp, (base_state, None, None)
        # log((1 - pi) f(0)), kept for the derivatives' weight of the count part
        log_count_zero = terms["log_1pi_zero"] + lf0
        both = np.logaddexp(terms["log_pi_zero"], log_count_zero)
        logp[zero] = both
        return logp, (base_state, log_count_zero, both)

    def derivative_terms(self, y, eta, terms, state):
        base_state, log_count_zero, both = state
        d1, d2 = self.base.derivative_terms(y, eta, terms["base"], base_state)
        zero = terms["zero"]
        if zero.size:
            a1, a2 = d1[zero], d2[zero]
            q = np.exp(log_count_zero - both)  # (1 - pi) f(0) / p(0)
            d1[zero] = q * a1
            d2[zero] = q * (1 - q) * a1**2 + q * a2
        return d1, d2

    @property
    def mean_in_state(self) -> bool:  # type: ignore[override]
        return self.base.mean_in_state

    def mean_from_state(self, state):
        return self.base.mean_from_state(state[0])

    def start_mu(self, y, weights):
        return self.base.start_mu(y, weights)

    def check_response(self, y):
        return self.base.check_response(y)

    def simulate(self, mu, weights, rng, dispersion=1.0):
        draws = self.base.simulate(mu, weights, rng)
        return np.where(rng.random(mu.shape) < self.pi, 0.0, draws)

    def extra_start(self, y, mu, weights):
        base = self.base.extra_start(y, mu, weights)
        start = np.zeros(self.X_zi.shape[1])
        intercept = self._design.intercept
        if intercept is not None:
            start[intercept] = -2.0  # pi ~ 0.12
        return np.concatenate([base, start])

    def with_extra(self, values):
        """The family at ``values``; ``X_zi``'s distinct rows and its intercept column are
        shared, not found again."""
        nb = len(self.base.extra_names)
        base = self.base.with_extra(values[:nb]) if nb else self.base
        return ZeroInflated(base, self.X_zi, self.zi_names, values[nb:], design=self._design)

    @property
    def extra_values(self):
        return np.concatenate([self.base.extra_values, self.gamma])

    def saturated_extra(self, values, below=1e-5, to=1e-2):
        """Alternatives where a zero-inflation coefficient of an indicator column (a
        factor level; not the intercept) leaves every probability of its rows below
        ``below``: that coefficient moved so the largest is ``to`` (see
        :meth:`Family.saturated_extra`)."""
        values = np.asarray(values, dtype=float)
        nb = len(self.base.extra_names)
        gamma = values[nb:]
        x_zi = self.X_zi
        eta = x_zi @ gamma
        if eta.size == 0 or not np.all(np.isfinite(eta)):
            return []
        target = float(special.logit(to))
        out = []
        for j in range(gamma.size):
            column = x_zi[:, j]
            rows = column != 0
            if j == self._design.intercept or not rows.any() or np.any(column[rows] != 1.0):
                continue
            top = float(eta[rows].max())
            if special.expit(top) >= below:
                continue
            moved = values.copy()
            moved[nb + j] += target - top
            out.append(moved)
        return out

    def vanished_extra(self, values, below=1e-4, to=1e-8):
        """When every zero-inflation probability at ``values`` is below ``below``: the
        zero-inflation coefficients moved so that the largest is ``to`` (the intercept
        shifted where ``X_zi`` has one, else ``gamma`` scaled: every linear predictor is
        negative there, so scaling moves them all the same way), with the mask of those
        coefficients; None where a probability reaches ``below``."""
        values = np.asarray(values, dtype=float)
        nb = len(self.base.extra_names)
        gamma = values[nb:]
        eta = self.X_zi @ gamma
        if eta.size == 0 or not np.all(np.isfinite(eta)):
            return None
        top = float(eta.max())
        target = float(special.logit(to))
        if special.expit(top) >= below or top >= 0 or target >= 0:
            return None
        moved = gamma.copy()
        intercept = self._design.intercept
        if intercept is not None:
            moved[intercept] += target - top
        else:
            moved *= target / top
        mask = np.zeros(values.size, dtype=bool)
        mask[nb:] = True
        return np.concatenate([values[:nb], moved]), mask

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)


FAMILIES: dict[str, type[Family]] = {
    cls.name: cls
    for cls in (
        Binomial,
        Poisson,
        Gamma,
        InverseGaussian,
        Gaussian,
        NegativeBinomial,
        NBinom2,
        NBinom1,
        Beta,
    )
}


#: R's spellings of family names
_ALIASES = {"inverse.gaussian": "inverse_gaussian", "inverse gaussian": "inverse_gaussian"}


def make_family(name: str, link: str | None = None) -> Family:
    """The family called ``name`` with ``link`` (the family's default link when None).

    Raises
    ------
    ArgumentError
        For an unknown family or a link the family does not take.
    """
    if not isinstance(name, str):
        raise ArgumentError(f"family must be a name such as 'binomial', not {name!r}")
    cls = FAMILIES.get(_ALIASES.get(name.lower(), name.lower()))
    if cls is None:
        raise ArgumentError(
            f"family must be one of {', '.join(repr(f) for f in FAMILIES)}, not {name!r}"
        )
    if link is None:
        return cls()
    if not isinstance(link, str) or link.lower() not in cls.links:
        raise ArgumentError(
            f"link {link!r} is not available for the {cls.name} family "
            f"(choose from {', '.join(cls.links)})"
        )
    return cls(LINKS[link.lower()]())


# ----------------------------------------------------------------------------- tweedie
def _tweedie_power(psi: float) -> float:
    """The Tweedie power ``p = 1 + expit(psi)`` from its unbounded parameter (glmmTMB's)."""
    return 1.0 + float(special.expit(psi))


def tweedie_log_series(y: np.ndarray, phi: float, power: float) -> np.ndarray:
    """``log W(y, phi, p)`` of Dunn & Smyth's series for the Tweedie density with ``1 < p <
    2`` at ``y > 0``: ``W = sum_j W_j``, ``log W_j = j log z - log j! - log Gamma(-j
    alpha)``, ``alpha = (2 - p) / (1 - p)``, ``log z = -alpha log y + alpha log(p - 1) - (1
    - alpha) log phi - log(2 - p)``.  The terms peak near ``j0 = y^(2-p) / (phi (2 - p))``
    with curvature ``-(1 - alpha) / j0`` in ``j``; each row sums the window ``j0 -+ (10
    sd + 10)`` (``sd = sqrt(j0 / (1 - alpha))``), widened (doubled) for the rows whose
    end terms are not yet below ``e^-37`` of their largest (beyond them the terms fall
    faster than geometrically: the neglected tail is below 1e-16 relative)."""
    y = np.asarray(y, dtype=float)
    alpha = (2.0 - power) / (1.0 - power)
    log_z = (
        -alpha * np.log(y)
        + alpha * np.log(power - 1.0)
        - (1.0 - alpha) * np.log(phi)
        - np.log(2.0 - power)
    )
    peak = np.maximum(1.0, np.round(y ** (2.0 - power) / (phi * (2.0 - power))))
    width = np.ceil(10.0 * np.sqrt(peak / (1.0 - alpha))) + 10.0
    out = np.empty(y.shape)
    todo = np.arange(y.size)
    while todo.size:
        lo = np.maximum(1.0, peak[todo] - width[todo])
        hi = peak[todo] + width[todo]
        counts = (hi - lo + 1).astype(np.int64)
        top, total = np.empty(todo.size), np.empty(todo.size)
        first, last = np.empty(todo.size), np.empty(todo.size)
        # rows in chunks of at most TWEEDIE_CHUNK terms (one row at least): a small phi
        # (a near-constant response) gives windows of ~1e6 terms per row
        ends = np.cumsum(counts)
        begin = 0
        while begin < todo.size:
            stop = max(int(np.searchsorted(ends, ends[begin] - counts[begin] + TWEEDIE_CHUNK,
                                           side="right")), begin + 1)
            part = slice(begin, stop)
            top[part], total[part], first[part], last[part] = _tweedie_windows(
                lo[part], hi[part], counts[part], log_z[todo[part]], alpha
            )
            begin = stop
        done = ((lo == 1.0) | (first < top - 37.0)) & (last < top - 37.0)
        done |= width[todo] >= 1 << 20
        out[todo[done]] = top[done] + np.log(total[done])
        todo = todo[~done]
        width[todo] *= 2.0
    return out


TWEEDIE_CHUNK = 1 << 23  # terms summed at once by tweedie_log_series (64 MB per array)


def _tweedie_windows(
    lo: np.ndarray, hi: np.ndarray, counts: np.ndarray, log_z: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For rows summing ``W_j`` over ``lo <= j <= hi``: the largest log term, the sum of
    the terms scaled by it, and the first and last log terms (see
    :func:`tweedie_log_series`)."""
    row = np.repeat(np.arange(lo.size), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # j = lo + (k - start) of its row: whole numbers, so (lo - start) + k is the same
    j = (lo - starts)[row] + np.arange(row.size)
    top_j = float(hi.max())
    if top_j < j.size:
        # log j! and log Gamma(-j alpha) from tables over the integers up to the largest
        # j (j is an integer: the same gammaln values, computed once per j, not per
        # term; where the table would be longer than the terms, they are computed)
        table_j = np.arange(top_j + 1.0)
        index = j.astype(np.intp)
        log_factorial = special.gammaln(1.0 + table_j)[index]
        log_gamma = special.gammaln(-alpha * table_j)[index]
    else:
        log_factorial = special.gammaln(1.0 + j)
        log_gamma = special.gammaln(-alpha * j)
    terms = j * log_z[row]
    terms -= log_factorial
    terms -= log_gamma
    top = np.maximum.reduceat(terms, starts)
    scaled = terms - top[row]
    np.exp(scaled, out=scaled)
    total = np.add.reduceat(scaled, starts)
    return top, total, terms[starts], terms[starts + counts - 1]


class Tweedie(LikelihoodFamily):
    """glmmTMB's ``tweedie()``: a compound Poisson-gamma response (exact zeros and positive
    values) with ``Var(y) = phi mu^p``, ``1 < p < 2``, on the log link; ``phi`` (glmmTMB's
    ``sigma()``) and the power ``p = 1 + expit(psi)`` are estimated with the other
    parameters.  The density is Dunn & Smyth's series (:func:`tweedie_log_series`);
    ``log p`` is ``-log y + log W + (y mu^(1-p) / (1-p) - mu^(2-p) / (2-p)) / phi`` for
    ``y > 0`` and ``-mu^(2-p) / ((2-p) phi)`` at 0, so its derivatives in ``eta`` do not
    involve the series.  The power is reported as ``power`` (its intervals mapped through
    ``1 + expit``)."""

    name = "tweedie"
    links = ("log",)
    extra_names = ("log_phi", "psi_power")
    dispersion_label = "Dispersion parameter for tweedie family ()"

    def __init__(self, link: Link | None = None, phi: float = 1.0, power: float = 1.5):
        super().__init__(link)
        self.phi = float(phi)
        self.power = float(power)
        self._series: tuple[np.ndarray, np.ndarray] | None = None

    def variance(self, mu):
        return self.phi * mu**self.power

    def _log_w(self, y: np.ndarray) -> np.ndarray:
        """``-log y + log W`` at the positive ``y`` (0 at the zeros), kept for the last
        ``y`` seen (PIRLS asks for it at every step with the same data)."""
        if self._series is not None and self._series[0] is y:
            return self._series[1]
        out = np.zeros(y.shape)
        positive = y > 0
        if positive.any():
            yp = y[positive]
            out[positive] = -np.log(yp) + tweedie_log_series(yp, self.phi, self.power)
        self._series = (y, out)
        return out

    def parameter_key(self):
        return (self.phi, self.power)

    def parameter_terms(self, y, terms):
        return {**terms, "log_w": self._log_w(y)}

    def value_terms(self, y, eta, terms):
        p, phi = self.power, self.phi
        a = np.exp((1.0 - p) * eta)  # mu^(1-p)
        b = np.exp((2.0 - p) * eta)  # mu^(2-p)
        logp = terms["log_w"] + (y * a / (1.0 - p) - b / (2.0 - p)) / phi
        return logp, (a, b)

    def derivative_terms(self, y, eta, terms, state):
        p, phi = self.power, self.phi
        a, b = state
        d1 = (y * a - b) / phi
        d2 = ((1.0 - p) * y * a - (2.0 - p) * b) / phi
        return d1, d2

    @property
    def dispersion(self):
        return self.phi

    def reported_extra(self):
        return [("sigma", self.phi, 0, True), ("power", self.power, 1, _tweedie_power)]

    def start_mu(self, y, weights):
        """Halfway between ``y`` and its mean (positive where ``y`` is 0)."""
        y = np.asarray(y, dtype=float)
        return 0.5 * (y + float(np.mean(y)))

    def check_response(self, y):
        if np.any(y < 0):
            return "a tweedie response must be non-negative"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        """Compound Poisson-gamma: ``N ~ Poisson(mu^(2-p) / (phi (2-p)))`` gamma summands
        of shape ``(2-p)/(p-1)`` and scale ``phi (p-1) mu^(p-1)``."""
        p, phi = self.power, self.phi
        counts = rng.poisson(mu ** (2.0 - p) / (phi * (2.0 - p)))
        shape = (2.0 - p) / (p - 1.0)
        scale = phi * (p - 1.0) * mu ** (p - 1.0)
        draws = rng.gamma(np.maximum(counts, 1) * shape, scale)
        return np.where(counts > 0, draws, 0.0)

    def extra_start(self, y, mu, weights):
        """``log phi`` from ``Var(y) = phi mu^1.5`` at the start's means, and ``p = 1.5``."""
        ratio = float(np.mean((y - mu) ** 2 / np.maximum(mu, 1e-8) ** 1.5))
        return np.array([np.log(min(max(ratio, 1e-3), 1e3)), 0.0])

    def with_extra(self, values):
        return type(self)(self.link, float(np.exp(values[0])), _tweedie_power(values[1]))

    @property
    def extra_values(self):
        q = self.power - 1.0
        return np.array([np.log(self.phi), np.log(q / (1.0 - q))])


FAMILIES[Tweedie.name] = Tweedie
