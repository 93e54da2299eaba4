"""independent_columns: the Cholesky shortcut (every column clearly independent) gives the
scan's answer; the scan (the reference here, R's left-to-right ``qr`` rule) is run by
turning the shortcut off."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.design import rank
from mixedmodels.design.rank import independent_columns


def _scan(X: np.ndarray, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(rank, "_all_clearly_independent", lambda *args: False)
        return independent_columns(X)


def _matrices():
    rng = np.random.default_rng(12)
    for trial in range(60):
        n = int(rng.integers(2, 40))
        p = int(rng.integers(1, 9))
        X = rng.normal(size=(n, p)) * 10.0 ** rng.uniform(-4, 4, size=p)
        kind = trial % 6
        if kind == 1 and p > 1:  # an exact multiple of an earlier column
            X[:, -1] = 2.0 * X[:, 0]
        elif kind == 2 and p > 1:  # nearly dependent: around the threshold tol = 1e-7
            X[:, -1] = X[:, 0] + 10.0 ** rng.uniform(-10, -5) * rng.normal(size=n) * np.abs(
                X[:, 0]
            ).max()
        elif kind == 3:  # a zero column
            X[:, int(rng.integers(p))] = 0.0
        elif kind == 4 and p > 2:  # a sum of two columns
            X[:, 1] = X[:, 0] + X[:, 2]
        yield X


@pytest.mark.parametrize("X", list(_matrices()))
def test_shortcut_gives_the_scans_columns(X, monkeypatch):
    np.testing.assert_array_equal(independent_columns(X), _scan(X, monkeypatch))


def test_later_of_two_dependent_columns_dropped():
    days = np.tile(np.arange(10.0), 3)
    X = np.column_stack([np.ones(30), days, 2.0 * days])  # lme4 drops Days2 = 2 Days
    np.testing.assert_array_equal(independent_columns(X), [0, 1])
    assert not rank._all_clearly_independent(X.T @ X, 30, 1e-7)


def test_more_columns_than_rows_take_the_scan():
    X = np.random.default_rng(1).normal(size=(3, 5))
    assert not rank._all_clearly_independent(X.T @ X, 3, 1e-7)
    np.testing.assert_array_equal(independent_columns(X), [0, 1, 2])


def test_clearly_independent_columns_use_the_shortcut(monkeypatch):
    """Well-conditioned columns never reach the scan (its triangular solves)."""
    X = np.random.default_rng(2).normal(size=(50, 4))

    def refuse(*args, **kwargs):
        raise AssertionError("the scan ran")

    monkeypatch.setattr(rank, "_TRTRS", refuse)
    np.testing.assert_array_equal(independent_columns(X), np.arange(4))
