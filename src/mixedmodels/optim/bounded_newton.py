"""Newton's method on a small bounded problem with an analytic gradient: the covariance
(and variance-function) steps of the nonlinear models' Lindstrom-Bates alternation and the
polish of their Laplace fits.

:func:`newton_gradient` takes Newton steps with the Hessian from forward differences of
the gradient (``k + 1`` gradient calls a step), halving a step until the objective falls,
and handles lower bounds by holding coordinates there and probing each one 1e-3 inside
(:func:`_probe_bounds`); :func:`newton_polish` does the same from function values alone.

On the profiled ML deviance of a nonlinear model's linearized covariance step (a
:class:`~mixedmodels.core.nonlinear.KernelDevianceGradient`, at most three coordinates)
:func:`newton_gradient` runs as one compiled call
(:func:`mixedmodels.core.nonlinear_kernels.newton_ml`: the same operations on the same
values, the same point and count) where numba loads and :func:`compiled_newton_matches`;
the Python loop here is the general path and the numpy one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixedmodels.core.nonlinear import KernelDevianceGradient, pls_kernels
from mixedmodels.linalg.blocks import NotPositiveDefiniteError

_max = np.maximum.reduce  # (the ufunc's reduce: np.max's wrapper cost more than the work)

try:  # numpy's LAPACK gufunc behind np.linalg.eigh (its checks and casts cost 7 of 10 us)
    from numpy.linalg import _umath_linalg
except ImportError:  # pragma: no cover - a numpy without it
    _umath_linalg = None


def _eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` of a finite symmetric float64 matrix (the same LAPACK call, the
    same values); a non-finite matrix or a LAPACK failure is a LinAlgError, as there."""
    if _umath_linalg is None or a.dtype != np.float64 or a.ndim != 2:
        return np.linalg.eigh(a)
    if not all(map(math.isfinite, a.ravel().tolist())):
        raise np.linalg.LinAlgError("the Hessian is not finite")
    values, vectors = _umath_linalg.eigh_lo(a, signature="d->dd")
    if not all(map(math.isfinite, values.tolist())):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    return values, vectors


@dataclass(frozen=True)
class _Probes:
    moved: bool
    evaluations: int


def _probe_bounds(call, x, value, grad, lower, at_bound):
    """Try each coordinate on its lower bound 1e-3 inside it (at a diagonal entry of 0 the
    deviance is even in that entry, so its gradient cannot say whether to leave); keep a
    point that lowers the deviance.  Returns ``(x, value, grad, _Probes)``."""
    moved, evaluations = False, 0
    for i in np.flatnonzero(at_bound):
        z = x.copy()
        z[i] = lower[i] + 1e-3
        evaluations += 1
        z_value, z_grad = call(z)
        if z_grad is not None and z_value < value:
            x, value, grad, moved = z, z_value, z_grad, True
    return x, value, grad, _Probes(moved, evaluations)


