"""Exact updates of the coefficients of a Poisson (log link) mixed model given the
variances, for the Gibbs sweep of :mod:`mixedmodels.core.gibbs`.

With ``eta = offset + X beta + sum_k Z_k b_k`` and ``b_kl = T_k u_kl``, ``u_kl ~ N(0, I)``:

0. all of ``(beta, b)`` at once (:class:`JointLaplaceStep`): a Crank-Nicolson proposal
   around the joint Laplace approximation at the conditional mode, with multivariate-t
   tails, its precision factored by Henderson's blocked Cholesky
   (:class:`~mixedmodels.core.henderson.HendersonSystem`); it moves partly confounded
   terms and the fixed effects together;
1. ``beta | b``: an independence Metropolis-Hastings step whose proposal is a Student-t
   (4 df) with the Laplace approximation's centre and scale, ``beta*`` and ``H^-1`` at the
   conditional mode (Newton from a fixed point, so the proposal depends only on what is
   conditioned on);
2. for each term, every level's ``u_kl | beta, other terms`` at once: the levels are
   conditionally independent, so each gets its own Student-t Laplace proposal
   (``p_k``-dimensional, vectorized Newton from 0) and its own accept/reject;
3. for each term with an intercept column: the fixed effects whose columns are constant
   within its levels (the intercept and level-level covariates, e.g. a year for broods
   nested in years) given the centred effects ``c_l = b_l + e_1 x_l' beta_W`` (a normal
   draw, as a regression of ``c`` on ``x_l``; the likelihood does not change), which moves
   those coefficients and all the level effects together (hierarchical centring);
   Likewise for random intercepts nested in another term's levels (broods within
   locations, :func:`nested_intercepts`): the outer effects given the inner ones centred
   at them (:func:`_centre_nested`, a normal draw);
4. (in the Gibbs sweep) the variances as in the Gaussian model, then each term's standard
   deviations given the standardized effects by slice sampling of the exact Poisson
   likelihood (interweaving), and for nested intercepts the outer sd given its
   standardized effects and the centred inner effects (no likelihood involved).

Every step leaves the posterior exactly invariant; acceptance rates are kept.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.henderson import HendersonSystem, NotPositiveDefiniteError
from mixedmodels.core.terms import RandomBlock
from mixedmodels.errors import ArgumentError

NEWTON_STEPS = 30
#: degrees of freedom of the Student-t proposals: their polynomial tails dominate the
#: posterior's (at most exponential) ones, so an independence proposal cannot get stuck
PROPOSAL_DF = 4.0


def _log_lik(counts: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Per-observation ``y eta - exp(eta)`` (``-inf`` past ``eta = 700``)."""
    with np.errstate(over="ignore"):
        return counts * eta - np.exp(eta)


def nested_intercepts(blocks: list[RandomBlock]) -> list[tuple[int, int, np.ndarray]]:
    """Pairs of random-intercept terms whose levels nest (every level of ``inner`` lies
    in one level of ``outer``, e.g. broods within locations): ``(inner, outer, parent)``
    with ``parent[l]`` the outer level of inner level ``l``."""
    pairs = []
    for i, bi in enumerate(blocks):
        for o, bo in enumerate(blocks):
            if i == o or bi.p != 1 or bo.p != 1 or bi.n_levels <= bo.n_levels:
                continue
            if not (np.all(bi.z[:, 0] == 1.0) and np.all(bo.z[:, 0] == 1.0)):
                continue
            parent = np.full(bi.n_levels, -1)
            parent[bi.codes] = bo.codes
            if np.all(parent >= 0) and np.array_equal(parent[bi.codes], bo.codes):
                pairs.append((i, o, parent))
    return pairs


def _centre_nested(inner, outer, t_inner, t_outer, parent, rng):
    """The outer term's effects given ``c_l = b_inner_l + b_outer_parent(l)`` (held, so
    the likelihood does not change): per outer level ``m``, a normal with precision
    ``n_m / s_in^2 + 1 / s_out^2`` and mean ``sum_{l in m} c_l / s_in^2`` over it (an
    exact Gibbs step of hierarchical centring); returns the new ``(inner, outer)``."""
    v_in, v_out = float(t_inner[0, 0]) ** 2, float(t_outer[0, 0]) ** 2
    c = inner[:, 0] + outer[parent, 0]
    m = outer.shape[0]
    precision = np.bincount(parent, minlength=m) / v_in + 1.0 / v_out
    centre = np.bincount(parent, weights=c, minlength=m) / v_in / precision
    new_outer = centre + rng.standard_normal(m) / np.sqrt(precision)
    return (c - new_outer[parent])[:, None], new_outer[:, None]


