"""Mixed precision as one argument of `build`, and `fit` fed from the accelerator's memory on JAX.

The device feed's checks run in one `KERAS_BACKEND=jax` subprocess on the CPU (JAX's default device;
`data_on_device=True` puts the arrays there): the batches it gathers, and that training on them equals
training through Keras' host path. Its speed on a GPU is in BENCHMARKS.md (`benchmarks/gpu_training.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_models
from keras_models.device_feed import device_fit_arguments

_JAX_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np, keras, keras_models
    from keras_models.device_feed import DeviceArrays, device_fit_arguments
    out = {}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 8)); y = rng.integers(0, 3, 100)

    # Training on the device-fed batches equals training through Keras' host path.
    weights, losses = [], []
    for on_device in (False, True):
        keras.utils.set_random_seed(1)
        model = keras_models.build("mlp", input_shape=(8,), num_classes=3)
        history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, data_on_device=on_device)
        weights.append(model.get_weights()); losses.append(history.history["loss"])
    out["max_weight_difference"] = float(max(np.abs(a - b).max() for a, b in zip(*weights)))
    out["losses"] = losses

    # The shuffled feed: each epoch every sample once, labels with their samples, a new order per epoch.
    x = np.arange(10, dtype="float32")[:, None] * np.ones((1, 3), "float32"); y = np.arange(10) * 10
    feed = DeviceArrays(x, y, batch_size=4, shuffle=True, seed=3)
    epochs = []
    for _ in range(2):
        batches = [feed[i] for i in range(len(feed))]
        epochs.append([np.asarray(b[0])[:, 0].tolist() for b in batches])
        out.setdefault("labels_follow", []).append(all(
            np.array_equal(np.asarray(b[1]), np.asarray(b[0])[:, 0].astype(int) * 10) for b in batches))
        feed.on_epoch_end()
    out["epochs"] = epochs
    out["batch_sizes"] = [len(b) for b in epochs[0]]
    again = DeviceArrays(x, y, batch_size=4, shuffle=True, seed=3)
    out["seeded_repeat"] = [np.asarray(again[i][0])[:, 0].tolist() for i in range(len(again))] == epochs[0]
    out["dtype"] = str(again[0][0].dtype)
    out["is_device_array"] = type(again[0][0]).__module__.startswith("jax")

    # The decision: a host-only argument or too little memory keeps Keras' host path; insisting names why.
    big = np.zeros((1000, 100), "float32")  # 400,000 bytes
    fed, _, kwargs = device_fit_arguments(big, None, {"batch_size": 10}, None, free_bytes=10**9)
    out["auto_fits"] = [type(fed).__name__, kwargs.get("shuffle")]
    fed, _, _ = device_fit_arguments(big, None, {"batch_size": 10}, None, free_bytes=10**6)
    out["auto_too_big"] = type(fed).__name__
    fed, _, _ = device_fit_arguments(big, None, {"validation_split": 0.2}, None, free_bytes=10**9)
    out["auto_validation_split"] = type(fed).__name__
    fed, _, _ = device_fit_arguments(big, None, {}, None)  # JAX sees no accelerator here
    out["auto_no_accelerator"] = type(fed).__name__
    errors = []
    for arguments in (({"validation_split": 0.2}, None), ({}, 10**5), ({"shuffle": "batch"}, None)):
        try:
            device_fit_arguments(big, None, arguments[0], True, free_bytes=arguments[1])
        except ValueError as error:
            errors.append(str(error))
    out["insist_errors"] = errors
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def jax_results():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_THREEFRY_PARTITIONABLE="0", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_device_fed_training_equals_the_host_path(jax_results):
    assert jax_results["max_weight_difference"] == 0.0
    host, device = jax_results["losses"]
    assert host == device and host[-1] < host[0]


def test_device_feed_shuffles_every_sample_once_per_epoch(jax_results):
    first, second = jax_results["epochs"]
    for epoch in (first, second):
        assert sorted(v for batch in epoch for v in batch) == list(range(10))
    assert first != second  # a new order each epoch
    assert jax_results["batch_sizes"] == [4, 4, 2]  # the remainder last, as in Keras
    assert jax_results["labels_follow"] == [True, True]
    assert jax_results["seeded_repeat"] is True
    assert jax_results["dtype"] == "float32" and jax_results["is_device_array"] is True


def test_device_feed_is_chosen_only_where_it_applies(jax_results):
    assert jax_results["auto_fits"] == ["DeviceArrays", False]  # Keras must not reorder the batches again
    assert jax_results["auto_too_big"] == "ndarray"
    assert jax_results["auto_validation_split"] == "ndarray"
    assert jax_results["auto_no_accelerator"] == "ndarray"
    split, memory, batch = jax_results["insist_errors"]
    assert "validation_split" in split
    assert "exceed the device's free memory" in memory
    assert "shuffle='batch'" in batch


def test_device_feed_is_for_jax_and_checks_its_argument():
    x, y = np.zeros((4, 2), "float32"), np.zeros(4)
    assert device_fit_arguments(x, y, {}, None)[0] is x  # TensorFlow: Keras' own path
    with pytest.raises(ValueError, match="JAX backend"):
        device_fit_arguments(x, y, {}, True)
    with pytest.raises(ValueError, match="data_on_device must be None, True or False"):
        device_fit_arguments(x, y, {}, "yes")
    model = keras_models.build("mlp", input_shape=(2,), num_classes=2)
    with pytest.raises(ValueError, match="JAX backend"):
        model.fit(x, y, data_on_device=True, verbose=0)


def test_mixed_precision_is_one_argument_of_build():
    before = keras.config.dtype_policy().name
    model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=10, dtype="mixed_bfloat16")
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in convolutions)
    assert all(w.dtype == "float32" for w in model.trainable_weights)  # float32 variables
    assert model.layers[-1].dtype_policy.name == "float32" and model.output.dtype == "float32"  # softmax in float32
    assert keras.config.dtype_policy().name == before  # the global policy is restored
    assert keras_models.build("mlp", input_shape=(4,), num_classes=2).layers[-1].dtype_policy.name == before
    gpt = keras_models.build("gpt_causal_lm", vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                             intermediate_dim=32, max_sequence_length=8, dtype="mixed_bfloat16")
    assert gpt.compute_dtype == "bfloat16" and gpt.variable_dtype == "float32"


def test_build_names_a_bad_dtype_and_restores_the_policy():
    before = keras.config.dtype_policy().name
    with pytest.raises(ValueError, match="Unknown dtype 'bfloat17'"):
        keras_models.build("mlp", input_shape=(4,), num_classes=2, dtype="bfloat17")
    with pytest.raises(ValueError, match="input_shape"):  # the builder's own error, under the policy
        keras_models.build("mlp", input_shape=(-4,), num_classes=2, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="applies to the models that are Keras models"):
        keras_models.build("logistic_regression", dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before


def test_a_mixed_precision_model_exports_as_its_float32_model(tmp_path):
    import export
    from export.verification import run_onnx, run_tflite

    mixed = keras_models.build("lenet5", input_shape=(28, 28, 1), num_classes=10, dtype="mixed_bfloat16")
    plain = keras_models.build("lenet5", input_shape=(28, 28, 1), num_classes=10)
    plain.set_weights(mixed.get_weights())
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    reference = plain.predict(x, verbose=0)
    export.to_onnx(mixed, tmp_path / "m.onnx")
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", [x])[0], reference, atol=1e-5)
    report = export.to_tflite(mixed, tmp_path / "m.tflite", batch_size=3)
    np.testing.assert_allclose(run_tflite(report.path, [x])[0], reference, atol=1e-5)
    assert mixed.layers[1].dtype_policy.name == "mixed_bfloat16"  # the user's model is left as it was
