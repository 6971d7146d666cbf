"""`data_format`: a ResNet computing channels-first equals its channels-last twin, on PyTorch (whose
convolutions take NCHW) and through the exporters, which write channels-last files."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import export
import keras_models
from export.verification import run_tflite
from keras_models.layers import ChannelLayout

RNG = np.random.default_rng(0)
ROOT = Path(__file__).parents[2]


def _twins():
    kwargs = {"input_shape": (32, 32, 3), "num_classes": 4, "width_multiplier": 0.125, "compile": False}
    last = keras_models.build("resnet18", data_format="channels_last", **kwargs)
    first = keras_models.build("resnet18", data_format="channels_first", **kwargs)
    for layer in last.layers:
        first.get_layer(layer.name).set_weights(layer.get_weights())
    return last, first


def test_channels_first_resnet_exports_as_its_channels_last_twin(tmp_path):
    last, first = _twins()
    assert isinstance(first.get_layer("resnet18_to_channels_first"), ChannelLayout)
    x = RNG.uniform(size=(3, 32, 32, 3)).astype("float32")
    tflite = export.to_tflite(first, tmp_path / "first.tflite")
    onnx = export.to_onnx(first, tmp_path / "first.onnx")
    # The files take and give channels-last tensors and hold no transposes: the layout layers were
    # dropped and every convolution switched to channels-last.
    assert tuple(tflite.inputs[0].shape)[1:] == (32, 32, 3)
    assert "TRANSPOSE" not in tflite.operators
    for path in (tflite.path, onnx.path):
        assert export.verify(last, path, x).max_abs <= 1e-5


def test_feature_maps_come_back_channels_last(tmp_path):
    kwargs = {"input_shape": (32, 32, 3), "num_classes": 4, "width_multiplier": 0.125, "compile": False,
              "include_top": False}
    first = keras_models.build("resnet18", data_format="channels_first", **kwargs)
    last = keras_models.build("resnet18", data_format="channels_last", **kwargs)
    assert first.output.shape == last.output.shape == (None, 1, 1, 64)
    for layer in last.layers:
        first.get_layer(layer.name).set_weights(layer.get_weights())
    report = export.to_tflite(first, tmp_path / "features.tflite")
    assert export.verify(last, report.path, RNG.uniform(size=(2, 32, 32, 3)).astype("float32")).max_abs <= 1e-5


def test_a_layer_that_mixes_axes_in_a_channels_first_region_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = ChannelLayout("channels_first", name="to_first")(inputs)
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", name="conv")(x)
    x = keras.layers.Flatten(name="flatten_cf")(x)  # (c, h, w) order: not the channels-last (h, w, c)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(export.ExportError, match="flatten_cf"):
        export.to_tflite(model, tmp_path / "mixed.tflite")
    assert not (tmp_path / "mixed.tflite").exists()


def test_data_format_is_checked_and_defaults_to_channels_last():
    with pytest.raises(ValueError, match="data_format"):
        keras_models.build("resnet18", input_shape=(32, 32, 3), data_format="NCHW")
    model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=2, width_multiplier=0.125,
                               compile=False)
    assert not any(isinstance(layer, ChannelLayout) for layer in model.layers)


WORKER = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import keras_models
    keras.utils.set_random_seed(0)
    kwargs = {"input_shape": (32, 32, 3), "num_classes": 4, "width_multiplier": 0.125, "compile": False}
    last = keras_models.build("resnet18", data_format="channels_last", **kwargs)
    first = keras_models.build("resnet18", data_format="channels_first", **kwargs)
    for layer in last.layers:
        first.get_layer(layer.name).set_weights(layer.get_weights())
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 4
    result = {"layouts": sorted({l.get_config().get("data_format") for l in first.layers} - {None}),
              "max_diff": float(np.abs(last.predict(x, verbose=0) - first.predict(x, verbose=0)).max())}
    losses = []
    for model in (last, first):
        # A small step: at 0.1 on 8 images the loss doubles and then drops, which amplifies float32's
        # rounding (the two layouts sum in different orders) a hundredfold by the third step.
        model.compile(keras.optimizers.SGD(0.003), "sparse_categorical_crossentropy", jit_compile=False)
        losses.append([float(model.train_on_batch(x, y)) for _ in range(3)])
    result["losses"] = losses
    result["trained_diff"] = float(np.abs(last.predict(x, verbose=0) - first.predict(x, verbose=0)).max())
    first.save(sys.argv[1] + "/first.keras")
    np.save(sys.argv[1] + "/x.npy", x)
    np.save(sys.argv[1] + "/y_torch.npy", first.predict(x, verbose=0))
    print(json.dumps(result))
""")


def test_pytorch_trains_channels_first_and_ships_channels_last(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["layouts"] == ["channels_first"]
    assert result["max_diff"] <= 1e-5
    # Three SGD steps take both layouts through the same losses and weights.
    np.testing.assert_allclose(result["losses"][0], result["losses"][1], rtol=1e-4)
    assert result["losses"][0][-1] < result["losses"][0][0]
    assert result["trained_diff"] <= 1e-4
    # The file trained on PyTorch loads under TensorFlow and exports channels-last, equal to PyTorch.
    model = keras.saving.load_model(tmp_path / "first.keras")
    x, expected = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y_torch.npy")
    report = export.to_tflite(model, tmp_path / "first.tflite")
    assert "TRANSPOSE" not in report.operators
    np.testing.assert_allclose(run_tflite(report.path, [x])[0], expected, atol=1e-5)
