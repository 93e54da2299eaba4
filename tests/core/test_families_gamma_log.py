"""The Gamma family's closed-form Newton steps on the log link (core/families.py:
``Gamma.working``, ``_GammaLogKernel``) against the general Newton formula of the
dispersion families (``_newton_working``: ``h = h_F - w (y - mu) (mu'' / V - mu'^2 V' /
V^2)``, ``r = w (y - mu) mu' / V / h``, with ``mu' = mu'' = mu``, ``V = mu^2``): the same
weights and residuals (the rows below the 1e-3 floor included; the two
formulas round differently: the general one cancels ``1 / mu - 2 / mu`` and divides
``mu^4``): to 8 ulp of ``max(w, h)`` in ``h`` (the general formula's ``h_F - ...``
rounds at the scale of its terms, ``w`` and ``h`` itself, where ``h`` may be 1e-3 of
``w``), and in ``r`` to 8 ulp relative times ``max(w, h) / h`` (that error of ``h``
carried into ``r = s / h``); the deviance with unit weights bitwise the family's (``-2``
factored out of the sum is exact); the Laplace weights the expected information ``w mu^2
/ mu^2``."""

import numpy as np
import pytest

from mixedmodels.core.families import Gamma, LogLink, _newton_working


def _data(weighted: bool):
    rng = np.random.default_rng(21)
    n = 300
    eta = rng.uniform(-4, 6, n)
    eta[:5] = [8.0, 9.0, 10.0, 12.0, 15.0]  # y / mu below 1e-3: the Fisher rows
    y = rng.gamma(2.0, 1.0, n) + 0.05
    w = rng.uniform(0.5, 2.0, n) if weighted else np.ones(n)
    return y, eta, w


@pytest.mark.parametrize("weighted", [False, True])
def test_gamma_log_newton_steps_are_the_general_formula(weighted):
    family = Gamma(LogLink())
    y, eta, w = _data(weighted)
    mu = family.link.inverse(eta)
    assert np.sum(y / mu < 1e-3) >= 3
    h, r = family.working(y, eta, mu, w)
    h_ref, r_ref = _newton_working(family, y, eta, mu, w)
    ulp = np.finfo(float).eps
    scale = np.maximum(w, h_ref)
    assert np.all(np.abs(h - h_ref) <= 8 * ulp * scale)
    assert np.all(np.abs(r - r_ref) <= 8 * ulp * (scale / h_ref) * np.abs(r_ref))
    kernel = family.kernel(y, w)
    h_k, r_k = kernel.working(eta, mu)
    np.testing.assert_array_equal(h_k, h)
    np.testing.assert_array_equal(r_k, r)
    np.testing.assert_allclose(
        kernel.laplace_weights(eta, mu), w * mu**2 / mu**2, rtol=1e-15, atol=0
    )
    np.testing.assert_array_equal(kernel.laplace_weights(eta, mu), family.laplace_weights(
        y, eta, mu, w
    ))


@pytest.mark.parametrize("weighted", [False, True])
def test_gamma_log_kernel_deviance_is_the_familys(weighted):
    family = Gamma(LogLink())
    y, eta, w = _data(weighted)
    mu = family.link.inverse(eta)
    kernel = family.kernel(y, w)
    reference = float(np.sum(family.unit_deviance(y, mu, w)))
    # twice at the same eta (the second from the kept ratios), then at another eta
    assert kernel.deviance(eta, mu) == reference
    assert kernel.deviance(eta, mu) == reference
    other = eta + 0.1
    mu_other = family.link.inverse(other)
    assert kernel.deviance(other, mu_other) == float(
        np.sum(family.unit_deviance(y, mu_other, w))
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_gamma_log_kernel_aic_is_the_familys(weighted):
    """R's ``aic`` from the kernel (``log y`` and ``sum w`` kept) is bitwise the family's,
    twice in a row and at another mean."""
    family = Gamma(LogLink())
    y, eta, w = _data(weighted)
    kernel = family.kernel(y, w)
    for shift in (0.0, 0.0, 0.3):
        mu = family.link.inverse(eta + shift)
        deviance = float(np.sum(family.unit_deviance(y, mu, w)))
        assert kernel.objective_term(mu, deviance) == family.objective_term(y, mu, w, deviance)
