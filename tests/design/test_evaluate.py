"""The formula interpreter: values against numpy's closed forms, R's semantics where they
differ from Python's, missing values of every pandas dtype, learned transforms on new data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design.contrasts import coding_matrix
from mixedmodels.design.evaluate import Factor, Interpreter, Logical, Numeric, column_value
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.errors import ColumnNotFoundError, DataError, NewLevelError
from mixedmodels.formula.expr import parse_expression


def value(text, data, state=None):
    return Interpreter(data, {} if state is None else state, text).evaluate(
        parse_expression(text)
    )


@pytest.fixture()
def frame():
    return pd.DataFrame({"x": [-7.0, -1.5, 0.0, 2.0, 9.0], "k": [1, 2, 3, 4, 5],
                         "f": pd.Categorical(list("babca"), categories=list("abcz"))})


def test_arithmetic_is_r_arithmetic(frame):
    x = frame.x.to_numpy()
    # R: -7 %% 3 is 2 and -7 %/% 3 is -3 (floored, as numpy's mod and floor_divide)
    np.testing.assert_array_equal(value("x %% 3", frame).values, x - np.floor(x / 3) * 3)
    np.testing.assert_array_equal(value("x %/% 3", frame).values, np.floor(x / 3))
    np.testing.assert_allclose(value("-x^2 + 2 * pi", frame).values, -(x**2) + 2 * np.pi)
    np.testing.assert_allclose(value("log(k, base = 2)", frame).values, np.log2(frame.k))
    np.testing.assert_allclose(value("exp(k/10) - sqrt(k)", frame).values,
                               np.exp(frame.k / 10) - np.sqrt(frame.k))
    np.testing.assert_allclose(value("x - mean(x)", frame).values, x - x.mean())
    np.testing.assert_allclose(value("sd(x)", frame).values, x.std(ddof=1))
    np.testing.assert_allclose(value("pmax(x, 0) + round(x/4)", frame).values,
                               np.maximum(x, 0) + np.round(x / 4))


def test_comparisons_are_logicals_and_factors_compare_by_label(frame):
    assert isinstance(value("x > 0", frame), Logical)
    np.testing.assert_array_equal(value("x > 0 & k < 5", frame).values, [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value("f == \"b\"", frame).values, [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(value("!(f != 'a')", frame).values, [0, 1, 0, 0, 1])


def test_factor_of_numbers_has_r_labels(frame):
    f = value("factor(k * 0.5)", frame)
    assert isinstance(f, Factor)
    assert f.levels == ["0.5", "1", "1.5", "2", "2.5"]
    np.testing.assert_array_equal(f.codes, [0, 1, 2, 3, 4])
    g = value("factor(f)", frame)  # unused level z dropped, as R's factor() does
    assert g.levels == ["a", "b", "c"]
    np.testing.assert_array_equal(value("as.numeric(f)", frame).values, [2, 1, 2, 3, 1])


def test_factor_arithmetic_is_a_data_error(frame):
    with pytest.raises(DataError, match="factor"):
        value("f + 1", frame)


@pytest.mark.parametrize(
    "text, words",
    [
        ("f + 1", "'+' in 'f + 1' needs numbers, but it got a factor"),
        ("sin(2 * f)", "'*' in '2 * f' needs numbers"),
        ("sqrt(f)", "sqrt() in 'sqrt(f)' needs numbers"),
        ("-f", "'-' in '-f' needs numbers"),
        ("poly(x, degree = 1.5)", "poly() in 'poly(x, degree = 1.5)': 'degree' must be"),
        ("scale(x - x)", "scale() in 'scale(x - x)': the variable is constant"),
        ("log(x, base = f)", "argument 'base' of log() needs numbers"),
    ],
)
def test_errors_name_the_expression_as_r_deparses_it(frame, text, words):
    """The subject of an error (worded only when one is raised) is the expression as R
    deparses it."""
    with pytest.raises(DataError) as info:
        value(text, frame)
    assert words in str(info.value)


def test_a_call_of_the_wrong_shape_is_refused_every_time(frame):
    """call_problem is cached per shape of call: the error comes again, located."""
    from mixedmodels.errors import FormulaError
    from mixedmodels.formula.expr import Call

    for _ in range(2):
        with pytest.raises(FormulaError, match=r"takes at most 2 argument\(s\), got 3"):
            Interpreter(frame, {}, "log(x, 2, 3)").evaluate(
                Call("log", tuple(parse_expression(t) for t in ("x", "2", "3")), (), 0)
            )


def test_unknown_column_names_it_with_its_position(frame):
    with pytest.raises(ColumnNotFoundError) as info:
        value("log(x) + nosuch", frame)
    assert "'nosuch'" in str(info.value)
    assert info.value.position == 9


@pytest.mark.parametrize(
    "column, expected",
    [
        (pd.Series([1.0, np.nan, 3.0]), [1.0, np.nan, 3.0]),
        (pd.Series([1, None, 3], dtype="Int64"), [1.0, np.nan, 3.0]),
        (pd.Series([1.5, None, 3.0], dtype="Float64"), [1.5, np.nan, 3.0]),
        (pd.Series([True, None, False], dtype="boolean"), [1.0, np.nan, 0.0]),
    ],
)
def test_every_pandas_missing_value_is_nan(column, expected):
    np.testing.assert_array_equal(column_value(column, "c").values, expected)


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(["b", None, "a"], dtype="string"),
        pd.Series(["b", None, "a"], dtype=object),
        pd.Series(pd.Categorical(["b", None, "a"])),
    ],
)
def test_missing_text_and_categories_have_code_minus_one(column):
    f = column_value(column, "c")
    assert f.levels == ["a", "b"]
    np.testing.assert_array_equal(f.codes, [1, -1, 0])


@pytest.mark.parametrize("dtype", ["string", object])
def test_text_codes_are_positions_among_the_sorted_labels(dtype):
    # each row's code is its label's position among the sorted distinct labels: numpy's
    # np.unique inverse is the reference (the lookup is a dict, not pd.Index.get_indexer)
    text = ["z", "10", "9", "b", "9", "z", "A", "b"]
    f = column_value(pd.Series(text, dtype=dtype), "c")
    levels, inverse = np.unique(np.array(text), return_inverse=True)
    assert f.levels == list(levels)
    np.testing.assert_array_equal(f.codes, inverse)
    assert f.codes.dtype == np.int64


def test_booleans_in_object_columns_are_logicals():
    v = column_value(pd.Series([True, False, None], dtype=object), "c")
    assert isinstance(v, Logical)
    np.testing.assert_array_equal(v.values, [1.0, 0.0, np.nan])


def test_datetimes_are_refused_by_name():
    with pytest.raises(DataError, match="'when'"):
        column_value(pd.Series(pd.to_datetime(["2020-01-01"])), "when")


def test_learned_transforms_apply_to_new_data():
    """scale() and poly() use what they learned from the fitted rows (R's predict.poly;
    scale's centre and sd), so new rows equal the fitted rows they copy."""
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"x": rng.normal(size=40)})
    builder = MatrixBuilder("scale(x) + poly(x, 3) + center(x)")
    full = builder.build(data)
    x = data.x.to_numpy()
    np.testing.assert_allclose(full[:, 1], (x - x.mean()) / x.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(full[:, 5], x - x.mean(), rtol=1e-12)
    rows = data.iloc[[7, 3, 30]]
    np.testing.assert_allclose(builder.build(rows), full[[7, 3, 30]], rtol=1e-10, atol=1e-12)


def test_orthogonal_polynomials_are_orthonormal_and_centred():
    x = np.linspace(-2.0, 5.0, 23) ** 2
    columns = MatrixBuilder("0 + poly(x, 4)").build(pd.DataFrame({"x": x}))
    np.testing.assert_allclose(columns.T @ columns, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(columns.sum(axis=0), 0.0, atol=1e-12)


def test_new_levels_of_a_fixed_factor_are_an_error_that_names_them():
    data = pd.DataFrame({"f": list("abcab"), "k": [1, 2, 3, 1, 2]})
    builder = MatrixBuilder("f + factor(k)")
    builder.build(data)
    with pytest.raises(NewLevelError, match="'d'"):
        builder.build(pd.DataFrame({"f": ["a", "d"], "k": [1, 2]}))
    with pytest.raises(NewLevelError, match="factor\\(k\\)"):
        builder.build(pd.DataFrame({"f": ["a", "b"], "k": [1, 7]}))


def test_integer_levels_match_equal_floats_in_new_data():
    data = pd.DataFrame({"k": [1, 2, 3, 1, 2]})
    builder = MatrixBuilder("factor(k)")
    full = builder.build(data)
    np.testing.assert_array_equal(builder.build(pd.DataFrame({"k": [3.0, 1.0]})), full[[2, 0]])


def test_a_subset_of_the_levels_in_new_data_keeps_the_fitted_columns():
    data = pd.DataFrame({"f": pd.Categorical(list("abcab"))})
    builder = MatrixBuilder("f")
    full = builder.build(data)
    new = pd.DataFrame({"f": pd.Categorical(["c"], categories=["c"])})
    np.testing.assert_array_equal(builder.build(new), full[[2]])


def test_response_must_be_numbers():
    data = pd.DataFrame({"y": list("ab"), "z": [1.0, 4.0]})
    with pytest.raises(DataError, match="'y'"):
        response_vector(data, "y")
    np.testing.assert_allclose(response_vector(data, "sqrt(z) * 2"), [2.0, 4.0])


@pytest.mark.parametrize(
    "kind, k, expected",
    [
        # R 4.2: contr.poly(3), contr.helmert(4), contr.sum(3), contr.treatment(3)
        ("poly", 3, [[-1 / np.sqrt(2), 1 / np.sqrt(6)], [0, -2 / np.sqrt(6)],
                     [1 / np.sqrt(2), 1 / np.sqrt(6)]]),
        ("helmert", 4, [[-1, -1, -1], [1, -1, -1], [0, 2, -1], [0, 0, 3]]),
        ("sum", 3, [[1, 0], [0, 1], [-1, -1]]),
        ("treatment", 3, [[0, 0], [1, 0], [0, 1]]),
    ],
)
def test_coding_matrices_are_r_contrasts(kind, k, expected):
    matrix, _ = coding_matrix(kind, [str(i) for i in range(k)])
    np.testing.assert_allclose(matrix, expected, atol=1e-15)


def test_ordered_factors_are_coded_by_orthogonal_polynomials():
    data = pd.DataFrame({"o": pd.Categorical(list("lmhml"), categories=list("lmh"), ordered=True)})
    builder = MatrixBuilder("o")
    X = builder.build(data)
    assert builder.column_names == ["(Intercept)", "o.L", "o.Q"]
    poly, _ = coding_matrix("poly", ["l", "m", "h"])
    np.testing.assert_allclose(X[:, 1:], poly[[0, 1, 2, 1, 0]], atol=1e-15)


def test_scalars_broadcast_to_every_row():
    data = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    assert isinstance(value("2 * pi", data), Numeric)
    X = MatrixBuilder("I(x - mean(x)) + I(1 + 0 * x)").build(data)
    np.testing.assert_allclose(X[:, 1], [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", ["string[pyarrow]", "string[python]", "str"])
@pytest.mark.parametrize("text", [
    ["b", "a", "é", "Z", "ä", "a", "10", "9"],
    ["x", None, "y", "x"],
    ["only"],
])
def test_text_columns_factor_as_pandas_factorize_does(dtype, text):
    """A string-dtype column without missing values is factored by a dict of its sorted
    labels; the reference is the object column's path (pandas' factorize, then the
    labels' positions): the same codes (int64) and levels, missing values included."""
    got = column_value(pd.Series(text, dtype=dtype), "c")
    want = column_value(pd.Series(text, dtype=object), "c")
    assert isinstance(got, Factor)
    assert got.levels == want.levels
    assert got.codes.dtype == np.int64
    np.testing.assert_array_equal(got.codes, want.codes)
