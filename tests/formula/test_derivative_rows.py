"""The register programs of ``Program.rows`` (formula/derivative.py; linalg/row_program.py
and its compiled runs, linalg/row_program_kernels.py) against numpy's code, the reference
they replace when numba loads (``Program.bind``: one ufunc call per operation).

Every operator and function is run on values spanning its domain and its edges (0, -0,
negatives, -1 for ``log1p``, NaN, inf).  The compiled runs hold only IEEE operations (``+ -
* /``, negation, ``abs``, ``sign``, ``sqrt`` and the powers numpy computes as such: ``x^2``,
``x^0.5``, ``x^-1``) and the elementary functions stay numpy's calls, so the values are
equal to the bit (NaN in the same places).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mixedmodels.formula import derivative
from mixedmodels.formula.derivative import UNARY_FUNCTIONS, Program, check_arithmetic
from mixedmodels.formula.expr import parse_expression
from mixedmodels.linalg import row_program

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed")

VALUES = np.array([-np.inf, -3.5, -1.0, -0.75, -1e-300, -0.0, 0.0, 1e-300, 0.3, 1.0, 2.0,
                   7.25, 700.0, np.inf, np.nan])


def _both(monkeypatch, text, env, variables, phi, gradient=True):
    tree = parse_expression(text)
    check_arithmetic(tree)
    program = Program([tree, tree] if gradient else [tree])
    n = phi.shape[0]
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    want = program.rows(env, variables, n, gradient)(phi)
    monkeypatch.setattr(row_program, "USE_KERNELS", True)
    assert row_program.row_program_kernels() is not None
    got = program.rows(env, variables, n, gradient)(phi)
    return got, want


def _same(got, want):
    """Equal to the bit (signed zeros told apart; NaN in the same places)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes() or (
        np.array_equal(np.isnan(got), np.isnan(want))
        and np.array_equal(np.signbit(got), np.signbit(want))
        and np.array_equal(got, want, equal_nan=True)
    )


@needs_numba
@pytest.mark.parametrize("func", sorted(UNARY_FUNCTIONS))
def test_each_function_by_the_kernel_equals_numpy(monkeypatch, func):
    phi = VALUES[:, None]
    with np.errstate(all="ignore"):
        got, want = _both(monkeypatch, f"{func}(a)", {}, ["a"], phi)
    _same(got[0], want[0])
    _same(got[1], want[1])


@needs_numba
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "^"])
def test_each_operator_by_the_kernel_equals_numpy(monkeypatch, op):
    a, b = np.meshgrid(VALUES, VALUES)
    phi = np.column_stack([a.ravel(), b.ravel()])
    with np.errstate(all="ignore"):
        got, want = _both(monkeypatch, f"a {op} b", {}, ["a", "b"], phi)
        neg, neg_want = _both(monkeypatch, f"-(a {op} b)", {}, ["a", "b"], phi)
    _same(got[0], want[0])
    _same(neg[0], neg_want[0])


@needs_numba
@pytest.mark.parametrize("exponent", ["2", "0.5", "-1", "3", "1.5", "x"])
def test_powers_by_the_kernel_equal_numpy(monkeypatch, exponent):
    """numpy's power computes a scalar exponent 2, 0.5 or -1 as ``a a``, ``sqrt a`` and ``1
    / a`` (its fast paths); the compiled runs do the same, other exponents (and a data
    column's) stay numpy's power."""
    phi = VALUES[:, None]
    env = {"x": np.linspace(-2.0, 3.0, VALUES.size)}
    with np.errstate(all="ignore"):
        got, want = _both(monkeypatch, f"(a + 1)^{exponent} - a", env, ["a"], phi)
    _same(got[0], want[0])


@needs_numba
def test_a_model_and_its_gradient_by_the_kernel_equal_numpy(monkeypatch):
    """SSfol's expression with its symbolic gradient on Theoph-like data: constants folded
    from the data columns (Dose), the parameters per row."""
    rng = np.random.default_rng(7)
    n = 40
    env = {"Dose": rng.uniform(3.0, 6.0, n), "input": rng.uniform(0.0, 24.0, n)}
    text = ("Dose*exp(lKe+lKa-lCl)*(exp(-exp(lKe)*input)-exp(-exp(lKa)*input))"
            "/(exp(lKa)-exp(lKe))")
    tree = parse_expression(text)
    params = ["lKe", "lKa", "lCl"]
    program = Program([tree, *(derivative.differentiate(tree, p) for p in params)])
    phi = np.column_stack([rng.normal(-2.5, 0.1, n), rng.normal(0.5, 0.3, n),
                           rng.normal(-3.2, 0.1, n)])
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    f0, g0 = program.rows(env, params, n)(phi)
    # the numpy path is bind()'s (the code every fit used before the kernel)
    out = program.bind(env, params)(phi.T)
    np.testing.assert_array_equal(f0, out[0])
    np.testing.assert_array_equal(g0, np.column_stack(out[1:]))
    monkeypatch.setattr(row_program, "USE_KERNELS", True)
    f1, g1 = program.rows(env, params, n)(phi)
    _same(f1, f0)
    _same(g1, g0)


