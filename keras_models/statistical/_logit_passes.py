"""The engine of the Logit fits: one float64 pass of Newton's method over rows in memory, in files or in a
Dask partition.

A pass at `beta` returns the log-likelihood, the score `X'(y - p)`, the information `X'WX` and the
largest |y - p| (the separation check). Rows are taken `chunk_rows` at a time so that every intermediate
stays in the CPU cache: per chunk, one BLAS matrix-vector product gives the linear predictor, the
elementwise work runs on vectors of `chunk_rows`, and the information is accumulated as `S'S` with
`S = sqrt(W) X` (NumPy hands `S.T @ S` to BLAS syrk: half the work of `X'(WX)`, exactly symmetric). No
(n, p) temporary is ever made. With `constant=True` the intercept's column of ones is not stored: its
row and column of the sums come from sums of the residuals and weights, so an intercept costs no copy of
the data.

`newton_pass` cuts the rows of each batch into `LANES` contiguous blocks summed on threads (NumPy and BLAS
release the GIL), with BLAS itself held to one thread meanwhile (several BLAS threads per call oversubscribe
the cores and spin), and adds the blocks in a fixed order: the numbers do not depend on the number of cores.

NumPy and SciPy only: the Dask workers run `binary_statistics` by value (`dask_fit._Portable`), and fitting
a Logit needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import scipy.special

# 8192 x 20 float64 = 1.25 MiB: a chunk and its scaled copy per lane stay in the shared cache, with half
# the NumPy and BLAS calls of 4096 rows (a 1M x 20 fit 16% faster side by side: benchmarks/logit_scale.py).
CHUNK_ROWS = 8192
LANES = 2  # row blocks of a batch summed on separate threads


def _chunks(n, chunk_rows):
    return ((start, min(start + chunk_rows, n)) for start in range(0, n, chunk_rows))


def binary_statistics(X, y, beta, *, constant=False, chunk_rows=CHUNK_ROWS):
    """A binary Logit's sums over the rows of `X` at `beta`, taken `chunk_rows` rows at a time.

    Args:
        X: (n, k) float64 features.
        y: (n,) float64 of 0 and 1.
        beta: (k,) coefficients, or (k + 1,) with the intercept first when `constant`.
        constant: X lacks the intercept's column of ones; the sums include it as the first column.

    Returns:
        (loglik, score (p,), information (p, p), max |y - p|, rows) in float64.
    """
    n, k = X.shape
    coef, intercept = (beta[1:], beta[0]) if constant else (beta, 0.0)
    loglik, worst = 0.0, 0.0
    score, gram = np.zeros(k), np.zeros((k, k))
    residual_sum, weight_sum, weighted_columns = 0.0, 0.0, np.zeros(k)
    for start, stop in _chunks(n, chunk_rows):
        x, sign = X[start:stop], 2.0 * y[start:stop] - 1.0  # sign: +1 where y = 1, -1 where y = 0
        observed = sign * (x @ coef + intercept)  # (rows,) log-odds of the outcome that was observed
        fitted = scipy.special.expit(observed)  # P(observed outcome)
        missed = scipy.special.expit(-observed)  # 1 - fitted, accurate where it is tiny
        with np.errstate(divide="ignore"):
            chunk_loglik = np.sum(np.log(fitted))
        if not np.isfinite(chunk_loglik):  # fitted underflowed to 0 (observed < -745)
            chunk_loglik = -np.sum(np.logaddexp(0.0, -observed))
        loglik += chunk_loglik
        residual = sign * missed  # y - p
        weight = fitted * missed  # p (1 - p)
        worst = max(worst, float(np.max(missed)))
        score += x.T @ residual
        scaled = x * np.sqrt(weight)[:, None]
        gram += scaled.T @ scaled
        if constant:
            residual_sum += np.sum(residual)
            weight_sum += np.sum(weight)
            weighted_columns += x.T @ weight
    if constant:
        score = np.concatenate([[residual_sum], score])
        gram = np.block([[np.array([[weight_sum]]), weighted_columns[None, :]], [weighted_columns[:, None], gram]])
    return loglik, score, gram, worst, float(n)


def multinomial_statistics(X, Y, beta, *, constant=False, chunk_rows=CHUNK_ROWS):
    """The same for a multinomial Logit: Y (n, J) one-hot of the non-reference classes, beta (J, p).

    Returns the log-likelihood, score (J, p), information (J, p, J, p), max |Y - P| over every class
    (the reference class included) and the number of rows.
    """
    n = len(X)
    J, p = beta.shape
    loglik, worst = 0.0, 0.0
    score, information = np.zeros((J, p)), np.zeros((J, p, J, p))
    for start, stop in _chunks(n, chunk_rows):
        x, target = X[start:stop], Y[start:stop]
        if constant:
            x = np.column_stack([np.ones(len(x)), x])
        eta = x @ beta.T  # (rows, J)
        log_norm = scipy.special.logsumexp(np.column_stack([np.zeros(len(x)), eta]), axis=1)  # reference logit 0
        loglik += np.sum(np.sum(target * eta, axis=1) - log_norm)
        P = np.exp(eta - log_norm[:, None])  # (rows, J)
        score += (target - P).T @ x
        for j in range(J):
            for l in range(j, J):
                block = x.T @ (x * (P[:, j] * ((j == l) - P[:, l]))[:, None])  # (p, p)
                information[j, :, l, :] += block
                if l != j:
                    information[l, :, j, :] += block.T
        reference = np.sum(P, axis=1) - np.sum(target, axis=1)  # y - p of the reference class
        worst = max(worst, float(np.max(np.abs(target - P), initial=0.0)), float(np.max(np.abs(reference), initial=0.0)))
    return loglik, score, information, worst, float(n)


def add_statistics(*parts):
    """Adds the `(loglik, score, information, worst, rows)` of several blocks of rows, in order."""
    loglik, score, information, worst, rows = zip(*parts)
    return sum(loglik), sum(score), sum(information), max(worst), sum(rows)


@functools.cache
def _threads(process_id):
    """The thread pool of the lanes, and a controller that holds BLAS to one thread while they run.

    Keyed by process id: a process forked from one that used the pool gets its own (threads do not
    survive a fork).
    """
    from concurrent.futures import ThreadPoolExecutor

    import threadpoolctl

    return ThreadPoolExecutor(max_workers=min(LANES, os.cpu_count() or 1)), threadpoolctl.ThreadpoolController()


def _lanes(X, y, chunk_rows):
    """A batch as `LANES` contiguous blocks of rows when it has enough rows to share, else whole."""
    n = len(X)
    if n < LANES * chunk_rows:
        return [(X, y)]
    bounds = [n * lane // LANES for lane in range(LANES + 1)]
    return [(X[start:stop], y[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:])]


def newton_pass(batches, statistics, beta, *, constant=False, chunk_rows=CHUNK_ROWS):
    """Sums `statistics` (`binary_statistics` or `multinomial_statistics`) at `beta` over `(X, y)` batches.

    `batches` is any iterable (a list in memory, a generator reading files): batches are read one at a
    time. Each is cut into `LANES` blocks of rows (`_lanes`) summed on threads.
    """
    pool, controller = _threads(os.getpid())

    def block_sums(block):
        return statistics(*block, beta, constant=constant, chunk_rows=chunk_rows)

    with controller.limit(limits=1, user_api="blas"):
        return add_statistics(*(add_statistics(*pool.map(block_sums, _lanes(X, y, chunk_rows)))
                                for X, y in batches))
