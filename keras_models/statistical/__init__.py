"""Statistical models: linear and logistic regression with statsmodels-grade fits and reports.

    >>> from keras_models.statistical import LinearRegression, LogisticRegression
    >>> ols = LinearRegression().fit(X, y)          # or LinearRegression.from_formula("y ~ x1 + C(g)", df)
    >>> print(ols.summary())                        # statsmodels' OLS table, with our numbers
    >>> logit = LogisticRegression().fit_stream("data_dir/")   # exact MLE, streamed in chunks
    >>> logit = DaskLogisticRegression().fit(frame, "y")      # the same fit over a Dask DataFrame's partitions
    >>> export.to_tflite(logit.to_keras(), "logit.tflite")

Estimators follow scikit-learn's conventions (keyword-only arguments, `fit` returns self, learned
values end in `_`, `sklearn.base.clone` works); `summary()` returns a statsmodels `Summary`.
Every fit runs on NumPy and SciPy (float64, BLAS), under every Keras backend; only `to_keras()` builds
a Keras model.
"""

from __future__ import annotations

from keras_models.registry import register_model
from keras_models.statistical.dask_fit import DaskLinearRegression, DaskLogisticRegression
from keras_models.statistical.linear import LinearRegression
from keras_models.statistical.logistic import LogisticRegression, MultinomialLogisticRegression
from keras_models.statistical.results import ConvergenceWarning, PerfectSeparationError, SingularDesignError

__all__ = [
    "ConvergenceWarning",
    "DaskLinearRegression",
    "DaskLogisticRegression",
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
    description="Binary Logit by exact float64 Newton/IRLS, in memory or streamed from files",
)(LogisticRegression)
register_model(
    "multinomial_logistic_regression", family="statistical",
    description="Multinomial Logit (statsmodels' MNLogit) by exact float64 Newton steps",
)(MultinomialLogisticRegression)
