"""Compiled interpreter of register programs (:mod:`mixedmodels.linalg.row_program`), numba.

Imported only through :func:`mixedmodels.linalg.row_program.row_program_kernels` (numba is
optional).  The program is data (opcodes and register indices); :func:`execute` dispatches
on each operation's opcode once and runs it over all rows.  Errors follow numpy's model
(``error_model="numpy"``): a division by zero gives inf or NaN, the log of a negative
number NaN, as numpy's ufuncs give them.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def execute(ops, regs):  # pragma: no cover - compiled
    """Run the operations ``ops`` (k, 4) on the registers ``regs`` (r, n) in place.  The
    opcodes are :data:`mixedmodels.linalg.row_program.OPCODES`'s positions."""
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
                regs[out, j] = regs[a, j] ** regs[b, j]
        elif code == 5:
            for j in range(n):
                regs[out, j] = -regs[a, j]
        elif code == 6:
            for j in range(n):
                regs[out, j] = math.exp(regs[a, j])
        elif code == 7:
            for j in range(n):
                regs[out, j] = _log(regs[a, j])
        elif code == 8:
            for j in range(n):
                v = regs[a, j]
                regs[out, j] = math.sqrt(v) if v >= 0.0 else math.nan
        elif code == 9:
            for j in range(n):
                regs[out, j] = math.sin(regs[a, j])
        elif code == 10:
            for j in range(n):
                regs[out, j] = math.cos(regs[a, j])
        elif code == 11:
            for j in range(n):
                regs[out, j] = math.tan(regs[a, j])
        elif code == 12:
            for j in range(n):
                regs[out, j] = math.atan(regs[a, j])
        elif code == 13:
            for j in range(n):
                regs[out, j] = math.sinh(regs[a, j])
        elif code == 14:
            for j in range(n):
                regs[out, j] = math.cosh(regs[a, j])
        elif code == 15:
            for j in range(n):
                regs[out, j] = math.tanh(regs[a, j])
        elif code == 16:
            for j in range(n):
                v = regs[a, j]
                regs[out, j] = math.log10(v) if v > 0.0 else _log(v)
        elif code == 17:
            for j in range(n):
                v = regs[a, j]
                regs[out, j] = math.log2(v) if v > 0.0 else _log(v)
        elif code == 18:
            for j in range(n):
                v = regs[a, j]
                regs[out, j] = math.log1p(v) if v > -1.0 else (
                    -math.inf if v == -1.0 else math.nan)
        elif code == 19:
            for j in range(n):
                regs[out, j] = math.expm1(regs[a, j])
        elif code == 20:
            for j in range(n):
                regs[out, j] = abs(regs[a, j])
        else:
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


@njit(cache=True, inline="always")
def _log(v):  # pragma: no cover - compiled
    """numpy's log: NaN below 0, -inf at 0."""
    if v > 0.0:
        return math.log(v)
    if v == 0.0:
        return -math.inf
    return math.nan


@njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
def run_rows(ops, init, input_registers, input_columns, outputs, phi, f, g
             ):  # pragma: no cover - compiled
    """The program at the parameter rows ``phi`` (n, P): the first output into ``f`` (n,),
    the others into the columns of ``g`` (n, o - 1)."""
    regs = init.copy()
    n = phi.shape[0]
    for i in range(input_registers.size):
        r, c = input_registers[i], input_columns[i]
        for j in range(n):
            regs[r, j] = phi[j, c]
    execute(ops, regs)
    for j in range(n):
        f[j] = regs[outputs[0], j]
    for k in range(1, outputs.size):
        o = outputs[k]
        for j in range(n):
            g[j, k - 1] = regs[o, j]
