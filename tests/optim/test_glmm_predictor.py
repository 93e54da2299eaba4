"""The GLMM fit's prediction of conditional modes from earlier points (optim/glmm.py,
_ModePredictor): exact for an affine map (the reference is the map itself), and with an
error second order in the distance for a smooth nonlinear one (the reference: the error of
the last point's value, first order, which the prediction must beat by the ratio of the
step to the spread)."""

import numpy as np

from mixedmodels.optim.glmm import _ModePredictor


def test_affine_map_is_reproduced_to_rounding():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(7, 3))
    b = rng.normal(size=7)
    pred = _ModePredictor()
    assert pred.predict(np.zeros(3)) is None  # nothing known yet
    for _ in range(4):
        x = rng.normal(size=3)
        pred.add(x, a @ x + b)
    x = rng.normal(size=3)
    np.testing.assert_allclose(pred.predict(x), a @ x + b, rtol=1e-10, atol=1e-10)


def test_smooth_map_error_is_second_order():
    def f(x):
        return np.array([np.sin(x[0]) * np.exp(x[1]), x[0] ** 2 - np.cos(x[1]), x @ x])

    x0 = np.array([0.3, -0.2])
    for h in (1e-2, 1e-3):
        pred = _ModePredictor()
        for step in ([0.0, 0.0], [h, 0.0], [0.0, h]):
            pred.add(x0 + step, f(x0 + step))
        target = x0 + [h, h]  # the Hessian's pair point from its two single points
        err = np.max(np.abs(pred.predict(target) - f(target)))
        last = np.max(np.abs(f(x0 + [0.0, h]) - f(target)))  # starting from the last point
        assert err < 5 * h**2  # second order: |f''| <= 2.5 on this box
        assert last > 0.1 * h  # first order


def test_only_the_last_d_plus_one_points_are_kept():
    pred = _ModePredictor()
    for i in range(10):
        pred.add(np.array([float(i), 0.0]), np.array([float(i)]))
    assert len(pred.points) == 3
    np.testing.assert_allclose(pred.predict(np.array([12.0, 0.0])), [12.0], rtol=1e-12)
