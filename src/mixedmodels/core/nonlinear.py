"""The numeric core of a nonlinear mixed model (one grouping factor).

Model: ``y_j = f(phi_j) + e_j``, ``phi_jk = F_k[j] beta_k + b_{g(j), k}`` for the parameters
``k`` with random effects, ``b_i = Lambda u_i``, ``u_i ~ N(0, sigma^2 I)``,
``e_j ~ N(0, sigma^2 / s_j^2)`` with row weights ``s_j = 1 / sd_j(delta)`` from a variance
function (:mod:`mixedmodels.core.variance_functions`: ``Power``, ``Exp``, ``Ident``, ``Fixed``,
``Combined``, of a data column or of the fitted values ``v``), 1 without one.

Linearized at ``(beta, b)`` (Lindstrom and Bates), with ``X = df/dbeta`` and ``Z = df/db``,
the model is a linear mixed model for the working response ``w = y - f + X beta + Z b``;
everything here works on that model's per-group cross-products (a group's ``Z'Z`` is
``q x q`` with ``q`` the number of random parameters), so one evaluation costs
``O(m q^3 + p^3)`` once the cross-products are formed.

At nlme's sizes (tens of groups, a few hundred rows) numpy's per-call cost, not the
arithmetic, bounds these evaluations; when numba loads, the cross-products
(:func:`gram`), the penalized least squares (:func:`pls`) and the ML gradients run as
compiled loops over the groups (:mod:`mixedmodels.core.nonlinear_kernels`: the same
formulas, equal to rounding; :data:`USE_KERNELS` switches them off).  A model given as a
register program (:class:`~mixedmodels.linalg.row_program.RowModel`, the design's models)
is linearized by kernels around numpy's elementary functions (:meth:`NonlinearProblem.
linearize`: the same operations as the numpy code, so the same bits), and a Gauss-Newton
step's cross-products and least squares are one call (:func:`gauss_newton_solution`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

import numpy as np
from scipy import sparse
from scipy.linalg.lapack import dpotrf, dpotrs

from mixedmodels.core.variance_functions import FITTED, VarianceFunction
from mixedmodels.linalg.optional_kernels import OptionalKernels
from mixedmodels.linalg.row_program import RowModel, run_stages

#: Largest ``rows x groups`` for which the group indicator is a dense matrix.
DENSE_INDICATOR = 1_000_000

ModelCall = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

_all_true = np.logical_and.reduce


def fixed_layout(
    fixed_matrices: list[np.ndarray], function_index: list[int], n_model_parameters: int,
    n: int,
) -> tuple[list[slice], np.ndarray, np.ndarray, np.ndarray]:
    """Where each model parameter's fixed effects sit: their slices of ``beta``, all fixed
    designs side by side (phi's fixed part is then one product, ``X = df/dbeta`` one
    elementwise product), the model parameter of each column, and the 0/1 matrix that
    sends columns to parameters."""
    slices = []
    start = 0
    for m in fixed_matrices:
        slices.append(slice(start, start + m.shape[1]))
        start += m.shape[1]
    columns = np.hstack(fixed_matrices) if fixed_matrices else np.zeros((n, 0))
    column_parameter = np.array(
        [function_index[k] for k, m in enumerate(fixed_matrices) for _ in range(m.shape[1])],
        dtype=np.intp,
    )
    selector = np.zeros((columns.shape[1], n_model_parameters))
    selector[np.arange(column_parameter.size), column_parameter] = 1.0
    return slices, columns, column_parameter, selector


class RelativeFactorLayout:
    """theta's layout in a relative covariance factor of ``q`` random effects: the
    diagonal (``diagonal``) or the lower triangle in lme4's column-wise order.  For a class
    with ``q`` and ``diagonal``: the one-level problem and each level of a nested one."""

    q: int
    diagonal: bool

    @property
    def n_theta(self) -> int:
        q = self.q
        return q if self.diagonal else q * (q + 1) // 2

    def theta_lower(self) -> np.ndarray:
        """Lower bounds of theta: 0 on the diagonal of the relative factor."""
        key = (self.q, self.diagonal)
        found = _LOWER.get(key)
        if found is None:
            q = self.q
            found = _LOWER[key] = (np.zeros(q) if self.diagonal else np.array(
                [0.0 if i == j else -np.inf for j in range(q) for i in range(j, q)]))
        return found.copy()  # (the callers' own array)

    def lambda_of(self, theta: np.ndarray) -> np.ndarray:
        """Relative covariance factor (lower triangular, lme4's column-wise theta)."""
        q = self.q
        lam = np.zeros(q * q)
        # (theta into its flat positions: a fifth of np.diag's cost, called at every
        # evaluation of the covariance step)
        lam[_theta_positions(q, self.diagonal)] = theta
        return lam.reshape(q, q)

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        q = self.q
        if self.diagonal:
            return np.diag(lam).copy()
        return np.array([lam[i, j] for j in range(q) for i in range(j, q)])


_POSITIONS: dict[tuple[int, bool], np.ndarray] = {}
_LOWER: dict[tuple[int, bool], np.ndarray] = {}


def _theta_positions(q: int, diagonal: bool) -> np.ndarray:
    """The flat positions in a ``q x q`` relative factor of theta's entries (the diagonal,
    or the lower triangle column by column)."""
    found = _POSITIONS.get((q, diagonal))
    if found is None:
        pairs = ([(i, i) for i in range(q)] if diagonal
                 else [(i, j) for j in range(q) for i in range(j, q)])
        found = _POSITIONS[(q, diagonal)] = np.array([i * q + j for i, j in pairs],
                                                     dtype=np.intp)
    return found


@dataclass
class NonlinearProblem(RelativeFactorLayout):
    """Numeric data of a nonlinear mixed model.

    Attributes
    ----------
    y : ndarray (n,)
    model : callable
        ``phi (n, P) -> (f (n,), gradient (n, P))``.
    n_model_parameters : int
        ``P``.
    fixed_matrices : list of ndarray
        One ``(n, p_k)`` design per fixed-effects formula.
    function_index : list of int
        The model parameter (column of ``phi``) each fixed design belongs to.
    random_index : list of int
        The model parameters with a random effect, in the order of ``b``'s columns.
    groups : ndarray (n,) of int
        Group code of each row, ``0..m-1``.
    n_groups : int
    diagonal : bool
        Independent random effects (``pdDiag``).
    reml : bool
    variance : RowVariance or None
        The variance function bound to the rows (see :class:`RowVariance`).
    values : callable, optional
        ``phi -> f``: the model's values alone (the same values as ``model``'s, without
        the gradient), for the objective's evaluations.
    random_affine : bool
        The model is affine in the parameters with random effects (``SSlogis`` with a
        random ``Asym``): then each group's ``||s_i (y_i - f_i)||^2 + ||u_i||^2`` is a
        strictly convex quadratic in ``u_i`` with one minimum (False: not known).
    """

    y: np.ndarray
    model: ModelCall
    n_model_parameters: int
    fixed_matrices: list[np.ndarray]
    function_index: list[int]
    random_index: list[int]
    groups: np.ndarray
    n_groups: int
    diagonal: bool = False
    reml: bool = False
    variance: RowVariance | None = None
    values: Callable[[np.ndarray], np.ndarray] | None = None
    random_affine: bool = False

    def __post_init__(self) -> None:
        n = self.y.size
        # (the group indicator, :attr:`indicator`, is built at its first use: only numpy's
        # paths ask for it)
        (self.slices, self.fixed_columns, self.column_parameter,
         self.selector) = fixed_layout(
            self.fixed_matrices, self.function_index, self.n_model_parameters, n
        )
        self._random_index = np.asarray(self.random_index, dtype=np.intp)
        # every parameter an intercept (Orange, Theoph, ...): phi's fixed part is beta on
        # every row and X = df/dbeta is the model's gradient itself (the columns as a list
        # and one reduction: 2 us where np.array_equal and np.all took 6)
        n_parameters = self.n_model_parameters
        self._intercepts = bool(
            self.column_parameter.size == n_parameters
            and self.column_parameter.tolist() == list(range(n_parameters))
            and _all_true(self.fixed_columns == 1.0, axis=None)
        )
        # a register program (the design's model): the whole linearization in one kernel
        # call when numba loads (:func:`mixedmodels.core.nonlinear_kernels.linearize_rows`)
        program = self.model.program if isinstance(self.model, RowModel) else None
        if not (program is not None and self.model.gradient and program.n == n
                and program.outputs.size == self.n_model_parameters + 1):
            program = None
        self._program = program
        self._groups64 = np.array(self.groups, dtype=np.int64)  # (writable: one signature)
        self._column_parameter64 = self.column_parameter.astype(np.int64)
        self._random_index64 = self._random_index.astype(np.int64)
        self._fixed_c = np.ascontiguousarray(self.fixed_columns, dtype=float)
        self._scratch: tuple | None = None  # work arrays of gauss_newton_solution
        # the response as the kernels take it (writable: a read-only array, as pandas
        # can give, would have them compiled a second time)
        self._y_kernel = np.array(self.y, dtype=float)

    @cached_property
    def indicator(self) -> np.ndarray | sparse.csr_matrix:
        """The groups' indicator ``E`` (m, n), ``E_ij = 1`` where row ``j`` is in group
        ``i`` (sums rows into groups: ``E @ v``): dense for small problems (faster, and
        built without the sparse set-up, 0.5 ms of a 4 ms fit), sparse above
        :data:`DENSE_INDICATOR` entries.  Built at the first use and kept (the compiled
        kernels do not use it: 3-5 us of a fit's set-up saved)."""
        n = self.y.size
        if n * self.n_groups <= DENSE_INDICATOR:
            indicator = np.zeros((self.n_groups, n))
            indicator[self.groups, np.arange(n)] = 1.0
            return indicator
        return sparse.csr_matrix(
            (np.ones(n), (self.groups, np.arange(n))), shape=(self.n_groups, n)
        )

    @property
    def n(self) -> int:
        return self.y.size

    @property
    def n_variance(self) -> int:
        """Number of the variance function's free parameters (0 without one)."""
        return 0 if self.variance is None else self.variance.n_params

    @property
    def power_variance(self) -> bool:
        """Whether the rows have a variance function (the name of the boolean this
        replaced; kept for callers that only ask whether there is one)."""
        return self.variance is not None

    def row_weights(self, fitted: np.ndarray, delta: np.ndarray | None) -> np.ndarray | None:
        """Row weights ``s_j`` at the fitted values and the variance parameters (None
        without a variance function)."""
        if self.variance is None:
            return None
        return self.variance.at(fitted).weights(delta)

    @property
    def p(self) -> int:
        return sum(m.shape[1] for m in self.fixed_matrices)

    @property
    def q(self) -> int:
        return len(self.random_index)

    # --------------------------------------------------------------- the model
    def phi(self, beta: np.ndarray, b: np.ndarray, _bg: np.ndarray | None = None
            ) -> np.ndarray:
        """Parameter rows ``(n, P)`` at fixed effects ``beta`` and random effects ``b``
        ``(m, q)``."""
        if self._intercepts:
            phi = np.empty((self.y.size, beta.size))
            phi[:] = beta
        else:
            phi = self.fixed_columns @ (beta[:, None] * self.selector)
        if self._random_index.size:
            phi[:, self._random_index] += b[self.groups] if _bg is None else _bg
        return phi

    #: The compiled linearization's work (:meth:`_linearize_work`: the registers and the
    #: ufunc stages bound to them), set at its first call.
    _work = None
    #: :func:`gauss_newton_step`'s work arrays, set at its first call.
    _step_work = None

    def linearize(self, beta: np.ndarray, b: np.ndarray, quiet: bool = False
                  ) -> Linearization:
        """The model's values and derivatives at ``(beta, b)``.  ``quiet``: the caller
        already ignores numpy's floating-point errors (``np.errstate(all="ignore")``, as
        the fits do), so the model's elementary functions need not set that again."""
        if self._program is not None:
            module = pls_kernels()
            if module is not None:
                return self._kernel_linearize(module, beta, b, quiet)
        bg = b[self.groups]
        f, g = self.model(self.phi(beta, b, bg))
        x = g if self._intercepts else g[:, self.column_parameter] * self.fixed_columns
        z = g[:, self._random_index]
        zb = (z * bg).sum(axis=1)
        r = self.y - f
        return Linearization(f=f, x=x, z=z, w=r + x @ beta + zb, r=r)

    def _linearize_work(self, module: ModuleType) -> tuple:
        """The registers of the compiled linearization, kept for the problem's life (the
        program writes every register it reads before reading it, except the constants,
        which it never writes: each register is one node of the expression), the ufunc
        stages bound to them, the kernels, the rest of :meth:`_kernel_linearize`'s fixed
        arguments and its work array ``Z b`` (read in the call that writes it)."""
        work = self._work
        if work is None:
            prog = self._program
            regs = prog.init.copy()
            n = self.y.size
            work = self._work = (
                regs, prog.bind(regs, module.row_program_kernels.execute),
                prog.input_registers, prog.input_columns, prog.first_ops, prog.last_ops,
                prog.outputs, module.linearize_start, module.linearize_finish,
                module.working_response, self._groups64, self._random_index64,
                self._fixed_c, self._column_parameter64, self._y_kernel, n,
                (n, self.column_parameter.size), (n, self._random_index.size), np.empty(n),
            )
        return work

    def _kernel_linearize(self, module: ModuleType, beta: np.ndarray, b: np.ndarray,
                          quiet: bool = False) -> Linearization:
        """:meth:`linearize` by the kernels around the program's ufunc stages (the same
        operations as the numpy code, in the same order: the same bits)."""
        (regs, calls, inputs, columns, first, last, outputs, start, finish, respond, groups,
         random_index, fixed_c, column_parameter, y, n, shape_x, shape_z, zb) = (
            self._work or self._linearize_work(module))
        if not (beta.dtype == np.float64 and beta.flags.c_contiguous):
            beta = np.ascontiguousarray(beta, dtype=float)
        if not (b.dtype == np.float64 and b.flags.c_contiguous):
            b = np.ascontiguousarray(b, dtype=float)
        # phi's fixed part: beta itself, or numpy's product as in phi() (the same bits)
        fixed_part = _NO_ROWS if self._intercepts else (
            self.fixed_columns @ (beta[:, None] * self.selector))
        start(regs, inputs, columns, first, beta, fixed_part, b, groups, random_index)
        if calls:
            if quiet:
                run_stages(calls)
            else:
                with np.errstate(all="ignore"):  # (as the numpy model's call)
                    run_stages(calls)
        f, w, r = np.empty(n), np.empty(n), np.empty(n)
        x, z = np.empty(shape_x), np.empty(shape_z)
        finish(regs, last, outputs, b, groups, fixed_c, column_parameter, random_index, f, x,
               z, zb)
        respond(y, f, x @ beta, zb, w, r)
        return Linearization(f=f, x=x, z=z, w=w, r=r)

    def fitted(self, beta: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The model's values at ``(beta, b)`` (by ``values`` when given: no gradient)."""
        phi = self.phi(beta, b)
        if self.values is not None:
            return self.values(phi)
        return self.model(phi)[0]


@dataclass
class Linearization:
    """``f``, ``X = df/dbeta``, ``Z = df/db`` and the working response at a point; ``r``
    the residual ``y - f`` where the linearization computed it (the working response's
    first term: the same values)."""

    f: np.ndarray
    x: np.ndarray
    z: np.ndarray
    w: np.ndarray
    r: np.ndarray | None = None


class RowVariance:
    """Adapter from a :class:`~mixedmodels.core.variance_functions.VarianceFunction` (whose
    rows are in nlme's order, sorted by group, and whose multipliers are standard
    deviations) to the nonlinear problem (rows in the data's order, weights ``1 / sd``).

    Binds the function once (``Ident`` records its strata, the reference level being the
    first met in the rows sorted by group, as nlme's); :meth:`at` fixes the fitted values
    of a fitted-value covariate.

    Parameters
    ----------
    function : VarianceFunction
        Not yet bound (it is bound here; pass a copy of a user's object).
    values : dict
        The function's data columns in the problem's row order (numeric columns as float
        arrays, a stratum as labels).
    groups : ndarray of int
        The problem's group codes (nlme's row order sorts them, stably).
    """

    def __init__(self, function: VarianceFunction, values: dict[str, np.ndarray],
                 groups: np.ndarray):
        order = np.argsort(groups, kind="stable")
        function.bind(values, order)
        self.function = function
        self.n_params = function.n_params()
        self.uses_fitted = function.uses_fitted
        self._order = order
        self._inverse = np.empty_like(order)
        self._inverse[order] = np.arange(order.size)
        self._sorted = not np.any(np.diff(order) < 0)
        self._values = {
            k: np.asarray(v, dtype=float)[order] for k, v in values.items()
            if np.asarray(v).dtype.kind in "fiu"
        }
        self.log_linear = False
        self.log_linear = self._check_log_linear()

    def _check_log_linear(self) -> bool:
        """Whether ``log sd`` is linear in the parameters (its derivatives the same at two
        points, on the data's covariates and stand-in fitted values in [1, 2])."""
        if self.n_params == 0:
            return True
        at = self.at(np.linspace(1.0, 2.0, self._order.size))
        u = self.start()
        try:
            first = at.jacobian(u)
            second = VarianceAt(self, at.values).jacobian(u + 0.37)
        except np.linalg.LinAlgError:
            return False
        scale = max(float(np.max(np.abs(first), initial=0.0)), 1.0)
        return bool(np.max(np.abs(first - second), initial=0.0) <= 1e-8 * scale)

    def at(self, fitted: np.ndarray | None) -> VarianceAt:
        """The function with its fitted-value covariate (if any) fixed at ``fitted``
        (problem order)."""
        values = self._values
        if self.uses_fitted:
            if fitted is None:
                raise ValueError("the variance function needs the fitted values")
            v = np.asarray(fitted, dtype=float)
            values = {**values, FITTED: v if self._sorted else v[self._order]}
        return VarianceAt(self, values)

    def start(self) -> np.ndarray:
        return np.asarray(self.function.start(), dtype=float)

    def residual_start(self, residuals: np.ndarray, fitted: np.ndarray) -> np.ndarray:
        """The seam's moment start from the residuals (problem order) at ``fitted``."""
        at = self.at(fitted)
        r = np.asarray(residuals, dtype=float)
        return np.asarray(
            self.function.residual_start(r if self._sorted else r[self._order], at.values),
            dtype=float,
        )

    def unsort(self, sorted_values: np.ndarray) -> np.ndarray:
        return sorted_values if self._sorted else sorted_values[self._inverse]


class VarianceAt:
    """A bound variance function at fixed covariate values: row weights and the
    derivatives of ``log sd`` in the parameters (problem order)."""

    def __init__(self, owner: RowVariance, values: dict[str, np.ndarray]):
        self.owner = owner
        self.values = values
        self._jacobian: np.ndarray | None = None

    def sd(self, delta: np.ndarray | None) -> np.ndarray:
        """Standard-deviation multipliers; a :class:`numpy.linalg.LinAlgError` when one is
        not finite and positive (the optimizers treat that as outside the domain)."""
        u = _EMPTY if delta is None else np.asarray(delta, dtype=float)
        n = self.owner._order.size
        with np.errstate(all="ignore"):
            sd = np.asarray(self.owner.function.sd(u, self.values), dtype=float)
        if sd.shape != (n,):
            sd = np.broadcast_to(sd, (n,))
        if not (sd.min(initial=np.inf) > 0 and sd.max(initial=0.0) < np.inf):
            raise np.linalg.LinAlgError("variance function outside its range")
        return self.owner.unsort(sd)

    def n_outside(self, delta: np.ndarray | None) -> int:
        """How many rows' multipliers are not finite and positive at ``delta``."""
        u = _EMPTY if delta is None else np.asarray(delta, dtype=float)
        with np.errstate(all="ignore"):
            sd = np.asarray(self.owner.function.sd(u, self.values), dtype=float)
        sd = np.broadcast_to(sd, (self.owner._order.size,))
        return int(np.sum(~(np.isfinite(sd) & (sd > 0))))

    def weights(self, delta: np.ndarray | None) -> np.ndarray:
        """Row weights ``s_j = 1 / sd_j``."""
        return 1.0 / self.sd(delta)

    def jacobian(self, delta: np.ndarray) -> np.ndarray:
        """``d log sd_j / d delta_k`` (n, k) by central differences.  ``log sd`` is linear in
        the parameters for every function of the seam (``power log|v|``, ``expon v``, a log
        sd per stratum, their sums), where the difference is exact to rounding and, found
        so when the function was bound (:attr:`RowVariance.log_linear`), computed once."""
        if self._jacobian is not None:
            return self._jacobian
        u = np.asarray(delta, dtype=float)
        out = np.empty((self.owner._order.size, u.size))
        for k in range(u.size):
            h = 1e-3 * max(1.0, abs(u[k]))
            up, down = u.copy(), u.copy()
            up[k] += h
            down[k] -= h
            out[:, k] = np.log(self.sd(up) / self.sd(down)) / (2 * h)
        if self.owner.log_linear:
            self._jacobian = out
        return out


_EMPTY = np.zeros(0)
_NO_ROWS = np.zeros((0, 0))


@dataclass
class Gram:
    """Per-group cross-products of ``[Z | X w]`` with row weights ``s``, stored group
    index last so that each entry is one contiguous array over the groups."""

    ztz: np.ndarray  # (q, q, m)
    ztm: np.ndarray  # (q, m, p + 1): Z'[X w] per group
    mtm: np.ndarray  # (p + 1, p + 1): [X w]'[X w]
    log_weights: float  # sum log s_j
    #: The same cross-products group index first ((m, q, q) and (m, q, p + 1)), as the
    #: compiled kernel takes them (formed from the others when not given).
    ztz_groups: np.ndarray | None = None
    ztm_groups: np.ndarray | None = None
    #: Work arrays of the compiled deviance and gradient (:func:`_kernel_ml`).
    work: tuple | None = None

    def by_group(self) -> tuple[np.ndarray, np.ndarray]:
        """``Z_i'Z_i`` (m, q, q) and ``Z_i'[X w]`` (m, q, p + 1), C-contiguous."""
        if self.ztz_groups is None or self.ztm_groups is None:
            self.ztz_groups = np.ascontiguousarray(np.moveaxis(self.ztz, 2, 0))
            self.ztm_groups = np.ascontiguousarray(np.moveaxis(self.ztm, 1, 0))
        return self.ztz_groups, self.ztm_groups


def gram(problem: NonlinearProblem, lin: Linearization, s: np.ndarray | None = None) -> Gram:
    """Cross-products of the linearized model (rows scaled by ``s``); by the compiled
    kernel (:func:`mixedmodels.core.nonlinear_kernels.gram_groups`) when numba loads."""
    module = pls_kernels()
    if module is not None:
        return _kernel_gram(module, problem, lin, s)
    z = lin.z
    m = np.hstack([lin.x, lin.w[:, None]])
    if s is not None:
        z, m = z * s[:, None], m * s[:, None]
    n, q = z.shape
    k = m.shape[1]
    e = problem.indicator
    by_group = e @ (z[:, :, None] * z[:, None, :]).reshape(n, q * q)  # (m, q q)
    ztz = np.ascontiguousarray(by_group.T)
    ztm = (e @ (z[:, :, None] * m[:, None, :]).reshape(n, q * k)).reshape(-1, q, k)
    return Gram(ztz.reshape(q, q, -1), np.ascontiguousarray(ztm.transpose(1, 0, 2)), m.T @ m,
                0.0 if s is None else float(np.log(s).sum()),
                np.ascontiguousarray(by_group).reshape(-1, q, q), np.ascontiguousarray(ztm))


def _kernel_gram(module: ModuleType, problem: NonlinearProblem, lin: Linearization,
                 s: np.ndarray | None) -> Gram:
    z, x = lin.z, lin.x
    n, q = z.shape
    k = x.shape[1] + 1
    m = problem.n_groups
    ztz, ztm = np.empty((m, q, q)), np.empty((m, q, k))
    ztz_last, ztm_last = np.empty((q, q, m)), np.empty((q, m, k))
    mtm = np.empty((k, k))
    module.gram_groups(z, x, lin.w, _EMPTY if s is None else s, s is not None,
                       problem._groups64, ztz, ztm, ztz_last, ztm_last, mtm)
    return Gram(ztz_last, ztm_last, mtm, 0.0 if s is None else float(np.log(s).sum()), ztz,
                ztm)


@dataclass
class PlsSolution:
    """Solution of the penalized least squares problem for one relative factor."""

    beta: np.ndarray
    u: np.ndarray | None  # (m, q)
    pwrss: float
    logdet_l: float  # log det(L) = sum log diag over all groups
    rx: np.ndarray  # Cholesky factor of the fixed effects' reduced system
    xtx_reduced: np.ndarray
    low: list | None = None  # per-group Cholesky factor, entry by entry

    @property
    def logdet_rx(self) -> float:
        """``log det R_X`` (the REML criterion's; computed when asked)."""
        return float(np.log(np.diagonal(self.rx)).sum())


def cholesky_groups(g: Gram, lam: np.ndarray) -> tuple[list, float]:
    """Cholesky factors of ``A_i = Lambda' Z_i'Z_i Lambda + I`` entry by entry (``L[i][j]``
    an array over the groups) and ``sum_i log det L_i``."""
    q = lam.shape[0]
    if q == 1:
        a = [[lam[0, 0] ** 2 * g.ztz[0, 0] + 1.0]]
    else:
        m = g.ztz.shape[2]
        t = (lam.T @ g.ztz.reshape(q, -1)).reshape(q, q, m)  # Lambda' ZtZ
        a = np.swapaxes(t, 1, 2) @ lam  # (q, m, q): Lambda' ZtZ Lambda
        a = [[a[i, :, j] for j in range(q)] for i in range(q)]
        for i in range(q):
            a[i][i] = a[i][i] + 1.0
    low: list[list] = [[None] * q for _ in range(q)]
    logdet_l = 0.0
    for j in range(q):
        d = a[j][j]
        for k in range(j):
            d = d - low[j][k] ** 2
        # a pivot <= 0 makes its log -inf or NaN: the sum says so without a pass of its
        # own over the groups (the minimum is taken only then, to tell NaN input apart)
        with np.errstate(all="ignore"):
            log_sum = float(_sum(np.log(d)))
        if not log_sum > -np.inf and _min(d) <= 0:
            raise np.linalg.LinAlgError("not positive definite")
        low[j][j] = np.sqrt(d)
        logdet_l += 0.5 * log_sum
        for i in range(j + 1, q):
            v = a[i][j]
            for k in range(j):
                v = v - low[i][k] * low[j][k]
            low[i][j] = v / low[j][j]
    return low, logdet_l


_sum = np.add.reduce
_min = np.minimum.reduce


def fixed_effects(
    reduced: np.ndarray, p: int
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """``beta``, the penalized RSS, ``X'X`` and its Cholesky factor from the fixed
    effects' system left after the random effects are eliminated: ``reduced`` is the
    ``(p + 1) x (p + 1)`` matrix ``[X w]'[X w] - C'C`` (the response last), and

    .. math::

        R_X R_X' = \\mathrm{reduced}_{XX}, \\quad R_X R_X' \\beta = \\mathrm{reduced}_{Xw},
        \\quad \\mathrm{PWRSS} = \\mathrm{reduced}_{ww} - \\mathrm{reduced}_{wX} \\beta.
    """
    xtx = reduced[:p, :p]
    rx, info = dpotrf(xtx, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("the fixed effects' system is not positive definite")
    beta, _ = dpotrs(rx, reduced[:p, p], lower=1)
    return beta, float(reduced[p, p] - reduced[p, :p] @ beta), xtx, rx


#: Use the compiled kernel (:mod:`mixedmodels.core.nonlinear_kernels`) when numba loads;
#: False forces the numpy code (the tests compare both).
USE_KERNELS = True
_NONLINEAR_KERNELS = OptionalKernels(
    "mixedmodels.core.nonlinear_kernels",
    "the compiled kernel of the nonlinear models' least squares",
    "using numpy",
)


def pls_kernels() -> ModuleType | None:
    """The compiled kernel module (:mod:`mixedmodels.core.nonlinear_kernels`), or None when
    it is switched off (:data:`USE_KERNELS`), numba is missing or fails to load (reported
    once as a :class:`~mixedmodels.errors.MixedModelsWarning`; the numpy code computes the
    same quantities)."""
    return _NONLINEAR_KERNELS.load() if USE_KERNELS else None


_NO_PAIRS = np.zeros(0, dtype=np.int64)


def _kernel_pls(module: ModuleType, g: Gram, lam: np.ndarray, modes: bool,
                pairs: list[tuple[int, int]] | None = None, n: int = 0,
                low: np.ndarray | None = None) -> tuple[PlsSolution, np.ndarray]:
    """:func:`pls` (and with ``pairs`` the ML gradient, ``n`` in its ``n / PWRSS``) by the
    compiled kernel; ``low`` (m, q, q), when given, receives the groups' factors."""
    ztz, ztm = g.by_group()
    m, q, k = ztm.shape
    p = k - 1
    beta = np.empty(p)
    u = np.empty((m, q)) if (modes or pairs is not None) else None
    reduced = np.empty((k, k))
    rx = np.empty((p, p))
    if pairs is None:
        rows = cols = _NO_PAIRS
    else:
        rows, cols = _pair_index(pairs)
    grad = np.empty(rows.size)
    status, logdet_l, pwrss = module.pls_groups(
        ztz, ztm, g.mtm, np.ascontiguousarray(lam, dtype=float), modes, pairs is not None,
        rows, cols, n, beta, np.empty((0, q)) if u is None else u, reduced, rx, grad,
        np.empty((m, q, q)) if low is None else low,
    )
    if status:
        raise np.linalg.LinAlgError("not positive definite")
    sol = PlsSolution(beta, u, max(pwrss, 0.0), logdet_l, rx, reduced[:p, :p].copy(), None)
    return sol, grad


def gauss_newton_solution(problem: NonlinearProblem, lin: Linearization,
                          s: np.ndarray | None, lam: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, float]:
    """``beta``, ``u`` and the PWRSS of the penalized least squares of the model
    linearized in ``lin`` with row weights ``s``: ``pls(gram(problem, lin, s), lam)`` (a
    Gauss-Newton step of PNLS), by the two compiled kernels in one call when numba loads
    (the same bits)."""
    module = pls_kernels()
    if module is None:
        sol = pls(gram(problem, lin, s), lam)
        return sol.beta, sol.u, sol.pwrss
    z, x = lin.z, lin.x
    n, q = z.shape
    k = x.shape[1] + 1
    p = k - 1
    m = problem.n_groups
    scratch = problem._scratch
    if scratch is None or scratch[0].shape != (m, q, q) or scratch[1].shape != (m, q, k):
        scratch = problem._scratch = _gauss_newton_scratch(m, q, k)
    ztz, ztm, ztz_last, ztm_last, mtm, reduced, rx, low = scratch
    beta = np.empty(p)
    u = np.empty((m, q))
    status, _, pwrss = module.gram_pls(
        z, x, lin.w, _EMPTY if s is None else s, s is not None, problem._groups64,
        np.ascontiguousarray(lam, dtype=float), ztz, ztm, ztz_last, ztm_last, mtm, True,
        False, _NO_PAIRS, _NO_PAIRS, 0, beta, u, reduced, rx, _EMPTY, low,
    )
    if status:
        raise np.linalg.LinAlgError("not positive definite")
    return beta, u, max(pwrss, 0.0)


def gauss_newton_step(problem: NonlinearProblem, lin: Linearization, s: np.ndarray | None,
                      lam: np.ndarray, beta: np.ndarray, u: np.ndarray) -> tuple:
    """A Gauss-Newton step of PNLS from ``(beta, u)`` (``u`` (m, q)) on the model
    linearized in ``lin`` with row weights ``s``: the solution's PWRSS
    (:func:`gauss_newton_solution`'s), the step ``dbeta = sol_beta - beta``, ``du = sol_u -
    u``, the full step's point ``(beta + dbeta, u + du)`` (new arrays), and the step's
    :func:`step_size` from ``(beta, u)`` and from that point.  One kernel call when numba
    loads (:func:`mixedmodels.core.nonlinear_kernels.gauss_newton_step`: the same
    operations, the same bits); ``dbeta`` and ``du`` are then work arrays that the next
    step overwrites.

    Returns ``(pwrss, dbeta, du, nb, nu, size, size_next)``.
    """
    module = pls_kernels()
    if module is None:
        sol_beta, sol_u, pwrss = gauss_newton_solution(problem, lin, s, lam)
        dbeta, du = sol_beta - beta, sol_u - u
        nb, nu = beta + dbeta, u + du
        return (pwrss, dbeta, du, nb, nu, step_size(dbeta, du, beta, u),
                step_size(dbeta, du, nb, nu))
    work = problem._step_work
    if work is None:  # (the sizes are the problem's: set up once)
        m, q, k = problem.n_groups, problem.q, problem.p + 1
        scratch = problem._scratch
        if scratch is None or scratch[0].shape != (m, q, q) or scratch[1].shape != (m, q, k):
            scratch = problem._scratch = _gauss_newton_scratch(m, q, k)
        ztz, ztm, ztz_last, ztm_last, mtm, reduced, rx, low = scratch
        work = problem._step_work = (
            module.gauss_newton_step, problem._groups64, ztz, ztm, ztz_last, ztm_last, mtm,
            reduced, rx, low, np.empty(k - 1), np.empty((m, q)), np.empty(k - 1),
            np.empty((m, q)), np.empty(2), (k - 1,), (m, q),
        )
    (kernel, groups, ztz, ztm, ztz_last, ztm_last, mtm, reduced, rx, low, sol_beta, sol_u,
     dbeta, du, sizes, shape_beta, shape_u) = work
    if not (beta.dtype == np.float64 and beta.flags.c_contiguous):
        beta = np.ascontiguousarray(beta, dtype=float)
    if not (u.dtype == np.float64 and u.flags.c_contiguous):
        u = np.ascontiguousarray(u, dtype=float)
    nb, nu = np.empty(shape_beta), np.empty(shape_u)
    status, _, pwrss = kernel(
        lin.z, lin.x, lin.w, _EMPTY if s is None else s, s is not None, groups,
        lam if lam.flags.c_contiguous else np.ascontiguousarray(lam, dtype=float), ztz, ztm,
        ztz_last, ztm_last, mtm, _NO_PAIRS, _NO_PAIRS, reduced, rx, _EMPTY, low, sol_beta,
        sol_u, beta, u, dbeta, du, nb, nu, sizes,
    )
    if status:
        raise np.linalg.LinAlgError("not positive definite")
    return max(pwrss, 0.0), dbeta, du, nb, nu, float(sizes[0]), float(sizes[1])


def _gauss_newton_scratch(m: int, q: int, k: int) -> tuple:
    """Work arrays of :func:`gauss_newton_solution` and :func:`gauss_newton_step`."""
    p = k - 1
    return (np.empty((m, q, q)), np.empty((m, q, k)), np.empty((q, q, m)), np.empty((q, m, k)),
            np.empty((k, k)), np.empty((k, k)), np.empty((p, p)), np.empty((m, q, q)))


def step_size(dbeta: np.ndarray, du: np.ndarray, beta: np.ndarray, u: np.ndarray) -> float:
    """A PNLS step's size: the largest change of a fixed effect relative to it (floored at
    1e-5) and of the random effects relative to their largest (floored at 1e-8),
    ``max(max_k |dbeta_k| / max(|beta_k|, 1e-5), max |du| / max(max |u|, 1e-8))``."""
    module = pls_kernels()
    if module is not None:  # (the same divisions and maxima compiled: the same bits)
        return module.step_size(dbeta, du.reshape(-1), beta, u.reshape(-1))
    # (the maxima by the ufunc's reduce itself: np.max's wrapper cost more than the work)
    step_beta = _max(np.abs(dbeta) / np.maximum(np.abs(beta), 1e-5), axis=None, initial=0.0)
    step_u = _max(np.abs(du), axis=None, initial=0.0) / max(
        _max(np.abs(u), axis=None, initial=0.0), 1e-8)
    return float(max(step_beta, step_u))


_max = np.maximum.reduce


def _kernel_ml(module: ModuleType, g: Gram, lam: np.ndarray, pairs: list[tuple[int, int]],
               n: int) -> tuple[float, np.ndarray]:
    """:func:`ml_deviance_gradient` by the kernel without a solution object: the work
    arrays are kept on the Gram (the covariance step evaluates it many times), the
    deviance is :func:`deviance`'s expression (the same bits)."""
    ztz, ztm = g.by_group()
    m, q, k = ztm.shape
    work = g.work
    if work is None:
        work = g.work = (np.empty(k - 1), np.empty((m, q)), np.empty((k, k)),
                         np.empty((k - 1, k - 1)), np.empty((m, q, q)))
    beta, u, reduced, rx, low = work
    rows, cols = _pair_index(pairs)
    grad = np.empty(rows.size)
    status, logdet_l, pwrss = module.pls_groups(
        ztz, ztm, g.mtm, lam if lam.flags.c_contiguous else np.ascontiguousarray(lam),
        True, True, rows, cols, n, beta, u, reduced, rx, grad, low,
    )
    if status:
        raise np.linalg.LinAlgError("not positive definite")
    pwrss = max(pwrss, 0.0)
    return 2 * logdet_l + n * (1 + np.log(2 * np.pi * pwrss / n)) - 2 * 0.0, grad


_LAYOUT_INDEX: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


class KernelDevianceGradient:
    """``theta -> (ML deviance, gradient)`` of one Gram by the compiled kernel
    (:func:`mixedmodels.core.nonlinear_kernels.pls_groups`): the pair index, the work
    arrays and the relative factor's buffer set up once, each call the kernel's (the same
    call on the same values as :func:`_kernel_ml`: the same bits).

    Its arrays (``ztz``, ``ztm``, ``mtm``: the Gram's per-group cross-products; ``lam``,
    ``positions``, ``rows``, ``cols``, ``n`` and the work arrays) are what a compiled
    optimizer of the covariance step passes to the same kernel
    (:func:`mixedmodels.optim.bounded_newton.newton_gradient` runs its whole loop in one
    call on them).
    """

    __slots__ = ("beta", "cols", "kernel", "lam", "low", "module", "mtm", "n",
                 "positions", "reduced", "rows", "rx", "u", "ztm", "ztz", "_flat")

    def __init__(self, module: ModuleType, g: Gram, layout: RelativeFactorLayout, n: int
                 ) -> None:
        self.ztz, self.ztm = g.by_group()
        m, q, k = self.ztm.shape
        self.mtm = g.mtm
        work = g.work
        if work is None:
            work = g.work = (np.empty(k - 1), np.empty((m, q)), np.empty((k, k)),
                             np.empty((k - 1, k - 1)), np.empty((m, q, q)))
        self.beta, self.u, self.reduced, self.rx, self.low = work
        key = (q, layout.diagonal)
        index = _LAYOUT_INDEX.get(key)
        if index is None:
            index = _LAYOUT_INDEX[key] = (*_pair_index(theta_pairs(*key)),
                                          _theta_positions(*key))
        self.rows, self.cols, self.positions = index
        self._flat = np.zeros(q * q)
        self.lam = self._flat.reshape(q, q)  # (a view: theta is written into ``_flat``)
        self.kernel = module.pls_groups
        self.n = n
        self.module = module  # (:mod:`mixedmodels.core.nonlinear_kernels`)

    def deviances(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The deviance at each row of ``points`` (c, n_theta) and whether it is defined
        (False where a factor is not positive definite: :func:`pls` raises there), by
        one call of :func:`mixedmodels.core.nonlinear_kernels.ml_deviances` (the
        values of ``deviance(pls(g, lambda_of(theta), False), n, p, False)``; the log
        is the C library's, numpy's may differ in the last bit)."""
        count = points.shape[0]
        values, defined = np.empty(count), np.empty(count, dtype=np.bool_)
        self.module.ml_deviances(self.ztz, self.ztm, self.mtm, self.lam, self.positions,
                                  np.ascontiguousarray(points, dtype=float), self.n,
                                  self.beta, self.u, self.reduced, self.rx, self.low,
                                  values, defined)
        return values, defined

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self._flat[self.positions] = theta
        grad = np.empty(self.rows.size)
        n = self.n
        status, logdet_l, pwrss = self.kernel(
            self.ztz, self.ztm, self.mtm, self.lam, True, True, self.rows, self.cols, n,
            self.beta, self.u, self.reduced, self.rx, grad, self.low)
        if status:
            raise np.linalg.LinAlgError("not positive definite")
        pwrss = max(pwrss, 0.0)
        return 2 * logdet_l + n * (1 + np.log(2 * np.pi * pwrss / n)) - 2 * 0.0, grad


def ml_deviance_gradient_function(
    g: Gram, layout: RelativeFactorLayout, n: int
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``theta -> ml_deviance_gradient(g, layout.lambda_of(theta), pairs, n)`` for one
    Gram (the covariance step's Newton iterations evaluate it ten times and more): with
    the kernel a :class:`KernelDevianceGradient` (its arrays set up once), else the numpy
    code."""
    module = pls_kernels()
    if module is None:
        pairs = theta_pairs(layout.q, layout.diagonal)
        return lambda theta: ml_deviance_gradient(g, layout.lambda_of(theta), pairs, n)
    return KernelDevianceGradient(module, g, layout, n)


def _pair_index(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    key = tuple(pairs)
    found = _PAIRS.get(key)
    if found is None:
        found = _PAIRS[key] = (np.array([r for r, _ in pairs], dtype=np.int64),
                               np.array([c for _, c in pairs], dtype=np.int64))
    return found


_PAIRS: dict = {}


def pls(g: Gram, lam: np.ndarray, modes: bool = True) -> PlsSolution:
    """``min ||w - X beta - Z Lambda u||^2 + ||u||^2`` (:func:`pls_numpy`, or the compiled
    kernel of :mod:`mixedmodels.core.nonlinear_kernels` when numba loads: the same
    quantities to rounding, without the per-group factor ``low``)."""
    module = pls_kernels()
    if module is not None:
        return _kernel_pls(module, g, lam, modes)[0]
    return pls_numpy(g, lam, modes)


def pls_point(g: Gram, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pls`'s ``beta`` and ``u`` alone (the alternation's PNLS start): the same
    kernel call without the solution object, its copy of the reduced system and the
    gradient's arrays (the same values)."""
    module = pls_kernels()
    if module is None:
        sol = pls_numpy(g, lam)
        return sol.beta, sol.u
    ztz, ztm = g.by_group()
    m, q, k = ztm.shape
    beta, u = np.empty(k - 1), np.empty((m, q))
    status, _, _ = module.pls_groups(
        ztz, ztm, g.mtm, lam if lam.flags.c_contiguous else np.ascontiguousarray(lam),
        True, False, _NO_PAIRS, _NO_PAIRS, 0, beta, u, np.empty((k, k)),
        np.empty((k - 1, k - 1)), _EMPTY, np.empty((m, q, q)),
    )
    if status:
        raise np.linalg.LinAlgError("not positive definite")
    return beta, u


def pls_numpy(g: Gram, lam: np.ndarray, modes: bool = True) -> PlsSolution:
    """``min ||w - X beta - Z Lambda u||^2 + ||u||^2``.

    Per group ``A_i = Lambda' Z_i'Z_i Lambda + I = L_i L_i'``, factored entry by entry
    (each entry an array over the groups: for the q <= 4 of nonlinear models a few
    vectorized operations instead of LAPACK calls per group).  With ``C_i = L_i^-1 Lambda'
    Z_i'[X w]`` the fixed effects' system is ``[X w]'[X w] - sum_i C_i'C_i`` (one product
    over all groups), and ``u_i = L_i'^-1 (C_i,w - C_i,X beta)``.
    """
    q = lam.shape[0]
    shape = g.ztm.shape
    p = shape[2] - 1
    low, logdet_l = cholesky_groups(g, lam)
    if q == 1:
        c = (lam[0, 0] * g.ztm.reshape(1, -1)).reshape(shape)
        c[0] /= low[0][0][:, None]
    else:
        lm = (lam.T @ g.ztm.reshape(q, -1)).reshape(shape)
        c = np.empty_like(lm)
        for i in range(q):
            acc = lm[i]
            for k in range(i):
                acc = acc - low[i][k][:, None] * c[k]
            c[i] = acc / low[i][i][:, None]
    flat = c.reshape(-1, p + 1)
    beta, pwrss, xtx, rx = fixed_effects(g.mtm - flat.T @ flat, p)
    u = None
    if modes:
        r = c[:, :, p] - c[:, :, :p] @ beta  # (q, m)
        if q == 1:
            u = (r[0] / low[0][0])[:, None]
        else:
            u = np.empty((shape[1], q))
            for i in range(q - 1, -1, -1):
                acc = r[i]
                for k in range(i + 1, q):
                    acc = acc - low[k][i] * u[:, k]
                u[:, i] = acc / low[i][i]
    return PlsSolution(beta, u, max(pwrss, 0.0), logdet_l, rx, xtx, low)


def forward_groups(low: list, rhs: np.ndarray) -> np.ndarray:
    """``L^-1 rhs`` group by group, ``rhs`` of shape (q, m, k)."""
    out = np.empty_like(rhs)
    for i in range(rhs.shape[0]):
        acc = rhs[i]
        for k in range(i):
            acc = acc - low[i][k][:, None] * out[k]
        out[i] = acc / low[i][i][:, None]
    return out


def backward_groups(low: list, rhs: np.ndarray) -> np.ndarray:
    """``L'^-1 rhs`` group by group, ``rhs`` of shape (q, m, k)."""
    q = rhs.shape[0]
    out = np.empty_like(rhs)
    for i in range(q - 1, -1, -1):
        acc = rhs[i]
        for k in range(i + 1, q):
            acc = acc - low[k][i][:, None] * out[k]
        out[i] = acc / low[i][i][:, None]
    return out


def theta_pairs(q: int, diagonal: bool) -> list[tuple[int, int]]:
    """The (row, column) of the relative factor each theta entry sets (lme4's order)."""
    if diagonal:
        return [(i, i) for i in range(q)]
    return [(i, j) for j in range(q) for i in range(j, q)]


def ml_deviance_gradient(
    g: Gram, lam: np.ndarray, pairs: list[tuple[int, int]], n: int, solution: list | None = None
) -> tuple[float, np.ndarray]:
    """The profiled ML deviance and its gradient in theta.

    ``d log|A_i| / d Lambda_rc = 2 [A_i^-1 Lambda' S_i]_cr`` with ``S_i = Z_i'Z_i``, and by
    the envelope theorem ``d PWRSS / d Lambda_rc = -2 sum_i (Z_i' r_i)_r u_ic`` with
    ``r = w - X beta - Z Lambda u`` at the penalized least-squares solution; the deviance
    ``log|A| + n log PWRSS + const`` adds ``n / PWRSS`` times the latter.

    By the compiled kernel when numba loads (:func:`pls`), numpy otherwise.
    """
    module = pls_kernels()
    if module is not None and solution is None:
        return _kernel_ml(module, g, lam, pairs, n)
    if module is not None:
        sol, grad = _kernel_pls(module, g, lam, True, pairs, n)
        solution.append(sol)
        return deviance(sol, n, g.mtm.shape[0] - 1, False), grad
    sol = pls_numpy(g, lam, modes=True)
    if solution is not None:
        solution.append(sol)
    p = g.mtm.shape[0] - 1
    dev = deviance(sol, n, p, False)
    q = lam.shape[0]
    ztm = g.ztm
    if q == 1:  # the same operations on the one entry, without the loops' temporaries
        lam00 = lam[0, 0]
        s00 = g.ztz[0, 0]
        low = sol.low[0][0]
        u = sol.u[:, 0]
        w = lam00 * s00 / low / low
        zr = ztm[0, :, p] - ztm[0, :, :p] @ sol.beta - s00 * (u * lam00)
        grad = np.array([2 * float(_sum(w)) - 2 * n / sol.pwrss * float(zr @ u)])
        return dev, grad
    m = g.ztz.shape[2]
    t = (lam.T @ g.ztz.reshape(q, -1)).reshape(q, q, m)  # (Lambda' S)[a, b, i]
    w = backward_groups(sol.low, forward_groups(sol.low, np.swapaxes(t, 1, 2)))  # (q, m, q)
    lu = sol.u @ lam.T  # (m, q): Lambda u_i
    slu = np.einsum("abm,mb->am", g.ztz, lu)
    zr = ztm[:, :, p] - ztm[:, :, :p] @ sol.beta - slu  # (q, m)
    grad = np.empty(len(pairs))
    scale = 2 * n / sol.pwrss
    for k, (r, c) in enumerate(pairs):
        grad[k] = 2 * float(_sum(w[c, :, r])) - scale * float(zr[r] @ sol.u[:, c])
    return dev, grad


def deviance(sol: PlsSolution, n: int, p: int, reml: bool, log_weights: float = 0.0) -> float:
    """-2 log-likelihood (ML) or -2 restricted log-likelihood (REML) of the linear model,
    sigma profiled out; ``log_weights`` is ``sum log s_j`` of the variance function."""
    if reml:
        dof = n - p
        return (2 * sol.logdet_l + 2 * sol.logdet_rx
                + dof * (1 + np.log(2 * np.pi * sol.pwrss / dof)) - 2 * log_weights)
    return 2 * sol.logdet_l + n * (1 + np.log(2 * np.pi * sol.pwrss / n)) - 2 * log_weights


def power_weights(v: np.ndarray, delta: float) -> np.ndarray:
    """``s_j = |v_j|^-delta`` (nlme's varPower weights)."""
    return np.abs(v) ** (-delta)


def ml_deviance_gradient_weighted(
    problem: NonlinearProblem, lin: Linearization, lam: np.ndarray, s: np.ndarray,
    jacobian: np.ndarray, pairs: list[tuple[int, int]], g: Gram | None = None,
) -> tuple[float, np.ndarray]:
    """The ML deviance with row weights ``s_j = 1 / sd_j(delta)`` and its gradient in
    ``(theta, delta)``; ``jacobian`` holds ``d log sd_j / d delta_k``.

    With ``D_jk`` that derivative, ``d s_j^2 / d delta_k = -2 D_jk s_j^2``, so ``d log|A| /
    d delta_k = -2 sum_j D_jk t_j`` with ``t_j = ||L_i^-1 Lambda' s_j z_j||^2`` (row ``j``'s
    leverage in its group), ``d PWRSS / d delta_k = -2 sum_j D_jk s_j^2 r_j^2`` (envelope
    theorem, ``r`` the linearized model's residual) and the weights' own term ``-2 sum log
    s_j`` adds ``2 sum_j D_jk``.  ``g``: the cross-products ``gram(problem, lin, s)`` when
    the caller has them (a forward difference in theta keeps the weights).
    """
    return _weighted_deviance_gradient(problem, lin, lam, s, jacobian, pairs, False, g)


def reml_deviance_gradient_weighted(
    problem: NonlinearProblem, lin: Linearization, lam: np.ndarray, s: np.ndarray,
    jacobian: np.ndarray, pairs: list[tuple[int, int]], g: Gram | None = None,
) -> tuple[float, np.ndarray]:
    """The REML criterion with row weights and its gradient in ``(theta, delta)``.

    Beyond :func:`ml_deviance_gradient_weighted` (with ``n - p`` for ``n``) it has ``log|M|``,
    ``M = X'V^-1X`` with ``V = S^-2 + Z Lambda Lambda' Z'``.  With ``R = SX - SZ Lambda
    A^-1 Lambda' Z'S^2 X`` (so that ``V^-1 X = S R``): ``d log|M| / d delta_k = -2 sum_j
    D_jk R_j' M^-1 R_j`` (``dV = 2 D_jk s_j^-2`` on the diagonal) and ``d log|M| / d
    Lambda_rc = -2 (H Lambda)_rc`` with ``H = sum_i G_i M^-1 G_i'``, ``G_i = Z_i'S_i R_i``.
    """
    return _weighted_deviance_gradient(problem, lin, lam, s, jacobian, pairs, True, g)


def _weighted_deviance_gradient(problem, lin, lam, s, jacobian, pairs, reml, g=None):
    n, p, q = problem.n, problem.p, lam.shape[0]
    if g is None:
        g = gram(problem, lin, s)
    module = None if reml else pls_kernels()
    if module is not None:
        return _weighted_ml_kernel(module, problem, lin, lam, s, jacobian, pairs, g)
    sol = pls_numpy(g, lam, modes=True)  # (its per-group factor serves below)
    m = g.ztz.shape[2]
    groups = problem.groups
    # theta: log|A| and PWRSS (as ml_deviance_gradient)
    t = (lam.T @ g.ztz.reshape(q, -1)).reshape(q, q, m)  # (Lambda' S)[a, b, i]
    w = backward_groups(sol.low, forward_groups(sol.low, np.swapaxes(t, 1, 2)))  # (q, m, q)
    lu = sol.u @ lam.T  # (m, q): Lambda u_i
    slu = np.einsum("abm,mb->am", g.ztz, lu)
    zr = g.ztm[:, :, p] - g.ztm[:, :, :p] @ sol.beta - slu  # (q, m)
    dlogdet_theta = np.array([2 * float(w[c, :, r].sum()) for r, c in pairs])
    dpwrss_theta = np.array([-2 * float(zr[r] @ sol.u[:, c]) for r, c in pairs])
    # delta: leverages and weighted squared residuals
    r = lin.w - lin.x @ sol.beta - np.einsum("nq,nq->n", lin.z, lu[groups])
    dpwrss_delta = -2 * ((s * r) ** 2 @ jacobian)
    zs = (lin.z * s[:, None]) @ lam  # rows (Lambda' s_j z_j)'
    y = np.empty_like(zs)
    for i in range(q):
        acc = zs[:, i]
        for k in range(i):
            acc = acc - sol.low[i][k][groups] * y[:, k]
        y[:, i] = acc / sol.low[i][i][groups]
    dlogdet_delta = -2 * ((y * y).sum(axis=1) @ jacobian)
    dof = n - p if reml else n
    grad_theta = dlogdet_theta + dof / sol.pwrss * dpwrss_theta
    grad_delta = dlogdet_delta + dof / sol.pwrss * dpwrss_delta + 2 * jacobian.sum(axis=0)
    if reml:
        # K_i = A_i^-1 Lambda' Z_i'S^2 X_i, rows of R = SX - (S Z Lambda) K
        c = forward_groups(sol.low, (lam.T @ g.ztm.reshape(q, -1)).reshape(g.ztm.shape))
        k_mat = backward_groups(sol.low, c[:, :, :p])  # (q, m, p)
        big_r = lin.x * s[:, None] - np.einsum("nq,qnp->np", zs, k_mat[:, groups, :])
        rx, info = dpotrf(sol.xtx_reduced, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("the fixed effects' system is not positive definite")
        # M^-1 from its factor (p is a handful: LAPACK's triangular solves on the n rows
        # cost 20 ms a call under threaded BLAS, these products microseconds)
        m_inv, _ = dpotrs(rx, np.eye(p), lower=1)
        leverage = ((big_r @ m_inv) * big_r).sum(axis=1)  # R_j' M^-1 R_j
        grad_delta = grad_delta - 2 * (leverage @ jacobian)
        zsr = (lin.z * s[:, None])[:, :, None] * big_r[:, None, :]  # (n, q, p)
        gi = (problem.indicator @ zsr.reshape(n, q * p)).reshape(m, q, p)  # G_i = Z_i'S_i R_i
        h = np.einsum("maj,jk,mbk->ab", gi, m_inv, gi)
        hl = h @ lam
        grad_theta = grad_theta - 2 * np.array([hl[r_, c_] for r_, c_ in pairs])
    dev = deviance(sol, n, p, reml, g.log_weights)
    return dev, np.append(grad_theta, grad_delta)


def _weighted_ml_kernel(module, problem, lin, lam, s, jacobian, pairs, g):
    """The ML branch of :func:`_weighted_deviance_gradient` with the least squares, the
    theta part and the rows' leverages by the compiled kernels (the same formulas; agrees
    to rounding)."""
    n, p = problem.n, problem.p
    m, q = problem.n_groups, lam.shape[0]
    low = np.empty((m, q, q))
    sol, grad_theta = _kernel_pls(module, g, lam, True, pairs, n, low)
    lu = sol.u @ lam.T
    groups = problem.groups
    r = lin.w - lin.x @ sol.beta - np.einsum("nq,nq->n", lin.z, lu[groups])
    dpwrss_delta = -2 * ((s * r) ** 2 @ jacobian)
    zs = (lin.z * s[:, None]) @ lam  # rows (Lambda' s_j z_j)'
    leverage = np.empty(n)
    module.row_leverages(np.ascontiguousarray(zs), groups, low, leverage)
    dlogdet_delta = -2 * (leverage @ jacobian)
    grad_delta = dlogdet_delta + n / sol.pwrss * dpwrss_delta + 2 * jacobian.sum(axis=0)
    dev = deviance(sol, n, p, False, g.log_weights)
    return dev, np.append(grad_theta, grad_delta)


def ml_deviance_gradient_power(
    problem: NonlinearProblem, lin: Linearization, v: np.ndarray, x: np.ndarray,
    pairs: list[tuple[int, int]],
) -> tuple[float, np.ndarray]:
    """:func:`ml_deviance_gradient_weighted` for varPower weights ``s_j = |v_j|^-delta``
    (``x = (theta, delta)``; ``d log sd_j / d delta = log|v_j|``)."""
    nt = len(pairs)
    return ml_deviance_gradient_weighted(
        problem, lin, problem.lambda_of(x[:nt]), power_weights(v, x[nt]),
        np.log(np.abs(v))[:, None], pairs,
    )


# ------------------------------------------------------------- nested grouping levels


@dataclass
class Level(RelativeFactorLayout):
    """The random effects of one grouping level of a nested model (``site``, then ``plot``
    within ``site``): the model parameters they are on, each row's group code, the number
    of groups and the covariance structure."""

    random_index: list[int]
    groups: np.ndarray
    n_groups: int
    diagonal: bool = False

    @property
    def q(self) -> int:
        return len(self.random_index)


@dataclass
class MultilevelLinearization:
    """``f``, ``X = df/dbeta``, ``Z_k = df/db_k`` of each level and the working response."""

    f: np.ndarray
    x: np.ndarray
    z: list[np.ndarray]
    w: np.ndarray


@dataclass
class MultilevelProblem:
    """A nonlinear mixed model with nested grouping levels (nlme's ``site/plot``):
    ``phi_j = F[j] beta + sum_k b_{k, g_k(j)}`` on each level's parameters,
    ``b_{k,i} = Lambda_k u_{k,i}``, ``u ~ N(0, sigma^2 I)``, ``e_j ~ N(0, sigma^2)``.

    ``levels`` are outermost first.  The linearized model's random effects ``u`` (all
    levels stacked, level by level, group by group) enter through ``U = [Z_k Lambda_k]``
    scattered to their groups' columns; the penalized least squares are solved with the
    dense Cholesky factor of ``U'U + I`` (nested models of nlme's size: tens to a few
    hundred random effects).
    """

    y: np.ndarray
    model: ModelCall
    n_model_parameters: int
    fixed_matrices: list[np.ndarray]
    function_index: list[int]
    levels: list[Level]
    reml: bool = False

    def __post_init__(self) -> None:
        n = self.y.size
        (self.slices, self.fixed_columns, self.column_parameter,
         self.selector) = fixed_layout(
            self.fixed_matrices, self.function_index, self.n_model_parameters, n
        )
        # where each level's random effects sit among the stacked u, and their columns
        self.offsets = np.cumsum([0] + [lv.n_groups * lv.q for lv in self.levels])
        self._columns = [
            self.offsets[k] + lv.groups[:, None] * lv.q + np.arange(lv.q)[None, :]
            for k, lv in enumerate(self.levels)
        ]
        # each level's diagonal blocks in lambda_full: (m_k, q_k, q_k) row and column indices
        self._blocks = []
        for k, lv in enumerate(self.levels):
            at = self.offsets[k] + np.arange(lv.n_groups)[:, None, None] * lv.q
            i = np.arange(lv.q)
            self._blocks.append((at + i[None, :, None], at + i[None, None, :]))
        self.theta_slices = []
        start = 0
        for lv in self.levels:
            self.theta_slices.append(slice(start, start + lv.n_theta))
            start += lv.n_theta

    # ------------------------------------------------------------------ sizes
    @property
    def n(self) -> int:
        return self.y.size

    @property
    def p(self) -> int:
        return self.fixed_columns.shape[1]

    @property
    def n_theta(self) -> int:
        return sum(lv.n_theta for lv in self.levels)

    @property
    def n_random(self) -> int:
        """All random effects, stacked."""
        return int(self.offsets[-1])

    n_variance = 0
    variance = None

    def theta_lower(self) -> np.ndarray:
        return np.concatenate([lv.theta_lower() for lv in self.levels])

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return [lv.lambda_of(theta[sl]) for lv, sl in zip(self.levels, self.theta_slices,
                                                          strict=True)]

    def split(self, u: np.ndarray) -> list[np.ndarray]:
        """The stacked ``u`` as one ``(m_k, q_k)`` array per level."""
        return [u[self.offsets[k]:self.offsets[k + 1]].reshape(lv.n_groups, lv.q)
                for k, lv in enumerate(self.levels)]

    def b_of(self, u: np.ndarray, lams: list[np.ndarray]) -> list[np.ndarray]:
        return [uk @ lam.T for uk, lam in zip(self.split(u), lams, strict=True)]

    def u_of(self, bs: list[np.ndarray], lams: list[np.ndarray]) -> np.ndarray:
        parts = [np.linalg.lstsq(lam, bk.T, rcond=None)[0].T.ravel()
                 for bk, lam in zip(bs, lams, strict=True)]
        return np.concatenate(parts) if parts else np.zeros(0)

    # ------------------------------------------------------------------ the model
    def phi(self, beta: np.ndarray, bs: list[np.ndarray], upto: int | None = None) -> np.ndarray:
        """Parameter rows at ``beta`` and the levels' random effects (the outermost
        ``upto`` levels only, when given)."""
        phi = self.fixed_columns @ (beta[:, None] * self.selector)
        for lv, bk in list(zip(self.levels, bs, strict=True))[:upto]:
            phi[:, lv.random_index] += bk[lv.groups]
        return phi

    def linearize(self, beta: np.ndarray, bs: list[np.ndarray]) -> MultilevelLinearization:
        f, g = self.model(self.phi(beta, bs))
        x = g[:, self.column_parameter] * self.fixed_columns
        zs = [g[:, lv.random_index] for lv in self.levels]
        zb = sum(((z * bk[lv.groups]).sum(axis=1)
                  for z, bk, lv in zip(zs, bs, self.levels, strict=True)), np.zeros(self.n))
        return MultilevelLinearization(f=f, x=x, z=zs, w=self.y - f + x @ beta + zb)

    def fitted(self, beta: np.ndarray, bs: list[np.ndarray], upto: int | None = None) -> np.ndarray:
        return self.model(self.phi(beta, bs, upto))[0]

    def z_matrix(self, lin: MultilevelLinearization) -> np.ndarray:
        """``Z`` (n, all random effects): row ``j`` holds ``Z_k[j]`` in the columns of its
        group at each level."""
        out = np.zeros((self.n, self.n_random))
        rows = np.arange(self.n)[:, None]
        for z, cols in zip(lin.z, self._columns, strict=True):
            out[rows, cols] = z
        return out

    def lambda_full(self, lams: list[np.ndarray]) -> np.ndarray:
        """The relative factor of all random effects: ``Lambda_k`` repeated for each group
        of level ``k``, block diagonal."""
        out = np.zeros((self.n_random, self.n_random))
        for (rows, cols), lv, lam in zip(self._blocks, self.levels, lams, strict=True):
            out[rows, cols] = np.broadcast_to(lam, (lv.n_groups, lv.q, lv.q))
        return out

    def theta_positions(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each theta entry, the (row, column) positions it sets in
        :meth:`lambda_full` (one per group of its level)."""
        out = []
        for k, lv in enumerate(self.levels):
            start = self.offsets[k] + np.arange(lv.n_groups) * lv.q
            pairs = ([(i, i) for i in range(lv.q)] if lv.diagonal
                     else [(i, j) for j in range(lv.q) for i in range(j, lv.q)])
            out += [(start + i, start + j) for i, j in pairs]
        return out


@dataclass
class MultilevelGram:
    """Cross-products of the nested linearized model at one linearization: ``G = Z'Z``,
    ``Z'[X w]`` and ``[X w]'[X w]`` (all random effects, dense)."""

    ztz: np.ndarray
    ztm: np.ndarray
    mtm: np.ndarray


def multilevel_gram(problem: MultilevelProblem, lin: MultilevelLinearization) -> MultilevelGram:
    z = problem.z_matrix(lin)
    m = np.hstack([lin.x, lin.w[:, None]])
    return MultilevelGram(z.T @ z, z.T @ m, m.T @ m)


@dataclass
class MultilevelPls:
    """The penalized least squares solution of a nested linearized model."""

    beta: np.ndarray
    u: np.ndarray
    pwrss: float
    logdet_l: float
    logdet_rx: float
    xtx_reduced: np.ndarray
    low: np.ndarray | None = None  # Cholesky factor of Lambda' G Lambda + I


def multilevel_pls(problem: MultilevelProblem, gram: MultilevelGram,
                   lams: list[np.ndarray]) -> MultilevelPls:
    """``min ||w - X beta - Z Lambda u||^2 + ||u||^2`` with ``Lambda' Z'Z Lambda + I = L L'``
    (dense, of the size of the random effects: the rows enter through the Gram only)."""
    lam = problem.lambda_full(lams)
    p = problem.p
    a = lam.T @ gram.ztz @ lam
    a[np.diag_indices_from(a)] += 1.0
    low, info = dpotrf(a, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("not positive definite")
    # A^-1 Lambda' Z'[X w] by LAPACK's potrs (scipy's solve_triangular costs ms a call)
    utm = lam.T @ gram.ztm
    solved, info = dpotrs(low, utm, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("not positive definite")
    reduced = gram.mtm - utm.T @ solved
    beta, pwrss, xtx, rx = fixed_effects((reduced + reduced.T) / 2, p)
    u = solved[:, p] - solved[:, :p] @ beta
    return MultilevelPls(beta, u, max(pwrss, 0.0), float(np.log(np.diagonal(low)).sum()),
                         float(np.log(np.diagonal(rx)).sum()), xtx, low)


def multilevel_ml_gradient(
    problem: MultilevelProblem, gram: MultilevelGram, lams: list[np.ndarray],
    positions: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[float, np.ndarray]:
    """The profiled ML deviance of the nested linearized model and its gradient in theta.

    As :func:`ml_deviance_gradient` with all random effects in one dense system: ``d log|A|
    / d Lambda_ab = 2 [A^-1 Lambda' G]_ba`` and ``d PWRSS / d Lambda_ab = -2 (Z'r)_a u_b``
    (envelope theorem), summed over the positions each theta entry sets.
    """
    sol = multilevel_pls(problem, gram, lams)
    dev = multilevel_deviance(sol, problem.n, problem.p, False)
    lam = problem.lambda_full(lams)
    w, info = dpotrs(sol.low, lam.T @ gram.ztz, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("not positive definite")
    p = problem.p
    ztr = gram.ztm[:, p] - gram.ztm[:, :p] @ sol.beta - gram.ztz @ (lam @ sol.u)
    grad = np.array([2 * float(w[b, a].sum()) - 2 * problem.n / sol.pwrss
                     * float(ztr[a] @ sol.u[b]) for a, b in positions])
    return dev, grad


def multilevel_deviance(sol: MultilevelPls, n: int, p: int, reml: bool) -> float:
    """-2 (restricted) log-likelihood of the nested linear model, sigma profiled out."""
    if reml:
        dof = n - p
        return (2 * sol.logdet_l + 2 * sol.logdet_rx
                + dof * (1 + np.log(2 * np.pi * sol.pwrss / dof)))
    return 2 * sol.logdet_l + n * (1 + np.log(2 * np.pi * sol.pwrss / n))
