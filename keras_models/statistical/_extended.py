"""Least squares accurate to the last digits of float64, even on designs with condition numbers of 1e15.

A float64 Householder QR solves a least-squares problem with a relative error of about `cond(X) * eps`;
on a degree-10 polynomial design (cond ~ 1e15) that is every digit. We keep the QR, but only as the
inner solver of iterative refinement on the augmented system (Björck, "Iterative refinement of linear
least squares solutions I", BIT 7, 1967):

    [ I   X ] [r]   [b]
    [ X^T 0 ] [x] = [c]

The residuals of that system are computed in double-double arithmetic (error-free transformations:
Knuth's TwoSum and Dekker's TwoProduct), and both the iterate `x` and the least-squares residual `r`
are kept as unevaluated sums of two float64 numbers. Each sweep shrinks the error by about
`cond(X_scaled) * eps`, where the columns are first scaled by powers of two (exactly) to unit norm;
the fixed point is the least-squares solution of the float64 data to full float64 precision.

With `b = y, c = 0` this gives the coefficients; with `b = 0, c = -I` it gives `(X^T X)^{-1}`, the
unscaled covariance, refined the same way.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

_EPS = np.finfo(np.float64).eps
_SPLITTER = 134217729.0  # 2**27 + 1, Dekker's splitting constant for float64


def two_sum(a, b):
    """`s + e == a + b` exactly, with `s = fl(a + b)` (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def two_product(a, b):
    """`p + e == a * b` exactly, with `p = fl(a * b)` (Dekker)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def accurate_sum(terms):
    """Sums `terms` (n, m) over axis 0, correct to about one float64 rounding of the result.

    A pairwise tree of TwoSums: the rounding errors of every addition are collected and added back.
    """
    terms = np.asarray(terms, dtype=np.float64)
    errors = np.zeros(terms.shape[1:])
    while terms.shape[0] > 1:
        if terms.shape[0] % 2:
            terms = np.concatenate([terms, np.zeros((1,) + terms.shape[1:])])
        terms, error = two_sum(terms[0::2], terms[1::2])
        errors += error.sum(axis=0)
    return terms[0] + errors


def residual_dd(X, b_hi, b_lo, x_hi, x_lo, r_hi=None, r_lo=None):
    """`b - r - X x` in double-double, every operand a (hi, lo) pair; returns (hi, lo), each (n, m)."""
    s, e = b_hi.copy(), b_lo.copy()
    if r_hi is not None:
        s, err = two_sum(s, -r_hi)
        e = e + err - r_lo
    for j in range(X.shape[1]):
        column = X[:, j : j + 1]  # (n, 1)
        prod, prod_err = two_product(column, -x_hi[j])  # (n, m)
        s, sum_err = two_sum(s, prod)
        e = e + sum_err + prod_err - column * x_lo[j]
    return two_sum(s, e)


def transpose_product_dd(X, r_hi, r_lo):
    """`X^T r` for a double-double `r` (n, m); returns float64 (p, m), correct to about one rounding."""
    out = np.empty((X.shape[1], r_hi.shape[1]))
    for j in range(X.shape[1]):
        column = X[:, j : j + 1]
        prod, prod_err = two_product(column, r_hi)
        out[j] = accurate_sum(np.concatenate([prod, prod_err, column * r_lo]))
    return out


class RefinedQR:
    """A float64 QR of an exactly column-scaled design, with extended-precision refinement.

    Args:
        X: the design (n, p), float64, full column rank.
    """

    def __init__(self, X):
        X = np.asarray(X, dtype=np.float64)
        norms = np.linalg.norm(X, axis=0)
        norms[norms == 0] = 1.0
        # Powers of two make the scaling exact, so the scaled problem has the same solution digits.
        self.scale = np.exp2(np.round(np.log2(norms)))
        self.X = X / self.scale
        self.Q, self.R = np.linalg.qr(self.X)
        self.cond = float(np.linalg.cond(self.R))
        self.iterations = 0
        self.converged = True

    def _correction(self, f, g):
        # One solve of the augmented system with the float64 QR: X^T dr = g, dr + X dx = f.
        h = scipy.linalg.solve_triangular(self.R, g, trans="T")
        qf = self.Q.T @ f - h
        dx = scipy.linalg.solve_triangular(self.R, qf)
        dr = f - self.Q @ qf
        return dr, dx

    def solve_augmented(self, b, c, *, refine=True, max_sweeps=30):
        """Solves the augmented system for (r, x), both (hi, lo); `x` is in the scaled columns."""
        n, p = self.X.shape
        b = np.asarray(b, dtype=np.float64).reshape(n, -1)
        c = np.asarray(c, dtype=np.float64).reshape(p, -1)
        zeros_b, zeros_x = np.zeros_like(b), np.zeros((p, b.shape[1]))
        dr, dx = self._correction(b, c)
        r_hi, r_lo = dr, zeros_b.copy()
        x_hi, x_lo = dx, zeros_x.copy()
        self.iterations, self.converged = 0, not refine
        previous = np.inf
        for sweep in range(max_sweeps if refine else 0):
            f_hi, f_lo = residual_dd(self.X, b, zeros_b, x_hi, x_lo, r_hi, r_lo)
            f = f_hi + f_lo
            g = c - transpose_product_dd(self.X, r_hi, r_lo)
            dr, dx = self._correction(f, g)
            x_hi, x_lo = _add_dd(x_hi, x_lo, dx)
            r_hi, r_lo = _add_dd(r_hi, r_lo, dr)
            self.iterations = sweep + 1
            size = np.max(np.abs(dx) / np.maximum(np.abs(x_hi), np.finfo(float).tiny))
            if size <= 4 * _EPS * _EPS or (size < 1e-20) or (sweep > 2 and size >= previous):
                self.converged = size < 1e-14
                break
            previous = size
        return (r_hi, r_lo), (x_hi, x_lo)

    def lstsq(self, y, *, refine=True):
        """Least-squares coefficients (p,) and the residual y - X beta (n,) of the float64 data."""
        (r_hi, r_lo), (x_hi, x_lo) = self.solve_augmented(y, np.zeros(self.X.shape[1]), refine=refine)
        return (x_hi + x_lo)[:, 0] / self.scale, r_hi[:, 0], r_lo[:, 0]

    def _zero_rhs(self, columns):
        """The right-hand side b = 0 with `columns` columns, as `solve_augmented` takes it."""
        return np.zeros((self.X.shape[0], columns))

    def inverse_gram(self, *, refine=True):
        """`(X^T X)^{-1}` (p, p) for the unscaled design, refined like the coefficients."""
        p = self.R.shape[0]
        if refine:
            _, (x_hi, x_lo) = self.solve_augmented(self._zero_rhs(p), -np.eye(p), refine=True)
            inverse = x_hi + x_lo
            inverse = (inverse + inverse.T) / 2.0
        else:
            r_inv = scipy.linalg.solve_triangular(self.R, np.eye(p))
            inverse = r_inv @ r_inv.T
        # (X_s^T X_s)^{-1} = D (X^T X)^{-1} D for X_s = X D^{-1}; powers of two keep this exact.
        return inverse / np.outer(self.scale, self.scale)


def _add_dd(hi, lo, delta):
    s, e = two_sum(hi, delta)
    return two_sum(s, e + lo)


def dependent_columns(root, names, tol):
    """Columns taking part in a (near) linear dependence of `root` (rows, p), or [].

    The columns are scaled to unit norm; singular values below `tol` times the largest mark a
    dependence, and the columns with weight in those right singular vectors are the ones involved.
    """
    norms = np.linalg.norm(root, axis=0)
    zero = {names[j] for j in np.flatnonzero(norms == 0)}
    norms[norms == 0] = 1.0
    _, singular, vt = np.linalg.svd(root / norms, full_matrices=False)
    null = vt[singular <= tol * singular[0]] if singular.size and singular[0] > 0 else vt
    involved = {names[j] for j in np.flatnonzero(np.max(np.abs(null), axis=0, initial=0.0) > 1e-6)}
    return [name for name in names if name in involved | zero]
