"""The linear mixed model as a function of theta: blocked Cholesky and profiled objective.

Model: ``y = X beta + Z b + e`` with ``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)`` and
``e ~ N(0, sigma^2 W^-1)``.  For a given theta the blocked Cholesky factor

.. math::

    L L' = \\begin{bmatrix} \\Lambda' Z'WZ \\Lambda + I & \\Lambda' Z'W[X y] \\\\
            [X y]'WZ\\Lambda & [X y]'W[X y] \\end{bmatrix}

gives the profiled objective from its diagonal alone: with ``r_yy`` the last diagonal
element (``PWRSS = r_yy^2``), ``L_Z`` the random-effects part and ``R_X`` the fixed part,

.. math::

    -2 \\log L = \\log|L_Z|^2 + n (1 + \\log(2 \\pi \\, PWRSS / n)) - \\sum \\log w_i

    -2 \\log L_R = \\log|L_Z|^2 + \\log|R_X|^2
                   + (n - p)(1 + \\log(2 \\pi \\, PWRSS / (n - p))) - \\sum \\log w_i
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mixedmodels.core.crossed import CrossedObjective, choose_order
from mixedmodels.core.crossed_gradient import lambda_gradient
from mixedmodels.core.dense import (
    MAX_DENSE_RANDOM_EFFECTS,
    DenseObjective,
    pieces_from_fixed_factor,
    schur_factor,
)
from mixedmodels.core.fill import FillPlan, make_fill_plan
from mixedmodels.core.gram import (
    Gram,
    GramPlan,
    build_gram,
    grouped_cross_products,
    is_nested,
)
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg import blocks as bl
from mixedmodels.linalg.batched import (
    congruence,
    right_multiply,
    right_multiply_component_major,
    solve_right_lower_transposed_component_major,
)
from mixedmodels.linalg.threads import single_threaded_blas

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class Factor:
    """The blocked Cholesky factor for one theta (engine block order)."""

    diagonal: list[bl.DiagonalFactor]
    off_diagonal: dict[tuple[int, int], bl.Matrix]
    xy_random: list[np.ndarray]
    xy_xy: np.ndarray
    lambdas: list[np.ndarray]

    def log_det_random(self) -> float:
        """``log |L_Z|^2``."""
        return 2.0 * sum(f.log_det() for f in self.diagonal)

    def log_det_fixed(self, n_fixed: int) -> float:
        """``log |R_X|^2``."""
        return 2.0 * float(np.log(np.diagonal(self.xy_xy)[:n_fixed]).sum())

    def pwrss(self) -> float:
        """Penalized weighted residual sum of squares, ``r_yy^2``."""
        return float(self.xy_xy[-1, -1] ** 2)


@dataclass(frozen=True)
class Solution:
    """Everything computed once at the optimum (public block order)."""

    theta: np.ndarray
    objective: float
    beta: np.ndarray
    sigma: float
    vcov_unscaled: np.ndarray  # (R_X' R_X)^-1
    u: list[np.ndarray]  # per block, (l, p)
    b: list[np.ndarray]  # per block, (l, p) = lambda u per level
    pwrss: float
    log_det_random: float = math.nan  # log |L_Z|^2


class LmmProblem:
    """A linear mixed model ready for evaluation at any theta.

    Parameters
    ----------
    blocks : list of RandomBlock
        Random-effect terms in the public (lme4) order; theta follows this order.
    X : ndarray (n, p)
        Fixed-effects model matrix of full column rank.
    y : ndarray (n,)
        Response (offset already subtracted by :meth:`from_arrays`).
    weights : ndarray (n,), optional
        Prior weights.
    reml : bool
        REML criterion instead of the deviance.
    reweightable : bool
        Build the structure of the cross products once (a
        :class:`~mixedmodels.core.gram.GramPlan`) so that :meth:`reweight` takes new
        weights and a new response without redoing any symbolic work (a GLMM's scoring
        steps).
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        X: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None = None,
        reml: bool = True,
        reweightable: bool = False,
    ):
        self.X = np.asarray(X, dtype=float)  # column-major from the design: contiguous columns
        self.y = np.ascontiguousarray(y, dtype=float)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.reml = reml
        self.n, self.n_fixed = self.X.shape
        self._set_terms(blocks)
        self.dense = [
            any(not is_nested(self.engine_blocks[m], self.engine_blocks[k]) for m in range(k))
            for k in range(len(self.engine_blocks))
        ]
        self.reweightable = reweightable
        self._plan = GramPlan(self.engine_blocks, self.X) if reweightable else None
        if reweightable:
            self.gram = None
            self._refill(self.y)
        else:
            self.gram: Gram = build_gram(self.engine_blocks, self.X, self.y, self.weights)
            self.beta_shift = np.zeros(self.n_fixed)
            self._shift_response(self.y)
        self._log_weights: float | None = None  # sum log w, computed when first needed
        self._fill_plans: dict[int, FillPlan] | None = None  # built on first factorize
        q = sum(b.size for b in self.engine_blocks)
        self.dense_objective = DenseObjective(self) if q <= MAX_DENSE_RANDOM_EFFECTS else None
        self._xy_component_major: np.ndarray | None = None
        self._crossed: CrossedObjective | None | bool = False  # False: not decided yet
        self.n_evaluations = 0


    def blas_context(self) -> AbstractContextManager:
        """One BLAS thread for evaluations of a small (dense-path) problem, the fit's and its
        inference's alike: with two OpenBLAS threads on 2 loaded cores, hand-offs on its
        small matrices cost far more than the arithmetic (sleepstudy ``(Days | Subject)``:
        the Satterthwaite df 0.60 s CPU against 0.006 s with one thread, profile intervals
        4.8 s against 0.53 s)."""
        return single_threaded_blas(self.dense_objective is not None)
    def _set_terms(self, blocks: list[RandomBlock]) -> None:
        """The terms, their engine order and the theta and lambda-entry layouts."""
        self.blocks = list(blocks)
        # engine order: largest q = l * p first (fill-in depends on it); stable for ties
        self.order = sorted(range(len(blocks)), key=lambda k: -blocks[k].size)
        self.engine_blocks = [self.blocks[i] for i in self.order]
        sizes = np.array([b.n_theta for b in self.blocks], dtype=int)
        self.theta_offsets = np.concatenate([[0], np.cumsum(sizes)])
        entries = np.array([b.p * (b.p + 1) // 2 for b in self.blocks], dtype=int)
        self.entry_offsets = np.concatenate([[0], np.cumsum(entries)])

    # ----------------------------------------------------------------- parameters
    @property
    def log_weights(self) -> float:
        """``sum log w_i`` (0 for unit weights; -inf when a weight is 0)."""
        if self._log_weights is None:
            self._log_weights = _log_weights(self.weights)
        return self._log_weights

    @log_weights.setter
    def log_weights(self, value: float) -> None:
        self._log_weights = float(value)

    @property
    def n_theta(self) -> int:
        return int(self.theta_offsets[-1])

    def theta_lower_bounds(self) -> np.ndarray:
        return np.concatenate([b.theta_lower_bounds() for b in self.blocks])

    def theta_upper_bounds(self) -> np.ndarray:
        return np.concatenate([b.theta_upper_bounds() for b in self.blocks])

    def theta_start(self) -> np.ndarray:
        return np.concatenate([b.theta_start() for b in self.blocks])

    def lambda_entries(self, theta: np.ndarray) -> np.ndarray:
        """The lower triangles of every ``lambda_k`` (column by column, public order), laid
        out by :attr:`entry_offsets`: the engine's parametrization, which the terms'
        covariance structures map theta into (the identity for unstructured terms)."""
        if len(self.blocks) == 1:  # one term (the objective's common case): nothing to join
            entries = self.blocks[0].structure.lambda_entries(theta[: self.theta_offsets[1]])
            return np.array(entries, dtype=float)
        return np.concatenate(
            [
                b.structure.lambda_entries(self.theta_slice(theta, i))
                for i, b in enumerate(self.blocks)
            ]
        )

    def theta_slice(self, theta: np.ndarray, public_index: int) -> np.ndarray:
        lo, hi = self.theta_offsets[public_index], self.theta_offsets[public_index + 1]
        return theta[lo:hi]

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """``lambda_k`` for each block in public order."""
        return [b.lambda_matrix(self.theta_slice(theta, i)) for i, b in enumerate(self.blocks)]

    # ----------------------------------------------------------------- the factor
    @property
    def fill_plans(self) -> dict[int, FillPlan]:
        """Precomputed fill maps of dense scalar blocks from a scalar first block (the
        blocked engine's; built on first use, since the crossed path does not need them)."""
        if self._fill_plans is None:
            self._fill_plans = {}
            first = self.engine_blocks[0] if self.engine_blocks else None
            for k in range(1, len(self.engine_blocks)):
                blk = self.engine_blocks[k]
                if self.dense[k] and first.p == 1 and blk.p == 1 and blk.n_levels >= 64:
                    plan = make_fill_plan(self.gram.off_diagonal[k, 0])
                    if plan is not None:
                        self._fill_plans[k] = plan
        return self._fill_plans

    def factorize(self, theta: np.ndarray) -> Factor:
        """Blocked Cholesky of ``Lambda' Z'WZ Lambda + I`` bordered by ``[X y]``.

        Raises
        ------
        NotPositiveDefiniteError
            When round-off at an extreme theta breaks a block.
        """
        theta = np.asarray(theta, dtype=float)
        public_lams = self.lambdas(theta)
        lams = [public_lams[i] for i in self.order]
        g = self.gram
        n_blocks = len(lams)
        diag: list[bl.DiagonalFactor] = []
        off: dict[tuple[int, int], bl.Matrix] = {}
        xy_rand: list[np.ndarray] = []
        for k in range(n_blocks):
            blk = self.engine_blocks[k]
            d = congruence(lams[k], g.diagonal[k])
            for i in range(blk.p):
                d[i, i] += 1.0
            if self.dense[k]:
                dd = bl.block_diagonal_to_dense(d)
                for m in range(k):
                    if m == 0 and k in self.fill_plans:
                        scale = (lams[k][0, 0] * lams[0][0, 0]) ** 2
                        w = scale / diag[0].blocks[0, 0] ** 2
                        dd -= self.fill_plans[k].lower_product(w)
                        continue
                    prod = bl.product_transposed(off[k, m], off[k, m])
                    dd -= prod.toarray() if sp.issparse(prod) else prod
                factor = bl.factor_diagonal(dd, dense=True)
            else:
                for m in range(k):
                    prod = bl.product_transposed(off[k, m], off[k, m])
                    d -= bl.diagonal_blocks_of(prod, blk.n_levels, blk.p)
                factor = bl.factor_diagonal(d, dense=False)
            diag.append(factor)
            for j in range(k + 1, n_blocks):
                t = self._scaled_off_diagonal(j, k, lams)
                for m in range(k):
                    t = bl.subtract(t, bl.product_transposed(off[j, m], off[k, m]))
                off[j, k] = bl.solve_right_transposed(t, factor)
            m_rows = g.xy_random[k].shape[0]
            t = right_multiply(
                g.xy_random[k].reshape(m_rows, blk.n_levels, blk.p), lams[k]
            ).reshape(m_rows, blk.size)
            for m in range(k):
                t = t - bl.product_transposed(xy_rand[m], off[k, m])
            xy_rand.append(bl.solve_right_transposed(t, factor))
        s = g.xy_xy.copy()
        for k in range(n_blocks):
            s -= xy_rand[k] @ xy_rand[k].T
        low, info = sla.lapack.dpotrf(s, lower=1, clean=1)
        if info < 0 or (info > 0 and info < s.shape[0]):
            raise bl.NotPositiveDefiniteError
        if info == s.shape[0]:  # exact fit: r_yy = 0
            low[-1, -1] = 0.0
        return Factor(diag, off, xy_rand, low, lams)

    def _scaled_off_diagonal(self, j: int, k: int, lams: list[np.ndarray]) -> sp.csr_matrix:
        a = self.gram.off_diagonal[j, k]
        bj, bk = self.engine_blocks[j], self.engine_blocks[k]
        if bj.p == 1 and bk.p == 1:
            return (a * (lams[j][0, 0] * lams[k][0, 0])).tocsr()  # a block may be CSC
        left = bl.block_diagonal_sparse(
            np.broadcast_to(lams[j].T[:, :, None], (bj.p, bj.p, bj.n_levels))
        )
        right = bl.block_diagonal_sparse(
            np.broadcast_to(lams[k][:, :, None], (bk.p, bk.p, bk.n_levels))
        )
        return (left @ a @ right).tocsr()

    # ----------------------------------------------------------------- objective
    def objective_from_pieces(
        self, log_det_random: float, log_det_fixed: float, pwrss: float
    ) -> float:
        """REML criterion or deviance from ``log|L_Z|^2``, ``log|R_X|^2`` and PWRSS."""
        if pwrss <= 0.0:
            return -np.inf
        ld = log_det_random - self.log_weights
        if self.reml:
            dof = self.n - self.n_fixed
            return ld + log_det_fixed + dof * (1.0 + LOG_2PI + math.log(pwrss / dof))
        return ld + self.n * (1.0 + LOG_2PI + math.log(pwrss / self.n))

    def objective_from_factor(self, factor: Factor) -> float:
        """REML criterion or deviance from the factor's diagonal."""
        return self.objective_from_pieces(
            factor.log_det_random(), factor.log_det_fixed(self.n_fixed), factor.pwrss()
        )

    def objective(self, theta: np.ndarray) -> float:
        """The profiled objective at ``theta`` (lme4's devFunOnly).

        Small models (``q <= 240`` random effects) use the dense path of
        :mod:`mixedmodels.core.dense`; the value is the same to rounding.
        """
        self.n_evaluations += 1
        if self.dense_objective is not None:  # self.pieces' dense branch, without the hop
            return self.objective_from_pieces(
                *self.dense_objective.pieces(np.asarray(theta, dtype=float))
            )
        return self.objective_from_pieces(*self.pieces(theta))

    def has_entry_gradient(self) -> bool:
        """True when :meth:`entry_gradient` is analytic for this problem (the crossed
        path)."""
        return (
            self.dense_objective is None
            and len(self.engine_blocks) > 1
            and self.crossed_objective() is not None
        )

    def entry_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray] | None:
        """The objective at ``theta`` and its gradient in the relative factors' entries
        (laid out as :meth:`lambda_entries`), analytic on the crossed path
        (:mod:`mixedmodels.core.crossed_gradient`: about the cost of two evaluations);
        None on the other paths (the dense path has its own derivatives,
        :mod:`mixedmodels.optim.profiled_derivatives`).  Counts as one evaluation."""
        if not self.has_entry_gradient():
            return None
        self.n_evaluations += 1
        found = lambda_gradient(self.crossed_objective(), theta, self.reml, self.n)
        f = found.factor
        value = self.objective_from_pieces(
            f.log_det_random, f.log_det_fixed(self.n_fixed), f.pwrss
        )
        gradient = np.zeros(int(self.entry_offsets[-1]))
        for k, public in enumerate(self.order):
            lo, hi = self.entry_offsets[public], self.entry_offsets[public + 1]
            gradient[lo:hi] = found.entries(k)
        return value, gradient

    def pieces(self, theta: np.ndarray) -> tuple[float, float, float]:
        """``(log |L_Z|^2, log |R_X|^2, PWRSS)`` at ``theta`` by the model's path."""
        theta = np.asarray(theta, dtype=float)
        if self.dense_objective is not None:
            return self.dense_objective.pieces(theta)
        return pieces_from_fixed_factor(*self.fixed_factor(theta), self.n_fixed)

    def fixed_factor(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``log |L_Z|^2`` and the lower Cholesky factor ``R`` of the ``[X y]`` Schur
        complement at ``theta``, by the model's path (dense, one term, crossed or blocked):
        the objective's pieces, and ``(R_X R_X')^-1`` (:func:`fixed_covariance`), come from
        it."""
        theta = np.asarray(theta, dtype=float)
        if self.dense_objective is not None:
            return self.dense_objective.factor_pieces(theta)
        if len(self.engine_blocks) == 1:
            return self._single_block_factor(theta)
        crossed = self.crossed_objective()
        if crossed is not None:
            factor = crossed.factor(theta)
            return factor.log_det_random, factor.xy_xy
        factor = self.factorize(theta)
        return factor.log_det_random(), factor.xy_xy

    def crossed_objective(self) -> CrossedObjective | None:
        """The crossed path (:mod:`mixedmodels.core.crossed`) for a model with several
        grouping factors, built on first use (its symbolic structure is computed once);
        None for small models (the dense path), one grouping factor, or a structure the
        blocked engine handles better."""
        if self._crossed is False:
            self._crossed = None
            order = None
            if self.dense_objective is None and len(self.engine_blocks) > 1:
                order = choose_order(self.engine_blocks)
            if order is not None:
                crossed = CrossedObjective(
                    self.engine_blocks,
                    self.order,
                    self.theta_offsets,
                    self.gram,
                    self.weights,
                    self.n_fixed,
                    order,
                    reweightable=self.reweightable,
                )
                if crossed.fill is not None:
                    self._crossed = crossed
        return self._crossed

    def describe_structure(self) -> str:
        """Debug view: which path evaluates the objective, the elimination order and, for
        crossed designs, the fill structure and kernel."""
        sizes = ", ".join(
            f"term {pub}: {b.n_levels} x {b.p}"
            for pub, b in zip(self.order, self.engine_blocks, strict=True)
        )
        lines = [f"random-effect terms in engine order (largest l*p first): {sizes}"]
        if self.dense_objective is not None:
            q = self.dense_objective.q
            lines.append(f"path: dense (q = {q} <= {MAX_DENSE_RANDOM_EFFECTS})")
        elif len(self.engine_blocks) == 1:
            lines.append("path: one term (batched per-level factors)")
        elif self.crossed_objective() is not None:
            lines.append("path: crossed (eliminate one factor, dense rest)")
            lines.append(str(self._crossed.summary))
        else:
            lines.append("path: blocked Cholesky")
        return "\n".join(lines)

    def _single_block_factor(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``log|L_Z|^2`` and the ``[X y]`` factor for one random-effect term, with the
        ``[X y]`` rows held component-major ``(m, p, l)`` so every vector operation runs
        over contiguous levels (the general factorization keeps them level-major for the
        off-diagonal products that one term does not have)."""
        blk = self.engine_blocks[0]
        g = self.gram
        m = g.xy_xy.shape[0]
        if self._xy_component_major is None:
            level_major = g.xy_random[0].reshape(m, blk.n_levels, blk.p)
            self._xy_component_major = np.ascontiguousarray(level_major.transpose(0, 2, 1))
        lam = self.lambdas(theta)[0]
        d = congruence(lam, g.diagonal[0])
        for i in range(blk.p):
            d[i, i] += 1.0
        low = bl.factor_diagonal(d, dense=False)
        t = right_multiply_component_major(self._xy_component_major, lam)
        x = solve_right_lower_transposed_component_major(t, low.blocks).reshape(m, blk.size)
        s = g.xy_xy - x @ x.T
        return 2.0 * low.log_det(), schur_factor(s)

    # ----------------------------------------------------------------- solution
    def solve(
        self,
        theta: np.ndarray,
        beta: np.ndarray | None = None,
        objective: bool = True,
        covariance: bool = True,
    ) -> Solution:
        """beta, u, b, sigma and (R_X'R_X)^-1 at ``theta``.

        Through the path the objective takes (dense, crossed, or the blocked factor; the
        same factor by other sums).  With ``beta`` given, ``u`` and ``b`` are the
        conditional modes at that ``beta`` (which is returned as given).  With
        ``objective=False`` the solution's objective is NaN (not computed: a GLMM's
        scoring step needs the modes and ``log |L_Z|^2`` only, not ``sum log w``).  With
        ``covariance=False`` its ``vcov_unscaled`` is NaN (not computed: nor do the scoring
        steps need ``(R_X' R_X)^-1``).
        """
        theta = np.asarray(theta, dtype=float)
        beta_rel = None if beta is None else np.asarray(beta, dtype=float) - self.beta_shift
        if self.dense_objective is not None:
            with single_threaded_blas():  # q <= 240: hand-offs to a second thread cost more
                return self._solve_dense(theta, beta_rel, objective, covariance)
        if len(self.engine_blocks) > 1 and self.crossed_objective() is not None:
            return self._solve_crossed(theta, beta_rel, objective, covariance)
        return self._solve_blocked(theta, beta_rel, objective, covariance)

    def _solve_blocked(
        self,
        theta: np.ndarray,
        beta_rel: np.ndarray | None,
        objective: bool = True,
        covariance: bool = True,
    ) -> Solution:
        factor = self.factorize(theta)
        p = self.n_fixed
        lxx = factor.xy_xy[:p, :p]
        ly = factor.xy_xy[-1, :p]
        if beta_rel is None:
            beta_rel = sla.solve_triangular(lxx, ly, lower=True, trans=1) if p else np.zeros(0)
        n_blocks = len(self.engine_blocks)
        u: list[np.ndarray | None] = [None] * n_blocks
        for k in reversed(range(n_blocks)):
            rhs = factor.xy_random[k][-1, :] - factor.xy_random[k][:p, :].T @ beta_rel
            for j in range(k + 1, n_blocks):
                rhs = rhs - bl.matmul_transposed_left(factor.off_diagonal[j, k], u[j])
            u[k] = bl.solve_lower_transposed(factor.diagonal[k], rhs[:, None])[:, 0]
        pwrss = factor.pwrss()
        sigma = math.sqrt(pwrss / (self.n - p if self.reml else self.n))
        vcov_unscaled = unscaled_vcov(lxx) if covariance else _not_computed(p)
        u_public: list[np.ndarray] = [np.empty(0)] * n_blocks
        b_public: list[np.ndarray] = [np.empty(0)] * n_blocks
        for e, pub in enumerate(self.order):
            blk = self.engine_blocks[e]
            uk = u[e].reshape(blk.n_levels, blk.p)
            u_public[pub] = uk
            b_public[pub] = uk @ factor.lambdas[e].T
        return Solution(
            theta=theta,
            objective=self.objective_from_factor(factor) if objective else math.nan,
            beta=beta_rel + self.beta_shift,
            sigma=sigma,
            vcov_unscaled=vcov_unscaled,
            u=u_public,
            b=b_public,
            pwrss=pwrss,
            log_det_random=factor.log_det_random(),
        )

    def _solve_dense(
        self,
        theta: np.ndarray,
        beta_rel: np.ndarray | None,
        objective: bool = True,
        covariance: bool = True,
    ) -> Solution:
        ld_z, r, pwrss, beta_rel, u = self.dense_objective.solve(theta, beta_rel)
        p = self.n_fixed
        sigma = math.sqrt(pwrss / (self.n - p if self.reml else self.n))
        vcov_unscaled = unscaled_vcov(r[:p, :p]) if covariance else _not_computed(p)
        n_blocks = len(self.engine_blocks)
        u_public: list[np.ndarray] = [np.empty(0)] * n_blocks
        b_public: list[np.ndarray] = [np.empty(0)] * n_blocks
        lams = self.lambdas(theta)
        start = 0
        for e, pub in enumerate(self.order):
            blk = self.engine_blocks[e]
            uk = u[start : start + blk.size].reshape(blk.n_levels, blk.p)
            start += blk.size
            u_public[pub] = uk
            b_public[pub] = uk @ lams[pub].T
        ld_x = 2.0 * float(np.log(np.diagonal(r)[:p]).sum())
        return Solution(
            theta=theta,
            objective=self.objective_from_pieces(ld_z, ld_x, pwrss) if objective else math.nan,
            beta=beta_rel + self.beta_shift,
            sigma=sigma,
            vcov_unscaled=vcov_unscaled,
            u=u_public,
            b=b_public,
            pwrss=pwrss,
            log_det_random=ld_z,
        )

    def _solve_crossed(
        self,
        theta: np.ndarray,
        beta_rel: np.ndarray | None = None,
        objective: bool = True,
        covariance: bool = True,
    ) -> Solution:
        crossed = self._crossed
        sol = crossed.solve(theta, beta_rel)
        f = sol.factor
        p = self.n_fixed
        pwrss = f.pwrss
        sigma = math.sqrt(pwrss / (self.n - p if self.reml else self.n))
        vcov_unscaled = unscaled_vcov(f.xy_xy[:p, :p]) if covariance else _not_computed(p)
        n_blocks = len(self.engine_blocks)
        u_public: list[np.ndarray] = [np.empty(0)] * n_blocks
        b_public: list[np.ndarray] = [np.empty(0)] * n_blocks
        lams = self.lambdas(theta)
        for e, uk in crossed.split_effects(sol.u_first, sol.u_rest):
            pub = self.order[e]
            u_public[pub] = np.ascontiguousarray(uk)
            b_public[pub] = uk @ lams[pub].T
        value = (
            self.objective_from_pieces(f.log_det_random, f.log_det_fixed(p), pwrss)
            if objective
            else math.nan
        )
        return Solution(
            theta=theta,
            objective=value,
            beta=sol.beta + self.beta_shift,
            sigma=sigma,
            vcov_unscaled=vcov_unscaled,
            u=u_public,
            b=b_public,
            pwrss=pwrss,
            log_det_random=f.log_det_random,
        )

    def conditional_covariances(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Per level, ``Var(b | y)`` blocks: ``sigma^2 Lambda (L_Z L_Z')^-1 Lambda'``.

        Returns a list (public order) of arrays (l, p, p).  Computed column block by column
        block of ``L_Z^-1``.
        """
        factor = self.factorize(theta)
        n_blocks = len(self.engine_blocks)
        out: list[np.ndarray] = [np.empty(0)] * n_blocks
        for k in range(n_blocks):
            blk = self.engine_blocks[k]
            # column block k of inv(L_Z): rows in blocks k..K-1
            cols = {k: bl.solve_lower(factor.diagonal[k], np.eye(blk.size))}
            for j in range(k + 1, n_blocks):
                acc = np.zeros((self.engine_blocks[j].size, blk.size))
                for m in range(k, j):
                    acc += bl.matmul(factor.off_diagonal[j, m], cols[m])
                cols[j] = -bl.solve_lower(factor.diagonal[j], acc)
            # diagonal p x p blocks of M' M restricted to this block's columns
            covs = np.zeros((blk.n_levels, blk.p, blk.p))
            for mat in cols.values():
                r = mat.reshape(mat.shape[0], blk.n_levels, blk.p)
                covs += np.einsum("rla,rlb->lab", r, r)
            lam = factor.lambdas[k]
            out[self.order[k]] = sigma**2 * (lam @ covs @ lam.T)
        return out

    # ----------------------------------------------------------------- new weights
    def reweight(self, weights: np.ndarray, y: np.ndarray) -> None:
        """New weights and a new response, in place (a GLMM's scoring step).

        The cross products are refilled through the stored
        :class:`~mixedmodels.core.gram.GramPlan` (bincounts and BLAS products into fixed
        patterns) and the evaluation paths' numeric parts through positions found once:
        the dense ``Z'WZ``, the crossed path's blocks, panels and fill kernel.  Nothing
        symbolic is redone except the blocked engine's fill plans (rebuilt on first use).
        The objective, :meth:`solve` and everything else are then those of
        ``LmmProblem(blocks, X, y, weights, reml)`` to rounding.

        Raises
        ------
        ValueError
            When the problem was not built with ``reweightable=True``.
        """
        if self._plan is None:
            raise ValueError("reweight needs a problem built with reweightable=True")
        self.weights = np.asarray(weights, dtype=float)
        self.y = np.ascontiguousarray(y, dtype=float)
        self._log_weights = None
        self._refill(self.y)
        self._xy_component_major = None
        self._fill_plans = None
        if self.dense_objective is not None:
            self.dense_objective.refresh(self.gram)
        if self._crossed:
            self._crossed.refresh(self.gram, self.weights)

    def _refill(self, y: np.ndarray) -> None:
        """The Gram for the current weights and response ``y`` through the plan, with the
        response shifted by its weighted least-squares fit first (as
        :meth:`_shift_response` does for a problem built from the rows)."""
        w = self.weights
        p = self.n_fixed
        shift = np.zeros(p)
        if p:
            wx = self.X if w is None else self.X * w[:, None]
            _, shift, info = sla.lapack.dposv(self.X.T @ wx, wx.T @ y, lower=1)
            if info != 0 or not np.all(np.isfinite(shift)):
                shift = np.zeros(p)
        self.y_work = y - self.X @ shift if p else y
        self.beta_shift = shift
        self.gram = self._plan.gram(w, self.y_work, out=self.gram)

    # ----------------------------------------------------------------- new response
    def _shift_response(self, y: np.ndarray) -> None:
        """Work with ``y - X beta0`` (beta0 the least-squares fit) in place of ``y``.

        The profiled objective and ``u`` do not change (beta absorbs the shift; ``beta`` is
        reported as ``beta' + beta0``), but the response's cross products are then computed
        from a residual-sized vector: with a response far from zero (heights near 150) the
        bordered Cholesky would otherwise subtract numbers of order ``n y^2`` to get PWRSS,
        leaving noise of 5e-11 relative in the objective, enough to spoil numerical
        derivatives (Satterthwaite df).  Only y's cross products are recomputed.
        """
        y = np.ascontiguousarray(y, dtype=float)
        w = self.weights
        p = self.n_fixed
        shift = np.zeros(p)
        if p:
            wy = y if w is None else y * w
            shift = response_shift(self.gram.xy_xy[:p, :p], self.X.T @ wy)
        self.y = y
        self.y_work = y - self.X @ shift if p else y
        self.beta_shift = shift
        g = self.gram
        xy_random = []
        for blk, block_xy in zip(self.engine_blocks, g.xy_random, strict=True):
            row = grouped_cross_products(blk.codes, blk.n_levels, self.y_work[:, None], blk.z, w)
            updated = block_xy.copy()
            updated[-1, :] = row[0].T.reshape(blk.size)
            xy_random.append(updated)
        wy = self.y_work if w is None else self.y_work * w
        xy_xy = g.xy_xy.copy()
        cross = np.append(self.X.T @ wy, self.y_work @ wy)
        xy_xy[-1, :] = cross
        xy_xy[:, -1] = cross
        self.gram = replace(g, xy_random=xy_random, xy_xy=xy_xy)
        self._xy_component_major = None

    def with_response(self, y: np.ndarray) -> LmmProblem:
        """The same model structure with a new response (only y's cross products redone)."""
        new = object.__new__(LmmProblem)
        new.__dict__.update(self.__dict__)
        new._plan = None  # shares numeric parts with this problem: not reweightable
        new.reweightable = False
        new.n_evaluations = 0
        new._shift_response(y)
        if self.dense_objective is not None:
            new.dense_objective = self.dense_objective.with_response(new.gram)
        if self._crossed:
            new._crossed = self._crossed.with_response(new.gram, new.n_fixed)
        return new

    def with_fixed_value(self, j: int, value: float) -> LmmProblem:
        """The model with ``beta_j`` held at ``value``: column ``j`` of X moved into an
        offset (``y - value x_j``) and dropped.  Built from the stored cross products,
        without touching the rows (used to profile a fixed effect)."""
        keep = [i for i in range(self.n_fixed) if i != j]
        rows = keep + [self.n_fixed]  # rows of the [X y] blocks to keep (y last)
        new = object.__new__(LmmProblem)
        new.__dict__.update(self.__dict__)
        new._plan = None  # shares numeric parts with this problem: not reweightable
        new.reweightable = False
        # the stored response is y - X beta0; holding beta_j at value leaves
        # (value - beta0_j) x_j to move into the offset
        new.X = self.X[:, keep]
        new.y = self.y - value * self.X[:, j]
        value = value - self.beta_shift[j]
        new.y_work = self.y_work - value * self.X[:, j]
        new.beta_shift = self.beta_shift[keep]
        new.n_fixed = len(keep)
        new.n_evaluations = 0
        g = self.gram
        xy_random = []
        for block_xy in g.xy_random:
            updated = block_xy[rows].copy()
            updated[-1] -= value * block_xy[j]
            xy_random.append(updated)
        a = g.xy_xy
        xx = a[np.ix_(keep, keep)]
        xy = a[keep, -1] - value * a[keep, j]
        yy = a[-1, -1] - 2 * value * a[j, -1] + value**2 * a[j, j]
        xy_xy = np.empty((len(keep) + 1, len(keep) + 1))
        xy_xy[:-1, :-1] = xx
        xy_xy[:-1, -1] = xy_xy[-1, :-1] = xy
        xy_xy[-1, -1] = yy
        new.gram = replace(g, xy_random=xy_random, xy_xy=xy_xy)
        new._xy_component_major = None
        if self.dense_objective is not None:
            new.dense_objective = self.dense_objective.with_response(new.gram)
            new.dense_objective.n_fixed = new.n_fixed
        if self._crossed:
            new._crossed = self._crossed.with_response(new.gram, new.n_fixed)
        return new

    # ----------------------------------------------------------------- fitted
    def random_contribution(self, b: list[np.ndarray]) -> np.ndarray:
        """``Z b`` (n,) from per-block conditional modes (public order)."""
        out = np.zeros(self.n)
        for blk, bk in zip(self.blocks, b, strict=True):
            out += np.einsum("np,np->n", blk.z, bk[blk.codes])
        return out


def _log_weights(weights: np.ndarray | None) -> float:
    """``sum log w_i`` (0 for unit weights; -inf when a weight is 0)."""
    if weights is None:
        return 0.0
    with np.errstate(divide="ignore"):
        return float(np.log(weights).sum())


def _not_computed(p: int) -> np.ndarray:
    """A NaN ``(p, p)`` in place of a covariance that was not asked for."""
    return np.full((p, p), np.nan)


def response_shift(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    """The least-squares coefficients ``(X'WX)^-1 X'Wy`` by which the response is shifted
    (:meth:`LmmProblem._shift_response`), or zeros where they cannot be had (a singular or
    non-finite ``X'WX``, a non-finite solution): the shift only conditions the sums.

    Solved as ``scipy.linalg.solve(xtx, xty, assume_a="pos")`` does it (one column: a
    division; more: LAPACK's ``potrf`` and ``potrs`` on the upper triangle), the same
    numbers bit for bit (tested), without its argument handling (~20 us, a sixth of a
    small structured-residual fit's start) and its warning for an ill-conditioned
    ``X'WX`` (the shift only conditions the sums: zeros would do).
    """
    p = xty.shape[0]
    xtx = np.asarray(xtx, dtype=float)
    xty = np.asarray(xty, dtype=float)
    if p == 0:
        return np.zeros(0)
    if p == 1:
        a = xtx[0, 0]
        if a == 0.0:
            return np.zeros(1)
        with np.errstate(all="ignore"):
            shift = xty / a
    else:
        factor, info = sla.lapack.dpotrf(xtx, lower=0, clean=0)
        if info != 0:  # not positive definite (or a NaN on the diagonal)
            return np.zeros(p)
        shift, info = sla.lapack.dpotrs(factor, xty, lower=0)
        if info != 0:
            return np.zeros(p)
    return shift if np.all(np.isfinite(shift)) else np.zeros(p)


def unscaled_vcov(lxx: np.ndarray) -> np.ndarray:
    """``(R_X' R_X)^-1`` from the lower triangle ``R_X`` (p x p), with one BLAS thread (a
    small triangular inverse handed to a second thread took milliseconds on the shared
    machine)."""
    p = lxx.shape[0]
    if not p:
        return np.zeros((0, 0))
    with single_threaded_blas():
        rinv, info = sla.lapack.dtrtri(lxx, lower=1)
        if info != 0:
            raise bl.NotPositiveDefiniteError
        rinv = np.tril(rinv)  # dtrtri leaves the upper triangle as it found it
        return rinv.T @ rinv
