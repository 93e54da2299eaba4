"""The linear mixed model with structured residual covariance ``sigma^2 V(phi)``.

``V = S R S`` is block diagonal by group (``S`` from a variance function, ``R`` from a
correlation structure).  For each ``phi`` the rows of ``[Z X y]`` are divided by ``s`` and
whitened by ``R``'s inverse Cholesky factor within each group; the whitened rows form an
ordinary :class:`~mixedmodels.core.lmm.LmmProblem` whose profiled objective in theta,
plus ``log|V| = 2 sum log s + log|R|``, is the REML criterion or deviance of the model
(the density of ``y`` is that of the whitened rows times the Jacobian ``|V|^-1/2``).

A random-effect term keeps its block structure under whitening when every correlation
group lies within one level of its grouping factor, which is checked.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from mixedmodels.core.dense import DenseObjective
from mixedmodels.core.lmm import (
    LOG_2PI,
    LmmProblem,
    Solution,
    response_shift,
    unscaled_vcov,
)
from mixedmodels.core.residual import (
    AR1,
    GroupLayout,
    LeadingBlockPlan,
    LinearPlan,
    ResidualCorrelation,
    residual_kernels,
)
from mixedmodels.core.residual_heads import (
    KERNEL_FAILURES,
    OUT_OF_RANGE,
    LinearHeads,
    head_pieces,
    head_solution,
    single_term_coefficients,
)
from mixedmodels.core.terms import RandomBlock
from mixedmodels.core.variance_functions import FITTED, LOG_SD_LIMIT, VarianceFunction
from mixedmodels.errors import ArgumentError

#: largest ``n (q + p + 1)^2`` for the dense plan of several terms (its one-time products
#: are formed in chunks of rows; 4e6 entries is 32 MB of cross products per plan)
DENSE_PLAN_SIZE = 4_000_000


class ResidualProblem:
    """Objective in ``(theta, u_cor, u_var)`` for a model with structured residuals.

    Parameters
    ----------
    blocks : list of RandomBlock
        Random-effect terms (original row order).
    X, y : ndarray
        Fixed-effects matrix and response minus offset (original row order).
    layout : GroupLayout
        Correlation groups and times.
    correlation : ResidualCorrelation or None
    variance : VarianceFunction or None
        Already bound to its covariates.
    values : dict
        Covariate columns of the variance function (original row order); the fitted
        values go under :data:`FITTED` (see :meth:`with_fitted`).
    reml : bool
    group_label : str
        Name of the correlation groups (for printing).
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        correlation: ResidualCorrelation | None,
        variance: VarianceFunction | None,
        values: dict[str, np.ndarray],
        reml: bool,
        group_label: str = "group",
    ):
        o = layout.order
        self.group_label = group_label
        self.layout = layout
        self.blocks = list(blocks)
        self.sorted_blocks = [
            RandomBlock(b.codes[o], b.n_levels, b.z[o], b.structure) for b in blocks
        ]
        for k, b in enumerate(self.sorted_blocks):
            _check_within(layout, b.codes, k)
        self.X = np.asarray(X, dtype=float)[o]
        self.y = np.asarray(y, dtype=float)[o]
        self.n, self.n_fixed = self.X.shape
        self.correlation = correlation
        self.variance = variance
        self.values = {k: np.asarray(v, dtype=float)[o] for k, v in values.items()}
        self.reml = reml
        self.n_theta = sum(b.n_theta for b in blocks)
        self.n_cor = correlation.n_params if correlation is not None else 0
        self.n_var = variance.n_params() if variance is not None else 0
        self._columns = [b.p for b in blocks]
        self._cache: tuple[bytes, LmmProblem, float] | None = None
        self._gram_cache: tuple[bytes, np.ndarray, float] | None = None
        self._head_cache: tuple[bytes, np.ndarray, np.ndarray, float] | None = None
        self._heads: LinearHeads | None = None
        self._row_products: tuple[np.ndarray, np.ndarray] | None = None
        self._strata_state: tuple | None | bool = False  # see _strata
        self._strata_basis: tuple[np.ndarray, np.ndarray] | None = None
        self._stratum_cache: tuple[bytes, np.ndarray, float] | None = None
        self._plan_state = False  # False: not decided yet
        self._compiled_state = False  # see _compiled (False: not decided yet)
        self._dense_state: tuple | None | bool = False  # several terms: see _dense_plan
        self._dense_cache: tuple[bytes, DenseObjective, float] | None = None
        self._sd_cache: tuple[bytes, np.ndarray, float] | None = None
        self._products: np.ndarray | None = None  # rows' cross products (variance only)
        self._rows: np.ndarray | None = None  # [z X y] of the single term
        self.n_evaluations = 0
        self._template_problem: LmmProblem | None = None  # built when first needed
        self._level_starts = _contiguous_starts(self.sorted_blocks)
        # theta entries that scale lambda (unbounded above): standard deviations and
        # unstructured factor entries, not the correlations of a structured term
        self._theta_lower = np.concatenate([b.theta_lower_bounds() for b in self.sorted_blocks])
        self._theta_upper = np.concatenate([b.theta_upper_bounds() for b in self.sorted_blocks])
        self._scaled_theta = ~np.isfinite(self._theta_upper)
        self._scaled_index = np.flatnonzero(self._scaled_theta)

    # ----------------------------------------------------------------- parameters
    @property
    def single_term(self) -> bool:
        """One random-effect term with all its levels present: the objective and the
        solution come from per-level cross products (:meth:`level_heads`)."""
        return self._level_starts is not None

    @property
    def n_params(self) -> int:
        return self.n_theta + self.n_cor + self.n_var

    def split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        params = np.asarray(params, dtype=float)
        a, b = self.n_theta, self.n_theta + self.n_cor
        return params[:a], params[a:b], params[b:]

    def lower_bounds(self) -> np.ndarray:
        return np.concatenate([self._theta_lower, np.full(self.n_cor + self.n_var, -np.inf)])

    def upper_bounds(self) -> np.ndarray:
        return np.concatenate([self._theta_upper, np.full(self.n_cor + self.n_var, np.inf)])

    def theta_lower_bounds(self) -> np.ndarray:
        return self._theta_lower.copy()

    @property
    def _template(self) -> LmmProblem:
        """The model without the residual structure (rows sorted), built on first use:
        one term's objective and solution do not need it (~0.3 ms of a small fit's set-up)."""
        if self._template_problem is None:
            self._template_problem = LmmProblem(self.sorted_blocks, self.X, self.y, None, self.reml)
        return self._template_problem

    @property
    def unstructured_problem(self) -> LmmProblem:
        """The model without the residual structure (rows sorted), e.g. for starts."""
        return self._template

    @property
    def moment_problem(self) -> LmmProblem | MomentInputs:
        """What :func:`mixedmodels.optim.start.moment_start` reads of the model without
        the residual structure: for one random-intercept-like term (``p = 1``) the
        :class:`MomentInputs` computed with :class:`LmmProblem`'s own arithmetic (the same
        start bit for bit, tested), without building the problem; otherwise
        :attr:`unstructured_problem`."""
        if len(self.sorted_blocks) == 1 and self.sorted_blocks[0].p == 1:
            return MomentInputs(self.sorted_blocks, self.X, self.y)
        return self._template

    def _objective_from_pieces(self, log_det_random: float, log_det_fixed: float, pwrss: float):
        """REML criterion or deviance of the unweighted whitened problem from ``log|L_Z|^2``,
        ``log|R_X|^2`` and PWRSS: :meth:`LmmProblem.objective_from_pieces`' arithmetic with
        no prior weights."""
        if pwrss <= 0.0:
            return -np.inf
        if self.reml:
            dof = self.n - self.n_fixed
            return (
                log_det_random
                + log_det_fixed
                + dof * (1.0 + LOG_2PI + math.log(pwrss / dof))
            )
        return log_det_random + self.n * (1.0 + LOG_2PI + math.log(pwrss / self.n))

    def with_fitted(self, fitted_sorted: np.ndarray) -> None:
        """Set the fitted values (sorted order) used as a variance covariate."""
        self.values[FITTED] = np.asarray(fitted_sorted, dtype=float)
        self._cache = None
        self._gram_cache = None
        self._head_cache = None
        self._sd_cache = None
        self._plan_state = False
        self._compiled_state = False
        self._dense_state = False
        self._dense_cache = None

    def with_response(self, y_sorted: np.ndarray, reml: bool | None = None) -> ResidualProblem:
        """The same problem with another response (sorted order) and, optionally, the
        other criterion: refits for simulation and likelihood-ratio tests."""
        new = object.__new__(ResidualProblem)
        new.__dict__.update(self.__dict__)
        new.values = dict(self.values)
        new.y = np.asarray(y_sorted, dtype=float)
        new.reml = self.reml if reml is None else bool(reml)
        new._cache = None
        new._gram_cache = None
        new._head_cache = None
        new._heads = None
        new._sd_cache = None
        new._products = None
        new._row_products = None
        new._strata_state = False
        new._strata_basis = None
        new._stratum_cache = None
        new._rows = None
        new._plan_state = False
        new._compiled_state = False
        new._dense_state = False
        new._dense_cache = None
        new.n_evaluations = 0
        new._template_problem = None
        return new

    # ----------------------------------------------------------------- whitening
    def residual_sd(self, u_var: np.ndarray) -> np.ndarray:
        """The variance function's multipliers ``s`` (sorted order); ones without one.

        The last value is kept: an evaluation asks for it twice (the optimizer's scaling
        of theta and the whitening)."""
        if self.variance is None:
            return np.ones(self.n)
        return self._sd_entry(u_var)[1]

    def _sd_entry(self, u_var: np.ndarray) -> tuple[bytes, np.ndarray, float]:
        """``(key, s, sum log s)`` at ``u_var``, the last kept (a variance function only)."""
        key = np.asarray(u_var, dtype=float).tobytes()
        kept = self._sd_cache
        if kept is not None and kept[0] == key:
            return kept
        s = np.array(self.variance.sd(u_var, self.values), dtype=float)
        # every s finite and > 0: the smallest > 0 (NaN fails) and the sum of the logs
        # finite (an infinite s makes it infinite), two reductions instead of four
        if not s.min(initial=np.inf) > 0:
            raise np.linalg.LinAlgError("variance function outside its range")
        log_sum = float(np.log(s).sum())
        if not math.isfinite(log_sum):
            raise np.linalg.LinAlgError("variance function outside its range")
        s.flags.writeable = False  # kept: nobody may change it in place
        self._sd_cache = (key, s, log_sum)
        return self._sd_cache

    def _sd_log_sum(self, u_var: np.ndarray) -> float:
        """``log|S|^2 = 2 sum log s`` (0 without a variance function)."""
        if self.variance is None:
            return 0.0
        return 2.0 * self._log_sd_sum(u_var)

    def _log_sd_sum(self, u_var: np.ndarray) -> float:
        """``sum log s`` over the rows: from the strata's multipliers and sizes when the
        variance function has strata (no row touched), else from the rows'."""
        if self._strata() is None:
            return self._sd_entry(u_var)[2]
        return self._stratum_entry(u_var)[2]

    def _stratum_entry(self, u_var: np.ndarray) -> tuple[bytes, np.ndarray, float]:
        """``(key, s, sum log s)`` with the variance function's multiplier per stratum,
        checked; the last kept (an evaluation asks twice: the optimizer's scaling of theta
        and the cross products)."""
        key = np.asarray(u_var, dtype=float).tobytes()
        kept = self._stratum_cache
        if kept is not None and kept[0] == key:
            return kept
        s = self.variance.stratum_sd(u_var)
        if not s.min(initial=np.inf) > 0:
            raise np.linalg.LinAlgError("variance function outside its range")
        log_sum = float(self._strata()[1] @ np.log(s))
        if not math.isfinite(log_sum):
            raise np.linalg.LinAlgError("variance function outside its range")
        self._stratum_cache = (key, s, log_sum)
        return self._stratum_cache

    def _strata(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(codes, sizes)`` of the variance function's strata (rows whose multiplier is
        the same whatever the parameters, :meth:`VarianceFunction.strata`), or None."""
        if self._strata_state is False:
            self._strata_state = None
            codes = self.variance.strata() if self.variance is not None else None
            if codes is not None:
                codes = np.asarray(codes, dtype=np.intp)
                self._strata_state = (codes, np.bincount(codes).astype(float))
        return self._strata_state

    def whiten(
        self, u_cor: np.ndarray, u_var: np.ndarray, M: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """``(L^-1 S^-1 M, log|V|)`` for rows ``M`` (n, k) in sorted order."""
        s = self.residual_sd(u_var)
        log_det = 2.0 * float(np.log(s).sum()) if self.variance is not None else 0.0
        M = M / s[:, None] if self.variance is not None else M
        if self.correlation is not None:
            M, log_det_r = self.correlation.whiten(u_cor, self.layout, M)
            log_det += log_det_r
        return M, log_det

    def problem_at(self, u_cor: np.ndarray, u_var: np.ndarray) -> tuple[LmmProblem, float]:
        """The whitened :class:`LmmProblem` and ``log|V|`` at the residual parameters."""
        key = np.asarray(u_cor, dtype=float).tobytes() + np.asarray(u_var, dtype=float).tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        parts = [b.z for b in self.sorted_blocks] + [self.X, self.y[:, None]]
        M, log_det = self.whiten(u_cor, u_var, np.hstack(parts))
        if not np.all(np.isfinite(M)):
            raise np.linalg.LinAlgError("whitened rows are not finite")
        k = 0
        blocks = []
        for b in self.sorted_blocks:
            z = np.ascontiguousarray(M[:, k : k + b.p])
            blocks.append(RandomBlock(b.codes, b.n_levels, z, b.structure))
            k += b.p
        X = np.asfortranarray(M[:, k : k + self.n_fixed])
        y = np.ascontiguousarray(M[:, -1])
        problem = LmmProblem(blocks, X, y, None, self.reml)
        self._cache = (key, problem, log_det)
        return problem, log_det

    def objective(self, params: np.ndarray) -> float:
        """REML criterion or deviance at ``(theta, u_cor, u_var)``.

        With one random-effect term the whitened rows are reduced to per-level cross
        products and the objective computed from them in a few batched operations
        (:func:`single_term_pieces`); otherwise through the whitened
        :class:`LmmProblem`.  The two agree to rounding (tested).
        """
        self.n_evaluations += 1
        theta, u_cor, u_var = self.split(params)
        if self._level_starts is None:
            dense = self._dense_at(u_cor, u_var)
            if dense is not None:
                objective, log_det = dense
                return self._objective_from_pieces(*objective.pieces(theta)) + log_det
            problem, log_det = self.problem_at(u_cor, u_var)
            return problem.objective(theta) + log_det
        block = self.sorted_blocks[0]
        if block.p == 1:  # lambda's one entry (lambda_matrix costs more than the rest)
            lam = block.structure.lambda_entries(theta).reshape(1, 1)
        else:
            lam = block.lambda_matrix(theta)
        compiled = self._compiled()
        if compiled is not None:
            status, ld_z, ld_x, pwrss, log_det = compiled.pieces(lam, u_cor, u_var)
            if status:
                raise np.linalg.LinAlgError(KERNEL_FAILURES[status])
            return self._objective_from_pieces(ld_z, ld_x, pwrss) + log_det
        head, xyxy, log_det = self.level_heads(u_cor, u_var)
        pieces = head_pieces(lam, head, xyxy, self.n_fixed)
        return self._objective_from_pieces(*pieces) + log_det

    def _compiled(self) -> CompiledPath | None:
        """The one-term objective by the compiled kernels
        (:mod:`mixedmodels.core.residual_kernels`), decided once per problem (and
        covariate); None without numba, with several terms, or on a path without a kernel
        (rows whitened at each evaluation by compound symmetry or ARMA beside a variance
        function with parameters, ARMA at times whose patterns are not leading), where
        :meth:`level_heads` and :func:`head_pieces` compute the same numbers in numpy."""
        if self._compiled_state is not False:
            return self._compiled_state
        self._compiled_state = None
        module = residual_kernels()
        if module is None or self._level_starts is None:
            return None
        plan = self._plan()
        heads = self._linear_heads(plan)
        p = self.sorted_blocks[0].p
        n_fixed = self.n_fixed
        if heads is not None:
            weights = heads.plan.weights
            head_basis, tail_basis = heads.head, heads.tail
            n_levels = heads.shape[0]
            variance = self.variance is not None

            def linear(u_cor, u_var):
                w, log_det = weights(u_cor)
                if variance:
                    log_det += self._sd_log_sum(u_var)
                return w, log_det

            def linear_pieces(lam, u_cor, u_var):
                w, log_det = linear(u_cor, u_var)
                kernel = module.linear_pieces
                return kernel(lam, w, head_basis, tail_basis, n_levels, n_fixed) + (log_det,)

            def linear_heads(u_cor, u_var):
                w, log_det = linear(u_cor, u_var)
                return module.linear_heads(w, head_basis, tail_basis, n_levels, p) + (log_det,)

            self._compiled_state = CompiledPath(module, linear_pieces, linear_heads)
        elif isinstance(plan, LeadingBlockPlan):
            self._compiled_state = self._compiled_leading(module, plan)
        elif plan is None and isinstance(self.correlation, AR1):
            self._compiled_state = self._compiled_bidiagonal(module)
        elif (
            plan is None
            and self.correlation is None
            and self._strata() is not None
            and (basis := self.variance.stratum_log_basis()) is not None
        ):
            self._compiled_state = self._compiled_strata_log_linear(module, basis)
        elif plan is None and self.correlation is None and self._strata() is not None:
            head_basis, tail_basis = self._strata_sums()
            n_levels = self.sorted_blocks[0].n_levels

            def strata(u_var):
                _, s, log_sum = self._stratum_entry(u_var)
                return 1.0 / (s * s), 2.0 * log_sum

            self._compiled_state = _weighted_path(
                module, strata, module.linear_pieces, module.linear_heads,
                (head_basis, tail_basis, n_levels), n_fixed, p,
            )
        elif plan is None and self.correlation is None and self._log_linear() is not None:
            self._compiled_state = self._compiled_log_linear(module)
        elif plan is None and self.correlation is None:
            head_rows, tail_rows = self._term_products()
            starts = np.ascontiguousarray(self._level_starts, dtype=np.intp)

            def weighted(u_var):
                _, s, log_sum = self._sd_entry(u_var)
                return 1.0 / (s * s), 2.0 * log_sum

            self._compiled_state = _weighted_path(
                module, weighted, module.weighted_pieces, module.weighted_heads,
                (head_rows, tail_rows, starts), n_fixed, p,
            )
        return self._compiled_state

    def _log_linear(self) -> np.ndarray | None:
        """The variance function's ``C`` with ``log s = C u`` (sorted rows, contiguous;
        :meth:`VarianceFunction.log_sd_basis`), or None."""
        if self.variance is None or self.n_var == 0:
            return None
        basis = self.variance.log_sd_basis(self.values)
        return None if basis is None else np.ascontiguousarray(basis, dtype=float)

    def _compiled_log_linear(self, module) -> CompiledPath:
        """:meth:`_compiled` for a log-linear variance function alone (``Power``, ``Exp``):
        the weights ``exp(-2 C u)``, the rows' weighted products and the objective in one
        kernel call, ``sum log s = (sum_i C_i) u`` (no multipliers formed)."""
        basis = self._log_linear()
        column_sums = basis.sum(axis=0)
        head_rows, tail_rows = self._term_products()
        starts = np.ascontiguousarray(self._level_starts, dtype=np.intp)
        p, n_fixed = self.sorted_blocks[0].p, self.n_fixed

        def log_linear_pieces(lam, u_cor, u_var):
            return module.log_linear_pieces(
                lam, basis, np.asarray(u_var, dtype=float), head_rows, tail_rows, starts,
                n_fixed,
            )

        def log_linear_heads(u_cor, u_var):
            return module.log_linear_heads(
                basis, np.asarray(u_var, dtype=float), head_rows, tail_rows, starts, p
            )

        def log_sd_sum(u_var):
            return float(column_sums @ u_var)

        return CompiledPath(module, log_linear_pieces, log_linear_heads, log_sd_sum)

    def _compiled_strata_log_linear(self, module, basis: np.ndarray) -> CompiledPath:
        """:meth:`_compiled` for a variance function alone whose strata's multipliers are
        log-linear (``Ident``: ``basis`` ``D``, :meth:`VarianceFunction.stratum_log_basis`,
        formed once): the strata's weights ``exp(-2 D u)`` inside the kernel, ``sum log s =
        (sizes' D) u``."""
        basis = np.ascontiguousarray(basis, dtype=float)
        _, sizes = self._strata()
        weighted_sums = sizes @ basis
        head_basis, tail_basis = self._strata_sums()
        n_levels = self.sorted_blocks[0].n_levels
        p, n_fixed = self.sorted_blocks[0].p, self.n_fixed

        def log_sd_sum(u_var):
            return float(weighted_sums @ u_var)

        def strata_pieces(lam, u_cor, u_var):
            u = np.asarray(u_var, dtype=float)
            out = module.strata_log_linear_pieces(
                lam, basis, u, head_basis, tail_basis, n_levels, n_fixed
            )
            return out + (2.0 * float(weighted_sums @ u),)

        def strata_heads(u_cor, u_var):
            u = np.asarray(u_var, dtype=float)
            out = module.strata_log_linear_heads(basis, u, head_basis, tail_basis, n_levels, p)
            return out + (2.0 * float(weighted_sums @ u),)

        return CompiledPath(module, strata_pieces, strata_heads, log_sd_sum)

    def _compiled_bidiagonal(self, module) -> CompiledPath:
        """:meth:`_compiled` for AR(1) or CAR(1) without a plan (beside a variance function
        with parameters, or with more distinct gaps than a plan pays for): the rows
        divided by the multipliers and whitened in one kernel pass per evaluation."""
        rows = np.ascontiguousarray(self._term_rows())
        gaps = np.ascontiguousarray(self.layout.gaps())
        first = np.ascontiguousarray(self.layout.first)
        starts = np.ascontiguousarray(self._level_starts, dtype=np.intp)
        ones = np.ones(self.n)
        p, n_fixed = self.sorted_blocks[0].p, self.n_fixed
        structure = self.correlation

        def multipliers(u_var):
            if self.variance is None:
                return ones, 0.0
            _, s, log_sum = self._sd_entry(u_var)
            return s, 2.0 * log_sum

        def bidiagonal_pieces(lam, u_cor, u_var):
            s, log_s = multipliers(u_var)
            out = module.bidiagonal_pieces(
                lam, rows, s, structure.phi(u_cor), gaps, first, starts, n_fixed
            )
            return out[:4] + (out[4] + log_s,)

        def bidiagonal_heads(u_cor, u_var):
            s, log_s = multipliers(u_var)
            status, head, sq, log_det = module.bidiagonal_heads(
                rows, s, structure.phi(u_cor), gaps, first, starts, p
            )
            return status, head, sq, log_det + log_s

        return CompiledPath(module, bidiagonal_pieces, bidiagonal_heads)

    def _compiled_leading(self, module, plan: LeadingBlockPlan) -> CompiledPath:
        """:meth:`_compiled` for a :class:`~mixedmodels.core.residual.LeadingBlockPlan`
        (ARMA, its only user): the autocorrelations and the rows' whitening by forward
        substitution inside the kernel."""
        structure = plan.structure
        _, lags = structure.leading_correlation(np.zeros(structure.n_params), plan.longest)
        lags = np.ascontiguousarray(lags, dtype=np.intp)
        max_lag = int(plan.longest[-1])
        n_ar = int(structure.p)
        # the groups' rows side by side, (longest, groups k): one forward substitution
        # over all of them (columns contiguous)
        g, longest, k = plan.padded.shape
        rows = np.ascontiguousarray(plan.padded.transpose(1, 0, 2).reshape(longest, g * k))
        sizes, group_level, n_levels = plan.sizes, plan.group_level, plan.n_levels
        p, n_fixed = self.sorted_blocks[0].p, self.n_fixed
        variance = self.variance is not None

        if np.array_equal(plan.longest, np.arange(plan.longest.size)):
            # consecutive times: the innovations algorithm, O(p + q) per row
            padded = np.ascontiguousarray(plan.padded)

            def innovations_pieces(lam, u_cor, u_var):
                status, ld_z, ld_x, pwrss, log_det = module.arma_innovations_pieces(
                    lam, np.asarray(u_cor, dtype=float), n_ar, padded, sizes, group_level,
                    n_levels, n_fixed,
                )
                if variance:
                    log_det += self._sd_log_sum(u_var)
                return status, ld_z, ld_x, pwrss, log_det

            def innovations_heads(u_cor, u_var):
                status, head, s, log_det = module.arma_innovations_heads(
                    np.asarray(u_cor, dtype=float), n_ar, padded, sizes, group_level,
                    n_levels, p,
                )
                if variance:
                    log_det += self._sd_log_sum(u_var)
                return status, head, s, log_det

            return CompiledPath(module, innovations_pieces, innovations_heads)

        def leading_pieces(lam, u_cor, u_var):
            status, ld_z, ld_x, pwrss, log_det = module.arma_pieces(
                lam, np.asarray(u_cor, dtype=float), n_ar, max_lag, lags, rows, sizes,
                group_level, n_levels, n_fixed,
            )
            if variance:
                log_det += self._sd_log_sum(u_var)
            return status, ld_z, ld_x, pwrss, log_det

        def leading_heads(u_cor, u_var):
            status, head, s, log_det = module.arma_heads(
                np.asarray(u_cor, dtype=float), n_ar, max_lag, lags, rows, sizes,
                group_level, n_levels, p,
            )
            if variance:
                log_det += self._sd_log_sum(u_var)
            return status, head, s, log_det

        return CompiledPath(module, leading_pieces, leading_heads)

    # ----------------------------------------------------------------- scaled theta
    def sd_scale(self, u_var: np.ndarray) -> float:
        """Geometric mean of the variance function's multipliers (1 without one)."""
        if self.variance is None:
            return 1.0
        return float(np.exp(self._scale_log_sum(u_var) / self.n))

    def _scale_log_sum(self, u_var: np.ndarray) -> float:
        """``sum log s`` for :meth:`sd_scale`: the compiled path's own (a log-linear
        variance function's ``(sum_i C_i) u``, whose range the objective checks) when it
        has one, else :meth:`_log_sd_sum`."""
        compiled = self._compiled()
        if compiled is not None and compiled.log_sd_sum is not None:
            return compiled.log_sd_sum(u_var)
        return self._log_sd_sum(u_var)

    def to_internal(self, params: np.ndarray) -> np.ndarray:
        """The optimizer's coordinates: theta divided by :meth:`sd_scale`.

        theta is relative to sigma, and sigma absorbs the typical size of the variance
        function's multipliers (``|fitted|^power`` near 400^0.54 on BodyWeight), so theta
        would move by factors of 20 with the power; relative to ``sigma * scale`` it stays
        put and the search is well conditioned.  A reparametrization: same optimum.
        """
        if self.variance is None:  # no multipliers: the coordinates are the parameters
            return np.array(params, dtype=float)
        out = np.array(params, dtype=float)
        out[self._scaled_index] /= self.sd_scale(out[self.n_theta + self.n_cor :])
        return out

    def from_internal(self, x: np.ndarray) -> np.ndarray:
        if self.variance is None:
            return np.array(x, dtype=float)
        out = np.array(x, dtype=float)
        out[self._scaled_index] *= self.sd_scale(out[self.n_theta + self.n_cor :])
        return out

    def internal_objective(self, x: np.ndarray) -> float:
        """:meth:`objective` in the optimizer's coordinates (:meth:`to_internal`)."""
        compiled = self._compiled()
        if compiled is not None:
            return self._compiled_internal(compiled, x)
        try:
            params = self.from_internal(x)
        except np.linalg.LinAlgError:
            return np.inf
        return self.objective(params)

    def _compiled_internal(self, compiled: CompiledPath, x: np.ndarray) -> float:
        """:meth:`internal_objective` on a compiled path, written out: the same numbers
        as :meth:`from_internal` then :meth:`objective` (bit for bit: the same operations),
        without their copies, splits and checks (a third of an evaluation's time where
        the kernel takes microseconds)."""
        nt, nc = self.n_theta, self.n_cor
        u_cor, u_var = x[nt : nt + nc], x[nt + nc :]
        if self.variance is None:
            theta = x[:nt]
        else:
            try:
                if compiled.log_sd_sum is not None:
                    mean_log = compiled.log_sd_sum(u_var) / self.n
                    if not abs(mean_log) <= LOG_SD_LIMIT:  # the kernel refuses these too
                        return np.inf
                    scale = float(np.exp(mean_log))
                else:
                    scale = float(np.exp(self._log_sd_sum(u_var) / self.n))
            except np.linalg.LinAlgError:
                return np.inf
            theta = x[:nt].copy()
            theta[self._scaled_index] *= scale
        self.n_evaluations += 1
        block = self.sorted_blocks[0]
        if block.p == 1:
            lam = block.structure.lambda_entries(theta).reshape(1, 1)
        else:
            lam = block.lambda_matrix(theta)
        status, ld_z, ld_x, pwrss, log_det = compiled.pieces(lam, u_cor, u_var)
        if status:
            if status == OUT_OF_RANGE:  # as from_internal's multipliers out of range
                return np.inf
            raise np.linalg.LinAlgError(KERNEL_FAILURES[status])
        return self._objective_from_pieces(ld_z, ld_x, pwrss) + log_det

    def _dense_plan(self):
        """For several terms (nested, as the correlation groups require) with a small
        dense objective: the whitened rows' whole cross-product matrix ``[Z X y]' V^-1
        [Z X y]`` as a function of the correlation parameters, from the structure's
        cross-product plan over the dense ``[Z X y]`` (all rows one level), beside the
        unstructured problem's :class:`DenseObjective` whose column order ``Z`` takes.
        None when a path condition fails (variance parameters, no plan, no dense
        objective, or ``n (q + p + 1)^2`` above :data:`DENSE_PLAN_SIZE`).

        An evaluation then costs a combination of a few ``(q + p + 1)^2`` matrices
        instead of whitening the rows and building a new problem (nested a/b with
        AR(1), 240 rows: 0.9 ms per evaluation, 166 evaluations, 4x nlme's time)."""
        if self._dense_state is not False:
            return self._dense_state
        self._dense_state = None
        dense = self._template.dense_objective
        if self.correlation is None or self.n_var or dense is None:
            return None
        q = dense.q
        width = q + self.n_fixed + 1
        if self.n * width * width > DENSE_PLAN_SIZE:
            return None
        Zd = np.zeros((self.n, q))
        rows = np.arange(self.n)[:, None]
        for e, b in enumerate(self._template.engine_blocks):
            cols = dense._starts[e] + b.codes[:, None] * b.p + np.arange(b.p)[None, :]
            Zd[rows, cols] = b.z
        M = np.hstack([Zd, self.X, self.y[:, None]])
        if self.variance is not None:
            M = M / self.residual_sd(np.zeros(0))[:, None]
        plan = self.correlation.cross_product_plan(self.layout, M, np.zeros(1, dtype=np.intp))
        if plan is not None:
            self._dense_state = (dense, plan, q)
        return self._dense_state

    def _dense_at(self, u_cor: np.ndarray, u_var: np.ndarray):
        """``(DenseObjective of the whitened rows, log|V|)`` by :meth:`_dense_plan`, or
        None without that path."""
        state = self._dense_plan()
        if state is None:
            return None
        key = np.asarray(u_cor, dtype=float).tobytes() + np.asarray(u_var, dtype=float).tobytes()
        if self._dense_cache is not None and self._dense_cache[0] == key:
            return self._dense_cache[1], self._dense_cache[2]
        template, plan, q = state
        grams, log_det = plan.grams(u_cor)
        if self.variance is not None:
            log_det += self._sd_log_sum(u_var)
        g = grams[0]
        if not np.all(np.isfinite(g)):
            raise np.linalg.LinAlgError("whitened rows are not finite")
        objective = object.__new__(DenseObjective)
        objective.__dict__.update(template.__dict__)
        objective.azz = np.ascontiguousarray(g[:q, :q])
        objective.zax = np.ascontiguousarray(g[:q, q:])
        objective.axx = np.ascontiguousarray(g[q:, q:])
        self._dense_cache = (key, objective, log_det)
        return objective, log_det

    def _plan(self):
        """The correlation structure's cross-product plan, built on first use, when the
        rows' scaling does not depend on parameters (no variance function, or one without
        parameters such as ``Fixed``)."""
        if self._plan_state is False:
            self._plan_state = None
            if self.correlation is not None and self.n_var == 0:
                block = self.sorted_blocks[0]
                M = np.hstack([block.z, self.X, self.y[:, None]])
                if self.variance is not None:
                    M = M / self.residual_sd(np.zeros(0))[:, None]
                self._plan_state = self.correlation.cross_product_plan(
                    self.layout, M, self._level_starts
                )
        return self._plan_state

    def level_heads(
        self, u_cor: np.ndarray, u_var: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """What the single-term objective needs of the per-level cross products ``G_l`` of
        the whitened rows ``[z X y]`` (:meth:`level_grams`): their first ``p`` rows (l, p,
        k), the sum over levels of the rest (``[X y]'[X y]``, (k - p, k - p)) and
        ``log|V|``.

        A :class:`~mixedmodels.core.residual.LinearPlan` (AR(1) with few distinct gaps,
        compound symmetry) gives both as two products of its weights with its basis,
        reduced once to those parts (:class:`LinearHeads`); a variance function alone as
        one weighted sum per level of the rows' products and one product with the rows'
        products of ``[X y]``; anything else through :meth:`level_grams`."""
        key = np.asarray(u_cor, dtype=float).tobytes() + np.asarray(u_var, dtype=float).tobytes()
        cached = self._head_cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2], cached[3]
        p = self.sorted_blocks[0].p
        plan = self._plan()
        heads = self._linear_heads(plan)
        if heads is not None:
            head, xyxy, log_det = heads.at(u_cor)
            if self.variance is not None:
                log_det += self._sd_log_sum(u_var)
        elif plan is None and self.correlation is None and self._strata() is not None:
            head, xyxy, log_det = self._strata_heads(u_var)
        elif plan is None and self.correlation is None:
            head, xyxy, log_det = self._weighted_heads(u_var)
        else:
            grams, log_det = self.level_grams(u_cor, u_var)
            head, xyxy = grams[:, :p, :], grams[:, p:, p:].sum(axis=0)
        self._head_cache = (key, head, xyxy, log_det)
        return head, xyxy, log_det

    def _linear_heads(self, plan) -> LinearHeads | None:
        """The plan's basis reduced to what :meth:`level_heads` needs (once per plan)."""
        if not isinstance(plan, LinearPlan):
            return None
        if self._heads is None or self._heads.plan is not plan:
            self._heads = LinearHeads(plan, self.sorted_blocks[0].p)
        return self._heads

    def _strata_heads(self, u_var: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`level_heads` for a variance function alone whose multipliers are constant
        within strata (``varIdent``): the rows' products summed once per (stratum, level)
        and per stratum, an evaluation weights the strata by ``1 / s^2`` (two
        matrix-vector products, nothing per row)."""
        _, s, log_sum = self._stratum_entry(u_var)
        head_basis, tail_basis = self._strata_sums()
        w = 1.0 / (s * s)
        n, width = self._term_rows().shape
        p = self.sorted_blocks[0].p
        head = (w @ head_basis).reshape(-1, p, width)
        xyxy = (w @ tail_basis).reshape(width - p, width - p)
        return head, xyxy, 2.0 * log_sum

    def _strata_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows' products (:meth:`_term_products`) summed per (stratum, level), (k, l p
        k), and per stratum, (k, (k - p)^2): formed once."""
        if self._strata_basis is None:
            codes, sizes = self._strata()
            head, tail = self._term_products()
            n_levels = self.sorted_blocks[0].n_levels
            # the rows' levels: the term's codes, runs 0, 1, ... in sorted order wherever
            # there are level starts (:func:`_contiguous_starts`)
            level = self.sorted_blocks[0].codes
            k = sizes.size
            per_cell = _cell_sums(codes * n_levels + level, k * n_levels, head)
            self._strata_basis = (per_cell.reshape(k, -1), _cell_sums(codes, k, tail))
        return self._strata_basis

    def _term_products(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's products of its first ``p`` columns with all (n, p k) and of its
        ``[X y]`` (n, (k - p)^2), formed once."""
        if self._row_products is None:
            M = self._term_rows()
            p = self.sorted_blocks[0].p
            n, k = M.shape
            head = (M[:, :p, None] * M[:, None, :]).reshape(n, p * k)
            tail = (M[:, p:, None] * M[:, None, p:]).reshape(n, (k - p) * (k - p))
            self._row_products = (head, tail)
        return self._row_products

    def _weighted_heads(self, u_var: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`level_heads` for a variance function alone: row ``i``'s cross products
        ``m_i m_i'`` weighted by ``1 / s_i^2``.  The products of the first ``p`` columns
        with all (n, p k) and of ``[X y]`` (n, (k - p)^2) are formed once."""
        s = self.residual_sd(u_var)
        log_det = self._sd_log_sum(u_var)
        w = 1.0 / (s * s)
        if not np.isfinite(w).all():
            raise np.linalg.LinAlgError("whitened rows are not finite")
        head, tail = self._term_products()
        n, k = self._term_rows().shape
        p = head.shape[1] // k
        sums = np.add.reduceat(w[:, None] * head, self._level_starts, axis=0)
        xyxy = (w @ tail).reshape(k - p, k - p)
        if not (np.isfinite(sums).all() and np.isfinite(xyxy).all()):
            raise np.linalg.LinAlgError("whitened rows are not finite")
        return sums.reshape(-1, p, k), xyxy, log_det

    def level_grams(self, u_cor: np.ndarray, u_var: np.ndarray) -> tuple[np.ndarray, float]:
        """Per level of the single random-effect term, the cross products of the whitened
        rows ``[z X y]`` (l, k, k), and ``log|V|``."""
        key = np.asarray(u_cor, dtype=float).tobytes() + np.asarray(u_var, dtype=float).tobytes()
        cached = self._gram_cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        block = self.sorted_blocks[0]
        plan = self._plan()
        if plan is not None:
            grams, log_det = plan.grams(u_cor)
            log_det += self._sd_log_sum(u_var)
            self._gram_cache = (key, grams, log_det)
            return grams, log_det
        k = block.p + self.n_fixed + 1
        iu, ju = _upper_indices(k)
        if self.correlation is None:
            # a variance function alone scales each row's cross products by 1 / s^2: the
            # products are formed once, an evaluation weights and sums them
            s = self.residual_sd(u_var)
            log_det = 2.0 * float(np.log(s).sum())
            w = 1.0 / (s * s)
            if not np.isfinite(w).all():
                raise np.linalg.LinAlgError("whitened rows are not finite")
            if self._products is None:
                M = self._term_rows()
                self._products = M[:, iu] * M[:, ju]
            sums = np.add.reduceat(w[:, None] * self._products, self._level_starts, axis=0)
            if not np.isfinite(sums).all():
                raise np.linalg.LinAlgError("whitened rows are not finite")
        else:
            M, log_det = self.whiten(u_cor, u_var, self._term_rows())
            if not np.all(np.isfinite(M)):
                raise np.linalg.LinAlgError("whitened rows are not finite")
            sums = np.add.reduceat(M[:, iu] * M[:, ju], self._level_starts, axis=0)
        grams = np.empty((sums.shape[0], k, k))
        grams[:, iu, ju] = sums
        grams[:, ju, iu] = sums
        self._gram_cache = (key, grams, log_det)
        return grams, log_det

    def _term_rows(self) -> np.ndarray:
        """``[z X y]`` of the single random-effect term (sorted order), formed once: the
        rows every evaluation whitens (the response may change, see
        :meth:`with_response`, which starts a new problem)."""
        if self._rows is None:
            block = self.sorted_blocks[0]
            self._rows = np.hstack([block.z, self.X, self.y[:, None]])
            self._rows.flags.writeable = False
        return self._rows

    def fitted_at(self, params: np.ndarray) -> np.ndarray:
        """Conditional fitted values ``X beta + Z b`` (sorted order) at ``(theta, u_cor,
        u_var)``.

        With one random-effect term, from the per-level cross products that an evaluation
        forms anyway (a few batched operations); otherwise through the whitened
        :class:`LmmProblem`'s solution.  The same numbers to rounding (tested): the
        fitted-value variance covariate needs them once per fixed-point step, where
        building the whitened problem cost more than a dozen evaluations."""
        theta, u_cor, u_var = self.split(params)
        if self._level_starts is None:
            problem, _ = self.problem_at(u_cor, u_var)
            solution = problem.solve(theta)
            return self.X @ solution.beta + self.random_contribution(solution.b)
        block = self.sorted_blocks[0]
        lam = block.lambda_matrix(theta)
        compiled = self._compiled()
        if compiled is not None:
            *_, beta, u, _ = compiled.solve(lam, u_cor, u_var, self.n_fixed)
            return self.X @ beta + self.random_contribution([u @ lam.T])
        grams, _ = self.level_grams(u_cor, u_var)
        beta, b = single_term_coefficients(lam, grams, self.n_fixed)
        return self.X @ beta + self.random_contribution([b])

    def whitening_log_det(self, u_cor: np.ndarray, u_var: np.ndarray) -> float:
        """``log|V|`` at the residual parameters (as the objective adds it)."""
        if self._level_starts is None:
            dense = self._dense_at(u_cor, u_var)
            return dense[1] if dense is not None else self.problem_at(u_cor, u_var)[1]
        compiled = self._compiled()
        if compiled is not None:
            # as the objective adds it (the kernel's sum, bit for bit): log|V| does not
            # depend on lambda, any will do
            status, *_, log_det = compiled.heads(u_cor, u_var)
            if status in (4, OUT_OF_RANGE):  # log|V| itself not formed
                raise np.linalg.LinAlgError(KERNEL_FAILURES[status])
            return log_det
        return self.level_heads(u_cor, u_var)[2]

    def solution_at(self, params: np.ndarray) -> Solution:
        """The whitened problem's :class:`~mixedmodels.core.lmm.Solution` at ``(theta,
        u_cor, u_var)`` (its objective without ``log|V|``).

        With one random-effect term, from the cross products an evaluation forms
        (:meth:`level_heads`, :func:`head_solution`), with the objective's own arithmetic:
        the solution's objective is the optimizer's value at ``params`` bit for bit, and
        beta, the modes and ``(R_X'R_X)^-1`` those of the whitened
        :class:`LmmProblem` to rounding (tested); no whitened problem is built.  Otherwise
        through :meth:`problem_at`."""
        theta, u_cor, u_var = self.split(params)
        if self._level_starts is None:
            problem, _ = self.problem_at(u_cor, u_var)
            return problem.solve(theta)
        lam = self.sorted_blocks[0].lambda_matrix(theta)
        nf = self.n_fixed
        compiled = self._compiled()
        if compiled is not None:
            # the kernels' solution: its pieces are the objective's bit for bit
            ld_z, ld_x, pwrss, vcov, beta, u, _ = compiled.solve(lam, u_cor, u_var, nf)
        else:
            head, xyxy, _ = self.level_heads(u_cor, u_var)
            ld_z, r, beta, u = head_solution(lam, head, xyxy, nf)
            pwrss = float(r[-1, -1] ** 2)
            ld_x = 2.0 * float(np.log(r.diagonal()[:nf]).sum())
            vcov = unscaled_vcov(r[:nf, :nf])
        return Solution(
            theta=np.asarray(theta, dtype=float),
            objective=self._objective_from_pieces(ld_z, ld_x, pwrss),
            beta=beta,
            sigma=math.sqrt(pwrss / (self.n - nf if self.reml else self.n)),
            vcov_unscaled=vcov,
            u=[u],
            b=[u @ lam.T],
            pwrss=pwrss,
            log_det_random=ld_z,
        )

    # ----------------------------------------------------------------- back to rows
    def random_contribution(self, b: list[np.ndarray]) -> np.ndarray:
        """``Z b`` in sorted order from per-level effects (unwhitened ``Z``)."""
        out = np.zeros(self.n)
        for blk, bk in zip(self.sorted_blocks, b, strict=True):
            if blk.p == 1:  # one product a row: einsum's value, without its set-up
                out += blk.z[:, 0] * bk[blk.codes, 0]
            else:
                out += np.einsum("np,np->n", blk.z, bk[blk.codes])
        return out

    def unsort(self, values_sorted: np.ndarray) -> np.ndarray:
        """Values in the original row order."""
        out = np.empty_like(values_sorted)
        out[self.layout.order] = values_sorted
        return out


class CompiledPath:
    """The one-term objective and solution by the compiled kernels
    (:mod:`mixedmodels.core.residual_kernels`) on one of
    :meth:`ResidualProblem._compiled`'s paths.

    Parameters
    ----------
    module : module
        The kernels.
    pieces : callable
        ``(lam, u_cor, u_var) -> (status, log|L_Z|^2, log|R_X|^2, PWRSS, log|V|)`` in one
        kernel call (an evaluation).
    heads : callable
        ``(u_cor, u_var) -> (status, head (l, p, k), s (m, m), log|V|)``: the heads and the
        lower triangle of ``[X y]' V^-1 [X y]`` by the same kernel code as ``pieces``.
    log_sd_sum : callable, optional
        ``u_var -> sum log s`` where the path forms it without the multipliers (a
        log-linear variance function); the optimizer's scaling of theta then uses it.
    """

    __slots__ = ("module", "pieces", "heads", "log_sd_sum")

    def __init__(self, module, pieces, heads, log_sd_sum=None):
        self.module = module
        self.pieces = pieces
        self.heads = heads
        self.log_sd_sum = log_sd_sum

    def solve(self, lam: np.ndarray, u_cor: np.ndarray, u_var: np.ndarray, n_fixed: int):
        """``(log|L_Z|^2, log|R_X|^2, PWRSS, (R_X'R_X)^-1, beta, u, log|V|)``: the pieces
        (those of :attr:`pieces` bit for bit), the unscaled covariance of the fixed effects
        (``R`` the lower Cholesky factor of the ``[X y]`` Schur complement), the fixed
        effects and the modes (l, p) (:func:`head_solution`'s).

        Raises
        ------
        numpy.linalg.LinAlgError
            Where :attr:`pieces` has a failing status."""
        status, head, s, log_det = self.heads(u_cor, u_var)
        if status:
            raise np.linalg.LinAlgError(KERNEL_FAILURES[status])
        beta = np.empty(n_fixed)
        u = np.empty(head.shape[:2])
        vcov = np.empty((n_fixed, n_fixed))
        status, ld_z, ld_x, pwrss = self.module.solution(lam, head, s, n_fixed, beta, u, vcov)
        if status:
            raise np.linalg.LinAlgError(KERNEL_FAILURES[status])
        return ld_z, ld_x, pwrss, vcov, beta, u, log_det


@lru_cache(maxsize=64)
def _upper_indices(width: int) -> tuple[np.ndarray, np.ndarray]:
    """The upper triangle's indices of a ``width x width`` matrix, computed once per width
    (numpy's ``triu_indices`` costs more than a small evaluation)."""
    iu, ju = np.triu_indices(width)
    iu.flags.writeable = False
    ju.flags.writeable = False
    return iu, ju


def _weighted_path(module, weights, pieces_kernel, heads_kernel, data: tuple, n_fixed: int,
                   p: int) -> CompiledPath:
    """A :class:`CompiledPath` whose rows carry weights ``w`` (``weights(u_var) -> (w,
    log|V|)``): the kernels take ``(lam, w, *data, n_fixed)`` and ``(w, *data, p)`` (per
    stratum and level sums, or per row products with the levels' starts)."""
    a, b, c = data

    def pieces(lam, u_cor, u_var):
        w, log_det = weights(u_var)
        return pieces_kernel(lam, w, a, b, c, n_fixed) + (log_det,)

    def heads(u_cor, u_var):
        w, log_det = weights(u_var)
        return heads_kernel(w, a, b, c, p) + (log_det,)

    return CompiledPath(module, pieces, heads)


def _cell_sums(cell: np.ndarray, n_cells: int, values: np.ndarray) -> np.ndarray:
    """``values`` (n, m) summed over the rows of each cell (n_cells, m): the rows sorted
    by cell once (stable), one ``reduceat``."""
    order = np.argsort(cell, kind="stable")
    sorted_cells = cell[order]
    out = np.zeros((n_cells, values.shape[1]))
    if sorted_cells.size:
        new = np.empty(sorted_cells.size, dtype=bool)  # a cell's first row (no np.r_)
        new[0] = True
        np.not_equal(sorted_cells[1:], sorted_cells[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        out[sorted_cells[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out


def _contiguous_starts(blocks: list[RandomBlock]) -> np.ndarray | None:
    """Start of each level in sorted order when there is one term whose levels are all
    present and contiguous (the per-level path); None otherwise."""
    if len(blocks) != 1:
        return None
    codes = blocks[0].codes
    change = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], change])
    if starts.size != blocks[0].n_levels or np.any(codes[starts] != np.arange(starts.size)):
        return None
    return starts


def _check_within(layout: GroupLayout, codes: np.ndarray, k: int) -> None:
    """Every correlation group must lie within one level of the term's grouping factor."""
    first_code = codes[layout.starts]
    per_row = np.repeat(first_code, layout.sizes)
    if np.any(per_row != codes):
        raise ArgumentError(
            f"the correlation groups must be nested in the grouping factor of random-effect "
            f"term {k + 1}: a group of the correlation structure spans several of its levels "
            "(give the correlation structure group= the innermost grouping factor)"
        )


class FixedGram:
    """``[X y]'[X y]`` alone (:attr:`xy_xy`, ``(p + 1, p + 1)``), as in a :class:`Gram`."""

    __slots__ = ("xy_xy",)

    def __init__(self, xy_xy: np.ndarray):
        self.xy_xy = xy_xy


class MomentInputs:
    """What :func:`mixedmodels.optim.start.moment_start` reads of an unweighted
    :class:`LmmProblem` with one term of one column, computed with the problem's own
    arithmetic (its ``build_gram`` and ``_shift_response``): ``X``, ``y``, the shifted
    response ``y_work = y - X beta0`` with ``beta0 = (X'X)^-1 X'y``, ``[X y_work]'[X
    y_work]`` and the terms' theta layout.  The random-effect cross products (a vector
    term's start) are not formed: :attr:`ResidualProblem.moment_problem` gives the
    problem itself for those.
    """

    weights = None

    def __init__(self, blocks: list[RandomBlock], X: np.ndarray, y: np.ndarray):
        self.blocks = list(blocks)
        self.X = np.asarray(X, dtype=float)
        self.y = np.ascontiguousarray(y, dtype=float)
        sizes = np.array([b.n_theta for b in self.blocks], dtype=int)
        self.theta_offsets = np.concatenate([[0], np.cumsum(sizes)])
        X, y = self.X, self.y
        p = X.shape[1]
        xy_xy = np.empty((p + 1, p + 1))
        xy_xy[:p, :p] = X.T @ X
        xy_xy[:p, p] = xy_xy[p, :p] = X.T @ y
        xy_xy[p, p] = y @ y
        shift = response_shift(xy_xy[:p, :p], xy_xy[:p, p]) if p else np.zeros(0)
        self.y_work = y - X @ shift if p else y
        cross = np.append(X.T @ self.y_work, self.y_work @ self.y_work)
        xy_xy[-1, :] = cross
        xy_xy[:, -1] = cross
        self.gram = FixedGram(xy_xy)

    @property
    def n_theta(self) -> int:
        return int(self.theta_offsets[-1])

    def theta_start(self) -> np.ndarray:
        return np.concatenate([b.theta_start() for b in self.blocks])
