"""Fitted scikit-learn support vector machines as plain tensor operations.

An `SVC` decides between every pair of classes (one-vs-one, as in LIBSVM: Chang and Lin, "LIBSVM: A
library for support vector machines", ACM TIST 2011) and predicts the class with most votes, the lowest
class index among ties. `KernelExpansion` computes the pairwise decision values
`sum_s coef[p, s] * K(x, sv_s) + intercept[p]`; `OneVsOneVotes` counts the votes.

Precision. The graphs compute in float32 where scikit-learn uses float64. Each decision value
`b + sum_s alpha_s K(x, sv_s)` is within 1e-6 of `|b| + sum_s |alpha_s K(x, sv_s)|` (the sum of the
magnitudes of its terms) of scikit-learn's: a bound relative to each value cannot hold in float32 where
the terms cancel to near zero. The RBF kernel takes `|x - sv|^2` from the differences, feature by
feature: the shortcut `|x|^2 + |sv|^2 - 2 x.sv` cancels the norms, and with standardized pixels
(norms in the thousands) that alone cost up to 1e-5 of a kernel value. The differences take
`batch x support vectors x features` floats of working memory; the support vectors are stored centred
on their mean (in float64 at compile time) so they keep more of their digits in float32.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_models.checks import check_features

KERNELS = ("linear", "rbf", "poly", "sigmoid")


@keras.saving.register_keras_serializable(package="keras_models")
class KernelExpansion(keras.layers.Layer):
    """`K(x, support_vectors) @ coefficients + intercept` for the kernels of scikit-learn's SVMs.

    Args:
        kernel: `"linear"`, `"rbf"`, `"poly"` or `"sigmoid"`.
        n_features: input features.
        n_support: support vectors.
        n_outputs: decision values (pairs of classes, or 1).
        gamma, degree, coef0: the kernel parameters, as scikit-learn defines them.
    """

    def __init__(self, kernel, n_features, n_support, n_outputs, gamma=1.0, degree=3, coef0=0.0, **kwargs):
        super().__init__(**kwargs)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}; got kernel={kernel!r}.")
        for arg, value in (("n_features", n_features), ("n_support", n_support), ("n_outputs", n_outputs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive integer; got {arg}={value!r}.")
        if not isinstance(degree, int) or degree < 0:
            raise ValueError(f"degree must be a non-negative integer; got degree={degree!r}.")
        self.kernel = kernel
        self.n_features = n_features
        self.n_support = n_support
        self.n_outputs = n_outputs
        self.gamma = float(gamma)
        self.degree = degree
        self.coef0 = float(coef0)
        self.support_vectors = self.add_weight(
            name="support_vectors", shape=(n_support, n_features), initializer="zeros", trainable=False
        )
        # The RBF kernel works on centered vectors; `center` is zero for the other kernels.
        self.center = self.add_weight(name="center", shape=(n_features,), initializer="zeros", trainable=False)
        self.coefficients = self.add_weight(
            name="coefficients", shape=(n_support, n_outputs), initializer="zeros", trainable=False
        )
        self.intercept = self.add_weight(name="intercept", shape=(n_outputs,), initializer="zeros", trainable=False)
        self.built = True

    def set_support(self, support_vectors, coefficients, intercept):
        """Assigns float64 support vectors `(n_support, n_features)`, coefficients and intercepts."""
        support_vectors = np.asarray(support_vectors, np.float64)
        center = support_vectors.mean(axis=0) if self.kernel == "rbf" else np.zeros(self.n_features)
        centered = support_vectors - center
        self.support_vectors.assign(centered.astype(np.float32))
        self.center.assign(center.astype(np.float32))
        self.coefficients.assign(np.asarray(coefficients, np.float32).reshape(self.n_support, self.n_outputs))
        self.intercept.assign(np.asarray(intercept, np.float32).reshape(self.n_outputs))

    def kernel_matrix(self, x):
        ops = keras.ops
        x = ops.cast(x, "float32")
        if self.kernel == "rbf":
            x = x - self.center
            difference = ops.expand_dims(x, 1) - ops.expand_dims(self.support_vectors, 0)  # (batch, n_support, features)
            squared = ops.sum(ops.square(difference), axis=2)  # (batch, n_support)
            return ops.exp(-self.gamma * squared)
        dot = ops.matmul(x, ops.transpose(self.support_vectors))  # (batch, n_support)
        if self.kernel == "linear":
            return dot
        base = self.gamma * dot + self.coef0
        if self.kernel == "sigmoid":
            return ops.tanh(base)
        result = ops.ones_like(base)
        for _ in range(self.degree):  # an integer power by products: exact sign, builtin MUL only
            result = result * base
        return result

    def call(self, x):
        check_features(x.shape, self.n_features, self.name)
        return keras.ops.matmul(self.kernel_matrix(x), self.coefficients) + self.intercept  # (batch, n_outputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_outputs)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel=self.kernel,
            n_features=self.n_features,
            n_support=self.n_support,
            n_outputs=self.n_outputs,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
        )
        return config


def class_pairs(n_classes: int) -> list[tuple[int, int]]:
    """The class pairs of LIBSVM's one-vs-one decision values, in their order."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


