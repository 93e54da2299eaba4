"""Compiled runs of register programs (:mod:`mixedmodels.linalg.row_program`), numba.

Imported only through :func:`mixedmodels.linalg.row_program.row_program_kernels` (numba is
optional).  A run is data (opcodes and register indices); :func:`execute` dispatches on
each operation's opcode once and applies it to all rows.  Only IEEE operations run here
(their results are the same bits as numpy's); errors follow numpy's model
(``error_model="numpy"``: a division by zero gives inf or NaN).
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def execute(ops, regs):  # pragma: no cover - compiled
    """Run the operations ``ops`` (k, 4) on the registers ``regs`` (r, n) in place.  The
    opcodes are :data:`mixedmodels.linalg.row_program.EXACT`'s positions."""
    n = regs.shape[1]
    for k in range(ops.shape[0]):
        out, code, a, b = ops[k, 0], ops[k, 1], ops[k, 2], ops[k, 3]
        if code == 0:
            for j in range(n):
                regs[out, j] = regs[a, j] + regs[b, j]
        elif code == 1:
            for j in range(n):
                regs[out, j] = regs[a, j] - regs[b, j]
        elif code == 2:
            for j in range(n):
                regs[out, j] = regs[a, j] * regs[b, j]
        elif code == 3:
            for j in range(n):
                regs[out, j] = regs[a, j] / regs[b, j]
        elif code == 4:
            for j in range(n):
                regs[out, j] = -regs[a, j]
        elif code == 5:
            for j in range(n):
                regs[out, j] = abs(regs[a, j])
        elif code == 6:
            for j in range(n):
                v = regs[a, j]
                if v > 0.0:
                    regs[out, j] = 1.0
                elif v < 0.0:
                    regs[out, j] = -1.0
                elif v == 0.0:
                    regs[out, j] = 0.0
                else:
                    regs[out, j] = v
        elif code == 7:
            for j in range(n):
                v = regs[a, j]
                regs[out, j] = math.sqrt(v) if v >= 0.0 else math.nan
        elif code == 8:
            for j in range(n):
                v = regs[a, j]
                regs[out, j] = v * v
        else:
            for j in range(n):
                regs[out, j] = 1.0 / regs[a, j]


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def start_rows(regs, input_registers, input_columns, phi, ops):  # pragma: no cover - compiled
    """The columns of the parameter rows ``phi`` (n, P) into their registers, then the
    first run ``ops``."""
    n = phi.shape[0]
    for i in range(input_registers.size):
        r, c = input_registers[i], input_columns[i]
        for j in range(n):
            regs[r, j] = phi[j, c]
    execute(ops, regs)


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def finish_rows(regs, ops, outputs, f, g):  # pragma: no cover - compiled
    """The last run ``ops``, then the first output into ``f`` (n,) and the others into
    the columns of ``g`` (n, o - 1)."""
    execute(ops, regs)
    n = f.size
    for j in range(n):
        f[j] = regs[outputs[0], j]
    for k in range(1, outputs.size):
        o = outputs[k]
        for j in range(n):
            g[j, k - 1] = regs[o, j]
