"""Compiled kernels of :mod:`mixedmodels.core.nonlinear_modes` (numba): the conditional
modes' quasi-Newton search of the second-basin check in one call, the model included.

Imported only through :func:`mixedmodels.core.nonlinear_modes.mode_kernels` (numba is
optional).  :func:`run_program` runs a register program
(:class:`~mixedmodels.linalg.row_program.RowProgram`) whole: its IEEE operations by
:func:`~mixedmodels.linalg.row_program_kernels.execute` (the same bits as numpy's) and its
elementary functions (``exp``, ``log``, ``^``, ...) by numba's, which differ from numpy's
in the last bit on a few percent of arguments.  So the search here reaches the modes of
:func:`mixedmodels.optim.nonlinear.conditional_modes` to rounding, not to the bit; the
check keeps only its yes/no answer (every group near its fitted mode), and numpy's search
gives the modes wherever they are used.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mixedmodels.core.nonlinear_kernels import (
    linearize_start,
    max_nan,
    mode_bfgs,
    mode_hessian,
    mode_step,
    mode_terms,
    mode_worse,
)
from mixedmodels.linalg.row_program_kernels import execute

#: The opcodes after :data:`mixedmodels.linalg.row_program.EXACT`'s (0-9): the
#: elementary functions of :data:`mixedmodels.formula.derivative.UNARY_FUNCTIONS` that
#: are not IEEE operations, then ``power`` (binary).
N_EXACT = 10
EXP, LOG, SIN, COS, TAN, ATAN, SINH, COSH, TANH, LOG10, LOG2, LOG1P, EXPM1, POWER = range(
    N_EXACT, N_EXACT + 14)


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def run_program(ops, regs):  # pragma: no cover - compiled
    """Run ``ops`` (k, 4: output register, opcode, first, second operand) on ``regs``
    (r, n) in place: opcodes below :data:`N_EXACT` by ``execute``, the others by numba's
    elementary functions (numpy's error model: NaN or inf out of their domains)."""
    n = regs.shape[1]
    for k in range(ops.shape[0]):
        out, code, a, b = ops[k, 0], ops[k, 1], ops[k, 2], ops[k, 3]
        if code < N_EXACT:  # (execute's operations, as it computes them)
            execute(ops[k:k + 1], regs)
        elif code == EXP:
            for j in range(n):
                regs[out, j] = math.exp(regs[a, j])
        elif code == LOG:
            for j in range(n):
                regs[out, j] = math.log(regs[a, j])
        elif code == SIN:
            for j in range(n):
                regs[out, j] = math.sin(regs[a, j])
        elif code == COS:
            for j in range(n):
                regs[out, j] = math.cos(regs[a, j])
        elif code == TAN:
            for j in range(n):
                regs[out, j] = math.tan(regs[a, j])
        elif code == ATAN:
            for j in range(n):
                regs[out, j] = math.atan(regs[a, j])
        elif code == SINH:
            for j in range(n):
                regs[out, j] = math.sinh(regs[a, j])
        elif code == COSH:
            for j in range(n):
                regs[out, j] = math.cosh(regs[a, j])
        elif code == TANH:
            for j in range(n):
                regs[out, j] = math.tanh(regs[a, j])
        elif code == LOG10:
            for j in range(n):
                regs[out, j] = math.log10(regs[a, j])
        elif code == LOG2:
            for j in range(n):
                regs[out, j] = math.log2(regs[a, j])
        elif code == LOG1P:
            for j in range(n):
                regs[out, j] = math.log1p(regs[a, j])
        elif code == EXPM1:
            for j in range(n):
                regs[out, j] = math.expm1(regs[a, j])
        else:
            for j in range(n):
                regs[out, j] = regs[a, j] ** regs[b, j]


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def _evaluate(at, lam, beta, fixed_part, groups, random_index, ops, regs, input_registers,
              input_columns, outputs, y, s, weighted, b, f, z, g, grad, ztz
              ):  # pragma: no cover - compiled
    """The groups' objectives ``g`` and gradients ``grad`` (and, with ``ztz`` not empty,
    ``Z_i'S^2 Z_i``) at the random effects ``at``: ``b = at Lambda'``, the program on the
    parameter rows, then :func:`mode_terms`."""
    m, q = at.shape
    for i in range(m):
        for e in range(q):
            acc = 0.0
            for c in range(q):
                acc += at[i, c] * lam[e, c]
            b[i, e] = acc
    linearize_start(regs, input_registers, input_columns, ops[:0], beta, fixed_part, b,
                    groups, random_index)
    run_program(ops, regs)
    n = f.size
    o = outputs[0]
    for j in range(n):
        f[j] = regs[o, j]
    for e in range(q):
        r = outputs[1 + random_index[e]]
        for j in range(n):
            z[j, e] = regs[r, j]
    mode_terms(y, f, z, s, weighted, groups, at, lam, g, grad, ztz)


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def mode_search(ops, regs, input_registers, input_columns, outputs, beta, fixed_part, groups,
                random_index, y, s, weighted, lam, u, near, within, max_iter
                ):  # pragma: no cover - compiled
    """:func:`mixedmodels.optim.nonlinear.conditional_modes`'s search with ``near`` (the
    same steps: Gauss-Newton's first, then each group's BFGS update, step halving per
    group, the stops on a small step and on every group within ``within`` of ``near``)
    from ``u`` (m, q), which receives the modes.  A group whose halving fails keeps its
    point and its terms (the same bits as evaluating them again: each group's terms depend
    on its own row of ``u`` only).  Returns ``(status, pwrss, apart)``: 0 done, 1 not finite at
    the start (``pwrss`` inf), -1 a singular quasi-Newton system; and ``max |u - near|``
    at the end (NaN where anything is)."""
    m, q = u.shape
    n = y.size
    b = np.empty((m, q))
    f = np.empty(n)
    z = np.empty((n, q))
    g = np.empty(m)
    grad = np.empty((m, q))
    t_g = np.empty(m)
    t_grad = np.empty((m, q))
    ztz = np.empty((m, q, q))
    no_blocks = np.zeros((0, q, q))
    _evaluate(u, lam, beta, fixed_part, groups, random_index, ops, regs, input_registers,
              input_columns, outputs, y, s, weighted, b, f, z, g, grad, ztz)
    for i in range(m):
        if not math.isfinite(g[i]):
            return 1, math.inf, math.nan
    hess = np.empty((m, q, q))
    mode_hessian(ztz, lam, hess)
    step = np.empty((m, q))
    trial = np.empty((m, q))
    factor = np.empty(m)
    worse = np.zeros(m, dtype=np.bool_)
    moved = np.ones(m, dtype=np.bool_)
    taken = np.empty((m, q))
    change = np.empty((m, q))
    for _ in range(max_iter):
        status = mode_step(hess, grad, u, step)
        if status < 0:
            return -1, math.nan, math.nan
        if status:
            break
        factor[:] = 1.0
        while True:
            for i in range(m):
                for a in range(q):
                    trial[i, a] = u[i, a] + factor[i] * step[i, a]
            _evaluate(trial, lam, beta, fixed_part, groups, random_index, ops, regs,
                      input_registers, input_columns, outputs, y, s, weighted, b, f, z, t_g,
                      t_grad, no_blocks)
            if mode_worse(grad, step, factor, g, t_g, worse):
                break
        for i in range(m):
            moved[i] = not worse[i]
            if worse[i]:  # (a group that could not decrease stays at its old point)
                t_g[i] = g[i]
                for a in range(q):
                    trial[i, a] = u[i, a]
                    t_grad[i, a] = grad[i, a]
        top_taken = 0.0
        for i in range(m):
            for a in range(q):
                taken[i, a] = trial[i, a] - u[i, a]
                change[i, a] = t_grad[i, a] - grad[i, a]
                top_taken = max_nan(top_taken, abs(taken[i, a]))
        mode_bfgs(hess, taken, change, moved)
        top_u = 0.0
        apart = 0.0
        for i in range(m):
            g[i] = t_g[i]
            for a in range(q):
                u[i, a] = trial[i, a]
                grad[i, a] = t_grad[i, a]
                top_u = max_nan(top_u, abs(u[i, a]))
                apart = max_nan(apart, abs(u[i, a] - near[i, a]))
        # (Python's max(top_u, 1e-8): top_u unless 1e-8 is larger; NaN compares false)
        if top_taken < 1e-10 * (1e-8 if 1e-8 > top_u else top_u):
            break
        if apart <= within:
            break
    pwrss = 0.0
    apart = 0.0
    for i in range(m):
        pwrss += g[i]
        for a in range(q):
            apart = max_nan(apart, abs(u[i, a] - near[i, a]))
    return 0, pwrss, apart
