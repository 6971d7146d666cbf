"""Exact OLS and Logit on Dask DataFrames and arrays: each partition reduces to small sums, the client solves.

    >>> from keras_models.statistical import DaskLinearRegression, DaskLogisticRegression
    >>> ols = DaskLinearRegression().fit(frame, "price", columns=["area", "rooms"])  # a Dask DataFrame
    >>> logit = DaskLogisticRegression().fit(X, y)                                  # Dask arrays
    >>> print(logit.summary())      # the one-machine report, with the same numbers

Both are the one-machine estimators (`LinearRegression`, `LogisticRegression`) with a `fit` that reads
Dask collections; predicting, reports, confidence intervals and `to_keras()` are theirs.

Logit: Newton's method (IRLS) as in `LogisticRegression`. Every iteration is one pass in which each
partition returns its log-likelihood, score `X'(y - p)`, information `X'WX` (W = p(1 - p)) and largest
|y - p|; the sums are combined in a tree on the workers, and the client takes the Newton step with
`logistic.newton` (the same singularity, separation and convergence rules). Each partition runs the
one-machine pass, `_logit_passes.binary_statistics` (NumPy float64), so the workers need neither
TensorFlow nor Keras.

OLS: the column-scaled Householder QR of `LinearRegression`, computed as a tall-skinny QR (TSQR: Demmel,
Grigori, Hoemmen and Langou, "Communication-optimal parallel and sequential QR and LU factorizations",
SIAM J. Sci. Comput. 34, 2012): each partition factors its rows, the client factors the stacked R
factors, and each partition keeps its block of Q. `X'X` is never formed, so the condition number is
not squared. The double-double refinement of `_extended.RefinedQR` then runs over the partitions: the
residual stays in them, and `X'r` is summed from each partition's unrounded (hi, lo) pair, so the
estimates keep the one-machine digits on ill-conditioned designs (NIST's Filip, condition number 1e15).

Dask is imported when a model is fitted, never when this module is imported.
"""

from __future__ import annotations

import functools
import pickle
import sys
import time

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

from keras_models.statistical import _design, _extended, _logit_passes
from keras_models.statistical._logit_passes import add_statistics, binary_statistics
from keras_models.statistical._design import as_features, as_target
from keras_models.statistical._extended import (
    RefinedQR,
    _add_dd,
    accurate_sum,
    dependent_columns,
    residual_dd,
    two_product,
)
from keras_models.statistical.linear import _REFINE, LinearRegression
from keras_models.statistical.logistic import LogisticRegression, newton
from keras_models.statistical.results import PerfectSeparationError, SingularDesignError, parameter_inference

_EPS = np.finfo(np.float64).eps
_SPLIT_EVERY = 8  # partial sums combined per task in the reduction tree


def _dask():
    try:
        import dask
    except ModuleNotFoundError as error:  # pragma: no cover - dask is there whenever a Dask collection is
        raise ImportError(
            "Fitting on Dask collections needs Dask: pip install 'dask[distributed,dataframe]'."
        ) from error
    return dask


class _Portable:
    """A function that travels to Dask workers by value, with the library functions it calls.

    Unpickled on a worker it is the plain function, rebuilt by cloudpickle: the worker imports NumPy,
    SciPy and pandas, but not `keras_models` (whose import loads Keras and TensorFlow), so workers need
    only Dask's own dependencies.
    """

    def __init__(self, fn):
        import cloudpickle

        self.fn = fn
        self.__name__ = fn.__name__
        modules = [sys.modules[__name__], _design, _extended, _logit_passes]
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        try:
            self.payload = cloudpickle.dumps(fn)
        finally:
            for module in modules:
                cloudpickle.unregister_pickle_by_value(module)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __reduce__(self):
        return pickle.loads, (self.payload,)

    def __dask_tokenize__(self):
        return self.payload


@functools.cache
def _remote(fn):
    """`dask.delayed(fn)`, with fn sent to the workers by value (see `_Portable`)."""
    return _dask().delayed(_Portable(fn))


# --------------------------------------------------------------------------------------------------
# Partitions: the user's collection as checked float64 (X, y) blocks