def newton_gradient(fun_grad, x, lower, iterations: int = 30, cache: dict | None = None,
                    stop: float = 1e-10):
    """Newton's method with an analytic gradient and a Hessian from forward differences of
    it (``k + 1`` gradient evaluations per step), step halving, and the bounds handled by
    freezing a coordinate on its bound whose gradient points outwards.

    ``cache`` carries the last Hessian from one call to the next (the alternation's LME
    steps solve nearby problems): the first step of a call uses it, every later step a
    fresh one; the decision to stop uses a fresh one unless the carried one is convex and
    predicts no gain from the start (then the start is the optimum).

    Returns the point, the number of evaluations and whether the predicted decrease of the
    last step fell below ``stop`` (an optimum).
    """
    if isinstance(fun_grad, KernelDevianceGradient):
        found = _newton_kernel(fun_grad, x, lower, iterations, cache, stop)
        if found is not None:
            return found
    x = np.asarray(x, dtype=float).copy()
    count = 0
    stale = cache.get("hessian") if cache is not None else None

    # (the bookkeeping on a handful of coordinates in Python floats, the linear algebra
    # by numpy: the same operations, a tenth of the calls)
    isfinite = math.isfinite

    def call(z):
        try:
            value, grad = fun_grad(z)
        except (NotPositiveDefiniteError, np.linalg.LinAlgError):
            return np.inf, None
        finite = isfinite(value) and all(map(isfinite, grad.tolist()))
        return (value, grad) if finite else (np.inf, None)

    value, grad = call(x)
    count += 1
    if grad is None:
        return x, count, False
    size = x.size
    # (the bounds in Python floats: ``where(isfinite(lower), lower, 0) + 1e-10``, the same
    # sums; no array of indices or of flags unless a coordinate is held or probed)
    lower_list = np.asarray(lower, dtype=float).tolist()
    finite_list = [isfinite(v) for v in lower_list]
    edge_list = [(v if f else 0.0) + 1e-10 for v, f in zip(lower_list, finite_list,
                                                             strict=True)]
    for _ in range(iterations):
        at_list = [f and xi <= e for f, xi, e in zip(finite_list, x.tolist(), edge_list,
                                                      strict=True)]
        free_list = [i for i, (b, g) in enumerate(zip(at_list, grad.tolist(), strict=True))
                     if not b or g < 0]
        # (every coordinate free, the usual case: plain arrays instead of fancy indices)
        k = len(free_list)
        all_free = k == size
        if k == 0:  # all on their bounds: optimal unless the probe moves one
            x, value, grad, probes = _probe_bounds(call, x, value, grad, lower,
                                                   np.array(at_list, dtype=bool))
            count += probes.evaluations
            if probes.moved:
                continue
            return x, count, True
        free = None if all_free else np.array(free_list, dtype=np.intp)
        fresh = stale is None
        grad_free = grad if all_free else grad[free]
        if fresh:
            hess = np.empty((k, k))
            xs = x.tolist()
            for a, i in enumerate(free_list):
                h = 1e-6 * max(abs(xs[i]), 0.1)
                z = x.copy()
                z[i] = xs[i] + h  # (the same sum as z[i] += h)
                _, gz = call(z)
                count += 1
                if gz is None:
                    return x, count, False
                hess[:, a] = ((gz if all_free else gz[free]) - grad_free) / h
            hess = (hess + hess.T) / 2
            if cache is not None:
                if all_free:
                    full = hess
                else:
                    full = np.eye(size)
                    full[np.ix_(free, free)] = hess
                cache["hessian"] = full
        else:
            hess = stale if all_free else stale[np.ix_(free, free)]
        stale = None
        try:
            # away from the optimum the deviance need not be convex: flip and floor the
            # Hessian's eigenvalues so the step still goes downhill
            values, vectors = _eigh(hess)
        except np.linalg.LinAlgError:
            return x, count, False
        eigen = values.tolist()
        if not all(map(isfinite, eigen)):
            return x, count, False
        convex = min(eigen) > 0
        magnitude = np.abs(values)
        floor = 1e-8 * max(max(map(abs, eigen)), 1e-12)
        # (``v if v >= floor else floor`` for finite v: the ufunc's maximum, the same values)
        values = np.maximum(magnitude, floor)
        step = -vectors @ ((vectors.T @ grad_free) / values)
        predicted = 0.5 * abs(float(grad_free @ step))
        if predicted < stop and not fresh and not convex:
            # decide with a fresh Hessian; a convex stale one (the previous LME step's, of
            # a nearby problem) that predicts no gain already says optimum: the fresh one
            # cost k evaluations per alternation (Soybean varPower: 134 -> 110 in all)
            continue
        if predicted < stop:
            # a flat point that is not a minimum is no answer; nor is one where a
            # coordinate on its bound would rather leave it (at a diagonal entry of 0 the
            # deviance is even in that entry, so its gradient vanishes there)
            x, value, grad, probes = _probe_bounds(call, x, value, grad, lower,
                                                   np.array(at_list, dtype=bool))
            count += probes.evaluations
            if probes.moved:
                continue
            return x, count, convex
        factor = 1.0
        while factor > 1e-4:
            if all_free:  # (factor 1: x + step, the same bits as x + 1.0 * step)
                trial = np.maximum(x + step if factor == 1.0 else x + factor * step, lower)
            else:
                trial = x.copy()
                trial[free] = np.maximum(x[free] + factor * step, lower[free])
            new_value, new_grad = call(trial)
            count += 1
            if new_grad is not None and new_value <= value:
                break
            factor /= 2
        else:
            # no decrease: with a tighter ``stop`` than 1e-10 a predicted gain this small is
            # below the deviance's rounding (an optimum, as ``stop = 1e-10`` would say)
            return x, count, convex and predicted < 1e-10
        x, value, grad = trial, new_value, new_grad
    return x, count, False


#: Run :func:`newton_gradient` on a :class:`~mixedmodels.core.nonlinear.KernelDevianceGradient`
#: by the compiled loop where it can; False forces the Python loop (the tests compare both).
USE_KERNELS = True
_MATCHES: list[bool] = []  # (the answer of compiled_newton_matches, once asked)


def compiled_newton_matches() -> bool:
    """Whether the compiled loop's eigen-decomposition, step and predicted gain
    (:func:`mixedmodels.core.nonlinear_kernels.flip_floor`) are numpy's to the last bit on
    fixed symmetric matrices of one to three rows, some indefinite, and their gradients:
    the kernel writes the step's products as the fused multiply-adds of numpy's OpenBLAS
    on x86-64; another BLAS (or LAPACK) may round them otherwise, and then the Python loop
    runs (the compiled one would reach the optimum by a path apart in the last bits)."""
    if not _MATCHES:
        module = pls_kernels()
        if module is None:  # (switched off or no numba: not remembered)
            return False
        try:
            same = _same_steps(module)
        except Exception:  # noqa: BLE001 - a kernel that fails to compile: the Python loop
            same = False
        _MATCHES.append(same)
    return _MATCHES[0]


