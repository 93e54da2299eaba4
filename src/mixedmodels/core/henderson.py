"""Joint draws of ``(beta, b)`` from Henderson's mixed-model equations, without a dense ``Z``.

Given the variances, ``b = Lambda u`` with ``Lambda = blockdiag(I_l (x) lambda_k)``,
``lambda_k = T_k / sigma`` (``T_k T_k' = Sigma_k``; a singular ``T_k`` is allowed) and
``u ~ N(0, sigma^2 I)``.  With ``beta ~ N(m, P^-1)`` (``P = 0``: flat) the conditional
posterior of ``x = (u, beta)`` is normal with precision ``M / sigma^2`` and mean
``M^-1 c``, where

.. math::

    M = [Z\\Lambda \\; X]' W [Z\\Lambda \\; X] + \\operatorname{diag}(I, \\sigma^2 P),
    \\qquad c = [Z\\Lambda \\; X]' W y + (0, \\sigma^2 P m),

so ``x = M^-1 c + sigma L^-T z`` with ``M = L L'`` and ``z`` standard normal is an exact draw.

The columns are split into the term with the most random effects (index 0: its block of
``M`` is block diagonal, one ``p0 x p0`` block per level) and the rest ``r`` (the other
terms and ``X``).  ``L`` is never formed: with ``M00 = L00 L00'`` (per level) and the
Schur complement ``S = Mrr - Mr0 M00^-1 M0r = Lrr Lrr'`` (dense, ``r x r``),

.. math::

    x_r = L_{rr}^{-T}\\left(L_{rr}^{-1}(c_r - M_{r0} M_{00}^{-1} c_0) + \\sigma z_r\\right),
    \\qquad
    x_0 = M_{00}^{-1}(c_0 - M_{0r} x_r) + \\sigma L_{00}^{-T} z_0 .

The cross products of the data (``Z0'WZ0`` per level, the sparse ``Z0'W[Zr X]``, the dense
``[Zr X]'W[Zr X]``) are computed once; each draw rescales them by the current ``lambda``.
For a scalar first term of a large model the fill ``Z_r'WZ0 D Z0'WZ_r`` of the Schur
complement comes from a precomputed sparse map (:mod:`mixedmodels.core.fill`, as in the
REML engine); small models use dense products.  When the weights change every sweep (the
Polya-Gamma weights of the logit model), :class:`WeightedProducts` recomputes the cross
products by ``bincount`` over precomputed entry lists.  The one dense matrix is the
``r x r`` Schur complement (InstEval: 1,144 x 1,144), limited to ``MAX_DENSE_REST``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtrs

from mixedmodels.core.fill import FillPlan, make_fill_plan
from mixedmodels.core.gram import grouped_cross_products
from mixedmodels.core.terms import RandomBlock
from mixedmodels.errors import ArgumentError
from mixedmodels.linalg import batched

#: below this many flops (``q0 r^2``) the Schur complement's fill is a dense product
DENSE_FILL_FLOPS = 50_000_000

#: largest Schur complement (random effects outside the largest term, plus fixed effects)
MAX_DENSE_REST = 4000


class NotPositiveDefiniteError(ArithmeticError):
    """The Schur complement lost positive definiteness (round-off at extreme variances)."""


def term_matrix(block: RandomBlock) -> sp.csc_matrix:
    """``Z_k`` (n x l p) as a sparse matrix, level-major columns."""
    n, p = block.z.shape
    rows = np.repeat(np.arange(n), p)
    cols = (block.codes[:, None] * p + np.arange(p)[None, :]).ravel()
    return sp.csc_matrix((block.z.ravel(), (rows, cols)), shape=(n, block.size))


class WeightedProducts:
    """``Z0'WR``, ``R'WR``, ``Z0'Wy`` and ``R'Wy`` for new weights in O(n) numpy work.

    Every row ``i`` adds ``w_i x_ia x_ib`` to fixed entries of the products; the entries and
    the unweighted factors ``x_ia x_ib`` are listed once, so a new ``w`` costs a
    ``bincount`` per product (used by the logit sampler, whose weights change each sweep).
    """

    def __init__(self, z0: sp.csr_matrix, rest: sp.csr_matrix):
        self.n = z0.shape[0]
        self.q0, self.r = z0.shape[1], rest.shape[1]
        rows0, cols0, vals0 = _row_entries(z0)
        rowsr, colsr, valsr = _row_entries(rest)
        # every (z0 entry, rest entry) pair of a row
        obs, a, b = _pairs(rows0, rowsr, self.n)
        flat = cols0[a].astype(np.int64) * self.r + colsr[b]
        self.g0r_keys, self.g0r_index = np.unique(flat, return_inverse=True)
        self.g0r_obs, self.g0r_factor = obs, vals0[a] * valsr[b]
        self.g0r_rows = self.g0r_keys // self.r
        self.g0r_cols = self.g0r_keys % self.r
        obs, a, b = _pairs(rowsr, rowsr, self.n)
        self.grr_obs, self.grr_flat = obs, colsr[a].astype(np.int64) * self.r + colsr[b]
        self.grr_factor = valsr[a] * valsr[b]
        self.rows0, self.cols0, self.vals0 = rows0, cols0, vals0
        self.rowsr, self.colsr, self.valsr = rowsr, colsr, valsr

    def products(self, w: np.ndarray, y: np.ndarray):
        g0r_values = np.bincount(
            self.g0r_index,
            weights=w[self.g0r_obs] * self.g0r_factor,
            minlength=self.g0r_keys.size,
        )
        g0r = sp.csr_matrix((g0r_values, (self.g0r_rows, self.g0r_cols)), shape=(self.q0, self.r))
        grr = np.bincount(
            self.grr_flat, weights=w[self.grr_obs] * self.grr_factor, minlength=self.r * self.r
        ).reshape(self.r, self.r)
        wy = w * y
        c0 = np.bincount(self.cols0, weights=wy[self.rows0] * self.vals0, minlength=self.q0)
        cr = np.bincount(self.colsr, weights=wy[self.rowsr] * self.valsr, minlength=self.r)
        return g0r, grr, c0, cr


def _row_entries(m: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of every stored entry, sorted by row."""
    coo = m.tocsr().tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data


