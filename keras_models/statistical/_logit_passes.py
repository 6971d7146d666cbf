"""The TensorFlow engine of the Logit fits: one XLA-compiled float64 pass over a chunk of data.

Imported by `keras_models.statistical.logistic` when a Logit is fitted, so that importing the family
does not import TensorFlow under the JAX or PyTorch backends.
"""

from __future__ import annotations

import tensorflow as tf


@tf.function(jit_compile=True)
def binary_chunk_statistics(X, y, mask, beta):
    """Log-likelihood, score, information and max |y - p| of one chunk of a binary Logit.

    Args: X (rows, p), y (rows,), mask (rows,) with 0 on padding, beta (p,); all float64.
    """
    eta = tf.linalg.matvec(X, beta)  # (rows,)
    loglik = tf.reduce_sum(mask * (y * eta - tf.math.softplus(eta)))
    p = tf.math.sigmoid(eta)
    score = tf.linalg.matvec(X, mask * (y - p), transpose_a=True)  # (p,)
    weights = mask * p * (1.0 - p)
    information = tf.matmul(X, X * weights[:, None], transpose_a=True)  # (p, p)
    worst = tf.reduce_max(mask * tf.abs(y - p))
    return loglik, score, information, worst


@tf.function(jit_compile=True)
def multinomial_chunk_statistics(X, Y, mask, beta):
    """The same for a multinomial Logit: Y (rows, J) one-hot of the non-reference classes, beta (J, p).

    Returns the log-likelihood, score (J, p), information (J, p, J, p) and max |Y - P|.
    """
    eta = tf.matmul(X, beta, transpose_b=True)  # (rows, J)
    full = tf.concat([tf.zeros_like(eta[:, :1]), eta], axis=1)  # (rows, J + 1), reference logit 0
    log_norm = tf.reduce_logsumexp(full, axis=1)  # (rows,)
    loglik = tf.reduce_sum(mask * (tf.reduce_sum(Y * eta, axis=1) - log_norm))
    P = tf.exp(eta - log_norm[:, None])  # (rows, J)
    score = tf.matmul(Y - P, X * mask[:, None], transpose_a=True)  # (J, p)
    W = tf.linalg.diag(P) - P[:, :, None] * P[:, None, :]  # (rows, J, J)
    W = W * mask[:, None, None]
    information = tf.einsum("njl,na,nb->jalb", W, X, X)  # (J, p, J, p)
    reference = 1.0 - tf.reduce_sum(Y, axis=1) - (1.0 - tf.reduce_sum(P, axis=1))
    worst = tf.maximum(tf.reduce_max(mask[:, None] * tf.abs(Y - P)), tf.reduce_max(mask * tf.abs(reference)))
    return loglik, score, information, worst


STATISTICS = {"binary": binary_chunk_statistics, "multinomial": multinomial_chunk_statistics}


def chunk_tensors(X, y, mask):
    """One chunk's numpy arrays as the float64 tensors the passes take."""
    return tf.constant(X, tf.float64), tf.constant(y, tf.float64), tf.constant(mask, tf.float64)


def newton_pass(chunks, kind, beta):
    """Sums the statistics of every chunk of `chunks()` at `beta` (numpy); `kind` "binary" or "multinomial".

    Returns numpy float64 `(loglik, score, information, worst, rows)`.
    """
    statistics = STATISTICS[kind]
    beta = tf.constant(beta, tf.float64)
    totals, rows, worst = None, 0.0, 0.0
    for X, y, mask in chunks():
        loglik, score, information, chunk_worst = statistics(X, y, mask, beta)
        values = (float(loglik), score.numpy(), information.numpy())
        totals = values if totals is None else tuple(a + b for a, b in zip(totals, values))
        worst = max(worst, float(chunk_worst))
        rows += float(tf.reduce_sum(mask))
    return (*totals, worst, rows)
