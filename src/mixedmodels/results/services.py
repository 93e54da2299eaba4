"""The inference a fit offers, supplied by the inference layer.

Fits (this layer) sit below inference in the package's layering, yet a user expects
``fit.confint()``, ``fit.fixef_table(ddf=...)`` and ``fit.bootstrap()`` as methods.  The
methods therefore call the functions registered here, and :mod:`mixedmodels.inference`
registers its implementations when it is imported (which ``import mixedmodels`` always
does): fits never import inference, inference imports fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mixedmodels.errors import MixedModelsError


@dataclass(frozen=True)
class InferenceMethods:
    """The inference functions a fit calls.

    Attributes
    ----------
    variance_parameter_info : callable
        ``(problem, theta, sigma) -> info`` for Satterthwaite's df.
    contrast_df : callable
        ``(info, contrast) -> df``.
    kenward_roger_table : callable
        ``fit -> DataFrame`` (pbkrtest's df and F scaling).
    profile_confint : callable
        ``(fit, level) -> DataFrame`` of profile intervals.
    profile_traces : callable
        ``(fit, level, points) -> DataFrame`` of zeta traces.
    bootstrap : callable
        ``(fit, nsim, statistic, *, seed, n_jobs, progress) -> BootstrapResult``.
    """

    variance_parameter_info: Callable[..., Any]
    contrast_df: Callable[..., Any]
    kenward_roger_table: Callable[..., Any]
    profile_confint: Callable[..., Any]
    profile_traces: Callable[..., Any]
    bootstrap: Callable[..., Any]


_REGISTERED: list[InferenceMethods] = []


def register_inference(methods: InferenceMethods) -> None:
    """Install the inference layer's implementations (called by :mod:`mixedmodels.inference`)."""
    _REGISTERED[:] = [methods]


def inference() -> InferenceMethods:
    """The registered inference functions."""
    if not _REGISTERED:
        raise MixedModelsError(
            "inference methods are not available: import mixedmodels (or "
            "mixedmodels.inference) first"
        )
    return _REGISTERED[0]
