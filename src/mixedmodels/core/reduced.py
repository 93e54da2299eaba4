"""A linear mixed model built from its reduced form: the Gram of ``[Z X y]``, the number of
rows and what a pass over them found, never the rows themselves.

The profiled objective, its derivatives, the solution, conditional covariances and
profiles need nothing else, so data far larger than memory are fitted by adding the
partial Grams of their chunks (:mod:`mixedmodels.core.reduce`) and building the problem
here.
"""

from __future__ import annotations

import numpy as np

from mixedmodels.core.crossed import (
    MAX_NESTED_REST,
    MAX_REST,
    CrossedObjective,
    EliminationOrder,
)
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


def crossed_order(
    blocks: list[RandomBlock], same_factor: np.ndarray, nested: np.ndarray
) -> EliminationOrder | None:
    """:func:`mixedmodels.core.crossed.choose_order` for terms without rows: which terms
    share a grouping factor (``same_factor[j, k]``) and which are nested in which
    (``nested[j, k]``: every level of term ``j`` within one level of term ``k``) come
    from a pass over the rows instead of the rows' codes.  Engine order throughout."""
    groups: list[list[int]] = []
    for k in range(len(blocks)):
        for g in groups:
            if same_factor[g[0], k]:
                g.append(k)
                break
        else:
            groups.append([k])
    if len(groups) < 2:
        return None
    sizes = [sum(blocks[k].size for k in g) for g in groups]
    first = groups[int(np.argmax(sizes))]
    rest = [k for k in range(len(blocks)) if k not in first]
    if sum(blocks[k].size for k in rest) > MAX_REST:
        return None
    for k in rest:
        if blocks[k].size > MAX_NESTED_REST and nested[k, first[0]]:
            return None
    return EliminationOrder(first=first, rest=rest)


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
    order: EliminationOrder | None = None,
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
    order : EliminationOrder, optional
        The crossed path's elimination order (:func:`crossed_order`), when the in-memory
        problem would take that path; its structure then comes from the Gram (one
        eliminated term; several amalgamated terms would need the rows: blocked engine).
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
    problem._crossed = None
    if problem.dense_objective is None and order is not None and len(order.first) == 1:
        crossed = CrossedObjective(
            engine, problem.order, problem.theta_offsets, gram, None, n_fixed, order
        )
        problem._crossed = crossed if crossed.fill is not None else None
    problem.n_evaluations = 0
    return problem
