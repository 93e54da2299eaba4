"""Compiled kernels of the structured-residual objective with one random-effect term (numba).

Imported only through :func:`mixedmodels.core.residual_heads.residual_kernels` (numba is
optional and its import costs ~0.3 s).  Each kernel computes, in one call, what the numpy
code of :mod:`mixedmodels.core.residual_heads` and
:class:`~mixedmodels.core.residual_problem.ResidualProblem` computes in 15-40 numpy calls
for one evaluation: the per-level heads ``B_l = Z_l' V_l^-1 [Z X y]`` and ``[X y]' V^-1 [X
y]`` (from a :class:`~mixedmodels.core.residual.LinearPlan`'s basis, from the rows'
products weighted by ``1 / s_i^2``, or by whitening the rows of a leading-block structure
such as ARMA), then per level ``L_l L_l' = Lambda' A_l Lambda + I``, ``C_l = L_l^-1
Lambda' B_l`` and ``S = [X y]' V^-1 [X y] - sum_l C_l' C_l``, whose Cholesky factor gives
``log|R_X|^2`` and PWRSS.  The same formulas as the numpy code, summed in another order:
the two agree to rounding (tested), not to the last bit.

Every kernel returns ``(status, log|L_Z|^2, log|R_X|^2, PWRSS)`` with status 0, or 1 when a
level's ``L_l`` has a pivot <= 0, 2 when ``S`` is not finite, 3 when a pivot of ``S``
other than the response's is <= 0 (the caller raises :class:`numpy.linalg.LinAlgError`
as the numpy code does); a non-positive response pivot gives PWRSS 0 (an exact fit).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mixedmodels.core.variance_functions import LOG_SD_LIMIT
from mixedmodels.linalg.triangular_kernels import group_modes


@njit(cache=True, boundscheck=False, nogil=True)
def _level_schur(lam, head, s, low, c):  # pragma: no cover - compiled
    """Subtract ``sum_l C_l' C_l`` from the lower triangle of ``s`` (m, m) in place, from
    ``head`` (l, p, k) (``k = p + m``), keeping each level's factor ``L_l`` in ``low`` (l,
    p, p) and ``C_l`` in ``c`` (l, p, m); returns ``(status, log|L_Z|^2)``."""
    n_levels, p, k = head.shape
    m = k - p
    ld_z = 0.0
    a = np.empty((p, p))
    left = np.empty((p, k))
    for lev in range(n_levels):
        # lam' [Z'Z Z'[X y]] for the level: (p, k)
        for i in range(p):
            for j in range(k):
                acc = 0.0
                for e in range(p):
                    acc += lam[e, i] * head[lev, e, j]
                left[i, j] = acc
        # A = lam' Z'Z lam + I
        for i in range(p):
            for j in range(i + 1):
                acc = 0.0
                for e in range(p):
                    acc += left[i, e] * lam[e, j]
                a[i, j] = acc
            a[i, i] += 1.0
        # L L' = A, C = L^-1 lam' Z'[X y]
        for j in range(p):
            d = a[j, j]
            for e in range(j):
                d -= low[lev, j, e] * low[lev, j, e]
            if not d > 0.0:
                return 1, ld_z
            ljj = math.sqrt(d)
            low[lev, j, j] = ljj
            ld_z += math.log(d)
            for i in range(j + 1, p):
                v = a[i, j]
                for e in range(j):
                    v -= low[lev, i, e] * low[lev, j, e]
                low[lev, i, j] = v / ljj
            for b in range(m):
                v = left[j, p + b]
                for e in range(j):
                    v -= low[lev, j, e] * c[lev, e, b]
                c[lev, j, b] = v / ljj
        for i in range(m):
            for j in range(i + 1):
                acc = 0.0
                for e in range(p):
                    acc += c[lev, e, i] * c[lev, e, j]
                s[i, j] -= acc
    return 0, ld_z


@njit(cache=True, boundscheck=False, nogil=True)
def _fixed_pieces(s, n_fixed):  # pragma: no cover - compiled
    """``(status, log|R_X|^2, PWRSS)`` from the lower triangle of the Schur complement
    ``s`` (m, m), factored in place (LAPACK's unblocked ``dpotrf``, column by column); an
    exact fit (the response's pivot <= 0) leaves PWRSS 0 and the last pivot 0."""
    m = s.shape[0]
    for i in range(m):
        for j in range(i + 1):
            if not math.isfinite(s[i, j]):
                return 2, 0.0, 0.0
    ld_x = 0.0
    pwrss = 0.0
    for j in range(m):
        d = s[j, j]
        for e in range(j):
            d -= s[j, e] * s[j, e]
        if not d > 0.0:
            if j == m - 1:
                s[j, j] = 0.0
                return 0, ld_x, 0.0
            return 3, ld_x, 0.0
        ljj = math.sqrt(d)
        s[j, j] = ljj
        if j < n_fixed:
            ld_x += math.log(d)
        else:
            pwrss = d
        for i in range(j + 1, m):
            v = s[i, j]
            for e in range(j):
                v -= s[i, e] * s[j, e]
            s[i, j] = v / ljj
    return 0, ld_x, pwrss


@njit(cache=True, boundscheck=False, nogil=True)
def pieces(lam, head, s, n_fixed):  # pragma: no cover - compiled
    """``(status, log|L_Z|^2, log|R_X|^2, PWRSS)`` from the heads ``head`` (l, p, k) and
    the lower triangle of ``s = [X y]' V^-1 [X y]`` (m, m), which is overwritten
    (:func:`~mixedmodels.core.residual_heads.head_pieces`)."""
    n_levels, p, k = head.shape
    low = np.zeros((n_levels, p, p))
    c = np.empty((n_levels, p, k - p))
    status, ld_z = _level_schur(lam, head, s, low, c)
    if status:
        return status, ld_z, 0.0, 0.0
    status, ld_x, pwrss = _fixed_pieces(s, n_fixed)
    return status, ld_z, ld_x, pwrss


@njit(cache=True, boundscheck=False, nogil=True)
def solution(lam, head, s, n_fixed, beta, u, vcov):  # pragma: no cover - compiled
    """:func:`pieces` and the solution there
    (:func:`~mixedmodels.core.residual_heads.head_solution`): ``s`` becomes the lower
    Cholesky factor ``R`` of the Schur complement, ``beta`` (n_fixed,) solves ``R_X' beta =
    R_y``, the modes ``u`` (l, p) ``L_l' u_l = C_l,y - C_l,X beta`` and ``vcov`` (n_fixed,
    n_fixed) is ``(R_X R_X')^-1`` (:func:`~mixedmodels.core.lmm.unscaled_vcov`: the
    triangular inverse, then its cross product).  The pieces are :func:`pieces`' bit for
    bit (the same operations in the same order)."""
    n_levels, p, k = head.shape
    m = k - p
    low = np.zeros((n_levels, p, p))
    c = np.empty((n_levels, p, m))
    status, ld_z = _level_schur(lam, head, s, low, c)
    if status:
        return status, ld_z, 0.0, 0.0
    status, ld_x, pwrss = _fixed_pieces(s, n_fixed)
    if status:
        return status, ld_z, ld_x, pwrss
    for i in range(m):
        for j in range(i + 1, m):
            s[i, j] = 0.0
    for i in range(n_fixed - 1, -1, -1):
        v = s[m - 1, i]
        for j in range(i + 1, n_fixed):
            v -= s[j, i] * beta[j]
        beta[i] = v / s[i, i]
    group_modes(c, beta, low, u)
    rinv = np.zeros((n_fixed, n_fixed))
    for j in range(n_fixed):
        rinv[j, j] = 1.0 / s[j, j]
        for i in range(j + 1, n_fixed):
            v = 0.0
            for e in range(j, i):
                v -= s[i, e] * rinv[e, j]
            rinv[i, j] = v / s[i, i]
    for a in range(n_fixed):
        for b in range(a + 1):
            v = 0.0
            for i in range(a, n_fixed):
                v += rinv[i, a] * rinv[i, b]
            vcov[a, b] = v
            vcov[b, a] = v
    return status, ld_z, ld_x, pwrss


@njit(cache=True, boundscheck=False, nogil=True)
def heads_pieces(lam, head, xyxy, n_fixed):  # pragma: no cover - compiled
    """:func:`pieces` of ``head`` and a copy of ``xyxy`` (m, m)."""
    return pieces(lam, head, xyxy.copy(), n_fixed)


@njit(cache=True, boundscheck=False, nogil=True)
def linear_heads(w, head_basis, tail_basis, n_levels, p):  # pragma: no cover - compiled
    """``(status, head, s)``: the heads ``(w @ head_basis).reshape(l, p, k)`` and the lower
    triangle of ``s = (w @ tail_basis).reshape(m, m)`` (a
    :class:`~mixedmodels.core.residual_heads.LinearHeads` evaluation, or a variance
    function's strata weighting its per-stratum sums)."""
    t, width = head_basis.shape
    k = width // (n_levels * p)
    m = k - p
    head = np.zeros(width)
    for j in range(t):
        wj = w[j]
        for c in range(width):
            head[c] += wj * head_basis[j, c]
    square = m * m
    flat = np.zeros(square)
    for j in range(t):
        wj = w[j]
        for c in range(square):
            flat[c] += wj * tail_basis[j, c]
    return 0, head.reshape((n_levels, p, k)), flat.reshape((m, m))


@njit(cache=True, boundscheck=False, nogil=True)
def linear_pieces(lam, w, head_basis, tail_basis, n_levels, n_fixed):  # pragma: no cover
    """:func:`pieces` at :func:`linear_heads`."""
    _, head, s = linear_heads(w, head_basis, tail_basis, n_levels, lam.shape[0])
    return pieces(lam, head, s, n_fixed)


@njit(cache=True, boundscheck=False, nogil=True)
def weighted_heads(w, head_rows, tail_rows, level_starts, p):  # pragma: no cover - compiled
    """``(status, head, s)`` of rows weighted by ``w`` (n,): per level ``sum_i w_i
    head_rows[i]`` (``head_rows`` (n, p k): each row's products of its first ``p`` columns
    with all) and ``s = sum_i w_i tail_rows[i]`` (``tail_rows`` (n, m m), lower triangle);
    status 2 when a weighted sum is not finite (a variance function alone)."""
    n, width = head_rows.shape
    k = width // p
    m = k - p
    n_levels = level_starts.size
    head = np.zeros((n_levels, width))
    square = m * m
    flat = np.zeros(square)  # the whole square, contiguous (it vectorizes; lower used)
    for lev in range(n_levels):
        lo = level_starts[lev]
        hi = level_starts[lev + 1] if lev + 1 < n_levels else n
        for i in range(lo, hi):
            wi = w[i]
            for c in range(width):
                head[lev, c] += wi * head_rows[i, c]
            for c in range(square):
                flat[c] += wi * tail_rows[i, c]
    s = flat.reshape((m, m))
    status = 0
    for lev in range(n_levels):
        for c in range(width):
            if not math.isfinite(head[lev, c]):
                status = 2
    return status, head.reshape((n_levels, p, k)), s


@njit(cache=True, boundscheck=False, nogil=True)
def weighted_pieces(lam, w, head_rows, tail_rows, level_starts, n_fixed):  # pragma: no cover
    """:func:`pieces` at :func:`weighted_heads`."""
    status, head, s = weighted_heads(w, head_rows, tail_rows, level_starts, lam.shape[0])
    if status:
        return status, 0.0, 0.0, 0.0
    return pieces(lam, head, s, n_fixed)




@njit(cache=True, boundscheck=False, nogil=True)
def log_linear_weights(basis, u, w):  # pragma: no cover - compiled
    """``(status, sum log s)`` and the weights ``w_i = exp(-2 log s_i)`` (written to ``w``)
    of a log-linear variance function, ``log s = basis u`` (n, n_params); status 5 when a
    row's ``|log s|`` exceeds :data:`LOG_SD_LIMIT` or is not finite."""
    n, t = basis.shape
    total = 0.0
    for i in range(n):
        v = 0.0
        for j in range(t):
            v += basis[i, j] * u[j]
        if not abs(v) <= LOG_SD_LIMIT:
            return 5, 0.0
        total += v
        w[i] = math.exp(-2.0 * v)
    return 0, total


@njit(cache=True, boundscheck=False, nogil=True)
def log_linear_pieces(
    lam, basis, u, head_rows, tail_rows, level_starts, n_fixed
):  # pragma: no cover - compiled
    """``(status, log|L_Z|^2, log|R_X|^2, PWRSS, log|V|)`` of a log-linear variance
    function alone (:func:`log_linear_weights`, then :func:`weighted_pieces`)."""
    w = np.empty(basis.shape[0])
    status, total = log_linear_weights(basis, u, w)
    if status:
        return status, 0.0, 0.0, 0.0, 0.0
    status, ld_z, ld_x, pwrss = weighted_pieces(lam, w, head_rows, tail_rows, level_starts,
                                                n_fixed)
    return status, ld_z, ld_x, pwrss, 2.0 * total


@njit(cache=True, boundscheck=False, nogil=True)
def log_linear_heads(basis, u, head_rows, tail_rows, level_starts, p):  # pragma: no cover
    """``(status, head, s, log|V|)``: :func:`weighted_heads` at
    :func:`log_linear_weights`."""
    w = np.empty(basis.shape[0])
    status, total = log_linear_weights(basis, u, w)
    if status:
        w[:] = 1.0
    status2, head, s = weighted_heads(w, head_rows, tail_rows, level_starts, p)
    return max(status, status2), head, s, 2.0 * total


@njit(cache=True, boundscheck=False, nogil=True)
def leading_heads(acf, lags, rows, sizes, group_level, n_levels, p):  # pragma: no cover
    """``(status, head, s, log|R|)`` of a structure whose groups' correlation factors are
    leading blocks of the longest group's
    (:class:`~mixedmodels.core.residual.LeadingBlockPlan`): the correlation ``acf[lags]``
    of the longest pattern's rows factored once (``U'U``, row by row), all groups' rows
    whitened together by forward substitution with it (``rows`` (longest, g k): group
    ``g``'s rows in columns ``g k .. g k + k - 1``, zeros beyond its end, whose whitened
    values are not used: each group's factor is the leading block of its size), and their
    products summed per level; status 4 when the correlation matrix is not positive
    definite or not finite."""
    longest, width = rows.shape
    k = width // sizes.size
    m = k - p
    head = np.zeros((n_levels, p, k))
    s = np.zeros((m, m))
    a = np.empty((longest, longest))
    for i in range(longest):
        for j in range(i, longest):
            a[i, j] = acf[lags[i, j]]
    upper = np.zeros((longest, longest))
    log_diag = np.empty(longest)
    for j in range(longest):
        d = a[j, j]
        if not (d > 0.0 and math.isfinite(d)):
            return 4, head, s, 0.0
        ujj = math.sqrt(d)
        upper[j, j] = ujj
        log_diag[j] = math.log(ujj)
        for i in range(j + 1, longest):
            upper[j, i] = a[j, i] / ujj
        for i in range(j + 1, longest):
            f = upper[j, i]
            for c in range(i, longest):
                a[i, c] -= f * upper[j, c]
    white = rows.copy()
    for r in range(longest):
        target = white[r]
        for e in range(r):
            coef = upper[e, r]
            source = white[e]
            for c in range(width):
                target[c] -= coef * source[c]
        diag = upper[r, r]
        for c in range(width):
            target[c] /= diag
    log_det = 0.0
    for g in range(sizes.size):
        lev = group_level[g]
        base = g * k
        for r in range(sizes[g]):
            log_det += log_diag[r]
            for i in range(p):
                wi = white[r, base + i]
                for c in range(k):
                    head[lev, i, c] += wi * white[r, base + c]
            for i in range(m):
                wi = white[r, base + p + i]
                for c in range(i + 1):
                    s[i, c] += wi * white[r, base + p + c]
    return 0, head, s, 2.0 * log_det


@njit(cache=True, boundscheck=False, nogil=True)
def _durbin_levinson(partial, sign):  # pragma: no cover - compiled
    """:func:`mixedmodels.core.residual._durbin_levinson` (coefficients from partial
    autocorrelations)."""
    n = partial.size
    coef = np.zeros(n)
    new = np.zeros(n)
    for k in range(n):
        r = partial[k]
        for j in range(k):
            new[j] = coef[j] + sign * r * coef[k - 1 - j]
        new[k] = r
        for j in range(k + 1):
            coef[j] = new[j]
    return coef


@njit(cache=True, boundscheck=False, nogil=True)
def arma_parts(u, n_ar, max_lag):  # pragma: no cover - compiled
    """``(status, acf, phi, ma, gamma_0)``: the autocorrelations at lags ``0 .. max_lag``
    of the ARMA process with unconstrained parameters ``u`` (``n_ar`` autoregressive first), as
    :meth:`mixedmodels.core.residual.ARMA.natural` and
    :func:`mixedmodels.core.residual.arma_autocorrelation` compute them (the same
    recursions and the same partially pivoted elimination), the coefficients and the
    process's variance for a unit innovation variance; status 4 when the autocovariance
    equations are singular."""
    r = np.tanh(u / 2.0)
    phi = _durbin_levinson(r[:n_ar], -1.0)
    ma = _durbin_levinson(r[n_ar:], 1.0)
    p = n_ar
    q = ma.size
    theta = np.empty(q + 1)
    theta[0] = 1.0
    for i in range(q):
        theta[i + 1] = ma[i]
    psi = np.zeros(q + 1)
    psi[0] = 1.0
    for i in range(1, q + 1):
        acc = theta[i]
        for j in range(min(p, i)):
            acc += phi[j] * psi[i - j - 1]
        psi[i] = acc
    n_c = max(p, q) + 1
    c = np.zeros(n_c)
    for k in range(n_c):
        acc = 0.0
        for j in range(k, q + 1):
            acc += theta[j] * psi[j - k]
        c[k] = acc
    n_lag = max(max_lag, max(p, q)) + 1
    gamma = np.zeros(n_lag)
    if p:
        a = np.zeros((p + 1, p + 2))
        for k in range(p + 1):
            a[k, k] = 1.0
            a[k, p + 1] = c[k]
        for k in range(p + 1):
            for j in range(1, p + 1):
                a[k, abs(k - j)] -= phi[j - 1]
        n = p + 1
        for col in range(n):
            pivot = col
            for row in range(col + 1, n):
                if abs(a[row, col]) > abs(a[pivot, col]):
                    pivot = row
            if not abs(a[pivot, col]) > 0.0:
                return 4, gamma[: max_lag + 1], phi, ma, 1.0
            if pivot != col:
                for j in range(n + 1):
                    tmp = a[col, j]
                    a[col, j] = a[pivot, j]
                    a[pivot, j] = tmp
            for row in range(col + 1, n):
                f = a[row, col] / a[col, col]
                if f != 0.0:
                    for j in range(col, n + 1):
                        a[row, j] -= f * a[col, j]
        for row in range(n - 1, -1, -1):
            acc = 0.0
            for j in range(row + 1, n):
                acc += a[row, j] * gamma[j]
            gamma[row] = (a[row, n] - acc) / a[row, row]
    else:
        gamma[0] = c[0]
    for k in range(p + 1, n_lag):
        value = c[k] if k <= q else 0.0
        for j in range(p):
            value += phi[j] * gamma[k - j - 1]
        gamma[k] = value
    out = np.empty(max_lag + 1)
    g0 = gamma[0]
    for k in range(max_lag + 1):
        out[k] = gamma[k] / g0
    return 0, out, phi, ma, g0


@njit(cache=True, boundscheck=False, nogil=True)
def arma_acf(u, n_ar, max_lag):  # pragma: no cover - compiled
    """``(status, acf)`` of :func:`arma_parts`."""
    status, acf, _, _, _ = arma_parts(u, n_ar, max_lag)
    return status, acf


@njit(cache=True, boundscheck=False, nogil=True)
def arma_innovations_heads(
    u, n_ar, padded, sizes, group_level, n_levels, p
):  # pragma: no cover - compiled
    """:func:`arma_heads` for groups at consecutive times (rows ``padded`` (g, longest, k),
    each group's first ``sizes[g]``), whitened by the innovations algorithm (Brockwell and
    Davis, section 5.3): with ``h = max(p, q)``, ``W_t = X_t`` for ``t <= h`` and ``W_t =
    X_t - sum_r phi_r X_{t-r}`` beyond, whose covariance ``kappa`` is banded; the one-step
    predictors ``W_t = sum_j theta_{t-1,j} U_{t-j}`` (``j <= q`` from ``t > h`` on) and the
    innovations' variances ``v_{t-1}`` give the whitened rows ``U_t / sqrt(v_{t-1})`` and
    ``log|R| = sum log v``: the Cholesky factor of the correlation, ``A^-1 Theta
    D^(1/2)``, applied in ``O(p + q)`` per row instead of ``O(longest)``."""
    n_groups, longest, k = padded.shape
    m = k - p
    head = np.zeros((n_levels, p, k))
    s = np.zeros((m, m))
    status, acf, phi, ma, g0 = arma_parts(u, n_ar, longest)
    if status:
        return status, head, s, 0.0
    q = ma.size
    h = max(n_ar, q)
    sigma2 = 1.0 / g0  # the innovations' variance on the correlations' scale
    theta = np.zeros(q + 1)
    theta[0] = 1.0
    for r in range(q):
        theta[r + 1] = ma[r]
    width = max(h, 1)
    th = np.zeros((longest, width + 1))  # th[n, j] = theta_{n, j}
    v = np.empty(longest)
    for n in range(longest):
        # kappa(n + 1, k + 1) for the k that matter (1-based times n + 1 and k + 1)
        lo = 0 if n < h else n - q
        for kk in range(lo, n + 1):
            i1, j1 = n + 1, kk + 1  # i1 >= j1
            lag = i1 - j1
            if i1 <= h:
                kap = acf[lag]
            elif j1 <= h:
                if i1 > 2 * h:
                    kap = 0.0
                else:
                    kap = acf[lag]
                    for r in range(1, n_ar + 1):
                        kap -= phi[r - 1] * acf[abs(r - lag)]
            elif lag <= q:
                kap = 0.0
                for r in range(q - lag + 1):
                    kap += theta[r] * theta[r + lag]
                kap *= sigma2
            else:
                kap = 0.0
            if kk < n:
                # theta_{n,n-kk} = (kappa - sum_j theta_{kk,kk-j} theta_{n,n-j} v_j) / v_kk
                acc = kap
                for j in range(max(lo, 0), kk):
                    if kk - j <= width:
                        acc -= th[kk, kk - j] * th[n, n - j] * v[j]
                th[n, n - kk] = acc / v[kk]
            else:
                acc = kap
                for j in range(lo, n):
                    acc -= th[n, n - j] * th[n, n - j] * v[j]
                if not (acc > 0.0 and math.isfinite(acc)):
                    return 4, head, s, 0.0
                v[n] = acc
    scale = np.empty(longest)
    log_v = np.empty(longest)
    for n in range(longest):
        scale[n] = 1.0 / math.sqrt(v[n])
        log_v[n] = math.log(v[n])
    innov = np.empty((longest, k))
    white = np.empty(k)
    log_det = 0.0
    for g in range(n_groups):
        lev = group_level[g]
        for t in range(sizes[g]):
            log_det += log_v[t]
            for c in range(k):
                w = padded[g, t, c]
                if t >= h:
                    for r in range(1, n_ar + 1):
                        w -= phi[r - 1] * padded[g, t - r, c]
                lo = 0 if t < h else t - q
                for j in range(lo, t):
                    w -= th[t, t - j] * innov[j, c]
                innov[t, c] = w
                white[c] = w * scale[t]
            for a in range(p):
                wa = white[a]
                for c in range(k):
                    head[lev, a, c] += wa * white[c]
            for a in range(m):
                wa = white[p + a]
                for b in range(a + 1):
                    s[a, b] += wa * white[p + b]
    return 0, head, s, log_det


@njit(cache=True, boundscheck=False, nogil=True)
def arma_innovations_pieces(
    lam, u, n_ar, padded, sizes, group_level, n_levels, n_fixed
):  # pragma: no cover - compiled
    """``(status, log|L_Z|^2, log|R_X|^2, PWRSS, log|R|)``: :func:`pieces` at
    :func:`arma_innovations_heads`."""
    status, head, s, log_det = arma_innovations_heads(
        u, n_ar, padded, sizes, group_level, n_levels, lam.shape[0]
    )
    if status:
        return status, 0.0, 0.0, 0.0, log_det
    status, ld_z, ld_x, pwrss = pieces(lam, head, s, n_fixed)
    return status, ld_z, ld_x, pwrss, log_det


@njit(cache=True, boundscheck=False, nogil=True)
def arma_heads(
    u, n_ar, max_lag, lags, rows, sizes, group_level, n_levels, p
):  # pragma: no cover - compiled
    """:func:`leading_heads` with the autocorrelations of an ARMA structure at its
    unconstrained parameters ``u`` (:func:`arma_acf`)."""
    status, acf = arma_acf(u, n_ar, max_lag)
    if status:
        k = rows.shape[1] // sizes.size
        return status, np.zeros((n_levels, p, k)), np.zeros((k - p, k - p)), 0.0
    return leading_heads(acf, lags, rows, sizes, group_level, n_levels, p)


@njit(cache=True, boundscheck=False, nogil=True)
def arma_pieces(
    lam, u, n_ar, max_lag, lags, rows, sizes, group_level, n_levels, n_fixed
):  # pragma: no cover - compiled
    """``(status, log|L_Z|^2, log|R_X|^2, PWRSS, log|R|)``: :func:`pieces` at
    :func:`arma_heads`."""
    status, head, s, log_det = arma_heads(
        u, n_ar, max_lag, lags, rows, sizes, group_level, n_levels, lam.shape[0]
    )
    if status:
        return status, 0.0, 0.0, 0.0, log_det
    status, ld_z, ld_x, pwrss = pieces(lam, head, s, n_fixed)
    return status, ld_z, ld_x, pwrss, log_det


@njit(cache=True, boundscheck=False, nogil=True)
def bidiagonal_basis(M, level, gap_index, n_levels, n_gaps):  # pragma: no cover - compiled
    """The basis of :class:`~mixedmodels.core.residual.BidiagonalPlan` in one pass over the
    rows ``M`` (n, k): per level, ``F = sum m_i m_i'`` over the groups' first rows
    (``gap_index`` -1) and, for the rows whose gap to the previous row is gap ``d``
    (``gap_index`` d), ``A_d = sum m_i m_i'``, ``B_d = sum m_{i-1} m_{i-1}'`` and ``C_d +
    C_d' = sum m_i m_{i-1}' + m_{i-1} m_i'``, as (1 + 3 gaps, l, k, k)."""
    n, k = M.shape
    basis = np.zeros((1 + 3 * n_gaps, n_levels, k, k))
    for i in range(n):
        lev = level[i]
        g = gap_index[i]
        if g < 0:
            for a in range(k):
                ma = M[i, a]
                for b in range(k):
                    basis[0, lev, a, b] += ma * M[i, b]
            continue
        for a in range(k):
            ma = M[i, a]
            pa = M[i - 1, a]
            for b in range(k):
                mb = M[i, b]
                pb = M[i - 1, b]
                basis[1 + 3 * g, lev, a, b] += ma * mb
                basis[2 + 3 * g, lev, a, b] += pa * pb
                basis[3 + 3 * g, lev, a, b] += ma * pb + pa * mb
    return basis


@njit(cache=True, boundscheck=False, nogil=True)
def bidiagonal_heads(M, s, phi, gaps, first, level_starts, p):  # pragma: no cover
    """``(status, head, s, log|R|)`` of rows ``M`` (n, k) divided by the multipliers ``s``
    (n,) and whitened by an AR(1)-type bidiagonal transform, ``e_i = (m_i / s_i - a_i
    m_{i-1} / s_{i-1}) / sqrt(1 - a_i^2)`` with ``a_i = Phi^gap_i`` (0 on a group's
    first row), summed per level as :func:`weighted_heads` does: one pass over the rows
    (a correlation beside a variance function with parameters, or gaps too many for a
    plan).  ``log|R| = sum log(1 - a_i^2)`` (the multipliers' ``log|S|^2`` is the
    caller's); status 1 when ``|a_i| >= 1``, 2 when a sum is not finite."""
    n, k = M.shape
    m = k - p
    n_levels = level_starts.size
    head = np.zeros((n_levels, p, k))
    square = m * m
    flat = np.zeros(square)
    prev = np.zeros(k)
    cur = np.empty(k)
    e = np.empty(k)
    sign = 1.0 if phi >= 0.0 else -1.0
    size = abs(phi)
    log_det = 0.0
    lev = -1
    next_start = 0
    for i in range(n):
        while i >= next_start:
            lev += 1
            next_start = level_starts[lev + 1] if lev + 1 < n_levels else n
        si = s[i]
        for c in range(k):
            cur[c] = M[i, c] / si
        if first[i]:
            for c in range(k):
                e[c] = cur[c]
        else:
            g = gaps[i]
            a = sign**g * size**g
            scale = 1.0 - a * a
            if not scale > 0.0:
                return 1, head, flat.reshape((m, m)), 0.0
            root = math.sqrt(scale)
            log_det += math.log(root)
            for c in range(k):
                e[c] = (cur[c] - a * prev[c]) / root
        for c in range(k):
            prev[c] = cur[c]
        for a_ in range(p):
            wa = e[a_]
            for c in range(k):
                head[lev, a_, c] += wa * e[c]
        for a_ in range(m):
            wa = e[p + a_]
            for c in range(m):
                flat[a_ * m + c] += wa * e[p + c]
    for c in range(square):
        if not math.isfinite(flat[c]):
            return 2, head, flat.reshape((m, m)), 0.0
    for lev in range(n_levels):
        for a_ in range(p):
            for c in range(k):
                if not math.isfinite(head[lev, a_, c]):
                    return 2, head, flat.reshape((m, m)), 0.0
    return 0, head, flat.reshape((m, m)), 2.0 * log_det


@njit(cache=True, boundscheck=False, nogil=True)
def bidiagonal_pieces(lam, M, s, phi, gaps, first, level_starts, n_fixed):  # pragma: no cover
    """``(status, log|L_Z|^2, log|R_X|^2, PWRSS, log|R|)``: :func:`pieces` at
    :func:`bidiagonal_heads`."""
    status, head, sq, log_det = bidiagonal_heads(M, s, phi, gaps, first, level_starts,
                                                 lam.shape[0])
    if status:
        return status, 0.0, 0.0, 0.0, log_det
    status, ld_z, ld_x, pwrss = pieces(lam, head, sq, n_fixed)
    return status, ld_z, ld_x, pwrss, log_det


@njit(cache=True, boundscheck=False, nogil=True)
def strata_log_linear_pieces(
    lam, basis, u, head_basis, tail_basis, n_levels, n_fixed
):  # pragma: no cover - compiled
    """``(status, log|L_Z|^2, log|R_X|^2, PWRSS)`` of a variance function alone whose
    strata's multipliers are log-linear, ``log s = basis u`` (k, n_params): the strata
    weighted by ``exp(-2 log s)`` (:func:`linear_pieces` over the per-stratum sums); status
    5 when a stratum's ``|log s|`` exceeds :data:`LOG_SD_LIMIT` or is not finite."""
    w = np.empty(basis.shape[0])
    status, _ = log_linear_weights(basis, u, w)
    if status:
        return status, 0.0, 0.0, 0.0
    return linear_pieces(lam, w, head_basis, tail_basis, n_levels, n_fixed)


@njit(cache=True, boundscheck=False, nogil=True)
def strata_log_linear_heads(
    basis, u, head_basis, tail_basis, n_levels, p
):  # pragma: no cover - compiled
    """``(status, head, s)``: :func:`linear_heads` at the strata's weights ``exp(-2 basis
    u)``."""
    w = np.empty(basis.shape[0])
    status, _ = log_linear_weights(basis, u, w)
    if status:
        w[:] = 1.0
    _, head, sq = linear_heads(w, head_basis, tail_basis, n_levels, p)
    return status, head, sq
