"""Response distributions and link functions of generalized linear (mixed) models.

Each family gives what penalized iteratively reweighted least squares needs: the inverse link
``mu(eta)`` and its derivative, the variance function ``V(mu)``, the unit deviance and the
log density (for the log-likelihood and AIC, as R's ``family$aic``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)``."""

    name: str

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``mu = g^-1(eta)``."""
        if self.name == "logit":  # kept inside (0, 1) as R's linkinv does
            return np.clip(special.expit(eta), _EPS, 1 - _EPS)
        if self.name == "probit":
            return np.clip(special.ndtr(eta), _EPS, 1 - _EPS)
        if self.name == "cloglog":
            return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)
        if self.name == "log":
            return np.maximum(np.exp(eta), _EPS)
        if self.name == "identity":
            return eta
        if self.name == "sqrt":
            return eta**2
        raise ValueError(self.name)

    def __call__(self, mu: np.ndarray) -> np.ndarray:
        """``eta = g(mu)``."""
        if self.name == "logit":
            return special.logit(mu)
        if self.name == "probit":
            return special.ndtri(mu)
        if self.name == "cloglog":
            return np.log(-np.log1p(-mu))
        if self.name == "log":
            return np.log(mu)
        if self.name == "identity":
            return mu
        if self.name == "sqrt":
            return np.sqrt(mu)
        raise ValueError(self.name)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""
        if self.name == "logit":
            p = special.expit(eta)
            return np.maximum(p * (1 - p), _EPS)
        if self.name == "probit":
            return np.maximum(stats.norm.pdf(eta), _EPS)
        if self.name == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.maximum(np.exp(e - np.exp(e)), _EPS)
        if self.name == "log":
            return np.maximum(np.exp(eta), _EPS)
        if self.name == "identity":
            return np.ones_like(eta)
        if self.name == "sqrt":
            return 2 * eta
        raise ValueError(self.name)


@dataclass(frozen=True)
class Family:
    """A GLM family: ``binomial`` or ``poisson`` with one of their links.

    Attributes
    ----------
    name : {"binomial", "poisson"}
    link : Link
    """

    name: str
    link: Link

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """``V(mu)``: ``mu (1 - mu)`` (binomial), ``mu`` (poisson)."""
        if self.name == "binomial":
            return np.maximum(mu * (1 - mu), _EPS)
        return np.maximum(mu, _EPS)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Deviance residuals squared, ``d_i = 2 w_i (log p(y_i | y_i) - log p(y_i | mu_i))``.

        binomial: ``2 w [y log(y/mu) + (1-y) log((1-y)/(1-mu))]``;
        poisson: ``2 w [y log(y/mu) - (y - mu)]``.
        """
        if self.name == "binomial":
            return (
                2 * weights * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))
            )
        return 2 * weights * (special.xlogy(y, y / mu) - (y - mu))

    def log_density(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``log p(y_i | mu_i)`` per observation, as R's ``family$aic`` uses it: for the
        binomial with ``w`` trials, ``log dbinom(round(w y), round(w), mu)``."""
        if self.name == "binomial":
            trials = np.round(weights)
            return stats.binom.logpmf(np.round(weights * y), trials, mu)
        return weights * stats.poisson.logpmf(y, mu)

    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """R's ``mustart``: ``(w y + 1/2) / (w + 1)`` (binomial), ``y + 1/10`` (poisson)."""
        if self.name == "binomial":
            return (weights * y + 0.5) / (weights + 1)
        return y + 0.1

    def check_response(self, y: np.ndarray) -> str | None:
        """What is wrong with ``y`` for this family, or None."""
        if self.name == "binomial" and (np.any(y < 0) or np.any(y > 1)):
            return (
                "a binomial response must be 0/1, a proportion with weights, or "
                "cbind(successes, failures)"
            )
        if self.name == "poisson" and np.any(y < 0):
            return "a poisson response must be non-negative counts"
        return None

    def __str__(self) -> str:
        return f"{self.name}  ( {self.link.name} )"


_LINKS = {"binomial": ("logit", "probit", "cloglog", "log"), "poisson": ("log", "identity", "sqrt")}
_DEFAULT_LINK = {"binomial": "logit", "poisson": "log"}


def make_family(name: str, link: str | None = None) -> Family:
    """The family called ``name`` ("binomial" or "poisson") with ``link`` (its canonical
    link by default).

    Raises
    ------
    ValueError
        For an unknown family or a link the family does not take.
    """
    key = name.lower()
    if key not in _LINKS:
        raise ValueError(f"family must be 'binomial' or 'poisson', not {name!r}")
    link_name = (link or _DEFAULT_LINK[key]).lower()
    if link_name not in _LINKS[key]:
        raise ValueError(
            f"link {link!r} is not available for the {key} family "
            f"(choose from {', '.join(_LINKS[key])})"
        )
    return Family(key, Link(link_name))
