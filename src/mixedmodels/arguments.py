"""Checks of the public functions' plain arguments (flags, counts, levels, seeds).

Each returns the value in its canonical type or raises an
:class:`~mixedmodels.errors.ArgumentError` naming the argument and what it got, so
``reml="no"`` or ``nsim=2.5`` never passes as something else.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np

from mixedmodels.errors import ArgumentError


def _got(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_bool(value: object, name: str) -> bool:
    """``value`` as a bool; only ``True``/``False`` (numpy's too) are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentError(f"{name} must be True or False, got {_got(value)}")


#: Largest count an argument may ask for (replicates, draws, simulations): beyond it the
#: request cannot be met in memory anyway.
MAX_COUNT = 10**9


def check_int(
    value: object, name: str, minimum: int | None = None, maximum: int = MAX_COUNT
) -> int:
    """``value`` as an int from ``minimum`` to ``maximum``; whole floats (``1e3``) are
    accepted, fractions, logicals and text are not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be an integer, got {_got(value)}")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        number = int(value)
    else:
        raise ArgumentError(f"{name} must be an integer, got {_got(value)}")
    if minimum is not None and number < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, got {number}")
    if number > maximum:
        raise ArgumentError(f"{name} must be at most {maximum}, got {value!r}")
    return number


def check_n_jobs(value: object) -> int:
    """Worker processes: a positive count, or ``-1`` (or 0) for every core."""
    n = check_int(value, "n_jobs", minimum=-1)
    return n if n >= 1 else -1


def check_level(value: object, name: str = "level") -> float:
    """A coverage probability strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a number between 0 and 1, got {_got(value)}")
    level = float(value)
    if not 0.0 < level < 1.0:
        raise ArgumentError(f"{name} must lie strictly between 0 and 1, got {level:g}")
    return level


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """``value`` lower-cased when it is one of ``choices``."""
    options = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be one of {options}, got {_got(value)}")
    key = value.lower()
    if key not in choices:
        raise ArgumentError(f"{name} must be one of {options}, got {value!r}")
    return key


def check_optional_str(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ArgumentError(f"{name} must be a string or None, got {_got(value)}")


def check_callable(value: object, name: str) -> Callable | None:
    if value is None or callable(value):
        return value
    raise ArgumentError(f"{name} must be a function or None, got {_got(value)}")


def random_generator(seed: object, name: str = "seed") -> np.random.Generator:
    """numpy's generator for ``seed`` (None, a non-negative int, a SeedSequence or a
    Generator)."""
    if isinstance(seed, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be None, a non-negative integer or a Generator")
    try:
        return np.random.default_rng(seed)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f"{name} must be None, a non-negative integer or a numpy Generator, got {_got(seed)}"
        ) from exc


def seed_sequence(seed: object, name: str = "seed") -> np.random.SeedSequence:
    """A SeedSequence from ``seed`` (None, a non-negative int or a SeedSequence)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be None or a non-negative integer, got {_got(seed)}")
    try:
        return np.random.SeedSequence(seed)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f"{name} must be None or a non-negative integer, got {_got(seed)}"
        ) from exc
