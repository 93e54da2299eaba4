"""Penalized iteratively reweighted least squares (PIRLS) and the Laplace approximation for
generalized linear mixed models.

Model: ``eta = offset + X beta + Z Lambda(theta) u``, ``u ~ N(0, I)``, ``y_i | u`` from the
family with mean ``mu_i = g^-1(eta_i)`` and prior weight ``w_i``.  For a given ``theta``
(and ``beta``), PIRLS finds the conditional mode ``u~`` minimizing the penalized deviance
``sum_i d_i(y_i, mu_i) + ||u||^2`` by Fisher scoring with step halving; the Laplace
approximation of the deviance is then

.. math::

    -2 \\log L(\\theta, \\beta) \\approx \\sum_i d_i(y_i, \\tilde\\mu_i) + \\|\\tilde u\\|^2
        + \\log |\\Lambda' Z' W Z \\Lambda + I|

(up to the constant ``-2 sum log p(y_i | y_i)``), with ``W`` the GLM weights
``w_i (d mu / d eta)^2 / V(mu)`` at the mode.  This is lme4's objective for ``nAGQ = 1``.
For families with a dispersion parameter (Gamma, inverse Gaussian, gaussian with a link)
lme4 replaces ``sum d_i`` by R's ``family$aic`` at the mode, ``-2 sum log p(y_i | mu_i,
phi) + 2`` with ``phi`` the deviance over the number of observations: PIRLS and ``W`` do not
involve ``phi``, and the random effects ``u`` are not scaled by it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from mixedmodels.core.dense import MAX_DENSE_RANDOM_EFFECTS
from mixedmodels.core.families import Family, FamilyKernel
from mixedmodels.core.lmm import LmmProblem
from mixedmodels.core.pirls_dense import (
    MAX_ROW_PRODUCTS,
    BlockDiagonalSystem,
    DenseWeightedSystem,
    ScaledRows,
    ZRows,
)
from mixedmodels.core.terms import RandomBlock
from mixedmodels.linalg.blocks import NotPositiveDefiniteError

MAX_ITERATIONS = 60
MAX_HALVINGS = 12
TOLERANCE = 1e-12
U_TOLERANCE = 1e-10  # largest change of u at convergence, where the objective needs it
#: the mode is reached, without another scoring step, when every element of the gradient of
#: half the penalized deviance, ``u - Lambda' Z' s`` (``s`` the rows' scores; with beta
#: updated also ``X' s``), is below this: where the rows' curvatures are non-negative the
#: penalized deviance's Hessian is at least ``2 I`` in u, so u is then within ``sqrt(q)``
#: times this of the mode and the deviance within its square of the minimum
GRADIENT_TOLERANCE = 1e-11
#: largest ``l N^2`` (levels of the eliminated term times the square of the rest's system
#: size) for which the lean dense solver eliminates a term: the Schur complement's product
#: costs that many multiply-adds per scoring step
MAX_ELIMINATION_FLOPS = 3e7
#: fewest levels of a scalar term the lean dense solver eliminates before the dense
#: factorization (below it the whole system's factorization is cheaper: cbpp's 15 levels
#: take 22 us a step on the whole system, 42 us eliminated; grouseticks' 118 BROODs 289 us
#: on the whole q = 181 system, 107 us eliminated)
ELIMINATE_LEVELS = 64


class PirlsError(ArithmeticError):
    """PIRLS could not decrease the penalized deviance (the point is unusable)."""


@dataclass(frozen=True)
class ConditionalMode:
    """The result of PIRLS at one parameter value.

    Attributes
    ----------
    beta : ndarray (p,)
    u : ndarray (q,)
        Spherical random effects at the mode.
    eta, mu : ndarray (n,)
        Linear predictor and mean.
    deviance : float
        ``sum_i d_i(y_i, mu_i)``.
    log_det : float
        ``log |Lambda' Z' W Z Lambda + I|``.
    weights : ndarray (n,)
        GLM weights ``w (d mu / d eta)^2 / V(mu)`` at the mode (the weighted least-squares
        problem with them has ``Var(b | y)`` as its conditional covariance at sigma 1).
    fixed_cov : callable
        Computes ``(R_X' R_X)^-1`` of the weighted system at the mode (the conditional
        covariance of beta) when :attr:`unscaled_fixed_cov` is first read: most Laplace
        evaluations never need it.
    data_term : float
        The data term of the Laplace deviance (the family's ``objective_term``): the
        deviance for families without a dispersion parameter, R's ``aic`` (with the
        dispersion estimated from the deviance) for the others, as lme4.
    """

    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    deviance: float
    log_det: float
    weights: np.ndarray
    fixed_cov: Callable[[], np.ndarray] = field(repr=False, compare=False)
    data_term: float = np.nan

    @cached_property
    def unscaled_fixed_cov(self) -> np.ndarray:
        """``(R_X' R_X)^-1`` of the weighted system at the mode (p, p)."""
        return self.fixed_cov()

    @property
    def laplace(self) -> float:
        """The Laplace deviance ``data_term + ||u||^2 + log|L|^2`` (``data_term`` is
        ``sum d_i`` for families without a dispersion parameter)."""
        return self.data_term + float(self.u @ self.u) + self.log_det


class GlmmProblem:
    """A GLMM's data, and its Laplace deviance as a function of ``theta`` and ``beta``.

    Parameters
    ----------
    blocks : list of RandomBlock
        The random-effect terms (their order is the order of ``theta``).
    X : ndarray (n, p)
    y : ndarray (n,)
        The response (a proportion for the binomial with trials as ``prior_weights``).
    prior_weights : ndarray (n,) or None
    offset : ndarray (n,) or None
    family : Family
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        X: np.ndarray,
        y: np.ndarray,
        prior_weights: np.ndarray | None,
        offset: np.ndarray | None,
        family: Family,
    ):
        self.blocks = blocks
        self.X = np.asarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.n = self.y.shape[0]
        self.prior_weights = (
            np.ones(self.n) if prior_weights is None else np.asarray(prior_weights, float)
        )
        self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, float)
        self.family = family
        self.Z = _sparse_z(blocks, self.n)
        self.Zt = self.Z.T.tocsr()
        self.q = self.Z.shape[1]
        self._theta_sizes = [b.n_theta for b in blocks]
        self._lmm: LmmProblem | None = None  # the reweightable LMM of the scoring steps
        self._rows: ZRows | None = None  # Z by rows (built on first use)
        # the lean dense solver of the scoring steps (False: not decided yet; None: the
        # model is too large for it and the LMM engine solves)
        self._dense: DenseWeightedSystem | None | bool = False
        # the block-diagonal steps of a model with one term (None: not that model)
        self._blocks: BlockDiagonalSystem | None = None
        self._kernel: FamilyKernel | None = None  # the family's functions bound to y, w
        # the kernel of the problem this one was made from by with_family (what it computed
        # from the response alone is reused)
        self._kernel_source: FamilyKernel | None = None

    @property
    def n_theta(self) -> int:
        return int(sum(self._theta_sizes))

    @property
    def n_fixed(self) -> int:
        return self.X.shape[1]

    def theta_lower_bounds(self) -> np.ndarray:
        return np.concatenate([b.theta_lower_bounds() for b in self.blocks])

    def theta_start(self) -> np.ndarray:
        return np.concatenate([b.theta_start() for b in self.blocks])

    def relative_factor(self, theta: np.ndarray) -> sp.csr_matrix:
        """``Lambda(theta)``: block diagonal, ``I_l (x) lambda_k`` per term."""
        parts, start = [], 0
        for block, size in zip(self.blocks, self._theta_sizes, strict=True):
            lam = block.lambda_matrix(np.asarray(theta[start : start + size]))
            parts.append(sp.kron(sp.identity(block.n_levels, format="csr"), sp.csr_matrix(lam)))
            start += size
        return sp.block_diag(parts, format="csr")

    # ------------------------------------------------------------------ PIRLS
    def glm_start(self) -> np.ndarray:
        """beta of the GLM without random effects (IRLS from R's ``mustart``)."""
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            # trial steps outside the link's range give inf deviances, rejected below
            beta, dev = self._irls_start(np.zeros(self.n_fixed))
        if not np.isfinite(dev):
            # the failing steps were halved towards beta = 0, where a link whose mean is
            # infinite at eta = 0 (the inverse link) has no finite deviance: halve towards
            # the least-squares fit of link(mustart) instead (the start R's glm.fit uses)
            eta = self.family.link(self.family.start_mu(self.y, self.prior_weights))
            anchor, *_ = np.linalg.lstsq(self.X, eta - self.offset, rcond=None)
            if np.isfinite(anchor).all():
                with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                    beta, _ = self._irls_start(anchor)
        return beta

    def _irls_start(self, beta: np.ndarray) -> tuple[np.ndarray, float]:
        """:meth:`glm_start`'s IRLS from R's ``mustart``, failing steps halved towards
        ``beta``; the last usable beta and its deviance (inf when no step was usable)."""
        fam, link = self.family, self.family.link
        mu = fam.start_mu(self.y, self.prior_weights)
        eta = link(mu)
        last = np.inf
        dev = np.inf
        for _ in range(100):
            d = link.mu_eta(eta)
            w = self.prior_weights * d**2 / fam.variance(mu)
            z = eta - self.offset + (self.y - mu) / d
            sw = np.sqrt(w)
            if not (np.isfinite(sw).all() and np.isfinite(z).all()):
                break  # keep the last usable beta
            new, *_ = np.linalg.lstsq(self.X * sw[:, None], z * sw, rcond=None)
            # step halving where a full step leaves the link's range (an inverse link's
            # negative mean): the deviance must stay finite
            for _ in range(30):
                eta = self.offset + self.X @ new
                mu = link.inverse(eta)
                dev = float(np.sum(fam.unit_deviance(self.y, mu, self.prior_weights)))
                if np.isfinite(dev):
                    break
                new = (new + beta) / 2
            if not np.isfinite(dev):
                eta = self.offset + self.X @ beta
                mu = link.inverse(eta)
                dev = last
                break
            beta = new
            if abs(last - dev) < 1e-10 * (abs(dev) + 0.1):
                break
            last = dev
        return beta, dev

    def mode(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        u_start: np.ndarray | None = None,
        *,
        update_beta: bool = False,
        guess: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ConditionalMode:
        """PIRLS at ``theta``: the conditional mode of ``u`` given ``beta`` (and, with
        ``update_beta``, ``beta`` jointly: lme4's ``nAGQ = 0`` stage).

        ``guess`` is a second start ``(beta, u)`` (a prediction of the mode from earlier
        points; its beta is used only with ``update_beta``): PIRLS starts from whichever of
        the two has the lower penalized deviance.  The mode does not depend on the start
        beyond rounding; a start nearer to it needs fewer scoring steps.

        Raises
        ------
        PirlsError
            When no step decreases the penalized deviance from the start.
        """
        # a trial point far out (a huge linear predictor) may overflow: its deviance is then
        # inf, which the start check and the step halving reject, and its working weights
        # are checked before they reach a factorization
        with np.errstate(over="ignore", invalid="ignore"):
            return self._pirls(theta, beta, u_start, update_beta, guess)

    def _pirls(self, theta, beta, u_start, update_beta: bool, guess) -> ConditionalMode:
        """:meth:`mode`'s iterations (floating-point overflow warnings off)."""
        fam = self.family
        kernel = self.family_kernel()
        theta = np.asarray(theta, dtype=float)
        lambdas = self.lambdas(theta)
        beta = np.asarray(beta, dtype=float).copy()
        u = np.zeros(self.q) if u_start is None else np.asarray(u_start, dtype=float).copy()
        rows = self.z_rows().scaled(lambdas)
        system = self._system(theta, lambdas, rows, update_beta)
        # with beta held, X beta (and the offset) is the same at every trial point
        fixed = None if update_beta else self.offset + self.X @ beta
        offset, X = self.offset, self.X

        def state(beta_: np.ndarray, u_: np.ndarray):
            eta_ = rows.times(u_)
            eta_ += fixed if fixed is not None else offset + X @ beta_
            mu_ = kernel.inverse(eta_)
            dev_ = kernel.deviance(eta_, mu_)
            return eta_, mu_, dev_, dev_ + float(u_ @ u_)

        # families with a dispersion: lme4's data term (R's aic, through log(deviance)) is
        # not stationary at the mode, so its error is first order in u's: converge u itself
        # (likewise where the family's own parameters are estimated from the objective)
        exact_u = fam.has_dispersion or bool(fam.extra_names)
        eta, mu, dev, pdev = state(beta, u)
        if guess is not None:
            g_beta = np.asarray(guess[0], dtype=float) if update_beta else beta
            g_u = np.asarray(guess[1], dtype=float)
            if g_u.shape == u.shape and g_beta.shape == beta.shape:
                g_state = state(g_beta, g_u)
                if np.isfinite(g_state[3]) and not g_state[3] >= pdev:
                    beta, u = g_beta.copy(), g_u.copy()
                    eta, mu, dev, pdev = g_state
        if not np.isfinite(pdev):
            raise PirlsError("penalized deviance is not finite at the start")
        for _ in range(MAX_ITERATIONS):
            weights, resid = _finite_working(kernel, eta, mu)
            score = weights * resid
            grad_u = u - rows.transpose_times(score)
            if self._below_tolerance(grad_u, score, update_beta):
                break  # the confirming scoring step would not move u (a solve saved)
            base = None if system.incremental else (eta - offset if update_beta else eta - fixed)
            try:
                new_u, new_beta = system.step(
                    weights, base, resid, update_beta, u, beta, gradient=grad_u
                )
            except PirlsError:
                if (weights > 0).all():
                    raise
                # exact Newton weights (a zero-inflated row's curvature can be negative)
                # whose system is not positive definite: floor them (same gradient)
                floor = 1e-6 * float(np.abs(weights).max()) + 1e-300
                safe = np.maximum(weights, floor)
                new_u, new_beta = system.step(
                    safe, base, score / safe, update_beta, u, beta, gradient=grad_u
                )
            if not update_beta:
                new_beta = beta
            step = 1.0
            for _ in range(MAX_HALVINGS):
                if step == 1.0:
                    try_beta, try_u = new_beta, new_u
                else:
                    try_beta = beta + step * (new_beta - beta)
                    try_u = u + step * (new_u - u)
                t_eta, t_mu, t_dev, t_pdev = state(try_beta, try_u)
                if np.isfinite(t_pdev) and t_pdev <= pdev + 1e-12 * abs(pdev):
                    break
                step /= 2
            else:
                break  # no decrease: the current point is the mode to working precision
            change = pdev - t_pdev
            moved = float(np.abs(try_u - u).max(initial=0.0)) if exact_u else 0.0
            beta, u, eta, mu, dev, pdev = try_beta, try_u, t_eta, t_mu, t_dev, t_pdev
            if change < TOLERANCE * (abs(pdev) + 1.0) and (not exact_u or moved < U_TOLERANCE):
                break
        weights = kernel.laplace_weights(eta, mu)
        if not np.isfinite(weights).all():
            raise PirlsError("the weights at the mode are not finite (the mean overflows)")
        log_det, fixed_cov = system.at_mode(weights)
        term = kernel.objective_term(mu, dev)
        if not np.isfinite(term):
            raise PirlsError("the family's log density is not finite at the mode")
        return ConditionalMode(beta, u, eta, mu, dev, log_det, weights, fixed_cov, term)

    def _stationary(
        self,
        score: np.ndarray,
        u: np.ndarray,
        lambdas: list[np.ndarray],
        update_beta: bool,
        rows: ScaledRows | None = None,
    ) -> bool:
        """Whether the gradient of half the penalized deviance at ``u`` (and in beta with
        ``update_beta``) is below :data:`GRADIENT_TOLERANCE` in every element; ``score``
        holds the rows' ``-1/2 d d_i / d eta`` (a scoring step's weights times its working
        residuals).  ``rows`` are ``Z Lambda``'s (from ``lambdas`` when not given)."""
        if rows is None:
            rows = self.z_rows().scaled(lambdas)
        return self._below_tolerance(u - rows.transpose_times(score), score, update_beta)

    def _below_tolerance(self, grad_u: np.ndarray, score: np.ndarray, update_beta: bool) -> bool:
        """:meth:`_stationary`'s test from the gradient in u, ``grad_u = u - Lambda' Z'
        s``."""
        # a non-finite score gives a non-finite gradient (inf, or nan from inf - inf or
        # 0 * inf), which fails the ``<`` below: no separate pass over the rows
        if not float(np.abs(grad_u).max(initial=0.0)) < GRADIENT_TOLERANCE:
            return False
        if update_beta and self.X.shape[1]:
            return float(np.abs(self.X.T @ score).max()) < GRADIENT_TOLERANCE
        return True

    def z_rows(self) -> ZRows:
        """``Z`` stored by rows (built on first use)."""
        if self._rows is None:
            self._rows = ZRows(self.blocks)
        return self._rows

    def family_kernel(self) -> FamilyKernel:
        """The family's PIRLS functions bound to this response and its prior weights."""
        if self._kernel is None:
            source = self._kernel_source
            if source is not None:
                self._kernel = source.rebind(self.family)
            else:
                self._kernel = self.family.kernel(self.y, self.prior_weights)
        return self._kernel

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each term's ``p x p`` lower-triangular ``lambda``."""
        out, start = [], 0
        for block, size in zip(self.blocks, self._theta_sizes, strict=True):
            out.append(block.lambda_matrix(np.asarray(theta[start : start + size])))
            start += size
        return out

    def scale(self, lambdas: list[np.ndarray], u: np.ndarray, transpose: bool = False):
        """``Lambda u`` (or ``Lambda' u``) for a vector or a (q, m) matrix, term by term."""
        out = np.empty_like(u, dtype=float)
        start = 0
        for block, lam in zip(self.blocks, lambdas, strict=True):
            part = u[start : start + block.size]
            if block.p == 1:
                out[start : start + block.size] = lam[0, 0] * part
            else:
                m = lam if transpose else lam.T
                shaped = part.reshape(block.n_levels, block.p, -1)
                res = np.einsum("lpm,pk->lkm", shaped, m)
                out[start : start + block.size] = res.reshape(part.shape)
            start += block.size
        return out

    def _system(
        self,
        theta: np.ndarray,
        lambdas: list[np.ndarray],
        rows: ScaledRows,
        update_beta: bool = True,
    ):
        """The solver of one scoring step's penalized weighted least squares: the lean dense
        solver of :mod:`mixedmodels.core.pirls_dense` where it applies
        (:meth:`_dense_system`; with beta held, the steps and ``log |L|^2`` of a model with
        one term by its blocks, :class:`BlockDiagonalSystem`, unless the family keeps
        :attr:`~mixedmodels.core.families.Family.dense_steps`), else the model's one
        reweightable LMM (built on first use, its structure kept for the whole fit)."""
        if self._dense is False:
            self._dense = self._dense_system()
            if self._dense is not None:
                self._blocks = self._block_system()
        if self._dense is not None:
            blocks = None if self.family.dense_steps else self._blocks
            if blocks is not None:
                blocks.set_rows(rows)
            if blocks is None:
                self._dense.set_rows(rows)
            return _DenseSteps(self._dense, rows, blocks)
        if self._lmm is None:
            self._lmm = LmmProblem(
                self.blocks, self.X, self.y, self.prior_weights, reml=False, reweightable=True
            )
        return _EngineSystem(self, self._lmm, theta)

    def describe_solver(self) -> str:
        """A debug view of the scoring steps' solver: the lean dense system's (and the
        block-diagonal steps') or the reweightable LMM's structure (built on first use, so
        empty before a fit)."""
        if isinstance(self._dense, DenseWeightedSystem):
            text = self._dense.describe()
            if self._blocks is not None and not self.family.dense_steps:
                text += "\n" + self._blocks.describe()
            return text
        if self._lmm is not None:
            return self._lmm.describe_structure()
        return ""

    def _dense_system(self) -> DenseWeightedSystem | None:
        """The lean dense solver for this model, or None where the LMM engine is better.

        The scalar term with the most levels is eliminated first when it has at least
        :data:`ELIMINATE_LEVELS` levels and the other terms leave at most 240 random effects
        (unless each of its levels has one row, the Schur complement's product ``l N^2``
        must also stay below :data:`MAX_ELIMINATION_FLOPS`); otherwise models with ``q <=
        240`` (the LMM's dense size) are solved on the whole dense system, larger ones by
        the engine.  None as well when the stored row positions would exceed
        :data:`~mixedmodels.core.pirls_dense.MAX_ROW_PRODUCTS`."""
        rows = self.z_rows()
        eliminate = None
        scalar = [k for k in rows.sparse_terms if self.blocks[k].p == 1]
        if scalar:
            k = max(scalar, key=lambda j: self.blocks[j].n_levels)
            levels = self.blocks[k].n_levels
            rest = self.q - levels
            if levels >= ELIMINATE_LEVELS and rest <= MAX_DENSE_RANDOM_EFFECTS:
                one_row = bool(np.all(np.bincount(self.blocks[k].codes, minlength=levels) == 1))
                size = rest + self.n_fixed + 1
                if one_row or levels * size * size <= MAX_ELIMINATION_FLOPS:
                    eliminate = k
        if eliminate is None and self.q > MAX_DENSE_RANDOM_EFFECTS:
            return None
        system = DenseWeightedSystem(rows, self.X, eliminate=eliminate)
        return system if system.n_entries <= MAX_ROW_PRODUCTS else None

    def _block_system(self) -> BlockDiagonalSystem | None:
        """The block-diagonal steps where the random effects are one term with several
        levels and one or two columns (no other term), else None."""
        rows = self.z_rows()
        if len(rows.sparse_terms) != 1 or rows.q_dense:
            return None
        if self.blocks[rows.sparse_terms[0]].p > 2:
            return None
        return BlockDiagonalSystem(rows, self.X)

    def quadrature_deviance(
        self, theta: np.ndarray, beta: np.ndarray, n_agq: int, u_start=None
    ) -> tuple[float, ConditionalMode]:
        r"""Adaptive Gauss-Hermite approximation of the deviance for one scalar random-effect
        term (lme4's ``nAGQ > 1``), and the mode it is centred on.

        The integral factorizes over levels; for level ``i`` with penalized deviance
        ``g_i(u) = sum_j d_ij(u) + u^2``, mode ``u~_i`` and ``s_i = 1 / L_ii``:

        .. math::

            -2 \log \int e^{-g_i(u)/2} \frac{du}{\sqrt{2\pi}} \approx g_i(\tilde u_i)
                + \log L_{ii}^2 - 2 \log \sum_k w_k
                e^{-(g_i(\tilde u_i + z_k s_i) - g_i(\tilde u_i) - z_k^2)/2}

        with ``z_k, w_k`` the Gauss-Hermite nodes and weights of the standard normal; one
        node is the Laplace approximation.
        """
        block = self.blocks[0]
        mode = self.mode(theta, beta, u_start)
        lam = float(theta[0])
        z = block.z[:, 0]
        codes = block.codes
        levels = block.n_levels
        fixed = self.offset + self.X @ np.asarray(beta, dtype=float)
        curvature = 1.0 + lam**2 * np.bincount(codes, mode.weights * z**2, minlength=levels)
        sd = 1.0 / np.sqrt(curvature)
        fam = self.family

        def g(u: np.ndarray) -> np.ndarray:
            mu = fam.link.inverse(fixed + lam * z * u[codes])
            d = fam.unit_deviance(self.y, mu, self.prior_weights)
            return np.bincount(codes, d, minlength=levels) + u**2

        nodes, weights = np.polynomial.hermite_e.hermegauss(n_agq)
        weights = weights / np.sqrt(2 * np.pi)
        g0 = g(mode.u)
        total = np.zeros(levels)
        for node, weight in zip(nodes, weights, strict=True):
            if node == 0.0:
                total += weight
                continue
            total += weight * np.exp(-0.5 * (g(mode.u + node * sd) - g0 - node**2))
        deviance = float(np.sum(g0) + np.sum(np.log(curvature)) - 2 * np.sum(np.log(total)))
        return deviance, mode

    def laplace_deviance(self, theta: np.ndarray, beta: np.ndarray, u_start=None) -> float:
        """Laplace approximation of ``-2 log L`` (up to a constant) at ``(theta, beta)``."""
        return self.mode(theta, beta, u_start).laplace

    def _glm_weights(self, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """The weights of ``log|L|^2`` at the mode: the family's ``laplace_weights`` (the
        GLM weights ``w (d mu / d eta)^2 / V(mu)`` for lme4's families)."""
        return self.family.laplace_weights(self.y, eta, mu, self.prior_weights)

    def with_family(self, family: Family) -> GlmmProblem:
        """The same data and terms with another family (a family with other values of its
        own parameters): shares ``Z`` and the precomputed pairs."""
        other = copy.copy(self)
        other.family = family
        if self._kernel is not None:
            other._kernel_source = self._kernel
        other._kernel = None
        return other


def _sparse_z(blocks: list[RandomBlock], n: int) -> sp.csr_matrix:
    """``Z`` (n x q), terms side by side, each level-major."""
    rows, cols, vals = [], [], []
    start = 0
    idx = np.arange(n)
    for block in blocks:
        for j in range(block.p):
            rows.append(idx)
            cols.append(start + block.codes * block.p + j)
            vals.append(block.z[:, j])
        start += block.size
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, start)
    )


class _EngineSystem:
    """A scoring step by the LMM engine: penalized weighted least squares on the working
    response with the GLM weights, by the model's one reweightable :class:`LmmProblem`
    (its structure built once; a step refills the cross products and solves, on the path
    the LMM objective takes: dense, one term, crossed or blocked).  With beta held fixed
    the working response excludes ``X beta`` and ``u`` is the mode at ``beta = 0``."""

    #: the step takes the linear predictor ``base`` (not increments)
    incremental = False

    def __init__(self, problem: GlmmProblem, lmm: LmmProblem, theta: np.ndarray):
        self.problem = problem
        self.lmm = lmm
        self.theta = theta
        self.zero_beta = np.zeros(problem.n_fixed)
        self.response = problem.y

    def _solve(self, weights, work, beta, covariance: bool = False):
        self.response = work
        try:
            self.lmm.reweight(weights, work)
            return self.lmm.solve(self.theta, beta, objective=False, covariance=covariance)
        except NotPositiveDefiniteError as exc:
            raise PirlsError("the weighted system is not positive definite") from exc

    def step(
        self, weights, base, resid, update_beta: bool, u, beta, gradient=None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The scoring step from ``(u, beta)``: the LMM on the working response ``base +
        resid`` (``base`` the current linear predictor without the offset, and without
        ``X beta`` unless beta is updated)."""
        work = base + resid
        solution = self._solve(weights, work, None if update_beta else self.zero_beta)
        new_u = np.concatenate([part.ravel() for part in solution.u])
        return new_u, (solution.beta if update_beta else None)

    def at_mode(self, weights) -> tuple[float, Callable[[], np.ndarray]]:
        response = self.response
        solution = self._solve(weights, response, self.zero_beta)
        return solution.log_det_random, _EngineFixedCovariance(self, weights, response)


class _EngineFixedCovariance:
    """``(R_X' R_X)^-1`` at a mode by the LMM engine, computed when called (the LMM may
    have been reweighted since: it is reweighted at the mode's weights again)."""

    def __init__(self, system: _EngineSystem, weights: np.ndarray, response: np.ndarray):
        self.system = system
        self.weights = weights
        self.response = response

    def __call__(self) -> np.ndarray:
        s = self.system
        return s._solve(self.weights, self.response, s.zero_beta, covariance=True).vcov_unscaled


class _DenseSteps:
    """A scoring step by the lean dense solver (:class:`DenseWeightedSystem`), with the
    interface of :class:`_EngineSystem`; ``(R_X' R_X)^-1`` at the mode is computed only
    when asked for.  With ``blocks`` (:class:`BlockDiagonalSystem`, its rows set), the
    steps (those updating beta for one-column blocks only) and ``log |L|^2`` are solved
    block by block; the dense system's rows are then set on its first step (and for the
    covariance)."""

    #: the step is solved in increment form (no ``base``)
    incremental = True

    def __init__(
        self,
        system: DenseWeightedSystem,
        rows: ScaledRows,
        blocks: BlockDiagonalSystem | None = None,
    ):
        self.system = system
        self.rows = rows
        self.blocks = blocks
        self.rows_set = blocks is None  # the dense system's rows are this evaluation's

    def step(
        self, weights, base, resid, update_beta: bool, u, beta, gradient=None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The scoring step from ``(u, beta)`` in increment form (the working residuals
        ``resid`` as the response, ``u`` subtracted from the right-hand side; by the blocks
        with beta held, where the right-hand side is ``-gradient``, the gradient in u of
        half the penalized deviance, ``u - Lambda' Z' W r``)."""
        blocks = self.blocks
        try:
            if blocks is not None and (not update_beta or blocks.p == 1):
                score = weights * resid
                if gradient is None:
                    gradient = u - self.rows.transpose_times(score)
                if not update_beta:
                    return u - blocks.solve(weights, gradient), None
                du, dbeta = blocks.solve_with_beta(weights, gradient, blocks.X.T @ score)
                return u + du, beta + dbeta
            if not self.rows_set:
                self.system.set_rows(self.rows)
                self.rows_set = True
            du, dbeta, _ = self.system.step(weights, resid, update_beta, current=u)
        except NotPositiveDefiniteError as exc:
            raise PirlsError("the weighted system is not positive definite") from exc
        return u + du, (beta + dbeta if update_beta else None)

    def at_mode(self, weights) -> tuple[float, Callable[[], np.ndarray]]:
        system = self.system
        try:
            if self.blocks is not None:
                log_det = self.blocks.log_det(weights)
            else:
                log_det = system.log_det(weights)
        except NotPositiveDefiniteError as exc:
            raise PirlsError("the weighted system is not positive definite") from exc
        return log_det, _DenseFixedCovariance(system, self.rows, weights)


class _DenseFixedCovariance:
    """``(R_X' R_X)^-1`` at a mode by the lean dense solver, computed when called (the
    solver may have moved on to another theta: its rows are set to the mode's again)."""

    def __init__(self, system: DenseWeightedSystem, rows: ScaledRows, weights: np.ndarray):
        self.system = system
        self.rows = rows
        self.weights = weights

    def __call__(self) -> np.ndarray:
        self.system.set_rows(self.rows)
        return self.system.fixed_covariance(self.weights)


def _finite_working(kernel: FamilyKernel, eta: np.ndarray, mu: np.ndarray):
    """The family's working weights and residuals at ``eta`` (called with overflow
    warnings off), or :class:`PirlsError` where they overflow (a mean near the largest
    float: ``w (d mu / d eta)^2 / V(mu)`` is not representable), so nothing non-finite
    reaches the factorization and the optimizer sees an infinite deviance at that point."""
    weights, resid = kernel.working(eta, mu)
    if not (np.isfinite(weights).all() and np.isfinite(resid).all()):
        raise PirlsError("the working weights are not finite (the mean overflows)")
    return weights, resid
