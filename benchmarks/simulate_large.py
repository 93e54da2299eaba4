"""The 1,000,000-row benchmark data: 100,000 subjects of 10 rows, y ~ x + (x | g).

Correlated random intercepts and slopes: sd 1.0 and 0.5, correlation 0.3, residual sd 1,
fixed effects (2.0, 0.7); x ~ N(0, 1); numpy Generator with a fixed seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_large(n_groups: int = 100_000, per_group: int = 10, seed: int = 2026) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=n)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_groups)
    y = 2.0 + 0.7 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
