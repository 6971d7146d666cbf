"""Bad input tried as a new user would: each mistake gets a `ValueError` naming what is wrong, before
a compiled graph turns it into a backend error or silently wrong numbers."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import sklearn.ensemble
import sklearn.tree
from sklearn.exceptions import NotFittedError
from sklearn.svm import SVC, SVR, LinearSVC

import export
import keras_models
from keras_models.checks import CheckedModel
from keras_models.classical import (
    DecisionTreeClassifier,
    RandomForestRegressor,
    SVMClassifier,
    compile_sklearn,
)

TINY_CNN = {"filters": (4, 8), "dense_units": 8}
BUILDERS = {
    "mlp": ((6,), {"hidden_units": (8,)}),
    "simple_cnn": ((8, 8, 1), TINY_CNN),
}


def _build(name, num_classes=3, **kwargs):
    shape, params = BUILDERS[name]
    return keras_models.build(name, input_shape=shape, num_classes=num_classes, **{**params, **kwargs})


def _data(name, n=12, seed=0):
    shape, _ = BUILDERS[name]
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, 3, n)


# --------------------------------------------------------------------------------------------------
# Dense and convolutional builders


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("input_shape", [(0,), None, 4, (6, 0, 1), ("6",)])
def test_builder_refuses_a_bad_input_shape(name, input_shape):
    with pytest.raises(ValueError, match=rf"input_shape must be a tuple of .*positive integers; got "
                                         rf"input_shape={input_shape!r}".replace("(", r"\(").replace(")", r"\)")):
        keras_models.build(name, input_shape=input_shape, num_classes=3, compile=False)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_class_label_out_of_range_is_named_at_fit(name):
    model = _build(name)
    x, y = _data(name)
    y[5] = 7
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\); got values from 0 to 7"):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\); got values from -1 to 2"):
        model.fit(x, np.where(np.arange(12) == 0, -1, y % 3), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_data y must lie in"):
        model.fit(x, y % 3, validation_data=(x, y), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_nan_or_infinity_in_x_is_named_at_fit(name, bad, kind):
    model = _build(name)
    x, y = _data(name)
    x[4].flat[2] = bad
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=rf"^x contains {kind} \(first at row 4\)\.$"):
        model.fit(x, y, epochs=1, verbose=0)
    # nothing trained: the weights are as built, not NaN
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_binary_targets_outside_zero_one_are_named():
    model = _build("mlp", num_classes=1, head="sigmoid")
    x, _ = _data("mlp")
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\] for the binary cross-entropy of 'mlp'; got values from 0 to 2"):
        model.fit(x, np.arange(12) % 3, epochs=1, verbose=0)


def test_good_data_in_other_forms_is_left_alone():
    """Soft binary targets, one-hot labels with a categorical loss the user chose, a regression head with
    any real target, and datasets (checked by Keras itself) all train."""
    x, y = _data("mlp")
    model = _build("mlp", num_classes=1, head="sigmoid")
    model.fit(x, np.linspace(0, 1, 12), epochs=1, verbose=0)
    model = _build("mlp", compile=False)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, np.eye(3)[y], epochs=1, verbose=0)
    model = _build("mlp", num_classes=1, head="linear")
    model.fit(x, 100.0 * np.random.default_rng(1).normal(size=12), epochs=1, verbose=0)
    model = _build("mlp")
    import tensorflow as tf

    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_checked_model_round_trips_and_exports(tmp_path):
    model = _build("simple_cnn")
    x, y = _data("simple_cnn")
    model.fit(x, y, epochs=1, verbose=0)
    assert isinstance(model, CheckedModel)
    model.save(tmp_path / "cnn.keras")
    loaded = keras.saving.load_model(tmp_path / "cnn.keras")  # safe_mode, no custom_objects
    assert type(loaded) is CheckedModel
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        loaded.fit(bad, y, epochs=1, verbose=0)
    for writer, suffix in ((export.to_tflite, "tflite"), (export.to_onnx, "onnx")):
        path = writer(loaded, tmp_path / f"cnn.{suffix}").path
        assert export.verify(loaded, path, x).max_abs <= 1e-5


def test_fit_checks_run_on_jax():
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import keras_models
        model = keras_models.build("mlp", input_shape=(6,), num_classes=3, hidden_units=(8,))
        x = np.random.default_rng(0).normal(size=(12, 6)).astype("float32")
        y = np.arange(12) % 3
        history = model.fit(x, y, epochs=1, verbose=0)
        errors = []
        for bad_x, bad_y in ((x, np.where(y == 2, 7, y)), (np.where(x > 1.5, np.nan, x), y)):
            try:
                model.fit(bad_x, bad_y, epochs=1, verbose=0)
            except ValueError as error:
                errors.append(str(error))
        print(json.dumps({"backend": __import__("keras").backend.backend(), "errors": errors,
                          "loss": float(history.history["loss"][0]), "tf": "tensorflow" in sys.modules}))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and not result["tf"] and np.isfinite(result["loss"])
    assert result["errors"][0] == "y must lie in [0, 3); got values from 0 to 7."
    assert result["errors"][1].startswith("x contains NaN (first at row")


# --------------------------------------------------------------------------------------------------
# Compiled trees, forests and SVMs check their input width


def _one_feature():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 1))
    return x, (x[:, 0] > 0.1).astype(int), x[:, 0] ** 2


def _estimators():
    x, labels, values = _one_feature()
    return {
        "tree_matmul": (sklearn.tree.DecisionTreeClassifier(max_depth=3).fit(x, labels), "matmul"),
        "tree_perfect": (sklearn.tree.DecisionTreeClassifier(max_depth=6).fit(x, labels), "perfect"),
        "tree_gather": (sklearn.tree.DecisionTreeRegressor().fit(x, values), "gather"),
        "forest": (sklearn.ensemble.RandomForestClassifier(n_estimators=5, random_state=0).fit(x, labels), "auto"),
        "svc": (SVC().fit(x, labels), "auto"),
        "svr": (SVR().fit(x, values), "auto"),
        "linear_svc": (LinearSVC().fit(x, labels), "auto"),
    }


@pytest.mark.parametrize("kind", sorted(_estimators()))
def test_compiled_estimator_refuses_the_wrong_number_of_features(kind, tmp_path):
    estimator, strategy = _estimators()[kind]
    model = compile_sklearn(estimator, strategy=strategy)
    wide = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    message = r"takes inputs of shape \(batch, 1\), the 1 feature\(s\) it was fitted on; got shape \(4, 3\)"
    with pytest.raises(ValueError, match=message):
        model(wide)
    with pytest.raises(ValueError, match=message):
        model.predict(wide, verbose=0)
    # the check is static: the exported files keep builtin ops and take (batch, 1)
    x = _one_feature()[0][:16].astype("float32")
    report = export.to_tflite(model, tmp_path / f"{kind}.tflite")
    assert not [op for op in report.operators if op.startswith("Flex")]
    assert report.inputs[0].shape[1:] == (1,)
    assert export.verify(model, report.path, x).max_abs <= 1e-5
    with pytest.raises(export.ExportError, match=r"takes shape \?x1; got an array of shape \(4, 3\)"):
        export.run_artifact(report.path, wide)


def test_compile_sklearn_on_an_unfitted_wrapper_says_not_fitted():
    for estimator in (DecisionTreeClassifier(), RandomForestRegressor(), SVMClassifier()):
        with pytest.raises(NotFittedError, match=f"This {type(estimator).__name__} instance is not fitted yet"):
            compile_sklearn(estimator)
        with pytest.raises(NotFittedError, match="not fitted"):
            estimator.to_keras()


def test_svm_with_a_callable_kernel_is_a_value_error():
    x, labels, values = _one_feature()
    for estimator in (SVC(kernel=lambda a, b: a @ b.T).fit(x, labels), SVR(kernel=lambda a, b: a @ b.T).fit(x, values)):
        with pytest.raises(ValueError, match=r"with kernel=<function .*> cannot be compiled; supported kernels"):
            compile_sklearn(estimator)
