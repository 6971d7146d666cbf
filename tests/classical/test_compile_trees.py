"""compile_sklearn on trees and forests: exactly scikit-learn's branches, in Keras, LiteRT and onnxruntime."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import export
from keras_models.classical import compile_sklearn, float32_thresholds, tree_strategy
from keras_models.classical.compile_trees import choose_strategy
from model_checks import check_model

STRATEGIES = ("matmul", "perfect", "gather")


def _cancer(seed=0):
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order]
    return (x[:400], y[:400]), (x[400:], y[400:])


def _keras(model, x):
    return keras.ops.convert_to_numpy(model(np.asarray(x, np.float32)))


def _edge_inputs(estimator, x):
    """Rows that reach each split, with the split's feature set on the float32 threshold and one ulp
    either side, and at float32(threshold) rounded to nearest."""
    trees = getattr(estimator, "estimators_", [estimator])
    rows = []
    for tree in trees[:5]:
        t = tree.tree_
        paths = tree.decision_path(x).toarray().astype(bool)  # (samples, nodes)
        for node in np.flatnonzero(t.children_left >= 0):
            reaching = np.flatnonzero(paths[:, node])
            base = x[reaching[0]]
            t32 = float32_thresholds(t.threshold[node : node + 1])[0]
            for value in (t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf)),
                          np.float32(t.threshold[node])):
                if not np.isfinite(value):  # the "missing or not" split has threshold +inf
                    continue
                row = base.copy()
                row[t.feature[node]] = value
                rows.append(row)
    return np.asarray(rows, np.float32)


def test_float32_thresholds_reproduce_the_float64_comparison():
    rng = np.random.default_rng(0)
    # thresholds as scikit-learn makes them: float64 midpoints of float32 feature values, plus extremes
    a = rng.normal(size=5000).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, 5000).astype(np.float32)
    b = np.nextafter(a, np.float32(np.inf))
    thresholds = np.concatenate([(a.astype(np.float64) + b) / 2, rng.normal(size=1000), [0.0, -0.0, 1e300, -1e300]])
    t32 = float32_thresholds(thresholds)
    checked = 0
    for step in (-np.inf, None, np.inf):
        x32 = t32 if step is None else np.nextafter(t32, np.float32(step))
        x32 = np.concatenate([x32, thresholds.astype(np.float32)])
        thr = np.concatenate([thresholds, thresholds])
        np.testing.assert_array_equal(x32 <= np.concatenate([t32, t32]), x32.astype(np.float64) <= thr)
        checked += len(x32)
    assert checked == 3 * 2 * len(thresholds)
    # the midpoint of two adjacent float32 values rounds up to b in float32, but only a goes left
    assert np.all(t32[:5000] == a)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", ["tree", "forest", "extra"])
def test_classifier_probabilities_and_classes_equal_sklearn(kind, strategy):
    (x_train, y_train), (x_test, _) = _cancer()
    estimator = {
        "tree": DecisionTreeClassifier(max_depth=7, random_state=0),
        "forest": RandomForestClassifier(n_estimators=12, max_depth=6, min_samples_leaf=3, random_state=0),
        "extra": ExtraTreesClassifier(n_estimators=12, max_depth=6, random_state=0),
    }[kind].fit(x_train, y_train)
    model = compile_sklearn(estimator, strategy=strategy)
    assert tree_strategy(model) == strategy
    for x in (x_test, _edge_inputs(estimator, x_train)):
        expected = estimator.predict_proba(x)
        probabilities = _keras(model, x)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-7)
        assert np.array_equal(estimator.classes_[probabilities.argmax(axis=1)], estimator.predict(x))


def test_edge_inputs_take_both_branches():
    """The edge rows really sit on the split: a one-ulp change moves some of them to another leaf."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    tree = DecisionTreeClassifier(max_depth=6, random_state=0).fit(x, y)
    edges = _edge_inputs(tree, x)
    leaves = tree.apply(edges).reshape(-1, 4)
    assert np.all(leaves[:, 0] != leaves[:, 1])  # at t32 left, one ulp above right
    assert np.all(leaves[:, 0] == leaves[:, 2])
    # float32(threshold) rounded to nearest goes right for some splits: the naive cast would be wrong
    assert np.any(leaves[:, 3] != leaves[:, 0])
    for strategy in STRATEGIES:
        probabilities = _keras(compile_sklearn(tree, strategy=strategy), edges)
        np.testing.assert_allclose(probabilities, tree.predict_proba(edges), rtol=1e-6, atol=1e-7)
        assert np.array_equal(probabilities.argmax(1), tree.predict(edges))