class JointLaplaceStep:
    """One exact Metropolis-Hastings update of all of ``(beta, b)`` at once, given the
    variances: a preconditioned Crank-Nicolson proposal around the joint Laplace
    approximation of their conditional posterior.

    Given ``T_k`` and the normal prior of ``beta`` (precision ``P``, mean ``m``), Newton's
    method (penalized iteratively reweighted least squares) from a fixed start (``beta``
    at the chain's reference point, ``b = 0``) runs a fixed number of iterations; each is
    a solve of Henderson's equations with weights ``mu`` and working response
    ``eta - offset + (y - mu) / mu`` through :class:`~mixedmodels.core.henderson.HendersonSystem`
    (the engine's blocked Cholesky: per level for the largest term, a dense Schur
    complement for the rest; never a dense ``Z``).  Its last solution ``c`` and precision
    ``H`` (the weights of the last iteration) depend only on the variances, so
    ``G = N(c, H^-1)`` is a fixed Gaussian for this update.  The proposal

    ``x' = c + rho (x - c) + sqrt(1 - rho^2) xi``, ``xi ~ N(0, H^-1)``

    is reversible with respect to ``G`` (``rho = 0``: the independence proposal from ``G``),
    so ``x'`` would be accepted with probability ``min(1, pi(x') G(x) / (pi(x) G(x')))``.
    A Gaussian's tails are lighter than the posterior's (toward small counts it decays only
    like the prior), where such a chain sticks; so ``G`` is the multivariate t (``nu = 4``)
    with that centre and scale, a normal scale mixture ``x | s ~ N(c, (s H)^-1)``, ``s ~
    Gamma(nu/2, nu/2)``: ``s`` is drawn given ``x`` (``Gamma((nu + d)/2, (nu + Q(x))/2)``,
    ``Q(x) = (x - c)' H (x - c)``), then ``x'`` from the Crank-Nicolson step of ``N(c,
    (s H)^-1)``.  The composite proposal is reversible with respect to the t, so ``x'`` is
    accepted with probability ``min(1, pi(x') t(x) / (pi(x) t(x')))`` and the conditional
    posterior ``pi`` is exactly invariant.  ``(x - c)' H (x - c)`` is computed
    from the linear predictor, ``sum_i w_i d_eta_i^2 + sum_k |T_k^-1 d_b_k|^2 + d_beta' P
    d_beta``, without forming ``H``.  ``rho`` is tuned during warm-up only (toward 30%
    acceptance) and fixed afterwards.  It moves the directions the term-by-term updates
    cannot: effects of partially confounded terms (broods within locations) together
    with the fixed effects.
    """

    #: Newton iterations from the fixed start (PIRLS converges in 4-8 on grouseticks)
    ITERATIONS = 12
    #: change of the linear predictor at which Newton stops
    TOLERANCE = 1e-6
    TARGET = 0.3

    def __init__(self, blocks: list[RandomBlock], X: np.ndarray, counts, offset):
        self.blocks = blocks
        self.X = X
        self.counts = counts
        self.offset = offset
        self.system = HendersonSystem(
            blocks, X, np.zeros(len(counts)), np.ones(len(counts)), fixed_weights=False
        )
        self.tries = 0
        self.accepts = 0

    def _eta(self, beta, b) -> np.ndarray:
        eta = self.offset + self.X @ beta
        for blk, bk in zip(self.blocks, b, strict=True):
            eta = eta + np.einsum("np,np->n", blk.z, bk[blk.codes])
        return eta

    def _centre(self, factors, inverses, precision, mean, reference):
        """The Laplace centre ``(beta, b, eta)`` and the weights of its precision, or
        None.  Damped Newton from ``reference``: a step that lowers the penalized
        log-likelihood is halved (at most 30 times); it stops when a step changes the
        linear predictor by less than ``TOLERANCE`` or after ``ITERATIONS`` steps.  The
        centre is the last (undamped) solution and the precision that of its
        linearization, which :attr:`system` keeps, so that a draw from it is the
        centre plus ``xi ~ N(0, H^-1)``; both depend on the variances only."""
        y = self.counts
        beta, b = reference[0], [x.copy() for x in reference[1]]
        eta = self._eta(beta, b)
        value = self._log_target(beta, b, eta, inverses, precision, mean)
        for _ in range(self.ITERATIONS):
            weights = np.maximum(np.exp(np.minimum(eta, 700.0)), 1e-12)
            self.system.set_data(eta - self.offset + (y - weights) / weights, weights)
            try:
                b_sol, beta_sol = self.system.draw(factors, 1.0, precision, mean, None)
            except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                return None
            eta_sol = self._eta(beta_sol, b_sol)
            if not np.all(np.isfinite(eta_sol)):
                return None
            if float(np.abs(eta_sol - eta).max()) < self.TOLERANCE:
                break
            beta_new, b_new, eta_new = beta_sol, b_sol, eta_sol
            for _half in range(30):
                new_value = self._log_target(beta_new, b_new, eta_new, inverses, precision, mean)
                if new_value >= value - 1e-10 * abs(value):
                    break
                beta_new = 0.5 * (beta + beta_new)
                b_new = [0.5 * (x + z) for x, z in zip(b, b_new, strict=True)]
                eta_new = 0.5 * (eta + eta_new)
            beta, b, eta, value = beta_new, b_new, eta_new, new_value
        return beta_sol, b_sol, eta_sol, weights

    def _log_target(self, beta, b, eta, inverses, precision, mean) -> float:
        d = beta - mean
        value = float(_log_lik(self.counts, eta).sum()) - 0.5 * float((precision * d) @ d)
        for bk, inv in zip(b, inverses, strict=True):
            u = bk @ inv.T
            value -= 0.5 * float(np.einsum("lp,lp->", u, u))
        return value

    def _log_gaussian(self, beta, b, eta, centre, inverses, precision) -> float:
        beta_c, b_c, eta_c, weights = centre
        de = eta - eta_c
        d = beta - beta_c
        value = float(weights @ (de * de)) + float((precision * d) @ d)
        for bk, bc, inv in zip(b, b_c, inverses, strict=True):
            du = (bk - bc) @ inv.T
            value += float(np.einsum("lp,lp->", du, du))
        return -0.5 * value

    def update(self, beta, b, factors, precision, mean, reference, rho, rng):
        """One step; returns ``(beta, b, accepted)`` (the state unchanged and None when
        the Laplace approximation cannot be formed at these variances)."""
        try:
            inverses = [sla.solve_triangular(t, np.eye(len(t)), lower=True) for t in factors]
        except (np.linalg.LinAlgError, ValueError):
            return beta, b, None
        centre = self._centre(factors, inverses, precision, mean, reference)
        if centre is None:
            return beta, b, None
        beta_c, b_c, _, _ = centre
        try:  # c + xi, xi ~ N(0, H^-1): a draw from the centre's linearization
            b_draw, beta_draw = self.system.draw(factors, 1.0, precision, mean, rng)
        except (NotPositiveDefiniteError, np.linalg.LinAlgError):
            return beta, b, None
        # the multivariate t's scale given x (a Gibbs step of its normal scale mixture)
        eta_old = self._eta(beta, b)
        dim = beta.size + sum(bk.size for bk in b)
        quad_old = -2.0 * self._log_gaussian(beta, b, eta_old, centre, inverses, precision)
        scale = rng.gamma((PROPOSAL_DF + dim) / 2) / ((PROPOSAL_DF + quad_old) / 2)
        step = math.sqrt(max(1.0 - rho * rho, 0.0) / scale)
        beta_new = beta_c + rho * (beta - beta_c) + step * (beta_draw - beta_c)
        b_new = [
            bc + rho * (bk - bc) + step * (bd - bc)
            for bk, bc, bd in zip(b, b_c, b_draw, strict=True)
        ]
        eta_new = self._eta(beta_new, b_new)
        quad_new = -2.0 * self._log_gaussian(beta_new, b_new, eta_new, centre, inverses, precision)
        log_ratio = (
            self._log_target(beta_new, b_new, eta_new, inverses, precision, mean)
            - self._log_target(beta, b, eta_old, inverses, precision, mean)
            + 0.5
            * (PROPOSAL_DF + dim)
            * (math.log1p(quad_new / PROPOSAL_DF) - math.log1p(quad_old / PROPOSAL_DF))
        )
        self.tries += 1
        if math.isfinite(log_ratio) and math.log(rng.uniform()) < log_ratio:
            self.accepts += 1
            return beta_new, b_new, True
        return beta, b, False