def pairwise_coefficients(dual_coef, n_support_per_class) -> np.ndarray:
    """`(n_support, n_pairs)` coefficients from LIBSVM's `(n_classes - 1, n_support)` dual layout.

    For the pair (i, j), the support vectors of class i carry `dual_coef[j - 1]` and those of class j
    carry `dual_coef[i]`; the others do not take part (zero).
    """
    dual_coef = np.asarray(dual_coef, np.float64)
    n_classes = len(n_support_per_class)
    starts = np.concatenate([[0], np.cumsum(n_support_per_class)])
    pairs = class_pairs(n_classes)
    coefficients = np.zeros((dual_coef.shape[1], len(pairs)))
    for p, (i, j) in enumerate(pairs):
        coefficients[starts[i] : starts[i + 1], p] = dual_coef[j - 1, starts[i] : starts[i + 1]]
        coefficients[starts[j] : starts[j + 1], p] = dual_coef[i, starts[j] : starts[j + 1]]
    return coefficients


@keras.saving.register_keras_serializable(package="keras_models")
class OneVsOneVotes(keras.layers.Layer):
    """Counts one-vs-one votes; `argmax` of the output is LIBSVM's prediction.

    A decision value above zero votes for the first class of its pair, otherwise for the second. The
    output is the vote count plus `(n_classes - k) / (2 * (n_classes + 1))` for class `k`: less than
    half a vote, it makes `argmax` pick the lowest class index among tied counts, as LIBSVM does.

    With `scores="ovr"` it returns scikit-learn's `decision_function_shape="ovr"` scores instead: votes
    plus the summed confidences squashed to (-1/3, 1/3).

    Args:
        n_classes: the number of classes (at least 2).
        scores: `"votes"` or `"ovr"`.
    """

    def __init__(self, n_classes, scores="votes", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2; got n_classes={n_classes!r}.")
        if scores not in ("votes", "ovr"):
            raise ValueError(f"scores must be 'votes' or 'ovr'; got scores={scores!r}.")
        self.n_classes = n_classes
        self.scores = scores
        pairs = class_pairs(n_classes)
        first = np.zeros((len(pairs), n_classes), np.float32)
        second = np.zeros((len(pairs), n_classes), np.float32)
        for p, (i, j) in enumerate(pairs):
            first[p, i] = 1.0
            second[p, j] = 1.0
        self._first = first  # (pairs, classes)
        self._second = second
        self._tie_break = ((n_classes - np.arange(n_classes)) / (2.0 * (n_classes + 1))).astype(np.float32)

    def call(self, decision):
        ops = keras.ops
        if self.scores == "votes":
            wins = ops.cast(ops.greater(decision, 0.0), "float32")  # (batch, pairs)
        else:
            wins = ops.cast(ops.greater_equal(decision, 0.0), "float32")
        votes = ops.matmul(wins, self._first) + ops.matmul(1.0 - wins, self._second)  # (batch, classes)
        if self.scores == "votes":
            return votes + self._tie_break
        confidence = ops.matmul(decision, self._first) - ops.matmul(decision, self._second)
        return votes + confidence / (3.0 * (ops.abs(confidence) + 1.0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_classes)

    def get_config(self):
        config = super().get_config()
        config.update(n_classes=self.n_classes, scores=self.scores)
        return config