def _pairs(rows_a: np.ndarray, rows_b: np.ndarray, n: int):
    """All pairs (entry of a, entry of b) in the same row: (row, index in a, index in b)."""
    count_a = np.bincount(rows_a, minlength=n)
    count_b = np.bincount(rows_b, minlength=n)
    start_a = np.concatenate([[0], np.cumsum(count_a)[:-1]])
    start_b = np.concatenate([[0], np.cumsum(count_b)[:-1]])
    per_row = count_a * count_b
    obs = np.repeat(np.arange(n), per_row)
    offset = np.arange(obs.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    a = start_a[obs] + offset // count_b[obs]
    b = start_b[obs] + offset % count_b[obs]
    return obs, a, b


class HendersonSystem:
    """The data side of the joint draw (see the module docstring).

    Parameters
    ----------
    blocks : list of RandomBlock
        Random-effect terms in the public (lme4) order.
    X : ndarray (n, p)
    y : ndarray (n,)
        Response (offset subtracted).
    weights : ndarray (n,), optional
    fixed_weights : bool
        False when :meth:`set_data` will bring new weights each sweep (the Polya-Gamma
        weights of a logit model): the fill map, which holds the weighted cross products,
        is then not built.
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        X: np.ndarray,
        y: np.ndarray,
        weights=None,
        fixed_weights: bool = True,
    ):
        if not blocks:
            raise ArgumentError("the sampler needs at least one random-effect term")
        self.blocks = list(blocks)
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        self.n, self.p = X.shape
        w = None if weights is None else np.asarray(weights, dtype=float)
        self.first = max(range(len(blocks)), key=lambda k: blocks[k].size)
        self.rest = [k for k in range(len(blocks)) if k != self.first]
        b0 = blocks[self.first]
        self.q0 = b0.size
        self.r = sum(blocks[k].size for k in self.rest) + self.p
        if self.r > MAX_DENSE_REST:
            raise ArgumentError(
                f"the sampler factorizes the random effects outside the largest term "
                f"densely; {self.r - self.p} of them is more than it takes "
                f"({MAX_DENSE_REST - self.p})"
            )
        self.z0 = term_matrix(b0)
        parts = [term_matrix(blocks[k]) for k in self.rest]
        self.rest_matrix = sp.hstack([*parts, sp.csc_matrix(X)]).tocsc()
        self.rest_sizes = [blocks[k].size for k in self.rest]
        self.rest_scalar = all(blocks[k].p == 1 for k in self.rest)
        self.fixed_weights = fixed_weights
        self.weighted = None if fixed_weights else WeightedProducts(self.z0, self.rest_matrix)
        self.w_pattern_cache = None
        self.set_data(y, w)

    def set_data(self, y: np.ndarray, weights: np.ndarray | None) -> None:
        """The weighted cross products of the response and the columns."""
        b0 = self.blocks[self.first]
        z0, rest, w = self.z0, self.rest_matrix, weights
        self.d0 = grouped_cross_products(b0.codes, b0.n_levels, b0.z, b0.z, w)  # (p0,p0,l0)
        if self.weighted is not None:
            self.g0r, self.grr, self.c0, self.cr = self.weighted.products(
                np.ones(len(y)) if w is None else w, y
            )
        else:
            wz0 = z0 if w is None else sp.diags_array(w) @ z0
            wrest = rest if w is None else sp.diags_array(w) @ rest
            self.g0r = (wz0.T @ rest).tocsr()  # (q0, r)
            self.grr = np.asarray((wrest.T @ rest).toarray())  # (r, r)
            wy = y if w is None else w * y
            self.c0 = np.asarray(z0.T @ wy)
            self.cr = np.asarray(rest.T @ wy)
        self.g0r_t = self.g0r.T.tocsr()
        self.plan: FillPlan | None = None
        large = self.q0 * self.r * self.r > DENSE_FILL_FLOPS
        if b0.p == 1 and self.r >= 64 and large and self.fixed_weights:
            self.plan = make_fill_plan(self.g0r_t)
        self.g0r_dense = None
        self.w_pattern = None
        if self.q0 * self.r * self.r <= DENSE_FILL_FLOPS:  # small: dense products are cheaper
            self.g0r_dense = self.g0r.toarray().reshape(b0.n_levels, b0.p, self.r)
            self.plan = None
        elif b0.p > 1 and self.w_pattern_cache is not None:
            self.w_pattern = self.w_pattern_cache
        elif b0.p > 1:  # block-diagonal pattern of lam0 M00^-1 lam0', filled each draw
            p0, l0 = b0.p, b0.n_levels
            cols = (
                np.arange(l0)[:, None, None] * p0
                + np.zeros((1, p0, 1), int)
                + np.arange(p0)[None, None, :]
            )
            self.w_pattern = sp.csr_matrix(
                (np.ones(l0 * p0 * p0), cols.ravel(), np.arange(0, l0 * p0 + 1) * p0),
                shape=(self.q0, self.q0),
            )
            self.w_pattern_cache = self.w_pattern
        if self.plan is not None:
            self.plan_rows = self.plan.positions // self.r
            self.plan_cols = self.plan.positions % self.r

    # ------------------------------------------------------------------ pieces
    def _rest_scaling(self, lams: list[np.ndarray]):
        """``Lambda_r`` as a vector (all rest terms scalar) or the per-term ``lambda_k``."""
        if self.rest_scalar:
            parts = [np.full(self.blocks[k].n_levels, lams[k][0, 0]) for k in self.rest]
            return np.concatenate([*parts, np.ones(self.p)])
        return [lams[k] for k in self.rest]

    def _scale_columns(self, h: np.ndarray, lams: list[np.ndarray], transpose: bool):
        """``h Lambda_r`` (or ``h Lambda_r'``) for a 2-d ``h``, term by term in place."""
        start = 0
        for k, lam in zip(self.rest, lams, strict=True):
            blk = self.blocks[k]
            cols = slice(start, start + blk.size)
            part = h[:, cols].reshape(h.shape[0], blk.n_levels, blk.p)
            h[:, cols] = (part @ (lam.T if transpose else lam)).reshape(h.shape[0], blk.size)
            start += blk.size
        return h

    def draw(
        self,
        lams: list[np.ndarray],
        sigma2: float,
        prior_precision: np.ndarray,
        prior_mean: np.ndarray,
        rng: np.random.Generator | None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """A draw of ``(b, beta)`` (``rng`` None: the conditional mean).

        Parameters
        ----------
        lams : list of ndarray (p_k, p_k)
            ``T_k / sigma`` per term, public order.
        sigma2 : float
        prior_precision, prior_mean : ndarray (p,)
            Normal prior on beta (precision 0: flat).

        Returns
        -------
        b : list of ndarray (l_k, p_k), public order
        beta : ndarray (p,)
        """
        b0 = self.blocks[self.first]
        l0, p0 = b0.n_levels, b0.p
        lam0 = lams[self.first]
        sigma = float(np.sqrt(sigma2))
        scale_r = self._rest_scaling(lams)
        vector = isinstance(scale_r, np.ndarray)
        rest_lams = None if vector else scale_r

        # M00 per level and W = lam0 M00^-1 lam0'
        if p0 == 1:
            lam = lam0[0, 0]
            m00 = lam * lam * self.d0[0, 0] + 1.0
            w = lam * lam / m00
            if self.g0r_dense is not None:
                g = self.g0r_dense[:, 0, :]
                fill = g.T @ (g * w[:, None])
            elif self.plan is not None:
                fill = None
            else:
                fill = np.asarray((self.g0r_t @ sp.diags_array(w) @ self.g0r).toarray())
        else:
            m00 = batched.congruence(lam0, self.d0)
            for i in range(p0):
                m00[i, i] += 1.0
            linv = batched.invert_lower(batched.cholesky(m00))
            m00_inv = np.einsum("kil,kjl->ijl", linv, linv)
            wblocks = np.einsum("ia,abl,jb->lij", lam0, m00_inv, lam0)
            if self.g0r_dense is not None:
                wg = np.einsum("lij,ljr->lir", wblocks, self.g0r_dense)
                fill = self.g0r_dense.reshape(self.q0, self.r).T @ wg.reshape(self.q0, self.r)
            else:
                wmat = self.w_pattern.copy()
                wmat.data = wblocks.ravel()
                fill = np.asarray((self.g0r_t @ wmat @ self.g0r).toarray())

        # Schur complement S = Lambda_r' (Grr - fill) Lambda_r + diag(1, sigma^2 P)
        if fill is None:  # the fill's lower triangle from the precomputed map
            values = self.plan.map @ w
            if vector:
                values *= scale_r[self.plan_rows] * scale_r[self.plan_cols]
                s = np.multiply(self.grr, scale_r[:, None])
                s *= scale_r[None, :]
                s.ravel()[self.plan.positions] -= values
            else:
                s = self.grr.copy()
                s.ravel()[self.plan.positions] -= values
                s = np.tril(s) + np.tril(s, -1).T
        else:
            s = self.grr - fill
            if vector:
                s *= scale_r[:, None]
                s *= scale_r[None, :]
        if not vector:  # Lambda_r' s Lambda_r, s symmetric
            s = self._scale_columns(
                self._scale_columns(s, rest_lams, False).T.copy(), rest_lams, False
            )
        idx = np.arange(self.r)
        s[idx[: self.r - self.p], idx[: self.r - self.p]] += 1.0
        s[idx[self.r - self.p :], idx[self.r - self.p :]] += sigma2 * prior_precision
        low, info = sla.lapack.dpotrf(s, lower=1, overwrite_a=1, clean=0) if self.r else (s, 0)
        if info != 0:
            raise NotPositiveDefiniteError

        # right-hand sides (u-scale)
        c0 = self.c0.reshape(l0, p0) @ lam0  # rows: (lam0' c_l)'
        cr = (
            scale_r * self.cr
            if vector
            else self._scale_columns(self.cr[None, :].copy(), rest_lams, False)[0]
        )
        cr = cr.copy()
        cr[self.r - self.p :] += sigma2 * prior_precision * prior_mean

        def m00_solve(v: np.ndarray) -> np.ndarray:  # (l0, p0)
            if p0 == 1:
                return v / m00[:, None]
            return np.einsum("ijl,lj->li", m00_inv, v)

        def lam_r(v: np.ndarray) -> np.ndarray:  # Lambda_r v = (v' Lambda_r')'
            if vector:
                return scale_r * v
            return self._scale_columns(v[None, :].copy(), rest_lams, True)[0]

        def lam_r_t(v: np.ndarray) -> np.ndarray:  # Lambda_r' v = (v' Lambda_r)'
            if vector:
                return scale_r * v
            return self._scale_columns(v[None, :].copy(), rest_lams, False)[0]

        t0 = m00_solve(c0)
        g0r = self.g0r if self.g0r_dense is None else self.g0r_dense.reshape(self.q0, self.r)
        rr = cr - lam_r_t(g0r.T @ (t0 @ lam0.T).ravel())
        if self.r:
            yr, _ = dtrtrs(low, rr, lower=1)
            if rng is not None:
                yr += sigma * rng.standard_normal(self.r)
            xr, _ = dtrtrs(low, yr, lower=1, trans=1)
        else:  # one term and no fixed effects: nothing outside the first block
            xr = np.zeros(0)
        back = (g0r @ lam_r(xr)).reshape(l0, p0) @ lam0
        # the factor ``L`` of ``M`` (for :meth:`whiten` and :meth:`log_det`)
        self.last_factor = (m00, low, lambda v: (g0r @ lam_r(v)).reshape(l0, p0) @ lam0)
        x0 = m00_solve(c0 - back)
        if rng is not None:
            z0 = rng.standard_normal((l0, p0))
            if p0 == 1:
                x0 += sigma * z0 / np.sqrt(m00)[:, None]
            else:
                x0 += sigma * np.einsum("jil,lj->li", linv, z0)

        out: list[np.ndarray] = [np.empty(0)] * len(self.blocks)
        out[self.first] = x0 @ lam0.T
        start = 0
        for k in self.rest:
            blk = self.blocks[k]
            uk = xr[start : start + blk.size].reshape(blk.n_levels, blk.p)
            out[k] = uk @ lams[k].T
            start += blk.size
        return out, xr[self.r - self.p :].copy()

    def log_det(self) -> float:
        """``log det L = log det M / 2`` of the last :meth:`draw`'s ``M``."""
        m00, lrr, _ = self.last_factor
        if m00.ndim == 1:
            value = 0.5 * float(np.log(m00).sum())
        else:
            value = float(np.log(np.einsum("iil->il", batched.cholesky(m00))).sum())
        return value + (float(np.log(np.diag(lrr)).sum()) if self.r else 0.0)

    def whiten(self, x0: np.ndarray, xr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``L' x`` for the last :meth:`draw`'s ``M = L L'``, ``x = (x0, xr)`` on its scale
        (``x0`` the first term's ``u`` (l0, p0); ``xr`` the other terms' ``u`` and beta):
        the inverse of the noise map of :meth:`draw`, which adds ``sigma L^-T z``."""
        m00, lrr, m0r = self.last_factor
        back = m0r(xr)  # M_0r x_r, (l0, p0)
        if m00.ndim == 1:
            root = np.sqrt(m00)[:, None]
            e0 = root * x0 + back / root
        else:  # L00' x0 + L00^-1 M_0r x_r, level by level
            l00 = batched.cholesky(m00)
            e0 = np.einsum("jil,lj->li", l00, x0)
            e0 += np.linalg.solve(np.moveaxis(l00, 2, 0), back[..., None])[..., 0]
        er = np.tril(lrr).T @ xr if self.r else np.zeros(0)
        return e0, er
