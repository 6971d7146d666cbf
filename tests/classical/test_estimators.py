"""The scikit-learn-style estimators, their registry entries and the tour case."""

import keras
import numpy as np
import pytest
import sklearn.ensemble
import sklearn.svm
import sklearn.tree
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

import export
import keras_models
from svm_terms import decision_error

from keras_models.classical import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    SVMClassifier,
    SVMRegressor,
    tree_strategy,
)


def _iris():
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(150)
    return x[order][:110], y[order][:110], x[order][110:], y[order][110:]


def _keras(model, x):
    return keras.ops.convert_to_numpy(model(np.asarray(x, np.float32)))


@pytest.mark.parametrize(
    "ours, theirs, params",
    [
        (DecisionTreeClassifier, sklearn.tree.DecisionTreeClassifier, {"max_depth": 4, "random_state": 0}),
        (RandomForestClassifier, sklearn.ensemble.RandomForestClassifier, {"n_estimators": 15, "random_state": 0}),
        (SVMClassifier, sklearn.svm.SVC, {"kernel": "poly", "C": 2.0}),
    ],
)
def test_classifiers_equal_sklearn_and_to_keras(ours, theirs, params):
    x_train, y_train, x_test, y_test = _iris()
    model = ours(**params)
    assert model.fit(x_train, y_train) is model
    reference = theirs(**params).fit(x_train.astype(np.float32), y_train)
    np.testing.assert_array_equal(model.predict(x_test), reference.predict(x_test))
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    scores = _keras(model.to_keras(), x_test)
    np.testing.assert_array_equal(model.classes_[scores.argmax(1)], model.predict(x_test))
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(scores, model.predict_proba(x_test), rtol=1e-6, atol=1e-7)
    # score is accuracy on held-out labels, the same number scikit-learn's estimator gives
    assert model.score(x_test, y_test) == reference.score(x_test, y_test) > 0.85


@pytest.mark.parametrize(
    "ours, params",
    [
        (DecisionTreeRegressor, {"max_depth": 5}),
        (RandomForestRegressor, {"n_estimators": 10, "max_depth": 5, "random_state": 0}),
        (SVMRegressor, {"kernel": "rbf", "C": 100.0, "epsilon": 1.0}),
    ],
)
def test_regressors_to_keras(ours, params):
    x, y = load_diabetes(return_X_y=True)
    model = ours(**params).fit(x[:350], y[:350])
    compiled = _keras(model.to_keras(), x[350:])
    if ours is SVMRegressor:  # the README's SVM bound, relative to the magnitudes of each value's terms
        assert decision_error(model.estimator_, x[350:], compiled, model.predict(x[350:])[:, None]) <= 1e-6
    else:
        np.testing.assert_allclose(compiled[:, 0], model.predict(x[350:]), rtol=1e-6)
    assert model.score(x[350:], y[350:]) > 0.2  # R^2 on held-out data


def test_params_round_trip_for_clone_and_grid_search():
    model = RandomForestClassifier(n_estimators=7, max_depth=3, random_state=1)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert copy.set_params(max_depth=5).max_depth == 5
    x_train, y_train, _, _ = _iris()
    search = GridSearchCV(SVMClassifier(), {"C": [0.01, 10.0]}, cv=3).fit(x_train, y_train)
    assert search.best_params_ == {"C": 10.0}


def test_bad_input_names_the_problem(tmp_path):
    x_train, y_train, x_test, _ = _iris()
    with pytest.raises(NotFittedError):
        DecisionTreeClassifier().predict(x_test)
    with pytest.raises(NotFittedError):
        SVMClassifier().to_keras()
    with pytest.raises(ValueError, match="kernel must be one of .*got kernel='cubic'"):
        SVMClassifier(kernel="cubic").fit(x_train, y_train)
    tree = DecisionTreeClassifier(max_depth=3).fit(x_train, y_train)
    with pytest.raises(ValueError, match="X has 3 features, but DecisionTreeClassifier was fitted with 4"):
        tree.predict(x_test[:, :3])
    with pytest.raises(ValueError, match="X must be 2-D"):
        tree.predict(x_test[0])
    with pytest.raises(ValueError, match="X must be numeric"):
        tree.predict(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(ValueError, match="X has 110 samples but y has 10"):
        DecisionTreeClassifier().fit(x_train, y_train[:10])
    svm = SVMClassifier().fit(x_train, y_train)
    with_nan = x_test.copy()
    with_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN \(first in column 2\); SVMClassifier .* does not support"):
        svm.predict(with_nan)
    with pytest.raises(ValueError, match="does not support missing values"):
        SVMRegressor().fit(with_nan, np.arange(len(with_nan)))
    # trees route missing values, as scikit-learn does
    assert tree.predict(with_nan).shape == (len(x_test),)
    np.testing.assert_allclose(_keras(tree.to_keras(), with_nan), tree.predict_proba(with_nan), rtol=1e-6)


def test_registry_builds_estimators():
    forest = keras_models.build("random_forest", n_estimators=5, random_state=0)
    assert isinstance(forest, RandomForestClassifier) and forest.n_estimators == 5
    assert isinstance(keras_models.build("svm", task="regression", kernel="linear"), SVMRegressor)
    assert isinstance(keras_models.build("decision_tree", task="regression"), DecisionTreeRegressor)
    with pytest.raises(ValueError, match="task must be one of"):
        keras_models.build("decision_tree", task="clustering")
    names = {info.name for info in keras_models.list_models(family="classical")}
    assert {"decision_tree", "random_forest", "svm", "linear_svm", "rff_svm"} <= names


def test_tour_case_trains_and_exports(tmp_path):
    from export.tour_cases import tour_cases

    [case] = tour_cases(["classical"])
    result = case.run(False)
    assert (case.family, case.model_name) == ("classical", "random_forest")
    assert result.metric >= 0.93  # held-out accuracy on breast cancer; measured 0.958
    assert tree_strategy(result.model) == "perfect"
    report = export.to_tflite(result.model, tmp_path / "forest.tflite")
    assert export.verify(result.model, report.path, result.sample_inputs).max_abs <= 1e-6