@needs_numba
def test_a_model_called_again_keeps_no_state(monkeypatch):
    """A compiled model keeps its registers and bound ufunc stages across calls: SSfol's
    model and gradient at five parameter rows in turn (each twice, the second pass in
    reverse) equal a fresh model's and numpy's at each, to the bit."""
    rng = np.random.default_rng(9)
    n = 30
    env = {"Dose": rng.uniform(3.0, 6.0, n), "input": rng.uniform(0.0, 24.0, n)}
    text = ("Dose*exp(lKe+lKa-lCl)*(exp(-exp(lKe)*input)-exp(-exp(lKa)*input))"
            "/(exp(lKa)-exp(lKe))")
    tree = parse_expression(text)
    params = ["lKe", "lKa", "lCl"]
    program = Program([tree, *(derivative.differentiate(tree, p) for p in params)])
    points = [np.column_stack([rng.normal(-2.5, 0.3, n), rng.normal(0.5, 0.5, n),
                               rng.normal(-3.2, 0.3, n)]) for _ in range(5)]
    monkeypatch.setattr(row_program, "USE_KERNELS", True)
    kept = program.rows(env, params, n)
    for phi in points + points[::-1]:
        f1, g1 = kept(phi)
        f2, g2 = program.rows(env, params, n)(phi)
        _same(f1, f2)
        _same(g1, g2)
        monkeypatch.setattr(row_program, "USE_KERNELS", False)
        f0, g0 = program.rows(env, params, n)(phi)
        monkeypatch.setattr(row_program, "USE_KERNELS", True)
        _same(f1, f0)
        _same(g1, g0)


def test_the_program_is_data(monkeypatch):
    """The register program holds opcodes and register indices (int64 arrays) and, for the
    elementary functions, numpy's ufuncs of the formula language's table (no code made from
    the text); a derivative that folds to a number is a filled register.  SSlogis's model
    and gradient: one stage with its one ``exp``, its squares compiled."""
    tree = parse_expression("Asym/(1+exp((xmid-input)/scal)) + 0*b")
    params = ["Asym", "xmid", "scal", "b"]
    program = Program([tree, *(derivative.differentiate(tree, p) for p in params)])
    x = np.array([118.0, 484.0, 664.0, 1004.0])
    model = program.rows({"input": x}, params, 4)
    prog = model.program
    assert all(ops.dtype == np.int64 and ops.shape[1] == 4 for ops in prog.kernel_ops)
    assert prog.init.dtype == np.float64
    assert len(prog.ufunc_ops) == 1
    assert [op.fn for op in prog.ufunc_ops[0]] == [np.exp]
    allowed = set(UNARY_FUNCTIONS.values()) | {np.power}
    assert all(op.fn in allowed for stage in prog.ufunc_ops for op in stage)
    phi = np.tile([200.0, 700.0, 350.0, 1.0], (4, 1))
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    f, g = model(phi)
    e = np.exp((700.0 - x) / 350.0)
    np.testing.assert_allclose(f, 200.0 / (1 + e), rtol=1e-15)
    np.testing.assert_array_equal(g[:, 3], np.zeros(4))
    if importlib.util.find_spec("numba") is not None:
        monkeypatch.setattr(row_program, "USE_KERNELS", True)
        f1, g1 = model(phi)
        _same(f1, f)
        _same(g1, g)


def test_a_kept_plan_serves_other_data_of_the_same_kind():
    """A program's pass over its code is kept per kind of names (_plan): used again on
    other data (other values, other rows) it gives what a new program gives, to the bit,
    with rows() and bind() (and bind() what the interpreter Program.run gives); a scalar
    where an array was is another kind."""
    text = "a * exp(-(x - m)^2 / s) + log(x + 2) * b"
    tree = parse_expression(text)
    check_arithmetic(tree)
    trees = [tree, *(derivative.differentiate(tree, p) for p in ("a", "m", "s", "b"))]
    kept = Program(trees)
    rng = np.random.default_rng(3)
    for n, x in [(5, rng.uniform(0, 3, 5)), (9, rng.uniform(-1, 4, 9)), (9, 1.5)]:
        env = {"x": x}
        phi = rng.normal(1.0, 0.3, (n, 4))
        fresh = Program(trees)
        for a, b in zip(kept.rows(env, ["a", "m", "s", "b"], n)(phi),
                        fresh.rows(env, ["a", "m", "s", "b"], n)(phi), strict=True):
            assert a.tobytes() == b.tobytes()
        values = list(phi[0])
        interpreted = kept.run({**env, **dict(zip(["a", "m", "s", "b"], values, strict=True))})
        for a, b, c in zip(kept.bind(env, ["a", "m", "s", "b"])(values),
                           fresh.bind(env, ["a", "m", "s", "b"])(values), interpreted,
                           strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
            assert np.asarray(a).tobytes() == np.asarray(c).tobytes()  # the interpreter
    assert len(kept._plans) == 2  # (x an array, x a scalar)
