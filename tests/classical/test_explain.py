"""Decision rules, tree plots and feature importances."""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from keras_models.classical import RandomForestClassifier, decision_rules, feature_importances, plot_tree


@pytest.fixture(scope="module")
def iris_tree():
    iris = load_iris()
    return iris, DecisionTreeClassifier(max_depth=3, random_state=4).fit(iris.data, iris.target)


def test_decision_rules_for_one_sample(iris_tree):
    iris, tree = iris_tree
    names = dict(feature_names=iris.feature_names, class_names=iris.target_names)
    assert decision_rules(tree, iris.data[0], **names) == "petal length (cm) <= 2.45 -> class setosa"
    rule = decision_rules(tree, iris.data[100], **names)
    assert rule.startswith("petal length (cm) > 2.45 and ")
    assert rule.endswith(f"-> class {iris.target_names[tree.predict(iris.data[100:101])[0]]}")
    # every sample's rule names the class predict gives, and holds for the sample
    for x, predicted in zip(iris.data, tree.predict(iris.data)):
        rule = decision_rules(tree, x, **names)
        assert rule.endswith(f"class {iris.target_names[predicted]}")
        for condition in rule.split(" -> ")[0].split(" and "):
            feature, op, value = condition.rsplit(" ", 2)
            column = x[list(iris.feature_names).index(feature)]
            assert (column <= float(value) + 1e-3) if op == "<=" else (column > float(value) - 1e-3)
    missing = iris.data[0].copy()
    missing[2] = np.nan
    assert decision_rules(tree, missing, **names).startswith("petal length (cm) is missing")
    assert decision_rules(tree, iris.data[0]).startswith("x[2] <= 2.45")


def test_decision_rules_of_a_forest_tree_and_bad_input(iris_tree):
    iris, _ = iris_tree
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(iris.data, iris.target)
    assert " -> class " in decision_rules(forest, iris.data[0], tree=2)
    with pytest.raises(ValueError, match=r"tree must be in \[0, 3\); got tree=3"):
        decision_rules(forest, iris.data[0], tree=3)
    with pytest.raises(ValueError, match=r"x must be one sample of shape \(4,\); got shape \(3,\)"):
        decision_rules(forest, iris.data[0, :3])
    with pytest.raises(TypeError, match="SVC is not a decision tree or forest"):
        decision_rules(SVC().fit(iris.data, iris.target), iris.data[0])
    regressor = RandomForestRegressor(n_estimators=2, max_depth=2, random_state=0).fit(iris.data, iris.data[:, 0])
    assert " -> value " in decision_rules(regressor, iris.data[0], tree=1)


def test_plot_tree_writes_a_png(iris_tree, tmp_path):
    import matplotlib.image

    iris, tree = iris_tree
    path = plot_tree(tree, tmp_path / "tree.png", feature_names=iris.feature_names, class_names=iris.target_names)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # not blank
    with pytest.raises(ValueError, match="plot_tree writes PNG files"):
        plot_tree(tree, tmp_path / "tree.svg")
    with pytest.raises(ValueError, match="does not exist"):
        plot_tree(tree, tmp_path / "missing" / "tree.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.png"]  # nothing half-written


def test_feature_importances(iris_tree):
    iris, tree = iris_tree
    ranked = feature_importances(tree, feature_names=iris.feature_names)
    assert [v for _, v in ranked] == sorted(tree.feature_importances_, reverse=True)
    assert ranked[0][0].startswith("petal")
    assert sum(v for _, v in ranked) == pytest.approx(1.0)
    x = (iris.data - iris.data.mean(0)) / iris.data.std(0)
    linear = LinearSVC().fit(x, iris.target)
    ranked = dict(feature_importances(linear, feature_names=iris.feature_names))
    np.testing.assert_allclose(
        [ranked[n] for n in iris.feature_names], np.abs(linear.coef_).mean(0) / np.abs(linear.coef_).mean(0).sum()
    )
    with pytest.raises(TypeError, match="kernel='rbf' has no feature importances"):
        feature_importances(SVC().fit(x, iris.target))
