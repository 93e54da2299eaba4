"""Neal's (2003) univariate slice sampler: stepping out with a randomly split step limit,
then shrinkage.  Each step leaves the target exactly invariant, whatever the width."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

MAX_STEPS = 50


def slice_step(
    rng: np.random.Generator, f: Callable[[float], float], x0: float, f0: float, width: float
) -> tuple[float, float]:
    """One univariate slice-sampling step (stepping out, then shrinkage).

    ``f`` may change shared state; it is re-evaluated at the returned point last.
    """
    level = f0 + math.log(rng.uniform())  # log of a uniform height under exp(f)
    left = x0 - width * rng.uniform()
    right = left + width
    steps_left = int(MAX_STEPS * rng.uniform())  # Neal's random split of the step limit
    steps_right = MAX_STEPS - 1 - steps_left
    while steps_left > 0 and f(left) > level:
        left -= width
        steps_left -= 1
    while steps_right > 0 and f(right) > level:
        right += width
        steps_right -= 1
    while True:
        x = left + (right - left) * rng.uniform()
        fx = f(x)
        if fx > level:
            return x, fx
        if x < x0:
            left = x
        else:
            right = x
        if right - left < 1e-14:
            return x0, f(x0)
