"""A register program evaluated row by row: the compiled form of a model expression and its
derivatives (:meth:`mixedmodels.formula.derivative.Program.rows`).

The program is data, never code: a list of operations ``(output register, opcode, first
operand, second operand)`` over registers that each hold one value per row, the registers
of constants (numbers, data columns and what depends on them alone, folded once) filled
in advance, and the registers that receive the columns of the parameter rows ``phi``.
:data:`OPCODES` lists the operations (the arithmetic operators and the elementary functions
of the formula language); nothing is generated or ``eval``-ed.

When numba loads, :class:`RowModel` runs the operations in one compiled loop
(:mod:`mixedmodels.linalg.row_program_kernels`): one call for the model and its gradient
where the numpy code makes one call per operation; the numpy code (the same operations in
the same order) is used otherwise.  The two agree to the rounding of the elementary
functions (numpy's vectorized ``exp``/``log`` and the C library's differ by at most an
ulp).  :mod:`mixedmodels.core.nonlinear` runs the same program inside its linearization
kernel (:attr:`RowModel.program`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from mixedmodels.linalg.optional_kernels import OptionalKernels

#: The operations of a register program by name, in opcode order (unary from ``neg`` on).
OPCODES: tuple[str, ...] = (
    "+", "-", "*", "/", "^", "neg", "exp", "log", "sqrt", "sin", "cos", "tan", "atan",
    "sinh", "cosh", "tanh", "log10", "log2", "log1p", "expm1", "abs", "sign",
)
OPCODE = {name: k for k, name in enumerate(OPCODES)}
#: Opcodes below this take two operands.
N_BINARY = 5


@dataclass(frozen=True)
class RowProgram:
    """A register program on ``n`` rows.

    Attributes
    ----------
    ops : int64 (k, 4)
        ``(output register, opcode, first operand, second operand)`` (second -1 for a unary
        operation), in the order they run.
    init : float64 (r, n)
        Every register's starting values: the constants filled, the rest unused.
    input_registers, input_columns : int64 (s,)
        Register ``input_registers[i]`` receives column ``input_columns[i]`` of ``phi``.
    outputs : int64 (o,)
        The registers of the program's results.
    """

    ops: np.ndarray
    init: np.ndarray
    input_registers: np.ndarray
    input_columns: np.ndarray
    outputs: np.ndarray

    @property
    def n(self) -> int:
        return self.init.shape[1]


#: Use the compiled interpreter when numba loads; False forces the numpy code (the tests
#: compare both).
USE_KERNELS = True
_KERNELS = OptionalKernels(
    "mixedmodels.linalg.row_program_kernels",
    "the compiled interpreter of model expressions",
    "using numpy",
)


def row_program_kernels() -> ModuleType | None:
    """The compiled interpreter's module, or None (switched off by :data:`USE_KERNELS`,
    numba missing or failing to load)."""
    return _KERNELS.load() if USE_KERNELS else None


class RowModel:
    """A model and its gradient on fixed covariates as a function of the parameter rows:
    ``phi (n, P) -> (f (n,), gradient (n, P))`` (``gradient`` False: the values alone,
    ``(f, None)``).

    Parameters
    ----------
    program : RowProgram
        Outputs: the value, then (with ``gradient``) one derivative per parameter.
    numpy_call : callable
        The same computation by numpy (used without numba).
    gradient : bool
    """

    def __init__(self, program: RowProgram, numpy_call: Callable, gradient: bool = True):
        self.program = program
        self.gradient = gradient
        self._numpy_call = numpy_call

    def __call__(self, phi: np.ndarray):
        module = row_program_kernels()
        if module is None or phi.shape[0] != self.program.n:
            return self._numpy_call(phi)
        prog = self.program
        n = phi.shape[0]
        f = np.empty(n)
        g = np.empty((n, prog.outputs.size - 1))
        module.run_rows(prog.ops, prog.init, prog.input_registers, prog.input_columns,
                        prog.outputs, np.ascontiguousarray(phi, dtype=float), f, g)
        return (f, g) if self.gradient else (f, None)
