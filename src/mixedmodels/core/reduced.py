"""A linear mixed model built from its reduced form: the Gram of ``[Z X y]``, the number of
rows and what a pass over them found, never the rows themselves.

The profiled objective, its derivatives, the solution, conditional covariances and
profiles need nothing else, so data far larger than memory are fitted by adding the
partial Grams of their chunks (:mod:`mixedmodels.core.reduce`) and building the problem
here.
"""

from __future__ import annotations

import numpy as np

from mixedmodels.core.dense import MAX_DENSE_RANDOM_EFFECTS, DenseObjective
from mixedmodels.core.gram import Gram
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.terms import RandomBlock


def term_shapes(n_levels: list[int], widths: list[int]) -> list[RandomBlock]:
    """Random-effect terms without rows: the number of levels and columns of each."""
    return [
        RandomBlock(np.zeros(0, dtype=np.int64), int(levels), np.zeros((0, int(p))))
        for levels, p in zip(n_levels, widths, strict=True)
    ]


def engine_order(blocks: list[RandomBlock]) -> list[int]:
    """The engine's order of the terms: largest ``l * p`` first, ties stable (as
    :class:`~mixedmodels.core.lmm.LmmProblem` orders them)."""
    return sorted(range(len(blocks)), key=lambda k: -blocks[k].size)


def reduced_problem(
    blocks: list[RandomBlock],
    gram: Gram,
    *,
    n: int,
    n_fixed: int,
    log_weights: float,
    beta_shift: np.ndarray,
    nested: dict[tuple[int, int], bool],
    reml: bool,
) -> LmmProblem:
    """The problem whose Gram (engine order, response already shifted by ``beta_shift``)
    is ``gram``.

    Parameters
    ----------
    blocks : list of RandomBlock
        The terms in public order, without rows (:func:`term_shapes`).
    nested : dict
        ``(k, m) -> True`` when engine term ``m < k`` is nested in engine term ``k`` (the
        in-memory problem's ``is_nested(engine[m], engine[k])``: term ``k`` is then kept
        block diagonal).
    """
    problem = object.__new__(LmmProblem)
    problem._set_terms(blocks)
    problem.X = np.zeros((0, n_fixed))
    problem.y = np.zeros(0)
    problem.y_work = np.zeros(0)
    problem.weights = None
    problem.reml = reml
    problem.n, problem.n_fixed = n, n_fixed
    problem.dense = [
        any(not nested[k, m] for m in range(k)) for k in range(len(problem.engine_blocks))
    ]
    problem.gram = gram
    problem.beta_shift = np.asarray(beta_shift, dtype=float)
    problem.log_weights = float(log_weights)
    problem._fill_plans = None  # built from the Gram on first use
    engine = problem.engine_blocks
    q = sum(b.size for b in engine)
    problem.dense_objective = DenseObjective(problem) if q <= MAX_DENSE_RANDOM_EFFECTS else None
    problem._xy_component_major = None
    problem._crossed = None  # the crossed path reads the rows' codes: blocked engine here
    problem.n_evaluations = 0
    return problem
