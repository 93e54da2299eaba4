"""``families._clip_unit`` is ``np.clip(mu, eps, 1 - eps)`` written as two ufuncs: the same
numbers bit for bit, NaN kept (the binomial links' inverse uses it on every PIRLS step)."""

import numpy as np

from mixedmodels.core.families import _EPS, LogitLink, _clip_unit


def test_clip_unit_equals_np_clip_bit_for_bit():
    rng = np.random.default_rng(7)
    mu = np.concatenate(
        [
            rng.uniform(-0.5, 1.5, 1000),
            [0.0, -0.0, 1.0, _EPS, 1 - _EPS, _EPS / 2, 1 - _EPS / 4, np.inf, -np.inf],
            np.nextafter(np.array([_EPS, 1 - _EPS]), 0.5),
            np.nextafter(np.array([_EPS, 1 - _EPS]), np.array([-1.0, 2.0])),
        ]
    )
    expected = np.clip(mu, _EPS, 1 - _EPS)
    got = _clip_unit(mu)
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))
    assert np.isnan(_clip_unit(np.array([np.nan])))[0]


def test_logit_inverse_stays_inside_the_unit_interval():
    eta = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    mu = LogitLink().inverse(eta)
    np.testing.assert_array_equal(mu[[0, 1]], _EPS)
    np.testing.assert_array_equal(mu[[3, 4]], 1 - _EPS)
    assert mu[2] == 0.5