def _checked_partition(x_part, y_part, index, feature_names, fit_intercept, binary):
    """One partition as float64 `(X, y)`, the intercept column first; errors name the partition."""
    where = f"partition {index}"
    if isinstance(x_part, pd.DataFrame) and y_part is None:  # the frame holds y as its last column
        x_part, y_part = x_part.iloc[:, :-1], x_part.iloc[:, -1]
    if isinstance(x_part, np.ndarray):
        x_part = pd.DataFrame(x_part, columns=feature_names)
    if len(y_part) != len(x_part):
        raise ValueError(f"In {where}, X has {len(x_part)} rows but y has {len(y_part)}; X and y must be "
                         "partitioned alike.")
    if len(x_part) == 0:
        X, y = np.zeros((0, len(feature_names))), np.zeros(0)
    else:
        X, _ = as_features(x_part, what=f"X in {where}")
        y, _ = as_target(y_part, len(X), what=f"y in {where}")
    if binary:
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            raise ValueError(f"y must be binary (0 or 1) for Logit; row {int(bad[0])} of {where} has "
                             f"{y[bad[0]]:g}.")
    if fit_intercept:
        X = np.column_stack([np.ones(len(X)), X])
    return X, y


def _partition_summary(part):
    X, y = part
    return dict(rows=len(y), y_sum=float(np.sum(y)), minimum=np.min(X, axis=0, initial=np.inf),
                maximum=np.max(X, axis=0, initial=-np.inf), squares=np.einsum("ij,ij->j", X, X))


class _Partitions:
    """A Dask X and y as a list of delayed, checked `(X, y)` blocks, with their names and sums.

    Attributes: parts (list of Delayed), design (`_design.Design` whose X holds each column's minimum
    and maximum: all the report reads from it is which columns are constant), y_name, rows, y_sum,
    squares (per-column sums of squares of the design).
    """

    def __init__(self, X, y, columns, *, fit_intercept, binary, persist):
        dask = _dask()
        frames = sys.modules.get("dask.dataframe")
        if frames is not None and isinstance(X, frames.DataFrame):
            x_parts, y_parts, feature_names, self.y_name = _frame_parts(X, y, columns, frames)
        else:
            import dask.array

            if not isinstance(X, dask.array.Array):
                raise ValueError(f"X must be a Dask DataFrame or Dask Array; got {type(X).__name__}. For data in "
                                 "memory use LinearRegression or LogisticRegression.")
            x_parts, y_parts, feature_names, self.y_name = _array_parts(X, y, columns, dask.array)
        names = [str(n) for n in feature_names]
        if fit_intercept and "const" in names:
            raise ValueError("X already has a column named 'const'; rename it or pass fit_intercept=False.")
        checked = _remote(_checked_partition)
        self.parts = [checked(x, y_part, k, names, fit_intercept, binary)
                      for k, (x, y_part) in enumerate(zip(x_parts, y_parts))]
        if persist:
            self.parts = list(dask.persist(*self.parts))
        summaries = dask.compute(*[_remote(_partition_summary)(part) for part in self.parts])
        self.rows = sum(s["rows"] for s in summaries)
        if self.rows == 0:
            raise ValueError("X has no rows: every partition is empty.")
        self.y_sum = sum(s["y_sum"] for s in summaries)
        self.squares = np.sum([s["squares"] for s in summaries], axis=0)
        column_range = np.vstack([np.min([s["minimum"] for s in summaries], axis=0),
                                  np.max([s["maximum"] for s in summaries], axis=0)])
        intercept = "const" if fit_intercept else None
        self.design = _design.Design(column_range, ([intercept] if intercept else []) + names, names, intercept)


