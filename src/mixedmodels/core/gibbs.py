"""The Bayesian linear mixed model and its Gibbs sampler.

Model: ``y = X beta + Z b + e``, ``e ~ N(0, sigma^2 W^-1)``, ``b_k`` (level by level)
``~ N(0, Sigma_k)``; priors (each chosen by the user, see :mod:`mixedmodels.core.priors`):
``beta_j ~`` Flat, Normal or Student-t; ``sigma ~`` a scale prior; per term, each standard
deviation ``~`` a scale prior and the correlations ``~ LKJ(eta)``.

One sweep updates, each from its exact full conditional:

1. ``(beta, b) | sigma, Sigma`` jointly, a normal draw from Henderson's mixed-model
   equations (:class:`mixedmodels.core.henderson.HendersonSystem`; a singular ``Sigma_k``
   is allowed, the effects are drawn on the ``u`` scale ``b = T u``);
2. the Student-t priors' mixing variables given ``beta``;
3. ``sigma^2 | beta, b`` from the residual sum of squares ``r'Wr`` (kernel
   ``v^(-n/2) exp(-r'Wr / 2v)``) and its prior;
4. each scalar term's variance from ``v^(-l/2) exp(-b'b / 2v)`` and its prior; each vector
   term's ``Sigma_k`` by slice sampling (:mod:`mixedmodels.core.covariance`);
5. interweaving (Yu and Meng 2011): each term's standard deviations ``D_k`` once more, now
   given the standardized effects ``u_l = D_k^-1 b_l`` (correlations held), from
   ``p(D) exp(-(d'Ad - 2 d'B) / 2 sigma^2)`` with ``A``, ``B`` the cross products of the
   columns ``z_j u_j`` with themselves and with the partial residual, by slice sampling
   in ``log d_j``; then ``b_l = D_new u_l`` and the prior's auxiliary variable is redrawn
   given the new sd.  Both (3-4) and (5) are exact conditional draws, in the centred and
   the non-centred parameterization; alternating them keeps the posterior invariant and
   removes the centred sampler's stickiness near a zero variance.

Every random number of a chain comes from that chain's own generator, so a chain's draws do
not depend on which process runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.covariance import CovarianceState
from mixedmodels.core.henderson import HendersonSystem, NotPositiveDefiniteError
from mixedmodels.core.poisson import JointLaplaceStep, PoissonCoefficients
from mixedmodels.core.polya_gamma import polya_gamma
from mixedmodels.core.priors import LKJ, LocationPrior, ScalePrior
from mixedmodels.core.slice import slice_step
from mixedmodels.core.structures import Unstructured
from mixedmodels.core.terms import RandomBlock
from mixedmodels.errors import ArgumentError

#: Poisson, nested random intercepts: rounds of (nested interweaving, centred variance
#: draws) per sweep; they do not touch the likelihood, so they cost little beside the
#: coefficient updates (grouseticks, 4 x 1,000 draws, one run each: bulk ESS of the sds
#: 290 and 290 with one round, 220 and 240 with four; no measurable difference yet)
NESTED_ROUNDS = 4


#: Poisson: the Laplace-frame sd moves' target acceptance rate (one-dimensional random walk)
FRAME_TARGET = 0.44


class _Noise:
    """Stands in for the generator in :meth:`HendersonSystem.draw`, which asks for the
    rest block's standard normals (``size`` an int) and the first term's (a shape): hands
    out the given ``eps`` instead, so that the draw is ``c + L^-T eps``."""

    def __init__(self, rest: np.ndarray, first: np.ndarray):
        self.rest, self.first = rest, first

    def standard_normal(self, size) -> np.ndarray:
        value = self.rest if np.ndim(size) == 0 else self.first
        return np.array(value, dtype=float).reshape(size)


@dataclass(frozen=True)
class ModelPriors:
    """The priors of every parameter class, resolved to one prior per parameter.

    Attributes
    ----------
    fixef : list of LocationPrior
        One per fixed effect.
    sigma : ScalePrior
    sd : list of list of ScalePrior
        Per term, one per coefficient.
    cor : list of LKJ
        Per term (unused for scalar terms).
    """

    fixef: list[LocationPrior]
    sigma: ScalePrior
    sd: list[list[ScalePrior]]
    cor: list[LKJ]


@dataclass
class ChainState:
    """Everything a sweep changes."""

    sigma2: float
    sigma_aux: float
    factors: list[np.ndarray]  # T_k, T_k T_k' = Sigma_k
    scalar_aux: list[float]
    covariances: list[CovarianceState | None]
    fixef_aux: np.ndarray
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    b: list[np.ndarray] = field(default_factory=list)
    #: Poisson: the fixed start ``(beta, b)`` of the Newton iterations of the proposals
    #: (the chain's start; kept with the chain so that draws do not depend on the process)
    reference: tuple[np.ndarray, list[np.ndarray]] | None = None
    #: Poisson: logit of the joint step's size ``sqrt(1 - rho^2)``, tuned in warm-up
    joint_logit: float = 2.0
    #: sweeps done (warm-up adaptation's clock)
    sweeps: int = 0
    #: in warm-up: the Poisson joint step's size is tuned (set by :meth:`GibbsSampler.run`)
    adapting: bool = False
    #: Poisson: log of the random-walk step (in ``log sd``) of each term's Laplace-frame sd
    #: move (:meth:`GibbsSampler._laplace_frame_moves`), tuned in warm-up
    frame_log_steps: dict[int, float] = field(default_factory=dict)


class GibbsSampler:
    """The sampler of one model (data and priors); chains are run by :meth:`run`.

    Parameters
    ----------
    blocks : list of RandomBlock
        Public (lme4) order.
    X : ndarray (n, p)
    y : ndarray (n,)
        Response with any offset subtracted.
    weights : ndarray (n,), optional
    priors : ModelPriors
    trials : ndarray (n,) of int, optional
        Given: the binomial-logit model instead of the Gaussian one.  ``y`` is then the
        proportion of successes and ``offset`` the linear predictor's offset; each sweep
        first draws Polya-Gamma weights ``omega_i ~ PG(n_i, eta_i)``
        (:mod:`mixedmodels.core.polya_gamma`), which make ``kappa_i / omega_i``
        (``kappa = successes - n/2``) a Gaussian observation of ``eta_i`` with variance
        ``1 / omega_i``; the rest of the sweep is the Gaussian one with ``sigma = 1``.
    offset : ndarray (n,), optional
        The linear predictor's offset (logit and Poisson models).
    family : {"gaussian", "binomial", "poisson"}
        ``"poisson"`` (log link): ``y`` are counts; the coefficients are updated by the
        exact Metropolis-Hastings steps of :mod:`mixedmodels.core.poisson`.
    """

    def __init__(
        self,
        blocks: list[RandomBlock],
        X,
        y,
        weights,
        priors: ModelPriors,
        trials: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        family: str = "gaussian",
    ):
        self.blocks = list(blocks)
        for k, b in enumerate(self.blocks):
            if type(b.structure) is not Unstructured:
                raise ArgumentError(
                    f"the sampler's priors are for unstructured covariances; random-effect "
                    f"term {k + 1} has the structure {b.structure!r}"
                )
        self.X = np.asarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.n, self.p = self.X.shape
        if family not in ("gaussian", "binomial", "poisson"):
            raise ArgumentError(f"family must be gaussian, binomial or poisson, not {family!r}")
        self.logit = trials is not None or family == "binomial"
        self.poisson = family == "poisson"
        self.glmm = self.logit or self.poisson
        if self.poisson:
            self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, float)
            self.coefficients = PoissonCoefficients(self.blocks, self.X, self.y, self.offset)
        if self.logit:
            self.trials = np.asarray(trials, dtype=np.int64)
            self.kappa = np.round(self.y * self.trials) - self.trials / 2
            self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, float)
            self.weights = np.full(self.n, 0.25)  # replaced each sweep
            self.y = self.kappa / self.weights - self.offset
        if len(priors.fixef) != self.p or len(priors.sd) != len(self.blocks):
            raise ArgumentError("one prior per fixed effect and per random-effect term")
        self.priors = priors
        self.system = HendersonSystem(
            self.blocks, self.X, self.y, self.weights, fixed_weights=not self.glmm
        )
        self.q = sum(b.size for b in self.blocks)
        #: Poisson: the Laplace-frame sd moves' proposals and acceptances per term
        self.frame_tries = np.zeros(len(self.blocks))
        self.frame_accepts = np.zeros(len(self.blocks))
        self.n_params = sum(b.n_theta for b in self.blocks) + (0 if self.glmm else 1) + self.p

    # ------------------------------------------------------------------ states
    def initial_state(
        self,
        sds: list[np.ndarray],
        cors: list[np.ndarray],
        sigma: float,
        beta: np.ndarray | None = None,
        b: list[np.ndarray] | None = None,
    ):
        """A chain's start from standard deviations (zeros are raised to 1e-4 x sigma: a
        singular fit is a valid start) and correlation matrices (``sigma`` 1 for the
        logit model, whose first sweep also needs ``beta`` and ``b``; zeros if None)."""
        sigma = 1.0 if self.glmm else float(sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise ArgumentError(f"the start's sigma must be positive, not {sigma}")
        factors, covs, aux = [], [], []
        for k, blk in enumerate(self.blocks):
            sd = np.maximum(np.asarray(sds[k], dtype=float), 1e-4 * sigma)
            if blk.p == 1:
                factors.append(np.array([[sd[0]]]))
                covs.append(None)
                aux.append(self.priors.sd[k][0].new_state(float(sd[0]) ** 2))
                continue
            cor = np.asarray(cors[k], dtype=float)
            eigen_min = float(np.linalg.eigvalsh(cor).min())
            if eigen_min < 1e-6:  # a degenerate correlation start: shrink toward I
                t = (1e-6 - eigen_min) / (1 - eigen_min) + 1e-3
                cor = (1 - t) * cor + t * np.eye(blk.p)
            state = CovarianceState.from_covariance(
                self.priors.sd[k], self.priors.cor[k], blk.n_levels, cor * np.outer(sd, sd)
            )
            covs.append(state)
            factors.append(state.factor())
            aux.append(1.0)
        beta = np.zeros(self.p) if beta is None else np.array(beta, dtype=float)
        effects = (
            [np.zeros((blk.n_levels, blk.p)) for blk in self.blocks]
            if b is None
            else [
                np.array(x, dtype=float).reshape(blk.n_levels, blk.p)
                for x, blk in zip(b, self.blocks, strict=True)
            ]
        )
        return ChainState(
            sigma2=sigma**2,
            sigma_aux=self.priors.sigma.new_state(sigma**2),
            factors=factors,
            scalar_aux=aux,
            covariances=covs,
            fixef_aux=np.array([pr.new_state() for pr in self.priors.fixef]),
            beta=beta,
            reference=(beta.copy(), [x.copy() for x in effects]),
            b=[x.copy() for x in effects],
        )

    # ------------------------------------------------------------------ one sweep
    def fixef_prior(self, state: ChainState) -> tuple[np.ndarray, np.ndarray]:
        pairs = zip(self.priors.fixef, state.fixef_aux, strict=True)
        pm = [pr.precision_and_mean(a) for pr, a in pairs]
        return np.array([x[0] for x in pm]), np.array([x[1] for x in pm])

    def residuals(self, beta: np.ndarray, b: list[np.ndarray]) -> np.ndarray:
        r = self.y - self.X @ beta
        for blk, bk in zip(self.blocks, b, strict=True):
            if blk.p == 1:
                r -= blk.z[:, 0] * bk[blk.codes, 0]
            else:
                r -= np.einsum("np,np->n", blk.z, bk[blk.codes])
        return r

    def _augment(self, state: ChainState, rng: np.random.Generator) -> None:
        """Polya-Gamma weights at the current linear predictor; the working response."""
        eta = self.offset + self.X @ state.beta
        for blk, bk in zip(self.blocks, state.b, strict=True):
            eta += np.einsum("np,np->n", blk.z, bk[blk.codes])
        omega = polya_gamma(rng, self.trials, eta)
        self.weights = omega
        self.y = self.kappa / omega - self.offset
        self.system.set_data(self.y, omega)

    def sweep(self, state: ChainState, rng: np.random.Generator) -> None:
        """One sweep; in warm-up (``state.adapting``) it tunes the Poisson joint step's
        size."""
        state.sweeps += 1
        if self.logit:
            self._augment(state, rng)
        sigma = math.sqrt(state.sigma2)
        lams = [t / sigma for t in state.factors]
        precision, mean = self.fixef_prior(state)
        if self.poisson:
            size = 1.0 / (1.0 + math.exp(-state.joint_logit))
            beta, b, accepted = self.coefficients.update(
                state.beta,
                state.b,
                state.factors,
                precision,
                mean,
                state.reference,
                rng,
                rho=math.sqrt(max(1.0 - size * size, 0.0)),
            )
            if state.adapting and accepted is not None:  # Robbins-Monro toward the target rate
                gain = 2.0 / state.sweeps**0.6
                target = JointLaplaceStep.TARGET
                state.joint_logit = min(
                    max(state.joint_logit + gain * (float(accepted) - target), -8.0), 8.0
                )
        else:
            b, beta = self.system.draw(lams, state.sigma2, precision, mean, rng)
        state.b, state.beta = b, beta
        for j, pr in enumerate(self.priors.fixef):
            state.fixef_aux[j] = pr.update_state(rng, beta[j], state.fixef_aux[j])
        r = None if self.poisson else self.residuals(beta, b)
        if not self.glmm:
            rss = float(r @ r) if self.weights is None else float(r @ (self.weights * r))
            state.sigma2, state.sigma_aux = self.priors.sigma.draw_variance(
                rng, self.n / 2, rss / 2, state.sigma_aux
            )
        for k, blk in enumerate(self.blocks):
            bk = b[k]
            if blk.p == 1:
                ss = float(bk[:, 0] @ bk[:, 0])
                v, state.scalar_aux[k] = self.priors.sd[k][0].draw_variance(
                    rng, blk.n_levels / 2, ss / 2, state.scalar_aux[k]
                )
                state.factors[k] = np.array([[math.sqrt(v)]])
            else:
                cov = state.covariances[k]
                cov.update(rng, bk.T @ bk)
                state.factors[k] = cov.factor()
        if self.poisson:
            eta = self.offset + self.X @ state.beta
            for blk, bk in zip(self.blocks, state.b, strict=True):
                eta += np.einsum("np,np->n", blk.z, bk[blk.codes])
            for k in range(len(self.blocks)):
                eta = self._interweave_poisson(state, k, eta, rng)
            for _ in range(NESTED_ROUNDS if self.coefficients.nesting else 0):
                for inner, outer, parent in self.coefficients.nesting:
                    self._interweave_nested(state, inner, outer, parent, rng)
                    for k in (inner, outer):  # the centred variance draw (step 4) again
                        bk = state.b[k][:, 0]
                        v, state.scalar_aux[k] = self.priors.sd[k][0].draw_variance(
                            rng, bk.size / 2, float(bk @ bk) / 2, state.scalar_aux[k]
                        )
                        state.factors[k] = np.array([[math.sqrt(v)]])
            self._laplace_frame_moves(state, rng)
        else:
            for k in range(len(self.blocks)):
                r = self._interweave(state, k, r, rng)

    def _to_frame(self, beta: np.ndarray, b: list[np.ndarray], factors) -> tuple:
        """``(beta, b)`` on the Henderson system's scale ``x = (u_first, (u_rest, beta))``."""
        system = self.coefficients.joint.system
        u = [sla.solve_triangular(t, bk.T, lower=True).T for t, bk in zip(factors, b, strict=True)]
        rest = [u[k].ravel() for k in system.rest]
        return u[system.first], np.concatenate([*rest, beta])

    def _frame(self, factors, precision, mean, reference):
        """The Laplace centre at these variances, on the system's scale, and ``log det L``
        of its precision (the system keeps the factor); None where it cannot be formed."""
        joint = self.coefficients.joint
        try:
            inverses = [sla.solve_triangular(t, np.eye(len(t)), lower=True) for t in factors]
        except (np.linalg.LinAlgError, ValueError):
            return None
        centre = joint._centre(factors, inverses, precision, mean, reference)
        if centre is None:
            return None
        log_det = joint.system.log_det()
        if not math.isfinite(log_det):
            return None
        return centre, inverses, log_det

    def _frame_log_target(self, beta, b, inverses, precision, mean, log_det, sds) -> float:
        """``log pi(log sd, eps)``: the non-centred posterior (likelihood, ``N(u; 0, I)``,
        beta's prior) at ``x(sd, eps)``, the moved sds' priors with ``log``'s Jacobian, and
        the map's Jacobian ``det L^-1``."""
        joint = self.coefficients.joint
        eta = joint._eta(beta, b)
        value = joint._log_target(beta, b, eta, inverses, precision, mean) - log_det
        for k, sd in sds.items():
            value += self.priors.sd[k][0].log_density_sd(sd) + math.log(sd)
        return value

    def _laplace_frame_moves(self, state: ChainState, rng: np.random.Generator) -> None:
        """Each scalar term's sd moved with the coefficients in the Laplace frame (Poisson).

        Given the variances ``theta``, the joint Laplace approximation of ``x = (u, beta)``
        (:class:`~mixedmodels.core.poisson.JointLaplaceStep`: a centre ``c_theta`` and a
        precision ``M_theta = L L'``, both functions of ``theta`` alone) defines the
        bijection ``x = c_theta + L_theta^-T eps``.  In the coordinates ``(log sd, eps)``
        the posterior's density is ``pi(theta, x) sd / det L_theta`` (``pi`` non-centred:
        likelihood, ``N(u; 0, I)``, beta's and the sd's priors); a random walk in ``log
        sd_k`` with ``eps`` held, accepted by Metropolis-Hastings with that density, is an
        exact update of ``(sd_k, beta, b)`` together.  Where the Laplace approximation is
        good ``eps`` is nearly independent of ``theta``, so the sd moves as if the
        coefficients were integrated out, which the centred and the non-centred sd
        updates cannot do when the data are weak for some levels and strong for others.
        The step is tuned in warm-up (toward 44% acceptance) and fixed afterwards; the
        prior's auxiliary variable is redrawn given the new sd (the move used its marginal).
        """
        joint = self.coefficients.joint
        terms = [k for k, blk in enumerate(self.blocks) if blk.p == 1]
        if joint is None or not terms:
            return
        precision, mean = self.fixef_prior(state)
        frame = self._frame(state.factors, precision, mean, state.reference)
        if frame is None:
            return
        (beta_c, b_c, _, _), inverses, log_det = frame
        system = joint.system
        x0, xr = self._to_frame(state.beta, state.b, state.factors)
        c0, cr = self._to_frame(beta_c, b_c, state.factors)
        e0, er = system.whiten(x0 - c0, xr - cr)
        noise = _Noise(er, e0)
        sds = {k: float(state.factors[k][0, 0]) for k in terms}
        current = self._frame_log_target(
            state.beta, state.b, inverses, precision, mean, log_det, sds
        )
        for k in terms:
            log_step = state.frame_log_steps.get(k, math.log(0.5))
            new_sds = dict(sds)
            new_sds[k] = sds[k] * math.exp(math.exp(log_step) * rng.standard_normal())
            factors = list(state.factors)
            factors[k] = np.array([[new_sds[k]]])
            accepted = False
            frame = (
                self._frame(factors, precision, mean, state.reference) if new_sds[k] > 0 else None
            )
            if frame is not None:
                _, new_inverses, new_log_det = frame
                try:
                    b_new, beta_new = system.draw(factors, 1.0, precision, mean, noise)
                except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                    b_new = None
                if b_new is not None:
                    proposed = self._frame_log_target(
                        beta_new, b_new, new_inverses, precision, mean, new_log_det, new_sds
                    )
                    log_ratio = proposed - current
                    self.frame_tries[k] += 1
                    if math.isfinite(log_ratio) and math.log(rng.uniform()) < log_ratio:
                        self.frame_accepts[k] += 1
                        accepted = True
                        state.beta, state.b, state.factors = beta_new, b_new, factors
                        sds, current = new_sds, proposed
            if state.adapting:
                gain = 2.0 / state.sweeps**0.6
                state.frame_log_steps[k] = min(
                    max(log_step + gain * (float(accepted) - FRAME_TARGET), -8.0), 3.0
                )
            prior = self.priors.sd[k][0]
            state.scalar_aux[k] = prior.refresh_state(rng, sds[k] ** 2, state.scalar_aux[k])

    def _interweave_poisson(self, state: ChainState, k: int, eta: np.ndarray, rng):
        """Step 5 with the Poisson likelihood (exact; slice sampling in ``log d_j``)."""
        blk = self.blocks[k]
        cov = state.covariances[k]
        sd = np.array([state.factors[k][0, 0]]) if blk.p == 1 else cov.sd.copy()
        u = state.b[k] / sd
        cols = blk.z * u[blk.codes]
        partial = eta - cols @ sd
        priors = self.priors.sd[k]
        counts = self.y
        new = sd.copy()
        for j in range(blk.p):

            def log_target(x, j=j):
                new[j] = math.exp(x)
                e = partial + cols @ new
                with np.errstate(over="ignore"):
                    loglik = float(counts @ e - np.exp(e).sum())
                return priors[j].log_density_sd(new[j]) + x + loglik

            x0 = math.log(sd[j])
            x, _ = slice_step(rng, log_target, x0, log_target(x0), 1.0)
            new[j] = math.exp(x)
        state.b[k] = u * new
        if blk.p == 1:
            state.factors[k] = np.array([[new[0]]])
            state.scalar_aux[k] = priors[0].refresh_state(rng, new[0] ** 2, state.scalar_aux[k])
        else:
            cov.sd = new
            state.factors[k] = cov.factor()
        return partial + cols @ new

    def _interweave_nested(self, state: ChainState, inner: int, outer: int, parent, rng):
        """The outer term's sd given its standardized effects ``u`` and the inner effects
        centred at it, ``c_l = b_inner_l + b_outer_parent(l)`` (random intercepts nested
        as :func:`~mixedmodels.core.poisson.nested_intercepts` finds them): the linear
        predictor does not change, so the kernel is the prior of the sd (with ``log``'s
        Jacobian) times ``prod_l N(c_l - d u_parent(l); 0, s_inner^2)``; slice sampling in
        ``log d``.  The inner effects follow, ``b_inner = c - d u[parent]``.  It lets a
        location's variance pass to its broods' and back, which neither the centred nor
        the plain non-centred update can do when the two are partly confounded."""
        d = float(state.factors[outer][0, 0])
        u = state.b[outer][:, 0] / d
        c = state.b[inner][:, 0] + state.b[outer][parent, 0]
        up = u[parent]
        a, r = float(up @ up), float(up @ c)
        inv2 = 0.5 / float(state.factors[inner][0, 0]) ** 2
        prior = self.priors.sd[outer][0]

        def log_target(x):
            e = math.exp(x)
            return prior.log_density_sd(e) + x - inv2 * (a * e * e - 2 * r * e)

        x0 = math.log(d)
        x, _ = slice_step(rng, log_target, x0, log_target(x0), 1.0)
        new = math.exp(x)
        state.b[outer] = (u * new)[:, None]
        state.b[inner] = (c - new * up)[:, None]
        state.factors[outer] = np.array([[new]])
        state.scalar_aux[outer] = prior.refresh_state(rng, new**2, state.scalar_aux[outer])

    def _interweave(self, state: ChainState, k: int, r: np.ndarray, rng) -> np.ndarray:
        """Step 5 for term ``k``; returns the updated residual."""
        blk = self.blocks[k]
        cov = state.covariances[k]
        sd = np.array([state.factors[k][0, 0]]) if blk.p == 1 else cov.sd.copy()
        u = state.b[k] / sd  # (l, p): D^-1 b_l
        cols = blk.z * u[blk.codes]  # column j: z_j * u_j[codes]
        wcols = cols if self.weights is None else cols * self.weights[:, None]
        partial = r + cols @ sd
        a = cols.T @ wcols
        rhs = wcols.T @ partial
        inv2s2 = 0.5 / state.sigma2
        priors = self.priors.sd[k]
        new = sd.copy()
        if blk.p == 1:  # scalar arithmetic
            a11, r1, prior = float(a[0, 0]), float(rhs[0]), priors[0]

            def log_scalar(x):
                d = math.exp(x)
                return prior.log_density_sd(d) + x - inv2s2 * (a11 * d * d - 2 * r1 * d)

            x0 = math.log(sd[0])
            x, _ = slice_step(rng, log_scalar, x0, log_scalar(x0), 1.0)
            new[0] = math.exp(x)
        for j in range(blk.p if blk.p > 1 else 0):

            def log_target(x, j=j):
                new[j] = math.exp(x)
                return (
                    priors[j].log_density_sd(new[j]) + x - inv2s2 * (new @ a @ new - 2 * new @ rhs)
                )

            x0 = math.log(sd[j])
            x, _ = slice_step(rng, log_target, x0, log_target(x0), 1.0)
            new[j] = math.exp(x)
        state.b[k] = u * new
        if blk.p == 1:
            state.factors[k] = np.array([[new[0]]])
            state.scalar_aux[k] = priors[0].refresh_state(rng, new[0] ** 2, state.scalar_aux[k])
        else:
            cov.sd = new
            state.factors[k] = cov.factor()
        return partial - cols @ new

    # ------------------------------------------------------------------ output
    def parameter_row(self, state: ChainState, out: np.ndarray) -> None:
        """sd/cor per term (column-wise lower triangle), sigma, beta: ``fit.parameters``'s
        order."""
        i = 0
        for k, blk in enumerate(self.blocks):
            if blk.p == 1:
                out[i] = state.factors[k][0, 0]
                i += 1
                continue
            cov = state.covariances[k]
            corr = cov.correlation()
            for c in range(blk.p):
                for r in range(c, blk.p):
                    out[i] = cov.sd[r] if r == c else corr[r, c]
                    i += 1
        if not self.glmm:
            out[i] = math.sqrt(state.sigma2)
            i += 1
        out[i:] = state.beta

    def run(
        self,
        state: ChainState,
        rng: np.random.Generator,
        warmup: int,
        draws: int,
        params_out: np.ndarray,
        effects_out: np.ndarray | None,
        on_sweep=None,
    ) -> None:
        """``warmup + draws`` sweeps; kept draw ``d`` goes to ``params_out[d]`` and (when
        given) the random effects, public order and level-major, to ``effects_out[d]``.
        ``on_sweep(i)`` is called after sweep ``i`` (1-based)."""
        for i in range(warmup + draws):
            state.adapting = i < warmup
            self.sweep(state, rng)
            d = i - warmup
            if d >= 0:
                self.parameter_row(state, params_out[d])
                if effects_out is not None:
                    start = 0
                    for bk in state.b:
                        effects_out[d, start : start + bk.size] = bk.ravel()
                        start += bk.size
            if on_sweep is not None:
                on_sweep(i + 1)
