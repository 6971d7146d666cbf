"""Registry entries of the classical family."""

from __future__ import annotations

from keras_models.classical import estimators
from keras_models.registry import register_model

_TASKS = ("classification", "regression")


def _check_task(task):
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}; got task={task!r}.")


@register_model("decision_tree", family="classical", description="CART decision tree (scikit-learn), to_keras()")
def decision_tree(task: str = "classification", **params):
    """A `DecisionTreeClassifier` or `DecisionTreeRegressor` (by `task`) with `params`, unfitted."""
    _check_task(task)
    cls = estimators.DecisionTreeClassifier if task == "classification" else estimators.DecisionTreeRegressor
    return cls(**params)


@register_model("random_forest", family="classical", description="Random forest (scikit-learn), to_keras()")
def random_forest(task: str = "classification", **params):
    """A `RandomForestClassifier` or `RandomForestRegressor` (by `task`) with `params`, unfitted."""
    _check_task(task)
    cls = estimators.RandomForestClassifier if task == "classification" else estimators.RandomForestRegressor
    return cls(**params)


@register_model("svm", family="classical", description="Kernel SVM (scikit-learn LIBSVM), to_keras()")
def svm(task: str = "classification", **params):
    """An `SVMClassifier` or `SVMRegressor` (by `task`) with `params`, unfitted."""
    _check_task(task)
    cls = estimators.SVMClassifier if task == "classification" else estimators.SVMRegressor
    return cls(**params)