def _frame_parts(X, y, columns, frames):
    if isinstance(y, str):
        if y not in X.columns:
            raise ValueError(f"y={y!r} is not a column of X; its columns are {list(X.columns)}.")
        y_name, y_series = y, None
    elif isinstance(y, frames.Series):
        y_name, y_series = (str(y.name) if y.name is not None else "y"), y
        if y.npartitions != X.npartitions:
            raise ValueError(f"y has {y.npartitions} partitions but X has {X.npartitions}; take both from one "
                             "frame, or pass y as the name of a column of X.")
    else:
        raise ValueError(f"With a Dask DataFrame X, y must be the name of one of its columns or a Dask Series; "
                         f"got {type(y).__name__}.")
    if columns is None:
        features = list(X.columns) if y_series is not None else [c for c in X.columns if c != y_name]
    else:
        features = list(columns)
    missing = [c for c in features if c not in X.columns]
    if missing:
        raise ValueError(f"X has no column(s) {missing}; its columns are {list(X.columns)}.")
    if not features:
        raise ValueError("No feature columns: X has only the target column.")
    if y_series is None and y_name in features:
        raise ValueError(f"The target {y_name!r} is also listed in columns; drop it from the features.")
    text = [str(c) for c in features if not _numeric(X.dtypes[c])]
    if text:
        raise ValueError(f"X has non-numeric column(s) {text} (dtypes {[str(X.dtypes[c]) for c in text]}); "
                         "encode them as numbers first.")
    y_dtype = y_series.dtype if y_series is not None else X.dtypes[y_name]
    if not _numeric(y_dtype):
        raise ValueError(f"y ({y_name!r}) must be numeric; got dtype {y_dtype}.")
    if y_series is None:  # one task per partition reads X and y together
        return X[[*features, y_name]].to_delayed(), [None] * X.npartitions, features, y_name
    return X[features].to_delayed(), y_series.to_delayed(), features, y_name


def _numeric(dtype):
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def _array_parts(X, y, columns, da):
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features); got shape {X.shape}.")
    if not isinstance(y, da.Array):
        raise ValueError(f"With a Dask Array X, y must be a Dask Array; got {type(y).__name__}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D; got shape {y.shape}.")
    for name, values in (("X", X), ("y", y)):
        if values.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be real numbers; got dtype {values.dtype}.")
    width = X.shape[1]
    names = [f"x{j + 1}" for j in range(width)] if columns is None else [str(c) for c in columns]
    if len(names) != width:
        raise ValueError(f"columns names {len(names)} columns but X has {width}: {names}.")
    X = X.rechunk({1: -1})
    known = not (np.isnan(X.shape[0]) or np.isnan(y.shape[0]))
    if known and X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}; they must match.")
    if y.chunks[0] != X.chunks[0]:
        if not known or any(np.isnan(c) for c in X.chunks[0] + y.chunks[0]):
            if y.numblocks[0] != X.numblocks[0]:
                raise ValueError("X and y have unknown chunk sizes and different numbers of chunks; call "
                                 "compute_chunk_sizes() on both.")
        else:
            y = y.rechunk({0: X.chunks[0]})
    return list(X.to_delayed()[:, 0]), list(y.to_delayed()), names, "y"


class _DaskOnly:
    """Refuses the one-machine entry points, so that a Dask estimator's numbers always come from Dask."""

    @classmethod
    def from_formula(cls, formula, data, **params):
        raise ValueError(f"{cls.__name__} fits Dask collections with fit(X, y); for a formula on data in memory "
                         f"use {cls.__mro__[2].__name__}.from_formula.")


def _tree_sum(parts, combine):
    """Combines delayed partial results `_SPLIT_EVERY` at a time on the workers, in a fixed order."""
    while len(parts) > 1:
        parts = [_remote(combine)(*parts[i : i + _SPLIT_EVERY]) for i in range(0, len(parts), _SPLIT_EVERY)]
    return parts[0]


# --------------------------------------------------------------------------------------------------
# Logit


def _logit_statistics(part, beta):
    """A binary Logit's (loglik, score, information, max |y - p|, rows) on one partition, float64."""
    X, y = part
    return binary_statistics(X, y, beta)


