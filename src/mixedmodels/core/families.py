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


LINKS: dict[str, type[Link]] = {
    cls.name: cls for cls in (LogitLink, ProbitLink, CloglogLink, LogLink, IdentityLink, SqrtLink)
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
    def simulate(self, mu: np.ndarray, weights: np.ndarray, rng: np.random.Generator):
        """A response drawn from the family at means ``mu``, in the scale ``y`` is given."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.link == other.link  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, self.link.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.link!r})"

    def __str__(self) -> str:
        return f"{self.name}  ( {self.link.name} )"


class Binomial(Family):
    """Proportions ``y`` of ``w`` trials: ``V(mu) = mu (1 - mu)``, unit deviance
    ``2 w [y log(y/mu) + (1-y) log((1-y)/(1-mu))]``."""

    name = "binomial"
    links = ("logit", "probit", "cloglog", "log")

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

    def simulate(self, mu, weights, rng):
        """Successes over trials (0/1 for binary data)."""
        trials = np.round(weights).astype(np.int64)
        return rng.binomial(trials, mu) / np.maximum(trials, 1)


class Poisson(Family):
    """Counts: ``V(mu) = mu``, unit deviance ``2 w [y log(y/mu) - (y - mu)]``."""

    name = "poisson"
    links = ("log", "identity", "sqrt")

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

    def simulate(self, mu, weights, rng):
        return rng.poisson(mu).astype(float)


FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (Binomial, Poisson)}


def make_family(name: str, link: str | None = None) -> Family:
    """The family called ``name`` with ``link`` (the family's default link when None).

    Raises
    ------
    ArgumentError
        For an unknown family or a link the family does not take.
    """
    if not isinstance(name, str):
        raise ArgumentError(f"family must be a name such as 'binomial', not {name!r}")
    cls = FAMILIES.get(name.lower())
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
