"""Smooth terms of a formula -- ``s(x)``, ``s(x, bs = "cr", k = 5)``, ``s(x, by = f)``,
``s(g, bs = "re")``, ``s(x, g, bs = "fs")``, ``t2(x, z)`` -- as fixed and random effects.

A smooth's call is data: its covariates must be column names and its options (``k``,
``bs``, ``m``, ``by``) literals, checked here with errors that point into the formula.
Each smooth becomes, as in mgcv's ``gamm``/``gamm4``:

* fixed-effect columns: the penalty's null space after the sum-to-zero constraint
  (``s(x)Fx1``, the linear trend of a ``tp`` or ``cr`` smooth);
* random-effect parts with one variance each: the range space scaled so that its penalty
  is the identity (one level, ``k`` columns, scaled-identity covariance); an ``fs`` smooth
  has one level per group and a part per penalty; ``t2`` has a part per penalty; ``re`` is
  a random intercept.

Everything needed to evaluate the same columns at new covariate values is kept (knots,
eigenvectors, constraint), so predictions and curves use the fitted basis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from mixedmodels.design.grouping import codes_for_levels, group_codes, level_labels
from mixedmodels.design.validate import is_numeric, numeric_values
from mixedmodels.errors import DataError, FormulaError
from mixedmodels.formula.expr import Call, Name, Number, String, deparse, parse_expression
from mixedmodels.linalg.threads import single_threaded_blas
from mixedmodels.reterms.smooth_bases import (
    CubicRegressionBasis,
    ThinPlateBasis,
    mixed_model_form,
    natural_parametrization,
    sum_to_zero,
    t2_blocks,
    tensor_margin_parametrization,
)

BASES = ("tp", "cr", "re", "fs")
T2_BASES = ("cr", "tp")
#: Up to this many rows a smooth's basis (small eigen-problems, n x k products) is built
#: with one BLAS thread: handing such work to a second thread costs more than it saves,
#: and on a loaded machine far more (gaussian_fs' basis: 46 ms with two threads, 8 ms
#: with one, at load 12 on 2 cores).
SINGLE_THREAD_ROWS = 50_000

# --------------------------------------------------------------------------- the call


@dataclass(frozen=True)
class SmoothSpec:
    """One ``s(...)`` or ``t2(...)`` call, read as data.

    Attributes
    ----------
    kind : {"s", "t2"}
    covariates : tuple of str
        The columns the smooth is a function of (an ``fs`` smooth's factor included).
    bs : str
        Basis: "tp", "cr", "re", "fs" (``t2``: the margins' basis, "cr" by default).
    k : int or None
        Basis dimension (None: mgcv's default, 10 for tp/cr/fs, 5 per t2 margin).
    m : int or None
        Penalty order of a tp basis (None: 2).
    by : str or None
        A factor: one smooth per level.
    text : str
        The call as written (R's deparse).
    """

    kind: str
    covariates: tuple[str, ...]
    bs: str
    k: int | None
    m: int | None
    by: str | None
    text: str

    @property
    def label(self) -> str:
        """mgcv's label: ``s(x)``, ``s(x,g)``, ``t2(x,z)``."""
        return f"{self.kind}({','.join(self.covariates)})"

    @property
    def variables(self) -> list[str]:
        return list(self.covariates) + ([self.by] if self.by else [])


def _literal_int(node, name: str, call: Call, formula: str | None, minimum: int) -> int:
    value = node.value if isinstance(node, Number) else None
    if value is None or not float(value).is_integer() or value < minimum:
        raise FormulaError(
            f"{call.func}(): {name} must be a whole number >= {minimum}, got {deparse(node)}",
            formula,
            call.pos if formula is not None else None,
        )
    return int(value)


@lru_cache(maxsize=256)
def parse_smooth(text: str, formula: str | None = None) -> SmoothSpec:
    """Read one smooth call (its deparsed text) into a :class:`SmoothSpec`.

    Cached (the spec is immutable): a design reads its smooths' calls several times.

    Raises
    ------
    FormulaError
        A covariate that is not a column name, an option that is not a literal, an unknown
        basis, a ``by`` that is not a column name, the wrong number of covariates.
    """
    call = parse_expression(text)
    if not isinstance(call, Call) or call.func not in ("s", "t2"):
        raise FormulaError(f"{text} is not a smooth term", formula)
    where = formula.find(text) if formula else -1
    pos = where if where >= 0 else None

    def fail(message: str) -> FormulaError:
        return FormulaError(f"{call.func}(): {message}", formula, pos)

    covariates = []
    for arg in call.args:
        if not isinstance(arg, Name):
            raise fail(
                f"the covariates must be column names, got {deparse(arg)} (write transformed "
                "covariates as columns of the data)"
            )
        covariates.append(arg.id)
    if not covariates:
        raise fail("needs at least one covariate, as in s(x)")
    options = dict(call.keywords)
    bs_node = options.get("bs")
    default_bs = "cr" if call.func == "t2" else "tp"
    if bs_node is None:
        bs = default_bs
    elif isinstance(bs_node, String):
        bs = bs_node.value
    else:
        raise fail(f'bs must be a quoted basis name such as "cr", got {deparse(bs_node)}')
    allowed = T2_BASES if call.func == "t2" else BASES
    if bs not in allowed:
        raise fail(f'unknown basis bs = "{bs}" (available: {", ".join(allowed)})')
    k = options.get("k")
    m = options.get("m")
    by = options.get("by")
    if by is not None and not isinstance(by, Name):
        raise fail(f"by must be a column name (a factor), got {deparse(by)}")
    spec = SmoothSpec(
        kind=call.func,
        covariates=tuple(covariates),
        bs=bs,
        k=None if k is None else _literal_int(k, "k", call, formula, 1),
        m=None if m is None else _literal_int(m, "m", call, formula, 1),
        by=None if by is None else by.id,
        text=text,
    )
    n_cov = len(covariates)
    if call.func == "t2" and n_cov < 2:
        raise fail("a tensor product needs two or more covariates, as in t2(x, z)")
    if call.func == "s" and bs in ("tp", "cr") and n_cov != 1:
        raise fail(
            f'a bs = "{bs}" smooth of {n_cov} covariates is not supported: one covariate, or '
            "t2(x, z) for a tensor product"
        )
    if bs == "fs" and n_cov != 2:
        raise fail('bs = "fs" takes a covariate and a factor, as in s(x, g, bs = "fs")')
    if bs == "re" and n_cov != 1:
        raise fail('bs = "re" takes one factor, as in s(g, bs = "re")')
    if bs in ("re", "fs") and spec.by is not None:
        raise fail(f'by is not supported with bs = "{bs}"')
    if spec.m is not None and bs not in ("tp", "fs") and call.func == "s":
        raise fail(f'm (the penalty order) is available for bs = "tp" and "fs", not "{bs}"')
    return spec


# ------------------------------------------------------------------------ the numbers


@dataclass
class RandomPart:
    """One variance component of a smooth: rows of ``Z`` grouped by ``codes``.

    ``scaled_identity`` says the ``z.shape[1]`` coefficients per level share one variance
    (lambda = theta I); otherwise the part has one column (a scalar variance).
    """

    name: str
    codes: np.ndarray
    levels: pd.Index
    z: np.ndarray
    evaluate: Callable[[pd.DataFrame], np.ndarray]  # z at new data
    group_factors: tuple[str, ...] = ()  # the grouping columns, () for one level

    @property
    def scaled_identity(self) -> bool:
        return self.z.shape[1] > 1

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def codes_for(self, data: pd.DataFrame) -> np.ndarray:
        """Level of each new row (0 for a one-level part; -1 for an unseen group)."""
        if not self.group_factors:
            return np.zeros(len(data), dtype=np.int64)
        return codes_for_levels(data, self.group_factors, level_labels(self.levels))


@dataclass
class SmoothFunction:
    """One smooth function after ``by`` expansion (mgcv's smooth object).

    Attributes
    ----------
    label : str
        ``s(x)``, ``s(x):fa`` (the ``by`` level), ``t2(x,z)``, ``s(g)``, ``s(x,g)``.
    spec : SmoothSpec
    fixed_names : list of str
        Its fixed-effect columns (``s(x)Fx1``).
    fixed : ndarray (n, nf)
    parts : list of RandomPart
    evaluate_fixed : callable
        New data -> its fixed-effect columns.
    by_level : str, optional
    group_levels : pandas Index, optional
        An ``fs`` smooth's factor levels (one curve per level).
    """

    label: str
    spec: SmoothSpec
    fixed_names: list[str]
    fixed: np.ndarray
    parts: list[RandomPart]
    evaluate_fixed: Callable[[pd.DataFrame], np.ndarray]
    by_level: str | None = None
    group_levels: pd.Index | None = None
    null_space_dim: int = 0
    penalty_count: int = field(default=1)
    #: Shown centred over the fitted rows (mgcv's prediction constraint for t2: the
    #: fitting constraint leaves the range-space products free of it, so the smooth's
    #: mean over the data is moved into the intercept for curves and terms).
    centred: bool = False

    @property
    def random(self) -> bool:
        """A fully penalized term (``re``, ``fs``): mgcv tests it as a random effect."""
        return self.null_space_dim == 0


def _covariate(data: pd.DataFrame, name: str, spec: SmoothSpec) -> np.ndarray:
    column = data[name]
    if not is_numeric(column):
        raise DataError(
            f"{spec.text}: covariate {name!r} must be numeric (a factor goes in by = or, for "
            'a smooth per level, in s(x, g, bs = "fs"))'
        )
    return numeric_values(column)


def _by_codes(data: pd.DataFrame, spec: SmoothSpec) -> tuple[np.ndarray, pd.Index]:
    column = data[spec.by]
    if is_numeric(column) and not isinstance(column.dtype, pd.CategoricalDtype):
        raise DataError(
            f"{spec.text}: by = {spec.by} must be a factor (text or categorical column); "
            "numeric by variables are not supported"
        )
    return group_codes(data, (spec.by,))


def _one_d_basis(spec: SmoothSpec, x: np.ndarray, bs: str, k: int | None):
    """(basis, X) of a tp or cr basis of one covariate."""
    try:
        if bs == "cr":
            return CubicRegressionBasis.build(x, 10 if k is None else k)
        m = 2 if spec.m is None else spec.m
        k_eff = m + 8 if k is None else k
        if k_eff < m + 1:
            raise ValueError(f"k = {k_eff} is below the minimum m + 1 = {m + 1} for this basis")
        return ThinPlateBasis.build(x, k_eff, m)
    except ValueError as exc:
        raise DataError(f"{spec.text}: {exc}") from None


def _penalized_smooth(spec: SmoothSpec, data: pd.DataFrame) -> list[SmoothFunction]:
    """``s(x)`` with a tp or cr basis, one function per ``by`` level."""
    name = spec.covariates[0]
    basis, X = _one_d_basis(spec, _covariate(data, name, spec), spec.bs, spec.k)
    Z = sum_to_zero(X)
    S = Z.T @ basis.penalty @ Z
    rank = basis.k - basis.null_dim
    form = mixed_model_form(S, rank)
    Tf, Tr = Z @ form.fixed, Z @ form.random

    def columns(new: pd.DataFrame, transform: np.ndarray, dummy_of) -> np.ndarray:
        raw = basis.matrix(_covariate(new, name, spec))
        return (raw @ transform) * dummy_of(new)[:, None]

    if spec.by is None:
        levels_and_dummies = [(None, lambda new: np.ones(len(new)))]
    else:
        by_codes, by_levels = _by_codes(data, spec)
        labels = level_labels(by_levels)

        def dummy_for(label: str):
            return lambda new: (
                codes_for_levels(new, (spec.by,), labels) == labels.index(label)
            ).astype(float)

        levels_and_dummies = [(label, dummy_for(label)) for label in labels]
    out = []
    both = np.hstack([Tf, Tr])
    XT = X @ both  # the fixed and random columns at once
    nf = Tf.shape[1]
    for j, (level, dummy) in enumerate(levels_and_dummies):
        label = spec.label if level is None else f"{spec.label}:{spec.by}{level}"
        # at the fitted rows the level's indicator is the by codes' (no new lookup)
        cols = XT if level is None else XT * (by_codes == j)[:, None]
        fixed, z = cols[:, :nf], cols[:, nf:]
        part = RandomPart(
            name=label,
            codes=np.zeros(len(data), dtype=np.int64),
            levels=pd.Index([label]),
            z=z,
            evaluate=lambda new, d=dummy: columns(new, Tr, d),
        )
        out.append(
            SmoothFunction(
                label=label,
                spec=spec,
                fixed_names=[f"{label}Fx{j + 1}" for j in range(fixed.shape[1])],
                fixed=fixed,
                parts=[part],
                evaluate_fixed=lambda new, d=dummy: columns(new, Tf, d),
                by_level=level,
                null_space_dim=fixed.shape[1],
            )
        )
    return out


def _random_effect_smooth(spec: SmoothSpec, data: pd.DataFrame) -> list[SmoothFunction]:
    """``s(g, bs = "re")``: a random intercept per level of ``g``."""
    g = spec.covariates[0]
    codes, levels = group_codes(data, (g,))
    part = RandomPart(
        name=spec.label,
        codes=codes,
        levels=levels,
        z=np.ones((len(data), 1)),
        evaluate=lambda new: np.ones((len(new), 1)),
        group_factors=(g,),
    )
    return [
        SmoothFunction(
            label=spec.label,
            spec=spec,
            fixed_names=[],
            fixed=np.zeros((len(data), 0)),
            parts=[part],
            evaluate_fixed=lambda new: np.zeros((len(new), 0)),
        )
    ]


def _factor_smooth(spec: SmoothSpec, data: pd.DataFrame) -> list[SmoothFunction]:
    """``s(x, g, bs = "fs")``: a tp smooth per level of ``g`` sharing its smoothing
    parameter, with each null-space direction a separate random effect.

    The null space (``1, x`` for ``m = 2``) is split into the data-orthonormal constant
    and centred ``x`` (random intercepts and slopes per group), scaled as mgcv scales its
    null columns (``sqrt(n / M)``).  mgcv splits it along the eigenvectors its
    eigen-solver returns for the zero eigenvalues, an arbitrary rotation of these that
    changes the model when ``M > 1``; with ``m = 1`` (``M = 1``) the two are the same.
    """
    numeric = [
        c
        for c in spec.covariates
        if is_numeric(data[c]) and not isinstance(data[c].dtype, pd.CategoricalDtype)
    ]
    factors = [c for c in spec.covariates if c not in numeric]
    if len(factors) != 1 or len(numeric) != 1:
        raise DataError(
            f"{spec.text}: an fs smooth needs one numeric covariate and one factor (text or "
            f"categorical column); got numeric {numeric} and factors {factors}"
        )
    name, g = numeric[0], factors[0]
    base = SmoothSpec("s", (name,), "tp", spec.k, spec.m, None, spec.text)
    basis, X = _one_d_basis(base, _covariate(data, name, spec), "tp", spec.k)
    rank = basis.k - basis.null_dim
    P, d = natural_parametrization(X, basis.penalty, rank)
    P_range = P[:, :rank] / np.sqrt(d)  # X @ P_range: penalty identity
    # each null-space direction its own random effect: the data-orthonormal constant and
    # centred polynomials (Gram-Schmidt of 1, x, ...), scaled as mgcv scales them
    _, R = np.linalg.qr(X[:, rank:])
    n = X.shape[0]
    M = basis.null_dim
    P_null = np.zeros((basis.k, M))
    P_null[rank:] = np.linalg.inv(R) * np.sqrt(n / M)
    codes, levels = group_codes(data, (g,))

    def evaluate(transform: np.ndarray):
        return lambda new: basis.matrix(_covariate(new, name, spec)) @ transform

    parts = [RandomPart(f"{spec.label}", codes, levels, X @ P_range, evaluate(P_range), (g,))]
    for j in range(M):
        parts.append(
            RandomPart(
                f"{spec.label}.{j}",
                codes,
                levels,
                X @ P_null[:, [j]],
                evaluate(P_null[:, [j]]),
                (g,),
            )
        )
    return [
        SmoothFunction(
            label=spec.label,
            spec=spec,
            fixed_names=[],
            fixed=np.zeros((len(data), 0)),
            parts=parts,
            evaluate_fixed=lambda new: np.zeros((len(new), 0)),
            group_levels=levels,
            penalty_count=1 + M,
        )
    ]


def _tensor_smooth(spec: SmoothSpec, data: pd.DataFrame) -> list[SmoothFunction]:
    """``t2(x, z, ...)``: mgcv's tensor product with one penalty per product of the
    margins' range and null spaces (Wood, Scheipl and Faraway 2013), each a random part
    with its own variance; the product of the null spaces is fixed, under a sum-to-zero
    constraint on those columns."""
    k = 5 if spec.k is None else spec.k
    margins = []
    for name in spec.covariates:
        basis, X = _one_d_basis(spec, _covariate(data, name, spec), spec.bs, k)
        rank = basis.k - basis.null_dim
        P = tensor_margin_parametrization(X, basis.penalty, rank)
        margins.append((name, basis, P, rank))

    def blocks_at(new: pd.DataFrame) -> tuple[list[np.ndarray], bool]:
        pieces = [
            (basis.matrix(_covariate(new, name, spec)) @ P, rank)
            for name, basis, P, rank in margins
        ]
        return t2_blocks(pieces)

    blocks, has_null = blocks_at(data)
    penalized = blocks[:-1] if has_null else blocks
    n_null = blocks[-1].shape[1] if has_null else 0
    if n_null > 1:
        # sum-to-zero on the null-space columns only (mgcv's constraint for t2)
        Z = sum_to_zero(blocks[-1])
    else:
        Z = np.zeros((n_null, 0))  # a single null column is set to zero
    fixed = blocks[-1] @ Z if has_null else np.zeros((len(data), 0))

    def part_at(j: int):
        return lambda new: blocks_at(new)[0][j]

    parts = [
        RandomPart(
            f"{spec.label}.{j}" if j else spec.label,
            np.zeros(len(data), dtype=np.int64),
            pd.Index([spec.label]),
            block,
            part_at(j),
        )
        for j, block in enumerate(penalized)
    ]

    def fixed_at(new: pd.DataFrame) -> np.ndarray:
        found, null = blocks_at(new)
        return found[-1] @ Z if null else np.zeros((len(new), 0))

    return [
        SmoothFunction(
            label=spec.label,
            spec=spec,
            fixed_names=[f"{spec.label}Fx{j + 1}" for j in range(fixed.shape[1])],
            fixed=fixed,
            parts=parts,
            evaluate_fixed=fixed_at,
            null_space_dim=fixed.shape[1],
            penalty_count=len(parts),
            centred=has_null,
        )
    ]


_BUILDERS = {
    "tp": _penalized_smooth,
    "cr": _penalized_smooth,
    "re": _random_effect_smooth,
    "fs": _factor_smooth,
}


def build_smooth(spec: SmoothSpec, data: pd.DataFrame) -> list[SmoothFunction]:
    """The smooth functions of one term for the model's rows ``data``.

    Raises
    ------
    DataError
        A covariate that is not numeric, fewer unique values than the basis dimension, a
        ``by`` that is not a factor.
    """
    with single_threaded_blas(len(data) <= SINGLE_THREAD_ROWS):
        if spec.kind == "t2":
            return _tensor_smooth(spec, data)
        return _BUILDERS[spec.bs](spec, data)
