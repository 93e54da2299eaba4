"""Newton steps from the moment start on the crossed path (optim.lmm._newton_from_start).

Reference: the same problem through BOBYQA and the polish (the path every other model
takes), which converges to the optimum independently.  Both ends are the optimum to the
polish's precision (a remaining Newton step below 1e-8 relative), so theta agrees to 1e-6
and the objective to 1e-10 relative.
"""

from __future__ import annotations

import numpy as np

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock
from mixedmodels.optim import lmm as optim_lmm


def slopes_problem(rng: np.random.Generator, reml: bool = True, item_sd: float = 0.7):
    """``y ~ x + (x | subject) + (1 | item)``: 400 subjects x 15 rows, 60 items (q = 860,
    over the dense path's 240: the crossed path).  ``item_sd = 0``: the noise's item means
    are taken out too, so the items vary less than chance and the item variance's
    estimate is 0."""
    n_subjects, per, n_items = 400, 15, 60
    n = n_subjects * per
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    subj = np.repeat(np.arange(n_subjects), per)
    item = rng.integers(0, n_items, n)
    b = rng.normal(size=(n_subjects, 2)) * [1.0, 0.5]
    noise = rng.normal(size=n)
    if item_sd == 0:
        noise -= (np.bincount(item, noise, n_items) / np.bincount(item, minlength=n_items))[item]
    y = (
        2 + 0.5 * x + b[subj, 0] + b[subj, 1] * x + item_sd * rng.normal(size=n_items)[item]
        + noise
    )
    blocks = [RandomBlock(subj, n_subjects, X.copy()), RandomBlock(item, n_items, np.ones((n, 1)))]
    return LmmProblem(blocks, X, y, reml=reml)


def by_bobyqa(monkeypatch, problem):
    with monkeypatch.context() as patched:
        patched.setattr(optim_lmm, "_newton_from_start", lambda *args: None)
        return optim_lmm.optimize_problem(problem)


def test_newton_from_the_moment_start_reaches_bobyqas_optimum(monkeypatch):
    for reml in (True, False):
        problem = slopes_problem(np.random.default_rng(3), reml)
        newton = optim_lmm.optimize_problem(problem)
        assert "from the moment start" in newton.message
        reference = by_bobyqa(monkeypatch, problem)
        assert "from the moment start" not in reference.message
        np.testing.assert_allclose(newton.x, reference.x, rtol=0, atol=1e-6)
        assert abs(newton.fun - reference.fun) <= 1e-10 * abs(reference.fun)
        assert newton.n_evaluations < reference.n_evaluations


def test_an_optimum_on_the_boundary_is_left_to_bobyqa(monkeypatch):
    """No item variation at all: the item variance's optimum is 0, where Newton steps do
    not go (lme4's boundary check is BOBYQA's): the usual path is taken."""
    problem = slopes_problem(np.random.default_rng(4), item_sd=0.0)
    assert problem.has_entry_gradient()
    result = optim_lmm.optimize_problem(problem)
    reference = by_bobyqa(monkeypatch, problem)
    assert result.x[-1] == 0.0
    assert "from the moment start" not in result.message
    np.testing.assert_array_equal(result.x, reference.x)
