"""Registry entries and the tour case of the classical family."""

from __future__ import annotations

import time

from keras_models.classical import estimators
from keras_models.registry import register_model
from keras_models.tour import TourResult, tour_case

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


@tour_case("classical", "random_forest")
def _tour_random_forest(verbose: bool):
    from keras_models.data import load_breast_cancer

    (x_train, y_train), (x_test, y_test) = load_breast_cancer(standardize=False)
    forest = estimators.RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0)
    start = time.perf_counter()
    forest.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    model = forest.to_keras(name="random_forest")
    accuracy = float((model.predict(x_test, verbose=1 if verbose else 0).argmax(axis=1) == y_test).mean())
    return TourResult("classical", "random_forest", model, "accuracy", accuracy, seconds, x_test[:16])
