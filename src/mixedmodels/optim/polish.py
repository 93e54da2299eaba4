"""Newton steps after BOBYQA: from where the derivative-free search stopped to the optimum.

BOBYQA stops where its objective decrease falls below a tolerance, and its last decisions
follow differences of 1e-15 in the objective: the same function (a fit from chunks, the
rows reversed) ends up to 1e-4 apart in theta on flat optima.  Newton steps on the profiled
objective over the free theta coordinates (those not held at a bound of 0) converge to
the optimum itself, so the reported estimates are a function of the data.

Derivatives: analytic on the dense path (:mod:`mixedmodels.optim.profiled_derivatives`,
``q <= 240`` random effects and a theta linear in the relative factors' entries), the
Hessian computed at BOBYQA's point and again after a step longer than
:data:`FRESH_HESSIAN_STEP` (shorter steps keep it; their gradient is new).  Elsewhere
differences of the objective, as few as a Newton step needs (the objective costs
milliseconds to seconds there): the Hessian and a first gradient from one stencil of
``2k + k(k - 1)/2`` evaluations (:func:`stencil_derivatives`), whose Newton step is taken
without evaluating its end; then central gradients (``2k``) with shorter steps, the step
from the first of them judged against BOBYQA's point.  InstEval (``k = 3``): 9 + 6 + 1
evaluations.

A step is clipped to the bounds and accepted only when the objective does not rise (beyond
1e-14 relative, its rounding); a step shorter than :data:`SHORT_STEP` whose change is below
the objective's rounding is judged by its gradient instead (the Newton step from its end
must be shorter).  The iteration stops after a short step: what is left after it is the
Hessian's relative error times that step (analytic: below 1e-10; differences: the
stencil's error, 1e-3, or the contraction seen between the last two steps, whichever is
larger, times the step must be below :data:`DIFFERENCES_RESIDUAL`).  On a ridge (a Hessian of lower
rank: ``(Sex | Subject)`` with Sex between subjects) the steps move along the identified
directions only.  The outcome says whether the iteration converged (the caller resumes
BOBYQA when it did not: :func:`mixedmodels.optim.lmm.optimize_problem`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from mixedmodels.core.lmm import LmmProblem
from mixedmodels.linalg.blocks import NotPositiveDefiniteError
from mixedmodels.optim.derivatives import step_sizes
from mixedmodels.optim.profiled_derivatives import DenseDerivatives, linear_entries_jacobian

MAX_STEPS = 6
SHORT_STEP = 1e-5  # max |step| / max(1, |theta|) after which no further gradient is taken
# (1e-6 took one more gradient on penicillin for a step of 1.7e-6; catalogue rows-reversed
# fits agree to 4e-11 with either)
FRESH_HESSIAN_STEP = 1e-4  # after a longer step the Hessian is computed again
# finite differences (no analytic derivatives): the stencil's steps (relative, as
# derivatives.step_sizes) for the Hessian and a first gradient, shorter ones for the fine
# gradients the iteration converges on (central differences' error h^2 f_iii / 6: the
# Newton step it leaves on InstEval is 3e-9 at 1e-4, 3e-7 at 1e-3); the stencil's Hessian
# (relative error ~1e-3) is recomputed only after steps longer than FRESH_STENCIL_STEP,
# and a step ends the iteration when what it leaves (that error times the step) is 1e-9
STENCIL_STEP = 1e-3
GRADIENT_STEP = 1e-4
FRESH_STENCIL_STEP = 1e-3
SHORT_STEP_DIFFERENCES = 1e-6
STENCIL_RTOL = 1e-3
DIFFERENCES_RESIDUAL = 2e-9
RISE_RTOL = 1e-14  # a step may raise the objective by its rounding, no more
# directions whose curvature (the Hessian scaled to unit diagonal) is below this in absolute
# value are not identified by the data (a ridge; next to, not on, a curved ridge of optima
# its curvature is of the order of the gradient: -2e-6 measured on (Sex | Subject) with
# Sex between subjects, from BOBYQA's point)
RIDGE_RTOL = 1e-4
_SYEV = sla.lapack.dsyev  # eigenvalues ascending, vectors in columns


@dataclass(frozen=True)
class PolishOutcome:
    """What the Newton polish did.

    Attributes
    ----------
    steps : int
        Accepted Newton steps.
    evaluations : int
        Objective evaluations (an analytic derivative counts as one).
    moved : float
        Largest change of a theta coordinate.
    decrease : float
        Objective at BOBYQA's point minus the objective at the polished point.
    note : str
        A sentence for the fit's optimizer message.
    converged : bool
        The last step was short (or none was needed): theta is the optimum.  False when
        the Hessian was not positive definite, a long step raised the objective or the
        steps ran out.
    ridge : bool
        The Hessian has lower rank (the steps moved along the identified directions only):
        where on the ridge theta ends is BOBYQA's choice.
    """

    steps: int
    evaluations: int
    moved: float
    decrease: float
    note: str
    converged: bool = True
    ridge: bool = False


class _Derivatives:
    """Value, gradient and Hessian over the free coordinates, analytic when possible.

    On the finite-difference path the Hessian (and a first gradient) come from one stencil
    of ``2k + k(k - 1) / 2`` evaluations with steps :data:`STENCIL_STEP` (relative), and
    every further gradient from ``2k`` central differences with the shorter steps
    :data:`GRADIENT_STEP`: :attr:`fine` says whether the last gradient was of the latter
    kind (the iteration converges on fine gradients only).
    """

    def __init__(self, problem: LmmProblem, theta: np.ndarray, free: np.ndarray) -> None:
        self.problem = problem
        self.full = theta.copy()
        self.free = free
        self.all_free = bool(free.all())
        self.evaluations = 0
        # analytic derivatives need theta to map to the entries linearly, checked at two
        # points (linear_entries_jacobian); else differences of the objective
        linear = problem.dense_objective is not None or problem.has_entry_gradient()
        jacobian = linear_entries_jacobian(problem, theta) if linear else None
        self.analytic = (
            DenseDerivatives(problem)
            if jacobian is not None and problem.dense_objective is not None
            else None
        )
        self.kind = "analytic"
        self.fine = True
        # the crossed path's analytic gradient (in the entries; theta maps to them
        # linearly): gradients cost about two evaluations, not 2k
        self.jacobian = jacobian if self.analytic is None else None

    def expand(self, x: np.ndarray) -> np.ndarray:
        if self.all_free:
            return x
        full = self.full.copy()
        full[self.free] = x
        return full

    def objective(self, x: np.ndarray) -> float:
        """``problem.objective`` at the free coordinates ``x`` (inf where it fails)."""
        self.evaluations += 1
        try:
            value = float(self.problem.objective(self.expand(x)))
        except (NotPositiveDefiniteError, np.linalg.LinAlgError):
            return math.inf
        return value if math.isfinite(value) else math.inf

    def analytic_at(self, x: np.ndarray, hessian: bool):
        """``(value, gradient, hessian or None)`` by the analytic derivatives, or None when
        there are none (then the finite-difference path is taken from here on)."""
        if self.analytic is None:
            return None
        self.evaluations += 1
        found = self.analytic.at(self.expand(x), hessian)
        if found is None:
            self.analytic = None  # theta maps to lambda nonlinearly: difference values
            return None
        grad, hess = found.gradient, found.hessian
        if not self.all_free:
            grad = grad[self.free]
            hess = None if hess is None else hess[np.ix_(self.free, self.free)]
        return found.value, grad, hess

    def at(self, x: np.ndarray, hessian: bool, value: float | None = None):
        """``(gradient, hessian or None)`` at the free coordinates ``x``; ``value`` is
        ``f(x)`` when known (finite differences need it)."""
        found = self.analytic_at(x, hessian)
        if found is not None:
            self.fine = True
            return found[1], found[2]
        if self.jacobian is not None:
            self.kind = "analytic-gradient"
            self.fine = True
            grad = self.gradient(x)
            return grad, (self._gradient_differences(x, grad) if hessian else None)
        self.kind = "finite-difference"
        if value is None:
            value = self.objective(x)
        if hessian:
            self.fine = False
            return stencil_derivatives(self.objective, x, value, step_sizes(x, STENCIL_STEP))
        self.fine = True
        return central_gradient(self.objective, x, step_sizes(x, GRADIENT_STEP)), None


    def gradient(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient (crossed path) at the free coordinates ``x``."""
        self.evaluations += 1
        _, entries = self.problem.entry_gradient(self.expand(x))
        grad = self.jacobian.T @ entries
        return grad if self.all_free else grad[self.free]

    def _gradient_differences(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The Hessian from forward differences of the analytic gradient, steps
        :data:`GRADIENT_STEP` (relative): ``k`` gradients, error ``O(h)`` (about 1e-4
        relative, below the stencil's 1e-3 the iteration assumes), symmetrized."""
        h = step_sizes(x, GRADIENT_STEP)
        hess = np.empty((x.size, x.size))
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = h[i]
            hess[:, i] = (self.gradient(x + e) - grad) / h[i]
        return (hess + hess.T) / 2.0


def stencil_derivatives(
    f, x: np.ndarray, value: float, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian from ``f`` at ``x +- h_i e_i`` and ``x + h_i e_i + h_j e_j``
    (``i > j``): ``2k + k (k - 1) / 2`` evaluations, the fewest that determine a quadratic.
    ``value = f(x)``.  Central differences for the gradient and the diagonal (error
    ``O(h^2)``), forward ones for the off-diagonal (``O(h)``)."""
    x = np.asarray(x, dtype=float)
    k = x.size
    plus, minus = np.empty(k), np.empty(k)
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        plus[i], minus[i] = f(x + e), f(x - e)
    grad = (plus - minus) / (2 * h)
    hess = np.diag((plus - 2 * value + minus) / h**2)
    for i in range(k):
        for j in range(i):
            e = np.zeros(k)
            e[i], e[j] = h[i], h[j]
            cross = f(x + e) - plus[i] - plus[j] + value
            hess[i, j] = hess[j, i] = cross / (h[i] * h[j])
    return grad, hess


def central_gradient(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central differences ``(f(x + h_i e_i) - f(x - h_i e_i)) / 2 h_i``: ``2k``
    evaluations, error ``h_i^2 f_iii / 6``."""
    x = np.asarray(x, dtype=float)
    grad = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h[i]
        grad[i] = (f(x + e) - f(x - e)) / (2 * h[i])
    return grad


def _newton_direction(
    gradient: np.ndarray, hessian: np.ndarray
) -> tuple[np.ndarray, int] | None:
    """``-H^-1 g`` restricted to the directions the Hessian identifies, and how many there
    are; None when the Hessian is not positive (semi-)definite."""
    diag = hessian.diagonal()
    if not (np.isfinite(hessian).all() and np.isfinite(gradient).all() and (diag > 0).all()):
        return None
    scale = 1.0 / np.sqrt(diag)
    values, vectors, info = _SYEV(hessian * scale * scale[:, None])
    if info != 0:
        return None
    top = float(values[-1])
    if top <= 0 or values[0] < -RIDGE_RTOL * top:
        return None
    keep = values > RIDGE_RTOL * top
    g = gradient * scale
    if keep.all():
        return -scale * (vectors @ ((g @ vectors) / values)), values.size
    coefficients = (vectors[:, keep].T @ g) / values[keep]
    return -scale * (vectors[:, keep] @ coefficients), int(keep.sum())


def polish(
    problem: LmmProblem, theta: np.ndarray, value: float
) -> tuple[np.ndarray, float, PolishOutcome]:
    """Newton steps from BOBYQA's ``theta`` (objective ``value``) on the free coordinates.

    Returns the polished theta, its objective (``problem.objective``) and what was done.
    Nothing is changed when the Hessian is not positive definite there, or the model
    cannot be evaluated next to ``theta``.
    """
    theta = np.asarray(theta, dtype=float).copy()
    lower, upper = problem.theta_lower_bounds(), problem.theta_upper_bounds()
    free = ~((lower == 0) & (theta == 0))
    if not free.any() or not math.isfinite(value):
        why = "no free theta" if math.isfinite(value) else "the objective is not finite"
        outcome = PolishOutcome(0, 0, 0.0, 0.0, f"no Newton polish: {why}", math.isfinite(value))
        return theta, value, outcome
    derivatives = _Derivatives(problem, theta, free)
    x0 = theta[free]
    lo, hi = lower[free], upper[free]
    try:
        outcome = _iterate(derivatives, x0, value, lo, hi)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError, FloatingPointError):
        outcome = None
    if outcome is None:
        note = "polish skipped: the model cannot be evaluated next to the estimate"
        return theta, value, PolishOutcome(0, derivatives.evaluations, 0.0, 0.0, note, False)
    x, best, steps, note, converged = outcome
    decrease = value - best
    polished = derivatives.expand(x)
    moved = float(np.max(np.abs(polished - theta), initial=0.0))
    text = (
        f"{derivatives.kind} Newton polish: {steps} step(s), theta moved {moved:.1e}, "
        f"objective {-decrease:+.1e}" + (f"; {note}" if note else "")
    )
    ridge = "ridge:" in note
    found = PolishOutcome(
        steps, derivatives.evaluations, moved, decrease, text, converged, ridge
    )
    return polished, best, found


def _iterate(derivatives: _Derivatives, x: np.ndarray, value: float, lo, hi):
    """The Newton iteration: ``(x, value, steps, note, converged)``, the value by
    ``problem.objective`` (the function BOBYQA minimized).

    A long analytic step is judged by the value the derivatives at its end come with (they
    are needed there anyway; the engine's to 1e-14), a short one by ``problem.objective``.
    A short step whose objective change is below the objective's rounding (it may rise by
    a few 1e-14 relative on a flat optimum) is judged by the gradient instead: accepted
    when the Newton step from its end is shorter than the step itself.  On the
    finite-difference path the iteration ends only after a short step from a fine gradient
    (:data:`GRADIENT_STEP`).
    """
    grad, hess = derivatives.at(x, hessian=True, value=value)
    steps, notes = 0, []
    exact = True  # value is problem.objective's at x
    pending = None  # (x, value) before the stencil's step, whose end is not evaluated yet
    size = math.inf  # the last step's size

    def done(converged: bool):
        nonlocal x, value, steps
        if pending is not None:
            x_prev, value_prev = pending
            value = derivatives.objective(x)
            if not value <= value_prev + RISE_RTOL * abs(value_prev):
                notes.append("the stencil's step rejected (objective rose)")
                x, value, steps, converged = x_prev, value_prev, steps - 1, False
        elif not exact:
            value = derivatives.objective(x)
        return x, value, steps, "; ".join(notes), converged

    for _ in range(MAX_STEPS + 1):  # one more for a fine gradient
        found = _newton_direction(grad, hess)
        if found is None:
            notes.append("skipped: the Hessian is not positive definite")
            return done(False)
        direction, rank = found
        if rank < x.size and not notes:
            notes.append(f"ridge: {rank} of {x.size} directions identified, moved along those")
        trial = np.clip(x + direction, lo, hi)
        size, previous = _size(trial - x, x), size
        analytic = derivatives.analytic is not None
        short = size <= (SHORT_STEP if analytic else SHORT_STEP_DIFFERENCES)
        # differences: what a step leaves is the Hessian's relative error (at least the
        # stencil's 1e-3, else the contraction seen from the previous step) times the step
        converging = short and (
            analytic
            or max(STENCIL_RTOL, size / previous if previous else 1.0) * size
            <= DIFFERENCES_RESIDUAL
        )
        if not derivatives.fine and short:
            # a coarse gradient (the stencil's) says x is close: the fine one says where
            grad, _ = derivatives.at(x, hessian=False, value=value)
            continue
        if not analytic and not derivatives.fine and size <= FRESH_STENCIL_STEP:
            # the stencil's step is taken unevaluated: the fine gradient at its end is
            # needed anyway, and the step from there is judged against the stencil's point
            pending = (x, value)
            x, value, steps, exact = trial, math.nan, steps + 1, False
            grad, _ = derivatives.at(x, hessian=False, value=value)
            continue
        if pending is not None:
            x_prev, value_prev = pending
            if converging:  # x + step is judged against the stencil's point: done()
                x, steps = trial, steps + 1
                return done(True)
            pending = None
            value, exact = derivatives.objective(x), True
            if not value <= value_prev + RISE_RTOL * abs(value_prev):
                notes.append("the stencil's step rejected (objective rose)")
                x, value, steps = x_prev, value_prev, steps - 1
                return done(False)
        if size == 0.0:
            return done(True)
        if analytic and not short:
            fresh = size > FRESH_HESSIAN_STEP
            try:
                at_trial = derivatives.analytic_at(trial, fresh)
            except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                at_trial = None
            trial_value, trial_grad, trial_hess = at_trial or (math.inf, None, None)
            if not trial_value <= value + RISE_RTOL * abs(value):
                notes.append("last step rejected (objective rose)")
                return done(False)
            x, value, steps, exact = trial, trial_value, steps + 1, False
            grad, hess = trial_grad, (trial_hess if fresh else hess)
            continue
        trial_value = derivatives.objective(trial)
        if trial_value <= value + RISE_RTOL * abs(value):
            x, value, steps, exact = trial, trial_value, steps + 1, True
            if converging:  # what is left after it is below 1e-9: no further gradient
                return done(True)
            # after a long step the Hessian is new too (a stale one leaves its relative
            # error times the next step: 4e-9 measured after 0.07)
            fresh = size > (FRESH_HESSIAN_STEP if analytic else FRESH_STENCIL_STEP)
            grad, new_hess = derivatives.at(x, hessian=fresh, value=value)
            hess = new_hess if fresh else hess
            continue
        if not short:
            notes.append("last step rejected (objective rose)")
            return done(False)
        trial_grad, _ = derivatives.at(trial, hessian=False, value=trial_value)
        after = _newton_direction(trial_grad, hess)
        if after is None or _size(after[0], trial) >= size:
            notes.append("a step below the objective's rounding rejected by its gradient")
            return done(True)
        x, value, grad, steps, exact = trial, trial_value, trial_grad, steps + 1, True
        accepted = "a step below the objective's rounding accepted by its gradient"
        if accepted not in notes:
            notes.append(accepted)
    notes.append("steps ran out")
    return done(False)


def _size(step: np.ndarray, x: np.ndarray) -> float:
    """``max |step| / max(1, |x|)``."""
    return float(np.max(np.abs(step) / np.maximum(1.0, np.abs(x)), initial=0.0))
