"""The same profiled objective for small models, on one dense ``q x q`` system.

With few random effects (``q = sum l_k p_k`` up to a few hundred) a handful of LAPACK calls
on dense matrices beat the blocked factorization, whose cost is then Python overhead.
Per theta:

.. math::

    L L' = \\Lambda' Z'WZ \\Lambda + I, \\quad
    C = L^{-1} \\Lambda' Z'W[X y], \\quad
    R R' = [X y]'W[X y] - C'C

and the objective is read from ``diag(L)`` and ``diag(R)`` exactly as in the blocked engine
(``r_yy = R[-1, -1]``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.terms import lower_triangle_indices
from mixedmodels.linalg.blocks import NotPositiveDefiniteError, block_diagonal_to_dense

MAX_DENSE_RANDOM_EFFECTS = 240
# LAPACK routines looked up once (module level, so objects holding a DenseObjective pickle)
_POTRF = sla.lapack.dpotrf
_TRTRS = sla.lapack.dtrtrs


def schur_factor(s: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of the ``[X y]`` Schur complement ``s`` (upper triangle zeroed);
    an exact fit (``s`` singular in its last row only) gets ``R[-1, -1] = 0``.

    Raises
    ------
    NotPositiveDefiniteError
        When the fixed-effects part is not positive definite.
    """
    r, info = _POTRF(s, lower=1, clean=1)
    if info != 0 and info != s.shape[0]:
        raise NotPositiveDefiniteError
    if info == s.shape[0]:
        r[-1, -1] = 0.0
    return r


def pieces_from_fixed_factor(
    log_det_random: float, r: np.ndarray, n_fixed: int
) -> tuple[float, float, float]:
    """``(log |L_Z|^2, log |R_X|^2, PWRSS)`` from ``log |L_Z|^2`` and the ``[X y]`` factor."""
    diag = np.diagonal(r)
    return log_det_random, 2.0 * float(np.log(diag[:n_fixed]).sum()), float(diag[-1] ** 2)


def fixed_covariance(r: np.ndarray, n_fixed: int) -> np.ndarray:
    """``(R_X R_X')^-1``, the unscaled covariance of beta, from the ``[X y]`` factor."""
    if not n_fixed:
        return np.zeros((0, 0))
    rinv = sla.solve_triangular(r[:n_fixed, :n_fixed], np.eye(n_fixed), lower=True)
    return rinv.T @ rinv