class DaskLogisticRegression(_DaskOnly, LogisticRegression):
    """`LogisticRegression` (statsmodels' Logit, exact MLE) fitted on a Dask DataFrame or Dask Array.

    Args:
        fit_intercept, max_iter, tol, verbose: as `LogisticRegression`.
        persist: keep the checked float64 partitions in the workers' memory between Newton passes
            (about `rows * (features + 2) * 8` bytes over the cluster). `False` recomputes the collection
            on every pass, for data larger than the cluster's memory.

    Attributes: those of `LogisticRegression`, and `partitions_` (number of partitions) and
    `pass_seconds_` (wall time of each Newton pass).
    """

    batch_size = _logit_passes.CHUNK_ROWS  # read by the parent's checks; each partition's pass takes chunks of it

    def __init__(self, *, fit_intercept=True, max_iter=35, tol=1e-10, persist=True, verbose=False):
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.persist = persist
        self.verbose = verbose

    def _validate_params(self):
        super()._validate_params()
        if self.persist not in (True, False):
            raise ValueError(f"persist must be True or False; got persist={self.persist!r}.")

    def fit(self, X, y, *, columns=None):
        """Fits on Dask data by Newton's method, one pass over the partitions per iteration; returns self.

        Args:
            X: a Dask DataFrame (numeric columns) or a 2-D Dask Array.
            y: for a DataFrame, the name of its 0/1 target column, or a Dask Series partitioned like X;
                for an array, a 1-D Dask Array of 0/1 with as many rows.
            columns: the feature columns of a DataFrame (default: all but y); for an array, names for
                its columns (default x1, x2, ...).

        Raises:
            ValueError: missing or non-numeric columns, NaN/inf or a non-binary y (naming the partition,
                row and column), mismatched partitions.
            SingularDesignError, PerfectSeparationError: as the one-machine fit.
        """
        self._validate_params()
        data = _Partitions(X, y, columns, fit_intercept=self.fit_intercept, binary=True, persist=self.persist)
        design, names = data.design, data.design.names
        nobs, positives = float(data.rows), data.y_sum
        if positives in (0.0, nobs):
            raise PerfectSeparationError(f"y has a single class ({positives / nobs:g}); Logit needs both 0 and 1.")
        dask = _dask()
        seconds = []

        def partition_pass(beta):
            start = time.perf_counter()
            parts = [_remote(_logit_statistics)(part, beta) for part in data.parts]
            (totals,) = dask.compute(_tree_sum(parts, add_statistics))
            seconds.append(time.perf_counter() - start)
            return totals

        result = newton(partition_pass, np.zeros(len(names)), names, max_iter=self.max_iter, tol=self.tol,
                        verbose=self.verbose)
        mean = positives / nobs
        llnull = nobs * (mean * np.log(mean) + (1.0 - mean) * np.log(1.0 - mean))
        beta, cov, bse = self._finish(result, names, design, data.y_name, nobs, llnull, 1)
        statistic, pvalues, _, _ = parameter_inference(beta, bse)
        self.params_ = pd.Series(beta, index=names, name="coef")
        self.bse_ = pd.Series(bse, index=names, name="std err")
        self.tvalues_ = pd.Series(statistic, index=names, name="z")
        self.pvalues_ = pd.Series(pvalues, index=names, name="P>|z|")
        self.cov_params_ = pd.DataFrame(cov, index=names, columns=names)
        self.classes_ = np.array([0, 1])
        self.partitions_ = len(data.parts)
        self.pass_seconds_ = seconds
        self.formula_ = None
        return self

    def fit_stream(self, source, **kwargs):
        raise ValueError("DaskLogisticRegression fits Dask collections with fit(X, y); to stream files use "
                         "LogisticRegression.fit_stream.")

    def _notes(self):
        notes = [f"Maximum likelihood by Newton's method, {self.n_iter_} iterations, each a float64 pass over "
                 f"{self.partitions_} Dask partitions."]
        if not self.converged_:
            notes.append("WARNING: the fit did not converge; do not trust these numbers.")
        return notes


# --------------------------------------------------------------------------------------------------
# Least squares: TSQR and the refinement of RefinedQR over partitions


def _local_qr(part, scale):
    """A partition's scaled rows, y and their QR: (X_scaled, y, Q_local, R_local)."""
    X, y = part
    X_scaled = X / scale
    if len(X) == 0:
        return X_scaled, y, np.zeros((0, 0)), np.zeros((0, X.shape[1]))
    Q, R = np.linalg.qr(X_scaled)  # (rows, k), (k, p), k = min(rows, p)
    return X_scaled, y, Q, R


