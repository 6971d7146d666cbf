"""The error measure behind the README's SVM claim: each decision value of a compiled SVM is within
1e-6 of the sum of the magnitudes of its terms, `|b| + sum_i |alpha_i K(x, sv_i)|`, of scikit-learn's.

A bound relative to the value itself cannot hold in float32: the terms of a value near zero cancel, and
their float32 rounding, of the order of the terms, remains.
"""

import numpy as np
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.svm import SVR, LinearSVC

from keras_models.classical.compile_svm import pairwise_coefficients


def term_magnitudes(estimator, x):
    """`(samples, decision values)`: `|b| + sum_i |alpha_i K(x, sv_i)|` in float64 for a fitted SVM.

    `SVC` gives one column per one-vs-one pair (LIBSVM's order), `SVR` one, `LinearSVC` one per class
    (one for binary), whose terms are the products `w_j x_j`.
    """
    x = np.asarray(x, np.float64)
    if isinstance(estimator, LinearSVC):
        return np.abs(np.atleast_1d(estimator.intercept_)) + np.abs(x) @ np.abs(np.atleast_2d(estimator.coef_)).T
    kernel = pairwise_kernels(x, estimator.support_vectors_, metric=estimator.kernel, gamma=estimator._gamma,
                              degree=estimator.degree, coef0=estimator.coef0, filter_params=True)
    if isinstance(estimator, SVR):
        coefficients = estimator.dual_coef_.T
    else:
        coefficients = pairwise_coefficients(estimator.dual_coef_, estimator.n_support_)
    return np.abs(estimator.intercept_) + np.abs(kernel) @ np.abs(coefficients)


def decision_error(estimator, x, ours, expected):
    """The largest `|ours - expected|` over all decision values, in units of their term magnitudes."""
    ours = np.asarray(ours, np.float64)
    expected = np.asarray(expected, np.float64).reshape(ours.shape)
    return float(np.max(np.abs(ours - expected) / term_magnitudes(estimator, x)))
