"""A fixed-effect matrix larger than half of the machine's memory is refused before it is
built (design/matrices.MatrixBuilder), for lm as for lmer: a DataError naming its size and
widest term instead of the system killing the process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
import mixedmodels.design.matrices as matrices
from mixedmodels.errors import DataError


def _frame(n: int, levels: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    labels = [f"l{i % levels}" for i in range(n)]
    return pd.DataFrame({"y": rng.normal(size=n), "f": labels, "x": rng.normal(size=n)})


def test_the_budget_is_half_of_physical_memory():
    """The budget against /proc/meminfo's MemTotal (the same pages, counted by the kernel),
    within 1% (rounding of kB)."""
    with open("/proc/meminfo") as fh:
        total_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    assert matrices.dense_matrix_budget() == pytest.approx(0.5 * total_kb * 1024, rel=1e-2)


def test_boundary_of_the_budget(monkeypatch):
    """``y ~ x + f`` on 10 rows with 5 levels: 1 + 1 + 4 = 6 columns, 10 x 6 x 8 = 480 bytes:
    built at a budget of 480, refused at 479 (naming the size and the widest term, f)."""
    frame = _frame(10, 5)
    monkeypatch.setattr(matrices, "dense_matrix_budget", lambda: 480.0)
    fit = mm.lm("y ~ x + f", frame)
    assert len(fit.coef) == 6
    monkeypatch.setattr(matrices, "dense_matrix_budget", lambda: 479.0)
    with pytest.raises(DataError, match=r"10 rows x 6 columns; term 'f': 4 columns"):
        mm.lm("y ~ x + f", frame)


def test_a_factor_with_a_level_per_row_in_lm_is_refused_not_built():
    """300,000 rows and as many levels: 670 GiB, refused before any column is built."""
    frame = _frame(300_000, 300_000)
    with pytest.raises(DataError, match=r"GiB \(300000 rows x 300000 columns"):
        mm.lm("y ~ f", frame)
