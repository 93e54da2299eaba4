"""The second-basin check's compiled conditional-mode search (core/nonlinear_modes.py,
core/mode_kernels.py) against numpy's code it stands in for.

* The flat register program (:func:`flat_program`, run by ``run_program``) against the
  program's numpy call (``Program.rows`` without kernels): every function and ``^`` on
  values spanning their domains.  numba's elementary functions differ from numpy's in the
  last bit on a few percent of arguments, so the values agree within 4e-16 relative
  (2 ulp; NaN and infinities in the same places), the IEEE operations to the bit.
* The search (:func:`search_modes`) against ``conditional_modes``'s numpy search from 0 to
  the modes (``within = 0``) at the fits' estimates, with row weights where the fit has
  them: the modes within 1e-9 of their largest and the penalized residual sum of squares
  within 1e-12 relative (the same steps, the model's values to rounding), and the check's
  own call (6 steps, ``within = MODE_APART``) ends with every group near its fitted mode.
* Where the flat program is not available (a function it does not take), the check runs
  ``conditional_modes`` as before (the same answer).
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.core import nonlinear as cn
from mixedmodels.core import nonlinear_modes as nmodes
from mixedmodels.formula.derivative import UNARY_FUNCTIONS, Program, check_arithmetic
from mixedmodels.formula.expr import parse_expression
from mixedmodels.linalg import row_program
from mixedmodels.linalg.row_program import UfuncOp
from mixedmodels.optim import nonlinear as onl
from tests.reference.nlme.cases import arguments, reference

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed")

VALUES = np.array([-np.inf, -3.5, -1.0, -0.75, -1e-300, -0.0, 0.0, 1e-300, 0.3, 1.0, 2.0,
                   7.25, 700.0, np.inf, np.nan])


def _flat_and_numpy(monkeypatch, text, variables, phi, env=None):
    """The program's value and gradient by the flat program and by numpy's call."""
    tree = parse_expression(text)
    check_arithmetic(tree)
    program = Program([tree, tree])
    n = phi.shape[0]
    monkeypatch.setattr(row_program, "USE_KERNELS", False)
    want_f, want_g = program.rows(env or {}, variables, n)(phi)
    monkeypatch.setattr(row_program, "USE_KERNELS", True)
    rows = program.rows(env or {}, variables, n).program
    flat = nmodes.flat_program(rows)
    assert flat is not None
    ops, regs = flat
    for r, c in zip(rows.input_registers, rows.input_columns, strict=True):
        regs[r] = phi[:, c]
    nmodes.mode_kernels().run_program(ops, regs)
    got = regs[rows.outputs]
    return got, np.column_stack([want_f, want_g]).T


def _close(got, want, rtol):
    """Equal where not finite (NaN, the same infinities), within ``rtol`` elsewhere."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    assert np.all(np.isfinite(got[finite]))
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=0)


@needs_numba
@pytest.mark.parametrize("func", sorted(UNARY_FUNCTIONS))
def test_flat_program_functions_equal_numpy_to_rounding(monkeypatch, func):
    with np.errstate(all="ignore"):
        got, want = _flat_and_numpy(monkeypatch, f"{func}(a) * a + 1", ["a"], VALUES[:, None])
    _close(got, want, 4e-16)


@needs_numba
@pytest.mark.parametrize("text", ["a ^ b", "a ^ 1.5", "2.5 ^ a", "a ^ x", "exp(-b * x) * a",
                                  "a / (1 + exp((b - x) / a))"])
def test_flat_program_powers_and_constants_equal_numpy(monkeypatch, text):
    """``^`` of two registers and of a register and a folded constant (a scalar, a data
    column ``x``), and data columns among the elementary functions' operands."""
    a, b = np.meshgrid(VALUES, VALUES)
    phi = np.column_stack([a.ravel(), b.ravel()])
    x = np.linspace(-2.0, 3.0, phi.shape[0])
    with np.errstate(all="ignore"):
        got, want = _flat_and_numpy(monkeypatch, text, ["a", "b"], phi, {"x": x})
    _close(got, want, 4e-16)


