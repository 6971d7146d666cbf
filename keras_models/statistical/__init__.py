"""Statistical models: linear and logistic regression with statsmodels-grade fits and reports.

    >>> from keras_models.statistical import LinearRegression, LogisticRegression
    >>> ols = LinearRegression().fit(X, y)          # or LinearRegression.from_formula("y ~ x1 + C(g)", df)
    >>> print(ols.summary())                        # statsmodels' OLS table, with our numbers
    >>> logit = LogisticRegression().fit_stream("data_dir/")   # exact MLE, streamed in chunks
    >>> export.to_tflite(logit.to_keras(), "logit.tflite")

Estimators follow scikit-learn's conventions (keyword-only arguments, `fit` returns self, learned
values end in `_`, `sklearn.base.clone` works); `summary()` returns a statsmodels `Summary`.
"""

from __future__ import annotations

import time

from keras_models.registry import register_model
from keras_models.statistical.linear import LinearRegression
from keras_models.statistical.logistic import LogisticRegression, MultinomialLogisticRegression
from keras_models.statistical.results import ConvergenceWarning, PerfectSeparationError, SingularDesignError
from keras_models.tour import TourResult, tour_case

__all__ = [
    "ConvergenceWarning",
    "LinearRegression",
    "LogisticRegression",
    "MultinomialLogisticRegression",
    "PerfectSeparationError",
    "SingularDesignError",
]

register_model(
    "linear_regression", family="statistical",
    description="Ordinary/weighted least squares with statsmodels' OLS report, exact on ill-conditioned designs",
)(LinearRegression)
register_model(
    "logistic_regression", family="statistical",
    description="Binary Logit by XLA-compiled Newton/IRLS, in memory or streamed from files",
)(LogisticRegression)
register_model(
    "multinomial_logistic_regression", family="statistical",
    description="Multinomial Logit (statsmodels' MNLogit) by XLA-compiled Newton steps",
)(MultinomialLogisticRegression)

# Breast-cancer columns for the tour: with all 30 the classes are linearly separable and the Logit
# MLE does not exist; these five keep it finite.
TOUR_FEATURES = (0, 1, 4, 7, 9)  # mean radius, texture, smoothness, concave points, fractal dimension


@tour_case("statistical", "logistic_regression")
def _tour_logit(verbose: bool):
    import numpy as np

    from keras_models.data import load_breast_cancer

    (x_train, y_train), (x_test, y_test) = load_breast_cancer()
    columns = list(TOUR_FEATURES)
    x_train, x_test = x_train[:, columns].astype(np.float64), x_test[:, columns].astype(np.float64)
    start = time.perf_counter()
    model = LogisticRegression(verbose=verbose).fit(x_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(x_test) == y_test))
    return TourResult("statistical", "logistic_regression", model.to_keras(), "accuracy", accuracy, seconds,
                      x_test[:16].astype(np.float32))
