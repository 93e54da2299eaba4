"""The smooth-term statistics' building blocks against closed forms.

Imhof's integral for P(sum w_j chi2_dj > q) equals the chi-square and F distributions
where the sum is one of them (tolerance 1e-8: the Simpson grid is tuned to ~1e-10);
mgcv's test with an integer rank is a plain chi-square (or F) test of a quadratic form.
"""

import numpy as np
import pytest
from scipy import stats

from mixedmodels.results.smooth import prob_weighted_chisq_exceeds, wood_test


@pytest.mark.parametrize("q", [0.1, 1.0, 4.0, 15.0, 60.0])
def test_equal_weights_are_a_chi_square(q):
    assert abs(prob_weighted_chisq_exceeds(q, [1, 1, 1]) - stats.chi2.sf(q, 3)) < 1e-8
    assert abs(prob_weighted_chisq_exceeds(q, [2.0, 2.0], [2, 3]) - stats.chi2.sf(q / 2, 5)) < 1e-8


@pytest.mark.parametrize("f", [0.2, 1.0, 2.5, 8.0])
def test_difference_with_a_scaled_chi_square_is_an_f(f):
    """P(chi2_3 - f 3/k chi2_k > 0) = P(F(3, k) > f)."""
    k = 120
    p = prob_weighted_chisq_exceeds(0.0, [1, 1, 1, -3 * f / k], [1, 1, 1, k])
    assert abs(p - stats.f.sf(f, 3, k)) < 1e-8


def test_integer_rank_test_is_a_wald_chi_square():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    A = rng.normal(size=(3, 3))
    V = A @ A.T + np.eye(3)
    p = rng.normal(size=3)
    result = wood_test(p, X, V, rank=3.0, res_df=-1)
    _, R = np.linalg.qr(X)
    expected = float((R @ p) @ np.linalg.solve(R @ V @ R.T, R @ p))
    assert np.isclose(result.statistic, expected, rtol=1e-10)
    assert np.isclose(result.p_value, stats.chi2.sf(expected, 3), rtol=1e-10)
    with_scale = wood_test(p, X, V, rank=3.0, res_df=30.0)
    assert np.isclose(with_scale.p_value, stats.f.sf(expected / 3, 3, 30.0), rtol=1e-10)


def test_summary_shows_smooth_table_and_one_row_per_smooth_variance():
    import warnings

    import mixedmodels as mm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.gamm("y ~ s(x) + (1 | clus)", mm.datasets.load("seedsim"))
    text = fit.summary()
    table = fit.smooth_table()
    assert "Approximate significance of smooth terms:" in text
    assert f"s(x) {table['edf'].iloc[0]:.3f}" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(" s(x)")]
    assert len(lines) == 1 and "8 coef." in lines[0]
