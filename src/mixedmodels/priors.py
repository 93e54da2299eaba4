"""Priors for :meth:`LmerFit.sample_posterior`, one object per distribution.

>>> from mixedmodels.priors import HalfCauchy, Normal
>>> post = fit.sample_posterior(fixef=Normal(0, 10), sigma=HalfCauchy(5))  # doctest: +SKIP

Per parameter class:

* ``fixef=``: :class:`Flat` (default), :class:`Normal` ``(mean, sd)``, :class:`StudentT`
  ``(nu, mean, s)``;
* ``sigma=`` and ``sd=``: :class:`HalfStudentT` ``(nu, s)`` (default ``nu = 3``,
  ``s = max(2.5, mad(y))``, brms's), :class:`HalfCauchy` ``(s)``, :class:`HalfNormal`
  ``(s)``, :class:`Flat` (on the standard deviation), :class:`InverseGamma` ``(a, b)`` (on
  the variance; ``(0, 0)`` is the improper ``1 / variance``);
* ``cor=``: :class:`LKJ` ``(eta)`` (default ``eta = 1``, uniform correlations).

Each is updated exactly inside the Gibbs sweep (conjugacy, scale-mixture augmentation,
a generalized-inverse-Gaussian draw, or slice sampling): see
:mod:`mixedmodels.core.priors`.
"""

from mixedmodels.core.priors import (
    LKJ,
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    Normal,
    Prior,
    StudentT,
)

__all__ = [
    "Flat",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "InverseGamma",
    "LKJ",
    "Normal",
    "Prior",
    "StudentT",
]
