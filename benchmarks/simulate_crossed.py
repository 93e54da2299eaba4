"""Simulated crossed designs for the crossed-slopes benchmark (issue 17).

Three generators, each with a fixed seed (numpy ``Generator``) and sizes as arguments so
that development runs can use smaller versions of the same designs:

- :func:`simulate_slopes`: ``y ~ x + (x | subj) + (1 | item)``; every subject sees
  ``rows / n_subjects`` distinct items drawn at random, one row each; ``x ~ N(0, 1)``.
  Subject intercept and slope sd 1.0 and 0.5 (correlation 0.3), item sd 0.7, residual sd 1.
- :func:`simulate_kb07`: kb07's shape (56 subjects x 32 items, each pair once, three
  two-level conditions ``a, b, c`` coded -0.5/+0.5 and counterbalanced in a Latin square),
  for the maximal model ``(1 + a + b + c | subj) + (1 + a + b + c | item)``.
- :func:`simulate_scalar`: ``y ~ 1 + (1 | g1) + (1 | g2)``, every row with a random level of
  each factor (sd 1.0 and 0.5, residual sd 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_slopes(
    n_rows: int = 500_000, n_subjects: int = 5_000, n_items: int = 2_000, seed: int = 17
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    per = n_rows // n_subjects
    subj = np.repeat(np.arange(n_subjects), per)
    # distinct items per subject: the first `per` of a random permutation, per subject
    item = np.argsort(rng.random((n_subjects, n_items)), axis=1)[:, :per].ravel()
    n = subj.size
    x = rng.normal(size=n)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_subjects)
    c = rng.normal(scale=0.7, size=n_items)
    y = 2.0 + 0.7 * x + b[subj, 0] + b[subj, 1] * x + c[item] + rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "subj": pd.Categorical(subj),
            "item": pd.Categorical(item),
        }
    )


def simulate_kb07(n_subjects: int = 56, n_items: int = 32, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), n_items)
    item = np.tile(np.arange(n_items), n_subjects)
    cond = (subj + item) % 8  # Latin square: each subject sees every condition equally often
    a = np.where(cond & 1, 0.5, -0.5)
    b = np.where(cond & 2, 0.5, -0.5)
    c = np.where(cond & 4, 0.5, -0.5)
    zs = np.column_stack([np.ones_like(a), a, b, c])
    sd_s = np.array([300.0, 60.0, 40.0, 80.0])
    sd_i = np.array([350.0, 50.0, 90.0, 30.0])
    corr = np.full((4, 4), 0.2) + 0.8 * np.eye(4)
    bs = rng.multivariate_normal(np.zeros(4), corr * np.outer(sd_s, sd_s), size=n_subjects)
    bi = rng.multivariate_normal(np.zeros(4), corr * np.outer(sd_i, sd_i), size=n_items)
    fixed = np.array([2200.0, 70.0, -330.0, 80.0])
    y = zs @ fixed + np.sum(zs * bs[subj], 1) + np.sum(zs * bi[item], 1)
    y = y + rng.normal(scale=650.0, size=y.size)
    return pd.DataFrame(
        {
            "rt": y,
            "a": a,
            "b": b,
            "c": c,
            "subj": pd.Categorical(subj),
            "item": pd.Categorical(item),
        }
    )


def simulate_scalar(
    n_rows: int = 2_000_000, n_g1: int = 20_000, n_g2: int = 500, seed: int = 2
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, n_g1, n_rows)
    g2 = rng.integers(0, n_g2, n_rows)
    a = rng.normal(size=n_g1)
    b = rng.normal(scale=0.5, size=n_g2)
    y = 1.0 + a[g1] + b[g2] + rng.normal(size=n_rows)
    return pd.DataFrame({"y": y, "g1": pd.Categorical(g1), "g2": pd.Categorical(g2)})