def _same_steps(module) -> bool:
    rng = np.random.default_rng(20261128)
    for k in (1, 2, 3) * 8:
        a = rng.standard_normal((k, k)) * 10.0 ** rng.uniform(-3, 3, (k, k))
        hess = (a + a.T) / 2
        g = rng.standard_normal(k) * 10.0 ** rng.uniform(-4, 4)
        values, vectors = _eigh(hess)
        convex = values.min() > 0
        floor = 1e-8 * max(max(map(abs, values.tolist())), 1e-12)
        step = -vectors @ ((vectors.T @ g) / np.maximum(np.abs(values), floor))
        predicted = 0.5 * abs(float(g @ step))
        out = np.empty(k)
        status, k_convex, k_predicted = module.flip_floor(hess.copy(), out, g)
        if status or k_convex != convex or k_predicted != predicted or not np.array_equal(
                out, step):
            return False
    return True


def _newton_kernel(f: KernelDevianceGradient, x, lower, iterations, cache, stop):
    """:func:`newton_gradient` by :func:`mixedmodels.core.nonlinear_kernels.newton_ml`, or
    None where the compiled loop does not run (switched off, more than three coordinates,
    a carried Hessian of another size, numpy's products rounded otherwise)."""
    x = np.array(x, dtype=float)
    size = x.size
    stale = cache.get("hessian") if cache is not None else None
    if (not USE_KERNELS or size > 3 or (stale is not None and stale.shape != (size, size))
            or not (_MATCHES[0] if _MATCHES else compiled_newton_matches())):
        return None
    store = np.empty((size, size))
    count, ok, stored = f.module.newton_ml(
        f.ztz, f.ztm, f.mtm, f.lam, f.positions, f.rows, f.cols, f.n, x,
        np.asarray(lower, dtype=float), iterations, stop,
        _NO_HESSIAN if stale is None else np.ascontiguousarray(stale, dtype=float),
        stale is not None, store, f.beta, f.u,
        f.reduced, f.rx, f.low)
    if stored and cache is not None:
        cache["hessian"] = store
    return x, count, ok


_NO_HESSIAN = np.zeros((0, 0))


def newton_polish(fun, x, lower, iterations: int = 4):
    """Newton steps with central-difference derivatives on the coordinates that are off
    their bounds: BOBYQA stops when its trust region is small, which on the flat directions
    of a likelihood can leave the covariance parameters 1e-4 from the optimum; the
    alternation's fixed point needs them to 1e-8.  A step is kept only when it lowers
    ``fun``.

    Returns the point, the number of evaluations and whether it is an optimum: the last
    step changed ``fun`` by less than 1e-10 and no coordinate on its bound wants to leave
    it.
    """
    x = np.asarray(x, dtype=float).copy()
    count = 0
    try:
        best = fun(x)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError):
        return x, 0, False
    count += 1
    ok = False
    for _ in range(iterations):
        finite = np.isfinite(lower)
        lo = np.where(finite, lower, 0.0)
        margin = np.where(finite, lo + 1e-6 * np.maximum(1.0, np.abs(lo)), -np.inf)
        free = np.flatnonzero(x > margin)
        if free.size == 0:
            ok = True
            break
        h = 1e-4 * np.maximum(np.abs(x[free]), 0.1)
        k = free.size
        grad = np.empty(k)
        hess = np.empty((k, k))
        try:
            f0 = best
            fp = np.empty(k)
            fm = np.empty(k)
            for a, i in enumerate(free):
                e = np.zeros_like(x)
                e[i] = h[a]
                fp[a], fm[a] = fun(x + e), fun(x - e)
                grad[a] = (fp[a] - fm[a]) / (2 * h[a])
                hess[a, a] = (fp[a] - 2 * f0 + fm[a]) / h[a] ** 2
            count += 2 * k
            for a in range(k):
                for c in range(a + 1, k):
                    e = np.zeros_like(x)
                    e[free[a]], e[free[c]] = h[a], h[c]
                    fpp = fun(x + e)
                    count += 1
                    hess[a, c] = hess[c, a] = (fpp - fp[a] - fp[c] + f0) / (h[a] * h[c])
            if not np.all(np.isfinite(hess)) or np.any(np.linalg.eigvalsh(hess) <= 0):
                break
            step = -np.linalg.solve(hess, grad)
        except (NotPositiveDefiniteError, np.linalg.LinAlgError):
            break
        if not np.all(np.isfinite(step)):
            break
        trial = x.copy()
        trial[free] = np.maximum(trial[free] + step, lower[free])
        try:
            value = fun(trial)
        except (NotPositiveDefiniteError, np.linalg.LinAlgError):
            break
        count += 1
        if not value <= best:
            ok = abs(grad @ step) < 1e-9  # at the optimum within rounding
            break
        improvement = best - value
        x, best = trial, value
        # a Newton step predicted to gain this little started close enough that the point
        # it reached is the optimum to far below the alternation's tolerance
        if improvement < 1e-10 or 0.5 * abs(grad @ step) < 1e-8:
            ok = True
            break
    if ok:
        for i in np.flatnonzero(np.isfinite(lower) & (x <= lower + 1e-6)):
            e = np.zeros_like(x)
            e[i] = 1e-4
            try:
                if fun(x + e) < best:
                    ok = False
            except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                pass
            count += 1
    return x, count, ok
