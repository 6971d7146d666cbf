"""scikit-learn-style trees, forests and SVMs, trained by scikit-learn, shipped through `to_keras()`.

Each estimator keeps its keyword-only constructor arguments unchanged (so `sklearn.base.clone` and grid
search work), fits the scikit-learn estimator of the same name in `fit` (kept as `estimator_`), and
checks inputs before predicting: the number of features, numeric values, and NaN where the fitted
model cannot route missing values.

    >>> forest = RandomForestClassifier(n_estimators=100, max_depth=10).fit(x, y)
    >>> model = forest.to_keras()  # a Keras model whose output equals forest.predict_proba
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from keras_models.classical.compile_svm import KERNELS


class _Wrapped(BaseEstimator):
    """What every estimator here shares: fitting the scikit-learn estimator and checking inputs."""

    _sklearn_path: str  # "module.Class" of the scikit-learn estimator trained underneath

    def _sklearn_class(self):
        import importlib

        module, name = self._sklearn_path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)

    def _validate_params(self):
        """Checks our own constraints; scikit-learn checks the rest when fitting."""

    def _supports_missing(self) -> bool:
        from sklearn.utils import get_tags

        return bool(get_tags(self.estimator_).input_tags.allow_nan)

    def _check_x(self, x, *, fitting: bool):
        name = type(self).__name__
        if hasattr(x, "columns"):  # data frames keep their column names for scikit-learn
            values = x.to_numpy()
        else:
            values = np.asarray(x)
        if values.ndim != 2:
            raise ValueError(f"X must be 2-D (samples, features); got an array of shape {values.shape}.")
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise ValueError(f"X must be numeric; got dtype {values.dtype}.")
        if not fitting and values.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {values.shape[1]} features, but {name} was fitted with {self.n_features_in_}."
            )
        values = values.astype(np.float64)
        if np.isinf(values).any():
            raise ValueError(f"X contains infinity at {tuple(np.argwhere(np.isinf(values))[0])}.")
        if np.isnan(values).any():
            supported = self._supports_missing() if not fitting else self._would_support_missing()
            if not supported:
                column = int(np.argwhere(np.isnan(values))[0][1])
                raise ValueError(
                    f"X contains NaN (first in column {column}); {name} with these parameters does not "
                    "support missing values. Impute them first."
                )
        return x if hasattr(x, "columns") else values

    def _would_support_missing(self) -> bool:
        from sklearn.utils import get_tags

        return bool(get_tags(self._make_estimator()).input_tags.allow_nan)

    def _make_estimator(self):
        return self._sklearn_class()(**self.get_params())

    def fit(self, X, y, sample_weight=None):
        """Fits the scikit-learn estimator on `X` `(samples, features)` and `y`; returns `self`."""
        self._validate_params()
        X = self._check_x(X, fitting=True)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}.")
        self.estimator_ = self._make_estimator().fit(X, y, sample_weight=sample_weight)
        self.n_features_in_ = self.estimator_.n_features_in_
        if hasattr(self.estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.estimator_.feature_names_in_
        if hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        return self

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._check_x(X, fitting=False))

    def to_keras(self, *, strategy: str = "auto", output: str = "auto", name: str | None = None):
        """The fitted model as a Keras model of plain tensor ops; see `compile_sklearn`."""
        from keras_models.classical.compiler import compile_sklearn

        check_is_fitted(self, "estimator_")
        return compile_sklearn(self.estimator_, strategy=strategy, output=output, name=name)


class _TreeMixin:
    @property
    def feature_importances_(self):
        check_is_fitted(self, "estimator_")
        return self.estimator_.feature_importances_


class _ClassifierWrapped(ClassifierMixin, _Wrapped):
    pass


class _ProbaMixin:
    def predict_proba(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._check_x(X, fitting=False))


class DecisionTreeClassifier(_TreeMixin, _ProbaMixin, _ClassifierWrapped):
    """A CART decision tree classifier (Breiman et al., "Classification and Regression Trees", 1984).

    Args: as `sklearn.tree.DecisionTreeClassifier`, whose defaults they keep.
    """

    _sklearn_path = "sklearn.tree.DecisionTreeClassifier"

    def __init__(self, *, criterion="gini", max_depth=None, min_samples_split=2, min_samples_leaf=1,
                 max_features=None, class_weight=None, random_state=None):
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.class_weight = class_weight
        self.random_state = random_state


class DecisionTreeRegressor(_TreeMixin, RegressorMixin, _Wrapped):
    """A CART regression tree (Breiman et al., 1984). Args as `sklearn.tree.DecisionTreeRegressor`."""

    _sklearn_path = "sklearn.tree.DecisionTreeRegressor"

    def __init__(self, *, criterion="squared_error", max_depth=None, min_samples_split=2, min_samples_leaf=1,
                 max_features=None, random_state=None):
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state


class RandomForestClassifier(_TreeMixin, _ProbaMixin, _ClassifierWrapped):
    """A random forest classifier (Breiman, "Random Forests", Machine Learning 45, 2001).

    Args: as `sklearn.ensemble.RandomForestClassifier`, whose defaults they keep.
    """

    _sklearn_path = "sklearn.ensemble.RandomForestClassifier"

    def __init__(self, *, n_estimators=100, criterion="gini", max_depth=None, min_samples_leaf=1,
                 max_features="sqrt", bootstrap=True, class_weight=None, n_jobs=None, random_state=None):
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state


class RandomForestRegressor(_TreeMixin, RegressorMixin, _Wrapped):
    """A random forest regressor (Breiman, 2001). Args as `sklearn.ensemble.RandomForestRegressor`."""

    _sklearn_path = "sklearn.ensemble.RandomForestRegressor"

    def __init__(self, *, n_estimators=100, criterion="squared_error", max_depth=None, min_samples_leaf=1,
                 max_features=1.0, bootstrap=True, n_jobs=None, random_state=None):
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state


def _check_kernel(kernel):
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}; got kernel={kernel!r}.")


class SVMClassifier(_ClassifierWrapped):
    """A support vector classifier (Cortes and Vapnik, "Support-Vector Networks", 1995), LIBSVM's
    one-vs-one scheme for several classes.

    Args:
        kernel: `"linear"`, `"rbf"`, `"poly"` or `"sigmoid"`.
        C, gamma, degree, coef0, class_weight, decision_function_shape, break_ties, random_state: as
            `sklearn.svm.SVC`.
    """

    _sklearn_path = "sklearn.svm.SVC"

    def __init__(self, *, kernel="rbf", C=1.0, gamma="scale", degree=3, coef0=0.0, class_weight=None,
                 decision_function_shape="ovr", break_ties=False, random_state=None):
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.class_weight = class_weight
        self.decision_function_shape = decision_function_shape
        self.break_ties = break_ties
        self.random_state = random_state

    def _validate_params(self):
        _check_kernel(self.kernel)

    def _supports_missing(self) -> bool:
        return False

    _would_support_missing = _supports_missing

    def decision_function(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self._check_x(X, fitting=False))


class SVMRegressor(RegressorMixin, _Wrapped):
    """Support vector regression (Drucker et al., "Support Vector Regression Machines", 1997).

    Args:
        kernel: `"linear"`, `"rbf"`, `"poly"` or `"sigmoid"`.
        C, epsilon, gamma, degree, coef0: as `sklearn.svm.SVR`.
    """

    _sklearn_path = "sklearn.svm.SVR"

    def __init__(self, *, kernel="rbf", C=1.0, epsilon=0.1, gamma="scale", degree=3, coef0=0.0):
        self.kernel = kernel
        self.C = C
        self.epsilon = epsilon
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0

    def _validate_params(self):
        _check_kernel(self.kernel)

    def _supports_missing(self) -> bool:
        return False

    _would_support_missing = _supports_missing
