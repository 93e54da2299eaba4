"""A GramPlan's refill with one-level blocks (smooths' random parts: dense columns, one
level) equals the Gram built from scratch (an identity between the planned refill, which
takes BLAS cross products for such blocks, and ``build_gram``; tolerance 1e-12 relative:
rounding only), also after refilling in place with other weights."""

import numpy as np

from mixedmodels.core.gram import GramPlan, build_gram
from mixedmodels.reterms.blocks import RandomBlock


def _blocks(rng, n):
    one = np.zeros(n, dtype=np.int64)
    return [
        RandomBlock(rng.integers(0, 25, n), 25, np.ones((n, 1))),  # (1 | g)
        RandomBlock(one, 1, rng.normal(size=(n, 8))),  # s(x)'s random part
        RandomBlock(one, 1, rng.normal(size=(n, 6))),  # s(z)'s
        RandomBlock(rng.integers(0, 7, n), 7, rng.normal(size=(n, 2))),  # (x | h)
    ]


def _close(a, b):
    scale = max(1.0, float(np.max(np.abs(b))))
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) <= 1e-12 * scale


def test_one_level_refill_equals_build_gram():
    rng = np.random.default_rng(7)
    n = 600
    blocks = _blocks(rng, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    plan = GramPlan(blocks, X)
    first = plan.gram(rng.uniform(0.1, 2, n), rng.normal(size=n))
    w, y = rng.uniform(0.1, 2, n), rng.normal(size=n)
    ours = plan.gram(w, y, out=first)  # refilled in place
    ref = build_gram(blocks, X, y, w)
    for a, b in zip(ours.diagonal, ref.diagonal, strict=True):
        assert a.shape == b.shape and _close(a, b)
    assert ours.off_diagonal.keys() == ref.off_diagonal.keys()
    for key in ref.off_diagonal:
        assert _close(ours.off_diagonal[key].toarray(), ref.off_diagonal[key].toarray())
    for a, b in zip(ours.xy_random, ref.xy_random, strict=True):
        assert a.shape == b.shape and _close(a, b)
    assert _close(ours.xy_xy, ref.xy_xy)
