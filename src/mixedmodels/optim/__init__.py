"""Bounded derivative-free optimization of the profiled objective."""

from mixedmodels.optim.bobyqa import OptimizeResult, minimize_bounded

__all__ = ["OptimizeResult", "minimize_bounded"]