class PoissonCoefficients:
    """The coefficient updates (steps 1-3 above) of one model."""

    def __init__(self, blocks: list[RandomBlock], X: np.ndarray, counts, offset):
        self.blocks = blocks
        self.X = X
        self.counts = np.asarray(counts, dtype=float)
        self.offset = offset
        self.n, self.p = X.shape
        self.centring = {}  # term -> (columns of X constant within its levels, their values)
        for k, blk in enumerate(blocks):
            if not np.all(blk.z[:, 0] == 1.0):
                continue
            first = np.full(blk.n_levels, -1)
            first[blk.codes[::-1]] = np.arange(self.n)[::-1]  # a row of each level
            level_x = X[first]
            constant = [j for j in range(self.p) if np.all(X[:, j] == level_x[blk.codes, j])]
            if constant and np.all(first >= 0):
                self.centring[k] = (constant, level_x[:, constant])
        self.tries = np.zeros(len(blocks) + 1)
        self.accepts = np.zeros(len(blocks) + 1)
        try:
            self.joint: JointLaplaceStep | None = JointLaplaceStep(blocks, X, self.counts, offset)
        except ArgumentError:  # too many effects outside the largest term for its Schur
            self.joint = None  # complement: the term-by-term steps alone
        self.nesting = nested_intercepts(blocks)

    # ------------------------------------------------------------------ beta
    def _update_beta(self, beta, eta_rest, precision, mean, reference, rng) -> np.ndarray:
        X, y = self.X, self.counts

        def gradient_hessian(bt):
            mu = np.exp(np.minimum(eta_rest + X @ bt, 700.0))
            g = X.T @ (y - mu) - precision * (bt - mean)
            h = X.T @ (X * mu[:, None]) + np.diag(precision)
            return g, h

        mode = reference.copy()
        try:
            for _ in range(NEWTON_STEPS):
                g, h = gradient_hessian(mode)
                step = sla.solve(h, g, assume_a="pos")
                big = float(np.abs(step).max())
                mode = mode + (step * (5 / big) if big > 5 else step)  # damped
                if big < 1e-10:
                    break
            _, h = gradient_hessian(mode)
            low = np.linalg.cholesky(h)
        except (np.linalg.LinAlgError, ValueError):
            return beta  # no proposal here: the identity, a valid (lazy) step
        if not np.all(np.isfinite(low)):
            return beta
        z = rng.standard_normal(self.p) / math.sqrt(rng.chisquare(PROPOSAL_DF) / PROPOSAL_DF)
        proposal = mode + sla.solve_triangular(low, z, lower=True, trans=1)

        def log_target(bt):
            d = bt - mean
            return float(_log_lik(y, eta_rest + X @ bt).sum() - 0.5 * (precision * d) @ d)

        def log_q(bt):  # multivariate t, up to a constant
            v = low.T @ (bt - mode)
            return -0.5 * (PROPOSAL_DF + self.p) * math.log1p(float(v @ v) / PROPOSAL_DF)

        log_ratio = log_target(proposal) - log_target(beta) + log_q(beta) - log_q(proposal)
        self.tries[-1] += 1
        if math.log(rng.uniform()) < log_ratio:
            self.accepts[-1] += 1
            return proposal
        return beta

    # ------------------------------------------------------------------ one term
    def _update_term(self, k: int, u: np.ndarray, factor: np.ndarray, eta_rest, rng):
        """All levels of term ``k`` (u-scale, (l, p)) given ``eta_rest`` (the rest of eta)."""
        blk = self.blocks[k]
        n_levels, p = blk.n_levels, blk.p
        zt = blk.z @ factor  # rows z_i' T: eta_i = eta_rest_i + zt_i . u_l
        codes, y = blk.codes, self.counts

        def level_sums(values: np.ndarray) -> np.ndarray:
            return np.bincount(codes, weights=values, minlength=n_levels)

        def log_target(uu):
            eta = eta_rest + np.einsum("np,np->n", zt, uu[codes])
            return level_sums(_log_lik(y, eta)) - 0.5 * np.einsum("lp,lp->l", uu, uu)

        def gradient_hessian(uu):
            mu = np.exp(np.minimum(eta_rest + np.einsum("np,np->n", zt, uu[codes]), 700.0))
            resid = y - mu
            g = np.stack([level_sums(resid * zt[:, a]) for a in range(p)], axis=1) - uu
            h = np.empty((n_levels, p, p))
            for a in range(p):
                for c in range(a, p):
                    h[:, a, c] = h[:, c, a] = level_sums(mu * zt[:, a] * zt[:, c])
            h += np.eye(p)
            return g, h

        mode = np.zeros((n_levels, p))
        for _ in range(NEWTON_STEPS):
            if p == 1:  # scalar Newton, level by level at once
                z1 = zt[:, 0]
                mu = np.exp(np.minimum(eta_rest + z1 * mode[codes, 0], 700.0))
                g1 = level_sums((y - mu) * z1) - mode[:, 0]
                step = (g1 / (level_sums(mu * z1 * z1) + 1.0))[:, None]
            else:
                g, h = gradient_hessian(mode)
                step = np.linalg.solve(h, g[..., None])[..., 0]
            big = np.abs(step).max(axis=1, keepdims=True)
            step = np.where(big > 5, step * (5 / np.maximum(big, 1e-300)), step)  # damped
            mode = mode + step
            if float(np.abs(step).max()) < 1e-10:
                break
        _, h = gradient_hessian(mode)
        try:
            low = np.linalg.cholesky(h)  # (l, p, p)
        except np.linalg.LinAlgError:
            return u
        z = rng.standard_normal((n_levels, p))
        z /= np.sqrt(rng.chisquare(PROPOSAL_DF, size=n_levels) / PROPOSAL_DF)[:, None]
        # u' = mode + L^-T z, level by level (multivariate t)
        offset = np.linalg.solve(np.swapaxes(low, 1, 2), z[..., None])[..., 0]
        proposal = mode + offset

        def log_q(uu):  # multivariate t, up to a constant
            v = np.einsum("lba,lb->la", low, uu - mode)  # L' (u - mode)
            return -0.5 * (PROPOSAL_DF + p) * np.log1p(np.einsum("la,la->l", v, v) / PROPOSAL_DF)

        log_ratio = log_target(proposal) - log_target(u) + log_q(u) - log_q(proposal)
        accept = np.log(rng.uniform(size=n_levels)) < log_ratio
        self.tries[k] += n_levels
        self.accepts[k] += int(accept.sum())
        return np.where(accept[:, None], proposal, u)

    # ------------------------------------------------------------------ sweep part
    def update(self, beta, b, factors, precision, mean, reference, rng, rho=0.0):
        """The joint step (:class:`JointLaplaceStep`, with ``rho``), then steps 1-3;
        returns new ``(beta, b)`` and whether the joint step was accepted (None: not
        possible at these variances)."""
        accepted = None
        if self.joint is not None:
            beta, b, accepted = self.joint.update(
                beta, b, factors, precision, mean, reference, rho, rng
            )
        b = [bk.copy() for bk in b]
        contributions = [
            np.einsum("np,np->n", blk.z, bk[blk.codes])
            for blk, bk in zip(self.blocks, b, strict=True)
        ]
        random_part = np.sum(contributions, axis=0)
        beta = self._update_beta(
            beta, self.offset + random_part, precision, mean, reference[0], rng
        )
        fixed = self.offset + self.X @ beta
        for k, blk in enumerate(self.blocks):
            factor = factors[k]
            eta_rest = fixed + random_part - contributions[k]
            u = sla.solve_triangular(factor, b[k].T, lower=True).T
            u = self._update_term(k, u, factor, eta_rest, rng)
            b[k] = u @ factor.T
            new = np.einsum("np,np->n", blk.z, b[k][blk.codes])
            random_part += new - contributions[k]
            contributions[k] = new
        for inner, outer, parent in self.nesting:
            b[inner], b[outer] = _centre_nested(
                b[inner], b[outer], factors[inner], factors[outer], parent, rng
            )
        for k, (columns, level_x) in self.centring.items():
            beta, b[k] = self._centre(
                beta, b[k], factors[k], columns, level_x, precision, mean, rng
            )
        return beta, b, accepted

    def _centre(self, beta, bk, factor, columns, level_x, precision, mean, rng):
        """``beta_W`` given ``c_l = b_l + e_1 x_l' beta_W`` (step 3): with
        ``b_l ~ N(0, Sigma)`` and ``s = (Sigma^-1)_11``, a normal with precision
        ``s X_W'X_W + P_W`` and mean from ``X_W' (C Sigma^-1 e_1) + P_W m_W``."""
        c = bk.copy()
        c[:, 0] += level_x @ beta[columns]
        inv = sla.solve_triangular(factor, np.eye(len(factor)), lower=True)
        sigma_inv = inv.T @ inv
        prec_w = np.diag(precision[columns])
        a = sigma_inv[0, 0] * level_x.T @ level_x + prec_w
        rhs = level_x.T @ (c @ sigma_inv[:, 0]) + prec_w @ mean[columns]
        low = np.linalg.cholesky(a)
        centre = sla.cho_solve((low, True), rhs)
        new = centre + sla.solve_triangular(
            low, rng.standard_normal(len(columns)), lower=True, trans=1
        )
        beta = beta.copy()
        beta[columns] = new
        c[:, 0] -= level_x @ new
        return beta, c
