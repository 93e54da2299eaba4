"""Compiled kernel of :mod:`mixedmodels.core.nonlinear` (numba): the penalized least squares
of a linearized nonlinear mixed model and the gradient of its profiled ML deviance, one
pass over the groups.

Imported only through :func:`mixedmodels.core.nonlinear.pls_kernel` (numba is optional and
its import costs ~0.3 s).  The numpy code of :mod:`mixedmodels.core.nonlinear`
(:func:`~mixedmodels.core.nonlinear.pls`, :func:`~mixedmodels.core.nonlinear.ml_deviance_gradient`)
stays as the fallback and computes the same quantities by the same formulas; the kernel adds
the groups' terms one group after the other where numpy's products sum them in BLAS's
order, so the two agree to rounding (1e-14 relative), not to the last bit.  At nlme's sizes
(tens of groups, q <= 4 random effects) the numpy code is bound by the cost of its calls,
not by arithmetic: one evaluation here costs microseconds where numpy's ~40 calls cost
30-100.

Also here: the linearization around a register program's numpy stages
(:func:`linearize_start`, :func:`linearize_finish`, :func:`working_response`: the numpy
code's operations in its order, the same bits), a Gauss-Newton step of PNLS in one call
(:func:`gram_pls`), PNLS's step size (:func:`step_size`), and the groups' algebra of the
conditional modes' quasi-Newton search of the second-basin check (``mode_*``), the
deviances of a few relative factors (:func:`ml_deviances`) and the covariance step's Newton
loop (:func:`newton_ml`).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from mixedmodels.linalg import row_program_kernels  # noqa: F401 - (the module, for middle)
from mixedmodels.linalg.row_program_kernels import execute
from mixedmodels.linalg.triangular_kernels import group_modes


@njit(cache=True, boundscheck=False, nogil=True)
def pls_groups(
    ztz, ztm, mtm, lam, modes, gradient, pair_rows, pair_cols, n, beta, u, reduced, rx, grad,
    low,
):  # pragma: no cover - compiled
    """Penalized least squares ``min ||w - X beta - Z Lambda u||^2 + ||u||^2`` from the
    per-group cross-products, and optionally the profiled ML deviance's gradient in theta.

    Per group ``A_i = Lambda' S_i Lambda + I = L_i L_i'`` (``S_i = Z_i'Z_i``), ``C_i = L_i^-1
    Lambda' Z_i'[X w]``; ``reduced = [X w]'[X w] - sum_i C_i'C_i``, ``R_X R_X' =
    reduced_XX``, ``beta`` from it, ``PWRSS = reduced_ww - reduced_wX beta``, ``u_i = L_i'^-1
    (C_i,w - C_i,X beta)``.  Gradient (as ``ml_deviance_gradient``): ``2 sum_i [A_i^-1
    Lambda' S_i]_cr - 2 n / PWRSS sum_i (Z_i' r_i)_r u_ic`` for each theta entry ``(r, c)``.

    Parameters
    ----------
    ztz : float64 (m, q, q)
    ztm : float64 (m, q, k)
        ``Z_i'[X w]``, ``k = p + 1``.
    mtm : float64 (k, k)
    lam : float64 (q, q)
    modes, gradient : bool
        Compute ``u`` (the gradient needs it too).
    pair_rows, pair_cols : int64 (t,)
    n : int
    beta : float64 (p,), u : float64 (m, q), reduced : float64 (k, k), rx : float64 (p, p),
    grad : float64 (t,), low : float64 (m, q, q)
        Outputs (``rx`` and each ``L_i`` lower triangular, their upper parts zero).

    Returns
    -------
    status : int
        0, or 1 when a pivot of an ``A_i`` or of ``reduced_XX`` is <= 0 (not positive
        definite; a NaN pivot is passed on, as the numpy code passes it).
    logdet_l : float
        ``sum_i log det L_i``.
    pwrss : float
        (Not floored at 0.)
    """
    m, q, k = ztm.shape
    p = k - 1
    low[:] = 0.0
    c = np.empty((m, q, k))
    ls = np.empty((m, q, q))
    logdet_l = 0.0
    for a in range(k):
        for b in range(k):
            reduced[a, b] = mtm[a, b]
    for i in range(m):
        # Lambda' S_i, A_i = (Lambda' S_i) Lambda + I
        for a in range(q):
            for b in range(q):
                acc = 0.0
                for e in range(q):
                    acc += lam[e, a] * ztz[i, e, b]
                ls[i, a, b] = acc
        for a in range(q):
            for b in range(a + 1):
                acc = 0.0
                for e in range(q):
                    acc += ls[i, a, e] * lam[e, b]
                if a == b:
                    acc += 1.0
                # Cholesky, column by column (row a, column b <= a)
                for e in range(b):
                    acc -= low[i, a, e] * low[i, b, e]
                if a == b:
                    if acc <= 0.0:  # (NaN passes, as in the numpy code and LAPACK's dpotrf)
                        return 1, 0.0, 0.0
                    low[i, a, a] = math.sqrt(acc)
                    logdet_l += 0.5 * math.log(acc)
                else:
                    low[i, a, b] = acc / low[i, b, b]
        # C_i = L_i^-1 Lambda' Z_i'[X w]
        for col in range(k):
            for a in range(q):
                acc = 0.0
                for e in range(q):
                    acc += lam[e, a] * ztm[i, e, col]
                for e in range(a):
                    acc -= low[i, a, e] * c[i, e, col]
                c[i, a, col] = acc / low[i, a, a]
        for a in range(k):
            for b in range(a + 1):
                acc = 0.0
                for e in range(q):
                    acc += c[i, e, a] * c[i, e, b]
                reduced[a, b] -= acc
    for a in range(k):
        for b in range(a):
            reduced[b, a] = reduced[a, b]
    # R_X R_X' = reduced_XX, beta
    for a in range(p):
        for b in range(p):
            rx[a, b] = 0.0
    for a in range(p):
        for b in range(a + 1):
            acc = reduced[a, b]
            for e in range(b):
                acc -= rx[a, e] * rx[b, e]
            if a == b:
                if acc <= 0.0:  # (NaN passes, as in the numpy code and LAPACK's dpotrf)
                    return 1, logdet_l, 0.0
                rx[a, a] = math.sqrt(acc)
            else:
                rx[a, b] = acc / rx[b, b]
    y = np.empty(p)
    for a in range(p):
        acc = reduced[a, p]
        for e in range(a):
            acc -= rx[a, e] * y[e]
        y[a] = acc / rx[a, a]
    for a in range(p - 1, -1, -1):
        acc = y[a]
        for e in range(a + 1, p):
            acc -= rx[e, a] * beta[e]
        beta[a] = acc / rx[a, a]
    pwrss = reduced[p, p]
    for a in range(p):
        pwrss -= reduced[p, a] * beta[a]
    if not (modes or gradient):
        return 0, logdet_l, pwrss
    group_modes(c, beta, low, u)
    if not gradient:
        return 0, logdet_l, pwrss
    t = pair_rows.size
    trace = np.zeros((q, q))  # sum_i A_i^-1 Lambda' S_i
    zu = np.zeros((q, q))  # sum_i (Z_i' r_i) u_i'
    v = np.empty((q, q))
    lu = np.empty(q)
    zr = np.empty(q)
    for i in range(m):
        # A_i^-1 (Lambda' S_i): forward then backward solves, column by column
        for col in range(q):
            for a in range(q):
                acc = ls[i, a, col]
                for e in range(a):
                    acc -= low[i, a, e] * v[e, col]
                v[a, col] = acc / low[i, a, a]
            for a in range(q - 1, -1, -1):
                acc = v[a, col]
                for e in range(a + 1, q):
                    acc -= low[i, e, a] * v[e, col]
                v[a, col] = acc / low[i, a, a]
        for a in range(q):
            for b in range(q):
                trace[a, b] += v[a, b]
        # Z_i' r_i = Z_i'w - Z_i'X beta - S_i Lambda u_i
        for a in range(q):
            acc = 0.0
            for e in range(q):
                acc += lam[a, e] * u[i, e]
            lu[a] = acc
        for a in range(q):
            acc = ztm[i, a, p]
            for e in range(p):
                acc -= ztm[i, a, e] * beta[e]
            for e in range(q):
                acc -= ztz[i, a, e] * lu[e]
            zr[a] = acc
        for a in range(q):
            for b in range(q):
                zu[a, b] += zr[a] * u[i, b]
    scale = 2.0 * n / pwrss
    for j in range(t):
        rr, cc = pair_rows[j], pair_cols[j]
        grad[j] = 2.0 * trace[cc, rr] - scale * zu[rr, cc]
    return 0, logdet_l, pwrss


@njit(cache=True, boundscheck=False, nogil=True)
def row_leverages(zs, groups, low, out):  # pragma: no cover - compiled
    """``out_j = ||L_g(j)^-1 zs_j||^2`` for each row (``zs`` (n, q): rows ``Lambda' s_j
    z_j``; ``low`` (m, q, q) the groups' Cholesky factors): row ``j``'s leverage in its
    group, the weighted gradient's ``d log|A| / d delta`` part."""
    n, q = zs.shape
    y = np.empty(q)
    for j in range(n):
        i = groups[j]
        total = 0.0
        for a in range(q):
            acc = zs[j, a]
            for e in range(a):
                acc -= low[i, a, e] * y[e]
            y[a] = acc / low[i, a, a]
            total += y[a] * y[a]
        out[j] = total


@njit(cache=True, boundscheck=False, nogil=True)
def gram_groups(z, x, w, s, weighted, groups, ztz, ztm, ztz_last, ztm_last, mtm
                ):  # pragma: no cover - compiled
    """The per-group cross-products of ``[Z | X w]`` with row weights ``s`` (when
    ``weighted``), one pass over the rows (the rows' products added in the rows' order).

    Outputs (zeroed here): ``ztz`` (m, q, q) and ``ztz_last`` (q, q, m): ``sum s_j^2 z_j
    z_j'`` per group; ``ztm`` (m, q, k) and ``ztm_last`` (q, m, k): ``sum s_j^2 z_j [x_j
    w_j]'``; ``mtm`` (k, k): ``sum s_j^2 [x_j w_j][x_j w_j]'``.
    """
    n, q = z.shape
    p = x.shape[1]
    k = p + 1
    ztz[:] = 0.0
    ztm[:] = 0.0
    mtm[:] = 0.0
    zr = np.empty(q)
    mr = np.empty(k)
    for j in range(n):
        i = groups[j]
        sj = s[j] if weighted else 1.0
        for a in range(q):
            zr[a] = z[j, a] * sj
        for a in range(p):
            mr[a] = x[j, a] * sj
        mr[p] = w[j] * sj
        for a in range(q):
            za = zr[a]
            for b in range(q):
                ztz[i, a, b] += za * zr[b]
            for b in range(k):
                ztm[i, a, b] += za * mr[b]
        for a in range(k):
            ma = mr[a]
            for b in range(a + 1):
                mtm[a, b] += ma * mr[b]
    for a in range(k):
        for b in range(a):
            mtm[b, a] = mtm[a, b]
    m = ztz.shape[0]
    for i in range(m):
        for a in range(q):
            for b in range(q):
                ztz_last[a, b, i] = ztz[i, a, b]
            for b in range(k):
                ztm_last[a, i, b] = ztm[i, a, b]


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def linearize_start(regs, input_registers, input_columns, ops, beta, fixed_part, b, groups,
                    random_index):  # pragma: no cover - compiled
    """The first part of :meth:`mixedmodels.core.nonlinear.NonlinearProblem.linearize`:
    the parameter rows ``phi_jk = beta_k + b_{g(j),k}`` (every parameter an intercept:
    ``fixed_part`` empty) or ``fixed_part_jk + b_{g(j),k}`` (``fixed_part = F (beta *
    selector)``, numpy's product) straight into the register program's input registers,
    then its first compiled run ``ops``."""
    n = regs.shape[1]
    q = random_index.size
    intercepts = fixed_part.shape[0] == 0
    for i in range(input_registers.size):
        r, k = input_registers[i], input_columns[i]
        if intercepts:
            for j in range(n):
                regs[r, j] = beta[k]
        else:
            for j in range(n):
                regs[r, j] = fixed_part[j, k]
        for e in range(q):
            if random_index[e] == k:
                for j in range(n):
                    regs[r, j] += b[groups[j], e]
    execute(ops, regs)


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def linearize_finish(regs, ops, outputs, b, groups, fixed_columns, column_parameter,
                     random_index, f, x, z, zb):  # pragma: no cover - compiled
    """The program's last compiled run ``ops``, then ``f``, ``X_jc = g_j,k(c) F_jc``,
    ``Z_je = g_j,k(e)`` and ``zb_j = sum_e Z_je b_g(j),e`` (summed in numpy's order)."""
    execute(ops, regs)
    n = f.size
    q = random_index.size
    p = column_parameter.size
    o = outputs[0]
    for j in range(n):
        f[j] = regs[o, j]
    for j in range(n):
        for c in range(p):
            x[j, c] = regs[outputs[1 + column_parameter[c]], j] * fixed_columns[j, c]
        acc = 0.0
        for e in range(q):
            ze = regs[outputs[1 + random_index[e]], j]
            z[j, e] = ze
            if e == 0:
                acc = ze * b[groups[j], e]
            else:
                acc += ze * b[groups[j], e]
        zb[j] = acc


@njit(cache=True, boundscheck=False, nogil=True)
def working_response(y, f, xb, zb, w, r):  # pragma: no cover - compiled
    """``w = y - f + X beta + Z b`` (in that order, as numpy's expression) and the residual
    ``r = y - f`` (its first term)."""
    for j in range(y.size):
        rj = y[j] - f[j]
        r[j] = rj
        w[j] = rj + xb[j] + zb[j]


@njit(cache=True, boundscheck=False, nogil=True)
def gram_pls(z, x, w, s, weighted, groups, lam, ztz, ztm, ztz_last, ztm_last, mtm, modes,
             gradient, pair_rows, pair_cols, n, beta, u, reduced, rx, grad, low
             ):  # pragma: no cover - compiled
    """:func:`gram_groups` then :func:`pls_groups` (a Gauss-Newton step of PNLS: the same
    two kernels in one call; ``pls_groups``'s arguments passed on, so that it is compiled
    for one signature only).  Returns ``pls_groups``'s ``(status, logdet_l, pwrss)``."""
    gram_groups(z, x, w, s, weighted, groups, ztz, ztm, ztz_last, ztm_last, mtm)
    return pls_groups(ztz, ztm, mtm, lam, modes, gradient, pair_rows, pair_cols, n, beta, u,
                      reduced, rx, grad, low)


@njit(cache=True, boundscheck=False, nogil=True)
def step_size(dbeta, du, beta, u):  # pragma: no cover - compiled
    """``optim.nonlinear.pnls_step_size`` (``du``, ``u`` flattened): ``max(max_k
    |dbeta_k| / max(|beta_k|, 1e-5), max |du| / max(max |u|, 1e-8))`` with numpy's NaN
    propagation in the maxima and Python's ``max`` in the last two (the same bits: only
    divisions and comparisons)."""
    step_beta = 0.0
    for k in range(dbeta.size):
        v = abs(dbeta[k]) / max_nan(abs(beta[k]), 1e-5)
        step_beta = max_nan(step_beta, v)
    top_du = 0.0
    top_u = 0.0
    for i in range(du.size):
        top_du = max_nan(top_du, abs(du[i]))
    for i in range(u.size):
        top_u = max_nan(top_u, abs(u[i]))
    # Python's max(a, b): a unless b > a
    scale = 1e-8 if 1e-8 > top_u else top_u
    step_u = top_du / scale
    return step_u if step_u > step_beta else step_beta


@njit(cache=True, boundscheck=False, nogil=True)
def gauss_newton_step(z, x, w, s, weighted, groups, lam, ztz, ztm, ztz_last, ztm_last, mtm,
                      pair_rows, pair_cols, reduced, rx, grad, low, sol_beta, sol_u, beta, u,
                      dbeta, du, nb, nu, sizes):  # pragma: no cover - compiled
    """A Gauss-Newton step of PNLS from ``(beta, u)`` in one call: :func:`gram_pls`'s
    solution ``(sol_beta, sol_u)`` of the model linearized in ``(z, x, w)``, the step
    ``dbeta = sol_beta - beta``, ``du = sol_u - u``, the full step's point ``nb = beta +
    dbeta``, ``nu = u + du`` (numpy's expressions: the same bits), and in ``sizes`` the
    step's :func:`step_size` from ``(beta, u)`` and from ``(nb, nu)`` (the stopping test
    after the full step is taken).  ``pair_rows``/``pair_cols``/``grad`` are empty
    (``gram_pls``'s arguments passed on: one signature).  Returns ``gram_pls``'s
    ``(status, logdet_l, pwrss)``; the rest is written only where ``status`` is 0."""
    status, logdet_l, pwrss = gram_pls(
        z, x, w, s, weighted, groups, lam, ztz, ztm, ztz_last, ztm_last, mtm, True, False,
        pair_rows, pair_cols, 0, sol_beta, sol_u, reduced, rx, grad, low)
    if status:
        return status, logdet_l, pwrss
    for k in range(beta.size):
        d = sol_beta[k] - beta[k]
        dbeta[k] = d
        nb[k] = beta[k] + d
    m, q = u.shape
    for i in range(m):
        for a in range(q):
            d = sol_u[i, a] - u[i, a]
            du[i, a] = d
            nu[i, a] = u[i, a] + d
    flat_du, flat_u, flat_nu = du.reshape(du.size), u.reshape(u.size), nu.reshape(nu.size)
    sizes[0] = step_size(dbeta, flat_du, beta, flat_u)
    sizes[1] = step_size(dbeta, flat_du, nb, flat_nu)
    return status, logdet_l, pwrss


@njit(cache=True, boundscheck=False, nogil=True)
def all_finite(f, x, z):  # pragma: no cover - compiled
    """Whether every entry of the three (flat) arrays is finite."""
    for a in (f, x, z):
        for j in range(a.size):
            if not math.isfinite(a[j]):
                return False
    return True


@njit(cache=True, inline="always")
def max_nan(a, b):  # pragma: no cover - compiled
    """numpy's maximum: NaN when either is NaN."""
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


# ------------------------------------------------------------------ conditional modes


@njit(cache=True, boundscheck=False, nogil=True)
def mode_terms(y, f, z, s, weighted, groups, at, lam, g, grad, ztz
               ):  # pragma: no cover - compiled
    """Each group's penalized objective and its gradient at the random effects ``at`` (m,
    q) from the rows' values ``f`` and derivatives ``z``: ``g_i = sum_j (s_j (y_j -
    f_j))^2 + ||at_i||^2`` (inf when not finite), ``grad_i = at_i - Lambda' Z_i'S^2 r_i``;
    with ``ztz`` (m, q, q) not empty also ``Z_i'S^2 Z_i`` (the Gauss-Newton Hessian's)."""
    n, q = z.shape
    m = at.shape[0]
    with_ztz = ztz.shape[0] > 0
    zr = np.zeros((m, q))
    for i in range(m):
        acc = 0.0
        for a in range(q):
            acc += at[i, a] * at[i, a]
        g[i] = acc
    if with_ztz:
        ztz[:] = 0.0
    for j in range(n):
        i = groups[j]
        sj = s[j] if weighted else 1.0
        r = sj * (y[j] - f[j])
        g[i] += r * r
        for a in range(q):
            za = sj * z[j, a]
            zr[i, a] += za * r
            if with_ztz:
                for b in range(q):
                    ztz[i, a, b] += za * sj * z[j, b]
    for i in range(m):
        if not math.isfinite(g[i]):
            g[i] = math.inf
        for c in range(q):
            acc = 0.0
            for a in range(q):
                acc += zr[i, a] * lam[a, c]
            grad[i, c] = at[i, c] - acc


@njit(cache=True, boundscheck=False, nogil=True)
def mode_hessian(ztz, lam, hess):  # pragma: no cover - compiled
    """``H_i = I + Lambda' Z_i'S^2 Z_i Lambda`` (the Gauss-Newton start of each group's
    quasi-Newton Hessian)."""
    m, q, _ = ztz.shape
    t = np.empty((q, q))
    for i in range(m):
        for a in range(q):
            for b in range(q):
                acc = 0.0
                for e in range(q):
                    acc += ztz[i, a, e] * lam[e, b]
                t[a, b] = acc
        for a in range(q):
            for b in range(q):
                acc = 1.0 if a == b else 0.0
                for e in range(q):
                    acc += lam[e, a] * t[e, b]
                hess[i, a, b] = acc


@njit(cache=True, boundscheck=False, nogil=True)
def mode_step(hess, grad, u, step):  # pragma: no cover - compiled
    """Each group's quasi-Newton step ``-H_i^-1 grad_i`` (Gaussian elimination with partial
    pivoting), 0 where it is below ``1e-10 max(max |u|, 1e-8)``.  Returns 1 when every
    step is (at the modes), -1 when a system is singular, else 0."""
    m, q = u.shape
    top = 0.0
    for i in range(m):
        for a in range(q):
            top = max(top, abs(u[i, a]))
    floor = 1e-10 * max(top, 1e-8)
    a_ = np.empty((q, q))
    b_ = np.empty(q)
    every = True
    for i in range(m):
        for r in range(q):
            b_[r] = -grad[i, r]
            for c in range(q):
                a_[r, c] = hess[i, r, c]
        for c in range(q):
            piv = c
            for r in range(c + 1, q):
                if abs(a_[r, c]) > abs(a_[piv, c]):
                    piv = r
            if a_[piv, c] == 0.0 or not math.isfinite(a_[piv, c]):
                return -1
            if piv != c:
                for e in range(q):
                    a_[c, e], a_[piv, e] = a_[piv, e], a_[c, e]
                b_[c], b_[piv] = b_[piv], b_[c]
            for r in range(c + 1, q):
                factor = a_[r, c] / a_[c, c]
                for e in range(c, q):
                    a_[r, e] -= factor * a_[c, e]
                b_[r] -= factor * b_[c]
        size = 0.0
        for r in range(q - 1, -1, -1):
            acc = b_[r]
            for e in range(r + 1, q):
                acc -= a_[r, e] * step[i, e]
            step[i, r] = acc / a_[r, r]
            size = max(size, abs(step[i, r]))
        if size < floor:
            for r in range(q):
                step[i, r] = 0.0
        else:
            every = False
    return 1 if every else 0


@njit(cache=True, boundscheck=False, nogil=True)
def mode_worse(grad, step, factor, g, t_g, worse):  # pragma: no cover - compiled
    """The groups whose trial raised their objective beyond the decrease the step promises
    to within rounding (``worse``); halves their factor unless none is worse or the worse
    ones' factors are all below 1e-10.  Returns 1 when the halving is done (no group
    worse, or stuck), else 0."""
    m, q = step.shape
    any_worse = False
    largest = 0.0
    for i in range(m):
        promise = 0.0
        for a in range(q):
            promise += grad[i, a] * step[i, a]
        promise = abs(promise) * factor[i]
        bad = not (t_g[i] <= g[i] or promise < 1e-11 * g[i])
        worse[i] = bad
        if bad:
            any_worse = True
            largest = max(largest, factor[i])
    if not any_worse or largest < 1e-10:
        return 1
    for i in range(m):
        if worse[i]:
            factor[i] /= 2.0
    return 0


@njit(cache=True, boundscheck=False, nogil=True)
def mode_bfgs(hess, s, change, moved):  # pragma: no cover - compiled
    """BFGS update of each moved group's Hessian from its step ``s_i`` and gradient change
    ``y_i``: ``H + y y' / (s'y) - (H s)(H s)' / (s'H s)`` where ``s'y > 1e-12 |s'H s|`` and
    ``s'H s > 0``."""
    m, q = s.shape
    hs = np.empty(q)
    for i in range(m):
        if not moved[i]:
            continue
        curvature = 0.0
        for a in range(q):
            curvature += s[i, a] * change[i, a]
        bending = 0.0
        for a in range(q):
            acc = 0.0
            for b in range(q):
                acc += hess[i, a, b] * s[i, b]
            hs[a] = acc
            bending += s[i, a] * acc
        if not (curvature > 1e-12 * max(abs(bending), 1e-300) and bending > 0):
            continue
        for a in range(q):
            for b in range(q):
                hess[i, a, b] += (change[i, a] * change[i, b] / curvature
                                  - hs[a] * hs[b] / bending)


@njit(cache=True, boundscheck=False, nogil=True)
def ml_deviances(ztz, ztm, mtm, lam, positions, points, n, beta, u, reduced, rx, low, values,
                 defined):  # pragma: no cover - compiled
    """The profiled ML deviance ``2 log|L| + n (1 + log(2 pi PWRSS / n))`` (PWRSS floored
    at 0, :func:`~mixedmodels.core.nonlinear.deviance`'s expression) at each row of
    ``points`` (theta, written at its flat ``positions`` of ``lam``), by
    :func:`pls_groups` without the modes: ``values[c]``, and ``defined[c]`` False where a
    factor is not positive definite (the value is then meaningless)."""
    q = lam.shape[0]
    no_pairs = np.zeros(0, dtype=np.int64)
    no_grad = np.empty(0)
    for c in range(points.shape[0]):
        for j in range(positions.size):
            lam[positions[j] // q, positions[j] % q] = points[c, j]
        status, logdet_l, pwrss = pls_groups(ztz, ztm, mtm, lam, False, False, no_pairs,
                                             no_pairs, n, beta, u, reduced, rx, no_grad, low)
        defined[c] = status == 0
        if status != 0:
            values[c] = np.inf
            continue
        if 0.0 > pwrss:  # (Python's max(pwrss, 0.0): NaN stays)
            pwrss = 0.0
        values[c] = 2 * logdet_l + n * (1 + np.log(2 * np.pi * pwrss / n)) - 2 * 0.0


# The covariance step's Newton loop (run by :func:`mixedmodels.optim.bounded_newton.
# newton_gradient` on a :class:`~mixedmodels.core.nonlinear.KernelDevianceGradient`): here,
# beside :func:`pls_groups` that it calls, because numba's cache of a compiled function is
# invalidated only by changes to its own file (a kernel in another module would keep
# calling the old ``pls_groups`` after it changed).
#
# :func:`newton_ml` runs ``newton_gradient``'s algorithm (its forward-difference Hessian,
# eigenvalue flip and floor, halving line search, bound freezing, 1e-3 probes, stop rules
# and carried Hessian) over :func:`pls_groups`, on the same values in the same order of
# operations: the Hessian's eigen-decomposition is LAPACK's ``dsyevd`` (numba's
# ``np.linalg.eigh``, the routine numpy's ``eigh`` calls); the step ``-V ((V' g) /
# |values|)`` and the predicted gain ``0.5 |g' step|`` are written as the fused
# multiply-adds numpy's OpenBLAS computes them with for 1 to 3 coordinates (``dgemv`` and
# ``ddot`` on x86-64 with FMA: :func:`eigen_step`), and the caller runs this loop only
# where a check on fixed values finds numpy's products the same
# (:func:`mixedmodels.optim.bounded_newton.compiled_newton_matches`); the deviance's
# ``log`` is the C library's (numpy's may differ in the last bit on ~1e-4 of arguments;
# the path depends on the deviance only through comparisons of two values).


@intrinsic
def _fma(typingctx, a, b, c):  # pragma: no cover - compiled
    """``a * b + c`` rounded once (LLVM's ``llvm.fma.f64``)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d, d]),
                                            "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, boundscheck=False, nogil=True)
def ml_point(z, ztz, ztm, mtm, lam, positions, rows, cols, n, beta, u, reduced, rx, low,
             grad):  # pragma: no cover - compiled
    """The profiled ML deviance at theta ``z`` (``2 log|L| + n (1 + log(2 pi PWRSS / n))``,
    :func:`~mixedmodels.core.nonlinear.deviance`'s expression) and its gradient into
    ``grad``; ``lam`` (q, q) receives theta at its flat ``positions``.  Returns
    ``(finite, deviance)``: False where the factor is not positive definite or the value
    or the gradient is not finite (the Python loop's failed call)."""
    q = lam.shape[0]
    for j in range(positions.size):
        lam[positions[j] // q, positions[j] % q] = z[j]
    status, logdet_l, pwrss = pls_groups(ztz, ztm, mtm, lam, True, True, rows, cols, n, beta,
                                         u, reduced, rx, grad, low)
    if status != 0:
        return False, np.inf
    if 0.0 > pwrss:  # (Python's max(pwrss, 0.0): NaN stays)
        pwrss = 0.0
    value = 2 * logdet_l + n * (1 + np.log(2 * np.pi * pwrss / n)) - 2 * 0.0
    if not math.isfinite(value):
        return False, np.inf
    for j in range(grad.size):
        if not math.isfinite(grad[j]):
            return False, np.inf
    return True, value


@njit(cache=True, boundscheck=False, nogil=True)
def eigen_step(values, vectors, g, step):  # pragma: no cover - compiled
    """``step = -V ((V' g) / values)`` and ``0.5 |g' step|`` for ``k <= 3`` coordinates,
    with numpy's OpenBLAS's operations: ``V' g`` (``dgemv_n``) sums ``V[i, j] g[i]`` in
    order by fused multiply-adds, ``(-V) y`` (``dgemv_t``'s short columns) forms
    ``fma(a0, y0, a1 y1)`` then adds ``a2 y2`` fused, ``g' step`` (``ddot``) is the fused
    sum in order."""
    k = g.size
    y = np.empty(k)
    for j in range(k):
        acc = vectors[0, j] * g[0]
        for i in range(1, k):
            acc = _fma(vectors[i, j], g[i], acc)
        y[j] = acc / values[j]
    for j in range(k):
        if k == 1:
            step[j] = -vectors[j, 0] * y[0]
        else:
            acc = _fma(-vectors[j, 0], y[0], -vectors[j, 1] * y[1])
            if k == 3:
                acc = _fma(-vectors[j, 2], y[2], acc)
            step[j] = acc
    dot = 0.0
    for i in range(k):
        dot = _fma(step[i], g[i], dot)
    return 0.5 * abs(dot)


@njit(cache=True, boundscheck=False, nogil=True)
def flip_floor(hess, step, g):  # pragma: no cover - compiled
    """Eigen-decompose ``hess`` (finite), flip and floor its eigenvalues (``|v|`` at least
    ``1e-8 max(max |v|, 1e-12)``) and take the step (:func:`eigen_step`).  Returns
    ``(status, convex, predicted)``: status 1 where LAPACK fails or an eigenvalue is not
    finite."""
    k = g.size
    try:
        values, vectors = np.linalg.eigh(hess)
    except Exception:  # noqa: BLE001 - LAPACK's failure, the Python loop's LinAlgError
        return 1, False, 0.0
    for j in range(k):
        if not math.isfinite(values[j]):
            return 1, False, 0.0
    smallest = values[0]
    big = abs(values[0])
    for j in range(1, k):
        if values[j] < smallest:
            smallest = values[j]
        if abs(values[j]) > big:
            big = abs(values[j])
    convex = smallest > 0
    floor = 1e-8 * (1e-12 if 1e-12 > big else big)
    for j in range(k):
        v = abs(values[j])
        values[j] = v if v >= floor else floor
    return 0, convex, eigen_step(values, vectors, g, step)


@njit(cache=True, boundscheck=False, nogil=True)
def _maximum(a, b):  # pragma: no cover - compiled
    """numpy's ``maximum`` of two floats (a NaN passes)."""
    if a != a or a >= b:
        return a
    return b


@njit(cache=True, boundscheck=False, nogil=True)
def _probe(x, value, grad, lower, at, z, gz, ztz, ztm, mtm, lam, positions, rows, cols, n,
           beta, u, reduced, rx, low):  # pragma: no cover - compiled
    """:func:`~mixedmodels.optim.bounded_newton._probe_bounds`: each coordinate on its
    bound 1e-3 inside it, kept where the deviance falls.  Returns ``(moved, value,
    evaluations)``; ``x`` and ``grad`` are updated in place."""
    moved = False
    evaluations = 0
    size = x.size
    for i in range(size):
        if not at[i]:
            continue
        z[:] = x
        z[i] = lower[i] + 1e-3
        evaluations += 1
        finite, z_value = ml_point(z, ztz, ztm, mtm, lam, positions, rows, cols, n, beta, u,
                                   reduced, rx, low, gz)
        if finite and z_value < value:
            x[:] = z
            grad[:] = gz
            value = z_value
            moved = True
    return moved, value, evaluations


@njit(cache=True, boundscheck=False, nogil=True)
def newton_ml(ztz, ztm, mtm, lam, positions, rows, cols, n, x, lower, iterations, stop,
              stale, have_stale, store, beta, u, reduced, rx, low):  # pragma: no cover
    """:func:`~mixedmodels.optim.bounded_newton.newton_gradient` on the profiled ML
    deviance of the per-group cross-products ``ztz``, ``ztm``, ``mtm`` (as
    :func:`ml_point` evaluates it), from ``x`` (updated in place to the point reached).

    ``stale`` (size, size) is the carried Hessian when ``have_stale``; ``store`` receives
    each fresh one (the identity outside the free coordinates, as the Python loop keeps
    it).  ``beta`` ... ``low`` are the deviance's work arrays.

    Returns
    -------
    count : int
        Evaluations of the deviance and gradient.
    ok : bool
        The last step's predicted decrease fell below ``stop`` (an optimum).
    stored : bool
        ``store`` holds a fresh Hessian.
    """
    size = x.size
    grad = np.empty(size)
    finite, value = ml_point(x, ztz, ztm, mtm, lam, positions, rows, cols, n, beta, u,
                             reduced, rx, low, grad)
    count = 1
    stored = False
    if not finite:
        return count, False, stored
    bounded = np.empty(size, dtype=np.bool_)
    edge = np.empty(size)
    for i in range(size):
        bounded[i] = math.isfinite(lower[i])
        edge[i] = (lower[i] if bounded[i] else 0.0) + 1e-10
    at = np.empty(size, dtype=np.bool_)
    free = np.empty(size, dtype=np.int64)
    z = np.empty(size)
    gz = np.empty(size)
    trial = np.empty(size)
    new_grad = np.empty(size)
    for _ in range(iterations):
        k = 0
        for i in range(size):
            at[i] = bounded[i] and x[i] <= edge[i]
            if not at[i] or grad[i] < 0:
                free[k] = i
                k += 1
        if k == 0:  # all on their bounds: optimal unless the probe moves one
            moved, value, evaluations = _probe(x, value, grad, lower, at, z, gz, ztz, ztm,
                                               mtm, lam, positions, rows, cols, n, beta, u,
                                               reduced, rx, low)
            count += evaluations
            if moved:
                continue
            return count, True, stored
        all_free = k == size
        fresh = not have_stale
        grad_free = np.empty(k)
        for a in range(k):
            grad_free[a] = grad[free[a]]
        hess = np.empty((k, k))
        if fresh:
            raw = np.empty((k, k))
            for a in range(k):
                i = free[a]
                xi = x[i]
                h = 1e-6 * (0.1 if 0.1 > abs(xi) else abs(xi))
                z[:] = x
                z[i] = xi + h
                finite, _ = ml_point(z, ztz, ztm, mtm, lam, positions, rows, cols, n, beta,
                                     u, reduced, rx, low, gz)
                count += 1
                if not finite:
                    return count, False, stored
                for b in range(k):
                    raw[b, a] = (gz[free[b]] - grad_free[b]) / h
            for a in range(k):
                for b in range(k):
                    hess[a, b] = (raw[a, b] + raw[b, a]) / 2
            if not all_free:
                store[:] = 0.0
                for i in range(size):
                    store[i, i] = 1.0
            for a in range(k):
                for b in range(k):
                    store[free[a], free[b]] = hess[a, b]
            stored = True
        else:
            for a in range(k):
                for b in range(k):
                    hess[a, b] = stale[free[a], free[b]]
        have_stale = False
        for a in range(k):
            for b in range(k):
                if not math.isfinite(hess[a, b]):
                    return count, False, stored
        step = np.empty(k)
        status, convex, predicted = flip_floor(hess, step, grad_free)
        if status != 0:
            return count, False, stored
        if predicted < stop and not fresh and not convex:
            continue  # decide with a fresh Hessian
        if predicted < stop:
            moved, value, evaluations = _probe(x, value, grad, lower, at, z, gz, ztz, ztm,
                                               mtm, lam, positions, rows, cols, n, beta, u,
                                               reduced, rx, low)
            count += evaluations
            if moved:
                continue
            return count, convex, stored
        factor = 1.0
        accepted = False
        new_value = np.inf
        while factor > 1e-4:
            trial[:] = x
            for a in range(k):
                i = free[a]
                trial[i] = _maximum(x[i] + factor * step[a], lower[i])
            finite, new_value = ml_point(trial, ztz, ztm, mtm, lam, positions, rows, cols, n,
                                         beta, u, reduced, rx, low, new_grad)
            count += 1
            if finite and new_value <= value:
                accepted = True
                break
            factor /= 2
        if not accepted:
            return count, convex and predicted < 1e-10, stored
        x[:] = trial
        grad[:] = new_grad
        value = new_value
    return count, False, stored
