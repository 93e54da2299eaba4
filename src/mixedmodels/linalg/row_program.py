"""A register program evaluated row by row: the compiled form of a model expression and its
derivatives (:meth:`mixedmodels.formula.derivative.Program.rows`).

The program is data, never code: a list of operations ``(output register, opcode, first
operand, second operand)`` over registers that each hold one value per row, the registers
of constants (numbers, data columns and what depends on them alone, folded once) filled
in advance, and the registers that receive the columns of the parameter rows ``phi``.
Nothing is generated or ``eval``-ed.

The operations fall in two kinds.  The IEEE operations (:data:`EXACT`: ``+ - * /``,
negation, ``abs``, ``sign``, ``sqrt``, and the powers numpy computes as such, ``x^2 = x x``,
``x^0.5 = sqrt x``, ``x^-1 = 1/x``) give the same bits wherever they run, and run in a
compiled loop (:mod:`mixedmodels.linalg.row_program_kernels`) when numba loads.  The
elementary functions (``exp``, ``log``, other powers, ...) stay numpy's ufuncs: numpy's
vectorized ``exp`` and the C library's differ in the last bit on ~5% of arguments, and
such a bit, through the alternation's tolerance, moved Theoph's estimates by 2e-8.  The
operations are scheduled in stages: a compiled run of IEEE operations, then one ufunc call
per elementary function whose operands are ready, then the next compiled run, ...  (SSlogis:
one ``exp`` between two compiled runs, where numpy made 19 calls).  So a :class:`RowModel`
gives the numpy code's values to the bit, compiled or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import ModuleType

import numpy as np

from mixedmodels.linalg.optional_kernels import OptionalKernels

#: The compiled operations by name, in opcode order (unary from ``neg`` on).
EXACT: tuple[str, ...] = (
    "+", "-", "*", "/", "neg", "abs", "sign", "sqrt", "square", "reciprocal",
)
OPCODE = {name: k for k, name in enumerate(EXACT)}
#: Opcodes below this take two operands.
N_BINARY = 4
#: Scalar exponents numpy's power computes by an IEEE operation (its fast paths).
POWER_FAST = {2.0: "square", 0.5: "sqrt", -1.0: "reciprocal"}

_EMPTY_OPS = np.zeros((0, 4), dtype=np.int64)


@dataclass(frozen=True)
class UfuncOp:
    """One numpy call of a stage: ``out = fn(*operands)``, each operand a register index
    (int) or the folded constant itself (a scalar or an array, as the numpy code passes it:
    numpy's power takes fast paths for a scalar exponent)."""

    out: int
    fn: Callable
    operands: tuple

    @property
    def unary_register(self) -> bool:
        """One operand, a register (``exp(x)``: the usual case)."""
        return len(self.operands) == 1 and isinstance(self.operands[0], int)


@dataclass(frozen=True)
class RowProgram:
    """A register program on ``n`` rows, in stages.

    Attributes
    ----------
    kernel_ops : tuple of int64 (k, 4) arrays
        The compiled runs ``(output register, opcode, first, second operand)`` (second -1
        for a unary operation); one more than ``ufunc_ops``: run 0, ufunc stage 0, run 1,
        ...
    ufunc_ops : tuple of tuple of UfuncOp
        The ufunc stages.
    init : float64 (r, n)
        Every register's starting values: the constants filled, the rest unused.
    input_registers, input_columns : int64 (s,)
        Register ``input_registers[i]`` receives column ``input_columns[i]`` of ``phi``.
    outputs : int64 (o,)
        The registers of the program's results.
    """

    kernel_ops: tuple
    ufunc_ops: tuple
    init: np.ndarray
    input_registers: np.ndarray
    input_columns: np.ndarray
    outputs: np.ndarray

    @property
    def n(self) -> int:
        return self.init.shape[1]

    @property
    def first_ops(self) -> np.ndarray:
        """The run before the first ufunc stage (nothing when there is none: the whole
        program is then the last run)."""
        return self.kernel_ops[0] if self.ufunc_ops else _EMPTY_OPS

    @property
    def last_ops(self) -> np.ndarray:
        return self.kernel_ops[-1]

    def middle(self, module: ModuleType, regs: np.ndarray) -> None:
        """The ufunc stages and the compiled runs between them (not the first run or the
        last), on ``regs`` in place."""
        stages = self.ufunc_ops
        for s, stage in enumerate(stages):
            for op in stage:
                operands = op.operands
                if op.unary_register:
                    op.fn(regs[operands[0]], out=regs[op.out])
                else:
                    op.fn(*(regs[a] if isinstance(a, int) else a for a in operands),
                          out=regs[op.out])
            if s + 1 < len(stages):
                module.execute(self.kernel_ops[s + 1], regs)

    def bind(self, regs: np.ndarray, execute: Callable) -> tuple:
        """:meth:`middle` bound to the registers ``regs`` (kept across calls): its calls in
        order, each without arguments (``functools.partial``): a ufunc with its register
        operands and output as rows of ``regs`` (``fn(*operands, out=out)``, the same call
        as :meth:`middle`'s), then the compiled run ``execute(ops, regs)`` between two
        stages (``execute``: the kernels' :func:`execute`)."""
        calls: list = []
        stages = self.ufunc_ops
        for s, stage in enumerate(stages):
            for op in stage:
                operands = tuple(regs[a] if isinstance(a, int) else a for a in op.operands)
                calls.append(partial(op.fn, *operands, out=regs[op.out]))
            if s + 1 < len(stages):
                calls.append(partial(execute, self.kernel_ops[s + 1], regs))
        return tuple(calls)


def run_stages(calls: tuple) -> None:
    """:meth:`RowProgram.middle` by its bound calls (:meth:`RowProgram.bind`): the same
    calls on the same registers."""
    for call in calls:
        call()


def bind_stages(stages: tuple, init: Sequence, known: Sequence[bool]) -> tuple:
    """:func:`schedule`'s ufunc stages (``(out, fn, operand registers)``) as
    :class:`UfuncOp` with the folded constants among their operands."""
    return tuple(
        tuple(UfuncOp(out, fn, tuple(init[r] if known[r] else r for r in regs))
              for out, fn, regs in stage)
        for stage in stages
    )


def schedule(
    n_registers: int, ops: Sequence[tuple], names: Sequence[str], init: Sequence,
    known: Sequence[bool],
) -> tuple[tuple, tuple]:
    """Stages of ``ops`` (``(out, fn, a, b)`` in a valid order, ``b`` -1 for a unary op;
    ``names`` their operators or functions; ``init``/``known`` the folded constants): each
    IEEE operation joins the first compiled run after its operands are ready, each other
    one the first ufunc stage after them.  Returns ``(kernel_ops, stages)``, the stages'
    operations as ``(out, fn, operand registers)`` (:func:`bind_stages`).  Depends on the
    constants only through which registers are known and the values of scalar exponents
    (numpy's fast powers)."""
    # position of each register's value: -1 ready from the start, 2s the compiled run s,
    # 2s + 1 the ufunc stage s
    ready = [-1] * n_registers
    runs: list[list] = [[]]
    stages: list[list] = []
    for (out, fn, a, b), name in zip(ops, names, strict=True):
        operands = (a,) if b < 0 else (a, b)
        at = max(ready[r] for r in operands)
        code = name
        if name == "^" and known[b] and np.ndim(init[b]) == 0:
            code = POWER_FAST.get(float(init[b]), "^")
        if code in OPCODE:
            position = max(at, 0)
            if position % 2:
                position += 1
            while len(runs) <= position // 2:
                runs.append([])
            first = a
            runs[position // 2].append((out, OPCODE[code], first,
                                        b if OPCODE[code] < N_BINARY else -1))
        else:
            position = at + 1 if at % 2 == 0 or at < 0 else at + 2
            if at < 0:
                position = 1
            while len(stages) <= position // 2:
                stages.append([])
            while len(runs) <= position // 2 + 1:
                runs.append([])
            stages[position // 2].append((out, fn, operands))
        ready[out] = position
    kernel_ops = tuple(np.array(r, dtype=np.int64).reshape(-1, 4) for r in runs)
    return kernel_ops, tuple(tuple(s) for s in stages)


#: Use the compiled runs when numba loads; False forces the numpy code (the tests compare
#: both).
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
        The same computation by numpy alone (used without numba).
    gradient : bool
    """

    def __init__(self, program: RowProgram, numpy_call: Callable, gradient: bool = True):
        self.program = program
        self.gradient = gradient
        self._numpy_call = numpy_call
        # the registers, kept across calls (the program writes every register it reads
        # before reading it, except the constants, which it never writes), and the ufunc
        # stages bound to them: set at the first compiled call
        self._work: tuple | None = None

    def __call__(self, phi: np.ndarray):
        module = row_program_kernels()
        if module is None or phi.shape[0] != self.program.n:
            return self._numpy_call(phi)
        prog = self.program
        n = phi.shape[0]
        work = self._work
        if work is None:
            regs = prog.init.copy()
            work = self._work = (regs, prog.bind(regs, module.execute))
        regs, calls = work
        module.start_rows(regs, prog.input_registers, prog.input_columns,
                          np.ascontiguousarray(phi, dtype=float), prog.first_ops)
        if calls:
            with np.errstate(all="ignore"):
                run_stages(calls)
        f = np.empty(n)
        g = np.empty((n, prog.outputs.size - 1))
        module.finish_rows(regs, prog.last_ops, prog.outputs, f, g)
        return (f, g) if self.gradient else (f, None)
