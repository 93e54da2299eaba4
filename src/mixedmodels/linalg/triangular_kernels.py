"""Compiled triangular solves shared by the kernel modules of :mod:`mixedmodels.core`
(numba; imported only by those modules, which load through
:class:`~mixedmodels.linalg.optional_kernels.OptionalKernels`)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, boundscheck=False, nogil=True)
def group_modes(c, beta, low, u):  # pragma: no cover - compiled
    """The conditional modes of every group from its factor: ``u_i`` (rows of ``u``, q
    each) solves ``L_i' u_i = C_i,y - C_i,X beta`` with ``L_i = low[i]`` (q, q, lower) and
    ``C_i = c[i]`` (q, p + 1: the fixed effects' columns, then the response's), by
    back-substitution, each sum in the order of the columns."""
    m, q = u.shape
    p = beta.shape[0]
    r = np.empty(q)
    for i in range(m):
        for a in range(q):
            acc = c[i, a, p]
            for e in range(p):
                acc -= c[i, a, e] * beta[e]
            r[a] = acc
        for a in range(q - 1, -1, -1):
            acc = r[a]
            for e in range(a + 1, q):
                acc -= low[i, e, a] * u[i, e]
            u[i, a] = acc / low[i, a, a]
