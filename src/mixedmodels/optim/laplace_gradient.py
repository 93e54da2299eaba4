"""The gradient of the Laplace deviance in the fixed effects, from one PIRLS mode.

For a family whose Laplace data term is the deviance ``D = sum d_i(eta_i)`` (binomial,
Poisson: no dispersion parameter, no parameters of its own), the Laplace deviance at
``(theta, beta)`` is

.. math::

    L = D(\\tilde\\eta) + \\|\\tilde u\\|^2 + \\log|M|, \\quad
    M = I + A' W(\\tilde\\eta) A, \\quad A = Z \\Lambda_\\theta,

with ``u~`` the mode of ``D + ||u||^2`` at that ``beta`` and ``eta~ = offset + X beta + A
u~``.  The first two terms are minimized over ``u``, so their derivative in ``beta`` is the
partial one, ``-2 X' s`` (``s_i = -1/2 d d_i / d eta``, the rows' scores).  The
log-determinant changes through ``W`` along ``d eta / d beta = X + A d u~ / d beta``, with
``d u~ / d beta = -M~^-1 A' W~ X`` (``W~ = -d s / d eta``, the observed information; equal
to ``W`` on a canonical link), so that

.. math::

    \\nabla_\\beta L = -2 X' s + X' c - X' W~ A M~^{-1} A' c, \\qquad
    c_i = \\ell_i \\, \\frac{d W_i}{d \\eta_i}, \\quad \\ell_i = a_i' M^{-1} a_i.

``ds/deta`` and ``dW/deta`` are taken by central differences in each row's ``eta`` (the
family's own functions, no PIRLS), with steps of ``1e-4 max(1, |eta|)``: their error,
~1e-8 relative, is smooth in the parameters and cancels in the differences of gradients the
Hessian is made of.

``M`` is handled as the LMM engine's crossed path handles it: the columns of the largest
scalar term (one non-zero per row: its block of ``M`` is diagonal) are eliminated, the
rest (``q2`` columns) is dense; ``l_i`` needs ``M^-1`` only where row ``i`` has non-zeros.
The row pattern of ``A`` is that of ``Z`` (term ``t``'s values in row ``i`` are ``z_i'
lambda_t``), kept as index arrays, so a gradient costs ``O(n r^2 + q1 q2^2 + q2^3)``
(``r`` non-zeros per row) in a handful of numpy calls: a fraction of a PIRLS run.
:class:`LaplaceGradient` (every family, called ~20 times per fit) takes the cheapest
factor of ``M`` the terms allow: diagonal for one scalar term, block diagonal (``p x p``
per level) for one vector-valued term, and for crossed terms the coupling block by its
non-zeros (:class:`_CouplingPattern`); a factor only solved with (the observed weights')
is never inverted.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mixedmodels.core.families import Family, LikelihoodFamily
from mixedmodels.core.pirls import ConditionalMode, GlmmProblem
from mixedmodels.reterms.structures import lower_triangle_indices

#: relative step of the row-wise differences in eta
ETA_STEP = 1e-4

#: the largest dense remainder (columns after the eliminated term), and the largest
#: ``q1 * q2`` (the dense coupling block), the gradient is used for
MAX_DENSE_COLUMNS = 2000
MAX_COUPLING = 4_000_000
#: above this ``q1 * q2`` the coupling block is kept sparse
DENSE_COUPLING = 20_000


def has_deviance_gradient(family: Family) -> bool:
    """Whether the family's Laplace data term is the deviance minimized by PIRLS (no
    dispersion parameter, no parameters of its own), so that :class:`BetaGradient`
    applies."""
    return not family.has_dispersion and not family.extra_names


class BetaGradient:
    """``d L / d beta`` of a problem's Laplace deviance, from PIRLS's mode.

    Parameters
    ----------
    problem : GlmmProblem
        Its family must satisfy :func:`has_deviance_gradient`.

    Attributes
    ----------
    q1, q2 : int
        Columns eliminated (the largest scalar term's) and the dense rest.
    """

    def __init__(self, problem: GlmmProblem) -> None:
        self.problem = problem
        blocks = problem.blocks
        scalar = [i for i, b in enumerate(blocks) if b.p == 1]
        self.eliminated = max(scalar, key=lambda i: blocks[i].n_levels) if scalar else None
        self.q1 = 0 if self.eliminated is None else blocks[self.eliminated].n_levels
        cols, offset = [], 0
        # each non-eliminated term's positions among a row's r2 non-zeros
        self._row_slice: dict[int, slice] = {}
        for i, block in enumerate(blocks):
            if i == self.eliminated:
                continue
            position = sum(c.shape[1] for c in cols)
            self._row_slice[i] = slice(position, position + block.p)
            cols.append(offset + block.codes[:, None] * block.p + np.arange(block.p))
            offset += block.size
        self.q2 = offset
        n = problem.n
        self.cols2 = np.concatenate(cols, axis=1) if cols else np.zeros((n, 0), dtype=int)
        r2 = self.cols2.shape[1]
        # every pair of the rest's non-zeros in a row: flattened (a, b) column pairs
        self._pair_a = np.repeat(np.arange(r2), r2)
        self._pair_b = np.tile(np.arange(r2), r2)
        # the index arrays every factor scatters with, kept per fit (the same numbers as
        # building them per factor: only the indexing is kept)
        codes = blocks[self.eliminated].codes if self.q1 else None
        self._indices = _FactorIndices(
            codes, self.q1, self.cols2, self.q2, self._pair_a, self._pair_b
        )

    def usable(self) -> bool:
        """Whether the dense parts are small enough (:data:`MAX_DENSE_COLUMNS`,
        :data:`MAX_COUPLING`)."""
        return self.q2 <= MAX_DENSE_COLUMNS and self.q1 * self.q2 <= MAX_COUPLING

    def _values(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A``'s values: the eliminated term's (n,) and the rest's (n, r2)."""
        lambdas = self.problem.lambdas(np.asarray(theta, dtype=float))
        a1 = np.zeros(self.problem.n)
        rest = []
        for i, (block, lam) in enumerate(zip(self.problem.blocks, lambdas, strict=True)):
            if i == self.eliminated:
                a1 = block.z[:, 0] * lam[0, 0]
            else:
                rest.append(block.z @ lam)
        a2 = np.concatenate(rest, axis=1) if rest else np.zeros((self.problem.n, 0))
        return a1, a2

    def _factor(self, a1, a2, w) -> _Factor:
        return _Factor(self._indices, a1, a2, w)

    def __call__(self, theta: np.ndarray, mode: ConditionalMode) -> np.ndarray:
        """The gradient at ``theta`` and ``mode.beta`` (``mode``: PIRLS's converged mode
        there).

        Raises
        ------
        numpy.linalg.LinAlgError
            When the Schur complement is not positive definite (not at a mode).
        """
        problem = self.problem
        fam = problem.family
        y, pw, X = problem.y, problem.prior_weights, problem.X
        eta = mode.eta
        step = ETA_STEP * np.maximum(1.0, np.abs(eta))

        def score(e: np.ndarray) -> np.ndarray:
            h, r = fam.working(y, e, fam.link.inverse(e), pw)
            return h * r

        def laplace_weights(e: np.ndarray) -> np.ndarray:
            return fam.laplace_weights(y, e, fam.link.inverse(e), pw)

        with np.errstate(over="ignore", invalid="ignore"):
            s = score(eta)
            observed = -(score(eta + step) - score(eta - step)) / (2 * step)
            dw = (laplace_weights(eta + step) - laplace_weights(eta - step)) / (2 * step)
        a1, a2 = self._values(theta)
        factor = self._factor(a1, a2, mode.weights)
        c = factor.leverages() * dw
        if np.allclose(observed, mode.weights, rtol=1e-6, atol=0.0):
            # canonical link: the observed information is the expected one (to the error
            # of the differences); both factors below must use the same weights, as
            # X' c - X' W~ A M~^-1 A' c cancels to a small remainder
            observed = mode.weights
            solver = factor
        else:
            solver = self._factor(a1, a2, observed)
        av = solver.solve_rows(c)
        return -2.0 * (X.T @ s) + X.T @ c - X.T @ (observed * av)


class _FactorIndices:
    """The index arrays of :class:`_Factor`'s scatters and gathers, which depend on the
    problem's pattern alone: built once per fit instead of once per factor."""

    def __init__(self, codes, q1, cols2, q2, pair_a, pair_b) -> None:
        self.codes, self.q1, self.cols2, self.q2 = codes, q1, cols2, q2
        self.pair_a, self.pair_b = pair_a, pair_b
        r2 = cols2.shape[1]
        self.flat = (cols2[:, pair_a] * q2 + cols2[:, pair_b]).ravel()
        self.cols2_flat = cols2.ravel()
        self.eye = np.eye(q2)
        # the (n, r2, r2) gather of S^-1 at each row's pairs of columns
        self.rows_a, self.rows_b = cols2[:, :, None], cols2[:, None, :]
        if q1:
            self.rows = np.repeat(codes, r2)
            self.flat_b = (codes[:, None] * q2 + cols2).ravel()
            self.codes_cols = codes[:, None]


class _Factor:
    """``M = I + A' W A`` with the scalar term's columns eliminated: ``D`` diagonal, ``E =
    D^-1 B`` and the inverse of the Schur complement ``S = C - B' D^-1 B`` (dense)."""

    def __init__(self, indices: _FactorIndices, a1, a2, w, inverse: bool = True) -> None:
        codes, q1, cols2, q2 = indices.codes, indices.q1, indices.cols2, indices.q2
        pair_a, pair_b = indices.pair_a, indices.pair_b
        self.indices = indices
        self.codes, self.a1, self.cols2, self.a2 = codes, a1, cols2, a2
        self.q1, self.q2 = q1, q2
        wa2 = a2 * w[:, None]
        c = np.bincount(
            indices.flat, (wa2[:, pair_a] * a2[:, pair_b]).ravel(), minlength=q2 * q2
        )
        schur = c.reshape(q2, q2) + indices.eye
        if q1:
            self.d = 1.0 + np.bincount(codes, w * a1**2, minlength=q1)
            values = (wa2 * a1[:, None]).ravel()
            if q1 * q2 > DENSE_COUPLING:
                # E = D^-1 B sparse where it is large (an observation-level term's rows
                # couple with r2 columns each)
                b = sp.csr_matrix((values, (indices.rows, indices.cols2_flat)), shape=(q1, q2))
                self.e = (sp.diags(1.0 / self.d) @ b).tocsr()
                schur -= (b.T @ self.e).toarray()
            else:
                b = np.bincount(indices.flat_b, values, minlength=q1 * q2).reshape(q1, q2)
                self.e = b / self.d[:, None]
                schur -= b.T @ self.e
        if q2:
            # the same LAPACK calls with scipy's finiteness checks done once here (the
            # same error as theirs)
            if not np.isfinite(schur).all():
                raise ValueError("array must not contain infs or NaNs")
            factor = sla.cho_factor(schur, lower=True, check_finite=False)
            # without ``inverse`` (a factor only solved with: LaplaceGradient's with the
            # observed weights) S is kept factored, S^-1 never formed
            self._cholesky = factor
            self.s_inv = sla.cho_solve(factor, indices.eye, check_finite=False) if inverse else None
        else:
            self._cholesky = None
            self.s_inv = schur

    def _schur_solve(self, rhs: np.ndarray) -> np.ndarray:
        """``S^-1 rhs``: by the inverse where it was formed, else by the Cholesky factor."""
        if self.s_inv is not None:
            return self.s_inv @ rhs
        return sla.cho_solve(self._cholesky, rhs, check_finite=False)

    def _eliminated_inverse(self) -> tuple[np.ndarray, np.ndarray]:
        """``E S^-1`` (q1, q2) and the diagonal of ``M^-1``'s eliminated block, ``D^-1 +
        diag(E S^-1 E')`` (q1,)."""
        f = np.asarray(self.e @ self.s_inv)
        if sp.issparse(self.e):
            quad = np.asarray(self.e.multiply(f).sum(axis=1)).ravel()
        else:
            quad = np.einsum("ij,ij->i", self.e, f)
        return f, 1.0 / self.d + quad

    def leverages(self) -> np.ndarray:
        """``l_i = a_i' M^-1 a_i`` (``M^-1 = [D^-1 + E S^-1 E', -E S^-1; -S^-1 E',
        S^-1]``)."""
        cols2, a2 = self.cols2, self.a2
        n, r2 = a2.shape
        out = np.zeros(n)
        if r2:
            s_rows = self.s_inv[self.indices.rows_a, self.indices.rows_b]  # (n, r2, r2)
            out += np.einsum("ia,iab,ib->i", a2, s_rows, a2)
        if self.q1:
            f, diag = self._eliminated_inverse()
            out += self.a1**2 * diag[self.codes]
            if r2:
                out -= 2.0 * self.a1 * np.einsum("ia,ia->i", a2, f[self.codes[:, None], cols2])
        return out

    def row_solutions(self) -> tuple[np.ndarray, np.ndarray]:
        """``M^-1 a_i`` at row ``i``'s own columns: its entry at the eliminated term's
        column (n,) and at the rest's (n, r2); ``l_i`` is their product with ``a_i``."""
        cols2, a2 = self.cols2, self.a2
        n, r2 = a2.shape
        t1 = np.zeros(n)
        t2 = np.zeros((n, r2))
        if r2:
            s_rows = self.s_inv[self.indices.rows_a, self.indices.rows_b]  # (n, r2, r2)
            t2 += np.einsum("iab,ib->ia", s_rows, a2)
        if self.q1:
            f, diag = self._eliminated_inverse()
            t1 += self.a1 * diag[self.codes]
            if r2:
                f_rows = f[self.codes[:, None], cols2]  # (n, r2)
                t1 -= np.einsum("ia,ia->i", f_rows, a2)
                t2 -= self.a1[:, None] * f_rows
        return t1, t2

    def solve(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``A M^-1 A' c`` (n,) and ``M^-1 A' c`` in the factor's order: the eliminated
        term's part (q1,) and the rest's (q2,)."""
        r2 = np.bincount(
            self.indices.cols2_flat, (self.a2 * c[:, None]).ravel(), minlength=self.q2
        )
        if self.q1:
            r1 = np.bincount(self.codes, self.a1 * c, minlength=self.q1)
            v2 = self._schur_solve(r2 - self.e.T @ r1)
            v1 = r1 / self.d - self.e @ v2
            rows = self.a1 * v1[self.codes] + np.einsum("ia,ia->i", self.a2, v2[self.cols2])
            return rows, v1, v2
        v2 = self._schur_solve(r2)
        return np.einsum("ia,ia->i", self.a2, v2[self.cols2]), np.zeros(0), v2

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`row_solutions` and the leverages ``l_i`` from them."""
        t1, t2 = self.row_solutions()
        return t1, t2, self.a1 * t1 + np.einsum("ia,ia->i", self.a2, t2)

    def solve_rows(self, c: np.ndarray) -> np.ndarray:
        """``A M^-1 A' c``."""
        r2 = np.bincount(
            self.indices.cols2_flat, (self.a2 * c[:, None]).ravel(), minlength=self.q2
        )
        if self.q1:
            r1 = np.bincount(self.codes, self.a1 * c, minlength=self.q1)
            v2 = self.s_inv @ (r2 - self.e.T @ r1)
            v1 = r1 / self.d - self.e @ v2
            return self.a1 * v1[self.codes] + np.einsum("ia,ia->i", self.a2, v2[self.cols2])
        v2 = self.s_inv @ r2
        return np.einsum("ia,ia->i", self.a2, v2[self.cols2])


class _DiagonalFactor:
    """:class:`_Factor` where every column is the eliminated scalar term's (``q2 = 0``: one
    scalar term): ``M = D`` diagonal.  The same numbers as :class:`_Factor`'s (whose dense
    parts are then empty: adding their zeros changes no bit), without its empty products.
    """

    def __init__(self, codes: np.ndarray, q1: int, a1: np.ndarray, w: np.ndarray) -> None:
        self.codes, self.q1, self.a1 = codes, q1, a1
        self.d = 1.0 + np.bincount(codes, w * a1**2, minlength=q1)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``M^-1 a_i`` at row ``i``'s column (n,), the rest's (an (n, 0) array) and the
        leverages ``l_i = a_i' M^-1 a_i``."""
        t1 = self.a1 * (1.0 / self.d)[self.codes]
        return t1, np.zeros((t1.size, 0)), self.a1 * t1

    def solve(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``A M^-1 A' c`` (n,), ``M^-1 A' c`` (q1,) and the rest's (empty)."""
        v1 = np.bincount(self.codes, self.a1 * c, minlength=self.q1) / self.d
        return self.a1 * v1[self.codes], v1, np.zeros(0)


class _BlockFactor:
    """:class:`_Factor` where the only term is vector-valued (``p > 1`` coefficients per
    level, nothing eliminated): ``M`` is block diagonal, one ``p x p`` block per level, and
    is inverted block by block (batched LAPACK calls) instead of as a dense ``q x q``
    matrix.  ``M^-1`` is the same to rounding; a block that is not positive definite raises
    :class:`numpy.linalg.LinAlgError` as the dense Cholesky factorization does.

    Parameters
    ----------
    codes : ndarray (n,)
        Each row's level.
    n_levels : int
    a2 : ndarray (n, p)
        ``A``'s values in each row's columns (its level's, in order).
    w : ndarray (n,)
        The weights.
    pattern : ndarray (n * p * p,)
        Each row's flat positions in the ``(n_levels, p, p)`` stack of blocks.
    columns : ndarray (n * p,)
        Each row's columns (level-major), flat.
    inverse : bool
        Whether to form ``M^-1`` (for :meth:`rows`); a factor only solved with skips it.
    """

    def __init__(self, codes, n_levels, a2, w, pattern, columns, inverse: bool = True) -> None:
        self.codes, self.a2, self.columns = codes, a2, columns
        n, p = a2.shape
        self.shape = (n_levels, p)
        wa2 = a2 * w[:, None]
        sums = np.bincount(
            pattern, (wa2[:, :, None] * a2[:, None, :]).ravel(), minlength=n_levels * p * p
        )
        blocks = sums.reshape(n_levels, p, p)
        blocks += np.eye(p)
        if not np.isfinite(blocks).all():
            raise ValueError("array must not contain infs or NaNs")
        if not w.min(initial=0.0) >= 0.0:
            # I + A' W A is positive definite where no weight is negative; else a block's
            # Cholesky factorization raises LinAlgError where it is not
            np.linalg.cholesky(blocks)
        self.blocks = blocks
        self.inv = np.linalg.inv(blocks) if inverse else None

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``M^-1 a_i`` at row ``i``'s columns: none eliminated (zeros (n,)), the term's
        (n, p); and the leverages ``l_i = a_i' M^-1 a_i``."""
        t2 = np.einsum("iab,ib->ia", self.inv[self.codes], self.a2)
        return np.zeros(t2.shape[0]), t2, np.einsum("ia,ia->i", self.a2, t2)

    def solve(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``A M^-1 A' c`` (n,), nothing eliminated (empty) and ``M^-1 A' c`` (q,)."""
        n_levels, p = self.shape
        r = np.bincount(
            self.columns, (self.a2 * c[:, None]).ravel(), minlength=n_levels * p
        ).reshape(n_levels, p)
        if self.inv is not None:
            v = np.einsum("lab,lb->la", self.inv, r)
        else:
            v = np.linalg.solve(self.blocks, r[:, :, None])[:, :, 0]
        return np.einsum("ia,ia->i", self.a2, v[self.codes]), np.zeros(0), v.ravel()


class _CouplingPattern:
    """Where the coupling block ``B`` (eliminated levels x the rest's columns) of
    :class:`_Factor` has non-zeros, and every pair of them in one eliminated level: built
    once per fit, so that ``B' D^-1 B`` and the entries of ``E S^-1`` and ``E S^-1 E'``
    the gradient reads cost ``O(sum_l k_l^2)`` (``k_l`` non-zeros in level ``l``'s row of
    ``B``; one where the eliminated term is nested in the other) instead of dense
    products over ``q1 x q2``.

    Attributes
    ----------
    size : int
        The pairs ``sum_l k_l^2`` (the cost).
    """

    def __init__(self, codes: np.ndarray, q1: int, cols2: np.ndarray, q2: int) -> None:
        keys = (codes[:, None] * q2 + cols2).ravel()
        unique, inverse = np.unique(keys, return_inverse=True)
        #: each row's non-zeros' positions among B's (n, r2), their levels and columns
        self.row_pair = inverse.reshape(cols2.shape)
        self.level, self.col = unique // q2, unique % q2
        self.n_pairs = unique.size
        counts = np.bincount(self.level, minlength=q1)
        starts = np.cumsum(counts) - counts
        # every (m, m') of non-zeros in the same level (unique is sorted by level)
        k = counts[self.level]
        self.left = np.repeat(np.arange(unique.size), k)
        first = np.repeat(np.cumsum(k) - k, k)
        self.right = starts[self.level[self.left]] + (np.arange(self.left.size) - first)
        left_col, right_col = self.col[self.left], self.col[self.right]
        self.left_level = self.level[self.left]
        self.flat = left_col * q2 + right_col
        self.size = self.left.size
        # where S^-1's entries are read, in its lower triangle (LAPACK's potri fills it)
        self.pair_hi = np.maximum(left_col, right_col)
        self.pair_lo = np.minimum(left_col, right_col)
        rows_a, rows_b = cols2[:, :, None], cols2[:, None, :]
        self.row_hi, self.row_lo = np.maximum(rows_a, rows_b), np.minimum(rows_a, rows_b)


class _CoupledFactor:
    """:class:`_Factor`'s elimination with the coupling block ``B`` kept as its non-zeros
    (:class:`_CouplingPattern`): the same ``D``, ``S`` and solutions to rounding, and
    ``S^-1`` (where formed) in its lower triangle only."""

    def __init__(self, indices, pattern: _CouplingPattern, a1, a2, w, inverse=True) -> None:
        codes, q1, cols2, q2 = indices.codes, indices.q1, indices.cols2, indices.q2
        self.indices, self.pattern = indices, pattern
        self.codes, self.a1, self.cols2, self.a2 = codes, a1, cols2, a2
        self.q1, self.q2 = q1, q2
        wa2 = a2 * w[:, None]
        c = np.bincount(
            indices.flat,
            (wa2[:, indices.pair_a] * a2[:, indices.pair_b]).ravel(),
            minlength=q2 * q2,
        )
        self.d = 1.0 + np.bincount(codes, w * a1**2, minlength=q1)
        b = np.bincount(
            pattern.row_pair.ravel(), (wa2 * a1[:, None]).ravel(), minlength=pattern.n_pairs
        )
        self.e_values = b / self.d[pattern.level]
        coupling = np.bincount(
            pattern.flat, b[pattern.left] * self.e_values[pattern.right], minlength=q2 * q2
        )
        schur = (c - coupling).reshape(q2, q2) + indices.eye
        if not np.isfinite(schur).all():
            raise ValueError("array must not contain infs or NaNs")
        # LAPACK's Cholesky factorization and inverse from it (potri: a third of the work
        # of solving against the identity), S^-1 in the lower triangle alone
        lower, info = _POTRF(schur, lower=1, clean=0)
        _check_lapack(info)
        self._lower = lower
        self.s_inv = None
        if inverse:
            self.s_inv, info = _POTRI(lower, lower=1)
            _check_lapack(info)

    def _schur_solve(self, rhs: np.ndarray) -> np.ndarray:
        """``S^-1 rhs``: by the lower triangle of the inverse where it was formed, else by
        the Cholesky factor."""
        if self.s_inv is not None:
            return sla.blas.dsymv(1.0, self.s_inv, rhs, lower=1)
        solved, info = _POTRS(self._lower, rhs, lower=1)
        _check_lapack(info)
        return solved

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_Factor.row_solutions` and the leverages, with ``E S^-1`` taken at the
        rows' own non-zeros of ``B`` and ``diag(E S^-1 E')`` over the pairs."""
        pattern, a1, a2 = self.pattern, self.a1, self.a2
        s_rows = self.s_inv[pattern.row_hi, pattern.row_lo]  # (n, r2, r2)
        t2 = np.einsum("iab,ib->ia", s_rows, a2)
        weighted = self.e_values[pattern.left] * self.s_inv[pattern.pair_hi, pattern.pair_lo]
        f = np.bincount(pattern.right, weighted, minlength=pattern.n_pairs)  # E S^-1 at B's
        quad = np.bincount(
            pattern.left_level, weighted * self.e_values[pattern.right], minlength=self.q1
        )
        f_rows = f[pattern.row_pair]  # (n, r2)
        t1 = a1 * (1.0 / self.d + quad)[self.codes] - np.einsum("ia,ia->i", f_rows, a2)
        t2 -= a1[:, None] * f_rows
        return t1, t2, a1 * t1 + np.einsum("ia,ia->i", a2, t2)

    def solve(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_Factor.solve` with ``E`` by its non-zeros."""
        pattern = self.pattern
        r2 = np.bincount(
            self.indices.cols2_flat, (self.a2 * c[:, None]).ravel(), minlength=self.q2
        )
        r1 = np.bincount(self.codes, self.a1 * c, minlength=self.q1)
        et_r1 = np.bincount(pattern.col, self.e_values * r1[pattern.level], minlength=self.q2)
        v2 = self._schur_solve(r2 - et_r1)
        v1 = r1 / self.d - np.bincount(
            pattern.level, self.e_values * v2[pattern.col], minlength=self.q1
        )
        rows = self.a1 * v1[self.codes] + np.einsum("ia,ia->i", self.a2, v2[self.cols2])
        return rows, v1, v2


_POTRF, _POTRI, _POTRS = sla.get_lapack_funcs(("potrf", "potri", "potrs"), (np.zeros(1),))


def _check_lapack(info: int) -> None:
    """Raise as scipy's ``cho_factor`` does where a LAPACK call failed: LinAlgError for a
    matrix that is not positive definite."""
    if info > 0:
        raise np.linalg.LinAlgError(
            f"{info}-th leading minor of the array is not positive definite"
        )
    if info < 0:
        raise ValueError(f"LAPACK reported an illegal value in argument {-info}")


#: at how many thetas LaplaceGradient keeps A's values and d lambda / d theta
KEPT_THETAS = 8

#: step of the differences in the family's own parameters (relative, at least this)
EXTRA_STEP = 1e-4
#: relative change of the deviance along which ``kappa = dT / dD`` is differenced
KAPPA_STEP = 1e-4


class LaplaceGradient(BetaGradient):
    """``d L / d (beta, psi)`` of a problem's Laplace deviance for any family: ``psi`` the
    family's own parameters (``extra_names``: a dispersion, a size, zero-inflation
    coefficients; none for lme4's dispersion families).

    The Laplace deviance is ``L = T + ||u~||^2 + log|M|`` with ``u~`` the minimizer of
    ``D + ||u||^2`` (``D`` the deviance PIRLS minimizes) and ``T`` the family's data term
    (:meth:`Family.objective_term`).  ``T`` depends on the linear predictor through ``D``
    alone, ``dT = kappa dD``: ``kappa = 1`` where ``T - D`` does not depend on the means
    (binomial, Poisson, glmmTMB's families: ``T = D``; lme4's negative binomial: ``T =
    -2 sum log p``, whose difference from ``D`` is the saturated model's), and for the
    families with a dispersion (``T`` = R's aic with ``phi = D / sum w``, ``-2 log p_i = d_i
    / phi + c(y_i, phi)``) ``kappa = dT / dD`` taken by a difference along the scores.  With
    ``s`` the rows' scores (``-1/2 d d_i / d eta``), ``W~ = -d s / d eta``, ``W`` the
    Laplace weights, ``l_i = a_i' M^-1 a_i``, ``c = l * d W / d eta`` and ``v = A M~^-1 A'
    (c + 2 (1 - kappa) s)``:

    .. math::

        \\nabla_\\beta L = X' (c - 2 \\kappa s) - X' (W~ v), \\qquad
        \\partial_{\\psi_j} L = \\partial_{\\psi_j} T + l' \\partial_{\\psi_j} W
            + v' \\partial_{\\psi_j} s

    (partials at fixed ``eta``; with ``kappa = 1`` and no ``psi`` the first is
    :class:`BetaGradient`'s).  The partials in ``psi`` are central differences of the
    family's functions at ``psi +- h`` (``h = 1e-4 max(1, |psi_j|)``: ``2 n_psi`` families,
    no PIRLS).

    Parameters
    ----------
    problem : GlmmProblem
        At any value of the family's own parameters (each call passes the family).
    """

    def __init__(self, problem: GlmmProblem) -> None:
        super().__init__(problem)
        blocks = problem.blocks
        # one vector-valued term alone: M is block diagonal (_BlockFactor)
        self._block = None
        if len(blocks) == 1 and blocks[0].p > 1:
            block = blocks[0]
            p = block.p
            pattern = block.codes[:, None] * (p * p) + np.arange(p * p)
            self._block = (block.codes, block.n_levels, pattern.ravel(), self.cols2.ravel())
        # the coupling block's non-zeros where there are both an eliminated term and a
        # rest, and their pairs are fewer than the dense block's products
        self._coupling = None
        if self.q1 and self.q2:
            pattern = _CouplingPattern(self._indices.codes, self.q1, self.cols2, self.q2)
            if pattern.size <= min(self.q1 * self.q2, MAX_COUPLING):
                self._coupling = pattern
        # A's values and each term's d lambda / d theta at the last KEPT_THETAS thetas
        # (_theta_terms): a Hessian's gradients along beta and psi share the centre's
        self._theta_known: dict[bytes, list] = {}
        # the last family's kernel (lme4's families: the same family at every call)
        self._kernel_of: tuple[Family, object] | None = None

    def _laplace_factor(self, a1, a2, w, inverse: bool = True):
        """The factor of ``M = I + A' W A`` for weights ``w``: diagonal where every column
        is eliminated, block diagonal for one vector-valued term, :class:`_Factor`
        otherwise; ``inverse`` False for a factor only solved with."""
        if not self.q2:
            return _DiagonalFactor(self._indices.codes, self.q1, a1, w)
        if self._block is not None:
            codes, n_levels, pattern, columns = self._block
            return _BlockFactor(codes, n_levels, a2, w, pattern, columns, inverse)
        if self._coupling is not None:
            return _CoupledFactor(self._indices, self._coupling, a1, a2, w, inverse)
        return _Factor(self._indices, a1, a2, w, inverse)

    def _kernel(self, family: Family):
        """``family``'s kernel on the problem's response (kept while the family is the
        same object)."""
        known = self._kernel_of
        if known is not None and known[0] is family:
            return known[1]
        kernel = family.kernel(self.problem.y, self.problem.prior_weights)
        self._kernel_of = (family, kernel)
        return kernel

    def __call__(  # type: ignore[override]
        self,
        theta: np.ndarray,
        mode: ConditionalMode,
        family: Family | None = None,
        extras: bool = True,
        theta_part: bool = False,
    ) -> np.ndarray:
        """The gradient in ``(beta, psi)`` at ``theta``, ``mode.beta`` and the family's
        parameters ``psi`` (``family``, the problem's when None; ``mode`` PIRLS's converged
        mode there: its ``mu`` and ``deviance`` are the family's at ``mode.eta``); in beta
        alone without ``extras`` (the differences in ``psi`` are most of the cost); with
        ``theta_part`` the gradient in theta before them (:meth:`_theta_gradient`).

        Raises
        ------
        numpy.linalg.LinAlgError
            When the Schur complement is not positive definite (not at a mode).
        """
        problem = self.problem
        fam = problem.family if family is None else family
        y, pw, X = problem.y, problem.prior_weights, problem.X
        eta = mode.eta
        # steps relative to the linear predictor's own size (an inverse link's is ~1e-3)
        size = np.abs(eta)
        # (np.mean's sum and division, without its wrapper)
        step = ETA_STEP * np.maximum(size, max(float(size.sum()) / size.size, 1e-8))
        two_steps = 2 * step
        # glmmTMB's families give log p and its first two derivatives in eta in one call
        # (the generic kernel's score, weights and deviance call it once each): the
        # observed information exact, and one call per point instead of three
        exact = isinstance(fam, LikelihoodFamily)
        kernel = None if exact else self._kernel(fam)
        mu = mode.mu

        with np.errstate(over="ignore", invalid="ignore"):
            if exact:
                _, s, d2 = fam.log_derivatives(y, eta, pw)
                observed = -d2
                # W = -d2: (-d2(eta + h)) - (-d2(eta - h)) is d2(eta - h) - d2(eta + h)
                dw = (
                    fam.log_derivatives(y, eta - step, pw)[2]
                    - fam.log_derivatives(y, eta + step, pw)[2]
                ) / two_steps
            else:
                # the mode's means (PIRLS's g^-1(eta)); each point's Laplace weights right
                # after its working weights from the same arrays (a kernel may keep them:
                # the same expression, not evaluated again)
                h0, r0 = kernel.working(eta, mu)
                s = h0 * r0
                e_plus, e_minus = eta + step, eta - step
                mu_plus, mu_minus = kernel.inverse(e_plus), kernel.inverse(e_minus)
                h_plus, r_plus = kernel.working(e_plus, mu_plus)
                wp = kernel.laplace_weights(e_plus, mu_plus)
                h_minus, r_minus = kernel.working(e_minus, mu_minus)
                wm = kernel.laplace_weights(e_minus, mu_minus)
                observed = -(h_plus * r_plus - h_minus * r_minus) / two_steps
                dw = (wp - wm) / two_steps
            kappa = 1.0
            if fam.has_dispersion:
                kappa = self._kappa(
                    self._kernel(fam) if kernel is None else kernel, eta, s, mu, mode.deviance
                )
        known = self._theta_terms(theta)
        a1, a2 = known[0], known[1]
        factor = self._laplace_factor(a1, a2, mode.weights)
        t1, t2, lev = factor.rows()
        c = lev * dw
        if _close_to(observed, mode.weights):
            # canonical link: the observed information is the expected one (to the error
            # of the differences); both factors must use the same weights, as X' c - X' W~
            # A M~^-1 A' c cancels to a small remainder
            observed = mode.weights
            solver = factor
        else:
            solver = self._laplace_factor(a1, a2, observed, inverse=False)
        v, w1, w2 = solver.solve(c + 2.0 * (1.0 - kappa) * s if kappa != 1.0 else c)
        # the rows' coefficients of d eta / d beta (and of d A / d theta's u~ part)
        residual = c - 2.0 * kappa * s - observed * v
        grad_beta = X.T @ residual
        if theta_part:
            grad_theta = self._theta_gradient(
                self._derivatives(theta, known), mode, (t1, t2), (w1, w2), residual, s
            )
            grad_beta = np.concatenate([grad_theta, grad_beta])
        if not extras:
            return grad_beta
        psi = fam.extra_values
        if not psi.size:
            return grad_beta
        grad_psi = np.empty(psi.size)
        for j in range(psi.size):
            h = EXTRA_STEP * max(1.0, abs(float(psi[j])))
            parts = []
            for sign in (1.0, -1.0):
                moved = psi.copy()
                moved[j] += sign * h
                with np.errstate(over="ignore", invalid="ignore"):
                    if exact:
                        term, sj, wj = _likelihood_rows(fam.with_extra(moved), y, eta, pw)
                        parts.append((term, wj, sj))
                        continue
                    other = fam.with_extra(moved).kernel(y, pw)
                    # working weights first: their kernel may keep the Laplace weights
                    hj, rj = other.working(eta, mu)
                    wj = other.laplace_weights(eta, mu)
                    term = other.objective_term(mu, other.deviance(eta, mu))
                    parts.append((term, wj, hj * rj))
            (tp, wpj, sp_), (tm, wmj, sm) = parts
            grad_psi[j] = ((tp - tm) + lev @ (wpj - wmj) + v @ (sp_ - sm)) / (2 * h)
        return np.concatenate([grad_beta, grad_psi])

    def _theta_gradient(self, derivatives, mode, rows, solved, residual, s) -> np.ndarray:
        """``d L / d theta``: with ``G = d lambda_t / d theta_j`` (term ``t``'s; by central
        differences of the term's ``lambda`` at steps of 1e-4 relative, exact where it is
        linear in theta), ``b = (d A / d theta_j) u~`` and ``w = M~^-1 A' (c + 2 (1 -
        kappa) s)`` (``v = A w``),

        .. math::

            \\partial_{\\theta_j} L = (c - 2 \\kappa s - W~ v)' b + s' (d A / d \\theta_j) w
                + 2 \\sum_i W_i (d a_i / d \\theta_j)' M^{-1} a_i

        (the last term ``tr(M^-1 dM / d theta_j)`` at fixed weights; ``M^-1 a_i`` at row
        ``i``'s columns from the factor's rows).  Row ``i``'s values in term ``t`` are
        ``z_i' lambda_t``, so each part is ``z_i' G x_i`` for a ``p``-vector ``x_i`` (``u~``,
        ``w`` or ``M^-1 a_i`` at the row's level and columns): the derivative is ``<G,
        K_t>`` with ``K_t = sum_i z_i (r_i u~_i + s_i w_i + 2 W_i (M^-1 a_i))'`` formed once
        per term (``r`` is ``residual``, ``c - 2 kappa s - W~ v``; ``derivatives`` each
        term's ``G`` as :func:`_lambda_derivatives` gives them)."""
        problem = self.problem
        t1, t2 = rows
        w1, w2 = solved
        twice_weights = 2.0 * mode.weights
        out = np.empty(problem.n_theta)
        start, u_start, rest = 0, 0, 0
        for i, block in enumerate(problem.blocks):
            size = block.n_theta
            codes = block.codes
            u_block = mode.u[u_start : u_start + block.size]
            if i == self.eliminated:
                # a scalar term: K is 1 x 1
                parts = residual * u_block[codes] + s * w1[codes] + twice_weights * t1
                k_t = np.array([[block.z[:, 0] @ parts]])
            else:
                u_rows = u_block.reshape(block.n_levels, block.p)[codes]
                w_rows = w2[rest : rest + block.size].reshape(block.n_levels, block.p)[codes]
                parts = (
                    residual[:, None] * u_rows
                    + s[:, None] * w_rows
                    + twice_weights[:, None] * t2[:, self._row_slice[i]]
                )
                k_t = block.z.T @ parts
                rest += block.size
            lower = lower_triangle_indices(block.p)
            out[start : start + size] = derivatives[i] @ k_t[lower]
            start += size
            u_start += block.size
        return out

    def _theta_terms(self, theta: np.ndarray) -> list:
        """``[a1, a2, derivatives]`` at ``theta``: ``A``'s values (:meth:`_values`) and, once
        asked for (None until then), each term's ``d lambda / d theta``
        (:func:`_lambda_derivatives`); kept for the last :data:`KEPT_THETAS` thetas."""
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        known = self._theta_known.get(key)
        if known is None:
            known = [*self._values(theta), None]
            if len(self._theta_known) >= KEPT_THETAS:
                del self._theta_known[next(iter(self._theta_known))]
            self._theta_known[key] = known
        return known

    def _derivatives(self, theta: np.ndarray, known: list) -> list[np.ndarray]:
        """Each term's ``d lambda / d theta`` at ``theta`` (``known`` its
        :meth:`_theta_terms` entry, where they are kept)."""
        if known[2] is None:
            out, start = [], 0
            for block in self.problem.blocks:
                size = block.n_theta
                out.append(_lambda_derivatives(block.structure, theta[start : start + size]))
                start += size
            known[2] = out
        return known[2]

    def kappa(self, mode: ConditionalMode, family: Family) -> float:
        """``dT / dD`` at ``mode`` (1 for families without a dispersion parameter)."""
        if not family.has_dispersion:
            return 1.0
        kernel = self._kernel(family)
        eta = mode.eta
        with np.errstate(over="ignore", invalid="ignore"):
            h, r = kernel.working(eta, mode.mu)
            return self._kappa(kernel, eta, h * r, mode.mu, mode.deviance)

    @staticmethod
    def _kappa(
        kernel,
        eta: np.ndarray,
        s: np.ndarray,
        mu: np.ndarray | None = None,
        deviance: float | None = None,
    ) -> float:
        """``dT / dD`` by a central difference along the scores (``D`` changes by
        ``KAPPA_STEP`` relative); ``mu`` the means at ``eta`` and ``deviance`` the deviance
        there where known."""
        if deviance is None:
            deviance = kernel.deviance(eta, kernel.inverse(eta) if mu is None else mu)
        slope = 2.0 * float(s @ s)  # -dD/dt along eta + t s
        if not slope > 0:
            return 1.0
        if not deviance > 0:
            return 1.0
        t = KAPPA_STEP * deviance / slope
        values = []
        for sign in (1.0, -1.0):
            e = eta + sign * t * s
            mu = kernel.inverse(e)
            d = kernel.deviance(e, mu)
            values.append((kernel.objective_term(mu, d), d))
        (tp, dp), (tm, dm) = values
        return (tp - tm) / (dp - dm)


def _lambda_derivatives(structure, th: np.ndarray) -> np.ndarray:
    """A term's ``d lambda / d theta_j`` at its theta slice ``th``: ``lambda``'s lower
    triangle column by column (the structure's ``lambda_entries``), one row per ``j``, by
    central differences at steps of ``1e-4 max(1, |theta_j|)`` (exact where ``lambda`` is
    linear in theta)."""
    th = np.asarray(th, dtype=float)
    if th.size == 1:
        # (the same numbers as below, without the stacking)
        h = 1e-4 * max(1.0, abs(float(th[0])))
        plus, minus = structure.lambda_entries(th + h), structure.lambda_entries(th - h)
        return ((np.asarray(plus) - minus) / (2 * h)).reshape(1, -1)
    steps = 1e-4 * np.maximum(1.0, np.abs(th))
    shift = np.diag(steps)
    plus = np.array([structure.lambda_entries(row) for row in th + shift])
    minus = np.array([structure.lambda_entries(row) for row in th - shift])
    return (plus - minus) / (2 * steps[:, None])


def _close_to(a: np.ndarray, b: np.ndarray) -> bool:
    """np.allclose's test with rtol 1e-6 and atol 0 without its overhead (0.4 ms a call);
    the first row alone decides where it fails (a non-canonical link's observed
    information differs from the expected one in every row)."""
    with np.errstate(invalid="ignore"):
        if a.size and not abs(a[0] - b[0]) <= 1e-6 * abs(b[0]):
            return False
        if (a == b).all():  # glmmTMB's families: the mode's weights are -d2 to the bit
            return True
        return bool(np.all(np.abs(a - b) <= 1e-6 * np.abs(b)))


def _likelihood_rows(
    family: LikelihoodFamily, y: np.ndarray, eta: np.ndarray, weights: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """A glmmTMB family's data term ``-2 sum log p``, its rows' scores ``d log p / d eta``
    and Laplace weights ``-d^2 log p / d eta^2`` at ``eta``, from one call of its
    :meth:`~mixedmodels.core.families.LikelihoodFamily.log_derivatives` (what its
    deviance, working weights and Laplace weights each compute)."""
    logp, d1, d2 = family.log_derivatives(y, eta, weights)
    return -2.0 * float(np.sum(logp)), d1, -d2
