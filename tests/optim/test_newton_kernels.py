"""The compiled Newton loop of the covariance step against the Python loop.

:func:`mixedmodels.optim.bounded_newton.newton_gradient` runs as one compiled call
(:func:`mixedmodels.core.nonlinear_kernels.newton_ml`) on a
:class:`~mixedmodels.core.nonlinear.KernelDevianceGradient`; the Python loop on the same
function (wrapped, so that it is not recognised) is the reference.  Both evaluate the same
compiled deviance and gradient and take the same steps, so the point reached, the count of
evaluations, the optimum flag and the carried Hessian must agree to the bit
(``array_equal``, no tolerance): on every covariance step of the 11 reference fits and on
random well-posed problems, some with coordinates held on their bounds and probed.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import mixedmodels as mm
import mixedmodels.optim.nonlinear as onl
from mixedmodels.core.nonlinear import (
    Gram,
    KernelDevianceGradient,
    RelativeFactorLayout,
    deviance,
    ml_deviance_gradient_function,
    pls,
    pls_kernels,
)
from mixedmodels.optim import bounded_newton
from mixedmodels.optim.bounded_newton import compiled_newton_matches, newton_gradient
from tests.reference.nlme.cases import CASES, arguments, reference

pytestmark = pytest.mark.skipif(pls_kernels() is None, reason="numba is not installed")


def _require_match():
    if not compiled_newton_matches():
        pytest.skip("numpy's BLAS rounds the Newton step's products otherwise: the "
                    "Python loop runs")


def _python(f):
    return lambda theta: f(theta)


def _both(f, x0, lower, cache, **options):
    """``newton_gradient`` compiled and in Python from the same start and carried
    Hessian; asserts they agree to the bit and returns the compiled answer."""
    cache_c, cache_p = copy.deepcopy(cache), copy.deepcopy(cache)
    x_c, n_c, ok_c = newton_gradient(f, x0.copy(), lower, cache=cache_c, **options)
    x_p, n_p, ok_p = newton_gradient(_python(f), x0.copy(), lower, cache=cache_p, **options)
    assert np.array_equal(x_c, x_p, equal_nan=True)
    assert np.array_equal(np.signbit(x_c), np.signbit(x_p))
    assert (n_c, ok_c) == (n_p, ok_p)
    if cache is not None:
        assert cache_c.keys() == cache_p.keys()
        if "hessian" in cache_p:
            assert np.array_equal(cache_c["hessian"], cache_p["hessian"])
    return x_c, n_c, ok_c


@pytest.fixture(scope="module")
def steps():
    """Every covariance step's problem of the 11 reference fits: the deviance function,
    its start, bounds and carried Hessian."""
    ref = reference()
    original = onl.newton_gradient
    out = []

    def spy(fun, x, lower, iterations=30, cache=None, stop=1e-10):
        if isinstance(fun, KernelDevianceGradient):
            out.append((fun, np.array(x, dtype=float), np.array(lower, dtype=float),
                        copy.deepcopy(cache)))
        return original(fun, x, lower, iterations=iterations, cache=cache, stop=stop)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(onl, "newton_gradient", spy)
        for case in CASES:
            data, kw = arguments(case, ref)
            mm.nlme(data=data, **kw)
    return out


def test_the_reference_fits_use_the_compiled_loop(monkeypatch):
    """On this machine (numpy's OpenBLAS on x86-64) the check passes and the covariance
    steps of a fit (CO2: three coordinates) run compiled, every one of them."""
    _require_match()
    calls = []
    original = bounded_newton._newton_kernel

    def counted(*args):
        found = original(*args)
        calls.append(None if found is None else np.size(args[1]))
        return found

    monkeypatch.setattr(bounded_newton, "_newton_kernel", counted)
    data, kw = arguments("co2", reference())
    fit = mm.nlme(data=data, **kw)
    assert calls == [3] * fit.estimate.iterations


def test_reference_steps_compiled_equal_python(steps):
    _require_match()
    assert len(steps) > 40
    sizes = {len(x) for _, x, _, _ in steps}
    assert sizes == {1, 2, 3}
    assert any(cache and "hessian" in cache for *_, cache in steps)  # carried Hessians
    for f, x0, lower, cache in steps:
        _both(f, x0, lower, cache)


def test_reference_steps_tight_and_fresh(steps):
    """The tight settings of the fixed-point test (stop 1e-18, 60 iterations, no carried
    Hessian) and a stop never reached within 3 iterations."""
    _require_match()
    for f, x0, lower, _ in steps[::3]:
        _both(f, x0, lower, None, iterations=60, stop=1e-18)
        _both(f, x0, lower, {}, iterations=3, stop=0.0)


class _Layout(RelativeFactorLayout):
    def __init__(self, q: int, diagonal: bool) -> None:
        self.q, self.diagonal = q, diagonal


def _random_gram(rng, q: int, m: int, per: int, sd: float, p: int = 2) -> tuple[Gram, int]:
    """Cross-products of a random linear mixed model: ``m`` groups of ``per`` rows, ``q``
    random slopes of sd ``sd`` (0: the optimum on the bound), ``p`` fixed effects."""
    groups = np.repeat(np.arange(m), per)
    n = m * per
    z = np.column_stack([np.ones(n)] + [rng.standard_normal(n) for _ in range(q - 1)])
    x = np.column_stack([np.ones(n)] + [rng.standard_normal(n) for _ in range(p - 1)])
    b = sd * rng.standard_normal((m, q))
    w = x @ rng.standard_normal(p) + (z * b[groups]).sum(axis=1) + rng.standard_normal(n)
    mat = np.column_stack([x, w])
    ztz = np.zeros((q, q, m))
    ztm = np.zeros((q, m, p + 1))
    for i in range(m):
        rows = groups == i
        ztz[:, :, i] = z[rows].T @ z[rows]
        ztm[:, i, :] = z[rows].T @ mat[rows]
    return Gram(ztz, ztm, mat.T @ mat, 0.0), n


@pytest.mark.parametrize("q, diagonal", [(1, False), (2, True), (2, False)])
def test_random_problems_compiled_equal_python(q, diagonal, monkeypatch):
    """Random problems of 1 to 3 coordinates, with random effects of sd 0 (the optimum on
    the bound: coordinates held and probed), small and large; starts at the bounds, away
    from them and negative off-diagonal entries; with and without a carried Hessian
    (positive definite or not)."""
    _require_match()
    rng = np.random.default_rng(7 + 3 * q + diagonal)
    probes = []  # the Python loop's probes of the bounds (the compiled loop has its own)
    original_probe = bounded_newton._probe_bounds

    def probe(call, x, value, grad, lower, at_bound):
        found = original_probe(call, x, value, grad, lower, at_bound)
        probes.append(found[3].moved)
        return found

    monkeypatch.setattr(bounded_newton, "_probe_bounds", probe)
    layout = _Layout(q, diagonal)
    size = layout.n_theta
    lower = layout.theta_lower()
    held = carried = 0
    for trial in range(40):
        g, n = _random_gram(rng, q, m=int(rng.integers(4, 15)), per=int(rng.integers(3, 9)),
                            sd=[0.0, 0.3, 3.0][trial % 3])
        f = ml_deviance_gradient_function(g, layout, n)
        assert isinstance(f, KernelDevianceGradient)
        x0 = np.abs(rng.standard_normal(size)) * [0.1, 1.0, 10.0][trial % 3 - 1]
        if trial % 4 == 0:
            x0[np.isfinite(lower)] = 0.0  # on the bounds
        if not diagonal and q == 2 and trial % 2:
            x0[1] = -x0[1]
        cache = {}
        if trial % 5 == 1:
            a = rng.standard_normal((size, size))
            cache["hessian"] = a @ a.T + np.eye(size)
            carried += 1
        elif trial % 5 == 2:
            a = rng.standard_normal((size, size))
            cache["hessian"] = (a + a.T) / 2  # indefinite, as often
            carried += 1
        x, _, _ = _both(f, x0, lower, cache)
        held += bool((np.isfinite(lower) & (x <= lower + 1e-10)).any())  # ends on a bound
        _both(f, x0, lower, None, stop=1e-18, iterations=60)
    assert held >= 5 and carried >= 10
    assert len(probes) >= 10 and any(probes)  # probes run, and some move off the bound


def test_compiled_loop_failure_is_pythons():
    """A start where the factor is not positive definite (a NaN theta): both return the
    start, 1 evaluation, not an optimum."""
    _require_match()
    rng = np.random.default_rng(3)
    g, n = _random_gram(rng, 2, 8, 5, 0.5)
    layout = _Layout(2, False)
    f = ml_deviance_gradient_function(g, layout, n)
    x0 = np.array([np.nan, 0.1, 1.0])
    x, count, ok = _both(f, x0, layout.theta_lower(), {})
    assert count == 1 and not ok and np.isnan(x[0])


def test_flip_floor_is_numpys_step():
    """The eigen-decomposition, flipped and floored eigenvalues, step and predicted gain
    of the kernel against numpy's (``_eigh`` and the matrix products) on random symmetric
    matrices of 1 to 3 rows, definite or not, far from the check's own matrices."""
    _require_match()
    module = pls_kernels()
    rng = np.random.default_rng(11)
    for trial in range(3000):
        k = 1 + trial % 3
        a = rng.standard_normal((k, k)) * 10.0 ** rng.uniform(-6, 6)
        hess = (a + a.T) / 2
        g = rng.standard_normal(k) * 10.0 ** rng.uniform(-8, 8)
        values, vectors = bounded_newton._eigh(hess)
        floor = 1e-8 * max(max(map(abs, values.tolist())), 1e-12)
        step = -vectors @ ((vectors.T @ g) / np.maximum(np.abs(values), floor))
        out = np.empty(k)
        status, convex, predicted = module.flip_floor(hess.copy(), out, g)
        assert status == 0 and convex == (values.min() > 0)
        assert np.array_equal(out, step)
        assert predicted == 0.5 * abs(float(g @ step))


def test_python_loop_when_switched_off(monkeypatch):
    """``USE_KERNELS = False``: the Python loop on the kernel's function, the same answer."""
    rng = np.random.default_rng(5)
    g, n = _random_gram(rng, 2, 10, 6, 1.0)
    layout = _Layout(2, True)
    f = ml_deviance_gradient_function(g, layout, n)
    expected = newton_gradient(_python(f), np.array([1.0, 1.0]), layout.theta_lower())
    monkeypatch.setattr(bounded_newton, "USE_KERNELS", False)
    got = newton_gradient(f, np.array([1.0, 1.0]), layout.theta_lower())
    assert np.array_equal(got[0], expected[0]) and got[1:] == expected[1:]


@pytest.mark.parametrize("q, diagonal", [(1, False), (2, False), (3, True)])
def test_deviances_are_pls_deviance(q, diagonal):
    """:meth:`KernelDevianceGradient.deviances` against ``deviance(pls(...))``: equal but
    for the log's last bit (1e-15 relative) where the factor exists, NaN at a NaN theta
    (the pivots pass NaN on, as ``pls``'s do); not defined where the fixed effects'
    system is singular (a repeated column of X), where ``pls`` raises (for the points where the
    kernel's pivot is <= 0)."""
    rng = np.random.default_rng(q)
    g, n = _random_gram(rng, q, 9, 6, 1.0)
    layout = _Layout(q, diagonal)
    p = g.mtm.shape[0] - 1
    f = ml_deviance_gradient_function(g, layout, n)
    points = np.abs(rng.standard_normal((6, layout.n_theta)))
    points[2] = 0.0
    points[4, 0] = np.nan
    values, defined = f.deviances(points)
    assert defined.all()
    for point, value in zip(points, values, strict=True):
        with np.errstate(invalid="ignore"):
            expected = deviance(pls(g, layout.lambda_of(point), False), n, p, False)
        if np.isnan(expected):
            assert np.isnan(value)
        else:
            assert value == pytest.approx(expected, rel=1e-15, abs=0)
    # X's first column twice: X'X singular
    mtm = np.insert(np.insert(g.mtm, 0, g.mtm[0], axis=0), 0, np.insert(g.mtm[0], 0,
                                                                         g.mtm[0, 0]), axis=1)
    ztm = np.insert(g.ztm, 0, g.ztm[:, :, 0], axis=2)
    singular = Gram(g.ztz, ztm, mtm, 0.0)
    f = ml_deviance_gradient_function(singular, layout, n)
    values, defined = f.deviances(points)
    assert not defined.all()  # (rounding may leave a pivot of the repeated column > 0)
    for point, ok in zip(points, defined, strict=True):
        if ok:
            continue
        with pytest.raises(np.linalg.LinAlgError):
            pls(singular, layout.lambda_of(point), False)
