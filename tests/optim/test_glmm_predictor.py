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


def test_least_squares_is_numpy_lstsq_bit_for_bit():
    """The predictor calls numpy's LAPACK gufunc directly: the same numbers as
    ``np.linalg.lstsq(a, b, rcond=1e-8)[0]`` (compared exactly), on full-rank, rank-deficient
    (a repeated column, a direction below the cut-off) and 1 x 1 systems of the shapes the
    fits use (d parameters, m <= d earlier points)."""
    rng = np.random.default_rng(8)
    cases = []
    for d in range(1, 7):
        for m in range(1, d + 1):
            cases.append(rng.normal(size=(d, m)) * 10.0 ** rng.integers(-4, 3))
    deficient = rng.normal(size=(5, 3))
    deficient[:, 2] = deficient[:, 0]
    cases.append(deficient)
    tiny = rng.normal(size=(4, 2))
    tiny[:, 1] = tiny[:, 0] + 1e-12 * rng.normal(size=4)  # below rcond = 1e-8
    cases.append(tiny)
    for a in cases:
        b = rng.normal(size=a.shape[0])
        for matrix in (a, np.asfortranarray(a), a.T.copy().T):  # layouts of dx.T
            got = _ModePredictor._least_squares(matrix, b)
            expected = np.linalg.lstsq(matrix, b, rcond=1e-8)[0]
            assert got.shape == expected.shape
            assert np.array_equal(got, expected)


def test_prediction_is_the_lstsq_interpolation():
    """predict = last mode + coef @ (earlier modes - last), coef from numpy's lstsq (the
    formula it implements, computed independently here; exact equality)."""
    rng = np.random.default_rng(3)
    points = [rng.normal(size=4) for _ in range(5)]
    modes = [rng.normal(size=9) for _ in range(5)]
    pred = _ModePredictor()
    for x, u in zip(points, modes, strict=True):
        pred.add(x, u)
    x = rng.normal(size=4)
    dx = np.stack(points[:-1]) - points[-1]
    du = np.stack(modes[:-1]) - modes[-1]
    coef = np.linalg.lstsq(dx.T, x - points[-1], rcond=1e-8)[0]
    assert np.array_equal(pred.predict(x), modes[-1] + coef @ du)
