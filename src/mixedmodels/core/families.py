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
        return np.clip(special.expit(eta), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        p = special.expit(eta)
        return np.maximum(p * (1 - p), _EPS)


class ProbitLink(Link):
    """``Phi^-1(mu)``."""

    name = "probit"

    def __call__(self, mu):
        return special.ndtri(mu)

    def inverse(self, eta):
        return np.clip(special.ndtr(eta), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        return np.maximum(stats.norm.pdf(eta), _EPS)


class CloglogLink(Link):
    """``log(-log(1 - mu))``."""

    name = "cloglog"

    def __call__(self, mu):
        return np.log(-np.log1p(-mu))

    def inverse(self, eta):
        return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        e = np.minimum(eta, 700.0)
        return np.maximum(np.exp(e - np.exp(e)), _EPS)


class LogLink(Link):
    """``log(mu)``; the mean is kept above machine epsilon as R's ``linkinv`` does."""

    name = "log"

    def __call__(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.maximum(np.exp(eta), _EPS)

    def mu_eta(self, eta):
        return np.maximum(np.exp(eta), _EPS)


class IdentityLink(Link):
    """``mu``."""

    name = "identity"

    def __call__(self, mu):
        return mu

    def inverse(self, eta):
        return eta

    def mu_eta(self, eta):
        return np.ones_like(eta)


class SqrtLink(Link):
    """``sqrt(mu)``."""

    name = "sqrt"

    def __call__(self, mu):
        return np.sqrt(mu)

    def inverse(self, eta):
        return eta**2

    def mu_eta(self, eta):
        return 2 * eta


class InverseLink(Link):
    """``1 / mu`` (the Gamma family's canonical link)."""

    name = "inverse"

    def __call__(self, mu):
        return 1.0 / mu

    def inverse(self, eta):
        return 1.0 / eta

    def mu_eta(self, eta):
        return -1.0 / eta**2


class InverseSquareLink(Link):
    """``1 / mu^2`` (the inverse Gaussian family's canonical link)."""

    name = "1/mu^2"

    def __call__(self, mu):
        return 1.0 / mu**2

    def inverse(self, eta):
        return 1.0 / np.sqrt(eta)

    def mu_eta(self, eta):
        return -0.5 * eta**-1.5


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

    @abstractmethod
    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """R's ``mustart``."""

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

    def check_link_response(self, y: np.ndarray) -> str | None:
        """What is wrong with ``y`` for this family's link (R's "cannot find valid starting
        values"), or None."""
        return None

    def aic(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray, deviance: float) -> float:
        """R's ``family$aic``: ``-2 sum log p(y_i | mu_i)``; for families with a dispersion
        parameter it is estimated from ``deviance`` and ``+ 2`` is added, as R does."""
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


class Binomial(Family):
    """Proportions ``y`` of ``w`` trials: ``V(mu) = mu (1 - mu)``, unit deviance
    ``2 w [y log(y/mu) + (1-y) log((1-y)/(1-mu))]``."""

    name = "binomial"
    links = ("logit", "probit", "cloglog", "log")
    scaled_search = False

    def variance(self, mu):
        return np.maximum(mu * (1 - mu), _EPS)

    def unit_deviance(self, y, mu, weights):
        return 2 * weights * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))

    def log_density(self, y, mu, weights):
        """``log dbinom(round(w y), round(w), mu)``."""
        trials = np.round(weights)
        return stats.binom.logpmf(np.round(weights * y), trials, mu)

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


class Poisson(Family):
    """Counts: ``V(mu) = mu``, unit deviance ``2 w [y log(y/mu) - (y - mu)]``."""

    name = "poisson"
    links = ("log", "identity", "sqrt")
    scaled_search = False

    def variance(self, mu):
        return np.maximum(mu, _EPS)

    def unit_deviance(self, y, mu, weights):
        return 2 * weights * (special.xlogy(y, y / mu) - (y - mu))

    def log_density(self, y, mu, weights):
        return weights * stats.poisson.logpmf(y, mu)

    def start_mu(self, y, weights):
        """``y + 1/10``."""
        return y + 0.1

    def check_response(self, y):
        if np.any(y < 0):
            return "a poisson response must be non-negative counts"
        return None

    def simulate(self, mu, weights, rng, dispersion=1.0):
        return rng.poisson(mu).astype(float)


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

    def aic(self, y, mu, weights, deviance):
        phi = self.aic_dispersion(y, weights, deviance)
        return -2.0 * float(np.sum(self.log_density(y, mu, weights, phi))) + 2.0

    def start_mu(self, y, weights):
        """``y`` (R's ``mustart``)."""
        return np.asarray(y, dtype=float).copy()


class Gamma(_DispersionFamily):
    """Positive responses with constant coefficient of variation: ``V(mu) = mu^2``, unit
    deviance ``-2 w [log(y/mu) - (y - mu)/mu]``, shape ``1/phi``."""

    name = "gamma"
    r_name = "Gamma"
    links = ("inverse", "log", "identity")

    def variance(self, mu):
        return mu**2

    def unit_deviance(self, y, mu, weights):
        return -2 * weights * (np.log(y / mu) - (y - mu) / mu)

    def log_density(self, y, mu, weights, dispersion=1.0):
        """``w log dgamma(y, shape = 1/phi, scale = mu phi)``."""
        return weights * stats.gamma.logpdf(y, 1.0 / dispersion, scale=mu * dispersion)

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

    def unit_deviance(self, y, mu, weights):
        return weights * (y - mu) ** 2

    def aic_dispersion(self, y, weights, deviance):
        """``deviance / n`` (R's ``gaussian()$aic``)."""
        return deviance / float(np.size(y))

    def log_density(self, y, mu, weights, dispersion=1.0):
        return stats.norm.logpdf(y, mu, np.sqrt(dispersion / weights))

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


FAMILIES: dict[str, type[Family]] = {
    cls.name: cls for cls in (Binomial, Poisson, Gamma, InverseGaussian, Gaussian)
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