def _r_factor(local):
    return local[3]


def _global_q(local, q_block):
    """The partition's rows of the global Q: its own Q times its block of the second-level Q."""
    X_scaled, y, Q, _ = local
    return X_scaled, y, Q @ q_block


def _right_side(block, rhs):
    X_scaled, y, _ = block
    return y[:, None] if rhs == "y" else np.zeros((len(y), X_scaled.shape[1]))


def _first_residual(block, rhs, qf):
    """The first correction's residual `b - Q qf` as a double-double pair."""
    b = _right_side(block, rhs)
    r = b - block[2] @ qf
    return r, np.zeros_like(r)


def _q_transpose_rhs(block, rhs):
    return block[2].T @ _right_side(block, rhs)


def _transpose_product_pair(X, r_hi, r_lo):
    """`X'r` for a double-double r (rows, m) as an unrounded pair (hi, lo) of (p, m) arrays.

    Summing the partitions' pairs with `accurate_sum` then rounds once, as the one-machine
    `transpose_product_dd` does for all rows.
    """
    hi, lo = np.zeros((X.shape[1], r_hi.shape[1])), np.zeros((X.shape[1], r_hi.shape[1]))
    if len(X) == 0:
        return hi, lo
    for j in range(X.shape[1]):
        column = X[:, j : j + 1]  # (rows, 1)
        prod, prod_err = two_product(column, r_hi)
        terms = np.concatenate([prod, prod_err, column * r_lo])
        hi[j] = accurate_sum(terms)
        lo[j] = accurate_sum(np.concatenate([terms, -hi[j][None]]))  # what rounding hi left out
    return hi, lo


def _sweep_partition(block, residual, rhs, x_hi, x_lo):
    """One refinement sweep's partition work: f = b - r - X x (double-double), Q'f and X'r as a pair."""
    X_scaled, _, Q = block
    b = _right_side(block, rhs)
    r_hi, r_lo = residual
    f_hi, f_lo = residual_dd(X_scaled, b, np.zeros_like(b), x_hi, x_lo, r_hi, r_lo)
    f = f_hi + f_lo
    return f, Q.T @ f, _transpose_product_pair(X_scaled, r_hi, r_lo)


def _sweep_sums(step):
    return step[1], step[2]


def _update_residual(block, residual, step, qf):
    """r += f - Q qf, in double-double."""
    return _add_dd(residual[0], residual[1], step[0] - block[2] @ qf)