def _forest_with_missing_values():
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(2)
    x = x.astype(np.float32)
    x_train = x.copy()
    x_train[rng.random(x.shape) < 0.15] = np.nan
    forest = RandomForestClassifier(n_estimators=6, max_depth=6, random_state=0).fit(x_train, y)
    rows = x + rng.normal(scale=0.1, size=x.shape).astype(np.float32)
    rows[rng.random(x.shape) < 0.3] = np.nan
    return forest, rows


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_values_follow_sklearn(strategy, tmp_path):
    forest, x_test = _forest_with_missing_values()
    x_test[:5] = np.nan  # all missing
    expected = forest.predict_proba(x_test)
    model = compile_sklearn(forest, strategy=strategy)
    np.testing.assert_allclose(_keras(model, x_test), expected, rtol=1e-6, atol=1e-7)
    assert np.array_equal(_keras(model, x_test).argmax(1), forest.predict(x_test))
    for path in (export.to_tflite(model, tmp_path / "m.tflite").path, export.to_onnx(model, tmp_path / "m.onnx").path):
        np.testing.assert_allclose(export.run_artifact(path, x_test)[0], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_infinite_inputs_branch_like_the_largest_float32(strategy, tmp_path):
    # scikit-learn refuses +-inf, but every real threshold lies strictly between -largest and +largest
    # float32, so an infinite feature takes the branches the largest finite one takes. That holds in
    # the perfect form's padding too, whose +inf thresholds TFLite clamps to the largest float32.
    forest, rows = _forest_with_missing_values()
    rng = np.random.default_rng(3)
    rows[rng.random(rows.shape) < 0.3] = np.inf
    rows[rng.random(rows.shape) < 0.2] = -np.inf
    largest = np.finfo(np.float32).max
    expected = forest.predict_proba(np.clip(rows, -largest, largest))
    model = compile_sklearn(forest, strategy=strategy)
    np.testing.assert_allclose(_keras(model, rows), expected, rtol=1e-6, atol=1e-7)
    for path in (export.to_tflite(model, tmp_path / "m.tflite").path, export.to_onnx(model, tmp_path / "m.onnx").path):
        np.testing.assert_allclose(export.run_artifact(path, rows)[0], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_or_not_split_sends_only_nan_right(strategy, tmp_path):
    # Feature 0 is missing exactly for class 1: scikit-learn splits "missing or not" (threshold +inf,
    # NaN right). Every other value, the largest float32 and +inf included, goes left.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    x[y == 1, 0] = np.nan
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    assert tree.tree_.threshold[0] == np.inf and not tree.tree_.missing_go_to_left[0]
    big = np.finfo(np.float32).max
    finite = np.array([[np.nan, 0.0], [big, 0.0], [-big, 1.0], [0.5, np.nan]], np.float32)
    infinite = np.array([[np.inf, 0.0], [-np.inf, 1.0]], np.float32)  # scikit-learn refuses these
    expected = np.concatenate([tree.predict_proba(finite), tree.predict_proba(finite[1:3])])
    assert not np.allclose(expected[0], expected[1])  # NaN and the rest reach different leaves
    model = compile_sklearn(tree, strategy=strategy)
    rows = np.concatenate([finite, infinite])
    np.testing.assert_array_equal(_keras(model, rows), expected.astype(np.float32))
    for path in (export.to_tflite(model, tmp_path / "m.tflite").path, export.to_onnx(model, tmp_path / "m.onnx").path):
        np.testing.assert_array_equal(export.run_artifact(path, rows)[0], expected.astype(np.float32))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_regressors_equal_sklearn(strategy):
    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    targets = np.stack([y, np.sqrt(y)], axis=1)
    cases = [
        (DecisionTreeRegressor(max_depth=6, random_state=0), y),
        (RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0), y),
        (ExtraTreesRegressor(n_estimators=10, max_depth=5, random_state=0), targets),
    ]
    for estimator, target in cases:
        estimator.fit(x[:350], target[:350])
        model = compile_sklearn(estimator, strategy=strategy)
        expected = estimator.predict(x[350:]).reshape(len(x) - 350, -1)
        for inputs, reference in ((x[350:], expected), (_edge_inputs(estimator, x[:350]), None)):
            reference = estimator.predict(inputs).reshape(len(inputs), -1) if reference is None else reference
            np.testing.assert_allclose(_keras(model, inputs), reference, rtol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_compiled_forest_passes_model_checks_and_exports_exactly(strategy, tmp_path):
    (x_train, y_train), (x_test, _) = _cancer()
    forest = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0).fit(x_train, y_train)
    model = compile_sklearn(forest, strategy=strategy, name=f"forest_{strategy}")
    edges = _edge_inputs(forest, x_train)
    x = np.concatenate([x_test, edges])
    results = check_model(model, x, tmp_path=tmp_path, train=False, expected_shape=(len(x), 2), atol=1e-6)
    expected = forest.predict_proba(x)
    for result in results.values():
        outputs = export.run_artifact(result.path, x)[0]
        np.testing.assert_allclose(outputs, expected, rtol=1e-6, atol=1e-7)
        assert np.array_equal(outputs.argmax(1), forest.predict(x))
    loaded = keras.saving.load_model(tmp_path / f"forest_{strategy}.keras", safe_mode=True)
    assert tree_strategy(loaded) == strategy
    report = export.inspect(tmp_path / f"forest_{strategy}.tflite")
    assert not any(op.startswith("Flex") or op == "WHILE" for op in report.operators)


def test_auto_strategy_follows_depth_and_is_visible():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    y = rng.normal(size=3000)
    chosen = {}
    for depth in (3, 8, None):
        tree = DecisionTreeRegressor(max_depth=depth, random_state=0).fit(x, y)
        model = compile_sklearn(tree)
        chosen[tree.get_depth()] = tree_strategy(model)
        assert chosen[tree.get_depth()] == choose_strategy(tree.get_depth(), 1)
        assert any(tree_strategy(model) in layer.name for layer in model.layers)
        np.testing.assert_allclose(_keras(model, x[:500]), tree.predict(x[:500])[:, None], rtol=1e-6)
    assert list(chosen.values()) == ["perfect", "perfect", "gather"], chosen
    assert max(chosen) > 20


def test_single_leaf_tree():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    tree = DecisionTreeClassifier().fit(x, np.ones(20, int))
    for strategy in STRATEGIES:
        np.testing.assert_array_equal(_keras(compile_sklearn(tree, strategy=strategy), x), np.ones((20, 1)))


def test_bad_input_is_refused():
    (x_train, y_train), (x_test, _) = _cancer()
    with pytest.raises(TypeError, match=r"LogisticRegression.*supported scikit-learn estimators: DecisionTreeClassifier"):
        compile_sklearn(LogisticRegression().fit(x_train, y_train))
    with pytest.raises(NotFittedError):
        compile_sklearn(RandomForestClassifier())
    tree = DecisionTreeClassifier(max_depth=3).fit(x_train, y_train)
    with pytest.raises(ValueError, match="strategy must be one of"):
        compile_sklearn(tree, strategy="fastest")
    with pytest.raises(ValueError, match="output=.* applies to SVMs only"):
        compile_sklearn(tree, output="votes")
    multi = DecisionTreeClassifier(max_depth=3).fit(x_train, np.stack([y_train, 1 - y_train], 1))
    with pytest.raises(ValueError, match="Multi-output classifiers"):
        compile_sklearn(multi)
    model = compile_sklearn(tree)
    with pytest.raises(ValueError, match="expected shape|incompatible"):
        model(x_test[:, :10])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_large_forest_exact_in_every_runtime(task, tmp_path):
    """100 trees of depth 10 on digits with 10% missing values: Keras, LiteRT and onnxruntime."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) + np.random.default_rng(0).normal(scale=0.3, size=x.shape).astype(np.float32)
    x[np.random.default_rng(1).random(x.shape) < 0.1] = np.nan
    x_train, y_train, x_test = x[:1300], y[:1300], x[1300:]
    if task == "classification":
        forest = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0).fit(x_train, y_train)
        reference = forest.predict_proba
    else:
        forest = RandomForestRegressor(n_estimators=100, max_depth=10, random_state=0).fit(x_train, y_train * 1.5)
        reference = lambda inputs: forest.predict(inputs)[:, None]  # noqa: E731
    inputs = np.concatenate([x_test, _edge_inputs(forest, x_train)])
    expected = reference(inputs)
    for strategy in STRATEGIES:
        model = compile_sklearn(forest, strategy=strategy, name=f"forest_{strategy}")
        outputs = {"keras": _keras(model, inputs)}
        outputs["tflite"] = export.run_artifact(export.to_tflite(model, tmp_path / f"{strategy}.tflite").path, inputs)[0]
        outputs["onnx"] = export.run_artifact(export.to_onnx(model, tmp_path / f"{strategy}.onnx").path, inputs)[0]
        for runtime, out in outputs.items():
            np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7, err_msg=f"{strategy} {runtime}")
            if task == "classification":
                assert np.array_equal(out.argmax(1), forest.predict(inputs)), (strategy, runtime)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_first_release_files_load(strategy):
    # The first release stored each node's feature and NaN direction; today's files store the column
    # the split reads. A layer given the old arrays in the old order computes the same probabilities.
    from keras_models.classical.compile_trees import TreeEnsemble, pack_trees, tree_arrays

    forest, rows = _forest_with_missing_values()
    model = compile_sklearn(forest, strategy=strategy)
    layer = next(layer for layer in model.layers if isinstance(layer, TreeEnsemble))
    old, _ = pack_trees([tree_arrays(e.tree_, classifier=True) for e in forest.estimators_], strategy)
    names = ["feature", "threshold", "missing_left", *[n for n in layer.tree_weights if n not in ("column", "threshold")]]
    fresh = TreeEnsemble.from_config(layer.get_config())
    fresh.load_own_variables({str(i): old[name] for i, name in enumerate(names)})
    expected = forest.predict_proba(rows)
    np.testing.assert_allclose(_keras(keras.Sequential([keras.Input((4,)), fresh]), rows), expected,
                               rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):  # any other count of arrays is still an error
        TreeEnsemble.from_config(layer.get_config()).load_own_variables({"0": old["feature"]})


_BACKEND_WORKER = """
import sys, numpy as np, keras
import keras_models.classical
rows = np.load(sys.argv[1])
out = {s: keras.ops.convert_to_numpy(keras.saving.load_model(f"{sys.argv[2]}/{s}.keras")(rows))
       for s in ("matmul", "perfect", "gather")}
np.savez(sys.argv[3], backend=keras.backend.backend(), **out)
"""


@pytest.mark.parametrize("backend", ["jax", pytest.param("torch", marks=pytest.mark.slow)])
def test_every_form_gives_the_same_probabilities_on_jax_and_torch(backend, tmp_path):
    # The forms are written in keras.ops (with a tree-major traversal off TensorFlow): the files this
    # process saves give scikit-learn's probabilities on the other backends, missing values included.
    import os
    import subprocess
    import sys

    forest, rows = _forest_with_missing_values()
    np.save(tmp_path / "rows.npy", rows)
    for strategy in STRATEGIES:
        compile_sklearn(forest, strategy=strategy).save(tmp_path / f"{strategy}.keras")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, str(tmp_path / "rows.npy"), str(tmp_path),
                          str(tmp_path / "out.npz")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    expected = forest.predict_proba(rows)
    for strategy in STRATEGIES:
        np.testing.assert_allclose(out[strategy], expected, rtol=1e-6, atol=1e-7, err_msg=strategy)
