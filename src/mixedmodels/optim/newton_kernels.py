"""Compiled kernel of :mod:`mixedmodels.optim.bounded_newton` (numba): the covariance step of
a nonlinear mixed model without a variance function, Newton's method on the profiled ML
deviance of the linearized model, as one call.

Imported only through :mod:`mixedmodels.optim.bounded_newton` (numba is optional).
:func:`newton_ml` runs :func:`~mixedmodels.optim.bounded_newton.newton_gradient`'s algorithm
(its forward-difference Hessian, eigenvalue flip and floor, halving line search, bound
freezing, 1e-3 probes, stop rules and carried Hessian) over the compiled deviance and
gradient (:func:`mixedmodels.core.nonlinear_kernels.pls_groups`), on the same values in the
same order of operations:

- the Hessian's eigen-decomposition is LAPACK's ``dsyevd`` (numba's ``np.linalg.eigh``, the
  routine numpy's ``eigh`` calls);
- the step ``-V ((V' g) / |values|)`` and the predicted gain ``0.5 |g' step|`` are written
  as the fused multiply-adds numpy's OpenBLAS computes them with for 1 to 3 coordinates
  (``dgemv`` and ``ddot`` on x86-64 with FMA: :func:`eigen_step`); the caller uses this
  kernel only where a check on fixed values finds numpy's products the same
  (:func:`mixedmodels.optim.bounded_newton.compiled_newton_matches`);
- the deviance's ``log`` is the C library's, numpy's may differ in the last bit on ~1e-4 of
  arguments; the path depends on the deviance only through comparisons of two values.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from mixedmodels.core.nonlinear_kernels import pls_groups

#: Most coordinates :func:`newton_ml` takes (numpy's BLAS sums longer products in blocks).
MAX_SIZE = 3


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