class _TallSkinnyQR:
    """`RefinedQR` with the rows spread over Dask partitions; the same factor, solves and refinement.

    Args:
        parts: delayed `(X, y)` partitions.
        scale: the powers of two the columns are divided by (exactly), as `RefinedQR` chooses them.
    """

    def __init__(self, parts, scale):
        dask = self._dask = _dask()
        local = dask.persist(*[_remote(_local_qr)(part, scale) for part in parts])
        r_factors = dask.compute(*[_remote(_r_factor)(state) for state in local])
        second_q, self.R = np.linalg.qr(np.concatenate(r_factors))  # (sum k, p), (p, p)
        bounds = np.cumsum([0] + [len(r) for r in r_factors])
        self.blocks = dask.persist(*[_remote(_global_q)(state, second_q[start:stop])
                                     for state, start, stop in zip(local, bounds[:-1], bounds[1:])])
        self.scale = scale
        self.cond = float(np.linalg.cond(self.R))
        self.iterations = 0
        self.converged = True

    def _map(self, fn, *per_block, **shared):
        return [_remote(fn)(block, *(args[k] for args in per_block), **shared) for k, block in enumerate(self.blocks)]

    def _correction(self, qtf, g):
        # RefinedQR._correction's small half; the partitions then take dr = f - Q qf.
        h = scipy.linalg.solve_triangular(self.R, g, trans="T")
        qf = qtf - h
        return scipy.linalg.solve_triangular(self.R, qf), qf

    def solve_augmented(self, rhs, c, *, refine=True, max_sweeps=30):
        """As `RefinedQR.solve_augmented`, with b each partition's y (`rhs="y"`) or zeros of width p.

        Returns (the residual as a list of delayed per-partition (hi, lo) pairs, (x_hi, x_lo)).
        """
        dask = self._dask
        p = self.R.shape[0]
        c = np.asarray(c, dtype=np.float64).reshape(p, -1)
        qtf = sum(dask.compute(*self._map(_q_transpose_rhs, rhs=rhs)))
        dx, qf = self._correction(qtf, c)
        residuals = dask.persist(*self._map(_first_residual, rhs=rhs, qf=qf))
        x_hi, x_lo = dx, np.zeros_like(dx)
        self.iterations, self.converged = 0, not refine
        previous = np.inf
        for sweep in range(max_sweeps if refine else 0):
            steps = dask.persist(*self._map(_sweep_partition, residuals, rhs=rhs, x_hi=x_hi, x_lo=x_lo))
            sums = dask.compute(*[_remote(_sweep_sums)(step) for step in steps])
            qtf = sum(s[0] for s in sums)
            g = c - accurate_sum(np.concatenate([np.stack([s[1][0] for s in sums]),
                                                 np.stack([s[1][1] for s in sums])]))
            dx, qf = self._correction(qtf, g)
            residuals = dask.persist(*self._map(_update_residual, residuals, steps, qf=qf))
            x_hi, x_lo = _add_dd(x_hi, x_lo, dx)
            self.iterations = sweep + 1
            size = np.max(np.abs(dx) / np.maximum(np.abs(x_hi), np.finfo(float).tiny))
            if size <= 4 * _EPS * _EPS or (size < 1e-20) or (sweep > 2 and size >= previous):
                self.converged = size < 1e-14
                break
            previous = size
        return residuals, (x_hi, x_lo)

    def lstsq(self, *, refine=True):
        """Coefficients (p,) of the unscaled design and the per-partition residual pairs."""
        residuals, (x_hi, x_lo) = self.solve_augmented("y", np.zeros(self.R.shape[0]), refine=refine)
        return (x_hi + x_lo)[:, 0] / self.scale, residuals

    def _zero_rhs(self, columns):
        return "zeros"  # each partition makes its own b = 0 with one column per column of the design

    inverse_gram = RefinedQR.inverse_gram  # `(X'X)^{-1}` (p, p) of the unscaled design


def _residual_sums(block, residual, y_center):
    """A partition's residual sums: count, sum, ssr (double-double), sum r^2, tss part, Durbin-Watson part."""
    r_hi, r_lo = residual[0][:, 0], residual[1][:, 0]
    r = r_hi + r_lo
    y = block[1]
    return dict(rows=len(r), total=float(np.sum(r)), ssr=float(np.sum(r_hi * r_hi) + 2.0 * np.sum(r_hi * r_lo)),
                squares=float(np.sum(r * r)), tss=float(np.sum((y - y_center) ** 2)),
                steps=float(np.sum(np.diff(r) ** 2)), first=r[0] if len(r) else None, last=r[-1] if len(r) else None)


def _central_moments(residual, mean):
    centered = residual[0][:, 0] + residual[1][:, 0] - mean
    return np.array([np.sum(centered**2), np.sum(centered**3), np.sum(centered**4)])


