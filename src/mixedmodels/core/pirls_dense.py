"""The rows of ``Z Lambda`` and a lean dense solver for PIRLS's weighted steps.

A Laplace evaluation of a small GLMM (``q`` up to a few hundred random effects) is a few
penalized weighted least-squares solves on ``n`` rows; at such sizes its cost is Python and
numpy call overhead, not flops.  This module keeps what does not change during a fit (the
columns each row of ``Z`` touches, the positions of every row's products in the dense
system, ``X``) and what does not change during one evaluation (``Z Lambda``'s values and
their pairwise products), so that a scoring step is a handful of array operations:

* :class:`ZRows` -- ``Z`` stored by rows: for each row the ``r`` columns it touches and its
  values there (``r = sum p_k`` over the terms with more than one level); terms with one
  level (a smooth's penalized part) are dense columns.  :meth:`ZRows.scaled` gives the rows
  of ``Z Lambda(theta)``, with ``Z Lambda u`` and ``Lambda' Z' s`` as fancy-indexing sums
  and one bincount.
* :class:`DenseWeightedSystem` -- the lower triangle of

  .. math::

      A = \\begin{bmatrix} \\Lambda' Z'WZ \\Lambda + I & \\Lambda' Z' W [X] z \\\\
           \\cdot & [X z]' W [X z] \\end{bmatrix}

  filled by one bincount through precomputed positions (and one BLAS product for the
  dense columns), factorized by one LAPACK ``dpotrf``; the solution of the step is then
  one triangular solve with the factor's last row (``L_1' x = l``, where ``L_1`` is the
  leading block and ``l`` the last row: ``A``'s normal equations' solution), and
  ``log |L_Z|^2`` is read from the leading diagonal.  ``X`` enters only when beta is
  updated with ``u`` (lme4's ``nAGQ = 0`` stage); with beta held fixed the system is
  ``[Z Lambda, z]`` alone.
* :class:`BlockDiagonalSystem` -- where the random effects are one term of one or two
  columns, ``Lambda' Z' W Z Lambda + I`` is block diagonal: the steps with beta held (and
  with beta updated for one column) and ``log |L_Z|^2`` are solved level by level in closed
  form, side by side over the levels, without the dense system.

Nothing here knows a family or a formula; the results are those of the LMM engine's dense
path on the same weights and response to rounding.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.blocks import NotPositiveDefiniteError

#: largest number of stored row products (rows times products per row) of the dense
#: solver: beyond it the model's LMM engine (Gram plan, crossed or blocked path) is used
MAX_ROW_PRODUCTS = 4_000_000

_potrf = sla.lapack.dpotrf
_trtrs = sla.lapack.dtrtrs
_trtri = sla.lapack.dtrtri


class ZRows:
    """``Z`` (n x q, terms side by side, each level-major) stored by rows.

    Parameters
    ----------
    blocks : list of RandomBlock
        The random-effect terms in the order of ``u`` (and theta).

    Attributes
    ----------
    q : int
    sparse_terms, dense_terms : list of int
        Terms with several levels (each row touches ``p`` of their columns) and with one
        level (every row touches all ``p``: dense columns).
    columns : ndarray (n, r) of int
        For each row, the positions in ``u`` of the sparse terms' columns it touches.
    dense_columns : ndarray (q_d,) of int
        Positions in ``u`` of the dense terms' columns.
    """

    def __init__(self, blocks: list[RandomBlock]):
        self.blocks = list(blocks)
        n = blocks[0].codes.shape[0] if blocks else 0
        self.n = n
        starts = np.concatenate([[0], np.cumsum([b.size for b in blocks])]).astype(np.int64)
        self.q = int(starts[-1])
        self.starts = starts
        self.sparse_terms = [k for k, b in enumerate(blocks) if b.n_levels > 1]
        self.dense_terms = [k for k, b in enumerate(blocks) if b.n_levels == 1]
        cols = []
        for k in self.sparse_terms:
            b = blocks[k]
            base = starts[k] + b.codes.astype(np.int64) * b.p
            cols.extend(base + j for j in range(b.p))
        self.columns = np.column_stack(cols) if cols else np.zeros((n, 0), dtype=np.int64)
        self.r = self.columns.shape[1]
        dense = [np.arange(starts[k], starts[k + 1]) for k in self.dense_terms]
        self.dense_columns = np.concatenate(dense) if dense else np.zeros(0, dtype=np.int64)
        self.q_dense = self.dense_columns.size
        # column by column (each contiguous): the products with u and the sums into u
        self._columns_by_term = np.ascontiguousarray(self.columns.T)  # (r, n)
        self._flat_columns_by_term = self._columns_by_term.ravel()

    def scaled(self, lambdas: list[np.ndarray]) -> ScaledRows:
        """The rows of ``Z Lambda`` for the terms' ``lambda_k`` (order of ``blocks``)."""
        n = self.n
        values = np.empty((n, self.r))
        c = 0
        for k in self.sparse_terms:
            b, lam = self.blocks[k], lambdas[k]
            if b.p == 1:
                np.multiply(b.z[:, 0], lam[0, 0], out=values[:, c])
            else:
                values[:, c : c + b.p] = b.z @ lam
            c += b.p
        dense = np.empty((n, self.q_dense))
        c = 0
        for k in self.dense_terms:
            b, lam = self.blocks[k], lambdas[k]
            dense[:, c : c + b.p] = b.z @ lam
            c += b.p
        return ScaledRows(self, values, dense)


