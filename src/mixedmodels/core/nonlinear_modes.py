"""The second-basin check's conditional-mode search in one compiled call.

The check (:func:`mixedmodels.optim.nonlinear._other_basin`) asks whether every group's
conditional mode, searched from another start with the fixed effects and the covariance
held, ends near the fitted one.  :func:`mixedmodels.optim.nonlinear.conditional_modes`
answers it with one Python step per quasi-Newton iteration and one model evaluation per
trial point, each a few numpy and kernel calls (~40 us an evaluation, 7 evaluations a
check on Theoph).  Here the whole search runs in :func:`mixedmodels.core.mode_kernels.
mode_search`, the model included: the register program of the design's model
(:class:`~mixedmodels.linalg.row_program.RowProgram`) flattened into one list of
operations (:func:`flat_program`) whose elementary functions are numba's.  Those differ
from numpy's in the last bit on a few percent of arguments, so this search's modes equal
numpy's to rounding only; its caller keeps nothing of it but the answer where every group
ends near its fitted mode, and searches with numpy's functions otherwise.

None (the caller's own search) without numba, for a model that is no register program, or
for one with a function or a constant the flat program does not take.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from mixedmodels.core.nonlinear import NonlinearProblem, pls_kernels
from mixedmodels.linalg.optional_kernels import OptionalKernels
from mixedmodels.linalg.row_program import RowProgram

#: numpy's functions the flat program takes, by opcode
#: (:mod:`mixedmodels.core.mode_kernels`: 10 on; ``power`` the only binary one).
FUNCTION_CODES: dict = {
    np.exp: 10, np.log: 11, np.sin: 12, np.cos: 13, np.tan: 14, np.arctan: 15, np.sinh: 16,
    np.cosh: 17, np.tanh: 18, np.log10: 19, np.log2: 20, np.log1p: 21, np.expm1: 22,
}
POWER_CODE = 23

_KERNELS = OptionalKernels(
    "mixedmodels.core.mode_kernels",
    "the compiled conditional-mode search of the second-basin check",
    "using numpy's search",
)


def mode_kernels() -> ModuleType | None:
    """The kernel module, or None (numba missing or failing, or the nonlinear kernels
    switched off by :data:`mixedmodels.core.nonlinear.USE_KERNELS`)."""
    if pls_kernels() is None:
        return None
    return _KERNELS.load()


def flat_program(program: RowProgram) -> tuple[np.ndarray, np.ndarray] | None:
    """The program as one list of operations ``(out, opcode, first, second)`` in its own
    order (run 0, ufunc stage 0, run 1, ..., the last run) and its registers, the
    ufunc stages' constants appended as registers of their own (broadcast to the rows);
    None for a function outside :data:`FUNCTION_CODES` and ``power`` or a constant that
    does not broadcast to the rows."""
    stages = program.ufunc_ops
    runs = program.kernel_ops
    regs = program.init
    base, n = regs.shape
    extra: list[np.ndarray] = []
    rows: list[tuple] = []
    ends = []
    for stage in stages:
        for op in stage:
            code = FUNCTION_CODES.get(op.fn)
            if code is not None and op.unary_register:  # (the usual case: exp(x))
                rows.append((op.out, code, op.operands[0], -1))
                continue
            operands = []
            for a in op.operands:
                if not isinstance(a, int):  # (as RowProgram.middle: an int is a register)
                    try:
                        extra.append(np.broadcast_to(np.asarray(a, dtype=float), (n,)))
                    except (ValueError, TypeError):
                        return None
                    a = base + len(extra) - 1
                operands.append(a)
            if op.fn is np.power and len(operands) == 2:
                rows.append((op.out, POWER_CODE, operands[0], operands[1]))
            elif code is not None and len(operands) == 1:
                rows.append((op.out, code, operands[0], -1))
            else:
                return None
        ends.append(len(rows))
    if stages:
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
        pieces = []
        start = 0
        for s, end in enumerate(ends):
            pieces += [runs[s], table[start:end]]
            start = end
        ops = np.concatenate([*pieces, runs[-1]])
    else:
        ops = runs[-1]
    return ops, (np.vstack([regs, *extra]) if extra else regs.copy())


_NO_ROWS = np.zeros((0, 0))
_EMPTY = np.zeros(0)


def search_modes(problem: NonlinearProblem, beta: np.ndarray, lam: np.ndarray, u: np.ndarray,
                 max_iter: int, weights: np.ndarray | None, near: np.ndarray, within: float
                 ) -> tuple[np.ndarray, float, float] | None:
    """``conditional_modes(problem, beta, lam, u, max_iter, weights, near, within)``'s
    modes and penalized residual sum of squares (inf where the objective is not finite at
    ``u``) by one compiled call, equal to rounding (see the module's note), and the modes'
    largest distance from ``near`` (``max |modes - near|``, NaN where one is NaN).  None where
    the call is not available (no numba, no register program, a function it does not take)
    or a quasi-Newton system is singular (the caller's search then decides)."""
    program = problem._program
    module = None if program is None else mode_kernels()
    if module is None:
        return None
    flat = flat_program(program)
    if flat is None:
        return None
    ops, regs = flat
    beta = np.ascontiguousarray(beta, dtype=float)
    fixed_part = _NO_ROWS if problem._intercepts else np.ascontiguousarray(
        problem.fixed_columns @ (beta[:, None] * problem.selector))
    # (a C-ordered copy: the kernel writes the modes into it, and one layout is one
    # compilation; the fitted modes come transposed, F-ordered)
    modes = np.array(u, dtype=float, order="C")
    status, pwrss, apart = module.mode_search(
        ops, regs, program.input_registers, program.input_columns, program.outputs, beta,
        fixed_part, problem._groups64, problem._random_index64, problem._y_kernel,
        _EMPTY if weights is None else np.ascontiguousarray(weights, dtype=float),
        weights is not None, np.ascontiguousarray(lam, dtype=float), modes,
        np.ascontiguousarray(near, dtype=float), float(within), int(max_iter),
    )
    if status < 0:
        return None
    return modes, float(pwrss), float(apart)