def _omnibus(n, skew, kurtosis):
    """D'Agostino's K^2 normality test from the sample skewness and (Pearson) kurtosis of n values.

    D'Agostino, Belanger and D'Agostino, "A suggestion for using powerful and informative tests of
    normality", The American Statistician 44 (1990): Z(sqrt b1) by D'Agostino's transformation of the
    skewness, Z(b2) by Anscombe and Glynn's of the kurtosis, K^2 = Z1^2 + Z2^2 ~ chi^2(2). statsmodels
    reports NaN below 8 observations, and so does this.
    """
    if n < 8:
        return np.nan, np.nan
    # Skewness: a Johnson S_U approximation of sqrt(b1) under normality.
    y = skew * np.sqrt((n + 1.0) * (n + 3.0) / (6.0 * (n - 2.0)))
    beta2 = 3.0 * (n * n + 27.0 * n - 70.0) * (n + 1.0) * (n + 3.0) / ((n - 2.0) * (n + 5.0) * (n + 7.0) * (n + 9.0))
    w2 = np.sqrt(2.0 * (beta2 - 1.0)) - 1.0
    delta = 1.0 / np.sqrt(0.5 * np.log(w2))
    alpha = np.sqrt(2.0 / (w2 - 1.0))
    z_skew = delta * np.arcsinh(y / alpha)
    # Kurtosis: standardized b2, then a cube-root (Wilson-Hilferty-like) normalization.
    mean_b2 = 3.0 * (n - 1.0) / (n + 1.0)
    var_b2 = 24.0 * n * (n - 2.0) * (n - 3.0) / ((n + 1.0) ** 2 * (n + 3.0) * (n + 5.0))
    x = (kurtosis - mean_b2) / np.sqrt(var_b2)
    root_beta1 = (6.0 * (n * n - 5.0 * n + 2.0) / ((n + 7.0) * (n + 9.0))
                  * np.sqrt(6.0 * (n + 3.0) * (n + 5.0) / (n * (n - 2.0) * (n - 3.0))))
    a = 6.0 + 8.0 / root_beta1 * (2.0 / root_beta1 + np.sqrt(1.0 + 4.0 / root_beta1**2))
    z_kurtosis = ((1.0 - 2.0 / (9.0 * a)) - np.cbrt((1.0 - 2.0 / a) / (1.0 + x * np.sqrt(2.0 / (a - 4.0))))) \
        / np.sqrt(2.0 / (9.0 * a))
    statistic = z_skew**2 + z_kurtosis**2
    return float(statistic), float(scipy.stats.chi2.sf(statistic, 2))