def _gathered_sum(values: np.ndarray, columns: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``sum_j values[j] * u[columns[j]]`` over the rows of (r, n) arrays."""
    out = values[0] * u[columns[0]]
    for j in range(1, values.shape[0]):
        out += values[j] * u[columns[j]]
    return out


class ScaledRows:
    """The rows of ``Z Lambda(theta)`` (from :meth:`ZRows.scaled`).

    Attributes
    ----------
    values : ndarray (n, r)
        The sparse terms' values of ``Z Lambda`` in the columns of ``ZRows.columns``.
    dense : ndarray (n, q_d)
        The dense terms' columns of ``Z Lambda``.
    """

    def __init__(self, rows: ZRows, values: np.ndarray, dense: np.ndarray):
        self.rows = rows
        self.values = values
        self.dense = dense
        self._values_by_term = np.ascontiguousarray(values.T)  # (r, n)

    def times(self, u: np.ndarray) -> np.ndarray:
        """``Z Lambda u`` (n,)."""
        rows = self.rows
        if rows.r:
            out = _gathered_sum(self._values_by_term, rows._columns_by_term, u)
        else:
            out = np.zeros(rows.n)
        if rows.q_dense:
            out += self.dense @ u[rows.dense_columns]
        return out

    def transpose_times(self, s: np.ndarray) -> np.ndarray:
        """``Lambda' Z' s`` (q,)."""
        rows = self.rows
        if rows.r:
            out = np.bincount(
                rows._flat_columns_by_term,
                weights=(self._values_by_term * s).ravel(),
                minlength=rows.q,
            )
        else:
            out = np.zeros(rows.q)
        if rows.q_dense:
            out[rows.dense_columns] += s @ self.dense
        return out


class DenseWeightedSystem:
    """PIRLS's penalized weighted least squares on one dense ``N x N`` system.

    The system's columns are ``u``'s sparse-term columns (in ``u``'s order), then the dense
    terms' columns, then ``X`` (when beta is updated), then the working response ``z``;
    ``A``'s lower triangle is stored in the lower triangle of a Fortran-ordered array (the
    flat position of entry ``(hi, lo)``, ``hi >= lo``, is ``lo N + hi``).

    With ``eliminate`` (a scalar term with several levels), that term's random effects are
    eliminated first and the dense system is the Schur complement of the others: its block
    of ``A`` is diagonal, ``D = I + Lambda' Z_e' W Z_e Lambda``, so the complement is
    ``A_rest - B' D^-1 B`` with ``B`` the term's rows of ``A`` (one bincount), and the term's
    ``u`` follows from the rest's by ``D^-1 (b - B x)``.  Where each of its levels has one
    row (an observation-level term) ``B' D^-1 B`` is a rank-one update per row, and the
    complement is the rest's system with the weights ``w / (1 + w s^2)`` (``s`` the row's
    ``z lambda``): no dense product at all.

    Parameters
    ----------
    rows : ZRows
    X : ndarray (n, p)
    eliminate : int, optional
        Index (in ``rows.blocks``) of a scalar term with several levels to eliminate.
    """

    def __init__(self, rows: ZRows, X: np.ndarray, eliminate: int | None = None):
        self.rows = rows
        self.X = np.asarray(X, dtype=float)
        self.p = self.X.shape[1]
        q, n = rows.q, rows.n
        self.eliminate = eliminate
        keep = np.arange(rows.r)  # the sparse value columns in the dense system
        if eliminate is not None:
            block = rows.blocks[eliminate]
            if block.p != 1 or block.n_levels < 2:
                raise ValueError("only a scalar term with several levels can be eliminated")
            e_col = int(
                sum(
                    rows.blocks[k].p
                    for k in rows.sparse_terms[: rows.sparse_terms.index(eliminate)]
                )
            )
            keep = np.delete(keep, e_col)
            self._e_col = e_col
            self._e_codes = block.codes.astype(np.int64)
            self._e_levels = block.n_levels
            self._e_u = rows.starts[eliminate] + np.arange(block.n_levels)  # u positions
            counts = np.bincount(self._e_codes, minlength=block.n_levels)
            self.absorbed = bool(np.all(counts == 1))
            if self.absorbed:
                self._e_row_of_level = np.empty(block.n_levels, dtype=np.int64)
                self._e_row_of_level[self._e_codes] = np.arange(n)
        else:
            self.absorbed = False
        self._keep = keep
        r = keep.size
        self.r = r
        rest_u = np.setdiff1d(np.arange(q), rows.dense_columns, assume_unique=True)
        if eliminate is not None:
            rest_u = np.setdiff1d(rest_u, self._e_u, assume_unique=True)
        # the system's position of each u column it holds (sparse terms, then dense terms)
        order = np.concatenate([rest_u, rows.dense_columns]).astype(np.int64)
        self.order = order  # system position -> u position
        self.q_system = order.size
        self.identity_order = eliminate is None and bool(np.array_equal(order, np.arange(q)))
        position = np.full(q, -1, dtype=np.int64)
        position[order] = np.arange(order.size)
        cols = position[rows.columns[:, keep]]  # (n, r) system positions
        self._cols = cols
        self.q_sparse = self.q_system - rows.q_dense
        ia, ib = np.triu_indices(r)
        self._ia, self._ib = ia, ib
        self._layouts = {}
        for with_x in (False, True):
            n_dense = rows.q_dense + (self.p if with_x else 0) + 1
            size = self.q_system + (self.p if with_x else 0) + 1
            lo = np.minimum(cols[:, ia], cols[:, ib])
            hi = np.maximum(cols[:, ia], cols[:, ib])
            pair_keys = lo * size + hi  # (n, pairs)
            # sparse column c times dense column d (position q_sparse + d > c)
            cross_keys = cols[:, :, None] * size + (self.q_sparse + np.arange(n_dense))
            keys = np.concatenate([pair_keys, cross_keys.reshape(n, -1)], axis=1)
            b_keys = None
            if eliminate is not None and not self.absorbed:
                # the eliminated term's rows of A: level e times every system column the
                # row touches (its sparse columns, then the dense ones)
                touched = np.concatenate(
                    [cols, np.broadcast_to(self.q_sparse + np.arange(n_dense), (n, n_dense))],
                    axis=1,
                )
                b_keys = np.ascontiguousarray(self._e_codes[:, None] * size + touched).ravel()
            self._layouts[with_x] = (size, n_dense, np.ascontiguousarray(keys).ravel(), b_keys)
        self._diagonal_sparse = {
            with_x: np.arange(self.q_sparse) * (layout[0] + 1)
            for with_x, layout in self._layouts.items()
        }
        self._products: np.ndarray | None = None  # (n, pairs) per theta
        self._scaled: ScaledRows | None = None
        self._values_kept: np.ndarray | None = None
        self._e_values: np.ndarray | None = None
        # per layout: the dense columns [dense terms' Z Lambda, (X,) z] (X written once)
        # and the buffer of the rows' weighted products
        n_pairs = ia.size
        self._dense_columns = {}
        self._values = {}
        for with_x, (_, n_dense, _, _) in self._layouts.items():
            d = np.zeros((n, n_dense))
            if with_x:
                d[:, rows.q_dense : rows.q_dense + self.p] = self.X
            self._dense_columns[with_x] = d
            self._values[with_x] = np.empty((n, n_pairs + r * n_dense))
        self._identity_dense = np.eye(rows.q_dense)
        self._last: tuple | None = None  # what the last factorization left for the solve

    def describe(self) -> str:
        """A debug view of the system: its size and the eliminated or absorbed term."""
        lines = [f"path: lean dense PIRLS system ({self.q_system} random-effect columns + X)"]
        if self.eliminate is not None:
            how = "absorbed into the weights" if self.absorbed else "eliminated first"
            lines.append(f"term {self.eliminate} ({self._e_levels} levels x 1): {how}")
        return "\n".join(lines)

    @property
    def n_entries(self) -> int:
        """Number of stored row positions (the memory the solver holds, in 8-byte units)."""
        total = 0
        for _, _, keys, b_keys in self._layouts.values():
            total += keys.size + (0 if b_keys is None else b_keys.size)
        return int(total)

    def set_rows(self, scaled: ScaledRows) -> None:
        """The rows of ``Z Lambda`` for the evaluation's theta (their pairwise products are
        computed here, once per evaluation)."""
        self._scaled = scaled
        v = scaled.values
        if self.eliminate is not None:
            self._e_values = v[:, self._e_col]
            v = v[:, self._keep]
        self._values_kept = v
        self._products = v[:, self._ia] * v[:, self._ib]
        qd = self.rows.q_dense
        if qd:
            for d in self._dense_columns.values():
                d[:, :qd] = scaled.dense

    def _factor(
        self,
        weights: np.ndarray,
        z: np.ndarray | None,
        with_x: bool,
        current: np.ndarray | None = None,
    ) -> np.ndarray:
        """The lower Cholesky factor (Fortran-ordered, upper triangle not cleaned) of the
        system (the Schur complement after the eliminated term) at ``weights`` with working
        response ``z`` (None: zero).  With ``current`` (a ``u``), the right-hand side is
        that of the step from it, ``Lambda' Z' W z - u`` (``z`` the working residuals)."""
        size, n_dense, keys, b_keys = self._layouts[with_x]
        n = weights.shape[0]
        dense = self._dense_columns[with_x]
        dense[:, -1] = 0.0 if z is None else z
        elim = None
        w = weights
        if self.eliminate is not None:
            s = self._e_values
            if current is not None and self.absorbed:
                # the rest's right-hand side after the row's elimination is that of the
                # response z + s u_e with the weights w / D
                dense[:, -1] += s * current[self._e_u[self._e_codes]]
            ws = weights * s
            if self.absorbed:
                d = 1.0 + ws * s  # one row per level: D per row
            else:
                d = 1.0 + np.bincount(self._e_codes, weights=ws * s, minlength=self._e_levels)
            if not (d > 0.0).all():  # negative (Newton) weights: A is not positive definite
                raise NotPositiveDefiniteError
            if self.absorbed:
                w = weights / d
            elim = (d, ws)
        w_dense = dense * w[:, None]
        values_kept = self._values_kept
        products = self._products
        n_pairs = products.shape[1]
        r = self.r
        values = self._values[with_x]
        np.multiply(products, w[:, None], out=values[:, :n_pairs])
        if r == 1:
            np.multiply(values_kept, w_dense, out=values[:, n_pairs:])
        elif r:
            np.multiply(
                values_kept[:, :, None],
                w_dense[:, None, :],
                out=values[:, n_pairs:].reshape(n, r, n_dense),
            )
        if keys.size:
            flat = np.bincount(keys, weights=values.ravel(), minlength=size * size)
        else:  # no sparse column left (the one scalar term eliminated)
            flat = np.zeros(size * size)
        flat[self._diagonal_sparse[with_x]] += 1.0
        a = flat.reshape(size, size).T  # Fortran order: a[hi, lo] = flat[lo * size + hi]
        qs = self.q_sparse
        a[qs:, qs:] = dense.T @ w_dense
        qd = self.rows.q_dense
        if qd:
            a[qs : qs + qd, qs : qs + qd] += self._identity_dense
        b = None
        if elim is not None and not self.absorbed:
            d, ws = elim
            row_values = np.concatenate([values_kept * ws[:, None], dense * ws[:, None]], axis=1)
            b = np.bincount(
                b_keys, weights=row_values.ravel(), minlength=self._e_levels * size
            ).reshape(self._e_levels, size)
            if current is not None:
                b[:, -1] -= current[self._e_u]
            scaled_b = b / np.sqrt(d)[:, None]
            a -= scaled_b.T @ scaled_b
        if current is not None:
            a[size - 1, : self.q_system] -= current[self.order]
        low, info = _potrf(a, lower=1, clean=0, overwrite_a=1)
        if info != 0 and info != size:  # info == size: the response is fitted exactly
            raise NotPositiveDefiniteError
        self._last = (elim, b, dense)
        return low

    def _log_det(self, low: np.ndarray) -> float:
        """``log |L_Z|^2`` from the factor (and the eliminated term's ``D``)."""
        value = 2.0 * float(np.log(low.diagonal()[: self.q_system]).sum())
        elim = self._last[0]
        if elim is not None:
            value += float(np.log(elim[0]).sum())
        return value

    def step(
        self,
        weights: np.ndarray,
        z: np.ndarray,
        update_beta: bool,
        current: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """The penalized weighted least-squares solution for response ``z``: ``u`` (in
        ``u``'s order), beta (with ``update_beta``; else None: ``z`` excludes ``X beta``)
        and ``log |L_Z|^2`` at these weights.

        With ``current`` (the current ``u``), ``z`` is the working residual and the step
        is returned as increments ``(du, dbeta)`` to ``u`` and beta: the same solution,
        ``u + du``, with the rounding error of the increment in place of that of ``u``
        (Newton's method in increment form: near the mode the increment is small, so the
        mode is found to the rounding of ``u`` itself).

        Raises
        ------
        NotPositiveDefiniteError
            When the weighted system is not positive definite.
        """
        low = self._factor(weights, z, update_beta, current)
        size = low.shape[0]
        qs = self.q_system
        log_det = self._log_det(low)
        # L_1' x = l with l the last row: set L[-1, -1] = 1 and solve L' x = -e_last
        low[-1, -1] = 1.0
        rhs = np.zeros(size)
        rhs[-1] = -1.0
        x, info = _trtrs(low, rhs, lower=1, trans=1)
        if info != 0:
            raise NotPositiveDefiniteError
        x = x[: size - 1]
        beta = x[qs : qs + self.p].copy() if update_beta else None
        if self.identity_order:
            return x[:qs], beta, log_det
        u = np.empty(self.rows.q)
        u[self.order] = x[:qs]
        elim, b, dense = self._last
        if elim is not None:
            d, ws = elim
            if self.absorbed:
                # u_e = w s (z - c' x) / D per row, c the row's other columns (the step:
                # (w s (z - c' dx) - u_e) / D)
                fitted = dense[:, :-1] @ x[self.q_sparse :]
                if self.r:
                    fitted += _gathered_sum(self._values_kept.T, self._cols.T, x)
                u_rows = ws * (z - fitted)
                if current is not None:
                    u_rows -= current[self._e_u[self._e_codes]]
                u_rows /= d
                u[self._e_u] = u_rows[self._e_row_of_level]
            else:
                u[self._e_u] = (b[:, -1] - b[:, :-1] @ x) / d
        return u, beta, log_det

    def log_det(self, weights: np.ndarray) -> float:
        """``log |Lambda' Z' W Z Lambda + I|``."""
        return self._log_det(self._factor(weights, None, False))

    def fixed_covariance(self, weights: np.ndarray) -> np.ndarray:
        """``(R_X' R_X)^-1``: the inverse of the Schur complement of ``X' W X`` after the
        random effects (the conditional covariance of beta at sigma 1)."""
        p = self.p
        if not p:
            return np.zeros((0, 0))
        low = self._factor(weights, None, True)
        q = self.q_system
        rx = np.array(low[q : q + p, q : q + p], order="F")
        rinv, info = _trtri(rx, lower=1)
        if info != 0:
            raise NotPositiveDefiniteError
        rinv = np.tril(rinv)
        return rinv.T @ rinv



class BlockDiagonalSystem:
    """PIRLS's scoring steps with beta held fixed, and ``log |L_Z|^2``, for a model whose
    random effects are one term with several levels and one or two columns (no other
    term): ``Lambda' Z' W Z Lambda + I`` is then block diagonal, one ``p x p`` block per
    level, and a step solves the blocks side by side over the levels in closed form (a
    division for ``p = 1``; for ``p = 2`` the inverse by the determinant) in place of the
    Cholesky factorization of the ``(q + 1) x (q + 1)`` dense system: the same solution to
    rounding.

    A level's block ``I + sum_i w_i a_i a_i'`` (``a_i`` row ``i``'s ``p`` values of ``Z
    Lambda``) is one bincount of the rows' weighted products; the right-hand side of a
    step, ``Lambda' Z' W r - u``, is minus the gradient PIRLS's convergence test has just
    computed, so it is passed in.

    With beta updated too (lme4's ``nAGQ = 0`` stage) and ``p = 1``, the diagonal is
    eliminated first: the step in beta solves the ``p_X x p_X`` Schur complement ``X' W X -
    B' A^-1 B`` (``B = Lambda' Z' W X``, one bincount), and ``u``'s step follows level by
    level (:meth:`solve_with_beta`); for ``p = 2`` those steps are the dense system's (the
    2 x 2 blocks' elimination takes more numpy calls than its factorization).

    Parameters
    ----------
    rows : ZRows
        With one term of several levels and at most two columns, and no term of one level.
    X : ndarray (n, p_X)
        The fixed effects' model matrix.
    """

    def __init__(self, rows: ZRows, X: np.ndarray):
        if len(rows.sparse_terms) != 1 or rows.q_dense:
            raise ValueError("the block-diagonal system takes one term with several levels")
        block = rows.blocks[rows.sparse_terms[0]]
        if block.p > 2:
            raise ValueError("the block-diagonal system takes blocks of one or two columns")
        self.p = block.p
        self.levels = block.n_levels
        self._codes = block.codes.astype(np.int64)
        # a level's entries (1, 1), (2, 1), (2, 2) of its block, side by side
        self._keys = (self._codes[:, None] * 3 + np.arange(3)).ravel()
        self._products: np.ndarray | None = None  # per theta: (n,), or (n, 3) for p = 2
        self._values: np.ndarray | None = None  # per theta: Z Lambda's rows (n, p)
        self.X = np.asarray(X, dtype=float)
        # a level's row of B (p = 1), side by side
        n_x = self.X.shape[1]
        self._x_keys = (self._codes[:, None] * n_x + np.arange(n_x)).ravel()

    def describe(self) -> str:
        """A debug view: the number and size of the blocks."""
        return f"path: block-diagonal PIRLS steps ({self.levels} blocks of {self.p} x {self.p})"

    def set_rows(self, scaled: ScaledRows) -> None:
        """The rows of ``Z Lambda`` for the evaluation's theta (their pairwise products are
        computed here, once per evaluation)."""
        v = scaled.values
        self._values = v
        if self.p == 1:
            self._products = v[:, 0] * v[:, 0]
        else:
            a, b = v[:, 0], v[:, 1]
            self._products = np.column_stack([a * a, b * a, b * b])

    def _blocks(self, weights: np.ndarray) -> np.ndarray:
        """``sum_i w_i a_i a_i'`` per level: (levels,) for ``p = 1``, else (levels, 3) with
        the entries (1, 1), (2, 1), (2, 2)."""
        if self.p == 1:
            return np.bincount(self._codes, weights=self._products * weights,
                               minlength=self.levels)
        weighted = self._products * weights[:, None]
        return np.bincount(
            self._keys, weights=weighted.ravel(), minlength=3 * self.levels
        ).reshape(self.levels, 3)

    def solve(self, weights: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """``(I + Lambda' Z' W Z Lambda)^-1 rhs`` (``rhs`` in ``u``'s order).

        Raises
        ------
        NotPositiveDefiniteError
            When a block is not positive definite.
        """
        a, b, c, det = self._entries(weights)
        if self.p == 1:
            return rhs / det
        r = rhs.reshape(self.levels, 2)
        r1, r2 = r[:, 0], r[:, 1]
        out = np.empty((self.levels, 2))
        np.divide(c * r1 - b * r2, det, out=out[:, 0])
        np.divide(a * r2 - b * r1, det, out=out[:, 1])
        return out.ravel()

    def solve_with_beta(
        self, weights: np.ndarray, grad_u: np.ndarray, rhs_beta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The step ``(du, dbeta)`` of the system in ``u`` and beta, ``[A B; B' X'WX] [du;
        dbeta] = [-grad_u; rhs_beta]`` (``A = I + Lambda' Z' W Z Lambda``, ``B = Lambda' Z'
        W X``; ``grad_u = u - Lambda' Z' W r`` and ``rhs_beta = X' W r`` at the working
        residuals ``r``): the Schur complement's Cholesky factorization for ``dbeta``, then
        ``du = -A^-1 (grad_u + B dbeta)`` block by block.

        Raises
        ------
        NotPositiveDefiniteError
            When a block or the Schur complement is not positive definite.
        """
        if self.p != 1:
            raise ValueError("the steps in u and beta are solved by blocks of one column")
        X = self.X
        n_x = X.shape[1]
        levels = self.levels
        pivot = self._blocks(weights) + 1.0
        if not pivot.min() > 0.0:
            raise NotPositiveDefiniteError
        wx = X * weights[:, None]
        b = np.bincount(
            self._x_keys, weights=(wx * self._values).ravel(), minlength=levels * n_x
        ).reshape(levels, n_x)
        m = b / pivot[:, None]  # A^-1 B
        schur = X.T @ wx - b.T @ m
        rhs = rhs_beta + m.T @ grad_u
        dbeta = _spd_solve(schur, rhs)
        du = -(grad_u / pivot) - m @ dbeta
        return du, dbeta

    def log_det(self, weights: np.ndarray) -> float:
        """``log |Lambda' Z' W Z Lambda + I|``: the sum of the blocks' log determinants.

        Raises
        ------
        NotPositiveDefiniteError
            When a block is not positive definite.
        """
        return float(np.log(self._entries(weights)[3]).sum())

    def _entries(
        self, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
        """The blocks of ``I + Lambda' Z' W Z Lambda``: for two columns their entries
        ``a, b, c`` (``[[a, b], [b, c]]``) and determinants ``a c - b^2``; for one, the
        1 x 1 blocks as ``a`` and as the determinant (``b``, ``c`` None).

        Raises
        ------
        NotPositiveDefiniteError
            When a block is not positive definite.
        """
        sums = self._blocks(weights)
        if self.p == 1:
            pivot = sums + 1.0
            if not pivot.min() > 0.0:
                raise NotPositiveDefiniteError
            return pivot, None, None, pivot
        a = sums[:, 0] + 1.0
        b = sums[:, 1]
        c = sums[:, 2] + 1.0
        det = a * c - b * b
        if not min(a.min(), det.min()) > 0.0:
            raise NotPositiveDefiniteError
        return a, b, c, det


_potrs = sla.lapack.dpotrs


def _spd_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` by LAPACK's Cholesky (``a`` symmetric, its lower triangle read).

    Raises
    ------
    NotPositiveDefiniteError
        When ``a`` is not positive definite.
    """
    if not b.size:
        return np.zeros(0)
    low, info = _potrf(a, lower=1, clean=0)
    if info != 0:
        raise NotPositiveDefiniteError
    x, info = _potrs(low, b, lower=1)
    if info != 0:
        raise NotPositiveDefiniteError
    return x
