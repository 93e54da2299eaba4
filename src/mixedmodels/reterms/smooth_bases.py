"""Penalized regression spline bases and their mixed-model form (numbers only).

The bases follow the constructions of Wood (2003, 2017) that R's mgcv uses, written anew:

* :class:`ThinPlateBasis`: the thin plate regression spline of one covariate (``bs="tp"``):
  the radial basis ``eta(|x - x_j|)`` at the unique covariate values (or a subsample of
  them), truncated to the ``k`` eigenvectors of largest-magnitude eigenvalue of ``E``, the
  truncated coefficients constrained orthogonal to the polynomial null space ``T``, then
  each column scaled to unit root mean square (mgcv's ``tprs_setup``).
* :class:`CubicRegressionBasis`: the cubic regression spline (``bs="cr"``): coefficients
  are the function's values at ``k`` knots (quantiles of the unique values), the second
  derivatives of the natural cubic interpolant are ``F beta``, the penalty is
  ``D' B^-1 D``; linear beyond the outer knots.

:func:`sum_to_zero` absorbs the identifiability constraint ``colMeans(X) beta = 0`` with
an orthonormal basis of its null space; :func:`mixed_model_form` splits a singly penalized
basis into the penalty null space (fixed effects) and the range space scaled so that its
penalty is the identity (random effects with one variance), as ``smooth2random`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla

MAX_KNOTS = 2000  # mgcv's default xt$max.knots for tp bases
_DENSE_EIGEN_LIMIT = 150  # unique values up to which E is decomposed in full (Lanczos beyond)
_LOG10_RANGE = 290.0  # the largest |log10| of a penalty's entries the eigen-solvers handle


def check_covariate_scale(spread: float, power: int) -> None:
    """A :class:`ValueError` (wrapped by the caller with the smooth's name) when a basis whose
    penalty entries grow like ``spread ** power`` cannot be computed in double precision.

    ``spread`` is the covariate's largest distance from its centre (tp) or between knots
    (cr): x * 1e60 made the penalty underflow to rank 0 and x * 1e-60 left LAPACK's
    eigen-solver without convergence (raw numpy errors before)."""
    if not spread > 0 or not math.isfinite(spread):
        return
    if abs(math.log10(spread)) * power > _LOG10_RANGE:
        raise ValueError(
            f"the covariate varies on a scale of {spread:.3g}, at which the "
            "basis and its penalty overflow or underflow in double precision; rescale it "
            "(e.g. to units where it spans 1e-3 to 1e3)"
        )


# ------------------------------------------------------------------- thin plate splines


def eta_constant(m: int, d: int = 1) -> float:
    """The constant of the thin plate radial function ``eta`` for odd ``d`` (Duchon):
    ``Gamma(d/2 - m) / (2^(2m) pi^(d/2) (m - 1)!)``."""
    if d % 2 != 1 or 2 * m <= d:
        raise ValueError("eta_constant: d must be odd and 2m > d")
    return math.gamma(d / 2 - m) / (2 ** (2 * m) * math.pi ** (d / 2) * math.factorial(m - 1))


def _eta(r: np.ndarray, m: int) -> np.ndarray:
    """``eta(r)`` for one covariate: ``c * r^(2m - 1)``."""
    a = np.abs(r)
    out = a.copy()
    for _ in range(2 * m - 2):  # integer powers by multiplication (float pow is slow)
        out *= a
    return eta_constant(m) * out


def _polynomials(x: np.ndarray, m: int) -> np.ndarray:
    """The null space of the order-``m`` penalty in one dimension: ``1, x, ..., x^(m-1)``."""
    return np.vander(x, m, increasing=True)


def _radial_times(x: np.ndarray, knots: np.ndarray, coefs: np.ndarray, m: int) -> np.ndarray:
    """``eta(|x - knots|) @ coefs`` without forming the ``len(x) x len(knots)`` matrix
    when that would be large: for ``m = 2`` the sum ``sum_j c_j |x - x_j|^3`` is a cubic
    in ``x`` between consecutive knots, evaluated from prefix sums of ``c_j x_j^p``."""
    x = np.asarray(x, dtype=float)
    if m != 2 or x.size * knots.size <= 4_000_000:
        out = np.empty((x.size, coefs.shape[1]))
        step = max(1, 4_000_000 // max(knots.size, 1))
        for start in range(0, x.size, step):
            part = x[start : start + step]
            out[start : start + step] = _eta(part[:, None] - knots[None, :], m) @ coefs
        return out
    order = np.argsort(knots, kind="stable")
    xs = knots[order]
    c = coefs[order]
    # between consecutive knots the sum is a cubic a0 + a1 x + a2 x^2 + a3 x^3 whose
    # coefficients follow from prefix sums of c_j x_j^p: for the knots below x,
    # (x - x_j)^3 = x^3 - 3 x^2 x_j + 3 x x_j^2 - x_j^3, and the opposite sign above
    powers = np.stack([c * xs[:, None] ** p for p in range(4)])  # (4, nk, q)
    below = np.concatenate([np.zeros((4, 1, c.shape[1])), np.cumsum(powers, axis=1)], axis=1)
    above = below[:, -1:, :] - below
    a0 = -below[3] + above[3]
    a1 = 3 * below[2] - 3 * above[2]
    a2 = -3 * below[1] + 3 * above[1]
    a3 = below[0] - above[0]
    poly = eta_constant(2) * np.stack([a0, a1, a2, a3], axis=1)  # (nk + 1, 4, q)
    out = np.empty((x.size, c.shape[1]))
    step = 200_000
    for start in range(0, x.size, step):
        xc = x[start : start + step]
        a = poly[np.searchsorted(xs, xc, side="left")]  # (m, 4, q)
        x1 = xc[:, None]
        out[start : start + step] = a[:, 0] + x1 * (a[:, 1] + x1 * (a[:, 2] + x1 * a[:, 3]))
    return out


def _is_identity(index: np.ndarray) -> bool:
    return bool(np.array_equal(index, np.arange(index.size)))


@dataclass(frozen=True)
class ThinPlateBasis:
    """A thin plate regression spline of one covariate, as mgcv builds it.

    Attributes
    ----------
    k : int
        Basis dimension (columns).
    m : int
        Penalty order (derivative); the null space has ``m`` polynomials.
    shift : float
        The covariate's mean, subtracted before anything else.
    knots : ndarray
        Unique (shifted) covariate values the radial functions sit at.
    radial : ndarray (n_knots, k - m)
        Coefficients of the radial functions for each penalized column (``U Z``).
    scale : ndarray (k,)
        Column scale factors (each column divided by its root mean square in the data).
    penalty : ndarray (k, k)
    """

    k: int
    m: int
    shift: float
    knots: np.ndarray
    radial: np.ndarray
    scale: np.ndarray
    penalty: np.ndarray

    @property
    def null_dim(self) -> int:
        return self.m

    def matrix(self, x: np.ndarray) -> np.ndarray:
        """The basis at ``x``: ``n x k``, penalized columns first."""
        xc = np.asarray(x, dtype=float) - self.shift
        radial = _radial_times(xc, self.knots, self.radial, self.m)
        out = np.hstack([radial, _polynomials(xc, self.m)])
        return out / self.scale

    @classmethod
    def build(
        cls, x: np.ndarray, k: int, m: int = 2, max_knots: int = MAX_KNOTS, seed: int = 1
    ) -> tuple[ThinPlateBasis, np.ndarray]:
        """The basis for data ``x`` and its matrix at ``x``.

        With more than ``max_knots`` unique values the knots are a random subsample of
        them (a NumPy generator seeded with ``seed``; mgcv draws its subsample with R's
        generator, so such bases differ from mgcv's).

        Raises
        ------
        ValueError
            Fewer unique values than ``k``.
        """
        x = np.asarray(x, dtype=float)
        shift = float(x.mean())
        xc = x - shift
        unique, inverse = np.unique(xc, return_inverse=True)
        if unique.size < k:
            raise ValueError(
                f"{unique.size} unique value(s), fewer than the basis dimension k = {k}"
            )
        # radial functions ~ r^(2m - 1), their products in the penalty squared
        check_covariate_scale(float(np.max(np.abs(unique))), 2 * (2 * m - 1))
        knots = unique
        if unique.size > max_knots:
            rng = np.random.default_rng(seed)
            knots = np.sort(rng.choice(unique, size=max_knots, replace=False))
        E = _eta(knots[:, None] - knots[None, :], m)
        if knots.size == k:
            values, vectors = np.linalg.eigh(E)
        elif knots.size <= _DENSE_EIGEN_LIMIT:
            values, vectors = np.linalg.eigh(E)
            keep = np.argsort(-np.abs(values), kind="stable")[:k]
            values, vectors = values[keep], vectors[:, keep]
        else:
            values, vectors = spla.eigsh(E, k=k, which="LM", tol=1e-13, v0=np.ones(knots.size))
        order = np.argsort(-np.abs(values), kind="stable")
        values, vectors = values[order], vectors[:, order]
        T = _polynomials(knots, m)
        # orthonormal basis of the truncated coefficients orthogonal to the null space
        q, _ = np.linalg.qr((T.T @ vectors).T, mode="complete")
        Z = q[:, m:]
        radial = vectors @ Z  # (n_knots, k - m)
        if knots is unique:
            X_unique = np.hstack([(vectors * values) @ Z, _polynomials(unique, m)])
        else:
            X_unique = np.hstack([_radial_times(unique, knots, radial, m), _polynomials(unique, m)])
        counts = np.bincount(inverse, minlength=unique.size)
        scale = np.sqrt(counts @ (X_unique * X_unique) / x.size)
        penalty = np.zeros((k, k))
        penalty[: k - m, : k - m] = Z.T @ (values[:, None] * Z)
        penalty = (penalty + penalty.T) / 2 / np.outer(scale, scale)
        basis = cls(k, m, shift, knots, radial, scale, penalty)
        X_unique /= scale
        return basis, X_unique if unique.size == x.size and _is_identity(inverse) else (
            X_unique[inverse]
        )


# ------------------------------------------------------------- cubic regression splines


def _cr_matrices(knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``F`` (``k x k``, second derivatives at the knots are ``F beta``, zero at the ends)
    and the penalty ``D' B^-1 D`` of the natural cubic spline through the knots."""
    k = knots.size
    h = np.diff(knots)
    D = np.zeros((k - 2, k))
    B = np.zeros((k - 2, k - 2))
    for i in range(k - 2):
        D[i, i] = 1 / h[i]
        D[i, i + 1] = -1 / h[i] - 1 / h[i + 1]
        D[i, i + 2] = 1 / h[i + 1]
        B[i, i] = (h[i] + h[i + 1]) / 3
        if i < k - 3:
            B[i, i + 1] = B[i + 1, i] = h[i + 1] / 6
    BinvD = np.linalg.solve(B, D)
    F = np.zeros((k, k))
    F[1:-1] = BinvD
    S = D.T @ BinvD
    return F, (S + S.T) / 2


@dataclass(frozen=True)
class CubicRegressionBasis:
    """A cubic regression spline with knots at quantiles of the unique values.

    Attributes
    ----------
    knots : ndarray (k,)
    F : ndarray (k, k)
        Maps the values at the knots to the second derivatives there.
    penalty : ndarray (k, k)
        ``integral f''(x)^2 dx`` as a quadratic form in the values at the knots.
    """

    knots: np.ndarray
    F: np.ndarray
    penalty: np.ndarray

    @property
    def k(self) -> int:
        return self.knots.size

    @property
    def null_dim(self) -> int:
        return 2

    def matrix(self, x: np.ndarray) -> np.ndarray:
        """The basis at ``x`` (``n x k``): row ``i`` maps the values at the knots to the
        spline's value at ``x[i]``; linear beyond the outer knots."""
        x = np.asarray(x, dtype=float)
        kn = self.knots
        k = kn.size
        n = x.size
        out = np.zeros((n, k))
        rows = np.arange(n)
        j = np.clip(np.searchsorted(kn, x, side="right") - 1, 0, k - 2)
        h = kn[j + 1] - kn[j]
        inside = (x >= kn[0]) & (x <= kn[-1])
        xi = np.where(inside, x, np.clip(x, kn[0], kn[-1]))
        am = (kn[j + 1] - xi) / h
        ap = (xi - kn[j]) / h
        cm = ((kn[j + 1] - xi) ** 3 / h - h * (kn[j + 1] - xi)) / 6
        cp = ((xi - kn[j]) ** 3 / h - h * (xi - kn[j])) / 6
        out[rows, j] += am
        out[rows, j + 1] += ap
        out += cm[:, None] * self.F[j] + cp[:, None] * self.F[j + 1]
        below = x < kn[0]
        above = x > kn[-1]
        if below.any() or above.any():
            # value at the end knot plus the end slope times the distance
            h0, h1 = kn[1] - kn[0], kn[-1] - kn[-2]
            slope0 = np.zeros(k)
            slope0[0], slope0[1] = -1 / h0, 1 / h0
            slope0 -= h0 / 6 * (2 * self.F[0] + self.F[1])
            slope1 = np.zeros(k)
            slope1[-2], slope1[-1] = -1 / h1, 1 / h1
            slope1 += h1 / 6 * (self.F[-2] + 2 * self.F[-1])
            if below.any():
                out[below] += np.outer(x[below] - kn[0], slope0)
            if above.any():
                out[above] += np.outer(x[above] - kn[-1], slope1)
        return out

    @classmethod
    def build(cls, x: np.ndarray, k: int) -> tuple[CubicRegressionBasis, np.ndarray]:
        """The basis for data ``x`` (knots at the ``k`` quantiles, R's type 7, of the
        unique values) and its matrix at ``x``.

        Raises
        ------
        ValueError
            ``k < 3`` or fewer unique values than ``k``.
        """
        x = np.asarray(x, dtype=float)
        if k < 3:
            raise ValueError(f"a cubic regression spline needs k >= 3, got {k}")
        unique = np.unique(x)
        if unique.size < k:
            raise ValueError(
                f"{unique.size} unique value(s), fewer than the basis dimension k = {k}"
            )
        knots = np.quantile(unique, np.linspace(0, 1, k))
        # the penalty ~ 1 / h^3 in the knot spacing h, its eigen-decomposition squares it
        check_covariate_scale(float(np.min(np.diff(knots))), 6)
        F, S = _cr_matrices(knots)
        basis = cls(knots, F, S)
        return basis, basis.matrix(x)


# ----------------------------------------------------------- constraint and mixed form


def sum_to_zero(X: np.ndarray) -> np.ndarray:
    """An orthonormal ``k x (k - 1)`` basis ``Z`` of the coefficients that satisfy
    ``colMeans(X) beta = 0`` (so ``X Z`` sums to zero over the rows)."""
    c = X.mean(axis=0)
    q, _ = np.linalg.qr(c[:, None], mode="complete")
    return q[:, 1:]


@dataclass(frozen=True)
class MixedForm:
    """A singly penalized basis as fixed and random effects.

    ``X @ fixed`` are the fixed-effect columns (the penalty's null space, orthonormal
    coefficients) and ``X @ random`` the random-effect columns whose penalty is the
    identity; ``beta = fixed @ beta_f + random @ b`` maps back to the basis' coefficients.
    """

    fixed: np.ndarray  # (k, null)
    random: np.ndarray  # (k, rank)

    @property
    def rank(self) -> int:
        return self.random.shape[1]


def mixed_model_form(S: np.ndarray, rank: int) -> MixedForm:
    """Split by the eigenvectors of ``S``: the ``rank`` leading ones, each divided by the
    square root of its eigenvalue, are the random part; the rest span the null space."""
    values, vectors = np.linalg.eigh((S + S.T) / 2)
    order = np.argsort(-values, kind="stable")
    values, vectors = values[order], vectors[:, order]
    if rank > 0 and values[rank - 1] <= 0:
        raise ValueError("the penalty has lower rank than its basis declares")
    random = vectors[:, :rank] / np.sqrt(values[:rank])
    return MixedForm(fixed=vectors[:, rank:], random=random)


def natural_parametrization(
    X: np.ndarray, S: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """A reparametrization ``P`` (``k x k``) with ``X P`` orthonormal-columned up to
    scaling and the penalty diagonal: the ``rank`` penalized columns first (penalty
    identity after :func:`mixed_model_form`), the null space last, orthonormal in the data
    (``Q U``, with ``Q R = X`` and ``U`` the eigenvectors of ``R^-T S R^-1``).

    Returns
    -------
    (P, d)
        ``P`` and the positive penalty eigenvalues ``d`` (``rank``).
    """
    _, R = np.linalg.qr(X)
    Rinv = sla.solve_triangular(R, np.eye(R.shape[0]))
    M = Rinv.T @ S @ Rinv
    # LAPACK's dsyevr, as R's eigen: the basis it picks for a null space of dimension 2 or
    # more is its own, and an fs smooth's random parts depend on it
    values, vectors = sla.eigh((M + M.T) / 2, driver="evr")
    order = np.argsort(-values, kind="stable")
    values, vectors = values[order], vectors[:, order]
    return Rinv @ vectors, values[:rank]


def tensor_margin_parametrization(X: np.ndarray, S: np.ndarray, rank: int) -> np.ndarray:
    """mgcv's reparametrization of a ``t2`` margin (``nat.param(type = 3, unit.fnorm =
    TRUE)``): ``X @ P`` has the penalty's range space first, scaled so the penalty is the
    identity, and the null space last, rotated so that its columns are uncorrelated after
    centring (the constant first); each part scaled to unit mean square.

    The penalty's eigenvectors come from LAPACK's ``dsyevr`` (R's ``eigen``): for a
    null space of dimension 2 or more the basis it returns is its own choice, and the
    tensor product's random parts depend on it.
    """
    values, vectors = sla.eigh((S + S.T) / 2, driver="evr")
    values, vectors = values[::-1], vectors[:, ::-1]
    k = S.shape[0]
    E = np.ones(k)
    E[:rank] = np.sqrt(values[:rank])
    XU = X @ vectors
    col_norm = np.sum(XU * XU, axis=0) / E**2
    if rank < k:
        E[rank:] = np.sqrt(col_norm[rank:] / np.mean(col_norm[:rank]))
    P = vectors / E
    XP = XU / E
    if rank < k - 1:
        Xn = XP[:, rank:]
        centred = Xn - Xn.mean(axis=0)
        w, um = np.linalg.eigh(centred.T @ centred)  # ascending: the constant first
        P[:, rank:] = P[:, rank:] @ um
        XP[:, rank:] = Xn @ um
    P[:, :rank] /= np.sqrt(np.mean(XP[:, :rank] ** 2))
    if rank < k:
        P[:, rank:] /= np.sqrt(np.mean(XP[:, rank:] ** 2))
    return P


def row_kronecker(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Row-wise Kronecker product: row ``i`` is ``kron(A[i], B[i])`` (columns of ``B``
    vary fastest, as mgcv's ``t2.model.matrix``)."""
    return (A[:, :, None] * B[:, None, :]).reshape(A.shape[0], -1)


def t2_blocks(margins: list[tuple[np.ndarray, int]]) -> tuple[list[np.ndarray], bool]:
    """The column blocks of mgcv's ``t2`` tensor product (``full = FALSE``) from margins
    ``(X_j, rank_j)`` in their :func:`tensor_margin_parametrization`: every product of a
    range or null part of each margin; all blocks but the last (when every margin has a
    null space, the product of the null spaces) carry their own identity penalty.

    Returns
    -------
    (blocks, has_null)
        ``has_null``: the last block is the unpenalized product of the null spaces.
    """
    X0, r0 = margins[0]
    blocks = [X0[:, :r0]]
    penalized = [True]
    no_null = r0 == X0.shape[1]
    if not no_null:
        blocks.append(X0[:, r0:])
        penalized.append(False)
    for Xi, ri in margins[1:]:
        Zi = Xi[:, :ri]
        has_null = ri < Xi.shape[1]
        if not has_null:
            no_null = True
        new_blocks, new_pen = [], []
        for block in blocks:
            new_blocks.append(row_kronecker(block, Zi))
            new_pen.append(True)
        if has_null:
            Ni = Xi[:, ri:]
            for block, pen in zip(blocks, penalized, strict=True):
                new_blocks.append(row_kronecker(block, Ni))
                new_pen.append(pen)
        blocks, penalized = new_blocks, new_pen
    return blocks, not no_null