class DenseObjective:
    """Log-determinants and PWRSS from dense factors, for a problem with small ``q``.

    Parameters
    ----------
    problem : LmmProblem
        Supplies the cross-product blocks (engine order) and the theta layout.
    """

    def __init__(self, problem) -> None:
        g = problem.gram
        blocks = problem.engine_blocks
        sizes = [b.size for b in blocks]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        q = int(starts[-1])
        azz = np.zeros((q, q))
        for k in range(len(blocks)):
            sl = slice(starts[k], starts[k + 1])
            azz[sl, sl] = block_diagonal_to_dense(g.diagonal[k])
            for j in range(k + 1, len(blocks)):
                block = g.off_diagonal[j, k].toarray()
                azz[starts[j] : starts[j + 1], sl] = block
                azz[sl, starts[j] : starts[j + 1]] = block.T
        self.azz = azz
        axz = np.hstack(g.xy_random) if blocks else np.zeros((g.xy_xy.shape[0], 0))
        self.zax = np.ascontiguousarray(axz.T)  # Z'W[X y], (q, m)
        self.axx = g.xy_xy
        self.q = q
        rows, cols, idx = [], [], []
        for e, pub in enumerate(problem.order):
            b = blocks[e]
            r, c = lower_triangle_indices(b.p)
            base = starts[e] + np.arange(b.n_levels)[:, None] * b.p
            rows.append((base + r[None, :]).ravel())
            cols.append((base + c[None, :]).ravel())
            offset = problem.entry_offsets[pub]
            idx.append(np.tile(offset + np.arange(r.size), b.n_levels))
        self.rows = np.concatenate(rows) if rows else np.zeros(0, int)
        self.cols = np.concatenate(cols) if cols else np.zeros(0, int)
        self.theta_index = np.concatenate(idx) if idx else np.zeros(0, int)  # into the entries
        self._entries = problem.lambda_entries  # theta -> lambda's lower triangles
        self.n_fixed = problem.n_fixed
        self._flat_lambda = self.rows * q + self.cols
        self._starts = starts
        self._gram_positions: list[np.ndarray] | None = None  # built on the first refresh
        # scalar terms and diagonal structures (a smooth's scaled identity): Lambda is
        # diagonal, its congruence an elementwise scaling by its diagonal entries
        self._diagonal_lambda = all(b.p == 1 or b.structure.diagonal for b in blocks)
        on_diagonal = self.rows == self.cols
        self._diagonal_rows = self.rows[on_diagonal]
        self._diagonal_index = self.theta_index[on_diagonal]

    def with_response(self, gram) -> DenseObjective:
        """A copy sharing ``Z'WZ`` and the theta layout, with the new response's cross
        products (``Z'W[X y]`` and ``[X y]'W[X y]``)."""
        new = object.__new__(DenseObjective)
        new.__dict__.update(self.__dict__)
        new.zax = np.ascontiguousarray(np.hstack(gram.xy_random).T)
        new.axx = gram.xy_xy
        return new

    def refresh(self, gram) -> None:
        """New values of every cross product (new weights or response) from a Gram whose
        off-diagonal blocks have the same CSR patterns as the one this objective was built
        from: ``Z'WZ`` is rewritten through stored positions, nothing else is redone."""
        if self._gram_positions is None:
            self._gram_positions = self._positions(gram)
        flat = self.azz.reshape(-1)
        n_diag = len(gram.diagonal)
        for k, pos in enumerate(self._gram_positions[:n_diag]):
            flat[pos] = gram.diagonal[k].ravel()
        keys = sorted(gram.off_diagonal)
        for key, pos in zip(keys, self._gram_positions[n_diag:], strict=True):
            data = gram.off_diagonal[key].tocsr().data  # CSR order (a no-op for CSR)
            flat[pos[0]] = data
            flat[pos[1]] = data
        self.zax = np.ascontiguousarray(np.hstack(gram.xy_random).T)
        self.axx = gram.xy_xy

    def _positions(self, gram) -> list:
        """Flat positions in ``azz`` of every diagonal block's values (``(p, p, l)``
        raveled) and of every off-diagonal block's CSR values (both triangles)."""
        q, starts = self.q, self._starts
        out: list = []
        for k, d in enumerate(gram.diagonal):
            p, _, n_levels = d.shape
            a, c, lev = np.meshgrid(np.arange(p), np.arange(p), np.arange(n_levels), indexing="ij")
            base = starts[k] + lev * p
            out.append(((base + a) * q + base + c).ravel())
        for j, k in sorted(gram.off_diagonal):
            mat = gram.off_diagonal[j, k].tocsr()  # a block may be held as CSC
            rows = np.repeat(np.arange(mat.shape[0]), np.diff(mat.indptr)) + starts[j]
            cols = mat.indices.astype(np.int64) + starts[k]
            out.append((rows * q + cols, cols * q + rows))
        return out

    def solve(
        self, theta: np.ndarray, beta: np.ndarray | None = None
    ) -> tuple[float, np.ndarray, float, np.ndarray, np.ndarray]:
        """The factor's pieces and the solution at ``theta`` by the same dense algebra
        as :meth:`pieces`.

        Returns ``(log |L_Z|^2, R, PWRSS, beta, u)``: ``R`` the lower Cholesky factor of
        the ``[X y]`` Schur complement, ``beta`` the fixed effects (relative to the
        problem's response) or the given ``beta``, ``u`` (q,) the spherical random effects
        at that ``beta`` (engine order, level-major).
        """
        m, scaled_zax = self._congruence(theta)
        low, info = _POTRF(m, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            raise NotPositiveDefiniteError
        c, info = _TRTRS(low, scaled_zax, lower=1)
        r = schur_factor(self.axx - c.T @ c)
        p = self.n_fixed
        if beta is None:
            lxx, ly = r[:p, :p], r[-1, :p]
            beta = sla.solve_triangular(lxx, ly, lower=True, trans=1) if p else np.zeros(0)
        rhs = c[:, -1] - c[:, :p] @ beta
        u, _ = _TRTRS(low, rhs, lower=1, trans=1)
        ld_z = 2.0 * float(np.log(low.diagonal()).sum())
        return ld_z, r, float(r[-1, -1] ** 2), np.asarray(beta, dtype=float), u

    def _congruence(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Lambda' Z'WZ Lambda + I`` and ``Lambda' Z'W[X y]`` (elementwise scalings when
        Lambda is diagonal: scalar terms, diagonal and scaled-identity structures)."""
        q = self.q
        if self._diagonal_lambda:
            d = np.zeros(q)
            d[self._diagonal_rows] = self._entries(theta)[self._diagonal_index]
            m = self.azz * d[:, None]
            m *= d[None, :]
            m.reshape(-1)[:: q + 1] += 1.0  # the diagonal, through a strided view
            return m, self.zax * d[:, None]
        lam = np.zeros(q * q)
        lam[self._flat_lambda] = self._entries(theta)[self.theta_index]
        lam = lam.reshape(q, q)
        lam_t = lam.T
        m = lam_t @ self.azz @ lam
        m.flat[:: q + 1] += 1.0
        return m, lam_t @ self.zax

    def pieces(self, theta: np.ndarray) -> tuple[float, float, float]:
        """``(log |L_Z|^2, log |R_X|^2, PWRSS)`` at ``theta``: :meth:`factor_pieces` and
        :func:`pieces_from_fixed_factor`, with the same arithmetic written out in one
        function (this is the optimizer's objective: its call overhead counts)."""
        ld_z, r = self.factor_pieces(theta)
        diag = r.diagonal()
        return ld_z, 2.0 * float(np.log(diag[: self.n_fixed]).sum()), float(diag[-1] ** 2)

    def factor_pieces(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``log |L_Z|^2`` and the lower Cholesky factor ``R`` of the ``[X y]`` Schur
        complement at ``theta`` (``R[-1, -1] = 0`` for an exact fit)."""
        if self._diagonal_lambda:
            m, scaled_zax = self._congruence(theta)
        else:  # _congruence's general branch, inline
            q = self.q
            lam = np.zeros(q * q)
            lam[self._flat_lambda] = self._entries(theta)[self.theta_index]
            lam = lam.reshape(q, q)
            lam_t = lam.T
            m = lam_t @ self.azz @ lam
            m.reshape(-1)[:: q + 1] += 1.0  # the diagonal, through a strided view
            scaled_zax = lam_t @ self.zax
        low, info = _POTRF(m, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise NotPositiveDefiniteError
        c, info = _TRTRS(low, scaled_zax, lower=1)
        s = self.axx - c.T @ c
        r, info = _POTRF(s, lower=1, clean=1)  # schur_factor, inline
        if info != 0:
            if info != s.shape[0]:
                raise NotPositiveDefiniteError
            r[-1, -1] = 0.0
        return 2.0 * float(np.log(low.diagonal()).sum()), r
