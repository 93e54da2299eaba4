"""The compiled interpreter of register programs (linalg/row_program_kernels.py, through
``Program.rows`` of formula/derivative.py) against numpy's ufuncs, the reference it
replaces when numba loads.

Every opcode is run on values spanning its domain and its edges (0, negatives, -1 for
``log1p``, NaN, inf).  Add, subtract, multiply, divide and negate are IEEE operations: equal
to the bit.  The elementary functions come from the C library in the kernel and from
numpy's vectorized implementations (SIMD ``exp``/``log``/``pow``...), both correctly rounded
to within one ulp, so they agree within 4 ulp (rtol 1e-15); NaN and infinite results in
the same places.
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


def _close(got, want, exact):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    if exact:
        np.testing.assert_array_equal(got[ok], want[ok])
    else:
        np.testing.assert_array_equal(np.isinf(got[ok]), np.isinf(want[ok]))
        fin = ok & np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-15, atol=0)
        np.testing.assert_array_equal(got[ok & ~fin], want[ok & ~fin])


@needs_numba
@pytest.mark.parametrize("func", sorted(UNARY_FUNCTIONS))
def test_each_function_by_the_kernel_equals_numpy(monkeypatch, func):
    phi = VALUES[:, None]
    with np.errstate(all="ignore"):
        got, want = _both(monkeypatch, f"{func}(a)", {}, ["a"], phi)
    _close(got[0], want[0], exact=False)
    _close(got[1], want[1], exact=False)


@needs_numba
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "^"])
def test_each_operator_by_the_kernel_equals_numpy(monkeypatch, op):
    a, b = np.meshgrid(VALUES, VALUES)
    phi = np.column_stack([a.ravel(), b.ravel()])
    with np.errstate(all="ignore"):
        got, want = _both(monkeypatch, f"a {op} b", {}, ["a", "b"], phi)
        neg, neg_want = _both(monkeypatch, f"-(a {op} b)", {}, ["a", "b"], phi)
    _close(got[0], want[0], exact=op != "^")
    _close(neg[0], neg_want[0], exact=op != "^")


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
    np.testing.assert_allclose(f1, f0, rtol=1e-14)
    np.testing.assert_allclose(g1, g0, rtol=1e-13, atol=1e-14 * np.abs(g0).max())


def test_the_program_is_data(monkeypatch):
    """The register program holds opcodes and register indices only (no callables), and a
    constant output (a derivative that folds to a number) is a filled register."""
    tree = parse_expression("a*x + 3")
    program = Program([tree, derivative.differentiate(tree, "a"),
                       derivative.differentiate(tree, "b")])
    x = np.array([1.0, 2.0, 4.0])
    model = program.rows({"x": x}, ["a", "b"], 3)
    prog = model.program
    assert prog.ops.dtype == np.int64 and prog.init.dtype == np.float64
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    f, g = model(np.array([[2.0, 5.0]] * 3))
    np.testing.assert_array_equal(f, 2.0 * x + 3)
    np.testing.assert_array_equal(g, np.column_stack([x, np.zeros(3)]))