@needs_numba
def test_flat_program_ieee_operations_are_the_same_bits(monkeypatch):
    rng = np.random.default_rng(3)
    phi = rng.normal(size=(50, 2))
    got, want = _flat_and_numpy(monkeypatch, "(a * b - a / b) ^ 2 + sqrt(abs(a)) * sign(b)",
                                ["a", "b"], phi)
    assert got.tobytes() == want.tobytes()


@needs_numba
@pytest.mark.parametrize("name", ["orange_two_diag", "theoph", "co2",
                                  "soybean_variety_varpower"])
def test_compiled_search_equals_numpy_search(monkeypatch, name):
    data, kwargs = arguments(name, reference())
    fit = mm.nlme(data=data, **kwargs)
    problem, e = fit.problem, fit.estimate
    lam = problem.lambda_of(e.theta)
    weights = None if problem.variance is None else e.weights
    u_fit = np.linalg.lstsq(lam, e.b.T, rcond=None)[0].T
    start = np.zeros_like(u_fit)
    found = nmodes.search_modes(problem, e.beta, lam, start, 100, weights, u_fit, 0.0)
    assert found is not None
    u1, pwrss1, distance1 = found
    assert distance1 == np.max(np.abs(u1 - u_fit))
    assert np.array_equal(start, np.zeros_like(u_fit))  # (the start is not written)
    monkeypatch.setattr(cn, "USE_KERNELS", False)
    assert nmodes.search_modes(problem, e.beta, lam, start, 100, weights, u_fit, 0.0) is None
    u0, _, pwrss0 = onl.conditional_modes(problem, e.beta, lam, start, weights=weights,
                                          near=u_fit, within=0.0)
    np.testing.assert_allclose(u1, u0, rtol=0, atol=1e-9 * np.abs(u0).max())
    np.testing.assert_allclose(pwrss1, pwrss0, rtol=1e-12)
    np.testing.assert_allclose(u1, u_fit, rtol=0, atol=1e-6 * np.abs(u_fit).max())
    monkeypatch.setattr(cn, "USE_KERNELS", True)
    # the check's call: every group within MODE_APART of its fitted mode after <= 6 steps
    u2, pwrss2, distance2 = onl._probe_modes(problem, e.beta, lam, start, onl.MODE_PROBE,
                                             weights, u_fit, onl.MODE_APART)
    assert np.isfinite(pwrss2)
    assert distance2 == np.max(np.abs(u2 - u_fit)) <= onl.MODE_APART
    assert mm.nlme(data=data, **kwargs).loglik == fit.loglik


@needs_numba
def test_unknown_function_leaves_the_check_to_numpys_search(monkeypatch):
    """A program with a function the flat program does not take: no compiled search, and
    the check's call gives conditional_modes's own answer (the same modes, bitwise)."""
    data, kwargs = arguments("theoph", reference())
    fit = mm.nlme(data=data, **kwargs)
    problem, e = fit.problem, fit.estimate
    program = problem._program
    stages = tuple(tuple(replace(op, fn=np.arcsinh) if k == 0 else op
                         for k, op in enumerate(stage)) for stage in program.ufunc_ops)
    assert stages[0] and isinstance(stages[0][0], UfuncOp)
    assert nmodes.flat_program(replace(program, ufunc_ops=stages)) is None
    lam = problem.lambda_of(e.theta)
    u_fit = onl._u_of(e.b, lam)
    start = np.zeros_like(u_fit)
    monkeypatch.setattr(nmodes, "flat_program", lambda program: None)
    assert nmodes.search_modes(problem, e.beta, lam, start, 6, None, u_fit, 1e-3) is None
    u1, pwrss1, distance1 = onl._probe_modes(problem, e.beta, lam, start, 6, None, u_fit,
                                             1e-3)
    u0, _, pwrss0 = onl.conditional_modes(problem, e.beta, lam, start, max_iter=6,
                                          near=u_fit, within=1e-3)
    assert u1.tobytes() == u0.tobytes() and pwrss1 == pwrss0
    assert distance1 == np.max(np.abs(u0 - u_fit))
