"""Smooth terms in the design: the call read as data, columns and random parts, new data.

Identities checked: the evaluators of a smooth's columns reproduce the fitted columns on
the fitted rows (so prediction uses the fitted basis); a ``by`` smooth is zero outside
its level; the random parts carry the scaled-identity structure; bad calls are located
errors.
"""

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design import build_design
from mixedmodels.design.smooths import parse_smooth
from mixedmodels.errors import DataError, FormulaError
from mixedmodels.formula import parse_formula


def _data(n=200, seed=3):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.uniform(0, 1, n).round(3),
            "z": rng.uniform(0, 1, n).round(3),
            "g": rng.choice([f"g{i}" for i in range(8)], n),
            "f": rng.choice(["a", "b"], n),
            "y": rng.normal(size=n),
        }
    )


def test_parser_splits_smooth_terms_from_the_fixed_part():
    p = parse_formula('y ~ x2 + s(x, k = 5, bs = "cr") + t2(x, z) + (1 | g)')
    assert p.fixed == "x2"
    assert p.smooths == ('s(x, k = 5, bs = "cr")', "t2(x, z)")
    assert [r.group_factors for r in p.random] == [("g",)]


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y ~ s(log(x))", "covariates must be column names"),
        ('y ~ s(x, bs = "ps")', 'unknown basis bs = "ps"'),
        ("y ~ s(x, k = 2.5)", "k must be a whole number"),
        ("y ~ s(x, bs = cr)", "bs must be a quoted basis name"),
        ("y ~ s(x, by = log(f))", "by must be a column name"),
        ("y ~ t2(x)", "t2() needs argument 'z'"),
        ("y ~ s(x, z)", "not supported"),
        ("y ~ s(x, wiggle = 3)", "has no argument 'wiggle'"),
        ("y ~ x - s(x)", "cannot be subtracted"),
        ("y ~ (s(x) | g)", "may only be used as a term of the fixed part"),
        ("y ~ I(s(x))", "may only be used as a term of the fixed part"),
    ],
)
def test_bad_smooth_calls_are_located_formula_errors(formula, message):
    with pytest.raises(FormulaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_design(formula, _data())


def test_spec_defaults_and_label():
    spec = parse_smooth("s(x)")
    assert (spec.bs, spec.k, spec.by, spec.label) == ("tp", None, None, "s(x)")
    assert parse_smooth('s(x, g, bs = "fs")').label == "s(x,g)"
    assert parse_smooth("t2(x, z)").bs == "cr"


def test_tp_smooth_columns_and_random_part():
    d = _data()
    design = build_design("y ~ s(x) + (1 | g)", d)
    assert design.fixed_names == ["(Intercept)", "s(x)Fx1"]
    smooth = [t for t in design.terms if t.always_included]
    assert len(smooth) == 1 and smooth[0].n_levels == 1 and smooth[0].z.shape == (200, 8)
    assert type(smooth[0].block.structure).__name__ == "ScaledIdentity"
    # the fitted columns sum to zero (the identifiability constraint) ...
    assert abs(design.X[:, 1].sum()) < 1e-10 * np.abs(design.X[:, 1]).sum()
    assert np.abs(smooth[0].z.sum(axis=0)).max() < 1e-9 * np.abs(smooth[0].z).sum()
    # ... and the evaluators reproduce them on the fitted rows
    assert np.allclose(design.fixed_matrix(d), design.X, atol=1e-12)
    assert np.allclose(smooth[0].builder.build(d), smooth[0].z, atol=1e-10)


def test_by_factor_gives_one_smooth_per_level_zero_elsewhere():
    d = _data()
    design = build_design('y ~ f + s(x, bs = "cr", k = 6, by = f) + (1 | g)', d)
    labels = [s.label for s in design.smooths]
    assert labels == ["s(x):fa", "s(x):fb"]
    for layout, level in zip(design.smooths, ["a", "b"], strict=True):
        part = layout.function.parts[0]
        assert np.all(part.z[d["f"].to_numpy() != level] == 0)
        assert np.all(design.X[d["f"].to_numpy() != level][:, layout.fixed_index] == 0)


def test_fs_smooth_has_one_level_per_group_and_a_part_per_penalty():
    d = _data()
    design = build_design('y ~ s(x, g, bs = "fs")', d)
    parts = [t for t in design.terms if t.always_included]
    assert [t.n_levels for t in parts] == [8, 8, 8]
    assert [t.z.shape[1] for t in parts] == [8, 1, 1]
    # the null-space parts are a random intercept and a random slope in centred x
    ones = parts[1].z[:, 0]
    assert np.allclose(ones, ones[0])
    slope = parts[2].z[:, 0]
    assert np.allclose(
        np.polyfit(d["x"], slope, 1)[1] / np.polyfit(d["x"], slope, 1)[0], -d["x"].mean()
    )


def test_re_smooth_is_a_random_intercept():
    d = _data()
    design = build_design('y ~ s(x) + s(g, bs = "re")', d)
    re = [t for t in design.terms if t.always_included and t.n_levels == 8][0]
    assert re.z.shape == (200, 1) and np.all(re.z == 1)


def test_t2_blocks_and_fixed_null_space():
    d = _data()
    design = build_design("y ~ t2(x, z)", d)
    parts = [t for t in design.terms if t.always_included]
    assert [t.z.shape[1] for t in parts] == [9, 6, 6]  # rr, nr, rn of two k = 5 cr margins
    assert design.fixed_names == ["(Intercept)", "t2(x,z)Fx1", "t2(x,z)Fx2", "t2(x,z)Fx3"]


def test_smooth_covariate_errors_name_the_term():
    d = _data()
    d["t"] = list("abcd") * 50
    with pytest.raises(DataError, match=r"s\(t\): covariate 't' must be numeric"):
        build_design("y ~ s(t)", d)
    few = d.assign(x=np.repeat([0.0, 1.0, 2.0, 3.0], 50))
    with pytest.raises(DataError, match="fewer than the basis dimension k = 10"):
        build_design("y ~ s(x)", few)


def test_users_frame_is_not_modified():
    d = _data()
    before = d.copy()
    build_design('y ~ s(x, by = f) + s(x, g, bs = "fs")', d)
    pd.testing.assert_frame_equal(d, before)


def test_new_data_levels_and_missing_values():
    import warnings

    import mixedmodels as mm
    from mixedmodels.errors import NewLevelError

    d = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.lmer('y ~ f + s(x, by = f) + s(x, g, bs = "fs", k = 5)', d)
    new = d.head(4).copy()
    new.loc[new.index[0], "x"] = np.nan
    pred = fit.predict(new)
    assert np.isnan(pred[0]) and np.allclose(pred[1:], fit.fitted[1:4])
    with pytest.raises(NewLevelError, match="f"):
        fit.predict(new.assign(f="zz"))
    with pytest.raises(NewLevelError, match="g"):
        fit.predict(new.assign(g="unseen"))


def test_lm_rejects_smooths():
    import mixedmodels as mm

    with pytest.raises(FormulaError, match="lm\\(\\) takes no smooth terms"):
        mm.lm("y ~ s(x)", _data())