def _fitted_partition(frame_or_array, coef, intercept):
    values = np.asarray(frame_or_array, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    fitted = values @ coef + intercept
    if isinstance(frame_or_array, pd.DataFrame):
        return pd.Series(fitted, index=frame_or_array.index, dtype=np.float64)
    return fitted


class DaskLinearRegression(_DaskOnly, LinearRegression):
    """`LinearRegression` (OLS with statsmodels' report, exact on ill-conditioned designs) on Dask data.

    Args:
        fit_intercept, refine: as `LinearRegression` (`refine="auto"` decides on the same rule).

    The scaled design, its Q factor and the residual stay in the workers' memory during the fit (about
    three times the design's size); only (p, p) pieces travel to the client. Sample weights are not
    supported here (`weights_` is 1.0). `resid_` and `fittedvalues_` are lazy Dask collections computed
    from X and y with the fitted coefficients (they differ from the fit's double-double residual by
    rounding); `predict` takes in-memory data or a Dask collection (then lazily).

    Attributes: those of `LinearRegression`, and `partitions_` (number of partitions).
    """

    def fit(self, X, y, *, columns=None):
        """Fits by least squares over the partitions of a Dask DataFrame or Array; returns self.

        Args: X, y and columns as `DaskLogisticRegression.fit` (y any real numbers).

        Raises:
            ValueError: missing or non-numeric columns, NaN/inf (partition, row and column named),
                mismatched partitions, fewer rows than parameters.
            SingularDesignError: collinear columns (named).
        """
        if self.fit_intercept not in (True, False):
            raise ValueError(f"fit_intercept must be True or False; got fit_intercept={self.fit_intercept!r}.")
        if self.refine not in _REFINE:
            raise ValueError(f"refine must be one of {_REFINE}; got refine={self.refine!r}.")
        dask = _dask()
        data = _Partitions(X, y, columns, fit_intercept=self.fit_intercept, binary=False, persist=False)
        design, names = data.design, data.design.names
        n, p = data.rows, len(names)
        if n <= p:
            raise ValueError(f"Need more rows than parameters; got {n} rows for {p} parameters.")
        norms = np.sqrt(data.squares)
        norms[norms == 0] = 1.0
        qr = _TallSkinnyQR(data.parts, np.exp2(np.round(np.log2(norms))))
        collinear = dependent_columns(qr.R, names, max(n, p) * 16 * _EPS)
        if collinear:
            raise SingularDesignError(
                f"The design is singular: column(s) {collinear} are linearly dependent (or all zero), "
                "so the coefficients are not identified. Drop one of them."
            )
        refine = self.refine if self.refine != "auto" else (n * p <= 2_000_000 or qr.cond > 1e4)
        beta, residuals = qr.lstsq(refine=refine)
        sweeps = qr.iterations
        inverse_gram = qr.inverse_gram(refine=refine)

        k_constant = 1 if (design.intercept_name or _design.constant_columns(design.X)) else 0
        y_center = data.y_sum / n if k_constant else 0.0
        sums = dask.compute(*[_remote(_residual_sums)(block, residual, y_center)
                              for block, residual in zip(qr.blocks, residuals)])
        mean = sum(s["total"] for s in sums) / n
        moments = np.sum(dask.compute(*[_remote(_central_moments)(residual, mean) for residual in residuals]),
                         axis=0) / n
        self._set_results(design, data.y_name, beta, inverse_gram, sums, moments, n, k_constant, qr, sweeps)
        coef, intercept = self._coef_and_intercept()
        self.fittedvalues_ = self._lazy_predict(X, design.feature_names, coef, intercept)
        self.resid_ = _target_collection(X, y) - self.fittedvalues_
        self.partitions_ = len(data.parts)
        self.formula_ = None
        return self

    def _set_results(self, design, y_name, beta, inverse_gram, sums, moments, n, k_constant, qr, sweeps):
        """The attributes `LinearRegression._fit_design` sets, from the partitions' sums."""
        ssr = sum(s["ssr"] for s in sums)
        tss = sum(s["tss"] for s in sums)
        self._set_statistics(design, y_name, n, beta, inverse_gram, ssr, tss, k_constant, qr, sweeps)
        self.weights_ = 1.0
        self._diagnostics = _residual_diagnostics(sums, moments, n)
        self._date = self._fit_time()
        self.__dict__.pop("_summary_cache", None)

    @staticmethod
    def _lazy_predict(X, columns, coef, intercept):
        frames = sys.modules.get("dask.dataframe")
        apply = functools.partial(_Portable(_fitted_partition), coef=coef, intercept=intercept)
        if frames is not None and isinstance(X, frames.DataFrame):
            return X[list(columns)].map_partitions(apply, meta=pd.Series(dtype=np.float64))
        return X.rechunk({1: -1}).map_blocks(apply, drop_axis=1, dtype=np.float64)

    def predict(self, X):
        """The fitted linear predictor; lazily per partition for a Dask collection (columns as fitted)."""
        self._check_fitted()
        dask = sys.modules.get("dask")
        if dask is not None and dask.is_dask_collection(X):
            coef, intercept = self._coef_and_intercept()
            return self._lazy_predict(X, self.design_.feature_names, coef, intercept)
        return super().predict(X)


def _target_collection(X, y):
    return X[y] if isinstance(y, str) else (y[:, 0] if getattr(y, "ndim", 1) == 2 else y)


def _residual_diagnostics(sums, moments, n):
    """The Omnibus, skewness, kurtosis, Jarque-Bera and Durbin-Watson of `LinearRegression`'s report."""
    m2, m3, m4 = moments
    skew = m3 / m2**1.5
    kurtosis = m4 / m2**2
    jb = n / 6.0 * (skew**2 + (kurtosis - 3.0) ** 2 / 4.0)
    steps = sum(s["steps"] for s in sums)
    ends = [s for s in sums if s["rows"]]
    steps += sum((b["first"] - a["last"]) ** 2 for a, b in zip(ends[:-1], ends[1:]))  # across partition boundaries
    omnibus, omnibus_p = _omnibus(float(n), skew, kurtosis)
    return dict(jb=jb, jb_p=float(scipy.stats.chi2.sf(jb, 2)), skew=skew, kurtosis=kurtosis, omnibus=omnibus,
                omnibus_p=omnibus_p, durbin_watson=steps / sum(s["squares"] for s in sums))
